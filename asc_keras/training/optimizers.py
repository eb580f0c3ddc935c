"""Adam with weight decay, as the report states it (sec. 4.2)."""

from __future__ import annotations

from asc_keras._runtime import keras
from asc_keras.config import OptimConfig
from asc_keras.training.schedules import ReportSchedule


@keras.saving.register_keras_serializable(package="asc_keras")
class AdamL2(keras.optimizers.Adam):
    """Adam with *coupled* weight decay: g <- g + wd * w before the Adam moments.

    This is PyTorch's ``Adam(weight_decay=wd)`` -- what "Adam with a weight decay of
    0.001" in the report most plausibly is (the RFR-CNN code it builds on is PyTorch).
    Keras' own ``weight_decay`` on Adam/AdamW is *decoupled* (AdamW); use
    ``weight_decay_mode='decoupled'`` for that.
    """

    def __init__(self, l2: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.l2 = float(l2)

    def update_step(self, gradient, variable, learning_rate):
        if self.l2:
            gradient = gradient + keras.ops.cast(self.l2, gradient.dtype) * variable
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "l2": self.l2}


def check_ema(ema: float) -> None:
    """``optim.ema_momentum`` is in [0, 1) (0: off): ValueError naming it otherwise (NaN too)."""
    if not 0.0 <= ema < 1.0:
        raise ValueError(f"optim.ema_momentum must be in [0, 1) (0: off), got {ema}")


def make_optimizer(
    cfg: OptimConfig,
    steps_per_epoch: int,
    epochs: int | None = None,
    peak_lr: float | None = None,
    ema: float = 0.0,
):
    """Adam (coupled L2, default) or AdamW with the report's schedule over ``epochs``; ``ema`` > 0:
    it also keeps the moving average of the weights, ``avg <- ema * avg + (1 - ema) * w`` after
    every step (``avg`` = w after the first), which ``fit`` puts in their place when it ends."""
    epochs = epochs or cfg.epochs
    check_ema(ema)
    averaged = {"use_ema": True, "ema_momentum": ema} if ema > 0 else {}
    schedule = ReportSchedule(
        steps_per_epoch * epochs,
        peak=peak_lr or cfg.peak_lr,
        final=cfg.final_lr,
        warmup_fraction=cfg.warmup_fraction,
    )
    if cfg.weight_decay_mode == "l2":
        return AdamL2(l2=cfg.weight_decay, learning_rate=schedule, **averaged)
    if cfg.weight_decay_mode == "decoupled":
        return keras.optimizers.AdamW(
            learning_rate=schedule, weight_decay=cfg.weight_decay, **averaged
        )
    raise ValueError(
        f"unknown weight_decay_mode {cfg.weight_decay_mode!r}; use 'l2' or 'decoupled'"
    )
