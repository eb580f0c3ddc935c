"""Student training with knowledge distillation (report sec. 3, 4.2): the one recipe.

``asc-keras run`` (KD student and CE control), the width search and the ablation all train the
student through the two functions here: :func:`build_student_trainer` (the model, its
Distiller and optimiser) and :func:`fit_student` (the batches and the resumable fit).
:func:`train_student` is the two, plus the saved model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asc_keras._runtime import keras
from asc_keras.config import SystemConfig
from asc_keras.data.parallel import parallel_table
from asc_keras.data.splits import ClipSplit
from asc_keras.distill.distiller import Distiller
from asc_keras.distill.targets import SoftTargets, kd_soft_targets
from asc_keras.files import write_json
from asc_keras.models import build_serfr_cnn
from asc_keras.models.classes import save_model_file
from asc_keras.models.common import copy_weights, load_model_file
from asc_keras.training.bn import recalibrate_on_clean_clips
from asc_keras.training.length import TrainingLength, training_length
from asc_keras.training.loop import fit_resumable, training_scope
from asc_keras.training.optimizers import check_ema, make_optimizer
from asc_keras.training.pipeline import make_dataset


def student_length(cfg: SystemConfig, examples: int) -> TrainingLength:
    """The student's (and the CE control's, and the baseline's) training length on ``examples``."""
    o = cfg.optim
    return training_length(examples, o.batch_size, o.epochs, o.steps, o.rounds, o.min_passes)


def check_student_length(cfg: SystemConfig) -> None:
    """The students' length settings (``optim.steps``, ``rounds``, ``min_passes``): ValueError
    naming the setting before any training, as :func:`student_length` would raise at the student."""
    student_length(cfg, 1)


def check_kd_stop(share: float) -> None:
    """``distill.kd_stop`` is a share of the steps: ValueError naming it otherwise (NaN too)."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"distill.kd_stop must be in [0, 1], got {share}")


def check_final_weights(cfg: SystemConfig) -> None:
    """The weights a student keeps (``optim.ema_momentum``, ``optim.precise_bn_batches``): checked
    before any training, so a setting out of range costs no trained model."""
    check_ema(cfg.optim.ema_momentum)
    n = cfg.optim.precise_bn_batches
    if not n >= 0:
        raise ValueError(f"optim.precise_bn_batches must be 0 (off) or more, got {n}")


def check_control_share(cfg: SystemConfig) -> None:
    """``distill.control_share`` (and ``control_share_no_lead``, where set) is a share, and one
    above 0 needs the CE control it takes from."""
    d = cfg.distill
    for name in ("control_share", "control_share_no_lead"):
        share = getattr(d, name)
        if share is None:
            continue
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"distill.{name} must be in [0, 1], got {share}")
        if share > 0.0 and d.enabled and not cfg.controls.ce_control:
            raise ValueError(
                f"distill.{name}={share} teaches with the CE control, which controls.ce_control="
                f"false switches off: set controls.ce_control=true, or distill.{name}=0"
            )


def check_kd_weights(cfg: SystemConfig) -> None:
    """``distill.temperature`` and ``live_temperature`` (where set) divide logits: above 0;
    ``alpha`` and ``recording_alpha`` (where set) weigh the labels: in [0, 1].  Checked before the
    teachers train."""
    for name in ("temperature", "live_temperature"):
        t = getattr(cfg.distill, name)
        if t is not None and not t > 0:  # NaN too
            raise ValueError(f"distill.{name} must be above 0 (a temperature), got {t}")
    for name in ("alpha", "recording_alpha"):
        a = getattr(cfg.distill, name)
        if a is not None and not 0.0 <= a <= 1.0:  # NaN too
            raise ValueError(f"distill.{name} must be in [0, 1] (the labels' weight), got {a}")


def kd_temperature(distill, teachers_live: bool, control_share: float) -> float:
    """T of a KD student's soft targets: ``distill.live_temperature`` (where set) where the whole
    target is made on each augmented batch -- by live teachers, or by the CE control alone
    (``control_share``, the share it teaches, 0 where it does not: 1) -- else
    ``distill.temperature``.  Why two: a stored target is the
    teachers' output on a clean clip of a recording they fitted, near one-hot, and T 2 shows what
    else it holds; a live one is their output on the masked, mixed view, already unsure, and T 2
    flattens it further, so the student learns slower from it (docs/probe-sets.md, "Live targets at T 1")."""
    if distill.live_temperature is not None and whole_target_live(teachers_live, control_share):
        return distill.live_temperature
    return distill.temperature


def kd_alpha(distill, recording_level: bool, control_share: float) -> float:
    """α, the labels' weight in a KD student's loss: ``distill.recording_alpha`` (where set) where
    the teachers' part of its target is their output on whole recordings (``recording_level``,
    and the CE control does not teach alone: ``control_share`` < 1), else ``distill.alpha``.  Why
    two: a clip-level or live target says how much of its scene a clip holds, which its label
    cannot; a recording's target gives each of its clips what the whole 10 s holds, and more
    weight on the label hedges that (docs/probe-sets.md, "α 0.5 on recording-level targets")."""
    if distill.recording_alpha is not None and recording_level and control_share < 1.0:
        return distill.recording_alpha
    return distill.alpha


def whole_target_live(teachers_live: bool, control_share: float) -> bool:
    """Whether no part of a KD student's target is stored (:func:`kd_temperature`)."""
    return teachers_live or control_share >= 1.0


