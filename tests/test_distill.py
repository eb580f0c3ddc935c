"""Distillation: the loss maths (Keras 3 Distiller and the tf_keras QAT loss agree), KD benefit,
live teachers, ensemble soft targets stored and live."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from asc_keras._runtime import keras, tf
from asc_keras.config import DistillConfig
from asc_keras.distill import Distiller, SoftTargets, ensemble_distribution, teacher_logits, temper
from asc_keras.distill.losses import distillation_loss
from asc_keras.distill.targets import choose_target_source, kd_soft_targets, swap_to_label
from asc_keras.models.common import logits_model


def _mlp_student(n_in=20, n_classes=10, hidden=32, seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((n_in,))
    x = keras.layers.Dense(hidden, activation="relu")(inp)
    z = keras.layers.Dense(n_classes, name="logits")(x)
    return keras.Model(inp, keras.layers.Activation("softmax", name="probabilities")(z))


def test_distiller_loss_equals_hand_computation():
    m = _mlp_student()
    d = Distiller(m, alpha=0.3, temperature=2.5)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 20)).astype(np.float32)
    hard = np.eye(10, dtype=np.float32)[[0, 3, 3, 9, 1, 2]]
    soft = temper(rng.normal(size=(6, 10)) * 2, 2.5)
    z = np.asarray(d(x)).astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    ce = -(hard * np.log(p)).sum(1).mean()
    zt = z / 2.5
    qt = np.exp(zt - zt.max(1, keepdims=True))
    qt /= qt.sum(1, keepdims=True)
    kl = (soft * np.log(soft / qt)).sum(1).mean()
    expected = 0.3 * ce + 0.7 * 2.5**2 * kl
    got = float(d.compute_loss(x, (hard, soft), d(x)))
    assert got == pytest.approx(expected, rel=1e-4)
    d1 = Distiller(m, alpha=1.0, temperature=2.5)
    assert float(d1.compute_loss(x, (hard, soft), d1(x))) == pytest.approx(ce, rel=1e-5)
    # Hard labels only (validation data, no teacher): plain CE, not alpha * CE.
    assert float(d.compute_loss(x, hard, d(x))) == pytest.approx(ce, rel=1e-5)


def test_early_stopped_kd_learns_from_the_teachers_for_kd_steps_then_from_the_labels_alone():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, 20)).astype(np.float32)
    hard = np.eye(10, dtype=np.float32)[[1, 4, 4, 8, 0, 2]]
    soft = temper(rng.normal(size=(6, 10)) * 2, 2.0)
    d = Distiller(_mlp_student(), alpha=0.2, temperature=2.0, kd_steps=3)
    whole = Distiller(d.student, alpha=0.2, temperature=2.0)
    d.compile(keras.optimizers.SGD(0.0))  # steps counted, weights unchanged
    ce = float(Distiller(d.student, alpha=1.0).compute_loss(x, (hard, soft), d(x)))
    mixed = float(whole.compute_loss(x, (hard, soft), d(x)))
    assert abs(mixed - ce) > 0.1 * ce  # the two differ: which one is taken is visible
    for step in range(5):
        assert int(d.optimizer.iterations) == step
        expected = mixed if step < 3 else ce
        assert float(d.compute_loss(x, (hard, soft), d(x))) == pytest.approx(expected, rel=1e-5)
        d.train_on_batch(x, (hard, soft))
    assert Distiller.from_config(d.get_config()).kd_steps == 3
    with pytest.raises(ValueError, match="kd_steps"):
        Distiller(_mlp_student(), kd_steps=-1)


def test_alpha_one_trains_like_plain_ce():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 20)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 64)]
    soft = temper(rng.normal(size=(64, 10)), 1.0)
    a = _mlp_student(seed=3)
    b = _mlp_student(seed=3)
    d = Distiller(a, alpha=1.0, temperature=3.0)
    d.compile(keras.optimizers.SGD(0.1), metrics=["accuracy"])
    d.fit(x, (y, soft), batch_size=64, epochs=3, shuffle=False, verbose=0)
    b.compile(keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
    b.fit(x, y, batch_size=64, epochs=3, shuffle=False, verbose=0)
    np.testing.assert_allclose(np.asarray(a(x)), np.asarray(b(x)), atol=1e-5)


def _gaussian_task(n, rng, means):
    y = rng.integers(0, len(means), n)
    x = (means[y] + rng.normal(size=(n, means.shape[1]))).astype(np.float32)
    # Oracle teacher: exact class log-posteriors of the generating model (equal priors).
    logits = -0.5 * ((x[:, None, :] - means[None]) ** 2).sum(-1)
    return x, y, logits.astype(np.float32)


def test_kd_from_strong_teacher_beats_no_kd_at_equal_steps():
    rng = np.random.default_rng(0)
    means = rng.normal(size=(10, 20)).astype(np.float32) * 0.9
    x, y, t = _gaussian_task(60, rng, means)  # few labels: where dark knowledge helps
    xt, yt, _ = _gaussian_task(3000, rng, means)
    hard = np.eye(10, dtype=np.float32)[y]
    accs = {}
    for name, alpha in (("kd", 0.1), ("ce", 1.0)):
        d = Distiller(_mlp_student(seed=5), alpha=alpha, temperature=2.0)
        d.compile(keras.optimizers.Adam(3e-3), metrics=["accuracy"])
        d.fit(x, (hard, temper(t, 2.0)), batch_size=20, epochs=60, verbose=0)
        accs[name] = float((np.argmax(np.asarray(d.student(xt)), 1) == yt).mean())
    assert accs["kd"] > accs["ce"] + 0.03, accs


def test_distiller_with_live_teacher_metrics_and_serialisation(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(32, 20)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 32)]
    d = Distiller(
        _mlp_student(seed=1), teachers=[_mlp_student(seed=2), _mlp_student(seed=4)], alpha=0.5
    )
    d.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    h = d.fit(x, y, epochs=2, batch_size=16, verbose=0)
    for k in ("loss", "accuracy", "student_loss", "distillation_loss"):
        assert k in h.history, h.history.keys()
    assert h.history["distillation_loss"][-1] > 0
    res = d.evaluate(x, y, verbose=0, return_dict=True)
    assert "accuracy" in res
    d.save(tmp_path / "d.keras")
    back = keras.saving.load_model(tmp_path / "d.keras")
    assert isinstance(back, Distiller) and back.alpha == 0.5 and len(back.teachers) == 2
    np.testing.assert_allclose(np.asarray(back(x)), np.asarray(d(x)), atol=1e-5)
    assert back.student.output.shape[-1] == 10


def test_ensemble_modes_and_soft_target_roundtrip(tmp_path):
    feats = np.random.default_rng(3).normal(size=(9, 28, 256)).astype(np.float16)
    from asc_keras.models import build_serfr_cnn

    ts = [build_serfr_cnn(4), build_serfr_cnn(6)]
    z = teacher_logits(ts, feats, batch_size=4)
    assert z.shape == (9, 2, 10)
    singles = [
        np.asarray(
            keras.Model(t.input, t.get_layer("logits").output)(feats.astype(np.float32)[..., None])
        )
        for t in ts
    ]
    np.testing.assert_allclose(
        teacher_logits(ts, feats, np.array([8, 0, 4])), z[[8, 0, 4]], atol=1e-5
    )
    np.testing.assert_allclose(z[:, 1], singles[1], atol=1e-4)
    # 'probabilities': each teacher tempered, then averaged; 'logits': averaged, then tempered.
    np.testing.assert_allclose(
        ensemble_distribution(z, 2.0, "probabilities"),
        (temper(singles[0], 2.0) + temper(singles[1], 2.0)) / 2,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        ensemble_distribution(z, 2.0, "logits"),
        temper((singles[0] + singles[1]) / 2, 2.0),
        atol=1e-5,
    )
    st = SoftTargets(
        z, tuple(f"f{i}" for i in range(9)), {"ensemble": "probabilities", "teachers": ["a", "b"]}
    )
    st.save(tmp_path / "targets")
    back = SoftTargets.load(tmp_path / "targets")
    np.testing.assert_array_equal(back.select(["f3", "f1"]).logits, z[[3, 1]])
    np.testing.assert_allclose(
        back.select(teachers=["b"]).distribution(2.0, "probabilities"),
        temper(singles[1], 2.0),
        atol=1e-5,
    )
    with pytest.raises(KeyError, match="teacher"):
        back.select(teachers=["c"])


def test_a_models_own_targets_are_its_logits_on_each_clip_in_the_splits_order():
    """The born-again row's targets (model_targets): the one model's logits on the split's rows,
    in the split's order, named as one teacher, at T its plain tempered softmax."""
    from asc_keras.data.splits import ClipSplit
    from asc_keras.distill.targets import model_targets
    from asc_keras.models import build_serfr_cnn

    feats = np.random.default_rng(5).normal(size=(7, 28, 256)).astype(np.float16)
    split = ClipSplit(feats, np.array([6, 2, 0, 4]), np.array([1, 2, 3, 4]),
                      np.array(["a", "b", "a", "s1"]), ("w", "x", "y", "z"))  # fmt: skip
    control = build_serfr_cnn(4)
    t = model_targets(control, split, "ce_control")
    head = keras.Model(control.input, control.get_layer("logits").output)  # the reference, by hand
    z = np.asarray(head(feats[[6, 2, 0, 4]].astype(np.float32)[..., None]))
    assert t.logits.shape == (4, 1, 10) and t.items == ("w", "x", "y", "z")
    assert t.meta == {"teachers": ["ce_control"], "target_source": "clip"}
    np.testing.assert_allclose(t.logits[:, 0], z, atol=1e-4)
    soft = kd_soft_targets(t, DistillConfig(temperature=2.0))
    np.testing.assert_allclose(soft, temper(z, 2.0), atol=1e-5)


