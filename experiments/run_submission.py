"""Run a submission system of the report end to end.

    python experiments/run_submission.py --system 1 --profile quick
    python experiments/run_submission.py --system 3 --profile paper --data /data/TAU-urban-acoustic-scenes-2022-mobile-development

Stages (each skipped when its outputs exist, redone with --force STAGE): data, features,
teachers, targets, student, compress, tflite, evaluate, report.  Without --data the built-in
generated dataset is written to --work and used.  Outputs go to --out (default runs/systemN-PROFILE):
student.keras, student_int8.tflite, results.json, results.md, plots/, config.yaml, submission/.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent


def _overrides(pairs):
    """--set optim.epochs=3 teachers.names=[cnn] -> nested dict (values parsed as YAML)."""
    out: dict = {}
    for pair in pairs or []:
        key, _, value = pair.partition("=")
        if not _:
            raise SystemExit(f"--set expects KEY=VALUE, got {pair!r}")
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(value)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--system", type=int, required=True, choices=(1, 2, 3, 4))
    ap.add_argument("--profile", default="paper", choices=("paper", "quick"))
    ap.add_argument("--data", type=Path, help="TAU 2022 Mobile development folder (default: generated dataset)")
    ap.add_argument("--eval-data", type=Path, help="evaluation set folder: also write its predictions")
    ap.add_argument("--out", type=Path, help="output folder (default runs/systemN-PROFILE)")
    ap.add_argument("--work", type=Path, default=Path("runs/work"), help="shared caches, teachers, targets")
    ap.add_argument("--train-split", default="train", choices=("train", "all"),
                    help="'all' retrains on train+evaluate for the final submission (report sec. 4.2)")
    ap.add_argument("--strategy", default="default", choices=("default", "mirrored"))
    ap.add_argument("--force", nargs="*", default=[], help="stages to redo even if done (or 'all')")
    ap.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="override configuration values")
    ap.add_argument("--label", help="DCASE submission label (default asc_keras_task1_N)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)

    from asc_keras.config import load_system_config
    from asc_keras.data import DataError
    from asc_keras.submission import RunError, SystemRun

    try:
        cfg = load_system_config(HERE / "systems" / f"system{args.system}.yaml",
                                 HERE / "profiles" / f"{args.profile}.yaml", _overrides(args.set))
        run = SystemRun(cfg, out=args.out or Path("runs") / f"system{args.system}-{args.profile}", work=args.work,
                        data=args.data, eval_data=args.eval_data, train_split=args.train_split,
                        strategy=args.strategy, force=frozenset(args.force), verbose=0 if args.quiet else 2,
                        submission_label=args.label)
        run.run()
    except (RunError, DataError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
