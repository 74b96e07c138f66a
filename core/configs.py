"""Every setting of the project, in one place.

Each field of :class:`Config` can be overridden by an environment variable ``LETTERS_<FIELD>`` (upper case)
and, for the runners, by a command-line flag. Names that other modules share (feature keys, signature names)
are module constants: they are part of the model's contract, not settings.
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

from core import settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent   # the checkout; site-packages in an installed copy
# Where the default folders are (data/generated, outputs/…, serving/models/letters): the checkout, or in an
# installed copy (no pyproject.toml beside the packages: `pip install .`, the image) the current directory.
WORK_ROOT = PROJECT_ROOT if (PROJECT_ROOT / "pyproject.toml").is_file() else Path.cwd()

PIPELINE_NAME = "letters"
MODEL_NAME = "letters"

# Raw tf.Example features written by the image ExampleGen.
GENERATED_MANIFEST = "generated.json"   # what pipeline.generate_letters writes beside the class folders
IMAGE_KEY = "image_raw"        # encoded image bytes (PNG/JPEG/BMP/GIF as found; others re-encoded: core.image_io)
LABEL_KEY = "label"            # int64 index into core.labels.CLASS_NAMES
LABEL_NAME_KEY = "label_name"  # class folder name
SOURCE_KEY = "source"          # path relative to the data root
# Transformed features (output of Transform, input of the Keras model).
TRANSFORMED_IMAGE_KEY = "image"
TRANSFORMED_LABEL_KEY = "label"
TRAINER_STAGE_KEY = "stage"   # Trainer custom_config: "pretraining" names the pretrainer (pipeline.pipeline.pretraining)

# Exported signatures (the serving contract).
SERVING_DEFAULT_SIGNATURE = "serving_default"   # serialized tf.Example -> probabilities
EXAMPLES_INPUT = "examples"
IMAGE_SIGNATURE = "predict_images"              # raw encoded image bytes -> probabilities + top classes
IMAGE_INPUT = "images"
TRANSFORM_SIGNATURE = "transform_features"      # serialized tf.Example -> transformed features
PROBABILITIES_OUTPUT = "probabilities"
TOP_CLASSES_OUTPUT = "top_classes"              # class folder names, best first
TOP_LETTERS_OUTPUT = "top_letters"              # Hebrew glyphs, best first
TOP_SCORES_OUTPUT = "top_scores"
TOP_INDICES_OUTPUT = "top_indices"
# The embedded model server's default bound on one request (--max_request_bytes, its gRPC messages too): here, not in
# serving.config, so that a client (letters-batch-predict) reads it without loading TensorFlow.
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024

# An image whose ink (its grey composited over white, inverted) spans no more than this has no ink: the Transform
# (models.preprocessing.ink_crop) leaves it as it is, and core.image_io.check_image refuses it (no_ink).
MIN_CONTRAST = 0.08
# A decoded image with a longer side is first shrunk to it, its pixels averaged (models.preprocessing.shrunk), before
# the Transform's float work and core.image_io's ink check.
MAX_INK_SIDE = 1024

# The Evaluator's metrics, by their names in TFMA's output (their Keras names).
ACCURACY_METRIC = "sparse_categorical_accuracy"
TOP3_METRIC = "sparse_top_k_categorical_accuracy"

# Example splits produced by the ExampleGen.
TRAIN_SPLIT = "train"
EVAL_SPLIT = "eval"

INGEST_REPORT_FILE = "ingest_report.json"


ARCHITECTURES = ("resnet", "vgg")   # models.network builds them


BEAM_MODES = ("in_memory", "multi_processing", "multi_threading")   # the DirectRunner's running modes


def check_architecture(name: str) -> str:
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    return name


DEFAULT_WIDTHS = {"resnet": "32,48,96,192", "vgg": "24,48,96,160"}   # channels per stage (models.network)


def check_network(architecture: str, image_size: int, widths: str = "") -> None:
    """ValueError for a network ``models.network`` cannot build, said before any data is read: a resnet needs a stem
    width and at least one stage width; each 2×2 max pooling needs at least 2 pixels (one after the resnet's stem,
    one after each VGG stage but the last)."""
    parsed = parse_widths(widths or DEFAULT_WIDTHS[check_architecture(architecture)])
    if architecture == "resnet" and len(parsed) < 2:
        raise ValueError(f"a resnet needs a stem width and at least one stage width, got conv widths {widths!r}")
    pools = 1 if architecture == "resnet" else len(parsed) - 1
    if image_size < 2 ** pools:
        raise ValueError(f"image size {image_size} is too small for the {architecture} with {len(parsed)} widths: its "
                         f"{pools} 2×2 poolings need at least {2 ** pools} px")


def parse_widths(text: str) -> tuple[int, ...]:
    """"32,48,96" → (32, 48, 96); ValueError unless positive integers separated by commas."""
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise ValueError(f"conv widths must be comma-separated integers, got {text!r}") from None
    if not widths or min(widths) < 1:
        raise ValueError(f"conv widths must be positive, got {text!r}")
    return widths


# The largest seed and split buckets training takes: tf.keras.utils.set_random_seed seeds numpy (0..2**32-1), and
# TFX's SplitConfig holds each split's hash buckets in a uint32.
UINT32_MAX = 2 ** 32 - 1
# The most epochs a run takes: far more than any run needs, and a step budget the schedule's int64 steps hold (a huge
# count had passed every check, been printed as the budget and failed in the Trainer, after the steps before it).
MAX_EPOCHS = 1_000_000

# (field, lowest, highest or None, lowest excluded): what Config accepts, from flags and LETTERS_<FIELD> alike.
_RANGES = (
    [(name, 1, None, False) for name in ("generate_per_class", "generate_epochs", "max_file_bytes",
                                          "max_image_pixels", "image_size", "batch_size")]
    + [(name, 1, UINT32_MAX, False) for name in ("train_buckets", "eval_buckets")]
    + [("seed", 0, UINT32_MAX, False)]
    + [(name, 0, None, False) for name in ("generate_seed", "feedback_repeat", "beam_workers",
                                           "augment_rotation_deg")]
    + [("epochs", 0, MAX_EPOCHS, False)]
    + [("learning_rate", 0, None, True), ("dropout", 0, 0.95, False), ("label_smoothing", 0, 0.5, False),
       ("sam_rho", 0, 1, False),
       ("augment_scale", 0, 0.9, False), ("augment_shift", 0, 0.5, False), ("augment_aspect", 0, 0.9, False),
       ("augment_thickness", 0, 1, False), ("augment_erase", 0, 1, False), ("augment_cutmix", 0, 1, False),
       ("accuracy_floor", 0, 1, False), ("max_regression", 0, 1, False)]
    + [(name, 0, 1, False) for name in ("monitor_label_js", "monitor_label_linf", "monitor_feature_js",
                                        "monitor_feature_linf", "monitor_low_confidence",
                                        "monitor_max_low_confidence_share", "monitor_min_accuracy",
                                        "monitor_max_unusable", "monitor_max_error_share")]
    + [(name, 1, None, False) for name in ("monitor_min_requests", "monitor_min_feedback")]
    + [("monitor_max_latency_ms", 0, None, True)])


@dataclasses.dataclass(frozen=True)
class Config:
    """Run settings. Defaults are sized so ``make demo`` finishes in a few minutes on 2 CPU cores."""

    data_root: str = str(WORK_ROOT / "data" / "generated")
    pipeline_root: str = str(WORK_ROOT / "outputs" / "pipeline")
    metadata_path: str = ""  # default: <pipeline_root>/metadata.sqlite
    serving_dir: str = str(WORK_ROOT / "serving" / "models" / MODEL_NAME)
    feedback_dir: str = str(WORK_ROOT / "outputs" / "feedback")   # the web client's feedback store
    request_log_dir: str = str(WORK_ROOT / "outputs" / "request_logs")   # make demo's web client logs here

    # Data generation (built-in default data).
    generate_per_class: int = 200        # simulated writers, each writing all 27 letters: the 4:1 split trains
                                         # on about 160 (make demo's model +0.6 on real letters against 160;
                                         # 250 no more: docs/measurements.md)
    generate_seed: int = 1234
    generate_epochs: int = 12            # their epochs unless chosen: more do not help on them (docs/measurements.md)

    # Ingestion.
    train_buckets: int = 4          # train:eval = 4:1, by a hash of the image bytes
    eval_buckets: int = 1
    feedback_repeat: int = 0        # each feedback image this many times in the train split; 0 = feedback_copies
    max_file_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000   # decompression-bomb guard (width * height)

    # Transform.
    image_size: int = 48

    # Trainer.
    epochs: int = 0                      # 0 = sized from the number of training images (training_budget)
    epochs_generated: bool = False       # epochs is generate_epochs, not chosen (generated_budget, a pretraining);
                                         # no variable or flag sets it
    batch_size: int = 32                 # twice the steps of 64 at about the same cost per epoch (docs/measurements.md)
    learning_rate: float = 2e-3
    dropout: float = 0.3
    architecture: str = "resnet"         # one of ARCHITECTURES
    conv_widths: str = ""                # channels per stage, comma-separated ("" = the architecture's default)
    base_model: str = ""                 # an exported letters model whose network training starts from ("" = random)
    pretrain_root: str = ""              # letters (folder per class) the network first trains on, generate_epochs
                                         # epochs, in the same run; local runs on your data: the built-in generated ones
    augment: bool = True
    augment_rotation_deg: float = 12.0
    augment_scale: float = 0.15
    augment_shift: float = 0.1
    augment_aspect: float = 0.3          # height:width changed by shrinking one side to exp(-0.3) = 0.74 at most
    augment_thickness: float = 0.3       # share of training images whose strokes are thickened or thinned
    augment_erase: float = 0.3           # share of training images with a random square blanked out
    augment_cutmix: float = 0.0          # share of training images given a box of another one (CutMix, labels mixed)
    label_smoothing: float = 0.1
    sam_rho: float = 0.0                 # > 0: sharpness-aware steps (each gradient taken this far uphill; 2× cost)
    seed: int = 42

    # Evaluator gate.
    accuracy_floor: float = 0.5          # absolute: top-1 accuracy on the eval split must be at least this
    max_regression: float = 0.01         # relative to the last blessed model: at most this much worse

    # Monitoring (pipeline.monitor): thresholds a window of served traffic is judged by.
    monitor_label_js: float = 0.1        # predicted classes vs the eval split's labels: Jensen-Shannon divergence
    monitor_label_linf: float = 0.2      # ... and L-infinity distance (largest difference of one class's share)
    monitor_feature_js: float = 0.1      # image features (size, ink, intensity) vs training: Jensen-Shannon
    monitor_feature_linf: float = 0.2    # image format vs training: L-infinity distance
    monitor_low_confidence: float = 0.5  # a top-1 score below this is a low-confidence answer
    monitor_max_low_confidence_share: float = 0.3
    monitor_min_accuracy: float = 0.75   # live accuracy (feedback): alarm when the Wilson interval is all below it
    # Fewer answers in a window: its distributions are shown, not judged. TFDV's Jensen-Shannon on 27 classes counts
    # every class a small window happens to miss: 50 answers drawn like the eval labels crossed 0.1 in 12 of 15
    # draws (median 0.116), 100 in none (0.050); image features 13 of 40 at 50, none at 100.
    monitor_min_requests: int = 150
    monitor_min_feedback: int = 20       # fewer feedback rows for a version: its accuracy is shown, not judged
    # Answers the model gave that cannot be used (none, the wrong shape, NaN or infinity): the served model's fault,
    # so a window's share above this is an alarm whatever the window's size.
    monitor_max_unusable: float = 0.05
    monitor_max_error_share: float = 0.05   # failed requests / all requests (server metrics)
    monitor_max_latency_ms: float = 500.0   # 95th percentile of successful requests (server metrics)

    # Beam (DirectRunner).
    beam_mode: str = "in_memory"         # or multi_processing / multi_threading
    beam_workers: int = 0                # 0 = number of CPU cores (Kubeflow: the pod's CPU limit)

    def __post_init__(self):
        for name, low, high, low_open in _RANGES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < low or (low_open and value == low) or (high is not None and value > high):
                bound = f"> {low}" if low_open else f">= {low}"
                raise ValueError(f"{name} must be a number {bound}" + (f" and <= {high}" if high is not None else "")
                                 + f", got {value!r}")
        check_network(self.architecture, self.image_size, self.conv_widths)
        if self.beam_mode not in BEAM_MODES:   # a flag's choices do not check a default taken from LETTERS_BEAM_MODE
            raise ValueError(f"beam_mode must be one of {', '.join(BEAM_MODES)}, got {self.beam_mode!r}")

    @property
    def metadata_file(self) -> str:
        return self.metadata_path or os.path.join(self.pipeline_root, "metadata.sqlite")

    def replace(self, **changes) -> "Config":
        changes = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ=None) -> "Config":
        """Defaults overridden by ``LETTERS_<FIELD>`` environment variables."""
        return settings.from_env(cls, ENV, environ, PATH_FIELDS)


PATH_FIELDS = ("data_root", "pipeline_root", "metadata_path", "serving_dir", "feedback_dir", "request_log_dir",
               "base_model", "pretrain_root")   # local paths ("~" expanded), or URLs
RUN_FIELDS = ("epochs_generated",)   # what a run makes of the settings, not settings: no LETTERS_<FIELD> for them
ENV = {field.name: f"LETTERS_{field.name.upper()}" for field in dataclasses.fields(Config)
       if field.name not in RUN_FIELDS}


def default_feedback_dir(environ=None) -> str:
    """The feedback store a command reads without ``--feedback-dir``: ``$LETTERS_FEEDBACK_DIR`` or Config's."""
    environ = os.environ if environ is None else environ
    return os.path.expanduser(environ.get(ENV["feedback_dir"]) or Config().feedback_dir)