def kd_steps(distill, steps: int) -> int | None:
    """The student steps that learn from the teachers (``distill.kd_stop`` of ``steps``); None: all."""
    check_kd_stop(distill.kd_stop)
    return None if distill.kd_stop >= 1.0 else round(distill.kd_stop * steps)


def build_student_trainer(
    cfg: SystemConfig, examples: int, kd: bool, *, strategy: str = "default", teachers=None,
    teacher_weights=None, control=None,
) -> Distiller:  # fmt: skip
    """SERFR-CNN-``cfg.student_width`` in a compiled :class:`Distiller`: Adam with the report's
    schedule over the whole training of ``examples`` clips; ``kd`` False: CE only (alpha = 1).
    ``teachers``: models run on each augmented batch for the teachers' part of the target (with
    ``teacher_weights``, None: 1/K), instead of stored targets (consistent teaching);
    ``control``: the CE control, run live for ``cfg.distill.control_share`` of the target (on
    every example, or per example by confidence: ``cfg.distill.control_share_by``)."""
    o, d = cfg.optim, cfg.distill
    check_final_weights(cfg)
    check_kd_weights(cfg)
    length = student_length(cfg, examples)
    live = kd and control is not None
    temperature = kd_temperature(d, kd and bool(teachers), d.control_share if live else 0.0)
    with training_scope(strategy, o.mixed_precision):
        student = build_serfr_cnn(cfg.student_width, bn_momentum=o.bn_momentum)
        distiller = Distiller(
            student, teachers=teachers if kd else None, teacher_weights=teacher_weights if kd else None,
            alpha=d.alpha if kd else 1.0, temperature=temperature, ensemble=d.ensemble,
            kd_part=d.kd_part, kd_steps=kd_steps(d, length.steps) if kd else None,
            control=control if live else None, control_share=d.control_share if live else 0.0,
            share_by=d.control_share_by if live else "fixed",
            teacher_view=d.teacher_view if kd and teachers else "own",
        )  # fmt: skip
        distiller.compile(
            make_optimizer(o, length.steps_per_round, length.rounds, ema=o.ema_momentum),
            metrics=[
                "accuracy",
                keras.metrics.CategoricalCrossentropy(from_logits=True, name="log_loss"),
            ],
        )
    return distiller


def fit_student(
    distiller: Distiller,
    cfg: SystemConfig,
    train: ClipSplit,
    val: ClipSplit | None,
    soft: np.ndarray | None,
    *,
    run_dir: str | Path | None,
    verbose="auto",
    callbacks=(),
):
    """Train ``distiller`` on ``train`` with the system's augmentation (resumable in ``run_dir``).

    ``soft``: (len(train), classes) ensemble distribution at the distillation temperature
    (:func:`~asc_keras.distill.targets.kd_soft_targets`), mixed by mixup with the labels; None:
    hard labels only.  Live teachers with ``teacher_view`` 'parallel' get each batch's parallel
    channel (:mod:`asc_keras.data.parallel`).  Returns the Keras History of this call.
    """
    o = cfg.optim
    length = student_length(cfg, len(train))
    parallel = (
        parallel_table(train.names)
        if distiller.teachers and distiller.teacher_view == "parallel"
        else None
    )
    if parallel is not None and parallel.shape[1] == 1:  # no clip has one: the teachers hear
        parallel = None  # the clip itself, with no second channel gathered and augmented for it
    train_ds = make_dataset(
        train.features, train.rows, train.labels, soft, batch_size=o.batch_size, shuffle=True,
        augment=cfg.augment, seed=cfg.seed, repeat=length.stream, parallel=parallel,
    )  # fmt: skip
    val_ds = None
    if val is not None and len(val):
        val_ds = make_dataset(val.features, val.rows, val.labels, batch_size=o.batch_size)
    history = fit_resumable(
        distiller, train_ds, val_ds, epochs=length.rounds, run_dir=run_dir, verbose=verbose,
        steps_per_epoch=length.steps_per_round if length.stream else None,
        extra_callbacks=callbacks,
    )  # fmt: skip
    if cfg.optim.precise_bn_batches:
        precise_batchnorm(distiller.student, cfg, train)
    return history