@pytest.mark.parametrize("mode", ["probabilities", "logits"])
def test_stored_and_live_soft_targets_are_equal(mode):
    """The stored path (teacher_logits -> SoftTargets.distribution) and the Distiller's live
    teachers give the same soft targets, for either ensemble mode."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(12, 20)).astype(np.float32)
    teachers = [_mlp_student(seed=11), _mlp_student(seed=12), _mlp_student(seed=13)]
    z = np.stack(
        [np.asarray(keras.Model(t.input, t.get_layer("logits").output)(x)) for t in teachers],
        axis=1,
    )
    # The configured T and mode meet the stored logits in one place: kd_soft_targets.
    stored = kd_soft_targets(SoftTargets(z, tuple(map(str, range(12))), {}),
                             DistillConfig(temperature=3.0, ensemble=mode))  # fmt: skip
    d = Distiller(
        _mlp_student(seed=1), teachers=teachers, alpha=0.5, temperature=3.0, ensemble=mode
    )
    _, live = d._targets(x, np.eye(10, dtype=np.float32)[rng.integers(0, 10, 12)])
    np.testing.assert_allclose(np.asarray(live), stored, atol=1e-5)
    # And the other mode is a different distribution (the definition matters).
    other = SoftTargets(z, tuple(map(str, range(12))), {}).distribution(
        3.0, "logits" if mode == "probabilities" else "probabilities"
    )
    assert np.abs(other - stored).max() > 1e-3


def test_wrong_targets_are_swapped_to_the_label_and_right_ones_kept():
    """swap_to_label exchanges a wrong target's top class with its label, nothing else; the
    configured switch reaches kd_soft_targets (and needs the labels)."""
    soft = np.array([[0.6, 0.3, 0.1],  # right (label 0): unchanged
                     [0.7, 0.2, 0.1],  # wrong (label 2): 0.7 and 0.1 swap
                     [0.2, 0.5, 0.3]], np.float32)  # fmt: skip
    before = soft.copy()
    out = swap_to_label(soft, np.array([0, 2, 0]))
    np.testing.assert_array_equal(out, soft[[[0], [1], [2]], [[0, 1, 2], [2, 1, 0], [1, 0, 2]]])
    np.testing.assert_array_equal(soft, before)  # the input is not changed
    z = np.log(soft)[:, None, :]  # one teacher whose T = 1 distribution is ``soft``
    t = SoftTargets(z, ("a", "b", "c"), {})
    swapped = DistillConfig(temperature=1.0, swap_wrong=True)
    np.testing.assert_allclose(kd_soft_targets(t, swapped, np.array([0, 2, 0])), out, atol=1e-6)
    np.testing.assert_allclose(kd_soft_targets(t, DistillConfig(temperature=1.0)), soft, atol=1e-6)
    with pytest.raises(ValueError, match="labels"):
        kd_soft_targets(t, swapped)


def test_tf_keras_qat_loss_equals_the_distiller_loss():
    """One definition: the probability-space loss of pruning/QAT gives the Distiller's loss."""
    from asc_keras.distill.losses import kd_loss_on_probs

    m = _mlp_student()
    d = Distiller(m, alpha=0.3, temperature=2.5)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, 20)).astype(np.float32)
    hard = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 8)]
    soft = temper(rng.normal(size=(8, 10)) * 2, 2.5)
    z = d(x)
    want = float(d.compute_loss(x, (hard, soft), z))
    loss = kd_loss_on_probs(0.3, 2.5, 10)
    got = float(tf.reduce_mean(loss(np.concatenate([hard, soft], 1), tf.nn.softmax(z))))
    assert got == pytest.approx(want, rel=1e-4)


