"""The stages every system and the width search share: data, features, teachers, soft targets.

Their products live in the shared ``work`` folder, keyed by everything they depend on, so
systems with the same settings reuse them (teachers: systems 1-2 and 3-4).  Each stage is a
function of its inputs; :func:`prepare` runs them in order and returns one :class:`Prepared`.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np

from asc_keras.config import N_CLASSES, SystemConfig
from asc_keras.data import DataError, read_tau, rebuild_recordings
from asc_keras.data.splits import ClipSplit, RecordingSplit
from asc_keras.data.synthetic import is_complete, make_synthetic_tau
from asc_keras.files import content_hash, work_lock
from asc_keras.system.runner import StageRunner


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
    """

    out: Path
    work: Path
    data: Path | None = None
    eval_data: Path | None = None
    train_split: str = "train"
    strategy: str = "default"
    verbose: int | str = 2
    skip_bad_audio: bool = False  # leave out clips that cannot be read instead of stopping

    @property
    def progress(self) -> bool:
        return self.verbose not in (0, "0")


@dataclasses.dataclass(frozen=True)
class Splits:
    """The clips and recordings of a run, each split built once from its feature cache."""

    train: ClipSplit
    evaluate: ClipSplit
    train_recordings: RecordingSplit | None
    eval_recordings: RecordingSplit | None
    clip_cache_name: str  # the clip cache's folder name: what its features were made from


@dataclasses.dataclass(frozen=True)
class Prepared:
    """What the shared stages produce."""

    dataset: object  # asc_keras.data.TauDataset
    data_root: Path
    clip_cache: object  # asc_keras.features.cache.FeatureCache of every clip
    splits: Splits
    teacher_metrics: dict
    targets: object | None  # SoftTargets of the training clips (per-teacher logits), or None
    targets_key: str | None  # the stored targets' file name (what the student stage depends on)
    skipped_clips: list  # clips left out as unreadable (--skip-bad-audio)

    def soft(self, temperature: float) -> np.ndarray | None:
        """The ensemble's soft targets at ``temperature`` per training clip (None without teachers)."""
        return None if self.targets is None else self.targets.distribution(temperature)


def prepare(cfg: SystemConfig, place: RunPlace, runner: StageRunner) -> Prepared:
    """Run the shared stages in order: data, features, teachers, targets."""
    with runner.stage("data"):
        ds, root = data_stage(cfg, place, runner)
    with runner.stage("features"):
        clip_cache, splits, skipped = features_stage(cfg, place, ds)
    teachers, metrics, targets, key = [], {}, None, None
    if cfg.distill.enabled:
        with runner.stage("teachers"):
            teachers, metrics = teachers_stage(cfg, place, runner, root, splits)
        with runner.stage("targets"):
            targets, key = targets_stage(cfg, place, runner, root, teachers, splits)
    return Prepared(ds, root, clip_cache, splits, metrics, targets, key, skipped)


def data_stage(cfg: SystemConfig, place: RunPlace, runner: StageRunner):
    """The dataset index and its folder; the built-in set is generated into ``work`` if needed."""
    if place.data is None:
        size = cfg.data
        root = place.work / f"generated-r{size.recordings_per_class}-c{size.cities}-s{size.seed}"
        if not is_complete(root) or runner.forced("data"):
            runner.log(f"generating the built-in dataset in {root} ...")
            make_synthetic_tau(
                root, size.recordings_per_class, size.cities, size.seed, workers=size.workers
            )
    else:
        root = Path(place.data)
    ds = read_tau(root)
    runner.log(f"{root}: {len(ds.train)} train / {len(ds.evaluate)} evaluate clips")
    return ds, root


