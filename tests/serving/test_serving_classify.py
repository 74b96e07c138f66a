"""classify / regress on signatures shaped for them (one input named "inputs"; classes/scores, outputs)."""
import pytest

from tests.support import serving as testing


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("scorer") / "scorer"

    testing.save_scorer(str(base / "1"))
    with testing.start_server(str(base), model_name="scorer") as running:
        yield testing.RestClient(running.url)


def test_classify(server):
    status, body = server.post("/v1/models/scorer:classify", {"examples": [{"x": 0.25}, {"x": 1.0}]})
    assert status == 200
    assert body == {"results": [[["yes", 0.25], ["no", 0.75]], [["yes", 1.0], ["no", 0.0]]]}


def test_regress_with_context(server):
    status, body = server.post("/v1/models/scorer:regress", {"signature_name": "regress_x", "context": {"tag": "bonus"},
                                                             "examples": [{"x": 1.5}, {"x": 2.0, "tag": "none"}]})
    assert (status, body) == (200, {"results": [13.0, 4.0]})


def test_wrong_shapes(server):
    status, body = server.post("/v1/models/scorer:regress", {"examples": [{"x": 1.0}]})
    assert status == 400 and body["error"] == "Expected one output Tensor."
    status, body = server.post("/v1/models/scorer:classify", {"examples": [{"x": 1.0, "tag": 3.5}]})
    assert status == 400
    status, body = server.post("/v1/models/scorer:classify", {"examples": [{"x": [1.0, "a"]}]})
    assert (status, body) == (400, {"error": "Unexpected element type in feature: x expecting type: float"})
