"""Reader for the TAU Urban Acoustic Scenes 2022 Mobile development layout.

Layout (tab-separated CSVs with a header line)::

    ROOT/meta.csv                              filename, scene_label, identifier, source_label
    ROOT/evaluation_setup/fold1_train.csv      filename, scene_label
    ROOT/evaluation_setup/fold1_evaluate.csv   filename, scene_label
    ROOT/evaluation_setup/fold1_test.csv       filename
    ROOT/audio/<scene>-<city>-<location>-<segment>-<1 s index>-<device>.wav

Clip tables are pandas DataFrames with the columns of :data:`CLIP_COLUMNS`.
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
from asc_keras.log import warn

CLIP_COLUMNS = (
    "filename",
    "scene",
    "label",
    "city",
    "location",
    "device",
    "recording_id",
    "segment",
)
SEGMENTS_PER_RECORDING = 10  # TAU 2022: 1 s clips cut from 10 s recordings


@dataclass(frozen=True)
class TauDataset:
    """An indexed TAU-layout dataset: ``clips`` (all of meta.csv) and the fold's splits.

    ``train``/``evaluate`` hold CLIP_COLUMNS; ``test`` holds at least 'filename'
    (labels are used when meta.csv knows them).  ``audio_path(f)`` resolves a
    CSV file name to a path.
    """

    root: Path
    clips: pd.DataFrame
    train: pd.DataFrame
    evaluate: pd.DataFrame
    test: pd.DataFrame
    fold: int = 1

    def audio_path(self, filename: str) -> Path:
        return self.root / filename

    def split(self, name: str) -> pd.DataFrame:
        """'train', 'evaluate', 'test', or 'all' (train + evaluate: the submission retrain)."""
        if name == "all":
            return pd.concat([self.train, self.evaluate], ignore_index=True)
        if name not in ("train", "evaluate", "test"):
            raise ValueError(f"unknown split {name!r}: use train, evaluate, test or all")
        return getattr(self, name)


_A_RECORDING = ("a 10 s recording's name, as in TAU Urban Acoustic Scenes 2020 Mobile; the task's data is 1 s clips "
                "(TAU 2022 Mobile's layout). Pass that folder as --data; a TAU 2020 folder serves as MobileNetV2's "
                "first set (--set teachers.pretrain_data=...).")  # fmt: skip


def parse_clip_name(filename: str) -> dict:
    """Split ``audio/<scene>-<city>-<location>-<segment>-<index>-<device>.wav`` into fields.

    The segment field may itself hold dashes; the 1 s index and the device are
    the last two fields.  Raises DataError if the name does not have that form.
    """
    stem = Path(filename).stem
    parts = stem.split("-")
    if len(parts) < 6 or not parts[-2].isdigit():
        raise DataError(f"{filename}: " + (_A_RECORDING if recording_name_fields(filename) else
            "file name is not '<scene>-<city>-<location>-<segment>-<index>-<device>.wav' as in TAU Urban "
            "Acoustic Scenes 2022 Mobile; rename the file or fix the CSV row."))  # fmt: skip
    scene, city, location = parts[0], parts[1], parts[2]
    segment_id = "-".join(parts[3:-2])
    device = parts[-1]
    return {
        "scene_from_name": scene,
        "city": city,
        "location": location,
        "device": device,
        "segment": int(parts[-2]),
        "recording_id": f"{scene}-{city}-{location}-{segment_id}-{device}",
    }


def recording_name_fields(filename: str) -> dict | None:
    """A 10 s recording's name ``<scene>-<city>-<location>-<segment>-<device>.wav`` (TAU 2020 Mobile's:
    a 2022 clip's less its 1 s index) -> scene, device, ``recording_id`` (the stem its clips share); else None."""
    parts = Path(filename).stem.split("-")
    if len(parts) != 5 or not parts[3].isdigit():
        return None
    return {"scene": parts[0], "device": parts[4], "recording_id": "-".join(parts)}


