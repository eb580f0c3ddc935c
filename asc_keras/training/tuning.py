"""keras-tuner search over the student width (and optionally KD temperature/alpha).

Every trial trains a :class:`~asc_keras.distill.Distiller` on the same cached features and
stored ensemble soft targets; the objective is validation accuracy.  Distributed search uses
keras-tuner's own chief/worker mode, configured by environment variables (set them before
starting each process; all processes run the same command):

* ``KERASTUNER_TUNER_ID``: ``chief`` on the process that runs the oracle, ``tuner0``,
  ``tuner1``, ... on the workers;
* ``KERASTUNER_ORACLE_IP``: address of the chief (reachable from the workers);
* ``KERASTUNER_ORACLE_PORT``: a free port on the chief.

The chief only hands out trials and collects results; workers train.  ``directory`` must be
shared (or at least exist) on every machine.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import keras_tuner as kt
import numpy as np

from asc_keras._runtime import keras
from asc_keras.config import SystemConfig
from asc_keras.distill.distiller import Distiller
from asc_keras.models import build_serfr_cnn
from asc_keras.training.optimizers import make_optimizer
from asc_keras.training.pipeline import make_dataset


class StudentHyperModel(kt.HyperModel):
    """Distiller(SERFR-CNN-width) with width in ``widths``; with ``tune_kd`` also T and alpha."""

    def __init__(self, cfg: SystemConfig, data: dict, widths=(24, 32), tune_kd: bool = False, epochs: int = 10):
        super().__init__(name="serfr_cnn_width")
        self.cfg, self.data, self.widths, self.tune_kd, self.epochs = cfg, data, tuple(widths), tune_kd, epochs

    def _kd(self, hp):
        if self.tune_kd:
            return hp.Choice("temperature", [1.0, 2.0, 4.0]), hp.Choice("alpha", [0.1, 0.5])
        return self.cfg.distill.temperature, self.cfg.distill.alpha

    def build(self, hp):
        width = hp.Choice("width", list(self.widths))
        temperature, alpha = self._kd(hp)
        kd = self.data["soft"] is not None
        model = Distiller(build_serfr_cnn(width), alpha=alpha if kd else 1.0, temperature=temperature)
        steps = int(np.ceil(len(self.data["train_rows"]) / self.cfg.optim.batch_size))
        model.compile(make_optimizer(self.cfg.optim, steps, self.epochs), metrics=["accuracy"])
        return model

    def fit(self, hp, model, *args, **kwargs):
        temperature, _ = self._kd(hp)
        d, c = self.data, self.cfg
        train = make_dataset(d["features"], d["train_rows"], d["train_labels"], d["soft"], batch_size=c.optim.batch_size,
                             shuffle=True, augment=c.augment, temperature=temperature, seed=c.seed)
        val = make_dataset(d["features"], d["val_rows"], d["val_labels"], batch_size=c.optim.batch_size)
        kwargs.pop("validation_data", None)
        return model.fit(train, validation_data=val, shuffle=False, **kwargs)


def width_search(cfg: SystemConfig, data: dict, directory: str | Path, *, widths=(24, 32), tune_kd: bool = False,
                 epochs: int = 10, max_trials: int | None = None, verbose: int | str = "auto",
                 project_name: str = "width_search") -> dict:
    """Run (or resume) a grid search; return a summary (best hyper-parameters, every trial's score).

    ``data`` holds ``features`` (clip memmap), ``train_rows``/``train_labels``/``soft`` (ensemble
    logits or None) and ``val_rows``/``val_labels``.  The summary is also written to
    ``directory/<project_name>/summary.json``.
    """
    worker = os.environ.get("KERASTUNER_TUNER_ID", "chief") != "chief"
    hm = StudentHyperModel(cfg, data, widths, tune_kd, epochs)
    tuner = kt.GridSearch(hm, objective="val_accuracy", max_trials=max_trials, directory=str(directory),
                          project_name=project_name, overwrite=False, seed=cfg.seed)
    tuner.search(epochs=epochs, verbose=verbose)
    if worker:  # workers only train; the chief's oracle holds the results
        return {"worker": os.environ["KERASTUNER_TUNER_ID"]}
    trials = []
    for t in tuner.oracle.trials.values():
        trials.append({"trial": t.trial_id, "status": str(t.status), "hyperparameters": t.hyperparameters.values,
                       "val_accuracy": t.score})
    trials.sort(key=lambda r: -(r["val_accuracy"] or -1))
    best = tuner.get_best_hyperparameters(1)
    summary = {"objective": "val_accuracy", "best": best[0].values if best else None, "trials": trials,
               "epochs": epochs}
    out = Path(directory) / project_name / "summary.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1, default=str))
    return summary


__all__ = ["StudentHyperModel", "width_search", "keras"]
