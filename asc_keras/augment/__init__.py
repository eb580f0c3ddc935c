"""Batch augmentations on log-mel tensors (report sec. 2.2, 4.3), each a small TF function.

Input batches are (batch, frames, mels, 1) float32; targets are (batch, classes).
"""

from asc_keras.augment.masking import freq_mask, spec_masks, time_mask
from asc_keras.augment.mixup import mixup, sample_beta
from asc_keras.augment.stretch import time_stretch

__all__ = ["freq_mask", "mixup", "sample_beta", "spec_masks", "time_mask", "time_stretch"]
