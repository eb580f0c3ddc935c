"""The stage runner: done / stale / forced, stale work cleared, timings; the CLI's commands."""

from __future__ import annotations

import pytest


def test_output_stages_redo_when_their_inputs_change(tmp_path):
    from asc_keras.system.runner import RunError, StageRunner

    runner = StageRunner(tmp_path / "out")
    made = tmp_path / "out" / "student.keras"
    scratch = tmp_path / "out" / "student"
    inputs = {"width": 32, "optim": {"epochs": 3}, "shape": (28, 256)}
    scratch.mkdir(parents=True)
    runner.start("student", inputs, scratch=scratch)  # first record: the old scratch is stale
    assert not scratch.exists()
    assert not runner.done("student", inputs, made)  # no output yet: an interrupted stage resumes
    scratch.mkdir()
    runner.start(
        "student", inputs, scratch=scratch
    )  # same inputs (tuples == JSON lists): backups kept
    assert scratch.is_dir()
    made.write_bytes(b"x")
    assert runner.done("student", inputs, made)
    assert not runner.done("student", {**inputs, "optim": {"epochs": 4}}, made)
    forced = StageRunner(tmp_path / "out", force=frozenset({"student"}))
    assert not forced.done("student", inputs, made)
    with pytest.raises(RunError, match="unknown stage"):
        StageRunner(tmp_path / "out", force=frozenset({"studnet"}))
    with runner.stage("student"):
        pass
    assert runner.timings["student"] >= 0


def test_cli_lists_its_commands(capsys):
    from asc_keras.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("run", "tune", "ablation", "complexity", "predict"):
        assert command in out
    assert main(["complexity", "dcase_baseline", "--json"]) == 0
    assert main(["complexity", "no_such_model"]) == 2
    assert "neither a .keras/.tflite file nor a builder name" in capsys.readouterr().err
