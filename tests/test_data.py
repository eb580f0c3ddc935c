"""Data layer: reader counts, 10 s rebuild, and every bad-input case."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from asc_keras.config import SCENE_CLASSES, TRAIN_DEVICES, UNSEEN_DEVICES
from asc_keras.data import (
    AudioError,
    AudioFixes,
    DataError,
    load_audio,
    parse_clip_name,
    read_tau,
    rebuild_recordings,
)
from asc_keras.data.synthetic import device, evaluation_locations, make_synthetic_tau


def test_reader_counts_and_split(tiny_dataset):
    ds = tiny_dataset
    assert len(ds.clips) == len(ds.train) + len(ds.evaluate)  # generated test = evaluate list
    assert len(ds.test) == len(ds.evaluate)
    assert len(ds.clips) % 10 == 0
    assert set(ds.train["device"]) <= set(TRAIN_DEVICES)
    assert set(UNSEEN_DEVICES) & set(ds.evaluate["device"])  # unseen devices only in evaluate
    assert not set(UNSEEN_DEVICES) & set(ds.train["device"])
    assert sorted(ds.train["scene"].unique()) == sorted(SCENE_CLASSES)
    assert (ds.train["scene"].value_counts() == len(ds.train) // 10).all()  # balanced classes
    assert (ds.train["label"].map(lambda i: SCENE_CLASSES[i]) == ds.train["scene"]).all()
    tr = set(zip(ds.train["city"], ds.train["location"]))
    ev = set(zip(ds.evaluate["city"], ds.evaluate["location"]))
    assert tr.isdisjoint(ev)  # locations never cross the split
    assert ds.clips["device"].value_counts().idxmax() == "a"  # device a dominates
    assert list(ds.split("all")["filename"]) == list(ds.train["filename"]) + list(
        ds.evaluate["filename"]
    )


def test_generated_audio_format(tiny_dataset):
    info = sf.info(str(tiny_dataset.audio_path(tiny_dataset.clips["filename"][0])))
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (
        44100,
        1,
        44100,
        "PCM_24",
    )


def test_generation_is_deterministic(tmp_path):
    a = make_synthetic_tau(
        tmp_path / "a", recordings_per_class=1, cities=2, seed=7, extra_devices=1
    )
    b = make_synthetic_tau(
        tmp_path / "b", recordings_per_class=1, cities=2, seed=7, extra_devices=1
    )
    ma, mb = (pd.read_csv(p / "meta.csv", sep="\t") for p in (a, b))
    assert ma.equals(mb)
    f = ma["filename"][5]
    assert np.array_equal(sf.read(a / f)[0], sf.read(b / f)[0])
    assert device("s4") != device("s5") and device("s4") == device("s4")


def test_the_episodes_ramps_are_the_convolution_they_replace():
    """The generator's gate smoothing from its edges equals np.convolve's "same" output (on the
    gate's shapes: episodes inside, at the start, to the end, one sample long, none)."""
    from asc_keras.data.scenes import _smooth_gate

    rng = np.random.default_rng(3)
    kernel = np.hanning(441).astype(np.float32)
    kernel /= kernel.sum()
    for spans in ([(500, 2000)], [(0, 300), (2500, 9000)], [(7000, 9000)], [(4000, 4001)], []):
        on = np.zeros(9000, np.float32)
        for a, b in spans:
            on[a:b] = 1.0
        want = np.convolve(on.astype(np.float64), kernel.astype(np.float64), mode="same")
        got = _smooth_gate(on, kernel)
        assert got.dtype == np.float32 and got.shape == on.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-7)
    even = rng.uniform(size=44).astype(np.float32)  # an even-length kernel shifts "same" by half
    on = (rng.uniform(size=500) > 0.7).astype(np.float32)
    np.testing.assert_allclose(
        _smooth_gate(on, even), np.convolve(on, even, mode="same"), atol=5e-6
    )


