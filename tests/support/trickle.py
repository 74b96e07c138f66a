"""A client or server that sends its bytes one at a time: each read on the other side completes well within
its socket timeout, so only a deadline on the whole exchange stops it (slowloris, a trickled answer)."""
import time


def trickle(sock, data: bytes, pause: float, seconds: float = float("inf"), stop=None) -> bool:
    """Sends ``data`` a byte every ``pause`` seconds, for at most ``seconds`` or until ``stop`` (an Event) is set
    or the socket is closed; whether all of it was sent."""
    started = time.monotonic()
    for byte in data:
        if time.monotonic() - started > seconds or (stop is not None and stop.is_set()):
            return False
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return False
        time.sleep(pause)
    return True
