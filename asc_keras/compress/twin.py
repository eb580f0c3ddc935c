"""tf_keras (Keras 2) twins of Keras 3 models, for tensorflow-model-optimization.

tfmot 0.8.1 accepts tf_keras models only.  The student builders take a
``keras_module`` argument, so the *same code* builds a tf_keras copy with
identical layer names; weights are then copied layer by layer.
"""
from __future__ import annotations

from typing import Callable

from asc_keras._runtime import import_tf_keras
from asc_keras.models.serfr_cnn import build_serfr_cnn


def serfr_cnn_kwargs(model) -> dict:
    """Recover ``build_serfr_cnn`` arguments from a built SERFR-CNN (so a saved .keras is enough)."""
    try:
        width = model.get_layer("stem_conv").filters
        names = [l.name for l in model.layers]
        return {
            "width": width,
            "input_shape": tuple(model.input_shape[1:]),
            "n_classes": model.get_layer("logits").units,
            "units": len({n.split("_unit")[1].split("_")[0] for n in names if n.startswith("block1_unit")}),
            "growth": model.get_layer("block2_unit1_a_conv").filters / width,
            "se_ratio": width // model.get_layer("block1_se_reduce").filters,
            "stem_strides": tuple(model.get_layer("stem_conv").strides),
            "stem_pool": tuple(model.get_layer("stem_pool").pool_size),
            "head_channels": model.get_layer("head_conv").filters,
            "dropout": model.get_layer("head_dropout").rate if "head_dropout" in names else 0.0,
            "bn_momentum": float(model.get_layer("stem_bn").momentum),
            "name": model.name,
        }
    except ValueError as e:
        raise ValueError(f"model {model.name!r} is not a SERFR-CNN built by asc_keras ({e}); pass its builder "
                         "and arguments to tf_keras_twin explicitly") from None


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
            raise ValueError(f"layer {layer.name!r}: weight shapes differ between {src.name} and {dst.name}")
        layer.set_weights(w)


def tf_keras_twin(model, builder: Callable | None = None, **builder_kwargs):
    """Build the tf_keras twin of a Keras 3 model and copy its weights.

    Args:
        model: a Keras 3 model built by an asc_keras builder.
        builder: the builder that made it (default: SERFR-CNN, arguments recovered
            from the model); it must accept ``keras_module``.
    Returns:
        A tf_keras model with the same layer names, weights and outputs.
    """
    tf_keras = import_tf_keras()
    if builder is None:
        builder, builder_kwargs = build_serfr_cnn, {**serfr_cnn_kwargs(model), **builder_kwargs}
    twin = builder(keras_module=tf_keras, **builder_kwargs)
    copy_weights(model, twin)
    return twin
