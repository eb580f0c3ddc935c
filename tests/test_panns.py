"""PANNs' AudioSet MobileNetV2 into Keras without PyTorch: both torch.save formats, outputs equal to
PyTorch's from log-mels and from the waveform through PANNs' own front end (fixtures made by
tools/make_panns_fixture.py with real PyTorch and torchlibrosa), refusals, the teacher and the
front end it is fed."""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asc_keras.models.panns_import import load_panns_state, load_panns_tagger, panns_teacher
from asc_keras.models.torch_checkpoint import CheckpointError, read_torch_checkpoint, state_dict

FIXTURES = Path(__file__).parent / "fixtures"
LEGACY, ZIP = (
    FIXTURES / "panns_mobilenetv2_tiny_legacy.pth",
    FIXTURES / "panns_mobilenetv2_tiny_zip.pth",
)


@pytest.mark.parametrize("path", [LEGACY, ZIP], ids=["legacy", "zip"])
def test_import_reproduces_pytorch_outputs(path):
    io = np.load(FIXTURES / "panns_mobilenetv2_tiny_io.npz")
    model, report = load_panns_tagger(path)
    out = model.predict(io["logmel"][..., None], verbose=0)
    np.testing.assert_allclose(out, io["clipwise_output"], atol=1e-5)
    assert report["sizes"] == {"width_mult": 0.0625, "last_channel": 32, "fc1_units": 16,
                               "audioset_classes": 527, "mels": 64}  # fmt: skip
    # Every tensor but BatchNorm's step counters found its place.
    sd = state_dict(path)
    assert report["loaded_tensors"] == sum(not k.endswith("num_batches_tracked") for k in sd)


def test_both_formats_hold_the_same_tensors():
    a, b = state_dict(LEGACY), state_dict(ZIP)
    assert list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)
    assert read_torch_checkpoint(LEGACY)["iteration"] == 0  # the rest of PANNs' checkpoint dict


