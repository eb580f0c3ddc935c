"""The parts every teacher shares: its input (with the optional frequency normalisation), the
mel-band pooling that sets its cost, the mirroring of short inputs, and the clip-level pooling
before the classifier."""

from __future__ import annotations

from asc_keras._runtime import keras, tf
from asc_keras.config import TEACHER_INPUT_NORMS as INPUT_NORMS
from asc_keras.config import TEACHER_POOLINGS as POOLINGS
from asc_keras.models.common import BandDeviation, FrequencyNorm
from asc_keras.models.panns import panns_pool

TEACHER_INPUT = (None, 256, 1)
MIN_FRAMES = 64  # the fewest frames MobileNetV2's five halvings take (1 s clips are mirrored to it)


@keras.saving.register_keras_serializable(package="asc_keras")
class MinFrames(keras.layers.Layer):
    """(B, T, F, C) -> (B, max(T, frames), F, C): a shorter input is mirrored at both ends (symmetric
    padding: the clip's own frames, no silence); a longer one passes unchanged."""

    def __init__(self, frames: int, **kwargs):
        super().__init__(**kwargs)
        self.frames = int(frames)

    def call(self, x):
        need = tf.maximum(self.frames - tf.shape(x)[1], 0)
        before = need // 2
        return tf.pad(x, [[0, 0], [before, need - before], [0, 0], [0, 0]], mode="SYMMETRIC")

    def compute_output_shape(self, input_shape):
        t = input_shape[1]
        return (input_shape[0], None if t is None else max(t, self.frames), *input_shape[2:])

    def get_config(self):
        return {**super().get_config(), "frames": self.frames}


@keras.saving.register_keras_serializable(package="asc_keras")
class BandTimePool(keras.layers.Layer):
    """(B, T, F, C) -> (B, F, C): each frequency band's max plus its mean over time.

    Why a layer of its own: Keras' ``TimeDistributed`` over the bands slices the activation once
    per band and pooling, and the gradient of each slice is a zero tensor of the whole
    activation's size with the slice written in -- 16 of them for BC-ResNet's 8 bands, about a
    tenth of its op time in a profile of 10 s recordings (about 5 % of the step, timed).  Here the
    bands are unstacked once (their gradient is one stack) and each is pooled exactly as
    ``GlobalMaxPooling1D`` / ``GlobalAveragePooling1D`` pooled it, on the same (B, T, C) tensor,
    so outputs and gradients are the same to the bit (``tests/test_models.py``).  The band count F
    must be known when the layer is traced (every teacher's is fixed by its mel count).
    """

    def call(self, x):
        bands = keras.ops.unstack(keras.ops.transpose(x, (2, 0, 1, 3)), axis=0)  # F x (B, T, C)
        top = keras.ops.stack([keras.ops.max(b, axis=1) for b in bands], axis=1)
        mean = keras.ops.stack([keras.ops.mean(b, axis=1) for b in bands], axis=1)
        return top + mean

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2], input_shape[3])


def clip_pooling(x, pooling: str):
    """(B, T, F, C) -> (B, features), pooled over time (and frequency):

    * 'mean': global average, (B, C);
    * 'max+mean': PANNs' pooling: mean over mels, then max plus mean over time, (B, C), so a
      short event keeps its peak instead of being averaged with the whole recording;
    * 'bands': max plus mean over time in every frequency band, bands kept side by side,
      (B, F * C): a convolution cannot tell where in frequency it is, so a head that averages
      frequency cannot tell a 300 Hz event from a 3 kHz one; this one can.
    """
    if pooling == "mean":
        return keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if pooling == "max+mean":
        return panns_pool(x)
    if pooling == "bands":
        y = BandTimePool(name="band_time_max_plus_mean")(x)  # (B, F, C)
        return keras.layers.Flatten(name="bands_flat")(y)
    raise ValueError(f"unknown teacher pooling {pooling!r}; use one of {POOLINGS}")


def teacher_input(input_shape: tuple, input_norm: str | bool):
    """(input, x): the log-mel input as the teacher sees it: 'none' (or False) as it is;
    'residual' (or True) its residual frequency-wise normalisation
    (:class:`~asc_keras.models.common.FrequencyNorm`); 'both' the input beside each band's
    deviation from its mean over time, two channels (:class:`~asc_keras.models.common.BandDeviation`)."""
    inp = keras.Input(shape=input_shape, name="logmel")
    mode = {False: "none", True: "residual", None: "none"}.get(input_norm, input_norm)
    if mode == "residual":
        return inp, FrequencyNorm(name="input_norm")(inp)
    if mode == "both":
        return inp, BandDeviation(name="input_norm")(inp)
    if mode != "none":
        raise ValueError(f"unknown teacher input_norm {input_norm!r}; use one of {INPUT_NORMS}")
    return inp, inp


def mel_pooling(x, factor: int):
    """Average ``factor`` adjacent mel bands ((B, T, F, C) -> (B, T, F / factor, C)); 1: unchanged.

    A cost knob for the teachers (``TeacherConfig.mel_pool``): 256 -> 64 bands is PANNs' mel
    resolution and a quarter of the convolution cost.
    """
    if factor == 1:
        return x
    return keras.layers.AveragePooling2D((1, factor), name="mel_pool")(x)
