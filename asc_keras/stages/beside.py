"""The stages that need no teacher, trained in a second process while the teachers train.

The CE control and the DCASE baseline are made from the clips and the configuration alone: their
stamps name no teacher and no target (:func:`~asc_keras.stages.outputs.student_inputs`,
:func:`~asc_keras.stages.outputs.baseline_stage`).  So ``run`` can start them, in that order, in
a second Python process (``python -m asc_keras.stages.beside``) as soon as the features exist;
when the run reaches each of them it waits for that process's word, and the stage's own skip
rule then reads the model back.  Nothing else changes: the same functions, the same stamps, the
same files.

Why: on a CPU one small model leaves some of the cores' time unused -- TensorFlow's ops on a
batch of 32 one-second clips are too small to split well.  Measured on a 2-core Xeon
(``python benchmarks/bench_pairs.py --window 20``: pairs of the run's models training at once
over the same 20 s): 1.17 (BC-ResNet or the CNN teacher beside the baseline) to 1.37 times
(MobileNetV2 beside the CE control) the work per second of one alone; the README's first
command's run went from 853 s to 760.  Each
process keeps TensorFlow's own thread counts, so every model is the same to the bit as one
trained alone (a test compares them; the first command's table read the same to the decimal);
one thread per process would do more at once (up to 1.48 times) but round differently.

Off (every stage in the run's own process) with ``RunPlace.beside`` False (``--one-process``),
under a tf.distribute strategy, on a machine with a GPU (two processes would each take its
memory), with a single core, or outside POSIX.  A stage the second process could not finish (its error is in
``out/logs/beside.log``) is trained in the run's process, which then shows the error itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import traceback
from pathlib import Path

from asc_keras.config import SystemConfig
from asc_keras.evaluate.report import BESIDE_MODELS
from asc_keras.stages.runner import StageRunner
from asc_keras.stages.shared import RunPlace

# What may train beside the teachers, in the order it does.
BESIDE = ("control", "baseline")


def beside_stages(cfg: SystemConfig, place: RunPlace) -> tuple[str, ...]:
    """The stages ``run`` trains in a second process ((): none, where that would not pay or
    could not work -- see the module's docstring)."""
    if place.beside is False or place.strategy != "default" or (os.cpu_count() or 1) < 2:
        return ()
    if os.name != "posix":  # the second process's word comes through an inherited pipe end
        return ()
    from asc_keras._runtime import tf

    if tf.config.list_physical_devices("GPU"):
        return ()
    # The control trains only beside teachers (run_system); the baseline always when asked for.
    wanted = {"control": cfg.controls.ce_control and cfg.distill.enabled,
              "baseline": cfg.controls.baseline}  # fmt: skip
    return tuple(s for s in BESIDE if wanted[s])


class Beside:
    """The second process of one run: :meth:`start` it after the features stage, :meth:`wait` for
    each of its stages before running that stage, leave the ``with`` block to end it.

    Args:
        cfg, place: the run's configuration and place (the second process rebuilds both from
            ``out/logs/beside.json``; a configuration that does not survive JSON keeps every stage
            here).
        runner: the run's stage runner: ``--force`` passes on to the stages trained beside, and
            their times and redone stages come back to it.
        stages: what to train beside (:func:`beside_stages`); () makes this object do nothing.
    """

    def __init__(self, cfg: SystemConfig, place: RunPlace, runner: StageRunner, stages=()):
        self.cfg, self.place, self.runner = cfg, place, runner
        self.stages = tuple(stages) if _survives_json(cfg) else ()
        self.log_path = place.files.out / "logs" / "beside.log"
        self._process: subprocess.Popen | None = None
        self._status = None
        self._said: dict[str, dict] = {}

    def __enter__(self) -> Beside:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        """Start the second process on :attr:`stages` (the features must exist: it reads them)."""
        if not self.stages or self._process is not None:
            return
        from asc_keras.files import write_json

        p = self.place
        job = {"config": self.cfg.to_dict(), "stages": list(self.stages),
               "force": [s for s in self.stages if self.runner.forced(s)],
               "place": {"out": str(p.out), "work": str(p.work), "data": p.data and str(p.data),
                         "train_split": p.train_split, "verbose": p.verbose,
                         "skip_bad_audio": p.skip_bad_audio}}  # fmt: skip
        job_path = write_json(self.log_path.with_suffix(".json"), job)
        read, write = os.pipe()
        with open(self.log_path, "w") as log:
            self._process = subprocess.Popen(
                command(job_path, write),
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, pass_fds=(write,),
            )  # fmt: skip
        os.close(write)
        self._status = os.fdopen(read, "r")
        self.runner.log(f"   {' and '.join(BESIDE_MODELS[s] for s in self.stages)} train in a second "
                        f"process, beside this one (its log: {self.log_path})")  # fmt: skip

    def wait(self, stage: str) -> None:
        """Return once the second process has trained ``stage`` (its time and whether it redid it
        pass to the runner, and ``--force`` no longer names it), or could not: the run's process
        then trains it."""
        if stage not in self.stages or self._process is None:
            return
        while stage not in self._said:
            line = self._status.readline()
            if not line:  # the process ended without a word on this stage
                code = self._process.wait()
                self._said.setdefault(stage, {"ok": False, "error": f"it ended (exit code {code})"})
                break
            said = json.loads(line)
            self._said[said["stage"]] = said
        said = self._said[stage]
        if said["ok"]:
            self.runner.ran_beside(stage, said["seconds"], said["redone"])
            self.runner.log(f"   {'trained' if said['redone'] else 'found done'} in the second "
                            f"process ({said['seconds']:.0f} s)")  # fmt: skip
        else:
            from asc_keras.log import warn

            warn(f"the second process could not train the {stage} stage ({said['error']}; "
                 f"{self.log_path}): training it here")  # fmt: skip

    def close(self) -> None:
        """End the second process: at once if it is still training (the run stopped early; its
        stage resumes from its backups next time), else once it has exited."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
        self._process.wait()
        self._process.stdin.close()
        self._status.close()
        self._process = None


def command(job_path: Path, status_fd: int) -> list[str]:
    """The second process's command line: this module run on the job file, writing its word on
    each stage to ``status_fd`` (a pipe's end it inherits)."""
    return [sys.executable, "-m", "asc_keras.stages.beside", str(job_path), str(status_fd)]


def _survives_json(cfg: SystemConfig) -> bool:
    try:
        return SystemConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    except (TypeError, ValueError):
        return False


def _exit_with_parent() -> None:
    """End this process when the run's process ends (its end of our stdin closes)."""
    sys.stdin.read()
    os._exit(1)


def serve(job_path: str, status_fd: int) -> None:
    """The second process: the shared stages read back, then each of the job's stages, one line
    of JSON on ``status_fd`` after each."""
    from asc_keras.log import warnings_to
    from asc_keras.stages.outputs import baseline_stage, student_stage
    from asc_keras.stages.shared import Prepared, data_stage, features_stage

    threading.Thread(target=_exit_with_parent, daemon=True).start()
    job = json.loads(Path(job_path).read_text())
    cfg = SystemConfig.from_dict(job["config"])
    p = job["place"]
    place = RunPlace(Path(p["out"]), Path(p["work"]), p["data"] and Path(p["data"]),
                     train_split=p["train_split"], verbose=p["verbose"],
                     skip_bad_audio=p["skip_bad_audio"], beside=False)  # fmt: skip
    runner = StageRunner(place.out, frozenset(job["force"]), lambda line: print(line, flush=True))
    train = {"control": lambda prep: student_stage(cfg, place, runner, prep, stage="control"),
             "baseline": lambda prep: baseline_stage(cfg, place, runner, prep)}  # fmt: skip
    status = os.fdopen(status_fd, "w", buffering=1)
    with warnings_to(runner.log):
        prep = error = None
        try:  # read back: the run's process made them before starting this one
            ds, root = data_stage(cfg, place, runner)
            clip_cache, splits, skipped = features_stage(cfg, place, ds)
            prep = Prepared(ds, root, clip_cache, splits, {}, None, None, skipped)
        except Exception as e:
            traceback.print_exc()
            error = f"{type(e).__name__}: {e}".splitlines()[0]
        for stage in job["stages"]:
            said = {"stage": stage, "ok": False, "error": error}
            if prep is not None:
                try:
                    with runner.stage(stage):
                        train[stage](prep)
                    said.update(ok=True, seconds=runner.timings[stage],
                                redone=stage in runner.started)  # fmt: skip
                except Exception as e:
                    traceback.print_exc()
                    said["error"] = f"{type(e).__name__}: {e}".splitlines()[0]
            status.write(json.dumps(said) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
