"""Settings of the web client. Each can come from a flag of ``letters-web`` or an environment variable."""
from __future__ import annotations

import dataclasses
import math

from core import configs, request_log, settings
from serving import client

DEFAULT_FEEDBACK_DIR = configs.Config().feedback_dir
ENV = configs.WEB_ENV   # field -> environment variable (declared in core, where every variable is known)
FEEDBACK_DIR_ENV = ENV["feedback_dir"]   # = the pipeline's Config.feedback_dir override
default_feedback_dir = configs.default_feedback_dir


@dataclasses.dataclass(frozen=True)
class WebConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    tf_serving_url: str = "http://127.0.0.1:8501"
    model_name: str = configs.MODEL_NAME
    feedback_dir: str = DEFAULT_FEEDBACK_DIR
    canary_share: float = 0.0            # share of predictions sent to the "canary" label (0..1)
    max_upload_bytes: int = 4 * 1024 * 1024   # encoded image size cap (the request body may be base64: 4/3 of it)
    max_image_pixels: int = configs.Config().max_image_pixels   # decompression-bomb guard, as the pipeline's
    # The pipeline's file limit: feedback whose exported file would be over it is refused (413), the pipeline
    # would never read it; predictions of larger uploads (up to max_upload_bytes) are answered
    max_file_bytes: int = configs.Config().max_file_bytes
    # The pipeline's pixel limit (LETTERS_MAX_IMAGE_PIXELS, as max_image_pixels but for no --max-image-pixels):
    # feedback over it is refused, the ExampleGen would skip it as a decompression bomb
    pipeline_max_image_pixels: int = configs.Config().max_image_pixels
    serving_timeout: float = 15.0        # seconds, per call to TF Serving
    version_cache_seconds: float = 2.0   # how long a resolved label -> version is reused
    max_handler_threads: int = 64        # connections handled at once (a new one closes an idle keep-alive one;
                                         # with none idle for idle_grace, it waits in the listen queue)
    # Seconds a kept-alive connection must have waited for its next request before a new connection may close it for
    # room: a client sending requests back to back sends the next one a round trip after its answer (milliseconds;
    # the page's requests are a user's clicks apart), while a new connection waits at most this long for the room of
    # a client really gone quiet.
    idle_grace: float = 1.0
    idle_timeout: float = 30.0           # seconds a connection may send nothing (idle keep-alive, stalled body)
    request_timeout: float = 30.0        # seconds from a request's first byte to its last (head and body), then 408
    request_log_dir: str = ""            # PredictionLog TFRecords of the predictions ("" = no request log)
    request_log_sampling: float = 1.0    # share of the predictions logged (0..1)

    def __post_init__(self):
        if not 0.0 <= self.canary_share <= 1.0:
            raise ValueError(f"canary share must be between 0 and 1, got {self.canary_share}")
        for name in ("idle_timeout", "request_timeout", "serving_timeout", "version_cache_seconds", "idle_grace"):
            value = getattr(self, name)
            if not (math.isfinite(value) and (value > 0 or name in ("version_cache_seconds", "idle_grace")
                                              and value == 0)):
                raise ValueError(f"{name.replace('_', ' ')} must be a finite number of seconds > 0, got {value}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535 (0 = any free port), got {self.port}")
        for name in ("max_upload_bytes", "max_image_pixels", "max_file_bytes", "pipeline_max_image_pixels",
                     "max_handler_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', ' ')} must be at least 1, got {getattr(self, name)}")
        try:
            client.parse_base_url(self.tf_serving_url)   # what the backend's connection to TF Serving accepts
        except ValueError as err:
            raise ValueError(f"TF Serving URL {err}") from None
        if not self.model_name or "/" in self.model_name or ":" in self.model_name:
            raise ValueError(f"invalid model name {self.model_name!r}")
        request_log.check_sampling_rate(self.request_log_sampling, "request log sampling")
        if refusal := settings.url_refusal(self.request_log_dir):   # gs://b/x had been written to ./gs:/b/x
            raise ValueError(f"request log folder {refusal}")

    @property
    def max_body_bytes(self) -> int:
        """Largest request body accepted: a base64 JSON of the largest image, plus room for the other fields."""
        return self.max_upload_bytes * 4 // 3 + 64 * 1024

    def replace(self, **changes) -> "WebConfig":
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_env(cls, environ=None) -> "WebConfig":
        """Defaults overridden by the environment variables of :data:`ENV`."""
        return settings.from_env(cls, ENV, environ, ("feedback_dir", "request_log_dir"))
