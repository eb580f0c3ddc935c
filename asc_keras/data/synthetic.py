"""Generated acoustic scenes in the exact TAU Urban Acoustic Scenes 2022 Mobile layout.

Every 10 s "source" recording of a scene is mixed from scene-typical ingredients
(coloured noise, mains/HVAC hum, speech-like babble, impulsive events, engine and
rail rumble, rail screech, birds, pass-by traffic, music, announcement chimes)
whose levels come from per-class ranges that overlap, so classes share
ingredients and the task is not trivial.  The source is then rendered through
one or more *devices* (smooth random frequency response, high-pass, gain,
noise floor, soft clipping for phones): a, b, c and s1-s6, with s4-s6 appearing
only in fold1_evaluate as in the real split.  Each rendered recording is cut into
ten 1 s clips written as 24-bit 44.1 kHz mono WAV files named like the real ones.

The generator is deterministic for a given seed and size.
"""
from __future__ import annotations

import os
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from scipy import fft as sfft
from scipy.signal import lfilter

from asc_keras.config import ALL_DEVICES, SCENE_CLASSES, TRAIN_DEVICES, UNSEEN_DEVICES
from asc_keras.files import atomic_path

SR = 44100
REC_SECONDS = 10
CITY_NAMES = ("amsterdam", "barcelona", "helsinki", "lisbon", "london", "lyon",
              "milan", "paris", "prague", "stockholm", "vienna", "berlin")

# Ingredient levels per class, dB relative to the background noise (None = absent).
# Ranges overlap between classes on purpose.
_RECIPES: dict[str, dict[str, tuple[float, float] | None]] = {
    "airport":           dict(babble=(-6, 6), hum=(-12, 0), chime=(-12, 0), impulses=(-18, -6), music=None,
                              rumble=(-18, -6), rail=None, birds=None, passby=None, screech=None),
    "bus":               dict(babble=(-18, -3), hum=(-18, -6), chime=None, impulses=(-18, -6), music=None,
                              rumble=(0, 10), rail=None, birds=None, passby=(-12, 0), screech=None),
    "metro":             dict(babble=(-18, -6), hum=(-12, 0), chime=(-24, -12), impulses=(-12, 0), music=None,
                              rumble=(-6, 6), rail=(-6, 6), birds=None, passby=None, screech=(-12, 0)),
    "metro_station":     dict(babble=(-9, 3), hum=(-12, 0), chime=(-15, -3), impulses=(-15, -3), music=None,
                              rumble=(-12, 0), rail=(-12, 0), birds=None, passby=None, screech=(-18, -6)),
    "park":              dict(babble=(-24, -9), hum=None, chime=None, impulses=(-24, -12), music=None,
                              rumble=(-24, -12), rail=None, birds=(-9, 6), passby=(-24, -9), screech=None),
    "public_square":     dict(babble=(-12, 0), hum=None, chime=None, impulses=(-12, 0), music=(-24, -12),
                              rumble=(-18, -6), rail=None, birds=(-18, -3), passby=(-15, -3), screech=None),
    "shopping_mall":     dict(babble=(-6, 6), hum=(-15, -3), chime=(-24, -9), impulses=(-15, -3), music=(-12, 0),
                              rumble=None, rail=None, birds=None, passby=None, screech=None),
    "street_pedestrian": dict(babble=(-9, 3), hum=None, chime=None, impulses=(-9, 3), music=(-30, -15),
                              rumble=(-15, -3), rail=None, birds=(-24, -9), passby=(-12, 0), screech=None),
    "street_traffic":    dict(babble=(-24, -9), hum=None, chime=None, impulses=(-18, -6), music=None,
                              rumble=(-6, 6), rail=None, birds=(-30, -15), passby=(0, 9), screech=None),
    "tram":              dict(babble=(-15, -3), hum=(-9, 3), chime=(-24, -9), impulses=(-15, -3), music=None,
                              rumble=(-6, 3), rail=(-9, 3), birds=None, passby=(-18, -6), screech=(-18, -6)),
}
# Background noise colour exponent (power ~ 1/f^beta) range per class.
_COLOUR = {"airport": (0.8, 1.5), "bus": (1.4, 2.2), "metro": (1.3, 2.1), "metro_station": (0.9, 1.7),
           "park": (0.4, 1.2), "public_square": (0.7, 1.4), "shopping_mall": (0.8, 1.5),
           "street_pedestrian": (0.7, 1.5), "street_traffic": (1.0, 1.8), "tram": (1.2, 2.0)}


@dataclass(frozen=True)
class Device:
    """A recording device: smooth response (dB at log-spaced anchors), high-pass, noise, clipping."""

    name: str
    anchors_db: tuple[float, ...]
    highpass_hz: float
    gain_db: float
    noise_db: float
    drive: float  # soft-clipping drive (0 = linear)


