"""Run one submission system end to end (report sec. 4.3), stage by stage, resumably.

Stages and what marks them done (a done stage is not redone unless ``force`` names it):

==========  =====================================================================
data        the dataset folder (generated into ``work/`` when none is given)
features    clip and 10 s recording log-mel caches in ``work/features/``
teachers    ``work/teachers/<name>-<hash>/final.keras`` + ``eval.json`` per teacher
targets     ``work/targets/<source>-per-teacher-<hash>.npy``: per-teacher logits per training clip
probe       ``work/probes/probe-<hash>.json``: with ``distill.clip_targets`` 'auto' and clip-level
            targets, the student trained with CE without the clips held out from the teachers,
            scored on them: the teachers run live on a clear lead there (p below
            ``distill.live_lead_p``; stages.teaching)
control     ``out/control.keras``: the same student trained with CE only (``controls.ce_control``)
student     ``out/student.keras`` (KD training in ``out/student/``, resumable); with
            ``distill.control_share`` > 0 the control runs live on its batches for that share
            (``control_share_no_lead`` where 'auto' found the teachers no clear lead), with
            ``distill.clip_targets`` 'live' (or 'auto', on a clear lead) the teachers instead
            (clip-level targets)
baseline    ``out/baseline.keras``: the DCASE baseline on its own log-mels (``controls.baseline``)
compress    ``out/compress/qat.weights.h5`` + ``info.json`` (pruning + QAT on the tf_keras twin)
tflite      ``out/student_int8.tflite``
evaluate    ``out/results.json``
report      ``out/results.md``, ``out/plots/*.png``, ``out/submission/*``
==========  =====================================================================

On a CPU the control and the baseline, which need no teacher, train in a second process while
the teachers train (:mod:`asc_keras.stages.beside`; the same models to the bit): the run waits
for each before its stage, whose skip rule then reads it back.

The shared stages (:mod:`asc_keras.stages.shared`) keep their products in ``work``, keyed by
everything they depend on, so systems 1-2 share one set of teachers and systems 3-4, which
add time stretching, another.  The output stages (:mod:`asc_keras.stages.outputs`) record what
they were made from in ``out/stamps/<stage>.json``; when that changes (``--set optim.epochs=...``,
new teachers or targets) the stage and those after it are redone
(:class:`~asc_keras.stages.runner.StageRunner`).  The control and baseline rows show what
distillation bought (:mod:`asc_keras.stages.results`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from asc_keras.config import SCENE_CLASSES, SystemConfig
from asc_keras.distill.targets import check_auto_limit
from asc_keras.files import folder_lock, write_json, write_text
from asc_keras.log import warnings_to
from asc_keras.models.classes import write_classes
from asc_keras.stages.beside import Beside, beside_stages
from asc_keras.stages.outputs import baseline_stage, compress_stage, student_stage, tflite_stage
from asc_keras.stages.pretrain import check_pretrain_data
from asc_keras.stages.probe import asks_probe, check_clip_targets
from asc_keras.stages.results import add_control_rows, evaluate_stage, report_stage
from asc_keras.stages.runner import STAGES, RunError, StageRunner
from asc_keras.stages.shared import Prepared, RunPlace, data_stage, features_stage
from asc_keras.stages.teachers import TeacherOutputs, targets_stage, teachers_stage
from asc_keras.stages.teaching import probe_stage, teaching_config
from asc_keras.training.student import (
    check_control_share,
    check_final_weights,
    check_kd_stop,
    check_kd_weights,
    check_student_length,
)


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
    if place.init_from is not None and not (
        Path(place.init_from).is_file() and Path(place.init_from).suffix == ".keras"
    ):
        raise RunError(
            f"--init-from {place.init_from}: not a .keras file; pass a student written by asc-keras run"
        )
    check_pretrained(cfg)
    check_pretrain_data(cfg)
    check_auto_limit(cfg.distill.auto_label_probability)  # before the teachers, not after them
    check_kd_stop(cfg.distill.kd_stop)  # the same: not when the student is built
    check_control_share(cfg)
    check_kd_weights(cfg)
    check_final_weights(cfg)
    check_student_length(cfg)
    check_clip_targets(cfg)
    theirs, mine = _recorded_identity(place.files.config), run_identity(cfg, place)
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


def _recorded_identity(path: Path) -> dict:
    """The run identity an output folder's ``config.yaml`` records ({} without one)."""
    if not path.is_file():
        return {}
    try:
        recorded = (
            yaml.safe_load(path.read_text()) or {}
        )  # plain YAML only: no tags are constructed
        run = recorded.get("run", {}) if isinstance(recorded, dict) else None
        if not isinstance(run, dict):
            raise ValueError("no 'run' mapping")
    except (yaml.YAMLError, ValueError, UnicodeDecodeError) as e:
        raise RunError(f"{path}: not a run's configuration ({str(e).splitlines()[0]}); this --out "
                       "holds something else: choose another --out") from None  # fmt: skip
    return run


