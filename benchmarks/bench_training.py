"""Student training throughput: the memmap cache pipeline vs in-memory tensors.

    python benchmarks/bench_training.py [--width 32] [--clips 4096] [--batch 256] [--epochs 3]

Both runs train the same Distiller (SERFR-CNN, stored soft targets, mixup + masks) for the
same steps; the first epoch (tracing) is excluded.  Target: cache/in-memory >= 0.9.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _cache import random_logmel_cache

from asc_keras._runtime import keras, tf
from asc_keras.config import AugmentConfig
from asc_keras.distill import Distiller, temper
from asc_keras.models import build_serfr_cnn
from asc_keras.training import make_dataset


class _Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times = getattr(self, "times", []) + [time.perf_counter() - self.t0]


def _run(ds, width, epochs):
    keras.utils.set_random_seed(0)
    d = Distiller(build_serfr_cnn(width), alpha=0.1, temperature=2.0)
    d.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    t = _Timer()
    d.fit(ds, epochs=epochs, verbose=0, callbacks=[t])
    return t.times


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--clips", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        mm = random_logmel_cache(Path(tmp) / "features.npy", args.clips, rng)
        labels = rng.integers(0, 10, args.clips)
        soft = temper(rng.normal(size=(args.clips, 10)), 2.0)
        rows = np.arange(args.clips)
        aug = AugmentConfig()
        cache_ds = make_dataset(
            mm, rows, labels, soft, batch_size=args.batch, shuffle=True, augment=aug, seed=0
        )
        # In-memory baseline: the same tensors resident in memory, the same in-graph augmentation.
        x = tf.constant(np.asarray(mm, np.float32)[..., None])
        y = tf.one_hot(labels, 10)
        s = tf.constant(soft)
        from asc_keras.augment import freq_mask, mixup, time_mask

        def aug_fn(xb, yb, sb):
            xb = time_mask(freq_mask(xb, aug.freq_mask_param), aug.time_mask_param)
            xb, (yb, sb) = mixup(xb, (yb, sb), aug.mixup_alpha)
            return xb, (yb, sb)

        mem_ds = (
            tf.data.Dataset.from_tensor_slices((x, y, s))
            .shuffle(args.clips, seed=0)
            .batch(args.batch)
            .map(aug_fn, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE)
        )
        t_mem = _run(mem_ds, args.width, args.epochs)
        t_cache = _run(cache_ds, args.width, args.epochs)
    rate_mem = args.clips / np.median(t_mem[1:])
    rate_cache = args.clips / np.median(t_cache[1:])
    print(
        f"SERFR-CNN-{args.width}, batch {args.batch}, {args.clips} clips/epoch, median of epochs 2..{args.epochs}:"
    )
    print(f"  in-memory tensors : {rate_mem:8.1f} samples/s")
    print(f"  memmap cache      : {rate_cache:8.1f} samples/s")
    print(f"  ratio cache/memory: {rate_cache / rate_mem:.3f}  (target >= 0.9)")


if __name__ == "__main__":
    main()
