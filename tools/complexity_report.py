"""Print the DCASE complexity of a model: ``asc-keras complexity`` (see its --help).

    python tools/complexity_report.py serfr_cnn_32          # a builder name
    python tools/complexity_report.py runs/system1/student.keras
    python tools/complexity_report.py runs/system1/student_int8.tflite

Builder names: serfr_cnn_32, serfr_cnn_24, mobilenetv2, cnn, bcresnet, dcase_baseline.
"""

from __future__ import annotations

import sys

from asc_keras.cli import main as cli_main


def main(argv=None) -> int:
    """``asc-keras complexity`` with ``argv`` (default: this script's arguments)."""
    return cli_main(["complexity", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
