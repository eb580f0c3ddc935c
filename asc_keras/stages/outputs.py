"""The output stages of one run: the KD student, its controls, compression, int8 conversion.

Each is a function of the configuration, its inputs and the run's place; its skip rule is
the one ``runner.done(...)`` line at its top (:mod:`asc_keras.stages.runner`).  Every path is
the run's layout's (:class:`~asc_keras.stages.layout.RunLayout`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from asc_keras.config import DistillConfig, SystemConfig
from asc_keras.files import content_hash, file_identity, write_json
from asc_keras.models.classes import save_model_file
from asc_keras.stages.runner import StageRunner
from asc_keras.stages.shared import Prepared, RunPlace
from asc_keras.stages.teaching import runs_live


def _load(path: Path):
    from asc_keras.models.common import load_model_file

    return load_model_file(path)


def student_inputs(
    cfg: SystemConfig, place: RunPlace, prep: Prepared, stage: str = "student"
) -> dict:
    """What the student of ``stage`` is made from (the control does not depend on the teachers)."""
    inputs = {
        "width": cfg.student_width,
        "seed": cfg.seed,
        "augment": dataclasses.asdict(cfg.augment),
        "optim": cfg.optim.key_dict(),
        "features": prep.splits.clip_cache_name,
        "train_split": place.train_split,
    }
    if stage == "student":
        from asc_keras.training.student import whole_target_live

        d, distill = cfg.distill, dataclasses.asdict(cfg.distill)
        teachers_live = runs_live(cfg, prep.targets, prep.splits)
        if not teachers_live:  # the view acts on live teachers alone
            distill.pop("teacher_view")  # so runs recorded before it stay done
        teaching = cfg.controls.ce_control and prep.targets is not None  # the control's share acts
        share = d.control_share if teaching else 0.0
        if d.live_temperature is None or not whole_target_live(teachers_live, share):
            distill.pop("live_temperature")  # where it does not act, runs before it stay done
        distill.pop("recording_alpha")  # acts as alpha (teaching_config): earlier runs stay done
        inputs.update(distill=distill, targets=prep.targets_key)
        probe = prep.targets is not None and prep.targets.meta.get("probe")
        if probe:  # 'auto' clip targets: the probe's score decides whether the teachers run live
            inputs["probe"] = probe
        for field in ("live_lead_p", "probe_devices"):  # act only there; at their defaults,
            if not probe or distill[field] == getattr(DistillConfig, field):  # runs recorded
                distill.pop(field)  # before them stay done
        if place.init_from is not None:  # a changed source (path or content) redoes the stage
            inputs["init_from"] = file_identity(place.init_from)
    return inputs


def student_stage(
    cfg: SystemConfig, place: RunPlace, runner: StageRunner, prep: Prepared, stage: str = "student",
    control=None,
):  # fmt: skip
    """Train (or load) the model of ``stage``: 'student' learns from the ensemble (KD), 'control'
    is the CE control -- the same student, augmentation, schedule and length, no teachers.
    ``control``: the trained CE control, run live on the student's batches for
    ``distill.control_share`` of its target (None: the share is 0).  The teachers' part of the
    target is stored, or run live on each batch (:mod:`asc_keras.stages.teaching`)."""
    from asc_keras.stages.teaching import live_teachers
    from asc_keras.training.student import train_student

    files, inputs = place.files, student_inputs(cfg, place, prep, stage)
    if control is not None:  # a retrained control (its file's bytes) redoes the student it teaches
        inputs["control"] = file_identity(files.model("control"))["sha256"]
    if runner.done(stage, inputs, files.model(stage)):
        return _load(files.model(stage))
    runner.start(stage, inputs, scratch=files.training(stage))
    targets = prep.targets if stage == "student" else None
    live = live_teachers(cfg, targets, prep.teacher_folders, prep.splits)
    if live is not None:
        runner.log(f"   teachers run live on each augmented batch: {', '.join(live.names)}")
    model = train_student(cfg, prep.splits.train, prep.splits.evaluate,
                          None if live is not None else targets, run_dir=files.training(stage),
                          strategy=place.strategy, verbose=place.verbose,
                          init_from=place.init_from if stage == "student" else None,
                          teachers=live and list(live.models), teacher_weights=live and live.weights,
                          control=control)  # fmt: skip
    save_model_file(model, files.model(stage))
    return model


def baseline_stage(cfg: SystemConfig, place: RunPlace, runner: StageRunner, prep: Prepared):
    """The DCASE baseline on its own log-mels of the same clips: (model, its evaluation split)."""
    from asc_keras.features.cache import extract_features
    from asc_keras.models.baseline import BASELINE_FEATURES
    from asc_keras.training.baseline import train_baseline

    s, files = prep.splits, place.files
    clips = list(dict.fromkeys(s.train.names + s.evaluate.names))
    cache = extract_features(prep.dataset.root, clips, BASELINE_FEATURES, place.shared.features,
                             name="baseline-clips", progress=place.progress)  # fmt: skip
    # The same clips, re-pointed at the baseline's own cache.
    train, evaluate = (
        dataclasses.replace(split, features=cache.features, rows=cache.rows(split.names))
        for split in (s.train, s.evaluate)
    )
    inputs = {"seed": cfg.seed, "optim": cfg.optim.key_dict(students=False),
              "features": cache.path.name, "controls": dataclasses.asdict(cfg.controls),
              "train_split": place.train_split}  # fmt: skip
    if runner.done("baseline", inputs, files.model("baseline")):
        return _load(files.model("baseline")), evaluate
    runner.start("baseline", inputs, scratch=files.training("baseline"))
    model = train_baseline(cfg, train, evaluate, run_dir=files.training("baseline"),
                           strategy=place.strategy, verbose=place.verbose)  # fmt: skip
    save_model_file(model, files.model("baseline"))
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


@dataclasses.dataclass(frozen=True)
class Compressed:
    """The compress stage's products: the tf_keras model to convert (None when the stage and its
    conversion were both done before), its float twin (Keras 3, no fake quantisation) and the
    measured sparsity."""

    model: object | None
    float_twin: object
    info: dict


def compress_stage(
    cfg: SystemConfig, place: RunPlace, runner: StageRunner, prep: Prepared, student, control=None
) -> Compressed:
    """Prune + QAT the student (tf_keras twin), and keep the compressed model's float twin.
    ``control``: the CE control that taught ``distill.control_share`` of the student's target;
    the fine-tuning takes that share from its outputs on the clean clips."""
    from asc_keras.compress.tfmot_compress import prune_and_quantize
    from asc_keras.compress.twin import keras_float_twin

    c, files = cfg.compress, place.files
    if not (c.prune or c.qat):
        return Compressed(None, student, {})
    # The QAT model lives only in memory: compression is skipped only when its int8
    # conversion is fresh too (else the converter would get the float student).
    made = (files.qat_weights, files.compress_info, files.compressed_float)
    if runner.done("compress", compress_inputs(cfg, runner), *made) and runner.done(
        "tflite", tflite_inputs(cfg, runner), files.int8
    ):
        return Compressed(
            None, _load(files.compressed_float), json.loads(files.compress_info.read_text())
        )
    runner.start("compress", compress_inputs(cfg, runner))
    if control is not None:
        from asc_keras.distill.targets import model_targets

        control = model_targets(control, prep.splits.train, "ce_control")
    qat, info = prune_and_quantize(student, cfg, prep.splits.train, prep.targets, control=control,
                                   verbose=place.verbose, log=runner.log)  # fmt: skip
    twin = keras_float_twin(qat, student)
    files.compress.mkdir(parents=True, exist_ok=True)
    qat.save_weights(files.qat_weights)
    save_model_file(twin, files.compressed_float)
    write_json(files.compress_info, info)
    files.int8.unlink(missing_ok=True)  # must be re-converted from this model
    return Compressed(qat, twin, info)


def tflite_stage(
    cfg: SystemConfig, place: RunPlace, runner: StageRunner, prep: Prepared, model, redo: bool
) -> Path:
    """Full-int8 TFLite of ``model`` (redone whenever compression just ran)."""
    from asc_keras.compress.tflite import calibration_rows, convert_int8

    path = place.files.int8
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
