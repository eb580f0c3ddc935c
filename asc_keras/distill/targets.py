"""Teacher-ensemble soft targets: one definition, computed once and stored beside the feature cache.

The ensemble's soft target at temperature T has one definition,
:func:`asc_keras.distill.losses.ensemble_soft_targets`, used by the stored targets, the
live-teacher path of the Distiller and the teachers' ensemble evaluation:

    mode 'probabilities':  p_T = 1/K * sum_k softmax(z_k / T)      (each teacher tempered, then averaged)
    mode 'logits':         p_T = softmax((1/K * sum_k z_k) / T)    (logits averaged, then tempered)

with z_k the pre-softmax logits of teacher k.  Why each teacher is tempered before averaging:
Hinton et al.'s soft target is a teacher's softmax at T, and the KD term's T^2 factor
compensates the 1/T^2 scale of *that* distribution's gradients.  The alternative -- average the
T = 1 probabilities, then temper the mean (p_mean^(1/T), renormalised) -- is a distribution no
teacher produces: a geometric tempering of an arithmetic mixture, which for T > 1 lets one
confident teacher dominate less than it should and differs from what live teachers give.

:func:`teacher_logits` runs every teacher over the cached features once and :class:`SoftTargets`
stores the *per-teacher* logits (items, teachers, classes) atomically as ``.npy`` + ``.json``, so
one file serves any T and either mode (live teachers instead: ``distill.clip_targets``).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asc_keras.config import N_CLASSES, DistillConfig
from asc_keras.distill.losses import ENSEMBLE_MODES, ensemble_soft_targets, mixed_targets
from asc_keras.files import atomic_path, write_text

TARGET_KINDS = ("recording", "clip")  # what a stored target is the teachers' output on


def temper(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / T) along the last axis, float32 (computed in float64)."""
    return ensemble_distribution(np.asarray(logits, np.float64)[..., None, :], temperature)


def ensemble_distribution(
    logits: np.ndarray, temperature: float = 1.0, mode: str = "probabilities", weights=None
) -> np.ndarray:
    """The ensemble's soft target at ``temperature`` (:func:`~asc_keras.distill.losses.ensemble_soft_targets`).

    Args:
        logits: (N, K, C) per-teacher logits (K teachers), or (N, C) for one teacher.
        weights: (K,) teacher weights summing to 1; None: the plain average.
    Returns:
        (N, C) float32 distributions (computed in float64).
    """
    z = np.asarray(logits, np.float64)
    if z.ndim == 2:
        z = z[:, None, :]
    w = None if weights is None else np.asarray(weights, np.float64)
    return np.asarray(ensemble_soft_targets(z, temperature, mode, w), np.float32)


def fit_ensemble_weights(
    logits: np.ndarray, labels: np.ndarray, mode: str = "probabilities", step: float = 0.1
) -> np.ndarray:
    """Teacher weights that minimise the ensemble's log loss on ``labels`` (at T = 1), searched on
    the grid of the simplex with spacing ``step`` (66 candidates for three teachers at 0.1, 286 for four).

    Why: the plain average of a strong teacher and two that know little sits far below the strong
    one (measured, built-in data, quick profile: teachers 53 / 30 / 23 % on recordings, their
    average 39 %).  Weights fitted on recordings the teachers did not train on follow what each
    teacher shows it knows; a coarse grid is the regulariser when those recordings are few.
    Ties (e.g. all teachers equal) go to the weights nearest the plain average.

    Args:
        logits: (N, K, C) the teachers' logits of N held-out recordings; labels: (N,) classes.
    Returns:
        (K,) float64 weights >= 0 summing to 1.
    """
    z, y = np.asarray(logits, np.float64), np.asarray(labels)
    k, units = z.shape[1], int(round(1 / step))
    if k == 1 or not len(y):
        return np.full(k, 1.0 / k)
    grid = np.array([c for c in itertools.product(range(units + 1), repeat=k) if sum(c) == units],
                    np.float64) / units  # fmt: skip
    equal = np.full(k, 1.0 / k)
    grid = grid[np.argsort(np.abs(grid - equal).sum(1), kind="stable")]  # nearest the average first
    losses = [-np.mean(np.log(np.maximum(ensemble_distribution(z, 1.0, mode, w)[np.arange(len(y)), y],
                                         1e-7))) for w in grid]  # fmt: skip
    return grid[int(np.argmin(losses))]


