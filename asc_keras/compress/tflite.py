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
from asc_keras.compress.graph_edits import (
    fold_flatten_into_fully_connected,
    fold_stride_into_channels,
    widen_empty_ranges,
)
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
        fold_flatten: feed fully-connected layers their unflattened input, as the organisers'
            converter did (``graph_edits.fold_flatten_into_fully_connected``).
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


def quantize(x: np.ndarray, dtype, scale: float, zero: float) -> np.ndarray:
    """Float values as a model input of ``dtype`` with quantisation (``scale``, ``zero``): rounded
    and clipped to the integer range; float inputs pass as float32."""
    if not np.issubdtype(dtype, np.integer):
        return x.astype(np.float32)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


class TFLiteModel:
    """A ``.tflite`` classifier run with LiteRT: ``predict(x)`` takes float features, returns
    float probabilities, quantising/dequantising at the int8 boundary.

    ``fold_stride``: run the file with :func:`~asc_keras.compress.graph_edits
    .fold_stride_into_channels` applied in memory -- the same outputs bit for bit, SERFR-CNN's
    stem in about half the time.  The file itself stays as written: it is what NeSsi counts, and
    the folded graph multiplies by a few zeros more.
    """

    def __init__(self, path: str | Path, num_threads: int = 1, use_xnnpack: bool = True,
                 fold_stride: bool = True):  # fmt: skip
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
        if fold_stride:
            try:
                self._data = fold_stride_into_channels(data)
            except Exception:  # noqa: BLE001 -- a speed-up only: a file it cannot edit runs as it is
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
        return quantize(x, self.in_dtype, self.in_scale, self.in_zero)

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
