"""Schedule, optimiser, tf.data pipeline, kill-and-resume, mirrored strategy, BatchNorm, the student."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from asc_keras._runtime import keras, tf
from asc_keras.config import AugmentConfig, OptimConfig
from asc_keras.distill import temper
from asc_keras.training import AdamL2, ReportSchedule, make_dataset, make_optimizer


def test_report_schedule_shape():
    s = ReportSchedule(800, peak=1e-3, final=1e-5, warmup_fraction=300 / 800)
    vals = np.array([float(s(i)) for i in range(0, 801, 50)])
    assert abs(float(s(300)) - 1e-3) < 1e-9 and abs(float(s(800)) - 1e-5) < 1e-9
    assert float(s(0)) == pytest.approx(1e-3 * np.exp(-5), rel=1e-5)
    assert (np.diff(vals[:7]) > 0).all() and (np.diff(vals[6:]) < 0).all()
    assert float(s(550)) == pytest.approx((1e-3 + 1e-5) / 2, rel=1e-5)  # linear fall
    s2 = ReportSchedule(80)  # scales with run length
    assert float(s2(30)) == pytest.approx(1e-3, rel=1e-6) and s2.value(55) == pytest.approx(
        float(s2(55)), rel=1e-5
    )
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
    assert isinstance(
        make_optimizer(OptimConfig(weight_decay_mode="decoupled"), 10, 5), keras.optimizers.AdamW
    )


def test_pipeline_batches_from_memmap(clip_cache, tiny_dataset):
    rows = clip_cache.rows(tiny_dataset.train["filename"])
    labels = tiny_dataset.train["label"].to_numpy()
    soft = temper(np.random.default_rng(0).normal(size=(len(rows), 10)), 2.0)
    ds = make_dataset(
        clip_cache.features,
        rows,
        labels,
        soft,
        batch_size=32,
        shuffle=True,
        seed=0,
        augment=AugmentConfig(time_stretch=True),
    )
    x, (y, s) = next(iter(ds))
    assert x.shape == (32, 28, 256, 1) and x.dtype == tf.float32
    np.testing.assert_allclose(y.numpy().sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(s.numpy().sum(1), 1, atol=1e-5)
    plain = make_dataset(clip_cache.features, rows[:5], labels[:5], soft[:5], batch_size=5)
    xp, (yp, sp) = next(iter(plain))
    np.testing.assert_array_equal(
        xp.numpy()[..., 0], clip_cache.features[rows[:5]].astype(np.float32)
    )
    assert (yp.numpy().argmax(1) == labels[:5]).all()
    np.testing.assert_array_equal(sp.numpy(), soft[:5])  # soft targets pass as given (already at T)
    # Random crops: one window per example, taken from that example's frames.
    xc, _ = next(
        iter(
            make_dataset(
                clip_cache.features, rows[:8], labels[:8], batch_size=8, crop_frames=10, seed=3
            )
        )
    )
    assert xc.shape == (8, 10, 256, 1)
    full = clip_cache.features[rows[:8]].astype(np.float32)
    for i in range(8):
        starts = [
            t
            for t in range(28 - 10 + 1)
            if np.array_equal(full[i, t : t + 10], xc.numpy()[i, ..., 0])
        ]
        assert starts, f"example {i}: crop is not a window of its own frames"
    with pytest.raises(ValueError, match="crop_frames"):
        make_dataset(clip_cache.features, rows, labels, crop_frames=29)
    n = sum(
        int(b[0].shape[0]) for b in make_dataset(clip_cache.features, rows, labels, batch_size=64)
    )
    assert n == len(rows)


def _epochs(ds, n=2):
    return [[t.numpy() for t in tf.nest.flatten(b)] for _ in range(n) for b in ds]


def test_pipeline_batches_do_not_depend_on_parallelism(clip_cache, tiny_dataset):
    """Given a seed, every augmented batch of every epoch is bit-identical at 1 or 8 parallel
    calls (keys drawn in order, stateless draws); epochs and seeds still differ; the XLA-fused
    augmentation computes what the op-by-op one does."""
    rows = clip_cache.rows(tiny_dataset.train["filename"])
    labels = tiny_dataset.train["label"].to_numpy()
    soft = temper(np.random.default_rng(0).normal(size=(len(rows), 10)), 2.0)

    def batches(parallel_calls, seed=5, jit=True):
        return _epochs(
            make_dataset(
                clip_cache.features,
                rows,
                labels,
                soft,
                batch_size=16,
                shuffle=True,
                seed=seed,
                augment=AugmentConfig(time_stretch=True, freq_mixstyle=0.5),
                crop_frames=20,
                parallel_calls=parallel_calls,
                jit_augment=jit,
            )  # fmt: skip
        )

    one, eight = batches(1), batches(8)
    assert len(one) == 2 * -(-len(rows) // 16)
    for a, b in zip(one, eight, strict=True):
        for u, v in zip(a, b, strict=True):
            np.testing.assert_array_equal(u, v)
    half = len(one) // 2
    assert not np.array_equal(one[0][0], one[half][0])  # epoch 2 reshuffles and redraws
    assert not np.array_equal(one[0][0], batches(1, seed=6)[0][0])
    # Freq-MixStyle's per-band statistics sum the frames in another order under XLA: float32
    # rounding of up to 3e-6 of a value (4e-5 on a log-mel of ~13) where it rescales a band.
    for a, b in zip(one, batches(8, jit=False), strict=True):
        for u, v in zip(a, b, strict=True):
            np.testing.assert_allclose(u, v, rtol=5e-6, atol=2e-5)


def test_training_is_bit_identical_at_any_pipeline_parallelism(clip_cache, tiny_dataset):
    """Two epochs of the SERFR student with system 1's augmentation, the input pipeline at 1
    and at 4 parallel calls: the same weights, bit for bit."""
    from asc_keras.models import build_serfr_cnn

    rows = clip_cache.rows(tiny_dataset.train["filename"])[:64]
    labels = tiny_dataset.train["label"].to_numpy()[:64]

    def train(parallel_calls):
        keras.utils.set_random_seed(0)
        model = build_serfr_cnn(input_shape=(28, 256, 1), width=8)
        model.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy")
        ds = make_dataset(
            clip_cache.features, rows, labels, batch_size=32, shuffle=True, seed=0,
            augment=AugmentConfig(), parallel_calls=parallel_calls,
        )  # fmt: skip
        model.fit(ds, epochs=2, verbose=0, shuffle=False)  # the dataset shuffles itself
        return model.get_weights()

    for a, b in zip(train(1), train(4), strict=True):
        np.testing.assert_array_equal(a, b)


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
    r1 = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "run"), "3"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r1.returncode != 0  # killed
    assert (tmp_path / "run" / "backup").exists()
    r2 = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "run"), "0"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r2.returncode == 0, r2.stderr[-2000:]
    line = [l for l in r2.stdout.splitlines() if l.startswith("EPOCHS")][0]
    assert "EPOCHS [3, 4]" in line  # resumed after the 3 finished epochs
    assert line.endswith("ITER 10")  # optimiser state restored: 5 epochs x 2 steps
    hist = pd.read_csv(tmp_path / "run" / "history.csv")
    assert list(hist["epoch"]) == [0, 1, 2, 3, 4]


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    """The Distiller under MirroredStrategy (two logical CPUs, one batch split in two) trains as on
    one device: the same weights and logged losses (plain SGD, so a gradient summed over the
    replicas instead of averaged would show; a BatchNorm-free student, since each replica's
    BatchNorm sees only its half of the batch) -- with half of each target from a live teacher
    made outside the strategy's scope, as the run's CE control is (distill.control_share)."""
    script = tmp_path / "mirrored.py"
    script.write_text(
        textwrap.dedent("""
        import json, sys
        import numpy as np
        from asc_keras._runtime import keras, tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from asc_keras.training import get_strategy
        from asc_keras.distill import Distiller
        rng = np.random.default_rng(0)
        x = rng.normal(size=(32, 28, 16, 1)).astype("float32")
        y = np.eye(10, dtype="float32")[rng.integers(0, 10, 32)]
        s = rng.dirichlet(np.ones(10), 32).astype("float32")
        keras.utils.set_random_seed(1)  # a live co-teacher built outside any scope, as run loads its control
        teacher = keras.Sequential([
            keras.Input((28, 16, 1)), keras.layers.Conv2D(3, 3, strides=2),
            keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10, name="logits"),
            keras.layers.Softmax()])
        out = {}
        for name in ("default", "mirrored"):
            strategy = get_strategy(name)
            keras.utils.set_random_seed(0)
            with strategy.scope():
                student = keras.Sequential([
                    keras.Input((28, 16, 1)), keras.layers.Conv2D(4, 3, strides=2),
                    keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10, name="logits"),
                    keras.layers.Softmax()])
                d = Distiller(student, control=teacher, alpha=0.5, temperature=2.0, control_share=0.5)
                d.compile(keras.optimizers.SGD(0.5), metrics=["accuracy"])
            ds = tf.data.Dataset.from_tensor_slices((x, (y, s))).batch(16)
            h = d.fit(ds, epochs=3, verbose=0)
            out[name] = {"replicas": strategy.num_replicas_in_sync, "loss": h.history["loss"],
                         "w": [w.tolist() for w in student.get_weights()]}
        json.dump(out, sys.stdout)
    """)
    )
    r = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    import json

    out = json.loads(r.stdout.strip().splitlines()[-1])
    one, two = out["default"], out["mirrored"]
    assert (one["replicas"], two["replicas"]) == (1, 2)
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5)
    assert one["loss"][-1] < one["loss"][0]  # it learned, so the weights moved
    for a, b in zip(one["w"], two["w"], strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


def _loopback_workers(argv, n: int = 2) -> list[subprocess.Popen]:
    """Start ``n`` processes ``python *argv(i)`` as the workers of one TF_CONFIG cluster on
    loopback (free ports), with text stdout/stderr pipes."""
    import json
    import socket

    ports = []
    for _ in range(n):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    return [
        subprocess.Popen(
            [sys.executable, *argv(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "TF_CPP_MIN_LOG_LEVEL": "3",
                "TF_CONFIG": json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": i}}
                ),
            },
        )  # fmt: skip
        for i in range(n)
    ]


_WORKER = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    strategy_name, out = sys.argv[1], Path(sys.argv[2])
    from asc_keras._runtime import tf
    if strategy_name == "mirrored":  # one process, two replicas: the reference
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from asc_keras.training.loop import get_strategy
    strategy = get_strategy(strategy_name)  # first TensorFlow work of the process
    import dataclasses
    import numpy as np
    from asc_keras.config import SystemConfig
    from asc_keras.data.splits import ClipSplit
    from asc_keras.distill.targets import SoftTargets
    from asc_keras.training.student import train_student
    d = np.load(out.parent / "data.npz")
    train = ClipSplit(d["features"], d["rows"], d["labels"], d["devices"], tuple(d["names"]))
    cfg = SystemConfig(student_width=4)
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(
        cfg.optim, epochs=2, batch_size=32, warmup_fraction=0.5))
    targets = SoftTargets(d["logits"], train.names, {})
    model = train_student(cfg, train, None, targets, run_dir=out, strategy=strategy_name, verbose=0)
    np.savez(out / "weights.npz", *model.get_weights())
    print("REPLICAS", strategy.num_replicas_in_sync)
""")