def test_the_non_target_part_is_the_kl_over_the_labels_zero_classes_and_leaves_the_label_to_ce():
    """NCKD (decoupled KD): both distributions renormalised over the classes the (mixed) label
    gives nothing; no gradient reaches the logits of the label's classes through it."""
    from asc_keras.distill.losses import distillation_terms, kd_loss_on_probs

    rng = np.random.default_rng(4)
    hard = np.eye(10, dtype=np.float32)[[0, 3, 3, 9, 1, 2]]
    hard[5] = 0.7 * hard[5] + 0.3 * np.eye(10, dtype=np.float32)[6]  # mixup: classes 2 and 6
    soft = temper(rng.normal(size=(6, 10)) * 2, 2.0)
    z = tf.constant(rng.normal(size=(6, 10)) * 3, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(z)
        _, kd = distillation_terms(hard, soft, z, 2.0, part="non_target")
    grad = np.asarray(tape.gradient(kd, z))
    zeros = hard == 0
    want = []
    for i in range(6):
        p = soft[i][zeros[i]] / soft[i][zeros[i]].sum()
        zt = np.asarray(z)[i][zeros[i]].astype(np.float64) / 2.0
        q = np.exp(zt - zt.max()) / np.exp(zt - zt.max()).sum()
        want.append(4.0 * (p * np.log(p / q)).sum())
    np.testing.assert_allclose(np.asarray(kd), want, rtol=1e-4)
    assert np.all(grad[~zeros] == 0.0) and np.all(np.abs(np.where(zeros, grad, 0.0)).sum(1) > 0)
    # A target that is the student's own distribution on those classes costs nothing there,
    # whatever it says of the label's class.
    q_all = np.asarray(tf.nn.softmax(z / 2.0))
    same = np.where(zeros, q_all, rng.uniform(size=q_all.shape))
    same = same / same.sum(1, keepdims=True)
    _, kd_same = distillation_terms(hard, same, z, 2.0, part="non_target")
    np.testing.assert_allclose(np.asarray(kd_same), 0.0, atol=1e-5)
    # One definition for the Distiller and the tf_keras pruning/QAT loss.
    d = Distiller(_mlp_student(), alpha=0.3, temperature=2.0, kd_part="non_target")
    x = rng.normal(size=(6, 20)).astype(np.float32)
    zs = d(x)
    want = float(d.compute_loss(x, (hard, soft), zs))
    loss = kd_loss_on_probs(0.3, 2.0, 10, part="non_target")
    got = float(tf.reduce_mean(loss(np.concatenate([hard, soft], 1), tf.nn.softmax(zs))))
    assert got == pytest.approx(want, rel=1e-4)
    with pytest.raises(ValueError, match="non_target"):
        distillation_terms(hard, soft, z, 2.0, part="target")


def test_the_ablations_non_target_rows_train_the_recipe_with_the_non_target_part():
    import dataclasses

    from asc_keras.config import SystemConfig
    from asc_keras.orchestration.ablation import select_rows
    from asc_keras.training.student import build_student_trainer

    cfg = SystemConfig()
    rows = {
        r.key: r for r in select_rows(cfg, ["kd_non_target", "kd_control_non_target", "kd_control"])
    }
    parts = {k: (r.change(cfg).distill.kd_part, r.from_control) for k, r in rows.items()}
    assert parts == {"kd_non_target": ("non_target", False), "kd_control": ("whole", True),
                     "kd_control_non_target": ("non_target", True)}  # fmt: skip
    small = dataclasses.replace(rows["kd_non_target"].change(cfg), student_width=8)
    assert build_student_trainer(small, 64, kd=True).kd_part == "non_target"
    with pytest.raises(ValueError, match="kd_part"):
        Distiller(_mlp_student(), kd_part="target")


def test_the_live_born_again_row_teaches_from_the_control_run_on_the_batch_the_student_sees():
    import dataclasses

    from asc_keras.config import SystemConfig
    from asc_keras.orchestration.ablation import select_rows
    from asc_keras.training.student import build_student_trainer, train_student

    cfg = SystemConfig()
    rows = {r.key: r for r in select_rows(cfg, ["kd_control", "kd_control_live", "kd_stop_0.5"])}
    assert [(k, r.from_control, r.live) for k, r in rows.items()] == [
        ("kd_control", True, False),
        ("kd_control_live", True, True),
        ("kd_stop_0.5", False, False),
    ]
    small = dataclasses.replace(cfg, student_width=8)
    control = build_student_trainer(small, 64, kd=False).student
    d = build_student_trainer(small, 64, kd=True, teachers=[control])
    assert d.teachers == [control] and d.alpha == cfg.distill.alpha and d.kd_steps is None
    # The target is the control's output on the very batch given (an augmented one in training):
    # alpha * CE + (1 - alpha) * T^2 * KL(softmax(z_control / T) || softmax(z_student / T)).
    rng = np.random.default_rng(6)
    x = rng.normal(size=(4, 28, 256, 1)).astype(np.float32)
    hard = np.eye(10, dtype=np.float32)[[2, 5, 7, 7]]
    soft = temper(np.asarray(logits_model(control)(x)), cfg.distill.temperature)
    expected = distillation_loss(hard, soft, d(x), cfg.distill.alpha, cfg.distill.temperature)
    got = float(d.compute_loss(x, hard, d(x)))
    assert got == pytest.approx(float(np.mean(expected)), rel=1e-5)
    stored = SoftTargets(np.zeros((4, 1, 10), np.float32), tuple("abcd"), {"teachers": ["t"]})
    with pytest.raises(ValueError, match="stored targets or live teachers, not both"):
        train_student(small, None, None, stored, run_dir="unused", teachers=[control])
    with pytest.raises(ValueError, match="set it above 0, or pass no control"):
        train_student(small, None, None, stored, run_dir="unused", control=control)


def test_mixed_targets_take_the_control_share_live_and_the_rest_from_the_stored_targets():
    import dataclasses

    from asc_keras.config import SystemConfig
    from asc_keras.orchestration.ablation import select_rows
    from asc_keras.training.student import build_student_trainer, check_control_share

    cfg = SystemConfig()
    assert cfg.distill.control_share == 0.0  # the report's KD unless asked
    row = select_rows(cfg, ["kd_control_share_0.5"])[0]
    assert (row.teachers, row.from_control, row.change(cfg).distill.control_share) == (
        (),
        False,
        0.5,
    )
    small = dataclasses.replace(row.change(cfg), student_width=8)
    T, alpha = small.distill.temperature, small.distill.alpha
    control = build_student_trainer(small, 64, kd=False).student
    d = build_student_trainer(small, 64, kd=True, control=control)  # the fixed half
    rng = np.random.default_rng(8)
    x = rng.normal(size=(4, 28, 256, 1)).astype(np.float32)
    hard = np.eye(10, dtype=np.float32)[[1, 3, 3, 9]]
    stored = temper(rng.normal(0, 2, (4, 10)), T).astype(np.float32)
    live = temper(np.asarray(logits_model(control)(x)), T)
    # loss = alpha * CE + (1 - alpha) * T^2 * KL(0.5 * stored + 0.5 * live || softmax(z_s / T))
    expected = distillation_loss(hard, 0.5 * stored + 0.5 * live, d(x), alpha, T)
    got = float(d.compute_loss(x, (hard, stored), d(x)))
    assert got == pytest.approx(float(np.mean(expected)), rel=1e-5)
    as64 = float(d.compute_loss(x, (hard, stored.astype(np.float64)), d(x)))  # NumPy's default
    assert as64 == pytest.approx(got, rel=1e-6)
    assert got != pytest.approx(
        float(np.mean(distillation_loss(hard, stored, d(x), alpha, T))), rel=1e-3
    )
    # Pruning and QAT take the same mixture from the control's outputs on the clean clips.
    zt, zc = rng.normal(0, 2, (4, 1, 10)), rng.normal(0, 2, (4, 1, 10))
    teachers = SoftTargets(
        zt.astype(np.float32), tuple("abcd"), {"teachers": ["t"], "target_source": "recording"}
    )
    ctrl = SoftTargets(zc.astype(np.float32), tuple("abcd"), {"teachers": ["ce_control"]})
    np.testing.assert_allclose(kd_soft_targets(teachers, small.distill, None, ctrl),
                               0.5 * temper(zt[:, 0], T) + 0.5 * temper(zc[:, 0], T), rtol=1e-5)  # fmt: skip
    np.testing.assert_allclose(
        kd_soft_targets(teachers, cfg.distill, None, ctrl), temper(zt[:, 0], T), rtol=1e-5
    )
    with pytest.raises(ValueError, match=r"control_share must be in \[0, 1\], got 1.5"):
        check_control_share(
            dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, control_share=1.5))
        )
    no_control = dataclasses.replace(
        small, controls=dataclasses.replace(cfg.controls, ce_control=False)
    )
    with pytest.raises(
        ValueError, match="set controls.ce_control=true, or distill.control_share=0"
    ):
        check_control_share(no_control)

    # So is the share where 'auto' finds no lead (unset: none).
    def no_lead(c, share):
        return dataclasses.replace(c, distill=dataclasses.replace(c.distill, control_share=0.0,
                                                                  control_share_no_lead=share))  # fmt: skip

    check_control_share(no_lead(no_control, None))
    check_control_share(no_lead(no_control, 0.0))
    with pytest.raises(ValueError, match=r"control_share_no_lead must be in \[0, 1\], got -1"):
        check_control_share(no_lead(cfg, -1.0))
    with pytest.raises(ValueError, match="or distill.control_share_no_lead=0"):
        check_control_share(no_lead(no_control, 1.0))
    with pytest.raises(ValueError, match="control_share"):
        Distiller(_mlp_student(), control_share=-0.1)
    # results.md says where each share of the target came from.
    from asc_keras.distill.targets import target_choice
    from asc_keras.evaluate.target_words import describe_targets

    assert "control_share" not in target_choice(teachers)
    said = describe_targets(target_choice(teachers, 0.5))
    assert said.startswith(
        "50 % the teachers' output on each clip's whole 10 s recording, 50 % the CE control"
    )


