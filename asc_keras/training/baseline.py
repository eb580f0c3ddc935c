"""The DCASE 2022/2023 Task 1 baseline as a yardstick row (report Table 3 "Baseline"), trained the
organisers' way (marmoi/dcase2022_task1_baseline, ``task1.yaml``).

* Adam at a constant learning rate of 1e-3 (Keras' default, no schedule), batches of 64,
  200 epochs (``controls.baseline_epochs``; the quick profile gives a step budget instead);
* 30 % of the *training* split held out for validation, class-balanced with seed 0 (dcase_util's
  ``validation_split(split_type='balanced', balancing_mode='class')``): here whole recordings
  per class, so no recording has clips on both sides;
* the model kept is the best by validation accuracy once an initial delay has passed (its
  ``StasherCallback``: from epoch 50 of 200 on).

The fold-1 evaluation clips are never seen during training: the row is scored on them afterwards.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from asc_keras._runtime import keras
from asc_keras.config import SystemConfig
from asc_keras.data.own import split_by_group
from asc_keras.data.splits import ClipSplit
from asc_keras.data.tau import parse_clip_name
from asc_keras.files import write_json
from asc_keras.models.baseline import build_dcase_baseline_for_cache
from asc_keras.models.classes import save_model_file
from asc_keras.models.common import load_model_file
from asc_keras.training.length import training_length
from asc_keras.training.loop import fit_resumable, training_scope
from asc_keras.training.pipeline import make_dataset


def _recording(name: str) -> str:
    try:
        return parse_clip_name(name)["recording_id"]
    except ValueError:
        return name  # not a TAU clip name: each clip its own recording


def official_validation(
    split: ClipSplit, fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(fit, validation) example indices: per class, ``fraction`` of its recordings (at least one
    where it has two or more) drawn with ``seed``, all their clips held out (``split_by_group``
    over the recordings)."""
    return split_by_group([_recording(n) for n in split.names], split.labels, fraction, seed)


class KeepBestAfter(keras.callbacks.Callback):
    """The official ``StasherCallback``: the best weights by ``monitor`` among the rounds after
    the first ``delay``, kept in ``path`` (with their score and round beside, so a resumed
    training knows them)."""

    def __init__(self, path: Path, delay: int, monitor: str = "val_accuracy"):
        super().__init__()
        self.path, self.delay, self.monitor = Path(path), delay, monitor
        self.info = self.path.with_suffix(".json")
        self.best = json.loads(self.info.read_text()) if self.info.is_file() else None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if epoch < self.delay or value is None:
            return
        if self.best is None or value > self.best["score"]:
            self.model.save_weights(self.path)
            self.best = {"score": float(value), "round": epoch + 1}
            write_json(self.info, self.best)


def train_baseline(
    cfg: SystemConfig,
    train: ClipSplit,
    val: ClipSplit | None = None,
    *,
    run_dir: str | Path,
    strategy: str = "default",
    verbose="auto",
):
    """Train the official baseline architecture on its own cached log-mels the official way
    (module docstring); returns the kept model.

    Args:
        cfg: the system; reads ``controls.baseline_*`` and ``optim.rounds`` (how often a step
            budget validates) and ``optim.bn_momentum``.
        train: the run's training split, in the baseline's own feature cache; its held-out part
            is the validation.  ``val`` (the evaluation clips) is not used for training.
        run_dir: backups, logs, ``final.keras`` and ``done.json`` (the recipe and the kept round).
    """
    run_dir = Path(run_dir)
    final = run_dir / "final.keras"
    if final.is_file():
        return load_model_file(final)
    keras.utils.set_random_seed(cfg.seed)
    c = cfg.controls
    fit_idx, held_idx = official_validation(train, c.baseline_validation, seed=0)
    fit, held = train.take(fit_idx), train.take(held_idx)
    length = training_length(len(fit), c.baseline_batch_size, c.baseline_epochs, c.baseline_steps,
                             rounds=cfg.optim.rounds)  # fmt: skip
    train_ds = make_dataset(fit.features, fit.rows, fit.labels, batch_size=c.baseline_batch_size,
                            shuffle=True, seed=cfg.seed, repeat=length.stream)  # fmt: skip
    held_ds = make_dataset(held.features, held.rows, held.labels, batch_size=c.baseline_batch_size)
    frames, mels = train.features.shape[1:]
    with training_scope(strategy, cfg.optim.mixed_precision):
        model = build_dcase_baseline_for_cache(frames, mels, bn_momentum=cfg.optim.bn_momentum)
        model.compile(
            keras.optimizers.Adam(c.baseline_lr), "categorical_crossentropy", metrics=["accuracy"]
        )
    delay = min(length.rounds - 1, math.floor(c.baseline_best_after * length.rounds))
    keep = KeepBestAfter(run_dir / "kept.weights.h5", delay)
    fit_resumable(model, train_ds, held_ds, epochs=length.rounds, run_dir=run_dir, verbose=verbose,
                  steps_per_epoch=length.steps_per_round if length.stream else None,
                  extra_callbacks=[keep])  # fmt: skip
    if keep.best is None:  # no held-out recordings (a class of one recording): the last round
        keep.best = {"round": length.rounds, "score": None}
    else:
        model.load_weights(keep.path)
    save_model_file(model, final)
    write_json(run_dir / "done.json", {
        "recipe": "the organisers' (task1.yaml): constant Adam, best by validation after a delay",
        "lr": c.baseline_lr, "batch_size": c.baseline_batch_size, "rounds": length.rounds,
        "steps": length.steps, "validation_clips": len(held), "validation_fraction": c.baseline_validation,
        "kept_after_round": delay, "kept_round": keep.best["round"], "kept_validation_accuracy": keep.best["score"],
    })  # fmt: skip
    return model
