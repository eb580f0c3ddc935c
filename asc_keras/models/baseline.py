"""DCASE 2022/2023 Task 1 baseline architecture (marmoi/dcase2022_task1_baseline, facts.md).

Used as the reference point of the inference benchmark.  Input 40 mels x 51 frames.
"""
from __future__ import annotations

from asc_keras._runtime import keras
from asc_keras.models.common import N_CLASSES, classifier_head, conv_bn_relu


def build_dcase_baseline(*, input_shape: tuple = (40, 51, 1), n_classes: int = N_CLASSES, dropout: float = 0.3,
                         name: str = "dcase_baseline"):
    """Conv16 7x7-BN-ReLU x2, MaxPool 5x5, Dropout, Conv32 7x7-BN-ReLU, MaxPool 4x100, Dropout,
    Dense 100, Dropout, Dense 10 (softmax)."""
    inp = keras.Input(shape=input_shape, name="logmel")
    x = conv_bn_relu(inp, 16, 7, "conv1")
    x = conv_bn_relu(x, 16, 7, "conv2")
    x = keras.layers.MaxPooling2D(5, padding="same", name="pool1")(x)
    x = keras.layers.Dropout(dropout, name="dropout1")(x)
    x = conv_bn_relu(x, 32, 7, "conv3")
    x = keras.layers.MaxPooling2D((4, 100), padding="same", name="pool2")(x)
    x = keras.layers.Dropout(dropout, name="dropout2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(100, activation="relu", name="dense1")(x)
    x = keras.layers.Dropout(dropout, name="dropout3")(x)
    return keras.Model(inp, classifier_head(x, n_classes), name=name)
