"""Edits of converted int8 graphs and the per-operator profile: the stem fold gives the same
outputs bit for bit, every operator alone gives what it gives inside the whole model."""

from __future__ import annotations

import numpy as np
import pytest

from asc_keras._runtime import keras
from asc_keras.compress.graph_edits import (
    _op_kinds,
    _unpacked,
    fold_stride_into_channels,
    single_op_models,
)
from asc_keras.compress.tflite import TFLiteModel, convert_int8
from asc_keras.evaluate.op_profile import _interpreter, by_kind, op_profile, whole_model_tensors


@pytest.fixture(scope="module")
def stem_file(tmp_path_factory):
    """A small SERFR-like int8 graph: 5x5 stem with stride (1, 2) on one channel, 2x3 average
    pool, a 3x3 convolution, global pooling, softmax head."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((28, 64, 1))
    x = keras.layers.Conv2D(8, 5, strides=(1, 2), padding="same", activation="relu", name="stem")(
        inp
    )
    x = keras.layers.AveragePooling2D((2, 3), padding="same")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(10, activation="softmax")(x))
    rep = np.random.default_rng(0).normal(-5, 2, (64, 28, 64, 1)).astype(np.float32)
    path = tmp_path_factory.mktemp("edits") / "stem.tflite"
    convert_int8(model, rep, path)
    return path, model.get_layer("stem").get_weights()[0]


def _run(content: bytes, x: np.ndarray) -> np.ndarray:
    it = _interpreter(content, 1)
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).copy()


def test_the_stem_fold_gives_the_same_int8_outputs_bit_for_bit(stem_file):
    path, _ = stem_file
    data = path.read_bytes()
    folded = fold_stride_into_channels(data)
    m = _unpacked(folded)
    g, kinds = m.subgraphs[0], _op_kinds(m)
    assert [kinds[op.opcodeIndex] for op in g.operators][:3] == [
        "RESHAPE",
        "CONV_2D",
        "AVERAGE_POOL_2D",
    ]
    conv = g.operators[1]
    assert tuple(g.tensors[conv.inputs[0]].shape) == (1, 28, 32, 2)  # pairs of bins as channels
    w = np.frombuffer(m.buffers[g.tensors[conv.inputs[1]].buffer].data.tobytes(), np.int8).reshape(
        8, 5, 3, 2
    )
    assert (w[:, :, 0, 0] == 0).all() and np.count_nonzero(
        w
    ) <= 8 * 25  # 25 taps of 30 carry weights
    assert conv.builtinOptions.strideW == 1
    rng = np.random.default_rng(1)
    for _ in range(25):  # every int8 input value, random and extreme
        x = rng.integers(-128, 128, (1, 28, 64, 1)).astype(np.int8)
        np.testing.assert_array_equal(_run(folded, x), _run(data, x))
    edge = np.full((1, 28, 64, 1), 127, np.int8)
    np.testing.assert_array_equal(_run(folded, edge), _run(data, edge))
    # The file is left as written (NeSsi counts it); TFLiteModel folds it in memory, same outputs.
    assert path.read_bytes() == data and fold_stride_into_channels(folded) == folded
    feats = rng.normal(-5, 2, (6, 28, 64)).astype(np.float32)
    a, b = TFLiteModel(path).predict(feats), TFLiteModel(path, fold_stride=False).predict(feats)
    np.testing.assert_array_equal(a, b)
    assert TFLiteModel(path)._data == folded and TFLiteModel(path).delegate == "xnnpack"


def test_each_operator_alone_gives_what_it_gives_in_the_whole_model(stem_file):
    path, _ = stem_file
    data = path.read_bytes()
    x = np.random.default_rng(2).normal(-5, 2, (28, 64)).astype(np.float32)
    values = whole_model_tensors(data, x)
    m = _unpacked(data)
    ops = m.subgraphs[0].operators
    alone = single_op_models(data)
    assert [k for k, _ in alone] == [_op_kinds(m)[op.opcodeIndex] for op in ops]
    for op, (_, content) in zip(ops, alone):
        it = _interpreter(content, 1)
        for d in it.get_input_details():
            it.set_tensor(d["index"], values[d["index"]])
        it.invoke()
        out = it.get_output_details()[0]["index"]
        assert out == int(op.outputs[0])
        np.testing.assert_array_equal(it.get_tensor(out), values[out])
    rows = op_profile(data, x, runs=3)
    assert [r.kind for r in rows] == [k for k, _ in alone] and all(r.ms > 0 for r in rows)
    runs_on = {r.kind: r.runs_on for r in rows}
    # XNNPACK takes the convolutions; LiteRT's builtin kernels run its int8 average pool.
    assert runs_on["CONV_2D"] == "xnnpack" and runs_on["AVERAGE_POOL_2D"] == "builtin"
    assert sum(n for _, n, _ in by_kind(rows)) == len(rows)
