"""The stages that need no teacher, trained in a second process (asc_keras.stages.beside): the
same models to the bit as trained in the run's own process, read back by the stages' skip rules,
trained here instead where that process fails, and off where it would not pay."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest
from conftest import tiny_config

from asc_keras.stages.beside import Beside, beside_stages
from asc_keras.stages.runner import StageRunner
from asc_keras.stages.shared import Prepared, RunPlace, data_stage, features_stage

# The tiny student, and a baseline as short.
CFG = tiny_config(optim={"steps": 12, "rounds": 2}, controls={"baseline_steps": 8})


def _prepared(cfg, place, runner) -> Prepared:
    ds, root = data_stage(cfg, place, runner)
    clip_cache, splits, skipped = features_stage(cfg, place, ds)
    return Prepared(ds, root, clip_cache, splits, {}, None, None, skipped)


def _weights(model) -> list[np.ndarray]:
    return [np.asarray(w) for w in model.get_weights()]


def test_the_control_and_baseline_trained_beside_are_those_trained_here_to_the_bit(
    tiny_tau, tmp_path, monkeypatch
):
    import asc_keras.training.baseline as baseline
    import asc_keras.training.student as student
    from asc_keras.stages.outputs import baseline_stage, student_stage

    place = RunPlace(tmp_path / "out", tmp_path / "work", tiny_tau, verbose=0)
    logs = []
    # --force names the control: the second process trains it, and it is not trained twice.
    runner = StageRunner(place.out, force={"control"}, log=logs.append)
    prep = _prepared(CFG, place, runner)
    with Beside(CFG, place, runner, ("control", "baseline")) as beside:
        beside.start()
        beside.wait("control")
        beside.wait("baseline")
    assert sorted(runner.beside) == ["baseline", "control"]
    assert runner.started == ["control", "baseline"]  # both trained there, not found done
    assert not runner.forced("control")
    assert any("train in a second process" in line for line in logs)
    assert sum("   trained in the second process (" in line for line in logs) == 2
    log = (place.out / "logs" / "beside.log").read_text()
    assert "== control" in log and "== baseline" in log
    # Read back by each stage's own skip rule: nothing trains in this process.
    with monkeypatch.context() as m:
        m.setattr(student, "train_student", lambda *a, **k: pytest.fail("control trained twice"))
        m.setattr(baseline, "train_baseline", lambda *a, **k: pytest.fail("baseline trained twice"))
        control = student_stage(CFG, place, runner, prep, stage="control")
        base, _ = baseline_stage(CFG, place, runner, prep)
    # The same stages in this process, into another output folder: the same weights, every bit.
    here = dataclasses.replace(place, out=tmp_path / "here")
    runner_here = StageRunner(here.out, log=logs.append)
    for a, b in zip(_weights(control), _weights(student_stage(CFG, here, runner_here, prep,
                                                              stage="control")), strict=True):  # fmt: skip
        assert np.array_equal(a, b)
    for a, b in zip(_weights(base), _weights(baseline_stage(CFG, here, runner_here, prep)[0]),
                    strict=True):  # fmt: skip
        assert np.array_equal(a, b)


def test_a_stage_the_second_process_cannot_train_is_trained_here_with_a_warning(
    tiny_tau, tmp_path, monkeypatch, caplog
):
    import asc_keras.stages.beside as beside_module

    # A second process that ends at once, without a word on any stage.
    monkeypatch.setattr(beside_module, "command", lambda job, fd: [sys.executable, "-c", "pass"])
    place = RunPlace(tmp_path / "out", tmp_path / "work", tiny_tau, verbose=0)
    runner = StageRunner(place.out, log=lambda line: None)
    with Beside(CFG, place, runner, ("control",)) as beside:
        beside.start()
        beside.wait("control")
    assert runner.beside == {} and runner.started == []  # so the run trains it itself
    assert "could not train the control stage (it ended (exit code 0)" in caplog.text
    assert str(place.out / "logs" / "beside.log") in caplog.text


def test_what_trains_beside_the_teachers_and_where_nothing_does(tmp_path, monkeypatch):
    import os

    place = RunPlace(tmp_path / "out", tmp_path / "work")
    assert beside_stages(CFG, place) == ("control", "baseline")
    no_teachers = dataclasses.replace(CFG, distill=dataclasses.replace(CFG.distill, enabled=False))
    assert beside_stages(no_teachers, place) == ("baseline",)  # the control needs teachers
    no_base = dataclasses.replace(CFG, controls=dataclasses.replace(CFG.controls, baseline=False))
    assert beside_stages(no_base, place) == ("control",)
    assert beside_stages(CFG, dataclasses.replace(place, beside=False)) == ()  # --one-process
    assert beside_stages(CFG, dataclasses.replace(place, strategy="mirrored")) == ()
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert beside_stages(CFG, place) == ()
    # Nothing to train beside: start and wait do nothing.
    runner = StageRunner(place.out, log=lambda line: None)
    with Beside(CFG, place, runner, ()) as beside:
        beside.start()
        beside.wait("control")
    assert runner.beside == {} and not (place.out / "logs").exists()


def test_one_process_on_the_command_line_keeps_every_stage_in_the_run(tmp_path, monkeypatch):
    import asc_keras.orchestration.run as run_module
    from asc_keras.cli import main

    places = []
    monkeypatch.setattr(run_module, "run", lambda cfg, place, **kw: places.append(place))
    args = ["run", "--system", "1", "--profile", "quick", "--out", str(tmp_path / "o"), "--work",
            str(tmp_path / "w")]  # fmt: skip
    assert main(args) == 0 and main([*args, "--one-process"]) == 0
    assert [p.beside for p in places] == [None, False]  # None: where it pays (beside_stages)
    assert beside_stages(CFG, places[1]) == ()
