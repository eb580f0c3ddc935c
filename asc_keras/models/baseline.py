"""DCASE 2022/2023 Task 1 baseline, exactly (marmoi/dcase2022_task1_baseline, docs/sources.md).

The yardstick row of every run (report Table 3 "Baseline") and the reference point of the
inference benchmark.  Input 40 mels x 51 frames (1 s of its own features).
"""

from __future__ import annotations

import numpy as np

from asc_keras._runtime import keras
from asc_keras.config import N_CLASSES, FeatureConfig
from asc_keras.models.common import BN_MOMENTUM, FusedBatchNormalization, classifier_head

# The baseline's own log-mel settings (task1_features.yaml of the official baseline, computed by
# dcase_util with librosa): 44.1 kHz audio; a 40 ms (1764-sample) asymmetric Hamming window in a
# 2048-point FFT; 20 ms (882-sample) hop; centred frames (librosa's center=True, reflect padding
# as librosa did before 0.10), so 1 s gives 51 frames; magnitude spectrum; 40 Slaney mel bands
# from 0 Hz to Nyquist with librosa's default (Slaney) normalisation; natural log of mel + eps
# with eps = numpy.spacing(1).  (The official pipeline also standardises each band with training
# statistics; here the first BatchNorm plays that part.)  Then each clip's log-mels are divided by
# their largest |value| and stored as int16 (create_h5.py; :func:`~asc_keras.features.logmel.peak_int16`).
BASELINE_FEATURES = FeatureConfig(
    sample_rate=44100,
    n_fft=2048,
    win_length=1764,
    hop_length=882,
    window="hamming",
    center=True,
    power=1.0,
    n_mels=40,
    mel_scale="slaney",
    mel_norm="slaney",
    log_offset=float(np.spacing(1)),
    peak_int16=True,
)


def build_dcase_baseline_for_cache(frames: int, mels: int, **kwargs):
    """The baseline on cached (frames, mels) features: a Permute to its (mels, frames) layout, then
    :func:`build_dcase_baseline` (named 'dcase_baseline'; the permute costs no MACs)."""
    inp = keras.Input(shape=(frames, mels, 1), name="logmel_frames_first")
    x = keras.layers.Permute((2, 1, 3), name="to_mels_first")(inp)
    core = build_dcase_baseline(input_shape=(mels, frames, 1), **kwargs)
    return keras.Model(inp, core(x), name="dcase_baseline_on_cache")


def _conv_bn_relu(x, filters: int, name: str, bn_momentum: float):
    """The official block: 7x7 'same' Conv2D *with* bias (Keras' default), BatchNorm, ReLU."""
    x = keras.layers.Conv2D(filters, 7, padding="same", name=f"{name}_conv")(x)
    x = FusedBatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_relu")(x)


def build_dcase_baseline(
    *,
    input_shape: tuple = (40, 51, 1),
    n_classes: int = N_CLASSES,
    dropout: float = 0.3,
    bn_momentum: float = BN_MOMENTUM,
    name: str = "dcase_baseline",
):
    """The official DCASE 2022 Task 1 baseline (``task1.yaml`` of marmoi/dcase2022_task1_baseline).

    Conv16 7x7-BN-ReLU x2, MaxPool 5x5, Dropout, Conv32 7x7-BN-ReLU, MaxPool 4x10, Dropout,
    Flatten, Dense 100 ReLU, Dropout, Dense 10 (softmax): convolutions keep Keras' default bias
    before their BatchNorm and pooling is 'valid', as in the official model.  On 40 x 51 inputs:
    46,246 Keras parameters (BatchNorm counted 4 per channel, as ``model.summary()``), 45,990
    after BatchNorm folding, and, int8 by the organisers' NeSsi rules, 46,512 parameter bytes and
    29,234,920 MACs.

    Args:
        input_shape: (mels, frames, 1) of the baseline's own features (40 x 51 for 1 s).
        n_classes: output classes (10 scenes).
        dropout: dropout rate after each pooling and the hidden dense layer.
        bn_momentum: BatchNorm moving-average momentum (Keras convention; 0.9 = PyTorch's 0.1).
        name: model name.
    """
    inp = keras.Input(shape=input_shape, name="logmel")
    x = _conv_bn_relu(inp, 16, "conv1", bn_momentum)
    x = _conv_bn_relu(x, 16, "conv2", bn_momentum)
    x = keras.layers.MaxPooling2D(5, name="pool1")(x)  # 'valid': 40 x 51 -> 8 x 10
    x = keras.layers.Dropout(dropout, name="dropout1")(x)
    x = _conv_bn_relu(x, 32, "conv3", bn_momentum)
    x = keras.layers.MaxPooling2D((4, 10), name="pool2")(x)  # 8 x 10 -> 2 x 1
    x = keras.layers.Dropout(dropout, name="dropout2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(100, activation="relu", name="dense1")(x)
    x = keras.layers.Dropout(dropout, name="dropout3")(x)
    return keras.Model(inp, classifier_head(x, n_classes), name=name)
