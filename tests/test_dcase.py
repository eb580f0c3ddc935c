"""Numbers a DCASE user compares: metrics as scikit-learn computes them for the organisers, the
organisers' NeSsi complexity count (exact on the official baseline), the baseline's own features,
and a submission package with every field the organisers' validator requires."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, log_loss, recall_score

from asc_keras.config import ALL_DEVICES, SCENE_CLASSES
from asc_keras.metrics import classification_metrics

LABELS = list(range(10))


def _sk_log_loss(y, p):
    with warnings.catch_warnings():  # int8 probabilities do not sum to exactly one
        warnings.simplefilter("ignore", UserWarning)
        return log_loss(y, p, labels=LABELS)


def _check_against_sklearn(y, p, devices):
    m = classification_metrics(y, p, devices)
    p64 = np.asarray(p, np.float64)
    pred = p64.argmax(1)
    assert m["overall_log_loss"] == pytest.approx(_sk_log_loss(y, p64), rel=1e-12)
    present = sorted(set(y.tolist()))
    class_ll = {SCENE_CLASSES[c]: _sk_log_loss(y[y == c], p64[y == c]) for c in present}
    assert m["per_class_log_loss"] == pytest.approx(class_ll, rel=1e-12)
    assert m["log_loss"] == pytest.approx(np.mean(list(class_ll.values())), rel=1e-12)
    recall = recall_score(y, pred, labels=present, average=None, zero_division=0)
    assert m["per_class"] == pytest.approx(dict(zip([SCENE_CLASSES[c] for c in present], recall)))
    with warnings.catch_warnings():  # predictions may name classes y lacks
        warnings.simplefilter("ignore", UserWarning)
        assert m["accuracy"] == pytest.approx(balanced_accuracy_score(y, pred), rel=1e-12)
    assert m["micro_accuracy"] == pytest.approx(float((pred == y).mean()))
    for d in set(devices.tolist()):
        k = devices == d
        with warnings.catch_warnings():  # a device's predictions may name classes it lacks
            warnings.simplefilter("ignore", UserWarning)
            assert m["per_device"][d] == pytest.approx(
                balanced_accuracy_score(y[k], pred[k]), rel=1e-12
            )
        assert m["per_device_log_loss"][d] == pytest.approx(_sk_log_loss(y[k], p64[k]), rel=1e-12)
    return m


def test_dcase_metrics_equal_scikit_learn_on_random_and_adversarial_inputs():
    rng = np.random.default_rng(0)
    n = 600
    y = rng.integers(0, 10, n)
    devices = rng.choice(list(ALL_DEVICES), n)
    logits = rng.normal(size=(n, 10)) * 3
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    _check_against_sklearn(y, p, devices)
    # int8 outputs: multiples of 1/256 with exact zeros, rows not summing to one.
    q = np.floor(p * 256) / 256
    assert (q[np.arange(n), y] == 0).any()
    m = _check_against_sklearn(y, q.astype(np.float32), devices)
    assert max(m["per_class_log_loss"].values()) > 5  # exact zeros cost -log(eps) = 36 nats each
    # All-zero rows, one-hot rows (right and wrong), a single class present.
    z = np.zeros((20, 10))
    _check_against_sklearn(np.full(20, 3), z, np.array(["a"] * 20))
    onehot = np.eye(10)[rng.integers(0, 10, 50)]
    _check_against_sklearn(rng.integers(0, 10, 50), onehot, rng.choice(["a", "s4"], 50))
    m = _check_against_sklearn(np.full(30, 7), p[:30], np.array(["b"] * 30))
    assert list(m["per_class"]) == ["street_pedestrian"]


def test_recording_accuracy_averages_each_recordings_clip_probabilities():
    from asc_keras.metrics import recording_accuracy

    names = ["r1-0", "r1-1", "r2-0", "r2-1", "r3-0"]
    probs = np.zeros((5, 10))
    probs[0, 1], probs[1, 1], probs[1, 0] = 0.4, 0.4, 0.6  # r1: mean 0.4 on 1, 0.3 on 0 -> 1
    probs[2, 2], probs[3, 3] = 0.9, 0.8  # r2: 0.45 on 2 beats 0.4 on 3 -> 2
    probs[4, 4] = 1.0  # r3 -> 4
    recs = [["r1-1", "r1-0"], ["r2-0", "r2-1"], ["r3-0"]]
    # Clip by clip r1-1 says 0: averaged, r1 is class 1.  Right on r1 and r2, wrong on r3.
    acc = recording_accuracy(names, probs, recs, [1, 2, 5])
    assert acc == pytest.approx((1 + 1 + 0) / 3)  # macro over the three classes present


def test_paired_lead_counts_the_disagreements_and_tests_them_by_the_sign_test():
    from scipy.stats import binomtest

    from asc_keras.metrics import paired_lead

    # 20 items: both right on 6, both wrong on 4, only the first on 9, only the second on 1.
    first = [1] * 6 + [0] * 4 + [1] * 9 + [0]
    second = [1] * 6 + [0] * 4 + [0] * 9 + [1]
    lead = paired_lead(first, second)
    assert lead == {"items": 20, "only_first_right": 9, "only_second_right": 1,
                    "p_value": pytest.approx(11 / 1024)}  # (C(10,9) + C(10,10)) / 2^10  # fmt: skip
    assert lead["p_value"] == pytest.approx(binomtest(9, 10, 0.5, alternative="greater").pvalue)
    # The same lead the other way round is no lead; agreeing everywhere says nothing.
    assert paired_lead(second, first)["p_value"] == pytest.approx(1 - 1 / 1024)
    assert paired_lead(first, first)["p_value"] == 1.0
    rng = np.random.default_rng(0)  # against scipy on random pairs (McNemar's exact test)
    for _ in range(5):
        a, b = rng.integers(0, 2, 146), rng.integers(0, 2, 146)
        k, m = int((a & ~b & 1).sum()), int((~a & b & 1).sum())
        want = binomtest(k, k + m, 0.5, alternative="greater").pvalue
        assert paired_lead(a, b)["p_value"] == pytest.approx(want, rel=1e-9)
    with pytest.raises(ValueError, match="items differ"):
        paired_lead([1, 0], [1])


def test_macro_equals_micro_accuracy_on_a_balanced_split():
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(10), 30)
    m = classification_metrics(y, rng.random((300, 10)))
    assert m["accuracy"] == pytest.approx(m["micro_accuracy"], abs=1e-12)


def _trained_like(model, seed=0):
    """Non-zero dense biases, as training leaves them (the converter drops all-zero ones)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.__class__.__name__ == "Dense":
            k, b = layer.get_weights()
            layer.set_weights([k, rng.normal(0, 0.1, b.shape).astype(np.float32)])
    return model