def features_stage(cfg: SystemConfig, place: RunPlace, ds):
    """Log-mel caches of every clip (and, with teachers, every rebuilt 10 s recording):
    (cache, splits, skipped clips).

    Clips that cannot be read (corrupt, not finite) stop the run at this stage, before any
    training, with the list of all of them; with ``place.skip_bad_audio`` they -- and the
    recordings that contain them -- are left out and returned as the skipped list.
    """
    from asc_keras.features.cache import extract_features

    root, skip = place.work / "features", place.skip_bad_audio
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
    if cfg.distill.enabled and len(recs):
        rec_cache = extract_features(ds.root, list(recs["files"]), cfg.features, root, name="recordings",
                                     progress=place.progress)  # fmt: skip
        train_recs = RecordingSplit.from_table(rec_cache, _recordings_of(recs, train_clips))
        eval_recs = RecordingSplit.from_table(rec_cache, _recordings_of(recs, eval_clips))
    splits = Splits(
        ClipSplit.from_table(clip_cache, train_clips),
        ClipSplit.from_table(clip_cache, eval_clips),
        train_recs,
        eval_recs,
        clip_cache.path.name,
    )
    if bad:
        print(
            f"left out {len(bad)} clip(s) that cannot be read (--skip-bad-audio), e.g. {sorted(bad)[0]}"
        )
    return clip_cache, splits, sorted(bad)


def _recordings_of(recs, clips):
    """The rows of ``recs`` whose recording has clips in ``clips``."""
    return recs[recs["recording_id"].isin(set(clips["recording_id"]))].reset_index(drop=True)


def teacher_dir(cfg: SystemConfig, place: RunPlace, data_root: Path, name: str) -> Path:
    """``work/teachers/<name>-<key>``: key = everything a teacher depends on."""
    # The teachers have their own epochs, batch size and peak LR (cfg.teachers); from cfg.optim
    # they take the schedule's shape, the weight decay and the BatchNorm momentum.
    optim = {
        k: v
        for k, v in dataclasses.asdict(cfg.optim).items()
        if k not in ("epochs", "batch_size", "peak_lr")
    }
    depends = {"name": name, "teachers": cfg.teachers, "features": cfg.features, "augment": cfg.augment,
               "optim": optim, "data": str(Path(data_root).resolve()), "train_split": place.train_split,
               "seed": cfg.seed}  # fmt: skip
    key = content_hash(
        {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in depends.items()}
    )
    return place.work / "teachers" / f"{name}-{key}"


def teachers_stage(
    cfg: SystemConfig, place: RunPlace, runner: StageRunner, data_root: Path, splits: Splits
):
    """Train (or load) every teacher on 10 s recordings: (models, metrics incl. the ensemble's)."""
    from asc_keras.distill.targets import ensemble_distribution, teacher_logits
    from asc_keras.evaluate.metrics import classification_metrics
    from asc_keras.training.teachers import train_teacher

    train, val = splits.train_recordings, splits.eval_recordings
    models, metrics = [], {}
    pretrain = pretrain_splits(cfg, place) if "mobilenetv2" in cfg.teachers.names else None
    for name in cfg.teachers.names:
        d = teacher_dir(cfg, place, data_root, name)
        runner.log(f"-- teacher {name} ({d.name})")
        # Runs sharing a work folder train each teacher once: the others wait, then load it.
        with work_lock(d, f"teacher {d.name}", runner.log):
            if runner.forced("teachers") and d.exists():
                shutil.rmtree(d)
            model, m = train_teacher(
                name, cfg, train, val, run_dir=d, strategy=place.strategy, verbose=place.verbose,
                pretrain=pretrain if name == "mobilenetv2" else None,
            )  # fmt: skip
        runner.log(
            f"   {name}: {100 * m['accuracy']:.1f} % on {len(val)} evaluation recordings (10 s)"
        )
        models.append(model)
        last_phase = d / (
            "finetune" if (d / "finetune").is_dir() else "train"
        )  # transfer learning: 2 phases
        metrics[name] = {
            **brief(m),
            "last_epoch_val_accuracy": last_val_accuracy(last_phase / "history.csv"),
        }
    if len(models) > 1 and len(val):
        # The ensemble at T = 1 by the one definition the soft targets use (distill.losses).
        z = teacher_logits(
            models, val.features, val.rows, batch_size=cfg.teachers.inference_batch_size
        )
        p = ensemble_distribution(z, 1.0, cfg.distill.ensemble)
        metrics["ensemble"] = brief(classification_metrics(val.labels, p, val.devices))
        runner.log(f"   ensemble: {100 * metrics['ensemble']['accuracy']:.1f} %")
    return models, metrics


