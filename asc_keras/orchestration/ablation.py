"""The report's claims as one table: teachers vs their ensemble, and what each ingredient of the
student's recipe buys (CE only, KD from each teacher, KD from the ensemble, mixup, time
stretching, width 24 vs 32), over several seeds.

Per seed, the shared stages of :func:`asc_keras.orchestration.run.prepare_shared` (data, features,
teachers, soft targets; cached in ``work`` and reused by every row and by later runs) run once
(the teachers' only where a row learns from them); then each student row trains the same
SERFR-CNN recipe with one change.  Every row's result is
written to ``out/seed<k>/<row>.json`` as soon as it exists, so an interrupted ablation resumes
with the rows still missing (an interrupted training resumes from its backup).

What stays fixed, on purpose: the teachers are those of the base system (trained with its
augmentation), so the time-stretch row changes the student's augmentation only; the KD rows
from one teacher read that teacher's column of the same stored per-teacher logits.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from asc_keras.config import SystemConfig
from asc_keras.evaluate.ablation_report import plot_ablation, write_ablation_md
from asc_keras.files import folder_lock, write_json
from asc_keras.stages.teaching import teaching_record


@dataclass(frozen=True)
class StudentRow:
    """One student row: a label, a config change and which teachers' targets it learns from."""

    key: str
    label: str
    change: Callable[[SystemConfig], SystemConfig]
    teachers: tuple[str, ...] | None  # None: CE only; (): all of the run's teachers
    from_control: bool = False  # the CE control (row ce_only) teaches instead of the teachers
    live: bool = False  # that teacher runs on each augmented batch, not once on the clean clips


def _same(c: SystemConfig) -> SystemConfig:
    return c


def _augment(**changes) -> Callable[[SystemConfig], SystemConfig]:
    return lambda c: dataclasses.replace(c, augment=dataclasses.replace(c.augment, **changes))


def _distill(**changes) -> Callable[[SystemConfig], SystemConfig]:
    return lambda c: dataclasses.replace(c, distill=dataclasses.replace(c.distill, **changes))


def _named_share(share: float, **changes) -> Callable[[SystemConfig], SystemConfig]:
    """A row with the control's share ``share`` wherever it is taught: not overridden by
    distill.control_share_no_lead, so the row measures the share it names."""
    return _distill(control_share=share, control_share_no_lead=None, **changes)


