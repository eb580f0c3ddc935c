"""Recordings of any length cut into a model's windows, as log-mels.

The windows are what ``asc-keras predict`` classifies, so a fine-tuned model trains on what it
will be asked: windows every ``hop`` seconds from the start, plus one zero-padded window over a
tail the others leave out; a recording shorter than one window is zero-padded to one, and counted.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from asc_keras.config import FeatureConfig
from asc_keras.data.audio import load_audio
from asc_keras.features.logmel import logmel


@dataclass
class Windows:
    """Log-mel windows of several recordings.

    Attributes:
        features: (n, frames, mels) float16 log-mels.
        file: (n,) index of each window's recording.
        padded: recordings shorter than one window, padded to one.
    """

    features: np.ndarray
    file: np.ndarray
    padded: list[str] = field(default_factory=list)


def cut(y: np.ndarray, window: int, hop: int | None = None) -> tuple[list[int], np.ndarray]:
    """(starts, (k, window) windows) of ``y``, in samples: every ``hop`` (default: ``window``)
    from 0, and a zero-padded window over any tail the others miss."""
    hop = hop or window
    starts = list(range(0, max(1, len(y) - window + 1), hop))
    if len(y) > window and starts[-1] + window < len(y):
        starts.append(starts[-1] + hop)  # cover the tail with a padded window
    segs = np.stack([np.pad(y[s : s + window], (0, max(0, s + window - len(y)))) for s in starts])
    return starts, segs


def recording_windows(
    files: Sequence[str | Path], cfg: FeatureConfig, progress: bool = True
) -> Windows:
    """Every window of every recording (decoded, downmixed and resampled to ``cfg``'s rate) as
    log-mels, with a progress bar; an unreadable file raises its AudioError, naming it."""
    window = int(round(cfg.clip_seconds * cfg.sample_rate))
    feats, index, padded = [], [], []
    bar = tqdm(files, unit="file", desc="windows", disable=not progress, file=sys.stderr)
    for i, f in enumerate(bar):
        y = load_audio(f, cfg.sample_rate, context="file")
        _, segs = cut(y, window)
        if len(y) < window:
            padded.append(str(f))
        feats.append(logmel(segs, cfg).astype(np.float16))
        index.append(np.full(len(segs), i, np.int64))
    return Windows(np.concatenate(feats), np.concatenate(index), padded)
