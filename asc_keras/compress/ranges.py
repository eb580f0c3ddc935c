"""Activation ranges of a QAT model measured on data, rather than left near tfmot's initial +-6.

tfmot's activation and output quantisers (``MovingAverageQuantizer``) start at [-6, 6] and move
toward each training batch's ``[min(x, 0), max(x, 0)]`` by an EMA of decay 0.999, fixed in
tfmot.  After n QAT steps a range has gone ``1 - 0.999**n`` of the way: 5 % after the quick
profile's 50 steps, 63 % after 1,000.  A short QAT therefore converts with every activation
clipped near +-6: ReLU outputs quantised over [-5.65, 6.2], the logits over [-6, 6] (measured,
built-in data, seed 42).  The int8 model is then another model than its float weights describe:
compressed float twin 29.5 %, int8 34.0 %, and the QAT model with its ranges but 16-bit rounding
33.8 %: the clipping, not the rounding, made the difference.

:func:`calibrate_activation_ranges` sets every such range to the EMA's fixed point instead:
the mean over clean batches of each batch's ``min(x, 0)`` and ``max(x, 0)``, measured on a float
model holding the same weights (inference mode, BatchNorm's moving statistics).  A long QAT (the
paper profile's) starts from the right ranges and keeps tracking them.  The input quantiser
(``AllValuesQuantizer``: the extremes of every batch seen) is already data-driven and stays.
"""

from __future__ import annotations

import numpy as np

from asc_keras._runtime import import_tf_keras

# The range variables of activation quantisers, by the tensor they quantise in the float layer:
# "output" (a layer's output, incl. a fused activation), "post_activation" (the output after the
# layer's activation: the same tensor), "pre_activation" (before the activation, e.g. a sigmoid).
_ACTIVATION_KINDS = {"output": "output", "post_activation": "output", "pre_activation": "linear"}
# Weight quantisers (LastValueQuantizer: the weights' own extremes at every step) stay as they are.
_WEIGHT_KINDS = {"kernel", "depthwise_kernel", "bias"}


def activation_range_variables(qat) -> dict[tuple[str, str], tuple]:
    """``{(float layer name, tensor kind): (min variable, max variable)}`` of a tf_keras QAT model's
    moving-average activation quantisers (kind: 'output' or 'linear', see ``_ACTIVATION_KINDS``)."""
    found: dict[tuple[str, str], dict] = {}
    for layer in qat.layers:
        if type(layer).__name__ == "QuantizeLayer":
            continue  # the input: AllValuesQuantizer, already the data's extremes
        inner = getattr(layer, "layer", layer)
        for v in layer.weights:
            base = v.name.split("/")[-1].split(":")[0]
            kind, _, end = base.rpartition("_")
            if end not in ("min", "max") or kind in _WEIGHT_KINDS:
                continue
            if kind not in _ACTIVATION_KINDS:
                raise ValueError(
                    f"{qat.name}: quantiser range {v.name!r} of an unknown kind {kind!r}; "
                    "this tfmot version is not the one asc_keras was built for (0.8.1)"
                )
            found.setdefault((inner.name, _ACTIVATION_KINDS[kind]), {})[end] = v
    return {key: (d["min"], d["max"]) for key, d in found.items()}


def measured_ranges(float_model, dataset, keys, max_batches: int) -> dict:
    """``{key: (mean of batch min(x, 0), mean of batch max(x, 0))}`` of the tensors ``keys``
    ((layer name, 'output' | 'linear')) of ``float_model`` over up to ``max_batches`` batches."""
    tfk = import_tf_keras()
    names = sorted({name for name, _ in keys})
    layers = [float_model.get_layer(n) for n in names]
    # One probe model gives every needed layer's input and output in one forward pass.
    probe = tfk.Model(float_model.inputs, [[lay.input, lay.output] for lay in layers])
    sums = {key: np.zeros(2) for key in keys}
    n = 0
    for batch in dataset.take(max_batches):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        for lay, (inp, out) in zip(layers, probe(x, training=False), strict=True):
            for kind in ("output", "linear"):
                if (lay.name, kind) in sums:
                    t = out if kind == "output" else _linear_output(lay, inp)
                    lo, hi = float(np.min(t)), float(np.max(t))
                    sums[(lay.name, kind)] += (min(lo, 0.0), max(hi, 0.0))  # 0 always in range
        n += 1
    if n == 0:
        raise ValueError("no batches to measure the activation ranges on")
    return {key: tuple(s / n) for key, s in sums.items()}


def _linear_output(layer, inputs):
    """The layer's output without its activation (a conv or dense before its sigmoid)."""
    saved = layer.activation
    layer.activation = import_tf_keras().activations.linear
    try:
        return layer(inputs)
    finally:
        layer.activation = saved


def calibrate_activation_ranges(qat, float_model, dataset, max_batches: int) -> int:
    """Set the QAT model's activation ranges to those measured on ``float_model`` (a tf_keras
    model with the same layer names and the float weights); returns how many ranges were set."""
    variables = activation_range_variables(qat)
    if not variables or max_batches <= 0:
        return 0
    for key, (lo, hi) in measured_ranges(float_model, dataset, variables, max_batches).items():
        v_min, v_max = variables[key]
        v_min.assign(np.full(v_min.shape, lo, np.float32))
        v_max.assign(np.full(v_max.shape, hi, np.float32))
    return len(variables)
