"""Augmentation statistics: mixup keeps distributions, masks cover the right extent, stretch is sane."""

from __future__ import annotations

import numpy as np

from asc_keras._runtime import tf
from asc_keras.augment import freq_mask, mixup, sample_beta, time_mask, time_stretch


def test_beta_samples_match_distribution():
    tf.random.set_seed(0)
    lam = sample_beta(20000, 0.3).numpy()
    assert ((lam >= 0) & (lam <= 1)).all()
    assert abs(lam.mean() - 0.5) < 0.02
    assert abs(lam.var() - 0.25 / (2 * 0.3 + 1)) < 0.01  # Var Beta(a,a) = 1/(4(2a+1))


def test_mixup_mixes_features_and_all_targets_with_same_lambda():
    tf.random.set_seed(1)
    n = 64
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 28, 8, 1)).astype(np.float32)
    hard = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
    soft = rng.dirichlet(np.ones(10), n).astype(np.float32)
    xm, (hm, sm) = mixup(tf.constant(x), (tf.constant(hard), tf.constant(soft)), alpha=0.4)
    hm, sm, xm = hm.numpy(), sm.numpy(), xm.numpy()
    np.testing.assert_allclose(hm.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(sm.sum(1), 1.0, atol=1e-5)
    # Recover each example's lambda from the features (partner found by least squares) and check targets.
    for i in range(8):
        best = None
        for j in range(n):
            d = x[i] - x[j]
            lam = 1.0 if not d.any() else float(((xm[i] - x[j]) * d).sum() / (d * d).sum())
            err = np.abs(lam * x[i] + (1 - lam) * x[j] - xm[i]).max()
            if best is None or err < best[0]:
                best = (err, j, lam)
        err, j, lam = best
        assert err < 1e-4
        np.testing.assert_allclose(hm[i], lam * hard[i] + (1 - lam) * hard[j], atol=1e-4)
        np.testing.assert_allclose(sm[i], lam * soft[i] + (1 - lam) * soft[j], atol=1e-4)


def test_masks_cover_at_most_param_consecutive_bins_with_mean_fill():
    tf.random.set_seed(2)
    x = tf.random.normal((32, 28, 256, 1)) * 0.1 + 3.0
    fm = freq_mask(x, param=48).numpy()[..., 0]
    tm = time_mask(x, param=4).numpy()[..., 0]
    means = x.numpy()[..., 0].mean(axis=(1, 2))
    widths_f, widths_t = [], []
    for b in range(32):
        cols = np.where(np.isclose(fm[b], means[b], atol=1e-5).all(axis=0))[0]
        rows = np.where(np.isclose(tm[b], means[b], atol=1e-5).all(axis=1))[0]
        for idx, widths in ((cols, widths_f), (rows, widths_t)):
            assert len(idx) == 0 or (np.diff(idx) == 1).all()  # one contiguous band
            widths.append(len(idx))
        changed = ~np.isclose(fm[b], x.numpy()[b, ..., 0])
        assert changed.any(axis=0).sum() == len(cols)  # nothing outside the band changed
    assert max(widths_f) < 48 and max(widths_f) > 10 and max(widths_t) < 4 and max(widths_t) >= 1
    zero = freq_mask(x, param=48, fill="zero").numpy()
    assert (zero == 0).any()


def _bands(masked, x, axis):
    """Per example, (start, width) of the cells the mask changed along ``axis`` (1 time, 2 mels)."""
    changed = ~np.isclose(masked, x)
    hit = changed.any(axis=3 - axis)  # (B, size)
    out = []
    for row in hit:
        idx = np.where(row)[0]
        out.append((idx[0] if len(idx) else -1, len(idx)))
    return np.array(out)


def test_vectorised_masks_draw_the_same_bands_as_tensorflow_io():
    """The batched masks have tfio's distribution: width ~ U[0, param), start ~ U[0, size - width)."""
    tf.random.set_seed(3)
    x = tf.random.normal((1000, 28, 64, 1)) + 5.0
    xs = x.numpy()[..., 0]
    for op, axis, param in ((freq_mask, 2, 24), (time_mask, 1, 6)):
        ours = _bands(op(x, param=param).numpy()[..., 0], xs, axis)
        ref = _bands(op(x, param=param, impl="tfio").numpy()[..., 0], xs, axis)
        for bands in (ours, ref):
            assert bands[:, 1].max() == param - 1 and (bands[:, 1] == 0).any()
            size = xs.shape[axis]
            assert (bands[bands[:, 1] > 0].sum(axis=1) <= size).all()  # the band fits
        # Same mean width (param - 1) / 2 and mean start, within sampling error of 1000 draws.
        assert abs(ours[:, 1].mean() - (param - 1) / 2) < 0.1 * param
        assert abs(ours[:, 1].mean() - ref[:, 1].mean()) < 0.1 * param
        starts_ours, starts_ref = ours[ours[:, 1] > 0, 0], ref[ref[:, 1] > 0, 0]
        assert abs(starts_ours.mean() - starts_ref.mean()) < 0.05 * xs.shape[axis]


def test_spec_masks_draw_one_band_on_each_axis_in_one_pass():
    from asc_keras.augment import spec_masks

    tf.random.set_seed(4)
    x = tf.abs(tf.random.normal((400, 28, 64, 1))) + 1.0  # every cell >= 1: a masked one reads 0
    xs, out = (
        x.numpy()[..., 0],
        spec_masks(x, freq_param=24, time_param=6, fill="zero").numpy()[..., 0],
    )
    widths_f, widths_t = [], []
    for b in range(len(xs)):
        changed = out[b] == 0
        cols, rows = (
            changed.all(axis=0),
            changed.all(axis=1),
        )  # whole columns: mel band; whole rows: time band
        assert (changed == (cols[None, :] | rows[:, None])).all()  # nothing else changed
        for band, widths in ((cols, widths_f), (rows, widths_t)):
            idx = np.where(band)[0]
            assert len(idx) == 0 or (np.diff(idx) == 1).all()  # one contiguous band
            widths.append(len(idx))
        np.testing.assert_array_equal(out[b][~changed], xs[b][~changed])
    mean_filled = spec_masks(x[:4], freq_param=24, time_param=6).numpy()[..., 0]
    for b in range(4):  # the default fill: the example's mean level
        filled = ~np.isclose(mean_filled[b], xs[b], rtol=0, atol=1e-6)
        np.testing.assert_allclose(mean_filled[b][filled], xs[b].mean(), rtol=1e-5)
    assert max(widths_f) == 23 and max(widths_t) == 5 and min(widths_f) == min(widths_t) == 0


def test_time_stretch_rate_one_is_identity_and_rates_change_content():
    x = tf.random.normal((4, 28, 16, 1))
    np.testing.assert_allclose(time_stretch(x, 1.0, 1.0).numpy(), x.numpy(), atol=1e-6)
    ramp = tf.tile(tf.range(28, dtype=tf.float32)[None, :, None, None], [2, 1, 3, 1])
    fast = time_stretch(ramp, 1.1, 1.1).numpy()[0, :, 0, 0]
    slow = time_stretch(ramp, 0.9, 0.9).numpy()[0, :, 0, 0]
    c = 13.5
    assert (
        abs(fast[20] - min(27, (20 - c) * 1.1 + c)) < 1e-4
        and abs(slow[20] - ((20 - c) * 0.9 + c)) < 1e-4
    )
    assert fast.shape == (28,) and fast[0] == 0.0 and fast[-1] == 27.0  # edges repeat


def test_band_fill_leaves_no_artificial_event_in_a_masked_time_band():
    """The pipeline's fill: masked frames take each mel band's own mean over time, so a time mask
    adds no broadband burst (measured against every band's level); frequency bands take the
    example's mean."""
    from asc_keras.augment.masking import apply_bands, band_draws

    rng = np.random.default_rng(5)
    levels = rng.normal(size=(1, 1, 64, 1)) * 4  # very different band levels, as log-mels have
    x = tf.constant((levels + rng.normal(size=(8, 100, 64, 1)) * 0.1).astype(np.float32))
    start, width = band_draws(8, 100, 30, key=[1, 2])
    out = apply_bands(x, [(start, width, 1)], fill="band").numpy()
    band_mean = x.numpy().mean(axis=1, keepdims=True)
    for b in range(8):
        rows = slice(int(start[b]), int(start[b] + width[b]))
        np.testing.assert_allclose(
            out[b, rows], np.broadcast_to(band_mean[b], out[b, rows].shape), atol=1e-5
        )
    spike = np.abs(out - band_mean).max()
    assert spike < 0.6  # no masked frame stands out of its band (the noise alone reaches ~0.5)
    old = apply_bands(x, [(start, width, 1)], fill="mean").numpy()
    assert np.abs(old - band_mean).max() > 5  # a single fill level is a burst in most bands
    fs, fw = band_draws(8, 64, 20, key=[3, 4])
    both = apply_bands(x, [(fs, fw, 2), (start, width, 1)], fill="band").numpy()
    b = int(np.argmax(fw.numpy()))
    col = int(fs[b])
    rows_out = [t for t in range(100) if not start[b] <= t < start[b] + width[b]]
    assert np.allclose(
        both[b, rows_out, col], x.numpy()[b].mean()
    )  # the frequency band: the example mean


def test_freq_mixstyle_gives_each_band_the_mixed_statistics_and_keeps_its_deviations():
    """Per mel band, the restyled clip's mean and spread over frames are the lam-mix of its own and
    its partner's; its standardised deviations are its own; lam 1 leaves it as it was."""
    from asc_keras.augment.mixstyle import freq_mixstyle, mixstyle_draws

    rng = np.random.default_rng(3)
    x = (rng.normal(size=(6, 28, 16, 1)) * rng.uniform(0.5, 3, (6, 1, 16, 1))
         + rng.normal(0, 5, (6, 1, 16, 1))).astype(np.float32)  # fmt: skip
    lam = np.array([1.0, 0.0, 0.25, 0.5, 0.9, 1.0], np.float32)
    perm = np.array([1, 2, 0, 5, 3, 4], np.int32)
    y = freq_mixstyle(tf.constant(x), tf.constant(lam), tf.constant(perm)).numpy()
    mu, sd = x.mean(axis=1, keepdims=True), x.std(axis=1, keepdims=True)
    l4 = lam.reshape(-1, 1, 1, 1)
    np.testing.assert_allclose(
        y.mean(axis=1, keepdims=True), l4 * mu + (1 - l4) * mu[perm], atol=1e-4
    )
    np.testing.assert_allclose(
        y.std(axis=1, keepdims=True), l4 * sd + (1 - l4) * sd[perm], rtol=1e-4
    )
    z = lambda t: (t - t.mean(axis=1, keepdims=True)) / t.std(axis=1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(z(y), z(x), atol=1e-3)
    np.testing.assert_allclose(y[[0, 5]], x[[0, 5]], atol=1e-5)
    # The draws: lam exactly 1 off the share p, a Beta draw on it; the partners a permutation.
    lam, perm = mixstyle_draws(4000, 0.3, 0.4, key=[7, 8])
    lam, perm = lam.numpy(), perm.numpy()
    assert sorted(perm) == list(range(4000))
    assert abs(np.mean(lam < 1.0) - 0.4) < 0.03
    assert abs(lam[lam < 1.0].mean() - 0.5) < 0.03
