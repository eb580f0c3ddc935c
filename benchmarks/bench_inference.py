"""Latency per 1 s clip: int8 TFLite (LiteRT, 1 thread) vs float Keras, SERFR-CNN vs the DCASE baseline.

    python benchmarks/bench_inference.py [--runs 300] [--model runs/system1-quick/student.keras]

Each model is converted to full-int8 TFLite the same way (post-training quantisation with 256
representative inputs; pass --model to use a trained student).  Latency: batch 1, single
thread, median (and 90th percentile) over --runs invocations after 20 warm-ups.  The float
Keras model is timed as a compiled tf.function call at batch 1 (TensorFlow's own threads).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from asc_keras._runtime import keras, tf
from asc_keras.compress.complexity import keras_complexity
from asc_keras.compress.tflite import TFLiteModel, convert_int8
from asc_keras.models import build_dcase_baseline, build_serfr_cnn


def _time(fn, runs: int) -> tuple[float, float]:
    for _ in range(20):
        fn()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts) * 1e3), float(np.percentile(ts, 90) * 1e3)


def bench(name: str, model, runs: int, tmp: Path, rng) -> dict:
    shape = model.input_shape[1:]
    rep = rng.normal(-5, 2, (256,) + shape).astype(np.float32)
    path = tmp / f"{name}.tflite"
    convert_int8(model, rep, path)
    x = rep[:1]
    tfl = TFLiteModel(path, num_threads=1)
    tfl.predict(x)  # allocate
    xq = tfl.quantize_input(x)

    def run_tflite():
        tfl.interpreter.set_tensor(tfl._in, xq)
        tfl.interpreter.invoke()

    fn = tf.function(lambda v: model(v, training=False))
    xt = tf.constant(x)
    c = keras_complexity(model)
    med_q, p90_q = _time(run_tflite, runs)
    med_f, p90_f = _time(lambda: fn(xt), runs)
    return {
        "name": name,
        "params": c.params,
        "macs": c.macs,
        "int8_ms": med_q,
        "int8_p90": p90_q,
        "float_ms": med_f,
        "float_p90": p90_f,
        "delegate": tfl.delegate,
        "kib": path.stat().st_size / 1024,
    }


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
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    models = []
    if args.model:
        models.append((args.model.stem, keras.saving.load_model(args.model, safe_mode=True)))
    else:
        models += [("serfr_cnn_32", build_serfr_cnn(32)), ("serfr_cnn_24", build_serfr_cnn(24))]
    models.append(("dcase2022_baseline", build_dcase_baseline()))
    with tempfile.TemporaryDirectory() as tmp:
        rows = [bench(n, m, args.runs, Path(tmp), rng) for n, m in models]
    print(f"latency per 1 s clip, batch 1, median (p90) of {args.runs} runs")
    print(
        f"{'model':<20} {'params':>8} {'MMACs':>7} {'tflite KiB':>10} {'int8 LiteRT 1 thread':>22} {'float Keras':>18}"
    )
    for r in rows:
        print(
            f"{r['name']:<20} {r['params']:>8,} {r['macs'] / 1e6:>7.2f} {r['kib']:>10.1f} "
            f"{r['int8_ms']:>9.3f} ms ({r['int8_p90']:.3f}) {r['float_ms']:>9.3f} ms ({r['float_p90']:.3f})"
            f"  [{r['delegate']}]"
        )


if __name__ == "__main__":
    main()
