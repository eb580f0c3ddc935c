"""The Distiller: a keras.Model that trains a student from hard labels and teacher soft targets.

    loss = alpha * CE(hard, softmax(z_s)) + (1 - alpha) * T^2 * KL(p_t,T || softmax(z_s / T))

averaged over the batch; the maths is :mod:`asc_keras.distill.losses`, shared with the
tf_keras pruning/QAT loss.  The teachers' part of the target comes either from the data --
``y = (hard, soft)`` where ``soft`` is the teacher ensemble's distribution at temperature T
(with mixup, the mixed distribution) -- or from live ``teachers`` run on each (augmented) batch
(``y = hard``), combined by the same definition and weights
(:func:`~asc_keras.distill.losses.ensemble_soft_targets`), so stored and live targets of the
same clips are equal.  A live ``control`` (the run's CE control) may give ``control_share`` of
each target: ``(1 - s) * teachers' + s * control's`` (``share_by`` 'confidence': that share set
per example by who gives the label more, :func:`~asc_keras.distill.losses.mixed_targets`).
``y = hard`` with neither trains with CE only.  With ``teacher_view`` 'parallel' a batch's x
has two channels: the student (and the control) take the first, the clip itself, the live
teachers the second, the same sound through a device drawn from its parallel recordings
(:mod:`asc_keras.data.parallel`).
"""

from __future__ import annotations

from asc_keras._runtime import keras, tf
from asc_keras.config import SHARE_RULES, TEACHER_VIEWS
from asc_keras.distill.losses import (
    ENSEMBLE_MODES,
    KD_PARTS,
    distillation_terms,
    ensemble_soft_targets,
    mixed_targets,
)
from asc_keras.models.common import logits_model