def test_parse_clip_name():
    d = parse_clip_name("audio/street_pedestrian-lyon-1162-44650-3-s2.wav")
    assert (
        d["segment"] == 3
        and d["device"] == "s2"
        and d["city"] == "lyon"
        and d["location"] == "1162"
    )
    assert d["recording_id"] == "street_pedestrian-lyon-1162-44650-s2"
    with pytest.raises(DataError, match="bad-name.wav"):
        parse_clip_name("audio/bad-name.wav")
    # The 10 s recording that clip came from, as TAU 2020 Mobile names it: told where it serves.
    with pytest.raises(DataError, match=r"1162-44650-s2.wav: a 10 s recording's name, as in TAU Urban "
                       r"Acoustic Scenes 2020 Mobile; .* \(--set teachers\.pretrain_data"):  # fmt: skip
        parse_clip_name("audio/street_pedestrian-lyon-1162-44650-s2.wav")


def test_rebuild_recordings_orders_segments(tiny_dataset):
    clips = tiny_dataset.train.sample(frac=1.0, random_state=0)  # shuffled
    recs, problems = rebuild_recordings(clips)
    assert len(problems) == 0 and len(recs) == len(clips) // 10
    for _, r in recs.head(5).iterrows():
        assert [parse_clip_name(f)["segment"] for f in r.files] == list(range(10))
        assert {parse_clip_name(f)["recording_id"] for f in r.files} == {r.recording_id}
        assert list(clips["filename"].iloc[list(r.clip_rows)]) == list(r.files)


def test_rebuild_reports_missing_and_duplicate_segments(tiny_dataset, caplog):
    clips = tiny_dataset.train.reset_index(drop=True)
    rid0, rid1 = clips["recording_id"].unique()[:2]
    broken = clips.drop(clips.index[(clips["recording_id"] == rid0) & (clips["segment"] == 4)])
    broken = pd.concat([broken, clips[(clips["recording_id"] == rid1) & (clips["segment"] == 2)]])
    with caplog.at_level("WARNING", logger="asc_keras"):
        recs, problems = rebuild_recordings(broken)
    assert [r.message for r in caplog.records if "incomplete" in r.message]  # one plain warning
    assert set(problems["recording_id"]) == {rid0, rid1}
    assert "missing segments [4]" in problems.set_index("recording_id").loc[rid0, "problem"]
    assert "duplicate segments [2]" in problems.set_index("recording_id").loc[rid1, "problem"]
    assert len(recs) == len(clips) // 10 - 2
    with pytest.raises(DataError, match="incomplete"):
        rebuild_recordings(broken, strict=True)


@pytest.fixture()
def dataset_copy(tiny_tau, tmp_path):
    """A copy of the CSVs with audio/ symlinked, to break without touching the shared set."""
    root = tmp_path / "copy"
    shutil.copytree(tiny_tau / "evaluation_setup", root / "evaluation_setup")
    shutil.copy(tiny_tau / "meta.csv", root / "meta.csv")
    (root / "audio").symlink_to(tiny_tau / "audio")
    return root


def test_missing_directory(tmp_path):
    with pytest.raises(DataError, match="nope.*dataset directory not found"):
        read_tau(tmp_path / "nope")


def test_missing_csv(dataset_copy):
    (dataset_copy / "evaluation_setup" / "fold1_evaluate.csv").unlink()
    with pytest.raises(DataError, match="fold1_evaluate.csv: file not found"):
        read_tau(dataset_copy)


def test_missing_columns_and_wrong_separator(dataset_copy):
    meta = pd.read_csv(dataset_copy / "meta.csv", sep="\t")
    meta.to_csv(dataset_copy / "meta.csv", index=False)  # comma-separated by mistake
    with pytest.raises(DataError, match=r"meta.csv: missing column.*tab-separated"):
        read_tau(dataset_copy)
    meta.drop(columns="scene_label").to_csv(dataset_copy / "meta.csv", sep="\t", index=False)
    with pytest.raises(DataError, match=r"missing column\(s\) \['scene_label'\]"):
        read_tau(dataset_copy)


def test_unknown_label(dataset_copy):
    path = dataset_copy / "evaluation_setup" / "fold1_train.csv"
    df = pd.read_csv(path, sep="\t")
    df.loc[3, "scene_label"] = "beach"
    df.to_csv(path, sep="\t", index=False)
    with pytest.raises(DataError, match=r"fold1_train.csv: unknown scene label 'beach' in row 5"):
        read_tau(dataset_copy)