def test_a_share_by_confidence_weighs_each_example_by_who_gives_its_label_more():
    """distill.control_share_by 'confidence': per example g = s*b / ((1-s)*a + s*b) with a, b the
    teachers' and the control's probability of the (mixed) label (CA-MKD's weights at s = 1/2)."""
    import dataclasses

    from asc_keras.config import SystemConfig
    from asc_keras.distill.losses import mixed_targets
    from asc_keras.distill.targets import target_choice
    from asc_keras.evaluate.target_words import describe_targets
    from asc_keras.orchestration.ablation import select_rows
    from asc_keras.training.student import build_student_trainer

    cfg = SystemConfig()
    assert cfg.distill.control_share_by == "fixed"  # a fixed share unless asked
    row = select_rows(cfg, ["kd_control_confidence"])[0]
    d_row = row.change(cfg).distill
    assert (row.teachers, d_row.control_share, d_row.control_share_by) == ((), 0.5, "confidence")
    fixed = select_rows(dataclasses.replace(cfg, distill=d_row), ["kd_control_share_0.5"])[0]
    assert fixed.change(cfg).distill.control_share_by == "fixed"  # whatever the profile's rule
    # Worked by hand: the teachers give label 0 0.6, the control 0.2 -> g = 0.1 / (0.3 + 0.1).
    stored = np.array([[0.6, 0.4, 0.0], [0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])
    live = np.array([[0.2, 0.8, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    hard = np.array([[1.0, 0.0, 0.0], [0.3, 0.7, 0.0], [1.0, 0.0, 0.0]])  # the second: mixup's
    got = np.asarray(mixed_targets(stored, live, 0.5, hard))
    np.testing.assert_allclose(got[0], 0.75 * stored[0] + 0.25 * live[0], rtol=1e-6)
    np.testing.assert_allclose(got[1], 0.5 * stored[1] + 0.5 * live[1], rtol=1e-6)  # a tie
    np.testing.assert_allclose(got[2], [0.0, 0.5, 0.5], atol=1e-6)  # neither gives the label: s
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-6)  # still a distribution
    np.testing.assert_allclose(np.asarray(mixed_targets(stored, live, 0.0, hard)), stored)
    np.testing.assert_allclose(np.asarray(mixed_targets(stored, live, 1.0, hard)), live)
    # 0.3 prior: g = 0.3 * 0.2 / (0.7 * 0.6 + 0.3 * 0.2) on the first example.
    g = 0.06 / (0.42 + 0.06)
    np.testing.assert_allclose(np.asarray(mixed_targets(stored, live, 0.3, hard))[0],
                               (1 - g) * stored[0] + g * live[0], rtol=1e-6)  # fmt: skip
    # The Distiller's loss on a batch: the control run live, the share per example.
    small = dataclasses.replace(row.change(cfg), student_width=8)
    T, alpha = small.distill.temperature, small.distill.alpha
    control = build_student_trainer(small, 64, kd=False).student
    d = build_student_trainer(small, 64, kd=True, control=control)  # the row's rule
    assert d.share_by == "confidence" and d.get_config()["share_by"] == "confidence"
    rng = np.random.default_rng(9)
    x = rng.normal(size=(4, 28, 256, 1)).astype(np.float32)
    hard = np.eye(10, dtype=np.float32)[[0, 4, 4, 8]]
    stored = temper(rng.normal(0, 2, (4, 10)), T).astype(np.float32)
    live = temper(np.asarray(logits_model(control)(x)), T)
    a, b = (stored * hard).sum(1, keepdims=True), (live * hard).sum(1, keepdims=True)
    g = b / (a + b)
    assert not np.allclose(g, 0.5, atol=0.05)  # the case tested is not the fixed half
    expected = distillation_loss(hard, (1 - g) * stored + g * live, d(x), alpha, T)
    got = float(d.compute_loss(x, (hard, stored), d(x)))
    assert got == pytest.approx(float(np.mean(expected)), rel=1e-5)
    fixed_half = distillation_loss(hard, 0.5 * stored + 0.5 * live, d(x), alpha, T)
    assert got != pytest.approx(float(np.mean(fixed_half)), rel=1e-4)
    with pytest.raises(ValueError, match="unknown share_by 'sure'"):
        Distiller(_mlp_student(), share_by="sure")
    # Pruning and QAT: the same rule on the control's outputs on the clean clips, by their labels.
    zt, zc = rng.normal(0, 2, (4, 1, 10)), rng.normal(0, 2, (4, 1, 10))
    teachers = SoftTargets(
        zt.astype(np.float32), tuple("abcd"), {"teachers": ["t"], "target_source": "clip"}
    )
    ctrl = SoftTargets(zc.astype(np.float32), tuple("abcd"), {"teachers": ["ce_control"]})
    labels = np.array([0, 4, 4, 8])
    pt, pc = temper(zt[:, 0], T), temper(zc[:, 0], T)
    a, b = pt[np.arange(4), labels][:, None], pc[np.arange(4), labels][:, None]
    g = b / (a + b)
    np.testing.assert_allclose(kd_soft_targets(teachers, small.distill, labels, ctrl),
                               (1 - g) * pt + g * pc, rtol=1e-5)  # fmt: skip
    with pytest.raises(ValueError, match="control_share_by='confidence' needs the targets' labels"):
        kd_soft_targets(teachers, small.distill, None, ctrl)
    # results.md says how the share was set.
    said = describe_targets(target_choice(teachers, 0.5, "confidence"))
    assert said.startswith(
        "the teachers' output on each 1 s clip and the CE control's output on each"
    )
    assert (
        "mixed per example: the control's share 0.5 scaled by how much each gives the label" in said
    )


def test_early_stopped_kd_counts_its_share_of_the_students_steps():
    import dataclasses

    from asc_keras.config import SystemConfig
    from asc_keras.orchestration.ablation import select_rows
    from asc_keras.training.student import build_student_trainer, kd_steps, student_length

    cfg = SystemConfig()
    half = select_rows(cfg, ["kd_stop_0.5"])[0].change(cfg)
    assert half.distill.kd_stop == 0.5
    small = dataclasses.replace(half, student_width=8)
    steps = student_length(small, 64).steps
    assert build_student_trainer(small, 64, kd=True).kd_steps == round(0.5 * steps)
    assert build_student_trainer(small, 64, kd=False).kd_steps is None  # CE: no KD to stop
    assert kd_steps(cfg.distill, 800) is None  # the default: KD throughout
    with pytest.raises(ValueError, match="kd_stop"):
        kd_steps(dataclasses.replace(cfg.distill, kd_stop=1.5), 800)


def test_ensemble_weights_fitted_on_held_out_recordings_follow_the_teacher_that_knows():
    from asc_keras.distill.targets import fit_ensemble_weights

    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 80)
    knows = 4.0 * np.eye(10)[y] + rng.normal(0, 1, (80, 10))
    guesses = 3.0 * rng.normal(
        0, 1, (80, 10)
    )  # confident and uninformed (a teacher that memorised)
    wrong = 5.0 * np.eye(10)[(y + 1) % 10]  # confidently one class off
    z = np.stack([guesses, knows, wrong], axis=1)
    for mode in ("probabilities", "logits"):
        np.testing.assert_array_equal(fit_ensemble_weights(z, y, mode), [0.0, 1.0, 0.0])
    # Teachers that say the same get the plain average (ties go to the weights nearest it).
    same = np.stack([knows] * 3, axis=1)
    np.testing.assert_allclose(fit_ensemble_weights(same, y, step=1 / 3), [1 / 3] * 3)
    # Two good teachers that err on different recordings share the weight.
    other = knows.copy()
    other[:40] = 4.0 * np.eye(10)[(y[:40] + 2) % 10]
    both = knows.copy()
    both[40:] = 4.0 * np.eye(10)[(y[40:] + 3) % 10]
    w = fit_ensemble_weights(np.stack([both, other], axis=1), y)
    assert w.sum() == pytest.approx(1.0) and 0.3 <= w[0] <= 0.7


def test_weighted_ensemble_targets_are_the_weighted_average_and_travel_with_the_logits(tmp_path):
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, (5, 3, 10)).astype(np.float32)
    w = np.array([0.2, 0.8, 0.0])
    p = np.exp(z / 2.0) / np.exp(z / 2.0).sum(-1, keepdims=True)
    np.testing.assert_allclose(ensemble_distribution(z, 2.0, "probabilities", w),
                               (w[None, :, None] * p).sum(1), rtol=1e-5)  # fmt: skip
    zl = (w[None, :, None] * z).sum(1) / 2.0
    np.testing.assert_allclose(ensemble_distribution(z, 2.0, "logits", w),
                               np.exp(zl) / np.exp(zl).sum(-1, keepdims=True), rtol=1e-5)  # fmt: skip
    meta = {
        "teachers": ["a", "b", "c"],
        "weights": {"probabilities": w.tolist(), "logits": [0.5, 0.5, 0.0]},
    }
    st = SoftTargets(z, tuple("vwxyz"), meta)
    st.save(tmp_path / "t.npy")
    back = SoftTargets.load(tmp_path / "t.npy")
    np.testing.assert_array_equal(
        back.distribution(2.0, "probabilities"), st.distribution(2.0, "probabilities")
    )
    d = DistillConfig(temperature=2.0, ensemble="logits")
    np.testing.assert_allclose(
        kd_soft_targets(back, d), ensemble_distribution(z, 2.0, "logits", [0.5, 0.5, 0])
    )
    # Some teachers: their weights renormalised; teachers of no weight: the plain average of them.
    assert back.select(teachers=["a", "b"]).weights("probabilities").tolist() == pytest.approx(
        [0.2, 0.8]
    )
    assert back.select(teachers=["c"]).weights("probabilities") is None
    # A crafted weights entry is refused by name, not used.
    for bad in ({"probabilities": [0.5, 0.5]}, {"probabilities": [2.0, -1.0, 0.0]}, {"median": [1, 0, 0]},
                ["x"], {"logits": "abc"}):  # fmt: skip
        SoftTargets(z, tuple("vwxyz"), {**meta, "weights": bad}).save(tmp_path / "bad.npy")
        with pytest.raises(ValueError, match=r"bad\.json: 'weights' must"):
            SoftTargets.load(tmp_path / "bad.npy")
    # So is a crafted record of where the targets came from (it is printed in every run's log).
    good = {"source": "clip", "label_probability": 0.9, "limit": 0.78, "recordings": 4}
    for bad in ({"target_source": "evil"}, {"auto": "x"}, {"auto": {**good, "source": "both"}},
                {"auto": {**good, "limit": "0.78"}}, {"auto": {**good, "recordings": 4.5}}):  # fmt: skip
        SoftTargets(z, tuple("vwxyz"), {**meta, **bad}).save(tmp_path / "bad.npy")
        with pytest.raises(ValueError, match=r"bad\.json: 'target_source' must"):
            SoftTargets.load(tmp_path / "bad.npy")
    SoftTargets(z, tuple("vwxyz"), {**meta, "target_source": "clip", "auto": good}).save(
        tmp_path / "ok.npy"
    )
    assert SoftTargets.load(tmp_path / "ok.npy").meta["auto"] == good


def test_auto_target_source_takes_the_clips_where_the_teachers_fitted_their_recordings():
    labels = np.array([0, 1, 2, 3])
    p = np.full((4, 10), 0.02)
    p[np.arange(4), labels] = 0.82  # each row sums to 1: the label 0.82, nine others 0.02
    fitted = choose_target_source(p, labels, 0.8)
    assert fitted == {"source": "clip", "label_probability": 0.82, "limit": 0.8, "recordings": 4}
    p[0] = 0.1  # one recording the teachers did not fit: the mean falls to (0.1 + 3 * 0.82) / 4
    unfitted = choose_target_source(p, labels, 0.8)
    assert unfitted == {
        "source": "recording",
        "label_probability": 0.64,
        "limit": 0.8,
        "recordings": 4,
    }
    half = np.full((4, 10), 0.5 / 9)
    half[np.arange(4), labels] = 0.5
    assert choose_target_source(half, labels, 0.5)["source"] == "clip"  # the limit itself: clips
    # The limit is a probability: outside [0, 1] (or NaN) it is refused by its setting's name.
    for limit in (1.5, -0.1, float("nan")):
        with pytest.raises(
            ValueError, match=r"distill\.auto_label_probability must be in \[0, 1\]"
        ):
            choose_target_source(p, labels, limit)
    # No complete recording: every clip takes its own target.
    assert choose_target_source(None, None, 0.8) == {
        "source": "clip", "label_probability": None, "limit": 0.8, "recordings": 0}  # fmt: skip


def test_live_teachers_are_weighed_as_the_stored_ensemble_and_replace_it(tmp_path):
    """distill.clip_targets 'live': the teachers run on the batch give the target the stored
    clip-level logits give for the same inputs, weighed as the stored ensemble (a teacher of
    weight 0 is not run); with a control, its share is mixed in; only where the targets are
    clip-level; where a teacher with its own front end counts, stored ones, with a warning."""
    import dataclasses
    from types import SimpleNamespace

    from asc_keras.config import SystemConfig
    from asc_keras.distill.targets import target_choice
    from asc_keras.evaluate.target_words import describe_targets
    from asc_keras.stages.teaching import control_share, live_teachers, runs_live

    rng = np.random.default_rng(21)
    x = rng.normal(size=(6, 20)).astype(np.float32)
    hard = np.eye(10, dtype=np.float32)[[0, 1, 2, 3, 4, 5]]
    teachers = [_mlp_student(seed=s) for s in (31, 32, 33)]
    folders = {}
    for name, t in zip(("a", "b", "c"), teachers, strict=True):
        folders[name] = tmp_path / name
        folders[name].mkdir()
        t.save(folders[name] / "final.keras")
    z = np.stack([np.asarray(logits_model(t)(x)) for t in teachers], axis=1)
    w = {"probabilities": [0.25, 0.0, 0.75], "logits": [0.5, 0.5, 0.0]}
    stored = SoftTargets(z, tuple("uvwxyz"), {"teachers": ["a", "b", "c"], "weights": w,
                                              "target_source": "clip"})  # fmt: skip
    cfg = SystemConfig()
    live_cfg = dataclasses.replace(
        cfg, distill=dataclasses.replace(cfg.distill, clip_targets="live")
    )
    splits = SimpleNamespace(own_front_end={})
    assert (
        cfg.distill.clip_targets == "stored" and live_teachers(cfg, stored, folders, splits) is None
    )
    live = live_teachers(live_cfg, stored, folders, splits)
    assert live.names == ("a", "c") and live.weights == (0.25, 0.75)  # b (weight 0) is not run
    T = live_cfg.distill.temperature
    d = Distiller(_mlp_student(seed=1), teachers=list(live.models), teacher_weights=live.weights,
                  alpha=0.1, temperature=T)  # fmt: skip
    _, got = d._targets(x, hard)
    want = kd_soft_targets(stored, live_cfg.distill)  # the stored path, the same weights
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)
    assert np.abs(want - stored.distribution(T, "probabilities")).max() < 1e-5
    with pytest.raises(ValueError, match="replace stored soft targets"):
        d._targets(x, (hard, want))
    # With the control live: (1 - s) * the teachers' live part + s * the control's.
    control = _mlp_student(seed=40)
    dc = Distiller(_mlp_student(seed=1), teachers=list(live.models), teacher_weights=live.weights,
                   control=control, control_share=0.5, alpha=0.1, temperature=T)  # fmt: skip
    _, mixed = dc._targets(x, hard)
    ctl = temper(np.asarray(logits_model(control)(x)), T)
    np.testing.assert_allclose(np.asarray(mixed), 0.5 * want + 0.5 * ctl, atol=1e-5)
    dc.save(tmp_path / "dc.keras")
    back = keras.saving.load_model(tmp_path / "dc.keras")
    assert (back.teacher_weights, back.control_share, len(back.teachers)) == ([0.25, 0.75], 0.5, 2)
    np.testing.assert_allclose(np.asarray(back._targets(x, hard)[1]), np.asarray(mixed), atol=1e-5)
    with pytest.raises(ValueError, match="one per live teacher"):
        Distiller(_mlp_student(), teachers=list(live.models), teacher_weights=[1.0])
    # Recording-level targets stay stored: a 1 s view of a recording is not what they know.
    rec = SoftTargets(z, stored.items, {**stored.meta, "target_source": "recording"})
    assert not runs_live(live_cfg, rec, splits) and runs_live(live_cfg, stored, splits)
    assert live_teachers(live_cfg, rec, folders, splits) is None
    own = SimpleNamespace(own_front_end={"c": object()})
    with pytest.warns(UserWarning, match=r"\['c'\] take features of their own .*stored clip-level"):
        assert live_teachers(live_cfg, stored, folders, own) is None
    assert live_teachers(live_cfg, stored, folders, SimpleNamespace(own_front_end={"b": 0}))
    # The decision agrees with what is loaded: where a teacher cannot run live the targets are
    # stored, so the control keeps its share (and results say stored); b (weight 0) is not run.
    shared = dataclasses.replace(live_cfg, distill=dataclasses.replace(live_cfg.distill,
                                                                       control_share=0.5))  # fmt: skip
    assert not runs_live(shared, stored, own) and control_share(shared, stored, own) == 0.5
    assert runs_live(shared, stored, SimpleNamespace(own_front_end={"b": 0}))
    assert (
        control_share(shared, stored, splits) == 0.0 and control_share(shared, rec, splits) == 0.5
    )
    # results.md says the targets were made live.
    said = describe_targets(target_choice(stored, live=True))
    assert said.startswith("the teachers' output on each augmented batch the student trains on")
    assert describe_targets(target_choice(stored)) == "the teachers' output on each 1 s clip"


