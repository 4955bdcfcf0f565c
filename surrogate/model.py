"""The fully connected network (FCNN) of one ensemble member, built from a declarative config.

Why a config and not code: the thesis recipe and labloop's faster recipe differ only in numbers, every
number must be saved next to the weights (so a model directory rebuilds exactly), and the architecture
sweep walks over configs. The network is rebuilt from the config at load time and only the weights are
stored, which keeps model directories independent of Keras' own serialisation format.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from collections.abc import Callable, Iterator

import numpy as np

from labloop.surrogate.config import ModelConfig

log = logging.getLogger(__name__)

#: a training of at most this many optimizer steps in all runs eagerly: tracing the train and validation graphs
#: costs about 2 s a member, more than a few steps take eagerly (a fast-preset member on 180 rows, 4 steps: 1.1 s
#: eagerly, 3.0 s as a graph; 16 steps: 2.8 s and 3.0 s; 80 steps: 9.7 s and 6.3 s; 2 cores). Anything bigger
#: trains as a graph (the example campaign's prior: 2,000 rows x 10 epochs, 160 steps).
EAGER_STEPS = 12


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for a moment.

    Why: TensorFlow's C++ start-up (oneDNN notice, "no CUDA driver") writes straight to fd 2 and ignores
    TF_CPP_MIN_LOG_LEVEL in current releases; users of a CPU-only lab tool should not see it.
    """
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
with _stderr_silenced():
    import keras
    import tensorflow as tf

    tf.config.list_physical_devices()  # device discovery (and its CUDA probe) happens now, silenced
    keras.ops.zeros(1)  # and so does the lazy load of the kernel libraries
logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notices are about TF, not the user


def masked_mse(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Mean squared error over the labels that are present (NaN = not measured for that target)."""
    present = keras.ops.logical_not(keras.ops.isnan(y_true))
    diff = keras.ops.where(present, y_pred - keras.ops.where(present, y_true, 0.0), 0.0)
    n = keras.ops.maximum(keras.ops.sum(keras.ops.cast(present, "float32")), 1.0)
    return keras.ops.sum(diff * diff) / n


def build_model(config: ModelConfig, n_inputs: int, n_outputs: int, seed: int) -> keras.Model:
    """Uncompiled network: Dense(+L2) -> activation -> Dropout per hidden layer, linear output."""
    init = {"random_normal": keras.initializers.RandomNormal,
            "he_normal": keras.initializers.HeNormal,
            "glorot_uniform": keras.initializers.GlorotUniform}[config.initializer]
    reg = keras.regularizers.L2(config.l2) if config.l2 else None
    inputs = keras.Input(shape=(n_inputs,), name="fingerprint")
    h = inputs
    for i, width in enumerate(config.hidden):
        h = keras.layers.Dense(width, activation=config.activation, kernel_initializer=init(seed=seed + i),
                               kernel_regularizer=reg, name=f"hidden_{i}")(h)
        if config.dropout:
            h = keras.layers.Dropout(config.dropout, seed=seed + 100 + i, name=f"dropout_{i}")(h)
    outputs = keras.layers.Dense(n_outputs, kernel_initializer=init(seed=seed + 99), name="targets")(h)
    return keras.Model(inputs, outputs)


def _schedule(config: ModelConfig, steps_per_epoch: int):
    if config.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(config.learning_rate, config.epochs * steps_per_epoch,
                                                      alpha=0.01)
    return config.learning_rate


class _BestWeights(keras.callbacks.Callback):
    """Keep the weights of the epoch with the lowest validation loss; optionally stop early.

    Why not keras' EarlyStopping: the member must end on its best-validation weights even when it
    trains all epochs, and progress must be reported per epoch.
    """

    def __init__(self, patience: int | None, on_epoch: Callable[[int, float, float], None] | None):
        super().__init__()
        self.patience, self.on_epoch = patience, on_epoch
        self.best, self.best_epoch, self.best_weights = math.inf, -1, None
        self.history: list[tuple[float, float]] = []

    def on_epoch_end(self, epoch, logs=None):
        loss, val = float(logs["loss"]), float(logs.get("val_loss", logs["loss"]))
        self.history.append((loss, val))
        if val < self.best:
            self.best, self.best_epoch, self.best_weights = val, epoch, self.model.get_weights()
        elif self.patience and epoch - self.best_epoch >= self.patience:
            self.model.stop_training = True
        if self.on_epoch:
            self.on_epoch(epoch, loss, val)

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class TrainedMember:
    """A trained network and its learning curve (training and validation loss per epoch)."""

    def __init__(self, model: keras.Model, history: list[tuple[float, float]], best_epoch: int):
        self.model, self.history, self.best_epoch = model, history, best_epoch


def train_member(
    config: ModelConfig,
    X_train: np.ndarray,
    Z_train: np.ndarray,
    X_val: np.ndarray,
    Z_val: np.ndarray,
    seed: int,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> TrainedMember:
    """Train one member on transformed inputs and scaled labels; ends on its best-validation weights."""
    keras.utils.set_random_seed(seed)
    model = build_model(config, X_train.shape[1], Z_train.shape[1], seed)
    batch = min(config.batch_size, len(X_train))
    steps = math.ceil(len(X_train) / batch)
    # 16 steps per graph call: the same arithmetic with less Python overhead (13% faster on 2 cores); a training
    # of a handful of steps runs eagerly, since tracing its graph costs more than the steps
    model.compile(optimizer=keras.optimizers.Adam(_schedule(config, steps)), loss=masked_mse,
                  steps_per_execution=16, run_eagerly=steps * config.epochs <= EAGER_STEPS)
    callbacks: list[keras.callbacks.Callback] = []
    if config.lr_schedule == "thesis":
        hold, total, lr0 = config.lr_hold_epochs, config.epochs, config.learning_rate
        callbacks.append(keras.callbacks.LearningRateScheduler(
            lambda epoch: lr0 if epoch < hold else lr0 * math.exp(3 * (hold - epoch) / max(total - hold, 1))))
    best = _BestWeights(config.early_stopping_patience, on_epoch)
    callbacks.append(best)
    model.fit(X_train, Z_train, validation_data=(X_val, Z_val), batch_size=batch, epochs=config.epochs,
              shuffle=True, verbose=0, callbacks=callbacks)
    log.debug("member trained: best epoch %d of %d, val loss %.4f", best.best_epoch + 1, len(best.history),
              best.best)
    return TrainedMember(model, best.history, best.best_epoch)


def predict_scaled(model: keras.Model, X: np.ndarray, batch: int = 8192) -> np.ndarray:
    """Network output for already transformed inputs, in chunks (no Keras `predict` loop overhead)."""
    out = [np.asarray(model(X[i : i + batch], training=False)) for i in range(0, len(X), batch)]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), dtype=np.float32)
