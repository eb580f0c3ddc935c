"""The ``asc-keras finetune`` command: a trained model adapted to your own recordings and classes."""

from __future__ import annotations

import dataclasses


def finetune_settings(pairs, epochs: int | None):
    """(FinetuneConfig, SystemConfig) from ``--set`` pairs: ``finetune.*`` settings go to the first,
    the rest (``compress.*``, ``seed``...) onto system 1's quick profile, whose compression
    settings the export uses."""
    from asc_keras.presets import parse_overrides, system_config
    from asc_keras.training.finetune import FinetuneConfig

    overrides = parse_overrides(pairs)
    own = overrides.pop("finetune", {}) or {}
    known = {f.name for f in dataclasses.fields(FinetuneConfig)}
    if not isinstance(own, dict) or set(own) - known:
        bad = sorted(set(own) - known) if isinstance(own, dict) else own
        raise ValueError(f"unknown finetune setting(s) {bad}; known: {sorted(known)}")
    if epochs is not None:
        own["epochs"] = epochs
    return FinetuneConfig(**own), system_config(1, "quick", overrides)


def _finetune(args) -> int:
    from asc_keras.orchestration.finetune import finetune

    cfg, system = finetune_settings(args.set, args.epochs)
    results = finetune(args.model, args.data, args.out, cfg, system, verbose=0 if args.quiet else 2)
    m = results["validation"]["int8"]
    print(f"validation files: int8 accuracy {100 * m['accuracy']:.1f} % over "
          f"{len(results['classes'])} classes; see {args.out}/results.md")  # fmt: skip
    return 0


def add_finetune_command(sub) -> None:
    p = sub.add_parser("finetune", help="adapt a trained model to your own recordings and classes")
    p.add_argument("model", help=".keras student (or teacher) written by asc-keras run")
    p.add_argument("data", help="a folder with one sub-folder of recordings per class, or a CSV "
                   "filename,label[,device] with paths relative to it")  # fmt: skip
    p.add_argument("--out", required=True, help="output folder (resumable: run again to continue)")
    p.add_argument("--epochs", type=int, help="epochs of the whole model after the head's")
    p.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE",
                   help="finetune.* (frozen_epochs, lr, val_fraction, seed, augment, ...) and "
                   "compress.* settings (repeatable)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_finetune)
