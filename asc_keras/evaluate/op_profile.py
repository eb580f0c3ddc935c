"""Where an int8 ``.tflite`` model's time goes: each operator timed on its own, in LiteRT.

LiteRT's Python API has no operator profiler (the C++ ``benchmark_model --enable_op_profiling``
is not in the wheel), so the profile is made the way one would by hand: every operator of the
graph becomes a model of its own (:func:`asc_keras.compress.graph_edits.single_op_models`), is fed the
very values it gets inside the whole model (one run of the whole model with every tensor kept),
and is timed alone -- batch 1, ``num_threads`` threads, the median of ``runs`` invocations after
warm-ups.  Each row also says whether XNNPACK took that operator: LiteRT hands the builtin
kernels whatever XNNPACK refuses, silently, and splits the graph around it.

The sum of the rows is close to, not equal to, the whole model's time: alone, an operator pays
its own call overhead, and inside the whole model a delegate partition fuses some work.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path

import numpy as np

from asc_keras.compress.tflite import quantize


@dataclasses.dataclass(frozen=True)
class OpTime:
    """One operator: its place in the execution order, kind, output shape, median time (ms) and
    whether XNNPACK runs it ('xnnpack') or LiteRT's builtin kernels do ('builtin')."""

    index: int
    kind: str
    shape: tuple[int, ...]
    ms: float
    runs_on: str


def timed_ms(fn, runs: int, warmup: int = 20) -> tuple[float, float]:
    """(median, 90th percentile) wall time of ``fn()`` in milliseconds over ``runs`` calls after
    ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts) * 1e3), float(np.percentile(ts, 90) * 1e3)


def _interpreter(content: bytes, num_threads: int, preserve: bool = False):
    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():  # "preserve_all_tensors is for debugging": it is, here
        warnings.simplefilter("ignore", UserWarning)
        it = Interpreter(model_content=content, num_threads=num_threads,
                         experimental_preserve_all_tensors=preserve)  # fmt: skip
    it.allocate_tensors()
    return it


def whole_model_tensors(content: bytes, x: np.ndarray | None = None) -> dict[int, np.ndarray]:
    """Every tensor of one batch-1 run of the model on ``x`` (float features, quantised at the
    input; None: zeros), by tensor index."""
    it = _interpreter(content, 1, preserve=True)
    d = it.get_input_details()[0]
    if x is None:
        q = np.zeros(d["shape"], d["dtype"])
    else:
        q = quantize(np.asarray(x, np.float32).reshape(d["shape"]), d["dtype"], *d["quantization"])
    it.set_tensor(d["index"], q)
    it.invoke()
    out = {}
    for t in it.get_tensor_details():
        try:
            out[t["index"]] = it.get_tensor(t["index"]).copy()
        except ValueError:  # a tensor with no data (an unused or optional slot)
            continue
    return out


def op_profile(model: str | Path | bytes, x: np.ndarray | None = None, runs: int = 200,
               num_threads: int = 1) -> list[OpTime]:  # fmt: skip
    """Each operator of ``model`` (a ``.tflite`` path or its bytes) timed alone, in execution
    order (module docstring); ``x``: one input example, float, as the model's input shape."""
    from asc_keras.compress.graph_edits import single_op_models

    content = model if isinstance(model, bytes) else Path(model).read_bytes()
    values = whole_model_tensors(content, x)
    rows = []
    for i, (kind, alone) in enumerate(single_op_models(content)):
        it = _interpreter(alone, num_threads)
        for d in it.get_input_details():
            it.set_tensor(d["index"], values[d["index"]].reshape(d["shape"]))
        delegated = any(op["op_name"] == "DELEGATE" for op in it._get_ops_details())
        out = it.get_output_details()[0]
        rows.append(OpTime(i, kind, tuple(int(v) for v in out["shape"]), timed_ms(it.invoke, runs)[0],
                           "xnnpack" if delegated else "builtin"))  # fmt: skip
    return rows


def by_kind(rows: list[OpTime]) -> list[tuple[str, int, float]]:
    """(operator kind, count, total ms) per kind, slowest first."""
    totals: dict[str, list] = {}
    for r in rows:
        t = totals.setdefault(r.kind, [0, 0.0])
        t[0] += 1
        t[1] += r.ms
    return sorted(((k, n, ms) for k, (n, ms) in totals.items()), key=lambda r: -r[2])