def test_official_baseline_counts_exactly_as_the_organisers(tmp_path):
    from asc_keras.compress.complexity import keras_complexity
    from asc_keras.compress.nessi import nessi_complexity
    from asc_keras.compress.tflite import TFLiteModel, convert_int8
    from asc_keras.models import build_dcase_baseline

    m = _trained_like(build_dcase_baseline())
    c = keras_complexity(m)
    assert (c.keras_params, c.deployed_params, c.params) == (46_246, 45_990, 46_118)
    rep = np.random.default_rng(0).normal(size=(16, 40, 51)).astype(np.float32)
    convert_int8(m, rep, tmp_path / "folded.tflite")
    n = nessi_complexity(tmp_path / "folded.tflite")
    # The organisers' figures: 45,816 int8 kernel bytes + 174 int32 biases x 4; and NeSsi's MACs
    # (convolutions 29,196,160, pools 32,000 + 2,560, dense 3,200 + 1,000).
    assert (n.param_bytes, n.macs) == (46_512, 29_234_920)
    assert [(o.op, o.macs) for o in n.ops if o.op in ("MAX_POOL_2D", "FULLY_CONNECTED")] == [
        ("MAX_POOL_2D", 32_000), ("MAX_POOL_2D", 2_560),
        ("FULLY_CONNECTED", 3_200), ("FULLY_CONNECTED", 1_000),
    ]  # fmt: skip
    # Without folding the Flatten: the same outputs, but NeSsi counts the RESHAPE's shape constants
    # and the dense layer's true 64 inputs.
    convert_int8(m, rep, tmp_path / "plain.tflite", fold_flatten=False)
    plain = nessi_complexity(tmp_path / "plain.tflite")
    assert plain.macs == 29_234_920 + 3_200 and plain.param_bytes > 46_512
    x = np.random.default_rng(1).normal(size=(6, 40, 51)).astype(np.float32)
    folded = TFLiteModel(tmp_path / "folded.tflite").predict(x, batch_size=6)
    np.testing.assert_array_equal(
        folded, TFLiteModel(tmp_path / "plain.tflite").predict(x, batch_size=6)
    )
    one_by_one = [
        TFLiteModel(tmp_path / "folded.tflite").predict(x[i : i + 1], batch_size=1)
        for i in range(6)
    ]
    np.testing.assert_array_equal(folded, np.concatenate(one_by_one))


