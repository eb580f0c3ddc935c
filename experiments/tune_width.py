"""keras-tuner search over the SERFR-CNN width {24, 32} (optionally KD temperature and alpha).

    python experiments/tune_width.py --profile quick [--tune-kd] [--epochs 10] [--data DIR]

Uses the same features and ensemble soft targets as run_submission.py (shared --work folder;
teachers are trained first if needed) and the Distiller; objective: validation accuracy on
fold1_evaluate.  Results: --out/width_search/summary.json and a table on screen.  Re-running
resumes the search.

Distributed (keras-tuner chief/worker): start the same command on every machine with
  KERASTUNER_TUNER_ID=chief   KERASTUNER_ORACLE_IP=<chief address> KERASTUNER_ORACLE_PORT=8000  (the chief)
  KERASTUNER_TUNER_ID=tuner0  KERASTUNER_ORACLE_IP=<chief address> KERASTUNER_ORACLE_PORT=8000  (worker 0)
  KERASTUNER_TUNER_ID=tuner1  ...                                                                (worker 1)
The chief serves trials and waits; workers train them.  --out must be a folder every process can write.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run_submission import _overrides  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--system", type=int, default=1, choices=(1, 2, 3, 4), help="augmentation/KD settings to use")
    ap.add_argument("--profile", default="quick", choices=("paper", "quick"))
    ap.add_argument("--data", type=Path)
    ap.add_argument("--work", type=Path, default=Path("runs/work"))
    ap.add_argument("--out", type=Path, default=Path("runs/tune_width"))
    ap.add_argument("--epochs", type=int, help="epochs per trial (default: the profile's student epochs)")
    ap.add_argument("--widths", type=int, nargs="+", default=[24, 32])
    ap.add_argument("--tune-kd", action="store_true", help="also search KD temperature {1,2,4} and alpha {0.1,0.5}")
    ap.add_argument("--seeds", type=int, default=2, help="trainings per width; the score is their mean (default 2)")
    ap.add_argument("--max-trials", type=int)
    ap.add_argument("--set", nargs="*", metavar="KEY=VALUE")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    from asc_keras.config import load_system_config
    from asc_keras.data import DataError
    from asc_keras.submission import RunError, SystemRun
    from asc_keras.training.tuning import SearchData, width_search

    try:
        cfg = load_system_config(HERE / "systems" / f"system{args.system}.yaml",
                                 HERE / "profiles" / f"{args.profile}.yaml", _overrides(args.set))
        run = SystemRun(cfg, out=args.out, work=args.work, data=args.data, verbose=0 if args.quiet else 2)
        worker = os.environ.get("KERASTUNER_TUNER_ID", "chief") != "chief"
        prep = run.prepare()
        data = SearchData(prep.clip_cache.features, prep.clip_cache.rows(prep.train_clips["filename"]),
                          prep.train_clips["label"].to_numpy(), prep.targets,
                          prep.clip_cache.rows(prep.eval_clips["filename"]), prep.eval_clips["label"].to_numpy())
        summary = width_search(cfg, data, args.out, widths=args.widths, tune_kd=args.tune_kd,
                               epochs=args.epochs or cfg.optim.epochs, seeds=args.seeds,
                               max_trials=args.max_trials, verbose=0 if args.quiet else 2)
    except (RunError, DataError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if worker:
        print(f"worker {summary['worker']} finished its trials")
    else:
        print(f"\nwidth search (objective: last-epoch val_accuracy on fold1_evaluate, mean of {summary['seeds']} "
              "seed(s))")
        for t in summary["trials"]:
            acc, sd = t["val_accuracy"], t["val_accuracy_std"]
            score = "-" if acc is None else f"{100 * acc:.1f} %" + ("" if sd is None else f" +- {100 * sd:.1f}")
            runs = ", ".join(f"{100 * v:.1f}" for v in t["executions"])
            print(f"  {t['hyperparameters']}  {score}  (runs: {runs})  [{t['status']}]")
        print(f"best: {summary['best']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
