"""Throughput of the training input pipeline alone (no model): memmap cache -> gather ->
augmentation -> batches, as the students train (report sec. 2.2).

    python benchmarks/bench_pipeline.py [--clips 8192] [--batch 256] [--batches 60] [--no-jit]
                                        [--masks tfio]

Prints ``N samples/s`` with system 1's augmentation (mixup, frequency and time masks, soft
targets), with system 3's (plus time stretching), with system 1's plus Freq-MixStyle (an option),
with each augmentation alone and with none.
The cache is a float16 memmap of random log-mels (28 frames x 256 mels), written to a temporary
folder; the first batches (graph tracing, XLA compilation) are not timed.  ``--no-jit`` runs the
augmentation op by op instead of XLA-fused; ``--masks tfio`` runs the masks through
tensorflow-io one example at a time and everything op by op (the pipeline before the vectorised
masks: the reference they replace; the Freq-MixStyle lines are left out there).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
from _cache import random_logmel_cache


def throughput(features, rows, labels, soft, augment, batch: int, batches: int, jit: bool,
               parallel=None) -> float:  # fmt: skip
    from asc_keras.training.pipeline import make_dataset

    ds = make_dataset(
        features, rows, labels, soft, batch_size=batch, shuffle=True, augment=augment, seed=0,
        jit_augment=jit, parallel=parallel,
    )  # fmt: skip
    it = iter(ds.repeat())
    for _ in range(3):  # trace and warm up
        next(it)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch / (time.perf_counter() - t)


def _use_tfio_masks():
    """Swap the pipeline's augmenter for one whose masks are tensorflow-io's, per example."""
    import asc_keras.training.pipeline as pipeline
    from asc_keras.augment import freq_mask, mixup, time_mask, time_stretch

    def augmenter(aug, jit):
        def augment_batch(x, y, s, key):
            if aug.time_stretch:
                x = time_stretch(x, aug.stretch_min, aug.stretch_max)
            if aug.freq_mask:
                x = freq_mask(x, aug.freq_mask_param, impl="tfio")
            if aug.time_mask:
                x = time_mask(x, aug.time_mask_param, impl="tfio")
            if aug.mixup:
                x, (y, s) = mixup(x, (y, s), aug.mixup_alpha)
            return x, y, s

        return augment_batch

    pipeline._augmenter = augmenter


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--clips", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--no-jit", dest="jit", action="store_false")
    ap.add_argument("--masks", choices=("vectorised", "tfio"), default="vectorised")
    args = ap.parse_args(argv)
    if args.masks == "tfio":
        _use_tfio_masks()
        args.jit = False
    from asc_keras.config import AugmentConfig

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        feats = random_logmel_cache(Path(tmp) / "features.npy", args.clips, rng)
        rows, labels = np.arange(args.clips), rng.integers(0, 10, args.clips)
        soft = rng.dirichlet(np.ones(10), args.clips).astype(np.float32)
        off = AugmentConfig(mixup=False, freq_mask=False, time_mask=False, time_stretch=False)
        # Clips 2i and 2i+1 one sound through two devices: the live teachers' parallel channel.
        pairs = np.stack([rows, np.minimum(rows ^ 1, args.clips - 1)], axis=1)
        cases = {
            "system 1 (mixup + masks)": AugmentConfig(),
            "system 3 (mixup + masks + time stretch)": AugmentConfig(time_stretch=True),
            "system 1 + Freq-MixStyle on 0.4 of the clips": AugmentConfig(freq_mixstyle=0.4),
            "system 1 + a parallel per clip (teacher_view)": (AugmentConfig(), pairs),
            "mixup only": dataclasses.replace(off, mixup=True),
            "frequency mask only": dataclasses.replace(off, freq_mask=True),
            "time mask only": dataclasses.replace(off, time_mask=True),
            "time stretch only": dataclasses.replace(off, time_stretch=True),
            "Freq-MixStyle only (0.4)": dataclasses.replace(off, freq_mixstyle=0.4),
            "no augmentation": off,
        }
        for name, case in cases.items():
            aug, parallel = case if isinstance(case, tuple) else (case, None)
            if (aug.freq_mixstyle or parallel is not None) and args.masks == "tfio":
                continue  # the reference augmenter has neither
            rate = throughput(feats, rows, labels, soft, aug, args.batch, args.batches, args.jit,
                              parallel)  # fmt: skip
            print(f"{name:<46} {rate:>9,.0f} samples/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
