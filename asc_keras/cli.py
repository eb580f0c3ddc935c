"""The ``asc-keras`` command: run a system, search the width, ablate, count complexity, predict.

    asc-keras run --system 1 --profile quick [--data DIR] [--set optim.epochs=3 ...]
    asc-keras tune --profile quick [--widths 24 32] [--seeds 2] [--tune-kd]
    asc-keras ablation --profile quick [--seeds 0 1 2] [--rows ce_only kd_ensemble]
    asc-keras complexity serfr_cnn_32 | MODEL.keras | MODEL.tflite [--json]
    asc-keras import-panns MobileNetV2_mAP=0.383.pth teacher.keras
    asc-keras predict MODEL AUDIO... [--hop 1.0] [--format table|csv|json] [--output FILE] [--windows]

``experiments/run_submission.py``, ``experiments/tune_width.py`` and ``experiments/ablation.py``
are the same commands.  Exit status 2 on a usage, configuration, data or model error (the
message says which file and what to do); ``predict`` exits 1 when it skipped a file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from asc_keras.config import STRATEGIES
from asc_keras.configs import PROFILES, SYSTEMS


def _system_args(
    p: argparse.ArgumentParser, system_default: int | None, profile_default: str
) -> None:
    """Arguments shared by run, tune and ablation: which system, profile, data, work folder, overrides."""
    if system_default is None:
        p.add_argument("--system", type=int, required=True, choices=SYSTEMS)
    else:
        p.add_argument(
            "--system",
            type=int,
            default=system_default,
            choices=SYSTEMS,
            help=f"augmentation/KD recipe (default {system_default})",
        )
    p.add_argument("--profile", default=profile_default, choices=PROFILES)
    p.add_argument(
        "--data", type=Path, help="TAU 2022 Mobile development folder (default: generated dataset)"
    )
    p.add_argument(
        "--work", type=Path, default=Path("runs/work"), help="shared caches, teachers, targets"
    )
    p.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="override configuration values")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--skip-bad-audio", action="store_true",
                   help="leave out clips that cannot be read (listed in results.json) instead of stopping")  # fmt: skip


def _config(args):
    from asc_keras.configs import parse_overrides, system_config

    return system_config(args.system, args.profile, parse_overrides(args.set))


def _place(args, out: Path, **more):
    from asc_keras.system.shared import RunPlace

    return RunPlace(out, args.work, args.data, verbose=0 if args.quiet else 2, skip_bad_audio=args.skip_bad_audio,
                    **more)  # fmt: skip


def _multiworker_folders(args, out: Path) -> Path:
    """Under ``--strategy multiworker``: make the strategy first (TensorFlow's rule: before any
    other TensorFlow work), and give every worker but the chief (TF_CONFIG task 0) its own output
    and work folders, ``NAME.workerK`` beside the chief's: the workers compute the same stages
    in step, and sharing a folder would make one wait on a lock the other holds while both wait
    on each other's gradients.  Returns the output folder."""
    if args.strategy != "multiworker":
        return out
    from asc_keras.training.loop import get_strategy
    from asc_keras.training.multiworker import worker_index

    get_strategy("multiworker")
    k = worker_index()
    if k == 0:
        return out
    args.work = args.work.with_name(f"{args.work.name}.worker{k}")
    return out.with_name(f"{out.name}.worker{k}")


def _run(args) -> int:
    from asc_keras.submission import run

    out = _multiworker_folders(
        args, args.out or Path("runs") / f"system{args.system}-{args.profile}"
    )
    place = _place(
        args, out, eval_data=args.eval_data, train_split=args.train_split, strategy=args.strategy
    )
    run(_config(args), place, force=frozenset(args.force), label=args.label)
    return 0


def _tune(args) -> int:
    from asc_keras.submission import prepare_shared
    from asc_keras.training.tuning import SearchData, width_search

    cfg = _config(args)
    worker = os.environ.get("KERASTUNER_TUNER_ID", "chief") != "chief"
    prep = prepare_shared(cfg, _place(args, args.out))
    data = SearchData(prep.splits.train, prep.splits.evaluate, prep.targets)
    summary = width_search(
        cfg,
        data,
        args.out,
        widths=args.widths,
        tune_kd=args.tune_kd,
        epochs=args.epochs or cfg.optim.epochs,
        seeds=args.seeds,
        max_trials=args.max_trials,
        verbose=0 if args.quiet else 2,
        strategy=args.strategy,
    )
    if worker:
        print(f"worker {summary['worker']} finished its trials")
        return 0
    print(
        f"\nwidth search (objective: last-epoch val_accuracy on fold1_evaluate, mean of {summary['seeds']} seed(s))"
    )
    for t in summary["trials"]:
        acc, sd = t["val_accuracy"], t["val_accuracy_std"]
        score = (
            "-"
            if acc is None
            else f"{100 * acc:.1f} %" + ("" if sd is None else f" +- {100 * sd:.1f}")
        )
        runs = ", ".join(f"{100 * v:.1f}" for v in t["executions"])
        print(f"  {t['hyperparameters']}  {score}  (runs: {runs})  [{t['status']}]")
    print(f"best: {summary['best']}")
    return 0


