"""Print the DCASE complexity of a model: per-layer table and a summary line.

    python tools/complexity_report.py serfr_cnn_32          # a builder name
    python tools/complexity_report.py runs/system1/student.keras
    python tools/complexity_report.py runs/system1/student_int8.tflite

Builder names: serfr_cnn_32, serfr_cnn_24, mobilenetv2, cnn, bcresnet, dcase_baseline.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="builder name, .keras file or .tflite file")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ap.add_argument("--all-layers", action="store_true", help="also list layers with no params or MACs")
    args = ap.parse_args(argv)
    from asc_keras.compress.complexity import keras_complexity, tflite_complexity
    from asc_keras.models import BUILDERS

    path = Path(args.model)
    try:
        if path.suffix == ".tflite":
            c = tflite_complexity(path)
        elif path.suffix == ".keras":
            from asc_keras._runtime import keras

            if not path.is_file():
                raise FileNotFoundError(f"{path}: model file not found")
            c = keras_complexity(keras.saving.load_model(path, compile=False, safe_mode=True))
        elif args.model in BUILDERS:
            c = keras_complexity(BUILDERS[args.model]())
        else:
            raise ValueError(f"{args.model}: neither a .keras/.tflite file nor a builder name "
                             f"({', '.join(sorted(BUILDERS))})")
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(c.to_dict(), indent=1))
    else:
        print(c.table(only_counted=not args.all_layers))
        print(c.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
