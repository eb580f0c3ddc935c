"""DCASE Task 1 metrics, as the organisers define and compute them.

Headline figures (DCASE 2021 onwards; the official baseline computes them with scikit-learn and
sed_eval):

* ``accuracy``: the macro average of class-wise accuracy -- per class, the fraction of its clips
  predicted as that class, then the mean over the classes;
* ``log_loss``: the macro average of class-wise log loss -- per class, scikit-learn's
  ``log_loss`` of that class's clips (with all classes as labels), then the mean over classes.

Per class, both; per device, the macro class-wise accuracy of that device's clips (sed_eval's
class-wise average, as the official baseline reports it) and the log loss of that device's
clips.  Also kept: ``micro_accuracy`` (fraction of all clips right; what Keras' ``accuracy``
metric and the learning curves show) and ``overall_log_loss`` (scikit-learn's ``log_loss`` over
all clips, what the official baseline prints as "Logloss").  On a class-balanced split, such as
fold 1, macro and micro accuracy are equal.

Probabilities are clipped as scikit-learn's ``log_loss`` (1.5 onwards) clips them: to
[eps, 1 - eps] with eps the float64 machine epsilon (2.2e-16), without renormalising -- so an
int8 model's exact zeros cost -log(2.2e-16) = 36.04 nats, as they do for the organisers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from asc_keras.config import SCENE_CLASSES

LOGLOSS_EPS = float(np.finfo(np.float64).eps)  # scikit-learn's clip for float64 probabilities


def clip_probabilities(probs: np.ndarray) -> np.ndarray:
    """(N, C) float64 probabilities clipped to [eps, 1 - eps], as scikit-learn's ``log_loss``."""
    return np.clip(np.asarray(probs, np.float64), LOGLOSS_EPS, 1.0 - LOGLOSS_EPS)


