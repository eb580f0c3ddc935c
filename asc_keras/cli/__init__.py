"""The ``asc-keras`` command: run a system, search the width, ablate, count complexity, predict.

    asc-keras run --system 1 --profile quick [--data DIR] [--set optim.epochs=3 ...]
    asc-keras tune --profile quick [--widths 24 32] [--seeds 2] [--tune-kd]
    asc-keras ablation --profile quick [--seeds 0 1 2] [--rows ce_only kd_ensemble]
    asc-keras complexity serfr_cnn_32 | MODEL.keras | MODEL.tflite [--json]
    asc-keras import-panns MobileNetV2_mAP=0.383.pth teacher.keras
    asc-keras predict MODEL AUDIO... [--hop 1.0] [--format table|csv|json] [--output FILE] [--windows]
    asc-keras finetune MODEL.keras DATA --out DIR [--epochs N] [--set finetune.lr=1e-3 ...]

``experiments/run_submission.py``, ``experiments/tune_width.py`` and ``experiments/ablation.py``
are the same commands.  Exit status 2 on a usage, configuration, data or model error (the
message says which file and what to do); ``predict`` exits 1 when it skipped a file.
"""

from __future__ import annotations

import argparse
import sys

from asc_keras.cli.finetune import add_finetune_command
from asc_keras.cli.models import add_model_commands
from asc_keras.cli.training import add_training_commands


def parser() -> argparse.ArgumentParser:
    """The ``asc-keras`` argument parser with its commands."""
    ap = argparse.ArgumentParser(
        prog="asc-keras", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="command", required=True)
    add_training_commands(sub)
    add_model_commands(sub)
    add_finetune_command(sub)
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    from asc_keras.data import DataError
    from asc_keras.files import FolderBusy
    from asc_keras.stages.runner import RunError

    try:
        return args.func(args)
    except (RunError, DataError, ValueError, FileNotFoundError, FolderBusy) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
