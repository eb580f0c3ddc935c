"""PNG plots for a run: confusion matrix, per-device accuracy, learning curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from asc_keras.config import SCENE_CLASSES  # noqa: E402
from asc_keras.training.history import read_history  # noqa: E402


def plot_confusion(
    confusion, path: str | Path, title: str, classes: Sequence[str] = SCENE_CLASSES
) -> Path:
    cm = np.asarray(confusion, float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(
                j,
                i,
                f"{norm[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=6,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def plot_per_device(series: dict[str, dict[str, float]], path: str | Path, title: str) -> Path:
    """``series``: {label: {device: accuracy}} drawn as grouped bars."""
    devices = sorted({d for s in series.values() for d in s}, key=lambda d: (d.startswith("s"), d))
    fig, ax = plt.subplots(figsize=(8, 4))
    w = 0.8 / max(1, len(series))
    for k, (label, accs) in enumerate(series.items()):
        ax.bar(
            np.arange(len(devices)) + k * w,
            [100 * accs.get(d, np.nan) for d in devices],
            w,
            label=label,
        )
    ax.set_xticks(np.arange(len(devices)) + w * (len(series) - 1) / 2, devices)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_learning_curves(history_csv: str | Path, path: str | Path, title: str) -> Path | None:
    """Loss and accuracy per round; None (no plot) when the history is absent or unreadable."""
    h = read_history(history_csv)
    if h is None:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("loss", "val_loss", "student_loss", "distillation_loss"):
        if key in h:
            axes[0].plot(h["epoch"] + 1, h[key], label=key)
    for key in ("accuracy", "val_accuracy"):
        if key in h:
            axes[1].plot(h["epoch"] + 1, 100 * h[key], label=key)
    axes[0].set_xlabel("epoch")
    axes[0].set_title("loss")
    axes[1].set_xlabel("epoch")
    axes[1].set_title("accuracy (%)")
    for a in axes:
        a.legend()
        a.grid(alpha=0.3)
    fig.suptitle(title)
    return _save(fig, path)


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
