"""The distillation maths, in one place, in TensorFlow ops.

Keras 3 runs on its TensorFlow backend here and tensorflow-model-optimization on tf_keras, so
TF ops serve the Keras 3 :class:`~asc_keras.distill.Distiller`, the tf_keras pruning/QAT loss
(:func:`kd_loss_on_probs`) and the stored soft targets (:mod:`asc_keras.distill.targets`).

Soft target of an ensemble of K teachers with logits z_k, at temperature T:

    mode 'probabilities':  p_T = sum_k w_k * softmax(z_k / T)      (each teacher tempered, then averaged)
    mode 'logits':         p_T = softmax((sum_k w_k * z_k) / T)    (logits averaged, then tempered)

with weights w_k >= 0 summing to 1: 1/K each (the report's plain ensemble), or fitted on
recordings the teachers did not train on (:func:`asc_keras.distill.targets.fit_ensemble_weights`).

Student loss with logits z, hard (one-hot or mixed) labels y and soft targets p_T:

    loss = alpha * CE(y, softmax(z)) + (1 - alpha) * T^2 * KL(p_T || softmax(z / T))

T^2 because the gradients of the soft term scale as 1/T^2 (Hinton et al., 2015); the factor
keeps the balance of the two terms independent of T.
"""

from __future__ import annotations

from asc_keras._runtime import tf
from asc_keras.config import ENSEMBLE_MODES, KD_PARTS

_EPS = 1e-7  # KL's clip of the soft targets, as keras.losses.KLDivergence


def ensemble_soft_targets(
    logits, temperature: float = 1.0, mode: str = "probabilities", weights=None
):
    """(N, K, C) per-teacher logits -> (N, C) ensemble distribution at ``temperature`` (module doc).

    ``weights``: (K,) teacher weights summing to 1; None: 1/K each.
    """
    if mode not in ENSEMBLE_MODES:
        raise ValueError(f"unknown ensemble mode {mode!r}; use one of {ENSEMBLE_MODES}")
    z = tf.convert_to_tensor(logits)
    if weights is None:  # the plain average
        if mode == "logits":
            return tf.nn.softmax(tf.reduce_mean(z, axis=1) / temperature, axis=-1)
        return tf.reduce_mean(tf.nn.softmax(z / temperature, axis=-1), axis=1)
    w = tf.cast(tf.convert_to_tensor(weights), z.dtype)[None, :, None]
    if mode == "logits":
        return tf.nn.softmax(tf.reduce_sum(w * z, axis=1) / temperature, axis=-1)
    return tf.reduce_sum(w * tf.nn.softmax(z / temperature, axis=-1), axis=1)


def mixed_targets(stored, live, share: float, hard=None):
    """The KD target from two (N, C) distributions of the same clips at T: the teachers' ``stored``
    one and the CE control's ``live`` one, ``share`` of it the control's (``distill.control_share``).

    Fixed share (``hard`` None): ``(1 - s) * stored + s * live``.

    By confidence (``hard``: (N, C) one-hot or mixed labels; ``distill.control_share_by``): each
    example's share is the prior ``s`` scaled by how much each source puts on the label,

        g = s * b / ((1 - s) * a + s * b),   a = <stored, hard>,  b = <live, hard>,

    and the target ``(1 - g) * stored + g * live``.  Why: a source that gives the label little on
    an example (the teachers on a view they never saw, the control where it cannot hear an event)
    should teach little there.  At s = 1/2 these are the sample-wise teacher weights of CA-MKD
    (Zhang, Chen & Wang, 2022: w_k = (1 - softmax_k(CE_k)) / (K - 1) over the teachers' label
    cross-entropies CE_k = -log p_k[y]) for two teachers, p_k[y] / (p_1[y] + p_2[y]); here read at
    the targets' own T.  Where neither source gives the label anything, g = s.  A mixture of
    distributions is one, so the result is a KD target as it is.  NumPy arrays or tensors; the
    Distiller's live half and ``kd_soft_targets``' stored stand-in for pruning and QAT.
    """
    if hard is None:
        return (1.0 - share) * stored + share * live
    live = tf.convert_to_tensor(live)
    stored, hard = tf.cast(stored, live.dtype), tf.cast(hard, live.dtype)
    a = (1.0 - share) * tf.reduce_sum(stored * hard, axis=-1, keepdims=True)
    b = share * tf.reduce_sum(live * hard, axis=-1, keepdims=True)
    g = (b + share * _EPS) / (a + b + _EPS)  # -> s where a = b = 0
    return (1.0 - g) * stored + g * live


def distillation_terms(hard, soft, logits, temperature: float, part: str = "whole"):
    """Per-example (CE(hard, softmax(z)), T^2 * KL(soft || softmax(z / T))); KD is 0 without ``soft``.

    Args:
        hard: (B, C) one-hot or mixed labels.
        soft: (B, C) teacher distribution at ``temperature``, or None.
        logits: (B, C) student logits z.
        part: 'whole' -- the KL over all classes (Hinton); 'non_target' -- the KL over the classes
            the label gives nothing (hard == 0), both distributions renormalised over them:
            decoupled KD's NCKD (Zhao et al., 2022), which leaves the label's own class to CE.
    """
    if part not in KD_PARTS:
        raise ValueError(f"unknown KD part {part!r}; use one of {KD_PARTS}")
    logits = tf.cast(logits, tf.float32)  # float16 logits of a mixed-precision student
    hard = tf.cast(hard, logits.dtype)
    ce = tf.nn.softmax_cross_entropy_with_logits(hard, logits, axis=-1)
    if soft is None:
        return ce, tf.zeros_like(ce)
    p = tf.cast(soft, logits.dtype)
    z = logits / temperature
    if part == "non_target":
        # Renormalise both over the label's zero classes: p_i / sum_j p_j and the softmax of the
        # student's logits over those classes alone (the others pushed to -1e9, out of the sum).
        keep = tf.cast(hard <= 0.0, logits.dtype)
        p = p * keep / tf.maximum(tf.reduce_sum(p * keep, axis=-1, keepdims=True), _EPS)
        z = z - 1e9 * (1.0 - keep)
    p = tf.clip_by_value(p, _EPS, 1.0)
    terms = p * (tf.math.log(p) - tf.nn.log_softmax(z, axis=-1))
    if part == "non_target":
        terms = terms * keep  # the label's classes: no term (their clipped p would add EPS * 1e9)
    return ce, temperature**2 * tf.reduce_sum(terms, axis=-1)


def distillation_loss(hard, soft, logits, alpha: float, temperature: float, part: str = "whole"):
    """Per-example alpha * CE + (1 - alpha) * T^2 * KL (module doc); plain CE without ``soft``."""
    ce, kd = distillation_terms(hard, soft, logits, temperature, part)
    return ce if soft is None else alpha * ce + (1.0 - alpha) * kd


def kd_loss_on_probs(alpha: float, temperature: float, n_classes: int, part: str = "whole"):
    """The distillation loss as a Keras loss on *probability* outputs (for tf_keras twins).

    Returns loss(y_true, y_pred) with y_true = [hard | soft_T] concatenated, (B, 2 * n_classes),
    and y_pred the student's probabilities (B, n_classes).  Since softmax(log p / T) =
    softmax(z / T) for p = softmax(z), log p stands in for the logits z exactly (up to the clip).
    """

    def kd_loss(y_true, y_pred):
        hard, soft = y_true[:, :n_classes], y_true[:, n_classes:]
        logits = tf.math.log(tf.clip_by_value(y_pred, _EPS, 1.0))
        return distillation_loss(hard, soft, logits, alpha, temperature, part)

    return kd_loss
