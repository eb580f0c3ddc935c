"""The DCASE 2022/2023 Task 1 baseline as a yardstick row (report Table 3 "Baseline")."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from asc_keras._runtime import keras
from asc_keras.config import SystemConfig
from asc_keras.models.baseline import build_dcase_baseline_for_cache
from asc_keras.training.loop import fit_resumable, get_strategy
from asc_keras.training.optimizers import make_optimizer
from asc_keras.training.pipeline import make_dataset


def train_baseline(features: np.ndarray, train_rows, train_labels, val_rows, val_labels, *, cfg: SystemConfig,
                   run_dir: str | Path, strategy: str = "default", verbose="auto"):
    """Train the official baseline architecture on its own cached log-mels (``BASELINE_FEATURES``).

    As the official baseline: cross-entropy on hard labels, no augmentation, no teachers.  The
    optimiser, schedule, batch size and epochs are the run's (``cfg.optim``), so the row differs
    from the student rows only in model, features and method.  Resumable like the student;
    returns the model after the last epoch (what its last validation scored).
    """
    run_dir = Path(run_dir)
    final = run_dir / "final.keras"
    if final.is_file():
        return keras.saving.load_model(final, compile=False, safe_mode=True)
    keras.utils.set_random_seed(cfg.seed)
    o = cfg.optim
    train_ds = make_dataset(features, train_rows, train_labels, batch_size=o.batch_size, shuffle=True, seed=cfg.seed)
    val_ds = make_dataset(features, val_rows, val_labels, batch_size=o.batch_size) if len(val_rows) else None
    steps = int(np.ceil(len(train_rows) / o.batch_size))
    with get_strategy(strategy).scope():
        model = build_dcase_baseline_for_cache(features.shape[1], features.shape[2], bn_momentum=o.bn_momentum)
        model.compile(make_optimizer(o, steps, o.epochs), "categorical_crossentropy", metrics=["accuracy"])
    fit_resumable(model, train_ds, val_ds, epochs=o.epochs, run_dir=run_dir, verbose=verbose)
    tmp = final.with_name("final.tmp.keras")
    model.save(tmp)
    tmp.replace(final)
    (run_dir / "done.json").write_text(json.dumps({"epochs": o.epochs}))
    return model