def test_listed_audio_missing(dataset_copy, tiny_tau):
    (dataset_copy / "audio").unlink()
    (dataset_copy / "audio").mkdir()
    first = pd.read_csv(dataset_copy / "meta.csv", sep="\t")["filename"][0]
    shutil.copy(tiny_tau / first, dataset_copy / first)
    with pytest.raises(DataError, match=r"listed audio file does not exist"):
        read_tau(dataset_copy)


def test_corrupt_wav_names_file(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    with pytest.raises(AudioError, match=r"bad.wav: cannot decode audio"):
        load_audio(bad, 16000)
    with pytest.raises(AudioError, match=r"missing.wav: audio file not found"):
        load_audio(tmp_path / "missing.wav", 16000)


def test_fixups_are_counted_not_fatal(tmp_path):
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "stereo.wav", rng.normal(0, 0.1, (44100, 2)), 44100)
    sf.write(tmp_path / "rate.wav", rng.normal(0, 0.1, 48000), 48000)
    sf.write(tmp_path / "short.wav", rng.normal(0, 0.1, 30000), 44100)
    sf.write(tmp_path / "long.flac", rng.normal(0, 0.1, 50000), 44100)
    fixes = AudioFixes()
    for name in ("stereo.wav", "rate.wav", "short.wav", "long.flac"):
        y = load_audio(tmp_path / name, 16000, duration=1.0, expected_rate=44100, fixes=fixes)
        assert y.shape == (16000,) and y.dtype == np.float32
    assert dict(fixes.counts) == {"downmixed": 1, "resampled": 1, "padded": 1, "cropped": 1}
    assert "short.wav" in fixes.summary() and "1 file padded" in fixes.summary()
    # stereo downmix is the channel mean
    st = sf.read(tmp_path / "stereo.wav", dtype="float32")[0].mean(axis=1)
    y = load_audio(tmp_path / "stereo.wav", 44100)
    np.testing.assert_allclose(y, st, atol=1e-6)


def test_the_data_stage_generates_the_configured_devices_per_recording(tmp_path):
    """``data.extra_devices`` reaches the generator and names the set's folder (a set with the
    default two keeps the name it had before the number could change)."""
    from asc_keras.config import DataConfig, SystemConfig
    from asc_keras.stages.runner import StageRunner
    from asc_keras.stages.shared import RunPlace, data_stage

    size = DataConfig(recordings_per_class=1, cities=2, extra_devices=1, workers=1)
    place = RunPlace(out=tmp_path / "out", work=tmp_path / "work")
    ds, root = data_stage(
        SystemConfig(data=size), place, StageRunner(place.out, log=lambda m: None)
    )
    assert root == tmp_path / "work" / "generated-r1-c2-s0-e1"
    clips = pd.concat([ds.train, ds.evaluate])
    assert len(clips) == 10 * 1 * 2 * 10  # classes x recordings x (a + 1 other) x 1 s clips
    sources = clips["filename"].str.rsplit("-", n=2).str[0]  # the name without segment and device
    assert (clips.groupby(sources)["filename"].count() == 2 * 10).all()
    default = place.shared.generated(DataConfig(recordings_per_class=1, cities=2))
    assert default.name == "generated-r1-c2-s0"
    # A number of devices the generator cannot draw is refused by its setting, before any file.
    for bad in (-1, 6):
        with pytest.raises(ValueError, match=r"extra_devices = -?\d+: .*data\.extra_devices"):
            make_synthetic_tau(tmp_path / f"bad{bad}", 1, 2, extra_devices=bad)
        assert not (tmp_path / f"bad{bad}").exists()


def test_city_stratified_split_keeps_the_draw_and_spreads_evaluation_over_cities():
    """``city_stratified``: a scene's evaluation locations in distinct cities (so every city that
    evaluates it also trains it); off, the first of the random order -- the built-in split."""
    cities = ["a", "a", "b", "b", "c", "c", "d", "d"]  # two locations per city, as the generator's
    order = np.array([1, 0, 5, 3, 2, 4, 7, 6])
    assert evaluation_locations(cities, order, 2, False) == {1, 0}  # both in city a
    assert evaluation_locations(cities, order, 2, True) == {1, 5}  # a and c
    assert evaluation_locations(cities, order, 3, True) == {1, 5, 3}
    # More evaluation locations than cities: one per city, then the rest in the order.
    assert evaluation_locations(["a", "a", "b", "b"], np.array([0, 1, 2, 3]), 3, True) == {0, 2, 1}
    for seed in range(20):  # the generator's own draws (8 locations, 2 held out)
        o = np.random.default_rng(seed).permutation(8)
        held = evaluation_locations(cities, o, 2, True)
        assert len(held) == 2 and len({cities[i] for i in held}) == 2
        assert evaluation_locations(cities, o, 2, False) == set(o[:2].tolist())


