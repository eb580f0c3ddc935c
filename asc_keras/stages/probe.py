"""The probe's measurement: do the teachers lead a CE student on clips neither saw in training?

``distill.clip_targets`` 'auto' (module :mod:`asc_keras.stages.teaching`, which trains the probe
and acts on its answer) compares, on the training clips of the recordings held out from the
teachers (``teachers.holdout_fraction``), the probability the teachers' ensemble gives each
clip's label with the probe student's: a sign-flip test over the held-out locations
(:func:`clip_lead`), with the simulated devices' views where ``distill.probe_devices`` asks for
them.  Here: which clips those are (:func:`held_out_split`), when the question is asked
(:func:`asks_probe`), the settings' checks, and the stored probe record read back as untrusted
(:func:`read_probe`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from asc_keras.config import SystemConfig
from asc_keras.data.splits import ClipSplit
from asc_keras.distill.targets import SoftTargets
from asc_keras.metrics import clear_lead, grouped_lead
from asc_keras.stages.probe_devices import device_views
from asc_keras.stages.shared import Splits
from asc_keras.stages.teachers import clip_location, held_out_recordings


def check_clip_targets(cfg: SystemConfig) -> None:
    """``distill.clip_targets`` 'auto' compares on clips held out from the teachers: it needs some,
    ``distill.live_lead_p`` is a p-value's limit and ``distill.probe_devices`` a small count."""
    d = cfg.distill
    if not 0.0 < d.live_lead_p <= 1.0:
        raise ValueError(f"distill.live_lead_p must be in (0, 1] (a p-value; 1: any lead), got "
                         f"{d.live_lead_p}")  # fmt: skip
    if type(d.probe_devices) is not int or not 0 <= d.probe_devices <= 16:
        raise ValueError(f"distill.probe_devices must be a count from 0 (none) to 16, got "
                         f"{d.probe_devices!r}")  # fmt: skip
    if d.enabled and d.clip_targets == "auto" and cfg.teachers.holdout_fraction <= 0:
        raise ValueError(
            "distill.clip_targets 'auto' compares the teachers with the student on the training "
            "clips held out from the teachers, and teachers.holdout_fraction=0 holds none out: set "
            "teachers.holdout_fraction above 0 (the quick profile: 0.2), or clip_targets live or stored"
        )


def held_out_split(cfg: SystemConfig, splits: Splits) -> tuple[ClipSplit, ClipSplit] | None:
    """(the training clips outside the recordings held out from the teachers, the clips of those
    recordings) -- what the probe student learns from and is scored on; None where none is held
    out (:func:`~asc_keras.stages.teachers.held_out_recordings`)."""
    _, held = held_out_recordings(cfg, splits.train_recordings)
    if held is None or not len(held):
        return None
    files = {f for clips in held.files for f in clips}
    out = np.array([n in files for n in splits.train.names])
    if not out.any() or out.all():
        return None
    return splits.train.take(np.where(~out)[0]), splits.train.take(np.where(out)[0])


