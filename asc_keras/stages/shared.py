"""The stages every system, the width search and the ablation share: data, features, then the
teachers and their stored outputs (:mod:`asc_keras.stages.teachers`).

Their products live in the shared ``work`` folder (:class:`~asc_keras.stages.layout.WorkLayout`),
keyed by everything they depend on, so systems with the same settings reuse them (teachers:
systems 1-2 and 3-4).  Each stage is a function of its inputs;
:func:`asc_keras.orchestration.run.prepare` runs them in order and returns one :class:`Prepared`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from asc_keras.config import FeatureConfig, SystemConfig
from asc_keras.data import DataError, TauDataset, read_tau, rebuild_recordings
from asc_keras.data.splits import ClipSplit, RecordingSplit
from asc_keras.data.synthetic import is_complete, make_synthetic_tau
from asc_keras.distill.targets import SoftTargets
from asc_keras.features.cache import FeatureCache
from asc_keras.log import warn
from asc_keras.stages.layout import RunLayout, WorkLayout
from asc_keras.stages.runner import StageRunner


@dataclasses.dataclass(frozen=True)
class RunPlace:
    """Where a run reads and writes, and how it trains (what every stage may read, nothing more).

    Attributes:
        out: the run's output folder; work: the shared caches, teachers and targets.
        data: TAU-layout development folder (None: the built-in generated set in ``work``).
        eval_data: optional evaluation-set folder whose predictions the report stage writes.
        train_split: 'train' (fold 1) or 'all' (train + evaluate, the final submission).
        strategy: 'default', 'mirrored' or 'multiworker' (tf.distribute); verbose: Keras verbosity.
        skip_bad_audio: leave out unreadable clips (listed in results.json) instead of stopping.
        init_from: a ``.keras`` model whose weights the KD student starts from (``--init-from``).
        beside: train the stages that need no teacher in a second process (stages.beside) --
            None: where that pays (a CPU of 2+ cores, no strategy); False: never (``--one-process``).
    """

    out: Path
    work: Path
    data: Path | None = None
    eval_data: Path | None = None
    train_split: str = "train"
    strategy: str = "default"
    verbose: int | str = 2
    skip_bad_audio: bool = False  # leave out clips that cannot be read instead of stopping
    init_from: Path | None = None
    beside: bool | None = None

    @property
    def progress(self) -> bool:
        return self.verbose not in (0, "0")

    @property
    def files(self) -> RunLayout:
        """The run's output files."""
        return RunLayout(self.out)

    @property
    def shared(self) -> WorkLayout:
        """The shared work folder's files."""
        return WorkLayout(self.work)


@dataclasses.dataclass(frozen=True)
class OwnFrontEnd:
    """A teacher's own front end (PANNs' log-mels for the pretrained MobileNetV2): the run's
    training recordings and evaluation recordings, in the same order, and the training clips that
    may take a target of their own (all unless target_source is 'recording', then those outside
    every complete recording; None when none do), from caches of its ``features``."""

    features: FeatureConfig
    train_recordings: RecordingSplit | None
    eval_recordings: RecordingSplit | None
    train: ClipSplit | None


@dataclasses.dataclass(frozen=True)
class Splits:
    """The clips and recordings of a run, each split built once from its feature cache."""

    train: ClipSplit
    evaluate: ClipSplit
    train_recordings: RecordingSplit | None
    eval_recordings: RecordingSplit | None
    clip_cache_name: str  # the clip cache's folder name: what its features were made from
    own_front_end: dict[str, OwnFrontEnd] = dataclasses.field(default_factory=dict)  # by teacher

    def of_teacher(self, name: str) -> Splits:
        """The splits as teacher ``name`` sees them: its own front end's, where it has one (the
        same recordings in the same order; of the training clips, those that need it)."""
        own = self.own_front_end.get(name)
        if own is None:
            return self
        train = self.train if own.train is None else own.train
        return dataclasses.replace(self, train=train, train_recordings=own.train_recordings,
                                   eval_recordings=own.eval_recordings, own_front_end={})  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Prepared:
    """What the shared stages produce.

    ``targets``: the teachers' stored logits of every training clip (None without teachers);
    ``targets_key``: their file's name, what a student trained on them depends on;
    ``teacher_metrics``: each teacher's and the ensemble's scores on the evaluation recordings.
    """

    dataset: TauDataset
    data_root: Path
    clip_cache: FeatureCache  # every clip's log-mels
    splits: Splits
    teacher_metrics: dict
    targets: SoftTargets | None
    targets_key: str | None
    skipped_clips: list[str]  # clips left out as unreadable (--skip-bad-audio)
    teacher_folders: dict[str, Path] = dataclasses.field(default_factory=dict)  # trained teachers


def data_stage(cfg: SystemConfig, place: RunPlace, runner: StageRunner):
    """The dataset index and its folder; the built-in set is generated into ``work`` if needed."""
    if place.data is None:
        size = cfg.data
        root = place.shared.generated(size)
        if not is_complete(root) or runner.forced("data"):
            runner.log(f"generating the built-in dataset in {root} ...")
            make_synthetic_tau(root, size.recordings_per_class, size.cities, size.seed,
                               extra_devices=size.extra_devices, workers=size.workers)  # fmt: skip
    else:
        root = Path(place.data)
    ds = read_tau(root)
    runner.log(f"{root}: {len(ds.train)} train / {len(ds.evaluate)} evaluate clips")
    return ds, root


