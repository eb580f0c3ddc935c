"""keras-tuner search over the student width (and optionally KD temperature/alpha).

Every trial trains a :class:`~asc_keras.distill.Distiller` on the same cached features and
stored ensemble soft targets; the objective is the last epoch's validation accuracy, averaged
over seeds.  Distributed search uses
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

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import keras_tuner as kt
import numpy as np

from asc_keras._runtime import keras
from asc_keras.config import SystemConfig
from asc_keras.data.splits import ClipSplit
from asc_keras.distill.targets import SoftTargets, kd_soft_targets
from asc_keras.files import write_text
from asc_keras.training.loop import get_strategy
from asc_keras.training.student import build_student_trainer, fit_student, student_length


@dataclass(frozen=True)
class SearchData:
    """What every trial trains and validates on (one object, not loose pieces).

    ``targets``: the teachers' stored :class:`~asc_keras.distill.SoftTargets` of the training
    clips (None: CE only); trials read the ensemble's distribution at their own temperature.
    ``teachers``: instead, the teachers run live on each batch, as ``run`` runs them
    (:mod:`asc_keras.stages.teaching`), with their ensemble's ``teacher_weights``.
    """

    train: ClipSplit
    val: ClipSplit
    targets: SoftTargets | None
    teachers: tuple = ()
    teacher_weights: tuple[float, ...] | None = None


class StudentHyperModel(kt.HyperModel):
    """The run's student recipe with width in ``widths``; with ``tune_kd`` also T and alpha.

    Each trial is built by :func:`~asc_keras.training.student.build_student_trainer` and trained
    by :func:`~asc_keras.training.student.fit_student` -- the functions ``asc-keras run`` trains
    its student with -- on a copy of the system's configuration with the trial's values, so a
    trial trains exactly what a run with those values would (length, augmentation, mixed
    precision, metrics).  The trial's score is the validation accuracy *after the last round*,
    the model a run keeps (keras-tuner's default, the best round, would pick rounds on the
    evaluation data).  With ``executions_per_trial = seeds`` keras-tuner averages the executions,
    each with its own seed; each one's score is also appended to ``scores_file`` so the summary
    can show mean and spread.
    """

    def __init__(self, cfg: SystemConfig, data: SearchData, widths=(24, 32), tune_kd: bool = False,
                 scores_file: Path | None = None):  # fmt: skip
        super().__init__(name="serfr_cnn_width")
        self.cfg, self.data, self.widths, self.tune_kd = cfg, data, tuple(widths), tune_kd
        self.scores_file = scores_file
        self._builds: dict[str, int] = {}  # executions built so far per trial: their seeds
        self._controls: dict[tuple[int, int], object] = {}  # (width, seed): its trained CE control

    def trial_config(self, hp, execution: int = 0) -> SystemConfig:
        """The system's configuration with the trial's width (and T, alpha) and seed."""
        d = self.cfg.distill
        if self.tune_kd:
            temperature = hp.Choice("temperature", [1.0, 2.0, 4.0])  # stored and live targets'
            d = dataclasses.replace(d, temperature=temperature, live_temperature=temperature,
                                    alpha=hp.Choice("alpha", [0.1, 0.5]), recording_alpha=None)  # fmt: skip
        return dataclasses.replace(self.cfg, student_width=hp.Choice("width", list(self.widths)),
                                   distill=d, seed=self.cfg.seed + execution)  # fmt: skip

    def build(self, hp):
        key = json.dumps(hp.values, sort_keys=True)
        execution = self._builds.get(key, 0)
        self._builds[key] = execution + 1
        cfg = self.trial_config(hp, execution)
        d = self.data
        kd, share = d.targets is not None or bool(d.teachers), cfg.distill.control_share
        # As run: the control co-teaches where the teachers' part is stored (stages.teaching).
        control = self.control(cfg) if kd and share > 0 and not d.teachers else None
        keras.utils.set_random_seed(cfg.seed)
        model = build_student_trainer(cfg, len(d.train), kd=kd, teachers=list(d.teachers) or None,
                                      teacher_weights=d.teacher_weights, control=control)  # fmt: skip
        model._trial_seed = cfg.seed  # the fit below trains with the same seed
        return model

    def control(self, cfg: SystemConfig):
        """The trial's CE control (its width and seed), trained once by the same recipe, for
        ``distill.control_share`` of its KD student's target, as ``run`` trains it first."""
        key = (cfg.student_width, cfg.seed)
        if key not in self._controls:
            keras.utils.set_random_seed(cfg.seed)
            control = build_student_trainer(cfg, len(self.data.train), kd=False)
            fit_student(control, cfg, self.data.train, None, None, run_dir=None, verbose=0)
            self._controls[key] = control.student
        return self._controls[key]

    def fit(self, hp, model, *args, **kwargs):
        cfg = dataclasses.replace(self.trial_config(hp), seed=model._trial_seed)
        d = self.data
        soft = (  # live teachers (d.teachers) make the targets on each batch instead
            None if d.targets is None else kd_soft_targets(d.targets, cfg.distill, d.train.labels)
        )
        history = fit_student(model, cfg, d.train, d.val, soft, run_dir=None,
                              verbose=kwargs.get("verbose", "auto"), callbacks=kwargs.get("callbacks", ()))  # fmt: skip
        last = float(history.history["val_accuracy"][-1])
        if self.scores_file is not None:
            self.scores_file.parent.mkdir(parents=True, exist_ok=True)
            with open(self.scores_file, "a") as f:
                f.write(json.dumps({"hyperparameters": hp.values, "val_accuracy": last}) + "\n")
        return {"val_accuracy": last}


