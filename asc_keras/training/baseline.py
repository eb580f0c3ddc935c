"""The DCASE 2022/2023 Task 1 baseline as a yardstick row (report Table 3 "Baseline")."""

from __future__ import annotations

from pathlib import Path

from asc_keras._runtime import keras
from asc_keras.config import SystemConfig
from asc_keras.data.splits import ClipSplit
from asc_keras.files import write_json
from asc_keras.models.baseline import build_dcase_baseline_for_cache
from asc_keras.models.classes import save_model_file
from asc_keras.models.common import load_model_file
from asc_keras.training.loop import fit_resumable, training_scope
from asc_keras.training.optimizers import make_optimizer
from asc_keras.training.pipeline import make_dataset
from asc_keras.training.student import student_length


def train_baseline(
    cfg: SystemConfig,
    train: ClipSplit,
    val: ClipSplit | None,
    *,
    run_dir: str | Path,
    strategy: str = "default",
    verbose="auto",
):
    """Train the official baseline architecture on its own cached log-mels (``BASELINE_FEATURES``).

    Args:
        cfg: the system; reads ``optim`` and ``seed``.
        train, val: splits of the baseline's own feature cache (``val`` may be None or empty).
        run_dir: backups, logs and ``final.keras``.

    As the official baseline: cross-entropy on hard labels, no augmentation, no teachers.  The
    optimiser, schedule, batch size and epochs are the run's (``cfg.optim``), so the row differs
    from the student rows only in model, features and method.  Resumable like the student;
    returns the model after the last epoch (what its last validation scored).
    """
    run_dir = Path(run_dir)
    final = run_dir / "final.keras"
    if final.is_file():
        return load_model_file(final)
    keras.utils.set_random_seed(cfg.seed)
    o = cfg.optim
    length = student_length(cfg, len(train))  # the students' length: a like-for-like row
    train_ds = make_dataset(train.features, train.rows, train.labels, batch_size=o.batch_size,
                            shuffle=True, seed=cfg.seed, repeat=length.stream)  # fmt: skip
    val_ds = None
    if val is not None and len(val):
        val_ds = make_dataset(val.features, val.rows, val.labels, batch_size=o.batch_size)
    frames, mels = train.features.shape[1:]
    with training_scope(strategy, cfg.optim.mixed_precision):
        model = build_dcase_baseline_for_cache(frames, mels, bn_momentum=o.bn_momentum)
        opt = make_optimizer(o, length.steps_per_round, length.rounds)
        model.compile(opt, "categorical_crossentropy", metrics=["accuracy"])
    fit_resumable(model, train_ds, val_ds, epochs=length.rounds, run_dir=run_dir, verbose=verbose,
                  steps_per_epoch=length.steps_per_round if length.stream else None)  # fmt: skip
    save_model_file(model, final)
    write_json(run_dir / "done.json", {"rounds": length.rounds, "steps": length.steps})
    return model