# The web client's settings (web.config.WebConfig), field -> environment variable: declared here, beside Config's,
# so that every variable the project reads is known at the bottom layer (core.settings warns of the others).
WEB_ENV = {
    "host": "LETTERS_WEB_HOST",
    "port": "LETTERS_WEB_PORT",
    "tf_serving_url": "LETTERS_TF_SERVING_URL",
    "model_name": "LETTERS_WEB_MODEL_NAME",
    "feedback_dir": ENV["feedback_dir"],   # the same store as the pipeline's Config.feedback_dir
    "canary_share": "LETTERS_CANARY_SHARE",
    "max_upload_bytes": "LETTERS_MAX_UPLOAD_BYTES",
    "max_image_pixels": ENV["max_image_pixels"],   # the same decompression-bomb guard as the pipeline's
    "max_file_bytes": ENV["max_file_bytes"],       # the pipeline's file limit: no feedback stored over it
    "pipeline_max_image_pixels": ENV["max_image_pixels"],   # the pipeline's pixel limit: no feedback stored over it
    "request_log_dir": "LETTERS_REQUEST_LOG_DIR",
    "request_log_sampling": "LETTERS_REQUEST_LOG_SAMPLING",
}
# The variables read outside the settings classes that none of them reads too (LETTERS_DATA_ROOT, which
# local_runner.py reads, is Config's; LETTERS_WEB_PORT, which pipeline/serve_demo.py reads, WebConfig's);
# serving.config's ServerOptions takes flags only.
DIRECT_ENV = (
    "LETTERS_KUBEFLOW_IMAGE",   # kubeflow_runner.py: the pipeline image (--image)
    "LETTERS_KUBEFLOW_FULL",    # tests/kubeflow/test_local_run.py: runs the whole compiled pipeline too
    "LETTERS_WEB_SCREENSHOT",   # tests/web/test_web_browser.py: where the page's screenshot goes
    "LETTERS_CHROMIUM",         # tests/web/test_web_browser.py: the browser
)
KNOWN_ENV = frozenset(DIRECT_ENV).union(ENV.values(), WEB_ENV.values())   # every LETTERS_* variable read


