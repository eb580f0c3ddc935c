"""Pruning and quantisation-aware training with tensorflow-model-optimization (tf_keras twins).

Flow (``prune_and_quantize``): Keras 3 student -> tf_keras twin (same builder, weights
copied) -> ``prune_low_magnitude`` with polynomial decay to the target sparsity while
fine-tuning on the distillation targets -> ``strip_pruning`` -> annotate every layer for
8-bit QAT, the SE block's ``Multiply`` with :class:`MultiplyQuantizeConfig` (tfmot's
default registry refuses it) -> ``quantize_apply`` with the pruning-preserving scheme when
pruned -> activation ranges measured on the float model (:mod:`asc_keras.compress.ranges`) ->
QAT fine-tuning at a low learning rate -> BatchNorm statistics and activation ranges measured
again on the final weights.  The result converts to full-int8 TFLite with
:func:`asc_keras.compress.tflite.convert_int8`.
"""

from __future__ import annotations

import numpy as np

from asc_keras._runtime import import_tf_keras, import_tfmot, tf
from asc_keras.compress.ranges import calibrate_activation_ranges
from asc_keras.compress.twin import keras_float_twin, tf_keras_twin
from asc_keras.config import N_CLASSES, CompressConfig, SystemConfig
from asc_keras.data.splits import ClipSplit
from asc_keras.distill.losses import kd_loss_on_probs
from asc_keras.distill.targets import SoftTargets, kd_soft_targets
from asc_keras.training.bn import recalibrate_batchnorm
from asc_keras.training.length import TrainingLength, training_length

_tfmot = import_tfmot()
_Q = _tfmot.quantization.keras


class MultiplyQuantizeConfig(_Q.QuantizeConfig):
    """8-bit QAT config for element-wise ``Multiply`` (the SE block's channel rescale).

    No weights; the output is fake-quantised with an asymmetric per-tensor moving-average
    quantiser, as tfmot's default config does for ``Add``, so the converter gets the
    range it needs to emit an int8 MUL.
    """

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [
            _Q.quantizers.MovingAverageQuantizer(
                num_bits=8, per_axis=False, symmetric=False, narrow_range=False
            )
        ]

    def get_config(self):
        return {}


# Layers tfmot's default 8-bit registry refuses, with the config we give them instead.
SPECIAL_CONFIGS = {"Multiply": MultiplyQuantizeConfig}


def annotate_for_qat(model):
    """Annotate every layer of a tf_keras model for QAT; refused layers get an explicit config."""
    tfk = import_tf_keras()

    def annotate(layer):
        if isinstance(layer, tfk.layers.InputLayer):
            return layer
        cfg = SPECIAL_CONFIGS.get(layer.__class__.__name__)
        return _Q.quantize_annotate_layer(layer, quantize_config=cfg() if cfg else None)

    annotated = tfk.models.clone_model(model, clone_function=annotate)
    return annotated


def apply_qat(model, pruned: bool):
    """``quantize_apply`` on the annotated model; pruning-preserving (PQAT) when ``pruned``."""
    annotated = annotate_for_qat(model)
    scheme = (
        _tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
        if pruned
        else _Q.default_8bit.Default8BitQuantizeScheme()
    )
    with _Q.quantize_scope({cls.__name__: cls for cls in SPECIAL_CONFIGS.values()}):
        return _Q.quantize_apply(annotated, scheme)


def sparsity(model, min_size: int = 256) -> float:
    """Fraction of zero weights over conv/dense kernels with at least ``min_size`` entries."""
    zeros = total = 0
    for w in model.weights:
        # "<layer>/kernel:0" (tf_keras) or "kernel" (Keras 3); not QAT's "kernel_min"/"kernel_max"
        # quantiser ranges, which a per-channel layer of 256+ channels would otherwise add.
        name = (w.name if hasattr(w, "name") else w.path).split("/")[-1].split(":")[0]
        if name in ("kernel", "depthwise_kernel") and int(np.prod(w.shape)) >= min_size:
            v = w.numpy()
            zeros += int((v == 0).sum())
            total += v.size
    return zeros / max(1, total)