def test_two_workers_train_the_student_as_one_process_with_two_replicas(
    clip_cache, tiny_dataset, tmp_path
):
    """--strategy multiworker: two worker processes on loopback (TF_CONFIG) train the KD student
    with system 1's augmentation through train_student.  Both end with the same weights, BatchNorm
    statistics included (synchronised over the global batch), exactly those of one process
    training with two replicas (MirroredStrategy splits each batch the same way; that two
    replicas train as one device is test_mirrored_strategy_on_two_logical_cpus)."""

    from asc_keras.data.splits import ClipSplit

    train = ClipSplit.from_table(clip_cache, tiny_dataset.train.iloc[:128])
    logits = np.random.default_rng(0).normal(size=(len(train), 2, 10)).astype(np.float32)
    np.savez(
        tmp_path / "data.npz", features=np.asarray(clip_cache.features), rows=train.rows,
        labels=train.labels, devices=train.devices.astype(str), names=np.array(train.names), logits=logits,
    )  # fmt: skip
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    procs = _loopback_workers(lambda i: [str(script), "multiworker", str(tmp_path / f"worker{i}")])
    ref = subprocess.run(
        [sys.executable, str(script), "mirrored", str(tmp_path / "mirrored")],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (o, e) in zip(procs, outs, strict=True):
        assert p.returncode == 0, e[-3000:]
        assert "REPLICAS 2" in o
    assert ref.returncode == 0, ref.stderr[-3000:]

    def weights(name):
        with np.load(tmp_path / name / "weights.npz") as f:
            return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]

    from asc_keras.models import build_serfr_cnn

    names = [v.path for v in build_serfr_cnn(4).weights]
    w0, w1, wm = weights("worker0"), weights("worker1"), weights("mirrored")
    for name, a, b, c in zip(names, w0, w1, wm, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
        np.testing.assert_array_equal(a, c, err_msg=name)
    assert np.abs(w0[names.index("stem_bn/moving_mean")]).max() > 1e-3  # statistics were trained
    assert len(pd.read_csv(tmp_path / "worker0" / "history.csv")) == 2


def test_multiworker_needs_tf_config(monkeypatch):
    """Without TF_CONFIG the error says what to set."""
    from asc_keras.training.multiworker import _tf_config

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs TF_CONFIG"):
        _tf_config()


@pytest.mark.canary
def test_keras_still_fails_multiworker_fit_without_the_patch(tmp_path):
    """Canary for keras-team/keras#20585: an unpatched Keras 3 Model.fit under
    MultiWorkerMirroredStrategy (two workers on loopback, a plain Sequential model) still fails;
    when it passes, asc_keras.training.multiworker's patch can go."""
    script = tmp_path / "worker.py"
    script.write_text(
        textwrap.dedent("""
        import tensorflow as tf
        strategy = tf.distribute.MultiWorkerMirroredStrategy()  # before any other TensorFlow work
        import numpy as np
        import keras
        with strategy.scope():
            m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")])
            m.compile("adam", "categorical_crossentropy")
        x = np.zeros((32, 8), "float32")
        y = np.eye(2, dtype="float32")[np.arange(32) % 2]
        try:
            m.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), epochs=1, verbose=0)
            print("FIT OK")
        except ValueError as e:
            print("FIT FAILED", "PerReplica" in str(e))
    """)
    )
    procs = _loopback_workers(lambda i: [str(script)])
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all("FIT FAILED True" in o for o in outs), outs


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
    np.testing.assert_allclose(
        bn.moving_mean.numpy(), x.mean(0), atol=1e-4
    )  # equal batches: exact mean
    np.testing.assert_allclose(
        bn.moving_variance.numpy(), x.reshape(8, 32, 4).var(1).mean(0), rtol=1e-4
    )


def test_mixed_precision_switch(clip_cache, tiny_dataset, tmp_path):
    """optim.mixed_precision: float16 compute, float32 weights and probabilities, finite loss;
    the policy does not leak into models built afterwards."""
    import dataclasses

    from asc_keras.config import SystemConfig
    from asc_keras.data.splits import ClipSplit
    from asc_keras.models import build_serfr_cnn
    from asc_keras.training.student import train_student

    cfg = SystemConfig(student_width=8)
    optim = dataclasses.replace(cfg.optim, steps=4, rounds=1, batch_size=32, mixed_precision=True)
    cfg = dataclasses.replace(cfg, optim=optim)
    train = ClipSplit.from_table(clip_cache, tiny_dataset.train.iloc[:256])
    m = train_student(cfg, train, None, None, run_dir=tmp_path / "mp", verbose=0)
    conv = m.get_layer("stem_conv")
    assert conv.compute_dtype == "float16" and conv.kernel.dtype == "float32"
    probs = m.predict(train.inputs()[:8], verbose=0)
    assert probs.dtype == np.float32 and np.allclose(probs.sum(1), 1, atol=1e-3)
    hist = pd.read_csv(tmp_path / "mp" / "history.csv")
    assert np.isfinite(hist["loss"]).all()
    assert keras.config.dtype_policy().name == "float32"
    assert build_serfr_cnn(8).get_layer("stem_conv").compute_dtype == "float32"


def test_multiworker_run_gives_each_non_chief_worker_its_own_folders(monkeypatch, tmp_path):
    """asc-keras run --strategy multiworker: the chief (task 0) keeps --out and --work; worker k
    writes NAME.workerK beside them, so no two workers wait on each other's locks."""
    import argparse

    import asc_keras.training.loop as loop
    from asc_keras.cli.training import _multiworker_folders

    made = []
    monkeypatch.setattr(loop, "get_strategy", made.append)
    for index, expect in ((0, ("out", "work")), (2, ("out.worker2", "work.worker2"))):
        cluster = {"worker": ["h0:1", "h1:1", "h2:1"]}
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"index": index}}))
        args = argparse.Namespace(strategy="multiworker", work=tmp_path / "work")
        out, work = _multiworker_folders(args, tmp_path / "out")
        assert (out.name, work.name) == expect and args.work == tmp_path / "work"  # args untouched
    assert made == ["multiworker", "multiworker"]
    args = argparse.Namespace(strategy="default", work=tmp_path / "work")
    assert _multiworker_folders(args, tmp_path / "out") == (tmp_path / "out", tmp_path / "work")
    assert len(made) == 2
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not a worker cluster"):
        _multiworker_folders(argparse.Namespace(strategy="multiworker", work=tmp_path), tmp_path)