def teacher_logits(
    teachers: Sequence, features: np.ndarray, rows: np.ndarray | None = None, batch_size: int = 64
) -> np.ndarray:
    """Run every teacher over ``features[rows]`` ((N, frames, mels), memmap ok) in batches.

    Returns (N, K, classes) float32 logits, in the order of ``rows``.
    """
    from asc_keras.models.common import logits_model

    rows = np.arange(len(features)) if rows is None else np.asarray(rows)
    heads = [logits_model(t) for t in teachers]
    out = []
    for s in range(0, len(rows), batch_size):
        chunk = rows[s : s + batch_size]
        order = np.argsort(
            np.argsort(chunk)
        )  # gather sorted (memmap locality), return in given order
        x = np.asarray(features[np.sort(chunk)], np.float32)[..., None]
        out.append(np.stack([np.asarray(h(x, training=False)) for h in heads], axis=1)[order])
    if not out:
        return np.zeros((0, len(heads), N_CLASSES), np.float32)
    return np.concatenate(out).astype(np.float32)


@dataclass(frozen=True)
class SoftTargets:
    """Stored per-teacher logits: ``logits[i]`` (teachers, classes) belongs to ``items[i]`` (clip names).

    ``meta['teachers']`` names the teachers in axis 1, so a single teacher's targets (the
    ablation's "KD from one teacher") come from the same file.
    """

    logits: np.ndarray
    items: tuple[str, ...]
    meta: dict

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (.npy) and ``path``.json atomically (temp file + rename, json last)."""
        path = Path(path).with_suffix(".npy")
        with atomic_path(path) as tmp:
            np.save(tmp, self.logits.astype(np.float32))
        write_text(
            path.with_suffix(".json"), json.dumps({"items": list(self.items), "meta": self.meta})
        )
        return path

    @classmethod
    def load(cls, path: str | Path) -> SoftTargets:
        path = Path(path).with_suffix(".npy")
        side = path.with_suffix(".json")
        if not (path.is_file() and side.is_file()):
            raise FileNotFoundError(
                f"{path}: soft targets not found (or incomplete); compute them again"
            )
        try:
            d = json.loads(side.read_text())
            logits = np.load(path, allow_pickle=False)  # numbers only: a pickled array is refused
            items = d["items"]
        except (ValueError, KeyError, TypeError, OSError) as e:
            raise ValueError(
                f"{path}: not stored teacher outputs ({e}); delete it to compute them again"
            ) from None
        if logits.dtype.kind != "f" or len(logits) != len(items) or logits.ndim != 3:
            raise ValueError(
                f"{path}: {logits.shape} logits for {len(d['items'])} items (expected items x "
                "teachers x classes); delete it to compute the targets again"
            )
        meta = d["meta"] if isinstance(d["meta"], dict) else {}
        w = meta.get("weights") or {}
        if not isinstance(w, dict) or not all(
            m in ENSEMBLE_MODES and (v is None or _valid_weights(v, logits.shape[1]))
            for m, v in w.items()
        ):
            raise ValueError(
                f"{path.with_suffix('.json')}: 'weights' must map an ensemble mode to "
                f"{logits.shape[1]} numbers >= 0 summing to 1; delete the file to compute the targets again"
            )
        if meta.get("target_source") not in (None, *TARGET_KINDS) or not _valid_auto(
            meta.get("auto")
        ):
            raise ValueError(
                f"{path.with_suffix('.json')}: 'target_source' must be 'recording' or 'clip' and "
                "'auto' the record of choose_target_source; delete the file to compute the targets again"
            )
        return cls(logits, tuple(d["items"]), meta)

    def select(
        self, items: Sequence[str] | None = None, teachers: Sequence[str] | None = None
    ) -> SoftTargets:
        """The targets of ``items`` (in that order) from the teachers named in ``teachers``."""
        z, names = self.logits, list(self.meta.get("teachers", []))
        meta = dict(self.meta)
        if teachers is not None:
            unknown = [t for t in teachers if t not in names]
            if unknown:
                raise KeyError(f"no stored logits of teacher(s) {unknown}; stored: {names}")
            keep = [names.index(t) for t in teachers]
            z, names = z[:, keep], list(teachers)
            # The chosen teachers' weights, renormalised (none of them weighed: their average).
            if meta.get("weights"):
                meta["weights"] = {mode: _renormalised(np.asarray(w, np.float64)[keep])
                                   for mode, w in meta["weights"].items()}  # fmt: skip
        kept = self.items
        if items is not None:
            index = {it: i for i, it in enumerate(self.items)}
            missing = [it for it in items if it not in index]
            if missing:
                raise KeyError(f"no soft target for {len(missing)} item(s), e.g. {missing[0]}")
            z, kept = z[[index[it] for it in items]], tuple(items)
        return SoftTargets(z, kept, {**meta, "teachers": names})

    def weights(self, mode: str) -> np.ndarray | None:
        """The teachers' ensemble weights for ``mode`` (``meta['weights'][mode]``, fitted by
        :func:`fit_ensemble_weights`); None: the plain average."""
        w = (self.meta.get("weights") or {}).get(mode)
        return None if w is None else np.asarray(w, np.float64)

    def distribution(self, temperature: float, mode: str) -> np.ndarray:
        """(items, classes) ensemble soft targets at ``temperature`` (:func:`ensemble_distribution`,
        with the stored weights)."""
        return ensemble_distribution(self.logits, temperature, mode, self.weights(mode))


def model_targets(model, split, name: str) -> SoftTargets:
    """One model's logits on every clip of ``split`` (a ClipSplit), stored as the targets of one
    teacher called ``name``, taken on the clips themselves: the ablation's born-again row, where
    the CE control teaches a student of its own size (soft targets without more knowledge)."""
    z = teacher_logits([model], split.features, split.rows)
    return SoftTargets(z, tuple(split.names), {"teachers": [name], "target_source": "clip"})


def _renormalised(w: np.ndarray) -> list[float] | None:
    return (w / w.sum()).tolist() if w.sum() > 0 else None


def _valid_auto(a) -> bool:
    """Whether ``a`` (a stored targets' meta 'auto') is None or what choose_target_source returns."""
    if a is None:
        return True
    number = (int, float)
    return (isinstance(a, dict) and a.get("source") in TARGET_KINDS
            and (a.get("label_probability") is None or isinstance(a["label_probability"], number))
            and isinstance(a.get("limit"), number) and isinstance(a.get("recordings"), int))  # fmt: skip


def _valid_weights(w, k: int) -> bool:
    try:
        a = np.asarray(w, np.float64)
    except (TypeError, ValueError):
        return False
    return (
        a.shape == (k,)
        and bool(np.all(np.isfinite(a)) and np.all(a >= 0))
        and abs(a.sum() - 1) < 1e-6
    )


def swap_to_label(soft: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(items, classes) targets with each wrong one's top class and label swapped.

    Knowledge adjustment (Wen et al., 2019, "Preparing lessons"): where the teachers' most
    probable class is not the label, the two classes exchange their probabilities, so the target
    ranks the label first and keeps the rest of the teachers' distribution (which other scenes
    it resembles); right targets are unchanged and every row still sums to 1.  Why: a clip's
    recording-level target is a sample of the clip's posterior with less variance than its label
    only where the teachers are right; where they are confidently wrong (teachers that fitted a
    recording's background, not its scene) the student would learn the wrong scene for all ten
    of its clips, with alpha = 0.1 of the label left to argue.
    """
    out = np.array(soft, np.float32, copy=True)
    labels = np.asarray(labels, np.int64)
    rows = np.arange(len(out))
    top = out.argmax(axis=1)
    wrong = top != labels
    r, t, y = rows[wrong], top[wrong], labels[wrong]
    out[r, t], out[r, y] = out[r, y], out[r, t]
    return out


def kd_soft_targets(
    targets: SoftTargets,
    distill: DistillConfig,
    labels: np.ndarray | None = None,
    control: SoftTargets | None = None,
) -> np.ndarray:
    """The distillation targets of a training: the ensemble (``distill.ensemble``) of the stored
    teachers' logits at ``distill.temperature``, (items, classes), with wrong ones swapped to
    the label (:func:`swap_to_label`) when ``distill.swap_wrong`` is set.

    The one place the configured temperature and ensemble mode meet the teachers' outputs; the
    student's side of the same loss takes its T from the same ``distill`` (Distiller, QAT loss).
    ``labels``: (items,) the clips' classes, needed for ``swap_wrong`` and for a control share set
    by confidence.  ``control``: the CE control's logits on the same clips; ``distill.control_share``
    of the target is then its distribution (on every clip, or per clip by confidence:
    ``distill.control_share_by``) -- the stored stand-in, for pruning and QAT, of the control the
    student's training runs live on each augmented batch.
    """
    soft = targets.distribution(distill.temperature, distill.ensemble)
    if distill.swap_wrong:
        if labels is None or len(labels) != len(soft):
            raise ValueError("distill.swap_wrong needs the labels of the targets' clips")
        soft = swap_to_label(soft, labels)
    if control is not None and distill.control_share > 0.0:
        live = control.distribution(distill.temperature, "probabilities")
        by_label = None  # a fixed share; by confidence, each clip's one-hot label
        if distill.control_share_by == "confidence":
            if labels is None or len(labels) != len(soft):
                raise ValueError("distill.control_share_by='confidence' needs the targets' labels")
            by_label = np.eye(soft.shape[-1], dtype=soft.dtype)[labels]
        soft = np.asarray(mixed_targets(soft, live, distill.control_share, by_label), soft.dtype)
    return soft


def choose_target_source(
    fitted: np.ndarray | None, labels: np.ndarray | None, limit: float
) -> dict:
    """What ``distill.target_source = 'auto'`` takes: 'recording' or 'clip'.

    Args:
        fitted: (recordings, classes) the teachers' ensemble at T = 1 on the training recordings
            they learned from (None: no complete recording); labels: (recordings,) their classes.
        limit: ``distill.auto_label_probability``.

    Returns {'source', 'label_probability' (the mean p[label] over ``fitted``), 'limit',
    'recordings'}: 'clip' where that mean is at least ``limit``, else 'recording'.

    Why: a target teaches what it says beyond the label.  Where the teachers have fitted their own
    training recordings (mean p[label] near 1), the recording-level targets of the training clips
    *are* the labels, softened, and KD learns what CE learns; their output on a 1 s clip, a view
    they did not fit, still carries what they know (which classes sound alike, where a clip
    shows no scene).  Where they have not (the built-in data's 300-step teachers: 0.65-0.72), the
    recording's output carries more than its label and is what the report's 10 s teachers are for.
    """
    check_auto_limit(limit)
    if fitted is None or not len(fitted):  # no recording-level target to take
        return {"source": "clip", "label_probability": None, "limit": limit, "recordings": 0}
    p = float(np.mean(fitted[np.arange(len(labels)), labels]))
    source = "clip" if p >= limit else "recording"
    return {"source": source, "label_probability": round(p, 4), "limit": limit,
            "recordings": len(labels)}  # fmt: skip


def check_auto_limit(limit: float) -> None:
    """``distill.auto_label_probability`` is a probability: ValueError naming it otherwise (NaN too)."""
    if not 0 <= limit <= 1:
        raise ValueError(f"distill.auto_label_probability must be in [0, 1], got {limit}")


def target_choice(
    targets: SoftTargets | None, control_share: float = 0.0, share_by: str = "fixed", live=False
) -> dict | None:
    """{'source': 'recording' or 'clip', 'auto' (where 'auto' chose), 'live' (the teachers run on
    each batch), 'control_share(_by)' (above 0)}: results.json's 'soft_targets'; None without."""
    if targets is None:
        return None
    auto = targets.meta.get("auto")
    shared = {"control_share": control_share, "control_share_by": share_by}
    return {"source": targets.meta.get("target_source"), **({"auto": auto} if auto else {}),
            **({"live": True} if live else {}), **(shared if control_share > 0 else {})}  # fmt: skip
