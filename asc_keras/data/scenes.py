"""The built-in data set's signal model: a 10 s scene from scene-typical ingredients.

Every 10 s "source" recording of a scene is mixed from scene-typical ingredients (coloured
noise, mains/HVAC hum, speech-like babble, impulsive events, engine and rail rumble, rail
screech, birds, pass-by traffic, music, announcement chimes) whose levels come from per-class
ranges that overlap, so classes share ingredients and the task is not trivial.  Devices and the
TAU layout are :mod:`asc_keras.data.synthetic`'s.
"""

from __future__ import annotations

import numpy as np

from asc_keras.data.ingredients import REC_SECONDS, SR, filtered, freqs, ingredient, rms

# Ingredient levels per class, dB relative to the background noise (None = absent).
# Ranges overlap between classes on purpose.
_RECIPES: dict[str, dict[str, tuple[float, float] | None]] = {
    "airport": dict(
        babble=(-6, 6),
        hum=(-12, 0),
        chime=(-12, 0),
        impulses=(-18, -6),
        music=None,
        rumble=(-18, -6),
        rail=None,
        birds=None,
        passby=None,
        screech=None,
    ),
    "bus": dict(
        babble=(-18, -3),
        hum=(-18, -6),
        chime=None,
        impulses=(-18, -6),
        music=None,
        rumble=(0, 10),
        rail=None,
        birds=None,
        passby=(-12, 0),
        screech=None,
    ),
    "metro": dict(
        babble=(-18, -6),
        hum=(-12, 0),
        chime=(-24, -12),
        impulses=(-12, 0),
        music=None,
        rumble=(-6, 6),
        rail=(-6, 6),
        birds=None,
        passby=None,
        screech=(-12, 0),
    ),
    "metro_station": dict(
        babble=(-9, 3),
        hum=(-12, 0),
        chime=(-15, -3),
        impulses=(-15, -3),
        music=None,
        rumble=(-12, 0),
        rail=(-12, 0),
        birds=None,
        passby=None,
        screech=(-18, -6),
    ),
    "park": dict(
        babble=(-24, -9),
        hum=None,
        chime=None,
        impulses=(-24, -12),
        music=None,
        rumble=(-24, -12),
        rail=None,
        birds=(-9, 6),
        passby=(-24, -9),
        screech=None,
    ),
    "public_square": dict(
        babble=(-12, 0),
        hum=None,
        chime=None,
        impulses=(-12, 0),
        music=(-24, -12),
        rumble=(-18, -6),
        rail=None,
        birds=(-18, -3),
        passby=(-15, -3),
        screech=None,
    ),
    "shopping_mall": dict(
        babble=(-6, 6),
        hum=(-15, -3),
        chime=(-24, -9),
        impulses=(-15, -3),
        music=(-12, 0),
        rumble=None,
        rail=None,
        birds=None,
        passby=None,
        screech=None,
    ),
    "street_pedestrian": dict(
        babble=(-9, 3),
        hum=None,
        chime=None,
        impulses=(-9, 3),
        music=(-30, -15),
        rumble=(-15, -3),
        rail=None,
        birds=(-24, -9),
        passby=(-12, 0),
        screech=None,
    ),
    "street_traffic": dict(
        babble=(-24, -9),
        hum=None,
        chime=None,
        impulses=(-18, -6),
        music=None,
        rumble=(-6, 6),
        rail=None,
        birds=(-30, -15),
        passby=(0, 9),
        screech=None,
    ),
    "tram": dict(
        babble=(-15, -3),
        hum=(-9, 3),
        chime=(-24, -9),
        impulses=(-15, -3),
        music=None,
        rumble=(-6, 3),
        rail=(-9, 3),
        birds=None,
        passby=(-18, -6),
        screech=(-18, -6),
    ),
}
# Background noise colour exponent (power ~ 1/f^beta) range per class.
_COLOUR = {
    "airport": (0.8, 1.5),
    "bus": (1.4, 2.2),
    "metro": (1.3, 2.1),
    "metro_station": (0.9, 1.7),
    "park": (0.4, 1.2),
    "public_square": (0.7, 1.4),
    "shopping_mall": (0.8, 1.5),
    "street_pedestrian": (0.7, 1.5),
    "street_traffic": (1.0, 1.8),
    "tram": (1.2, 2.0),
}


