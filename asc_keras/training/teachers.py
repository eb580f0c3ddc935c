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
from asc_keras.training.loop import fit_resumable, get_strategy
from asc_keras.training.optimizers import make_optimizer
from asc_keras.training.pipeline import make_dataset


def build_teacher(name: str, cfg: TeacherConfig, bn_momentum: float = 0.9):
    """Teacher ``name`` ('mobilenetv2', 'cnn', 'bcresnet') with the widths and mel pooling of ``cfg``."""
    kw = {"bn_momentum": bn_momentum, "mel_pool": cfg.mel_pool}
    if name == "mobilenetv2":
        return build_mobilenetv2_teacher(alpha=cfg.mobilenet_alpha, **kw)
    if name == "cnn":
        return build_cnn_teacher(width=cfg.cnn_width, **kw)
    if name == "bcresnet":
        return build_bcresnet_teacher(width=cfg.bcresnet_width, **kw)
    raise ValueError(f"unknown teacher {name!r}; use mobilenetv2, cnn or bcresnet")


def teacher_augment(augment: AugmentConfig, frames: int, clip_frames: int = 28) -> AugmentConfig:
    """The student's augmentation with the time mask scaled to the longer recording."""
    return dataclasses.replace(augment, time_mask_param=max(1, augment.time_mask_param * frames // clip_frames))


def train_teacher(name: str, features: np.ndarray, train_rows, train_labels, eval_rows, eval_labels, *,
                  cfg: TeacherConfig, optim: OptimConfig, augment: AugmentConfig, run_dir: str | Path,
                  eval_devices=None, strategy: str = "default", seed: int = 0, verbose="auto",
                  crop_frames: int | None = None):
    """Train one teacher on recording features; return (model, metrics on the evaluation recordings).

    Resumable: an interrupted call continues from its backup; a finished one (``final.keras`` and
    ``eval.json`` present) is loaded, not retrained.  With ``crop_frames`` (from
    ``cfg.crop_seconds``) each step sees one random window of every recording; validation and the returned metrics use whole recordings,
    and they are the same numbers: the metrics are those of the last epoch's weights and
    BatchNorm statistics (no re-estimation afterwards), so the learning curve ends where the
    final evaluation is.  Transfer learning: with
    ``cfg.pretrained_mobilenetv2`` the MobileNetV2 backbone starts from that file and, when
    ``cfg.frozen_epochs > 0``, first trains with the backbone frozen, then unfrozen.
    """
    run_dir = Path(run_dir)
    final, result = run_dir / "final.keras", run_dir / "eval.json"
    if final.is_file() and result.is_file():
        return keras.saving.load_model(final, compile=False, safe_mode=True), json.loads(result.read_text())
    keras.utils.set_random_seed(seed)
    crop = None if crop_frames is None else min(int(crop_frames), features.shape[1])
    aug = dataclasses.replace(teacher_augment(augment, crop or features.shape[1]), mixup=cfg.mixup)
    # With crops, an epoch draws frames // crop windows from every recording, so it sees as much
    # audio as an epoch of whole recordings and "epochs" means the same in both modes.
    repeats = 1 if crop is None else max(1, features.shape[1] // crop)
    train_rows, train_labels = np.tile(np.asarray(train_rows), repeats), np.tile(np.asarray(train_labels), repeats)
    train_ds = make_dataset(features, train_rows, train_labels, batch_size=cfg.batch_size, shuffle=True,
                            augment=aug, seed=seed, crop_frames=crop)
    val_ds = make_dataset(features, eval_rows, eval_labels, batch_size=cfg.batch_size)
    steps = int(np.ceil(len(train_rows) / cfg.batch_size))
    pretrained = cfg.pretrained_mobilenetv2 if name == "mobilenetv2" else None
    with get_strategy(strategy).scope():
        model = build_teacher(name, cfg, optim.bn_momentum)
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
