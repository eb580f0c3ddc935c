"""Who teaches the KD student on each of its batches.

Where the soft targets are clip-level (``distill.target_source`` 'clip', or 'auto' taking it) and
``distill.clip_targets`` is 'live', the teachers themselves run on every augmented batch the
student trains on -- the masked, mixed view it sees, not the clean clip their stored outputs
are of (consistent teaching, Beyer et al., 2022) -- weighed as their stored ensemble is.  A
teacher of weight 0 adds nothing to the target and is not run.  Recording-level targets stay
stored: a 1 s view of a recording is not what such teachers know.

The CE control's live share of the target (``distill.control_share``) is for stored targets
only: it stands in for the consistency with the augmented view that stored targets lack, which
live teachers have.  Measured on the probe sets with clip-level targets (docs/probe-sets.md,
"Live teachers"): the teachers live alone beat them live with the control's half.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

from asc_keras.config import SystemConfig
from asc_keras.distill.targets import SoftTargets
from asc_keras.stages.shared import Splits
from asc_keras.stages.teachers import load_teacher


@dataclasses.dataclass(frozen=True)
class LiveTeachers:
    """The teachers run on each batch: their names, models and ensemble weights (None: 1/K)."""

    names: tuple[str, ...]
    models: tuple
    weights: tuple[float, ...] | None


def _running(
    cfg: SystemConfig, targets: SoftTargets | None
) -> tuple[list[str], list[float] | None]:
    """(names, weights) of the teachers of ``targets`` that would run live -- those of weight
    above 0, their weights renormalised (None: the plain average) -- or ([], None) where the
    configuration and the targets' kind say stored."""
    d = cfg.distill
    if not (targets is not None and d.enabled and d.clip_targets == "live"
            and targets.meta.get("target_source") == "clip"):  # fmt: skip
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
    names, _ = _running(cfg, targets)
    return bool(names) and not _own_front_end(names, splits)


def control_share(cfg: SystemConfig, targets: SoftTargets | None, splits: Splits) -> float:
    """The CE control's share of the KD target: ``distill.control_share``, 0 where the teachers
    of ``targets`` run live (module doc)."""
    return 0.0 if runs_live(cfg, targets, splits) else cfg.distill.control_share


def live_teachers(
    cfg: SystemConfig, targets: SoftTargets | None, folders: dict[str, Path], splits: Splits
) -> LiveTeachers | None:
    """The teachers of ``targets`` (its ``meta['teachers']``, its weights for the configured
    ensemble mode), loaded from ``folders``, where they run live (:func:`runs_live`); None where
    they do not -- with a warning where 'live' was asked for and a teacher of weight above 0
    takes features of its own: the stored targets then serve, with the control's share."""
    names, weights = _running(cfg, targets)
    own = _own_front_end(names, splits)
    if own:
        warnings.warn(
            f"distill.clip_targets 'live' runs the teachers on the student's log-mels, but {own} "
            "take features of their own front end: their stored clip-level targets are used "
            "(set distill.clip_targets=stored to say so)", stacklevel=2,
        )  # fmt: skip
    if not names or own:
        return None
    return LiveTeachers(tuple(names), tuple(load_teacher(folders[n]) for n in names),
                        None if weights is None else tuple(weights))  # fmt: skip
