"""The other TAU-layout set MobileNetV2 trains on first (``teachers.pretrain_data``): the report's
AudioSet -> DCASE 2020 -> DCASE 2023 chain (sec. 3.1), its middle step.

Checked before any work (:func:`check_pretrain_data`); read in the teachers' stage as fold-1
recordings in MobileNetV2's features (:func:`pretrain_splits`), less every recording holding a
clip of this run's that the teachers must not learn from: those held out from them to weigh
their ensemble and judge the probe, and the evaluation fold.  A set that shares clips with the
run's -- the run's own folder, a copy of it, a bigger set it was drawn from -- would otherwise
teach MobileNetV2 those recordings first, and the held-out weights and the probe would read a
teacher that knows them by heart as one that knows more.  Clips are matched by file name (TAU's
names say scene, city, location, segment and device): TAU 2020's 10 s files and TAU 2022's 1 s
clips share no name, and lose nothing here.
"""

from __future__ import annotations

from pathlib import Path

from asc_keras.config import SystemConfig
from asc_keras.data import DataError, read_tau, rebuild_recordings
from asc_keras.data.splits import RecordingSplit
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
        read_tau(t.pretrain_data)
    except DataError as e:
        raise RunError(f"{name}: {e}") from None


def kept_from_teachers(held: RecordingSplit | None, evaluation: RecordingSplit | None) -> set[str]:
    """The file names of the run's clips the teachers must not learn from: those of the recordings
    held out from them (``held``) and of the evaluation fold."""
    return {Path(f).name for recs in (held, evaluation) if recs is not None
            for files in recs.files for f in files}  # fmt: skip


def pretrain_splits(
    cfg: SystemConfig, place: RunPlace, keep_out: set[str] = frozenset(), log=print
):
    """(train, evaluation) recordings of ``teachers.pretrain_data`` (fold 1), or None without it,
    in the MobileNetV2 teacher's features; no training recording holding a clip whose file name is
    in ``keep_out`` (:func:`kept_from_teachers`; how many were left out goes to ``log``).  The
    evaluation recordings only draw the pretraining's learning curve, and stay."""
    from asc_keras.features.cache import extract_features
    from asc_keras.models.panns_import import teacher_features

    t = cfg.teachers
    if not t.pretrain_data or t.pretrain_epochs <= 0:
        return None
    ds = read_tau(t.pretrain_data)
    recs, _ = rebuild_recordings(ds.split("all"))
    if not len(recs):
        raise DataError(
            f"{t.pretrain_data}: no complete 10 s recordings to pretrain the teacher on"
        )
    learn = recordings_of(recs, ds.train)
    shared = learn["files"].map(lambda files: any(Path(f).name in keep_out for f in files))
    if shared.any():
        log(f"   {int(shared.sum())} of the {len(learn)} training recordings of teachers.pretrain_data "
            "left out: they hold clips this run keeps from its teachers (held out to weigh them, "
            "or evaluated on)")  # fmt: skip
        learn = learn[~shared.to_numpy()].reset_index(drop=True)
    if not len(learn):
        raise DataError(
            f"{t.pretrain_data}: every training recording holds clips this run keeps from its "
            "teachers (held out to weigh them, or its evaluation fold): it is this run's own set, "
            "not another one to pretrain MobileNetV2 on -- pass another set, or leave pretrain_data out"
        )
    judge = recordings_of(recs, ds.evaluate)
    features = teacher_features("mobilenetv2", t, cfg.features)
    cache = extract_features(ds.root, list(recs["files"]), features, place.shared.features,
                             name="pretrain-recordings", progress=place.progress)  # fmt: skip
    return RecordingSplit.from_table(cache, learn), RecordingSplit.from_table(cache, judge)
