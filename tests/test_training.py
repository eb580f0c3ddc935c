"""Schedule, optimiser, Distiller maths, KD benefit, pipeline, kill-and-resume, mirrored strategy."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from asc_keras._runtime import keras, tf
from asc_keras.config import AugmentConfig, OptimConfig
from asc_keras.distill import Distiller, SoftTargets, ensemble_distribution, teacher_logits, temper
from asc_keras.training import AdamL2, ReportSchedule, make_dataset, make_optimizer


def test_report_schedule_shape():
    s = ReportSchedule(800, peak=1e-3, final=1e-5, warmup_fraction=300 / 800)
    vals = np.array([float(s(i)) for i in range(0, 801, 50)])
    assert abs(float(s(300)) - 1e-3) < 1e-9 and abs(float(s(800)) - 1e-5) < 1e-9
    assert float(s(0)) == pytest.approx(1e-3 * np.exp(-5), rel=1e-5)
    assert (np.diff(vals[:7]) > 0).all() and (np.diff(vals[6:]) < 0).all()
    assert float(s(550)) == pytest.approx((1e-3 + 1e-5) / 2, rel=1e-5)  # linear fall
    s2 = ReportSchedule(80)  # scales with run length
    assert float(s2(30)) == pytest.approx(1e-3, rel=1e-6) and s2.value(55) == pytest.approx(float(s2(55)), rel=1e-5)
    assert ReportSchedule.from_config(s.get_config()).get_config() == s.get_config()


def test_adam_l2_equals_adam_on_l2_gradient():
    w0 = np.array([1.0, -2.0, 0.5], np.float32)
    g = np.array([0.1, 0.2, -0.3], np.float32)
    a, b = tf.Variable(w0), tf.Variable(w0)
    opt_a, opt_b = AdamL2(l2=0.1, learning_rate=0.01), keras.optimizers.Adam(learning_rate=0.01)
    for _ in range(3):
        opt_a.apply_gradients([(tf.constant(g), a)])
        opt_b.apply_gradients([(tf.constant(g) + 0.1 * b, b)])
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)
    assert isinstance(make_optimizer(OptimConfig(weight_decay_mode="decoupled"), 10, 5), keras.optimizers.AdamW)


def _mlp_student(n_in=20, n_classes=10, hidden=32, seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((n_in,))
    x = keras.layers.Dense(hidden, activation="relu")(inp)
    z = keras.layers.Dense(n_classes, name="logits")(x)
    return keras.Model(inp, keras.layers.Activation("softmax", name="probabilities")(z))


def test_distiller_loss_equals_hand_computation():
    m = _mlp_student()
    d = Distiller(m, alpha=0.3, temperature=2.5)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 20)).astype(np.float32)
    hard = np.eye(10, dtype=np.float32)[[0, 3, 3, 9, 1, 2]]
    soft = temper(rng.normal(size=(6, 10)) * 2, 2.5)
    z = np.asarray(d(x)).astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    ce = -(hard * np.log(p)).sum(1).mean()
    zt = z / 2.5
    qt = np.exp(zt - zt.max(1, keepdims=True))
    qt /= qt.sum(1, keepdims=True)
    kl = (soft * np.log(soft / qt)).sum(1).mean()
    expected = 0.3 * ce + 0.7 * 2.5 ** 2 * kl
    got = float(d.compute_loss(x, (hard, soft), d(x)))
    assert got == pytest.approx(expected, rel=1e-4)
    d1 = Distiller(m, alpha=1.0, temperature=2.5)
    assert float(d1.compute_loss(x, (hard, soft), d1(x))) == pytest.approx(ce, rel=1e-5)
    # Hard labels only (validation data, no teacher): plain CE, not alpha * CE.
    assert float(d.compute_loss(x, hard, d(x))) == pytest.approx(ce, rel=1e-5)


def test_alpha_one_trains_like_plain_ce():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 20)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 64)]
    soft = temper(rng.normal(size=(64, 10)), 1.0)
    a = _mlp_student(seed=3)
    b = _mlp_student(seed=3)
    d = Distiller(a, alpha=1.0, temperature=3.0)
    d.compile(keras.optimizers.SGD(0.1), metrics=["accuracy"])
    d.fit(x, (y, soft), batch_size=64, epochs=3, shuffle=False, verbose=0)
    b.compile(keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
    b.fit(x, y, batch_size=64, epochs=3, shuffle=False, verbose=0)
    np.testing.assert_allclose(np.asarray(a(x)), np.asarray(b(x)), atol=1e-5)


def _gaussian_task(n, rng, means):
    y = rng.integers(0, len(means), n)
    x = (means[y] + rng.normal(size=(n, means.shape[1]))).astype(np.float32)
    # Oracle teacher: exact class log-posteriors of the generating model (equal priors).
    logits = -0.5 * ((x[:, None, :] - means[None]) ** 2).sum(-1)
    return x, y, logits.astype(np.float32)


def test_kd_from_strong_teacher_beats_no_kd_at_equal_steps():
    rng = np.random.default_rng(0)
    means = rng.normal(size=(10, 20)).astype(np.float32) * 0.9
    x, y, t = _gaussian_task(60, rng, means)  # few labels: where dark knowledge helps
    xt, yt, _ = _gaussian_task(3000, rng, means)
    hard = np.eye(10, dtype=np.float32)[y]
    accs = {}
    for name, alpha in (("kd", 0.1), ("ce", 1.0)):
        d = Distiller(_mlp_student(seed=5), alpha=alpha, temperature=2.0)
        d.compile(keras.optimizers.Adam(3e-3), metrics=["accuracy"])
        d.fit(x, (hard, temper(t, 2.0)), batch_size=20, epochs=60, verbose=0)
        accs[name] = float((np.argmax(np.asarray(d.student(xt)), 1) == yt).mean())
    assert accs["kd"] > accs["ce"] + 0.03, accs


def test_distiller_with_live_teacher_metrics_and_serialisation(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(32, 20)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 32)]
    d = Distiller(_mlp_student(seed=1), teachers=[_mlp_student(seed=2), _mlp_student(seed=4)], alpha=0.5)
    d.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    h = d.fit(x, y, epochs=2, batch_size=16, verbose=0)
    for k in ("loss", "accuracy", "student_loss", "distillation_loss"):
        assert k in h.history, h.history.keys()
    assert h.history["distillation_loss"][-1] > 0
    res = d.evaluate(x, y, verbose=0, return_dict=True)
    assert "accuracy" in res
    d.save(tmp_path / "d.keras")
    back = keras.saving.load_model(tmp_path / "d.keras")
    assert isinstance(back, Distiller) and back.alpha == 0.5 and len(back.teachers) == 2
    np.testing.assert_allclose(np.asarray(back(x)), np.asarray(d(x)), atol=1e-5)
    assert back.student.output.shape[-1] == 10


def test_ensemble_modes_and_soft_target_roundtrip(tmp_path):
    feats = np.random.default_rng(3).normal(size=(9, 28, 256)).astype(np.float16)
    from asc_keras.models import build_serfr_cnn

    ts = [build_serfr_cnn(4), build_serfr_cnn(6)]
    z = teacher_logits(ts, feats, batch_size=4)
    assert z.shape == (9, 2, 10)
    singles = [np.asarray(keras.Model(t.input, t.get_layer("logits").output)(feats.astype(np.float32)[..., None]))
               for t in ts]
    np.testing.assert_allclose(teacher_logits(ts, feats, np.array([8, 0, 4])), z[[8, 0, 4]], atol=1e-5)
    np.testing.assert_allclose(z[:, 1], singles[1], atol=1e-4)
    # 'probabilities': each teacher tempered, then averaged; 'logits': averaged, then tempered.
    np.testing.assert_allclose(ensemble_distribution(z, 2.0, "probabilities"),
                               (temper(singles[0], 2.0) + temper(singles[1], 2.0)) / 2, atol=1e-5)
    np.testing.assert_allclose(ensemble_distribution(z, 2.0, "logits"),
                               temper((singles[0] + singles[1]) / 2, 2.0), atol=1e-5)
    st = SoftTargets(z, tuple(f"f{i}" for i in range(9)), {"ensemble": "probabilities", "teachers": ["a", "b"]})
    st.save(tmp_path / "targets")
    back = SoftTargets.load(tmp_path / "targets")
    np.testing.assert_array_equal(back.select(["f3", "f1"]).logits, z[[3, 1]])
    np.testing.assert_allclose(back.select(teachers=["b"]).distribution(2.0), temper(singles[1], 2.0), atol=1e-5)
    with pytest.raises(KeyError, match="teacher"):
        back.select(teachers=["c"])


@pytest.mark.parametrize("mode", ["probabilities", "logits"])
def test_stored_and_live_soft_targets_are_equal(mode):
    """The stored path (teacher_logits -> SoftTargets.distribution) and the Distiller's live
    teachers give the same soft targets, for either ensemble mode."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(12, 20)).astype(np.float32)
    teachers = [_mlp_student(seed=11), _mlp_student(seed=12), _mlp_student(seed=13)]
    z = np.stack([np.asarray(keras.Model(t.input, t.get_layer("logits").output)(x)) for t in teachers], axis=1)
    stored = SoftTargets(z, tuple(map(str, range(12))), {"ensemble": mode}).distribution(3.0)
    d = Distiller(_mlp_student(seed=1), teachers=teachers, alpha=0.5, temperature=3.0, ensemble=mode)
    _, live = d._targets(x, np.eye(10, dtype=np.float32)[rng.integers(0, 10, 12)])
    np.testing.assert_allclose(np.asarray(live), stored, atol=1e-5)
    # And the other mode is a different distribution (the definition matters).
    other = SoftTargets(z, tuple(map(str, range(12))),
                        {"ensemble": "logits" if mode == "probabilities" else "probabilities"}).distribution(3.0)
    assert np.abs(other - stored).max() > 1e-3


