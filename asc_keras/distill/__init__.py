"""Knowledge distillation: the Distiller model and the teacher ensemble's stored soft targets."""

from asc_keras.distill.distiller import Distiller
from asc_keras.distill.targets import SoftTargets, ensemble_distribution, teacher_logits, temper

__all__ = ["Distiller", "SoftTargets", "ensemble_distribution", "teacher_logits", "temper"]
