"""Long runs that survive interruption: callbacks, resume, best-model saving, strategies.

``fit_resumable`` wraps ``model.fit`` with

* ``keras.callbacks.BackupAndRestore`` in ``run_dir/backup`` (every epoch): after a crash or
  Ctrl-C the same call resumes at the last finished epoch with weights *and* optimiser state;
* a best-model saver (``run_dir/best.keras``; for a Distiller the plain student is saved);
* ``CSVLogger`` (appending, so a resumed run keeps one history) and ``TensorBoard`` logs;
* Keras progress bars (``verbose``); seeds fixed by the caller with ``keras.utils.set_random_seed``.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

from asc_keras._runtime import keras, tf
from asc_keras.config import STRATEGIES
from asc_keras.models.classes import save_model_file

_STRATEGIES: dict = {}


def get_strategy(name: str = "default"):
    """A tf.distribute strategy; build models and optimisers inside its scope.

    'default': one device.  'mirrored': MirroredStrategy over all visible GPUs (or the logical
    CPU devices when configured).  'multiworker': MultiWorkerMirroredStrategy over the machines
    of ``TF_CONFIG`` (:mod:`asc_keras.training.multiworker`; make it first in the process).
    One instance per name and process.
    """
    if name in (None, "default"):
        return tf.distribute.get_strategy()
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; use one of {STRATEGIES}")
    if name == "multiworker" and name not in _STRATEGIES:
        from asc_keras.training.multiworker import multiworker_strategy

        _STRATEGIES[name] = multiworker_strategy()
    if name not in _STRATEGIES:
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        _STRATEGIES[name] = tf.distribute.MirroredStrategy(devices=devices)
    return _STRATEGIES[name]


@contextmanager
def training_scope(strategy: str = "default", mixed_precision: bool = False):
    """Build (and compile) models here: inside ``strategy``'s scope and, with ``mixed_precision``,
    under Keras' 'mixed_float16' policy (float16 compute, float32 weights; the softmax outputs
    stay float32 and compile adds loss scaling).  The previous policy is restored on exit, so
    one switch does not leak into the next model built."""
    previous = keras.config.dtype_policy()
    if mixed_precision:
        keras.config.set_dtype_policy("mixed_float16")
    try:
        with get_strategy(strategy).scope():
            yield
    finally:
        keras.config.set_dtype_policy(previous)


class SaveBest(keras.callbacks.Callback):
    """Save the best model (by ``monitor``) to ``path``; a Distiller saves its ``student``.

    Written to a temporary file and renamed, so ``path`` is always a complete model.
    The best value survives a resume through ``best.txt`` beside it.
    """

    def __init__(self, path: str | Path, monitor: str = "val_accuracy", mode: str = "max"):
        super().__init__()
        self.path, self.monitor, self.mode = Path(path), monitor, mode
        self._score_file = self.path.with_suffix(".best.txt")
        self.best = (
            float(self._score_file.read_text())
            if self._score_file.is_file()
            else (-math.inf if mode == "max" else math.inf)
        )

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        if (value > self.best) if self.mode == "max" else (value < self.best):
            self.best = float(value)
            target = getattr(self.model, "student", self.model)
            save_model_file(target, self.path)
            self._score_file.write_text(repr(self.best))


def synchronize_batchnorm(model) -> int:
    """Make every BatchNormalization layer of ``model`` (nested models included) compute its batch
    statistics over the *global* batch, across all replicas; returns how many layers.

    Why: Keras 3 keeps BatchNorm moving statistics per replica (aggregation 'none'): under
    MirroredStrategy each GPU, and under MultiWorkerMirroredStrategy each machine, normalises with
    the mean and variance of its own share of the batch and ends with its own moving statistics,
    so a distributed evaluation mixes them and the saved model (the first replica's) is not the
    one evaluated.  Synchronised, every replica sees the global batch's moments, so N replicas
    train what one device does with the whole batch (the report's setting) and all replicas hold
    the same statistics.  The cost is one small all-reduce per BatchNorm layer and step.
    """
    seen, stack, count = set(), [model], 0
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized, count = True, count + 1
        stack.extend(getattr(layer, "layers", []))
    return count


def fit_resumable(
    model,
    train_ds,
    val_ds=None,
    *,
    epochs: int,
    run_dir: str | Path | None,
    monitor: str = "val_accuracy",
    mode: str = "max",
    verbose: int | str = "auto",
    extra_callbacks=(),
    steps_per_epoch: int | None = None,
    tensorboard: bool = True,
):
    """``model.fit`` with backup/resume, best-model saving and CSV/TensorBoard logs in ``run_dir``.

    Calling it again with the same ``run_dir`` after an interruption continues from the
    last completed epoch; once training completed, the backup is removed by Keras and a
    further call would start over -- callers skip finished stages by their outputs.
    ``run_dir`` None: the same fit with no files (the width search's trials, which keras-tuner
    itself resumes trial by trial).  Returns the History of this call (only the epochs it ran).
    """
    if model.distribute_strategy.num_replicas_in_sync > 1:
        synchronize_batchnorm(model)
    callbacks = (
        []
        if run_dir is None
        else _file_callbacks(Path(run_dir), val_ds, monitor, mode, tensorboard)
    )
    callbacks += list(extra_callbacks)
    build_training_state(model, train_ds)
    return model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        callbacks=callbacks,
        verbose=verbose,
        steps_per_epoch=steps_per_epoch,
        shuffle=False,
    )  # datasets shuffle themselves


def build_training_state(model, train_ds) -> None:
    """Creates the optimiser's slots and the compiled metrics' variables before ``fit`` traces
    its first step, from the dataset's element spec (no batch is drawn, so the data stream is
    untouched).

    Why: with no distribution strategy set, Keras' TensorFlow trainer defers this building into
    the traced train step, and a ``tf.function`` that creates variables on its first call is
    traced a second time without them.  Tracing dominates a short run's start (measured on
    2 cores: a width-8 SERFR-CNN's first epoch of two steps, ~17 s with the double trace, ~9 s
    without); a strategy-scoped model is built this way by Keras itself.
    """
    if getattr(model, "_distribute_strategy", None) is not None:
        return  # Keras' own symbolic build runs in fit

    def symbolic(spec):
        return None if spec is None else keras.KerasTensor(spec.shape, spec.dtype.name)

    model._symbolic_build(data_batch=tf.nest.map_structure(symbolic, train_ds.element_spec))


def _file_callbacks(run_dir: Path, val_ds, monitor: str, mode: str, tensorboard: bool) -> list:
    """Backup (resume), CSV history, best model and TensorBoard logs in ``run_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    callbacks = [
        keras.callbacks.BackupAndRestore(
            str(run_dir / "backup"), save_freq="epoch", delete_checkpoint=True
        ),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
    ]
    if val_ds is not None:
        callbacks.append(SaveBest(run_dir / "best.keras", monitor, mode))
    if tensorboard:
        callbacks.append(
            keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False)
        )
    return callbacks
