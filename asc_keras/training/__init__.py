"""Training: the report's schedule and optimiser, tf.data pipelines over the feature cache,
callbacks for long resumable runs, distribution strategies, teacher training."""

from asc_keras.training.loop import fit_resumable, get_strategy
from asc_keras.training.optimizers import AdamL2, make_optimizer
from asc_keras.training.pipeline import make_dataset
from asc_keras.training.schedules import ReportSchedule

__all__ = [
    "AdamL2",
    "ReportSchedule",
    "fit_resumable",
    "get_strategy",
    "make_dataset",
    "make_optimizer",
]
