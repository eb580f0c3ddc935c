"""The report's claims as one table, over several seeds: ``asc-keras ablation`` (see its --help).

    python experiments/ablation.py --profile quick                 # built-in generated data, 3 seeds
    python experiments/ablation.py --profile quick --data /path/to/TAU-urban-acoustic-scenes-2022-mobile-development

Rows: each teacher and the ensemble (10 s recordings); the student with CE only, with KD from
each single teacher, with KD from the ensemble (the system's recipe), without mixup, with time
stretching, and at the other width.  Writes --out/ablation.md, ablation.png and ablation.json;
features, teachers and soft targets are shared with run_submission.py through --work.  Re-running
the same command resumes: finished rows are read back, an interrupted one continues.
"""

from __future__ import annotations

import sys

from asc_keras.cli import main as cli_main


def main(argv=None) -> int:
    """``asc-keras ablation`` with ``argv`` (default: this script's arguments)."""
    return cli_main(["ablation", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