def _tf_dataset(train: ClipSplit, soft, batch_size: int, seed: int, repeat: bool = False,
                n_classes: int = N_CLASSES):  # fmt: skip
    """Shuffled (x, [hard | soft]) batches for tf_keras, gathered from the cache like the main pipeline."""
    from asc_keras.training.pipeline import make_dataset

    ds = make_dataset(train.features, train.rows, train.labels, soft, batch_size=batch_size,
                      shuffle=True, seed=seed, repeat=repeat, n_classes=n_classes)  # fmt: skip
    if soft is None:
        return ds.map(lambda x, y: (x, tf.concat([y, y], axis=-1)))
    return ds.map(lambda x, y: (x, tf.concat([y[0], y[1]], axis=-1)))


def calibration_batches(train: ClipSplit, batch_size: int, batches: int, seed: int,
                        n_classes: int = N_CLASSES):  # fmt: skip
    """``batches`` shuffled clean batches of training inputs (no labels), the same at every pass
    (held in memory: 50 batches of 128 1 s log-mels, the paper profile's, are 180 MB)."""
    ds = _tf_dataset(train, None, batch_size, seed, n_classes=n_classes).take(batches)
    x = [np.asarray(b[0]) for b in ds]
    shape = (0, *train.features.shape[1:], 1)
    return tf.data.Dataset.from_tensor_slices(
        np.concatenate(x) if x else np.zeros(shape, "f4")
    ).batch(batch_size)


def _fit_length(c: CompressConfig, phase: str, examples: int) -> TrainingLength:
    """A fine-tuning phase's length: ``<phase>_steps`` updates when set, else ``<phase>_epochs``."""
    epochs, steps = getattr(c, f"{phase}_epochs"), getattr(c, f"{phase}_steps")
    return training_length(examples, c.batch_size, epochs, steps, rounds=1)


def _fit(model, data, length: TrainingLength, verbose, callbacks=()):
    ds = data(length.stream)
    # tf_keras, like Keras 3 (asc_keras.training.loop.build_training_state), would create the
    # optimiser's slots and the compiled loss and metric variables inside the first traced step
    # and so trace it twice; built here from one zero example, the step is traced once.
    y_spec = ds.element_spec[1]
    y_true = tf.zeros((1, *y_spec.shape[1:]), y_spec.dtype)
    y_pred = tf.zeros((1, *model.output_shape[1:]), model.output.dtype)
    model.optimizer.build(model.trainable_variables)
    model.compiled_loss.build(y_pred)
    model.compiled_metrics.build(y_pred, y_true)
    model.fit(ds, epochs=length.rounds, verbose=verbose, callbacks=list(callbacks),
              steps_per_epoch=length.steps_per_round if length.stream else None)  # fmt: skip


