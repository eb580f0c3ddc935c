"""Runs that share a work folder, kill -9 during feature extraction, a truncated cache."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from asc_keras.config import FeatureConfig
from asc_keras.features.cache import FeatureCache, extract_features

SCRIPT = textwrap.dedent(
    """
    import sys
    from asc_keras.config import FeatureConfig
    from asc_keras.data import read_tau
    from asc_keras.features.cache import extract_features
    ds = read_tau(sys.argv[1])
    files = list(ds.clips["filename"])[: int(sys.argv[3])]
    c = extract_features(ds.root, files, FeatureConfig(), sys.argv[2], workers=1, progress=False)
    print("CACHE", c.path.name, float(c.features[:].astype("float64").sum()))
    """
)


def _start(tmp_path, tiny_tau, cache_root, n):
    script = tmp_path / "extract.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([sys.executable, str(script), str(tiny_tau), str(cache_root), str(n)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip


def test_two_runs_share_one_work_folder(tiny_tau, tmp_path):
    """The second run, started while the first extracts, waits for it, then reuses its cache."""
    first = _start(tmp_path, tiny_tau, tmp_path / "work", 900)
    deadline = time.time() + 120
    while not list((tmp_path / "work").glob("*.partial/done.npy")) and time.time() < deadline:
        time.sleep(0.05)  # the first run holds the lock once its partial cache exists
    second = _start(tmp_path, tiny_tau, tmp_path / "work", 900)
    outs = [p.communicate(timeout=300) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, [o[1][-1500:] for o in outs]
    lines = [next(line for line in o[0].splitlines() if line.startswith("CACHE")) for o in outs]
    assert lines[0] == lines[1]  # the same cache, the same values
    assert "waiting for another run" in outs[1][0] and "waiting" not in outs[0][0]
    caches = [d for d in (tmp_path / "work").iterdir() if d.name != ".locks"]
    assert len(caches) == 1 and not caches[0].name.endswith(".partial")
    assert FeatureCache.open(caches[0]).features.shape == (900, 28, 256)


def test_kill_minus_9_during_extraction_then_resume_gives_the_same_cache(
    tiny_tau, tiny_dataset, tmp_path
):
    files = list(tiny_dataset.clips["filename"])[:600]
    proc = _start(tmp_path, tiny_tau, tmp_path / "killed", 600)
    partial = None
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once some chunks (not all) are written
        found = list((tmp_path / "killed").glob("*.partial/done.npy"))
        if found:
            done = np.load(found[0])
            if 0 < done.sum() < len(done):
                partial = found[0].parent
                break
        time.sleep(0.05)
    assert partial is not None, "extraction finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = int(np.load(partial / "done.npy").sum())
    resumed = extract_features(tiny_dataset.root, files, FeatureConfig(), tmp_path / "killed", workers=1,
                               progress=False)  # fmt: skip
    fresh = extract_features(tiny_dataset.root, files, FeatureConfig(), tmp_path / "fresh", workers=1,
                             progress=False)  # fmt: skip
    assert 0 < before < 600 and not partial.exists()
    np.testing.assert_array_equal(resumed.features[:], fresh.features[:])


@pytest.mark.parametrize("damage", ["empty", "cut short", "another length", "a pickle"])
def test_a_partial_cache_with_a_damaged_done_mask_starts_afresh(tiny_dataset, tmp_path, damage):
    """A run killed while it created its partial cache (or a damaged disk) leaves a done mask
    that cannot be read as one; the next run rebuilds the partial instead of failing on it."""
    files = list(tiny_dataset.clips["filename"])[:32]
    good = extract_features(tiny_dataset.root, files, FeatureConfig(), tmp_path / "good", workers=1,
                            progress=False)  # fmt: skip
    partial = tmp_path / "work" / (good.path.name + ".partial")
    shutil.copytree(good.path, partial)
    (partial / "meta.json").unlink()
    np.save(partial / "mask.npy", np.ones(len(files), dtype=bool))
    mask = (partial / "mask.npy").read_bytes()
    (partial / "done.npy").write_bytes({
        "empty": b"",
        "cut short": mask[: len(mask) // 2],
        "another length": mask[:-1].replace(b"(32,)", b"(31,)"),
        "a pickle": b"\x93NUMPY" + mask[6:].replace(b"'|b1'", b"'|O' "),
    }[damage])  # fmt: skip
    feats = np.load(partial / "features.npy", mmap_mode="r+")
    feats[:] = 7.0  # rows a resumed partial would keep; a fresh one overwrites them all
    feats.flush()
    del feats
    again = extract_features(tiny_dataset.root, files, FeatureConfig(), tmp_path / "work", workers=1,
                             progress=False)  # fmt: skip
    assert again.path.name == good.path.name and not partial.exists()
    np.testing.assert_array_equal(np.array(again.features), np.array(good.features))


def test_a_truncated_cache_is_detected_and_rebuilt(tiny_dataset, tmp_path, caplog):
    files = list(tiny_dataset.clips["filename"])[:64]
    cache = extract_features(
        tiny_dataset.root, files, FeatureConfig(), tmp_path, workers=1, progress=False
    )
    good = np.array(cache.features)
    path = cache.path
    del cache
    data = (path / "features.npy").read_bytes()
    (path / "features.npy").write_bytes(data[: len(data) // 2])  # a disk that filled up
    with pytest.raises(Exception, match="truncated"):
        FeatureCache.open(path)
    with caplog.at_level("WARNING", logger="asc_keras"):
        again = extract_features(
            tiny_dataset.root, files, FeatureConfig(), tmp_path, workers=1, progress=False
        )
    assert any(
        "truncated" in r.message and "extracting it again" in r.message for r in caplog.records
    )
    np.testing.assert_array_equal(np.array(again.features), good)
    assert json.loads((path / "meta.json").read_text())["shape"] == [64, 28, 256]


def _damage(path, how: str) -> str:
    """Damage one clip: NaN samples, or cut to 3,000 bytes (the header and a few ms of audio)."""
    import soundfile as sf

    if how == "truncated":
        path.write_bytes(path.read_bytes()[:3000])
        return "truncated or damaged"
    y, rate = sf.read(path)
    y[100:110] = np.nan
    path.unlink()
    sf.write(path, y, rate, subtype="FLOAT")
    return "audio is not finite"


@pytest.mark.parametrize("how", ["nan", "truncated"])
def test_damaged_clips_stop_the_run_before_training_unless_skipped(tiny_dataset, tmp_path, how):
    """A clip with NaN samples, or one cut far short of 1 s: the features stage stops with every
    bad clip listed; with --skip-bad-audio it is left out of the splits (and its recording from
    the teachers').  A short clip is never padded into a second of silence and trained on."""
    import dataclasses
    import shutil

    from asc_keras.config import SystemConfig
    from asc_keras.data import DataError, read_tau
    from asc_keras.stages.shared import RunPlace, features_stage

    root = tmp_path / "data"
    shutil.copytree(tiny_dataset.root, root, symlinks=True)
    bad = tiny_dataset.evaluate["filename"].iloc[5]
    (root / bad).unlink()  # a real file in place of the link
    shutil.copy(tiny_dataset.root / bad, root / bad)
    why = _damage(root / bad, how)
    ds = read_tau(root)
    cfg = SystemConfig()
    cfg = dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, enabled=False))
    place = RunPlace(tmp_path / "out", tmp_path / "work", root, verbose=0)
    with pytest.raises(DataError, match=r"1 item\(s\) could not be read.*--skip-bad-audio") as e:
        features_stage(cfg, place, ds)
    assert f"{bad}: " in str(e.value) and why in str(e.value)
    _, splits, skipped = features_stage(cfg, dataclasses.replace(place, skip_bad_audio=True), ds)
    assert skipped == [bad] and bad not in splits.evaluate.names
    assert len(splits.evaluate) == len(ds.evaluate) - 1 and len(splits.train) == len(ds.train)
    with pytest.raises(DataError, match="--skip-bad-audio"):  # the completed cache still knows
        features_stage(cfg, place, ds)


