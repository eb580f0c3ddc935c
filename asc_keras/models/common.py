"""Pieces shared by the builders."""

from __future__ import annotations

from asc_keras._runtime import keras, tf

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
    x = batch_norm(k)(momentum=bn_momentum, name=f"{name}_bn")(x)
    return k.layers.Activation(activation, name=f"{name}_{activation}")(x) if activation else x


@keras.saving.register_keras_serializable(package="asc_keras")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """Keras' BatchNormalization whose training step runs TensorFlow's fused kernel.

    The same weights, configuration, inference and moving-statistics rule (new = m * old +
    (1 - m) * batch, the batch's *biased* variance), so a model trains as with the stock layer up
    to float rounding.  Why: Keras 3 computes a training batch's moments and its normalisation as
    separate passes over the activation, and autodiff adds as many for the gradient; TensorFlow's
    kernel does each in one.  A SERFR-CNN-32 optimiser step of 32 clips on 2 CPU cores: 126 ms
    with the stock layer, 94 with this one (``benchmarks/bench_steps.py``).  Where the kernel does
    not apply -- inference, a frozen layer, masks, renorm, synchronised statistics (several
    replicas), a tensor that is not (B, H, W, C) normalised over its last axis, an epsilon below
    the kernel's floor -- the stock path runs.
    """

    # tf.nn.fused_batch_norm raises a smaller epsilon to this; the stock path keeps it exact.
    MIN_FUSED_EPSILON = 1.001e-5

    def _fusable(self, inputs, training, mask) -> bool:
        return (
            training is True
            and self.trainable
            and mask is None
            and not self.renorm
            and not self.synchronized
            and self.center
            and self.scale
            and len(inputs.shape) == 4
            and self.axis in (3, -1)
            and self.epsilon >= self.MIN_FUSED_EPSILON
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        x = keras.ops.cast(inputs, "float32")  # as the stock layer: statistics in float32
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x,
            keras.ops.cast(self.gamma, "float32"),
            keras.ops.cast(self.beta, "float32"),
            epsilon=self.epsilon,
            is_training=True,
        )
        # The kernel returns the variance with Bessel's correction n / (n - 1) (for its own moving
        # average); Keras' moving variance, like the normalisation, uses the biased one.
        n = keras.ops.cast(keras.ops.prod(keras.ops.shape(x)[:-1]), "float32")
        variance = variance * (n - 1.0) / n
        m = self.momentum
        self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
        self.moving_variance.assign(self.moving_variance * m + variance * (1.0 - m))
        return keras.ops.cast(y, self.compute_dtype)


def batch_norm(k=keras):
    """The BatchNormalization class the builders use in ``k``: :class:`FusedBatchNormalization`
    in Keras 3; tf_keras' own layer (fused already) in the tf_keras twins."""
    return FusedBatchNormalization if k is keras else k.layers.BatchNormalization


def is_batch_norm(layer) -> bool:
    """Whether ``layer`` is a BatchNormalization (stock or fused; Keras 3 or tf_keras)."""
    return type(layer).__name__ in ("BatchNormalization", "FusedBatchNormalization")


@keras.saving.register_keras_serializable(package="asc_keras")
class FrequencyNorm(keras.layers.Layer):
    """Residual frequency-wise normalisation (Kim et al., DCASE 2021, the ASC BC-ResNet's input):

        y = residual * x + (x - mean_t(x)) / sqrt(var_t(x) + eps)

    per example, frequency band and channel, the statistics over time (axis 1 of (B, T, F, C)).
    A log-mel band's level over a recording is the device's response times the scene's
    background in that band; taking it out leaves what changes in time -- a short event stands
    out of its band's own level -- while the residual keeps the absolute spectrum for the scenes
    it tells apart.  No weights; works on any number of frames.
    """

    def __init__(self, residual: float = 0.1, epsilon: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.residual, self.epsilon = float(residual), float(epsilon)

    def call(self, x):
        mean = keras.ops.mean(x, axis=1, keepdims=True)
        var = keras.ops.var(x, axis=1, keepdims=True)
        return self.residual * x + (x - mean) * keras.ops.rsqrt(var + self.epsilon)

    def get_config(self):
        return {**super().get_config(), "residual": self.residual, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="asc_keras")
class BandDeviation(keras.layers.Layer):
    """(B, T, F, C) -> (B, T, F, 2C): the input beside its deviation from each band's mean over
    time (x - mean_t(x)), per example.  A model sees both the absolute spectrum and, at full scale,
    what changes in time within each band (a short event), whatever the band's level."""

    def call(self, x):
        return keras.ops.concatenate([x, x - keras.ops.mean(x, axis=1, keepdims=True)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 2 * input_shape[-1])


def load_model_file(path, what: str = "a Keras model"):
    """A ``.keras`` file loaded in Keras' safe mode, uncompiled: nothing in the file executes
    (Python lambdas, and classes or functions outside Keras and asc_keras's registered ones, are
    refused).  Any failure is a ValueError naming the file."""
    from pathlib import Path

    import asc_keras.models  # noqa: F401  (registers the builders' classes: SerfrCnn, FrequencyNorm)

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # noqa: BLE001 - a crafted file can raise anything; it is refused by name
        first = (str(e).splitlines() or [type(e).__name__])[0][:240]
        raise ValueError(
            f"{path}: cannot load {what} from it ({type(e).__name__}: {first}); pass a .keras file "
            "saved by asc_keras (nothing in a model file is executed: safe mode)"
        ) from None


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