def _ablation(args) -> int:
    from asc_keras.evaluate.ablation import run_ablation

    out = args.out or Path("runs") / f"ablation-system{args.system}-{args.profile}"
    run_ablation(
        _config(args),
        out,
        args.work,
        data=args.data,
        seeds=args.seeds,
        rows=args.rows,
        verbose=0 if args.quiet else 2,
    )
    print((out / "ablation.md").read_text())
    return 0


def _complexity(args) -> int:
    from asc_keras.compress.complexity import keras_complexity, tflite_complexity
    from asc_keras.compress.nessi import nessi_complexity, nessi_of_model
    from asc_keras.models import BUILDERS

    path = Path(args.model)
    if path.suffix == ".tflite":
        c, n = tflite_complexity(path), nessi_complexity(path)
    elif path.suffix == ".keras" or args.model in BUILDERS:
        if path.suffix == ".keras":
            from asc_keras._runtime import keras

            if not path.is_file():
                raise FileNotFoundError(f"{path}: model file not found")
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
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
    from asc_keras.files import atomic_path
    from asc_keras.models.panns_import import panns_teacher

    out = Path(args.out)
    if out.suffix != ".keras":
        raise ValueError(
            f"{out}: write the imported teacher to a .keras file (it keeps PANNs' layout)"
        )
    teacher, report = panns_teacher(args.checkpoint, n_classes=args.classes)
    with atomic_path(out) as tmp:
        teacher.save(tmp)
    print(json.dumps(report, indent=1))
    print(
        f"wrote {out}: use it with --set teachers.pretrained_mobilenetv2={out} (or pass the .pth itself)"
    )
    return 0


def _predict(args) -> int:
    from asc_keras.evaluate.predict import predict_files, render_predictions

    results = predict_files(args.model, args.audio, hop_seconds=args.hop)
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


def parser() -> argparse.ArgumentParser:
    """The ``asc-keras`` argument parser with its commands."""
    ap = argparse.ArgumentParser(
        prog="asc-keras", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="command", required=True)
    _add_training_commands(sub)
    _add_model_commands(sub)
    return ap


def _add_training_commands(sub) -> None:
    """run, tune, ablation: commands that train (they share the system/profile/data arguments)."""
    p = sub.add_parser("run", help="run a submission system end to end (resumable)")
    _system_args(p, None, "paper")
    p.add_argument(
        "--eval-data", type=Path, help="evaluation set folder: also write its predictions"
    )
    p.add_argument("--out", type=Path, help="output folder (default runs/systemN-PROFILE)")
    p.add_argument(
        "--train-split",
        default="train",
        choices=("train", "all"),
        help="'all' retrains on train+evaluate for the final submission (report sec. 4.2)",
    )
    p.add_argument(
        "--strategy",
        default="default",
        choices=STRATEGIES,
        help="tf.distribute: 'mirrored' = every GPU of this machine; 'multiworker' = several "
        "machines, each running this command with TF_CONFIG set (README)",
    )
    p.add_argument("--force", nargs="*", default=[], help="stages to redo even if done (or 'all')")
    p.add_argument("--label", help="DCASE submission label (default asc_keras_task1_N)")
    p.set_defaults(func=_run)

    p = sub.add_parser(
        "tune", help="keras-tuner search over the student width (chief/worker capable)"
    )
    _system_args(p, 1, "quick")
    p.add_argument("--out", type=Path, default=Path("runs/tune_width"))
    p.add_argument(
        "--epochs", type=int, help="epochs per trial (default: the profile's student epochs)"
    )
    p.add_argument("--widths", type=int, nargs="+", default=[24, 32])
    p.add_argument(
        "--tune-kd",
        action="store_true",
        help="also search KD temperature {1,2,4} and alpha {0.1,0.5}",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=2,
        help="trainings per width; the score is their mean (default 2)",
    )
    p.add_argument("--max-trials", type=int)
    p.add_argument("--strategy", default="default", choices=STRATEGIES[:2],
                   help="train each trial under this tf.distribute strategy (keras-tuner's own "
                   "chief/worker mode spreads trials over machines)")  # fmt: skip
    p.set_defaults(func=_tune)

    p = sub.add_parser("ablation", help="the report's claims as one table over seeds (resumable)")
    _system_args(p, 1, "quick")
    p.add_argument("--out", type=Path, help="default runs/ablation-systemN-PROFILE")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rows", nargs="+", help="only these student rows (keys as in ablation.json)")
    p.set_defaults(func=_ablation)


def _add_model_commands(sub) -> None:
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
    p.set_defaults(func=_predict)


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    from asc_keras.data import DataError
    from asc_keras.system.runner import RunError

    try:
        return args.func(args)
    except (RunError, DataError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
