"""ModelRouter against a scripted TF Serving: label fallbacks, version races, error mapping (no server needed)."""
import pytest

from core.labels import CLASS_NAMES, GLYPHS
from serving.client import ServingUnavailable
from tests.conftest import letter_image, png_bytes
from web.tfserving import BadServingResponse, ModelRouter, ServingRejected, parse_top3


def metadata(version):
    return 200, {"model_spec": {"name": "letters", "signature_name": "", "version": str(version)}, "metadata": {}}


def prediction(index=1):
    probabilities = [0.0] * 27
    probabilities[index], probabilities[0], probabilities[2] = 0.7, 0.2, 0.1
    return 200, {"predictions": [{"top_indices": [index, 0, 2], "top_scores": [0.7, 0.2, 0.1],
                                  "top_classes": [CLASS_NAMES[index], "alef", "gimel"],
                                  "top_letters": [GLYPHS[index], "א", "ג"], "probabilities": probabilities}]}


class Scripted:
    """Answers (method, path) from a dict of lists (consumed in order; the last answer repeats)."""

    def __init__(self, script):
        self.script = {key: list(value) for key, value in script.items()}
        self.calls = []

    def request(self, method, path, body=None):
        self.calls.append((method, path))
        answers = self.script[(method, path)]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


M = "/v1/models/letters"


def router(script, **kw):
    return ModelRouter(Scripted(script), "letters", **kw)


def test_unknown_label_falls_back_to_latest():
    r = router({("GET", f"{M}/labels/stable/metadata"): [(400, {"error": "Unrecognized servable version label: stable"})],
                ("GET", f"{M}/metadata"): [metadata(7)],
                ("POST", f"{M}/versions/7:predict"): [prediction()]})
    answer = r.predict(b"png")
    assert (answer.version, answer.route, answer.requested_route) == (7, "latest", "stable")
    assert "not configured" in answer.fallback_reason
    r.predict(b"png")   # the resolution is cached
    assert r.connection.calls.count(("GET", f"{M}/metadata")) == 1


def test_label_on_an_unloaded_version_falls_back():
    r = router({("GET", f"{M}/labels/canary/metadata"): [(404, {"error": "Servable not found for request: "
                                                                         "Specific(letters, 9)"})],
                ("GET", f"{M}/metadata"): [metadata(3)],
                ("POST", f"{M}/versions/3:predict"): [prediction()]}, canary_share=1.0)
    answer = r.predict(b"png")
    assert (answer.version, answer.route, answer.requested_route) == (3, "latest", "canary")
    assert "not loaded" in answer.fallback_reason


def test_version_unloaded_after_resolution_is_resolved_again():
    r = router({("GET", f"{M}/labels/stable/metadata"): [metadata(1), metadata(2)],
                ("POST", f"{M}/versions/1:predict"): [(404, {"error": "Servable not found for request: "
                                                                       "Specific(letters, 1)"})],
                ("POST", f"{M}/versions/2:predict"): [prediction()]}, cache_seconds=60)
    answer = r.predict(b"png")
    assert (answer.version, answer.route) == (2, "stable")


@pytest.mark.parametrize("answer, error, reason", [
    ((404, {"error": "Could not find any versions of model letters"}), ServingUnavailable, "model_not_loaded"),
    ((503, {"error": "overloaded"}), ServingUnavailable, "serving_error"),
    ((500, None), ServingUnavailable, "serving_error"),
    ((429, {"error": "Resource exhausted"}), ServingUnavailable, "serving_error"),
    ((200, {"model_spec": {}}), BadServingResponse, None),
    ((200, {"model_spec": {"version": float("inf")}}), BadServingResponse, None),
    ((200, {"model_spec": {"version": -1}}), BadServingResponse, None),
    (ServingUnavailable("serving_unreachable", "refused"), ServingUnavailable, "serving_unreachable"),
])
def test_resolution_errors(answer, error, reason):
    r = router({("GET", f"{M}/labels/stable/metadata"): [answer]})
    with pytest.raises(error) as caught:
        r.predict(b"png")
    if reason:
        assert caught.value.reason == reason


def test_predict_errors():
    base = {("GET", f"{M}/labels/stable/metadata"): [metadata(1)]}
    r = router({**base, ("POST", f"{M}/versions/1:predict"): [(400, {"error": "Invalid PNG data"})]})
    with pytest.raises(ServingRejected, match="Invalid PNG"):
        r.predict(b"png")
    r = router({**base, ("POST", f"{M}/versions/1:predict"): [
        (400, {"error": 'Serving signature name: "predict_images" not found in signature def'})]})
    with pytest.raises(BadServingResponse, match="signature"):
        r.predict(b"png")
    r = router({**base, ("POST", f"{M}/versions/1:predict"): [(504, {"error": "deadline"})]})
    with pytest.raises(ServingUnavailable) as caught:
        r.predict(b"png")
    assert caught.value.status == 504