def test_a_clip_a_few_samples_short_is_padded_and_counted(tmp_path):
    import soundfile as sf

    from asc_keras.data import AudioError, AudioFixes, load_audio

    path = tmp_path / "clip.wav"
    sf.write(path, np.full(44100 - 300, 0.1, np.float32), 44100)  # 7 ms short: an export's rounding
    fixes = AudioFixes()
    y = load_audio(path, 16000, duration=1.0, fixes=fixes, min_fraction=0.9)
    assert y.shape == (16000,) and fixes.counts["padded"] == 1
    sf.write(path, np.full(44100 // 2, 0.1, np.float32), 44100)  # half a clip: damaged
    with pytest.raises(AudioError, match="0.500 s of audio where every clip lasts 1 s"):
        load_audio(path, 16000, duration=1.0, fixes=fixes, min_fraction=0.9)


def test_kill_minus_9_during_teacher_training_then_resume(tmp_path):
    """A teacher killed after its first epoch resumes from its backup: three epochs in all, none
    repeated or lost, then its final model and evaluation (the small CNN: the resumption is the
    same for all three teachers)."""
    import pandas as pd

    script = tmp_path / "teacher.py"
    script.write_text(
        textwrap.dedent("""
        import os, signal, sys, threading, time
        from pathlib import Path
        import numpy as np
        from asc_keras.config import SystemConfig, TeacherConfig
        from asc_keras.data.splits import RecordingSplit
        from asc_keras.training.teachers import train_teacher
        run_dir, kill = Path(sys.argv[1]), sys.argv[2] == "kill"
        rng = np.random.default_rng(0)
        feats = rng.normal(size=(24, 28, 256)).astype(np.float16)
        labels, devices, names = np.arange(24) % 10, np.array(["a"] * 24), tuple(map(str, range(24)))
        train = RecordingSplit(feats, np.arange(16), labels[:16], devices[:16], names[:16])
        val = RecordingSplit(feats, np.arange(16, 24), labels[16:], devices[16:], names[16:])
        cfg = SystemConfig(teachers=TeacherConfig(names=("cnn",), epochs=3, batch_size=8, cnn_width=4))
        def killer():  # a hard crash once the first epoch is logged (its backup is written first)
            log = run_dir / "train" / "history.csv"
            while not (log.is_file() and len(log.read_text().splitlines()) >= 2):
                time.sleep(0.02)
            os.kill(os.getpid(), signal.SIGKILL)
        if kill:
            threading.Thread(target=killer, daemon=True).start()
        model, metrics = train_teacher("cnn", cfg, train, val, run_dir=run_dir, verbose=0)
        print("DONE", round(metrics["micro_accuracy"], 6))
    """)
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    run_dir = tmp_path / "teacher"
    killed = subprocess.run([sys.executable, str(script), str(run_dir), "kill"], capture_output=True, text=True,
                            env=env, timeout=300)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL and not (run_dir / "final.keras").exists()
    resumed = subprocess.run([sys.executable, str(script), str(run_dir), "resume"], capture_output=True,
                             text=True, env=env, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (
        "DONE" in resumed.stdout
        and (run_dir / "final.keras").is_file()
        and (run_dir / "eval.json").is_file()
    )
    history = pd.read_csv(run_dir / "train" / "history.csv")
    assert list(history["epoch"]) == [0, 1, 2]  # resumed at epoch 1: none repeated, none lost
