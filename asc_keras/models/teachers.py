"""Teacher models (report sec. 3.1): MobileNetV2, a VGG-style CNN and BC-ResNet.

All are fully convolutional up to global pooling, so one model takes 1 s
(28 frames) and 10 s (309 frames) log-mels: input shape (None, mels, 1).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from asc_keras._runtime import keras
from asc_keras.config import N_CLASSES
from asc_keras.models.common import (
    BN_MOMENTUM,
    FusedBatchNormalization,
    classifier_head,
    conv_bn_relu,
    load_model_file,
)
from asc_keras.models.teacher_parts import (
    MIN_FRAMES,
    TEACHER_INPUT,
    MinFrames,
    clip_pooling,
    mel_pooling,
    teacher_input,
)


def build_mobilenetv2_teacher(
    *,
    input_shape: tuple = TEACHER_INPUT,
    n_classes: int = N_CLASSES,
    alpha: float = 1.0,
    dropout: float = 0.2,
    pretrained: str | Path | None = None,
    bn_momentum: float = BN_MOMENTUM,
    mel_pool: int = 1,
    pooling: str = "mean",
    input_norm: str | bool = "none",
    name: str = "mobilenetv2_teacher",
):
    """MobileNetV2 (keras.applications, weights=None) on 1-channel log-mels, its BatchNorms
    trained on the fused kernel (:func:`_fused_bn`).

    The backbone is the sub-model named 'backbone'.  Nothing is downloaded.

    Args:
        input_shape: (frames, mels, 1); frames may be None (any length: 1 s clips or 10 s
            recordings, the model ends in global pooling).
        n_classes: output classes (10 scenes).
        alpha: MobileNetV2 width multiplier.
        dropout: dropout rate before the classifier.
        pretrained: a weights file supplied by the user (e.g. AudioSet-trained, converted to
            Keras), loaded into the backbone -- a full backbone file (``.weights.h5``/``.keras``
            of a MobileNetV2 with the same alpha and 1 input channel) or a whole-teacher file.
        bn_momentum: BatchNorm moving-average momentum (Keras convention; 0.9 = PyTorch's 0.1).
        mel_pool: average-pool the mel axis by this factor at the input (1: all 256 mels).
        pooling: how the clip or recording is pooled before the head (:func:`clip_pooling`).
        input_norm: residual frequency-wise normalisation of the input (:func:`teacher_input`).
        name: model name.
    """
    inp, x = teacher_input(input_shape, input_norm)
    # The backbone sees 256 / max(2, mel_pool) mel bands: its own halving (below) and a coarser
    # mel_pool are one pooling, not two.
    freq_pool = max(2, mel_pool)
    backbone_shape = (
        None if input_shape[0] is None else max(MIN_FRAMES, input_shape[0]),
        input_shape[1] // freq_pool,
        x.shape[-1],  # 2 channels with input_norm 'both'
    )
    backbone = keras.applications.MobileNetV2(
        input_shape=backbone_shape, alpha=alpha, include_top=False, weights=None, name="backbone"
    )
    backbone = keras.models.clone_model(backbone, clone_function=_fused_bn(bn_momentum))
    # Five stride-2 stages with keras.applications' asymmetric padding collapse 28 frames
    # to zero rows in graph mode: inputs shorter than MIN_FRAMES (1 s clips) are mirrored out to
    # it, longer ones (10 s recordings, what the teacher trains on) pass at their own cost.
    x = MinFrames(MIN_FRAMES, name="min_frames")(x)
    x = keras.layers.AveragePooling2D(pool_size=(1, freq_pool), name="freq_pool")(x)
    x = clip_pooling(backbone(x), pooling)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    model = keras.Model(inp, classifier_head(x, n_classes), name=name)
    if pretrained is not None:
        load_pretrained(model, pretrained)
    return model


def _fused_bn(bn_momentum: float):
    """clone_model's clone function: each of keras.applications' BatchNormalization layers as a
    :class:`FusedBatchNormalization` of the same configuration (the fused training step: its
    BatchNorms were half of MobileNetV2's step), at ``bn_momentum``; any other layer as it is
    configured.  keras.applications uses momentum 0.999 (ImageNet-length runs): in short runs the
    moving statistics stay near their initial values and evaluation sits at chance."""

    def clone(layer):
        if type(layer) is keras.layers.BatchNormalization:
            return FusedBatchNormalization.from_config(
                {**layer.get_config(), "momentum": bn_momentum}
            )
        return layer.__class__.from_config(layer.get_config())

    return clone


def load_pretrained(model, path: str | Path) -> None:
    """Load user-supplied weights into a teacher: whole model first, else its 'backbone'.

    Raises ValueError naming the file when neither fits (wrong architecture/alpha/channels).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: pretrained weights file not found (nothing is downloaded; "
            "pass a local .weights.h5 or .keras file)"
        )
    targets = [model] + (
        [model.get_layer("backbone")] if "backbone" in [l.name for l in model.layers] else []
    )
    errors = []
    for target in targets:
        try:
            # Keras loads a partly matching file with only a warning, leaving the unmatched
            # layers at their random initial values: that is a failure here, not a load.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if path.suffix == ".keras":
                    src = load_model_file(path, "teacher weights")
                    target.set_weights(src.get_weights())
                else:
                    target.load_weights(path)
            partial = [
                str(w.message)
                for w in caught
                if "freshly-initialized" in str(w.message) or "Skipping" in str(w.message)
            ]
            if partial:
                raise ValueError(f"only part of the file matched ({partial[0][:120]})")
            return
        except Exception as e:  # noqa: BLE001 - report all attempts together
            errors.append(f"{target.name}: {str(e).splitlines()[0][:200]}")
    raise ValueError(
        f"{path}: weights fit neither the whole model nor its backbone "
        f"({'; '.join(errors)}). Use a file saved from the same architecture "
        "(MobileNetV2, same alpha, 1 input channel)."
    )


def build_cnn_teacher(
    *,
    input_shape: tuple = TEACHER_INPUT,
    n_classes: int = N_CLASSES,
    width: int = 64,
    stages: int = 4,
    dropout: float = 0.3,
    bn_momentum: float = BN_MOMENTUM,
    mel_pool: int = 1,
    pooling: str = "mean",
    input_norm: str | bool = "none",
    name: str = "cnn_teacher",
):
    """VGG-style CNN: ``stages`` x [3x3 conv-BN-ReLU x2, 2x2 max pool, dropout], channels width*2^i.

    Pools halve time only while it exceeds 4 frames, so 1 s inputs are not over-pooled.

    Args:
        input_shape: (frames, mels, 1); frames may be None (any length: 1 s clips or 10 s
            recordings, the model ends in global pooling).
        n_classes: output classes (10 scenes).
        width: channels of the first stage.
        stages: number of conv stages.
        dropout: dropout rate after each stage.
        bn_momentum: BatchNorm moving-average momentum (Keras convention; 0.9 = PyTorch's 0.1).
        mel_pool: average-pool the mel axis by this factor at the input (1: all 256 mels).
        pooling: how the clip or recording is pooled before the head (:func:`clip_pooling`).
        input_norm: residual frequency-wise normalisation of the input (:func:`teacher_input`).
        name: model name.
    """
    inp, x = teacher_input(input_shape, input_norm)
    x = mel_pooling(x, mel_pool)
    for s in range(stages):
        ch = width * 2**s
        x = conv_bn_relu(x, ch, 3, f"stage{s + 1}_1", bn_momentum=bn_momentum)
        x = conv_bn_relu(x, ch, 3, f"stage{s + 1}_2", bn_momentum=bn_momentum)
        x = keras.layers.MaxPooling2D(
            (2 if s < 2 else 1, 2), padding="same", name=f"stage{s + 1}_pool"
        )(x)
        x = keras.layers.Dropout(
            dropout / 2 if s < stages - 1 else dropout, name=f"stage{s + 1}_dropout"
        )(x)
    x = clip_pooling(x, pooling)
    return keras.Model(inp, classifier_head(x, n_classes), name=name)


def sub_spectral_norm(x, groups: int, name: str, bn_momentum: float = BN_MOMENTUM):
    """SubSpectralNorm (Chang et al.): BatchNorm with separate statistics per frequency sub-band.

    (B, T, F, C) -> same.  Built from Reshape/Permute and a (fused) BatchNormalization, registered
    layers all, so the model saves and loads in safe mode.  F must be divisible by ``groups``.
    """
    f, c = x.shape[2], x.shape[3]
    if f % groups:
        raise ValueError(f"{name}: {f} frequency bins not divisible into {groups} sub-bands")
    y = keras.layers.Reshape((-1, groups, f // groups, c), name=f"{name}_split")(x)
    y = keras.layers.Permute((1, 3, 2, 4), name=f"{name}_bands_last")(y)
    y = keras.layers.Reshape((-1, f // groups, groups * c), name=f"{name}_merge")(y)
    y = FusedBatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(y)
    y = keras.layers.Reshape((-1, f // groups, groups, c), name=f"{name}_unmerge")(y)
    y = keras.layers.Permute((1, 3, 2, 4), name=f"{name}_bands_back")(y)
    return keras.layers.Reshape((-1, f, c), name=f"{name}_join")(y)


def bc_block(
    x,
    channels: int,
    name: str,
    freq_stride: int = 1,
    dilation: int = 1,
    dropout: float = 0.1,
    ssn_groups: int = 4,
    bn_momentum: float = BN_MOMENTUM,
):
    """Broadcasted residual block (Kim et al. 2021), layout (B, T, F, C).

    f2: frequency-depthwise (1x3 over F) conv -> SubSpectralNorm;  f1: mean over F ->
    temporal depthwise (3x1, dilated) conv -> BN -> SiLU -> 1x1 conv -> dropout, broadcast
    back over F.  A transition block (channel change or stride) starts with a 1x1
    conv-BN-ReLU and has no identity shortcut.
    """
    transition = x.shape[-1] != channels or freq_stride != 1
    if transition:
        x = conv_bn_relu(x, channels, 1, f"{name}_expand", bn_momentum=bn_momentum)
    identity = x
    y = keras.layers.DepthwiseConv2D(
        (1, 3), padding="same", use_bias=False, name=f"{name}_freq_dw"
    )(x)
    if freq_stride != 1:
        # TensorFlow's CPU depthwise kernel refuses unequal strides; a stride-1 conv sampled
        # every ``freq_stride`` bins computes the same outputs.
        y = keras.layers.MaxPooling2D((1, 1), strides=(1, freq_stride), name=f"{name}_freq_stride")(
            y
        )
    y = sub_spectral_norm(y, ssn_groups, f"{name}_ssn", bn_momentum)
    aux = y
    # Mean over frequency as an average pool over the whole F axis: no Lambda, safe to load.
    t = keras.layers.AveragePooling2D((1, y.shape[2]), name=f"{name}_freq_mean")(y)
    t = keras.layers.DepthwiseConv2D(
        (3, 1), dilation_rate=(dilation, 1), padding="same", use_bias=False, name=f"{name}_time_dw"
    )(t)
    t = FusedBatchNormalization(momentum=bn_momentum, name=f"{name}_time_bn")(t)
    t = keras.layers.Activation("silu", name=f"{name}_silu")(t)
    t = keras.layers.Conv2D(channels, 1, use_bias=False, name=f"{name}_pw")(t)
    t = keras.layers.SpatialDropout2D(dropout, name=f"{name}_dropout")(t)
    parts = [aux, t] if transition else [identity, aux, t]
    y = keras.layers.Add(name=f"{name}_broadcast_add")(parts)  # t is (B, T, 1, C): broadcast over F
    return keras.layers.Activation("relu", name=f"{name}_out")(y)


def build_bcresnet_teacher(
    *,
    input_shape: tuple = TEACHER_INPUT,
    n_classes: int = N_CLASSES,
    width: int = 40,
    blocks: tuple = (2, 2, 4, 4),
    dropout: float = 0.1,
    bn_momentum: float = BN_MOMENTUM,
    mel_pool: int = 1,
    pooling: str = "mean",
    input_norm: str | bool = "none",
    name: str = "bcresnet_teacher",
):
    """BC-ResNet (Kim et al.): stem 5x5 conv (freq stride 2) -> 4 stages of BC blocks with widths
    ``width * [1, 1.5, 2, 2.5]`` (c = 8 tau), frequency stride 2 entering stages 2-3, time dilation
    growing in stages 3-4 -> frequency-depthwise 5x5 conv -> 1x1 conv -> GAP -> logits.

    Args:
        input_shape: (frames, mels, 1); frames may be None (any length: 1 s clips or 10 s
            recordings, the model ends in global pooling).
        n_classes: output classes (10 scenes).
        width: base channel count c = 8 tau (40: BC-ResNet-5).
        blocks: BC blocks per stage.
        dropout: dropout rate inside the blocks.
        bn_momentum: BatchNorm moving-average momentum (Keras convention; 0.9 = PyTorch's 0.1).
        mel_pool: average-pool the mel axis by this factor at the input (1: all 256 mels).
        pooling: how the clip or recording is pooled before the head (:func:`clip_pooling`).
        input_norm: residual frequency-wise normalisation of the input (:func:`teacher_input`).
        name: model name.
    """
    inp, x = teacher_input(input_shape, input_norm)
    x = conv_bn_relu(
        mel_pooling(x, mel_pool), 2 * width, 5, "stem", strides=(1, 2), bn_momentum=bn_momentum
    )
    for s, (n, mult) in enumerate(zip(blocks, (1.0, 1.5, 2.0, 2.5))):
        ch = int(round(width * mult))
        for b in range(n):
            x = bc_block(
                x,
                ch,
                f"stage{s + 1}_block{b + 1}",
                freq_stride=2 if (b == 0 and s in (1, 2)) else 1,
                dilation=2 ** max(0, s - 1) if s >= 2 else 1,
                dropout=dropout,
                bn_momentum=bn_momentum,
            )
    x = keras.layers.DepthwiseConv2D((1, 5), padding="same", use_bias=False, name="head_dw")(x)
    x = conv_bn_relu(x, 2 * width, 1, "head", bn_momentum=bn_momentum)
    x = clip_pooling(x, pooling)
    return keras.Model(inp, classifier_head(x, n_classes), name=name)


# The one registry of teacher builders (name as in ``TeacherConfig.names``).
TEACHERS = {
    "mobilenetv2": build_mobilenetv2_teacher,
    "cnn": build_cnn_teacher,
    "bcresnet": build_bcresnet_teacher,
}