def warn_unknown_variables(environ=None) -> dict:
    """A warning on stderr for each ``LETTERS_*`` variable set that no setting reads (a misspelt name, with the known
    one it is closest to: did you mean LETTERS_EPOCHS?), returned so; every command calls it first."""
    return settings.warn_unknown_variables(KNOWN_ENV, environ)


# The training budget when Config.epochs is 0 (the default): one epoch per IMAGES_PER_EPOCH training images, within
# [MIN_EPOCHS, MAX_EPOCHS]. The cosine learning-rate decay always ends with the budget. Measured
# (docs/measurements.md): the HHD writer hold-out's 2,508 training letters get 18 epochs, within seed noise of 40
# epochs at less than half the time. The built-in generated letters are not sized: they train Config.generate_epochs
# (generated_budget).
IMAGES_PER_EPOCH = 140
MIN_EPOCHS = 12
MAX_EPOCHS = 40


def sized_epochs(train_images: int) -> int:
    """The rule: epochs for a training split of ``train_images`` images when none were chosen."""
    return min(MAX_EPOCHS, max(MIN_EPOCHS, round(train_images / IMAGES_PER_EPOCH)))


def budget_rule() -> str:
    return f"one epoch per {IMAGES_PER_EPOCH} training images, {MIN_EPOCHS} to {MAX_EPOCHS} epochs"


