"""Feature-extraction throughput: generated 1 s clips at 44.1 kHz -> (28, 256) log-mel cache.

    python benchmarks/bench_features.py [--clips 4000] [--workers 2]

Prints clips/second for a cold cache (decode + resample + log-mel + memmap write).
Target on a 2-core machine: >= 400 clips/s (the real 230 k clips in < 10 min).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from asc_keras.config import FeatureConfig
from asc_keras.data import read_tau
from asc_keras.data.synthetic import make_synthetic_tau
from asc_keras.features.cache import extract_features


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--clips", type=int, default=4000, help="approximate number of clips to generate"
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--data", help="existing TAU-layout folder to use instead of generating one")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = (
            Path(args.data)
            if args.data
            else make_synthetic_tau(
                Path(tmp) / "data",
                recordings_per_class=max(1, args.clips // 300),
                workers=args.workers,
            )
        )
        ds = read_tau(root)
        files = list(ds.clips["filename"])
        t0 = time.perf_counter()
        cache = extract_features(
            root, files, FeatureConfig(), Path(tmp) / "cache", workers=args.workers
        )
        dt = time.perf_counter() - t0
        print(
            f"extracted {len(cache)} clips -> {cache.features.shape[1:]} {cache.features.dtype} "
            f"in {dt:.1f} s with {args.workers} workers: {len(cache) / dt:.0f} clips/s "
            f"(230,350 clips would take {230350 / (len(cache) / dt) / 60:.1f} min)"
        )


if __name__ == "__main__":
    main()
