"""The command line's contract: repeated options add up, one process per output folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from asc_keras.cli import main, parser
from asc_keras.cli.training import _config


@pytest.mark.parametrize("command", ["run", "tune", "ablation"])
def test_repeated_set_options_add_up(command):
    argv = [command, "--system", "1", "--set", "optim.epochs=12", "--set", "teachers.epochs=7",
            "distill.alpha=0.5"]  # fmt: skip
    args = parser().parse_args(argv)
    cfg = _config(args)
    assert (cfg.optim.epochs, cfg.teachers.epochs, cfg.distill.alpha) == (12, 7, 0.5)


def test_repeated_list_options_add_up_without_touching_defaults():
    a = parser().parse_args(["ablation", "--seeds", "3", "--seeds", "4", "--rows", "ce_only",
                             "--rows", "kd_ensemble"])  # fmt: skip
    assert a.seeds == [3, 4] and a.rows == ["ce_only", "kd_ensemble"]
    assert parser().parse_args(["ablation"]).seeds is None  # the default (0 1 2) is not a list
    r = parser().parse_args(["run", "--system", "1", "--force", "student", "--force", "tflite"])
    assert r.force == ["student", "tflite"]


def test_the_ablation_help_names_every_row_that_runs_only_when_named():
    from asc_keras.orchestration.ablation import SETTING_ROWS

    sub = next(a for a in parser()._actions if a.dest == "command" or a.choices)
    rows = next(a for a in sub.choices["ablation"]._actions if a.dest == "rows")
    named = rows.help.split("leaves open (")[1].split(")")[0].split()
    assert named == list(SETTING_ROWS)


HOLD = textwrap.dedent(
    """
    import sys, time
    from asc_keras.files import folder_lock
    with folder_lock(sys.argv[1], command="asc-keras run (the first instance)"):
        print("HOLDING", flush=True)
        time.sleep(600)
    """
)


def test_a_busy_output_folder_is_refused_and_a_killed_runs_folder_is_reused(tmp_path, capsys):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "HOLDING"
        argv = ["run", "--system", "1", "--profile", "quick", "--out", str(out), "--work",
                str(tmp_path / "work"), "--data", str(tmp_path / "missing")]  # fmt: skip
        t0 = time.perf_counter()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"in use by process {holder.pid}" in err and "the first instance" in err
        assert time.perf_counter() - t0 < 30  # stops at once, not after waiting
        assert not (tmp_path / "work").exists()  # nothing was started
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    # The killed holder left its lock file and owner note behind: neither blocks.
    assert (out / ".lock").exists()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "in use" not in err and "folder not found" in err  # past the lock, at the next check
