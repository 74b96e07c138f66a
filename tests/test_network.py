"""The networks (ResNet and VGG-style CNN) and the training-time augmentations."""
import numpy as np
import pytest
import tensorflow as tf

from models import network, trainer
from core import configs
from pipeline.pipeline import TRAINING_FIELDS


def stroke_batch(n=8, size=48):
    x = np.zeros((n, size, size, 1), np.float32)
    x[:, 10:38, 22:26] = 1.0
    return tf.constant(x)


def test_cnn_outputs_a_distribution_over_27_classes():
    model = network.build_cnn(48, 0.3, network.parse_widths("8,16,24,32"))
    out = model(stroke_batch(), training=False).numpy()
    assert out.shape == (8, 27)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("architecture", network.ARCHITECTURES)
def test_each_architecture_builds_with_its_default_or_given_widths(architecture):
    model = network.build_model(architecture, 48, 0.3, "")
    assert model.output_shape == (None, 27)
    assert model.count_params() < 1_000_000          # small enough to answer in milliseconds on a CPU
    small = network.build_model(architecture, 40, 0.3, "8,16,24")
    assert small.count_params() < model.count_params() / 10
    np.testing.assert_allclose(small(stroke_batch(size=40), training=False).numpy().sum(axis=1), 1.0, atol=1e-5)


def test_resnet_stages_halve_the_resolution_and_add_shortcuts():
    model = network.build_resnet(48, 0.3, (8, 16, 24, 32))
    adds = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.Add)]
    assert [tuple(layer.output_shape[1:3]) for layer in adds] == [(24, 24), (12, 12), (6, 6)]
    with pytest.raises(ValueError, match="unknown architecture"):
        network.build_model("lenet", 48)
    with pytest.raises(ValueError, match="stage width"):
        network.build_resnet(48, 0.3, (8,))


def test_affine_augmentation_is_mild_and_identity_without_range():
    x = stroke_batch()
    same = network.augment_batch(x, 0.0, 0.0, 0.0).numpy()
    np.testing.assert_allclose(same, x.numpy(), atol=1e-5)
    moved = network.augment_batch(x, 12.0, 0.15, 0.1).numpy()
    assert moved.shape == x.shape and moved.min() >= 0 and moved.max() <= 1.0 + 1e-6
    mass = moved.reshape(8, -1).sum(axis=1) / x.numpy().reshape(8, -1).sum(axis=1)
    assert (mass > 0.6).all() and (mass < 1.6).all()        # the letter stays in the frame


def test_aspect_change_shrinks_one_side_and_keeps_a_fitted_letter_in_the_square():
    bar = np.zeros((400, 48, 48, 1), np.float32)
    bar[:, 1:47, 20:28] = 1.0                     # a ו fitted to the square: it fills the height
    out = network.augment_batch(tf.constant(bar), 0.0, 0.0, 0.0, aspect=0.4).numpy()[..., 0] > 0.5
    rows, cols = out.any(axis=2).sum(axis=1), out.any(axis=1).sum(axis=1)
    assert not out[:, 0].any() and not out[:, -1].any()         # never stretched out of the square
    assert rows.max() >= 45 and rows.min() <= 46 * np.exp(-0.3)  # lowered by up to exp(-0.4), or left whole
    lower, narrower = rows < 45, cols < 8
    assert not (lower & narrower).any()                          # one side shrunk, never both
    # Each side about half the time; a small shrink of the 8-px-wide bar often still covers 8 columns, so fewer
    # are seen narrower (0.29-0.40 in 30 batches of 400) than lower (0.44-0.50).
    assert 0.3 < lower.mean() < 0.7 and 0.2 < narrower.mean() < 0.7
    same = network.augment_batch(tf.constant(bar), 0.0, 0.0, 0.0, aspect=0.0).numpy()
    np.testing.assert_allclose(same, bar, atol=1e-5)


def test_thickness_and_erasing():
    x = stroke_batch(n=400)
    ink = float(tf.reduce_sum(x[0]))
    varied = network.vary_thickness(x, 1.0).numpy().reshape(400, -1).sum(axis=1)
    assert ((varied > ink * 1.3) | (varied < ink * 0.7)).all()   # every image thicker or thinner
    assert 0.35 < (varied > ink).mean() < 0.65                    # about half each way
    erased = network.erase_patches(tf.ones((400, 48, 48, 1)), 0.5).numpy()
    blanked = (erased.reshape(400, -1) == 0).any(axis=1)
    assert 0.4 < blanked.mean() < 0.6
    assert (erased.reshape(400, -1) == 0).sum(axis=1).max() <= 12 * 12 + 1
    np.testing.assert_array_equal(network.vary_thickness(x, 0.0).numpy(), x.numpy())