def clip_lead(cfg: SystemConfig, targets: SoftTargets | None, splits: Splits) -> dict | None:
    """The teachers' ensemble (their stored clip outputs, weighed as the KD target weighs them,
    T = 1) against the probe student (``targets.meta['probe']``, teaching.probe_stage) on the
    training clips held out from the teachers: {'teachers', 'student' (accuracies),
    'teachers_label', 'student_label' (the mean probability each gives the label), 'clips',
    'locations', 'lead' (the mean over locations of the teachers' label probability minus the
    probe's), 'p_value' (:func:`~asc_keras.metrics.grouped_lead`), 'clear' (a lead, p below
    CLEAR_LEAD_P), 'live' (a lead, p below ``distill.live_lead_p``: the teachers run live)}; None
    without a probe of those clips.

    The label's probability, not the accuracy: it is what a soft target gives the label, and it
    tells the teachers' lead where both are near chance on a clip (``sparse``: accuracies 8.8
    against 4.4 %, p = 0.20; the label's probability 10.5 against 4.7 %, p = 0.013)."""
    probe = None if targets is None else targets.meta.get("probe")
    split = held_out_split(cfg, splits)
    if probe is None or split is None or tuple(probe["clips"]) != split[1].names:
        return None
    held = split[1]
    p = targets.select(held.names).distribution(1.0, cfg.distill.ensemble)
    label = p[np.arange(len(held)), held.labels]
    theirs = np.asarray(probe["p_label"], float)
    views = device_views(cfg, targets, held)
    if views is not None:  # each clip's label probability over its own view and the devices'
        label = (label + views[0].sum(1)) / (1 + views[0].shape[1])
        theirs = (theirs + views[1].sum(1)) / (1 + views[1].shape[1])
    lead = grouped_lead(label, theirs, [clip_location(n) for n in held.names])
    return {"teachers": float(np.mean(p.argmax(-1) == held.labels)),
            "student": float(np.mean(probe["right"])), "teachers_label": float(label.mean()),
            "student_label": float(theirs.mean()), "clips": len(held),
            "locations": lead["groups"], "lead": lead["lead"], "p_value": lead["p_value"],
            "clear": clear_lead(lead["lead"], lead["p_value"]),
            "live": clear_lead(lead["lead"], lead["p_value"], cfg.distill.live_lead_p),
            **({"devices": cfg.distill.probe_devices} if views is not None else {})}  # fmt: skip


def target_kind(targets: SoftTargets | None) -> str | None:
    return None if targets is None else targets.meta.get("target_source")  # 'recording', 'clip'


def clip_level(cfg: SystemConfig, targets: SoftTargets | None) -> bool:
    """Distillation on, and ``targets`` clip-level: where ``distill.clip_targets`` applies."""
    return cfg.distill.enabled and target_kind(targets) == "clip"


def asks_probe(cfg: SystemConfig, targets: SoftTargets | None) -> bool:
    """Whether ``distill.clip_targets`` 'auto' has to choose for ``targets`` (clip-level)."""
    return clip_level(cfg, targets) and cfg.distill.clip_targets == "auto"


def read_probe(path: Path) -> dict:
    """A stored probe record ({'clips': names, 'right': 0 / 1 per clip, 'p_label': the probability
    the probe gives each clip's label}), checked: a work folder's file is as untrusted as any."""
    try:
        d = json.loads(Path(path).read_text())
        clips, right, label = d["clips"], d["right"], d["p_label"]
        if not (isinstance(clips, list) and clips and all(isinstance(c, str) for c in clips)
                and isinstance(right, list) and isinstance(label, list)
                and len(right) == len(label) == len(clips)
                and all(type(r) is int and r in (0, 1) for r in right)
                and all(type(v) in (int, float) and 0 <= v <= 1 for v in label)):  # fmt: skip
            raise ValueError("'clips' must be clip names, 'right' a 0 or 1 and 'p_label' a "
                             "probability for each")  # fmt: skip
        dev = d.get("devices")
        if dev is not None and not _device_views_sound(dev, len(clips)):
            raise ValueError("'devices' must hold 'views' (a count) and 'p_label': that many "
                             "probabilities for each clip")  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}: not a probe student's record ({e}); delete it to train the "
                         "probe again") from None  # fmt: skip
    out = {"clips": clips, "right": right, "p_label": [float(v) for v in label]}
    return out if dev is None else {**out, "devices": dev}


def _device_views_sound(dev, clips: int) -> bool:
    """A probe record's 'devices' (stages.probe_devices.student_device_labels) holds numbers only."""
    k, p = dev.get("views"), dev.get("p_label")
    return (type(k) is int and k > 0 and isinstance(p, list) and len(p) == clips
            and all(isinstance(r, list) and len(r) == k for r in p)
            and all(type(v) in (int, float) and 0 <= v <= 1 for r in p for v in r)
            and all(type(dev.get(f)) in (int, float) for f in ("anchors", "spread_db")))  # fmt: skip
