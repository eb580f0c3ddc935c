"""Simulated devices: a clip's log-mels as another microphone would have coloured them.

Not in the report.  TAU Urban Acoustic Scenes 2022 Mobile records each sound with device A and
has B and C (phones) and S1-S6 (A's audio through the impulse responses of other devices) beside
it; S4-S6 are heard only in the evaluation fold.  A device's impulse response is a linear filter,
and what sets devices apart on log-mels is its magnitude response: a level per frequency that
does not change over time.  So a clip heard through another device is, to the resolution of a
mel band, its log-mels plus that device's response at each band's centre:

    mel_b(G x) = sum_f w_bf |G(f)|^2 |X(f)|^2  ~  |G(f_b)|^2 mel_b(x)     (G smooth across band b)
    log mel_b(G x)  ~  log mel_b(x) + g_b,   g_b = response in dB at f_b x ln(10) / 10
                                                  (natural log; in dB the dB themselves)

The response is drawn smooth, as a microphone's is: ``ANCHORS`` levels at log-spaced
frequencies from 50 Hz to 16 kHz, each normal with ``SPREAD_DB`` standard deviation, linear in
log-frequency between them and flat beyond.  One draw is defined in Hz, so models with different
front ends (PANNs' 64 Slaney bands, the student's own) hear the same device.
Used by the probe of ``stages.teaching``: do the teachers know more than the student on devices
neither heard?
"""

from __future__ import annotations

import numpy as np

from asc_keras.config import FeatureConfig

ANCHOR_RANGE_HZ = (50.0, 16_000.0)  # the band where phone microphones differ (roll-off, presence)
ANCHORS = 7  # one level per ~1.2 octaves: a response smooth over octaves, as a microphone's is
SPREAD_DB = 6.0  # per anchor: a phone against a reference microphone differs by several dB


def band_centres(cfg: FeatureConfig) -> np.ndarray:
    """(n_mels,) Hz: each mel band's centre of weight (its filter's mean frequency)."""
    from asc_keras.features.logmel import filterbank

    fb = filterbank(cfg)
    f = np.linspace(0.0, cfg.sample_rate / 2, fb.shape[1])
    return (fb * f).sum(1) / np.maximum(fb.sum(1), 1e-12)


def draw_devices(clips: int, views: int, seed: int) -> np.ndarray:
    """(views, clips, ANCHORS) dB: a device per view and clip, the same for every front end."""
    return np.random.default_rng([seed, 2026]).normal(0.0, SPREAD_DB, (views, clips, ANCHORS))


def response_db(anchors_db: np.ndarray, hz: np.ndarray) -> np.ndarray:
    """(..., len(hz)) dB: the responses of ``anchors_db`` (..., ANCHORS) at the frequencies ``hz``."""
    at = np.log(np.geomspace(*ANCHOR_RANGE_HZ, anchors_db.shape[-1]))
    x = np.log(np.maximum(np.asarray(hz, float), 1.0))
    flat = anchors_db.reshape(-1, anchors_db.shape[-1])
    return np.stack([np.interp(x, at, a) for a in flat]).reshape(*anchors_db.shape[:-1], len(x))


def through_device(logmels: np.ndarray, anchors_db: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """(clips, frames, mels) float32: ``logmels`` (of ``cfg``'s front end) heard through the
    devices ``anchors_db`` (clips, ANCHORS), one per clip (module doc)."""
    centres = band_centres(cfg)
    if np.shape(logmels)[-1] != len(centres):
        raise ValueError(
            f"log-mels of {np.shape(logmels)[-1]} bands, the front end has {len(centres)}"
        )
    g = response_db(anchors_db, centres)  # (clips, mels) dB
    if cfg.log != "db":  # natural log of power: a gain of g dB is a factor 10^(g/10)
        g = g * np.log(10.0) / 10.0
    return (np.asarray(logmels, np.float32) + g[:, None, :].astype(np.float32)).astype(np.float32)