def test_cut_mix_mixes_labels_by_the_pasted_area():
    n, size = 64, 48
    # Image i is filled with the value i + 1 and labelled i, so each pixel tells which image it came from.
    images = tf.reshape(tf.range(1, n + 1, dtype=tf.float32), [n, 1, 1, 1]) * tf.ones([n, size, size, 1])
    labels = tf.one_hot(tf.range(n), n)
    mixed, mixed_labels = (t.numpy() for t in network.cut_mix(images, labels, share=1.0))
    np.testing.assert_allclose(mixed_labels.sum(axis=1), 1.0, rtol=1e-6)
    pasted_any = 0
    for i in range(n):
        values, counts = np.unique(mixed[i], return_counts=True)
        shares = dict(zip(values.astype(int) - 1, counts / size ** 2))
        assert set(shares) <= {i} | set(np.flatnonzero(mixed_labels[i]))
        for source, share in shares.items():
            assert mixed_labels[i, source] == pytest.approx(share, abs=1e-6)
        assert shares.get(i, 0) >= 0.3 - 1e-6         # the box covers at most 70 % of the image
        pasted_any += shares.get(i, 0) < 1
    assert pasted_any > n // 2
    kept, kept_labels = network.cut_mix(images, labels, share=0.0)
    assert kept is images and kept_labels is labels


def test_every_training_setting_reaches_the_trainer():
    config = configs.Config(epochs=7, label_smoothing=0.05, sam_rho=0.1, augment_erase=0.0, augment_cutmix=0.4, conv_widths="8,16",
                            architecture="vgg")
    custom = {name: getattr(config, name) for name in TRAINING_FIELDS}
    custom["code"] = "abc"
    hp = trainer.hyperparameters(custom)
    assert all(getattr(hp, name) == getattr(config, name) for name in TRAINING_FIELDS)


def test_a_sharpness_aware_step_takes_the_gradient_rho_uphill_and_keeps_the_weights_it_had():
    """One step of SGD (learning rate 0.5) on a one-layer network: the update is the gradient at the weights moved
    rho along the normalised gradient, applied to the weights as they were (not to the moved ones)."""
    tf.keras.utils.set_random_seed(3)
    inputs = tf.keras.Input(shape=(4,))
    outputs = tf.keras.layers.Dense(3, activation="softmax")(inputs)
    model = trainer.SharpnessAware(inputs, outputs, rho=0.3)
    loss = tf.keras.losses.CategoricalCrossentropy()
    model.compile(optimizer=tf.keras.optimizers.SGD(0.5), loss=loss)
    x = tf.constant(np.random.default_rng(0).normal(size=(6, 4)), tf.float32)
    y = tf.one_hot([0, 1, 2, 0, 1, 2], 3)
    before = [v.numpy() for v in model.trainable_variables]

    def gradient_at(weights):
        for variable, value in zip(model.trainable_variables, weights):
            variable.assign(value)
        with tf.GradientTape() as tape:
            value = loss(y, model(x, training=True))
        return [g.numpy() for g in tape.gradient(value, model.trainable_variables)]

    g = gradient_at(before)
    norm = np.sqrt(sum((gi ** 2).sum() for gi in g))
    uphill = gradient_at([w + 0.3 * gi / norm for w, gi in zip(before, g)])
    expected = [w - 0.5 * gi for w, gi in zip(before, uphill)]
    plain = [w - 0.5 * gi for w, gi in zip(before, g)]
    for variable, value in zip(model.trainable_variables, before):
        variable.assign(value)
    model.train_on_batch(x, y)
    after = [v.numpy() for v in model.trainable_variables]
    for got, want in zip(after, expected):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert max(np.abs(a - p).max() for a, p in zip(after, plain)) > 1e-3   # not the plain step


