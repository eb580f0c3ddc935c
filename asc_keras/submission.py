"""Run one submission system end to end (report sec. 4.3), stage by stage, resumably.

Stages and what marks them done (a done stage is not redone unless ``force`` names it):

==========  =====================================================================
data        the dataset folder (generated into ``work/`` when none is given)
features    clip and 10 s recording log-mel caches in ``work/features/``
teachers    ``work/teachers/<name>-<hash>/final.keras`` + ``eval.json`` per teacher
targets     ``work/targets/<source>-per-teacher-<hash>.npy``: per-teacher logits per training clip
student     ``out/student.keras`` (KD training in ``out/student/``, resumable)
control     ``out/control.keras``: the same student trained with CE only (``controls.ce_control``)
baseline    ``out/baseline.keras``: the DCASE baseline on its own log-mels (``controls.baseline``)
compress    ``out/compress/qat.weights.h5`` + ``info.json`` (pruning + QAT on the tf_keras twin)
tflite      ``out/student_int8.tflite``
evaluate    ``out/results.json``
report      ``out/results.md``, ``out/plots/*.png``, ``out/submission/*``
==========  =====================================================================

The shared stages (:mod:`asc_keras.system.shared`) keep their products in ``work``, keyed by
everything they depend on, so systems 1-2 share one set of teachers and systems 3-4, which
add time stretching, another.  The output stages (:mod:`asc_keras.system.outputs`) record what
they were made from in ``out/stamps/<stage>.json``; when that changes (``--set optim.epochs=...``,
new teachers or targets) the stage and those after it are redone
(:class:`~asc_keras.system.runner.StageRunner`).  The control and baseline rows show what
distillation bought (:mod:`asc_keras.system.results`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from asc_keras.config import SystemConfig
from asc_keras.files import write_json, write_text
from asc_keras.system.outputs import baseline_stage, compress_stage, student_stage, tflite_stage
from asc_keras.system.results import add_control_rows, evaluate_stage, report_stage
from asc_keras.system.runner import STAGES, RunError, StageRunner
from asc_keras.system.shared import Prepared, RunPlace, prepare


def check_run(cfg: SystemConfig, place: RunPlace) -> None:
    """Fail fast, before any long work: bad paths, another system's run in ``place.out``."""
    if place.data is not None and not Path(place.data).is_dir():
        raise RunError(
            f"--data {place.data}: folder not found. Pass the TAU Urban Acoustic Scenes 2022 Mobile "
            "development folder (meta.csv, audio/, evaluation_setup/) or leave --data out."
        )
    if place.eval_data is not None and not Path(place.eval_data).is_dir():
        raise RunError(f"--eval-data {place.eval_data}: folder not found.")
    if place.train_split not in ("train", "all"):
        raise RunError(f"--train-split must be 'train' or 'all', got {place.train_split!r}")
    prev = place.out / "config.yaml"
    theirs = (yaml.safe_load(prev.read_text()) or {}).get("run", {}) if prev.is_file() else {}
    mine = run_identity(cfg, place)
    if theirs and theirs != mine:
        diff = ", ".join(
            f"{k}: {theirs.get(k)!r} there, {v!r} now"
            for k, v in mine.items()
            if theirs.get(k) != v
        )
        raise RunError(
            f"{place.out} holds another run ({diff}). Choose another --out, or delete that folder to "
            "start over."
        )


def run_identity(cfg: SystemConfig, place: RunPlace) -> dict:
    """What makes an output folder one run: system, profile, width, data, training split."""
    return {
        "system": cfg.system,
        "profile": cfg.profile,
        "student_width": cfg.student_width,
        "data": str(Path(place.data).resolve()) if place.data else "generated",
        "train_split": place.train_split,
    }


def run_system(
    cfg: SystemConfig, place: RunPlace, runner: StageRunner, label: str | None = None
) -> dict:
    """Every stage of one system, in the report's order; returns the dict written to ``results.json``."""
    t_start = time.perf_counter()
    check_run(cfg, place)
    write_text(
        place.out / "config.yaml",
        yaml.safe_dump({"run": run_identity(cfg, place), **cfg.to_dict()}, sort_keys=False),
    )
    write_json(place.out / "features.json", dataclasses.asdict(cfg.features))
    prep: Prepared = prepare(cfg, place, runner)  # data, features, teachers, soft targets

    with runner.stage("student"):  # SERFR-CNN distilled from the teacher ensemble
        student = student_stage(cfg, place, runner, prep)
    control = baseline = None
    if cfg.controls.ce_control and prep.targets is not None:
        with runner.stage("control"):  # the same student, CE only
            control = student_stage(cfg, place, runner, prep, stage="control")
    if cfg.controls.baseline:
        with runner.stage("baseline"):  # the DCASE baseline, Table 3's yardstick
            baseline = baseline_stage(cfg, place, runner, prep)

    with runner.stage("compress"):  # pruning + QAT (tensorflow-model-optimization)
        qat, compress_info = compress_stage(cfg, place, runner, prep, student)
    with runner.stage("tflite"):  # full-int8 TFLite
        tflite = tflite_stage(
            cfg, place, runner, prep, qat if qat is not None else student, redo=qat is not None
        )

    with runner.stage("evaluate"):
        results = evaluate_stage(cfg, place, runner, prep, student, tflite, compress_info)
        add_control_rows(results, place, runner, prep, control, baseline)
    with runner.stage("report"):
        report_stage(cfg, place, runner, prep, results, label or f"asc_keras_task1_{cfg.system}")

    from asc_keras.evaluate.report import write_results_md

    results.update(timings_s=dict(runner.timings), wall_time_s=time.perf_counter() - t_start)
    write_json(place.out / "results.json", results)
    write_results_md(results, place.out / "results.md")
    runner.log(f"done in {results['wall_time_s']:.0f} s: {place.out / 'results.md'}")
    return results


def run(
    cfg: SystemConfig,
    place: RunPlace,
    *,
    force=frozenset(),
    log: Callable[[str], None] = print,
    label: str | None = None,
) -> dict:
    """All stages of one system (``force``: stages to redo); returns what ``results.json`` holds."""
    return run_system(cfg, place, StageRunner(place.out, force, log), label)


def prepare_shared(cfg: SystemConfig, place: RunPlace, *, force=frozenset(), log=print) -> Prepared:
    """The shared stages only (data, features, teachers, targets): for the width search and ablation."""
    check_run(cfg, place)
    return prepare(cfg, place, StageRunner(place.out, force, log))


__all__ = ["STAGES", "RunError", "RunPlace", "check_run", "prepare_shared", "run", "run_system"]
