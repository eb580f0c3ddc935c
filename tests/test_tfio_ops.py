"""Canaries: which tensorflow-io 0.37.1 ops work on TF 2.21 (the pure-TF masks, our tests' reference)
and which do not (compiled kernels).  Run with ``pytest -m canary`` when upgrading either."""

from __future__ import annotations

import numpy as np
import pytest

from asc_keras._runtime import import_tfio, tf

pytestmark = pytest.mark.canary


def _bands(masked: np.ndarray, axis: int) -> list[int]:
    """Indices along ``axis`` that are all zero (the masked band; the input has no zeros)."""
    return list(np.where((masked == 0).all(axis=1 - axis))[0])


def test_pure_tf_masks_work_and_mask_one_band_below_param():
    tfio = import_tfio()
    x = tf.random.stateless_normal((28, 256), seed=(1, 2)) + 5.0  # no zeros before masking
    widths = {0: [], 1: []}
    for i in range(30):
        tf.random.set_seed(i)
        for axis, op, param in ((1, tfio.audio.freq_mask, 48), (0, tfio.audio.time_mask, 5)):
            band = _bands(op(x, param=param).numpy(), axis)
            assert len(band) < param and (len(band) < 2 or np.all(np.diff(band) == 1)), band
            widths[axis].append(len(band))
    # The masks do mask: over 30 draws most bands are not empty, and widths vary.
    assert sum(w > 0 for w in widths[1]) > 20 and len(set(widths[1])) > 5
    assert sum(w > 0 for w in widths[0]) > 15


def test_compiled_kernels_do_not_load():
    """If this starts failing, tensorflow-io was rebuilt for TF 2.21: revisit audio decoding."""
    tfio = import_tfio()
    with pytest.raises(NotImplementedError, match="libtensorflow_io.so"):
        tfio.audio.resample(tf.zeros((100, 1)), rate_in=44100, rate_out=16000)
