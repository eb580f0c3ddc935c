"""TAU-layout tables (tab-separated, a header line), read and checked row by row: every file
name inside the data set, every scene label one of the ten, every file listed once, each
``source_label`` the device its file's name says.  Shared by the TAU 2022 reader
(:mod:`asc_keras.data.tau`), the 10 s recordings' (:mod:`asc_keras.data.tau2020`) and the
DCASE evaluation listing; a bad row is a DataError naming the file, the row and the fix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from asc_keras.config import SCENE_CLASSES
from asc_keras.data.errors import DataError

LABEL_OF = {name: i for i, name in enumerate(SCENE_CLASSES)}


def read_table(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    """A tab-separated TAU table with ``required`` columns, every file name inside the data set."""
    if not path.is_file():
        raise DataError(
            f"{path}: file not found. A TAU 2022 Mobile development folder (and a TAU 2020 one, for "
            "teachers.pretrain_data) holds meta.csv, audio/ and evaluation_setup/fold1_train.csv, "
            "fold1_evaluate.csv (2022's fold1_test.csv too); pass that folder."
        )
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise DataError(
            f"{path}: cannot parse as a tab-separated CSV with a header line ({e})."
        ) from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        hint = " (is it tab-separated?)" if len(df.columns) == 1 else ""
        raise DataError(
            f"{path}: missing column(s) {missing}; found {list(df.columns)}{hint}. "
            f"Expected a tab-separated header with {list(required)}."
        )
    empty = df["filename"].str.strip() == ""
    if empty.any():
        raise DataError(f"{path}: row {int(np.argmax(empty.values)) + 2} has an empty filename.")
    outside = df["filename"].map(outside_dataset)
    if outside.any():
        row = int(np.argmax(outside.values))
        raise DataError(
            f"{path}: row {row + 2} names {df['filename'].iloc[row]!r}, outside the data set folder; "
            "file names are relative to it (audio/<clip>.wav)."
        )
    return df


def outside_dataset(name: str) -> bool:
    """An absolute path or one that climbs out with '..': not a file of the data set."""
    p = Path(name)
    return p.is_absolute() or name.startswith("\\") or ".." in p.parts


def check_labels(df: pd.DataFrame, path: Path) -> None:
    bad = ~df["scene_label"].isin(LABEL_OF)
    if bad.any():
        row = int(np.argmax(bad.values))
        raise DataError(
            f"{path}: unknown scene label {df['scene_label'].iloc[row]!r} in row {row + 2} "
            f"({df['filename'].iloc[row]}); the 10 official labels are {list(SCENE_CLASSES)}. "
            f"{int(bad.sum())} row(s) affected: fix or remove them."
        )


def check_meta_rows(meta: pd.DataFrame, meta_path: Path) -> None:
    """Every scene label one of the ten, every file listed once; DataError naming the row."""
    check_labels(meta, meta_path)
    dup = meta["filename"].duplicated()
    if dup.any():
        raise DataError(
            f"{meta_path}: {int(dup.sum())} duplicated filename row(s), e.g. "
            f"{meta['filename'][dup].iloc[0]}; remove the duplicates."
        )


def check_source_labels(meta: pd.DataFrame, devices, meta_path: Path) -> None:
    """meta.csv's ``source_label`` (where given) the device of each file's name (``devices``)."""
    if "source_label" not in meta.columns:
        return
    disagree = (meta["source_label"].values != devices) & (meta["source_label"].values != "")
    if disagree.any():
        r = int(np.argmax(disagree))
        raise DataError(
            f"{meta_path}: row {r + 2}: source_label {meta['source_label'].iloc[r]!r} "
            f"does not match the device in {meta['filename'].iloc[r]}."
        )
