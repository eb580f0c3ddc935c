"""The model commands of ``asc-keras``: complexity, import-panns, predict."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _complexity(args) -> int:
    from asc_keras.compress.complexity import keras_complexity, tflite_complexity
    from asc_keras.compress.nessi import nessi_complexity, nessi_of_model
    from asc_keras.models import BUILDERS

    path = Path(args.model)
    if path.suffix == ".tflite":
        c, n = tflite_complexity(path), nessi_complexity(path)
    elif path.suffix == ".keras" or args.model in BUILDERS:
        if path.suffix == ".keras":
            from asc_keras.models.common import load_model_file

            model = load_model_file(path)
        else:
            model = BUILDERS[args.model]()
        c, n = keras_complexity(model), nessi_of_model(model)
    else:
        names = ", ".join(sorted(BUILDERS))
        raise ValueError(
            f"{args.model}: neither a .keras/.tflite file nor a builder name ({names})"
        )
    if args.json:
        print(json.dumps({**c.to_dict(), "nessi": n.to_dict()}, indent=1))
    else:
        print(c.table(only_counted=not args.all_layers))
        print(c.summary())
        print(
            f"Keras parameters (model.summary): {c.keras_params:,}" if c.keras_params else "",
            end="",
        )
        print("\n" + n.summary() if c.keras_params else n.summary())
    return 0


def _import_panns(args) -> int:
    from asc_keras.models.classes import save_model_file
    from asc_keras.models.panns_import import panns_teacher

    out = Path(args.out)
    if out.suffix != ".keras":
        raise ValueError(
            f"{out}: write the imported teacher to a .keras file (it keeps PANNs' layout)"
        )
    teacher, report = panns_teacher(
        args.checkpoint, front_end=args.front_end, n_classes=args.classes
    )
    save_model_file(teacher, out)
    print(json.dumps(report, indent=1))
    print(
        f"wrote {out}: use it with --set teachers.pretrained_mobilenetv2={out} (or pass the .pth itself)"
    )
    return 0


def _predict(args) -> int:
    from asc_keras.evaluate.predict import predict_files, render_predictions

    results = predict_files(args.model, args.audio, hop_seconds=args.hop, features=args.features)
    for r in results:
        if r.error:
            print(f"skipped: {r.error}", file=sys.stderr)
        for w in r.warnings:
            print(f"warning: {w}", file=sys.stderr)
    text = render_predictions(results, args.format, args.windows)
    if args.output:
        with open(args.output, "w") as fh:
            fh.write(text + ("\n" if not text.endswith("\n") else ""))
    else:
        print(text)
    return 1 if any(r.error for r in results) else 0


def add_model_commands(sub) -> None:
    """complexity, import-panns, predict: commands on a model."""
    p = sub.add_parser("complexity", help="DCASE complexity of a builder, .keras or .tflite model")
    p.add_argument(
        "model", help="builder name (serfr_cnn_32, mobilenetv2, ...), .keras file or .tflite file"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument(
        "--all-layers", action="store_true", help="also list layers with no params or MACs"
    )
    p.set_defaults(func=_complexity)

    p = sub.add_parser(
        "import-panns", help="PANNs' AudioSet MobileNetV2 .pth -> a Keras teacher (no PyTorch)"
    )
    p.add_argument("checkpoint", help="PANNs checkpoint, e.g. MobileNetV2_mAP=0.383.pth")
    p.add_argument("out", help="output .keras file (the 10-class teacher in PANNs' layout)")
    p.add_argument("--front-end", choices=("panns", "report"), default="panns",
                   help="what the teacher is fed: PANNs' own 32 kHz dB log-mels, bn0 kept (default), or "
                        "the report's log-mels pooled to 64 bands, bn0 re-initialised")  # fmt: skip
    p.add_argument("--classes", type=int, default=10, help="classes of the new head (default 10)")
    p.set_defaults(func=_import_panns)

    p = sub.add_parser("predict", help="classify audio files with a trained model")
    p.add_argument("model", help=".tflite or .keras model")
    p.add_argument("audio", nargs="+", help="audio files (WAV/FLAC/OGG, any rate/length/channels)")
    p.add_argument(
        "--hop", type=float, default=1.0, help="hop between 1 s windows, seconds (default 1.0)"
    )
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--output", help="write to this file instead of the screen")
    p.add_argument("--windows", action="store_true", help="also list per-window predictions")
    p.add_argument("--features", choices=("auto", "dcase2022-baseline"), default="auto",
                   help="the model's input features: 'auto' (its features.json, or the organisers' "
                   "baseline features for a 40x51 input) or 'dcase2022-baseline'")  # fmt: skip
    p.set_defaults(func=_predict)
