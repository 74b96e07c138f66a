"""Container image references as Docker and Kubernetes read them (github.com/distribution/reference, whose
``ParseNormalizedNamed`` the kubelet calls): ``[HOST[:PORT]/]PATH[:TAG][@DIGEST]``.

A reference outside this grammar compiles into a spec whose pods all fail at run time (``InvalidImageName``), so the
runner checks ``--image`` (and the Dataflow workers' image) before the compile.
"""
from __future__ import annotations

import re

_HOST = re.compile(r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
                   r"|\[[a-fA-F0-9:]+\])(?::[0-9]+)?")
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"\w[\w.-]{0,127}", re.ASCII)
_DIGESTS = {"sha256": 64, "sha384": 96, "sha512": 128}   # go-digest's algorithms: lowercase hex of these lengths
NAME_MAX = 255                                           # reference.NameTotalLengthMax, of the normalized name
PLACEHOLDER_HOST = "REGISTRY"                            # kubeflow/README.md's and the Dockerfile's examples
GRAMMAR = "[HOST[:PORT]/]PATH[:TAG][@sha256:DIGEST]"


def split(reference: str) -> tuple[str, str, str | None, str | None]:
    """(host, path, tag, digest) as Docker splits them: the first component is the host when it has a . or a :, is
    localhost or is not lowercase (no path component may be); otherwise there is none ("")."""
    name, at, digest = reference.partition("@")
    tag = None
    if name.rfind(":") > name.rfind("/"):
        name, _, tag = name.rpartition(":")
    first, slash, rest = name.partition("/")
    digest = digest if at else None
    if slash and (first == "localhost" or any(c in first for c in ".:") or first.lower() != first):
        return first, rest, tag, digest
    return "", name, tag, digest


def problem(reference: str) -> str | None:
    """What makes ``reference`` no image reference Kubernetes pulls, in words naming the rule; None when it is one."""
    if re.fullmatch(r"[a-f0-9]{64}", reference):
        return "64 hex digits are an image's ID, not a repository name"
    host, path, tag, digest = split(reference)
    if host == PLACEHOLDER_HOST:
        return f"{PLACEHOLDER_HOST} is kubeflow/README.md's placeholder: name the registry the image was pushed to"
    if host and not _HOST.fullmatch(host):
        return f"the registry host {host!r} is not a host name or address with an optional :port"
    if path.lower() != path:
        return f"the repository name ({path}) must be lowercase"
    components = path.split("/")
    bad = next((c for c in components if not _PATH_COMPONENT.fullmatch(c)), None)
    if bad is not None:
        return (f"the repository name ({path}) has the component {bad!r}: each is lowercase letters and digits, "
                "separated by one . or _, two _ or dashes")
    if len(f"{host or 'docker.io'}/{path if host or '/' in path else 'library/' + path}") > NAME_MAX:   # as normalized
        return f"the name (registry host and repository) must not be more than {NAME_MAX} characters"
    if tag is not None and not _TAG.fullmatch(tag):
        return f"the tag {tag!r} must be 1 to 128 letters, digits, _, . or -, not starting with . or -"
    if digest is not None:
        algorithm, _, hex_digits = digest.partition(":")
        if len(hex_digits) != _DIGESTS.get(algorithm) or not re.fullmatch(r"[0-9a-f]+", hex_digits):
            return f"the digest {digest!r} must be sha256: and 64 lowercase hex digits (or sha384, sha512)"
    return None
