"""Your own recordings for ``asc-keras finetune``: a folder per class, or a CSV listing them.

* **A folder** whose sub-folders are the classes (the folder name is the class): every WAV,
  FLAC or OGG file under a class folder, at any depth, is a recording of that class.
* **A CSV** with a header ``filename,label[,device]``; file names are relative to the CSV's
  folder and may not leave it (no absolute paths, no ``..``): the CSV is untrusted.

Recordings may have any length, rate and channel count.  The validation split is *by file*
(:func:`split_by_file`): the windows of one recording are never on both sides.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asc_keras.data.errors import DataError
from asc_keras.data.tables import outside_dataset

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


@dataclass(frozen=True)
class OwnRecordings:
    """Recordings and their classes.

    Attributes:
        source: the folder or CSV they were read from.
        files: (n,) absolute paths.
        labels: (n,) int class index into ``classes``.
        devices: (n,) device names ('unknown' when not given).
        classes: class names, sorted.
    """

    source: Path
    files: tuple[Path, ...]
    labels: np.ndarray
    devices: tuple[str, ...]
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, index) -> OwnRecordings:
        index = np.asarray(index, np.int64)
        return OwnRecordings(self.source, tuple(self.files[i] for i in index), self.labels[index],
                             tuple(self.devices[i] for i in index), self.classes)  # fmt: skip


def read_own_recordings(data: str | Path) -> OwnRecordings:
    """Recordings from a folder per class or a ``filename,label[,device]`` CSV (module docstring)."""
    data = Path(data)
    if data.is_dir():
        rows = _from_folders(data)
    elif data.is_file():
        rows = _from_csv(data)
    else:
        raise DataError(f"{data}: not found; pass a folder with one sub-folder per class, or a CSV")
    classes = tuple(sorted({label for _, label, _ in rows}))
    if len(classes) < 2:
        raise DataError(
            f"{data}: {len(classes)} class(es) found ({', '.join(classes) or 'none'}); "
            "fine-tuning needs at least two"
        )
    index = {c: i for i, c in enumerate(classes)}
    return OwnRecordings(data, tuple(f for f, _, _ in rows),
                         np.array([index[label] for _, label, _ in rows], np.int64),
                         tuple(d for _, _, d in rows), classes)  # fmt: skip


def _from_folders(root: Path) -> list[tuple[Path, str, str]]:
    rows = []
    folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    for folder in folders:
        files = sorted(f for f in folder.rglob("*") if _is_audio(f))
        if not files:
            raise DataError(
                f"{folder}: a class folder without WAV, FLAC or OGG files; add recordings or remove it"
            )
        rows += [(f.resolve(), folder.name, "unknown") for f in files]
    if not rows:
        raise DataError(
            f"{root}: no class folders; put the recordings of each class in a folder named after it"
        )
    return rows


def _is_audio(f: Path) -> bool:
    return f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES and not f.name.startswith(".")


def _from_csv(path: Path) -> list[tuple[Path, str, str]]:
    try:
        with path.open(newline="") as fh:
            table = list(csv.DictReader(fh))
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read as a CSV with a header line ({e})") from None
    if not table or not {"filename", "label"} <= set(table[0]):
        raise DataError(
            f"{path}: expected a comma-separated header 'filename,label[,device]' and one row per "
            "recording"
        )
    rows = []
    for number, row in enumerate(table, start=2):
        name, label = (row.get("filename") or "").strip(), (row.get("label") or "").strip()
        if not name or not label:
            raise DataError(f"{path}: row {number} has an empty filename or label")
        if outside_dataset(name):
            raise DataError(
                f"{path}: row {number} names {name!r}, outside the CSV's folder; "
                "file names are relative to it"
            )
        file = (path.parent / name).resolve()
        if not file.is_file():
            raise DataError(f"{path}: row {number}: {file} not found")
        rows.append((file, label, (row.get("device") or "").strip() or "unknown"))
    return rows


def split_by_file(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) file indices: ``fraction`` of each class's files, at least one where
    the class has two or more, drawn with ``seed``; a file's windows stay on its side."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the validation fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        files = np.flatnonzero(labels == c)
        k = min(len(files) - 1, max(1, int(round(fraction * len(files))))) if len(files) > 1 else 0
        val += rng.permutation(files)[:k].tolist()
    val = np.array(sorted(val), np.int64)
    return np.setdiff1d(np.arange(len(labels)), val), val


def split_by_group(
    groups, labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) item indices, whole groups on each side: :func:`split_by_file` over the
    groups (a group's class is its first item's), every item of a drawn group held out.

    Args:
        groups: (n,) a group name per item (e.g. its recording, or its location).
        labels: (n,) class per item.
    """
    groups = np.asarray(groups)
    names, first = np.unique(groups, return_index=True)
    _, drawn = split_by_file(np.asarray(labels)[first], fraction, seed)
    held = np.isin(groups, names[drawn])
    return np.flatnonzero(~held), np.flatnonzero(held)