@pytest.mark.parametrize("status, error, answered", [
    (429, "Resource exhausted: the batch queue is full", 429),   # RESOURCE_EXHAUSTED
    (409, "Aborted", 503),                                       # ABORTED
    (499, "Cancelled", 503),                                     # CANCELLED
    (403, "Forbidden", 503),                                     # a proxy in front of it
    (401, "Unauthorized", 503),
    (413, "Request body of 72041976 bytes exceeds the limit", 503),
])
def test_only_a_400_blames_the_image_other_refusals_are_the_servers_trouble(tmp_path, status, error, answered):
    """TF Serving's 4xx other than 400 (INVALID_ARGUMENT and the like, about the input) and 404 say nothing of the
    image: the web client answers as for a server in trouble (try again), not "the model could not read this
    image"."""
    from web.config import WebConfig
    from web.server import ApiError, Backend

    r = router({("GET", f"{M}/labels/stable/metadata"): [metadata(1)],
                ("POST", f"{M}/versions/1:predict"): [(status, {"error": error})]})
    backend = Backend(WebConfig(feedback_dir=str(tmp_path / "feedback")), router=r)
    try:
        with pytest.raises(ApiError) as caught:
            backend.predict(png_bytes(letter_image(40, 40)), "stable")
    finally:
        backend.close()
    assert (caught.value.status, caught.value.reason) == (answered, "serving_error")
    assert error in caught.value.message and "Try again later." in caught.value.message
    assert "could not read this image" not in caught.value.message


@pytest.mark.parametrize("status, error, answered, serving", [
    (429, "Resource exhausted: the batch queue is full", 429, "busy"),
    (503, "overloaded", 503, "down"),
    (504, "Timed out waiting for notification", 504, "slow"),   # DEADLINE_EXCEEDED
])
def test_the_status_route_says_busy_when_tf_serving_is(tmp_path, status, error, answered, serving):
    """TF Serving's 429 on the status route is a busy server, as predict says, not one that is down; its 504 (no
    answer in time) a slow one."""
    from web.config import WebConfig
    from web.server import Backend

    backend = Backend(WebConfig(feedback_dir=str(tmp_path / "feedback")),
                      router=router({("GET", M): [(status, {"error": error})]}))
    try:
        code, body = backend.status()
    finally:
        backend.close()
    assert (code, body["serving"]) == (answered, serving)
    assert error in body["error"] and ("is busy" in body["error"]) == (serving == "busy")
    assert ("is slow" in body["error"]) == (serving == "slow") and ("down" in body["error"]) == (serving == "down")


def test_the_status_route_says_a_loading_model_as_predict_says_it(tmp_path):
    """TF Serving answers, its one version LOADING: the model server is up without the model, as predict says
    (model_not_loaded), not down (it had been "The model server is down: it has no available version")."""
    from web.config import WebConfig
    from web.server import Backend

    loading = {"model_version_status": [{"version": "3", "state": "LOADING",
                                         "status": {"error_code": "OK", "error_message": ""}}]}
    backend = Backend(WebConfig(feedback_dir=str(tmp_path / "feedback")), router=router({("GET", M): [(200, loading)]}))
    try:
        code, body = backend.status()
    finally:
        backend.close()
    assert (code, body["serving"], body["reason"]) == (503, "down", "model_not_loaded")
    assert body["versions"] == [{"version": "3", "state": "LOADING"}]
    assert body["error"] == ("The model server answers but cannot serve the model: TF Serving has no available "
                             "version of model 'letters' (version 3 LOADING).")


def test_a_refusal_by_the_model_is_said_in_tensorflows_words_without_graph_nodes():
    from serving.status import own_words
    assert own_words("Invalid PNG. Failed to initialize decoder.\n\t [[{{node map/while/decode_image/"
                             "DecodeImage}}]]") == "Invalid PNG. Failed to initialize decoder."
    assert own_words("{{function_node __wrapped__DecodeImage_device_/job:localhost/replica:0/task:0/device:"
                             "CPU:0}} Invalid JPEG data or crop window. [Op:DecodeImage] name: ") \
        == "Invalid JPEG data or crop window. [Op:DecodeImage] name:"
    assert own_words("Invalid PNG data") == "Invalid PNG data"


