"""NumPy reference log-mel (report sec. 2.1) for offline extraction, and PANNs' front end.

The report's settings: STFT with a periodic Hann window of ``n_fft`` samples, hop
``hop_length``, no centring and no padding, so 1 s at 16 kHz gives exactly 28 frames; power
spectrum; mel filter bank; natural log with an offset.  Other framings (the DCASE baseline's:
a 40 ms Hamming window inside a 2048-point FFT, centred frames, magnitude) follow librosa's
conventions: the window zero-padded to ``n_fft`` in the middle, ``center`` padding by reflection.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import fft as sfft

from asc_keras.config import FeatureConfig
from asc_keras.features.mel import mel_filterbank


@lru_cache(maxsize=8)
def _filterbank_T(cfg: FeatureConfig) -> np.ndarray:
    return np.ascontiguousarray(
        mel_filterbank(
            cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax, cfg.mel_scale, cfg.mel_norm
        ).T
    )


@lru_cache(maxsize=8)
def _window(n_fft: int, win_length: int | None = None, kind: str = "hann") -> np.ndarray:
    """Periodic ('asymmetric') window of ``win_length`` samples, zero-padded to ``n_fft`` centred."""
    length = win_length or n_fft
    n = np.arange(length)
    a0 = {"hann": 0.5, "hamming": 0.54}.get(kind)
    if a0 is None:
        raise ValueError(f"unknown window {kind!r}; use 'hann' or 'hamming'")
    w = a0 - (1.0 - a0) * np.cos(2.0 * np.pi * n / length)
    left = (n_fft - length) // 2
    return np.pad(w, (left, n_fft - length - left)).astype(np.float32)


def filterbank(cfg: FeatureConfig) -> np.ndarray:
    """The (n_mels, 1 + n_fft // 2) filter bank both implementations use."""
    return _filterbank_T(cfg).T


DEFAULT_FEATURES = FeatureConfig()  # the report's settings (frozen, so one shared instance)

# PANNs' front end (Kong et al. 2020; audioset_tagging_cnn pytorch/main.py's AudioSet settings,
# torchlibrosa's Spectrogram and LogmelFilterBank), what its pretrained MobileNetV2 learnt on:
# 32 kHz, window 1024 (periodic Hann), hop 320 (10 ms), centred with reflect padding, power
# spectrum, 64 Slaney mel bands (librosa's filters: Slaney scale and area) from 50 to 14,000 Hz,
# 10 log10(max(power, 1e-10)) dB with ref 1.0 and no top_db.  1 s gives 101 frames, 10 s 1001.
PANNS_FEATURES = FeatureConfig(sample_rate=32000, n_fft=1024, hop_length=320, n_mels=64, fmin=50.0,
                               fmax=14000.0, mel_scale="slaney", mel_norm="slaney", center=True,
                               log="db", log_offset=1e-10)  # fmt: skip


def peak_int16(features: np.ndarray) -> np.ndarray:
    """Each clip's log-mels (the last two axes) as the official DCASE 2022 baseline stores them
    (``create_h5.py``: ``utils.float32_to_int16``, read back by ``int16_to_float32``): divided by
    their largest |value| when it exceeds 1, scaled by 32767 and truncated to int16, then divided
    by 32767.  Its model was trained on these inputs; fed unscaled log-mels it answers one class
    for everything."""
    peak = np.abs(features).max(axis=(-2, -1), keepdims=True)
    scaled = np.where(peak > 1.0, features / np.maximum(peak, 1.0), features)
    return ((scaled * 32767.0).astype(np.int16) / 32767.0).astype(np.float32)


def logmel(audio: np.ndarray, cfg: FeatureConfig = DEFAULT_FEATURES) -> np.ndarray:
    """Log-mel spectrogram.

    Args:
        audio: float waveform at ``cfg.sample_rate``, shape (samples,) or (batch, samples).
            Must hold at least ``n_fft`` samples.
    Returns:
        float32 array (frames, n_mels) or (batch, frames, n_mels); frames =
        1 + (samples - n_fft) // hop (28 for 1 s with the report's settings).
    """
    audio = np.asarray(audio, dtype=np.float32)
    if cfg.center:
        pad = [(0, 0)] * (audio.ndim - 1) + [(cfg.n_fft // 2, cfg.n_fft // 2)]
        audio = np.pad(audio, pad, mode="reflect")
    if audio.shape[-1] < cfg.n_fft:
        raise ValueError(f"need at least n_fft={cfg.n_fft} samples, got {audio.shape[-1]}")
    frames = np.lib.stride_tricks.sliding_window_view(audio, cfg.n_fft, axis=-1)[
        ..., :: cfg.hop_length, :
    ]
    spec = sfft.rfft(frames * _window(cfg.n_fft, cfg.win_length, cfg.window), axis=-1)
    power = spec.real**2 + spec.imag**2
    if cfg.power != 2.0:
        power = power ** (cfg.power / 2.0)  # 1.0: magnitude
    # One 2-D GEMM: NumPy's stacked (batch, frames, bins) @ (bins, mels) is ~3x slower.
    mel = (power.reshape(-1, power.shape[-1]) @ _filterbank_T(cfg)).reshape(
        power.shape[:-1] + (-1,)
    )
    if cfg.log == "db":  # power_to_db with ref 1: a floor, not an offset
        out = (10.0 * np.log10(np.maximum(mel, np.float32(cfg.log_offset)))).astype(np.float32)
    elif cfg.log == "natural":
        out = np.log(mel + np.float32(cfg.log_offset)).astype(np.float32)
    else:
        raise ValueError(f"unknown log {cfg.log!r}; use 'natural' or 'db'")
    return peak_int16(out) if cfg.peak_int16 else out
