"""Teacher training on 10 s recordings (report sec. 3.1, Table 2), with optional transfer learning."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from asc_keras._runtime import keras
from asc_keras.config import (
    AugmentConfig,
    FeatureConfig,
    SystemConfig,
    TeacherConfig,
    teacher_architecture,
)
from asc_keras.data.splits import RecordingSplit
from asc_keras.files import atomic_path, write_json
from asc_keras.metrics import classification_metrics
from asc_keras.models.classes import save_model_file
from asc_keras.models.common import BN_MOMENTUM, load_model_file
from asc_keras.models.panns_import import (
    is_panns_layout,
    is_torch_checkpoint,
    load_panns_teacher_file,
    panns_teacher,
    resolved_front_end,
    teacher_features,
)
from asc_keras.models.teachers import TEACHERS, load_pretrained
from asc_keras.training.history import last_value
from asc_keras.training.length import training_length
from asc_keras.training.loop import fit_resumable, training_scope
from asc_keras.training.optimizers import make_optimizer
from asc_keras.training.pipeline import make_dataset


def build_teacher(name: str, cfg: TeacherConfig, bn_momentum: float = BN_MOMENTUM):
    """Teacher ``name`` (a key of ``TEACHERS``, or one with a label: ``cnn_clips``) with the width
    and mel pooling of ``cfg``."""
    arch = teacher_architecture(name)  # 'cnn_clips' is a CNN
    if arch not in TEACHERS:
        raise ValueError(f"unknown teacher {name!r}; use {', '.join(TEACHERS)}, or one of them "
                         "with a label after '_' (cnn_clips)")  # fmt: skip
    if name == "mobilenetv2" and cfg.pretrained_mobilenetv2:
        # PANNs' AudioSet MobileNetV2 in its own layout: imported from the .pth, or the teacher
        # `asc-keras import-panns` wrote.  Either comes with its weights.
        front_end = resolved_front_end(cfg)  # refuses a file written for the other front end
        if is_torch_checkpoint(cfg.pretrained_mobilenetv2):
            return panns_teacher(
                cfg.pretrained_mobilenetv2, front_end=front_end, bn_momentum=bn_momentum
            )[0]
        imported = load_panns_teacher_file(cfg.pretrained_mobilenetv2)
        if imported is not None:
            return imported
    size = {
        "mobilenetv2": {"alpha": cfg.mobilenet_alpha},
        "cnn": {"width": cfg.cnn_width},
        "bcresnet": {"width": cfg.bcresnet_width},
    }[arch]
    pooling, norm = (
        cfg.entry(cfg.pooling, name) or "mean",
        cfg.entry(cfg.input_norm, name) or "none",
    )
    return TEACHERS[arch](bn_momentum=bn_momentum, mel_pool=cfg.mel_pool, pooling=pooling, input_norm=norm,
                          **size)  # fmt: skip


def teacher_augment(augment: AugmentConfig, frames: int, clip_frames: int, mels: int | None = None,
                    clip_mels: int | None = None) -> AugmentConfig:  # fmt: skip
    """The student's augmentation (made for ``clip_frames`` x ``clip_mels``) with each mask the same
    share of a ``frames`` x ``mels`` window (a whole recording; another front end's bands)."""
    freq = (
        augment.freq_mask_param
        if not (mels and clip_mels)
        else augment.freq_mask_param * mels // clip_mels
    )
    return dataclasses.replace(augment, time_mask_param=max(1, augment.time_mask_param * frames // clip_frames),
                               freq_mask_param=max(1, freq))  # fmt: skip


def augment_read_by_teacher(augment: AugmentConfig, t: TeacherConfig) -> AugmentConfig:
    """``augment`` with every field a teacher trained with ``t`` does not read set to its default:
    what the teacher's key holds (``stages.teachers.teacher_dir``), so that a change of the
    students' augmentation alone -- a mixup alpha, a mask size -- does not retrain the teachers.

    A teacher's batches (:func:`_teacher_batches`) are made from it, so they read nothing the key
    does not hold: mixup comes from ``t.mixup`` (never ``augment.mixup``), the masks only with
    ``t.masks``, a size only where its switch is on.  The system's defaults map to themselves:
    teachers trained before keep their keys.
    """
    keep = {"time_stretch": augment.time_stretch}
    if augment.time_stretch:
        keep.update(stretch_min=augment.stretch_min, stretch_max=augment.stretch_max)
    if t.mixup:
        keep["mixup_alpha"] = augment.mixup_alpha
    if t.masks:
        keep.update(freq_mask=augment.freq_mask, time_mask=augment.time_mask)
        if augment.freq_mask:
            keep["freq_mask_param"] = augment.freq_mask_param
        if augment.time_mask:
            keep["time_mask_param"] = augment.time_mask_param
    return dataclasses.replace(AugmentConfig(), **keep)


def train_teacher(
    name: str,
    cfg: SystemConfig,
    train: RecordingSplit,
    val: RecordingSplit,
    *,
    run_dir: str | Path,
    strategy: str = "default",
    verbose="auto",
    pretrain: tuple[RecordingSplit, RecordingSplit] | None = None,
):
    """Train one teacher on 10 s recordings; return (model, metrics on the ``val`` recordings).

    Args:
        name: 'mobilenetv2', 'cnn' or 'bcresnet' (``TEACHERS``).
        cfg: the system; reads ``teachers`` (sizes, epochs, batch, peak LR, crop, transfer
            learning), ``optim`` (schedule shape, weight decay, BN momentum), ``augment``,
            ``features`` (frames per crop) and ``seed``.
        train, val: recording splits of the recordings' feature cache.
        run_dir: per-phase backups and logs, ``final.keras`` and ``eval.json``.
        pretrain: (train, evaluation) recordings of another data set (``teachers.pretrain_data``)
            to fine-tune on first, before ``train``.

    Resumable: an interrupted call continues from its backup; a finished one (``final.keras`` and
    ``eval.json`` present) is loaded, not retrained.  With ``cfg.teachers.crop_seconds`` each
    step sees one random window of every recording; validation and the returned metrics use
    whole recordings, and they are the same numbers: the metrics are those of the last epoch's
    weights and BatchNorm statistics (no re-estimation afterwards), so the learning curve ends
    where the final evaluation is.  Transfer learning: with ``cfg.teachers.pretrained_mobilenetv2``
    the MobileNetV2 backbone starts from that file and, when ``frozen_epochs > 0``, first trains
    with the backbone frozen, then unfrozen.  The chain, each step optional (:func:`_phases`):
    pretrained weights -> frozen / unfrozen on ``pretrain`` -> frozen / unfrozen on ``train``.
    """
    run_dir = Path(run_dir)
    final, result = run_dir / "final.keras", run_dir / "eval.json"
    if final.is_file() and result.is_file():
        return load_model_file(final, "a teacher"), json.loads(result.read_text())
    cfg = dataclasses.replace(cfg, teachers=cfg.teachers.view(name))  # its own view
    t = cfg.teachers
    features = teacher_features(name, t, cfg.features)  # what ``train`` and ``val`` hold
    keras.utils.set_random_seed(cfg.seed)
    data = {"system": (train, _eval_batches(t, val))}
    if pretrain is not None:
        data["pretrain"] = (pretrain[0], _eval_batches(t, pretrain[1]))
    pretrained = t.pretrained_mobilenetv2 if name == "mobilenetv2" else None
    phases = _phases(t, pretrained, pretrain is not None)
    with training_scope(strategy, cfg.optim.mixed_precision):
        # A PANNs teacher comes with its weights.
        model = build_teacher(name, t, cfg.optim.bn_momentum)
        if pretrained and not is_panns_layout(model):
            load_pretrained(model, pretrained)
        for phase in phases:
            phase_done = run_dir / f"{phase['phase']}.weights.h5"
            if phase_done.is_file():
                model.load_weights(phase_done)
                continue
            if "backbone" in [layer.name for layer in model.layers]:
                model.get_layer("backbone").trainable = phase["backbone_trainable"]
            split, val_ds = data[phase["data"]]
            length = _phase_length(cfg, split, phase, features)
            train_ds = _teacher_batches(cfg, split, length.stream, features)
            opt = make_optimizer(
                cfg.optim, length.steps_per_round, length.rounds, peak_lr=phase["peak_lr"]
            )
            model.compile(opt, "categorical_crossentropy", metrics=["accuracy"])
            per_round = length.steps_per_round if length.stream else None
            fit_resumable(model, train_ds, val_ds, epochs=length.rounds, run_dir=run_dir / phase["phase"],
                          verbose=verbose, steps_per_epoch=per_round)  # fmt: skip
            with atomic_path(phase_done) as tmp:
                model.save_weights(tmp)
    probs = model.predict(data["system"][1], verbose=0)
    metrics = classification_metrics(val.labels, probs, val.devices)
    # The learning curve's last point, from the last phase: the same weights and statistics.
    metrics["last_epoch_val_accuracy"] = last_value(run_dir / phases[-1]["phase"] / "history.csv")
    metrics.update(_provenance(model, t, features, pretrained, pretrain is not None, phases))
    _save_uncompiled(model, final)
    write_json(result, metrics)
    return model, metrics


def _provenance(model, t: TeacherConfig, features: FeatureConfig, pretrained, pretrain: bool,
                phases: list[dict]) -> dict:  # fmt: skip
    """What a teacher started from and was fed, for its evaluation: the transfer-learning chain
    (when it had one) and, for a PANNs teacher, its front end and features."""
    out = {}
    if pretrained or pretrain:
        out["transfer"] = {"pretrained": pretrained and str(pretrained), "phases": phases}
    if is_panns_layout(model):
        out["front_end"] = {"name": resolved_front_end(t), "features": dataclasses.asdict(features)}
    return out


def _phases(t: TeacherConfig, pretrained, pretrain: bool) -> list[dict]:
    """The training phases, in order; each names its data ('pretrain' or 'system').

    Without transfer learning one phase.  The chain: [on ``pretrain_data``: ``pretrain_frozen_epochs``
    with the backbone frozen, then ``pretrain_epochs`` unfrozen at ``pretrain_lr``] -> on the
    system's data: ``frozen_epochs`` frozen (when starting from pretrained weights or a
    pretraining), then ``epochs`` unfrozen at ``finetune_lr``.
    """

    def phase(name, data, epochs, trainable, lr):
        return {
            "phase": name,
            "data": data,
            "epochs": epochs,
            "backbone_trainable": trainable,
            "peak_lr": lr,
        }

    out = []
    if pretrain:
        lr = t.pretrain_lr or t.peak_lr
        if t.pretrain_frozen_epochs > 0:
            out.append(phase("pretrain_frozen", "pretrain", t.pretrain_frozen_epochs, False, lr))
        out.append(phase("pretrain", "pretrain", t.pretrain_epochs, True, lr))
    if (pretrained or pretrain) and t.frozen_epochs > 0:
        out.append(phase("frozen", "system", t.frozen_epochs, False, t.peak_lr))
        return out + [phase("finetune", "system", t.epochs, True, t.finetune_lr or t.peak_lr)]
    return out + [phase("train", "system", t.epochs, True, t.peak_lr)]


def _eval_batches(t: TeacherConfig, split: RecordingSplit):
    return make_dataset(split.features, split.rows, split.labels, batch_size=t.batch_size)


def _crop_frames(cfg: SystemConfig, train: RecordingSplit, features: FeatureConfig) -> int | None:
    """Frames of the random training window (``teachers.crop_seconds``); None: whole recordings."""
    t, frames = cfg.teachers, train.features.shape[1]
    return None if t.crop_seconds is None else min(features.n_frames(t.crop_seconds), frames)


def _phase_length(cfg: SystemConfig, train: RecordingSplit, phase: dict, features: FeatureConfig):
    """A phase's training length: ``teachers.steps`` for the last phase when set, else epochs."""
    t, frames = cfg.teachers, train.features.shape[1]
    crop = _crop_frames(cfg, train, features)
    # With crops, an epoch draws frames // crop windows from every recording, so it sees as much
    # audio as an epoch of whole recordings and "epochs" means the same in both modes.
    per_epoch = len(train) * (1 if crop is None else max(1, frames // crop))
    steps = t.steps if phase["phase"] in ("train", "finetune") else None
    return training_length(per_epoch, t.batch_size, phase["epochs"], steps, cfg.optim.rounds)


def _teacher_batches(
    cfg: SystemConfig, train: RecordingSplit, stream: bool, features: FeatureConfig
):
    """Augmented training batches of the recordings (random windows with ``crop_seconds``): the
    masks as wide in seconds and in the share of bands as the student's on ``cfg.features``."""
    t, frames = cfg.teachers, train.features.shape[1]
    crop = _crop_frames(cfg, train, features)
    # What the key holds (augment_read_by_teacher), so no batch reads a field it resets; each mask
    # the same share of the window as the student's (of its clip's frames), whatever the frame rate.
    aug = teacher_augment(augment_read_by_teacher(cfg.augment, t), crop or frames,
                          cfg.features.n_frames(), features.n_mels, cfg.features.n_mels)  # fmt: skip
    aug = dataclasses.replace(aug, mixup=t.mixup, freq_mask=aug.freq_mask and t.masks,
                              time_mask=aug.time_mask and t.masks)  # fmt: skip
    repeats = 1 if crop is None else max(1, frames // crop)
    rows, labels = np.tile(train.rows, repeats), np.tile(train.labels, repeats)
    return make_dataset(train.features, rows, labels, batch_size=t.batch_size, shuffle=True,
                        augment=aug, seed=cfg.seed, crop_frames=crop, repeat=stream)  # fmt: skip


def _save_uncompiled(model, path: Path) -> None:
    """Save without optimizer/compile state, so any Keras loads it (no custom optimizer needed)."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    save_model_file(clone, path)
