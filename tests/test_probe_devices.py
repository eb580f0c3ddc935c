"""The probe's simulated devices (distill.probe_devices): log-mels heard through a smooth response,
and the teachers' lead taken on each held-out clip as recorded and through those devices."""

from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np
import pytest
from test_teaching import _Probe, _quick, _targets, make_splits

from asc_keras.config import FeatureConfig
from asc_keras.features.devices import (
    ANCHORS,
    SPREAD_DB,
    band_centres,
    draw_devices,
    response_db,
    through_device,
)
from asc_keras.features.logmel import PANNS_FEATURES, logmel
from asc_keras.presets import system_config
from asc_keras.stages.shared import RunPlace

REPORT = FeatureConfig()


def _noise(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * rate))).astype(
        np.float32
    )


def test_a_flat_response_is_a_gain_and_a_smooth_one_is_a_level_per_band():
    x = _noise(1.0, REPORT.sample_rate)[None]
    base = logmel(x, REPORT)
    # 6 dB everywhere: the audio 10^(6/20) louder, its power 10^(6/10): + 0.6 ln 10 in natural log.
    flat = np.full((1, ANCHORS), 6.0)
    louder = logmel(x * np.float32(10 ** (6 / 20)), REPORT)
    np.testing.assert_allclose(through_device(base, flat, REPORT), louder, atol=2e-4)
    np.testing.assert_allclose(
        through_device(base, flat, REPORT) - base, 0.6 * np.log(10), atol=1e-5
    )
    # PANNs' front end is in dB: the 6 dB themselves.
    xp = _noise(1.0, PANNS_FEATURES.sample_rate)[None]
    bp = logmel(xp, PANNS_FEATURES)
    np.testing.assert_allclose(through_device(bp, flat, PANNS_FEATURES) - bp, 6.0, atol=1e-4)
    # A drawn device, applied to the audio's spectrum: on log-mels a level per band, as
    # through_device adds it -- off by far less than the response itself where bands are narrow
    # against its anchors (below 100 Hz a band spans more than an octave; noise in 1 s too).
    anchors = draw_devices(1, 1, seed=3)[0]
    long = _noise(4.0, REPORT.sample_rate, seed=1)
    spec = np.fft.rfft(long)
    hz = np.fft.rfftfreq(long.size, 1 / REPORT.sample_rate)
    heard = np.fft.irfft(spec * 10 ** (response_db(anchors, hz)[0] / 20), long.size)
    cut = lambda y: y.astype(np.float32).reshape(4, -1)  # noqa: E731
    got = logmel(cut(heard), REPORT).mean(1)
    want = through_device(logmel(cut(long), REPORT), np.repeat(anchors, 4, 0), REPORT).mean(1)
    ok = band_centres(REPORT) > 100
    level = np.abs(response_db(anchors, band_centres(REPORT))[0][ok]) * np.log(10) / 10
    error = np.abs(got - want)[:, ok]
    assert error.mean() < 0.01 and level.mean() > 0.5  # 50 times smaller than what it models


def test_devices_are_drawn_in_hz_so_every_front_end_hears_the_same_one():
    d = draw_devices(5, 3, seed=7)
    assert d.shape == (3, 5, ANCHORS) and np.array_equal(d, draw_devices(5, 3, seed=7))
    assert not np.array_equal(d, draw_devices(5, 3, seed=8))
    assert abs(d.std() - SPREAD_DB) < 2.0  # 105 draws of N(0, 6 dB)
    for fc in (REPORT, PANNS_FEATURES):
        c = band_centres(fc)
        assert (
            np.all(np.diff(c) > 0)
            and c[0] >= (fc.fmin or 0)
            and c[-1] <= (fc.fmax or fc.sample_rate / 2)
        )
    # One frequency, two front ends: the same level.
    hz = np.array([1000.0])
    assert response_db(d[0, :1], hz)[0, 0] == response_db(d[0, :1], np.array([1000.0]))[0, 0]
    # Beyond the anchors the response is flat: their first and last levels.
    edge = response_db(d[0, :1], np.array([10.0, 20_000.0]))[0]
    assert edge.tolist() == [d[0, 0, 0], d[0, 0, -1]]


def _teacher(folder, classes_right: bool):
    """A teacher whose logits ignore the input: sure of class 0 (or 1) on every clip."""
    folder.mkdir(parents=True)
    x = keras.Input((2, 3, 1))
    z = keras.layers.Dense(10, name="logits")(keras.layers.Flatten()(x))
    m = keras.Model(x, keras.layers.Softmax()(z))
    w = np.zeros((6, 10), np.float32)
    m.get_layer("logits").set_weights(
        [w, np.eye(10, dtype=np.float32)[0 if classes_right else 1] * 40]
    )
    m.save(folder / "final.keras")
    return folder


