"""Pins which tensorflow-io 0.37.1 ops work on TF 2.21 (pure-TF ones) and which do not (compiled kernels)."""

from __future__ import annotations

import numpy as np
import pytest

from asc_keras._runtime import import_tfio, tf


def test_pure_tf_ops_work():
    tfio = import_tfio()
    x = tf.random.normal((28, 256)) + 5.0
    fm = tfio.audio.freq_mask(x, param=48).numpy()
    zero_cols = np.where((fm == 0).all(axis=0))[0]
    assert len(zero_cols) < 48 and (len(zero_cols) == 0 or np.all(np.diff(zero_cols) == 1))
    tm = tfio.audio.time_mask(x, param=5).numpy()
    assert ((tm == 0).all(axis=1).sum()) < 5
    spec = tfio.audio.spectrogram(tf.random.normal((16000,)), nfft=2048, window=2048, stride=512)
    assert spec.shape[-1] == 1025
    mel = tfio.audio.melscale(tf.abs(spec), rate=16000, mels=256, fmin=0, fmax=8000)
    assert mel.shape[-1] == 256


def test_compiled_kernels_do_not_load():
    """If this starts passing resample, tensorflow-io was rebuilt for TF 2.21: revisit audio decoding."""
    tfio = import_tfio()
    with pytest.raises(Exception):  # noqa: B017 -- whatever the missing kernel loader raises
        tfio.audio.resample(tf.zeros((100, 1)), rate_in=44100, rate_out=16000)
