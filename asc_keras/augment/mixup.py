"""Mixup (Zhang et al.; report eqs. 4-5)."""

from __future__ import annotations

from asc_keras._runtime import tf
from asc_keras.augment.keys import split


def sample_beta(n, alpha: float, key=None):
    """n draws of lambda ~ Beta(alpha, alpha), via two Gamma(alpha, 1) draws:
    g1 / (g1 + g2) with g1, g2 ~ Gamma(alpha, 1) is Beta(alpha, alpha)."""
    k1, k2 = tf.unstack(split(key, 2))
    g1 = tf.random.stateless_gamma([n], k1, alpha)
    g2 = tf.random.stateless_gamma([n], k2, alpha)
    return g1 / (g1 + g2 + 1e-12)


def mixup_draws(n, alpha: float, key=None):
    """(lam (n,), partner (n,) int32): one Beta(alpha, alpha) weight and one partner per example,
    the partners a random permutation of the batch (argsort of uniform draws)."""
    k_lam, k_perm = tf.unstack(split(key, 2))
    perm = tf.argsort(tf.random.stateless_uniform([n], k_perm))  # int32
    return sample_beta(n, alpha, k_lam), perm


def mix(t, lam, perm):
    """lam * t_i + (1 - lam) * t_perm(i), written t_perm + lam (t - t_perm): one pass fewer."""
    t = tf.convert_to_tensor(t)
    lam = tf.reshape(tf.cast(lam, t.dtype), [-1] + [1] * (len(t.shape) - 1))
    partner = tf.gather(t, perm)
    return partner + lam * (t - partner)


def mixup(x, targets, alpha: float = 0.3, key=None):
    """Mix each example with a random partner of the same batch.

    x~ = lam * x_i + (1 - lam) * x_j  (eq. 4);  y~ = lam * y_i + (1 - lam) * y_j for *every*
    target in ``targets`` (hard one-hot labels and teacher soft targets alike) with the same
    lam and partner (eq. 5).  lam ~ Beta(alpha, alpha), one per example.

    Args:
        x: (B, ...) features.
        targets: a tensor (B, C) or a tuple of them.
        key: stateless random key (2,) (:mod:`asc_keras.augment.keys`); None draws one.
    Returns:
        (x~, targets~) with the structure of the inputs.
    """
    lam, perm = mixup_draws(tf.shape(x)[0], alpha, key)
    if isinstance(targets, (tuple, list)):
        return mix(x, lam, perm), tuple(mix(t, lam, perm) for t in targets)
    return mix(x, lam, perm), mix(targets, lam, perm)
