"""SERFR-CNN student (report sec. 3.2, Table 1): RFR-CNN + squeeze-and-excitation.

Table 1, with the choices it leaves open (each a parameter):

=====================  =====================================================  ===========================
Table 1                here                                                   why
=====================  =====================================================  ===========================
5x5 conv-32-BN-ReLU    5x5 conv, ``width`` ch, stride (1, 2) (time, freq)       the report's 28 frames are
                                                                              too few to halve; halving
                                                                              256 mels buys the MACs
2x3 average pool       pool (2, 3) over (time, freq)                            as written, time first
RFR block 1            3 x [1x1 conv-BN-ReLU, 3x3 conv-BN] + identity, ReLU     CP-ResNet residual unit
                                                                              (docs/sources.md), ``width`` ch
SE block               GAP -> 1x1 conv C/r -> ReLU -> 1x1 conv C -> sigmoid     r = 8: r = 4 pushes -32 over
                       -> Multiply                                              128 K params (docs/sources.md)
Transition layer       x + ReLU(BN(1x1 conv(x))), then 2x2 max pool (same)      "1x1 conv + RES": channel-
                                                                              preserving so the residual
                                                                              needs no projection
RFR block 2, 3         3 x [1x1, 1x1] units; the first unit of block 2         channel growth x2 once
                       grows channels to ``2*width`` (1x1 conv+BN shortcut)    (``growth``); 1x1 kernels
                                                                              keep the receptive field
                                                                              bounded (RFR rule)
1x1 conv-256           1x1 conv-256-BN-ReLU                                     Table 1
GAP, Dense(10)         GAP -> Dense 'logits' -> softmax 'probabilities'        logits exposed for KD
=====================  =====================================================  ===========================

Counts (``asc-keras complexity serfr_cnn_32``): width 32 -> 114,270 params,
27.9 M MACs per 1 s; width 24 -> 69,337 params, 16.2 M MACs.  Both inside the DCASE
limits (128 K int8 params, 30 M MACs) with width 32 near both.
"""

from __future__ import annotations

from types import ModuleType

from asc_keras._runtime import keras
from asc_keras.config import N_CLASSES, REPORT_HEAD_CHANNELS
from asc_keras.models.common import BN_MOMENTUM, INPUT_1S, classifier_head, conv_bn_relu