@pytest.mark.parametrize("width,nessi", [(32, (117_816, 28_168_000)), (24, (72_140, 16_479_424))])
def test_serfr_cnn_fits_the_organisers_limits(width, nessi):
    from asc_keras.compress.nessi import NESSI_MAX_MACS, NESSI_MAX_PARAM_BYTES, nessi_of_model
    from asc_keras.models import build_serfr_cnn

    n = nessi_of_model(build_serfr_cnn(width))
    assert (n.param_bytes, n.macs) == nessi
    assert n.within_limits and n.param_bytes <= NESSI_MAX_PARAM_BYTES and n.macs <= NESSI_MAX_MACS


def _official_baseline_features(y: np.ndarray) -> np.ndarray:
    """The organisers' recipe written out independently: dcase_util's mel extractor (librosa:
    magnitude STFT, 40 ms Hamming in 2048 points, centred, 40 Slaney mels, log of mel + eps),
    then create_h5.py's utils.float32_to_int16 and the reader's int16_to_float32."""
    import librosa

    spec = np.abs(librosa.stft(y, n_fft=2048, hop_length=882, win_length=1764, window="hamming",
                               center=True, pad_mode="reflect"))  # fmt: skip
    mel = librosa.filters.mel(sr=44100, n_fft=2048, n_mels=40, fmin=0, fmax=22050, htk=False)
    x = np.log(mel @ spec + np.spacing(1))  # (40 mels, 51 frames), as the h5 stores it
    if np.max(np.abs(x)) > 1.0:
        x /= np.max(np.abs(x))
    return ((x * 32767.0).astype(np.int16) / 32767.0).astype(np.float32)


def test_baseline_features_equal_the_official_extractor():
    from asc_keras.features.logmel import logmel
    from asc_keras.models.baseline import BASELINE_FEATURES

    rng = np.random.default_rng(0)
    for y in (rng.normal(size=44100).astype(np.float32) * 0.1,
              np.sin(2 * np.pi * 440 * np.arange(44100) / 44100).astype(np.float32) * 0.5):  # fmt: skip
        ours, ref = logmel(y, BASELINE_FEATURES), _official_baseline_features(y).T
        assert ours.shape == ref.shape == (51, 40) == (BASELINE_FEATURES.n_frames(), 40)
        np.testing.assert_allclose(ours, ref, atol=1e-4)
        assert np.abs(ours).max() <= 1.0  # scaled: the log-mels themselves reach about -36


def _results(rng):
    n = 400
    y, devices = np.repeat(np.arange(10), 40), np.resize(np.array(ALL_DEVICES), n)
    m = classification_metrics(y, rng.dirichlet(np.ones(10), n), devices)
    nessi = {"param_bytes": 117_816, "macs": 28_168_000}
    complexity = {
        "tflite": {"params": 112_798, "macs": 27_860_000},
        "nonzero_params": 80_000,
        "nessi": nessi,
    }
    return {"student": {"float": m, "int8": m}, "complexity": complexity}