def test_the_trainer_trains_sharpness_aware_only_when_asked():
    plain = trainer.compiled_model(configs.Config(conv_widths="8,16"), steps=10)
    sam = trainer.compiled_model(configs.Config(conv_widths="8,16", sam_rho=0.05), steps=10)
    assert not isinstance(plain, trainer.SharpnessAware)
    assert isinstance(sam, trainer.SharpnessAware) and sam.rho == 0.05
    assert [w.shape for w in sam.get_weights()] == [w.shape for w in plain.get_weights()]
    with pytest.raises(ValueError, match="sam_rho"):
        configs.Config(sam_rho=-0.1)


def test_autograph_leaves_keras_alone_and_still_converts_project_code():
    """models.network adds tf_keras to AutoGraph's do-not-convert list (TensorFlow's names only ``keras``):
    Keras' internals run as written, while the project's own functions are still converted."""
    from tensorflow.python.autograph.core import config
    from tensorflow.python.autograph.impl import conversion

    from core import keras_mode

    assert conversion.is_allowlisted(tf.keras.layers.Dense.call)
    assert conversion.is_allowlisted(tf.keras.Model.predict_step)
    assert not conversion.is_allowlisted(network.augment_batch)
    rules = len(config.CONVERSION_RULES)
    keras_mode.skip_autograph_of_keras()          # idempotent
    assert len(config.CONVERSION_RULES) == rules


class _TransformOutput:
    """What make_dataset asks of a TFTransformOutput: the transformed features' spec."""

    def __init__(self, size):
        self.size = size

    def transformed_feature_spec(self):
        return {configs.TRANSFORMED_IMAGE_KEY: tf.io.FixedLenFeature([self.size * self.size], tf.float32),
                configs.TRANSFORMED_LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}


def write_transformed(path, n, size, grouped=False):
    """``n`` transformed examples (a stroke image, label i % 27, or with ``grouped`` class by class as the
    ExampleGen writes a split) in a GZIP TFRecord file, as Transform writes."""
    image = stroke_batch(1, size).numpy().reshape(-1)
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for i in range(n):
            label = i * 27 // n if grouped else i % 27
            example = tf.train.Example(features=tf.train.Features(feature={
                configs.TRANSFORMED_IMAGE_KEY: tf.train.Feature(float_list=tf.train.FloatList(value=image)),
                configs.TRANSFORMED_LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))}))
            writer.write(example.SerializeToString())
    return str(path)


def test_the_trainer_sizes_its_budget_from_the_examples_unless_epochs_are_chosen(tmp_path):
    files = [write_transformed(tmp_path / f"train-{i}.gz", n, 8) for i, n in enumerate((1500, 1300))]
    sized = trainer.budget([str(tmp_path / "train-*.gz")], configs.Config())
    assert sized == configs.training_budget(2800, 32)
    assert (sized.epochs, sized.steps_per_epoch, sized.sized) == (configs.sized_epochs(2800), 88, True)
    chosen = trainer.budget(files, configs.Config(epochs=5, batch_size=100))
    assert (chosen.epochs, chosen.steps, chosen.train_images, chosen.sized) == (5, 140, 2800, False)


def test_the_trainers_budget_says_generated_letters_epochs_are_theirs_not_chosen(tmp_path):
    """The built-in generated letters' Trainer, and every pretrainer, train generate_epochs: their budget had said
    "epochs chosen" (and --summary-json "budget": "chosen") where nobody chose any."""
    import json
    from pipeline import pipeline as pl
    files = [write_transformed(tmp_path / "train.gz", 90, 8)]
    (tmp_path / "data").mkdir()
    (tmp_path / "pre").mkdir()

    def budgets(config):
        trainers = {c.id: json.loads(c.exec_properties["custom_config"]) for c in pl.create_pipeline(config).components
                    if c.id in ("Trainer", pl.PRETRAINER_NODE)}
        return {name: (trainer.budget(files, trainer.hyperparameters(custom)).basis, "epochs_generated" in custom)
                for name, custom in trainers.items()}

    generated = configs.generated_budget(configs.Config(data_root=str(tmp_path / "data")))
    assert budgets(generated) == {"Trainer": (configs.GENERATED, True)}
    assert trainer.budget(files, generated).describe() == (
        "training budget: 12 epochs × 3 steps = 36 steps (the generated letters' epochs, generate_epochs; "
        "90 training images)")
    pretraining = configs.Config(data_root=str(tmp_path / "data"), pretrain_root=str(tmp_path / "pre"))
    assert budgets(pretraining) == {"Trainer": (configs.SIZED, False), pl.PRETRAINER_NODE: (configs.GENERATED, True)}
    # Chosen epochs keep their word, and their Trainer's cache key (nothing added to its custom_config).
    assert budgets(configs.generated_budget(configs.Config(data_root=str(tmp_path / "data"), epochs=12))) == {
        "Trainer": (configs.CHOSEN, False)}
    assert "LETTERS_EPOCHS_GENERATED" not in configs.KNOWN_ENV   # what the run makes of the settings, not one