# Real scenes change within a recording.  TAU's 10 s segments are cut from 5-6 minute recordings
# made at one location, in which the sources that make the scene -- people talking, footsteps and
# doors, a train arriving and leaving, music from a shop -- come and go, and every source's level
# wanders as it moves.  So a 1 s clip hears only part of the scene and a 10 s recording far more
# of it, the property the report's 10 s teachers rely on (sec. 3.1).  Here every foreground
# ingredient's level wanders (FLUCTUATION_DB, about a second to change) and the INTERMITTENT ones
# are present only during one to three episodes of the recording; the machinery (mains/HVAC hum,
# engine and rail rumble) and the background run throughout.
FLUCTUATION_DB = 6.0
INTERMITTENT = ("babble", "impulses", "rail", "music")
_STEADY = ("hum", "rumble")


def _activity(rng: np.random.Generator, n: int, gated: bool) -> np.ndarray:
    """(n,) gain over 10 s: a level wandering by FLUCTUATION_DB (0.25 s knots, smoothed over ~1 s)
    and, when ``gated``, zero outside one to three episodes of 1-4 s (50 ms ramps)."""
    knots = REC_SECONDS * 4 + 1
    walk = np.convolve(rng.standard_normal(knots + 4), np.hanning(5), mode="valid")
    level_db = FLUCTUATION_DB * walk / (walk.std() + 1e-9)
    gain = 10 ** (np.interp(np.arange(n) / SR, np.linspace(0, REC_SECONDS, knots), level_db) / 20)
    if gated:
        on = np.zeros(n, np.float32)
        for _ in range(rng.integers(1, 4)):
            dur = rng.uniform(1.0, 4.0)
            start = int(rng.uniform(-0.5, REC_SECONDS - 0.5) * SR)
            on[max(0, start) : max(0, start + int(dur * SR))] = 1.0
        ramp = np.hanning(int(0.1 * SR)).astype(np.float32)
        gain *= _smooth_gate(on, ramp / ramp.sum())
    return gain.astype(np.float32)


def _smooth_gate(on: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``np.convolve(on, kernel, mode="same")`` for a 0/1 ``on``, from its few edges.

    With d the edges of ``on`` (+1 where it switches on, -1 where off, one past the end included)
    and C the running sum of the kernel, the full convolution is sum_j d_j C[n - j]: a few passes
    over the signal instead of len(kernel) multiply-adds per sample (half of the set's generation
    time).  Summed in float64, then float32 as np.convolve gives for float32 inputs: its sum,
    BLAS's float32 dot, differs from machine to machine in the last bits; this one does not.
    """
    n, m = on.size, kernel.size
    edges = np.diff(np.concatenate([[0.0], on.astype(np.float64), [0.0]]))
    running = np.concatenate([[0.0], np.cumsum(kernel, dtype=np.float64)])  # C[t] at t + 1
    out = np.zeros(n)
    for j in np.flatnonzero(edges):
        # "same" keeps full[(m - 1) // 2 :][:n]: sample i reads C at i + (m - 1) // 2 - j, i.e.
        # running[i - start]; 0 before start, the whole kernel's sum from start + m on.
        start = j - (m - 1) // 2 - 1
        lo, hi = max(0, start), min(n, start + m)
        if lo < hi:
            out[lo:hi] += edges[j] * running[lo - start : hi - start]
        out[max(0, start + m) :] += edges[j] * running[m]
    return out.astype(np.float32)


def render_source(
    scene: str, rng: np.random.Generator, city_hum: float, location_tilt: float
) -> np.ndarray:
    """A 10 s, 44.1 kHz scene mixture before any device (float32, RMS ~0.1)."""
    n = SR * REC_SECONDS
    f = freqs(n)
    beta = rng.uniform(*_COLOUR[scene])
    colour = (np.maximum(f, 20.0) / 1000.0) ** (-beta / 2) * (np.maximum(f, 20.0) / 1000.0) ** (
        location_tilt / 20
    )
    bg = filtered(rng.standard_normal(n).astype(np.float32), colour)
    bg /= rms(bg)
    mix = bg.copy()
    for name, rng_db in _RECIPES[scene].items():
        # Any ingredient can leak into any class at a low level: shared ingredients
        # are what make the classes overlap.
        if rng_db is None:
            if rng.uniform() > 0.15:
                continue
            rng_db = (-30.0, -15.0)
        x = ingredient(name, rng, n, f, city_hum)
        x = x / rms(x) * 10 ** (rng.uniform(*rng_db) / 20)  # its level while it sounds
        mix += x if name in _STEADY else x * _activity(rng, n, gated=name in INTERMITTENT)
    return (0.1 * mix / rms(mix)).astype(np.float32)
