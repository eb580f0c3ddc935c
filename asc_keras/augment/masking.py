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


def _fill_value(x, fill: str):
    """(B, 1, 1[, 1]) per-example fill: its mean level, or zero."""
    if fill == "mean":
        return tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    return tf.zeros_like(x[:, :1, :1])  # no pass over the batch for a constant


def _band(batch, size, param: int, axis: int, rank: int):
    """Boolean masks broadcastable to (B, T, F[, 1]): one random band per example along ``axis``
    (1: time, 2: mels), width ~ U[0, param), start ~ U{0, ..., size - width - 1}."""
    width = tf.random.uniform([batch], 0, param, dtype=tf.int32)
    room = tf.cast(tf.maximum(size - width, 1), tf.float32)  # start: floor of U[0, size - width)
    start = tf.cast(tf.floor(tf.random.uniform([batch]) * room), tf.int32)
    idx = tf.range(size)[None, :]
    inside = (idx >= start[:, None]) & (idx < (start + width)[:, None])  # (B, size)
    shape = [-1, 1, 1] + [1] * (rank - 3)
    shape[axis] = size
    return tf.reshape(inside, shape)


def _tfio_mask(x, param: int, fill: str, axis: int):
    """The reference: tensorflow-io's op on one (frames, mels) example at a time."""
    squeeze = len(x.shape) == 4
    x2 = x[..., 0] if squeeze else x
    value = _fill_value(x2, fill)
    op = import_tfio().audio.time_mask if axis == 1 else import_tfio().audio.freq_mask
    out = tf.map_fn(lambda e: op(e, param=param), x2 - value, fn_output_signature=x2.dtype) + value
    return out[..., None] if squeeze else out


def spec_masks(x, freq_param: int = 0, time_param: int = 0, fill: str = "mean"):
    """One frequency band (when ``freq_param``) and one time band (when ``time_param``) per
    example, in one pass over the batch: (B, T, F[, 1]) -> same.

    Both bands are filled with the example's mean before masking (applying :func:`freq_mask`
    then :func:`time_mask` fills the time band with the mean after the frequency masking: a
    hair's difference, for half the memory traffic, which decides this pipeline's speed).
    """
    shape, rank = tf.shape(x), len(x.shape)
    inside = None
    for param, axis in ((freq_param, 2), (time_param, 1)):
        if param:
            band = _band(shape[0], shape[axis], param, axis, rank)
            inside = band if inside is None else band | inside
    if inside is None:
        return x
    return tf.where(inside, _fill_value(x, fill), x)


def freq_mask(x, param: int = 48, fill: str = "mean", impl: str = "vectorised"):
    """One mask of f ~ U[0, param) consecutive mel bins per example.  (B, T, F[, 1]) -> same."""
    return (
        _tfio_mask(x, param, fill, 2)
        if impl == "tfio"
        else spec_masks(x, freq_param=param, fill=fill)
    )


def time_mask(x, param: int = 4, fill: str = "mean", impl: str = "vectorised"):
    """One mask of t ~ U[0, param) consecutive frames per example.  (B, T, F[, 1]) -> same."""
    return (
        _tfio_mask(x, param, fill, 1)
        if impl == "tfio"
        else spec_masks(x, time_param=param, fill=fill)
    )