def test_the_lead_through_the_devices_decides_and_the_views_are_stored_once(tmp_path, monkeypatch):
    import asc_keras.stages.teachers as teachers
    import asc_keras.training.student as student
    from asc_keras.evaluate.target_words import describe_targets
    from asc_keras.stages.probe import check_clip_targets, clip_lead, held_out_split, read_probe
    from asc_keras.stages.runner import StageRunner
    from asc_keras.stages.teaching import probe_stage, runs_live, teaching_record

    splits = make_splits()
    # Every clip of class 0 (the teachers' class) on both, 1 location of 10 held out per class.
    labels = np.zeros(len(splits.train), int)
    splits = dataclasses.replace(splits, train=dataclasses.replace(splits.train, labels=labels))
    assert system_config(1, "quick").distill.probe_devices == 3  # the profile's; the config's 0
    assert system_config(1, "paper").distill.probe_devices == 0
    cfg = _quick(probe_devices=3)
    cfg = dataclasses.replace(cfg, features=dataclasses.replace(cfg.features, n_mels=3))
    _, held = held_out_split(cfg, splits)

    class Clean(_Probe):
        """Right and sure on the clips as recorded; through any device, wrong: p[label] 0."""

        def predict(self, x, batch_size=None, verbose=0):
            clean = not np.any(x)  # the fixture's log-mels are zeros; a device adds its levels
            return np.eye(10)[np.full(len(x), 0 if clean else 5)]

    monkeypatch.setattr(student, "train_student", lambda c, tr, ev, t, **kw: Clean(ev.labels, 0))
    folders = {"cnn": _teacher(tmp_path / "t" / "cnn", True),
               "bcresnet": _teacher(tmp_path / "t" / "bcresnet", False)}  # fmt: skip
    loads, orig = [], teachers.load_teacher
    monkeypatch.setattr(teachers, "load_teacher", lambda f: loads.append(f.name) or orig(f))
    place = RunPlace(out=tmp_path / "out", work=tmp_path / "work")
    logs = []
    runner = StageRunner(place.out, log=logs.append)
    targets = _targets(splits, np.ones(len(labels), bool))
    got = probe_stage(cfg, place, runner, targets, splits, folders)
    # As recorded both give the label all its probability; through 3 devices the teachers
    # (ignoring what they hear) still do and the probe none: (1 + 3) / 4 against 1 / 4, +75 points
    # on every location, p = 1/1024: live.  Hearing the clips as recorded only: a tie, no lead.
    lead = clip_lead(cfg, got, splits)
    assert (lead["teachers_label"], lead["student_label"], lead["devices"]) == (1.0, 0.25, 3)
    assert lead["lead"] == pytest.approx(0.75) and lead["p_value"] == 1 / 1024 and lead["live"]
    assert runs_live(cfg, got, splits) and not runs_live(_quick(), got, splits)
    assert "devices" not in clip_lead(_quick(), got, splits)
    assert "held out from the teachers, each heard as recorded and through 3 simulated devices " \
           "(distill.probe_devices), their ensemble gave the label 100.0 %" in \
           describe_targets(teaching_record(cfg, got, splits))  # fmt: skip
    assert any("held out, each as recorded and through 3 simulated devices" in s for s in logs)
    # The record keeps the probe's views; the teachers' logits of them (3, clips, 2, 10) are a
    # file of their own, computed once (both teachers, the weight-0 one too: a row may pick it).
    record = read_probe(next((tmp_path / "work" / "probes").glob("probe-*.json")))
    assert record["devices"] == {"views": 3, "anchors": ANCHORS, "spread_db": SPREAD_DB,
                                 "p_label": [[0.0] * 3] * len(held)}  # fmt: skip
    (stored,) = (tmp_path / "work" / "probes").glob("teachers-devices-*.npy")
    assert np.load(stored).shape == (3, len(held), 2, 10) and sorted(loads) == ["bcresnet", "cnn"]
    again = probe_stage(cfg, place, runner, targets, splits, folders)
    assert len(loads) == 2 and clip_lead(cfg, again, splits) == lead
    # One teacher picked (an ablation row): its own device logits, the other's left out.
    only = got.select(teachers=["bcresnet"])
    assert clip_lead(cfg, only, splits)["teachers_label"] == pytest.approx(0.0)
    # A record from before the devices: its views are added from the probe's model file.
    path = next((tmp_path / "work" / "probes").glob("probe-*.json"))
    path.write_text(json.dumps({k: v for k, v in record.items() if k != "devices"}))
    student_file = path.with_suffix("") / "final.keras"
    student_file.parent.mkdir(parents=True, exist_ok=True)
    _teacher(tmp_path / "s", True)
    (tmp_path / "s" / "final.keras").rename(student_file)  # right through every device: p 1
    probe_stage(cfg, place, runner, targets, splits, folders)
    assert read_probe(path)["devices"]["p_label"] == [[1.0] * 3] * len(held)
    # Crafted files are refused by name, with the fix; nothing in them runs.
    np.save(stored, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=rf"{stored.name}: not the teachers' logits .*delete it"):
        probe_stage(cfg, place, runner, targets, splits, folders)
    np.save(stored, np.zeros((2, len(held), 2, 10), np.float32))
    with pytest.raises(ValueError, match=rf"{stored.name}: float32 \(2, .*delete it"):
        probe_stage(cfg, place, runner, targets, splits, folders)
    for bad in ({"views": 3, "anchors": 7, "spread_db": 6.0, "p_label": [[2.0] * 3] * len(held)},
                {"views": 3, "anchors": 7, "spread_db": 6.0, "p_label": [[0.5] * 2] * len(held)},
                {"views": "3", "anchors": 7, "spread_db": 6.0, "p_label": []}, ["not", "a", "dict"]):  # fmt: skip
        path.write_text(json.dumps({**record, "devices": bad}))
        with pytest.raises(
            ValueError, match=rf"{path.name}: not a probe student's record .*delete"
        ):
            read_probe(path)
    # Without the teachers' folders or the views, 'auto' does not guess.
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="needs the teachers' folders"):
        probe_stage(cfg, place, runner, targets, splits)
    with pytest.raises(ValueError, match="the probe holds no such views"):
        clip_lead(_quick(probe_devices=2), got, splits)
    for bad in (-1, 17, 1.5, True):
        with pytest.raises(ValueError, match=r"distill\.probe_devices must be a count from 0"):
            check_clip_targets(_quick(probe_devices=bad))
    check_clip_targets(cfg)