# Where a budget's epochs come from, as --summary-json's training "budget" says: sized_epochs; --epochs or
# LETTERS_EPOCHS; generate_epochs, the built-in generated letters' (and a pretraining's).
SIZED, CHOSEN, GENERATED = "sized", "chosen", "generated"


@dataclasses.dataclass(frozen=True)
class TrainingBudget:
    epochs: int
    steps_per_epoch: int
    train_images: int
    basis: str           # SIZED, CHOSEN or GENERATED

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def sized(self) -> bool:
        return self.basis == SIZED

    def describe(self, estimated: bool = False) -> str:
        """One line for the run's output, e.g. "training budget: 20 epochs × 45 steps = 900 steps (sized from
        2,835 training images; --epochs N to choose)". ``estimated``: the image count is the runner's estimate
        before the split (the Trainer sizes the budget again from the examples it gets)."""
        images = f"{'about ' if estimated else ''}{plural(self.train_images, 'training image')}"
        why = {SIZED: f"sized from {images}; --epochs N to choose", CHOSEN: f"epochs chosen; {images}",
               GENERATED: f"the generated letters' epochs, generate_epochs; {images}"}[self.basis]
        return (f"training budget: {plural(self.epochs, 'epoch')} × {plural(self.steps_per_epoch, 'step')} = "
                f"{plural(self.steps, 'step')} "
                f"({why})")


