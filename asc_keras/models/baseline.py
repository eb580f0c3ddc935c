"""DCASE 2022/2023 Task 1 baseline architecture (marmoi/dcase2022_task1_baseline, docs/sources.md).

Used as the reference point of the inference benchmark.  Input 40 mels x 51 frames.
"""

from __future__ import annotations

from asc_keras._runtime import keras
from asc_keras.config import N_CLASSES, FeatureConfig
from asc_keras.models.common import BN_MOMENTUM, classifier_head, conv_bn_relu

# The baseline's own log-mel settings (task1.yaml of the official baseline): 44.1 kHz audio, 40 ms
# window, 20 ms hop, 40 mel bands (Slaney scale, librosa's default), natural log.  Differences,
# on purpose: the window is a 40 ms (1764-sample) periodic Hann with no zero-padding to 2048 and
# no centring (the project's one STFT), so a 1 s clip gives 49 frames instead of 51.
BASELINE_FEATURES = FeatureConfig(
    sample_rate=44100, n_fft=1764, hop_length=882, n_mels=40, mel_scale="slaney"
)


def build_dcase_baseline_for_cache(frames: int, mels: int, **kwargs):
    """The baseline on cached (frames, mels) features: a Permute to its (mels, frames) layout, then
    :func:`build_dcase_baseline` (named 'dcase_baseline'; the permute costs no MACs)."""
    inp = keras.Input(shape=(frames, mels, 1), name="logmel_frames_first")
    x = keras.layers.Permute((2, 1, 3), name="to_mels_first")(inp)
    core = build_dcase_baseline(input_shape=(mels, frames, 1), **kwargs)
    return keras.Model(inp, core(x), name="dcase_baseline_on_cache")


def build_dcase_baseline(
    *,
    input_shape: tuple = (40, 51, 1),
    n_classes: int = N_CLASSES,
    dropout: float = 0.3,
    bn_momentum: float = BN_MOMENTUM,
    name: str = "dcase_baseline",
):
    """Conv16 7x7-BN-ReLU x2, MaxPool 5x5, Dropout, Conv32 7x7-BN-ReLU, MaxPool 4x100, Dropout,
    Dense 100, Dropout, Dense 10 (softmax).

    Args:
        input_shape: (mels, frames, 1) of the baseline's own features (40 x 51 for 1 s).
        n_classes: output classes (10 scenes).
        dropout: dropout rate after each pooling and the hidden dense layer.
        bn_momentum: BatchNorm moving-average momentum (Keras convention; 0.9 = PyTorch's 0.1).
        name: model name.
    """
    inp = keras.Input(shape=input_shape, name="logmel")
    x = conv_bn_relu(inp, 16, 7, "conv1", bn_momentum=bn_momentum)
    x = conv_bn_relu(x, 16, 7, "conv2", bn_momentum=bn_momentum)
    x = keras.layers.MaxPooling2D(5, padding="same", name="pool1")(x)
    x = keras.layers.Dropout(dropout, name="dropout1")(x)
    x = conv_bn_relu(x, 32, 7, "conv3", bn_momentum=bn_momentum)
    x = keras.layers.MaxPooling2D((4, 100), padding="same", name="pool2")(x)
    x = keras.layers.Dropout(dropout, name="dropout2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(100, activation="relu", name="dense1")(x)
    x = keras.layers.Dropout(dropout, name="dropout3")(x)
    return keras.Model(inp, classifier_head(x, n_classes), name=name)
