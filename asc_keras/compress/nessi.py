"""Complexity as the DCASE organisers count it: NeSsi's rules on the deployed ``.tflite`` file.

NeSsi (github.com/AlbertoAncilotto/NeSsi, ``nessi.py`` + ``tflite_tools/tflite_model.py``) is the
counter of the DCASE 2022-2024 Task 1 baselines.  Its limits are ``MAX_MACC = 30e6`` and
``MAX_PARAMS = 128e3`` -- the latter in *bytes* of parameter memory (reported as "Memory"; the
CPJKU 2024 baseline names it ``MAX_PARAMS_MEMORY = 128_000``), not 128 x 1024.  A model passes
when a count is not greater than its limit (NeSsi warns only on ``>``).

Its rules, followed here one by one, odd ones included:

* **Memory**: for every operator, the bytes of each *constant* input tensor -- a tensor that no
  operator produces and that is not a graph input -- at its element size: int8/uint8 1 B,
  int16/float16 2 B, int32/float32 4 B, int64 8 B.  So an int8 model pays 1 B per weight and
  4 B per int32 bias, and also pays for small constants such as a RESHAPE's shape.  The sum is
  per operator: a constant that two operators read is counted twice.  Optional inputs
  (index -1, e.g. a FULLY_CONNECTED without bias) are skipped (NeSsi itself fails on them).
* **MACs**, per operator, batch included (1):

  - CONV_2D: output positions x output channels x kernel height x width x input channels;
  - DEPTHWISE_CONV_2D: output positions x channels (the kernel's last axis) x kernel h x w;
  - FULLY_CONNECTED: batch x the *input tensor's last axis* x output units.  When the converter
    feeds a FULLY_CONNECTED the unflattened tensor of a Flatten (the DCASE baseline's
    (1, 2, 1, 32)), this is 32, not the 64 inputs the layer really has;
  - MAX_POOL_2D, AVERAGE_POOL_2D: output elements x pool height x width (pooling counts);
  - MEAN (global pooling): input elements;
  - ADD: (inputs - 1) x output elements;
  - everything else -- MUL (the SE rescale), activations, SOFTMAX, RESHAPE, QUANTIZE -- 0.

For the official DCASE 2022 baseline (int8) these rules give 46,512 bytes (45,816 int8 kernel
bytes + 174 int32 biases x 4) and 29,234,920 MACs, the organisers' published figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asc_keras.config import DCASE_MAX_MACS, DCASE_MAX_PARAM_BYTES

NESSI_MAX_PARAM_BYTES = (
    DCASE_MAX_PARAM_BYTES  # NeSsi MAX_PARAMS = 128e3 (bytes of parameter memory)
)
NESSI_MAX_MACS = DCASE_MAX_MACS  # NeSsi MAX_MACC = 30e6

_ELEMENT_BYTES = {
    "INT8": 1,
    "UINT8": 1,
    "INT16": 2,
    "FLOAT16": 2,
    "INT32": 4,
    "FLOAT32": 4,
    "INT64": 8,
}


@dataclass
class NessiOp:
    """One operator as NeSsi sees it."""

    index: int
    op: str
    output_shape: tuple
    macs: int
    param_bytes: int


@dataclass
class NessiComplexity:
    """NeSsi's totals (and per-operator rows) for one ``.tflite`` file."""

    model: str
    ops: list[NessiOp] = field(default_factory=list)

    @property
    def param_bytes(self) -> int:
        return sum(o.param_bytes for o in self.ops)

    @property
    def macs(self) -> int:
        return sum(o.macs for o in self.ops)

    @property
    def within_limits(self) -> bool:
        return self.param_bytes <= NESSI_MAX_PARAM_BYTES and self.macs <= NESSI_MAX_MACS

    def to_dict(self) -> dict:
        return {
            "param_bytes": self.param_bytes,
            "macs": self.macs,
            "max_param_bytes": NESSI_MAX_PARAM_BYTES,
            "max_macs": NESSI_MAX_MACS,
            "param_bytes_headroom": NESSI_MAX_PARAM_BYTES - self.param_bytes,
            "macs_headroom": NESSI_MAX_MACS - self.macs,
            "within_limits": self.within_limits,
        }

    def summary(self) -> str:
        ok = "OK" if self.within_limits else "EXCEEDED"
        return (
            f"{self.model} (NeSsi, DCASE organisers' rules): {self.param_bytes:,} parameter bytes of "
            f"{NESSI_MAX_PARAM_BYTES:,}, {self.macs:,} MACs of {NESSI_MAX_MACS:,}: {ok}"
        )