def test_meta_yaml_has_every_field_the_validator_requires(tmp_path):
    import yaml

    from asc_keras.config import AugmentConfig, SystemConfig
    from asc_keras.evaluate.dcase_files import meta_placeholders, meta_problems, write_meta_yaml

    path = write_meta_yaml(tmp_path / "Doe_ORG_task1_1.meta.yaml", label="Doe_ORG_task1_1", name="SERFR-CNN-32",
                           abbreviation="SERFR32", results=_results(np.random.default_rng(0)),
                           config=SystemConfig().to_dict())  # fmt: skip
    meta = yaml.safe_load(path.read_text())
    assert meta_problems(meta) == []
    assert meta["system"]["complexity"]["total_model_size"] == 117_816
    assert meta["system"]["complexity"]["macs"] == 28_168_000
    assert meta["system"]["description"]["data_augmentation"] == (
        "mixup, frequency masking, time masking"
    )
    styled = SystemConfig(augment=AugmentConfig(freq_mixstyle=0.4)).to_dict()
    again = write_meta_yaml(tmp_path / "b.meta.yaml", label="Doe_ORG_task1_1", name="SERFR-CNN-32",
                            abbreviation="SERFR32", results=_results(np.random.default_rng(0)),
                            config=styled)  # fmt: skip
    assert yaml.safe_load(again.read_text())["system"]["description"]["data_augmentation"] == (
        "mixup, frequency masking, time masking, frequency-wise MixStyle"
    )
    dev = meta["results"]["development_dataset"]
    assert set(dev["class_wise"]) == set(SCENE_CLASSES) and set(dev["device_wise"]) == set(
        ALL_DEVICES
    )
    assert all(set(v) == {"accuracy", "logloss"} for v in dev["class_wise"].values())
    todo = meta_placeholders(meta)
    assert "submission.authors[0].lastname" in todo and "system.energy_consumption.training" in todo
    # What the validator refuses, we refuse too.
    del meta["system"]["energy_consumption"]
    del meta["results"]["development_dataset"]["device_wise"]["s5"]["logloss"]
    meta["submission"]["label"] = "asc_keras_1"
    problems = meta_problems(meta)
    assert any("energy_consumption" in p for p in problems)
    assert any("device_wise.s5: missing logloss" in p for p in problems)
    assert any("submission.label" in p for p in problems)


def test_system_output_csv_is_in_the_official_layout(tmp_path):
    from asc_keras.evaluate.dcase_files import write_system_output

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(10), 5)
    path = write_system_output(
        [f"audio/{i}.wav" for i in range(5)], probs, tmp_path / "L_I_task1_1.output.csv"
    )
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == ["filename", "scene_label", *SCENE_CLASSES]
    df = pd.read_csv(path, sep="\t")
    assert list(df["filename"]) == [f"{i}.wav" for i in range(5)]
    assert list(df["scene_label"]) == [SCENE_CLASSES[i] for i in probs.argmax(1)]
    np.testing.assert_allclose(df[list(SCENE_CLASSES)].to_numpy(), probs, atol=5e-5)


REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
ORGANISERS_MODEL = REFERENCE / "dcase2022-task1-baseline" / "model_task1.tflite"


@pytest.mark.skipif(not ORGANISERS_MODEL.is_file(),
                    reason=f"{ORGANISERS_MODEL}: the organisers' baseline is absent (no ../shared)")  # fmt: skip
def test_predict_runs_the_organisers_baseline_on_their_own_features(tmp_path, capsys):
    """model_task1.tflite is recognised by its 40 x 51 input: each 1 s window gets the official
    features (mels first), and the probabilities come out in the official class order."""
    import shutil

    import soundfile as sf

    from asc_keras.cli import main
    from asc_keras.compress.tflite import TFLiteModel
    from asc_keras.config import SCENE_CLASSES
    from asc_keras.evaluate.predict import predict_files

    model = tmp_path / "model_task1.tflite"
    shutil.copy(ORGANISERS_MODEL, model)
    rng = np.random.default_rng(3)
    y = rng.normal(0, 0.05, 3 * 44100) + 0.3 * np.sin(
        2 * np.pi * 300 * np.arange(3 * 44100) / 44100
    )
    sf.write(tmp_path / "a.wav", y.astype(np.float32), 44100, subtype="FLOAT")
    (r,) = predict_files(model, [tmp_path / "a.wav"])
    windows = [y[s : s + 44100].astype(np.float32) for s in (0, 44100, 88200)]
    ref = TFLiteModel(ORGANISERS_MODEL).predict(
        np.stack([_official_baseline_features(w) for w in windows])
    )
    assert r.classes == SCENE_CLASSES and len(r.windows) == 3
    # Equal to one step of its int8 softmax (1/256; the file dequantises its output to float):
    # features equal to 1e-4 can still fall on either side of an int8 input step now and then.
    np.testing.assert_allclose(r.probabilities, ref.mean(0), atol=1 / 256)
    assert np.abs(np.asarray(r.probabilities) - ref.mean(0)).mean() < 1e-3
    assert main(["predict", str(model), str(tmp_path / "a.wav"), "--features", "dcase2022-baseline",
                 "--format", "json"]) == 0  # fmt: skip
    assert list(json.loads(capsys.readouterr().out)[0]["probabilities"]) == list(SCENE_CLASSES)