def width_search(
    cfg: SystemConfig,
    data: SearchData,
    directory: str | Path,
    *,
    widths=(24, 32),
    tune_kd: bool = False,
    seeds: int = 2,
    max_trials: int | None = None,
    verbose: int | str = "auto",
    project_name: str = "width_search",
    strategy: str = "default",
) -> dict:
    """Run (or resume) a grid search; return a summary (best hyper-parameters, every trial's score).

    Each trial trains as long as the system's student (``cfg.optim``), ``seeds`` times
    (keras-tuner's executions per trial, each with its own seed: initialisation, data order and
    augmentation) and scores the mean last-round validation accuracy.  The
    summary -- also written to ``directory/<project_name>/summary.json`` -- lists every trial's
    mean, standard deviation and single scores.
    """
    worker = os.environ.get("KERASTUNER_TUNER_ID", "chief") != "chief"
    scores_file = Path(directory) / project_name / "execution_scores.jsonl"
    hm = StudentHyperModel(cfg, data, widths, tune_kd, scores_file)
    tuner = kt.GridSearch(
        hm,
        objective=kt.Objective("val_accuracy", "max"),
        max_trials=max_trials,
        executions_per_trial=seeds,
        directory=str(directory),
        project_name=project_name,
        overwrite=False,
        seed=cfg.seed,
        # Each trial's model is built and trained under the run's strategy (keras-tuner's own
        # distribution hook): 'mirrored' spreads every trial over the machine's GPUs.
        distribution_strategy=None if strategy == "default" else get_strategy(strategy),
    )
    tuner.search(verbose=verbose)
    if worker:  # workers only train; the chief's oracle holds the results
        return {"worker": os.environ["KERASTUNER_TUNER_ID"]}
    singles: dict[str, list[float]] = {}
    if scores_file.is_file():
        for line in scores_file.read_text().splitlines():
            r = json.loads(line)
            singles.setdefault(json.dumps(r["hyperparameters"], sort_keys=True), []).append(
                r["val_accuracy"]
            )
    trials = []
    for t in tuner.oracle.trials.values():
        runs = singles.get(json.dumps(t.hyperparameters.values, sort_keys=True), [])
        trials.append(
            {
                "trial": t.trial_id,
                "status": str(t.status),
                "hyperparameters": t.hyperparameters.values,
                "val_accuracy": t.score,
                "val_accuracy_std": float(np.std(runs)) if runs else None,
                "executions": runs,
            }
        )
    trials.sort(key=lambda r: -(r["val_accuracy"] or -1))
    best = tuner.get_best_hyperparameters(1)
    length = student_length(cfg, len(data.train))
    summary = {
        "objective": "mean last-epoch val_accuracy over seeds",
        "best": best[0].values if best else None,
        "trials": trials,
        "length": {**dataclasses.asdict(length), "steps": length.steps},
        "seeds": seeds,
    }
    write_text(
        Path(directory) / project_name / "summary.json", json.dumps(summary, indent=1, default=str)
    )
    return summary


__all__ = ["SearchData", "StudentHyperModel", "width_search", "keras"]
