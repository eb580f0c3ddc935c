"""Compression: prune + QAT on a tiny trained student, int8 TFLite, float-vs-int8 agreement,
complexity from the flatbuffer, prediction on odd audio and bad files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from asc_keras._runtime import import_tf_keras, tf
from asc_keras.cli import main
from asc_keras.compress.complexity import keras_complexity, tflite_complexity
from asc_keras.compress.tflite import calibration_rows
from asc_keras.config import CompressConfig, SystemConfig
from asc_keras.data.splits import ClipSplit
from asc_keras.distill.targets import SoftTargets


@pytest.fixture(scope="module")
def trained_student(tiny_student, tiny_splits):
    """The session's tiny student (width 8, trained by train_student), its training rows and labels."""
    train = tiny_splits[0]
    return tiny_student[0], train.rows, train.labels


def assert_int8_agrees(p_float, p_int8, min_clear: int, max_mean_difference: float) -> None:
    """The tiny student is barely trained, so near-ties are common; where the float model's top-1
    margin exceeds ~10 int8 output steps (1/256 each) the int8 model must agree."""
    top2 = np.sort(p_float, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 0.04
    assert clear.sum() >= min_clear, clear.sum()
    agree = (p_int8.argmax(1) == p_float.argmax(1))[clear].mean()
    assert agree > 0.9, agree
    assert np.abs(p_int8 - p_float).mean() < max_mean_difference


def test_student_fits_its_training_clips_well_above_chance(trained_student, clip_cache):
    """The models compressed below are learned ones.  Measured where it shows: the tiny set's 30
    training recordings are too few for a 1 s student to generalise to the evaluation fold (17,
    20, 17 % on seeds 42, 0, 1: chance), while its 600 training clips, clean, are 30-36 %."""
    from asc_keras.metrics import classification_metrics

    m, rows, labels = trained_student
    x = clip_cache.features[rows].astype(np.float32)[..., None]
    r = classification_metrics(labels, m.predict(x, verbose=0))
    # 10 classes: chance is 10 %; on 600 clips 25 % is about twelve standard errors above it.
    assert len(rows) == 600 and r["accuracy"] > 0.25, r["accuracy"]


def test_prune_qat_convert_and_agree(trained_student, clip_cache, tiny_dataset, tmp_path):
    from asc_keras.compress.ranges import activation_range_variables, measured_ranges
    from asc_keras.compress.tflite import TFLiteModel, convert_int8
    from asc_keras.compress.tfmot_compress import calibration_batches, prune_and_quantize
    from asc_keras.compress.twin import keras_float_twin

    m, rows, labels = trained_student
    cfg = SystemConfig(compress=CompressConfig(prune=True, target_sparsity=0.5, prune_steps=12, qat=True,
                                               qat_steps=4, qat_lr=1e-4, batch_size=32,
                                               bn_recalibration_batches=4))  # fmt: skip
    train = ClipSplit(
        clip_cache.features, rows, labels, np.array(["a"] * len(rows)), tuple(map(str, rows))
    )
    # Stored teacher logits: a confident, mostly right teacher.
    targets = SoftTargets(np.log(np.eye(10)[labels] * 0.9 + 0.01)[:, None, :], train.names, {})
    qat, info = prune_and_quantize(m, cfg, train, targets, verbose=0)
    assert info["sparsity_after_pruning"] > 0.4  # polynomial decay reached (about) the target
    assert info["sparsity"] > 0.4  # pruning preserved through QAT
    assert any("quant" in l.__class__.__name__.lower() for l in qat.layers)
    # The activation ranges it converts with are those of its final float weights on the clean
    # batches (not tfmot's initial [-6, 6] moved 4 % by 4 steps): ReLU outputs start at 0.
    ranges = activation_range_variables(qat)
    assert len(ranges) > 20 and ("logits", "output") in ranges
    final = keras_float_twin(qat, m, keras_module=import_tf_keras())
    clean = calibration_batches(train, 32, 4, cfg.seed + 1)
    for key, want in measured_ranges(final, clean, ranges, 4).items():
        got = [float(v.numpy()) for v in ranges[key]]
        np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=str(key))
        assert got[0] == 0.0 or not key[0].endswith("relu"), key
    ev_rows = clip_cache.rows(tiny_dataset.evaluate["filename"])
    ev_x = clip_cache.features[ev_rows].astype(np.float32)
    rep = clip_cache.features[calibration_rows(rows, 128)]
    path = tmp_path / "student_int8.tflite"
    qinfo = convert_int8(qat, rep, path)
    assert qinfo["input_dtype"] == "int8" and qinfo["output_dtype"] == "int8"
    assert json.loads(path.with_name(path.name + ".json").read_text())["input_scale"] > 0
    tfl = TFLiteModel(path)
    p_int8 = tfl.predict(ev_x)
    assert tfl.delegate == "xnnpack"  # the compressed int8 graph runs on XNNPACK, no fallback
    p_float = qat.predict(ev_x[..., None], verbose=0)
    assert p_int8.shape == (len(ev_x), 10)
    assert_int8_agrees(p_float, p_int8, min_clear=20, max_mean_difference=0.03)
    # Full integer: every tensor in the graph is int8 (biases int32), none float.
    c = tflite_complexity(path)
    assert c.tensor_types == {"INT8", "INT32"}, c.tensor_types
    assert c.macs == keras_complexity(m).macs
    assert c.params == keras_complexity(m).deployed_params


