"""The Trainer step (``Trainer(run_fn='models.trainer.run_fn')``): train the network (models.network.build_model) on
transformed examples.

Hyperparameters come from the Trainer's ``custom_config`` (filled from :class:`core.configs.Config`).
Augmentation runs in the training input pipeline only; evaluation and serving see the images as they are.
"""
from __future__ import annotations

import json
import os
import time

import core  # noqa: F401  (fixes the Keras mode before TensorFlow loads)
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging

from models import export, network, warm_start
from core import configs
from core.configs import Config
from core.labels import NUM_CLASSES
from core.signals import stop_if_requested

TRAINING_SUMMARY_FILE = "training_summary.json"


def hyperparameters(custom_config: dict | None) -> Config:
    """The Config the pipeline passed in ``custom_config`` (unknown keys are refused)."""
    fields = dict(custom_config or {})
    fields.pop("code", None)  # the code fingerprint only serves the cache
    fields.pop("base_model_digest", None)  # so does the base model's (its path comes as fn_args.base_model)
    fields.pop(configs.TRAINER_STAGE_KEY, None)  # which training this is only names it in the output (run_fn)
    fields.pop("split", None)  # recorded for the next run's gate (local_runner.gate_after_a_split_change)
    return Config().replace(**fields)


def _files(patterns) -> list[str]:
    files = []
    for pattern in patterns:
        files += tf.io.gfile.glob(pattern)
    if not files:
        raise ValueError(f"no transformed examples match {patterns}")
    return sorted(files)


