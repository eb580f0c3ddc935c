"""Models: shapes for 1 s and 10 s, softmax outputs, logits by name, complexity counts, twins, training."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from asc_keras._runtime import keras
from asc_keras.compress.complexity import keras_complexity
from asc_keras.config import DCASE_MAX_MACS, DCASE_MAX_PARAM_BYTES
from asc_keras.models import (
    build_bcresnet_teacher,
    build_cnn_teacher,
    build_dcase_baseline,
    build_mobilenetv2_teacher,
    build_serfr_cnn,
    logits_model,
)


def _small_teacher(name: str):
    """Teacher ``name`` as a run builds it (its pooling and input normalisation), small."""
    from asc_keras.config import TeacherConfig
    from asc_keras.training.teachers import build_teacher

    return build_teacher(name, TeacherConfig(mobilenet_alpha=0.35, cnn_width=8, bcresnet_width=8))


SMALL_TEACHERS = {
    name: (lambda n=name: _small_teacher(n)) for name in ("mobilenetv2", "cnn", "bcresnet")
}


@pytest.mark.parametrize("width", [24, 32])
def test_student_shapes_and_softmax(width):
    m = build_serfr_cnn(width)
    x = np.random.default_rng(0).normal(size=(3, 28, 256, 1)).astype(np.float32)
    p = np.asarray(m(x))
    assert p.shape == (3, 10)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    z = np.asarray(logits_model(m)(x))
    np.testing.assert_allclose(np.exp(z) / np.exp(z).sum(1, keepdims=True), p, atol=1e-5)
    assert m.get_layer("block1_se_squeeze") and m.get_layer("block3_se_scale")


@pytest.mark.parametrize("name", sorted(SMALL_TEACHERS))
def test_teachers_take_1s_and_10s(name):
    m = SMALL_TEACHERS[name]()
    for frames in (28, 309):
        p = np.asarray(
            m(np.random.default_rng(1).normal(size=(2, frames, 256, 1)).astype(np.float32))
        )
        assert p.shape == (2, 10)
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert logits_model(m).output.shape[-1] == 10


@pytest.mark.parametrize(
    "width,max_params,min_params", [(32, 128 * 1024, 100_000), (24, 100_000, 50_000)]
)
def test_students_fit_dcase_limits(width, max_params, min_params):
    c = keras_complexity(build_serfr_cnn(width))
    assert c.memory_bytes(8) <= DCASE_MAX_PARAM_BYTES and c.macs <= DCASE_MAX_MACS
    assert min_params <= c.params <= max_params  # uses the budget without exceeding it
    if width == 32:
        assert c.macs > 0.8 * DCASE_MAX_MACS


def test_complexity_of_hand_checkable_model():
    inp = keras.Input((10, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="c1")(
        inp
    )  # 36 w, 10*8*36 MACs
    x = keras.layers.BatchNormalization(name="bn")(x)  # 8 params (gamma, beta), 8 stats not counted
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", name="dw")(
        x
    )  # 36 + 4 bias, 5*4*36
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(3, name="d")(x)  # 12 + 3, 12 MACs
    c = keras_complexity(keras.Model(inp, x, name="tiny"))
    assert c.params == 36 + 8 + 40 + 15
    assert c.macs == 10 * 8 * 36 + 5 * 4 * 36 + 12
    assert c.deployed_params == (36 + 4) + 40 + 15  # BN folds into c1 as a bias
    assert c.memory_bytes(8) == 99 and c.memory_bytes(32) == 396
    by = {l.name: l for l in c.layers}
    assert by["dw"].output_shape == (5, 4, 4) and by["dw"].macs == 720


def test_dcase_baseline_counts_match_reference():
    c = keras_complexity(build_dcase_baseline())
    # docs/sources.md: 46,512 params and 29.23 M MACs for the reference Keras baseline (conv biases, other
    # padding); ours is the same architecture counted by the DCASE rules.
    assert abs(c.params - 46_512) / 46_512 < 0.02 and abs(c.macs - 29.23e6) / 29.23e6 < 0.02


def test_tf_keras_twin_gives_identical_outputs(tmp_path):
    """The twin is built from the arguments a saved student remembers (no layer-name parsing)."""
    from asc_keras.compress.twin import tf_keras_twin

    built = build_serfr_cnn(24, se_ratio=4, stem_pool=(2, 2), bn_momentum=0.8, name="student")
    built.save(tmp_path / "student.keras")
    m = keras.saving.load_model(tmp_path / "student.keras", compile=False, safe_mode=True)
    assert m.build_args() == {**built.build_args(), "name": "student"}
    assert m.build_args()["se_ratio"] == 4 and m.build_args()["stem_pool"] == (2, 2)
    # Non-trivial BN statistics so the twin check covers them too.
    for layer in m.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, mu, var = layer.get_weights()
            rng = np.random.default_rng(len(layer.name))
            layer.set_weights(
                [
                    g * rng.uniform(0.5, 1.5, g.shape),
                    rng.normal(0, 0.1, b.shape),
                    rng.normal(0, 0.1, mu.shape),
                    rng.uniform(0.5, 2, var.shape),
                ]
            )
    twin = tf_keras_twin(m)
    assert twin.__class__.__module__.startswith("tf_keras") and twin.name == "student"
    assert twin.get_layer("stem_bn").momentum == pytest.approx(0.8)
    assert [l.name for l in twin.layers] == [l.name for l in m.layers]
    x = np.random.default_rng(3).normal(size=(4, 28, 256, 1)).astype(np.float32)
    diff = np.abs(np.asarray(m(x, training=False)) - twin(x, training=False).numpy()).max()
    assert diff < 1e-5
    assert keras_complexity(twin).params == keras_complexity(m).params


@pytest.mark.parametrize("name", ["serfr_cnn_24"] + sorted(SMALL_TEACHERS))
def test_each_model_trains_and_loss_falls(name):
    keras.utils.set_random_seed(0)
    m = build_serfr_cnn(8) if name == "serfr_cnn_24" else SMALL_TEACHERS[name]()
    rng = np.random.default_rng(0)
    y = np.arange(32) % 4
    x = rng.normal(size=(32, 28, 256, 1)).astype(np.float32) + y[:, None, None, None] * 0.5
    m.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    # The untrained model's loss, computed eagerly (evaluate would trace one more graph).
    first = float(np.mean(keras.losses.sparse_categorical_crossentropy(y, m(x, training=False))))
    # The training loss of the last epoch against the untrained model's loss: the model learns.
    # (Inference-mode agreement with training is pinned by the validation == evaluation tests;
    # on 32 toy examples in batches of 8, batch statistics carry the class offset itself.)
    h = m.fit(x, y, epochs=6, batch_size=8, verbose=0)
    assert h.history["loss"][-1] < 0.8 * first


def test_mobilenetv2_loads_user_weights_and_rejects_wrong_file(tmp_path):
    src = build_mobilenetv2_teacher(alpha=0.35)
    src.get_layer("backbone").save_weights(tmp_path / "backbone.weights.h5")
    dst = build_mobilenetv2_teacher(alpha=0.35, pretrained=tmp_path / "backbone.weights.h5")
    a, b = src.get_layer("backbone").get_weights(), dst.get_layer("backbone").get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    build_serfr_cnn(8).save_weights(tmp_path / "other.weights.h5")
    with pytest.raises(ValueError, match="other.weights.h5: weights fit neither"):
        build_mobilenetv2_teacher(alpha=0.35, pretrained=tmp_path / "other.weights.h5")
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        build_mobilenetv2_teacher(alpha=0.35, pretrained=tmp_path / "absent.h5")


def test_transfer_learning_phases(tmp_path):
    from asc_keras.config import SystemConfig, TeacherConfig
    from asc_keras.data.splits import RecordingSplit
    from asc_keras.training.teachers import _phases, build_teacher, train_teacher

    build_mobilenetv2_teacher(alpha=0.35).get_layer("backbone").save_weights(
        tmp_path / "bb.weights.h5"
    )
    chain = dict(pretrained_mobilenetv2=str(tmp_path / "bb.weights.h5"), frozen_epochs=1,
                 pretrain_data="(another TAU set)", pretrain_frozen_epochs=1, pretrain_epochs=1,
                 pretrain_lr=5e-4)  # fmt: skip
    full = TeacherConfig(
        names=("mobilenetv2",), epochs=1, batch_size=4, mobilenet_alpha=0.35, **chain
    )
    # The whole chain: pretrained weights -> other data (frozen, unfrozen) -> this data (frozen,
    # unfrozen), each phase with its learning rate.
    phases = _phases(full, full.pretrained_mobilenetv2, pretrain=True)
    assert [(p["phase"], p["data"], p["backbone_trainable"], p["peak_lr"]) for p in phases] == [
        ("pretrain_frozen", "pretrain", False, 5e-4), ("pretrain", "pretrain", True, 5e-4),
        ("frozen", "system", False, full.peak_lr), ("finetune", "system", True, full.peak_lr)]  # fmt: skip
    # Trained (each phase costs a trace of MobileNetV2, so two of them): from the pretrained
    # backbone, first frozen, then unfrozen, on this data set.
    cfg = SystemConfig(teachers=dataclasses.replace(full, pretrain_data=None))
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(12, 28, 256)).astype(np.float16)  # any length: 1 s keeps the test fast
    labels = np.arange(12) % 10
    devices = np.array(["a"] * 12)
    names = tuple(f"r{i}" for i in range(12))
    train = RecordingSplit(feats, np.arange(8), labels[:8], devices[:8], names[:8])
    val = RecordingSplit(feats, np.arange(8, 12), labels[8:], devices[8:], names[8:])
    model, metrics = train_teacher(
        "mobilenetv2", cfg, train, val, run_dir=tmp_path / "t", verbose=0
    )
    trained = [
        (p["phase"], p["data"], p["backbone_trainable"]) for p in metrics["transfer"]["phases"]
    ]
    assert trained == [("frozen", "system", False), ("finetune", "system", True)]
    for name, _, _ in trained:
        assert (tmp_path / "t" / f"{name}.weights.h5").is_file()
        assert len(pd.read_csv(tmp_path / "t" / name / "history.csv")) == 1
    assert model.get_layer("backbone").trainable and 0 <= metrics["accuracy"] <= 1
    # The frozen phase left the pretrained backbone as it was; the unfrozen one moved it.
    after_frozen = build_teacher("mobilenetv2", cfg.teachers)
    after_frozen.load_weights(tmp_path / "t" / "frozen.weights.h5")
    start = build_mobilenetv2_teacher(alpha=0.35, pretrained=tmp_path / "bb.weights.h5")
    for got, want in zip(
        after_frozen.get_layer("backbone").weights, start.get_layer("backbone").weights
    ):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=got.path)
    moved = zip(model.get_layer("backbone").weights, start.get_layer("backbone").weights)
    assert any(not np.array_equal(np.asarray(m), np.asarray(w)) for m, w in moved)
    again, m2 = train_teacher("mobilenetv2", cfg, train, val, run_dir=tmp_path / "t", verbose=0)
    assert m2 == metrics  # finished teacher is loaded, not retrained


def test_band_pooling_tells_where_in_frequency_an_event_is(tmp_path):
    """A convolution cannot tell where in frequency it is: with a global average the same burst
    one octave-band higher gives the same features; the 'bands' head keeps them apart.  The
    teacher with a frequency-normalised input saves and loads (safe mode) and gives the same."""
    x = np.zeros((2, 100, 256, 1), np.float32)
    x[0, 40:45, 64:80] = 3.0
    x[1, 40:45, 128:144] = (
        3.0  # the same burst 64 bands higher (a multiple of every stride; far from both edges)
    )
    feats = {}
    for pooling in ("mean", "bands"):
        m = build_cnn_teacher(width=8, mel_pool=1, pooling=pooling)
        f = np.asarray(keras.Model(m.input, m.get_layer("logits").input)(x))
        feats[pooling] = np.abs(f[0] - f[1]).max() / np.abs(f).max()
    assert feats["mean"] < 1e-5 and feats["bands"] > 0.1, feats
    m = build_bcresnet_teacher(width=8, mel_pool=4, pooling="bands", input_norm=True)
    m.save(tmp_path / "t.keras")
    back = keras.saving.load_model(tmp_path / "t.keras", compile=False, safe_mode=True)
    np.testing.assert_allclose(np.asarray(back(x)), np.asarray(m(x)), atol=1e-6)


def test_frequency_norm_takes_out_each_bands_level_and_keeps_a_residual():
    from asc_keras.models.common import FrequencyNorm

    rng = np.random.default_rng(0)
    for frames in (28, 309):
        x = rng.normal(size=(2, frames, 16, 1)).astype(np.float32)
        device = rng.normal(size=(1, 1, 16, 1)).astype(np.float32) * 5  # a level per band
        plain, residual = FrequencyNorm(residual=0.0), FrequencyNorm(residual=0.1)
        np.testing.assert_allclose(np.asarray(plain(x + device)), np.asarray(plain(x)), atol=1e-4)
        diff = np.asarray(residual(x + device)) - np.asarray(residual(x))
        np.testing.assert_allclose(diff, np.broadcast_to(0.1 * device, diff.shape), atol=1e-4)
        y = np.asarray(plain(x))
        np.testing.assert_allclose(y.mean(axis=1), 0, atol=1e-4)  # each band centred over time
        np.testing.assert_allclose(y.std(axis=1), 1, atol=2e-3)


def _time_distributed_bands(x):
    """The 'bands' head as it was built before ``BandTimePool``: Keras' TimeDistributed poolings."""
    y = keras.layers.Permute((2, 1, 3))(x)  # (B, F, T, C)
    top = keras.layers.TimeDistributed(keras.layers.GlobalMaxPooling1D())(y)
    avg = keras.layers.TimeDistributed(keras.layers.GlobalAveragePooling1D())(y)
    return keras.layers.Flatten()(keras.layers.Add()([top, avg]))