def prune_and_quantize(
    student,
    cfg: SystemConfig,
    train: ClipSplit,
    targets: SoftTargets | None = None,
    *,
    control: SoftTargets | None = None,
    verbose: int | str = "auto",
    log=print,
):
    """Prune (optional) and QAT-fine-tune a trained Keras 3 student; return the tf_keras QAT model.

    Args:
        student: trained Keras 3 SERFR-CNN.
        cfg: the system; reads ``compress`` (sparsity, lengths, learning rates, batch size,
            BatchNorm re-estimation batches), ``distill`` (alpha, T) and ``seed``.
        train: the training clips.
        targets: the teachers' stored logits of the training clips, made into the ensemble's
            distribution as the student's training makes them (None: CE only).
        control: the CE control's logits on the same clips, for ``distill.control_share``.
    Returns:
        (model, info): the tf_keras model ready for int8 conversion (QAT-wrapped when
        ``cfg.compress.qat``) and a dict with the measured sparsity.
    """
    c, seed = cfg.compress, cfg.seed
    tf.random.set_seed(seed)
    soft = None if targets is None else kd_soft_targets(targets, cfg.distill, train.labels, control)
    # An early-stopped KD student (distill.kd_stop < 1) ended on the labels: its fine-tuning does too.
    alpha = cfg.distill.alpha if soft is not None and cfg.distill.kd_stop >= 1.0 else 1.0
    n_classes = int(student.output_shape[-1])  # 10 scenes, or a fine-tuned model's own classes
    loss = kd_loss_on_probs(alpha, cfg.distill.temperature, n_classes, cfg.distill.kd_part)

    def data(repeat: bool):
        return _tf_dataset(train, soft, c.batch_size, seed, repeat, n_classes)

    # BatchNorm re-estimation after the short fine-tunings (asc_keras.training.bn) and the
    # activation ranges (asc_keras.compress.ranges) all use these clean batches, drawn once.
    clean = calibration_batches(
        train, c.batch_size, c.bn_recalibration_batches, seed + 1, n_classes
    )
    info = {"target_sparsity": c.target_sparsity if c.prune else 0.0}
    model = tf_keras_twin(student)
    pruned = c.prune and c.target_sparsity > 0 and (c.prune_epochs > 0 or bool(c.prune_steps))
    if pruned:
        model = _prune(model, c, loss, data, _fit_length(c, "prune", len(train)), verbose, log)
        recalibrate_batchnorm(model, clean, c.bn_recalibration_batches)
        info["sparsity_after_pruning"] = sparsity(model)
    if c.qat:
        qat = apply_qat(model, pruned=pruned)
        # tfmot starts every activation range at +-6 and moves it slowly (asc_keras.compress.ranges):
        # QAT trains under the ranges the float model's activations have.  (Measured on a fresh
        # twin: the stripped model's layers also sit in the graphs pruning and QAT cloned.)
        start = keras_float_twin(model, student, keras_module=import_tf_keras())
        calibrate_activation_ranges(qat, start, clean, c.bn_recalibration_batches)
        length = _fit_length(c, "qat", len(train))
        if length.steps and (c.qat_epochs > 0 or c.qat_steps):
            qat.compile(import_tf_keras().optimizers.Adam(c.qat_lr), loss, metrics=["accuracy"])
            log(f"quantisation-aware training: {length.steps} steps")
            _fit(qat, data, length, verbose)
        recalibrate_batchnorm(qat, clean, c.bn_recalibration_batches)
        # ... and converts with the ranges of its final float weights and BatchNorm statistics.
        final = keras_float_twin(qat, student, keras_module=import_tf_keras())
        calibrate_activation_ranges(qat, final, clean, c.bn_recalibration_batches)
        model = qat
    info["sparsity"] = sparsity(model)
    return model, info


def _prune(twin, c: CompressConfig, loss, data, length: TrainingLength, verbose, log):
    """Polynomial-decay pruning to ``c.target_sparsity`` while fine-tuning; the stripped model."""
    # Reach the target after prune_end_fraction of the steps, then fine-tune at it.
    end = max(1, int(length.steps * c.prune_end_fraction))
    sched = _tfmot.sparsity.keras.PolynomialDecay(
        0.0, c.target_sparsity, begin_step=0, end_step=end, frequency=max(1, end // c.prune_updates)
    )
    pruned = _tfmot.sparsity.keras.prune_low_magnitude(twin, pruning_schedule=sched)
    pruned.compile(import_tf_keras().optimizers.Adam(c.prune_lr), loss, metrics=["accuracy"])
    log(f"pruning to {c.target_sparsity:.0%} sparsity over {length.steps} steps")
    _fit(pruned, data, length, verbose, [_tfmot.sparsity.keras.UpdatePruningStep()])
    return _tfmot.sparsity.keras.strip_pruning(pruned)
