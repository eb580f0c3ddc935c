"""Evaluation: DCASE metrics, LiteRT evaluation, plots, reports, submission files, prediction."""

from asc_keras.evaluate.metrics import classification_metrics

__all__ = ["classification_metrics"]
