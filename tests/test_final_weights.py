"""The weights a student keeps (``optim.ema_momentum``, ``optim.precise_bn_batches``): the
moving average of its weights over the steps, then BatchNorm statistics from clean batches."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import tiny_config

from asc_keras._runtime import keras
from asc_keras.config import OptimConfig
from asc_keras.models.common import is_batch_norm
from asc_keras.training.bn import recalibrate_batchnorm
from asc_keras.training.optimizers import make_optimizer
from asc_keras.training.pipeline import make_dataset
from asc_keras.training.student import build_student_trainer, fit_student, precise_batchnorm

SHORT = {"steps": 12, "rounds": 3}


class _StepWeights(keras.callbacks.Callback):
    """The trainable weights after every optimiser step."""

    def on_train_begin(self, logs=None):
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append([v.numpy().copy() for v in self.model.trainable_variables])


def _train(cfg, train, callbacks=()):
    trainer = build_student_trainer(cfg, len(train), kd=False)
    fit_student(trainer, cfg, train, None, None, run_dir=None, verbose=0, callbacks=callbacks)
    return trainer


def _bn_stats(model) -> list[np.ndarray]:
    layers = [x for x in model._flatten_layers() if is_batch_norm(x)]
    return [v.numpy().copy() for x in layers for v in (x.moving_mean, x.moving_variance)]


def test_the_kept_weights_are_the_moving_average_of_every_steps_weights(tiny_splits):
    """avg_1 = w_1, avg_k = m avg_(k-1) + (1 - m) w_k, recomputed here from the weights after each
    step: the trained student holds avg_12, not w_12, to float32 rounding."""
    m = 0.8
    cfg = tiny_config(optim={**SHORT, "ema_momentum": m})
    steps = _StepWeights()
    trainer = _train(cfg, tiny_splits[0], [steps])
    assert len(steps.steps) == 12
    avg = steps.steps[0]
    for w in steps.steps[1:]:
        avg = [m * a + (1 - m) * x for a, x in zip(avg, w)]
    kept = [v.numpy() for v in trainer.trainable_variables]
    for a, k in zip(avg, kept):
        np.testing.assert_allclose(k, a, rtol=1e-5, atol=1e-6)
    last = steps.steps[-1]
    assert max(float(np.abs(k - w).max()) for k, w in zip(kept, last)) > 1e-3  # not w_12


def test_without_ema_the_kept_weights_are_the_last_steps(tiny_splits):
    steps = _StepWeights()
    trainer = _train(tiny_config(optim=SHORT), tiny_splits[0], [steps])
    for k, w in zip(trainer.trainable_variables, steps.steps[-1]):
        np.testing.assert_array_equal(k.numpy(), w)


def test_precise_batchnorm_holds_the_clean_batches_statistics_of_the_kept_weights(tiny_splits):
    """After training, re-estimating on the same clean batches changes no statistic (they are
    already those), while the statistics of the training batches differ from them; the weights
    are not touched."""
    train = tiny_splits[0]
    cfg = tiny_config(optim={**SHORT, "ema_momentum": 0.8, "precise_bn_batches": 3})
    trainer = _train(cfg, train)
    kept, weights = _bn_stats(trainer.student), [v.numpy() for v in trainer.trainable_variables]
    clean = make_dataset(train.features, train.rows, train.labels, batch_size=32, shuffle=True,
                         seed=cfg.seed)  # fmt: skip
    assert recalibrate_batchnorm(trainer.student, clean, 3) == 3
    for a, b in zip(_bn_stats(trainer.student), kept):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(trainer.trainable_variables, weights):
        np.testing.assert_array_equal(a.numpy(), b)
    # The same training without the re-estimation ends on other statistics.
    plain = _train(dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, precise_bn_batches=0)),
                   train)  # fmt: skip
    gaps = [float(np.abs(a - b).max()) for a, b in zip(_bn_stats(plain.student), kept)]
    assert max(gaps) > 1e-2, gaps


def test_final_weight_settings_are_checked(tiny_splits):
    with pytest.raises(ValueError, match=r"optim.ema_momentum must be in \[0, 1\)"):
        make_optimizer(OptimConfig(), 10, 2, ema=1.0)
    with pytest.raises(ValueError, match=r"optim.ema_momentum"):
        make_optimizer(OptimConfig(), 10, 2, ema=float("nan"))
    cfg = tiny_config(optim={**SHORT, "precise_bn_batches": -1})
    with pytest.raises(ValueError, match="optim.precise_bn_batches must be 0"):
        precise_batchnorm(None, cfg, tiny_splits[0])


def test_teachers_and_baseline_keys_ignore_the_students_final_weights(tmp_path):
    """The teachers and the baseline do not read them: their work keys stay as they were; the
    students' (and the probe's) hold them only where they are set, so runs recorded before
    keep theirs."""
    from asc_keras.stages.shared import RunPlace
    from asc_keras.stages.teachers import teacher_dir

    place = RunPlace(tmp_path / "out", tmp_path / "work")
    folders = {teacher_dir(tiny_config(optim=o), place, tmp_path, "cnn")
               for o in ({}, {"ema_momentum": 0.99, "precise_bn_batches": 50},
                         {"min_passes": 9})}  # fmt: skip
    assert len(folders) == 1, folders
    before = dataclasses.asdict(OptimConfig())
    assert OptimConfig().key_dict() == {k: v for k, v in before.items()
                                        if k not in ("ema_momentum", "precise_bn_batches",
                                                     "min_passes")}  # fmt: skip
    averaged = OptimConfig(ema_momentum=0.99, precise_bn_batches=50)
    assert averaged.key_dict(students=False) == OptimConfig().key_dict()
    assert averaged.key_dict()["ema_momentum"] == 0.99
    assert averaged.key_dict()["precise_bn_batches"] == 50
