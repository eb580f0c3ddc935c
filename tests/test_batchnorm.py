"""FusedBatchNormalization: Keras' BatchNormalization with its training step on TensorFlow's fused
kernel -- the same outputs, gradients and moving statistics; the stock path wherever the kernel
does not apply; the layer every builder uses in Keras 3, and tf_keras' own in the twins."""

from __future__ import annotations

import numpy as np

from asc_keras._runtime import keras, tf
from asc_keras.models.common import FusedBatchNormalization, is_batch_norm


def _pair(shape, seed: int = 0, **kwargs):
    """A stock and a fused layer of the same non-trivial weights and moving statistics."""
    rng = np.random.default_rng(seed)
    stock = keras.layers.BatchNormalization(momentum=0.9, **kwargs)
    fused = FusedBatchNormalization(momentum=0.9, **kwargs)
    c = shape[-1]
    weights = [
        rng.uniform(0.5, 1.5, c),
        rng.normal(0, 0.3, c),
        rng.normal(0, 0.5, c),
        rng.uniform(0.5, 2.0, c),
    ]
    for layer in (stock, fused):
        layer.build(shape)
        layer.set_weights([w.astype("float32") for w in weights])
    return stock, fused


def _step(layer, x, training=True):
    """Output, gradients (input, gamma, beta) of a loss that weighs each output differently."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(y * tf.sin(y))
    return y.numpy(), [g.numpy() for g in tape.gradient(loss, [x, layer.gamma, layer.beta])]


def _close(a, b, rtol=2e-5):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * float(np.abs(a).max()))


def test_training_steps_match_the_stock_layer():
    """Three steps on new batches: outputs, every gradient and the moving statistics agree with
    Keras' own layer to float rounding; the moving variance is the batch's biased variance."""
    shape = (6, 9, 10, 4)
    stock, fused = _pair(shape)
    rng = np.random.default_rng(1)
    for _ in range(3):
        x = (rng.normal(3.0, 2.0, shape) * [1, 2, 0.5, 3]).astype("float32")
        before = fused.moving_variance.numpy()
        ys, gs = _step(stock, x)
        yf, gf = _step(fused, x)
        _close(ys, yf)
        for a, b in zip(gs, gf):
            _close(a, b, rtol=5e-5)
        _close(stock.moving_mean.numpy(), fused.moving_mean.numpy())
        _close(stock.moving_variance.numpy(), fused.moving_variance.numpy())
        biased = x.astype("float64").var(axis=(0, 1, 2))  # ddof 0
        _close(fused.moving_variance.numpy(), 0.9 * before + 0.1 * biased)
    # Inference: the moving statistics, the same path.
    _close(stock(x, training=False).numpy(), fused(x, training=False).numpy())


def test_fused_kernel_only_where_it_applies(monkeypatch):
    """The fused kernel runs for a training step of a (B, H, W, C) tensor normalised over C; the
    stock path -- the same result -- for inference, a frozen layer, synchronised statistics, an
    epsilon under the kernel's floor and other ranks."""
    calls = []
    real = tf.compat.v1.nn.fused_batch_norm

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(tf.compat.v1.nn, "fused_batch_norm", counting)
    x = np.random.default_rng(2).normal(1.0, 2.0, (4, 5, 6, 3)).astype("float32")
    stock, fused = _pair(x.shape)
    _step(fused, x)
    assert len(calls) == 1
    _step(fused, x, training=False)
    assert len(calls) == 1
    stock, fused = _pair(x.shape)
    stock.trainable = fused.trainable = False  # frozen: Keras normalises with the moving stats
    _close(_step(stock, x)[0], _step(fused, x)[0])
    assert len(calls) == 1
    stock, fused = _pair(x.shape)
    fused.synchronized = True  # several replicas: statistics of the global batch (stock path)
    _close(_step(stock, x)[0], _step(fused, x)[0])
    assert len(calls) == 1
    stock, fused = _pair(x.shape, epsilon=1e-6)  # below the kernel's floor: the stock path
    _close(_step(stock, x)[0], _step(fused, x)[0])
    assert len(calls) == 1
    flat = x.reshape(20, 18)
    stock, fused = _pair(flat.shape)
    _close(_step(stock, flat)[0], _step(fused, flat)[0])
    assert len(calls) == 1


