"""Time stretching on the log-mel spectrogram (systems 3-4).

Why on the spectrogram, not the audio: features are cached once, and stretching
the cached log-mels along time (linear interpolation between frames, one random
rate per example) costs nothing per step, while a phase-vocoder stretch of the
audio would need the audio and a new feature extraction every epoch.  For a
stationary scene, reading frames at rate r is what stretching the audio by r
does to its spectrogram, up to the window's time resolution (32 ms hop).
"""

from __future__ import annotations

from asc_keras._runtime import tf
from asc_keras.augment.keys import as_key


def stretch_rates(n, min_rate: float, max_rate: float, key=None):
    """(n,) rates ~ U(min_rate, max_rate), one per example."""
    return tf.random.stateless_uniform([n], as_key(key), min_rate, max_rate)


def stretch(x, rates):
    """Output frame t reads input position (t - c) * rate + c around the centre c, linearly
    interpolated; positions outside the clip repeat the edge frame.  (B, T, F[, C]) -> same."""
    frames = tf.shape(x)[1]
    t = tf.cast(tf.range(frames), tf.float32)[None, :]
    c = (tf.cast(frames, tf.float32) - 1.0) / 2.0
    pos = tf.clip_by_value((t - c) * rates[:, None] + c, 0.0, tf.cast(frames, tf.float32) - 1.0)
    lo = tf.cast(tf.floor(pos), tf.int32)
    hi = tf.minimum(lo + 1, frames - 1)
    w = tf.reshape(
        pos - tf.cast(lo, tf.float32), [tf.shape(x)[0], frames] + [1] * (len(x.shape) - 2)
    )
    a = tf.gather(x, lo, batch_dims=1)
    b = tf.gather(x, hi, batch_dims=1)
    return a + w * (b - a)


def time_stretch(x, min_rate: float = 0.9, max_rate: float = 1.1, key=None):
    """Stretch each example in time by a rate ~ U(min_rate, max_rate): rate > 1 speeds the scene
    up (more content in the window), rate < 1 slows it down.  (B, T, F[, C]) -> same shape."""
    return stretch(x, stretch_rates(tf.shape(x)[0], min_rate, max_rate, key))
