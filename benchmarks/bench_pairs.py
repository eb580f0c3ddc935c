"""How much more two of the run's trainings do at once than one alone: what training the CE
control and the DCASE baseline in a second process beside the teachers buys (stages.beside).

    python benchmarks/bench_pairs.py [--window 30] [--threads N] [--pairs "teacher bcresnet+DCASE baseline" ...]

Each model is built as ``benchmarks/bench_steps.py`` builds it and trained on one random batch of
its shapes, in a process of its own: first alone, then two processes at once, both timing the
same wall-clock window after their tracing.  For a pair, "work per second" adds up each one's
steps per second as a share of its speed alone: 1.0 means two at once do no more than one after
the other, 2.0 that each ran as fast as alone.  ``--threads`` sets TensorFlow's intra-op threads
in every process (default: TensorFlow's own, what a run uses; other counts round differently).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

PAIRS = ("teacher bcresnet+DCASE baseline", "teacher bcresnet+CE control",
         "teacher mobilenetv2+CE control", "teacher cnn+DCASE baseline",
         "CE control+DCASE baseline")  # fmt: skip


def _steps(stage: str, start: float, window: float, threads: int | None) -> float:
    """In this process: ms per optimiser step of ``stage`` between ``start`` and ``start + window``."""
    from asc_keras._runtime import tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_steps import _batches, _models

    from asc_keras.presets import system_config

    for name, model, shape, batch, soft, *_ in _models(system_config(1, "quick")):
        if name == stage:
            x, y = next(iter(_batches(shape, batch, soft)))
            for _ in range(3):  # tracing
                model.train_on_batch(x, y)
            while time.time() < start:
                time.sleep(0.05)
            begin, n = time.time(), 0  # late (a slow start): timed from here, to the same end
            while time.time() < start + window or n == 0:
                model.train_on_batch(x, y)
                n += 1
            return 1000 * (time.time() - begin) / n
    raise SystemExit(f"no model {stage!r}; the run's: see benchmarks/bench_steps.py")


def _at_once(stages: list[str], window: float, threads: int | None) -> list[float]:
    """ms per step of each of ``stages``, each in its own process, timed over the same window."""
    # Together: after every process has imported TensorFlow and traced; alone: at once.
    start = time.time() + (30 if len(stages) > 1 else 0)
    cmd = [sys.executable, __file__, "--one", "--start", str(start), "--window", str(window)]
    cmd += ["--threads", str(threads)] if threads else []
    procs = [subprocess.Popen([*cmd, "--stage", s], stdout=subprocess.PIPE, text=True)
             for s in stages]  # fmt: skip
    return [float(p.communicate()[0].split()[-1]) for p in procs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--window", type=float, default=30.0, help="seconds timed")
    ap.add_argument("--threads", type=int, help="intra-op threads per process (default TF's)")
    ap.add_argument("--pairs", nargs="+", default=PAIRS, help="'MODEL+MODEL', bench_steps' names")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--start", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(_steps(args.stage, args.start, args.window, args.threads))
        return
    pairs = [p.split("+") for p in args.pairs]
    alone = {}
    for stage in dict.fromkeys(s for p in pairs for s in p):
        alone[stage] = _at_once([stage], args.window, args.threads)[0]
        print(f"{stage:28s} alone {alone[stage]:7.0f} ms/step", flush=True)
    for a, b in pairs:
        ma, mb = _at_once([a, b], args.window, args.threads)
        work = alone[a] / ma + alone[b] / mb
        print(f"{a} ({ma:.0f} ms) + {b} ({mb:.0f} ms): {work:.2f} times the work per second",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
