"""Starting the Trainer's network from an exported letters model (``--base-model``) instead of a random one.

The export (models.export) keeps the Keras network as the ``model`` attribute of the saved module, so its
variables sit in the SavedModel's checkpoint under ``model/…``: its weights only (models exported before
``export.serving_network`` also hold the optimizer's state there, left unread). Only the network's weights are
taken: the optimizer starts afresh, so the new run's learning-rate schedule runs over its own budget. Typical use:
train on generated letters (``make demo``), then on your own data starting from that network (README, "Your own
data").
"""
from __future__ import annotations

import hashlib
import os

import core  # noqa: F401  (fixes the Keras mode before TensorFlow loads)
import numpy as np
import tensorflow as tf

from core.configs import Config
from core.model_dirs import (INCOMPLETE, SAVED_MODEL, holds_saved_model, missing_variables_index, resolve_model_dir,
                              saved_model_file)
from models import network

_VARIABLES = os.path.join("variables", "variables")
_OBJECT_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"   # the checkpoint's key of its object graph, which a restore reads first
WHAT_TO_GIVE = ("give an exported letters model: a version folder <serving-dir>/<version>, or a serving dir that "
                "holds versions")


class BaseModelError(ValueError):
    """The base model is not an exported letters model, or its network differs from the one being trained."""


def model_dir(path: str) -> str:
    """The SavedModel folder ``path`` stands for: the folder itself (a pushed ``<serving-dir>/<version>``), or
    its parent when the Trainer got the path TFX derives from an imported Model artifact (``<uri>/Format-Serving``);
    either as a serving dir stands for its newest version (a remote --base-model is first read here, at run time)."""
    candidates = (path, os.path.dirname(path.rstrip("/")))
    for candidate in candidates:
        if holds_saved_model(candidate, tf.io.gfile):
            return candidate
    for candidate in candidates:
        try:
            return resolve_model_dir(candidate, tf.io.gfile)
        except (FileNotFoundError, tf.errors.OpError):
            continue
    raise BaseModelError(f"base model {path}: no {SAVED_MODEL} there; {WHAT_TO_GIVE}")


def digest(path: str) -> str:
    """A hash of the model's files (the graph and its variables), so a changed model at the same path is not
    mistaken for the one a cached Trainer run started from."""
    folder = model_dir(path)
    files = [saved_model_file(folder, tf.io.gfile)] + sorted(tf.io.gfile.glob(os.path.join(folder, _VARIABLES) + "*"))
    sha = hashlib.sha256()
    for name in files:
        with tf.io.gfile.GFile(name, "rb") as f:
            sha.update(os.path.basename(name).encode() + b"\0" + f.read())
    return sha.hexdigest()[:16]


def network_weights(path: str, hp: Config) -> list[np.ndarray]:
    """The weights of the base model's network, in the order of ``network.build_model(...)``'s for ``hp``.

    Raises BaseModelError when the folder holds no letters model, its variables cannot be read (none there: a
    copy caught halfway, or damaged or cut short), or its network is not the one ``hp`` builds (another
    architecture or channel widths)."""
    folder = model_dir(path)
    if missing_variables_index(folder, tf.io.gfile):
        raise BaseModelError(f"base model {folder} is {INCOMPLETE}: it holds no variables to start from")
    donor = network.build_model(hp.architecture, hp.image_size, hp.dropout, hp.conv_widths)
    what = f"the {hp.architecture} network" + (f" with channels {hp.conv_widths}" if hp.conv_widths else "")
    prefix = os.path.join(folder, _VARIABLES)
    stored = _network_shapes(prefix)
    wanted = sorted(tuple(w.shape) for w in donor.weights)
    if stored != wanted:   # checked first: a failed restore leaves TensorFlow to log every unread value at exit
        raise BaseModelError(f"base model {folder} does not hold {what} (the settings of this run): its network has "
                             f"{len(stored)} weight tensors, {_count(stored):,} values; this run's has "
                             f"{len(wanted)}, {_count(wanted):,}")
    try:
        status = tf.train.Checkpoint(model=donor).read(prefix)
        status.expect_partial()   # the rest of the export (the TFT graph; in older exports also the optimizer's
                                  # state and the metrics, now left out) is not the network
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as err:
        raise BaseModelError(f"base model {folder} does not hold {what} (the settings of this run): "
                             f"{_first_line(err)}") from None
    return donor.get_weights()


def _network_shapes(prefix: str) -> list[tuple[int, ...]]:
    """The shapes of the network's weights in the checkpoint (Keras tracks them as ``model/layer_with_weights-N/…``),
    their values and the object graph read once, so a damaged or short data file is told apart from another network:
    the restore reads them again, its errors then being the network's. TensorFlow's reader raises IndexError (Read
    less bytes than requested) for a data file cut short, an OpError for one whose bytes changed (Checksum does not
    match)."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes = {name: shape for name, shape in reader.get_variable_to_shape_map().items()
                  if name.startswith("model/layer_with_weights-")}
        for name in [*shapes, _OBJECT_GRAPH]:
            reader.get_tensor(name)
    except (tf.errors.OpError, ValueError, IndexError) as err:
        raise BaseModelError(f"cannot read the variables of {os.path.dirname(os.path.dirname(prefix))} (damaged "
                             f"or cut short): {_first_line(err)}") from None
    return sorted(tuple(shape) for shape in shapes.values())


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def _count(shapes) -> int:
    return sum(int(np.prod(shape)) for shape in shapes)
