"""Recompute BatchNorm moving statistics after training ("precise BN").

BatchNorm's moving averages (momentum 0.99) lag the weights by ~100 steps.  In short runs
(the quick profile, fine-tuning) the weights change faster than that, so inference uses stale
statistics and accuracy collapses (seen: a teacher at 44 % train accuracy scoring chance in
inference mode).  Re-estimating each layer's statistics as the *cumulative* average over
clean training batches, with the final weights, removes the lag; for long runs it changes
little.
"""

from __future__ import annotations

from asc_keras.config import N_CLASSES
from asc_keras.models.common import is_batch_norm
from asc_keras.training.pipeline import make_dataset


def recalibrate_batchnorm(model, dataset, max_batches: int = 50) -> int:
    """Set every BatchNormalization layer's moving mean/variance to the average of its batch
    statistics over up to ``max_batches`` batches of ``dataset`` (x or (x, y) batches).

    Only BN statistics change (forward passes in training mode; dropout's randomness does not
    matter for them).  Returns the number of batches used.
    """
    bns = [l for l in _all_layers(model) if is_batch_norm(l)]
    if not bns or max_batches <= 0:
        return 0
    saved = [bn.momentum for bn in bns]
    n = 0
    try:
        for batch in dataset.take(max_batches):
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            for bn in bns:
                # moving = m * moving + (1 - m) * batch  with m = n / (n + 1): a cumulative mean
                bn.momentum = n / (n + 1.0)
            model(x, training=True)
            n += 1
    finally:
        for bn, m in zip(bns, saved):
            bn.momentum = m
    return n


def recalibrate_on_clean_clips(
    model, split, batch_size: int, seed: int, batches: int, n_classes: int = N_CLASSES
) -> int:
    """:func:`recalibrate_batchnorm` on ``batches`` clean batches (no augmentation) of the clips
    of ``split`` (a :class:`~asc_keras.data.splits.ClipSplit`), shuffled by ``seed``."""
    clean = make_dataset(split.features, split.rows, split.labels, batch_size=batch_size,
                         shuffle=True, seed=seed, n_classes=n_classes)  # fmt: skip
    return recalibrate_batchnorm(model, clean, batches)


def _all_layers(model):
    """Every leaf layer, through nested models and tfmot wrappers (Keras 3 or tf_keras)."""
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:  # a nested model
            yield from _all_layers(layer)
        elif hasattr(layer, "layer"):  # tfmot QuantizeWrapper / PruneLowMagnitude
            yield layer.layer
        else:
            yield layer