def features_stage(cfg: SystemConfig, place: RunPlace, ds: TauDataset, teachers: bool = True):
    """Log-mel caches of every clip (and, with teachers, every rebuilt 10 s recording):
    (cache, splits, skipped clips).

    ``teachers`` False (students that learn from none, :func:`~asc_keras.orchestration.run.prepare`):
    the recordings are cached as with teachers, to score the students on them, where both splits
    have complete ones; a set sampled by clip goes on without them (scored on clips only).

    Clips that cannot be read (corrupt, not finite) stop the run at this stage, before any
    training, with the list of all of them; with ``place.skip_bad_audio`` they -- and the
    recordings that contain them -- are left out and returned as the skipped list.
    """
    from asc_keras.features.cache import extract_features

    root, skip = place.shared.features, place.skip_bad_audio
    clips = list(dict.fromkeys(list(ds.train["filename"]) + list(ds.evaluate["filename"])))
    clip_cache = extract_features(ds.root, clips, cfg.features, root, name="clips", progress=place.progress,
                                  skip_bad=skip)  # fmt: skip
    bad = set(clip_cache.bad_items)
    if bad and not skip:  # a cache completed by an earlier --skip-bad-audio run
        raise DataError(f"{len(bad)} clip(s) cannot be read, e.g. {sorted(bad)[0]}; fix or unlist them, "
                        "or run with --skip-bad-audio")  # fmt: skip
    train_clips = ds.split(place.train_split)
    train_clips = train_clips[~train_clips["filename"].isin(bad)].reset_index(drop=True)
    eval_clips = ds.evaluate[~ds.evaluate["filename"].isin(bad)].reset_index(drop=True)
    train_recs = eval_recs = None
    recs, _ = rebuild_recordings(ds.split("all"))
    recs = recs[[not bad.intersection(files) for files in recs["files"]]] if len(recs) else recs
    if cfg.distill.enabled:
        learn, judge = (
            recordings_of(recs, c) if len(recs) else recs for c in (train_clips, eval_clips)
        )
        if teachers:  # they need whole recordings; students alone are scored on them if any
            check_whole_recordings(ds.root, learn, judge)
        if len(learn) and len(judge):
            rec_cache = extract_features(ds.root, list(recs["files"]), cfg.features, root, name="recordings",
                                         progress=place.progress)  # fmt: skip
            train_recs = RecordingSplit.from_table(rec_cache, learn)
            eval_recs = RecordingSplit.from_table(rec_cache, judge)
        else:
            warn(f"{ds.root}: no complete 10 s recording in both splits (a set sampled by clip): "
                 "the students are scored on clips only")  # fmt: skip
    splits = Splits(
        ClipSplit.from_table(clip_cache, train_clips),
        ClipSplit.from_table(clip_cache, eval_clips),
        train_recs,
        eval_recs,
        clip_cache.path.name,
        _own_front_ends(cfg, place, ds, recs, train_clips, eval_clips)
        if train_recs is not None
        else {},
    )
    if bad:
        warn(
            f"left out {len(bad)} clip(s) that cannot be read (--skip-bad-audio), e.g. {sorted(bad)[0]}"
        )
    return clip_cache, splits, sorted(bad)


def _own_front_ends(
    cfg: SystemConfig, place: RunPlace, ds: TauDataset, recs, train_clips, eval_clips
):
    """{teacher: OwnFrontEnd} for the teachers fed features other than the run's (PANNs'
    MobileNetV2: :func:`asc_keras.models.panns_import.teacher_features`), from caches of their own."""
    from asc_keras.features.cache import extract_features
    from asc_keras.models.panns_import import teacher_features

    train_recs, eval_recs = recordings_of(recs, train_clips), recordings_of(recs, eval_clips)
    # The clips that may take a target of their own: all unless target_source is 'recording'
    # ('auto' chooses after this stage), then those outside every complete recording.
    need = train_clips
    if cfg.distill.target_source == "recording":
        in_recordings = {c for files in train_recs["files"] for c in files}
        need = train_clips[~train_clips["filename"].isin(in_recordings)]
    out = {}
    for name in cfg.teachers.names:
        f = teacher_features(name, cfg.teachers, cfg.features)
        if f == cfg.features:
            continue
        tag = "panns" if f.log == "db" else f.key()
        cache = extract_features(ds.root, list(recs["files"]), f, place.shared.features, name=f"recordings-{tag}",
                                 progress=place.progress)  # fmt: skip
        clips = None
        if len(need):
            clip_cache = extract_features(ds.root, list(need["filename"]), f, place.shared.features,
                                          name=f"clips-{tag}", progress=place.progress)  # fmt: skip
            clips = ClipSplit.from_table(clip_cache, need)
        out[name] = OwnFrontEnd(f, RecordingSplit.from_table(cache, train_recs),
                                RecordingSplit.from_table(cache, eval_recs), clips)  # fmt: skip
    return out


def check_whole_recordings(root: Path, train_recs, eval_recs) -> None:
    """The teachers learn from and are scored on whole 10 s recordings (report sec. 3.1): a
    DataError naming the set and the fix where the training or the evaluation split has none
    complete (all ten 1 s clips, none unreadable) -- a set sampled by clip, not by recording."""
    for split, recs in (("training", train_recs), ("evaluation", eval_recs)):
        if not len(recs):
            raise DataError(
                f"{root}: no complete 10 s recording in the {split} split (a recording is complete "
                "with all ten of its 1 s clips, <scene>-<city>-<location>-<segment>-<0..9>-<device>"
                ".wav, each readable): the teachers learn from and are scored on whole recordings "
                "(report sec. 3.1).  Sample the set by recording, keeping every clip of each, as "
                "TAU's splits do; or run without teachers: --set distill.enabled=false"
            )


def recordings_of(recs, clips):
    """The rows of ``recs`` whose recording has clips in ``clips``."""
    return recs[recs["recording_id"].isin(set(clips["recording_id"]))].reset_index(drop=True)
