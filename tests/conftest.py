"""Shared fixtures: one small generated TAU-layout dataset and its feature caches per test session."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest

from asc_keras.config import FeatureConfig


@pytest.fixture(scope="session")
def tiny_tau(tmp_path_factory):
    """~900 clips: 10 classes x 3 sources x 3 devices x 10 s, 3 cities."""
    from asc_keras.data.synthetic import make_synthetic_tau

    return make_synthetic_tau(
        tmp_path_factory.mktemp("tau") / "dev", recordings_per_class=3, cities=3, seed=1
    )


@pytest.fixture(scope="session")
def tiny_dataset(tiny_tau):
    from asc_keras.data import read_tau

    return read_tau(tiny_tau)


@pytest.fixture(scope="session")
def clip_cache(tiny_dataset, tmp_path_factory):
    from asc_keras.features.cache import extract_features

    return extract_features(
        tiny_dataset.root,
        list(tiny_dataset.clips["filename"]),
        FeatureConfig(),
        tmp_path_factory.mktemp("cache"),
        workers=1,
        progress=False,
    )
