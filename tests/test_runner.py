"""The stage runner: done / stale / forced, stale work cleared, timings; the CLI's commands."""

from __future__ import annotations

import pytest


def test_output_stages_redo_when_their_inputs_change(tmp_path, monkeypatch):
    from asc_keras.stages.runner import RunError, StageRunner

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
    assert runner.started == ["student", "student"]  # every start is counted: what a run redid
    clock = iter([10.0, 12.5, 20.0, 21.0])
    monkeypatch.setattr("asc_keras.stages.runner.time.perf_counter", lambda: next(clock))
    for _ in range(2):  # a stage entered twice (the control reuses the student's stage) adds up
        with runner.stage("student"):
            pass
    assert runner.timings["student"] == pytest.approx(3.5)


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


def test_warnings_reach_the_runs_log_as_one_plain_line_each():
    import warnings

    from asc_keras.log import warn, warnings_to

    lines = []
    with warnings_to(lines.append):
        warn("ours")
        warnings.warn("a library's", UserWarning, stacklevel=1)
    assert lines == ["WARNING: ours", "WARNING: UserWarning: a library's"]
    with warnings.catch_warnings(record=True) as caught:  # outside a run: Python's own handling
        warnings.simplefilter("always")
        warnings.warn("after", UserWarning, stacklevel=1)
    assert len(caught) == 1 and lines == ["WARNING: ours", "WARNING: UserWarning: a library's"]


def test_a_history_written_by_two_runs_costs_its_plot_with_a_warning_not_the_results(
    tmp_path, caplog
):
    """Two runs on one folder wrote every round twice (header included): the file cannot be
    read as one training; the plot and the learning check are left out with a warning."""
    from asc_keras.evaluate.plots import plot_learning_curves
    from asc_keras.training.history import learning_check, read_history

    good = "epoch,accuracy,loss,val_accuracy,val_loss\n" + "".join(
        f"{e},{0.1 * e},{2 - 0.1 * e},{0.1 * e},{2 - 0.1 * e}\n" for e in range(8)
    )
    ok = tmp_path / "ok.csv"
    ok.write_text(good)
    assert learning_check(ok)["rounds"] == 8 and plot_learning_curves(ok, tmp_path / "ok.png", "t")
    doubled = tmp_path / "history.csv"
    lines = good.splitlines(keepends=True)
    doubled.write_text("".join(a + b for a, b in zip(lines, lines)))  # interleaved, header twice
    with caplog.at_level("WARNING", logger="asc_keras"):
        assert read_history(doubled) is None
        assert learning_check(doubled) is None
        assert plot_learning_curves(doubled, tmp_path / "bad.png", "t") is None
    assert not (tmp_path / "bad.png").exists()
    assert sum("cannot read this training history" in r.message for r in caplog.records) == 3
    assert all(str(doubled) in r.message for r in caplog.records)


def test_a_gain_of_exactly_the_learning_limit_reads_as_still_learning_whatever_the_rounding(
    tmp_path,
):
    """Float32 accuracies put a gain of exactly 1 point (3 clips of 300) a hair under or over
    the limit by run: the check reads it as the limit either way ("at least 1": still learning),
    and a gain a clip under it as ended."""
    import numpy as np

    from asc_keras.training.history import STILL_LEARNING_POINTS, learning_check

    assert STILL_LEARNING_POINTS == 1.0

    def check(before: int, last: int) -> dict:
        # 8 rounds on 300 clips: rounds 4-5 right on `before`, 6-7 on `last` (float32, as logged)
        right = (before - 40, before - 30, before - 20, before - 10, before, before, last, last)
        acc = [float(np.float32(r / 300)) for r in right]
        f = tmp_path / f"h{before}-{last}.csv"
        f.write_text("epoch,val_accuracy\n" + "".join(f"{e},{a!r}\n" for e, a in enumerate(acc)))
        return learning_check(f)

    def raw(before: int, last: int) -> float:  # the gain as float32 leaves it
        return 100 * (float(np.float32(last / 300)) - float(np.float32(before / 300)))

    assert raw(200, 203) < 1.0 < raw(270, 273)  # the one gain, either side of the limit
    for before in (200, 270):
        at_limit, under = check(before, before + 3), check(before, before + 2)
        assert at_limit["last_quarter_gain_points"] == 1.0 and at_limit["ended"] is False
        assert under["last_quarter_gain_points"] == round(200 / 300, 4) and under["ended"] is True
