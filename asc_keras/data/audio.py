"""Audio loading: decode, downmix, resample, crop/pad, with counted fix-ups.

Decoding is soundfile (libsndfile: WAV, FLAC, OGG); resampling is soxr, the
backend of librosa's 'soxr_hq'.  Problems a long job can repair (another sample rate, more
channels, another length) are fixed and *counted* in an :class:`AudioFixes`
so the caller prints one summary instead of crashing or flooding the log.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from asc_keras.data.errors import AudioError

TAU_SAMPLE_RATE = 44100  # TAU Urban Acoustic Scenes 2022 Mobile: 44.1 kHz mono
SILENCE_PEAK = 1e-5  # a file whose peak is below -100 dBFS is counted (and warned about) as silent
# A file whose peak is above +6 dBFS is counted (and warned about) as over full scale: integer PCM
# cannot exceed 0 dBFS, so only a float file can, and one this loud was scaled by mistake (integer
# sample values stored as float are +90 dBFS); its log-mels sit far above every training clip's.
# +6 dB, not 0: a float export may keep a little headroom above 1, and resampling overshoots.
OVER_FULL_SCALE_PEAK = 2.0
# A data set's clip whose decoded length is under this fraction of the clip length is damaged
# (truncated), not a short recording: every clip of TAU 2022 Mobile is 1 s long.  A few samples
# short (an export's rounding) is padded and counted.
MIN_CLIP_FRACTION = 0.9
_HINTS = {
    "dataset": "Replace it with a good copy or remove it from the CSV files that list it.",
    "file": "Check the recording (or its export) and try again.",
}


@dataclass
class AudioFixes:
    """Counts of repaired files by kind ('resampled', 'downmixed', 'padded', 'cropped')."""

    counts: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, kind: str, path: str | Path) -> None:
        with self._lock:
            self.counts[kind] += 1
            self.examples.setdefault(kind, str(path))

    def merge(self, other: AudioFixes | dict) -> None:
        counts, examples = (
            (other.counts, other.examples)
            if isinstance(other, AudioFixes)
            else (Counter(other.get("counts", {})), other.get("examples", {}))
        )
        with self._lock:
            self.counts.update(counts)
            for k, v in examples.items():
                self.examples.setdefault(k, v)

    def to_dict(self) -> dict:
        return {"counts": dict(self.counts), "examples": dict(self.examples)}

    def summary(self) -> str:
        """One line, e.g. '3 files resampled (e.g. audio/x.wav), 1 file downmixed ...'; '' if none."""
        parts = [
            f"{n} file{'s' if n != 1 else ''} {kind} (e.g. {self.examples[kind]})"
            for kind, n in sorted(self.counts.items())
        ]
        return ", ".join(parts)


def load_audio(
    path: str | Path,
    sample_rate: int,
    *,
    duration: float | None = None,
    expected_rate: int | None = None,
    fixes: AudioFixes | None = None,
    context: str = "dataset",
    min_fraction: float | None = None,
) -> np.ndarray:
    """Read an audio file as mono float32 at ``sample_rate`` Hz.

    Args:
        path: WAV/FLAC/OGG file.
        sample_rate: rate of the returned signal (Hz); other rates are resampled (soxr).
        duration: if given, the signal is cropped or zero-padded to ``duration`` seconds.
        expected_rate: the dataset's native rate; a file at another rate is counted as
            'resampled' in ``fixes`` (resampling to ``sample_rate`` itself is not a fix-up).
        fixes: optional counter of repairs (and of silent files, 'silent', and of float files
            louder than +6 dBFS, 'over full scale').
        context: 'dataset' (a listed clip: the fix is to replace or unlist it) or 'file' (a file
            given to predict): chooses the advice in error messages.
        min_fraction: with ``duration``, a file shorter than this fraction of it is an error
            (a damaged clip), not padded (data set clips: :data:`MIN_CLIP_FRACTION`).

    Returns:
        float32 array of shape (samples,).

    Raises:
        AudioError: the file does not exist, cannot be decoded, holds no samples, holds
            samples that are not finite (NaN or infinite), or is far shorter than ``duration``
            (``min_fraction``): never classified silently.
    """
    path = Path(path)
    hint = _HINTS[context]
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except FileNotFoundError:
        raise AudioError(f"{path}: audio file not found. Check the path. {hint}") from None
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as e:
        if not path.exists():
            raise AudioError(f"{path}: audio file not found. Check the path. {hint}") from None
        raise AudioError(
            f"{path}: cannot decode audio ({e}): corrupt or not WAV/FLAC/OGG. {hint}"
        ) from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: audio file holds no samples. {hint}")
    finite = np.isfinite(data)
    if not finite.all():
        bad = int(data.size - finite.sum())
        raise AudioError(
            f"{path}: audio is not finite ({bad} of {data.size} samples are NaN or infinite). {hint}"
        )
    if fixes is not None:
        _count_level(float(np.abs(data).max()), path, fixes)
    if data.shape[1] > 1:
        data = data.mean(axis=1, keepdims=True)
        if fixes is not None:
            fixes.add("downmixed", path)
    y = data[:, 0]
    if expected_rate is not None and rate != expected_rate and fixes is not None:
        fixes.add("resampled", path)
    if duration is not None:
        # Judge length at the file's own rate so resampling rounding is not counted.
        want = int(round(duration * rate))
        if min_fraction is not None and y.shape[0] < min_fraction * want:
            raise AudioError(
                f"{path}: {y.shape[0] / rate:.3f} s of audio where every clip lasts {duration:g} s: "
                f"truncated or damaged. {hint}"
            )
        if abs(y.shape[0] - want) > 1 and fixes is not None:
            fixes.add("padded" if y.shape[0] < want else "cropped", path)
    if rate != sample_rate:
        # soxr is librosa's resampling backend; called directly it is ~15x faster per
        # 1 s clip than librosa.resample(res_type="soxr_hq"), with the same quality.
        y = soxr.resample(y, rate, sample_rate, quality="HQ")
    if duration is not None:
        y = fit_length(y, int(round(duration * sample_rate)))
    return np.ascontiguousarray(y, dtype=np.float32)


def _count_level(peak: float, path: Path, fixes: AudioFixes) -> None:
    """Counts a file whose ``peak`` (linear, full scale 1) is silent or over full scale."""
    if peak < SILENCE_PEAK:
        fixes.add("silent", path)
    if peak > OVER_FULL_SCALE_PEAK:
        fixes.add("over full scale", path)


def fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad the last axis to ``n`` samples."""
    if y.shape[-1] >= n:
        return y[..., :n]
    pad = [(0, 0)] * (y.ndim - 1) + [(0, n - y.shape[-1])]
    return np.pad(y, pad)
