"""A generated folder of "your own recordings": three made-up classes whose files mix lengths
(3-12 s), rates (44.1 and 48 kHz), channel counts and formats (WAV, FLAC), for the finetune
tests.  Each class is a distinct sound, so a model adapted to them tells them apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

CLASSES = ("fridge_hum", "kettle_whistle", "tap_running")


def _sound(kind: str, seconds: float, rate: int, rng) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    noise = rng.normal(0, 0.02, len(t))
    if kind == "fridge_hum":  # a low hum with its harmonics
        f = rng.uniform(90, 130)
        y = sum(0.2 / k * np.sin(2 * np.pi * k * f * t + rng.uniform(0, 6)) for k in (1, 2, 3))
    elif kind == "kettle_whistle":  # a high, slowly rising whistle
        f = rng.uniform(2500, 3200) + 150 * t / seconds
        y = 0.2 * np.sin(2 * np.pi * np.cumsum(f) / rate)
    else:  # broadband water noise, loud in the upper bands
        white = rng.normal(0, 0.3, len(t))
        y = np.diff(white, prepend=0.0) * 0.5
    return (y + noise).astype(np.float32)


def make_own_recordings(root: Path, per_class: int = 8, seed: int = 0) -> Path:
    """``root/<class>/<file>`` for the three classes; returns ``root``."""
    rng = np.random.default_rng(seed)
    for c in CLASSES:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rate = (44100, 48000)[i % 2]
            y = _sound(c, rng.uniform(3, 12), rate, rng)
            if i % 3 == 0:  # stereo
                y = np.stack([y, 0.8 * y], axis=1)
            suffix = ".flac" if i % 2 else ".wav"
            sf.write(root / c / f"{c}_{i:02d}{suffix}", y, rate)
    return root
