"""``create_pipeline()``: the one definition of the letters pipeline, used by every runner.

ImageExampleGen → StatisticsGen → SchemaGen → ExampleValidator → Transform → Trainer (from the network of
an imported base model when ``--base-model`` is given, or of a pretrainer: ExampleGen → StatisticsGen → SchemaGen
→ Transform → Trainer over ``pretrain_root``, else from a random start) → Resolver (latest blessed model) +
Evaluator (accuracy floor, no worse than the last blessed model, per-class slices) → ServingValidator (the
candidate answers real requests in a TF Serving-compatible server) → Pusher (atomic, into a TF Serving model
directory).
"""
from __future__ import annotations

import json

import core  # noqa: F401  (fixes the Keras mode before TensorFlow loads)
import tensorflow_data_validation as tfdv
import tensorflow_model_analysis as tfma
# Each class from its own module: ``tfx.v1`` imports every extension (the Vertex AI client alone takes
# seconds), and no runner of this pipeline needs them.
from tfx.components.evaluator.component import Evaluator
from tfx.components.example_validator.component import ExampleValidator
from tfx.components.schema_gen.component import SchemaGen
from tfx.components.statistics_gen.component import StatisticsGen
from tfx.components.trainer.component import Trainer
from tfx.components.transform.component import Transform
from tfx.dsl.components.common.importer import Importer
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import LatestBlessedModelStrategy
from tfx.orchestration.pipeline import Pipeline
from tfx.proto import trainer_pb2
from tfx.types import Channel, standard_artifacts

from components.atomic_pusher import AtomicPusher
from components.image_example_gen import ImageExampleGen
from components.serving_validator import ServingValidator
from pipeline.code_fingerprint import fingerprint
from pipeline.flags import is_url
from core import configs
from core.configs import TOP3_METRIC, Config

# Trainer hyperparameters passed through custom_config (models.trainer.hyperparameters reads them back).
TRAINING_FIELDS = ("image_size", "epochs", "batch_size", "learning_rate", "dropout", "architecture", "conv_widths",
                   "augment", "augment_rotation_deg", "augment_scale", "augment_shift", "augment_aspect",
                   "augment_thickness", "augment_erase", "augment_cutmix", "label_smoothing", "sam_rho", "seed")
METRICS_MODULE = "models.metrics"   # the Evaluator's own Keras metrics
# The modules Transform and Trainer run; their import closures are the components' code cache keys.
TRANSFORM_MODULE = "models.preprocessing"
TRAINER_MODULE = "models.trainer"
EXAMPLE_GEN_MODULE = "components.image_example_gen"   # its executor: how images are read and split
SERVING_VALIDATOR_MODULE = "components.serving_validator"   # the check, and the embedded server it runs
PRETRAINER_NODE = "pretrainer"   # the Trainer whose network the run's own Trainer starts from (pretrain_root)


GATE_SLACK = 1e-6   # TFMA's accuracies are float32 sums: 180/200 − 182/200 came out as −0.0100000 and a bit


def eval_config(config: Config) -> tfma.EvalConfig:
    """The blessing gate: top-1 accuracy ≥ the floor and ≥ the last blessed model's − max_regression (each within
    :data:`GATE_SLACK`, so that a model exactly at a bound passes whatever float32 rounding made of it)."""
    threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": config.accuracy_floor - GATE_SLACK}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -config.max_regression - GATE_SLACK}))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name=configs.SERVING_DEFAULT_SIGNATURE,
                                    label_key=configs.LABEL_KEY,
                                    prediction_key=configs.PROBABILITIES_OUTPUT)],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[configs.LABEL_NAME_KEY])],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            # The gate is on the overall slice; per-class slices are reported, not gated.
            tfma.MetricConfig(class_name="SparseCategoricalAccuracy", per_slice_thresholds=[
                tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)]),
            # Ties broken by class order, as the served top_indices: Keras' own counts every class tied at the
            # 3rd score, a model answering one class for everything having top-3 accuracy 1.
            tfma.MetricConfig(class_name="StrictSparseTopKCategoricalAccuracy", module=METRICS_MODULE,
                              config=json.dumps({"k": 3, "name": TOP3_METRIC})),
            tfma.MetricConfig(class_name="ExampleCount"),
        ])])


