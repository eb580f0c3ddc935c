"""Frequency-wise MixStyle: swap part of a clip's recording channel with another clip's.

Not in the report.  A device colours a recording with its frequency response, which on log-mels
is a level per mel band that does not change over time; the per-band mean and spread over the
frames of a clip carry it (with the scene's own long-term spectrum).  Freq-MixStyle (Kim et al.
2022, "Domain generalization with relaxed instance frequency-wise normalization"; CP-JKU's
DCASE 2023 Task 1 system) normalises each band of a clip by its own statistics and gives it a
mix of its own and a partner clip's:

    mu_i, sigma_i = mean, std over frames of x_i, per band      (B, 1, mels, 1)
    x~_i = (x_i - mu_i) / sigma_i * sigma_mix + mu_mix,
    mu_mix = lam mu_i + (1 - lam) mu_j,  sigma_mix likewise,  lam ~ Beta(alpha, alpha)

on a random share ``p`` of the clips (the rest unchanged).  The label stays: what moves is the
channel, so a student learns scenes under responses it never heard -- the TAU evaluation's
unseen devices.  Where teachers run live on the augmented batch, they label the restyled clip.
"""

from __future__ import annotations

from asc_keras._runtime import tf
from asc_keras.augment.keys import split
from asc_keras.augment.mixup import sample_beta

EPS = 1e-6  # variance floor: a silent band keeps its (zero) deviations


def mixstyle_draws(n, alpha: float, p: float, key=None):
    """(lam (n,), partner (n,) int32) for :func:`freq_mixstyle`; lam is 1 (clip unchanged) for
    the clips not drawn (probability 1 - p)."""
    k_on, k_lam, k_perm = tf.unstack(split(key, 3))
    on = tf.random.stateless_uniform([n], k_on) < p
    lam = tf.where(on, sample_beta(n, alpha, k_lam), 1.0)
    return lam, tf.argsort(tf.random.stateless_uniform([n], k_perm))


def freq_mixstyle(x, lam, perm):
    """x (B, frames, mels, C) -> restyled x, same shape: per band, the clip's deviations from its
    own mean over frames, rescaled to a lam-mix of its own and ``x[perm]``'s statistics."""
    mu = tf.reduce_mean(x, axis=[1, 3], keepdims=True)  # (B, 1, mels, 1)
    sigma = tf.sqrt(tf.reduce_mean(tf.square(x - mu), axis=[1, 3], keepdims=True) + EPS)
    lam = tf.reshape(tf.cast(lam, x.dtype), [-1, 1, 1, 1])
    mu_mix = lam * mu + (1 - lam) * tf.gather(mu, perm)
    sigma_mix = lam * sigma + (1 - lam) * tf.gather(sigma, perm)
    scale = sigma_mix / sigma  # per clip and band: one multiply-add per value below
    return x * scale + (mu_mix - mu * scale)