def test_a_step_budget_is_rounds_of_full_batches_over_a_reshuffled_stream(clip_cache, tiny_dataset):
    from asc_keras.training.length import TrainingLength, training_length

    assert training_length(1000, 32, epochs=3) == TrainingLength(3, 32, False)  # epochs: passes
    assert training_length(1000, 32, epochs=3, steps=250, rounds=10) == TrainingLength(10, 25, True)
    assert training_length(40, 32, epochs=3, steps=5, rounds=10) == TrainingLength(5, 1, True)
    with pytest.raises(ValueError, match="steps >= 1"):
        training_length(40, 32, epochs=3, steps=0)
    rows = clip_cache.rows(tiny_dataset.train["filename"])[:40]
    labels = tiny_dataset.train["label"].to_numpy()[:40]
    ds = make_dataset(
        clip_cache.features, rows, labels, batch_size=16, shuffle=True, seed=0, repeat=True
    )
    batches = [b[0].numpy() for b in ds.take(5)]
    assert [len(b) for b in batches] == [16] * 5  # batches run across passes: all full
    key = {clip_cache.features[r].astype(np.float32).tobytes(): i for i, r in enumerate(rows)}
    seen = [key[x[..., 0].tobytes()] for b in batches for x in b]
    assert sorted(seen) == sorted(list(range(40)) * 2)  # two passes of 40: each example twice
    assert seen[:40] != seen[40:]  # the second pass is reshuffled