def check_pretrained(cfg: SystemConfig) -> None:
    """A pretrained teacher file is read (safely) now, so a bad or crafted one stops the run before
    any data is generated or trained on."""
    from asc_keras.models.panns_import import (
        check_checkpoint,
        is_torch_checkpoint,
        resolved_front_end,
    )

    path = cfg.teachers.pretrained_mobilenetv2
    if not (path and cfg.distill.enabled and "mobilenetv2" in cfg.teachers.names):
        return
    if not Path(path).is_file():
        raise RunError(
            f"teachers.pretrained_mobilenetv2={path}: file not found (nothing is downloaded)"
        )
    if is_torch_checkpoint(path):
        check_checkpoint(path)
    elif Path(path).suffix == ".keras":
        from asc_keras.models.common import load_model_file

        load_model_file(path, "teacher weights")  # safe mode: a crafted file is refused now
    try:  # what the teacher is fed ('auto': PANNs' front end for a PANNs checkpoint)
        resolved_front_end(cfg.teachers)
    except ValueError as e:
        raise RunError(str(e)) from None


def run_identity(cfg: SystemConfig, place: RunPlace) -> dict:
    """What makes an output folder one run: system, profile, width, data, training split."""
    return {
        "system": cfg.system,
        "profile": cfg.profile,
        "student_width": cfg.student_width,
        "data": str(Path(place.data).resolve()) if place.data else "generated",
        "train_split": place.train_split,
    }


def prepare(cfg: SystemConfig, place: RunPlace, runner: StageRunner,
            after_features: Callable[[], None] = lambda: None, teachers: bool = True) -> Prepared:  # fmt: skip
    """Run the shared stages in order: data, features, teachers, targets (``after_features``:
    called between, e.g. to start the stages that need no teacher beside them; ``teachers``
    False: the teachers' stages skipped, the features as with them, for students that learn
    from none)."""
    with runner.stage("data"):
        ds, root = data_stage(cfg, place, runner)
    with runner.stage("features"):
        clip_cache, splits, skipped = features_stage(cfg, place, ds, teachers)
    after_features()
    outputs, teach = TeacherOutputs.none(), cfg.distill.enabled and teachers
    if teach:
        with runner.stage("teachers"):
            folders = teachers_stage(cfg, place, runner, root, splits)
        with runner.stage("targets"):
            outputs = targets_stage(cfg, place, runner, folders, splits)
        if asks_probe(cfg, outputs.targets):  # do the teachers know more about a clip?
            with runner.stage("probe"):
                probed = probe_stage(cfg, place, runner, outputs.targets, splits, folders)
            outputs = dataclasses.replace(outputs, targets=probed)
    return Prepared(ds, root, clip_cache, splits, outputs.metrics, outputs.targets, outputs.key, skipped,
                    folders if teach else {})  # fmt: skip


