"""tf_keras (Keras 2) twins of Keras 3 models, for tensorflow-model-optimization.

tfmot 0.8.1 accepts tf_keras models only.  The student builders take a
``keras_module`` argument, so the *same code* builds a tf_keras copy with
identical layer names; weights are then copied layer by layer.  A SERFR-CNN remembers
its build arguments (:meth:`~asc_keras.models.serfr_cnn.SerfrCnn.build_args`, kept in a
saved ``.keras`` file), so its twin needs nothing but the model.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from asc_keras._runtime import import_tf_keras, keras
from asc_keras.models.common import copy_weights
from asc_keras.models.serfr_cnn import SerfrCnn, build_serfr_cnn


def tf_keras_twin(model, builder: Callable | None = None, **builder_kwargs):
    """Build the tf_keras twin of a Keras 3 model and copy its weights.

    Args:
        model: a Keras 3 model built by an asc_keras builder.
        builder: the builder that made it, accepting ``keras_module`` (default: SERFR-CNN,
            with the arguments the model remembers).
    Returns:
        A tf_keras model with the same layer names, weights and outputs.
    """
    tf_keras = import_tf_keras()
    if builder is None:
        if not isinstance(model, SerfrCnn):
            raise ValueError(
                f"model {model.name!r} is not a SERFR-CNN built by this version of asc_keras "
                "(it does not remember its build arguments); pass its builder and arguments "
                "to tf_keras_twin"
            )
        builder, builder_kwargs = build_serfr_cnn, {**model.build_args(), **builder_kwargs}
    twin = builder(keras_module=tf_keras, **builder_kwargs)
    copy_weights(model, twin)
    return twin


def float_weights_of(model) -> dict[str, list]:
    """Every weighted layer's float weights by layer name, looking inside tfmot's wrappers.

    A QAT model wraps each layer (``quant_<name>``) around the original, which keeps its float
    kernel, bias and BatchNorm statistics; the wrapper adds only the quantisers' ranges.  So
    these are exactly the weights the int8 converter quantises (BatchNorm still unfolded).
    """
    out = {}
    for layer in model.layers:
        if type(layer).__name__ == "QuantizeLayer":
            continue  # the input quantiser: ranges only, nothing of the float model
        inner = getattr(layer, "layer", layer)  # QuantizeWrapper / PruneLowMagnitude: the original
        # A wrapper may take over the inner layer's kernel (a quantised Conv2D's kernel is the
        # wrapper's variable, still named "<inner>/kernel"): select by that name, in the
        # wrapper's order (trainable first), which is Keras' own order for these layers.
        own = [v for v in layer.weights if v.name.split("/")[0] == inner.name]
        if own:
            out[inner.name] = [np.asarray(v.numpy()) for v in own]
    return out


def keras_float_twin(compressed, student, keras_module=keras):
    """The compressed tf_keras model (pruned and/or QAT) as a SERFR-CNN without fake
    quantisation: the student's architecture holding the compressed float weights, so it scores
    what the int8 model was converted from, and int8 against it measures quantisation alone.
    A Keras 3 model by default; ``keras_module=tf_keras`` gives the tf_keras one (the float model
    the activation ranges are measured on, asc_keras.compress.ranges)."""
    if not isinstance(student, SerfrCnn):
        raise ValueError(f"{student.name!r} is not a SERFR-CNN that remembers its build arguments")
    weights = float_weights_of(compressed)
    twin = build_serfr_cnn(**student.build_args(), keras_module=keras_module)
    for layer in twin.layers:
        if not layer.weights:
            continue
        w = weights.get(layer.name)
        if w is None or [a.shape for a in w] != [tuple(v.shape) for v in layer.weights]:
            raise ValueError(f"layer {layer.name!r}: no matching weights in {compressed.name}")
        layer.set_weights(w)
    return twin
