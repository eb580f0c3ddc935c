"""Student training with knowledge distillation (report sec. 3, 4.2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asc_keras._runtime import keras
from asc_keras.config import SystemConfig
from asc_keras.data.splits import ClipSplit
from asc_keras.distill.distiller import Distiller
from asc_keras.files import atomic_path, write_json
from asc_keras.models import build_serfr_cnn
from asc_keras.training.loop import fit_resumable, training_scope
from asc_keras.training.optimizers import make_optimizer
from asc_keras.training.pipeline import make_dataset


def train_student(
    cfg: SystemConfig,
    train: ClipSplit,
    val: ClipSplit | None,
    soft: np.ndarray | None,
    *,
    run_dir: str | Path,
    strategy: str = "default",
    verbose="auto",
):
    """Train SERFR-CNN-``cfg.student_width`` with the Distiller on cached clip features.

    Args:
        cfg: the system; reads ``student_width``, ``optim``, ``augment``, ``distill``, ``seed``.
        train, val: clip splits (``val`` may be None or empty: no validation).
        soft: (len(train), classes) teacher-ensemble distribution at ``cfg.distill.temperature``
            (:meth:`~asc_keras.distill.SoftTargets.distribution`); None, or
            ``cfg.distill.enabled`` false: CE only (the CE control).
        run_dir: backups, CSV/TensorBoard logs, ``best.keras`` and ``final.keras``.

    The validation split only drives learning curves and ``best.keras``; the returned model is
    the one after the last epoch, as the report trains a fixed schedule (picking epochs on
    fold1_evaluate would tune on the test data), with the BatchNorm statistics the last
    validation used, so the learning curve's last point is the returned model's score.
    Resumable: an interrupted call continues from its backup; a finished one (``final.keras``)
    is loaded, not retrained.
    """
    run_dir = Path(run_dir)
    final = run_dir / "final.keras"
    if final.is_file():
        return keras.saving.load_model(final, compile=False, safe_mode=True)
    keras.utils.set_random_seed(cfg.seed)
    kd = cfg.distill.enabled and soft is not None
    o = cfg.optim
    train_ds = make_dataset(
        train.features,
        train.rows,
        train.labels,
        soft if kd else None,
        batch_size=o.batch_size,
        shuffle=True,
        augment=cfg.augment,
        seed=cfg.seed,
    )
    val_ds = None
    if val is not None and len(val):
        val_ds = make_dataset(val.features, val.rows, val.labels, batch_size=o.batch_size)
    steps = int(np.ceil(len(train) / o.batch_size))
    with training_scope(strategy, cfg.optim.mixed_precision):
        student = build_serfr_cnn(cfg.student_width, bn_momentum=o.bn_momentum)
        distiller = Distiller(
            student, alpha=cfg.distill.alpha if kd else 1.0, temperature=cfg.distill.temperature
        )
        distiller.compile(
            make_optimizer(o, steps, o.epochs),
            metrics=[
                "accuracy",
                keras.metrics.CategoricalCrossentropy(from_logits=True, name="log_loss"),
            ],
        )
    fit_resumable(distiller, train_ds, val_ds, epochs=o.epochs, run_dir=run_dir, verbose=verbose)
    with atomic_path(final) as tmp:
        student.save(tmp)
    write_json(run_dir / "done.json", {"epochs": o.epochs, "kd": kd})
    return student
