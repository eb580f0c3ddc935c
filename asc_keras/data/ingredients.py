"""The ingredients of the built-in scenes: ten kinds of urban sound, 10 s each, and the signal
helpers they are made with (:mod:`asc_keras.data.scenes` mixes them into scenes)."""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft
from scipy.signal import lfilter

SR = 44100
REC_SECONDS = 10


def freqs(n: int) -> np.ndarray:
    return np.fft.rfftfreq(n, 1.0 / SR)


def filtered(x: np.ndarray, gain: np.ndarray) -> np.ndarray:
    # scipy.fft in single precision is ~2x numpy's pocketfft on these 441000-point signals.
    spec = sfft.rfft(x.astype(np.float32, copy=False)) * gain.astype(np.float32, copy=False)
    return sfft.irfft(spec, n=x.shape[-1]).astype(np.float32, copy=False)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def bandpass(f: np.ndarray, lo: float, hi: float, order: float = 2.0) -> np.ndarray:
    return (
        1.0
        / np.sqrt(1.0 + (lo / np.maximum(f, 1.0)) ** (2 * order))
        / np.sqrt(1.0 + (f / hi) ** (2 * order))
    )


def _envelope_events(rng, n: int, rate: float, decay_s: float, jitter: bool = True) -> np.ndarray:
    env = np.zeros(n, np.float32)
    k = rng.poisson(rate * n / SR)
    pos = rng.integers(0, n, k)
    env[pos] = rng.uniform(0.3, 1.0, k) if jitter else 1.0
    return _decay(env, decay_s)


def _decay(x: np.ndarray, decay_s: float) -> np.ndarray:
    """Convolve with exp(-t/decay_s) as a one-pole recursive filter (fast for long tails)."""
    return lfilter([1.0], [1.0, -np.exp(-1.0 / (decay_s * SR))], x).astype(np.float32)


def _babble(
    rng, n: int, f: np.ndarray, t: np.ndarray, white: np.ndarray, city_hum: float
) -> np.ndarray:
    talkers = rng.integers(3, 12)
    carrier = np.zeros(n, np.float32)
    for _ in range(talkers):
        syll = rng.uniform(3.0, 6.0)
        phase = rng.uniform(0, 2 * np.pi)
        env = (
            np.clip(np.sin(2 * np.pi * syll * t + phase + 2 * np.sin(2 * np.pi * 0.4 * t)), 0, None)
            ** 2
        )
        env *= (rng.uniform(size=int(REC_SECONDS * 2) + 1) > 0.3).repeat(SR // 2 + 1)[:n]
        carrier += env * rng.standard_normal(n).astype(np.float32)
    formants = sum(
        np.exp(-0.5 * ((f - fc) / bw) ** 2)
        for fc, bw in (
            (rng.uniform(400, 800), 150),
            (rng.uniform(1000, 1800), 250),
            (2600, 400),
        )
    )
    return filtered(carrier, 0.2 * bandpass(f, 150, 4000) + formants)


def _hum(
    rng, n: int, f: np.ndarray, t: np.ndarray, white: np.ndarray, city_hum: float
) -> np.ndarray:
    f0 = city_hum * rng.choice([1, 2, 3])
    return sum(
        np.sin(2 * np.pi * f0 * h * (1 + rng.normal(0, 1e-3)) * t) / h for h in range(1, 6)
    ).astype(np.float32)


def _chime(
    rng, n: int, f: np.ndarray, t: np.ndarray, white: np.ndarray, city_hum: float
) -> np.ndarray:
    out = np.zeros(n, np.float32)
    for start in rng.uniform(0, REC_SECONDS - 2, rng.integers(1, 3)):
        for k, fc in enumerate(rng.choice([523, 659, 784, 880, 1047], 3)):
            s = int((start + 0.35 * k) * SR)
            seg = t[: int(0.6 * SR)]
            tone = np.sin(2 * np.pi * fc * seg) * np.exp(-seg / 0.25)
            out[s : s + seg.size] += tone[: max(0, min(seg.size, n - s))]
    return out


def _impulses(
    rng, n: int, f: np.ndarray, t: np.ndarray, white: np.ndarray, city_hum: float
) -> np.ndarray:
    env = _envelope_events(rng, n, rng.uniform(1.0, 6.0), rng.uniform(0.005, 0.03))
    return filtered(env * white, bandpass(f, rng.uniform(100, 800), rng.uniform(2000, 8000)))


def _rumble(
    rng, n: int, f: np.ndarray, t: np.ndarray, white: np.ndarray, city_hum: float
) -> np.ndarray:
    am = 1 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.1, 2.0) * t)
    tone = np.sin(2 * np.pi * rng.uniform(25, 90) * t)
    return (
        am * (filtered(white, bandpass(f, 20, rng.uniform(120, 300), 3.0)) + 0.3 * tone)
    ).astype(np.float32)