def base_model_key(path: str) -> dict:
    """The base model's content hash for the Trainer's cache key (the Importer keys on the path alone, so a
    model changed in place would otherwise hit the cache); nothing for a remote path, read only at run time."""
    if not path or is_url(path):
        return {}
    from models import warm_start
    return {"base_model_digest": warm_start.digest(path)}


def split_text(config: Config) -> str:
    """The split as recorded with each model: its buckets and what is hashed (each image's pixels; a model
    recorded without "by pixels" was split by the images' bytes, so the next run's eval split differs)."""
    return f"{config.train_buckets}:{config.eval_buckets} by pixels"


def training(config: Config, transform: Transform, schema, base_model=None, pretraining: bool = False) -> Trainer:
    """A Trainer of the transformed examples; ``pretraining``: of ``generate_epochs`` epochs, named so in its
    output (``configs.TRAINER_STAGE_KEY``)."""
    fields = {name: getattr(config, name) for name in TRAINING_FIELDS}
    fields["split"] = split_text(config)   # recorded: the next run's gate compares on the same split only
    if pretraining or config.epochs_generated:   # generate_epochs, which its budget line says (not "chosen")
        fields.update({"epochs": config.generate_epochs, "epochs_generated": True})
    if pretraining:
        fields[configs.TRAINER_STAGE_KEY] = "pretraining"
    return Trainer(
        run_fn=f"{TRAINER_MODULE}.run_fn",
        base_model=base_model,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema,
        train_args=trainer_pb2.TrainArgs(splits=[configs.TRAIN_SPLIT]),
        eval_args=trainer_pb2.EvalArgs(splits=[configs.EVAL_SPLIT]),
        custom_config={**fields, "code": fingerprint(TRAINER_MODULE), **base_model_key(config.base_model)})


def transformation(config: Config, examples, schema) -> Transform:
    """The Transform of an ExampleGen's examples (``models.preprocessing``; its graph is exported with the model)."""
    return Transform(
        examples=examples, schema=schema, preprocessing_fn=f"{TRANSFORM_MODULE}.preprocessing_fn",
        custom_config={"image_size": config.image_size, "code": fingerprint(TRANSFORM_MODULE)})


def image_examples(config: Config, input_base: str, **options) -> ImageExampleGen:
    """The ImageExampleGen of a folder-per-class data root, with the Config's split and file limits."""
    return ImageExampleGen(
        input_base=input_base, train_buckets=config.train_buckets, eval_buckets=config.eval_buckets,
        max_file_bytes=config.max_file_bytes, max_image_pixels=config.max_image_pixels,
        feedback_repeat=config.feedback_repeat, code=fingerprint(EXAMPLE_GEN_MODULE), **options)


def pretraining(config: Config, fingerprint_folders: bool = True) -> list:
    """ExampleGen → StatisticsGen → SchemaGen → Transform → Trainer over ``config.pretrain_root``
    (``generate_epochs`` epochs): the network the run's own Trainer starts from. Its own schema, so that new data
    of the run's own (feedback, another data root) leaves it cached. Measured (docs/measurements.md): starting
    from a network of the built-in generated letters gained about a point on writers never seen."""
    examples = image_examples(config, config.pretrain_root,
                              fingerprint_folders=fingerprint_folders).with_id("pretrain_example_gen")
    statistics, schema = statistics_and_schema(examples, id_prefix="pretrain_")
    transform = transformation(config, examples.outputs["examples"],
                               schema.outputs["schema"]).with_id("pretrain_transform")
    trainer = training(config, transform, schema.outputs["schema"], pretraining=True).with_id(PRETRAINER_NODE)
    return [examples, statistics, schema, transform, trainer]


