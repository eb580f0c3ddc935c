"""Parallel recordings (distill.teacher_view 'parallel'): which clips are one sound, the pipeline's
second channel, and the Distiller's teachers hearing it."""

import dataclasses

import numpy as np
import pytest

from asc_keras._runtime import keras
from asc_keras.config import AugmentConfig
from asc_keras.data.parallel import draw_parallel, parallel_table, sound_of
from asc_keras.distill.distiller import Distiller
from asc_keras.training.pipeline import make_dataset


def test_clips_that_differ_only_in_the_device_are_one_sound():
    names = [
        "audio/park-lyon-1-10-3-a.wav",
        "audio/park-lyon-1-10-3-s2.wav",
        "audio/park-lyon-1-10-4-a.wav",  # the next second: another sound
        "audio/park-lyon-1-10-3-b.wav",
        "mine/foo-1-b.wav",  # a user's own name: alone
        "mine/foo-1-c.wav",
        "audio/park-lyon-1-10-0-a.wav|audio/park-lyon-1-10-1-a.wav",
        "audio/park-lyon-1-10-0-b.wav|audio/park-lyon-1-10-1-b.wav",
    ]
    assert sound_of(names[1]) == "park-lyon-1-10-3" and sound_of(names[4]) == names[4]
    table = parallel_table(names)
    assert table.shape == (8, 3)
    np.testing.assert_array_equal(table[0], [0, 1, 3])  # itself first, then in order
    np.testing.assert_array_equal(table[3], [3, 0, 1])
    np.testing.assert_array_equal(table[2], [2, -1, -1])
    np.testing.assert_array_equal(table[4], [4, -1, -1])
    np.testing.assert_array_equal(table[5], [5, -1, -1])
    np.testing.assert_array_equal(table[7], [7, 6, -1])
    assert parallel_table(["mine/x.wav", "mine/y.wav"]).shape == (2, 1)
    # Uniform over each group's members: u in [k/size, (k+1)/size) takes member k.
    idx = np.array([0, 0, 0, 2, 7, 7])
    u = np.array([0.0, 0.34, 0.999, 0.9, 0.49, 0.5])
    np.testing.assert_array_equal(draw_parallel(table, idx, u), [0, 1, 3, 2, 7, 6])


def _channels(ds):
    return [np.asarray(x) for x, _ in ds]


def test_the_second_channel_is_a_parallel_augmented_as_the_clip(clip_cache, tiny_dataset):
    """With parallels: the first channel is bit for bit the batch without them; the second is
    one of the clip's parallels, itself included, drawn from the batch's key (so the same at any
    parallelism), each member taken; every augmentation (stretch, masks, Freq-MixStyle, mixup)
    treats it as the first: where each clip's only parallel is itself the channels are equal."""
    names = tuple(tiny_dataset.train["filename"])
    rows = clip_cache.rows(names)
    labels = tiny_dataset.train["label"].to_numpy()
    table = parallel_table(names)
    assert table.shape[1] >= 2 and (table[:, 1] >= 0).sum() > len(names) // 4
    aug = AugmentConfig(time_stretch=True, freq_mixstyle=0.5)

    def batches(parallel=None, augment=aug, calls=1):
        return _channels(
            make_dataset(
                clip_cache.features,
                rows,
                labels,
                batch_size=16,
                shuffle=True,
                seed=3,
                augment=augment,
                parallel=parallel,
                parallel_calls=calls,
            )  # fmt: skip
        )

    plain, paired = batches(), batches(table)
    for a, b in zip(plain, paired, strict=True):
        assert b.shape[-1] == 2
        np.testing.assert_array_equal(a[..., 0], b[..., 0])
    for a, b in zip(paired, batches(table, calls=4), strict=True):
        np.testing.assert_array_equal(a, b)
    alone = np.arange(len(names))[:, None]
    for b in batches(alone):
        np.testing.assert_array_equal(b[..., 0], b[..., 1])
    # Unaugmented, the second channel is a row of the clip's group; over the epoch some of each.
    clean = make_dataset(clip_cache.features, rows, labels, batch_size=len(names), seed=3,
                         parallel=table)  # fmt: skip
    x = np.asarray(next(iter(clean))[0])
    feats = np.asarray(clip_cache.features[rows], np.float32)
    hits = [[np.array_equal(x[i, ..., 1], feats[j]) for j in table[i] if j >= 0]
            for i in range(len(names))]  # fmt: skip
    assert all(any(h) for h in hits)
    grouped = [h for h in hits if len(h) > 1]
    assert 0 < sum(h[0] for h in grouped) < len(grouped)  # itself for some, another for others
    with pytest.raises(ValueError, match="rows of parallels"):
        make_dataset(clip_cache.features, rows, labels, parallel=table[:3])


