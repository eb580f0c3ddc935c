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
from asc_keras.augment.keys import split


def _fill_value(x, fill: str, axis: int = 2):
    """The fill of a band along ``axis``: the example's mean level (B, 1, 1[, 1]) for 'mean', zero
    for 'zero'; for 'band', a time band (axis 1) takes each mel band's own mean over time
    (B, 1, F[, 1]) and a frequency band the example's mean.

    Why 'band' for time masks: a log-mel band's level differs from the example's mean, so frames
    filled with one level across all bands are an artificial broadband burst -- exactly what a
    model that normalises each band over time, or looks for short events, picks up; filled with
    each band's own average, the masked frames carry nothing, which is what masking means."""
    if fill == "band" and axis == 1:
        return tf.reduce_mean(x, axis=1, keepdims=True)
    if fill in ("mean", "band"):
        return tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    return tf.zeros_like(x[:, :1, :1])  # no pass over the batch for a constant


def band_draws(batch, size, param: int, key=None):
    """(start, width) (B,) int32: one band per example, width ~ U{0, ..., param - 1},
    start ~ U{0, ..., size - width - 1} (tfio's distribution)."""
    k_width, k_start = tf.unstack(split(key, 2))
    width = tf.random.stateless_uniform([batch], k_width, 0, param, dtype=tf.int32)
    room = tf.cast(tf.maximum(size - width, 1), tf.float32)  # start: floor of U[0, size - width)
    start = tf.cast(tf.floor(tf.random.stateless_uniform([batch], k_start) * room), tf.int32)
    return start, width


def band_mask(start, width, size, axis: int, rank: int):
    """Boolean masks broadcastable to (B, T, F[, 1]), True inside each example's band along
    ``axis`` (1: time, 2: mels): one ``tf.range`` comparison for the whole batch."""
    idx = tf.range(size)[None, :]
    inside = (idx >= start[:, None]) & (idx < (start + width)[:, None])  # (B, size)
    shape = [-1, 1, 1] + [1] * (rank - 3)
    shape[axis] = size
    return tf.reshape(inside, shape)


def apply_bands(x, bands, fill: str = "mean"):
    """``x`` with every (start, width, axis) band of ``bands`` filled (:func:`_fill_value`): one
    pass for 'mean' and 'zero'; for 'band', the frequency bands, then the time bands, each filled
    from ``x`` as it came."""
    shape, rank = tf.shape(x), len(x.shape)
    masks = [
        (band_mask(start, width, shape[axis], axis, rank), axis) for start, width, axis in bands
    ]
    if not masks:
        return x
    if fill == "band":
        out = x
        for inside, axis in sorted(masks, key=lambda m: -m[1]):  # frequency (2) before time (1)
            out = tf.where(inside, _fill_value(x, fill, axis), out)
        return out
    inside = masks[0][0]
    for band, _ in masks[1:]:
        inside = inside | band
    return tf.where(inside, _fill_value(x, fill), x)


def _tfio_mask(x, param: int, fill: str, axis: int):
    """The reference: tensorflow-io's op on one (frames, mels) example at a time."""
    squeeze = len(x.shape) == 4
    x2 = x[..., 0] if squeeze else x
    value = _fill_value(x2, fill)
    op = import_tfio().audio.time_mask if axis == 1 else import_tfio().audio.freq_mask
    out = tf.map_fn(lambda e: op(e, param=param), x2 - value, fn_output_signature=x2.dtype) + value
    return out[..., None] if squeeze else out


def mask_draws(x_shape, freq_param: int = 0, time_param: int = 0, key=None):
    """The bands of :func:`spec_masks` for a batch of shape ``x_shape``: a list of
    (start, width, axis), frequency (axis 2) first, each drawn from its own key."""
    k_freq, k_time = tf.unstack(split(key, 2))
    return [
        (*band_draws(x_shape[0], x_shape[axis], param, k), axis)
        for param, axis, k in ((freq_param, 2, k_freq), (time_param, 1, k_time))
        if param
    ]


def spec_masks(x, freq_param: int = 0, time_param: int = 0, fill: str = "mean", key=None):
    """One frequency band (when ``freq_param``) and one time band (when ``time_param``) per
    example, in one pass over the batch: (B, T, F[, 1]) -> same.

    Both bands are filled with the example's mean before masking (applying :func:`freq_mask`
    then :func:`time_mask` fills the time band with the mean after the frequency masking: a
    hair's difference, for half the memory traffic, which decides this pipeline's speed).
    ``key``: stateless random key (2,) (:mod:`asc_keras.augment.keys`); None draws one.
    """
    return apply_bands(x, mask_draws(tf.shape(x), freq_param, time_param, key), fill)


def freq_mask(x, param: int = 48, fill: str = "mean", impl: str = "vectorised", key=None):
    """One mask of f ~ U[0, param) consecutive mel bins per example.  (B, T, F[, 1]) -> same."""
    return (
        _tfio_mask(x, param, fill, 2)
        if impl == "tfio"
        else spec_masks(x, freq_param=param, fill=fill, key=key)
    )


def time_mask(x, param: int = 4, fill: str = "mean", impl: str = "vectorised", key=None):
    """One mask of t ~ U[0, param) consecutive frames per example.  (B, T, F[, 1]) -> same."""
    return (
        _tfio_mask(x, param, fill, 1)
        if impl == "tfio"
        else spec_masks(x, time_param=param, fill=fill, key=key)
    )