def run_system(
    cfg: SystemConfig, place: RunPlace, runner: StageRunner, label: str | None = None
) -> dict:
    """Every stage of one system, in the report's order; returns the dict written to ``results.json``."""
    t_start, files = time.perf_counter(), place.files
    check_run(cfg, place)
    write_text(files.config,
               yaml.safe_dump({"run": run_identity(cfg, place), **cfg.to_dict()}, sort_keys=False))  # fmt: skip
    write_json(files.features, dataclasses.asdict(cfg.features))
    write_classes(files.classes, SCENE_CLASSES)
    # The CE control and the baseline need no teacher: on a CPU they train beside the teachers.
    with Beside(cfg, place, runner, beside_stages(cfg, place)) as beside:
        prep: Prepared = prepare(cfg, place, runner, beside.start)  # data ... soft targets
        cfg = teaching_config(cfg, prep.targets, prep.splits)  # the control's share, alpha

        control = baseline = None
        if cfg.controls.ce_control and prep.targets is not None:
            with runner.stage("control"):  # the same student, CE only (first: it may co-teach)
                beside.wait("control")  # then read back by the stage's skip rule
                control = student_stage(cfg, place, runner, prep, stage="control")
        # Live, on each augmented batch, where the teachers' part is stored (stages.teaching).
        teaching = control if cfg.distill.control_share > 0 else None  # teaching_config's share
        with runner.stage("student"):  # SERFR-CNN distilled from the teacher ensemble
            student = student_stage(cfg, place, runner, prep, control=teaching)
        if cfg.controls.baseline:
            with runner.stage("baseline"):  # the DCASE baseline, Table 3's yardstick
                beside.wait("baseline")
                baseline = baseline_stage(cfg, place, runner, prep)

    with runner.stage("compress"):  # pruning + QAT (tensorflow-model-optimization)
        compressed = compress_stage(cfg, place, runner, prep, student, teaching)
    with runner.stage("tflite"):  # full-int8 TFLite of exactly the compressed model
        convert = compressed.model if compressed.model is not None else student
        tflite = tflite_stage(cfg, place, runner, prep, convert, redo=compressed.model is not None)

    with runner.stage("evaluate"):
        evaluation = evaluate_stage(cfg, place, runner, prep, student, compressed.float_twin, tflite,
                                    compressed.info)  # fmt: skip
        results = add_control_rows(evaluation.results, place, runner, prep, control, baseline)
    with runner.stage("report"):
        report_stage(cfg, place, runner, prep, evaluation, label or f"asc_keras_task1_{cfg.system}")

    from asc_keras.evaluate.report import write_results_md

    # timings_s: this process's seconds in each stage (for a stage trained beside, the wait for
    # it); beside_s: the stages trained in the second process and their own seconds there.
    results.update(timings_s=dict(runner.timings), beside_s=dict(runner.beside),
                   wall_time_s=time.perf_counter() - t_start, redone_stages=list(runner.started))  # fmt: skip
    write_json(files.results_json, results)
    write_results_md(results, files.results_md)
    runner.log(f"done in {results['wall_time_s']:.0f} s: {files.results_md}")
    return results


def run(
    cfg: SystemConfig,
    place: RunPlace,
    *,
    force=frozenset(),
    log: Callable[[str], None] = print,
    label: str | None = None,
) -> dict:
    """All stages of one system (``force``: stages to redo); returns what ``results.json`` holds.

    One process at a time per output folder: a second run on a busy ``place.out`` stops at once
    (:func:`~asc_keras.files.folder_lock`), before it writes anything there.
    """
    with folder_lock(place.out), warnings_to(log):
        return run_system(cfg, place, StageRunner(place.out, force, log), label)


def prepare_shared(cfg: SystemConfig, place: RunPlace, *, force=frozenset(), log=print,
                   teachers: bool = True) -> Prepared:  # fmt: skip
    """The shared stages only (data, features, teachers, targets): for the width search and
    ablation (``teachers`` False: without the teachers' stages, :func:`prepare`)."""
    check_run(cfg, place)
    with warnings_to(log):
        return prepare(cfg, place, StageRunner(place.out, force, log), teachers=teachers)


__all__ = ["STAGES", "RunError", "RunPlace", "check_run", "prepare_shared", "run", "run_system"]
