"""Single place where TensorFlow, Keras 3 and tf_keras are imported.

TensorFlow prints several lines of C++ start-up noise (oneDNN, CUDA stubs)
*before* its logging is initialised, so environment variables alone cannot hide
them.  Users do not need them; developers who do set ``ASC_KERAS_VERBOSE=1``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings

VERBOSE = os.environ.get("ASC_KERAS_VERBOSE", "0") not in ("", "0", "false", "False")

if not VERBOSE:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def _silenced_stderr():
    """Redirect file descriptor 2 (C++ writes) to /dev/null while active."""
    if VERBOSE:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (some notebook front ends)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


with _silenced_stderr():
    import keras  # noqa: E402
    import tensorflow as tf  # noqa: E402

if not VERBOSE:
    tf.get_logger().setLevel("ERROR")


def import_tf_keras():
    """Import tf_keras (Keras 2), needed only for tensorflow-model-optimization."""
    with _silenced_stderr():
        import tf_keras

    return tf_keras


def import_tfmot():
    """Import tensorflow-model-optimization (works on tf_keras models only)."""
    with _silenced_stderr():
        import tensorflow_model_optimization as tfmot

    return tfmot


def import_tfio():
    """Import tensorflow-io.

    tensorflow-io 0.37.1 is built for TF 2.16: on TF 2.21 its compiled kernels
    (resample, AudioIOTensor, decoders) fail to load and it prints the linker
    errors.  Only its pure-TensorFlow ops (``freq_mask``, ``time_mask``) serve, as the reference
    the vectorised masks are tested and benchmarked against; the package itself never needs it
    (it is in the test extra).  ``tests/test_tfio_ops.py`` pins which ops work (``-m canary``).
    """
    try:
        with _silenced_stderr():
            import tensorflow_io as tfio
    except ImportError:
        raise ImportError(
            "tensorflow-io is only the reference the masks are tested against (impl='tfio'); "
            "install it with the test extra: pip install -e '.[test]'"
        ) from None
    return tfio


__all__ = ["tf", "keras", "import_tf_keras", "import_tfmot", "import_tfio", "VERBOSE"]