def test_pipeline_batches_from_memmap(clip_cache, tiny_dataset):
    rows = clip_cache.rows(tiny_dataset.train["filename"])
    labels = tiny_dataset.train["label"].to_numpy()
    soft = temper(np.random.default_rng(0).normal(size=(len(rows), 10)), 2.0)
    ds = make_dataset(clip_cache.features, rows, labels, soft, batch_size=32, shuffle=True, seed=0,
                      augment=AugmentConfig(time_stretch=True))
    x, (y, s) = next(iter(ds))
    assert x.shape == (32, 28, 256, 1) and x.dtype == tf.float32
    np.testing.assert_allclose(y.numpy().sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(s.numpy().sum(1), 1, atol=1e-5)
    plain = make_dataset(clip_cache.features, rows[:5], labels[:5], soft[:5], batch_size=5)
    xp, (yp, sp) = next(iter(plain))
    np.testing.assert_array_equal(xp.numpy()[..., 0], clip_cache.features[rows[:5]].astype(np.float32))
    assert (yp.numpy().argmax(1) == labels[:5]).all()
    np.testing.assert_array_equal(sp.numpy(), soft[:5])  # soft targets pass as given (already at T)
    # Random crops: one window per example, taken from that example's frames.
    xc, _ = next(iter(make_dataset(clip_cache.features, rows[:8], labels[:8], batch_size=8, crop_frames=10,
                                   seed=3)))
    assert xc.shape == (8, 10, 256, 1)
    full = clip_cache.features[rows[:8]].astype(np.float32)
    for i in range(8):
        starts = [t for t in range(28 - 10 + 1) if np.array_equal(full[i, t:t + 10], xc.numpy()[i, ..., 0])]
        assert starts, f"example {i}: crop is not a window of its own frames"
    with pytest.raises(ValueError, match="crop_frames"):
        make_dataset(clip_cache.features, rows, labels, crop_frames=29)
    n = sum(int(b[0].shape[0]) for b in make_dataset(clip_cache.features, rows, labels, batch_size=64))
    assert n == len(rows)


_RESUME_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from asc_keras._runtime import keras, tf
    from asc_keras.training.loop import fit_resumable
    kill_after = int(sys.argv[2])
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32"); y = np.eye(3, dtype="float32")[rng.integers(0, 3, 64)]
    inp = keras.Input((8,)); z = keras.layers.Dense(3, name="logits")(inp)
    m = keras.Model(inp, keras.layers.Activation("softmax")(z))
    m.compile(keras.optimizers.Adam(1e-2), "categorical_crossentropy", metrics=["accuracy"])
    class Kill(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if kill_after and epoch + 1 == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)   # a hard crash, no clean-up
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    h = fit_resumable(m, ds, None, epochs=5, run_dir=sys.argv[1], verbose=0, extra_callbacks=[Kill()],
                      tensorboard=False)
    print("EPOCHS", h.epoch, "ITER", int(m.optimizer.iterations.numpy()))
""")


def test_killed_run_resumes_to_same_epoch_count(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(_RESUME_SCRIPT)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    r1 = subprocess.run([sys.executable, str(script), str(tmp_path / "run"), "3"], capture_output=True, text=True,
                        env=env)
    assert r1.returncode != 0  # killed
    assert (tmp_path / "run" / "backup").exists()
    r2 = subprocess.run([sys.executable, str(script), str(tmp_path / "run"), "0"], capture_output=True, text=True,
                        env=env)
    assert r2.returncode == 0, r2.stderr[-2000:]
    line = [l for l in r2.stdout.splitlines() if l.startswith("EPOCHS")][0]
    assert "EPOCHS [3, 4]" in line  # resumed after the 3 finished epochs
    assert line.endswith("ITER 10")  # optimiser state restored: 5 epochs x 2 steps
    hist = pd.read_csv(tmp_path / "run" / "history.csv")
    assert list(hist["epoch"]) == [0, 1, 2, 3, 4]


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(textwrap.dedent("""
        import numpy as np
        from asc_keras._runtime import keras, tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from asc_keras.training import get_strategy
        from asc_keras.distill import Distiller
        from asc_keras.models import build_serfr_cnn
        strategy = get_strategy("mirrored")
        with strategy.scope():
            d = Distiller(build_serfr_cnn(4), alpha=0.5)
            d.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
        rng = np.random.default_rng(0)
        x = rng.normal(size=(16, 28, 256, 1)).astype("float32")
        y = np.eye(10, dtype="float32")[rng.integers(0, 10, 16)]
        s = np.full((16, 10), 0.1, "float32")
        h = d.fit(tf.data.Dataset.from_tensor_slices((x, (y, s))).batch(8), epochs=2, verbose=0)
        print("REPLICAS", strategy.num_replicas_in_sync, "LOSS", h.history["loss"])
    """))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "REPLICAS 2" in r.stdout


def test_batchnorm_recalibration_matches_data_statistics():
    from asc_keras.training.bn import recalibrate_batchnorm

    inp = keras.Input((4,))
    out = keras.layers.BatchNormalization(name="bn")(inp)
    m = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(256, 4)) * [1, 2, 3, 4] + [5, -1, 0, 2]).astype(np.float32)
    n = recalibrate_batchnorm(m, tf.data.Dataset.from_tensor_slices(x).batch(32), max_batches=8)
    bn = m.get_layer("bn")
    assert n == 8 and bn.momentum == 0.99  # momentum restored
    np.testing.assert_allclose(bn.moving_mean.numpy(), x.mean(0), atol=1e-4)  # equal batches: exact mean
    np.testing.assert_allclose(bn.moving_variance.numpy(), x.reshape(8, 32, 4).var(1).mean(0), rtol=1e-4)


def test_last_epoch_validation_is_the_returned_students_score(clip_cache, tiny_dataset, tmp_path):
    """Validation during training uses the weights' own BatchNorm statistics: the learning curve's
    last point is exactly the returned model's accuracy on the same clips."""
    import dataclasses

    from asc_keras.config import SystemConfig
    from asc_keras.training.student import train_student

    cfg = SystemConfig(student_width=8)
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, epochs=3, batch_size=32,
                                                             warmup_fraction=0.1))
    tr, ev = tiny_dataset.train, tiny_dataset.evaluate
    rows, ev_rows = clip_cache.rows(tr["filename"]), clip_cache.rows(ev["filename"])
    m = train_student(clip_cache.features, rows, tr["label"].to_numpy(), None, ev_rows, ev["label"].to_numpy(),
                      cfg=cfg, run_dir=tmp_path / "student", verbose=0)
    assert m.get_layer("stem_bn").momentum == pytest.approx(0.9)
    hist = pd.read_csv(tmp_path / "student" / "history.csv")
    assert len(hist) == 3
    probs = m.predict(clip_cache.features[ev_rows].astype(np.float32)[..., None], verbose=0)
    acc = float((probs.argmax(1) == ev["label"].to_numpy()).mean())
    assert abs(hist["val_accuracy"].iloc[-1] - acc) < 1e-6, (hist["val_accuracy"].tolist(), acc)
