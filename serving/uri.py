"""Request targets read as TF Serving reads them: ParsedEvRequest::decode (util/net_http/server/internal/
evhttp_request.cc) parses the target with libevent's ``evhttp_uri_parse(uri)``, flags 0, its strict RFC 3986
parse, and EvHTTPServer::DispatchEvRequest answers a target it refuses with libevent's 400 page
(``evhttp_send_error(req, HTTP_BADREQUEST)``) before any handler sees it.

The steps are those of libevent 2.1.8's http.c (evhttp_uri_parse_with_flags, scheme_ok, end_of_authority,
parse_authority, userinfo_ok, regname_ok, bracket_addr_ok, parse_port, end_of_path, path_matches_noscheme),
the release TF Serving 2.16.1's workspace.bzl builds.
"""
from __future__ import annotations

import ipaddress
import re

_UNRESERVED = r"A-Za-z0-9\-._~"          # CHAR_IS_UNRESERVED: ASCII only, a byte over 0x7F is none
_SUBDELIMS = r"!$&'()*+,;="
_PERCENT = r"%[0-9A-Fa-f]{2}"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")                          # scheme_ok, up to the first ':'
_PATH = re.compile(rf"(?:[{_UNRESERVED}{_SUBDELIMS}:@/]|{_PERCENT})*")      # end_of_path(PART_PATH)
_QUERY = re.compile(rf"(?:[{_UNRESERVED}{_SUBDELIMS}:@/?]|{_PERCENT})*")    # PART_QUERY, PART_FRAGMENT: '?' too
_USERINFO = re.compile(rf"(?:[{_UNRESERVED}{_SUBDELIMS}:]|{_PERCENT})*")
_REGNAME = re.compile(rf"(?:[{_UNRESERVED}{_SUBDELIMS}]|{_PERCENT})*")
_IP_FUTURE = re.compile(rf"v[0-9A-Fa-f]+\.[{_UNRESERVED}{_SUBDELIMS}:]*")   # none after the dot, as bracket_addr_ok
_AUTHORITY_END = re.compile(r"[/?#]")
_PORT = re.compile(r":([0-9]*)$")
_MAX_PORT = 65535


def path_and_query(target: str) -> str | None:
    """What ParsedEvRequest::decode makes of ``target`` (the request line's, its bytes as latin-1 characters): the
    path with its ``?query`` and ``#fragment``, without the scheme and authority of an absolute-form target
    (``http://host:8501/v1/models/letters`` is ``/v1/models/letters``); None if the strict parse refuses it (a
    byte outside unreserved, sub-delims, ``:@/`` and ``%`` with two hex digits in the path, a ``#`` in the fragment,
    an authority libevent refuses)."""
    scheme = _SCHEME.match(target)
    rest = target[scheme.end():] if scheme else target
    if rest.startswith("//"):
        end = _AUTHORITY_END.search(rest, 2)
        end = end.start() if end else len(rest)
        if not _authority_ok(rest[2:end]):
            return None
        rest = rest[end:]
    path_end = _PATH.match(rest).end()
    end = path_end
    if rest[end:end + 1] == "?":
        end = _QUERY.match(rest, end + 1).end()
    if rest[end:end + 1] == "#":
        end = _QUERY.match(rest, end + 1).end()
    if end != len(rest):
        return None
    if not scheme and ":" in rest[:path_end].split("/", 1)[0]:   # path_matches_noscheme
        return None
    return rest


def _authority_ok(authority: str) -> bool:
    """parse_authority: ``[userinfo@]host[:port]``, the host a reg-name, an IPv4 address or a bracketed literal."""
    if not authority:
        return True
    userinfo, at, host = authority.partition("@")
    if not at:
        host = authority
    elif not _USERINFO.fullmatch(userinfo):
        return False
    port = _PORT.search(host)
    if port:
        if port.group(1) and int(port.group(1)) > _MAX_PORT:
            return False
        host = host[:port.start()]
    if host.startswith("[") and len(host) >= 2 and host.endswith("]"):
        return _bracketed_ok(host[1:-1])
    return bool(_REGNAME.fullmatch(host))


def _bracketed_ok(literal: str) -> bool:
    """bracket_addr_ok: an IPvFuture (``v1.x``) or an IPv6 address evutil_inet_pton takes."""
    if literal.startswith("v"):
        return bool(_IP_FUTURE.fullmatch(literal))
    if not literal or len(literal) >= 64 or "%" in literal:
        return False
    try:
        ipaddress.IPv6Address(literal)
    except ValueError:
        return False
    return True