def test_a_checkpoint_naming_other_code_is_refused_unexecuted(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    bad = tmp_path / "evil.pth"
    with open(bad, "wb") as f:  # the legacy layout: magic, protocol, sys info, object, keys
        for part in (0x1950A86A20F9469CFC6C, 1001, {}, {"model": Payload()}, []):
            pickle.dump(part, f)
    with pytest.raises(CheckpointError, match="refusing to load global pathlib"):
        read_torch_checkpoint(bad)
    assert not marker.exists()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(LEGACY.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="truncated"):
        read_torch_checkpoint(truncated)


def test_missing_extra_and_misshaped_tensors_are_refused_before_loading():
    model, _ = load_panns_tagger(LEGACY)
    before = [w.copy() for w in model.get_weights()]
    sd = state_dict(LEGACY)
    broken = dict(sd)
    del broken["features.3.conv.3.weight"]
    broken["fc2.weight"] = np.zeros((3, 3), np.float32)
    broken["fc1.weight"] = np.zeros((7, 7), np.float32)
    with pytest.raises(CheckpointError) as e:
        load_panns_state(model, broken)
    msg = str(e.value)
    assert "nothing loaded" in msg and "features.3.conv.3.weight" in msg and "fc2.weight" in msg
    assert "fc1: shapes" in msg
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_panns_front_end_from_the_waveform_matches_pytorch_and_torchlibrosa():
    """A raw 32 kHz waveform through PANNs' own front end (torchlibrosa, in the fixture) and the
    network in PyTorch, and through asc_keras' PANNS_FEATURES and the Keras models: the log-mels,
    the tagger's output and the teacher's ``fc1`` embedding (bn0 kept) agree to 1e-4."""
    from asc_keras.features.logmel import PANNS_FEATURES, logmel
    from asc_keras.models.common import BN_MOMENTUM

    io = np.load(FIXTURES / "panns_mobilenetv2_tiny_audio.npz")
    assert int(io["sample_rate"]) == PANNS_FEATURES.sample_rate == 32000
    mels = logmel(io["waveform"], PANNS_FEATURES)
    assert mels.shape == io["logmel"].shape == (2, 101, 64)  # 1 s: 1 + 32000 // 320 frames
    assert np.abs(mels - io["logmel"]).max() <= 1e-4  # dB
    tagger, _ = load_panns_tagger(ZIP)
    assert np.abs(tagger.predict(mels[..., None], verbose=0) - io["clipwise_output"]).max() <= 1e-4
    teacher, report = panns_teacher(ZIP, bn_momentum=BN_MOMENTUM)  # the default: PANNs' front end
    assert report["front_end"] == "panns" and report["reinitialised"] == []
    assert teacher.input_shape == (None, None, 64, 1)
    for a, b in zip(teacher.get_layer("backbone").get_layer("bn0").get_weights(),
                    tagger.get_layer("backbone").get_layer("bn0").get_weights()):  # fmt: skip
        np.testing.assert_array_equal(a, b)  # bn0 as the checkpoint has it
    from asc_keras._runtime import keras

    embed = keras.Model(teacher.input, teacher.get_layer("fc1").output)
    assert (
        np.abs(np.asarray(embed(mels[..., None], training=False)) - io["embedding"]).max() <= 1e-4
    )


def test_teacher_from_the_checkpoint_and_the_cli(tmp_path):
    from asc_keras.cli import main
    from asc_keras.config import TeacherConfig
    from asc_keras.features.logmel import PANNS_FEATURES
    from asc_keras.models.panns_import import resolved_front_end, teacher_features
    from asc_keras.training.teachers import build_teacher

    teacher, report = panns_teacher(LEGACY)
    tagger, _ = load_panns_tagger(LEGACY)
    assert teacher.output_shape == (None, 10) and report["replaced"]["fc_audioset"].startswith(
        "a new 10-class"
    )
    np.testing.assert_array_equal(
        teacher.get_layer("fc1").get_weights()[0], tagger.get_layer("fc1").get_weights()[0]
    )
    x = (
        np.random.default_rng(0).normal(size=(2, 1001, 64, 1)).astype(np.float32)
    )  # 10 s, PANNs' bands
    assert teacher.predict(x, verbose=0).shape == (2, 10)
    out = tmp_path / "teacher.keras"
    # The import-panns command's one real subprocess: the installed module entry point.
    r = subprocess.run([sys.executable, "-m", "asc_keras.cli", "import-panns", str(LEGACY), str(out)],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0 and "wrote" in r.stdout, r.stderr[-2000:]
    for pretrained in (LEGACY, out):  # the .pth itself, or what import-panns wrote
        cfg = TeacherConfig(pretrained_mobilenetv2=str(pretrained))
        assert resolved_front_end(cfg) == "panns"  # 'auto': PANNs' own front end
        assert teacher_features("mobilenetv2", cfg, None) == PANNS_FEATURES
        assert teacher_features("cnn", cfg, "the run's") == "the run's"
        t = build_teacher("mobilenetv2", cfg)
        for name in ("backbone", "fc1"):  # the imported weights, bn0 included (each head is new)
            for a, b in zip(t.get_layer(name).get_weights(), teacher.get_layer(name).get_weights()):
                np.testing.assert_array_equal(a, b)
        assert t.predict(x, verbose=0).shape == (2, 10)
    # A file written for one front end is refused for the other, by name, with the fix.
    with pytest.raises(ValueError, match="import-panns --front-end report"):
        resolved_front_end(
            TeacherConfig(pretrained_mobilenetv2=str(out), mobilenetv2_front_end="report")
        )
    assert (
        main(["import-panns", "--front-end", "report", str(LEGACY), str(tmp_path / "r.keras")]) == 0
    )
    report_file = TeacherConfig(pretrained_mobilenetv2=str(tmp_path / "r.keras"))
    assert resolved_front_end(report_file) == "report"
    old = build_teacher("mobilenetv2", report_file)  # the report's mels pooled to 64, bn0 anew
    gamma, beta, mean, var = old.get_layer("backbone").get_layer("bn0").get_weights()
    assert (gamma == 1).all() and (beta == 0).all() and (mean == 0).all() and (var == 1).all()
    x256 = (
        np.random.default_rng(0).normal(size=(2, 281, 256, 1)).astype(np.float32)
    )  # 10 s, 256 mels
    assert old.input_shape == (None, None, 256, 1) and old.predict(x256, verbose=0).shape == (2, 10)
    with pytest.raises(ValueError, match="unknown front end 'dcase'"):
        panns_teacher(LEGACY, front_end="dcase")
    with pytest.raises(ValueError, match="'panns' needs a PANNs checkpoint"):
        resolved_front_end(dataclasses.replace(report_file, mobilenetv2_front_end="panns"))
    assert resolved_front_end(TeacherConfig(pretrained_mobilenetv2=str(LEGACY), mobilenetv2_front_end="report")) \
        == "report"  # fmt: skip
    assert main(["import-panns", str(tmp_path / "missing.pth"), str(out)]) == 2
