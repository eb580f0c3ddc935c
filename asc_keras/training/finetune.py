"""Fine-tuning a trained model on your own recordings and classes (``asc-keras finetune``).

Not in the report: the usual transfer-learning recipe, as the teachers' own phases run it
(:mod:`asc_keras.training.teachers`).  First the head alone learns on the frozen body (its
BatchNorm statistics kept: a frozen Keras BatchNorm runs in inference mode), so a new, random
head does not wreck the body with large early gradients; then the whole model, at a lower rate.
Each phase is resumable in its own folder; a finished phase is loaded, not trained again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from asc_keras._runtime import keras
from asc_keras.config import AugmentConfig
from asc_keras.data.splits import ClipSplit
from asc_keras.models.classes import save_model_file
from asc_keras.models.serfr_cnn import SerfrCnn, build_serfr_cnn
from asc_keras.training.bn import recalibrate_on_clean_clips
from asc_keras.training.loop import fit_resumable
from asc_keras.training.pipeline import make_dataset

HEAD = ("logits", "probabilities")


@dataclass(frozen=True)
class FinetuneConfig:
    """``asc-keras finetune`` settings (``--set finetune.<name>=...``).

    Attributes:
        frozen_epochs: epochs of the head alone, the body frozen.
        epochs: epochs of the whole model after that (``--epochs``).
        frozen_lr, lr: Adam's constant learning rate in each phase.
        batch_size: windows per batch.
        val_fraction: share of each class's files held out for validation (by file).
        seed: the split's and the training's seed.
        augment: train with the report's augmentations (mixup, masks, time stretching).
    """

    frozen_epochs: int = 10
    epochs: int = 20
    frozen_lr: float = 3e-3
    lr: float = 1e-3
    batch_size: int = 32
    val_fraction: float = 0.2
    seed: int = 0
    augment: bool = False


def with_classes(model, classes: tuple[str, ...], old: tuple[str, ...]):
    """``model`` for ``classes``: the same model when they are its own (``old``, same order),
    else its body with a new, randomly initialised head of ``len(classes)`` outputs.  A SERFR-CNN
    stays one (rebuilt with ``n_classes``), so compression can make its tf_keras twin."""
    if tuple(classes) == tuple(old):
        new = model
    elif isinstance(model, SerfrCnn):
        new = build_serfr_cnn(**{**model.build_args(), "n_classes": len(classes)})
        for layer in new.layers:
            if layer.weights and layer.name not in HEAD:
                layer.set_weights(model.get_layer(layer.name).get_weights())
    else:  # a teacher: a new Dense head on the old head's input
        z = model.get_layer("logits").input
        logits = keras.layers.Dense(len(classes), name="logits")(z)
        probs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
        new = keras.Model(model.inputs, probs, name=model.name)
    new.class_names = tuple(classes)
    return new


def _phase(model, cfg: FinetuneConfig, train: ClipSplit, val: ClipSplit, *, head_only: bool,
           run_dir: Path, verbose) -> None:  # fmt: skip
    """One phase: compile with its rate and trainable layers, then a resumable fit."""
    weights = run_dir.with_suffix(".weights.h5")
    for layer in model.layers:
        layer.trainable = not head_only or layer.name in HEAD
    epochs = cfg.frozen_epochs if head_only else cfg.epochs
    if weights.is_file():  # finished before: loaded, not trained again
        model.load_weights(weights)
        return
    if epochs <= 0:
        return
    keras.utils.set_random_seed(cfg.seed)
    n = int(model.output_shape[-1])
    train_ds = make_dataset(train.features, train.rows, train.labels, batch_size=cfg.batch_size,
                            shuffle=True, seed=cfg.seed, n_classes=n,
                            augment=AugmentConfig() if cfg.augment else None)  # fmt: skip
    val_ds = make_dataset(
        val.features, val.rows, val.labels, batch_size=cfg.batch_size, n_classes=n
    )
    model.compile(keras.optimizers.Adam(cfg.frozen_lr if head_only else cfg.lr),
                  "categorical_crossentropy", metrics=["accuracy"])  # fmt: skip
    fit_resumable(model, train_ds, val_ds, epochs=epochs, run_dir=run_dir, verbose=verbose,
                  tensorboard=False)  # fmt: skip
    model.save_weights(weights)


def finetune_model(model, cfg: FinetuneConfig, train: ClipSplit, val: ClipSplit, *,
                   run_dir: str | Path, verbose="auto"):  # fmt: skip
    """Train ``model`` (from :func:`with_classes`) in the two phases; ``run_dir/final.keras`` is
    the result (a finished run is loaded from it)."""
    run_dir = Path(run_dir)
    final = run_dir / "final.keras"
    if final.is_file():
        from asc_keras.models.common import load_model_file

        done = load_model_file(final)
        done.class_names = model.class_names
        return done
    run_dir.mkdir(parents=True, exist_ok=True)
    _phase(model, cfg, train, val, head_only=True, run_dir=run_dir / "head", verbose=verbose)
    _phase(model, cfg, train, val, head_only=False, run_dir=run_dir / "whole", verbose=verbose)
    for layer in model.layers:
        layer.trainable = True
    # A short fine-tuning moves the weights faster than BatchNorm's moving statistics follow
    # (measured: training windows 100 %, validation 30 % before, from an untrained source), so
    # they are re-estimated with the final weights on clean training batches, as after pruning.
    recalibrate_on_clean_clips(model, train, cfg.batch_size, cfg.seed + 1, 50,
                               n_classes=int(model.output_shape[-1]))  # fmt: skip
    save_model_file(model, final)
    return model
