"""Latency per 1 s clip of the int8 models (LiteRT, 1 thread) with a per-operator profile, and
float Keras inference on a long recording.

    python benchmarks/bench_inference.py [--runs 300] [--model runs/system1-quick/student.keras]
        [--tflite runs/system1-quick/student_int8.tflite ...] [--organisers model_task1.tflite]

int8: SERFR-CNN-32 and -24 (untrained, or ``--model``: a trained student), post-training
quantised with 256 representative inputs as ``convert_int8`` does, the DCASE 2022 baseline
rebuilt and converted the same way, every ``--tflite`` file (e.g. a run's QAT
``student_int8.tflite``) and the organisers' own file (``--organisers``; the reference row of the
ratios, else the rebuilt baseline).  Each is timed at batch 1, 1 thread, median (p90) of --runs
invocations after 20 warm-ups: as written, and as ``TFLiteModel`` runs it (the stem folded in
memory, :func:`asc_keras.compress.graph_edits.fold_stride_into_channels`), with the delegate
that runs it.  Then each model's per-operator profile (``asc_keras.evaluate.op_profile``): the
--top slowest operators, which of them XNNPACK refuses, and the time per operator kind.

Float Keras: batch 1 as a compiled call, and a 10-minute recording (600 windows of 1 s) the way
``asc-keras predict`` runs a ``.keras`` model (batches of 64 through one compiled call), against
``model.predict`` and window by window.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from asc_keras._runtime import keras, tf
from asc_keras.compress.nessi import nessi_complexity
from asc_keras.compress.tflite import TFLiteModel, convert_int8
from asc_keras.evaluate.op_profile import by_kind, op_profile, timed_ms
from asc_keras.evaluate.predict import keras_runner
from asc_keras.models import build_dcase_baseline, build_serfr_cnn


def int8_row(name: str, path: Path, runs: int, rng) -> dict:
    """Latency of one int8 file as written and as TFLiteModel runs it, and its profile."""
    row = {
        "name": name,
        "path": path,
        "macs": nessi_complexity(path).macs,
        "kib": path.stat().st_size / 1024,
    }
    for key, fold in (("written", False), ("run", True)):
        m = TFLiteModel(path, num_threads=1, fold_stride=fold)
        x = rng.normal(-5, 2, (1,) + m.input_shape).astype(np.float32)
        m.predict(x)  # allocate (and find the delegate)
        xq = m.quantize_input(x)

        def invoke(m=m, xq=xq):
            m.interpreter.set_tensor(m._in, xq)
            m.interpreter.invoke()

        row[key] = timed_ms(invoke, runs)
        row[f"{key}_delegate"] = m.delegate
    row["profile"] = op_profile(m._data, x, runs=max(50, runs // 3))  # as run: the stem folded
    return row


def float_rows(name: str, model, runs: int, rng) -> dict:
    """Float Keras: batch 1 compiled; a 600-window recording as ``asc-keras predict`` runs it
    (``keras_runner``: batches of 64, one compiled call), with ``model.predict`` and window by
    window beside it; each warm (compiled before it is timed), best of 3."""
    shape = model.input_shape[1:]
    x1 = tf.constant(rng.normal(-5, 2, (1,) + shape).astype(np.float32))
    fn = tf.function(lambda v: model(v, training=False))
    one = timed_ms(lambda: fn(x1), runs)
    windows = rng.normal(-5, 2, (600,) + shape).astype(np.float32)
    run = keras_runner(model)

    def best(f) -> float:
        f()
        ts = []
        for _ in range(3):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    return {"name": name, "float_ms": one, "runner_s": best(lambda: run(windows)),
            "predict_s": best(lambda: model.predict(windows, batch_size=64, verbose=0)),
            "single_s": 10 * best(lambda: [fn(windows[i : i + 1]) for i in range(0, 600, 10)])}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument(
        "--model",
        type=Path,
        help="a trained student .keras (default: untrained SERFR-CNN-32 and -24)",
    )
    ap.add_argument(
        "--tflite", type=Path, nargs="*", default=[], help="int8 .tflite files to time and profile"
    )
    ap.add_argument(
        "--organisers", type=Path, help="the organisers' model_task1.tflite (the ratios' reference)"
    )
    ap.add_argument("--top", type=int, default=6, help="slowest operators listed per model")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    models = []
    if args.model:
        models.append((args.model.stem, keras.saving.load_model(args.model, safe_mode=True)))
    else:
        models += [("serfr_cnn_32", build_serfr_cnn(32)), ("serfr_cnn_24", build_serfr_cnn(24))]
    models.append(("dcase2022_baseline", build_dcase_baseline()))
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for name, m in models:
            path = Path(tmp) / f"{name}_ptq.tflite"
            convert_int8(m, rng.normal(-5, 2, (256,) + m.input_shape[1:]).astype(np.float32), path)
            files.append((f"{name} (PTQ)", path))
        files += [(p.stem, p) for p in args.tflite]
        if args.organisers:
            files.append(("organisers' model_task1", args.organisers))
        rows = [int8_row(n, p, args.runs, rng) for n, p in files]
    ref = (
        rows[-1] if args.organisers else next(r for r in rows if r["name"].startswith("dcase2022"))
    )
    if not args.organisers:
        print("(no --organisers: the ratios are to the rebuilt baseline; pass the organisers' own file with "
              "--organisers path/to/model_task1.tflite)")  # fmt: skip
    print(
        f"int8, LiteRT, batch 1, 1 thread: median (p90) of {args.runs} runs; ratio to {ref['name']}"
    )
    print(
        f"{'model':<34} {'MMACs':>6} {'KiB':>6} {'as written':>20} {'as run (stem folded)':>22} {'ratio':>6}"
    )
    for r in rows:
        (w, wp), (q, qp) = r["written"], r["run"]
        head = f"{r['name']:<34} {r['macs'] / 1e6:>6.2f} {r['kib']:>6.1f}"
        print(f"{head} {w:>8.3f} ({wp:.3f}) {r['written_delegate']:<7} {q:>8.3f} ({qp:.3f}) {r['run_delegate']:<7}"
              f" {q / ref['run'][0]:>5.2f}x")  # fmt: skip
    for r in rows:
        prof = r["profile"]
        total = sum(o.ms for o in prof)
        refused = sorted({o.kind for o in prof if o.runs_on != "xnnpack"})
        print(f"\n{r['name']}: {len(prof)} operators, {total:.3f} ms alone in all; builtin kernels "
              f"(XNNPACK refuses): {', '.join(refused) or 'none'}")  # fmt: skip
        for o in sorted(prof, key=lambda o: -o.ms)[: args.top]:
            share = 100 * o.ms / total
            print(
                f"   #{o.index:<3} {o.kind:<18} {str(o.shape):<20} {o.ms:7.3f} ms {share:5.1f} %  {o.runs_on}"
            )
        print("   by kind: " + ", ".join(f"{k} x{n} {ms:.3f}" for k, n, ms in by_kind(prof)))
    print(
        "\nfloat Keras (TensorFlow's threads): batch 1 compiled; a 10-minute recording, 600 windows"
    )
    for name, m in models:
        f = float_rows(name, m, args.runs, rng)
        print(f"{name:<20} {f['float_ms'][0]:8.3f} ms ({f['float_ms'][1]:.3f});  600 windows: predict's runner "
              f"{f['runner_s']:.2f} s, model.predict {f['predict_s']:.2f} s, "
              f"one by one {f['single_s']:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
