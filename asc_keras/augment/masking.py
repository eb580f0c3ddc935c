"""Time-frequency masking (SpecAugment) with tensorflow-io's pure-TF ``freq_mask``/``time_mask``.

tfio's ops mask one (time, freq) spectrogram with zeros; log-mels are not zero-mean,
so with ``fill='mean'`` (default) each example is centred on its own mean before
masking and shifted back: masked cells hold the example's mean level instead of
an arbitrary loud value.  ``fill='zero'`` keeps tfio's zeros.
"""

from __future__ import annotations

from asc_keras._runtime import import_tfio, tf

_tfio = None


def _ops():
    global _tfio
    if _tfio is None:
        _tfio = import_tfio()
    return _tfio


def _per_example(x, op, param: int, fill: str):
    """Apply a tfio mask op to each (frames, mels) example of a (B, frames, mels, 1) batch."""
    squeeze = len(x.shape) == 4
    x2 = x[..., 0] if squeeze else x
    mean = (
        tf.reduce_mean(x2, axis=[1, 2], keepdims=True)
        if fill == "mean"
        else tf.zeros_like(x2[:, :1, :1])
    )
    out = tf.map_fn(lambda e: op(e, param=param), x2 - mean, fn_output_signature=x2.dtype) + mean
    return out[..., None] if squeeze else out


def freq_mask(x, param: int = 48, fill: str = "mean"):
    """One mask of f ~ U[0, param) consecutive mel bins per example.  (B, T, F[, 1]) -> same."""
    return _per_example(x, _ops().audio.freq_mask, param, fill)


def time_mask(x, param: int = 4, fill: str = "mean"):
    """One mask of t ~ U[0, param) consecutive frames per example.  (B, T, F[, 1]) -> same."""
    return _per_example(x, _ops().audio.time_mask, param, fill)
