"""PANNs' AudioSet MobileNetV2 (Kong et al. 2020, ``pytorch/models.py`` class ``MobileNetV2``) in Keras.

The layout is PANNs', layer for layer, so a published checkpoint (``MobileNetV2_mAP=0.383.pth``)
loads by name and shape (:mod:`asc_keras.models.panns_import`):

=====================  ==========================================================================
PANNs                  here
=====================  ==========================================================================
``bn0``                BatchNorm over the mel axis (PANNs transposes mels into channels)
``features.0``         3x3 conv (pad 1, no bias) -> AvgPool 2 -> BN -> ReLU6
``features.1..17``     inverted residuals (t, c, n, s) = (1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,4,2)
                       (6,96,3,2) (6,160,3,1) (6,320,1,1): [1x1 conv-BN-ReLU6 when t > 1] ->
                       3x3 depthwise (pad 1, stride 1) -> AvgPool s -> BN -> ReLU6 -> 1x1 conv -> BN,
                       + input when s = 1 and channels equal.  Strides are average pools, not
                       strided convolutions (PANNs' choice).
``features.18``        1x1 conv to ``last_channel`` -> BN -> ReLU6
head                   mean over mels, then max + mean over time, ``fc1`` (ReLU), ``fc_audioset``
=====================  ==========================================================================

BatchNorm epsilon is PyTorch's 1e-5 (Keras' default 1e-3 would shift every output).  Input:
(time, mels, 1) log-mels, PANNs' (batch, 1, time, mels) in channels-last order.
"""

from __future__ import annotations

from asc_keras._runtime import keras
from asc_keras.config import N_CLASSES
from asc_keras.models.common import BN_MOMENTUM, classifier_head

PANNS_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 2), (6, 160, 3, 1),
                 (6, 320, 1, 1))  # fmt: skip
TORCH_BN_EPSILON = 1e-5


def _bn(x, name: str, momentum: float, axis: int = -1):
    return keras.layers.BatchNormalization(
        axis=axis, epsilon=TORCH_BN_EPSILON, momentum=momentum, name=name
    )(x)


def _relu6(x, name: str):
    return keras.layers.ReLU(max_value=6.0, name=name)(x)


def _pool(x, stride: int, name: str):
    return keras.layers.AveragePooling2D(stride, name=name)(x) if stride > 1 else x


def inverted_residual(x, out_channels: int, stride: int, expand: int, name: str, momentum: float):
    """PANNs' ``InvertedResidual``: layers named ``<name>_<index in its nn.Sequential>``."""
    inp = x.shape[-1]
    hidden = int(round(inp * expand))
    i = 0  # index in PANNs' nn.Sequential, so names map to its state-dict keys
    y = x
    if expand != 1:
        y = keras.layers.Conv2D(hidden, 1, use_bias=False, name=f"{name}_0")(y)
        y = _relu6(_bn(y, f"{name}_1", momentum), f"{name}_2")
        i = 3
    y = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{name}_{i}")(y)
    y = _pool(y, stride, f"{name}_{i + 1}")
    y = _relu6(_bn(y, f"{name}_{i + 2}", momentum), f"{name}_{i + 3}")
    y = keras.layers.Conv2D(out_channels, 1, use_bias=False, name=f"{name}_{i + 4}")(y)
    y = _bn(y, f"{name}_{i + 5}", momentum)
    if stride == 1 and inp == out_channels:
        y = keras.layers.Add(name=f"{name}_add")([x, y])
    return y


def build_panns_backbone(*, input_shape: tuple = (None, 64, 1), width_mult: float = 1.0,
                         last_channel: int = 1280, bn_momentum: float = BN_MOMENTUM,
                         name: str = "backbone"):  # fmt: skip
    """PANNs' ``bn0`` + ``features``: (time, mels, 1) log-mels -> (time', mels', last_channel) maps.

    Args:
        input_shape: (frames, mels, 1); mels must be the checkpoint's (64 for PANNs).
        width_mult: channel multiplier (PANNs: 1.0); channels are ``int(c * width_mult)``.
        last_channel: channels of the final 1x1 convolution (PANNs: 1280).
        bn_momentum: BatchNorm moving-average momentum (Keras convention; 0.9 = PyTorch's 0.1).
        name: model name.
    """
    inp = keras.Input(shape=input_shape, name="logmel")
    x = _bn(inp, "bn0", bn_momentum, axis=2)  # one statistic per mel band
    c = int(32 * width_mult)
    x = keras.layers.Conv2D(c, 3, padding="same", use_bias=False, name="features_0_0")(x)
    x = _relu6(_bn(_pool(x, 2, "features_0_1"), "features_0_2", bn_momentum), "features_0_3")
    block = 1
    for t, ch, n, s in PANNS_SETTING:
        for i in range(n):
            x = inverted_residual(x, int(ch * width_mult), s if i == 0 else 1, t, f"features_{block}_conv",
                                  bn_momentum)  # fmt: skip
            block += 1
    x = keras.layers.Conv2D(last_channel, 1, use_bias=False, name=f"features_{block}_0")(x)
    x = _relu6(_bn(x, f"features_{block}_1", bn_momentum), f"features_{block}_2")
    return keras.Model(inp, x, name=name)


