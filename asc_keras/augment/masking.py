"""Time-frequency masking (SpecAugment), vectorised over the batch.

Per example, one band of ``w ~ U[0, param)`` consecutive mel bins (or frames) starting at
``s ~ U[0, size - w)`` is masked -- the distribution of tensorflow-io's pure-TF
``tfio.audio.freq_mask`` / ``time_mask``, which mask one spectrogram at a time.  Here every
example of a batch draws its own band at once and one ``tf.range`` comparison builds all the
masks, instead of a ``tf.map_fn`` over examples (``impl='tfio'`` keeps that path, the reference
the vectorised one is tested against).

Log-mels are not zero-mean, so with ``fill='mean'`` (default) masked cells hold the example's
mean level instead of an arbitrary loud value (tfio's zeros: ``fill='zero'``).
"""

from __future__ import annotations

from asc_keras._runtime import import_tfio, tf


def _fill_value(x2, fill: str):
    if fill == "mean":
        return tf.reduce_mean(x2, axis=[1, 2], keepdims=True)
    return tf.zeros_like(x2[:, :1, :1])


def _band_mask(batch, size, param: int, axis: int):
    """(B, T, F) boolean masks, True inside one random band per example along ``axis`` (1: time, 2: mels)."""
    width = tf.random.uniform([batch], 0, param, dtype=tf.int32)
    # start ~ U{0, ..., size - width - 1}: floor of a uniform in [0, size - width).
    room = tf.cast(tf.maximum(size - width, 1), tf.float32)
    start = tf.cast(tf.floor(tf.random.uniform([batch]) * room), tf.int32)
    idx = tf.range(size)[None, :]
    inside = (idx >= start[:, None]) & (idx < (start + width)[:, None])  # (B, size)
    return inside[:, :, None] if axis == 1 else inside[:, None, :]


def _mask(x, param: int, fill: str, axis: int, impl: str):
    squeeze = len(x.shape) == 4
    x2 = x[..., 0] if squeeze else x
    value = _fill_value(x2, fill)
    if impl == "tfio":
        op = import_tfio().audio.time_mask if axis == 1 else import_tfio().audio.freq_mask
        out = (
            tf.map_fn(lambda e: op(e, param=param), x2 - value, fn_output_signature=x2.dtype)
            + value
        )
    else:
        shape = tf.shape(x2)
        inside = _band_mask(shape[0], shape[axis], param, axis)
        out = tf.where(inside, value, x2)
    return out[..., None] if squeeze else out


def freq_mask(x, param: int = 48, fill: str = "mean", impl: str = "vectorised"):
    """One mask of f ~ U[0, param) consecutive mel bins per example.  (B, T, F[, 1]) -> same."""
    return _mask(x, param, fill, 2, impl)


def time_mask(x, param: int = 4, fill: str = "mean", impl: str = "vectorised"):
    """One mask of t ~ U[0, param) consecutive frames per example.  (B, T, F[, 1]) -> same."""
    return _mask(x, param, fill, 1, impl)
