"""tf.data input pipelines over the memory-mapped feature cache.

Only row *indices* live in the dataset; each batch gathers its rows from the
memmap (sorted, for locality) in a ``numpy_function``, so the whole dataset is
never held in Python memory (the OS page cache does the caching).  Augmentations
run in-graph on whole batches, then the pipeline prefetches.

Reproducible at any parallelism: each batch is zipped with its own random key, drawn in order
before the parallel map (:mod:`asc_keras.augment.keys`), and every augmentation draw is a
stateless op of that key; so a seed fixes every batch whatever ``num_parallel_calls`` is.

Fast: the per-example draws (band positions, mixup weights and partners, stretch rates) are
small; the passes over the batch that use them (stretch, masks, mixup of x and targets) are one
XLA-compiled function (``jit_augment``), which fuses them into a few loops over memory instead
of one per op: on 2 CPU cores, about twice the samples/s (``benchmarks/bench_pipeline.py``).
"""

from __future__ import annotations

import numpy as np

from asc_keras._runtime import tf
from asc_keras.augment.keys import batch_keys, split
from asc_keras.augment.masking import apply_bands, mask_draws
from asc_keras.augment.mixstyle import freq_mixstyle, mixstyle_draws
from asc_keras.augment.mixup import mix, mixup_draws
from asc_keras.augment.stretch import stretch, stretch_rates
from asc_keras.config import N_CLASSES, AugmentConfig
from asc_keras.data.parallel import draw_parallel


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
    parallel_calls: int | None = None,
    jit_augment: bool = True,
    repeat: bool = False,
    parallel: np.ndarray | None = None,
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
        parallel_calls: batches prepared at once (None: tf.data's AUTOTUNE); the batches do not
            depend on it.
        jit_augment: XLA-compile the augmentation's passes over the batch (same draws, same
            maths; False runs them op by op).
        repeat: an endless stream, reshuffled at every pass, whose batches run across the passes
            (all full): for a budget in steps (:mod:`asc_keras.training.length`).
        parallel: (examples, K) each example's parallels, itself included
            (:func:`asc_keras.data.parallel.parallel_table`): x gets a second channel, the
            features of one of them drawn uniformly per example from the batch's key; crops and
            augmentations treat both channels alike (the teachers' view, ``Distiller``).
    Returns:
        tf.data.Dataset of x (B, frames, mels, 1) float32 (channels 2 with ``parallel``) and
        y = one-hot (B, classes), or (one-hot, soft) when ``soft`` is given.
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
    if repeat:
        ds = ds.repeat()
    ds = tf.data.Dataset.zip(ds.batch(batch_size, drop_remainder=drop_remainder), batch_keys(seed))
    load = _batch_loader(features, rows, labels, soft, n_classes, parallel)
    crop = _random_window(frames, crop_frames) if crop_frames and crop_frames < frames else None
    aug = augment or AugmentConfig(
        mixup=False, freq_mask=False, time_mask=False, time_stretch=False
    )
    active = any((aug.mixup, aug.freq_mask, aug.time_mask, aug.time_stretch, aug.freq_mixstyle))
    augmenter = _augmenter(aug, jit_augment) if active else None

    def prepare(idx, key):
        k_crop, k_aug = tf.unstack(split(key, 2))
        x, y, s = load(idx, key)
        if crop is not None:
            x = crop(x, k_crop)
        if augmenter is not None:
            x, y, s = augmenter(x, y, s, k_aug)
        return (x, (y, s)) if soft is not None else (x, y)

    ds = ds.map(prepare, num_parallel_calls=parallel_calls or tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _batch_loader(features, rows, labels, soft, n_classes: int, parallel=None):
    """(batch of example indices, the batch's key) -> (x (B, frames, mels, 1 or 2) float32,
    one-hot y, soft s (B, C or 0)); with ``parallel`` the second channel is a parallel's, drawn
    from the key.

    The rows leave NumPy in the cache's own dtype and become float32 in TensorFlow: NumPy's
    float16 -> float32 conversion is scalar and holds the GIL (6 ms of a 256-clip batch, most
    of the pipeline's time), TensorFlow's is vectorised and multi-threaded."""
    frames, mels = features.shape[1], features.shape[2]
    stored = tf.as_dtype(features.dtype)

    channels = 1 if parallel is None else 2
    if parallel is not None and np.shape(parallel)[0] != len(rows):
        raise ValueError(f"{len(rows)} rows but {np.shape(parallel)[0]} rows of parallels")

    def gather(idx, u):
        order = np.argsort(idx, kind="stable")  # sorted rows: memmap locality
        idx = idx[order]
        x = np.asarray(features[rows[idx]]).reshape(len(idx), frames, mels, 1)
        if parallel is not None:
            other = draw_parallel(parallel, idx, u[order])
            x = np.concatenate([x, np.asarray(features[rows[other]])[..., None]], axis=-1)
        y = np.eye(n_classes, dtype=np.float32)[labels[idx]]
        s = soft[idx] if soft is not None else np.zeros((len(idx), 0), np.float32)
        return x, y, s

    def load(idx, key):
        # The parallels' draw: the key folded in, not split, so the other draws stay earlier runs'.
        u = (
            tf.random.stateless_uniform(tf.shape(idx), tf.random.experimental.stateless_fold_in(key, 5))
            if parallel is not None
            else tf.zeros([0])
        )  # fmt: skip
        x, y, s = tf.numpy_function(
            gather, [idx, u], [stored, tf.float32, tf.float32], stateful=False
        )
        x = tf.cast(tf.ensure_shape(x, [None, frames, mels, channels]), tf.float32)
        y = tf.ensure_shape(y, [None, n_classes])
        s = tf.ensure_shape(s, [None, n_classes if soft is not None else 0])
        return x, y, s

    return load


def _random_window(frames: int, crop_frames: int):
    """(x (B, frames, ...), key) -> one random window of ``crop_frames`` frames per example."""

    def crop(x, key):
        # Offsets (B,), frame indices (B, crop) gathered per row.
        n = tf.shape(x)[0]
        start = tf.random.stateless_uniform([n], key, 0, frames - crop_frames + 1, dtype=tf.int32)
        idx = start[:, None] + tf.range(crop_frames)[None, :]
        return tf.gather(x, idx, batch_dims=1)

    return crop


def _augmenter(aug: AugmentConfig, jit: bool):
    """(x, y, s, key) -> augmented (x, y, s): stretch, masks (both bands in one pass), then
    mixup of x, the labels and the soft targets with one lam and partner per example."""

    def apply(x, y, s, rates, style, bands, lam, perm):  # the passes over the batch: fused (XLA)
        if rates is not None:
            x = stretch(x, rates)
        if style is not None:  # before the masks: the statistics of the clip as recorded
            x = freq_mixstyle(x, *style)
        x = apply_bands(x, bands, fill="band")  # masked frames: each band's own level
        if lam is not None:
            x, y, s = (mix(t, lam, perm) for t in (x, y, s))
        return x, y, s

    apply_fn = tf.function(apply, jit_compile=True) if jit else apply

    def augment_batch(x, y, s, key):
        k_stretch, k_mask, k_mix = tf.unstack(split(key, 3))
        n = tf.shape(x)[0]
        rates = (
            stretch_rates(n, aug.stretch_min, aug.stretch_max, k_stretch)
            if aug.time_stretch
            else None
        )
        bands = mask_draws(
            tf.shape(x),
            aug.freq_mask_param if aug.freq_mask else 0,
            aug.time_mask_param if aug.time_mask else 0,
            k_mask,
        )
        lam, perm = mixup_draws(n, aug.mixup_alpha, k_mix) if aug.mixup else (None, None)
        # Its key folded in, not a fourth split: the three keys above stay those of earlier runs.
        style = (
            mixstyle_draws(n, aug.freq_mixstyle_alpha, aug.freq_mixstyle,
                           tf.random.experimental.stateless_fold_in(key, 4))
            if aug.freq_mixstyle > 0
            else None
        )  # fmt: skip
        if x.shape[-1] == 1:
            return apply_fn(x, y, s, rates, style, bands, lam, perm)
        # A parallel's channel: the same draws, one channel at a time (so the clip's own channel
        # is computed as without it, to the bit: XLA fuses two channels in another order).
        own, y, s = apply_fn(x[..., :1], y, s, rates, style, bands, lam, perm)
        heard, _, _ = apply_fn(x[..., 1:], y, s, rates, style, bands, lam, perm)
        return tf.concat([own, heard], axis=-1), y, s

    return augment_batch