def test_activation_ranges_are_the_float_models_mean_batch_extremes():
    """Each QAT activation range becomes the mean over batches of min(x, 0) and max(x, 0) of the
    float model's tensor: a ReLU's output, a sigmoid's input (numbers worked out by hand)."""
    from asc_keras.compress.ranges import activation_range_variables, calibrate_activation_ranges
    from asc_keras.compress.tfmot_compress import apply_qat

    tfk = import_tf_keras()
    inp = tfk.Input((2,), name="x")
    h = tfk.layers.ReLU(name="act")(tfk.layers.Dense(2, name="lin")(inp))
    m = tfk.Model(inp, tfk.layers.Dense(2, activation="sigmoid", name="gate")(h))
    m.get_layer("lin").set_weights([np.eye(2, dtype="f4"), np.zeros(2, "f4")])
    m.get_layer("gate").set_weights([np.array([[1, 0], [0, -3]], "f4"), np.array([0.5, 0], "f4")])
    qat = apply_qat(m, pruned=False)
    ranges = activation_range_variables(qat)
    assert {k: [float(v.numpy()) for v in r] for k, r in ranges.items()} == {
        ("act", "output"): [-6.0, 6.0], ("gate", "linear"): [-6.0, 6.0]}  # fmt: skip
    x = np.array([[1, -3], [2, 5], [-1, 1], [4, 0.5]], "f4")
    assert (
        calibrate_activation_ranges(qat, m, tf.data.Dataset.from_tensor_slices(x).batch(2), 9) == 2
    )
    # ReLU outputs: batch maxima 5 and 4; sigmoid inputs: batch 1 (1.5, 0; 2.5, -15), batch 2
    # (0.5, -3; 4.5, -1.5): minima -15 and -3, maxima 2.5 and 4.5.
    assert [float(v.numpy()) for v in ranges[("act", "output")]] == [0.0, 4.5]
    assert [float(v.numpy()) for v in ranges[("gate", "linear")]] == [-9.0, 3.5]


def test_post_training_quantization_quick_path(
    trained_student, clip_cache, tiny_dataset, tmp_path, caplog
):
    from asc_keras.compress.tflite import TFLiteModel, convert_int8
    from asc_keras.metrics import classification_metrics

    m, rows, _ = trained_student
    path = tmp_path / "ptq.tflite"
    convert_int8(m, clip_cache.features[calibration_rows(rows, 256)], path)
    ev = tiny_dataset.evaluate
    x = clip_cache.features[clip_cache.rows(ev["filename"])].astype(np.float32)
    ptq = TFLiteModel(path)
    p_int8 = ptq.predict(x)
    q = classification_metrics(ev["label"], p_int8, ev["device"])
    # The post-training-quantised SE graph runs on XNNPACK too: this student has an SE 'reduce'
    # unit that stays at zero on the calibration data, whose empty range XNNPACK refused before
    # it was widened (compress.tflite.widen_empty_ranges).
    assert ptq.delegate == "xnnpack" and "XNNPACK refused" not in caplog.text
    # Measured: 137 clips with a clear margin, 96 % of them agreeing, mean |difference| 0.008.
    p_float = m.predict(x[..., None], verbose=0)
    assert_int8_agrees(p_float, p_int8, min_clear=100, max_mean_difference=0.02)
    assert set(q["per_device"]) == set(ev["device"])
    tc, kc = tflite_complexity(path), keras_complexity(m)
    assert (tc.params, tc.macs) == (kc.deployed_params, kc.macs)


def test_tflite_complexity_rejects_non_tflite(tmp_path):
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"definitely not a flatbuffer")
    with pytest.raises(ValueError, match="x.tflite: not a TFLite flatbuffer"):
        tflite_complexity(bad)