def plural(count: int, noun: str) -> str:
    """``count`` ``noun``s, the noun singular for one: ``1 epoch``, ``1,200 steps``."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def generated_budget(config: Config) -> Config:
    """``config`` for a run on the built-in generated letters: ``generate_epochs`` epochs unless some are chosen
    (their writers repeat six faces' shapes; measured, 24 epochs over 160 writers did no better than 12), said so
    by its budget (``epochs_generated``)."""
    return config if config.epochs else config.replace(epochs=config.generate_epochs, epochs_generated=True)


def training_budget(train_images: int, batch_size: int, epochs: int = 0, generated: bool = False) -> TrainingBudget:
    """The budget for ``train_images`` training images in batches of ``batch_size``: ``epochs`` when given
    (> 0; ``generated``: they are generate_epochs, not chosen), else :func:`sized_epochs`. Used by the Trainer and
    by the runner's first lines (:func:`config_budget`)."""
    if train_images < 0 or batch_size < 1 or epochs < 0:
        raise ValueError(f"no training budget for {train_images} images, batch {batch_size}, epochs {epochs}")
    return TrainingBudget(epochs=epochs or sized_epochs(train_images),
                          steps_per_epoch=max(1, math.ceil(train_images / batch_size)),
                          train_images=train_images, basis=(GENERATED if generated else CHOSEN) if epochs else SIZED)


def config_budget(train_images: int, config: Config) -> TrainingBudget:
    """:func:`training_budget` for ``train_images`` training images with ``config``'s batch size and epochs."""
    return training_budget(train_images, config.batch_size, config.epochs, config.epochs_generated)


# Feedback oversampling when Config.feedback_repeat is 0 (the default): each feedback image is written into the train
# split as many times as make the feedback about FEEDBACK_SHARE of the training images, 1 to MAX_FEEDBACK_REPEAT
# times. Measured (docs/measurements.md, "A handful of real letters"): 130 real letters (five per class) as the
# feedback of make demo's 160 simulated writers get 8 copies and read other writers at 0.821 against 0.797 once each
# (three seeds). Beside 80 simulated writers they get 7: 0.817 over two seeds, against 0.806 with the 4 that a quarter
# gave (once 0.776; 8 copies 0.815), the gate's eval split as high. 374 letters beside 160 writers get 4 copies: 0.837
# over two seeds, as with the 3 of a quarter (0.835; once 0.817), the eval split 0.932 against 0.934. More than that
# would outweigh the letters the gate's eval split is made of (374 letters with 8 copies: its top-1 0.930 against
# 0.940 once).
FEEDBACK_SHARE = 0.35
MAX_FEEDBACK_REPEAT = 8


def feedback_copies(repeat: int, main_train_images: int, feedback_images: int) -> int:
    """How many times each of ``feedback_images`` feedback images goes into the train split beside
    ``main_train_images`` others: ``repeat`` when chosen (> 0), else the rule above."""
    if repeat < 0 or main_train_images < 0 or feedback_images < 0:
        raise ValueError(f"no feedback copies for repeat {repeat}, {main_train_images} and {feedback_images} images")
    if repeat:
        return repeat
    if not feedback_images:
        return 1
    copies = int(FEEDBACK_SHARE * main_train_images / ((1 - FEEDBACK_SHARE) * feedback_images))
    return max(1, min(MAX_FEEDBACK_REPEAT, copies))


def feedback_rule() -> str:
    return (f"copies that make the feedback about {FEEDBACK_SHARE:.0%} of the training images, 1 to "
            f"{MAX_FEEDBACK_REPEAT} each")


# A data root with fewer images than this per class on average is small: the runner says that such letters do better
# as feedback beside the built-in generated letters. Measured (docs/measurements.md, "A handful of real letters"): 130
# real letters (five per class) read other writers at 0.821 that way against 0.800 as the data root (three seeds
# each).
SMALL_DATA_PER_CLASS = 10


DIRECT_RUNNER_IMAGE = "this-environment"   # read by no DirectRunner mode; see beam_pipeline_args


def beam_pipeline_args(config: Config) -> list[str]:
    """Beam DirectRunner options (local runs, and in-pod runs of the Kubeflow spec)."""
    # in_memory runs in this process: more workers would only be ignored. 0 = Beam uses the machine's CPU count;
    # kubeflow_runner.py replaces it with each pod's CPU limit (a pod sees the whole node's CPUs).
    workers = 1 if config.beam_mode == "in_memory" else config.beam_workers
    return [
        "--runner=DirectRunner",
        f"--direct_running_mode={config.beam_mode}",
        f"--direct_num_workers={workers}",
        # The DirectRunner's workers are this process or its children: every package is installed already. Without a
        # dependency option, each Beam executor of TFX copies TFX's sources and builds an sdist of them to ship to
        # remote workers (2.3 s per component on a quiet machine, 52 MB left in the temp folder every time); the
        # DirectRunner never reads this option, it only tells TFX the dependencies are provided.
        f"--sdk_container_image={DIRECT_RUNNER_IMAGE}",
    ]