def device(name: str) -> Device:
    """Deterministic device model for a TAU device name (independent of the dataset seed)."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    real = name in ("a", "b", "c")
    spread = 3.0 if name == "a" else (6.0 if real else 9.0)
    anchors = tuple(float(v) for v in rng.normal(0.0, spread, 8))
    if name == "a":
        return Device(name, anchors, 20.0, 0.0, -75.0, 0.0)
    return Device(name, anchors, float(rng.uniform(80, 400)), float(rng.uniform(-6, 6)),
                  float(rng.uniform(-60, -45)), float(rng.uniform(0.0, 2.0)))


def _freqs(n: int) -> np.ndarray:
    return np.fft.rfftfreq(n, 1.0 / SR)


def _shape(x: np.ndarray, gain: np.ndarray) -> np.ndarray:
    # scipy.fft in single precision is ~2x numpy's pocketfft on these 441000-point signals.
    spec = sfft.rfft(x.astype(np.float32, copy=False)) * gain.astype(np.float32, copy=False)
    return sfft.irfft(spec, n=x.shape[-1]).astype(np.float32, copy=False)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def _bandpass(f: np.ndarray, lo: float, hi: float, order: float = 2.0) -> np.ndarray:
    return 1.0 / np.sqrt(1.0 + (lo / np.maximum(f, 1.0)) ** (2 * order)) / np.sqrt(1.0 + (f / hi) ** (2 * order))


def _envelope_events(rng, n: int, rate: float, decay_s: float, jitter: bool = True) -> np.ndarray:
    env = np.zeros(n, np.float32)
    k = rng.poisson(rate * n / SR)
    pos = rng.integers(0, n, k)
    env[pos] = rng.uniform(0.3, 1.0, k) if jitter else 1.0
    return _decay(env, decay_s)


def _decay(x: np.ndarray, decay_s: float) -> np.ndarray:
    """Convolve with exp(-t/decay_s) as a one-pole recursive filter (fast for long tails)."""
    return lfilter([1.0], [1.0, -np.exp(-1.0 / (decay_s * SR))], x).astype(np.float32)


def _ingredient(name: str, rng: np.random.Generator, n: int, f: np.ndarray, city_hum: float) -> np.ndarray:
    t = np.arange(n, dtype=np.float32) / SR
    white = rng.standard_normal(n).astype(np.float32)
    if name == "babble":
        talkers = rng.integers(3, 12)
        carrier = np.zeros(n, np.float32)
        for _ in range(talkers):
            syll = rng.uniform(3.0, 6.0)
            phase = rng.uniform(0, 2 * np.pi)
            env = np.clip(np.sin(2 * np.pi * syll * t + phase + 2 * np.sin(2 * np.pi * 0.4 * t)), 0, None) ** 2
            env *= (rng.uniform(size=int(REC_SECONDS * 2) + 1) > 0.3).repeat(SR // 2 + 1)[:n]
            carrier += env * rng.standard_normal(n).astype(np.float32)
        formants = sum(np.exp(-0.5 * ((f - fc) / bw) ** 2) for fc, bw in
                       ((rng.uniform(400, 800), 150), (rng.uniform(1000, 1800), 250), (2600, 400)))
        return _shape(carrier, 0.2 * _bandpass(f, 150, 4000) + formants)
    if name == "hum":
        f0 = city_hum * rng.choice([1, 2, 3])
        return sum(np.sin(2 * np.pi * f0 * h * (1 + rng.normal(0, 1e-3)) * t) / h
                   for h in range(1, 6)).astype(np.float32)
    if name == "chime":
        out = np.zeros(n, np.float32)
        for start in rng.uniform(0, REC_SECONDS - 2, rng.integers(1, 3)):
            for k, fc in enumerate(rng.choice([523, 659, 784, 880, 1047], 3)):
                s = int((start + 0.35 * k) * SR)
                seg = t[: int(0.6 * SR)]
                tone = np.sin(2 * np.pi * fc * seg) * np.exp(-seg / 0.25)
                out[s:s + seg.size] += tone[: max(0, min(seg.size, n - s))]
        return out
    if name == "impulses":
        env = _envelope_events(rng, n, rng.uniform(1.0, 6.0), rng.uniform(0.005, 0.03))
        return _shape(env * white, _bandpass(f, rng.uniform(100, 800), rng.uniform(2000, 8000)))
    if name == "rumble":
        am = 1 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.1, 2.0) * t)
        tone = np.sin(2 * np.pi * rng.uniform(25, 90) * t)
        return (am * (_shape(white, _bandpass(f, 20, rng.uniform(120, 300), 3.0)) + 0.3 * tone)).astype(np.float32)
    if name == "rail":
        period = rng.uniform(0.5, 1.2)
        clacks = np.zeros(n, np.float32)
        for c in np.arange(rng.uniform(0, period), REC_SECONDS, period):
            for d in (0.0, rng.uniform(0.08, 0.15)):
                i = int((c + d) * SR)
                if i < n:
                    clacks[i] = 1.0
        env = _decay(clacks, 0.01)
        return _shape(env * white, _bandpass(f, 60, 1500)) + 0.5 * _shape(white, _bandpass(f, 30, 200, 3.0))
    if name == "screech":
        fc = rng.uniform(1500, 4500)
        env = np.clip(np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * t + rng.uniform(0, 6.3)), 0, None) ** 3
        return (env * np.sin(2 * np.pi * (fc * t + 30 * np.sin(2 * np.pi * 3 * t)))).astype(np.float32)
    if name == "birds":
        out = np.zeros(n, np.float32)
        for s in rng.uniform(0, REC_SECONDS - 0.3, rng.integers(4, 25)):
            d = rng.uniform(0.05, 0.2)
            seg = t[: int(d * SR)]
            f0, f1 = rng.uniform(2000, 7000, 2)
            ph = 2 * np.pi * (f0 * seg + (f1 - f0) * seg ** 2 / (2 * d))
            i = int(s * SR)
            out[i:i + seg.size] += (np.sin(ph) * np.hanning(seg.size))[: n - i]
        return out
    if name == "passby":
        env = np.zeros(n, np.float32)
        for c in rng.uniform(-1, REC_SECONDS + 1, rng.integers(1, 5)):
            env += np.exp(-0.5 * ((t - c) / rng.uniform(0.6, 1.8)) ** 2)
        return env * _shape(white, _bandpass(f, 40, rng.uniform(1500, 5000)))
    if name == "music":
        root = rng.uniform(110, 330)
        out = np.zeros(n, np.float32)
        for ratio in (1, 1.26, 1.5, 2.0):
            out += np.sin(2 * np.pi * root * ratio * t) * (0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.2, 1) * t))
        return _shape(out, _bandpass(f, 80, 6000))
    raise ValueError(name)


def render_source(scene: str, rng: np.random.Generator, city_hum: float, location_tilt: float) -> np.ndarray:
    """A 10 s, 44.1 kHz scene mixture before any device (float32, RMS ~0.1)."""
    n = SR * REC_SECONDS
    f = _freqs(n)
    beta = rng.uniform(*_COLOUR[scene])
    colour = (np.maximum(f, 20.0) / 1000.0) ** (-beta / 2) * (np.maximum(f, 20.0) / 1000.0) ** (location_tilt / 20)
    bg = _shape(rng.standard_normal(n).astype(np.float32), colour)
    bg /= _rms(bg)
    mix = bg.copy()
    for name, rng_db in _RECIPES[scene].items():
        # Any ingredient can leak into any class at a low level: shared ingredients
        # are what make the classes overlap.
        if rng_db is None:
            if rng.uniform() > 0.15:
                continue
            rng_db = (-30.0, -15.0)
        x = _ingredient(name, rng, n, f, city_hum)
        mix += x / _rms(x) * 10 ** (rng.uniform(*rng_db) / 20)
    return (0.1 * mix / _rms(mix)).astype(np.float32)


def render_device(x: np.ndarray, dev: Device, rng: np.random.Generator) -> np.ndarray:
    """Pass a source through a device model; output float32 in [-1, 1]."""
    f = _freqs(x.size)
    anchors = np.geomspace(50, SR / 2, len(dev.anchors_db))
    resp_db = np.interp(np.log(np.maximum(f, 50)), np.log(anchors), dev.anchors_db)
    gain = 10 ** (resp_db / 20) / np.sqrt(1 + (dev.highpass_hz / np.maximum(f, 1.0)) ** 4)
    y = _shape(x, gain) * 10 ** ((dev.gain_db + rng.uniform(-6, 6)) / 20)
    if dev.drive > 0:
        y = np.tanh(y * (1 + dev.drive * 3)) / (1 + dev.drive * 3) * (1 + dev.drive)
    y += rng.standard_normal(y.size).astype(np.float32) * 10 ** (dev.noise_db / 20)
    return np.clip(y, -1.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class _Job:
    root: str
    scene: str
    city: str
    location: str
    segment_id: int
    devices: tuple[str, ...]
    seed: int
    city_hum: float
    tilt: float


def _render_job(job: _Job) -> list[tuple[str, str, str, str]]:
    rng = np.random.default_rng(job.seed)
    src = render_source(job.scene, rng, job.city_hum, job.tilt)
    rows = []
    for dev_name in job.devices:
        y = render_device(src, device(dev_name), rng)
        for k in range(REC_SECONDS):
            fname = f"audio/{job.scene}-{job.city}-{job.location}-{job.segment_id}-{k}-{dev_name}.wav"
            sf.write(os.path.join(job.root, fname), y[k * SR:(k + 1) * SR], SR, subtype="PCM_24")
            rows.append((fname, job.scene, f"{job.city}-{job.location}", dev_name))
    return rows


def make_synthetic_tau(root: str | Path, recordings_per_class: int = 20, cities: int = 6,
                       seed: int = 0, extra_devices: int = 2, evaluate_fraction: float = 0.3,
                       workers: int = 1) -> Path:
    """Write a generated dataset in the TAU 2022 Mobile development layout.

    Args:
        root: output folder (created).  Holds meta.csv, audio/, evaluation_setup/.
        recordings_per_class: 10 s source recordings per scene; each is rendered by
            device a plus ``extra_devices`` other devices, so the clip count is about
            ``10 classes x recordings_per_class x (1 + extra_devices) x 10``.
        cities: how many cities (at most 12).
        seed: random seed; the same seed and sizes give the same files.
        evaluate_fraction: share of locations held out for fold1_evaluate.
        workers: processes used to render.

    Returns:
        ``root`` as a Path.  Files are written under a temporary name and the CSVs
        last, so an interrupted run never looks like a complete dataset.
    """
    root = Path(root)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    (root / "evaluation_setup").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    city_names = CITY_NAMES[: max(2, min(cities, len(CITY_NAMES)))]
    hums = {c: float(rng.choice([50.0, 60.0]) * rng.uniform(0.98, 1.02)) for c in city_names}
    jobs, split_of = [], {}
    for scene in SCENE_CLASSES:
        # Locations: two per city per scene; a location is all-train or all-evaluate.
        locations = [(c, str(100 + 10 * SCENE_CLASSES.index(scene) + j)) for c in city_names for j in range(2)]
        order = rng.permutation(len(locations))
        n_eval = max(1, int(round(evaluate_fraction * len(locations))))
        for i, li in enumerate(order):
            split_of[(scene,) + locations[li]] = "evaluate" if i < n_eval else "train"
        by_split = {sp: [locations[li] for li in order if split_of[(scene,) + locations[li]] == sp]
                    for sp in ("train", "evaluate")}
        for r in range(recordings_per_class):
            # Every k-th recording goes to evaluate so small sets keep the split ratio.
            step = np.floor((r + 1) * evaluate_fraction + 0.5) > np.floor(r * evaluate_fraction + 0.5)
            split = "evaluate" if step else "train"
            city, loc = by_split[split][(r // 2) % len(by_split[split])]
            pool = [d for d in (ALL_DEVICES if split == "evaluate" else TRAIN_DEVICES) if d != "a"]
            if split == "evaluate":
                # Make sure unseen devices are well represented in the evaluation split.
                pool = list(UNSEEN_DEVICES) * 2 + pool
            others = tuple(dict.fromkeys(rng.choice(pool, size=extra_devices, replace=False).tolist()))
            jobs.append(_Job(str(root), scene, city, loc, 1000 + r * 10, ("a",) + others,
                             int(rng.integers(2**31)), hums[city], float(rng.uniform(-3, 3))))
    if workers > 1:
        with ProcessPoolExecutor(workers) as ex:
            results = list(ex.map(_render_job, jobs, chunksize=4))
    else:
        results = [_render_job(j) for j in jobs]
    rows = [row for res in results for row in res]
    meta = pd.DataFrame(rows, columns=["filename", "scene_label", "identifier", "source_label"])
    meta["split"] = [split_of[(r[1],) + tuple(r[2].split("-"))] for r in rows]
    train = meta[meta["split"] == "train"][["filename", "scene_label"]]
    evaluate = meta[meta["split"] == "evaluate"][["filename", "scene_label"]]
    _write_tsv(train, root / "evaluation_setup" / "fold1_train.csv")
    _write_tsv(evaluate, root / "evaluation_setup" / "fold1_evaluate.csv")
    _write_tsv(evaluate[["filename"]], root / "evaluation_setup" / "fold1_test.csv")
    _write_tsv(meta.drop(columns="split"), root / "meta.csv")  # last: marks the dataset complete
    return root


def _write_tsv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False)


def is_complete(root: str | Path) -> bool:
    """True when a generated dataset was fully written (meta.csv is written last)."""
    return (Path(root) / "meta.csv").is_file()
