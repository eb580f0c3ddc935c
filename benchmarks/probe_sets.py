"""Data sets with other signal models than the built-in one, in the same TAU layout.

The recipe (teachers, distillation, augmentation, budgets) was developed on the built-in
generated set; these sets check it on data it was not developed on (the README summarises what
they showed, docs/probe-sets.md holds every measurement):

* ``sparse``: the scene lives in rare, short events.  The background (coloured noise, a hum,
  distant babble) says nothing about the scene; each scene has its own kind of event (a
  band-limited burst whose centre frequency is the scene's, neighbouring scenes overlapping),
  about 2 per 10 s recording (``--events``), so most 1 s clips hold none.  A clip alone is near
  chance; a recording is not.  With ``--events 3`` a logistic regression on max - median log-mel
  gets about 20 % on clips and 50-58 % on recordings, the issue's description of its sparse set
  (docs/probe-sets.md: every student stays at chance on those clips there).  ``--events 10`` and ``30`` give
  the events to most clips (linear model 44 and 63 % on clips): there KD from the 10 s teachers
  lifts the student 10-26 points above the CE control, which learns each recording's background.
* ``stationary``: every scene is a steady sound with its own spectral colour and resonances,
  heard through the devices, with scene-independent interference 0-9 dB below it.
* ``clear``: ``stationary`` with the interference 15-24 dB below the scene, the easy set (seed 42,
  quick profile: teachers' ensemble 96.7 % on recordings, KD student and CE control 86.7 % on
  clips, int8 86.0 %, the student trained plainly without augmentation 72.8 %).
* ``tonal``: every scene is a slowly drifting harmonic tone (its own pitch, neighbouring scenes a
  third of an octave apart and overlapping, and its own modulation rate) over scene-independent
  background 0-6 dB below it.  A device's response changes the harmonics' levels, not where they
  sit, so a student trained plainly does well even on devices it never heard: the set where
  int8 is checked near the top of the scale (seeds 42 / 0, quick profile: the student trained
  plainly 88.8 / 84.2 %, the CE control 95.0 / 92.2 %, the teachers' ensemble 86.7 / 83.3 % on
  recordings, below the control: KD loses there; docs/probe-sets.md).

    python benchmarks/probe_sets.py sparse /tmp/probe-sparse [--recordings-per-class 9]

Sizes default to a small TAU-layout set: 9 recordings per scene, each rendered by device a and
one other device (about 1,200 training and 600 evaluation clips).
"""

from __future__ import annotations

import argparse
import functools
import time

import numpy as np

from asc_keras.config import SCENE_CLASSES
from asc_keras.data import read_tau
from asc_keras.data.ingredients import REC_SECONDS, SR, bandpass, filtered, freqs, rms
from asc_keras.data.synthetic import make_synthetic_tau

_CENTRES = np.geomspace(300.0, 6000.0, len(SCENE_CLASSES))  # one event band per scene (Hz)


def _background(rng, n, f, tilt):
    """Scene-independent background: coloured noise, sometimes a hum, distant babble."""
    beta = rng.uniform(0.3, 2.0)
    colour = (np.maximum(f, 20.0) / 1000.0) ** (-beta / 2 + tilt / 20)
    bg = filtered(rng.standard_normal(n).astype(np.float32), colour)
    bg /= rms(bg)
    t = np.arange(n, dtype=np.float32) / SR
    if rng.uniform() < 0.5:
        hum = sum(np.sin(2 * np.pi * rng.choice([50.0, 60.0]) * h * t) / h for h in range(1, 4))
        bg += hum / rms(hum) * 10 ** (rng.uniform(-24, -9) / 20)
    am = np.clip(np.sin(2 * np.pi * rng.uniform(2, 5) * t + rng.uniform(0, 6.3)), 0, None)
    babble = am * filtered(rng.standard_normal(n).astype(np.float32), bandpass(f, 200, 3000))
    bg += babble / rms(babble) * 10 ** (rng.uniform(-24, -6) / 20)
    return bg


def sparse_source(
    scene: str, rng: np.random.Generator, city_hum: float, tilt: float, events: float = 2.0
) -> np.ndarray:
    """10 s of scene-independent background with ``events`` short events of the scene's own band
    on average (Poisson)."""
    n = SR * REC_SECONDS
    f = freqs(n)
    mix = _background(rng, n, f, tilt)
    k = SCENE_CLASSES.index(scene)
    for _ in range(rng.poisson(events)):
        dur = rng.uniform(0.08, 0.3)
        m = int(dur * SR)
        start = int(rng.uniform(0, REC_SECONDS - dur) * SR)
        fc = _CENTRES[k] * 2 ** rng.normal(0.0, 0.25)  # neighbouring scenes' bands overlap
        fm = freqs(m)
        burst = filtered(
            rng.standard_normal(m).astype(np.float32), bandpass(fm, fc / 1.25, fc * 1.25, 4.0)
        )
        burst *= np.hanning(m).astype(np.float32)
        mix[start : start + m] += burst / rms(burst) * 10 ** (rng.uniform(-9, 3) / 20)
    return (0.1 * mix / rms(mix)).astype(np.float32)


