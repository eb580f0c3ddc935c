"""The output stages of one run: the KD student, its controls, compression, int8 conversion.

Each is a function of the configuration, its inputs and the run's place; its skip rule is
the one ``runner.done(...)`` line at its top (:mod:`asc_keras.system.runner`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from asc_keras.config import SystemConfig
from asc_keras.files import content_hash, write_json
from asc_keras.system.runner import StageRunner
from asc_keras.system.shared import Prepared, RunPlace


def _load(path: Path):
    from asc_keras._runtime import keras

    return keras.saving.load_model(path, compile=False, safe_mode=True)


def student_inputs(
    cfg: SystemConfig, place: RunPlace, prep: Prepared, stage: str = "student"
) -> dict:
    """What the student of ``stage`` is made from (the control does not depend on the teachers)."""
    inputs = {
        "width": cfg.student_width,
        "seed": cfg.seed,
        "augment": dataclasses.asdict(cfg.augment),
        "optim": dataclasses.asdict(cfg.optim),
        "features": prep.splits.clip_cache_name,
        "train_split": place.train_split,
    }
    if stage == "student":
        inputs.update(distill=dataclasses.asdict(cfg.distill), targets=prep.targets_key)
    return inputs


def student_stage(
    cfg: SystemConfig, place: RunPlace, runner: StageRunner, prep: Prepared, stage: str = "student"
):
    """Train (or load) ``out/<stage>.keras``: 'student' learns from the ensemble (KD), 'control' is
    the CE control -- the same student, augmentation, schedule and epochs, no teachers."""
    from asc_keras.training.student import train_student

    final, run_dir = place.out / f"{stage}.keras", place.out / stage
    inputs = student_inputs(cfg, place, prep, stage)
    if runner.done(stage, inputs, final):
        return _load(final)
    runner.start(stage, inputs, scratch=run_dir)
    soft = prep.soft(cfg.distill.temperature) if stage == "student" else None
    model = train_student(
        cfg,
        prep.splits.train,
        prep.splits.evaluate,
        soft,
        run_dir=run_dir,
        strategy=place.strategy,
        verbose=place.verbose,
    )
    model.save(final)
    return model


def baseline_stage(cfg: SystemConfig, place: RunPlace, runner: StageRunner, prep: Prepared):
    """The DCASE baseline on its own log-mels of the same clips: (model, its evaluation split)."""
    from asc_keras.features.cache import extract_features
    from asc_keras.models.baseline import BASELINE_FEATURES
    from asc_keras.training.baseline import train_baseline

    s = prep.splits
    clips = list(dict.fromkeys(s.train.names + s.evaluate.names))
    cache = extract_features(
        prep.dataset.root,
        clips,
        BASELINE_FEATURES,
        place.work / "features",
        name="baseline-clips",
        progress=place.progress,
    )
    # The same clips, re-pointed at the baseline's own cache.
    train, evaluate = (
        dataclasses.replace(split, features=cache.features, rows=cache.rows(split.names))
        for split in (s.train, s.evaluate)
    )
    final = place.out / "baseline.keras"
    inputs = {
        "seed": cfg.seed,
        "optim": dataclasses.asdict(cfg.optim),
        "features": cache.path.name,
        "train_split": place.train_split,
    }
    if runner.done("baseline", inputs, final):
        return _load(final), evaluate
    runner.start("baseline", inputs, scratch=place.out / "baseline")
    model = train_baseline(
        cfg,
        train,
        evaluate,
        run_dir=place.out / "baseline",
        strategy=place.strategy,
        verbose=place.verbose,
    )
    model.save(final)
    return model, evaluate


def compress_inputs(cfg: SystemConfig, runner: StageRunner) -> dict:
    return {
        "student": content_hash(runner.recorded("student")),
        "compress": dataclasses.asdict(cfg.compress),
    }


def tflite_inputs(cfg: SystemConfig, runner: StageRunner) -> dict:
    return {
        "compress": content_hash(compress_inputs(cfg, runner)),
        "representative_samples": cfg.compress.representative_samples,
    }


def compress_stage(
    cfg: SystemConfig, place: RunPlace, runner: StageRunner, prep: Prepared, student
):
    """Prune + QAT the student (tf_keras twin): (QAT model or None when nothing to redo, info)."""
    from asc_keras.compress.tfmot_compress import prune_and_quantize

    c = cfg.compress
    info_path, weights = (
        place.out / "compress" / "info.json",
        place.out / "compress" / "qat.weights.h5",
    )
    if not (c.prune or c.qat):
        return None, {}
    # The QAT model lives only in memory: compression is skipped only when its int8
    # conversion is fresh too (else the converter would get the float student).
    tflite = place.out / "student_int8.tflite"
    if runner.done("compress", compress_inputs(cfg, runner), weights, info_path) and runner.done(
        "tflite", tflite_inputs(cfg, runner), tflite
    ):
        return None, json.loads(info_path.read_text())
    runner.start("compress", compress_inputs(cfg, runner))
    qat, info = prune_and_quantize(
        student,
        cfg,
        prep.splits.train,
        prep.soft(cfg.distill.temperature),
        verbose=place.verbose,
        log=runner.log,
    )
    weights.parent.mkdir(parents=True, exist_ok=True)
    qat.save_weights(weights)
    write_json(info_path, info)
    tflite.unlink(missing_ok=True)  # must be re-converted from this model
    return qat, info


def tflite_stage(
    cfg: SystemConfig, place: RunPlace, runner: StageRunner, prep: Prepared, model, redo: bool
) -> Path:
    """Full-int8 ``out/student_int8.tflite`` of ``model`` (redone whenever compression just ran)."""
    from asc_keras.compress.tflite import calibration_rows, convert_int8

    path = place.out / "student_int8.tflite"
    if not redo and runner.done("tflite", tflite_inputs(cfg, runner), path):
        return path
    runner.start("tflite", tflite_inputs(cfg, runner))
    train = prep.splits.train
    rep = np.asarray(
        train.features[calibration_rows(train.rows, cfg.compress.representative_samples, cfg.seed)]
    )
    info = convert_int8(model, rep, path)
    runner.log(f"int8 TFLite: {path} ({info['bytes'] / 1024:.1f} KiB)")
    return path