def test_a_students_step_budget_has_a_floor_in_passes_that_only_a_bigger_set_reaches():
    """optim.min_passes: the quick profile's 800 steps stand on the built-in set (2,800 clips) and
    on 1,200; 3,800 clips get 9 passes; the setting is checked before any training."""
    from asc_keras.presets import system_config
    from asc_keras.training.length import TrainingLength, training_length
    from asc_keras.training.student import check_student_length, student_length

    assert training_length(3800, 32, 3, steps=800, rounds=10, min_passes=9) == TrainingLength(
        10, 107, True
    )  # ceil(9 * 3800 / 32) = 1,069 steps, rounded up to whole rounds
    assert training_length(3800, 32, 3, steps=800, rounds=10) == TrainingLength(10, 80, True)
    assert training_length(3800, 32, 3, min_passes=9) == TrainingLength(3, 119, False)  # epochs
    quick = system_config(1, "quick")
    assert quick.optim.min_passes == 9
    assert [student_length(quick, n).steps for n in (1200, 2800, 2844, 3800, 5000)] == [
        800, 800, 800, 1070, 1410,
    ]  # fmt: skip
    assert system_config(1, "paper").optim.min_passes is None  # the report's epochs
    for bad in (0, -1.0):
        cfg = system_config(1, "quick", {"optim": {"min_passes": bad}})
        with pytest.raises(ValueError, match=r"optim.min_passes must be above 0 \(or null"):
            check_student_length(cfg)
    with pytest.raises(ValueError, match="optim.min_passes must be a finite number or null"):
        system_config(1, "quick", {"optim": {"min_passes": float("nan")}})
    # A model that is no student keeps its key; a student's key holds the floor only where set.
    assert "min_passes" not in quick.optim.key_dict(students=False)
    assert quick.optim.key_dict()["min_passes"] == 9
    assert "min_passes" not in system_config(1, "paper").optim.key_dict()


