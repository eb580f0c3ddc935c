"""keras-tuner search over the SERFR-CNN width {24, 32}: ``asc-keras tune`` (see its --help).

    python experiments/tune_width.py --profile quick [--tune-kd] [--epochs 10] [--data DIR]

Uses the same features and ensemble soft targets as run_submission.py (shared --work folder;
teachers are trained first if needed) and the Distiller; objective: last-epoch validation
accuracy on fold1_evaluate, mean over --seeds.  Results: --out/width_search/summary.json and a
table on screen.  Re-running resumes the search.

Distributed (keras-tuner chief/worker): start the same command on every machine with
  KERASTUNER_TUNER_ID=chief   KERASTUNER_ORACLE_IP=<chief address> KERASTUNER_ORACLE_PORT=8000  (the chief)
  KERASTUNER_TUNER_ID=tuner0  KERASTUNER_ORACLE_IP=<chief address> KERASTUNER_ORACLE_PORT=8000  (worker 0)
  KERASTUNER_TUNER_ID=tuner1  ...                                                                (worker 1)
The chief serves trials and waits; workers train them.  --out must be a folder every process can write.
"""

from __future__ import annotations

import sys

from asc_keras.cli import main as cli_main


def main(argv=None) -> int:
    """``asc-keras tune`` with ``argv`` (default: this script's arguments)."""
    return cli_main(["tune", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
