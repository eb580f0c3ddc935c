"""DCASE Task 1 metrics: accuracy (plain and class-macro), log loss, per-device and per-class accuracy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from asc_keras.config import SCENE_CLASSES

LOGLOSS_EPS = (
    1e-7  # probabilities are clipped to [eps, 1] and renormalised (int8 outputs hold exact zeros)
)


def log_loss(labels: np.ndarray, probs: np.ndarray, eps: float = LOGLOSS_EPS) -> float:
    """Mean multi-class log loss (natural log) after clipping at ``eps`` and renormalising."""
    p = np.clip(np.asarray(probs, np.float64), eps, 1.0)
    p /= p.sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(p[np.arange(len(labels)), labels])))


def classification_metrics(
    labels: Sequence[int],
    probs: np.ndarray,
    devices: Sequence[str] | None = None,
    classes: Sequence[str] = SCENE_CLASSES,
) -> dict:
    """All numbers a results table needs.

    Returns a dict: accuracy, macro_accuracy (mean of per-class accuracies, as DCASE ranks),
    log_loss, per_class {name: acc}, per_device {device: acc} (when devices given),
    confusion (rows true, columns predicted, counts), n.
    """
    labels = np.asarray(labels, np.int64)
    probs = np.asarray(probs, np.float64)
    pred = probs.argmax(axis=1)
    k = len(classes)
    conf = np.zeros((k, k), np.int64)
    np.add.at(conf, (labels, pred), 1)
    per_class = {
        c: float(conf[i, i] / conf[i].sum()) for i, c in enumerate(classes) if conf[i].sum()
    }
    out = {
        "n": int(len(labels)),
        "accuracy": float((pred == labels).mean()) if len(labels) else float("nan"),
        "macro_accuracy": float(np.mean(list(per_class.values()))) if per_class else float("nan"),
        "log_loss": log_loss(labels, probs) if len(labels) else float("nan"),
        "per_class": per_class,
        "confusion": conf.tolist(),
    }
    if devices is not None:
        devices = np.asarray(devices)
        out["per_device"] = {
            str(d): float((pred[devices == d] == labels[devices == d]).mean())
            for d in sorted(set(devices.tolist()), key=_device_order)
        }
    return out


def _device_order(d: str):
    return (0, d) if not d.startswith("s") else (1, int(d[1:]) if d[1:].isdigit() else 99)
