"""Parallel recordings: one stretch of sound heard through several devices.

TAU Urban Acoustic Scenes 2022 Mobile records its segments with device A and, for part of them,
at the same time with B and C, and simulates S1-S6 from A's audio: the clips
``<scene>-<city>-<location>-<segment>-<index>-<device>.wav`` that differ only in the device are
one sound through different devices (the built-in and the probe sets follow that layout).  A
name of another form (a user's own CSV) has no parallels: its group is the example alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from asc_keras.data.errors import DataError
from asc_keras.data.tau import parse_clip_name


def sound_of(name: str) -> str:
    """The sound an example is of: its name without the device ('|'-joined recordings: each
    file's), or the whole name where it is not of the TAU form."""
    sounds = []
    for file in name.split("|"):
        try:  # the one reading of a TAU name: its recording (device last) and its 1 s index
            fields = parse_clip_name(file)
        except DataError:
            sounds.append(file)
            continue
        sounds.append(f"{fields['recording_id'].rsplit('-', 1)[0]}-{fields['segment']}")
    return "|".join(sounds)


def parallel_table(names: Sequence[str]) -> np.ndarray:
    """Which examples are the same sound through other devices.

    Args:
        names: n example names (clip files, or '|'-joined recordings).
    Returns:
        (n, K) int64: row i lists the positions in ``names`` of example i's sound, i itself
        first, the rest in order, padded with -1; K is the largest group (1: no parallels).
    """
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(sound_of(name), []).append(i)
    width = max((len(g) for g in groups.values()), default=1)
    table = np.full((len(names), width), -1, np.int64)
    for members in groups.values():
        for i in members:
            row = [i, *(j for j in members if j != i)]
            table[i, : len(row)] = row
    return table


def draw_parallel(table: np.ndarray, idx: np.ndarray, u: np.ndarray) -> np.ndarray:
    """For examples ``idx``, one of each one's parallels (itself included), uniformly by ``u``.

    Args:
        table: (n, K) from :func:`parallel_table`.
        idx: (B,) example positions; u: (B,) uniform numbers in [0, 1).
    Returns:
        (B,) int64 positions: ``table[idx, floor(u * size)]``, size the group's members.
    """
    rows = table[idx]
    size = (rows >= 0).sum(axis=1)
    col = np.minimum((np.asarray(u, np.float64) * size).astype(np.int64), size - 1)
    return rows[np.arange(len(idx)), col]