def se_block(x, channels: int, ratio: int, name: str, k: ModuleType = keras):
    """Squeeze-and-excitation: rescale channels by sigmoid(FC(ReLU(FC(GAP(x))))).

    (B, H, W, C) -> (B, H, W, C).  The FCs are 1x1 convs on the (1, 1, C) squeeze so
    the whole block quantises with standard tfmot configs except the Multiply.
    """
    s = k.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")(x)
    s = k.layers.Conv2D(max(1, channels // ratio), 1, activation="relu", name=f"{name}_reduce")(s)
    s = k.layers.Conv2D(channels, 1, activation="sigmoid", name=f"{name}_expand")(s)
    return k.layers.Multiply(name=f"{name}_scale")([x, s])


def rfr_unit(
    x,
    channels: int,
    kernels: tuple,
    name: str,
    k: ModuleType = keras,
    bn_momentum: float = BN_MOMENTUM,
):
    """Residual unit: conv k0-BN-ReLU -> conv k1-BN, + shortcut (1x1 conv-BN if channels change), ReLU."""
    in_ch = x.shape[-1]
    y = conv_bn_relu(x, channels, kernels[0], f"{name}_a", k, bn_momentum=bn_momentum)
    y = conv_bn_relu(
        y, channels, kernels[1], f"{name}_b", k, activation=None, bn_momentum=bn_momentum
    )
    if in_ch != channels:
        x = conv_bn_relu(
            x, channels, 1, f"{name}_shortcut", k, activation=None, bn_momentum=bn_momentum
        )
    y = k.layers.Add(name=f"{name}_add")([x, y])
    return k.layers.Activation("relu", name=f"{name}_out")(y)


def rfr_block(
    x,
    channels: int,
    kernels: tuple,
    units: int,
    name: str,
    k: ModuleType = keras,
    bn_momentum: float = BN_MOMENTUM,
):
    """``units`` residual units with kernel pair ``kernels``; the first may change the channel count."""
    for u in range(units):
        x = rfr_unit(x, channels, kernels, f"{name}_unit{u + 1}", k, bn_momentum)
    return x


def transition_layer(
    x, name: str, k: ModuleType = keras, pool=(2, 2), bn_momentum: float = BN_MOMENTUM
):
    """x + ReLU(BN(1x1 conv(x))) followed by max pooling (Table 1 '1x1 conv + RES 2x2 max pool')."""
    y = conv_bn_relu(x, x.shape[-1], 1, f"{name}", k, bn_momentum=bn_momentum)
    x = k.layers.Add(name=f"{name}_res")([x, y])
    return k.layers.MaxPooling2D(pool, padding="same", name=f"{name}_pool")(x)


def serfr_cnn_graph(
    k: ModuleType,
    width: int,
    input_shape: tuple,
    n_classes: int,
    units: int,
    growth: float,
    se_ratio: int,
    stem_strides,
    stem_pool,
    head_channels: int,
    dropout: float,
    bn_momentum: float,
):
    """The SERFR-CNN layer graph in ``k`` (keras or tf_keras): (input, probabilities) tensors."""
    c1, c2 = width, int(round(width * growth))
    inp = k.Input(shape=input_shape, name="logmel")
    m = bn_momentum
    x = conv_bn_relu(inp, c1, 5, "stem", k, strides=stem_strides, bn_momentum=m)
    x = k.layers.AveragePooling2D(stem_pool, padding="same", name="stem_pool")(x)
    x = rfr_block(x, c1, (1, 3), units, "block1", k, m)
    x = se_block(x, c1, se_ratio, "block1_se", k)
    x = transition_layer(x, "transition1", k, bn_momentum=m)
    for b in (2, 3):
        x = rfr_block(x, c2, (1, 1), units, f"block{b}", k, m)
        x = se_block(x, c2, se_ratio, f"block{b}_se", k)
        x = transition_layer(x, f"transition{b}", k, bn_momentum=m)
    x = conv_bn_relu(x, head_channels, 1, "head", k, bn_momentum=m)
    x = k.layers.GlobalAveragePooling2D(name="head_pool")(x)
    if dropout:
        x = k.layers.Dropout(dropout, name="head_dropout")(x)
    return inp, classifier_head(x, n_classes, k)


# build_serfr_cnn's arguments and their defaults (its docstring says what each means).
SERFR_CNN_DEFAULTS = {
    "width": 32,
    "input_shape": INPUT_1S,
    "n_classes": N_CLASSES,
    "units": 3,
    "growth": 2.0,
    "se_ratio": 8,
    "stem_strides": (1, 2),
    "stem_pool": (2, 3),
    "head_channels": REPORT_HEAD_CHANNELS,
    "dropout": 0.0,
    "bn_momentum": BN_MOMENTUM,
}


def _serfr_args(**given) -> dict:
    """Defaults completed and types normalised (a config read back from JSON has lists)."""
    unknown = set(given) - set(SERFR_CNN_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown SERFR-CNN argument(s) {sorted(unknown)}")
    args = {**SERFR_CNN_DEFAULTS, **given}
    for k in ("input_shape", "stem_strides", "stem_pool"):
        args[k] = tuple(args[k])
    return args


@keras.saving.register_keras_serializable(package="asc_keras")
class SerfrCnn(keras.Model):
    """SERFR-CNN as a functional Keras 3 model that remembers how it was built.

    ``get_config()`` returns the build arguments (and a saved ``.keras`` file keeps them), so
    the tf_keras twin for tensorflow-model-optimization is
    ``build_serfr_cnn(keras_module=tf_keras, **model.build_args())``.
    """

    def __init__(self, name: str | None = None, trainable: bool = True, **build_args):
        # === Config ===
        args = _serfr_args(**build_args)
        # === Layers ===
        inputs, outputs = serfr_cnn_graph(keras, **args)
        name = name or f"serfr_cnn_{args['width']}"
        super().__init__(inputs=inputs, outputs=outputs, name=name, trainable=trainable)
        self._build_args = args

    def build_args(self) -> dict:
        """The ``build_serfr_cnn`` arguments this model was built with (name included)."""
        return {**self._build_args, "name": self.name}

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, **self._build_args}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def build_serfr_cnn(
    width: int = 32,
    *,
    input_shape: tuple = INPUT_1S,
    n_classes: int = N_CLASSES,
    units: int = 3,
    growth: float = 2.0,
    se_ratio: int = 8,
    stem_strides=(1, 2),
    stem_pool=(2, 3),
    head_channels: int = REPORT_HEAD_CHANNELS,
    dropout: float = 0.0,
    bn_momentum: float = BN_MOMENTUM,
    keras_module: ModuleType = keras,
    name: str | None = None,
):
    """Build SERFR-CNN-``width`` (Table 1 of the report; choices in the module docstring).

    Args:
        width: base channel count (report: 32 for systems 1/3, 24 for systems 2/4).
        input_shape: (frames, mels, 1); (28, 256, 1) for a 1 s clip.
        n_classes: output classes (10 scenes).
        units: residual units per RFR block (Table 1: x3).
        growth: channel multiplier of blocks 2-3 relative to block 1.
        se_ratio: SE reduction ratio r.
        stem_strides: (time, frequency) strides of the 5x5 stem convolution.
        stem_pool: (time, frequency) size of the stem's average pooling.
        head_channels: channels of the 1x1 head convolution (Table 1: 256).
        dropout: dropout rate before the classifier (0: none).
        bn_momentum: BatchNorm moving-average momentum (Keras convention; 0.9 = PyTorch's 0.1).
        keras_module: ``keras`` (Keras 3: a :class:`SerfrCnn` that remembers these arguments) or
            ``tf_keras`` (a plain functional twin for tensorflow-model-optimization); the same
            graph code builds both, layer names identical.
        name: model name (default ``serfr_cnn_<width>``).

    Returns:
        Model mapping (batch, frames, mels, 1) -> (batch, n_classes) probabilities.
    """
    args = {k: v for k, v in locals().items() if k in SERFR_CNN_DEFAULTS}
    name = name or f"serfr_cnn_{width}"
    if keras_module is keras:
        return SerfrCnn(**args, name=name)
    inputs, outputs = serfr_cnn_graph(keras_module, **args)
    return keras_module.Model(inputs, outputs, name=name)
