"""The teacher stages: train each teacher once, then store what the teachers say.

* ``teachers``: every teacher is trained once per work folder, on 10 s recordings (report sec.
  3.1) -- all training recordings but those held out to weigh the ensemble
  (``teachers.holdout_fraction``, :func:`held_out_recordings`) -- into
  ``work/teachers/<name>-<key>/`` (``final.keras`` and ``eval.json``), the key being everything
  it depends on; runs sharing a work folder wait for each other instead of training
  the same teacher twice.  A trained teacher is not even loaded here.
* ``targets``: the teachers' logits of every training clip (the distillation targets) and of
  every evaluation recording (the teachers' and their ensemble's scores) are computed once and
  stored beside each other (:class:`~asc_keras.distill.targets.SoftTargets`); only then are the
  teachers loaded.  With held-out recordings the ensemble's weights are fitted on them and stored
  with the logits.  A run whose targets exist loads no teacher.  T and the ensemble mode are
  applied by whoever reads the logits: one stored file serves any T and either mode.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np

from asc_keras.config import N_CLASSES, SystemConfig, TeacherConfig, teacher_architecture
from asc_keras.data import DataError
from asc_keras.data.own import split_by_group
from asc_keras.data.splits import RecordingSplit
from asc_keras.data.tau import parse_clip_name
from asc_keras.distill.losses import ENSEMBLE_MODES
from asc_keras.distill.targets import (
    SoftTargets,
    choose_target_source,
    fit_ensemble_weights,
    target_choice,
    teacher_logits,
)
from asc_keras.evaluate.target_words import describe_targets
from asc_keras.files import content_hash, work_lock
from asc_keras.metrics import classification_metrics, item_right
from asc_keras.stages.pretrain import kept_from_teachers, pretrain_splits
from asc_keras.stages.runner import StageRunner
from asc_keras.stages.shared import RunPlace, Splits

# The entries of a teacher's evaluation that results.json keeps.
_BRIEF = ("accuracy", "log_loss", "micro_accuracy", "per_device", "per_device_log_loss", "n",
          "transfer", "last_epoch_val_accuracy", "front_end")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class TeacherOutputs:
    """What the targets stage hands on: the stored training-clip logits, their file name (what a
    student depends on), and every teacher's and the ensemble's scores."""

    targets: SoftTargets | None
    key: str | None
    metrics: dict

    @classmethod
    def none(cls) -> TeacherOutputs:
        return cls(None, None, {})


def teacher_dir(cfg: SystemConfig, place: RunPlace, data_root: Path, name: str) -> Path:
    """``work/teachers/<name>-<key>``: key = everything a teacher depends on."""
    # From cfg.optim the teachers take all but the length, batch and peak LR (cfg.teachers' own).
    optim = {k: v for k, v in cfg.optim.key_dict(students=False).items()
             if k not in ("epochs", "steps", "batch_size", "peak_lr")}  # fmt: skip
    from asc_keras.models.panns_import import teacher_features
    from asc_keras.training.teachers import augment_read_by_teacher

    features = teacher_features(name, cfg.teachers, cfg.features)  # PANNs' for a PANNs MobileNetV2
    augment = augment_read_by_teacher(cfg.augment, cfg.teachers.view(name))  # what it trains with
    depends = {"name": name, "teachers": teacher_settings(cfg.teachers, name), "features": features,
               "augment": augment.key_dict(), "optim": optim, "data": str(Path(data_root).resolve()),
               "train_split": place.train_split, "seed": cfg.seed}  # fmt: skip
    if cfg.teachers.holdout_fraction > 0:  # what is held out: whole locations (held_out_recordings)
        depends["held_out_by"] = "location"
    if name == "mobilenetv2" and cfg.teachers.pretrain_data:  # its first set less the run's kept
        depends["pretrain_keeps_out"] = "recording_id"  # recordings (stages.pretrain)
    key = content_hash({k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
                        for k, v in depends.items()})  # fmt: skip
    return place.shared.teacher(name, key)


_ONLY = {"mobilenetv2": ("mobilenet_alpha", "pretrained_mobilenetv2", "frozen_epochs", "finetune_lr",
                         "pretrain_data", "pretrain_frozen_epochs", "pretrain_epochs", "pretrain_lr"),
         "cnn": ("cnn_width",), "bcresnet": ("bcresnet_width",)}  # fmt: skip


def teacher_settings(t: TeacherConfig, name: str) -> dict:
    """The teacher settings teacher ``name`` depends on: the shared ones (length, batch, LR, crop,
    mel pooling, mixup), its own entry of the per-teacher ones, not the other teachers' sizes and
    transfer learning, nor which teachers the ensemble holds (its front end: its features' key)."""
    t = t.view(name)  # its own view in place of the shared settings ('views' then {})
    d = dataclasses.asdict(t)
    d["pooling"], d["input_norm"] = t.entry(t.pooling, name), t.entry(t.input_norm, name)
    others = {k for n, keys in _ONLY.items() if n != teacher_architecture(name) for k in keys}
    skip = ("names", "inference_batch_size", "mobilenetv2_front_end", "views")
    if t.masks:  # the default before the field existed: trained teachers keep their keys
        skip += ("masks",)
    return {k: v for k, v in d.items() if k not in others and k not in skip}


def is_trained(folder: Path) -> bool:
    """A teacher folder whose training finished (its model and its evaluation are written)."""
    return (folder / "final.keras").is_file() and (folder / "eval.json").is_file()


def held_out_recordings(
    cfg: SystemConfig, recs: RecordingSplit
) -> tuple[RecordingSplit, RecordingSplit | None]:
    """(the training recordings the teachers learn from, those kept from them to weigh the
    ensemble): per class, ``teachers.holdout_fraction`` of the recording *locations* drawn with
    the run's seed, every recording made there held out; (all, None) at 0.

    By location, as the fold-1 split keeps its evaluation locations apart: the recordings of one
    location share its sound (in TAU and in the built-in set one 10 s segment is recorded by
    several devices), so a teacher that memorised a training recording would look right on
    another device's copy of it.  Measured on the built-in data, held out by recording: the
    teachers 55 / 50 / 45 % there against 22 / 40 / 29 % on the evaluation fold.
    """
    if not 0 <= cfg.teachers.holdout_fraction < 1:
        raise ValueError(f"teachers.holdout_fraction must be in [0, 1) (0: every training recording "
                         f"teaches, the plain average), got {cfg.teachers.holdout_fraction}")  # fmt: skip
    if cfg.teachers.holdout_fraction == 0 or recs is None:
        return recs, None
    places = [
        clip_location(files[0]) if files else name for name, files in zip(recs.names, recs.files)
    ]
    learn, held = split_by_group(places, recs.labels, cfg.teachers.holdout_fraction, cfg.seed)
    return recs.take(learn), recs.take(held)


def clip_location(clip: str) -> str:
    """``<scene>-<city>-<location>`` of a TAU clip name (another name: itself)."""
    try:
        f = parse_clip_name(clip)
    except DataError:
        return clip
    return f"{f['scene_from_name']}-{f['city']}-{f['location']}"


def teachers_stage(
    cfg: SystemConfig, place: RunPlace, runner: StageRunner, data_root: Path, splits: Splits
) -> dict[str, Path]:
    """Train every teacher that is not trained yet; return each teacher's folder by name."""
    from asc_keras.training.teachers import train_teacher

    folders, pretrain = {}, None
    for name in cfg.teachers.names:
        own = splits.of_teacher(name)  # its own front end's features, where it has one
        learn, held = held_out_recordings(cfg, own.train_recordings)
        d = teacher_dir(cfg, place, data_root, name)
        # Runs sharing a work folder train each teacher once: the others wait, then use it.
        with work_lock(d, f"teacher {d.name}", runner.log):
            if runner.forced("teachers") and d.exists():
                shutil.rmtree(d)
            if not is_trained(d):
                runner.log(f"-- teacher {name} ({d.name})")
                if name == "mobilenetv2" and pretrain is None:  # none of the run's held-out or
                    keep = kept_from_teachers(held, own.eval_recordings)  # evaluation recordings
                    pretrain = pretrain_splits(cfg, place, keep, runner.log)
                train_teacher(name, cfg, learn, own.eval_recordings, run_dir=d,
                              strategy=place.strategy, verbose=place.verbose,
                              pretrain=pretrain if name == "mobilenetv2" else None)  # fmt: skip
        folders[name] = d
    return folders


def targets_stage(
    cfg: SystemConfig,
    place: RunPlace,
    runner: StageRunner,
    folders: dict[str, Path],
    splits: Splits,
) -> TeacherOutputs:
    """The teachers' stored logits of every training clip and evaluation recording (computed
    once, the teachers loaded only then), and the scores made from them.

    With ``distill.target_source = 'recording'`` a clip's target is the teachers' output on its
    whole 10 s recording (its ten clips share it); clips of incomplete recordings, and every
    clip with 'clip', get the teachers' output on the 1 s clip; 'auto' takes one of the two by
    :func:`choose_target_source` (its evidence in the targets' meta, 'auto').
    """
    d, train, val = cfg.distill, splits.train, splits.eval_recordings
    dirs = [f.name for f in folders.values()]
    kind = d.target_source if d.target_source != "auto" else ("auto", d.auto_label_probability)
    key = content_hash((dirs, kind, splits.clip_cache_name, place.train_split))
    path = place.shared.targets(d.target_source, key)
    val_names = val.names if val is not None else ()
    ev_path = place.shared.ensemble_outputs(content_hash((dirs, val_names)))
    meta = {"target_source": d.target_source, "teachers": list(folders)}
    with work_lock(
        path, f"teacher outputs {path.name}", runner.log
    ):  # one run computes, others wait
        if runner.forced("targets") or not (_stored(path) and _stored(ev_path)):
            models = {name: load_teacher(f) for name, f in folders.items()}
            recs = splits.train_recordings
            rec_z = _recording_logits(cfg, models, splits)  # once: for the targets and the weights
            meta.update(_ensemble_weights(cfg, list(folders), rec_z, recs))
            if d.target_source == "auto":
                meta["auto"] = _auto_choice(cfg, rec_z, recs, meta)
                meta["target_source"] = meta["auto"]["source"]
            SoftTargets(_teacher_logits_per_clip(cfg, models, splits, rec_z, meta["target_source"]),
                        train.names, meta).save(path)  # fmt: skip
            z = _each(cfg, models, splits, "eval_recordings") if val is not None \
                else np.zeros((0, len(models), N_CLASSES), np.float32)  # fmt: skip
            SoftTargets(z, tuple(val_names), meta).save(ev_path)
    targets = SoftTargets.load(path).select(train.names)
    metrics = teacher_scores(cfg, folders, SoftTargets.load(ev_path), val, runner.log)
    runner.log(f"   soft targets: {describe_targets(target_choice(targets))}")
    return TeacherOutputs(targets, path.name, metrics)


def _auto_choice(cfg: SystemConfig, rec_z: np.ndarray | None, recs: RecordingSplit | None,
                 meta: dict) -> dict:  # fmt: skip
    """:func:`choose_target_source` on the ensemble (its stored weights) at T = 1 over the training
    recordings the teachers learned from (not those held out to weigh them)."""
    limit = cfg.distill.auto_label_probability
    if rec_z is None or recs is None:  # no complete recording: every clip takes its own target
        return choose_target_source(None, None, limit)
    learned, _ = held_out_recordings(cfg, recs)
    p = (
        SoftTargets(rec_z, recs.names, meta)
        .select(learned.names)
        .distribution(1.0, cfg.distill.ensemble)
    )
    return choose_target_source(p, learned.labels, limit)


def teacher_scores(cfg: SystemConfig, folders: dict[str, Path], outputs: SoftTargets,
                   val: RecordingSplit | None, log=print) -> dict:  # fmt: skip
    """Each teacher's own evaluation (its ``eval.json``) and, with several, the ensemble's at T = 1
    by the definition the soft targets use, from the stored evaluation-recording logits."""
    metrics = {}
    for name, folder in folders.items():
        m = json.loads((folder / "eval.json").read_text())
        metrics[name] = {k: m[k] for k in _BRIEF if k in m}
        log(f"   {name}: {100 * m['accuracy']:.1f} % on {m['n']} evaluation recordings (10 s)")
    if len(folders) > 1 and val is not None and len(val):
        mode = cfg.distill.ensemble
        p = outputs.select(val.names).distribution(1.0, mode)
        m = classification_metrics(val.labels, p, val.devices)
        metrics["ensemble"] = {k: m[k] for k in _BRIEF if k in m}  # and which recordings it gets:
        metrics["ensemble"]["recording_right"] = item_right(val.labels, p)
        w = outputs.weights(mode)
        if w is not None:
            metrics["ensemble"]["weights"] = dict(zip(folders, w.round(3).tolist()))
            metrics["ensemble"]["held_out"] = held = outputs.meta.get("held_out", {})
        weighing = "plain average" if w is None else "weights " + ", ".join(
            f"{n} {v:.1f}" for n, v in zip(folders, w)
        ) + f" (fitted on {held.get('recordings', '?')} held-out training recordings)"  # fmt: skip
        log(f"   ensemble: {100 * m['accuracy']:.1f} % ({weighing})")
    return metrics


def _each(cfg: SystemConfig, models: dict, splits: Splits, split: str, index=None) -> np.ndarray:
    """(examples, teachers, classes) logits of ``splits.<split>`` (at ``index``), each teacher
    fed its own front end's features of the same examples (:meth:`Splits.of_teacher`), found by
    name: a teacher's own clip split may hold only the clips that need it."""
    names = getattr(splits, split).names
    wanted = names if index is None else [names[i] for i in index]
    out = []
    for name, model in models.items():
        s = getattr(splits.of_teacher(name), split)
        at = dict(zip(s.names, s.rows))
        rows = np.array([at[n] for n in wanted], np.int64)
        out.append(
            teacher_logits([model], s.features, rows, batch_size=cfg.teachers.inference_batch_size)
        )
    return np.concatenate(out, axis=1)


def _recording_logits(cfg: SystemConfig, models: dict, splits: Splits) -> np.ndarray | None:
    """(recordings, teachers, classes) logits of every training recording, when the soft targets
    may come from recordings or the ensemble is weighed on held-out ones; else None."""
    needed = cfg.distill.target_source != "clip" or cfg.teachers.holdout_fraction > 0
    recs = splits.train_recordings
    if not needed or recs is None or not len(recs):
        return None
    return _each(cfg, models, splits, "train_recordings")


def _ensemble_weights(cfg: SystemConfig, names: list[str], rec_z: np.ndarray | None,
                      recs: RecordingSplit | None) -> dict:  # fmt: skip
    """{'weights': {mode: fitted weights}, 'held_out': {...}} from the teachers' logits ``rec_z`` of
    the training recordings ``recs``, on those held out (:func:`held_out_recordings`); {} without
    them (the plain average)."""
    _, held = held_out_recordings(cfg, recs)
    if held is None or not len(held) or len(names) < 2:
        return {}
    z = SoftTargets(rec_z, recs.names, {}).select(held.names).logits
    own = {name: float(np.mean(z[:, k].argmax(-1) == held.labels)) for k, name in enumerate(names)}
    weights = {mode: fit_ensemble_weights(z, held.labels, mode).tolist() for mode in ENSEMBLE_MODES}
    return {"weights": weights, "held_out": {"recordings": len(held), "accuracy": own}}


def _stored(path: Path) -> bool:
    return path.is_file() and path.with_suffix(".json").is_file()


def load_teacher(folder: Path):
    from asc_keras.models.common import load_model_file

    return load_model_file(folder / "final.keras", "a teacher")


def _teacher_logits_per_clip(
    cfg: SystemConfig, teachers: dict, splits: Splits, rec_logits, source: str
) -> np.ndarray:
    """(clips, teachers, classes) logits: with ``source`` 'recording' each clip's recording's
    (``rec_logits``, of ``splits.train_recordings``), else (or outside them) the clip's own."""
    train, recs = splits.train, splits.train_recordings
    logits = np.full((len(train), len(teachers), N_CLASSES), np.nan, np.float32)
    if source == "recording" and rec_logits is not None:
        pos = {f: i for i, f in enumerate(train.names)}
        for r, files in enumerate(recs.files):
            for f in files:
                if f in pos:
                    logits[pos[f]] = rec_logits[r]
    todo = np.where(np.isnan(logits[:, 0, 0]))[0]
    if len(todo):
        missing = [n for n, own in splits.own_front_end.items() if own.train is None]
        if missing:  # the features stage extracts them whenever a clip needs its own target
            raise RuntimeError(
                f"no clip features of {missing}'s own front end for {len(todo)} clip(s)"
            )
        logits[todo] = _each(cfg, teachers, splits, "train", todo)
    return logits