def clip_log_losses(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per clip, -log p(true class) after the clip (natural log)."""
    labels = np.asarray(labels, np.int64)
    return -np.log(clip_probabilities(probs)[np.arange(len(labels)), labels])


def log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    """scikit-learn's ``log_loss`` (all classes as labels): the mean of :func:`clip_log_losses`."""
    return float(np.mean(clip_log_losses(labels, probs))) if len(labels) else float("nan")


def _class_wise(labels: np.ndarray, values: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """{class: mean of ``values`` over its clips} for the classes present."""
    return {
        c: float(values[labels == i].mean()) for i, c in enumerate(classes) if (labels == i).any()
    }


def _macro(per_class: dict[str, float]) -> float:
    return float(np.mean(list(per_class.values()))) if per_class else float("nan")


def classification_metrics(
    labels: Sequence[int],
    probs: np.ndarray,
    devices: Sequence[str] | None = None,
    classes: Sequence[str] = SCENE_CLASSES,
) -> dict:
    """Every number a results table and a DCASE meta file need (module docstring).

    Returns a dict: accuracy and log_loss (DCASE: macro class-wise), micro_accuracy,
    overall_log_loss, per_class {name: accuracy}, per_class_log_loss {name: log loss},
    per_device {device: macro class-wise accuracy} and per_device_log_loss {device: log loss}
    (when ``devices`` are given), confusion (rows true, columns predicted, counts), n.
    """
    labels = np.asarray(labels, np.int64)
    probs = np.asarray(probs, np.float64)
    pred = probs.argmax(axis=1) if len(labels) else np.zeros(0, np.int64)
    right = (pred == labels).astype(np.float64)
    losses = clip_log_losses(labels, probs) if len(labels) else np.zeros(0)
    k = len(classes)
    conf = np.zeros((k, k), np.int64)
    np.add.at(conf, (labels, pred), 1)
    per_class = _class_wise(labels, right, classes)
    per_class_ll = _class_wise(labels, losses, classes)
    out = {
        "n": int(len(labels)),
        "accuracy": _macro(per_class),
        "log_loss": _macro(per_class_ll),
        "micro_accuracy": float(right.mean()) if len(labels) else float("nan"),
        "overall_log_loss": float(losses.mean()) if len(labels) else float("nan"),
        "per_class": per_class,
        "per_class_log_loss": per_class_ll,
        "confusion": conf.tolist(),
    }
    if devices is not None:
        devices = np.asarray(devices)
        order = sorted(set(devices.tolist()), key=_device_order)
        out["per_device"] = {str(d): _macro(_class_wise(labels[devices == d], right[devices == d], classes))
                             for d in order}  # fmt: skip
        out["per_device_log_loss"] = {str(d): float(losses[devices == d].mean()) for d in order}
    return out


def recording_accuracy(
    names: Sequence[str],
    probs: np.ndarray,
    recordings: Sequence[Sequence[str]],
    labels: Sequence[int],
) -> float:
    """DCASE macro class-wise accuracy of a clip model on whole recordings: each recording's
    prediction is the mean of its clips' probabilities.  What compares with a 10 s teacher's
    accuracy (a clip model that averages its clips is a 10 s model too).

    Args:
        names: (n,) clip file names, in the order of ``probs`` (n, classes).
        recordings: per recording, its clip files; ``labels``: per recording, its class.
    """
    return classification_metrics(labels, recording_probabilities(names, probs, recordings))[
        "accuracy"
    ]


def recording_probabilities(
    names: Sequence[str], probs: np.ndarray, recordings: Sequence[Sequence[str]]
) -> np.ndarray:
    """(recordings, classes): each recording's clip probabilities averaged (``probs`` (n,
    classes) in the order of the clip file ``names``; ``recordings``: per recording, its clips)."""
    index = {name: i for i, name in enumerate(names)}
    return np.stack([np.asarray(probs, np.float64)[[index[f] for f in files]].mean(0)
                     for files in recordings])  # fmt: skip


def item_right(labels: Sequence[int], probs: np.ndarray) -> list[int]:
    """Per item, 1 where the most probable class of ``probs`` (items, classes) is its label, else
    0: what :func:`paired_lead` pairs (a list, to sit in results.json)."""
    return (np.asarray(probs).argmax(1) == np.asarray(labels)).astype(int).tolist()


def paired_lead(first_right: Sequence[int], second_right: Sequence[int]) -> dict:
    """Whether a lead of one model over another on the same items is more than chance.

    Args: per item, whether the first / the second model is right (0 or 1), in one order.

    Returns {'items', 'only_first_right', 'only_second_right', 'p_value'}: the one-sided sign
    test (exact binomial, McNemar's test on the discordant items) of "the first is no better":
    P(X >= only_first_right) for X ~ Binomial(only_first_right + only_second_right, 1/2).
    Why paired: both models are scored on the same recordings and are right on most of the same
    ones, so only the items where they disagree say which is better; an unpaired comparison
    of the two accuracies would count their shared noise twice and ask for a larger margin.
    """
    a, b = np.asarray(first_right, bool), np.asarray(second_right, bool)
    if a.shape != b.shape:
        raise ValueError(f"paired_lead: {a.shape} and {b.shape} items differ")
    k, m = int((a & ~b).sum()), int((~a & b).sum())
    n = k + m
    p = sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n if n else 1.0
    return {"items": int(a.size), "only_first_right": k, "only_second_right": m, "p_value": p}


# A lead is "clear" below this one-sided p: one the data resolve, not one a few recordings (or
# locations) could flip.  At 5 % one run in twenty of models that know no more reads as clear.
CLEAR_LEAD_P = 0.05


def clear_lead(lead: float, p_value: float, limit: float = CLEAR_LEAD_P) -> bool:
    """The one reading of "a clear lead" (the ensemble's, the KD student's, the probe's): ahead,
    and the one-sided test's ``p_value`` below ``limit``."""
    return bool(lead > 0 and p_value < limit)


def grouped_lead(first: Sequence[float], second: Sequence[float], groups: Sequence[str],
                 draws: int = 20_000) -> dict:  # fmt: skip
    """Whether a lead of one model over another is more than chance when items come in groups
    whose members share their sound (the clips of one recording location).

    Args: per item, a score of the first / the second model (whether it is right, 0 or 1, or the
    probability it gives the label), and its group.

    Returns {'items', 'groups', 'lead' (mean over groups of the mean score's difference, first
    minus second), 'p_value'}: the one-sided paired sign-flip test of "the first is no better" over the
    groups' differences -- under that hypothesis each group's difference is as likely negated, so
    p is the share of sign patterns whose sum reaches the observed one: exact (all 2^g) up to 16
    groups, else from ``draws`` patterns drawn with a fixed seed, (1 + reaching) / (1 + draws).
    Why groups, not items: the clips of one location are right or wrong together, so counting
    them as independent (paired_lead) would read one lucky location as a clear lead.
    """
    a, b = np.asarray(first, float), np.asarray(second, float)
    g = np.asarray(groups)
    if not (a.shape == b.shape == g.shape) or not a.size:
        raise ValueError(f"grouped_lead: {a.shape}, {b.shape} items and {g.shape} groups differ")
    names = np.unique(g)
    d = np.array([a[g == n].mean() - b[g == n].mean() for n in names])
    if len(d) <= 16:
        signs = 1 - 2 * ((np.arange(2 ** len(d))[:, None] >> np.arange(len(d))) & 1)
        p = float(np.mean((signs * np.abs(d)).sum(1) >= d.sum() - 1e-9))
    else:  # the observed pattern counts as one of the draws (an exact test's p is never 0)
        signs = np.random.default_rng(0).choice([-1, 1], size=(draws, len(d)))
        p = float((1 + np.sum((signs * np.abs(d)).sum(1) >= d.sum() - 1e-9)) / (1 + draws))
    return {"items": int(a.size), "groups": len(d), "lead": float(d.mean()), "p_value": p}


def _device_order(d: str):
    return (0, d) if not d.startswith("s") else (1, int(d[1:]) if d[1:].isdigit() else 99)