def panns_pool(x):
    """PANNs' clip pooling: mean over mels, then max + mean over time: (B, T, F, C) -> (B, C)."""
    x = keras.layers.AveragePooling2D((1, x.shape[2]), name="mel_mean")(x)  # (B, T, 1, C)
    x = keras.layers.Reshape((-1, x.shape[-1]), name="mel_squeeze")(x)
    top = keras.layers.GlobalMaxPooling1D(name="time_max")(x)
    avg = keras.layers.GlobalAveragePooling1D(name="time_mean")(x)
    return keras.layers.Add(name="time_max_plus_mean")([top, avg])


def build_panns_mobilenetv2(*, input_shape: tuple = (None, 64, 1), width_mult: float = 1.0,
                            last_channel: int = 1280, fc1_units: int = 1024, audioset_classes: int = 527,
                            bn_momentum: float = BN_MOMENTUM, name: str = "panns_mobilenetv2"):  # fmt: skip
    """The whole PANNs tagger: backbone, pooling, ``fc1`` (ReLU), ``fc_audioset`` (sigmoid).

    What a checkpoint holds, for checking an import against PyTorch's own outputs; use
    :func:`asc_keras.models.teachers.build_mobilenetv2_teacher` with ``layout='panns'`` for a
    scene-classification teacher on this backbone.

    Args:
        input_shape, width_mult, last_channel, bn_momentum: as :func:`build_panns_backbone`.
        fc1_units: units of ``fc1`` (PANNs: 1024).
        audioset_classes: outputs of ``fc_audioset`` (AudioSet: 527).
        name: model name.
    """
    backbone = build_panns_backbone(input_shape=input_shape, width_mult=width_mult, last_channel=last_channel,
                                    bn_momentum=bn_momentum)  # fmt: skip
    inp = keras.Input(shape=input_shape, name="logmel")
    x = panns_pool(backbone(inp))
    x = keras.layers.Dense(fc1_units, activation="relu", name="fc1")(x)
    out = keras.layers.Dense(audioset_classes, activation="sigmoid", name="fc_audioset")(x)
    return keras.Model(inp, out, name=name)


def build_panns_teacher(*, input_mels: int = 256, mels: int = 64, width_mult: float = 1.0, last_channel: int = 1280,
                        fc1_units: int = 1024, n_classes: int = N_CLASSES, time_upsample: int = 3,
                        bn_momentum: float = BN_MOMENTUM, name: str = "mobilenetv2_teacher"):  # fmt: skip
    """A scene teacher on PANNs' MobileNetV2: mel pooling to ``mels`` bands, backbone, PANNs pooling,
    ``fc1`` (ReLU) and a ``n_classes`` softmax head (``logits`` -> ``probabilities``).

    Args:
        input_mels: mel bands of the features it is fed (the report's 256).
        mels: bands the backbone sees (the checkpoint's ``bn0`` size, 64 for PANNs); ``input_mels``
            must be a multiple: adjacent bands are averaged.
        width_mult, last_channel, fc1_units, bn_momentum: as :func:`build_panns_mobilenetv2`.
        n_classes: scene classes.
        time_upsample: repeat each frame this many times first.  PANNs' frames are 10 ms apart,
            the report's 32 ms: x3 brings the time scale near the one the checkpoint learnt, and
            keeps 1 s (28 frames -> 84) longer than the backbone's five halvings (32 frames).
        name: model name.
    """
    if input_mels % mels:
        raise ValueError(
            f"{input_mels} input mel bands cannot be pooled to the checkpoint's {mels}"
        )
    inp = keras.Input(shape=(None, input_mels, 1), name="logmel")
    x = inp
    if time_upsample > 1:
        x = keras.layers.UpSampling2D((time_upsample, 1), name="time_upsample")(x)
    if input_mels > mels:
        x = keras.layers.AveragePooling2D((1, input_mels // mels), name="mel_pool")(x)
    backbone = build_panns_backbone(input_shape=(None, mels, 1), width_mult=width_mult, last_channel=last_channel,
                                    bn_momentum=bn_momentum)  # fmt: skip
    x = panns_pool(backbone(x))
    x = keras.layers.Dense(fc1_units, activation="relu", name="fc1")(x)
    return keras.Model(inp, classifier_head(x, n_classes), name=name)
