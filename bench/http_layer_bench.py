"""The HTTP/1.1 layer alone: the embedded server's own layer (serving/httpserver.py) against the same loop built on
h11 (the library pinned in the stack), both with a trivial handler, under the same wrk load.

    python -m bench.http_layer_bench [--duration 5] [--concurrency 32] [--rounds 3]

Each layer runs in its own process; wrk (Debian's ``wrk``) POSTs a body of the size of a one-image predict request
over keep-alive connections. Prints requests/s, wrk's p50, the server's CPU time per request and the load
generator's share of the machine's CPU (their medians over the rounds) and the command. This measures what a port could gain at most: the layer's own cost per
request, without JSON, tensors or the model.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys

from bench import children, load, reproduce
from core.signals import sigterm_as_interrupt
from pipeline.flags import positive_int

BODY_BYTES = 3300            # a one-image predict_images request of a 48x48 PNG, base64 in JSON
ANSWER = b'{"predictions": [{"top_scores": [0.5, 0.2, 0.1], "top_letters": ["a", "b", "c"]}]}' * 6
LAYERS = ("own", "h11")


async def handler(method, target, headers, body):
    return 200, [("Content-Type", "application/json")], ANSWER


class H11Server:
    """The embedded server's connection loop (keep-alive, pipelining, bodies, a response per request) on h11."""

    def __init__(self, handler, host: str, port: int):
        self.handler, self.host, self.port = handler, host, port

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._client, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _client(self, reader, writer):
        import h11

        connection = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
        try:
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    connection.receive_data(await reader.read(256 * 1024))
                    continue
                if not isinstance(event, h11.Request):
                    return
                request, parts = event, []
                while not isinstance(event := connection.next_event(), h11.EndOfMessage):
                    if event is h11.NEED_DATA:
                        connection.receive_data(await reader.read(256 * 1024))
                    elif isinstance(event, h11.Data):
                        parts.append(event.data)
                    else:
                        return
                headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in request.headers}
                status, response_headers, payload = await self.handler(
                    request.method.decode("latin-1"), request.target.decode("latin-1"), headers, b"".join(parts))
                response = h11.Response(status_code=status,
                                        headers=response_headers + [("Content-Length", str(len(payload)))])
                writer.write(connection.send(response) + connection.send(h11.Data(data=payload))
                             + connection.send(h11.EndOfMessage()))
                await writer.drain()
                if connection.our_state is h11.MUST_CLOSE:
                    return
                connection.start_next_cycle()
        except (ConnectionError, h11.RemoteProtocolError):
            pass
        finally:
            writer.close()


def serve(layer: str) -> None:
    """Runs one layer until killed; prints its port."""
    from serving.httpserver import HttpServer

    async def main():
        server = HttpServer(handler, "127.0.0.1", 0, 64 * 1024 * 1024) if layer == "own" else \
            H11Server(handler, "127.0.0.1", 0)
        print(await server.start(), flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def measure(layer: str, duration: float, concurrency: int) -> load.Result:
    with children.started([sys.executable, "-m", "bench.http_layer_bench", "--serve", layer], grace=10,
                          stdout=subprocess.PIPE, text=True) as process:   # stopped at the end of the block
        port = int(process.stdout.readline())
        body = b'{"x": "' + b"a" * (BODY_BYTES - 9) + b'"}'
        load.wrk(f"http://127.0.0.1:{port}/", body, concurrency, 1.0)                  # warm-up
        return load.wrk(f"http://127.0.0.1:{port}/", body, concurrency, duration, server_pid=process.pid)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=load.whole_seconds, default=5, help="whole seconds of load per round")
    parser.add_argument("--concurrency", type=positive_int, default=32)
    parser.add_argument("--rounds", type=positive_int, default=3)
    parser.add_argument("--serve", choices=LAYERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    return compare(args, argv)


@sigterm_as_interrupt()   # a stopped bench (timeout, kill) stops its servers and wrk as Ctrl-C does
def compare(args: argparse.Namespace, argv) -> int:
    """Both layers under the same load, ``--rounds`` times; prints their medians and the command."""
    load.require_wrk()
    results = {layer: [] for layer in LAYERS}
    for _ in range(args.rounds):          # interleaved, so a noisy spell hits both
        for layer in LAYERS:
            results[layer].append(measure(layer, args.duration, args.concurrency))
    for layer, runs in results.items():
        print(f"{layer:>4}: {load.summary(runs)}")
    own, h11 = (statistics.median(r.rps for r in results[layer]) for layer in LAYERS)
    print(f"own / h11 requests/s: {own / h11:.2f} (medians of {args.rounds} rounds of {args.duration:g} s, "
          f"{args.concurrency} connections; {os.cpu_count()} CPUs shared with whatever else runs)")
    print("reproduce: " + reproduce.command("bench.http_layer_bench", argv, python=sys.executable))
    return 0


if __name__ == "__main__":
    sys.exit(main())
