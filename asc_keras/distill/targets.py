"""Teacher-ensemble soft targets, computed once and stored beside the feature cache.

Students never run the teachers per step: ``ensemble_logits`` runs every teacher
over the cached features once, and :class:`SoftTargets` stores the ensemble's
logits (one row per clip, aligned with the clip cache) atomically as ``.npy`` +
``.json``.  The temperature is applied at training time with :func:`temper`, so
one stored file serves any T.

Ensemble modes: 'logits' averages the teachers' logits; 'probabilities' averages
their softmax outputs and stores log(mean probability) as the logits (softmax of
it gives back the mean; tempering it gives p^(1/T) renormalised).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

ENSEMBLE_MODES = ("probabilities", "logits")


def temper(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / T) along the last axis, float32."""
    z = np.asarray(logits, np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def ensemble_logits(teachers: Sequence, features: np.ndarray, rows: np.ndarray | None = None,
                    mode: str = "probabilities", batch_size: int = 64) -> np.ndarray:
    """Run teachers over ``features[rows]`` ((N, frames, mels), memmap ok) in batches.

    Returns (N, classes) float32 ensemble logits (see module docstring for ``mode``).
    """
    from asc_keras.models.common import logits_model

    if mode not in ENSEMBLE_MODES:
        raise ValueError(f"unknown ensemble mode {mode!r}; use one of {ENSEMBLE_MODES}")
    rows = np.arange(len(features)) if rows is None else np.asarray(rows)
    heads = [logits_model(t) for t in teachers]
    out = []
    for s in range(0, len(rows), batch_size):
        x = np.asarray(features[np.sort(rows[s:s + batch_size])], np.float32)[..., None]
        order = np.argsort(np.argsort(rows[s:s + batch_size]))
        zs = np.stack([np.asarray(h(x, training=False)) for h in heads])[:, order]
        if mode == "logits":
            out.append(zs.mean(axis=0))
        else:
            p = np.mean([temper(z) for z in zs], axis=0)
            out.append(np.log(np.clip(p, 1e-12, None)))
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 10), np.float32)


@dataclass(frozen=True)
class SoftTargets:
    """Stored ensemble logits: ``logits[i]`` belongs to ``items[i]`` (clip file names)."""

    logits: np.ndarray
    items: tuple[str, ...]
    meta: dict

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (.npy) and ``path``.json atomically (temp file + rename, json last)."""
        path = Path(path).with_suffix(".npy")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npy")
        np.save(tmp, self.logits.astype(np.float32))
        os.replace(tmp, path)
        side = path.with_suffix(".json")
        tmpj = side.with_name(side.name + ".tmp")
        tmpj.write_text(json.dumps({"items": list(self.items), "meta": self.meta}))
        os.replace(tmpj, side)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SoftTargets":
        path = Path(path).with_suffix(".npy")
        side = path.with_suffix(".json")
        if not (path.is_file() and side.is_file()):
            raise FileNotFoundError(f"{path}: soft targets not found (or incomplete); compute them again")
        d = json.loads(side.read_text())
        logits = np.load(path)
        if len(logits) != len(d["items"]):
            raise ValueError(f"{path}: {len(logits)} rows but {len(d['items'])} items; compute them again")
        return cls(logits, tuple(d["items"]), d["meta"])

    def for_items(self, items: Sequence[str]) -> np.ndarray:
        index = {it: i for i, it in enumerate(self.items)}
        missing = [it for it in items if it not in index]
        if missing:
            raise KeyError(f"no soft target for {len(missing)} item(s), e.g. {missing[0]}")
        return self.logits[[index[it] for it in items]]
