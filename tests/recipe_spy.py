"""Spies on the one student recipe (``build_student_trainer`` and ``fit_student``): records the
(width, seed) of every student built, the (width, alpha) of every student trained, its live
teachers (how many, their share of the target) and its T, and what the teachers heard: each training
dataset's parallels (``distill.teacher_view``: a table of them, or None).

Used in-process by the ``recipe_calls`` fixture, and as a script by the session's tiny run:
``python recipe_spy.py CALLS.json ARGS...`` runs ``asc-keras ARGS...`` with the spies installed
and writes what they saw to CALLS.json -- and what they saw in the run's second process (the
stages trained beside the teachers, :mod:`asc_keras.stages.beside`) to CALLS.beside.json: that
process is this script too (``python recipe_spy.py CALLS.beside.json --beside JOB FD``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def install(patch, calls: dict) -> dict:
    """Wraps the recipe's two functions where the run, the width search and the ablation look
    them up; ``patch(module, name, value)`` is ``setattr`` or pytest's ``monkeypatch.setattr``."""
    import asc_keras.training.student as student
    import asc_keras.training.tuning as tuning

    calls.setdefault("build", [])
    calls.setdefault("fit", [])
    # (live teachers, the control's share of the target, how set) per fit
    calls.setdefault("teaching", [])
    calls.setdefault("heard", [])  # (teacher_view, the training data carried parallels) per fit
    calls.setdefault("temperature", [])  # the KD term's T per fit (distill.live_temperature)
    build, fit, dataset = student.build_student_trainer, student.fit_student, student.make_dataset

    def spy_build(cfg, *a, **k):
        calls["build"].append((cfg.student_width, cfg.seed))
        return build(cfg, *a, **k)

    def spy_fit(distiller, cfg, *a, **k):
        calls["fit"].append((cfg.student_width, distiller.alpha))
        calls["teaching"].append(
            (len(distiller.teachers), distiller.control_share, distiller.share_by)
        )
        calls["heard"].append([distiller.teacher_view, None])
        calls["temperature"].append(distiller.temperature)
        return fit(distiller, cfg, *a, **k)

    def spy_dataset(*a, **k):
        if k.get("shuffle") and calls["heard"]:  # the fit's training data
            calls["heard"][-1][1] = k.get("parallel") is not None
        return dataset(*a, **k)

    patch(student, "make_dataset", spy_dataset)
    for module in (student, tuning):
        patch(module, "build_student_trainer", spy_build)
        patch(module, "fit_student", spy_fit)
    return calls


def _spied_second_process(calls_path: Path):
    """``stages.beside.command`` for this script: the second process runs spied on too."""

    def command(job_path, status_fd):
        return [sys.executable, __file__, str(calls_path), "--beside", str(job_path),
                str(status_fd)]  # fmt: skip

    return command


if __name__ == "__main__":
    calls = install(setattr, {})
    if sys.argv[2] == "--beside":  # the run's second process
        from asc_keras.stages.beside import serve

        try:
            serve(sys.argv[3], int(sys.argv[4]))
        finally:
            Path(sys.argv[1]).write_text(json.dumps(calls))
        sys.exit(0)
    import asc_keras.stages.beside as beside
    from asc_keras.cli import main

    beside.command = _spied_second_process(Path(sys.argv[1]).with_suffix(".beside.json"))
    code = main(sys.argv[2:])
    Path(sys.argv[1]).write_text(json.dumps(calls))
    sys.exit(code)
