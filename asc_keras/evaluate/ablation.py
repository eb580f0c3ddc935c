"""The report's claims as one table: teachers vs their ensemble, and what each ingredient of the
student's recipe buys (CE only, KD from each teacher, KD from the ensemble, mixup, time
stretching, width 24 vs 32), over several seeds.

Per seed, the shared stages of :func:`asc_keras.submission.prepare_shared` (data, features,
teachers, soft targets; cached in ``work`` and reused by every row and by later runs) run once;
then each student row trains the same SERFR-CNN recipe with one change.  Every row's result is
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

import numpy as np

from asc_keras.config import SystemConfig
from asc_keras.files import write_json


@dataclass(frozen=True)
class StudentRow:
    """One student row: a label, a config change and which teachers' targets it learns from."""

    key: str
    label: str
    change: Callable[[SystemConfig], SystemConfig]
    teachers: tuple[str, ...] | None  # None: CE only; (): all of the run's teachers


def _same(c: SystemConfig) -> SystemConfig:
    return c


def student_rows(teacher_names: tuple[str, ...]) -> list[StudentRow]:
    """The report's claims, as rows (the base is the system's own recipe: KD from the ensemble)."""
    aug = dataclasses.replace
    rows = [StudentRow("ce_only", "student, CE only (no teachers)", _same, None)]
    rows += [
        StudentRow(f"kd_{t}", f"student, KD from {t} only", _same, (t,)) for t in teacher_names
    ]
    rows += [
        StudentRow("kd_ensemble", "student, KD from the ensemble (base)", _same, ()),
        StudentRow(
            "kd_no_mixup",
            "KD from the ensemble, mixup off",
            lambda c: aug(c, augment=aug(c.augment, mixup=False)),
            (),
        ),
        StudentRow(
            "kd_time_stretch",
            "KD from the ensemble, time stretching on",
            lambda c: aug(c, augment=aug(c.augment, time_stretch=True)),
            (),
        ),
        StudentRow(
            "kd_width24", "KD from the ensemble, width 24", lambda c: aug(c, student_width=24), ()
        ),
        StudentRow(
            "kd_width32", "KD from the ensemble, width 32", lambda c: aug(c, student_width=32), ()
        ),
    ]
    return rows


def run_ablation(
    cfg: SystemConfig,
    out: Path,
    work: Path,
    *,
    data: Path | None = None,
    seeds=(0, 1, 2),
    rows: list[str] | None = None,
    log=print,
    verbose=0,
) -> dict:
    """Train and evaluate every row for every seed (resumable); write the table; return the results.

    Returns {"teachers": {name: [acc per seed]}, "students": {row key: [acc per seed]},
    "labels": {key: label}, ...} also written as ``out/ablation.json``, ``out/ablation.md`` and
    ``out/ablation.png``.
    """
    from asc_keras.submission import prepare_shared
    from asc_keras.system.shared import RunPlace

    out, work = Path(out), Path(work)
    all_rows = student_rows(tuple(cfg.teachers.names))
    # Width rows: the base row already has the system's width; keep only the other one.
    all_rows = [r for r in all_rows if r.key != f"kd_width{cfg.student_width}"]
    if rows:
        unknown = set(rows) - {r.key for r in all_rows}
        if unknown:
            raise ValueError(
                f"unknown ablation row(s) {sorted(unknown)}; rows: {[r.key for r in all_rows]}"
            )
        all_rows = [r for r in all_rows if r.key in rows]
    result: dict = {
        "teachers": {},
        "students": {},
        "labels": {r.key: r.label for r in all_rows},
        "seeds": list(seeds),
        "system": cfg.system,
        "profile": cfg.profile,
    }
    for seed in seeds:
        scfg = dataclasses.replace(cfg, seed=int(seed))
        sdir = out / f"seed{seed}"
        sdir.mkdir(parents=True, exist_ok=True)
        prep = prepare_shared(
            scfg, RunPlace(sdir, work, data and Path(data), verbose=verbose), log=log
        )
        for name, m in prep.teacher_metrics.items():
            result["teachers"].setdefault(name, []).append(m["accuracy"])
        for row in all_rows:
            done = sdir / f"{row.key}.json"
            if not done.is_file():  # the row's skip rule
                log(f"== seed {seed}: {row.label}")
                write_json(done, _train_row(row, scfg, prep, sdir / row.key, verbose))
            r = json.loads(done.read_text())
            result["students"].setdefault(row.key, []).append(r["accuracy"])
            log(f"   seed {seed} {row.label}: {100 * r['accuracy']:.1f} %")
        # The table so far after every seed: an interrupted ablation still leaves one.
        result["seeds_done"] = result.get("seeds_done", []) + [int(seed)]
        write_json(out / "ablation.json", result)
        write_ablation_md(result, out / "ablation.md")
        plot_ablation(result, out / "ablation.png")
    return result