def test_band_time_pool_is_the_time_distributed_head_to_the_bit():
    """The 'bands' head's own layer gives the outputs and the input gradients TimeDistributed's
    poolings gave, to the bit, at any length: the rest of a teacher unchanged, it trains as it
    did (teachers trained before keep their numbers), and a BC-ResNet is built with it."""
    from asc_keras._runtime import tf
    from asc_keras.models.teacher_parts import BandTimePool

    rng = np.random.default_rng(0)
    inp = keras.Input((None, 8, 12))
    old = keras.Model(inp, _time_distributed_bands(inp))
    new = keras.Model(inp, keras.layers.Flatten()(BandTimePool()(inp)))
    assert {type(layer).__name__ for layer in old.layers} >= {"TimeDistributed"}
    for frames in (309, 28, 5):
        x = tf.constant(rng.normal(0, 3, (4, frames, 8, 12)).astype("float32"))
        w = tf.constant(rng.normal(size=(4, 96)).astype("float32"))
        got = []
        for m in (old, new):
            with tf.GradientTape() as tape:
                tape.watch(x)
                out = m(x)
                loss = tf.reduce_sum(out * w)
            got.append((out.numpy(), tape.gradient(loss, x).numpy()))
        np.testing.assert_array_equal(got[0][0], got[1][0])
        np.testing.assert_array_equal(got[0][1], got[1][1])
        assert np.abs(got[1][1]).max() > 0  # a gradient reaches the input
    bc = build_bcresnet_teacher(width=8, mel_pool=4, pooling="bands")
    kinds = {type(layer).__name__ for layer in bc.layers}
    assert "BandTimePool" in kinds and "TimeDistributed" not in kinds
