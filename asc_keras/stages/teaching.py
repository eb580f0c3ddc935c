"""Who teaches the KD student on each of its batches.

Where the soft targets are clip-level (``distill.target_source`` 'clip', or 'auto' taking it) and
``distill.clip_targets`` is 'live', the teachers themselves run on every augmented batch the
student trains on -- the masked, mixed view it sees, not the clean clip their stored outputs
are of (consistent teaching, Beyer et al., 2022) -- weighed as their stored ensemble is.  A
teacher of weight 0 adds nothing to the target and is not run.  Recording-level targets stay
stored: a 1 s view of a recording is not what such teachers know.  The CE control's live share
of the target (``distill.control_share``) is for stored targets only: it stands in for the
consistency with the augmented view that stored targets lack, which live teachers have (on the
probe sets the teachers live alone beat them with the control's half: docs/probe-sets.md, "Live
teachers").

Live teaching pays where the teachers know more about a clip than the student can learn from the
labels, and costs where they know less (``tonal``: they lose to the CE control on clips by 10
points, and live KD loses 3.5 points to it, where the stored targets with the control's half
tie).  ``clip_targets: auto`` asks which holds before the student trains, on data neither the
evaluation fold nor the teachers saw: the probe student (:func:`probe_stage`) -- the same student,
recipe and seed, trained with CE on the training clips the teachers learned from -- is scored on
the clips of the recordings held out from them (``teachers.holdout_fraction``), where the teachers'
ensemble is scored from its stored outputs, both by the probability they give the label
(:func:`~asc_keras.stages.probe.clip_lead`).  The teachers run live on a lead there whose one-sided
p (a sign-flip test over the held-out locations) is below ``distill.live_lead_p``: 0.05, a clear
lead.  Not any lead (1): the held-out locations are heard through the training devices, and an
unclear lead there went either way on the devices no training clip came from (``clear`` 42 / 0 / 1,
p 0.202 / 0.053 / 0.132: live +2.4 ± 0.7 points over the control, the control alone −0.2 ± 1.5;
``tonal`` 1, p 0.085: live −7.2, the control alone +0.2; docs/probe-sets.md, "Any lead?").  With
``distill.probe_devices`` (the quick profile: 3) the probe and the teachers also hear each held-out
clip through simulated devices, and the lead is on its label's probability over its own view and
theirs (``stages.probe_devices``): the devices no training clip came from are what the held-out
locations cannot show.  Where not, the stored targets serve with the control's share -- or, with
``distill.control_share_no_lead`` (the quick profile: 1), the control's share is that: at 1 the KD
student learns from its CE control alone, run live (born-again, consistent teaching), since
teachers with no clear lead over the student cost it more than they teach (``tonal``, seeds
42 / 0 / 1: the stored targets with the control's half −1.3 ± 1.1 points against the control, the
control alone +0.7 ± 1.1; docs/probe-sets.md, "No lead, no teachers").
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np

from asc_keras.config import SystemConfig
from asc_keras.distill.targets import SoftTargets, target_choice
from asc_keras.files import content_hash, work_lock, write_json
from asc_keras.stages.probe import (
    asks_probe,
    clip_lead,
    clip_level,
    held_out_split,
    read_probe,
    target_kind,
)
from asc_keras.stages.runner import StageRunner
from asc_keras.stages.shared import RunPlace, Splits
from asc_keras.stages.teachers import load_teacher
from asc_keras.training.student import kd_alpha, kd_temperature


@dataclasses.dataclass(frozen=True)
class LiveTeachers:
    """The teachers run on each batch: their names, models and ensemble weights (None: 1/K)."""

    names: tuple[str, ...]
    models: tuple
    weights: tuple[float, ...] | None


def _running(
    cfg: SystemConfig, targets: SoftTargets | None, splits: Splits
) -> tuple[list[str], list[float] | None]:
    """(names, weights) of the teachers of ``targets`` that would run live -- those of weight
    above 0, their weights renormalised (None: the plain average) -- or ([], None) where the
    configuration and the targets' kind say stored."""
    d = cfg.distill
    if not (clip_level(cfg, targets) and d.clip_targets in ("live", "auto")):
        return [], None
    if d.clip_targets == "auto":  # live only on a lead on the held-out clips (live_lead_p)
        lead = clip_lead(cfg, targets, splits)
        if lead is None or not lead["live"]:
            return [], None
    names = list(targets.meta.get("teachers") or [])
    w = targets.weights(d.ensemble)
    keep = [k for k in range(len(names)) if w is None or w[k] > 0]
    weights = None if w is None else [float(w[k] / sum(w[j] for j in keep)) for k in keep]
    return [names[k] for k in keep], weights