def make_dataset(patterns, tf_transform_output, batch_size: int, training: bool, hp: Config,
                 examples: int | None = None) -> tf.data.Dataset:
    """The split's (image, one-hot label) batches; for training shuffled over the whole split (``examples``
    records, counted when not given), augmented, in an order new each epoch. The ExampleGen writes a split class
    by class, so a shuffle buffer smaller than the split (it had been 4,096 records) gave each epoch's batches the
    first classes first and the last ones last."""
    spec = tf_transform_output.transformed_feature_spec()
    spec = {k: spec[k] for k in (configs.TRANSFORMED_IMAGE_KEY, configs.TRANSFORMED_LABEL_KEY)}

    def parse(records):
        parsed = tf.io.parse_example(records, spec)
        image = tf.reshape(parsed[configs.TRANSFORMED_IMAGE_KEY], [-1, hp.image_size, hp.image_size, 1])
        return image, tf.one_hot(tf.reshape(parsed[configs.TRANSFORMED_LABEL_KEY], [-1]), NUM_CLASSES)

    ds = tf.data.TFRecordDataset(_files(patterns), compression_type="GZIP")
    ds = ds.batch(256).map(parse, num_parallel_calls=tf.data.AUTOTUNE).unbatch().cache()
    if training:
        buffer = count_examples(patterns) if examples is None else examples
        ds = ds.shuffle(max(buffer, 1), seed=hp.seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if training:
        ds = augmented(ds, hp)
    return ds.prefetch(tf.data.AUTOTUNE)


def augmented(batches: tf.data.Dataset, hp: Config) -> tf.data.Dataset:
    """The batches through :func:`augment` when ``hp.augment``, one batch at a time: the random ops draw in
    batch order, so one seed gives one training run (mapped in parallel, batches drew from the random stream in
    whatever order their threads ran, and two runs of one seed differed by up to 0.19 in a probability)."""
    return batches.map(lambda x, y: augment(x, y, hp)) if hp.augment else batches


def augment(images: tf.Tensor, labels: tf.Tensor, hp: Config) -> tuple[tf.Tensor, tf.Tensor]:
    """The training-time augmentation of a batch (images [N, S, S, 1], one-hot labels [N, 27]), as configured."""
    images = network.augment_batch(images, hp.augment_rotation_deg, hp.augment_scale, hp.augment_shift,
                                   hp.augment_aspect)
    images = network.vary_thickness(images, hp.augment_thickness)
    images = network.erase_patches(images, hp.augment_erase)
    return network.cut_mix(images, labels, hp.augment_cutmix)


class SharpnessAware(tf.keras.Model):
    """A network trained by sharpness-aware minimisation (SAM, Foret et al. 2021): each step takes the gradient
    where the loss is ``rho`` (in weight norm) uphill of the weights, so training settles where the loss is flat
    around them. Two forward and backward passes a step. Built as ``SharpnessAware(inputs, outputs, rho=…)``;
    it saves, loads and predicts as the plain network."""

    def __init__(self, *args, rho: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.rho = rho

    def train_step(self, data):
        images, labels = data
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            predicted = self(images, training=True)
            loss = self.compiled_loss(labels, predicted, regularization_losses=self.losses)
        gradients = tape.gradient(loss, variables)
        scale = self.rho / (tf.linalg.global_norm(gradients) + 1e-12)
        uphill = [g * scale for g in gradients]
        for variable, step in zip(variables, uphill):
            variable.assign_add(step)
        with tf.GradientTape() as tape:   # the loss object itself: the loss reported is the step's own
            there = self.loss(labels, self(images, training=True)) + tf.add_n([0.0] + self.losses)
        gradients = tape.gradient(there, variables)
        for variable, step in zip(variables, uphill):
            variable.assign_sub(step)
        self.optimizer.apply_gradients(zip(gradients, variables))
        self.compiled_metrics.update_state(labels, predicted)
        return {metric.name: metric.result() for metric in self.metrics}


def compiled_model(hp: Config, steps: int) -> tf.keras.Model:
    """The network with its optimizer (Adam, cosine decay over ``steps`` batches) and label-smoothed loss;
    trained sharpness-aware (:class:`SharpnessAware`) when ``hp.sam_rho`` > 0."""
    model = network.build_model(hp.architecture, hp.image_size, hp.dropout, hp.conv_widths)
    if hp.sam_rho:
        model = SharpnessAware(model.inputs, model.outputs, name=model.name, rho=hp.sam_rho)
    schedule = tf.keras.optimizers.schedules.CosineDecay(hp.learning_rate, decay_steps=max(1, steps))
    model.compile(optimizer=tf.keras.optimizers.Adam(schedule),
                  loss=tf.keras.losses.CategoricalCrossentropy(label_smoothing=hp.label_smoothing),
                  metrics=["accuracy"])
    return model


class _EpochLog(tf.keras.callbacks.Callback):
    """One line per epoch, visible in the runner's output; and the end of training at the next batch once a stop
    was asked for (Ctrl-C, SIGTERM), also when its KeyboardInterrupt was lost in a weakref callback, where CPython
    drops it: training had run on to its last epoch, and the run past the Evaluator."""

    def __init__(self, epochs: int, name: str = "Trainer"):
        super().__init__()
        self.epochs, self.name = epochs, name
        self.started = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        stop_if_requested()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        print(f"{self.name}: epoch {epoch + 1}/{self.epochs} loss {logs.get('loss', float('nan')):.3f} "
              f"acc {logs.get('accuracy', float('nan')):.3f} val_acc {logs.get('val_accuracy', float('nan')):.3f} "
              f"({time.monotonic() - self.started:.0f} s)", flush=True)


def count_examples(patterns) -> int:
    """Records in the files, counted without parsing (so no augmentation is run to count)."""
    return int(tf.data.TFRecordDataset(_files(patterns), compression_type="GZIP").reduce(
        0, lambda count, _: count + 1))


def budget(train_patterns, hp: Config) -> configs.TrainingBudget:
    """Epochs and steps for this training split: ``hp.epochs``, or sized from its examples when 0."""
    return configs.config_budget(count_examples(train_patterns), hp)


def train(train_patterns, eval_patterns, tf_transform_output, hp: Config, base_model: str | None = None,
          name: str = "Trainer"):
    """Trains for the budget (cosine decay over exactly its steps), from the network of ``base_model`` (an
    exported letters model) when given, else from a random start; returns (model, history, budget). ``name``
    begins its output lines."""
    tf.keras.utils.set_random_seed(hp.seed)
    plan = budget(train_patterns, hp)
    print(f"{name}: {plan.describe()}", flush=True)
    logging.info("%s", plan.describe())
    train_ds = make_dataset(train_patterns, tf_transform_output, hp.batch_size, True, hp, plan.train_images)
    # Its length told: without it Keras finds the first epoch's end by a call past its data, which the optimizer
    # counts as a step, so the schedule ran a step ahead and the last batch trained at a learning rate of 0
    train_ds = train_ds.apply(tf.data.experimental.assert_cardinality(plan.steps_per_epoch))
    eval_ds = make_dataset(eval_patterns, tf_transform_output, 256, False, hp)
    model = compiled_model(hp, steps=plan.steps)
    if base_model:
        model.set_weights(warm_start.network_weights(base_model, hp))
        print(f"{name}: starting from the network of {warm_start.model_dir(base_model)}", flush=True)
    history = model.fit(train_ds, validation_data=eval_ds, epochs=plan.epochs, verbose=0,
                        callbacks=[_EpochLog(plan.epochs, name)])
    return model, history, plan


def run_fn(fn_args) -> None:
    """TFX Trainer entry point."""
    hp = hyperparameters(fn_args.custom_config)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    started = time.monotonic()
    pretraining = (fn_args.custom_config or {}).get(configs.TRAINER_STAGE_KEY) == "pretraining"
    model, history, plan = train(fn_args.train_files, fn_args.eval_files, tf_transform_output, hp,
                                 base_model=fn_args.base_model, name="Pretrainer" if pretraining else "Trainer")
    trained = time.monotonic()   # the export (tens of seconds) is not training time
    export.export_model(model, tf_transform_output, fn_args.serving_model_dir)
    summary = {
        "epochs": plan.epochs,
        "steps": plan.steps,
        "train_examples": plan.train_images,
        "budget": plan.basis,
        "base_model": warm_start.model_dir(fn_args.base_model) if fn_args.base_model else "",
        "train_seconds": round(trained - started, 1),
        "export_seconds": round(time.monotonic() - trained, 1),
        "parameters": int(model.count_params()),
        "final": {k: float(v[-1]) for k, v in history.history.items()},
    }
    logging.info("training summary: %s", summary)
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, TRAINING_SUMMARY_FILE), "w") as f:
        f.write(json.dumps(summary, indent=2))
