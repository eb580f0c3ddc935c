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


@dataclasses.dataclass(frozen=True)
class LiveTeachers:
    """The teachers run on each batch: their names, models and ensemble weights (None: 1/K)."""

    names: tuple[str, ...]
    models: tuple
    weights: tuple[float, ...] | None


def runs_live(cfg: SystemConfig, targets: SoftTargets | None) -> bool:
    """Whether the teachers of ``targets`` run live under the student (module doc)."""
    d = cfg.distill
    return (targets is not None and d.enabled and d.clip_targets == "live"
            and targets.meta.get("target_source") == "clip")  # fmt: skip


def control_share(cfg: SystemConfig, targets: SoftTargets | None) -> float:
    """The CE control's share of the KD target: ``distill.control_share``, 0 where the teachers
    of ``targets`` run live (module doc)."""
    return 0.0 if runs_live(cfg, targets) else cfg.distill.control_share


def live_teachers(
    cfg: SystemConfig, targets: SoftTargets | None, folders: dict[str, Path], splits: Splits
) -> LiveTeachers | None:
    """The teachers of ``targets`` (its ``meta['teachers']``, its weights for the configured
    ensemble mode), loaded from ``folders``, where they run live; None where they do not -- and,
    with a warning, where a teacher of weight above 0 takes features of its own (PANNs'
    MobileNetV2): it cannot run on the student's view."""
    if not runs_live(cfg, targets):
        return None
    names = list(targets.meta.get("teachers") or folders)
    w = targets.weights(cfg.distill.ensemble)
    keep = [k for k in range(len(names)) if w is None or w[k] > 0]
    own = sorted({names[k] for k in keep} & set(splits.own_front_end))
    if own:  # they cannot see the student's view; the report's stored targets serve instead
        warnings.warn(
            f"distill.clip_targets 'live' runs the teachers on the student's log-mels, but {own} "
            "take features of their own front end: their stored clip-level targets are used "
            "(set distill.clip_targets=stored to say so)", stacklevel=2,
        )  # fmt: skip
        return None
    weights = None if w is None else tuple(float(w[k] / sum(w[j] for j in keep)) for k in keep)
    return LiveTeachers(tuple(names[k] for k in keep),
                        tuple(_load(folders[names[k]]) for k in keep), weights)  # fmt: skip


def _load(folder: Path):
    from asc_keras.models.common import load_model_file

    return load_model_file(Path(folder) / "final.keras", "a teacher")