_BETAS = np.linspace(0.2, 2.0, len(SCENE_CLASSES))


def stationary_source(
    scene: str, rng: np.random.Generator, city_hum: float, tilt: float,
    interference_db: tuple[float, float] = (-9.0, 0.0),
) -> np.ndarray:  # fmt: skip
    """A steady scene: its own noise colour and two resonances, plus scene-independent interference."""
    n = SR * REC_SECONDS
    f = freqs(n)
    k = SCENE_CLASSES.index(scene)
    beta = _BETAS[k] + rng.normal(0.0, 0.15)
    colour = (np.maximum(f, 20.0) / 1000.0) ** (-beta / 2 + tilt / 20)
    peaks = sum(
        np.exp(
            -0.5
            * ((np.log2(np.maximum(f, 20.0)) - np.log2(fc * 2 ** rng.normal(0, 0.1))) / 0.15) ** 2
        )
        for fc in (_CENTRES[k], _CENTRES[(3 * k + 4) % len(_CENTRES)] * 1.3)
    )
    x = filtered(rng.standard_normal(n).astype(np.float32), colour * (1.0 + 2.0 * peaks))
    x /= rms(x)
    x += _background(rng, n, f, tilt) * 10 ** (rng.uniform(*interference_db) / 20)
    return (0.1 * x / rms(x)).astype(np.float32)


def clear_source(scene: str, rng: np.random.Generator, city_hum: float, tilt: float) -> np.ndarray:
    """``stationary`` with its interference 15 dB lower: a set where a 1 s clip says almost as
    much as a recording, to see int8 and the students near the top of the scale."""
    return stationary_source(scene, rng, city_hum, tilt, interference_db=(-24.0, -15.0))


_F0 = np.geomspace(110.0, 880.0, len(SCENE_CLASSES))  # one pitch per scene, 1/3 octave apart (Hz)
# One modulation rate per scene (Hz), shuffled (stride 7 through the ten scenes) so that rate
# does not rise with pitch: neighbouring pitches get unrelated rates.
_AM = np.geomspace(0.5, 8.0, len(SCENE_CLASSES))[
    np.argsort(np.arange(len(SCENE_CLASSES)) * 7 % len(SCENE_CLASSES))
]


def tonal_source(scene: str, rng: np.random.Generator, city_hum: float, tilt: float) -> np.ndarray:
    """A harmonic tone at the scene's pitch (recording to recording 0.08 octave apart, std),
    drifting by 1 %, amplitude-modulated at the scene's rate, over background 0-6 dB below it."""
    n = SR * REC_SECONDS
    t = np.arange(n, dtype=np.float64) / SR
    k = SCENE_CLASSES.index(scene)
    f0 = _F0[k] * 2 ** rng.normal(0.0, 0.08)
    drift = 1.0 + 0.01 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t + rng.uniform(0, 6.3))
    phase = 2 * np.pi * f0 * np.cumsum(drift) / SR
    tone = sum(
        rng.uniform(0.3, 1.0) / h * np.sin(h * phase + rng.uniform(0, 6.3)) for h in range(1, 7)
    )
    am = _AM[k] * 2 ** rng.normal(0.0, 0.1)
    x = (tone * (0.6 + 0.4 * np.sin(2 * np.pi * am * t + rng.uniform(0, 6.3)))).astype(np.float32)
    x /= rms(x)
    x += _background(rng, n, freqs(n), tilt) * 10 ** (rng.uniform(-6.0, 0.0) / 20)
    return (0.1 * x / rms(x)).astype(np.float32)


SOURCES = {"sparse": sparse_source, "stationary": stationary_source, "clear": clear_source,
           "tonal": tonal_source}  # fmt: skip


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("model", choices=sorted(SOURCES))
    ap.add_argument("out")
    ap.add_argument("--recordings-per-class", type=int, default=9)
    ap.add_argument("--cities", type=int, default=3)
    ap.add_argument("--devices", type=int, default=1, help="devices besides a per recording")
    ap.add_argument("--events", type=float, default=None,
                    help="sparse only: mean events per 10 s recording (default 2: most 1 s clips "
                         "hold none)")  # fmt: skip
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--city-stratified",
        action="store_true",
        help="each scene's evaluation locations in distinct cities (as TAU's fold 1)",
    )
    args = ap.parse_args(argv)
    source = SOURCES[args.model]
    if args.events is not None:
        if args.model != "sparse":
            ap.error(f"--events sets the sparse model's events; the {args.model} model has none")
        if not args.events >= 0:  # NaN too
            ap.error(f"--events {args.events}: a mean count of events, 0 or more")
        # A partial of a module-level function: picklable for the worker processes.
        source = functools.partial(sparse_source, events=args.events)
    t0 = time.perf_counter()
    root = make_synthetic_tau(args.out, args.recordings_per_class, args.cities, args.seed,
                              extra_devices=args.devices, workers=args.workers,
                              source=source, city_stratified=args.city_stratified)  # fmt: skip
    ds = read_tau(root)
    print(f"{args.model}: {len(ds.train)} train / {len(ds.evaluate)} evaluate clips in {root} "
          f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