def test_the_baselines_validation_is_a_class_balanced_hold_out_of_whole_recordings():
    """The organisers' 30 % hold-out (task1.yaml, seed 0): per class, whole recordings."""
    from asc_keras.data.splits import ClipSplit
    from asc_keras.training.baseline import official_validation

    names = tuple(
        f"audio/{c}-lyon-{r}-{r}00-{i}-a.wav"
        for c in ("bus", "park")
        for r in range(10)
        for i in range(5)
    )
    labels = np.repeat([0, 1], 50)
    split = ClipSplit(np.zeros((100, 2, 2)), np.arange(100), labels, np.array(["a"] * 100), names)
    fit, val = official_validation(split, 0.3, seed=0)
    recording = [n.rsplit("-", 2)[0] for n in names]
    held = {recording[i] for i in val}
    assert len(held) == 6 and {recording[i] for i in fit}.isdisjoint(held)  # 3 of 10 per class
    assert (labels[val] == 0).sum() == (labels[val] == 1).sum() == 15
    assert np.array_equal(
        official_validation(split, 0.3, seed=0)[1], val
    )  # seed 0: always the same


def test_teachers_learn_from_all_training_recordings_but_those_held_out_to_weigh_them():
    import dataclasses

    from asc_keras.config import SCENE_CLASSES, SystemConfig
    from asc_keras.data.splits import RecordingSplit
    from asc_keras.stages.teachers import held_out_recordings

    # Per class 5 locations (7 for the first five classes); every location's 10 s segment
    # recorded by devices a, b and c: three recordings of one sound.
    files, labels = [], []
    for c, scene in enumerate(SCENE_CLASSES):
        for loc in range(7 if c < 5 else 5):
            for dev in "abc":
                files.append(
                    tuple(f"audio/{scene}-lyon-{loc}-{loc}0-{k}-{dev}.wav" for k in range(2))
                )
                labels.append(c)
    n, labels = len(files), np.array(labels)
    recs = RecordingSplit(np.zeros((n + 5, 2, 2)), np.arange(n) + 5, labels, np.array(["a"] * n),
                          tuple("|".join(f) for f in files), tuple(files))  # fmt: skip
    cfg = SystemConfig()
    assert held_out_recordings(cfg, recs) == (recs, None)  # the report: none held out
    cfg = dataclasses.replace(cfg, teachers=dataclasses.replace(cfg.teachers, holdout_fraction=0.2))
    learn, held = held_out_recordings(cfg, recs)
    # Per class round(20 %) of the locations, at least one: 1 of 7 or of 5, with all three of its
    # devices' recordings, so no sound the teachers learned is among those that weigh them.
    place = lambda name: name.split("/")[1].rsplit("-", 3)[0]  # noqa: E731
    assert np.bincount(held.labels, minlength=10).tolist() == [3] * 10
    assert {place(n) for n in held.names}.isdisjoint({place(n) for n in learn.names})
    assert len(learn) + len(held) == n and sorted(learn.names + held.names) == sorted(recs.names)
    for part in (learn, held):  # rows, labels and files kept together
        for name, row, label, f in zip(part.names, part.rows, part.labels, part.files):
            i = recs.names.index(name)
            assert (row, label, f) == (recs.rows[i], recs.labels[i], recs.files[i])
    # The run's seed draws them: the same again, others with another seed.
    assert held_out_recordings(cfg, recs)[1].names == held.names
    other = held_out_recordings(dataclasses.replace(cfg, seed=cfg.seed + 1), recs)[1]
    assert other.names != held.names
    # A share that would leave the teachers nothing (or is negative) is refused by its name.
    for bad in (1.0, 1.5, -0.2):
        wrong = dataclasses.replace(
            cfg, teachers=dataclasses.replace(cfg.teachers, holdout_fraction=bad)
        )
        with pytest.raises(ValueError, match=r"teachers\.holdout_fraction must be in \[0, 1\)"):
            held_out_recordings(wrong, recs)


