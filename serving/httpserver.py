"""A small HTTP/1.1 server on asyncio: keep-alive, Content-Length and chunked request bodies, a bound on the
request size, and a graceful stop that lets in-flight requests finish.

It knows nothing about TF Serving: every request goes to ``handler(method, target, headers, body)``, a
coroutine returning ``(status, [(header, value), ...], body bytes)``.
"""
from __future__ import annotations

import asyncio
import http
import logging

log = logging.getLogger("serving.http")

MAX_LINE = 64 * 1024
MAX_HEADERS = 100


def reason(status: int) -> str:
    if status == 499:
        return "Client Closed Request"
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class _BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class HttpServer:
    def __init__(self, handler, host: str, port: int, max_body_bytes: int):
        self.handler = handler
        self.host = host
        self.port = port
        self.max_body_bytes = max_body_bytes
        self._server = None
        self._connections: dict = {}          # writer -> busy flag
        self._closing = False

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._client, self.host, self.port, limit=MAX_LINE,
                                                  reuse_address=True, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stops accepting, closes idle connections and waits (bounded) for in-flight requests."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for writer, busy in list(self._connections.items()):
            if not busy:
                writer.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds
        while any(self._connections.values()) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for writer in list(self._connections):
            writer.close()

    async def _read_body(self, reader, headers: dict) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks, total = [], 0
            while True:
                size_line = await reader.readline()
                try:
                    size = int(size_line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise _BadRequest(400, "bad chunk size") from None
                if size == 0:
                    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > self.max_body_bytes:
                    raise _BadRequest(413, f"Request body exceeds the limit of {self.max_body_bytes} bytes")
                chunks.append(await reader.readexactly(size))
                await reader.readline()
        length = headers.get("content-length")
        if length is None:
            return b""
        try:
            length = int(length)
            if length < 0:
                raise ValueError
        except ValueError:
            raise _BadRequest(400, "bad Content-Length") from None
        if length > self.max_body_bytes:
            raise _BadRequest(413, f"Request body of {length} bytes exceeds the limit of "
                                   f"{self.max_body_bytes} bytes")
        return await reader.readexactly(length) if length else b""

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections[writer] = False
        try:
            while not self._closing:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    await self._send(writer, 414, [], b"Request line too long", close=True)
                    return
                if not line:
                    return
                if line in (b"\r\n", b"\n"):
                    continue
                self._connections[writer] = True
                parts = line.decode("latin-1").rstrip("\r\n").split(" ")
                if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                    await self._send(writer, 400, [], b"Malformed request line", close=True)
                    return
                method, target, version = parts
                headers = {}
                for _ in range(MAX_HEADERS + 1):
                    raw = await reader.readline()
                    if raw in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = raw.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                else:
                    await self._send(writer, 431, [], b"Too many headers", close=True)
                    return
                connection = headers.get("connection", "").lower()
                keep_alive = ("close" not in connection) if version != "HTTP/1.0" else ("keep-alive" in connection)
                try:
                    body = await self._read_body(reader, headers)
                except _BadRequest as exc:
                    await self._send(writer, exc.status, [("Content-Type", "application/json")],
                                     ('{\n    "error": "' + exc.message + '"\n}').encode(), close=True)
                    return
                try:
                    status, response_headers, payload = await self.handler(method, target, headers, body)
                except Exception:  # noqa: BLE001 - a handler bug must not kill the connection loop
                    log.exception("Unhandled error serving %s %s", method, target)
                    status, response_headers, payload = 500, [("Content-Type", "application/json")], \
                        b'{\n    "error": "Internal server error"\n}'
                keep_alive = keep_alive and not self._closing
                await self._send(writer, status, response_headers, payload, close=not keep_alive,
                                 head=method == "HEAD")
                self._connections[writer] = False
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._connections.pop(writer, None)
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                pass

    @staticmethod
    async def _send(writer, status, headers, body: bytes, close: bool, head: bool = False) -> None:
        lines = [f"HTTP/1.1 {status} {reason(status)}"]
        lines += [f"{name}: {value}" for name, value in headers]
        lines.append(f"Content-Length: {len(body)}")
        if close:
            lines.append("Connection: close")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else body))
        await writer.drain()
