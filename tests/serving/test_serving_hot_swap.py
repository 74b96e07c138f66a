"""Hot swap under load: a bounded loopback load while new versions (and a broken one) appear; zero failures."""
import pytest
import json
import threading
import time

from core import configs
from serving.client import RestConnection
from tests.support import serving as testing
from tests.support.serving import b64

pytestmark = pytest.mark.slow   # a load test across four version swaps

PER_VERSION = 200     # answers each good version gives before the next one appears (a count, not a rate)
TIME_LIMIT_S = 240    # the whole test's deadline; a slow machine takes longer, never gets a weaker check
CLIENTS = 6


def test_hot_swap_under_load_has_zero_failures(tmp_path):
    base = str(tmp_path / "letters")
    for version in (1, 2, 4, 5):
        testing.tiny_model_dir(version)            # build before the clock starts
    testing.publish_version(base, 1)
    server = testing.start_server(base, subprocess=True, enable_batching=True, file_system_poll_wait_seconds=1,
                                  max_num_load_retries=0)
    body = json.dumps({"signature_name": configs.IMAGE_SIGNATURE,
                       "instances": [b64(testing.png_bytes(90))]}).encode()
    lock = threading.Lock()
    counts = {"ok": 0, "failed": 0}
    failures = []
    answered = {}
    stop = threading.Event()

    def client():
        connection = RestConnection(server.url, timeout=30, max_idle=1)   # one kept-alive connection
        while not stop.is_set():
            try:
                status, _, raw = connection.exchange("POST", "/v1/models/letters:predict", body,
                                                     {"Content-Type": "application/json"})
                ok = status == 200
                top = json.loads(raw)["predictions"][0]["top_indices"][0] if ok else None
            except Exception as exc:  # noqa: BLE001 - every failure is counted
                ok, raw, top = False, repr(exc).encode(), None
            with lock:
                if ok:
                    counts["ok"] += 1
                    answered[top] = answered.get(top, 0) + 1
                else:
                    counts["failed"] += 1
                    failures.append(raw[:300])
        connection.close()

    def status():
        return {int(v["version"]): v["state"]
                for v in testing.RestClient(server.url).get("/v1/models/letters")[1]["model_version_status"]}

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    started = time.monotonic()
    swaps = []

    def until(condition) -> bool:
        while not condition():
            if time.monotonic() - started > TIME_LIMIT_S or counts["failed"]:
                return False
            time.sleep(0.05)
        return True

    try:
        for thread in threads:
            thread.start()
        # version 2 replaces 1; broken 3 must not replace 2; 4 replaces 2; 5 replaces 4. Before each new
        # version appears, the serving one has answered PER_VERSION requests (version v ranks class v first).
        serving = 1
        for version, broken, retired in ((2, False, 1), (3, True, None), (4, False, 2), (5, False, 4)):
            until(lambda: answered.get(serving, 0) >= PER_VERSION)
            testing.publish_version(base, version, broken=broken)
            if broken:
                until(lambda: status().get(version) == "END")
            elif until(lambda: status().get(version) == "AVAILABLE" and status().get(retired) == "END"):
                swaps.append(version)
                serving = version
        until(lambda: answered.get(serving, 0) >= PER_VERSION)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        final = status()
        code = server.stop()
    elapsed = time.monotonic() - started
    print(f"\nhot swap: {counts['ok']} ok, {counts['failed']} failed in {elapsed:.1f}s "
          f"({counts['ok'] / elapsed:.0f} req/s); answers by top class {answered}; final states {final}")
    assert counts["failed"] == 0, failures[:5]
    assert swaps == [2, 4, 5]
    assert final[5] == "AVAILABLE" and final[3] == "END" and final[1] == final[2] == final[4] == "END"
    assert all(answered.get(v, 0) >= PER_VERSION for v in (1, 2, 4, 5)), answered
    assert 3 not in answered and set(answered) == {1, 2, 4, 5}
    assert code == 0   # graceful SIGTERM shutdown