def _own_front_end(names: list[str], splits: Splits) -> list[str]:
    """Those of ``names`` fed features of their own (PANNs' MobileNetV2): they cannot see the
    student's view, so the teachers' targets stay stored."""
    return sorted(set(names) & set(splits.own_front_end))


def runs_live(cfg: SystemConfig, targets: SoftTargets | None, splits: Splits) -> bool:
    """Whether the teachers of ``targets`` run live under the student (module doc)."""
    names, _ = _running(cfg, targets, splits)
    return bool(names) and not _own_front_end(names, splits)


def control_share(cfg: SystemConfig, targets: SoftTargets | None, splits: Splits) -> float:
    """The CE control's share of the KD target: 0 where the teachers of ``targets`` run live;
    ``distill.control_share_no_lead`` (where set) where 'auto' found them no lead over the probe
    (at ``distill.live_lead_p``); ``distill.control_share`` otherwise (module doc)."""
    d = cfg.distill
    if runs_live(cfg, targets, splits):
        return 0.0
    if d.control_share_no_lead is not None and asks_probe(cfg, targets):
        lead = clip_lead(cfg, targets, splits)
        if lead is not None and not lead["live"]:
            return d.control_share_no_lead
    return d.control_share


def teaching_config(cfg: SystemConfig, targets: SoftTargets | None, splits: Splits) -> SystemConfig:
    """``cfg`` with the KD student's ``distill.control_share`` (:func:`control_share`) and ``alpha``
    (``recording_alpha``, where set, where the teachers' part is of whole recordings): what its
    training, pruning and QAT read."""
    d, share = cfg.distill, control_share(cfg, targets, splits)
    alpha = kd_alpha(d, target_kind(targets) == "recording", share)
    if (share, alpha) == (d.control_share, d.alpha):
        return cfg
    return dataclasses.replace(cfg, distill=dataclasses.replace(d, control_share=share, alpha=alpha))  # fmt: skip


def live_teachers(
    cfg: SystemConfig, targets: SoftTargets | None, folders: dict[str, Path], splits: Splits
) -> LiveTeachers | None:
    """The teachers of ``targets`` (its ``meta['teachers']``, its weights for the configured
    ensemble mode), loaded from ``folders``, where they run live (:func:`runs_live`); None where
    they do not -- with a warning where 'live' was asked for and a teacher of weight above 0
    takes features of its own: the stored targets then serve, with the control's share."""
    names, weights = _running(cfg, targets, splits)
    own = _own_front_end(names, splits)
    if own:
        warnings.warn(
            f"distill.clip_targets '{cfg.distill.clip_targets}' runs the teachers on the "
            f"student's log-mels, but {own} "
            "take features of their own front end: their stored clip-level targets are used "
            "(set distill.clip_targets=stored to say so)", stacklevel=2,
        )  # fmt: skip
    if not names or own:
        return None
    return LiveTeachers(tuple(names), tuple(load_teacher(folders[n]) for n in names),
                        None if weights is None else tuple(weights))  # fmt: skip


def teaching_record(cfg: SystemConfig, targets: SoftTargets | None, splits: Splits) -> dict | None:
    """``results.json``'s 'soft_targets': :func:`~asc_keras.distill.targets.target_choice` with
    whether the teachers ran live, the control's share (0 in a run without a control: the
    configuration check refuses a share there) and, where ``distill.clip_targets`` 'auto' chose,
    the held-out comparison (:func:`~asc_keras.stages.probe.clip_lead`)."""
    s, live = control_share(cfg, targets, splits), runs_live(cfg, targets, splits)
    t = target_choice(targets, s, cfg.distill.control_share_by, live)
    if t is not None:  # the T and α the KD term read (live_temperature, recording_alpha: where)
        t["temperature"] = kd_temperature(cfg.distill, live, s)
        t["alpha"] = kd_alpha(cfg.distill, target_kind(targets) == "recording", s)
    lead = clip_lead(cfg, targets, splits) if asks_probe(cfg, targets) else None
    if t and t.get("live") and cfg.distill.teacher_view == "parallel":
        t = {**t, "teacher_view": "parallel"}  # what the live teachers heard (data.parallel)
    return t if t is None or lead is None else {**t, "lead": lead}