def precise_batchnorm(student, cfg: SystemConfig, train: ClipSplit) -> int:
    """After the last step (and the weights' average, ``optim.ema_momentum``, put in place by
    ``fit``), every BatchNorm's statistics re-estimated on ``optim.precise_bn_batches`` clean
    training batches (shuffled by the seed); returns how many were used (0: off, the statistics
    of the last training batches kept, as the report's PyTorch lineage keeps them).

    Why: the training batches are mixed and masked, and at momentum 0.9 BatchNorm's statistics
    are those of the last ~10 of them -- and of the last weights, where the averaged weights
    are kept.  The evaluation clips are clean.  The learning curve (``history.csv``) stays the
    trained weights' own, so the learning check reads training, not this step.
    """
    check_final_weights(cfg)
    o = cfg.optim
    if not o.precise_bn_batches:
        return 0
    return recalibrate_on_clean_clips(student, train, o.batch_size, cfg.seed, o.precise_bn_batches)


def start_from(student, path: str | Path) -> None:
    """Copy the weights of the model in ``path`` into ``student``, layer by layer (by name); a
    model of another architecture or width is refused, naming the file."""
    source = load_model_file(path, "the --init-from model")
    source = getattr(source, "student", source)
    try:
        copy_weights(source, student)
    except ValueError as e:
        raise ValueError(f"{path}: cannot start {student.name} from it ({e}); pass a student of "
                         f"the same width (--init-from)") from None  # fmt: skip


def train_student(
    cfg: SystemConfig,
    train: ClipSplit,
    val: ClipSplit | None,
    targets: SoftTargets | None,
    *,
    run_dir: str | Path,
    strategy: str = "default",
    verbose="auto",
    init_from: str | Path | None = None,
    teachers=None,
    teacher_weights=None,
    control=None,
):
    """Train SERFR-CNN-``cfg.student_width`` on cached clip features; return the student.

    Args:
        cfg: the system; reads ``student_width``, ``optim``, ``augment``, ``distill``, ``seed``.
        train, val: clip splits (``val`` may be None or empty: no validation).
        targets: the teachers' stored logits of the training clips (in ``train``'s order); the
            ensemble's distribution at ``cfg.distill.temperature`` is made from them here.  None,
            or ``cfg.distill.enabled`` false: CE only (the CE control).
        run_dir: backups, CSV/TensorBoard logs, ``best.keras`` and ``final.keras``.
        init_from: a ``.keras`` SERFR-CNN of the same architecture whose weights the student
            starts from (e.g. the fold-1 student for the ``--train-split all`` retrain).
        teachers: models (taking the student's input) run on each augmented batch, so the
            target is of the view the student sees, instead of ``targets`` (``distill.clip_targets``
            'live'; the ablation's live born-again), weighed by ``teacher_weights`` (None: 1/K).
        control: the CE control, run live for ``cfg.distill.control_share`` of the target, the
            rest the teachers' (stored or live).

    The validation split only drives learning curves and ``best.keras``; the returned model is
    the one after the last round, as the report trains a fixed schedule (picking a round on
    fold1_evaluate would tune on the test data) -- its weights' average and BatchNorm statistics
    from clean batches where ``optim.ema_momentum`` / ``precise_bn_batches`` ask for them
    (:func:`precise_batchnorm`), else the weights and statistics the last validation used, so
    the learning curve's last point is the returned model's score.
    Resumable: an interrupted call continues from its backup; a finished one (``final.keras``)
    is loaded, not retrained.
    """
    run_dir = Path(run_dir)
    final = run_dir / "final.keras"
    if final.is_file():
        return load_model_file(final)
    keras.utils.set_random_seed(cfg.seed)
    if teachers is not None and targets is not None:
        raise ValueError("train_student takes stored targets or live teachers, not both")
    if control is not None and not cfg.distill.control_share > 0.0:
        raise ValueError("train_student's control teaches distill.control_share of the target: "
                         "set it above 0, or pass no control")  # fmt: skip
    kd = cfg.distill.enabled and (targets is not None or teachers is not None)
    soft = (
        kd_soft_targets(targets, cfg.distill, train.labels) if targets is not None and kd else None
    )
    distiller = build_student_trainer(cfg, len(train), kd, strategy=strategy, teachers=teachers,
                                      teacher_weights=teacher_weights, control=control)  # fmt: skip
    if init_from is not None:
        start_from(distiller.student, init_from)
    fit_student(distiller, cfg, train, val, soft, run_dir=run_dir, verbose=verbose)
    save_model_file(distiller.student, final)
    length = student_length(cfg, len(train))
    write_json(run_dir / "done.json", {"rounds": length.rounds, "steps": length.steps, "kd": kd})
    return distiller.student