def pretrain_splits(cfg: SystemConfig, place: RunPlace):
    """(train, evaluation) recordings of ``teachers.pretrain_data`` (fold 1), or None without it."""
    from asc_keras.features.cache import extract_features

    t = cfg.teachers
    if not t.pretrain_data or t.pretrain_epochs <= 0:
        return None
    ds = read_tau(t.pretrain_data)
    recs, _ = rebuild_recordings(ds.split("all"))
    if not len(recs):
        raise DataError(
            f"{t.pretrain_data}: no complete 10 s recordings to pretrain the teacher on"
        )
    cache = extract_features(ds.root, list(recs["files"]), cfg.features, place.work / "features",
                             name="pretrain-recordings", progress=place.progress)  # fmt: skip
    return (RecordingSplit.from_table(cache, _recordings_of(recs, ds.train)),
            RecordingSplit.from_table(cache, _recordings_of(recs, ds.evaluate)))  # fmt: skip


def targets_stage(
    cfg: SystemConfig,
    place: RunPlace,
    runner: StageRunner,
    data_root: Path,
    teachers,
    splits: Splits,
):
    """Per-teacher logits of every training clip, stored once in ``work/targets``: (targets, file name).

    With ``distill.target_source = 'recording'`` a clip's target is the teachers' output on its
    whole 10 s recording (its ten clips share it); clips of incomplete recordings, and every
    clip with 'clip', get the teachers' output on the 1 s clip.  The ensemble mode and T are
    applied when read (:meth:`SoftTargets.distribution`).
    """
    from asc_keras.distill.targets import SoftTargets

    d, names, train = cfg.distill, list(cfg.teachers.names), splits.train
    dirs = [teacher_dir(cfg, place, data_root, n).name for n in names]
    key = content_hash((dirs, d.target_source, splits.clip_cache_name, place.train_split))
    path = place.work / "targets" / f"{d.target_source}-per-teacher-{key}.npy"
    meta = {"ensemble": d.ensemble, "target_source": d.target_source, "teachers": names}
    with work_lock(path, f"soft targets {path.name}", runner.log):  # one run computes, others wait
        if path.is_file() and path.with_suffix(".json").is_file() and not runner.forced("targets"):
            stored = SoftTargets.load(path)
            meta = {**stored.meta, "ensemble": d.ensemble}
            return SoftTargets(stored.logits, stored.items, meta).select(train.names), path.name
        targets = SoftTargets(_teacher_logits_per_clip(cfg, teachers, splits), train.names, meta)
        targets.save(path)
    return targets, path.name


def _teacher_logits_per_clip(cfg: SystemConfig, teachers, splits: Splits) -> np.ndarray:
    """(clips, teachers, classes) logits: each clip's recording's, else the clip's own."""
    from asc_keras.distill.targets import teacher_logits

    train, recs, batch = splits.train, splits.train_recordings, cfg.teachers.inference_batch_size
    logits = np.full((len(train), len(teachers), N_CLASSES), np.nan, np.float32)
    if cfg.distill.target_source == "recording" and recs is not None and len(recs):
        rec_logits = teacher_logits(teachers, recs.features, recs.rows, batch_size=batch)
        pos = {f: i for i, f in enumerate(train.names)}
        for r, files in enumerate(recs.files):
            for f in files:
                if f in pos:
                    logits[pos[f]] = rec_logits[r]
    todo = np.where(np.isnan(logits[:, 0, 0]))[0]
    if len(todo):
        logits[todo] = teacher_logits(teachers, train.features, train.rows[todo], batch_size=batch)
    return logits


def last_val_accuracy(history_csv: Path) -> float | None:
    """The last epoch's ``val_accuracy`` of a training run's CSV log (None without one)."""
    import pandas as pd

    if not Path(history_csv).is_file():
        return None
    h = pd.read_csv(history_csv)
    return float(h["val_accuracy"].iloc[-1]) if "val_accuracy" in h and len(h) else None


def brief(m: dict) -> dict:
    """The headline entries of a metrics dict (for results.json's teacher rows)."""
    return {
        k: m[k]
        for k in (
            "accuracy",
            "log_loss",
            "micro_accuracy",
            "per_device",
            "per_device_log_loss",
            "n",
            "transfer",
        )
        if k in m
    }