@pytest.fixture(scope="module")
def exported(trained_student, tmp_path_factory, clip_cache):
    from asc_keras.compress.tflite import convert_int8

    m, rows, _ = trained_student
    d = tmp_path_factory.mktemp("export")
    m.save(d / "student.keras")
    convert_int8(m, clip_cache.features[calibration_rows(rows, 64)], d / "student_int8.tflite")
    return d


def test_predict_odd_files_and_corrupt(exported, tmp_path):
    from asc_keras.evaluate.predict import predict_files

    rng = np.random.default_rng(0)
    sf.write(tmp_path / "long_stereo_48k.wav", rng.normal(0, 0.1, (48000 * 3 + 7000, 2)), 48000)
    sf.write(tmp_path / "short_8k.flac", rng.normal(0, 0.1, 5000), 8000)
    sf.write(tmp_path / "mono_22k.ogg", rng.normal(0, 0.1, 22050 * 2), 22050)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    files = [
        tmp_path / n
        for n in ("long_stereo_48k.wav", "short_8k.flac", "corrupt.wav", "mono_22k.ogg")
    ]
    for model in ("student_int8.tflite", "student.keras"):
        res = predict_files(exported / model, files, hop_seconds=0.5)
        by = {r.path.split("/")[-1]: r for r in res}
        assert by["corrupt.wav"].error and "corrupt.wav" in by["corrupt.wav"].error
        # 3.15 s, hop 0.5: full windows start at 0..2.0, one zero-padded tail window at 2.5
        assert [w["start_s"] for w in by["long_stereo_48k.wav"].windows] == [
            0.0,
            0.5,
            1.0,
            1.5,
            2.0,
            2.5,
        ]
        assert len(by["short_8k.flac"].windows) == 1
        for r in (by["long_stereo_48k.wav"], by["short_8k.flac"], by["mono_22k.ogg"]):
            assert r.error is None and abs(sum(r.probabilities) - 1) < 0.02 and r.scene
        # 5000 samples at 8 kHz = 0.625 s: padded by 0.375 s, and said so; and 8 kHz holds
        # nothing above 4 kHz, where the 16 kHz model's features reach 8 kHz.
        assert by["short_8k.flac"].warnings == [
            f"{files[1]}: recorded at 8000 Hz, it holds nothing above 4000 Hz where the model's "
            "features reach 8000 Hz: the prediction may be biased (record at 16000 Hz or more)",
            f"{files[1]}: 0.62 s is shorter than the model's 1.00 s window: padded with 0.38 s of silence",
        ]
        assert by["long_stereo_48k.wav"].warnings == [] and by["mono_22k.ogg"].warnings == []


def test_predict_refuses_non_finite_audio_and_warns_on_silence(exported, tmp_path, capsys):
    from asc_keras.evaluate.predict import predict_files

    rng = np.random.default_rng(2)
    y = rng.normal(0, 0.1, 44100 * 2)
    y[1000:1003] = np.nan
    sf.write(tmp_path / "nan.wav", y, 44100, subtype="FLOAT")
    sf.write(tmp_path / "zeros.wav", np.zeros(44100 * 2), 44100)
    model = str(exported / "student_int8.tflite")
    assert main(["predict", model, str(tmp_path / "nan.wav")]) == 1
    err = capsys.readouterr().err
    assert "nan.wav: audio is not finite (3 of 88200 samples" in err
    assert "CSV" not in err and "Check the recording" in err
    assert main(["predict", model, str(tmp_path / "zeros.wav")]) == 0
    assert "zeros.wav: silent or near-silent (peak -inf dBFS)" in capsys.readouterr().err
    # A float file of integer sample values (a tone at 32767: +90 dBFS) is far louder than any
    # training clip: classified, and warned about; one with float headroom (+3.5 dBFS) is not.
    tone = np.sin(2 * np.pi * 440 * np.arange(44100 * 2) / 44100)
    sf.write(tmp_path / "as_int.wav", 32767 * tone, 44100, subtype="FLOAT")
    sf.write(tmp_path / "headroom.wav", 1.5 * tone, 44100, subtype="FLOAT")
    by = {Path(r.path).name: r for r in predict_files(model, [tmp_path / "as_int.wav",
                                                           tmp_path / "headroom.wav"])}  # fmt: skip
    assert by["as_int.wav"].scene and by["as_int.wav"].warnings == [
        f"{tmp_path / 'as_int.wav'}: peak +90 dBFS, above full scale (float samples scaled by "
        "mistake?): far louder than any training recording, the prediction may be off (rescale "
        "it to at most 1.0, 0 dBFS)"
    ]
    assert by["headroom.wav"].scene and by["headroom.wav"].warnings == []