def _index_clips(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    rows = []
    for f in df["filename"]:
        try:
            rows.append(parse_clip_name(f))
        except DataError as e:
            raise DataError(f"{path}: {e}") from None
    fields = pd.DataFrame(rows, index=df.index)
    mismatch = fields["scene_from_name"] != df["scene_label"]
    if mismatch.any():
        r = int(np.argmax(mismatch.values))
        raise DataError(
            f"{path}: row {r + 2}: label {df['scene_label'].iloc[r]!r} does not match the "
            f"scene in the file name {df['filename'].iloc[r]}; fix the CSV row."
        )
    out = pd.DataFrame(
        {
            "filename": df["filename"].values,
            "scene": df["scene_label"].values,
            "label": df["scene_label"].map(LABEL_OF).astype(np.int8).values,
            "city": fields["city"].values,
            "location": fields["location"].values,
            "device": fields["device"].values,
            "recording_id": fields["recording_id"].values,
            "segment": fields["segment"].astype(np.int16).values,
        }
    )
    return out


def read_tau(root: str | Path, fold: int = 1, check_audio: bool = True) -> TauDataset:
    """Index a TAU Urban Acoustic Scenes 2022 Mobile development folder.

    Args:
        root: folder holding meta.csv, audio/ and evaluation_setup/.
        fold: evaluation setup fold (the official setup has fold 1 only).
        check_audio: verify that every listed audio file exists (one stat per file;
            about a second for the 230 k-clip set).

    Raises:
        DataError: naming the file and what is wrong (missing folder/CSV, missing
            columns, unknown label, listed audio file absent, fold file listing a
            clip meta.csv does not have).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(
            f"{root}: dataset directory not found. Pass the TAU 2022 Mobile development "
            "folder (holding meta.csv, audio/, evaluation_setup/), or leave --data out to "
            "use the built-in generated dataset."
        )
    clips = _read_meta(root / "meta.csv")
    splits = _read_fold(root / "evaluation_setup", fold, clips)
    if check_audio:
        _check_audio_files(root, splits)
    return TauDataset(
        root=root,
        clips=clips,
        train=splits["train"],
        evaluate=splits["evaluate"],
        test=splits["test"],
        fold=fold,
    )


def _read_meta(meta_path: Path) -> pd.DataFrame:
    """meta.csv, checked (labels, duplicates, devices), as the clip index."""
    meta = read_table(meta_path, ("filename", "scene_label"))
    check_meta_rows(meta, meta_path)
    clips = _index_clips(meta, meta_path)
    check_source_labels(meta, clips["device"].values, meta_path)
    return clips


def _read_fold(setup: Path, fold: int, clips: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The fold's train / evaluate / test lists, checked against meta.csv: {split: clip rows}."""
    by_name = clips.set_index("filename")
    splits = {}
    for split, required in (
        ("train", ("filename", "scene_label")),
        ("evaluate", ("filename", "scene_label")),
        ("test", ("filename",)),
    ):
        path = setup / f"fold{fold}_{split}.csv"
        df = read_table(path, required)
        if "scene_label" in df.columns:
            check_labels(df, path)
        unknown = ~df["filename"].isin(by_name.index)
        if unknown.any():
            raise DataError(
                f"{path}: {int(unknown.sum())} file(s) not listed in meta.csv, e.g. "
                f"{df['filename'][unknown].iloc[0]}; the fold files and meta.csv disagree."
            )
        part = by_name.loc[df["filename"].values].reset_index()
        if "scene_label" in df.columns and (part["scene"].values != df["scene_label"].values).any():
            r = int(np.argmax(part["scene"].values != df["scene_label"].values))
            raise DataError(
                f"{path}: row {r + 2}: label of {df['filename'].iloc[r]} differs from meta.csv."
            )
        splits[split] = part[list(CLIP_COLUMNS)]

    return splits


def _check_audio_files(root: Path, splits: dict[str, pd.DataFrame]) -> None:
    """Every listed audio file exists, or a DataError naming the first missing one."""
    files = pd.concat([splits["train"], splits["evaluate"], splits["test"]])["filename"].unique()
    missing = [f for f in files if not (root / f).is_file()]
    if missing:
        raise DataError(
            f"{root / missing[0]}: listed audio file does not exist ({len(missing)} of "
            f"{len(files)} listed files missing). Complete the download/unzip of the "
            "audio archives into audio/, or remove the rows."
        )


def rebuild_recordings(
    clips: pd.DataFrame, segments: int = SEGMENTS_PER_RECORDING, strict: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Group 1 s clips into their original recordings, ordered by the 1 s index.

    Args:
        clips: a clip table (CLIP_COLUMNS).
        segments: clips a complete recording has (10 for the 10 s TAU recordings).
        strict: raise instead of warning when some recordings are incomplete.

    Returns:
        (recordings, problems).  ``recordings`` has one row per complete recording:
        recording_id, scene, label, city, location, device, files (tuple of
        ``segments`` file names in time order), clip_rows (their row positions in
        ``clips``).  ``problems`` lists recordings left out, with the reason
        ('missing segments [..]' or 'duplicate segments [..]'); they are reported,
        never padded.
    """
    ordered = clips.reset_index(drop=True).assign(_row=np.arange(len(clips)))
    ordered = ordered.sort_values(["recording_id", "segment"], kind="stable")
    recs, problems = [], []
    for rid, g in ordered.groupby("recording_id", sort=True):
        seg = g["segment"].to_numpy()
        dups = sorted(set(seg[pd.Series(seg).duplicated().values].tolist()))
        missing = sorted(set(range(segments)) - set(seg.tolist()))
        extra = sorted(s for s in set(seg.tolist()) if s >= segments)
        if dups or missing or extra:
            why = "; ".join(
                x
                for x in (
                    f"missing segments {missing}" if missing else "",
                    f"duplicate segments {dups}" if dups else "",
                    f"segment index out of range {extra}" if extra else "",
                )
                if x
            )
            problems.append({"recording_id": rid, "problem": why, "files": tuple(g["filename"])})
            continue
        first = g.iloc[0]
        recs.append(
            {
                "recording_id": rid,
                "scene": first["scene"],
                "label": first["label"],
                "city": first["city"],
                "location": first["location"],
                "device": first["device"],
                "files": tuple(g["filename"]),
                "clip_rows": tuple(g["_row"]),
            }
        )
    problems_df = pd.DataFrame(problems, columns=["recording_id", "problem", "files"])
    if len(problems_df):
        msg = (
            f"{len(problems_df)} of {len(problems_df) + len(recs)} recordings are incomplete and left "
            f"out of the 10 s set, e.g. {problems_df['recording_id'].iloc[0]}: {problems_df['problem'].iloc[0]}"
        )
        if strict:
            raise DataError(msg)
        warn(msg)
    cols = ["recording_id", "scene", "label", "city", "location", "device", "files", "clip_rows"]
    return pd.DataFrame(recs, columns=cols), problems_df
