"""Training step times of every model a system trains, and the training time they predict.

    python benchmarks/bench_steps.py [--profile quick] [--steps 40]

Each model is built as the run builds it (the CE control and the KD student in their Distiller, the
control running live under the student with ``distill.control_share``; with ``distill.clip_targets``
'live' the same student with every teacher live too, a line in brackets: it replaces the KD
student's line where the targets are clip-level; each teacher with its own view, the DCASE
baseline on its own features) and trained on one random
batch of its shapes and size: 1 s clips for the students, whole 10 s recordings (or the view's
windows) for the teachers.  After tracing, the median time between consecutive optimiser steps
is kept.  Multiplied by the profile's steps, it gives the seconds of optimiser steps each stage
of ``run`` holds -- without its validation rounds, input pipeline, data, features, targets and
compression, so a run takes longer.  What it is for: to see, in two minutes, how fast a machine
trains now (the 2-core development machine ran the same student step in 72-85 ms and in 171 ms,
minutes apart: README, "The quick profile, measured").  Last, the students' clean-batch
BatchNorm re-estimation (``optim.precise_bn_batches``) as the run does it, tracing included, and
the same forward passes called eagerly for comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from asc_keras._runtime import keras, tf
from asc_keras.config import N_CLASSES
from asc_keras.models.baseline import BASELINE_FEATURES, build_dcase_baseline_for_cache
from asc_keras.presets import system_config
from asc_keras.training.bn import recalibrate_batchnorm
from asc_keras.training.optimizers import make_optimizer
from asc_keras.training.student import build_student_trainer
from asc_keras.training.teachers import build_teacher


def _batches(shape: tuple, batch: int, soft: bool):
    """An endless dataset of one random batch: (x, y) or (x, (y, soft targets))."""
    rng = np.random.default_rng(0)
    x = rng.normal(-5, 2, (batch, *shape)).astype("float32")
    y = keras.utils.to_categorical(np.arange(batch) % N_CLASSES, N_CLASSES)
    target = (y, np.full_like(y, 1 / N_CLASSES)) if soft else y
    return tf.data.Dataset.from_tensors((x, target)).repeat()


class _StepTimes(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.ends = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())


def _ms_per_step(model, ds, steps: int) -> float:
    """Median time between the ends of consecutive optimiser steps, after tracing; milliseconds."""
    model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)  # tracing
    timer = _StepTimes()
    model.fit(ds, steps_per_epoch=steps + 1, epochs=1, verbose=0, callbacks=[timer])
    return statistics.median(np.diff(timer.ends)) * 1000


def _precise_bn(cfg) -> tuple[float, float]:
    """Seconds of one student's BatchNorm re-estimation on ``optim.precise_bn_batches`` batches:
    as the run does it (one traced forward pass), and as eager calls."""
    student = build_student_trainer(cfg, 2800, kd=False).student
    shape = tuple(student.input_shape[1:])
    n, ds = cfg.optim.precise_bn_batches, _batches(shape, cfg.optim.batch_size, False)
    start = time.perf_counter()
    recalibrate_batchnorm(student, ds, n)
    traced = time.perf_counter() - start
    start = time.perf_counter()
    for x, _ in ds.take(n):
        student(x, training=True)
    return traced, time.perf_counter() - start


def _models(cfg):
    """(stage, model, input shape, batch, soft targets, the profile's steps, trainings in a run)
    of each trained model."""
    o, t, c = cfg.optim, cfg.teachers, cfg.controls
    clip = (cfg.features.n_frames(), cfg.features.n_mels)
    # The clip count (the built-in set's 2,800) and the schedules' lengths below set only the
    # learning rate's curve, not what one step costs.
    control = build_student_trainer(cfg, 2800, kd=False)
    if c.ce_control:  # the same model, trained first with CE only
        yield "CE control", control, clip, o.batch_size, False, o.steps, 1
    # With distill.control_share the control runs forward on each of the KD student's batches.
    share = cfg.distill.control_share if c.ce_control else 0.0
    co_teacher = control.student if share > 0 else None
    student = build_student_trainer(cfg, 2800, kd=True, control=co_teacher)
    label = "KD student, control live" if co_teacher is not None else "KD student"
    yield label, student, clip, o.batch_size, True, o.steps, 1
    # 'auto' runs them live where they clearly lead the probe student: timed as 'live'.
    if cfg.distill.clip_targets in ("live", "auto"):  # where the targets are clip-level
        # (their own instances: the Distiller freezes its teachers, the rows below train them)
        teachers = [build_teacher(name, t.view(name), o.bn_momentum) for name in t.names]
        student = build_student_trainer(cfg, 2800, kd=True, teachers=teachers)
        # Instead of the row above where the targets are clip-level: not added to the total.
        yield "KD student, 3 teachers live", student, clip, o.batch_size, False, o.steps, 0
    for name in t.names:
        view = t.view(name)
        model = build_teacher(name, view, o.bn_momentum)
        seconds = view.crop_seconds or 10.0
        shape = tuple(cfg.features.n_frames(seconds) if d is None else d
                      for d in model.input_shape[1:])  # fmt: skip
        model.compile(make_optimizer(o, 100, 3, peak_lr=view.peak_lr), "categorical_crossentropy")
        yield f"teacher {name}", model, shape, view.batch_size, False, view.steps, 1
    base = (BASELINE_FEATURES.n_frames(), BASELINE_FEATURES.n_mels)
    model = build_dcase_baseline_for_cache(*base, bn_momentum=o.bn_momentum)
    model.compile(keras.optimizers.Adam(c.baseline_lr), "categorical_crossentropy")
    yield "DCASE baseline", model, base, c.baseline_batch_size, False, c.baseline_steps, 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--system", type=int, default=1)
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--steps", type=int, default=40, help="timed steps per model")
    args = ap.parse_args()
    cfg = system_config(args.system, args.profile)
    print(f"system {args.system}, profile {args.profile}, {os.cpu_count()} CPUs")
    print(f"{'model':34s} {'batch':>5s} {'ms/step':>8s} {'steps':>6s} {'seconds':>8s}")
    total = 0.0
    for stage, model, shape, batch, soft, steps, runs in _models(cfg):
        ms = _ms_per_step(model, _batches(shape, batch, soft), args.steps)
        if steps is None:  # a length in epochs: its steps depend on the data set
            print(f"{stage:34s} {batch:5d} {ms:8.0f} {'epochs':>6s} {'-':>8s}", flush=True)
            continue
        seconds = ms * steps * max(runs, 1) / 1000
        total += seconds if runs else 0.0
        n = f"{steps * runs:6d}" if runs else f"({steps})".rjust(6)  # (n): instead, not added
        print(f"{stage:34s} {batch:5d} {ms:8.0f} {n} {seconds:8.0f}", flush=True)
    print(
        f"optimiser steps of the run (lengths in steps only): {total:.0f} s ({total / 60:.1f} min)"
    )
    if cfg.optim.precise_bn_batches:
        traced, eager = _precise_bn(cfg)
        print(f"precise BatchNorm, {cfg.optim.precise_bn_batches} batches per student: {traced:.1f} s "
              f"(eager calls: {eager:.1f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
