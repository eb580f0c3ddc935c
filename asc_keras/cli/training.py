"""The training commands of ``asc-keras``: run, tune, ablation (they share the system arguments)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from asc_keras.config import STRATEGIES
from asc_keras.presets import PROFILES, SYSTEMS


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
    # Repeated list options add up (--set a=1 --set b=2): argparse's 'extend', default None so
    # that no shared default list is ever extended.
    p.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE",
                   help="override configuration values (repeatable)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--skip-bad-audio", action="store_true",
                   help="leave out clips that cannot be read (listed in results.json) instead of stopping")  # fmt: skip


def _config(args):
    from asc_keras.presets import parse_overrides, system_config

    overrides = list(args.set or [])
    if getattr(args, "epochs", None):  # tune --epochs: a length in epochs instead of steps
        overrides += [f"optim.epochs={args.epochs}", "optim.steps=null"]
    return system_config(args.system, args.profile, parse_overrides(overrides))


def _place(args, out: Path, work: Path | None = None, **more):
    from asc_keras.stages.shared import RunPlace

    return RunPlace(out, work or args.work, args.data, verbose=0 if args.quiet else 2,
                    skip_bad_audio=args.skip_bad_audio, **more)  # fmt: skip


def _multiworker_folders(args, out: Path) -> tuple[Path, Path]:
    """Under ``--strategy multiworker``: make the strategy first (TensorFlow's rule: before any
    other TensorFlow work), and give every worker but the chief (TF_CONFIG task 0) its own output
    and work folders, ``NAME.workerK`` beside the chief's: the workers compute the same stages
    in step, and sharing a folder would make one wait on a lock the other holds while both wait
    on each other's gradients.  Returns (output folder, work folder)."""
    if args.strategy != "multiworker":
        return out, args.work
    from asc_keras.training.loop import get_strategy
    from asc_keras.training.multiworker import worker_index

    get_strategy("multiworker")
    k = worker_index()
    if k == 0:
        return out, args.work
    return out.with_name(f"{out.name}.worker{k}"), args.work.with_name(
        f"{args.work.name}.worker{k}"
    )


def _run(args) -> int:
    from asc_keras.orchestration.run import run

    out, work = _multiworker_folders(
        args, args.out or Path("runs") / f"system{args.system}-{args.profile}"
    )
    place = _place(args, out, work, eval_data=args.eval_data, train_split=args.train_split,
                   strategy=args.strategy, init_from=args.init_from,
                   beside=False if args.one_process else None)  # fmt: skip
    run(_config(args), place, force=frozenset(args.force or ()), label=args.label)
    return 0


def _tune(args) -> int:
    from asc_keras.files import folder_lock
    from asc_keras.orchestration.run import prepare_shared
    from asc_keras.stages.teaching import live_teachers, teaching_config
    from asc_keras.training.tuning import SearchData

    cfg = _config(args)
    tuner_id = os.environ.get("KERASTUNER_TUNER_ID", "")
    worker = tuner_id not in ("", "chief")
    with folder_lock(args.out, name=tuner_id):  # chief and workers share --out by design
        prep = prepare_shared(cfg, _place(args, args.out))
        cfg = teaching_config(cfg, prep.targets, prep.splits)  # the control's share, alpha: run's
        live = live_teachers(cfg, prep.targets, prep.teacher_folders, prep.splits)
        data = (SearchData(prep.splits.train, prep.splits.evaluate, prep.targets) if live is None
                else SearchData(prep.splits.train, prep.splits.evaluate, None, live.models,
                                live.weights))  # fmt: skip
        summary = _search(args, cfg, data)
    if worker:
        print(f"worker {summary['worker']} finished its trials")
        return 0
    _print_search(summary)
    return 0


def _search(args, cfg, data) -> dict:
    from asc_keras.training.tuning import width_search

    return width_search(
        cfg,
        data,
        args.out,
        widths=args.widths or (24, 32),
        tune_kd=args.tune_kd,
        seeds=args.seeds,
        max_trials=args.max_trials,
        verbose=0 if args.quiet else 2,
        strategy=args.strategy,
    )


def _print_search(summary: dict) -> None:
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


def _ablation(args) -> int:
    from asc_keras.orchestration.ablation import run_ablation

    out = args.out or Path("runs") / f"ablation-system{args.system}-{args.profile}"
    run_ablation(_config(args), _place(args, out), seeds=args.seeds or (0, 1, 2), rows=args.rows)
    print((out / "ablation.md").read_text())
    return 0


def add_training_commands(sub) -> None:
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
    p.add_argument(
        "--force", nargs="+", action="extend", help="stages to redo even if done (or 'all')"
    )
    p.add_argument("--label", help="DCASE submission label (default asc_keras_task1_N)")
    p.add_argument("--init-from", type=Path, metavar="MODEL.keras",
                   help="start the KD student from this model's weights (same width), e.g. the "
                   "fold-1 student for --train-split all")  # fmt: skip
    p.add_argument("--one-process", action="store_true",
                   help="train every stage in this process (default on a CPU: the CE control and "
                   "the DCASE baseline train in a second one, beside the teachers)")  # fmt: skip
    p.set_defaults(func=_run)

    p = sub.add_parser(
        "tune", help="keras-tuner search over the student width (chief/worker capable)"
    )
    _system_args(p, 1, "quick")
    p.add_argument("--out", type=Path, default=Path("runs/tune_width"))
    p.add_argument("--epochs", type=int,
                   help="epochs per trial instead of the profile's student length (sets optim.epochs, "
                   "optim.steps=null)")  # fmt: skip
    p.add_argument("--widths", type=int, nargs="+", action="extend", help="default 24 32")
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
    p.add_argument("--seeds", type=int, nargs="+", action="extend", help="default 0 1 2")
    p.add_argument("--rows", nargs="+", action="extend",
                   help="only these student rows (keys as in ablation.json); the rows of the settings the "
                   "report leaves open (kd_alpha_0.1 kd_alpha_0.5 kd_T1 kd_T4 kd_live_T2 kd_logits kd_clip_targets "
                   "kd_recording_targets kd_swap_wrong kd_non_target kd_control kd_control_non_target "
                   "kd_control_live kd_stop_0.5 kd_control_share_0.5 kd_control_confidence "
                   "kd_control_share_0 kd_clip_live kd_clip_stored) run only when named")  # fmt: skip
    p.set_defaults(func=_ablation)
