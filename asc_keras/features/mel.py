"""Mel scales and triangular mel filter banks (NumPy; shared by both feature implementations).

Scales, f in Hz:
  * 'report' -- report eq. (1): mel(f) = 1000 / log 2 * log(1 + f / 1000)  (= 1000 log2(1 + f/1000),
    whatever the base of the logarithm, since only the ratio of two logs appears)
  * 'htk'    -- 2595 log10(1 + f / 700)
  * 'slaney' -- linear below 1 kHz (f / (200/3)), logarithmic above (Auditory Toolbox; librosa default)
"""

from __future__ import annotations

import numpy as np

MEL_SCALES = ("report", "htk", "slaney")
_SLANEY_F_SP = 200.0 / 3
_SLANEY_MIN_LOG_HZ = 1000.0
_SLANEY_MIN_LOG_MEL = _SLANEY_MIN_LOG_HZ / _SLANEY_F_SP
_SLANEY_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(f, scale: str = "report"):
    """Frequency (Hz) to mel on the given scale; works on scalars and arrays."""
    f = np.asarray(f, dtype=np.float64)
    if scale == "report":
        return 1000.0 / np.log(2.0) * np.log1p(f / 1000.0)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    if scale == "slaney":
        lin = f / _SLANEY_F_SP
        log = (
            _SLANEY_MIN_LOG_MEL
            + np.log(np.maximum(f, _SLANEY_MIN_LOG_HZ) / _SLANEY_MIN_LOG_HZ) / _SLANEY_LOGSTEP
        )
        return np.where(f >= _SLANEY_MIN_LOG_HZ, log, lin)
    raise ValueError(f"unknown mel scale {scale!r}; use one of {MEL_SCALES}")


def mel_to_hz(m, scale: str = "report"):
    """Inverse of :func:`hz_to_mel`."""
    m = np.asarray(m, dtype=np.float64)
    if scale == "report":
        return 1000.0 * np.expm1(m * np.log(2.0) / 1000.0)
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    if scale == "slaney":
        lin = m * _SLANEY_F_SP
        log = _SLANEY_MIN_LOG_HZ * np.exp(_SLANEY_LOGSTEP * (m - _SLANEY_MIN_LOG_MEL))
        return np.where(m >= _SLANEY_MIN_LOG_MEL, log, lin)
    raise ValueError(f"unknown mel scale {scale!r}; use one of {MEL_SCALES}")


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    fmin: float = 0.0,
    fmax: float | None = None,
    scale: str = "report",
    norm: str | None = "slaney",
) -> np.ndarray:
    """Triangular filters, shape (n_mels, 1 + n_fft // 2), float32.

    Band edges are equally spaced on the chosen mel scale between fmin and fmax
    (default Nyquist).  ``norm='slaney'`` scales each filter to unit area
    (2 / bandwidth in Hz), as librosa does; ``None`` leaves peaks at 1.  With
    scale 'htk'/'slaney' this equals ``librosa.filters.mel(htk=...)``.
    """
    if norm not in (None, "slaney"):
        raise ValueError(f"unknown mel norm {norm!r}; use 'slaney' or None")
    fmax = sample_rate / 2.0 if fmax is None else float(fmax)
    if not 0 <= fmin < fmax <= sample_rate / 2.0:
        raise ValueError(f"need 0 <= fmin < fmax <= Nyquist, got fmin={fmin}, fmax={fmax}")
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, 1 + n_fft // 2)
    edges = mel_to_hz(
        np.linspace(hz_to_mel(fmin, scale), hz_to_mel(fmax, scale), n_mels + 2), scale
    )
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    if norm == "slaney":
        weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)