def probe_stage(cfg: SystemConfig, place: RunPlace, runner: StageRunner, targets: SoftTargets | None,
                splits: Splits, folders: dict[str, Path] | None = None) -> SoftTargets | None:  # fmt: skip
    """``targets`` with the probe student's record in ``meta['probe']``
    (:func:`~asc_keras.stages.probe.read_probe`) where ``distill.clip_targets`` 'auto' must choose
    (clip-level targets; module doc); else ``targets``.

    The probe is the student of the run's width, augmentation, schedule, length and seed, trained
    with CE on the training clips the teachers learned from and scored on the clean clips of the
    recordings held out from them.  It is kept in the shared work folder, keyed by all of that,
    so the run, the width search and the ablation share it; its training resumes.  With
    ``distill.probe_devices`` above 0 the probe and the teachers (trained in ``folders``) also hear
    those clips through simulated devices (``stages.probe_devices``): the probe's views are added
    to its record, the teachers' logits of them to ``meta['probe_teachers']``.
    """
    from asc_keras.models.common import load_model_file
    from asc_keras.stages import probe_devices as devices
    from asc_keras.training.student import train_student  # looked up here: tests replace it

    split = held_out_split(cfg, splits) if asks_probe(cfg, targets) else None
    if split is None:
        return targets
    learn, held = split
    recipe = {"augment": cfg.augment.key_dict(), "optim": cfg.optim.key_dict()}
    # Not the teachers: the probe is what the student learns without them.
    key = content_hash((cfg.student_width, cfg.seed, recipe, held.names, splits.clip_cache_name,
                        place.train_split))  # fmt: skip
    path, model = place.shared.probe(key), None
    with work_lock(path, f"probe student {path.name}", runner.log):
        if runner.forced("probe") or not path.is_file():
            runner.log(f"   the probe student: CE on the {len(learn)} training clips the teachers "
                       f"learned from, scored on the {len(held)} held out from them")  # fmt: skip
            model = train_student(cfg, learn, held, None, run_dir=path.with_suffix(""),
                                  strategy=place.strategy, verbose=place.verbose)  # fmt: skip
            p = model.predict(held.inputs(), batch_size=256, verbose=0)
            write_json(path, {"clips": list(held.names),
                              "right": (p.argmax(-1) == held.labels).astype(int).tolist(),
                              "p_label": p[np.arange(len(held)), held.labels].tolist()})  # fmt: skip
        probe = read_probe(path)
        if cfg.distill.probe_devices and not devices.device_record_fits(probe.get("devices"), cfg):
            if model is None:  # a record from before, or of other views: its model hears them
                model = load_model_file(path.with_suffix("") / "final.keras", "the probe student")
            probe["devices"] = devices.student_device_labels(model, cfg, held, splits)
            write_json(path, probe)
    meta = {**targets.meta, "probe": probe}
    if cfg.distill.probe_devices:
        if folders is None:
            raise ValueError("distill.probe_devices: the probe needs the teachers' folders")
        names = list(targets.meta.get("teachers") or [])
        z = devices.teacher_device_logits(cfg, place, runner, folders, names, held, splits)
        meta["probe_teachers"] = {"teachers": names, "logits": z}
    targets = SoftTargets(targets.logits, targets.items, meta)
    lead = clip_lead(cfg, targets, splits)
    if lead is None:  # a probe of other clips (a copied work folder): train it again
        raise ValueError(f"{path}: a probe of other clips than this run holds out; delete it to "
                         "train the probe again")  # fmt: skip
    heard = f", each as recorded and through {lead['devices']} simulated devices" if lead.get(
        "devices") else ""  # fmt: skip
    runner.log(f"   on the {lead['clips']} clips of {lead['locations']} locations held out{heard}, the "
               f"label's probability: the teachers' ensemble {100 * lead['teachers_label']:.1f} %, "
               f"the probe student {100 * lead['student_label']:.1f} % (lead "
               f"{100 * lead['lead']:+.1f} points by location, p = {lead['p_value']:.3f}; accuracy "
               f"{100 * lead['teachers']:.1f} / {100 * lead['student']:.1f} %): the teachers "
               f"{_decision(cfg, targets, splits)}")  # fmt: skip
    return targets


def _decision(cfg: SystemConfig, targets: SoftTargets, splits: Splits) -> str:
    """How the KD student is taught, in words, for the probe's log line."""
    if runs_live(cfg, targets, splits):
        return "run live"
    share = control_share(cfg, targets, splits)
    if share == 1:
        return "stay out: the KD student learns from the CE control alone, run live"
    return f"stay stored, the CE control run live for {100 * share:.0f} % of each target"
