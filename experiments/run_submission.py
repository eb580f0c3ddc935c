"""Run a submission system of the report end to end: ``asc-keras run`` (see its --help).

    python experiments/run_submission.py --system 1 --profile quick
    python experiments/run_submission.py --system 3 --profile paper \
        --data /data/TAU-urban-acoustic-scenes-2022-mobile-development

Stages (each skipped when its outputs exist, redone with --force STAGE): data, features,
teachers, targets, student, control, baseline, compress, tflite, evaluate, report.  Without
--data the built-in generated dataset is written to --work and used.  Outputs go to --out
(default runs/systemN-PROFILE): student.keras, student_int8.tflite, results.json, results.md,
plots/, config.yaml, submission/.
"""

from __future__ import annotations

import sys

from asc_keras.cli import main as cli_main


def main(argv=None) -> int:
    """``asc-keras run`` with ``argv`` (default: this script's arguments)."""
    return cli_main(["run", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
