"""The report's learning-rate schedule (sec. 4.2) as a Keras LearningRateSchedule."""

from __future__ import annotations

import math

from asc_keras._runtime import keras, tf


@keras.saving.register_keras_serializable(package="asc_keras")
class ReportSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Exponential rise to ``peak`` over the first ``warmup_fraction`` of training, then a linear
    fall to ``final`` at the end (report: 1e-3 at epoch 300, 1e-5 at epoch 800).

    Expressed in fractions of ``total_steps`` so it scales to any run length.  The rise is
    ``peak * exp(-5 (1 - s / warmup)^2)`` (the exponential ramp-up of Laine & Aila used by the
    RFR-CNN/CP-JKU code the report builds on), starting at peak * e^-5 ~ 6.7e-6.
    """

    def __init__(
        self,
        total_steps: int,
        peak: float = 1e-3,
        final: float = 1e-5,
        warmup_fraction: float = 300 / 800,
        ramp: float = 5.0,
    ):
        self.total_steps = int(max(1, total_steps))
        self.peak, self.final = float(peak), float(final)
        self.warmup_fraction, self.ramp = float(warmup_fraction), float(ramp)

    def __call__(self, step):
        s = tf.cast(step, tf.float32)
        total = float(self.total_steps)
        warm = max(1.0, self.warmup_fraction * total)
        up = self.peak * tf.exp(-self.ramp * tf.square(1.0 - tf.minimum(s, warm) / warm))
        frac = tf.clip_by_value((s - warm) / max(1.0, total - warm), 0.0, 1.0)
        down = self.peak + (self.final - self.peak) * frac
        return tf.where(s < warm, up, down)

    def value(self, step: float) -> float:
        """Python-side value (for plots and tests)."""
        warm = max(1.0, self.warmup_fraction * self.total_steps)
        if step < warm:
            return self.peak * math.exp(-self.ramp * (1 - step / warm) ** 2)
        frac = min(1.0, max(0.0, (step - warm) / max(1.0, self.total_steps - warm)))
        return self.peak + (self.final - self.peak) * frac

    def get_config(self):
        return {
            "total_steps": self.total_steps,
            "peak": self.peak,
            "final": self.final,
            "warmup_fraction": self.warmup_fraction,
            "ramp": self.ramp,
        }