@keras.saving.register_keras_serializable(package="asc_keras")
class Distiller(keras.Model):
    """Wraps ``student`` (a model ending in 'logits' -> softmax) for distillation training.

    ``call`` returns the student's *logits* (as in the keras.io example), so compile
    metrics see logits: use 'accuracy' and ``CategoricalCrossentropy(from_logits=True)``.
    Metrics reported: loss, student_loss (CE part), distillation_loss (KD part) and
    the compiled ones.  Export ``distiller.student`` (probabilities out).

    Args:
        student: the model to train.
        teachers: optional live teacher model or list of them, run on each (augmented) batch:
            the teachers' part of the target, instead of stored soft targets (consistent teaching:
            the target of the very view the student sees, Beyer et al. 2022).
        teacher_weights: (K,) weights of the live teachers' ensemble, summing to 1; None: 1/K.
        control: optional live model (the CE control) run on each batch for ``control_share``
            of the target, the rest the teachers' part (stored or live).
        control_share: that share; 'confidence' (``share_by``) scales it per example by each
            side's probability of the label (``distill.losses.mixed_targets``).
        alpha: weight of the hard-label CE term; 1.0 is plain CE training.
        temperature: T of the distillation term.
        ensemble: how live teachers combine, 'probabilities' (mean of each teacher's softmax at T)
            or 'logits' (softmax of the mean logits at T) -- the stored targets' definition.
        kd_part: 'whole' (Hinton's KL over every class) or 'non_target' (decoupled KD's NCKD:
            the KL over the classes the label gives nothing; :mod:`asc_keras.distill.losses`).
        kd_steps: the optimiser steps that learn from the soft targets; after them the loss is
            the labels' CE alone (early-stopped KD, Cho & Hariharan 2019).  None: KD throughout.
        teacher_view: 'own' (the teachers hear the student's input) or 'parallel' (training
            batches of two channels, the teachers hearing the second; batches of one channel,
            as validation's, the first).  Why: the teachers' output on one sound differs by
            device (``stationary`` stand-in: on 5.7 % of the training pairs by class, a total
            variation of 0.12 at T 2), and a student matching it learns the device too; on
            average over the drawn device the target is the devices' mean.
    """

    def __init__(
        self,
        student,
        teachers=None,
        alpha: float = 0.1,
        temperature: float = 2.0,
        ensemble: str = "probabilities",
        kd_part: str = "whole",
        kd_steps: int | None = None,
        control=None,
        control_share: float = 0.0,
        share_by: str = "fixed",
        teacher_weights=None,
        teacher_view: str = "own",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if teacher_view not in TEACHER_VIEWS:
            raise ValueError(f"unknown teacher_view {teacher_view!r}; use one of {TEACHER_VIEWS}")
        self.teacher_view = teacher_view
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if ensemble not in ENSEMBLE_MODES:
            raise ValueError(f"unknown ensemble mode {ensemble!r}; use one of {ENSEMBLE_MODES}")
        if kd_part not in KD_PARTS:
            raise ValueError(f"unknown kd_part {kd_part!r}; use one of {KD_PARTS}")
        self.ensemble = ensemble
        self.kd_part = kd_part
        if kd_steps is not None and kd_steps < 0:
            raise ValueError(f"kd_steps must be >= 0 or None, got {kd_steps}")
        self.kd_steps = None if kd_steps is None else int(kd_steps)
        if not 0.0 <= control_share <= 1.0:
            raise ValueError(f"control_share must be in [0, 1], got {control_share}")
        self.control_share = float(control_share)
        if share_by not in SHARE_RULES:
            raise ValueError(f"unknown share_by {share_by!r}; use one of {SHARE_RULES}")
        self.share_by = share_by
        self.student = student
        if teachers is not None and not isinstance(teachers, (list, tuple)):
            teachers = [teachers]
        self.teachers = list(teachers) if teachers else []
        self.control = control
        for t in [*self.teachers, *([control] if control is not None else [])]:
            t.trainable = False
        if teacher_weights is not None:
            teacher_weights = [float(w) for w in teacher_weights]
            if len(teacher_weights) != len(self.teachers) or abs(sum(teacher_weights) - 1) > 1e-4:
                raise ValueError(f"teacher_weights {teacher_weights} must be one per live teacher "
                                 f"({len(self.teachers)}) and sum to 1")  # fmt: skip
        self.teacher_weights = teacher_weights
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self._student_logits = logits_model(student)
        self._teacher_logits = [logits_model(t) for t in self.teachers]
        self._control_logits = logits_model(control) if control is not None else None
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")
        # The wrapped models are built, so this one is: BackupAndRestore and strategies need that.
        self.build(tuple(student.input_shape))

    def build(self, input_shape=None):
        self.built = True

    def call(self, x, training=False):
        return self._student_logits(self._own(x), training=training)

    def _own(self, x):
        """The student's channel of ``x`` (the whole of it but with parallel views)."""
        return x[..., :1] if self.teacher_view == "parallel" else x

    def _heard(self, x):
        """What the live teachers hear: the parallel channel where ``x`` has one."""
        return x[..., 1:] if self.teacher_view == "parallel" and x.shape[-1] == 2 else x

    def _targets(self, x, y):
        if isinstance(y, (tuple, list)):
            hard, soft = y
        else:
            hard, soft = y, None
        if self._teacher_logits:
            if soft is not None:
                raise ValueError("the Distiller's live teachers replace stored soft targets: "
                                 "pass y = hard labels only")  # fmt: skip
            z = keras.ops.stack(
                [t(self._heard(x), training=False) for t in self._teacher_logits], axis=1
            )  # (B, K, C)
            soft = keras.ops.stop_gradient(
                ensemble_soft_targets(z, self.temperature, self.ensemble, self.teacher_weights)
            )
        if self._control_logits is not None and soft is not None and self.control_share > 0.0:
            zc = self._control_logits(self._own(x), training=False)
            live = keras.ops.stop_gradient(keras.ops.softmax(zc / self.temperature, axis=-1))
            # The control's part is of the very view (masks, mixup) the student is trained on; a
            # stored teachers' part of the clean clip or recording (NumPy's float64 maybe).
            soft = keras.ops.cast(soft, live.dtype)
            by_label = hard if self.share_by == "confidence" else None  # the share per example
            soft = mixed_targets(soft, live, self.control_share, by_label)
        return hard, soft

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        hard, soft = self._targets(x, y)
        if self.alpha == 1.0:
            soft = None  # CE-only training
        ce, kd = distillation_terms(hard, soft, y_pred, self.temperature, self.kd_part)
        ce, kd = keras.ops.mean(ce), keras.ops.mean(kd)
        # Without soft targets (validation data, CE-only training) the loss is the plain CE, not
        # alpha * CE, so val_loss reads as the log loss it is.
        if soft is None:
            loss = ce
        elif self.kd_steps is None:
            loss = self.alpha * ce + (1.0 - self.alpha) * kd
        else:
            # Early-stopped KD: the soft term's weight (1 - alpha) while the optimiser's step count
            # is below kd_steps, then 0 -- a small student that cannot match its teachers spends
            # its last steps (the lowest learning rates) fitting the labels.
            on = keras.ops.cast(self.optimizer.iterations < self.kd_steps, ce.dtype)
            w = (1.0 - self.alpha) * on
            loss = (1.0 - w) * ce + w * kd
        self.student_loss_tracker.update_state(ce)
        self.distillation_loss_tracker.update_state(kd)
        # Under tf.distribute each replica's gradients are *summed*, so each replica's batch-mean
        # loss is divided by the number of replicas (what Keras' own compute_loss does), giving
        # the gradient of the global batch's mean; Keras multiplies it back for the loss it logs.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return loss / replicas if replicas > 1 else loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        hard, _ = y if isinstance(y, (tuple, list)) else (y, None)
        return super().compute_metrics(x, hard, y_pred, sample_weight=sample_weight)

    @property
    def metrics(self):
        base = super().metrics
        extra = [
            m for m in (self.student_loss_tracker, self.distillation_loss_tracker) if m not in base
        ]
        return base + extra

    def get_config(self):
        return {
            **super().get_config(),
            "student": keras.saving.serialize_keras_object(self.student),
            "teachers": [keras.saving.serialize_keras_object(t) for t in self.teachers] or None,
            "teacher_weights": self.teacher_weights,
            "control": _serialised(self.control),
            "alpha": self.alpha,
            "temperature": self.temperature,
            "ensemble": self.ensemble,
            "kd_part": self.kd_part,
            "kd_steps": self.kd_steps,
            "control_share": self.control_share,
            "share_by": self.share_by,
            "teacher_view": self.teacher_view,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        student = keras.saving.deserialize_keras_object(config.pop("student"))
        teachers = config.pop("teachers", None)
        teachers = (
            [keras.saving.deserialize_keras_object(t) for t in teachers] if teachers else None
        )
        control = config.pop("control", None)
        control = keras.saving.deserialize_keras_object(control) if control else None
        return cls(student, teachers, control=control, **config)


def _serialised(model):
    return None if model is None else keras.saving.serialize_keras_object(model)
