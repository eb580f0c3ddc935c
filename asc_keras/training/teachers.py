"""Teacher training on 10 s recordings (report sec. 3.1, Table 2), with optional transfer learning."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from asc_keras._runtime import keras
from asc_keras.config import AugmentConfig, OptimConfig, TeacherConfig
from asc_keras.evaluate.metrics import classification_metrics
from asc_keras.models import build_bcresnet_teacher, build_cnn_teacher, build_mobilenetv2_teacher
from asc_keras.models.teachers import load_pretrained
from asc_keras.training.bn import recalibrate_batchnorm
from asc_keras.training.loop import fit_resumable, get_strategy
from asc_keras.training.optimizers import make_optimizer
from asc_keras.training.pipeline import make_dataset


def build_teacher(name: str, cfg: TeacherConfig):
    """Teacher ``name`` ('mobilenetv2', 'cnn', 'bcresnet') with the widths of ``cfg``."""
    if name == "mobilenetv2":
        return build_mobilenetv2_teacher(alpha=cfg.mobilenet_alpha)
    if name == "cnn":
        return build_cnn_teacher(width=cfg.cnn_width)
    if name == "bcresnet":
        return build_bcresnet_teacher(width=cfg.bcresnet_width)
    raise ValueError(f"unknown teacher {name!r}; use mobilenetv2, cnn or bcresnet")


def teacher_augment(augment: AugmentConfig, frames: int, clip_frames: int = 28) -> AugmentConfig:
    """The student's augmentation with the time mask scaled to the longer recording."""
    return dataclasses.replace(augment, time_mask_param=max(1, augment.time_mask_param * frames // clip_frames))


def train_teacher(name: str, features: np.ndarray, train_rows, train_labels, eval_rows, eval_labels, *,
                  cfg: TeacherConfig, optim: OptimConfig, augment: AugmentConfig, run_dir: str | Path,
                  eval_devices=None, strategy: str = "default", seed: int = 0, verbose="auto"):
    """Train one teacher on recording features; return (model, metrics on the evaluation recordings).

    Resumable: an interrupted call continues from its backup; a finished one (``final.keras`` and
    ``eval.json`` present) is loaded, not retrained.  Transfer learning: with
    ``cfg.pretrained_mobilenetv2`` the MobileNetV2 backbone starts from that file and, when
    ``cfg.frozen_epochs > 0``, first trains with the backbone frozen, then unfrozen.
    """
    run_dir = Path(run_dir)
    final, result = run_dir / "final.keras", run_dir / "eval.json"
    if final.is_file() and result.is_file():
        return keras.saving.load_model(final, compile=False, safe_mode=True), json.loads(result.read_text())
    keras.utils.set_random_seed(seed)
    aug = teacher_augment(augment, features.shape[1])
    train_ds = make_dataset(features, train_rows, train_labels, batch_size=cfg.batch_size, shuffle=True,
                            augment=aug, seed=seed)
    val_ds = make_dataset(features, eval_rows, eval_labels, batch_size=cfg.batch_size)
    steps = int(np.ceil(len(train_rows) / cfg.batch_size))
    pretrained = cfg.pretrained_mobilenetv2 if name == "mobilenetv2" else None
    with get_strategy(strategy).scope():
        model = build_teacher(name, cfg)
        if pretrained:
            load_pretrained(model, pretrained)
        phases = [("train", cfg.epochs, True)]
        if pretrained and cfg.frozen_epochs > 0:
            phases = [("frozen", cfg.frozen_epochs, False), ("finetune", cfg.epochs, True)]
        for phase, epochs, backbone_trainable in phases:
            phase_done = run_dir / f"{phase}.weights.h5"
            if phase_done.is_file():
                model.load_weights(phase_done)
                continue
            if "backbone" in [l.name for l in model.layers]:
                model.get_layer("backbone").trainable = backbone_trainable
            model.compile(make_optimizer(optim, steps, epochs, peak_lr=cfg.peak_lr), "categorical_crossentropy",
                          metrics=["accuracy"])
            fit_resumable(model, train_ds, val_ds, epochs=epochs, run_dir=run_dir / phase, verbose=verbose)
            model.save_weights(phase_done)
    clean = make_dataset(features, train_rows, train_labels, batch_size=cfg.batch_size, shuffle=True, seed=seed)
    recalibrate_batchnorm(model, clean, optim.bn_recalibration_batches)
    probs = model.predict(val_ds, verbose=0)
    metrics = classification_metrics(eval_labels, probs, eval_devices)
    _save_uncompiled(model, final)
    result.write_text(json.dumps(metrics, indent=1))
    return model, metrics


def _save_uncompiled(model, path: Path) -> None:
    """Save without optimizer/compile state, so any Keras loads it (no custom optimizer needed)."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    tmp = path.with_name(path.stem + ".tmp.keras")
    clone.save(tmp)
    tmp.replace(path)