def test_dataset_audio_that_is_not_finite_is_refused_by_name(tmp_path):
    from asc_keras.data.audio import AudioFixes, load_audio
    from asc_keras.data.errors import AudioError

    y = np.full(44100, 0.1)
    y[5] = np.inf
    sf.write(tmp_path / "inf.wav", y, 44100, subtype="FLOAT")
    with pytest.raises(
        AudioError, match=r"inf.wav: audio is not finite .* remove it from the CSV files"
    ):
        load_audio(tmp_path / "inf.wav", 16000)
    sf.write(tmp_path / "quiet.wav", np.full(44100, 1e-7), 44100, subtype="FLOAT")
    fixes = AudioFixes()
    load_audio(tmp_path / "quiet.wav", 16000, fixes=fixes)
    assert fixes.counts["silent"] == 1 and "1 file silent" in fixes.summary()
    sf.write(tmp_path / "loud.wav", np.full(44100, 300.0), 44100, subtype="FLOAT")
    sf.write(tmp_path / "hot.wav", np.full(44100, 1.5), 44100, subtype="FLOAT")
    load_audio(tmp_path / "loud.wav", 16000, fixes=fixes)
    load_audio(tmp_path / "hot.wav", 16000, fixes=fixes)
    assert fixes.counts["over full scale"] == 1
    assert f"1 file over full scale (e.g. {tmp_path / 'loud.wav'})" in fixes.summary()


def test_predict_cli_formats_and_exit_codes(exported, tmp_path, capsys):
    rng = np.random.default_rng(1)
    sf.write(tmp_path / "a.wav", rng.normal(0, 0.1, 44100 * 2), 44100)
    (tmp_path / "bad.wav").write_bytes(b"nope")
    model = str(exported / "student_int8.tflite")
    # The predict command's one real subprocess: the installed module entry point.
    cmd = [
        sys.executable,
        "-m",
        "asc_keras.cli",
        "predict",
        model,
        str(tmp_path / "a.wav"),
        "--format",
        "json",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out[0]["file"].endswith("a.wav") and len(out[0]["probabilities"]) == 10
    argv = ["predict", model, str(tmp_path / "a.wav"), str(tmp_path / "bad.wav"), "--format", "csv",
            "--output", str(tmp_path / "o.csv"), "--windows"]  # fmt: skip
    assert main(argv) == 1 and "bad.wav" in capsys.readouterr().err
    lines = (tmp_path / "o.csv").read_text().strip().splitlines()
    assert lines[0].startswith("file,window_start_s,scene,airport") and len(lines) == 1 + 1 + 2
    wrong = tmp_path / "model.tflite"
    wrong.write_bytes(b"not a model")
    assert main(["predict", str(wrong), str(tmp_path / "a.wav")]) == 2
    assert "model.tflite: not a TFLite model" in capsys.readouterr().err


def test_last_epoch_validation_is_the_returned_students_score(tiny_student, tiny_splits):
    """Validation during training uses the weights' own BatchNorm statistics: the learning curve's
    last point is exactly the returned model's accuracy on the same clips; a step budget gives
    its rounds of equal steps."""
    m, run_dir, cfg = tiny_student
    ev = tiny_splits[1]
    assert m.get_layer("stem_bn").momentum == pytest.approx(0.9)
    hist = pd.read_csv(run_dir / "history.csv")
    assert len(hist) == cfg.optim.rounds == 4
    probs = m.predict(ev.inputs(), verbose=0)
    acc = float((probs.argmax(1) == ev.labels).mean())
    assert abs(hist["val_accuracy"].iloc[-1] - acc) < 1e-6, (hist["val_accuracy"].tolist(), acc)
    done = json.loads((run_dir / "done.json").read_text())
    assert (done["rounds"], done["steps"]) == (4, 80)


def test_predicts_keras_runner_matches_model_predict_across_a_partial_batch(exported):
    """``asc-keras predict``'s float path: batches of 64 through one compiled call, the last one
    partial; the same probabilities as ``model.predict``, in order; no windows, no rows."""
    from asc_keras.evaluate.predict import keras_runner
    from asc_keras.models.common import load_model_file

    model = load_model_file(exported / "student.keras")
    x = np.random.default_rng(3).normal(-5, 2, (70,) + model.input_shape[1:3]).astype(np.float32)
    run = keras_runner(model)
    np.testing.assert_allclose(run(x), model.predict(x[..., None], verbose=0), atol=1e-6)
    assert run(x[:0]).shape == (0, 10)