def _train_row(row: StudentRow, cfg: SystemConfig, prep, run_dir: Path, verbose) -> dict:
    """Train one ablation row's student and score it on the evaluation clips."""
    from asc_keras.evaluate.metrics import classification_metrics
    from asc_keras.training.student import train_student

    rcfg = row.change(cfg)
    soft = None
    if row.teachers is not None and prep.targets is not None:
        chosen = prep.targets.select(teachers=row.teachers or None)
        soft = chosen.distribution(rcfg.distill.temperature)
    ev = prep.splits.evaluate
    model = train_student(rcfg, prep.splits.train, ev, soft, run_dir=run_dir, verbose=verbose)
    m = classification_metrics(
        ev.labels, model.predict(ev.inputs(), batch_size=256, verbose=0), ev.devices
    )
    return {k: m[k] for k in ("accuracy", "log_loss", "micro_accuracy")}


def _mean_std(v) -> str:
    a = 100 * np.asarray(v, float)
    return f"{a.mean():.1f} ± {a.std():.1f}" if len(a) > 1 else f"{a.mean():.1f}"


def write_ablation_md(result: dict, path: Path) -> Path:
    """Markdown table: accuracy (%) mean ± std over seeds, teachers then students."""
    n = len(result.get("seeds_done", result["seeds"]))
    lines = [
        f"# Ablation: system {result['system']}, profile {result['profile']}, {n} seed(s)",
        "",
        "Accuracy (%) on fold-1 evaluation, mean ± std over seeds (std of the seeds, not of the mean).",
        "",
        "## Teachers on 10 s recordings",
        "",
        "| teacher | accuracy (%) |",
        "|---|---|",
    ]
    lines += [f"| {k} | {_mean_std(v)} |" for k, v in result["teachers"].items()]
    lines += [
        "",
        "## Students on 1 s clips (float Keras)",
        "",
        "| row | accuracy (%) | per seed |",
        "|---|---|---|",
    ]
    for k, v in result["students"].items():
        lines.append(
            f"| {result['labels'].get(k, k)} | {_mean_std(v)} | "
            f"{', '.join(f'{100 * a:.1f}' for a in v)} |"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def plot_ablation(result: dict, path: Path) -> Path:
    """Horizontal bars with the seeds' standard deviation as error bars."""
    from asc_keras.evaluate.plots import _save, plt

    items = [(f"teacher: {k}", v) for k, v in result["teachers"].items()]
    items += [(result["labels"].get(k, k), v) for k, v in result["students"].items()]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(items) + 1.2))
    means = [100 * np.mean(v) for _, v in items]
    stds = [100 * np.std(v) for _, v in items]
    colours = ["tab:orange" if lab.startswith("teacher") else "tab:blue" for lab, _ in items]
    ax.barh(range(len(items)), means, xerr=stds, color=colours, capsize=3)
    ax.set_yticks(range(len(items)), [lab for lab, _ in items], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("accuracy (%)")
    ax.set_xlim(0, 100)
    ax.axvline(10, color="grey", lw=0.8, ls="--")  # chance
    ax.set_title(
        f"Ablation, system {result['system']} ({len(result.get('seeds_done', result['seeds']))} seeds)"
    )
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)
