"""Student training with knowledge distillation (report sec. 3, 4.2)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from asc_keras._runtime import keras
from asc_keras.config import SystemConfig
from asc_keras.distill.distiller import Distiller
from asc_keras.models import build_serfr_cnn
from asc_keras.training.loop import fit_resumable, get_strategy
from asc_keras.training.optimizers import make_optimizer
from asc_keras.training.pipeline import make_dataset


def train_student(features: np.ndarray, train_rows, train_labels, soft, val_rows, val_labels, *,
                  cfg: SystemConfig, run_dir: str | Path, strategy: str = "default", verbose="auto",
                  width: int | None = None, epochs: int | None = None):
    """Train SERFR-CNN-``width`` with the Distiller on cached clip features.

    ``soft``: the teacher ensemble's distribution at ``cfg.distill.temperature`` per training
    example (:meth:`~asc_keras.distill.SoftTargets.distribution`); None or
    ``cfg.distill.enabled`` false: CE only (the CE control).  The validation split only drives
    learning curves and ``best.keras``; the returned model is the one after the last epoch, as
    the report trains a fixed schedule (picking epochs on fold1_evaluate would tune on the test
    data), with the BatchNorm statistics the last validation used, so the learning curve's last
    point is the returned model's score.
    Resumable: an interrupted call continues from its backup; a finished one (``final.keras``)
    is loaded, not retrained.
    """
    run_dir = Path(run_dir)
    final = run_dir / "final.keras"
    if final.is_file():
        return keras.saving.load_model(final, compile=False, safe_mode=True)
    keras.utils.set_random_seed(cfg.seed)
    kd = cfg.distill.enabled and soft is not None
    epochs = epochs or cfg.optim.epochs
    train_ds = make_dataset(features, train_rows, train_labels, soft if kd else None,
                            batch_size=cfg.optim.batch_size, shuffle=True, augment=cfg.augment, seed=cfg.seed)
    val_ds = make_dataset(features, val_rows, val_labels, batch_size=cfg.optim.batch_size) if len(val_rows) else None
    steps = int(np.ceil(len(train_rows) / cfg.optim.batch_size))
    with get_strategy(strategy).scope():
        student = build_serfr_cnn(width or cfg.student_width, bn_momentum=cfg.optim.bn_momentum)
        distiller = Distiller(student, alpha=cfg.distill.alpha if kd else 1.0, temperature=cfg.distill.temperature)
        distiller.compile(make_optimizer(cfg.optim, steps, epochs), metrics=[
            "accuracy", keras.metrics.CategoricalCrossentropy(from_logits=True, name="log_loss")])
    fit_resumable(distiller, train_ds, val_ds, epochs=epochs, run_dir=run_dir, verbose=verbose)
    student.save(final)
    (run_dir / "done.json").write_text(json.dumps({"epochs": epochs, "kd": kd}))
    return student