def test_teachers_masks_off_leaves_their_recordings_whole_and_changes_their_key():
    """``teachers.masks = false``: the teachers' batches are the recordings as stored (no mixup
    either), where the system's masks hide a band and a stretch of frames of each; the setting is
    in the teachers' key only when it is not the default, so trained teachers keep their folders."""
    import dataclasses

    from asc_keras.config import SystemConfig
    from asc_keras.data.splits import RecordingSplit
    from asc_keras.stages.teachers import teacher_settings
    from asc_keras.training.teachers import _teacher_batches

    rng = np.random.default_rng(0)
    feats = rng.normal(size=(4, 280, 256)).astype(np.float16)  # four 10 s recordings
    names = tuple(f"r{i}" for i in range(4))
    recs = RecordingSplit(feats, np.arange(4), np.arange(4), np.array(["a"] * 4), names)

    def batch(masks: bool) -> np.ndarray:
        t = dataclasses.replace(SystemConfig().teachers, batch_size=4, masks=masks)
        x, _ = next(
            iter(_teacher_batches(SystemConfig(teachers=t), recs, False, SystemConfig().features))
        )
        return np.asarray(x)[..., 0] if np.asarray(x).ndim == 4 else np.asarray(x)

    whole = {np.asarray(feats[i], np.float32).tobytes() for i in range(4)}
    off = batch(False)
    assert {np.asarray(r, np.float32).tobytes() for r in off} == whole
    on = batch(True)
    assert not any(np.asarray(r, np.float32).tobytes() in whole for r in on)
    t = SystemConfig().teachers
    assert "masks" not in teacher_settings(t, "cnn")
    assert teacher_settings(dataclasses.replace(t, masks=False), "cnn")["masks"] is False


