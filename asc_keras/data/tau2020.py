"""TAU Urban Acoustic Scenes 2020 Mobile development folders (and 2019's, 2018's): the 10 s
recordings TAU 2022's 1 s clips were cut from, one file each.

The layout is TAU 2022's (``meta.csv``, ``audio/``, ``evaluation_setup/fold1_*.csv``, tab-separated),
the files ``audio/<scene>-<city>-<location>-<segment>-<device>.wav``: a 2022 clip's name less its
1 s index, so a recording's id here is the ``recording_id`` its 2022 clips share
(:func:`~asc_keras.data.tau.parse_clip_name`).  Read for one use: the set MobileNetV2 trains on
before the run's (``teachers.pretrain_data``, the report's DCASE 2020 step).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from asc_keras.data.errors import DataError
from asc_keras.data.tables import (
    LABEL_OF,
    check_labels,
    check_meta_rows,
    check_source_labels,
    read_table,
)
from asc_keras.data.tau import recording_name_fields

RECORDING_COLUMNS = ("recording_id", "filename", "files", "label", "device")


@dataclass(frozen=True)
class RecordingSet:
    """A development folder of 10 s recordings: fold-1 ``train`` / ``evaluate`` tables with
    RECORDING_COLUMNS (``files``: the one file, as a 1-tuple, as rebuilt 2022 recordings list
    their ten clips)."""

    root: Path
    train: pd.DataFrame
    evaluate: pd.DataFrame


def parse_recording_name(filename: str) -> dict:
    """``audio/<scene>-<city>-<location>-<segment>-<device>.wav`` -> its fields and
    ``recording_id`` (the name's stem); DataError naming the file otherwise."""
    fields = recording_name_fields(filename)
    if fields is None:
        raise DataError(f"{filename}: not a 10 s recording's name, '<scene>-<city>-<location>-"
                        "<segment>-<device>.wav' as in TAU Urban Acoustic Scenes 2020 Mobile")  # fmt: skip
    return fields


def looks_like_recordings(root: str | Path) -> bool:
    """Whether ``root/meta.csv`` lists 10 s recordings' names (every one of them), not 1 s clips'."""
    try:
        names = read_table(Path(root).expanduser() / "meta.csv", ("filename",))["filename"]
        for name in names:
            parse_recording_name(name)
    except DataError:
        return False
    return len(names) > 0


def read_recording_set(root: str | Path, fold: int = 1) -> RecordingSet:
    """Index a folder of 10 s recordings (module doc): the fold's train and evaluate lists,
    checked as TAU 2022's reader checks them (labels, listed in meta.csv), against each name's
    scene and for the audio files' presence; meta.csv checked as TAU 2022's reader checks it
    (labels, duplicates, ``source_label``)."""
    root = Path(root).expanduser()
    meta = _read_meta(root / "meta.csv")
    tables = {}
    for split in ("train", "evaluate"):
        path = root / "evaluation_setup" / f"fold{fold}_{split}.csv"
        df = read_table(path, ("filename", "scene_label"))
        check_labels(df, path)
        unknown = ~df["filename"].isin(set(meta["filename"]))
        if unknown.any():
            raise DataError(f"{path}: {int(unknown.sum())} file(s) not listed in meta.csv, e.g. "
                            f"{df['filename'][unknown].iloc[0]}")  # fmt: skip
        tables[split] = _recordings(df, path, root)
    return RecordingSet(root, tables["train"], tables["evaluate"])


def _read_meta(path: Path) -> pd.DataFrame:
    meta = read_table(path, ("filename", "scene_label"))
    check_meta_rows(meta, path)
    devices = []
    for r, name in enumerate(meta["filename"]):
        try:
            devices.append(parse_recording_name(name)["device"])
        except DataError as e:
            raise DataError(f"{path}: row {r + 2}: {e}") from None
    check_source_labels(meta, np.array(devices, dtype=object), path)
    return meta


def _recordings(df: pd.DataFrame, path: Path, root: Path) -> pd.DataFrame:
    rows = []
    for r, (name, label) in enumerate(zip(df["filename"], df["scene_label"], strict=True)):
        try:
            f = parse_recording_name(name)
        except DataError as e:
            raise DataError(f"{path}: row {r + 2}: {e}") from None
        if f["scene"] != label:  # a label of the ten (check_labels), but not this file's
            raise DataError(f"{path}: row {r + 2}: label {label!r} is not the scene of {name}; "
                            "fix the row")  # fmt: skip
        if not (root / name).is_file():
            raise DataError(f"{root / name}: listed audio file does not exist; complete the "
                            "download into audio/, or remove the row")  # fmt: skip
        rows.append((f["recording_id"], name, (name,), LABEL_OF[label], f["device"]))
    out = pd.DataFrame(rows, columns=list(RECORDING_COLUMNS))
    out["label"] = out["label"].astype(np.int8)
    return out
