"""Exact model complexity per 1 s input: parameters, multiply-accumulates, parameter memory.

The project's own, exact view (the organisers' count, with its odd rules, is
:mod:`asc_keras.compress.nessi`; results show both):

* **parameters**: every weight of every layer, BatchNorm scale and offset included,
  BatchNorm moving statistics excluded (buffers, folded away at deployment); ``keras_params``
  is ``model.count_params()``, what ``model.summary()`` shows (moving statistics included);
* **MACs**: multiply-accumulates of convolutions, depthwise convolutions and dense
  layers for one 1 s input (batch 1): kernel size x output positions.  Element-wise
  ops (BN, activations, add, the SE multiply, pooling) are not counted;
* **memory**: parameters x bytes per parameter (int8: 1, float16: 2, float32: 4);
  limits: 128,000 bytes (``DCASE_MAX_PARAM_BYTES``) and 30 M MACs.

``deployed_params`` counts what a BN-folded inference graph holds (conv/dense
kernels plus one bias per output channel where the layer has a bias or a
following BatchNorm); a ``.tflite`` file's count is that number, which is how the
two are compared.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from asc_keras.config import DCASE_MAX_MACS, DCASE_MAX_PARAM_BYTES
from asc_keras.models.common import is_batch_norm


@dataclass
class LayerCount:
    name: str
    kind: str
    output_shape: tuple
    params: int
    macs: int


@dataclass
class Complexity:
    """Per-layer counts and totals of one model."""

    model: str
    layers: list[LayerCount] = field(default_factory=list)
    deployed_params: int = 0
    keras_params: int = 0  # model.count_params(): what model.summary() shows (BN statistics too)
    input_shape: tuple = ()
    tensor_types: set = field(default_factory=set)  # .tflite only: element types of all tensors

    @property
    def params(self) -> int:
        return sum(l.params for l in self.layers)

    @property
    def macs(self) -> int:
        return sum(l.macs for l in self.layers)

    def memory_bytes(self, bits: int = 8) -> int:
        return self.params * bits // 8

    @property
    def within_limits(self) -> bool:
        return self.memory_bytes(8) <= DCASE_MAX_PARAM_BYTES and self.macs <= DCASE_MAX_MACS

    def summary(self) -> str:
        ok = "OK" if self.within_limits else "EXCEEDED"
        return (
            f"{self.model}: {self.params:,} params ({self.memory_bytes(8):,} bytes at int8, "
            f"{self.memory_bytes(32):,} at float32), {self.macs:,} MACs per 1 s input, "
            f"{self.deployed_params:,} deployed (BN-folded) params; exact view against the DCASE "
            f"limits (128,000 bytes, 30,000,000 MACs): {ok}"
        )

    def table(self, only_counted: bool = True) -> str:
        rows = [l for l in self.layers if (l.params or l.macs) or not only_counted]
        w = max([len(r.name) for r in rows] + [5])
        t = max([len(r.kind) for r in rows] + [22])  # 'FusedBatchNormalization' is 23
        lines = [f"{'layer':<{w}}  {'type':<{t}} {'output':<20} {'params':>9} {'MACs':>12}"]
        lines += [
            f"{r.name:<{w}}  {r.kind:<{t}} {str(r.output_shape):<20} {r.params:>9,} {r.macs:>12,}"
            for r in rows
        ]
        lines.append(f"{'total':<{w}}  {'':<{t}} {'':<20} {self.params:>9,} {self.macs:>12,}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "params": self.params,
            "macs": self.macs,
            "deployed_params": self.deployed_params,
            "keras_params": self.keras_params,
            "int8_kb": self.memory_bytes(8) / 1024,
            "float16_kb": self.memory_bytes(16) / 1024,
            "float32_kb": self.memory_bytes(32) / 1024,
            "within_dcase_limits": self.within_limits,
            "input_shape": list(self.input_shape),
            "layers": [asdict(l) for l in self.layers],
        }


_CONV_KINDS = {"Conv1D", "Conv2D", "DepthwiseConv2D", "DepthwiseConv1D", "Dense", "SeparableConv2D"}


def _weights_by_role(layer) -> dict[str, np.ndarray]:
    out = {}
    for w in layer.weights:
        role = w.path.split("/")[-1] if hasattr(w, "path") else w.name.split("/")[-1].split(":")[0]
        out[role] = w
    return out


def _count_params(layer) -> int:
    return int(
        sum(
            np.prod(w.shape)
            for w in layer.weights
            if not any(
                s in (w.path if hasattr(w, "path") else w.name)
                for s in ("moving_mean", "moving_variance")
            )
        )
    )


def _keras_module(model):
    from asc_keras._runtime import keras

    if isinstance(model, keras.Model):
        return keras
    from asc_keras._runtime import import_tf_keras

    return import_tf_keras()


def keras_complexity(model, input_shape: tuple | None = None) -> Complexity:
    """Count a Keras 3 (or tf_keras) model for one 1 s input.

    ``input_shape`` (without batch) defaults to the model's, with an unknown time
    axis taken as 28 frames (1 s of the report's features).
    """
    k = _keras_module(model)
    shape = tuple(input_shape or model.input_shape[1:])
    shape = tuple(28 if (i == 0 and d is None) else d for i, d in enumerate(shape))
    result = Complexity(model=model.name, input_shape=shape, keras_params=int(model.count_params()))
    _count_into(model, np.zeros((1,) + shape, np.float32), k, result, prefix="")
    return result


def _count_into(model, x, k, result: Complexity, prefix: str) -> None:
    layers = [l for l in model.layers if l.__class__.__name__ != "InputLayer"]
    probe_outputs = []
    for l in layers:
        if isinstance(l, k.Model):  # a nested model: its call node in *this* graph
            node = l._inbound_nodes[-1]
            probe_outputs += [node.output_tensors[0], node.input_tensors[0]]
        else:
            probe_outputs.append(l.output)
    values = k.Model(model.inputs, probe_outputs)([x], training=False)
    values = [values] if not isinstance(values, (list, tuple)) else list(values)
    it = iter(values)
    consumers = _bn_followers(layers)
    for l in layers:
        out = next(it)
        if isinstance(l, k.Model):
            _count_into(l, np.asarray(next(it)), k, result, prefix=f"{prefix}{l.name}/")
            continue
        kind = l.__class__.__name__
        out_shape = tuple(int(d) for d in out.shape[1:])
        params = _count_params(l)
        macs = 0
        w = _weights_by_role(l)
        positions = int(np.prod(out_shape[:-1])) if len(out_shape) > 1 else 1
        if kind in _CONV_KINDS:
            for role in ("kernel", "depthwise_kernel", "pointwise_kernel"):
                if role in w:
                    macs += int(np.prod(w[role].shape)) * positions
            # Deployed graph: kernels + one bias per output channel if it has a bias or feeds a BN.
            kernel_size = sum(
                int(np.prod(w[r].shape))
                for r in ("kernel", "depthwise_kernel", "pointwise_kernel")
                if r in w
            )
            has_bias = "bias" in w or l.name in consumers
            result.deployed_params += kernel_size + (out_shape[-1] if has_bias else 0)
        elif is_batch_norm(l) and l.name not in consumers.values():
            result.deployed_params += 2 * out_shape[-1]  # standalone BN: a multiply and an add
        result.layers.append(LayerCount(prefix + l.name, kind, out_shape, params, macs))


def _bn_followers(layers) -> dict[str, str]:
    """{conv layer name: the BatchNormalization fed only by it} (those fold into the conv)."""
    out = {}
    for l in layers:
        if not is_batch_norm(l):
            continue
        try:
            src = l.input._keras_history[0]
        except (AttributeError, TypeError, IndexError):
            continue
        if src.__class__.__name__ in _CONV_KINDS:
            out[src.name] = l.name
    return out


# ---------------------------------------------------------------- TFLite ------
_TFL_COUNTED = {"CONV_2D": (1, 2), "DEPTHWISE_CONV_2D": (1, 2), "FULLY_CONNECTED": (1, 2)}
_BYTES = {"INT8": 1, "UINT8": 1, "INT16": 2, "FLOAT16": 2, "INT32": 4, "FLOAT32": 4, "INT64": 8}


def tflite_complexity(path: str | Path) -> Complexity:
    """Count a ``.tflite`` file from its flatbuffer: weights and MACs of CONV_2D,
    DEPTHWISE_CONV_2D and FULLY_CONNECTED ops (batch 1).  ``params`` here are the
    deployed (BN-folded) parameters; compare them with ``keras_complexity(m).deployed_params``.
    """
    from ai_edge_litert import schema_py_generated as schema

    path = Path(path)
    buf = path.read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ValueError(
            f"{path}: not a TFLite flatbuffer (no 'TFL3' identifier); pass a .tflite file "
            "written by the TFLite converter."
        )
    model = schema.ModelT.InitFromPackedBuf(buf, 0)
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    g = model.subgraphs[0]
    result = Complexity(
        model=path.name, input_shape=tuple(int(d) for d in g.tensors[g.inputs[0]].shape[1:])
    )
    for i, op in enumerate(g.operators):
        code = model.operatorCodes[op.opcodeIndex]
        name = op_names.get(
            max(code.builtinCode, code.deprecatedBuiltinCode), str(code.builtinCode)
        )
        if name not in _TFL_COUNTED:
            continue
        out = g.tensors[op.outputs[0]]
        out_shape = tuple(int(d) for d in out.shape)
        params = 0
        for pos in _TFL_COUNTED[name]:
            if pos < len(op.inputs) and op.inputs[pos] >= 0:
                params += int(np.prod(g.tensors[op.inputs[pos]].shape))
        weight_shape = g.tensors[op.inputs[1]].shape
        positions = int(np.prod(out_shape[:-1]))  # batch (1) x spatial positions
        macs = int(np.prod(weight_shape)) * positions
        tname = g.tensors[op.outputs[0]].name
        tname = tname.decode() if isinstance(tname, bytes) else tname
        result.layers.append(LayerCount(f"{i}:{tname[:60]}", name, out_shape[1:], params, macs))
    result.deployed_params = sum(l.params for l in result.layers)
    result.tensor_types = {type_names.get(t.type, str(t.type)) for t in g.tensors}
    return result
