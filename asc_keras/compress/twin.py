"""tf_keras (Keras 2) twins of Keras 3 models, for tensorflow-model-optimization.

tfmot 0.8.1 accepts tf_keras models only.  The student builders take a
``keras_module`` argument, so the *same code* builds a tf_keras copy with
identical layer names; weights are then copied layer by layer.  A SERFR-CNN remembers
its build arguments (:meth:`~asc_keras.models.serfr_cnn.SerfrCnn.build_args`, kept in a
saved ``.keras`` file), so its twin needs nothing but the model.
"""

from __future__ import annotations

from collections.abc import Callable

from asc_keras._runtime import import_tf_keras
from asc_keras.models.serfr_cnn import SerfrCnn, build_serfr_cnn


def copy_weights(src, dst) -> None:
    """Copy weights layer by layer, matched by name (works across Keras 3 / tf_keras)."""
    src_layers = {l.name: l for l in src.layers}
    for layer in dst.layers:
        if not layer.weights:
            continue
        if layer.name not in src_layers:
            raise ValueError(f"layer {layer.name!r} of {dst.name} has no counterpart in {src.name}")
        w = src_layers[layer.name].get_weights()
        if [a.shape for a in w] != [tuple(v.shape) for v in layer.get_weights()]:
            raise ValueError(
                f"layer {layer.name!r}: weight shapes differ between {src.name} and {dst.name}"
            )
        layer.set_weights(w)


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
