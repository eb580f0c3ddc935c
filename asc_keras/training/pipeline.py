"""tf.data input pipelines over the memory-mapped feature cache.

Only row *indices* live in the dataset; each batch gathers its rows from the
memmap (sorted, for locality) in a ``numpy_function``, so the whole dataset is
never held in Python memory (the OS page cache does the caching).  Augmentations
run in-graph on whole batches, then the pipeline prefetches.
"""

from __future__ import annotations

import numpy as np

from asc_keras._runtime import tf
from asc_keras.augment import mixup, spec_masks, time_stretch
from asc_keras.config import N_CLASSES, AugmentConfig


def make_dataset(
    features: np.ndarray,
    rows: np.ndarray,
    labels: np.ndarray,
    soft: np.ndarray | None = None,
    *,
    batch_size: int = 256,
    shuffle: bool = False,
    augment: AugmentConfig | None = None,
    seed: int | None = None,
    n_classes: int = N_CLASSES,
    drop_remainder: bool = False,
    crop_frames: int | None = None,
):
    """Batches of (x, y) for Keras.

    Args:
        features: (items, frames, mels) array or memmap (float16/32).
        rows: row numbers of ``features`` to use, one per example.
        labels: integer class per example (same order as ``rows``).
        soft: optional (examples, classes) teacher-ensemble distributions at the distillation
            temperature (:meth:`asc_keras.distill.SoftTargets.distribution`); mixup mixes them
            with the same lambda as the hard labels.
        augment: which augmentations to apply (None: none).  Mixup needs ``shuffle``-style
            training data; masks and stretching are per example.
        crop_frames: train on a random window of this many frames of each example (one
            offset per example), e.g. teachers on crops of 10 s recordings; None: whole examples.
    Returns:
        tf.data.Dataset of x (B, frames, mels, 1) float32 and y = one-hot (B, classes), or
        (one-hot, soft) when ``soft`` is given.
    """
    rows = np.asarray(rows, np.int64)
    labels = np.asarray(labels, np.int64)
    if len(rows) != len(labels):
        raise ValueError(f"{len(rows)} rows but {len(labels)} labels")
    soft = None if soft is None else np.asarray(soft, np.float32)
    if soft is not None and len(soft) != len(rows):
        raise ValueError(f"{len(rows)} rows but {len(soft)} soft targets")
    frames = features.shape[1]
    if crop_frames is not None and not 0 < crop_frames <= frames:
        raise ValueError(f"crop_frames={crop_frames} must be in 1..{frames} (the examples' frames)")
    ds = tf.data.Dataset.range(len(rows))
    if shuffle:
        ds = ds.shuffle(len(rows), seed=seed, reshuffle_each_iteration=True)
    load = _batch_loader(features, rows, labels, soft, n_classes)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder).map(
        load, num_parallel_calls=tf.data.AUTOTUNE
    )
    if crop_frames is not None and crop_frames < frames:
        ds = ds.map(_random_window(frames, crop_frames, seed), num_parallel_calls=tf.data.AUTOTUNE)
    aug = augment or AugmentConfig(
        mixup=False, freq_mask=False, time_mask=False, time_stretch=False
    )
    if any((aug.mixup, aug.freq_mask, aug.time_mask, aug.time_stretch)):
        ds = ds.map(_augmenter(aug), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(lambda x, y, s: (x, (y, s)) if soft is not None else (x, y))
    return ds.prefetch(tf.data.AUTOTUNE)


def _batch_loader(features, rows, labels, soft, n_classes: int):
    """Batch of example indices -> (x (B, frames, mels, 1), one-hot y, soft s (B, C or 0))."""
    frames, mels = features.shape[1], features.shape[2]

    def gather(idx):
        idx = np.sort(idx)  # sorted rows: memmap locality
        x = np.asarray(features[rows[idx]], dtype=np.float32)
        y = np.eye(n_classes, dtype=np.float32)[labels[idx]]
        s = soft[idx] if soft is not None else np.zeros((len(idx), 0), np.float32)
        return x, y, s

    def load(idx):
        x, y, s = tf.numpy_function(
            gather, [idx], [tf.float32, tf.float32, tf.float32], stateful=False
        )
        x = tf.ensure_shape(x, [None, frames, mels])[..., None]
        y = tf.ensure_shape(y, [None, n_classes])
        s = tf.ensure_shape(s, [None, n_classes if soft is not None else 0])
        return x, y, s

    return load


def _random_window(frames: int, crop_frames: int, seed: int | None):
    """Map fn: one random window of ``crop_frames`` frames per example."""

    def crop(x, y, s):
        # Offsets (B,), frame indices (B, crop) gathered per row.
        n = tf.shape(x)[0]
        start = tf.random.uniform([n], 0, frames - crop_frames + 1, dtype=tf.int32, seed=seed)
        idx = start[:, None] + tf.range(crop_frames)[None, :]
        return tf.gather(x, idx, batch_dims=1), y, s

    return crop


def _augmenter(aug: AugmentConfig):
    """Map fn applying ``aug`` to whole batches: stretch, masks, then mixup (labels and soft targets)."""

    def augment_batch(x, y, s):
        if aug.time_stretch:
            x = time_stretch(x, aug.stretch_min, aug.stretch_max)
        if aug.freq_mask or aug.time_mask:  # both bands in one pass over the batch
            x = spec_masks(
                x,
                aug.freq_mask_param if aug.freq_mask else 0,
                aug.time_mask_param if aug.time_mask else 0,
            )
        if aug.mixup:
            x, (y, s) = mixup(x, (y, s), aug.mixup_alpha)
        return x, y, s

    return augment_batch
