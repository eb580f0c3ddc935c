"""Typed splits: the examples of one split as the models see them, built once and passed whole.

A split holds the feature cache's array (memory-mapped; shared, never copied) and, per
example, its row in that array, its class, its device and its name -- what CP-JKU's batches
carry as ``x, file, labels, devices, cities``.  Clips are 1 s files; recordings are the ten
clips of one 10 s recording, named by their files joined with '|' (the feature cache's item
name).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class ClipSplit:
    """Examples of one split: ``features[rows[i]]`` is example i, of class ``labels[i]``.

    Attributes:
        features: (items, frames, mels) cache array (float16 memmap), shared by every split.
        rows: (n,) int row of each example in ``features``.
        labels: (n,) int class index (``SCENE_CLASSES`` order).
        devices: (n,) str recording device ('a', 's1', ...).
        names: n item names (clip file names, or '|'-joined files for recordings).
    """

    features: np.ndarray
    rows: np.ndarray
    labels: np.ndarray
    devices: np.ndarray
    names: tuple[str, ...]

    @classmethod
    def from_table(cls, cache, table: pd.DataFrame) -> ClipSplit:
        """The clips of ``table`` (columns filename, label, device) in ``cache``."""
        return cls._of(cache, table, tuple(table["filename"]))

    @classmethod
    def _of(cls, cache, table: pd.DataFrame, names: tuple[str, ...], **more):
        return cls(
            cache.features,
            cache.rows(names),
            table["label"].to_numpy(),
            table["device"].to_numpy(),
            names,
            **more,
        )

    def __len__(self) -> int:
        return len(self.rows)

    def inputs(self) -> np.ndarray:
        """(n, frames, mels, 1) float32 model inputs, in example order (loads them into memory)."""
        return self.features[self.rows].astype(np.float32)[..., None]

    def take(self, index) -> ClipSplit:
        """The examples at ``index`` (ints), in that order: the same kind of split on the same cache."""
        i = np.asarray(index, np.int64)
        return replace(self, rows=self.rows[i], labels=self.labels[i], devices=self.devices[i],
                       names=tuple(self.names[k] for k in i), **self._take_more(i))  # fmt: skip

    def _take_more(self, i: np.ndarray) -> dict:
        return {}


@dataclass(frozen=True)
class RecordingSplit(ClipSplit):
    """10 s recordings (rebuilt from their clips); ``files[i]`` are recording i's clip files in order."""

    files: tuple[tuple[str, ...], ...] = ()

    @classmethod
    def from_table(cls, cache, table: pd.DataFrame) -> RecordingSplit:
        """The recordings of ``table`` (columns files, label, device; ``rebuild_recordings``) in ``cache``."""
        files = tuple(tuple(f) for f in table["files"])
        return cls._of(cache, table, tuple("|".join(f) for f in files), files=files)

    def _take_more(self, i: np.ndarray) -> dict:
        return {"files": tuple(self.files[k] for k in i)}
