"""A distillation loss on *probability* outputs, usable from Keras 3 and tf_keras alike.

tfmot fine-tuning runs on tf_keras twins, where the Keras 3 Distiller cannot be
used.  Since softmax(log p / T) = softmax(z / T) for p = softmax(z), the tempered
student distribution is recoverable from its probabilities, so the same loss is
a plain function of (y_true, y_pred) with y_true = [hard | soft_T] concatenated.
"""
from __future__ import annotations

from asc_keras._runtime import tf

_EPS = 1e-7


def kd_loss_on_probs(alpha: float, temperature: float, n_classes: int = 10):
    """Return loss(y_true, y_pred): alpha*CE(hard, p) + (1-alpha)*T^2*KL(soft_T || softmax(log p / T)).

    y_true: (B, 2*n_classes) = [one-hot (or mixed) hard labels | teacher distribution at T];
    y_pred: (B, n_classes) student probabilities.
    """

    def loss(y_true, y_pred):
        hard, soft = y_true[:, :n_classes], y_true[:, n_classes:]
        logp = tf.math.log(tf.clip_by_value(y_pred, _EPS, 1.0))
        ce = -tf.reduce_sum(hard * logp, axis=-1)
        log_q = tf.nn.log_softmax(logp / temperature, axis=-1)
        soft_c = tf.clip_by_value(soft, _EPS, 1.0)
        kl = tf.reduce_sum(soft_c * (tf.math.log(soft_c) - log_q), axis=-1)
        return alpha * ce + (1.0 - alpha) * temperature ** 2 * kl

    loss.__name__ = "kd_loss"
    return loss
