"""The probe's simulated devices: the held-out clips as devices no model heard would record them.

The probe (``stages.teaching``) scores the teachers and the student on the clips of the locations
held out from the teachers, heard through the training devices.  The evaluation fold also has
devices no training clip came from (TAU 2022 Mobile: S4-S6), and whether the teachers know more
there is what the held-out locations cannot show: on the ``clear`` probe set the teachers lead the
CE control by 12 points on the evaluation recordings, yet their lead on the held-out clips was
not clear on any of three seeds (p 0.05-0.20), and the KD student taught live gained 2.4 points
where the control alone gave it none; on ``tonal`` 1 a lead as unclear (p 0.085) turned into a
7-point loss live, the teachers knowing less than the student on unseen devices
(docs/probe-sets.md, "Devices no model heard").

So with ``distill.probe_devices`` D > 0 each held-out clip is also heard through D devices drawn
for it (``features.devices``: a smooth random response, the same in Hz for every front end), by the
teachers and by the probe student alike, and the lead is on each clip's label probability
averaged over its own recording and the D devices.  The student's device views are kept in its
probe record; the teachers' logits of them (D, clips, teachers, classes) in a file of their own
in the probe folder, keyed by the teachers, the clips and their features, D and the seed.
It is no oracle: on ``stationary`` 3 it read a clear lead the clips as recorded did not, and the
teachers live cost 9 points there (the control alone 1); on the five seeds measured where the
teachers lead on recordings, KD beat the control on four with it, two without, the mean alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from asc_keras.config import SystemConfig
from asc_keras.data.splits import ClipSplit
from asc_keras.distill.targets import SoftTargets
from asc_keras.features.devices import ANCHORS, SPREAD_DB, draw_devices, through_device
from asc_keras.files import atomic_path, content_hash, work_lock
from asc_keras.stages.runner import StageRunner
from asc_keras.stages.shared import RunPlace, Splits

DEVICE_MODEL = {"anchors": ANCHORS, "spread_db": SPREAD_DB}  # what a stored view was drawn with


def _views(cfg: SystemConfig, held: ClipSplit, split: ClipSplit, features) -> Iterator[np.ndarray]:
    """(clips, frames, mels) float32 per device: ``held``'s clips, their log-mels taken from
    ``split`` (a front end's training clips, of ``features``), heard through device k of each."""
    at = dict(zip(split.names, split.rows))
    x = np.asarray(split.features[np.array([at[n] for n in held.names])], np.float32)
    for anchors in draw_devices(len(held), cfg.distill.probe_devices, cfg.seed):
        yield through_device(x, anchors, features)


def student_device_labels(model, cfg: SystemConfig, held: ClipSplit, splits: Splits) -> dict:
    """The probe record's 'devices': {'views': D, the device model, 'p_label': (clips, D) the
    probability the probe student gives each clip's label through each device}."""
    rows = np.arange(len(held))
    p = [model.predict(v[..., None], batch_size=256, verbose=0)[rows, held.labels]
         for v in _views(cfg, held, splits.train, cfg.features)]  # fmt: skip
    return {"views": cfg.distill.probe_devices, **DEVICE_MODEL,
            "p_label": np.stack(p, 1).astype(float).tolist()}  # fmt: skip


def device_record_fits(record: dict | None, cfg: SystemConfig) -> bool:
    """Whether a probe record's 'devices' are the views ``cfg`` asks for."""
    return (
        bool(record)
        and record.get("views") == cfg.distill.probe_devices
        and all(record.get(k) == v for k, v in DEVICE_MODEL.items())
    )


def teacher_device_logits(cfg: SystemConfig, place: RunPlace, runner: StageRunner,
                          folders: dict[str, Path], names: list[str], held: ClipSplit,
                          splits: Splits) -> np.ndarray:  # fmt: skip
    """(D, clips, teachers, classes) logits of the teachers ``names`` (trained in ``folders``) on
    ``held``'s clips through the D devices of :func:`_views`, each teacher on its own front end's
    log-mels; stored in the work folder, computed once (``--force probe`` computes them again)."""
    from asc_keras.distill.targets import teacher_logits
    from asc_keras.stages.teachers import load_teacher

    d = cfg.distill.probe_devices
    key = content_hash(([Path(folders[n]).name for n in names], held.names, d, cfg.seed,
                        DEVICE_MODEL, splits.clip_cache_name))  # fmt: skip
    path = place.shared.probe_devices(key)
    shape = (d, len(held), len(names))
    with work_lock(path, f"the teachers through the probe's devices {path.name}", runner.log):
        if path.is_file() and not runner.forced("probe"):
            return _read_logits(path, shape)
        runner.log(f"   the teachers on the {len(held)} held-out clips through {d} simulated "
                   "devices (distill.probe_devices)")  # fmt: skip
        each = []  # per teacher (D, clips, classes)
        for name in names:
            model, own = load_teacher(folders[name]), splits.own_front_end.get(name)
            fc = own.features if own is not None else cfg.features
            views = _views(cfg, held, splits.of_teacher(name).train, fc)
            each.append(np.stack([teacher_logits([model], v, batch_size=128)[:, 0] for v in views]))
        z = np.stack(each, axis=2)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            np.save(tmp, z.astype(np.float32))
        return z.astype(np.float32)


def _read_logits(path: Path, shape: tuple[int, int, int]) -> np.ndarray:
    """A stored (D, clips, teachers, classes) array, checked: numbers only, of ``shape``."""
    try:
        z = np.load(path, allow_pickle=False)  # a pickled object array is refused, never run
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not the teachers' logits of the probe's devices ({e}); delete "
                         "it to compute them again") from None  # fmt: skip
    if z.dtype.kind != "f" or z.shape[:3] != shape or z.ndim != 4 or not np.isfinite(z).all():
        raise ValueError(f"{path}: {z.dtype} {z.shape}, expected finite logits of {shape} devices x "
                         "clips x teachers x classes; delete it to compute them again")  # fmt: skip
    return z


def device_views(cfg: SystemConfig, targets, held: ClipSplit):
    """(the teachers', the probe's) (clips, D) label probabilities through the probe's simulated
    devices (``distill.probe_devices`` D; stages.probe_devices); None where D is 0.  A probe
    without them (a record of fewer or other views) is an error: 'auto' does not guess."""
    if not cfg.distill.probe_devices:
        return None
    probe, stored = targets.meta["probe"], targets.meta.get("probe_teachers")
    if not device_record_fits(probe.get("devices"), cfg) or stored is None:
        raise ValueError(f"distill.probe_devices {cfg.distill.probe_devices}: the probe holds "
                         "no such views; run the probe stage (teaching.probe_stage) first")  # fmt: skip
    names = list(targets.meta.get("teachers") or [])
    at = [stored["teachers"].index(n) for n in names]  # the teachers of targets (select), in order
    rows = np.arange(len(held))
    # Each view weighed as the stored targets are: their teachers, weights and ensemble mode.
    theirs = np.stack([SoftTargets(z[:, at], held.names, targets.meta).distribution(
        1.0, cfg.distill.ensemble)[rows, held.labels] for z in stored["logits"]], 1)  # fmt: skip
    return theirs, np.asarray(probe["devices"]["p_label"], float)