def statistics_and_schema(example_gen, id_prefix: str = "") -> tuple[StatisticsGen, SchemaGen]:
    """StatisticsGen and SchemaGen of an ExampleGen's examples (ids ``<id_prefix>statistics_gen``, … when a prefix
    is given). Semantic-domain stats recognise image_raw as images (format, size) instead of opaque bytes, and
    SchemaGen then marks it with an image_domain."""
    statistics_gen = StatisticsGen(
        examples=example_gen.outputs["examples"],
        stats_options=tfdv.StatsOptions(enable_semantic_domain_stats=True))
    if id_prefix:
        statistics_gen = statistics_gen.with_id(f"{id_prefix}statistics_gen")
    schema_gen = SchemaGen(statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
    return statistics_gen, schema_gen.with_id(f"{id_prefix}schema_gen") if id_prefix else schema_gen


def create_pipeline(config: Config, beam_pipeline_args: list[str] | None = None,
                    metadata_connection_config=None, enable_cache: bool = True,
                    with_pusher: bool = True, feedback_root: str | None = None,
                    with_serving_validation: bool = True, fingerprint_folders: bool = True) -> Pipeline:
    """``feedback_root``: users' corrections exported as ``<class>/<image>`` (always in the train split);
    ``fingerprint_folders`` False when the folders are read only at run time (a compiled Kubeflow spec).

    ``with_serving_validation``: before pushing, serve the candidate in the embedded TF Serving-compatible
    server and send it eval images over REST (works locally and in a cluster, unlike InfraValidator).
    """
    example_gen = image_examples(config, config.data_root, feedback_root=feedback_root,
                                 fingerprint_folders=fingerprint_folders)
    statistics_gen, schema_gen = statistics_and_schema(example_gen)
    example_validator = ExampleValidator(statistics=statistics_gen.outputs["statistics"],
                                                        schema=schema_gen.outputs["schema"])
    transform = transformation(config, example_gen.outputs["examples"], schema_gen.outputs["schema"])
    start, base_model = [], None   # the components giving the network the Trainer starts from, if not random
    if config.base_model:   # an exported letters model the Trainer starts from (its lineage is in ML Metadata)
        importer = Importer(source_uri=config.base_model,
                            artifact_type=standard_artifacts.Model).with_id("base_model_importer")
        start, base_model = [importer], importer.outputs["result"]
    elif config.pretrain_root:
        start = pretraining(config, fingerprint_folders)
        base_model = start[-1].outputs["model"]
    trainer = training(config, transform, schema_gen.outputs["schema"], base_model=base_model)
    model_resolver = Resolver(
        strategy_class=LatestBlessedModelStrategy,
        model=Channel(type=standard_artifacts.Model),
        model_blessing=Channel(type=standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    evaluator = Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        eval_config=eval_config(config),
        example_splits=[configs.EVAL_SPLIT])
    components = [example_gen, statistics_gen, schema_gen, example_validator, transform,
                  *start, trainer, model_resolver, evaluator]
    infra_blessing = None
    if with_serving_validation:
        serving_validator = ServingValidator(model=trainer.outputs["model"],
                                             examples=example_gen.outputs["examples"],
                                             model_blessing=evaluator.outputs["blessing"],
                                             code=fingerprint(SERVING_VALIDATOR_MODULE))
        components.append(serving_validator)
        infra_blessing = serving_validator.outputs["blessing"]
    if with_pusher:
        components.append(AtomicPusher(model=trainer.outputs["model"],
                                       model_blessing=evaluator.outputs["blessing"],
                                       infra_blessing=infra_blessing,
                                       base_directory=config.serving_dir,
                                       every_run=fingerprint_folders))
    return Pipeline(
        pipeline_name=configs.PIPELINE_NAME,
        pipeline_root=config.pipeline_root,
        components=components,
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args or [],
    )
