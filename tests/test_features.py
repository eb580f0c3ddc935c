"""Log-mel features: shape, mel formula, librosa and TensorFlow parity, cache atomicity and resume."""

from __future__ import annotations

import json
import os
import shutil

import librosa
import numpy as np
import pytest
import soundfile as sf

from asc_keras.config import FeatureConfig
from asc_keras.data import DataError
from asc_keras.features.cache import FeatureCache, extract_features
from asc_keras.features.logmel import logmel
from asc_keras.features.mel import hz_to_mel, mel_filterbank, mel_to_hz


def test_report_mel_formula_hand_values():
    # mel(f) = 1000/log2 * log(1 + f/1000): 1000 Hz -> 1000 mel; 3000 Hz -> 2000; 7000 Hz -> 3000.
    np.testing.assert_allclose(
        hz_to_mel([0, 1000, 3000, 7000], "report"), [0, 1000, 2000, 3000], atol=1e-9
    )
    np.testing.assert_allclose(hz_to_mel(8000, "report"), 1000 * np.log2(9), rtol=1e-12)
    np.testing.assert_allclose(hz_to_mel(700, "htk"), 2595 * np.log10(2), rtol=1e-12)
    np.testing.assert_allclose(
        hz_to_mel([500, 1000, 4000], "slaney"), librosa.hz_to_mel([500, 1000, 4000])
    )
    f = np.linspace(0, 8000, 17)
    for s in ("report", "htk", "slaney"):
        np.testing.assert_allclose(mel_to_hz(hz_to_mel(f, s), s), f, atol=1e-6)


@pytest.mark.parametrize("scale,htk", [("htk", True), ("slaney", False)])
def test_filterbank_equals_librosa(scale, htk):
    ours = mel_filterbank(16000, 2048, 256, scale=scale, norm="slaney")
    ref = librosa.filters.mel(sr=16000, n_fft=2048, n_mels=256, htk=htk, norm="slaney")
    np.testing.assert_allclose(ours, ref, atol=1e-7)


def test_report_filterbank_centres_follow_eq1():
    fb = mel_filterbank(16000, 2048, 256, scale="report", norm=None)
    assert fb.shape == (256, 1025) and (fb.sum(axis=1) > 0).all()  # no empty band at 256 mels
    centres = np.argmax(fb, axis=1) * 16000 / 2048
    expected = mel_to_hz(np.linspace(0, hz_to_mel(8000), 258)[1:-1], "report")
    assert np.abs(centres - expected).max() <= 16000 / 2048  # within one FFT bin


def test_shape_1s_and_10s():
    cfg = FeatureConfig()
    assert cfg.n_frames() == 28 and cfg.n_frames(10.0) == 309
    y = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    assert logmel(y).shape == (28, 256)
    assert logmel(np.stack([y, y])).shape == (2, 28, 256)
    assert logmel(np.zeros(160000, np.float32)).shape == (309, 256)
    np.testing.assert_allclose(logmel(np.zeros(16000, np.float32)), np.log(1e-6), rtol=1e-6)


def test_numpy_logmel_equals_librosa():
    cfg = FeatureConfig(mel_scale="slaney")
    y = np.random.default_rng(1).normal(0, 0.1, 16000).astype(np.float32)
    ref = librosa.feature.melspectrogram(
        y=y,
        sr=16000,
        n_fft=2048,
        hop_length=512,
        center=False,
        power=2.0,
        n_mels=256,
        htk=False,
        norm="slaney",
        window="hann",
    )
    np.testing.assert_allclose(logmel(y, cfg), np.log(ref.T + 1e-6), atol=2e-4)


def test_tf_layer_matches_numpy():
    from asc_keras.features.layer import LogMelSpectrogram

    cfg = FeatureConfig()
    rng = np.random.default_rng(2)
    y = (rng.normal(0, 0.1, (3, 16000)) * np.linspace(0, 1, 16000)).astype(np.float32)
    tf_out = np.asarray(LogMelSpectrogram(cfg)(y))
    ref = logmel(y, cfg)
    assert tf_out.shape == ref.shape == (3, 28, 256)
    # float32 FFTs differ in rounding; in the log domain bins with power > 1e-4 agree closely.
    loud = ref > np.log(1e-4)
    assert np.abs(tf_out - ref)[loud].max() < 1e-3
    assert np.abs(tf_out - ref).max() < 0.05