def _op_macs(name: str, op, tensors, options) -> int:
    """MACs of one operator by NeSsi's rules (module docstring)."""
    out = [int(d) for d in tensors[op.outputs[0]].shape]
    if name == "CONV_2D":
        o_c, k_h, k_w, i_c = (int(d) for d in tensors[op.inputs[1]].shape)
        return int(np.prod(out[:-1])) * o_c * k_h * k_w * i_c
    if name == "DEPTHWISE_CONV_2D":
        _, k_h, k_w, c = (int(d) for d in tensors[op.inputs[1]].shape)
        return int(np.prod(out[:-1])) * c * k_h * k_w
    if name == "FULLY_CONNECTED":
        in_dim = int(tensors[op.inputs[0]].shape[-1])
        return out[0] * in_dim * out[-1]
    if name in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        return int(np.prod(out)) * int(options.filterHeight) * int(options.filterWidth)
    if name == "MEAN":
        return int(np.prod(tensors[op.inputs[0]].shape))
    if name == "ADD":
        return (len(op.inputs) - 1) * int(np.prod(out))
    return 0


def nessi_complexity(path: str | Path) -> NessiComplexity:
    """Count a ``.tflite`` file by NeSsi's rules: parameter bytes and MACs (module docstring)."""
    from ai_edge_litert import schema_py_generated as schema

    path = Path(path)
    buf = path.read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ValueError(
            f"{path}: not a TFLite flatbuffer (no 'TFL3' identifier); pass a .tflite file."
        )
    model = schema.ModelT.InitFromPackedBuf(buf, 0)
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    g = model.subgraphs[0]
    produced = {int(t) for op in g.operators for t in op.outputs}
    graph_inputs = {int(t) for t in g.inputs}
    result = NessiComplexity(model=path.name)
    for i, op in enumerate(g.operators):
        code = model.operatorCodes[op.opcodeIndex]
        name = op_names.get(
            max(code.builtinCode, code.deprecatedBuiltinCode), str(code.builtinCode)
        )
        const_bytes = 0
        for t in op.inputs:
            t = int(t)
            if t < 0 or t in produced or t in graph_inputs:
                continue
            tensor = g.tensors[t]
            size = int(np.prod(tensor.shape)) if tensor.shape is not None else 1
            const_bytes += size * _ELEMENT_BYTES[type_names[tensor.type]]
        macs = _op_macs(name, op, g.tensors, op.builtinOptions)
        out_shape = tuple(int(d) for d in g.tensors[op.outputs[0]].shape)
        result.ops.append(NessiOp(i, name, out_shape, macs, const_bytes))
    return result


def nessi_of_model(model, seed: int = 0) -> NessiComplexity:
    """Convert a float Keras model to full-int8 TFLite and count it by NeSsi's rules.

    Calibration uses random inputs (ranges do not change the counts).  All-zero biases -- an
    untrained builder's -- are set to small values for the conversion (and restored after),
    because the converter drops an all-zero bias that a trained model would have.
    """
    import tempfile

    from asc_keras.compress.tflite import convert_int8

    shape = tuple(28 if d is None else int(d) for d in model.input_shape[1:])
    rng = np.random.default_rng(seed)
    saved = model.get_weights()
    try:
        for layer in model.layers:
            for w in layer.weights:
                if w.path.endswith("bias") and not np.any(w.numpy()):
                    w.assign(rng.normal(0.0, 0.01, w.shape).astype(np.float32))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{model.name}_int8.tflite"
            convert_int8(
                model, rng.normal(size=(8, *shape)).astype(np.float32), path, input_shape=shape
            )
            result = nessi_complexity(path)
    finally:
        model.set_weights(saved)
    result.model = model.name
    return result
