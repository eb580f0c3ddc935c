"""distill.clip_targets 'auto': the teachers run live only where, on the training clips held out
from them, they clearly beat the same student trained with CE on the other clips (the probe)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from asc_keras.config import SCENE_CLASSES
from asc_keras.data.splits import ClipSplit, RecordingSplit
from asc_keras.distill.targets import SoftTargets
from asc_keras.metrics import grouped_lead, paired_lead
from asc_keras.presets import system_config
from asc_keras.stages.shared import RunPlace, Splits


def test_a_lead_by_location_counts_locations_not_clips():
    # Two locations, the first model right on every clip of one, both right on the other: 20 clips
    # against 0 reads as clear clip by clip, but it is one location of two: p = 1/2 exactly.
    first, second = [1] * 40, [0] * 20 + [1] * 20
    groups = ["x"] * 20 + ["y"] * 20
    assert paired_lead(first, second)["p_value"] == 0.5**20
    assert grouped_lead(first, second, groups) == {
        "items": 40, "groups": 2, "lead": 0.5, "p_value": 0.5}  # fmt: skip
    # Three locations each +1: only the all-positive pattern of 8 reaches the sum.
    three = grouped_lead([1, 1, 1], [0, 0, 0], ["a", "b", "c"])
    assert three["p_value"] == 1 / 8 and three["lead"] == 1.0
    # +1 and -1: the sums 2, 0, 0, -2 of the four patterns; three reach 0.
    assert grouped_lead([1, 0], [0, 1], ["a", "b"])["p_value"] == 0.75
    # Differences of a half and three quarters: 1.25 is reached by (+, +) alone, p 1/4.
    halves = grouped_lead([1, 1, 1, 1, 1, 0], [0, 1, 0, 0, 0, 0], ["a", "a", "b", "b", "b", "b"])
    assert halves["lead"] == pytest.approx(0.625) and halves["p_value"] == 0.25
    # No difference is no lead: p 1.
    assert grouped_lead([1, 0], [1, 0], ["a", "b"])["p_value"] == 1.0
    # Above 16 locations the patterns are drawn (fixed seed): all 20 ahead is reached by the
    # observed pattern alone, counted as one of the draws.
    many = grouped_lead([1] * 20, [0] * 20, [f"l{k}" for k in range(20)])
    assert many["p_value"] == 1 / 20_001 and many["groups"] == 20
    with pytest.raises(ValueError, match="grouped_lead"):
        grouped_lead([1, 0], [1], ["a", "b"])


def _clip(scene: str, loc: int, device: str, k: int) -> str:
    return f"audio/{scene}-lisbon-{loc}-{loc}0-{k}-{device}.wav"


@pytest.fixture
def splits() -> Splits:
    return make_splits()


def make_splits() -> Splits:
    """10 classes x 5 locations x 2 devices x 2 clips: 200 training clips, 100 recordings."""
    names, labels, files = [], [], []
    for c, scene in enumerate(SCENE_CLASSES):
        for loc in range(5):
            for device in ("a", "b"):
                clips = tuple(_clip(scene, 100 * c + loc, device, k) for k in range(2))
                names += clips
                labels += [c, c]
                files.append(clips)
    n = len(names)
    train = ClipSplit(np.zeros((n, 2, 3), np.float16), np.arange(n), np.array(labels),
                      np.array([f[-5] for f in names]), tuple(names))  # fmt: skip
    r = len(files)
    recs = RecordingSplit(np.zeros((r, 2, 3), np.float16), np.arange(r), np.array(labels[::2]),
                          np.array(["a", "b"] * (r // 2)), tuple("|".join(f) for f in files),
                          files=tuple(files))  # fmt: skip
    return Splits(train, train.take([0]), recs, None, "clips-test")


def _quick(**distill):
    """The quick profile with ``distill`` changes; the probe hears the clips as recorded only
    unless ``probe_devices`` is given (its simulated devices: tests/test_probe_devices.py)."""
    distill = {"probe_devices": 0, **distill}
    cfg = system_config(1, "quick")
    return dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, **distill))


def _targets(splits: Splits, teachers_right: np.ndarray, source: str = "clip") -> SoftTargets:
    """Clip-level logits of two teachers (the second of weight 0): the first sure of the label
    where ``teachers_right``, else sure of the next class."""
    y = splits.train.labels
    top = np.where(teachers_right, y, (y + 1) % 10)
    z = np.zeros((len(y), 2, 10), np.float32)
    z[np.arange(len(y)), 0, top] = 40.0  # p = 1 to float64's precision
    z[np.arange(len(y)), 1, (y + 3) % 10] = 40.0  # weight 0: never counted
    meta = {"target_source": source, "teachers": ["cnn", "bcresnet"],
            "weights": {"probabilities": [1.0, 0.0], "logits": [1.0, 0.0]}}  # fmt: skip
    return SoftTargets(z, splits.train.names, meta)


def test_auto_runs_the_teachers_live_only_on_a_lead_over_the_probe(splits):
    from asc_keras.distill.targets import target_choice
    from asc_keras.evaluate.target_words import describe_targets
    from asc_keras.stages.probe import check_clip_targets, clip_lead, held_out_split
    from asc_keras.stages.teaching import control_share, runs_live, teaching_config, teaching_record

    cfg = _quick()
    assert cfg.distill.clip_targets == "auto" and cfg.teachers.holdout_fraction == 0.2
    learn, held = held_out_split(cfg, splits)
    # One location of five per class, every clip of its two recordings: 10 locations, 40 clips.
    assert (len(learn), len(held)) == (160, 40)
    assert not set(learn.names) & set(held.names)
    place = {n.split("-")[2] for n in held.names}
    assert len(place) == 10 and not place & {n.split("-")[2] for n in learn.names}
    at = {n: i for i, n in enumerate(splits.train.names)}
    held_rows = np.array([at[n] for n in held.names])
    all_right = np.ones(len(splits.train), bool)

    def with_probe(t: SoftTargets, right) -> SoftTargets:
        probe = {"clips": list(held.names), "right": [int(r) for r in right],
                 "p_label": [float(r) for r in right]}  # fmt: skip
        return SoftTargets(t.logits, t.items, {**t.meta, "probe": probe})

    # Teachers sure of the label on every held-out clip, the probe on none: +100 points (the
    # label's probability) on 10 of 10 locations.
    ahead = with_probe(_targets(splits, all_right), np.zeros(40))
    lead = clip_lead(cfg, ahead, splits)
    assert lead == {"teachers": 1.0, "student": 0.0, "teachers_label": 1.0, "student_label": 0.0,
                    "clips": 40, "locations": 10, "lead": 1.0, "p_value": 1 / 1024, "clear": True,
                    "live": True}  # fmt: skip
    assert runs_live(cfg, ahead, splits) and control_share(cfg, ahead, splits) == 0.0
    # The same accuracy on the same clips: no lead.  The quick profile then teaches with the CE
    # control alone (control_share_no_lead 1); without that setting, the stored targets with the
    # control's half (control_share).
    tie = with_probe(_targets(splits, all_right), np.ones(40))
    assert clip_lead(cfg, tie, splits)["p_value"] == 1.0
    assert cfg.distill.control_share_no_lead == 1.0 and cfg.distill.control_share == 0.5
    assert not runs_live(cfg, tie, splits) and control_share(cfg, tie, splits) == 1.0
    halves = _quick(control_share_no_lead=None)
    assert control_share(halves, tie, splits) == 0.5 and control_share(halves, ahead, splits) == 0.0
    # What training reads: the decided share in the config (0 live, 1 alone), idempotent; with
    # no probe, or recording-level targets, the configured half.
    alone = teaching_config(cfg, tie, splits)
    assert alone.distill.control_share == 1.0 and teaching_config(alone, tie, splits) == alone
    assert teaching_config(cfg, ahead, splits).distill.control_share == 0.0
    assert teaching_config(cfg, _targets(splits, all_right), splits) is cfg
    # The labels' weight: recording_alpha where the teachers' part is of whole recordings (the
    # quick profile's 0.5), alpha (0.1) wherever else -- live, the control alone, clip-level.
    assert (cfg.distill.alpha, cfg.distill.recording_alpha) == (0.1, 0.5)
    on_recs = teaching_config(cfg, _targets(splits, all_right, "recording"), splits)
    assert (on_recs.distill.alpha, on_recs.distill.control_share) == (0.5, 0.5)
    assert teaching_config(on_recs, _targets(splits, all_right, "recording"), splits) is on_recs
    assert teaching_config(cfg, tie, splits).distill.alpha == 0.1
    assert teaching_config(cfg, ahead, splits).distill.alpha == 0.1
    whole = dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, control_share=1.0))
    assert teaching_config(whole, _targets(splits, all_right, "recording"), splits) is whole
    paper = system_config(1, "paper")
    assert teaching_config(paper, _targets(splits, all_right, "recording"), splits) is paper
    # Ahead on one location of ten only (its four clips): a lead, not a clear one (p = 1/2).  The
    # quick profile (live_lead_p 0.05) teaches from the control alone there; 1 (any lead) runs
    # the teachers live on it, 0.5 does not (p < 0.5 is asked).
    one = np.ones(len(splits.train), bool)
    probe_right = np.ones(40)
    probe_right[:4] = 0
    assert len({n.split("-")[2] for n in held.names[:4]}) == 1
    narrow = with_probe(_targets(splits, one), probe_right)
    got = clip_lead(cfg, narrow, splits)
    assert cfg.distill.live_lead_p == 0.05
    assert (got["lead"], got["p_value"], got["clear"], got["live"]) == (
        pytest.approx(0.1), 0.5, False, False)  # fmt: skip
    assert not runs_live(cfg, narrow, splits) and control_share(cfg, narrow, splits) == 1.0
    any_lead = _quick(live_lead_p=1.0)
    assert clip_lead(any_lead, narrow, splits)["live"] and runs_live(any_lead, narrow, splits)
    assert control_share(any_lead, narrow, splits) == 0.0
    assert clip_lead(_quick(live_lead_p=0.5), narrow, splits)["live"] is False
    assert "; live because on the 40 training clips" in describe_targets(
        teaching_record(any_lead, narrow, splits))  # fmt: skip
    assert "a lead, not a clear one (distill.live_lead_p) (by location +10.0 points, p = 0.500" \
        in describe_targets(teaching_record(any_lead, narrow, splits))  # fmt: skip
    # A limit under the clear lead's: p = 1/1024 is clear, and not below 0.0005: the control alone.
    stricter = _quick(live_lead_p=0.0005)
    assert not runs_live(stricter, ahead, splits) and control_share(stricter, ahead, splits) == 1.0
    assert "a clear lead, its p not below distill.live_lead_p (by location +100.0 points" in \
        describe_targets(teaching_record(stricter, ahead, splits))  # fmt: skip
    unclear = describe_targets(teaching_record(cfg, narrow, splits))
    assert "; unused because on the 40 training clips" in unclear
    assert "a lead, not a clear one (by location +10.0 points, p = 0.500" in unclear
    # The teachers wrong on the held-out clips where the probe is right: stored.
    wrong = all_right.copy()
    wrong[held_rows] = False
    behind = with_probe(_targets(splits, wrong), np.ones(40))
    assert clip_lead(cfg, behind, splits)["lead"] == pytest.approx(-1.0)
    assert not runs_live(cfg, behind, splits)
    # The label's probability, not the accuracy, decides: the teachers right where the probe is
    # too, but surer of the label (0.9 against 0.6 on every clip) is a clear lead.
    sure = with_probe(_targets(splits, all_right), np.ones(40))
    sure.meta["probe"]["p_label"] = [0.6] * 40
    surer = SoftTargets(sure.logits * 0.0, sure.items, sure.meta)
    surer.logits[np.arange(len(splits.train)), 0, splits.train.labels] = np.log(0.9 * 9 / 0.1)
    got = clip_lead(cfg, surer, splits)
    assert (got["teachers"], got["student"]) == (1.0, 1.0)
    assert got["teachers_label"] == pytest.approx(0.9) and got["lead"] == pytest.approx(0.3)
    assert got["p_value"] == 1 / 1024 and runs_live(cfg, surer, splits)
    # Recording-level targets stay stored whatever the probe says; 'live' runs them regardless.
    rec = with_probe(_targets(splits, all_right, "recording"), np.zeros(40))
    assert not runs_live(cfg, rec, splits) and teaching_record(cfg, rec, splits).get("lead") is None
    # results.md says the labels' weight the KD term read: recording_alpha's on recording-level targets.
    assert describe_targets(teaching_record(cfg, rec, splits)).endswith(
        "T = 2, the labels' weight α = 0.5"
    )
    assert runs_live(_quick(clip_targets="live"), tie, splits)
    assert not runs_live(_quick(clip_targets="stored"), ahead, splits)
    # Without a probe, or a probe of other clips, 'auto' does not guess: stored.
    assert not runs_live(cfg, _targets(splits, all_right), splits)
    other = SoftTargets(ahead.logits, ahead.items,
                        {**ahead.meta, "probe": {"clips": list(held.names[:-1]), "right": [0] * 39,
                                                 "p_label": [0.0] * 39}})  # fmt: skip
    assert clip_lead(cfg, other, splits) is None and not runs_live(cfg, other, splits)
    # results.json and results.md say which way it went and why.
    record = teaching_record(cfg, ahead, splits)
    assert record == {
        **target_choice(ahead, live=True),
        "teacher_view": "parallel",
        "lead": lead,
        "temperature": 1.0,
        "alpha": 0.1,
    }  # the live T (distill.live_temperature), alpha (recording_alpha: recording-level targets)
    said = describe_targets(record)
    assert (
        "run live (distill.clip_targets), each clip heard through a device drawn at every step "
        "from those that recorded its sound, its own included (distill.teacher_view)" in said
    )
    assert "; live because on the 40 training clips of 10 locations held out from the teachers " \
           "their ensemble gave the label 100.0 % of its probability against 0.0 % for the same " \
           "student trained with CE on the other clips (accuracy 100.0 against 0.0 %), a clear " \
           "lead (by location +100.0 points, p = 0.001" in said  # fmt: skip
    unused = describe_targets(teaching_record(cfg, tie, splits))
    assert unused.startswith("the CE control's output on each augmented batch the student trains "
                             "on, run live, alone (born-again; distill.control_share_no_lead), in "
                             "place of the teachers' output on each 1 s clip")  # fmt: skip
    assert "; unused because on the 40 training clips" in unused and "no lead (by" in unused
    stored = describe_targets(teaching_record(halves, tie, splits))
    assert "; stored because on the 40 training clips" in stored and "no lead (by" in stored
    assert stored.endswith("50 % the CE control's output on each augmented batch the student "
                           "trains on, run live (distill.control_share); T = 2, the labels' "
                           "weight α = 0.1")  # fmt: skip
    # The control alone is a target made wholly on the batch: the live T (a stored half: T 2).
    assert unused.endswith("; T = 1, the labels' weight α = 0.1")
    # results.md's verdict says whom the KD student learned from where it was the control alone.
    from asc_keras.evaluate.report import _verdict

    res = {"verdict": {"kd_gain_points": 1.5}, "soft_targets": teaching_record(cfg, tie, splits),
           "student": {"float": {"accuracy": 0.95}, "ce_control": {"accuracy": 0.935}}}  # fmt: skip
    assert _verdict(res)[0] == (
        "**Distillation gain over the CE control: +1.5 points** (KD student 95.0 %, CE control "
        "93.5 % on 1 s clips; the KD student learned from the CE control alone, run live, because "
        "the teachers showed no lead over a CE student on the training clips held out from "
        "them: the soft targets' line below).  ")  # fmt: skip
    res["soft_targets"] = teaching_record(halves, tie, splits)
    assert _verdict(res)[0].endswith("93.5 % on 1 s clips).  ")
    # And the warning that the teachers know no more says the run kept them out already.
    from asc_keras.stages.verdict import run_warnings

    res.update(verdict={"ensemble_over_ce_recordings_points": -8.3}, learning={})
    assert "distilling from them may not pay: read the KD row over several" in run_warnings(res)[0]
    res["soft_targets"] = teaching_record(cfg, tie, splits)
    (said,) = run_warnings(res)
    assert "the probe found so before the KD student trained, which learned from its CE control " \
           "alone). Train the teachers longer" in said and "may not pay" not in said  # fmt: skip
    assert said.endswith("another TAU-layout set to train MobileNetV2 on first (teachers.pretrain_data, "
                         "pretrain_epochs).")  # fmt: skip
    # 'auto' needs clips held out from the teachers.
    with pytest.raises(ValueError, match=r"teachers\.holdout_fraction=0 holds none out"):
        check_clip_targets(dataclasses.replace(cfg, teachers=dataclasses.replace(
            cfg.teachers, holdout_fraction=0.0)))  # fmt: skip
    for bad in (0.0, 1.5, float("nan")):  # a p-value's limit: (0, 1]
        with pytest.raises(ValueError, match=r"distill\.live_lead_p must be in \(0, 1\]"):
            check_clip_targets(_quick(live_lead_p=bad))
    check_clip_targets(cfg)


class _Probe:
    """A stand-in for the trained probe student: right on the first ``k`` clips it is shown."""

    def __init__(self, held_labels: np.ndarray, k: int):
        self.labels, self.k = held_labels, k

    def predict(self, x, batch_size=None, verbose=0):
        y = (self.labels + 1) % 10
        y[: self.k] = self.labels[: self.k]
        return np.eye(10)[y]


def test_the_probe_stage_trains_once_on_the_teachers_clips_and_is_read_back_safely(
    splits, tmp_path, monkeypatch
):
    import asc_keras.training.student as student
    from asc_keras.stages.probe import held_out_split, read_probe
    from asc_keras.stages.runner import StageRunner
    from asc_keras.stages.teaching import probe_stage, runs_live

    cfg = _quick()
    learn, held = held_out_split(cfg, splits)
    trained = []

    def fake_train(c, train, evaluate, targets, **kw):
        trained.append((train.names, evaluate.names, targets, kw["run_dir"]))
        return _Probe(evaluate.labels, 4)

    monkeypatch.setattr(student, "train_student", fake_train)
    place = RunPlace(out=tmp_path / "out", work=tmp_path / "work")
    logs = []
    runner = StageRunner(place.out, log=logs.append)
    targets = _targets(splits, np.ones(len(splits.train), bool))
    got = probe_stage(cfg, place, runner, targets, splits)
    # Trained once, with CE (no targets), on the clips the teachers learned from, scored on the
    # held-out ones: right on the first 4 (one location), the teachers on all 40.
    assert trained == [(learn.names, held.names, None, trained[0][3])]
    assert got.meta["probe"] == {"clips": list(held.names), "right": [1] * 4 + [0] * 36,
                                 "p_label": [1.0] * 4 + [0.0] * 36}  # fmt: skip
    assert runs_live(cfg, got, splits)
    assert any("on the 40 clips of 10 locations held out, the label's probability: the teachers' "
               "ensemble 100.0 %, the probe student 10.0 % (lead +90.0 points by location, p = "
               "0.002; accuracy 100.0 / 10.0 %): the teachers run live" in line for line in logs)  # fmt: skip
    files = list((tmp_path / "work" / "probes").glob("probe-*.json"))
    assert len(files) == 1 and trained[0][3] == files[0].with_suffix("")
    # Read back, not trained again (another seed is another probe); --force probe trains again.
    assert probe_stage(cfg, place, runner, targets, splits).meta["probe"] == got.meta["probe"]
    assert len(trained) == 1
    probe_stage(
        cfg, place, StageRunner(place.out, force={"probe"}, log=logs.append), targets, splits
    )
    assert len(trained) == 2
    probe_stage(dataclasses.replace(cfg, seed=cfg.seed + 1), place, runner, targets, splits)
    assert len(trained) == 3
    # Recording-level targets ask for no probe: nothing trained, the targets handed back.
    rec = _targets(splits, np.ones(len(splits.train), bool), "recording")
    assert probe_stage(cfg, place, runner, rec, splits) is rec and len(trained) == 3
    # A crafted or damaged record is refused by name, with the fix; nothing in it runs.
    path = files[0]
    names = list(held.names)
    for bad in ("not json", json.dumps({"clips": names, "right": [0.5] * 40, "p_label": [0.5] * 40}),
                json.dumps({"clips": names, "right": [1] * 40, "p_label": [1.5] * 40}),
                json.dumps({"clips": names, "right": [1] * 39, "p_label": [1.0] * 39}),
                json.dumps({"clips": names, "right": [1] * 40}),
                json.dumps({"clips": "!!python/object/apply:os.system ['echo x']", "right": [],
                            "p_label": []})):  # fmt: skip
        path.write_text(bad)
        with pytest.raises(
            ValueError, match=rf"{path.name}: not a probe student's record .*delete it"
        ):
            read_probe(path)
        with pytest.raises(ValueError, match="delete it to train the probe again"):
            probe_stage(cfg, place, runner, targets, splits)
    # A record of other clips (a work folder copied between data sets) is refused too.
    path.write_text(json.dumps({"clips": names[:-1], "right": [1] * 39, "p_label": [1.0] * 39}))
    with pytest.raises(ValueError, match="a probe of other clips than this run holds out"):
        probe_stage(cfg, place, runner, targets, splits)
