"""Evaluation: LiteRT evaluation, plots, reports, DCASE submission files, prediction on any audio."""