def _channel_model(seed, n_in=20):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((n_in, 1))
    x = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(inp))
    z = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inp, keras.layers.Activation("softmax", name="probabilities")(z))


def test_the_teachers_hear_the_parallel_channel_and_the_student_its_own():
    rng = np.random.default_rng(4)
    own, other = (rng.normal(size=(6, 20, 1)).astype(np.float32) for _ in range(2))
    both = np.concatenate([own, other], axis=-1)
    hard = np.eye(10, dtype=np.float32)[[0, 1, 2, 3, 4, 5]]
    teachers = [_channel_model(s) for s in (31, 32)]
    student = _channel_model(1)
    par = Distiller(student, teachers=teachers, teacher_weights=[0.3, 0.7], teacher_view="parallel")
    ref = Distiller(student, teachers=teachers, teacher_weights=[0.3, 0.7])
    np.testing.assert_array_equal(par(both), ref(own))
    heard = np.asarray(par._targets(both, hard)[1])
    np.testing.assert_array_equal(heard, np.asarray(ref._targets(other, hard)[1]))
    assert np.abs(heard - np.asarray(ref._targets(own, hard)[1])).max() > 1e-3
    # One channel (validation batches): the teachers hear the clip itself.
    np.testing.assert_array_equal(par._targets(own, hard)[1], ref._targets(own, hard)[1])
    # The loss: the stored-target Distiller's on the student's channel with the heard target.
    stored = Distiller(student, alpha=par.alpha, temperature=par.temperature)
    want = stored.compute_loss(own, (hard, heard), stored(own))
    np.testing.assert_allclose(par.compute_loss(both, hard, par(both)), want, rtol=1e-6)
    assert par.get_config()["teacher_view"] == "parallel"
    assert Distiller.from_config(par.get_config()).teacher_view == "parallel"
    with pytest.raises(ValueError, match="teacher_view"):
        Distiller(student, teachers=teachers, teacher_view="mean")


def test_the_quick_profile_teaches_through_parallels_and_the_paper_profile_as_the_report(
    tmp_path,
):
    """The quick profile's default, the report's in the paper profile; a word outside the two
    refused; the teachers' folders (and so the teachers) the same whichever view."""
    from asc_keras.presets import system_config
    from asc_keras.stages.shared import RunPlace
    from asc_keras.stages.teachers import teacher_dir

    quick = system_config(1, "quick")
    assert quick.distill.teacher_view == "parallel"
    assert system_config(1, "paper").distill.teacher_view == "own"
    with pytest.raises(ValueError, match="teacher_view"):
        system_config(1, "quick", {"distill.teacher_view": "devices"})
    own = dataclasses.replace(quick, distill=dataclasses.replace(quick.distill, teacher_view="own"))
    place = RunPlace(tmp_path / "out", tmp_path / "work")
    assert teacher_dir(quick, place, tmp_path, "cnn") == teacher_dir(own, place, tmp_path, "cnn")


def test_the_student_recipe_loads_parallels_only_where_a_clip_has_one(monkeypatch, tmp_path):
    """``fit_student`` with live teachers and the parallel view: the table where clips are heard
    by several devices; none (one channel, the teachers hear the clip) where no clip is, as with
    a user's own names, or where the view is 'own'."""
    from types import SimpleNamespace

    import asc_keras.training.student as student
    from asc_keras.data.splits import ClipSplit
    from asc_keras.presets import system_config

    seen = []
    monkeypatch.setattr(student, "make_dataset", lambda *a, **k: seen.append(k.get("parallel")))
    monkeypatch.setattr(student, "fit_resumable", lambda *a, **k: None)
    cfg = system_config(1, "quick")
    # The training data alone: this fake trainer has no student whose BatchNorm could be re-estimated.
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, precise_bn_batches=0))

    def fit(names, view="parallel"):
        n = len(names)
        train = ClipSplit(np.zeros((n, 28, 256), np.float16), np.arange(n), np.arange(n) % 10,
                          np.array(["a"] * n), tuple(names))  # fmt: skip
        live = SimpleNamespace(teachers=[object()], teacher_view=view)
        student.fit_student(live, cfg, train, None, None, run_dir=tmp_path)
        return seen[-1]

    tau = [
        "audio/park-lyon-1-10-3-a.wav",
        "audio/park-lyon-1-10-3-b.wav",
        "audio/park-lyon-1-10-4-a.wav",
    ]
    np.testing.assert_array_equal(fit(tau), [[0, 1], [1, 0], [2, -1]])
    assert fit(["mine/x.wav", "mine/y.wav", "mine/z.wav"]) is None
    assert fit(tau, view="own") is None