def test_a_teachers_key_holds_the_augmentation_it_trains_with_not_the_students(tmp_path):
    """Sweeping the students' augmentation (``--set augment.mixup_alpha=1.0``) must not retrain
    the teachers: their key holds only what their batches read -- mixup's alpha only with
    ``teachers.mixup``, the mask sizes only with ``teachers.masks`` -- and the defaults map to
    themselves, so teachers trained before keep their folders."""
    import dataclasses

    from asc_keras.config import AugmentConfig
    from asc_keras.presets import parse_overrides, system_config
    from asc_keras.stages.shared import RunPlace
    from asc_keras.stages.teachers import teacher_dir
    from asc_keras.training.teachers import augment_read_by_teacher

    place = RunPlace(tmp_path / "out", tmp_path / "work")

    def key(*sets: str, name: str = "cnn") -> str:
        return teacher_dir(system_config(1, "quick", parse_overrides(list(sets))), place,
                           tmp_path / "data", name).name  # fmt: skip

    base = key()
    assert base.startswith("cnn-")
    # The quick profile's teachers: no mixup, no masks.  The students' settings leave them be.
    for student_only in ("augment.mixup_alpha=1.0", "augment.mixup=false",
                         "augment.freq_mask_param=24", "augment.freq_mask=false",
                         "augment.time_mask_param=2", "augment.stretch_min=0.8",
                         "augment.freq_mixstyle=0.4"):  # fmt: skip
        assert key(student_only) == base, student_only
    # Settings added later are in a key only when not their defaults: the folders stay.
    assert set(AugmentConfig().key_dict()) == {
        "mixup", "mixup_alpha", "freq_mask", "freq_mask_param", "time_mask", "time_mask_param",
        "time_stretch", "stretch_min", "stretch_max"}  # fmt: skip
    assert AugmentConfig(freq_mixstyle=0.4).key_dict()["freq_mixstyle"] == 0.4
    # What they do read changes it: stretching, and with their own mixup or masks the sizes.
    assert key("augment.time_stretch=true") != base
    mixing = key("teachers.mixup=true")
    assert mixing != base and key("teachers.mixup=true", "augment.mixup_alpha=1.0") != mixing
    masked = key("teachers.masks=true")
    assert masked not in (base, mixing)
    assert key("teachers.masks=true", "augment.freq_mask_param=24") != masked
    assert key("teachers.masks=true", "augment.mixup_alpha=1.0") == masked
    # A teacher with its own view (cnn_clips: masks on) reads the mask sizes; the others do not.
    clips = key(name="cnn_clips")
    assert key("augment.freq_mask_param=24", name="cnn_clips") != clips
    assert key("augment.freq_mask_param=24", name="bcresnet") == key(name="bcresnet")
    # The defaults are what they were: a teacher reading everything keys the system's own.
    t = dataclasses.replace(system_config(1, "quick").teachers, mixup=True, masks=True)
    for aug in (AugmentConfig(), AugmentConfig(time_stretch=True), AugmentConfig(mixup_alpha=0.9)):
        assert augment_read_by_teacher(aug, t) == dataclasses.replace(aug, mixup=True)
    plain = dataclasses.replace(t, mixup=False, masks=False)
    swept = AugmentConfig(mixup_alpha=0.9, freq_mask_param=3)
    assert augment_read_by_teacher(swept, plain) == AugmentConfig()