def test_the_width_search_runs_the_live_teachers_as_run_does():
    """A trial built from SearchData with live teachers gets them (and their weights) and, as in
    run, no CE control: the control's share is for stored targets only."""
    import dataclasses

    import keras_tuner as kt

    from asc_keras.presets import system_config
    from asc_keras.training.tuning import SearchData, StudentHyperModel

    cfg = dataclasses.replace(system_config(1, "quick"), student_width=8)
    # 'auto' has run the teachers live (a lead over the probe): SearchData holds them.
    assert cfg.distill.control_share == 0.5 and cfg.distill.clip_targets == "auto"
    teacher = _mlp_student(n_in=256, seed=3)
    data = SearchData(train=list(range(64)), val=None, targets=None, teachers=(teacher,),
                      teacher_weights=(1.0,))  # fmt: skip
    hm = StudentHyperModel(cfg, data, widths=(8,))
    model = hm.build(kt.HyperParameters())
    assert model.teachers == [teacher] and model.teacher_weights == [1.0]
    assert model.control is None and model.control_share == 0.0 and model.alpha == 0.1
    assert hm._controls == {}  # no control was trained for it


def test_a_target_made_wholly_on_the_batch_is_read_at_the_live_temperature(monkeypatch):
    """distill.live_temperature: the KD term's T where no part of the target is stored (live
    teachers, or the CE control alone); distill.temperature where any part is (stored targets,
    the control's half beside them) -- in the trainer, the stage's key and results' words."""
    import dataclasses
    from types import SimpleNamespace

    import asc_keras.stages.outputs as outputs
    from asc_keras.config import SystemConfig
    from asc_keras.evaluate.target_words import describe_targets
    from asc_keras.orchestration.ablation import select_rows
    from asc_keras.presets import system_config
    from asc_keras.stages.shared import RunPlace
    from asc_keras.training.student import build_student_trainer, check_kd_weights, kd_temperature

    quick = system_config(1, "quick")
    assert (quick.distill.temperature, quick.distill.live_temperature) == (2.0, 1.0)
    assert system_config(1, "paper").distill.live_temperature is None  # the report gives no T
    half, whole = (dataclasses.replace(quick.distill, control_share=s) for s in (0.5, 1.0))
    # (teachers live, the control's share where it teaches) -> T
    assert [kd_temperature(half, *k) for k in ((True, 0.0), (False, 0.5), (False, 0.0))] == [
        1.0, 2.0, 2.0]  # fmt: skip
    assert kd_temperature(whole, False, 1.0) == 1.0  # born-again: the control alone, live
    assert kd_temperature(dataclasses.replace(whole, live_temperature=None), True, 1.0) == 2.0
    # The trainer reads it: a live teacher (here a width-8 student), the control alone, its half.
    small = dataclasses.replace(SystemConfig(student_width=8), distill=whole)
    ctl = build_student_trainer(small, 64, kd=False)
    assert ctl.temperature == 2.0  # CE: no soft target at all
    assert build_student_trainer(small, 64, kd=True, teachers=[ctl.student]).temperature == 1.0
    assert build_student_trainer(small, 64, kd=True, control=ctl.student).temperature == 1.0
    mixed = dataclasses.replace(small, distill=half)
    assert build_student_trainer(mixed, 64, kd=True, control=ctl.student).temperature == 2.0
    for name, bad in (("live_temperature", 0.0), ("temperature", float("nan"))):
        wrong = dataclasses.replace(small, distill=dataclasses.replace(whole, **{name: bad}))
        with pytest.raises(ValueError, match=f"distill.{name} must be above 0"):
            check_kd_weights(wrong)
        with pytest.raises(ValueError, match=f"distill.{name} must be above 0"):
            build_student_trainer(wrong, 64, kd=True, control=ctl.student)
    # alpha, the same way: (recording-level teachers' part, the control's share) -> the labels' weight
    from asc_keras.training.student import kd_alpha

    assert (quick.distill.alpha, quick.distill.recording_alpha) == (0.1, 0.5)
    assert [kd_alpha(quick.distill, *k) for k in ((True, 0.5), (True, 0.0), (False, 0.5),
                                                  (True, 1.0))] == [0.5, 0.5, 0.1, 0.1]  # fmt: skip
    assert kd_alpha(dataclasses.replace(quick.distill, recording_alpha=None), True, 0.5) == 0.1
    for name, bad in (("recording_alpha", 1.5), ("alpha", -0.1), ("recording_alpha", float("nan"))):
        wrong = dataclasses.replace(small, distill=dataclasses.replace(whole, **{name: bad}))
        with pytest.raises(ValueError, match=rf"distill.{name} must be in \[0, 1\]"):
            check_kd_weights(wrong)
    # The student stage's key holds live_temperature only where it acts, so runs recorded
    # before it (stored targets) stay done.
    place = RunPlace(Path("o"), Path("w"))
    prep = SimpleNamespace(splits=SimpleNamespace(clip_cache_name="c"), targets_key="t",
                           targets=SimpleNamespace(meta={}))  # fmt: skip
    for live, cfg, acts in ((False, dataclasses.replace(quick, distill=half), False),
                            (True, dataclasses.replace(quick, distill=half), True),
                            (False, dataclasses.replace(quick, distill=whole), True)):  # fmt: skip
        monkeypatch.setattr(outputs, "runs_live", lambda *a, live=live: live)
        key = outputs.student_inputs(cfg, place, prep)["distill"]
        assert ("live_temperature" in key) is acts
        assert "recording_alpha" not in key and key["alpha"] == cfg.distill.alpha  # acts as alpha
    # results.md says the T the KD term read; the ablation's T rows set both, kd_live_T2 the live
    # targets at the stored ones' T.
    assert describe_targets({"source": "clip", "live": True, "temperature": 1.0}).endswith(
        "; T = 1"
    )
    rows = {
        r.key: r.change(quick).distill for r in select_rows(quick, ["kd_T1", "kd_T4", "kd_live_T2"])
    }
    assert [(d.temperature, d.live_temperature) for d in rows.values()] == [
        (1.0, 1.0), (4.0, 4.0), (2.0, None)]  # fmt: skip
