"""A memory-mapped cache of random log-mels for the benchmarks (the layout extract_features writes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def random_logmel_cache(path: Path, clips: int, rng: np.random.Generator) -> np.ndarray:
    """Write ``clips`` x 28 frames x 256 mels of float16 noise to ``path`` (.npy); return it memory-mapped."""
    feats = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(clips, 28, 256))
    feats[:] = rng.normal(-5, 2, feats.shape).astype(np.float16)
    feats.flush()
    del feats
    return np.load(path, mmap_mode="r", allow_pickle=False)