def test_parse_top3_checks_the_contract():
    assert [e["class"] for e in parse_top3(prediction(26)[1])] == ["tav", "alef", "gimel"]
    rounded = parse_top3({"predictions": [{"top_indices": [1, 2, 3], "top_scores": [1.00005, 0.0, -0.00001]}]})
    assert [e["probability"] for e in rounded] == [1.0, 0.0, 0.0]   # a float's rounding, which feedback takes back
    probabilities = [0.01] * 27
    probabilities[5] = 0.74
    assert parse_top3({"predictions": [{"probabilities": probabilities}]})[0]["class"] == "vav"
    for bad in ({}, {"predictions": []}, {"predictions": [[0.1, 0.2]]},
                {"predictions": [{"top_indices": [27], "top_scores": [1.0]}]},
                {"predictions": [{"probabilities": [0.5, 0.5]}]},
                {"predictions": [{"probabilities": ["0.5"] * 27}]}, {"predictions": [{"probabilities": [True] * 27}]},
                {"predictions": [{"top_indices": [1, 2, 3], "top_scores": ["0.5", 0.2, 0.1]}]},
                # TF Serving writes a non-finite float as a bare NaN or Infinity: no probability, no class index
                {"predictions": [{"top_indices": [1, 2, 3], "top_scores": [float("nan"), 0.1, 0.1]}]},
                {"predictions": [{"top_indices": [1, 2, 3], "top_scores": [-5, 7, 0.1]}]},
                {"predictions": [{"top_indices": [float("inf"), 2, 3], "top_scores": [0.5, 0.2, 0.1]}]},
                {"predictions": [{"probabilities": [float("inf")] + [0.0] * 26}]}):
        with pytest.raises(BadServingResponse):
            parse_top3(bad)


def _row(probabilities, indices, scores):
    return {"predictions": [{"probabilities": probabilities, "top_indices": indices, "top_scores": scores}]}


def _distribution(size, best=(1, 0, 2), scores=(0.7, 0.2, 0.1)):
    probabilities = [0.0] * size
    for index, score in zip(best, scores):
        probabilities[index] = score
    return probabilities


@pytest.mark.parametrize("answer, why", [
    (_row(_distribution(10), [1, 0, 2], [0.7, 0.2, 0.1]), "are 10 numbers, not one for each of the 27 classes"),
    (_row(_distribution(30), [1, 0, 2], [0.7, 0.2, 0.1]), "are 30 numbers, not one for each of the 27 classes"),
    (_row(_distribution(27), [1, 1, 1], [0.7, 0.7, 0.7]), "repeat a class"),
    (_row(_distribution(27, (2, 0, 1)), [2, 0, 1], [0.1, 0.2, 0.7]), "not best first"),
    (_row([0.9] * 27, [1, 0, 2], [0.9, 0.9, 0.9]), "sum to 24.3, not 1"),
    (_row(_distribution(27), [1.7, 0, 2], [0.7, 0.2, 0.1]), "1.7 is not an index of the 27 classes"),
    (_row(_distribution(27), [1, 0, 2], [0.9, 0.05, 0.05]), "not the probabilities of its top classes"),
    (_row(_distribution(27, (1, 0, 2, 3), (0.4, 0.2, 0.1, 0.3)), [1, 0, 2], [0.4, 0.2, 0.1]),
     "leave out a class of higher probability"),
    (_row(_distribution(27), [1, 0], [0.7, 0.2, 0.1]), "not two lists of the same length"),
    ({"predictions": [{"top_indices": [1, 0, 2], "top_scores": [0.7, 0.6, 0.5]}]}, "sum to 1.8, over 1"),
    ({"predictions": [{**_row(_distribution(27), [1, 0, 2], [0.7, 0.2, 0.1])["predictions"][0],
                       "top_classes": ["alef", "bet", "gimel"]}]}, "top_classes .* are not those of its top classes"),
    ({"predictions": [{**_row(_distribution(27), [1, 0, 2], [0.7, 0.2, 0.1])["predictions"][0],
                       "top_letters": ["ב", "א"]}]}, "top_letters .* are not those of its top classes"),
])
def test_an_answer_that_breaks_the_27_class_contract_is_refused_with_the_reason(answer, why):
    """Another model's answer (10 or 30 classes), top classes repeated, not best first, not integral, or not the
    probabilities' top: refused (a 502), not shown as a prediction with the 27 letters' names put on its indices."""
    with pytest.raises(BadServingResponse, match=why):
        parse_top3(answer)


def test_the_models_own_answer_and_float_rounding_stay_valid():
    """A float32 softmax's sum is 1 within its rounding; top_k's ties keep the lower index first."""
    probabilities = [0.037037037] * 27      # sums to 0.999999999
    top = parse_top3(_row(probabilities, [0, 1, 2], [0.037037037] * 3))
    assert [e["index"] for e in top] == [0, 1, 2]
    probabilities = _distribution(27, (4, 9, 3), (0.5000004, 0.3, 0.19999))
    assert [e["class"] for e in parse_top3(_row(probabilities, [4, 9, 3], [0.5000004, 0.3, 0.19999]))] == \
        ["he", "yod", "dalet"]
