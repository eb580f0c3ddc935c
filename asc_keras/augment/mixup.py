"""Mixup (Zhang et al.; report eqs. 4-5)."""

from __future__ import annotations

from asc_keras._runtime import tf


def sample_beta(n, alpha: float, seed=None):
    """n draws of lambda ~ Beta(alpha, alpha), via two Gamma(alpha, 1) draws."""
    g1 = tf.random.gamma([n], alpha, seed=seed)
    g2 = tf.random.gamma([n], alpha, seed=None if seed is None else seed + 1)
    return g1 / (g1 + g2 + 1e-12)


def mixup(x, targets, alpha: float = 0.3, seed=None):
    """Mix each example with a random partner of the same batch.

    x~ = lam * x_i + (1 - lam) * x_j  (eq. 4);  y~ = lam * y_i + (1 - lam) * y_j for *every*
    target in ``targets`` (hard one-hot labels and teacher soft targets alike) with the same
    lam and partner (eq. 5).  lam ~ Beta(alpha, alpha), one per example.

    Args:
        x: (B, ...) features.
        targets: a tensor (B, C) or a tuple of them.
    Returns:
        (x~, targets~) with the structure of the inputs.
    """
    n = tf.shape(x)[0]
    lam = sample_beta(n, alpha, seed)
    perm = tf.random.shuffle(tf.range(n), seed=seed)

    def mix(t):
        t = tf.convert_to_tensor(t)
        l = tf.reshape(lam, [-1] + [1] * (len(t.shape) - 1))
        partner = tf.gather(t, perm)
        return partner + l * (t - partner)  # = l t + (1 - l) t_perm, one pass fewer

    mixed = tuple(mix(t) for t in targets) if isinstance(targets, (tuple, list)) else mix(targets)
    return mix(x), mixed
