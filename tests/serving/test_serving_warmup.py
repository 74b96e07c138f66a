"""Warm-up records (assets.extra/tf_serving_warmup_requests) are replayed on load, as TF Serving does."""
import numpy as np
import pytest

from core import configs
from core import warmup
from serving import versions
from tests.support import serving as testing
from serving.status import ServingError


def model_with_warmup(tmp_path, requests):
    path = testing.build_tiny_model(str(tmp_path / "1"))
    warmup.write_requests(path, configs.MODEL_NAME, requests)
    return path


def test_records_round_trip_and_replay_on_load(tmp_path):
    image = np.array([testing.png_bytes(90)], dtype=object)
    example = np.array([testing.example_bytes(testing.png_bytes(90))], dtype=object)
    path = model_with_warmup(tmp_path, [(configs.IMAGE_SIGNATURE, {configs.IMAGE_INPUT: image}),
                                        (configs.SERVING_DEFAULT_SIGNATURE, {configs.EXAMPLES_INPUT: example})])
    requests = warmup.read_requests(path)
    assert [name for name, _ in requests] == [configs.IMAGE_SIGNATURE, configs.SERVING_DEFAULT_SIGNATURE]
    assert requests[0][1][configs.IMAGE_INPUT].tolist() == image.tolist()
    servable = versions.Servable(configs.MODEL_NAME, 1, path)
    assert servable.warmup_requests == 2


def test_a_model_without_warmup_loads_without_replay(tmp_path):
    servable = versions.Servable(configs.MODEL_NAME, 1, testing.build_tiny_model(str(tmp_path / "1")))
    assert servable.warmup_requests == 0


def test_a_failing_warmup_request_fails_the_load(tmp_path):
    path = model_with_warmup(tmp_path, [(configs.IMAGE_SIGNATURE,
                                         {configs.IMAGE_INPUT: np.array([b"not an image"], dtype=object)})])
    with pytest.raises(ServingError):
        versions.Servable(configs.MODEL_NAME, 1, path)
