"""Write a generated dataset in the TAU Urban Acoustic Scenes 2022 Mobile development layout.

    python tools/make_synthetic_tau.py OUT_DIR [--recordings-per-class 60] [--cities 6] [--seed 0]
        [--extra-devices 2] [--city-stratified]

Clip count ~ 10 classes x recordings-per-class x (1 + extra-devices) x 10 clips
(e.g. 3 -> ~900 clips for tests, 60 -> ~18,000, 400 -> ~120,000).  The quick profile's
built-in set: --recordings-per-class 20 --cities 4 --extra-devices 1 (4,000 clips).
"""

from __future__ import annotations

import argparse
import time

from asc_keras.data import read_tau
from asc_keras.data.synthetic import make_synthetic_tau


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("out", help="output folder (meta.csv, audio/, evaluation_setup/)")
    ap.add_argument("--recordings-per-class", type=int, default=60)
    ap.add_argument("--cities", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--extra-devices", type=int, default=2, help="devices besides a per recording")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--city-stratified", action="store_true",
                    help="each scene's evaluation locations in distinct cities, so every city that "
                         "evaluates a scene also trains it (as TAU's fold 1); default: drawn among "
                         "all its locations, the built-in set's split")  # fmt: skip
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    root = make_synthetic_tau(args.out, args.recordings_per_class, args.cities, args.seed,
                              extra_devices=args.extra_devices, workers=args.workers,
                              city_stratified=args.city_stratified)  # fmt: skip
    ds = read_tau(root)
    print(
        f"wrote {len(ds.clips)} clips ({len(ds.train)} train / {len(ds.evaluate)} evaluate) to {root} "
        f"in {time.perf_counter() - t0:.0f} s"
    )


if __name__ == "__main__":
    main()
