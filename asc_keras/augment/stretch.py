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


def time_stretch(x, min_rate: float = 0.9, max_rate: float = 1.1, seed=None):
    """Stretch each example in time by a rate ~ U(min_rate, max_rate).

    Output frame t reads input position (t - c) * rate + c around the centre c, so
    rate > 1 speeds the scene up (more content in the window) and rate < 1 slows it
    down; positions outside the clip repeat the edge frame.  (B, T, F[, C]) -> same shape.
    """
    n, frames = tf.shape(x)[0], tf.shape(x)[1]
    rates = tf.random.uniform([n, 1], min_rate, max_rate, seed=seed)
    t = tf.cast(tf.range(frames), tf.float32)[None, :]
    c = (tf.cast(frames, tf.float32) - 1.0) / 2.0
    pos = tf.clip_by_value((t - c) * rates + c, 0.0, tf.cast(frames, tf.float32) - 1.0)
    lo = tf.cast(tf.floor(pos), tf.int32)
    hi = tf.minimum(lo + 1, frames - 1)
    w = pos - tf.cast(lo, tf.float32)
    w = tf.reshape(w, tf.concat([tf.shape(w), tf.ones([tf.rank(x) - 2], tf.int32)], 0))
    a = tf.gather(x, lo, batch_dims=1)
    b = tf.gather(x, hi, batch_dims=1)
    return a * (1.0 - w) + b * w