def test_a_teachers_own_view_replaces_the_shared_settings_for_it_alone():
    """``teachers.views``: one teacher's own crop, masks, mel pooling and length replace the shared
    ones where it is trained (its batches, its model, its step budget) and in its key alone; the
    others keep theirs, and a view equal to the shared settings is no change at all."""
    import dataclasses

    from asc_keras.config import SystemConfig
    from asc_keras.data.splits import RecordingSplit
    from asc_keras.presets import parse_overrides, system_config
    from asc_keras.stages.teachers import teacher_settings
    from asc_keras.training.teachers import _phase_length, _teacher_batches, build_teacher

    base = system_config(1, "quick")
    view = ["teachers.views.cnn={crop_seconds: 1.0, masks: true, mel_pool: 1, steps: 80}"]
    cfg = system_config(1, "quick", parse_overrides(view))
    cnn, bc = cfg.teachers.view("cnn"), cfg.teachers.view("bcresnet")
    assert (cnn.crop_seconds, cnn.masks, cnn.mel_pool, cnn.steps) == (1.0, True, 1, 80)
    assert bc == dataclasses.replace(base.teachers, views={})
    assert teacher_settings(cfg.teachers, "bcresnet") == teacher_settings(base.teachers, "bcresnet")
    assert teacher_settings(cfg.teachers, "cnn") != teacher_settings(base.teachers, "cnn")
    same = {"mel_pool": base.teachers.mel_pool, "steps": base.teachers.steps}
    equal = dataclasses.replace(base.teachers, views={"cnn": same})
    assert teacher_settings(equal, "cnn") == teacher_settings(base.teachers, "cnn")
    # Where it trains: 1 s windows of the recordings, masked, at 256 bands, 80 steps.
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(4, 280, 256)).astype(np.float16)
    recs = RecordingSplit(feats, np.arange(4), np.arange(4), np.array(["a"] * 4),
                          tuple(f"r{i}" for i in range(4)))  # fmt: skip
    own = dataclasses.replace(cfg, teachers=cnn)
    x, _ = next(iter(_teacher_batches(own, recs, False, cfg.features)))
    assert np.asarray(x).shape[1] == cfg.features.n_frames(1.0)
    assert _phase_length(own, recs, {"phase": "train", "epochs": 1}, cfg.features).steps == 80
    pooled = [l.name for l in build_teacher("cnn", cnn).layers if "mel_pool" in l.name]
    assert not pooled and [l for l in build_teacher("cnn", base.teachers).layers
                           if "mel_pool" in l.name]  # fmt: skip
    assert SystemConfig().teachers.views == {}
    # The configuration's architecture names are the builders' (names are checked against them).
    from asc_keras.config import TEACHER_ARCHITECTURES
    from asc_keras.models.teachers import TEACHERS

    assert tuple(TEACHERS) == TEACHER_ARCHITECTURES
    # A second teacher of one architecture, told apart by a label: the quick profile's cnn_clips
    # is a CNN of the CNN's width with its own view; its key holds the CNN's width, not the others'.
    clips = base.teachers.view("cnn_clips")
    assert (clips.crop_seconds, clips.masks, clips.mel_pool) == (1.0, True, 1)
    key = teacher_settings(base.teachers, "cnn_clips")
    assert key["cnn_width"] == base.teachers.cnn_width and "bcresnet_width" not in key
    assert key != teacher_settings(base.teachers, "cnn")
    layers = [l.name for l in build_teacher("cnn_clips", clips).layers]
    assert layers == [l for l in (l.name for l in build_teacher("cnn", base.teachers).layers)
                      if l != "mel_pool"]  # fmt: skip
    # A labelled teacher keeps its architecture's head and input (BC-ResNet: per-band pooling, the
    # residual input) unless it names its own.
    t = base.teachers
    names = lambda name, cfg=t: [l.name for l in build_teacher(name, cfg).layers]  # noqa: E731
    assert names("bcresnet_x") == names("bcresnet") != names("cnn")
    assert teacher_settings(t, "bcresnet_x")["pooling"] == t.pooling["bcresnet"] == "bands"
    own = dataclasses.replace(t, pooling={**t.pooling, "bcresnet_x": "mean"},
                              input_norm={**t.input_norm, "bcresnet_x": "none"})  # fmt: skip
    assert names("bcresnet_x", own) != names("bcresnet", own)
    assert teacher_settings(own, "bcresnet_x")["pooling"] == "mean"
