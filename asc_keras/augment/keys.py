"""Random keys for the augmentations: every draw is a stateless op of an explicit key.

Why stateless: a stateful op (``tf.random.uniform(seed=...)``) inside a parallel ``Dataset.map``
hands out its draws in whatever order the threads reach it, so which batch gets which masks
depended on scheduling.  A key per batch, drawn in order from ``tf.data.Dataset.random`` before
the parallel map, makes every batch a pure function of (seed, epoch, batch index): the same
batches at any ``num_parallel_calls``.
"""

from __future__ import annotations

from asc_keras._runtime import tf

_MAX = 2**31 - 1


def as_key(key=None):
    """A stateless key, shape (2,) int64: ``key`` itself, or one drawn from TensorFlow's global
    generator when None (interactive use; deterministic only under ``tf.random.set_seed``)."""
    if key is None:
        return tf.random.uniform([2], 0, _MAX, dtype=tf.int64)
    return tf.cast(tf.convert_to_tensor(key), tf.int64)


def split(key, n: int):
    """``n`` independent keys (n, 2) from one, so each draw of a batch has its own stream."""
    return tf.random.experimental.stateless_split(as_key(key), n)


def batch_keys(seed: int | None):
    """An endless dataset of keys (2,) int64, a new sequence each epoch (iteration) and the same
    sequence for the same ``seed``; zip it with the batches before any parallel map."""
    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
