"""Pieces shared by the builders."""

from __future__ import annotations

from asc_keras._runtime import keras

INPUT_1S = (28, 256, 1)  # (frames, mels, channels) of a 1 s clip, report sec. 2.1
# BatchNorm moving-average momentum, Keras convention (new = m * old + (1 - m) * batch).
# The report's lineage (RFR-CNN / CP-JKU, PyTorch) uses PyTorch's momentum 0.1, i.e. Keras 0.9.
# Keras' default 0.99 lags ~100 steps: in short runs inference then uses statistics of
# long-gone weights (measured: plain SERFR-CNN-32, 10 epochs, val 26 % at 0.99, 83 % at 0.9).
BN_MOMENTUM = 0.9


def classifier_head(x, n_classes: int, k=keras, name_prefix: str = ""):
    """Dense logits + softmax; the pre-softmax tensor is the layer named 'logits'.

    The softmax computes in float32 whatever the dtype policy, so mixed-precision models still
    output float32 probabilities.
    """
    logits = k.layers.Dense(n_classes, name=f"{name_prefix}logits")(x)
    return k.layers.Activation("softmax", dtype="float32", name=f"{name_prefix}probabilities")(
        logits
    )


def logits_model(model):
    """A model sharing ``model``'s weights that outputs its pre-softmax 'logits' layer."""
    if isinstance(model, keras.Model):
        cls = keras.Model
    else:  # a tf_keras twin
        from asc_keras._runtime import import_tf_keras

        cls = import_tf_keras().Model
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return cls(inputs, model.get_layer("logits").output, name=f"{model.name}_logits")


def conv_bn_relu(
    x,
    filters: int,
    kernel,
    name: str,
    k=keras,
    strides=1,
    activation: str = "relu",
    bn_momentum: float = BN_MOMENTUM,
):
    """Conv2D (no bias: BN follows) -> BatchNorm -> activation, layers named ``name_conv`` etc."""
    x = k.layers.Conv2D(
        filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = k.layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
    return k.layers.Activation(activation, name=f"{name}_{activation}")(x) if activation else x