def student_rows(teacher_names: tuple[str, ...]) -> list[StudentRow]:
    """The report's claims, and the distillation settings it leaves open, as rows (the base is the
    system's own recipe: KD from the ensemble)."""
    off = {"mixup": False, "freq_mask": False, "time_mask": False, "time_stretch": False,
           "freq_mixstyle": 0.0}  # fmt: skip
    rows = [StudentRow("plain", "student, CE only, no augmentation (trained plainly)", _augment(**off), None),
            StudentRow("ce_only", "student, CE only (no teachers)", _same, None)]  # fmt: skip
    rows += [
        StudentRow(f"kd_{t}", f"student, KD from {t} only", _same, (t,)) for t in teacher_names
    ]
    rows += [
        StudentRow("kd_ensemble", "student, KD from the ensemble (base)", _same, ()),
        StudentRow("kd_no_mixup", "KD from the ensemble, mixup off", _augment(mixup=False), ()),
        StudentRow("kd_time_stretch", "KD from the ensemble, time stretching on",
                   _augment(time_stretch=True), ()),
        StudentRow("kd_width24", "KD from the ensemble, width 24",
                   lambda c: dataclasses.replace(c, student_width=24), ()),
        StudentRow("kd_width32", "KD from the ensemble, width 32",
                   lambda c: dataclasses.replace(c, student_width=32), ()),
        # What the report does not give: alpha, T, how the teachers combine, what they see.
        # alpha on every target, recording_alpha's included (the quick profile's 0.5 there)
        StudentRow("kd_alpha_0.1", "KD from the ensemble, alpha 0.1",
                   _distill(alpha=0.1, recording_alpha=None), ()),
        StudentRow("kd_alpha_0.5", "KD from the ensemble, alpha 0.5",
                   _distill(alpha=0.5, recording_alpha=None), ()),
        StudentRow("kd_T1", "KD from the ensemble, T = 1",
                   _distill(temperature=1.0, live_temperature=1.0), ()),
        StudentRow("kd_T4", "KD from the ensemble, T = 4",
                   _distill(temperature=4.0, live_temperature=4.0), ()),
        # Live targets (teachers or the control alone, on each batch) at distill.temperature.
        StudentRow("kd_live_T2", "KD, live targets at distill.temperature (as stored ones)",
                   _distill(live_temperature=None), ()),
        StudentRow("kd_logits", "KD from the ensemble, logits averaged", _distill(ensemble="logits"), ()),
        StudentRow("kd_clip_targets", "KD from the ensemble, teachers on 1 s clips",
                   _distill(target_source="clip"), ()),
        StudentRow("kd_recording_targets", "KD from the ensemble, teachers on 10 s recordings",
                   _distill(target_source="recording"), ()),
        StudentRow("kd_swap_wrong", "KD from the ensemble, wrong targets swapped to the label",
                   _distill(swap_wrong=True), ()),
        StudentRow("kd_non_target", "KD from the ensemble, non-target classes only (NCKD)",
                   _distill(kd_part="non_target"), ()),
        # Born-again (Furlanello et al., 2018): the same KD from the CE control of the same seed,
        # a teacher of the student's own size that knows what the student learns alone.  What KD
        # gains beyond this row is the teachers' knowledge, not the soft targets as such.
        StudentRow("kd_control", "KD from the CE control itself (born-again)", _same, None,
                   from_control=True),
        StudentRow("kd_control_non_target", "born-again, non-target classes only (NCKD)",
                   _distill(kd_part="non_target"), None, from_control=True),
        # The same born-again with the control run on the view the student sees (its augmented
        # batch: masks, mixup), not once on the clean clips: consistent teaching (Beyer et al.,
        # 2022).  What this row gains over kd_control is the stored targets' inconsistency.
        StudentRow("kd_control_live", "born-again, the control run live on each augmented batch",
                   _same, None, from_control=True, live=True),
        # Early-stopped KD (Cho & Hariharan, 2019): the teachers for the first half, then labels.
        StudentRow("kd_stop_0.5", "KD from the ensemble for half the steps, then CE",
                   _distill(kd_stop=0.5), ()),
        # Mixed targets: half the teachers' stored target, half the CE control run live on the
        # augmented batch -- the teachers' knowledge at half the price of their inconsistency --;
        # that half set per example by who gives the label more (CA-MKD's weights); and the
        # report's target, the teachers' alone (one of the three is the base row's recipe).
        StudentRow("kd_control_share_0.5", "KD, half the target from the control run live",
                   _named_share(0.5, control_share_by="fixed"), ()),
        StudentRow("kd_control_confidence", "KD, the control's share per example by confidence",
                   _named_share(0.5, control_share_by="confidence"), ()),
        StudentRow("kd_control_share_0", "KD, the teachers' target alone (the report's)",
                   _named_share(0.0), ()),
        # Clip-level targets of the view the student sees (the teachers run on each augmented
        # batch) or of the clean clip, stored once (the report's way): distill.clip_targets.
        StudentRow("kd_clip_live", "KD, clip-level targets, the teachers run live",
                   _distill(target_source="clip", clip_targets="live"), ()),
        StudentRow("kd_clip_stored", "KD, clip-level targets stored (of the clean clip)",
                   _distill(target_source="clip", clip_targets="stored"), ()),
    ]  # fmt: skip
    return rows


# The rows of the settings the report leaves open: run with --rows (they are not in the default table).
SETTING_ROWS = (
    "kd_alpha_0.1",
    "kd_alpha_0.5",
    "kd_T1",
    "kd_T4",
    "kd_live_T2",
    "kd_logits",
    "kd_clip_targets",
    "kd_recording_targets",
    "kd_swap_wrong",
    "kd_non_target",
    "kd_control",
    "kd_control_non_target",
    "kd_control_live",
    "kd_stop_0.5",
    "kd_control_share_0.5",
    "kd_control_confidence",
    "kd_control_share_0",
    "kd_clip_live",
    "kd_clip_stored",
)


def select_rows(cfg: SystemConfig, rows: list[str] | None) -> list[StudentRow]:
    """The rows to train: ``rows`` by key, or the report's claims (every row but SETTING_ROWS)."""
    all_rows = student_rows(tuple(cfg.teachers.names))
    # Width rows: the base row already has the system's width; keep only the other one.
    all_rows = [r for r in all_rows if r.key != f"kd_width{cfg.student_width}"]
    if not rows:
        return [r for r in all_rows if r.key not in SETTING_ROWS]
    unknown = set(rows) - {r.key for r in all_rows}
    if unknown:
        raise ValueError(
            f"unknown ablation row(s) {sorted(unknown)}; rows: {[r.key for r in all_rows]}"
        )
    return [r for r in all_rows if r.key in rows]


def run_ablation(cfg: SystemConfig, place, *, seeds=(0, 1, 2), rows: list[str] | None = None,
                 log=print) -> dict:  # fmt: skip
    """Train and evaluate every row for every seed (resumable); write the table; return the results.

    ``place``: a :class:`~asc_keras.stages.shared.RunPlace` whose ``out`` is the ablation's folder
    (each seed works in ``out/seed<k>``).  Returns {"teachers": {name: [acc per seed]},
    "students": {row key: [acc per seed]}, "labels": {key: label}, ...}, also written as
    ``out/ablation.json``, ``out/ablation.md`` and ``out/ablation.png``.
    """
    chosen = select_rows(cfg, rows)
    result: dict = {"teachers": {}, "students": {}, "students_recordings": {},
                    "labels": {r.key: r.label for r in chosen}, "seeds": list(seeds),
                    "system": cfg.system, "profile": cfg.profile,
                    "control_share": cfg.distill.control_share,
                    "control_share_by": cfg.distill.control_share_by}  # fmt: skip
    with folder_lock(place.out):
        for seed in seeds:
            _ablate_seed(dataclasses.replace(cfg, seed=int(seed)), place, chosen, result, log)
    return result