def _rail(
    rng, n: int, f: np.ndarray, t: np.ndarray, white: np.ndarray, city_hum: float
) -> np.ndarray:
    period = rng.uniform(0.5, 1.2)
    clacks = np.zeros(n, np.float32)
    for c in np.arange(rng.uniform(0, period), REC_SECONDS, period):
        for d in (0.0, rng.uniform(0.08, 0.15)):
            i = int((c + d) * SR)
            if i < n:
                clacks[i] = 1.0
    env = _decay(clacks, 0.01)
    return filtered(env * white, bandpass(f, 60, 1500)) + 0.5 * filtered(
        white, bandpass(f, 30, 200, 3.0)
    )


def _screech(
    rng, n: int, f: np.ndarray, t: np.ndarray, white: np.ndarray, city_hum: float
) -> np.ndarray:
    fc = rng.uniform(1500, 4500)
    env = (
        np.clip(np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * t + rng.uniform(0, 6.3)), 0, None) ** 3
    )
    return (env * np.sin(2 * np.pi * (fc * t + 30 * np.sin(2 * np.pi * 3 * t)))).astype(np.float32)


def _birds(
    rng, n: int, f: np.ndarray, t: np.ndarray, white: np.ndarray, city_hum: float
) -> np.ndarray:
    out = np.zeros(n, np.float32)
    for s in rng.uniform(0, REC_SECONDS - 0.3, rng.integers(4, 25)):
        d = rng.uniform(0.05, 0.2)
        seg = t[: int(d * SR)]
        f0, f1 = rng.uniform(2000, 7000, 2)
        ph = 2 * np.pi * (f0 * seg + (f1 - f0) * seg**2 / (2 * d))
        i = int(s * SR)
        out[i : i + seg.size] += (np.sin(ph) * np.hanning(seg.size))[: n - i]
    return out


def _passby(
    rng, n: int, f: np.ndarray, t: np.ndarray, white: np.ndarray, city_hum: float
) -> np.ndarray:
    env = np.zeros(n, np.float32)
    for c in rng.uniform(-1, REC_SECONDS + 1, rng.integers(1, 5)):
        env += np.exp(-0.5 * ((t - c) / rng.uniform(0.6, 1.8)) ** 2)
    return env * filtered(white, bandpass(f, 40, rng.uniform(1500, 5000)))


def _music(
    rng, n: int, f: np.ndarray, t: np.ndarray, white: np.ndarray, city_hum: float
) -> np.ndarray:
    root = rng.uniform(110, 330)
    out = np.zeros(n, np.float32)
    for ratio in (1, 1.26, 1.5, 2.0):
        out += np.sin(2 * np.pi * root * ratio * t) * (
            0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.2, 1) * t)
        )
    return filtered(out, bandpass(f, 80, 6000))


_INGREDIENTS = {
    name: fn
    for name, fn in (
        ("babble", _babble),
        ("hum", _hum),
        ("chime", _chime),
        ("impulses", _impulses),
        ("rumble", _rumble),
        ("rail", _rail),
        ("screech", _screech),
        ("birds", _birds),
        ("passby", _passby),
        ("music", _music),
    )
}


def ingredient(
    name: str, rng: np.random.Generator, n: int, f: np.ndarray, city_hum: float
) -> np.ndarray:
    """10 s of one ingredient, before its level is set (each ingredient's own function, above)."""
    t = np.arange(n, dtype=np.float32) / SR
    white = rng.standard_normal(n).astype(np.float32)
    return _INGREDIENTS[name](rng, n, f, t, white, city_hum)