def test_cache_contents_match_direct_computation(clip_cache, tiny_dataset):
    assert clip_cache.features.shape == (len(tiny_dataset.clips), 28, 256)
    assert clip_cache.features.dtype == np.float16
    f = tiny_dataset.train["filename"].iloc[17]
    y = sf.read(tiny_dataset.audio_path(f), dtype="float32")[0]
    import soxr

    direct = logmel(soxr.resample(y, 44100, 16000, quality="HQ"))
    row = clip_cache.rows([f])[0]
    np.testing.assert_allclose(clip_cache.features[row].astype(np.float32), direct, atol=0.02)
    again = extract_features(
        tiny_dataset.root,
        list(tiny_dataset.clips["filename"]),
        FeatureConfig(),
        clip_cache.path.parent,
        workers=1,
        progress=False,
    )
    assert again.path == clip_cache.path  # reused, not recomputed


def test_recording_cache_has_309_frames(tiny_dataset, tmp_path):
    from asc_keras.data import rebuild_recordings

    recs, _ = rebuild_recordings(tiny_dataset.train)
    cache = extract_features(
        tiny_dataset.root,
        list(recs["files"][:4]),
        FeatureConfig(),
        tmp_path,
        name="recordings",
        workers=1,
        progress=False,
    )
    assert cache.features.shape == (4, 309, 256)


def test_cache_atomic_and_resumes_after_bad_file(tiny_dataset, tmp_path):
    """A corrupt file fails the run naming it, no valid-looking cache appears, and a re-run resumes."""
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset.root / "evaluation_setup", root / "evaluation_setup")
    files = list(tiny_dataset.clips["filename"][:300])
    (root / "audio").mkdir()
    for f in files:
        os.symlink(tiny_dataset.root / f, root / f)
    bad = files[250]
    os.unlink(root / bad)
    (root / bad).write_bytes(b"not a wav file")
    cfg = FeatureConfig()
    with pytest.raises(DataError, match=bad.split("/")[-1]):
        extract_features(root, files, cfg, tmp_path / "cache", workers=2, progress=False)
    dirs = [d for d in (tmp_path / "cache").iterdir() if d.name != ".locks"]
    assert len(dirs) == 1 and dirs[0].name.endswith(".partial")
    assert not (dirs[0] / "meta.json").exists()
    with pytest.raises(DataError):
        FeatureCache.open(dirs[0])
    done = np.load(dirs[0] / "done.npy")
    assert done.sum() == 299 and not done[250]
    # Poison a finished row: if the re-run recomputed finished rows it would overwrite it.
    feats = np.load(dirs[0] / "features.npy", mmap_mode="r+")
    feats[3] = 123.0
    feats.flush()
    del feats
    os.unlink(root / bad)
    os.symlink(tiny_dataset.root / bad, root / bad)
    cache = extract_features(root, files, cfg, tmp_path / "cache", workers=1, progress=False)
    assert not dirs[0].exists() and cache.path.name == dirs[0].name[: -len(".partial")]
    assert (cache.features[3] == 123.0).all()  # resumed: done rows untouched
    assert np.isfinite(cache.features[250]).all() and cache.features[250].std() > 0
    meta = json.loads((cache.path / "meta.json").read_text())
    assert meta["shape"] == [300, 28, 256]


def test_cache_warns_once_with_fixups(tmp_path, caplog):
    root = tmp_path / "d"
    (root / "audio").mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = []
    for i in range(4):
        n = f"audio/park-x-1-1-{i}-a.wav"
        data = rng.normal(0, 0.1, (48000, 2)) if i % 2 else rng.normal(0, 0.1, 44100)
        sf.write(root / n, data, 48000 if i % 2 else 44100)
        names.append(n)
    with caplog.at_level("WARNING", logger="asc_keras"):
        extract_features(root, names, FeatureConfig(), tmp_path / "c", workers=1, progress=False)
    msgs = [r.message for r in caplog.records if "audio repaired" in r.message]
    assert len(msgs) == 1 and "2 files downmixed" in msgs[0] and "2 files resampled" in msgs[0]
