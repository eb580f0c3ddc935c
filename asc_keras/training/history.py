"""A training's ``history.csv`` (Keras' CSVLogger, one row per round), read defensively.

The file is a record for plots and checks, never something a run's results depend on: a file
that cannot be read (hand-edited, or written twice over by two processes) is reported with a
warning and treated as absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from asc_keras.log import warn


def read_history(path: str | Path) -> pd.DataFrame | None:
    """The rounds of ``path`` as numbers, in order; None when absent or unreadable (warned)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        h = pd.read_csv(path)
        if "epoch" not in h or not len(h):
            raise ValueError("no 'epoch' column or no rows")
        h = h.apply(pd.to_numeric, errors="raise")
        if not np.all(np.diff(h["epoch"].to_numpy()) > 0):
            raise ValueError("its rounds are not in order (written by two runs at once?)")
    except (OSError, ValueError, TypeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        warn(f"{path}: cannot read this training history ({str(e).splitlines()[0][:160]}); "
             "its plot and checks are left out")  # fmt: skip
        return None
    return h.reset_index(drop=True)


def last_value(path: str | Path, key: str = "val_accuracy") -> float | None:
    """The last round's ``key`` (None without a readable history holding it)."""
    h = read_history(path)
    return float(h[key].iloc[-1]) if h is not None and key in h else None


# A validation gain of at least this much over the last quarter of a training's rounds says it
# stopped while still learning.
STILL_LEARNING_POINTS = 1.0


def learning_check(path: str | Path, key: str = "val_accuracy") -> dict | None:
    """Had learning ended?  The mean ``key`` of the last quarter of rounds against the quarter
    before (the check the step budget is sized by; never a rule that stops a training early).

    Returns {"rounds", "last_quarter_gain_points", "ended"} (``ended`` None with fewer than 4
    rounds), or None without a readable history holding ``key``.
    """
    h = read_history(path)
    if h is None or key not in h:
        return None
    v, k = 100 * h[key].to_numpy(float), max(1, len(h) // 4)
    if len(v) < 4:
        return {"rounds": len(v), "last_quarter_gain_points": None, "ended": None}
    # Keras logs float32 accuracies: a gain of exactly the limit (3 clips of 300 more) reads
    # 0.9999990 on one run and 1.0000005 on another.  Rounded to 1e-4 points -- far below a
    # clip's share of any evaluation fold -- it reads as the limit, so the verdict is the same.
    gain = round(float(v[-k:].mean() - v[-2 * k : -k].mean()), 4)
    return {
        "rounds": len(v),
        "last_quarter_gain_points": gain,
        "ended": gain < STILL_LEARNING_POINTS,
    }
