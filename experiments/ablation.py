"""The report's claims as one table, over several seeds (asc_keras.evaluate.ablation).

    python experiments/ablation.py --profile quick                 # built-in generated data, 3 seeds
    python experiments/ablation.py --profile quick --data /path/to/TAU-urban-acoustic-scenes-2022-mobile-development

Rows: each teacher and the ensemble (10 s recordings); the student with CE only, with KD from
each single teacher, with KD from the ensemble (the system's recipe), without mixup, with time
stretching, and at the other width.  Writes --out/ablation.md, ablation.png and ablation.json;
features, teachers and soft targets are shared with run_submission.py through --work.  Re-running
the same command resumes: finished rows are read back, an interrupted one continues.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run_submission import _overrides  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--system", type=int, default=1, choices=(1, 2, 3, 4), help="the base recipe (default 1)")
    ap.add_argument("--profile", default="quick", choices=("paper", "quick"))
    ap.add_argument("--data", type=Path, help="TAU 2022 Mobile development folder (default: generated dataset)")
    ap.add_argument("--work", type=Path, default=Path("runs/work"))
    ap.add_argument("--out", type=Path, help="default runs/ablation-systemN-PROFILE")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rows", nargs="+", help="only these student rows (keys as in ablation.json)")
    ap.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="override configuration values")
    args = ap.parse_args(argv)

    from asc_keras.config import load_system_config
    from asc_keras.data import DataError
    from asc_keras.evaluate.ablation import run_ablation
    from asc_keras.submission import RunError

    try:
        cfg = load_system_config(HERE / "systems" / f"system{args.system}.yaml",
                                 HERE / "profiles" / f"{args.profile}.yaml", _overrides(args.set))
        out = args.out or Path("runs") / f"ablation-system{args.system}-{args.profile}"
        run_ablation(cfg, out, args.work, data=args.data, seeds=args.seeds, rows=args.rows)
    except (RunError, DataError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print((out / "ablation.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