def test_builders_use_it_and_files_keep_it(tmp_path):
    """Every BatchNorm of the student, the DCASE baseline, BC-ResNet and MobileNetV2's backbone is
    fused in Keras 3; a saved student and a saved MobileNetV2 teacher load back (safe mode) with
    it; its tf_keras twin has tf_keras' own layer; the complexity count and the BN recalibration
    see it as a BatchNorm."""
    from asc_keras.compress.complexity import keras_complexity
    from asc_keras.compress.twin import tf_keras_twin
    from asc_keras.config import TeacherConfig
    from asc_keras.models import build_dcase_baseline, build_serfr_cnn
    from asc_keras.models.common import load_model_file
    from asc_keras.training.bn import recalibrate_batchnorm
    from asc_keras.training.teachers import build_teacher

    student = build_serfr_cnn(32, name="student")
    baseline = build_dcase_baseline()
    bcresnet = build_teacher("bcresnet", TeacherConfig(bcresnet_width=8))
    mobilenet = build_teacher("mobilenetv2", TeacherConfig(mobilenet_alpha=0.35))
    backbone = mobilenet.get_layer("backbone")  # keras.applications' layers, cloned
    for model, count in ((student, 24), (baseline, 3), (bcresnet, None), (backbone, 52)):
        bns = [l for l in model.layers if is_batch_norm(l)]
        assert bns and all(type(l) is FusedBatchNormalization for l in bns), model.name
        assert count is None or len(bns) == count, (model.name, len(bns))
    # keras.applications' momentum (0.999) and epsilon (1e-3) replaced and kept, respectively.
    assert {(l.momentum, l.epsilon) for l in backbone.layers if is_batch_norm(l)} == {(0.9, 1e-3)}
    mobilenet.save(tmp_path / "mobilenet.keras")
    back = load_model_file(tmp_path / "mobilenet.keras")
    bn = next(l for l in back.get_layer("backbone").layers if is_batch_norm(l))
    assert type(bn) is FusedBatchNormalization and bn.momentum == 0.9
    x1 = np.random.default_rng(1).normal(-5.0, 2.0, (2, 100, 256, 1)).astype("float32")
    np.testing.assert_allclose(np.asarray(back(x1)), np.asarray(mobilenet(x1)), atol=1e-6)
    student.save(tmp_path / "student.keras")
    loaded = load_model_file(tmp_path / "student.keras")
    assert type(loaded.get_layer("stem_bn")) is FusedBatchNormalization
    twin = tf_keras_twin(loaded)
    assert type(twin.get_layer("stem_bn")).__module__.startswith("tf_keras")
    # Folded into the convolutions they follow: the deployed count of the README (BN-folded).
    c = keras_complexity(student)
    assert c.deployed_params == 112_798
    # The layer table's columns stay aligned with the fused layer's longer type name.
    lines = c.table().splitlines()
    stem = next(line for line in lines if line.startswith("stem_bn "))
    assert "FusedBatchNormalization" in stem
    assert len({line.index("(") for line in lines[1:-1]}) == 1  # every output shape in one column
    x = np.random.default_rng(0).normal(2.0, 3.0, (64, 28, 256, 1)).astype("float32")
    n = recalibrate_batchnorm(student, tf.data.Dataset.from_tensor_slices(x).batch(16), 4)
    assert n == 4
    stem = student.get_layer("stem_bn")
    assert not np.allclose(stem.moving_variance.numpy(), 1.0)  # recalibrated from the data


def test_half_precision_inputs_normalise_in_float32():
    """Mixed precision: a float16 input is normalised with float32 statistics, as the stock layer
    does, and comes back in the layer's compute dtype."""
    x = np.random.default_rng(4).normal(0.0, 30.0, (4, 5, 6, 3)).astype("float32")
    stock, fused = _pair(x.shape, dtype="mixed_float16")
    ys, _ = _step(stock, x.astype("float16"))
    yf, _ = _step(fused, x.astype("float16"))
    assert yf.dtype == np.float16
    _close(ys.astype("float32"), yf.astype("float32"), rtol=2e-3)