def _recordings_folder(root, names_labels, source=None):
    """A TAU 2020-layout folder: meta.csv listing ``names_labels`` (with ``source`` as its
    source_label column where given), fold 1 = the first three train, the rest evaluate; each
    listed file present (empty: the reader checks presence, not audio)."""
    (root / "audio").mkdir(parents=True)
    (root / "evaluation_setup").mkdir()
    meta = pd.DataFrame(names_labels, columns=["filename", "scene_label"])
    if source is not None:
        meta["source_label"] = source
    meta.to_csv(root / "meta.csv", sep="\t", index=False)
    for name in meta["filename"]:
        (root / name).touch()
    for split, part in (("train", meta[:3]), ("evaluate", meta[3:])):
        part[["filename", "scene_label"]].to_csv(
            root / "evaluation_setup" / f"fold1_{split}.csv", sep="\t", index=False
        )


def test_a_tau_2020_folder_is_checked_as_tau_2022s_is(tmp_path):
    """The 10 s recordings' reader holds meta.csv to what the 2022 reader does: labels, one row
    per file, each source_label its name's device -- each failure naming the file and the row."""
    from asc_keras.data.tau2020 import looks_like_recordings, read_recording_set

    rows = [(f"audio/{s}-helsinki-{i}-{i}0-{d}.wav", s) for i, (s, d) in enumerate(
        [("park", "a"), ("bus", "b"), ("metro", "a"), ("park", "a")]
    )]  # fmt: skip
    good = tmp_path / "good"
    _recordings_folder(good, rows, source=["a", "b", "a", "a"])
    found = read_recording_set(good)
    assert looks_like_recordings(good)
    assert list(found.train["device"]) == ["a", "b", "a"] and len(found.evaluate) == 1
    assert found.train["recording_id"].iloc[1] == "bus-helsinki-1-10-b"
    cases = {
        "source": ({"source": ["a", "a", "a", "a"]}, r"meta.csv: row 3: source_label 'a' does not "
                   r"match the device in audio/bus-helsinki-1-10-b.wav"),
        "dup": ({"rows": rows + rows[:1]}, r"meta.csv: 1 duplicated filename row\(s\), e.g. "
                r"audio/park-helsinki-0-00-a.wav"),
        "label": ({"rows": rows[:2] + [(rows[2][0], "beach")] + rows[3:]},
                  r"meta.csv: unknown scene label 'beach' in row 4"),
    }  # fmt: skip
    (good / "evaluation_setup" / "fold1_evaluate.csv").unlink()
    with pytest.raises(DataError, match=r"fold1_evaluate.csv: file not found.*a TAU 2020 one, for "
                       r"teachers.pretrain_data"):  # fmt: skip
        read_recording_set(good)
    for case, (change, message) in cases.items():
        root = tmp_path / case
        _recordings_folder(root, change.get("rows", rows), change.get("source"))
        with pytest.raises(DataError, match=message):
            read_recording_set(root)
    _recordings_folder(tmp_path / "fold", rows)  # the fold list: a label of the ten, its name's
    fold = tmp_path / "fold" / "evaluation_setup" / "fold1_train.csv"
    for label, message in (("beach", r"fold1_train.csv: unknown scene label 'beach' in row 2"),
                           ("bus", r"fold1_train.csv: row 2: label 'bus' is not the scene of "
                                   r"audio/park-helsinki-0-00-a.wav")):  # fmt: skip
        fold.write_text(fold.read_text().replace("a.wav\tpark", f"a.wav\t{label}", 1))
        with pytest.raises(DataError, match=message):
            read_recording_set(tmp_path / "fold")
        fold.write_text(fold.read_text().replace(f"a.wav\t{label}", "a.wav\tpark", 1))
    assert len(read_recording_set(tmp_path / "fold").train) == 3  # mended: read again
