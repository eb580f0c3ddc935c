"""Full-integer int8 TFLite conversion and a LiteRT runner.

``convert_int8`` takes any Keras 3 or tf_keras model (float: post-training
quantisation; QAT-wrapped: uses its learnt ranges) and a representative
dataset of training features, and writes a model whose weights, activations,
input and output are int8.  ``TFLiteModel`` runs it with LiteRT
(``ai_edge_litert``), quantising inputs and dequantising outputs.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np

from asc_keras._runtime import _silenced_stderr, tf
from asc_keras.config import N_CLASSES
from asc_keras.files import atomic_path
from asc_keras.log import warn


def calibration_rows(rows: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Up to ``n`` of ``rows`` drawn at random (so every scene is represented), sorted for memmap
    reads: the first rows of a name-sorted split hold one or two scenes and calibrate badly."""
    rows = np.asarray(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, min(len(rows), n), replace=False))


def convert_int8(
    model,
    representative: np.ndarray,
    path: str | Path,
    input_shape: tuple | None = None,
    fold_flatten: bool = True,
) -> dict:
    """Convert ``model`` to a full-int8 ``.tflite`` at ``path`` (written atomically).

    Args:
        model: Keras 3 or tf_keras model (float or QAT).
        representative: (N, frames, mels[, 1]) training features used to calibrate ranges.
        path: output file.
        input_shape: (frames, mels[, 1]) when the model's own is not fully known.
        fold_flatten: feed fully-connected layers their unflattened input
            (:func:`fold_flatten_into_fully_connected`), as the organisers' converter did.
    Returns:
        dict with the input/output quantisation parameters (scale, zero point) and size,
        also written beside the model as ``<path>.json``.
    """
    path = Path(path)
    shape = tuple(input_shape or model.input_shape[1:])
    rep = np.asarray(representative, np.float32)
    if rep.ndim == len(shape):
        rep = rep[..., None]

    from asc_keras._runtime import keras

    if isinstance(model, keras.Model) and None not in model.input_shape[1:]:
        # Keras 3 with a fixed input: the converter's own path freezes its variables.
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
    else:  # tf_keras (QAT twins), or a model of any length (a teacher): a serving function of
        # ``shape`` with a free batch axis

        @tf.function(input_signature=[tf.TensorSpec((None,) + shape, tf.float32)])
        def serve(x):
            return model(x, training=False)

        # The converter saves the function with the object that keeps its variables alive.  A
        # plain module holding just those variables gives the same flatbuffer, byte for byte,
        # about 4.5x sooner than the tf_keras model itself, whose SavedModel serialisation
        # traces every layer's call again (measured on 2 cores: 44 s -> 10 s, width 8).
        holder = tf.Module()
        holder.weights = [getattr(v, "value", v) for v in model.variables]
        holder.serve = serve
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [serve.get_concrete_function()], holder
        )
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([rep[i : i + 1]] for i in range(len(rep)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    qat = any("quantize" in type(layer).__name__.lower() for layer in getattr(model, "layers", []))
    # Keras 3's export (inside from_keras_model) prints its SavedModel signature listing to stdout.
    with _silenced_stderr(), contextlib.redirect_stdout(io.StringIO()):
        if qat:  # its ranges were learnt (fake-quantisation); nothing to calibrate
            flat = converter.convert()
        else:  # post-training: calibrate, widen empty ranges, quantise -- convert()'s own steps
            from tensorflow.lite.python.convert import mlir_quantize

            converter._experimental_calibrate_only = True
            calibrated = widen_empty_ranges(converter.convert())
            flat = mlir_quantize(calibrated, input_data_type=tf.int8, output_data_type=tf.int8)
    if fold_flatten:
        flat = fold_flatten_into_fully_connected(flat)
    with atomic_path(path) as tmp:
        tmp.write_bytes(flat)
    m = TFLiteModel(path)
    info = {
        "input_scale": m.in_scale,
        "input_zero_point": m.in_zero,
        "output_scale": m.out_scale,
        "output_zero_point": m.out_zero,
        "input_dtype": str(np.dtype(m.in_dtype)),
        "output_dtype": str(np.dtype(m.out_dtype)),
        "bytes": len(flat),
    }
    path.with_name(path.name + ".json").write_text(json.dumps(info, indent=1))
    return info


def _unpacked(flatbuffer: bytes):
    """The ``.tflite`` flatbuffer as LiteRT's editable schema object (``ModelT``)."""
    from ai_edge_litert import schema_py_generated as schema

    return schema.ModelT.InitFromPackedBuf(flatbuffer, 0)


def _packed(model, size_hint: int) -> bytes:
    """An edited ``ModelT`` written back as a ``.tflite`` flatbuffer."""
    import flatbuffers

    builder = flatbuffers.Builder(size_hint)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _op_kinds(model) -> list[str]:
    """The builtin operator name of each entry of ``model.operatorCodes`` ('CONV_2D', ...)."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return [
        names.get(max(c.builtinCode, c.deprecatedBuiltinCode), "CUSTOM")
        for c in model.operatorCodes
    ]


def single_op_models(flatbuffer: bytes) -> list[tuple[str, bytes]]:
    """Each operator of the main graph as a model of its own, in execution order: (operator name,
    ``.tflite`` flatbuffer) whose inputs are the operator's non-constant inputs and whose outputs
    are its outputs, with their quantisation as in the whole model.

    What a per-operator profile times one by one (LiteRT's Python API has no op profiler; its
    C++ ``benchmark_model --enable_op_profiling`` is not in the wheel).  Every other tensor and
    buffer stays in each file, unreferenced; signatures are dropped (they name the whole model's
    inputs).
    """
    model = _unpacked(flatbuffer)
    kinds = _op_kinds(model)
    graph = model.subgraphs[0]
    ops, saved = list(graph.operators), (graph.inputs, graph.outputs, model.signatureDefs)

    def constant(t: int) -> bool:
        data = model.buffers[graph.tensors[t].buffer].data
        return data is not None and len(data) > 0

    out = []
    for op in ops:
        graph.operators = [op]
        graph.inputs = [int(t) for t in op.inputs if t >= 0 and not constant(t)]
        graph.outputs = [int(t) for t in op.outputs]
        model.signatureDefs = []
        out.append((kinds[op.opcodeIndex], _packed(model, len(flatbuffer))))
    graph.operators, (graph.inputs, graph.outputs, model.signatureDefs) = ops, saved
    return out


def widen_empty_ranges(calibrated: bytes, floor: float = 1e-3) -> bytes:
    """A calibrated model whose activation ranges narrower than ``floor`` are widened to it.

    Why: a ReLU unit that stays at zero on every calibration input (seen: a SERFR-CNN's
    squeeze-and-excitation 'reduce' units after a short training) is calibrated to [0, 1e-38]
    and quantised with a scale of ~1e-8.  Its convolution's requantisation scale (input scale x
    weight scale / output scale) is then ~1e4, beyond the 256 XNNPACK accepts, and LiteRT runs
    the whole graph on its slower builtin kernels.  A tensor whose values all lie within
    ``floor`` of each other carries nothing at int8 resolution, so widening its range changes
    no output the calibration data saw; ranges of ``floor`` or more are left as they are.
    """
    model = _unpacked(calibrated)
    changed = False
    for graph in model.subgraphs:
        for t in graph.tensors:
            q = t.quantization
            if q is None or q.min is None or q.max is None or not len(q.min):
                continue
            lo, hi = np.asarray(q.min, np.float64), np.asarray(q.max, np.float64)
            narrow = hi - lo < floor
            if narrow.any():
                q.max = np.where(narrow, lo + floor, hi).astype(np.float32).tolist()
                changed = True
    if not changed:
        return calibrated
    return _packed(model, len(calibrated))


def fold_flatten_into_fully_connected(flatbuffer: bytes) -> bytes:
    """Feed each FULLY_CONNECTED the unflattened tensor of the RESHAPE (a Keras Flatten) before it.

    TFLite's FULLY_CONNECTED flattens its input itself (to rows of the weights' input size), so a
    RESHAPE that only flattens for it is a no-op; the converter of the DCASE baselines' era folded
    it away, today's keeps it (plus a SHAPE / STRIDED_SLICE / PACK chain for a free batch axis).
    Removing them gives the organisers' graph -- the one their NeSsi counts were made on -- with
    the same outputs at any batch size.  Operators whose outputs nothing reads any more are
    dropped; their tensors stay in the file, unreferenced.  Files without such a pair are returned
    unchanged.
    """
    model = _unpacked(flatbuffer)
    kinds = _op_kinds(model)
    changed = False
    for g in model.subgraphs:

        def kind(op):
            return kinds[op.opcodeIndex]

        readers: dict[int, int] = {}
        for op in g.operators:
            for t in op.inputs:
                readers[int(t)] = readers.get(int(t), 0) + 1
        producer = {int(op.outputs[0]): op for op in g.operators if len(op.outputs)}
        for op in g.operators:
            src = producer.get(int(op.inputs[0])) if kind(op) == "FULLY_CONNECTED" else None
            if src is not None and kind(src) == "RESHAPE" and readers.get(int(src.outputs[0])) == 1:
                op.inputs = [int(src.inputs[0])] + [int(t) for t in op.inputs[1:]]
                changed = True
        while (
            changed
        ):  # drop operators whose outputs nobody reads (the RESHAPE and its shape chain)
            read = {int(t) for op in g.operators for t in op.inputs} | {int(t) for t in g.outputs}
            alive = [op for op in g.operators if any(int(t) in read for t in op.outputs)]
            if len(alive) == len(g.operators):
                break
            g.operators = alive
    if not changed:
        return flatbuffer
    return _packed(model, len(flatbuffer))


class TFLiteModel:
    """A ``.tflite`` classifier run with LiteRT: ``predict(x)`` takes float features, returns
    float probabilities, quantising/dequantising at the int8 boundary."""

    def __init__(self, path: str | Path, num_threads: int = 1, use_xnnpack: bool = True):
        self.path = Path(path)
        self.num_threads = num_threads
        data = self.path.read_bytes() if self.path.is_file() else None
        if data is None:
            raise FileNotFoundError(f"{self.path}: model file not found")
        if len(data) < 8 or data[4:8] != b"TFL3":
            raise ValueError(
                f"{self.path}: not a TFLite model (no 'TFL3' flatbuffer identifier); "
                "pass a .tflite file written by the TFLite converter or a .keras model."
            )
        self._data = data
        self.delegate = "xnnpack" if use_xnnpack else "builtin"
        self.interpreter = self._make_interpreter(self.delegate)
        inp, out = self.interpreter.get_input_details()[0], self.interpreter.get_output_details()[0]
        self._in, self._out = inp["index"], out["index"]
        self.in_dtype, self.out_dtype = inp["dtype"], out["dtype"]
        self.in_scale, self.in_zero = (float(v) for v in inp["quantization"])
        self.out_scale, self.out_zero = (float(v) for v in out["quantization"])
        self.input_shape = tuple(int(d) for d in inp["shape"][1:])
        self.n_outputs = int(out["shape"][-1])
        self._batch = None

    def _make_interpreter(self, delegate: str):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        resolver = (
            OpResolverType.AUTO
            if delegate == "xnnpack"
            else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        )
        with _silenced_stderr():
            return Interpreter(
                model_content=self._data,
                num_threads=self.num_threads,
                experimental_op_resolver_type=resolver,
            )

    def _resize(self, n: int) -> None:
        if self._batch != n:
            self.interpreter.resize_tensor_input(self._in, (n,) + self.input_shape)
            try:
                with _silenced_stderr():
                    self.interpreter.allocate_tensors()
            except RuntimeError:
                if self.delegate != "xnnpack":
                    raise
                # XNNPACK refuses some int8 graphs (seen: post-training-quantised SE blocks);
                # LiteRT's built-in int8 kernels run them, slower: said, never silent.
                warn(f"{self.path}: XNNPACK refused this int8 graph; it runs on LiteRT's built-in "
                     "kernels (correct, slower; results.json records the delegate)")  # fmt: skip
                self.delegate = "builtin"
                self.interpreter = self._make_interpreter("builtin")
                self.interpreter.resize_tensor_input(self._in, (n,) + self.input_shape)
                self.interpreter.allocate_tensors()
            self._batch = n

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        if self.in_dtype == np.float32:
            return x.astype(np.float32)
        info = np.iinfo(self.in_dtype)
        q = np.round(x / self.in_scale + self.in_zero)
        return np.clip(q, info.min, info.max).astype(self.in_dtype)

    def predict(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """(N, frames, mels[, 1]) float features -> (N, classes) float probabilities."""
        x = np.asarray(x, np.float32)
        if x.ndim == len(self.input_shape):
            x = x[..., None]
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"{self.path}: expects inputs of shape {self.input_shape}, got {tuple(x.shape[1:])}"
            )
        outs = []
        for s in range(0, len(x), batch_size):
            xb = self.quantize_input(x[s : s + batch_size])
            self._resize(len(xb))
            self.interpreter.set_tensor(self._in, xb)
            self.interpreter.invoke()
            y = self.interpreter.get_tensor(self._out)
            if self.out_dtype != np.float32:
                y = (y.astype(np.float32) - self.out_zero) * self.out_scale
            outs.append(y)
        return np.concatenate(outs) if outs else np.zeros((0, N_CLASSES), np.float32)