def _ablate_seed(cfg: SystemConfig, place, chosen: list[StudentRow], result: dict, log) -> None:
    """The shared stages and every row of one seed; the table so far is written after it."""
    from asc_keras.orchestration.run import prepare_shared

    out, seed = place.out, cfg.seed
    seed_place = dataclasses.replace(place, out=out / f"seed{seed}")
    seed_place.out.mkdir(parents=True, exist_ok=True)
    # Rows that learn from no teacher (plain, CE only, the born-again rows) need none: with only
    # such rows the seed's teachers, soft targets and probe are not trained (no teacher rows).
    teach = any(row.teachers is not None for row in chosen)
    if not teach:
        log(f"== seed {seed}: no row named learns from the teachers: they are not trained")
    prep = prepare_shared(cfg, seed_place, log=log, teachers=teach)
    for name, m in prep.teacher_metrics.items():
        result["teachers"].setdefault(name, []).append(m["accuracy"])
    # Which soft targets the base row learns from, and the control's share of them ('auto' may
    # choose differently per seed; the seed's control is there: the ce_only row trains it).
    result.setdefault("soft_targets", []).append(teaching_record(cfg, prep.targets, prep.splits))
    for row in chosen:
        done = seed_place.out / f"{row.key}.json"
        if not done.is_file():  # the row's skip rule
            log(f"== seed {seed}: {row.label}")
            write_json(
                done,
                _train_row(row, cfg, prep, seed_place, seed_place.out / row.key, place.verbose),
            )
        r = json.loads(done.read_text())
        result["students"].setdefault(row.key, []).append(r["accuracy"])
        result["students_recordings"].setdefault(row.key, []).append(r.get("recording_accuracy"))
        log(f"   seed {seed} {row.label}: {100 * r['accuracy']:.1f} %")
    # The table so far after every seed: an interrupted ablation still leaves one.
    result["seeds_done"] = result.get("seeds_done", []) + [int(seed)]
    write_json(out / "ablation.json", result)
    write_ablation_md(result, out / "ablation.md")
    plot_ablation(result, out / "ablation.png")


def _train_row(row: StudentRow, cfg: SystemConfig, prep, place, run_dir: Path, verbose) -> dict:
    """Train one ablation row's student and score it on the evaluation clips (and recordings)."""
    from asc_keras.distill.targets import model_targets
    from asc_keras.stages.results import score
    from asc_keras.stages.runner import StageRunner
    from asc_keras.stages.teachers import targets_stage
    from asc_keras.stages.teaching import live_teachers, probe_stage, teaching_config
    from asc_keras.training.student import train_student

    rcfg = row.change(cfg)
    targets = teachers = weights = control = None
    ev = prep.splits.evaluate
    if row.teachers is not None and prep.targets is not None:
        targets = prep.targets
        if rcfg.distill.target_source != cfg.distill.target_source:  # its own stored targets
            runner = StageRunner(place.out, log=lambda _: None)
            targets = targets_stage(rcfg, place, runner, prep.teacher_folders, prep.splits).targets
            targets = probe_stage(
                rcfg, place, runner, targets, prep.splits, prep.teacher_folders
            )  # 'auto': as run
        targets = targets.select(teachers=row.teachers or None)
    rcfg = teaching_config(rcfg, targets, prep.splits)  # the control's share, alpha: run's
    mixed = targets is not None and rcfg.distill.control_share > 0  # the control co-teaches
    live = live_teachers(rcfg, targets, prep.teacher_folders, prep.splits)  # the run's rule
    if live is not None:
        targets, teachers, weights = None, list(live.models), live.weights
    if row.from_control or mixed:  # the ce_only row's student (trained here if not yet)
        ctl = train_student(cfg, prep.splits.train, ev, None, run_dir=place.out / "ce_only",
                            verbose=verbose)  # fmt: skip
        if mixed:
            control = ctl
        elif row.live:
            teachers = [ctl]
        else:
            targets = model_targets(ctl, prep.splits.train, "ce_control")
    model = train_student(rcfg, prep.splits.train, ev, targets, run_dir=run_dir, verbose=verbose,
                          teachers=teachers, teacher_weights=weights, control=control)  # fmt: skip
    # Scored as the run scores its rows (the same function), on clips and on whole recordings.
    m = score(model, ev, recs=prep.splits.eval_recordings)
    keep = ("accuracy", "log_loss", "micro_accuracy", "recording_accuracy")
    return {k: m[k] for k in keep if k in m}