def test_the_trainer_trains_for_its_budget_and_says_so(tmp_path, capsys):
    size, widths = 16, "4,8,8"
    train = write_transformed(tmp_path / "train.gz", 70, size)      # 3 steps of 32 per epoch
    evaluation = write_transformed(tmp_path / "eval.gz", 27, size)
    hp = configs.Config(image_size=size, conv_widths=widths, augment=False)
    model, history, plan = trainer.train([train], [evaluation], _TransformOutput(size), hp)
    assert (plan.epochs, plan.steps, plan.sized) == (configs.MIN_EPOCHS, 3 * configs.MIN_EPOCHS, True)
    assert len(history.history["loss"]) == plan.epochs
    schedule = model.optimizer._learning_rate                          # tf_keras keeps the schedule here
    assert schedule.decay_steps == plan.steps                          # the cosine decay ends with the budget
    # ... and each batch is a step of it: the end of each epoch's data had been counted as a step too, so the
    # schedule ran ahead by one step an epoch and its last batches trained at a learning rate of 0
    assert int(model.optimizer.iterations) == plan.steps
    out = capsys.readouterr().out
    assert f"Trainer: training budget: {plan.epochs} epochs × 3 steps = {plan.steps} steps (sized from 70 " \
           "training images; --epochs N to choose)" in out
    assert f"Trainer: epoch {plan.epochs}/{plan.epochs} " in out


def test_training_ends_at_the_next_batch_once_a_stop_was_asked_for(tmp_path, monkeypatch, capsys):
    """A Ctrl-C whose KeyboardInterrupt CPython dropped (in a weakref callback) is recorded: training stops at the
    next batch instead of running on to its last epoch."""
    import signal
    from core import signals

    size = 16
    train = write_transformed(tmp_path / "train.gz", 70, size)
    evaluation = write_transformed(tmp_path / "eval.gz", 27, size)
    hp = configs.Config(image_size=size, conv_widths="4,8,8", augment=False, epochs=3)
    batches = []

    class Recorded(tf.keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            batches.append(batch)
            if len(batches) == 2:
                monkeypatch.setattr(signals, "_stop_requested", int(signal.SIGINT))

    real_fit = tf.keras.Model.fit
    monkeypatch.setattr(tf.keras.Model, "fit", lambda self, *a, callbacks=(), **kw: real_fit(
        self, *a, callbacks=[Recorded(), *callbacks], **kw))
    with pytest.raises(KeyboardInterrupt):
        trainer.train([train], [evaluation], _TransformOutput(size), hp)
    assert batches == [0, 1] and "epoch 1/3" not in capsys.readouterr().out


def test_training_batches_are_drawn_from_every_class_of_a_split_written_class_by_class(tmp_path):
    """A split of 13,500 records written class by class (as the ExampleGen writes it) is shuffled whole: with a
    buffer of 4,096 records the first batch held only the first 8 classes."""
    size = 4
    train = write_transformed(tmp_path / "train.gz", 13_500, size, grouped=True)
    hp = configs.Config(image_size=size, augment=False)
    tf.keras.utils.set_random_seed(hp.seed)
    _, labels = next(iter(trainer.make_dataset([train], _TransformOutput(size), 64, True, hp)))
    classes = set(np.argmax(labels.numpy(), axis=1))
    assert max(classes) >= 20 and len(classes) >= 15, classes


def test_one_seed_draws_the_same_augmented_batches_every_time(tmp_path):
    size = 32
    train = write_transformed(tmp_path / "train.gz", 200, size)
    hp = configs.Config(image_size=size, augment_erase=0.5, augment_thickness=0.5)

    def batches():
        tf.keras.utils.set_random_seed(hp.seed)   # as the Trainer does before it builds its data
        return [x.numpy() for x, _ in trainer.make_dataset([train], _TransformOutput(size), 8, True, hp)]

    first, second = batches(), batches()
    assert len(first) == 25
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not np.array_equal(first[0], first[1])   # augmented: no two batches the same
