"""The other TAU-layout set MobileNetV2 trains on first (``teachers.pretrain_data``): the report's
AudioSet -> DCASE 2020 -> DCASE 2023 chain (sec. 3.1), its middle step.

The set is a TAU 2022-layout folder of 1 s clips (its 10 s recordings rebuilt) or a TAU 2020
Mobile development folder of the 10 s recordings those clips were cut from
(:mod:`asc_keras.data.tau2020`).  Checked before any work (:func:`check_pretrain_data`); read in
the teachers' stage as fold-1 recordings in MobileNetV2's features (:func:`pretrain_splits`),
less every recording this run keeps from its teachers: those held out to weigh their ensemble
and judge the probe, and the evaluation fold's.  A set holding them -- TAU 2020 under a TAU 2022
run, the run's own folder, a copy -- would teach MobileNetV2 those recordings first, and the
held-out weights and the probe would read a teacher that knows them by heart as one that knows
more.  Recordings are matched by id (scene, city, location, segment, device: a TAU 2020 file's
stem, a TAU 2022 clip's name less its 1 s index); other segments of a held-out location are not
the same audio and stay.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from asc_keras.config import SystemConfig
from asc_keras.data import DataError, read_tau, rebuild_recordings
from asc_keras.data.splits import RecordingSplit
from asc_keras.data.tau import SEGMENTS_PER_RECORDING, parse_clip_name
from asc_keras.data.tau2020 import RecordingSet, looks_like_recordings, read_recording_set
from asc_keras.stages.runner import RunError
from asc_keras.stages.shared import RunPlace, recordings_of


def check_pretrain_data(cfg: SystemConfig) -> None:
    """``teachers.pretrain_data`` and its epochs checked now, the set's tables read: a setting the
    teachers' stage would pass over without a word (no epochs, no data, no MobileNetV2 to train
    on it), or a folder that is no TAU-layout set, stops the run before any data is generated or
    trained on -- not after the data, features and the first teacher's minutes."""
    t = cfg.teachers
    if not cfg.distill.enabled:
        return
    epochs = t.pretrain_epochs > 0 or t.pretrain_frozen_epochs > 0
    if not t.pretrain_data:
        if epochs:
            raise RunError(
                "teachers.pretrain_epochs / pretrain_frozen_epochs ask MobileNetV2 to train first "
                "on another TAU-layout set, but teachers.pretrain_data names none: pass --set "
                "teachers.pretrain_data=/path/to/that/set, or leave the epochs at 0"
            )
        return
    name = f"teachers.pretrain_data={t.pretrain_data}"
    if "mobilenetv2" not in t.names:
        raise RunError(f"{name}: only the MobileNetV2 teacher trains on it first (the report's "
                       f"AudioSet -> DCASE 2020 -> 2023 chain), and teachers.names {list(t.names)} "
                       "has none: add mobilenetv2, or leave pretrain_data out")  # fmt: skip
    if t.pretrain_epochs <= 0:
        raise RunError(f"{name}: teachers.pretrain_epochs is {t.pretrain_epochs}, so MobileNetV2 "
                       "would never train on it: set the epochs it trains there before this set "
                       "(e.g. --set teachers.pretrain_epochs=20), or leave pretrain_data out")  # fmt: skip
    if not Path(t.pretrain_data).expanduser().is_dir():
        raise RunError(f"{name}: folder not found. Pass another TAU-layout development folder "
                       "(meta.csv, audio/, evaluation_setup/), e.g. TAU Urban Acoustic Scenes "
                       "2020 Mobile's, or leave pretrain_data out")  # fmt: skip
    try:
        read_pretrain_set(t.pretrain_data)
    except DataError as e:
        raise RunError(f"{name}: {e}") from None


def read_pretrain_set(root) -> RecordingSet:
    """The fold-1 train and evaluate recordings of a TAU 2020-layout folder of 10 s recordings, or
    of a TAU 2022-layout folder of 1 s clips rebuilt into theirs; DataError naming the folder
    where it has no complete recording."""
    if looks_like_recordings(root):
        found = read_recording_set(root)
    else:
        ds = read_tau(root)
        recs, _ = rebuild_recordings(ds.split("all"))
        found = RecordingSet(
            ds.root, recordings_of(recs, ds.train), recordings_of(recs, ds.evaluate)
        )
    if not len(found.train):
        raise DataError(f"{root}: no complete 10 s recording in its fold-1 training split to "
                        "pretrain the teacher on")  # fmt: skip
    return found


def kept_from_teachers(held: RecordingSplit | None, evaluation: RecordingSplit | None) -> set[str]:
    """The ids of the run's recordings the teachers must not learn from: those held out from them
    (``held``) and the evaluation fold's (the ``recording_id`` of each one's first clip)."""
    return {parse_clip_name(files[0])["recording_id"] for recs in (held, evaluation)
            if recs is not None for files in recs.files}  # fmt: skip


def pretrain_splits(
    cfg: SystemConfig, place: RunPlace, keep_out: set[str] = frozenset(), log=print
):
    """(train, evaluation) recordings of ``teachers.pretrain_data`` (fold 1), or None without it,
    in the MobileNetV2 teacher's features; no training recording whose id is in ``keep_out``
    (:func:`kept_from_teachers`; how many were left out goes to ``log``).  The evaluation
    recordings only draw the pretraining's learning curve, and stay."""
    from asc_keras.features.cache import extract_features
    from asc_keras.models.panns_import import teacher_features

    t = cfg.teachers
    if not t.pretrain_data or t.pretrain_epochs <= 0:
        return None
    found = read_pretrain_set(t.pretrain_data)
    learn, judge = found.train, found.evaluate
    # One cache for every run on the set, whatever each keeps out (the seed draws the held-out).
    items = list(dict.fromkeys(list(learn["files"]) + list(judge["files"])))
    shared = learn["recording_id"].isin(keep_out).to_numpy()
    if shared.any():
        log(f"   {int(shared.sum())} of the {len(learn)} training recordings of teachers.pretrain_data "
            "left out: this run keeps them from its teachers (held out to weigh them, or evaluated "
            "on)")  # fmt: skip
        learn = learn[~shared].reset_index(drop=True)
    if not len(learn):
        raise DataError(
            f"{t.pretrain_data}: every training recording is one this run keeps from its teachers "
            "(held out to weigh them, or its evaluation fold): it is this run's own set, not "
            "another one to pretrain MobileNetV2 on -- pass another set, or leave pretrain_data out"
        )
    features = teacher_features("mobilenetv2", t, cfg.features)
    if len(items[0]) == 1:  # a 10 s file a recording (TAU 2020): read whole, not as a 1 s clip
        features = dataclasses.replace(
            features, clip_seconds=features.clip_seconds * SEGMENTS_PER_RECORDING
        )
        items = [files[0] for files in items]
    cache = extract_features(found.root, items, features, place.shared.features,
                             name="pretrain-recordings", progress=place.progress)  # fmt: skip
    return RecordingSplit.from_table(cache, learn), RecordingSplit.from_table(cache, judge)
