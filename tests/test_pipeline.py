"""End to end on the session's tiny run: every row of results.json and its checks, the compressed
float twin, the DCASE files, a second run that redoes nothing, damaged audio, clear early
errors; the width search and the ablation on the same work folder, through the run's recipe."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import PANNS, ROOT, TINY, run_args
from recipe_spy import install as install_recipe_spies

from asc_keras.cli import main
from asc_keras.config import DistillConfig
from asc_keras.data import DataError, rebuild_recordings
from asc_keras.metrics import grouped_lead
from asc_keras.presets import system_config
from asc_keras.stages.pretrain import check_pretrain_data
from asc_keras.stages.shared import check_whole_recordings


def _results(out):
    return json.loads((out / "results.json").read_text())


def test_results_hold_every_row_with_its_checks(tiny_run, damaged_tau, tiny_work, tiny_dataset):
    r = _results(tiny_run)
    # The run's training clips (the damaged one left out) and complete training recordings.
    kept = tiny_dataset.train[tiny_dataset.train["filename"] != damaged_tau[1]]
    train_clips, train_recordings = len(kept), len(rebuild_recordings(kept)[0])
    s = r["student"]
    assert r["system"] == 2 and r["profile"] == "quick"
    for key in ("float", "compressed", "int8"):
        m = s[key]
        assert 0 <= m["accuracy"] <= 1 and np.isfinite(m["log_loss"]) and len(m["per_class"]) == 10
        assert set(m["per_device"]) >= {"a", "s4"}
    # Like with like: compression against the trained model, quantisation against its float twin.
    assert s["compression_gap_points"] == pytest.approx(
        100 * (s["compressed"]["accuracy"] - s["float"]["accuracy"])
    )
    assert s["int8_gap_points"] == pytest.approx(
        100 * (s["int8"]["accuracy"] - s["compressed"]["accuracy"])
    )
    ce, base, teachers = s["ce_control"], r["baseline"]["float"], r["teachers"]
    assert set(teachers) == {"mobilenetv2", "cnn", "bcresnet", "ensemble"}
    # The quick profile weighs its teachers by training recordings kept from their training: at
    # least one per class (10 classes), each teacher's accuracy there, weights on the simplex.
    ens = teachers["ensemble"]
    assert list(ens["weights"]) == ["mobilenetv2", "cnn", "bcresnet"]
    assert sum(ens["weights"].values()) == pytest.approx(1.0) and min(ens["weights"].values()) >= 0
    assert ens["held_out"]["recordings"] >= 10
    assert set(ens["held_out"]["accuracy"]) == {"mobilenetv2", "cnn", "bcresnet"}
    assert ce["n"] == base["n"] == s["float"]["n"] == s["int8"]["n"]
    v = r["verdict"]
    assert v["kd_gain_points"] == pytest.approx(100 * (s["float"]["accuracy"] - ce["accuracy"]))
    assert v["ensemble_over_ce_recordings_points"] == pytest.approx(
        100 * (teachers["ensemble"]["accuracy"] - ce["recording_accuracy"]))  # fmt: skip
    # The warning is there exactly when the ensemble is not ahead of the CE control on the
    # same 10 s recordings.
    behind = v["ensemble_over_ce_recordings_points"] <= 0
    assert behind == any("teacher ensemble is not ahead" in w for w in r["warnings"])
    # Its lead is read paired, recording by recording: the counts are the two models' own.
    e_right, c_right = np.array(ens["recording_right"]), np.array(ce["recording_right"])
    lead = v["ensemble_lead"]
    assert lead["items"] == len(e_right) == len(c_right) == ens["n"]
    assert e_right.mean() == pytest.approx(ens["micro_accuracy"])
    assert lead["only_first_right"] - lead["only_second_right"] == e_right.sum() - c_right.sum()
    assert lead["clear"] == (v["ensemble_over_ce_recordings_points"] > 0 and lead["p_value"] < 0.05)
    unclear = not behind and not lead["clear"]
    assert unclear == any("teacher ensemble is only" in w for w in r["warnings"])
    # The KD gain, read location by location: its counts are the two rows' own, and the test on
    # them is grouped_lead's on clips rebuilt from those counts (it reads only each location's means).
    kd, by = v["kd_lead"], v["kd_lead"]["by_location"]
    counts = np.array(list(by.values()))
    assert kd["items"] == counts[:, 2].sum() == s["float"]["n"] and kd["groups"] == len(by) > 1
    assert counts[:, 0].sum() / kd["items"] == pytest.approx(s["float"]["micro_accuracy"])
    assert counts[:, 1].sum() / kd["items"] == pytest.approx(ce["micro_accuracy"])
    rebuilt = [
        np.concatenate([[1] * int(c[k]) + [0] * int(c[2] - c[k]) for c in counts]) for k in (0, 1)
    ]
    names = np.repeat(list(by), counts[:, 2])
    assert {**grouped_lead(*rebuilt, names), "clear": kd["clear"], "by_location": by} == kd
    assert kd["clear"] == (kd["lead"] > 0 and kd["p_value"] < 0.05)
    assert "clip_right" not in s["float"] and "clip_right" not in ce  # counts kept, not clips
    assert f"Location by location ({kd['groups']} recording locations, {kd['items']:,} clips)" in (
        tiny_run / "results.md").read_text()  # fmt: skip
    # Validation during training reads what the final evaluation reads, for every trained model.
    for name in ("mobilenetv2", "cnn", "bcresnet"):
        t = teachers[name]
        assert abs(t["last_epoch_val_accuracy"] - t["micro_accuracy"]) < 1e-6, (name, t)
    # The students keep their weights' moving average, BatchNorm statistics then from clean
    # training batches (the quick profile's optim.ema_momentum, precise_bn_batches): their
    # last-round column is the weights as trained, and results.md says so under the table.
    assert s["final_weights"] == {"ema_momentum": 0.99, "precise_bn_batches": 50}
    md = (tiny_run / "results.md").read_text()
    assert "keep their weights' moving average (optim.ema_momentum 0.99) with BatchNorm" in md
    # The baseline trains the organisers' way: validated on recordings held out of the training
    # split, its best round after the delay kept.
    t = r["baseline"]["training"]
    assert (t["lr"], t["batch_size"], t["steps"], t["rounds"], t["kept_after_round"]) == (
        1e-3,
        64,
        12,
        3,
        0,
    )
    assert 1 <= t["kept_round"] <= 3 and 0 <= t["kept_validation_accuracy"] <= 1
    assert t["validation_fraction"] == 0.3 and t["validation_clips"] > 0
    assert {k: c["rounds"] for k, c in r["learning"].items()} == {
        "student": 3,
        "control": 3,
        "baseline": 3,
    }
    # The MobileNetV2 teacher came from a PANNs checkpoint: frozen, then fine-tuned.
    phases = teachers["mobilenetv2"]["transfer"]["phases"]
    assert teachers["mobilenetv2"]["transfer"]["pretrained"] == str(PANNS)
    assert [(p["phase"], p["backbone_trainable"]) for p in phases] == [
        ("frozen", False),
        ("finetune", True),
    ]
    # ... and was fed PANNs' own front end (32 kHz, 64 dB bands), bn0 kept: the default for one.
    front = teachers["mobilenetv2"]["front_end"]
    assert front["name"] == "panns" and (front["features"]["sample_rate"], front["features"]["n_mels"],
                                         front["features"]["log"]) == (32000, 64, "db")  # fmt: skip
    assert "front_end" not in teachers["cnn"]
    # Its features have caches of their own: the recordings, and the training clips too, because
    # with target_source 'auto' any clip may take a target of its own (header + every one).
    caches = sorted(p.name.rsplit("-", 1)[0] for p in (tiny_work / "features").iterdir())
    assert {"recordings-panns", "clips-panns", "recordings", "clips"} <= set(caches)
    (own_clips,) = (tiny_work / "features").glob("clips-panns-*")
    assert len((own_clips / "items.csv").read_text().split()) == 1 + train_clips
    # 'auto' chose by the ensemble's mean p[label] on the recordings the teachers learned from:
    # every complete training recording but those held out to weigh the ensemble.
    t = r["soft_targets"]
    a = t["auto"]
    assert a["recordings"] + ens["held_out"]["recordings"] == train_recordings
    assert a["limit"] == DistillConfig().auto_label_probability == 0.80
    assert t["source"] == a["source"] == ("clip" if a["label_probability"] >= 0.80 else "recording")
    # The quick profile: half of each target from the control, on every example.
    assert (t["control_share"], t["control_share_by"]) == (0.5, "fixed")
    # The truncated clip was left out, named, and the run went on (--skip-bad-audio).
    assert r["skipped_bad_audio"] == {"count": 1, "files": [damaged_tau[1]]}
    b = r["baseline"]["complexity"]
    assert (b["keras_params"], b["deployed_params"], b["nessi"]["param_bytes"], b["nessi"]["macs"]) == (
        46_246, 45_990, 46_512, 29_234_920)  # the organisers' figures  # fmt: skip


def test_results_md_leads_with_the_verdict_and_the_log_has_plain_warnings(tiny_run):
    md = (tiny_run / "results.md").read_text()
    head = md[: md.index("## Teachers")]
    assert (
        "Distillation gain over the CE control" in head
        and "Teacher ensemble over the CE control" in head
    )
    beside = _results(tiny_run)["beside_s"]  # trained in the second process (stages.beside)
    assert (f"(the CE control {beside['control']:.0f} s and the DCASE baseline "
            f"{beside['baseline']:.0f} s of it in a second process, "
            "alongside the rest of the run)") in head  # fmt: skip
    for label in ("| CE control", "| DCASE baseline", "KD student, trained", "KD student, compressed",
                  "KD student, int8", "Trained to the end?", "a run of more steps (optim.steps) may",
                  "The ensemble weighs its teachers",
                  "The KD student's soft targets: 50 % the teachers' output on each",
                  "50 % the CE control's output on each augmented batch"):  # fmt: skip
        assert label in md, label
    for png in ("confusion_int8.png", "confusion_float.png", "per_device_accuracy.png",
                "learning_curves.png", "learning_curves_control.png", "learning_curves_baseline.png"):  # fmt: skip
        assert (tiny_run / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The teachers' section says whether the ensemble is ahead of the control as the verdict does.
    v = _results(tiny_run)["verdict"]
    ahead, clear = v["ensemble_over_ce_recordings_points"] > 0, v["ensemble_lead"]["clear"]
    assert ("The ensemble is ahead of it: the teachers can teach" in md) == clear
    assert ("The ensemble is ahead of it by less than" in md) == (ahead and not clear)
    assert ("The ensemble is not ahead of it (the warning above)" in md) == (not ahead)
    assert ("the teacher ensemble is not ahead of the CE-only student" in md) == (not ahead)
    assert f"the control alone on {v['ensemble_lead']['only_second_right']} (one-sided" in head
    log = (tiny_run / "run.log").read_text()
    assert "WARNING: left out 1 clip(s) that cannot be read" in log
    assert not re.search(r"\.py:\d+: \w*Warning", log), "a warning printed with its source line"
    cfg = yaml.safe_load((tiny_run / "config.yaml").read_text())
    assert cfg["student_width"] == 8 and cfg["run"]["system"] == 2 and cfg["optim"]["steps"] == 24
    assert json.loads((tiny_run / "features.json").read_text())["n_mels"] == 256


@pytest.mark.parametrize(
    ("ahead", "clear", "said"),
    [(None, None, "Teachers ahead of it can teach the student something."),
     (2.0, None, "The ensemble is ahead of it: the teachers can teach the student something."),
     (12.0, True, "The ensemble is ahead of it: the teachers can teach the student something."),
     (2.0, False, "The ensemble is ahead of it by less than these recordings resolve (the warning above)."),
     (0.0, False, "The ensemble is not ahead of it (the warning above)."),
     (-3.0, False, "The ensemble is not ahead of it (the warning above).")],
)  # fmt: skip
def test_the_teachers_line_and_the_warning_read_the_verdict_alike(ahead, clear, said):
    from asc_keras.evaluate.report import _teachers
    from asc_keras.stages.verdict import run_warnings

    lead = None if clear is None else {"items": 146, "only_first_right": 14,
                                       "only_second_right": 11, "p_value": 0.35, "clear": clear}  # fmt: skip
    r = {"teachers": {"cnn": {"accuracy": 0.8, "log_loss": 0.5}}, "learning": {},
         "student": {"ce_control": {"recording_accuracy": 0.9}},
         "verdict": {"ensemble_over_ce_recordings_points": ahead, "ensemble_lead": lead}}  # fmt: skip
    line = next(x for x in _teachers(r) if x.startswith("The CE control on the same recordings"))
    assert line.endswith(said)
    warned = [w for w in run_warnings(r) if w.startswith("the teacher ensemble is")]
    assert bool(warned) == (ahead is not None and (ahead <= 0 or clear is False))
    if ahead is not None and ahead > 0 and clear is False:  # the paired counts, in the warning
        assert warned[0].startswith("the teacher ensemble is only +2.0 points ahead") and (
            "right on 14 the student gets wrong, wrong on 11 it gets right, a lead that 146 "
            "recordings do not resolve (one-sided sign test p = 0.35)" in warned[0])  # fmt: skip


@pytest.mark.parametrize(
    ("profile", "students", "baseline"),
    [("quick", "more steps (optim.steps)", "more steps (controls.baseline_steps)"),
     ("paper", "more epochs (optim.epochs)", "more epochs (controls.baseline_epochs)")],
)  # fmt: skip
def test_a_still_learning_warning_names_the_setting_that_sets_that_rows_length(
    profile, students, baseline
):
    """The baseline's length is its own (controls.baseline_*), not the students' optim budget."""
    from asc_keras.presets import system_config
    from asc_keras.stages.verdict import length_settings, run_warnings

    going = {"rounds": 10, "last_quarter_gain_points": 1.5, "ended": False}
    r = {"teachers": {}, "student": {}, "verdict": {"ensemble_over_ce_recordings_points": None},
         "learning": {"student": going, "control": going, "baseline": going,
                      "done": {**going, "ended": True}},
         "length_settings": length_settings(system_config(1, profile))}  # fmt: skip
    said = {w.split(" was still learning")[0]: w for w in run_warnings(r)}
    assert sorted(said) == ["the baseline", "the control", "the student"]
    for row, setting in (("student", students), ("control", students), ("baseline", baseline)):
        assert said[f"the {row}"].endswith(
            f"(validation accuracy +1.5 points over its last quarter): give it {setting} before "
            "reading its row."
        )
    # Where the floor in passes sets the students' length (quick: 9 passes, 800 steps of 32: from
    # 2,845 training clips on), it is what the warning names: more optim.steps would change nothing.
    cfg = system_config(1, profile)
    for clips in (2800, 2844, 2845, 3800):
        r["length_settings"] = length_settings(cfg, clips)
        floor = profile == "quick" and clips > 2844
        said = {w.split(" was still learning")[0]: w for w in run_warnings(r)}
        for row in ("student", "control"):
            assert said[f"the {row}"].endswith(
                "give it more passes (optim.min_passes) before reading its row." if floor else
                f"give it {students} before reading its row."
            )  # fmt: skip
        assert said["the baseline"].endswith(f"give it {baseline} before reading its row.")
    # A results.json written before the settings were recorded reads the students' budget.
    del r["length_settings"]
    assert all("(optim.steps)" in w for w in run_warnings(r))


def test_the_compressed_row_is_the_converted_models_float_twin(tiny_run, tiny_splits):
    """student_compressed.keras holds exactly the pruned + QAT model's float weights (rebuilt here
    from the weights the conversion used) and scores the compressed row."""
    from asc_keras._runtime import keras
    from asc_keras.compress.tfmot_compress import apply_qat, sparsity
    from asc_keras.compress.twin import float_weights_of, tf_keras_twin

    load = lambda p: keras.saving.load_model(p, compile=False, safe_mode=True)  # noqa: E731
    student, twin = load(tiny_run / "student.keras"), load(tiny_run / "student_compressed.keras")
    qat = apply_qat(tf_keras_twin(student), pruned=True)
    qat.load_weights(tiny_run / "compress" / "qat.weights.h5")
    converted = float_weights_of(qat)
    for layer in twin.layers:
        for a, b in zip(layer.get_weights(), converted.get(layer.name, []), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=layer.name)
    assert sum(bool(layer.weights) for layer in twin.layers) == len(converted)
    info = json.loads((tiny_run / "compress" / "info.json").read_text())
    assert sparsity(twin) == pytest.approx(info["sparsity"]) and info["sparsity"] > 0.2
    ev = tiny_splits[1]
    scored = set(pd.read_csv(tiny_run / "development" / "asc_keras_task1_2.output.csv",
                             sep="\t")["filename"])  # fmt: skip
    ev_rows = [i for i, n in enumerate(ev.names) if n.split("/")[-1] in scored]  # DCASE: base names
    assert len(ev_rows) == len(scored) > 0
    probs = twin.predict(ev.inputs()[ev_rows], verbose=0)
    acc = float((probs.argmax(1) == ev.labels[ev_rows]).mean())
    assert acc == pytest.approx(
        _results(tiny_run)["student"]["compressed"]["micro_accuracy"], abs=1e-9
    )


def test_submission_files_and_the_organisers_counts(tiny_run):
    from asc_keras.compress.nessi import nessi_complexity
    from asc_keras.evaluate.dcase_files import meta_problems

    r, md = _results(tiny_run), (tiny_run / "results.md").read_text()
    c = r["complexity"]
    sub = pd.read_csv(tiny_run / "development" / "asc_keras_task1_2.output.csv", sep="\t")
    assert list(sub.columns[:3]) == ["filename", "scene_label", "airport"] and sub.shape[1] == 12
    assert len(sub) == r["student"]["int8"]["n"] and np.allclose(
        sub.iloc[:, 2:].sum(axis=1), 1, atol=0.05
    )
    meta = yaml.safe_load((tiny_run / "submission" / "asc_keras_task1_2.meta.yaml").read_text())
    assert meta_problems(meta) == []  # every field the organisers' validator requires
    nessi = nessi_complexity(tiny_run / "student_int8.tflite")
    assert (
        c["nessi"]["param_bytes"]
        == nessi.param_bytes
        == meta["system"]["complexity"]["total_model_size"]
    )
    assert meta["system"]["complexity"]["macs"] == c["nessi"]["macs"] == nessi.macs
    assert (
        c["tflite_matches_keras"]
        and c["keras"]["within_dcase_limits"]
        and 0.2 < c["sparsity"] < 0.4
    )
    assert "NeSsi" in md and "parameter memory (bytes)" in md
    mc = meta["system"]["complexity"]
    assert mc["total_parameters_non_zero"] < mc["total_parameters"]


def test_a_second_run_redoes_nothing_and_predict_uses_its_outputs(
    tiny_run, damaged_tau, tiny_work, capsys
):
    before = {
        p: p.stat().st_mtime for p in (tiny_run / "student.keras", tiny_run / "student_int8.tflite")
    }
    assert main(run_args(damaged_tau[0], tiny_work, tiny_run)) == 0
    assert _results(tiny_run)["redone_stages"] == []  # no output stage started again
    # No teacher trained (or even loaded: the stored outputs serve).
    assert "-- teacher" not in capsys.readouterr().out
    assert {p: p.stat().st_mtime for p in before} == before
    from asc_keras.evaluate.predict import predict_files

    wav = sorted((damaged_tau[0] / "audio").glob("*.wav"))[0]
    res = predict_files(tiny_run / "student_int8.tflite", [wav])
    assert res[0].error is None and len(res[0].probabilities) == 10


def test_a_damaged_clip_stops_the_run_at_the_features_stage(
    tiny_run, damaged_tau, tiny_work, tmp_path, capsys
):
    args = [
        a for a in run_args(damaged_tau[0], tiny_work, tmp_path / "o") if a != "--skip-bad-audio"
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert damaged_tau[1] in err and "--skip-bad-audio" in err
    assert not (tmp_path / "o" / "student").exists()  # stopped before any training


def test_a_set_sampled_by_clip_stops_the_run_before_the_teachers(tiny_tau, tmp_path, capsys):
    """Every recording missing a clip (a set sampled by clip): the teachers have no 10 s
    recording to learn from, and the run says so, naming the set and the fix, before training."""
    sampled = tmp_path / "sampled"  # the tiny set's audio, its tables without odd 1 s indices
    (sampled / "evaluation_setup").mkdir(parents=True)
    (sampled / "audio").symlink_to(tiny_tau / "audio")
    for table in [
        "meta.csv",
        *(p.relative_to(tiny_tau) for p in (tiny_tau / "evaluation_setup").glob("*.csv")),
    ]:
        t = pd.read_csv(tiny_tau / table, sep="\t")
        t[~t["filename"].str.contains(r"-[13579]-[^-]+\.wav$")].to_csv(
            sampled / table, sep="\t", index=False
        )
    work = tmp_path / "w"
    assert main(run_args(sampled, work, tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert f"{sampled}: no complete 10 s recording in the training split" in err
    assert "--set distill.enabled=false" in err
    assert not (work / "teachers").exists() and not (tmp_path / "o" / "student").exists()
    # The evaluation split is asked the same (the teachers are scored on its recordings).
    some = pd.DataFrame({"recording_id": ["r"]})
    with pytest.raises(DataError, match="no complete 10 s recording in the evaluation split"):
        check_whole_recordings(sampled, some, some.iloc[:0])
    check_whole_recordings(sampled, some, some)  # one each: no error
    # Students that learn from no teacher need no recording: the ablation of such rows trains
    # them on the same set and scores them on clips alone, saying why.
    free = ["ablation", "--system", "2", "--data", str(sampled), "--work", str(work), "--out",
            str(tmp_path / "free"), "--seeds", "0", "--rows", "plain", "ce_only", "--quiet", "--set",
            *TINY, "optim.steps=6", "optim.rounds=1"]  # fmt: skip
    assert main(free) == 0
    assert "no complete 10 s recording in both splits" in capsys.readouterr().out
    f = json.loads((tmp_path / "free" / "ablation.json").read_text())
    assert f["students_recordings"] == {"plain": [None], "ce_only": [None]}
    assert all(0 <= f["students"][k][0] <= 1 for k in ("plain", "ce_only"))
    assert not (work / "teachers").exists()


def test_clear_errors_before_work(tiny_run, tiny_work, tiny_tau, tmp_path, capsys):
    assert (
        main(
            [
                "run",
                "--system",
                "1",
                "--profile",
                "quick",
                "--work",
                str(tiny_work),
                "--out",
                str(tiny_run),
            ]
        )
        == 2
    )
    assert "holds another run" in capsys.readouterr().err
    assert (
        main(
            [
                "run",
                "--system",
                "1",
                "--data",
                str(tmp_path / "missing"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "folder not found" in capsys.readouterr().err
    assert main(["run", "--system", "1", "--out", str(tmp_path / "o2"), "--force", "studnet"]) == 2
    assert "unknown stage" in capsys.readouterr().err
    assert (
        main(["run", "--system", "1", "--out", str(tmp_path / "o3"), "--set", "optim.epoch=3"]) == 2
    )
    assert "unknown OptimConfig setting" in capsys.readouterr().err
    # A limit that is no probability stops the run before any data is generated or trained on.
    work = tmp_path / "w4"
    assert main(["run", "--system", "1", "--profile", "quick", "--out", str(tmp_path / "o4"), "--work", str(work),
                 "--set", "distill.auto_label_probability=1.5"]) == 2  # fmt: skip
    assert "distill.auto_label_probability must be in [0, 1], got 1.5" in capsys.readouterr().err
    assert not work.exists() or not any(work.iterdir())
    # So does a share of KD steps that is no share (early-stopped KD).
    assert main(["run", "--system", "1", "--profile", "quick", "--out", str(tmp_path / "o5"), "--work", str(work),
                 "--set", "distill.kd_stop=1.5"]) == 2  # fmt: skip
    assert "distill.kd_stop must be in [0, 1], got 1.5" in capsys.readouterr().err
    assert not work.exists() or not any(work.iterdir())
    # And a share of the target for a CE control the run would not train.
    assert main(["run", "--system", "1", "--profile", "quick", "--out", str(tmp_path / "o6"), "--work", str(work),
                 "--set", "distill.control_share=0.5", "controls.ce_control=false"]) == 2  # fmt: skip
    assert "set controls.ce_control=true, or distill.control_share=0" in capsys.readouterr().err
    assert not work.exists() or not any(work.iterdir())
    # And the weights a student keeps, out of range: refused before any student is trained.
    for setting, words in (("optim.precise_bn_batches=-1", "optim.precise_bn_batches must be 0"),
                           ("optim.ema_momentum=1", "optim.ema_momentum must be in [0, 1)")):  # fmt: skip
        assert main(["run", "--system", "1", "--profile", "quick", "--out", str(tmp_path / "o7"),
                     "--work", str(work), "--set", setting]) == 2  # fmt: skip
        assert words in capsys.readouterr().err
        assert not work.exists() or not any(work.iterdir())
    # And a pretraining set the teachers would pass over, or one that is no TAU-layout set.
    for settings, words in (
        (["teachers.pretrain_data=/no/such/set", "teachers.pretrain_epochs=3"],
         "teachers.pretrain_data=/no/such/set: folder not found"),
        ([f"teachers.pretrain_data={tmp_path}", "teachers.pretrain_epochs=3"],
         f"teachers.pretrain_data={tmp_path}: {tmp_path / 'meta.csv'}"),
        ([f"teachers.pretrain_data={tiny_tau}"],
         "teachers.pretrain_epochs is 0, so MobileNetV2 would never train on it"),
        (["teachers.pretrain_epochs=3"], "but teachers.pretrain_data names none"),
        ([f"teachers.pretrain_data={tiny_tau}", "teachers.pretrain_epochs=3", "teachers.names=[cnn]"],
         "only the MobileNetV2 teacher trains on it first"),
    ):  # fmt: skip
        assert main(["run", "--system", "1", "--profile", "quick", "--out", str(tmp_path / "o8"),
                     "--work", str(work), "--set", *settings]) == 2  # fmt: skip
        assert words in capsys.readouterr().err
        assert not work.exists() or not any(work.iterdir())
    # A TAU-layout set with epochs to train on it passes (its tables read, nothing trained).
    cfg = system_config(1, "quick")
    check_pretrain_data(dataclasses.replace(
        cfg, teachers=dataclasses.replace(cfg.teachers, pretrain_data=str(tiny_tau), pretrain_epochs=3)))  # fmt: skip


def _tau2020_copy(tiny_tau, recs, dest: Path) -> Path:
    """A TAU 2020-layout folder of 10 s files (``<recording id>.wav``) holding ``recs``' audio as
    the features cache reads their clips (each resampled to 16 kHz, then joined; float WAV)."""
    import soundfile as sf

    from asc_keras.data.audio import load_audio

    (dest / "audio").mkdir(parents=True)
    (dest / "evaluation_setup").mkdir()
    rows = {"train": [], "evaluate": []}
    for split, table in recs.items():
        for rid, scene, files in zip(
            table["recording_id"], table["scene"], table["files"], strict=True
        ):
            audio = np.concatenate([load_audio(tiny_tau / f, 16000, duration=1.0) for f in files])
            sf.write(dest / "audio" / f"{rid}.wav", audio, 16000, subtype="FLOAT")
            rows[split].append(f"audio/{rid}.wav\t{scene}")
    both = rows["train"] + rows["evaluate"]
    (dest / "meta.csv").write_text("filename\tscene_label\n" + "\n".join(both) + "\n")
    for split in ("train", "evaluate"):
        (dest / "evaluation_setup" / f"fold1_{split}.csv").write_text(
            "filename\tscene_label\n" + "\n".join(rows[split]) + "\n"
        )
    return dest


def test_pretraining_leaves_out_what_the_teachers_must_not_learn_and_reads_tau_2020(
    tiny_tau, tiny_dataset, tmp_path
):
    """MobileNetV2 first trained on a set holding this run's recordings would learn those held out
    to weigh the ensemble (and judge the probe) first: they, and the evaluation fold's, are left
    out of its training recordings, matched by recording id -- in the run's own TAU 2022-layout
    folder and in a TAU 2020-layout one of 10 s files, read whole; a set with nothing else is
    refused."""
    from types import SimpleNamespace

    from asc_keras.stages.pretrain import kept_from_teachers, pretrain_splits, read_pretrain_set
    from asc_keras.stages.shared import RunPlace, recordings_of

    recs, _ = rebuild_recordings(tiny_dataset.split("all"))
    train, evaluate = (
        recordings_of(recs, tiny_dataset.train),
        recordings_of(recs, tiny_dataset.evaluate),
    )
    held = SimpleNamespace(files=list(train["files"][:5]))  # five held out from the teachers
    keep = kept_from_teachers(held, SimpleNamespace(files=list(evaluate["files"])))
    assert keep == set(train["recording_id"][:5]) | set(evaluate["recording_id"])
    cfg = system_config(1, "quick")
    cfg = dataclasses.replace(cfg, teachers=dataclasses.replace(
        cfg.teachers, pretrain_data=str(tiny_tau), pretrain_epochs=1))  # fmt: skip
    place, said = RunPlace(tmp_path / "out", tmp_path / "work", verbose=0), []
    learn, judge = pretrain_splits(cfg, place, keep, said.append)
    # The other training recordings, every one of them; the evaluation ones still draw the curve.
    assert sorted(learn.files) == sorted(tuple(f) for f in train["files"][5:])
    assert sorted(judge.files) == sorted(tuple(f) for f in evaluate["files"])
    assert said == [f"   5 of the {len(train)} training recordings of teachers.pretrain_data left out: "
                    "this run keeps them from its teachers (held out to weigh them, or evaluated on)"]  # fmt: skip
    # Another set (no recording shared) loses nothing and says nothing.
    said.clear()
    assert len(pretrain_splits(cfg, place, {"other-city-0-0-a"}, said.append)[0]) == len(train)
    assert said == []
    # Every training recording shared: this is the run's own set, not another one.
    everything = kept_from_teachers(SimpleNamespace(files=list(train["files"])), None)
    with pytest.raises(DataError, match="it is this run's own set, not another one to pretrain"):
        pretrain_splits(cfg, place, everything, said.append)

    # TAU 2020's layout: the same recordings as 10 s files, matched by id, each read whole.
    old = _tau2020_copy(tiny_tau, {"train": train[:8], "evaluate": evaluate[:2]}, tmp_path / "2020")
    found = read_pretrain_set(old)
    assert list(found.train["recording_id"]) == list(train["recording_id"][:8])
    assert all(len(files) == 1 for files in found.train["files"])
    check_pretrain_data(dataclasses.replace(
        cfg, teachers=dataclasses.replace(cfg.teachers, pretrain_data=str(old))))  # fmt: skip
    cfg20 = dataclasses.replace(
        cfg, teachers=dataclasses.replace(cfg.teachers, pretrain_data=str(old))
    )
    said.clear()
    learn20, judge20 = pretrain_splits(cfg20, place, keep, said.append)
    assert [f[0] for f in learn20.files] == [f"audio/{r}.wav" for r in train["recording_id"][5:8]]
    assert len(judge20) == 2 and said[0].startswith("   5 of the 8 training recordings")
    # A 10 s file's features are its recording's, to the bit (the same samples, the same frames).
    a = learn20.features[learn20.rows]
    b = learn.features[learn.rows[[learn.files.index(tuple(f)) for f in train["files"][5:8]]]]
    assert a.shape == b.shape == (3, 309, 256) and np.array_equal(a, b)


@pytest.fixture()
def recipe_calls(monkeypatch):
    """Spies on the one student recipe: (width, seed) of every student built, (width, alpha) of
    every student trained."""
    return install_recipe_spies(monkeypatch.setattr, {})


def test_run_trains_the_kd_student_and_the_control_through_the_one_recipe(tiny_run):
    calls = json.loads(tiny_run.with_name("recipe_calls.json").read_text())
    # On this 2-core CPU the control trains in the run's second process, beside the teachers
    # (stages.beside), through the same recipe; the baseline after it there.
    assert sorted(_results(tiny_run)["beside_s"]) == ["baseline", "control"]
    beside = json.loads(tiny_run.with_name("recipe_calls.beside.json").read_text())
    assert beside["fit"] == [[8, 1.0]] and beside["build"] == [[8, 42]]  # the CE control
    assert beside["teaching"] == [[0, 0.0, "fixed"]]
    assert calls["fit"] == [[8, 0.5]]  # then KD, here: recording_alpha (recording-level targets)
    assert calls["build"] == [[8, 42]]  # the run's seed for both
    # The quick profile's distill.control_share 0.5: the control runs live under the KD student
    # (the teachers' part stored: their targets here are recording-level).
    assert calls["teaching"] == [[0, 0.5, "fixed"]]


def test_width_search_trains_the_runs_recipe_and_summarises(
    tiny_run, damaged_tau, tiny_work, tmp_path, recipe_calls
):
    args = ["tune", "--system", "2", "--data", str(damaged_tau[0]), "--work", str(tiny_work), "--out",
            str(tmp_path / "tune"), "--widths", "8", "12", "--seeds", "1", "--quiet", "--skip-bad-audio",
            "--set", *TINY, "optim.steps=3"]  # fmt: skip
    # (optim.rounds stays the run's: the teachers depend on it, so the run's teachers are reused)
    assert main(args) == 0
    # Two widths, each built and trained by the run's functions with the run's seed (keras-tuner
    # builds the first model once more to read its search space).
    assert sorted(set(recipe_calls["build"])) == [(8, 42), (12, 42)]
    # Each KD student (alpha 0.5: recording_alpha, as run's on these recording-level targets) with
    # its own CE control (alpha 1) live for half its target,
    # the control trained first by the same recipe, once per width and seed, as run trains it;
    # the teachers' part stored (their targets here are recording-level).
    fits = list(zip(recipe_calls["fit"], recipe_calls["teaching"], strict=True))
    # (alpha, live teachers, the control's share, how it is set)
    kd, ce = (0.5, 0, 0.5, "fixed"), (1.0, 0, 0.0, "fixed")
    assert sorted(fits) == [
        ((w, a), (t, share, by)) for w in (8, 12) for a, t, share, by in (kd, ce)
    ]
    s = json.loads((tmp_path / "tune" / "width_search" / "summary.json").read_text())
    assert sorted(t["hyperparameters"]["width"] for t in s["trials"]) == [8, 12]
    best = max(s["trials"], key=lambda t: t["val_accuracy"])
    assert s["best"]["width"] == best["hyperparameters"]["width"] and s["length"]["steps"] == 3
    # With the teachers' target alone (the report's), no control is trained; two seeds (the
    # default) per width, each with its own seed, the score their mean.
    args[args.index("--out") + 1] = str(tmp_path / "tune2")
    args[args.index("--widths") : args.index("--widths") + 5] = ["--widths", "8"]
    assert main([*args, "distill.control_share=0"]) == 0
    fits = list(zip(recipe_calls["fit"][4:], recipe_calls["teaching"][4:], strict=True))
    assert fits == [((8, 0.5), (0, 0.0, "fixed"))] * 2
    assert sorted(set(recipe_calls["build"][-2:])) == [(8, 42), (8, 43)]
    (t,) = json.loads((tmp_path / "tune2" / "width_search" / "summary.json").read_text())["trials"]
    assert len(t["executions"]) == 2 and t["val_accuracy"] == pytest.approx(
        np.mean(t["executions"])
    )


def test_the_ablation_table_pairs_kd_with_the_control_and_with_the_born_again_row(tmp_path):
    """Three paired lines, per seed: KD - CE, born-again - CE, KD - born-again; each only where
    both of its rows ran."""
    from asc_keras.evaluate.ablation_report import write_ablation_md

    result = {"system": 1, "profile": "quick", "seeds": [0, 1], "teachers": {"cnn": [0.5, 0.4]},
              "students": {"ce_only": [0.30, 0.32], "kd_ensemble": [0.35, 0.34],
                           "kd_control": [0.29, 0.33]}, "labels": {}}  # fmt: skip
    md = write_ablation_md(result, tmp_path / "a.md").read_text()
    kd, soft = "(KD from the ensemble − CE only", "(KD from the CE control − CE only"
    assert f"{kd}, paired by seed): +3.5 ± 1.5 points (per seed: +5.0, +2.0)" in md
    assert f"{soft}, paired by seed): +0.0 ± 1.0 points (per seed: -1.0, +1.0)" in md
    teachers = "What the teachers know (KD from the ensemble − from the CE control, paired by seed): +3.5 ± 2.5 points"
    assert f"{teachers} (per seed: +6.0, +1.0)" in md
    del result["students"]["kd_control"]
    md = write_ablation_md(result, tmp_path / "b.md").read_text()
    assert "Distillation gain" in md and "CE control" not in md and "Mixed targets" not in md
    assert "run live on each augmented batch" not in md  # the report's target: no control share
    result["students"]["kd_control_share_0.5"] = [0.34, 0.36]
    result["control_share"] = 0.5
    md = write_ablation_md(result, tmp_path / "c.md").read_text()
    assert "The KD rows learn 50 % of each target from the teachers' stored targets and 50 %" in md
    assert (
        "½ control live − CE only, paired by seed): +4.0 ± 0.0 points (per seed: +4.0, +4.0)" in md
    )
    assert "½ control live − base, paired by seed): +0.5 ± 1.5 points (per seed: -1.0, +2.0)" in md
    # The share by confidence: said so, and paired with CE and with the fixed half.
    result["students"]["kd_control_confidence"] = [0.37, 0.35]
    result["control_share_by"] = "confidence"
    md = write_ablation_md(result, tmp_path / "d.md").read_text()
    assert (
        "The KD rows learn a share of each target set per example by confidence (a prior 0.5" in md
    )
    assert (
        "(per example, CA-MKD − CE only, paired by seed): +5.0 ± 2.0 points (per seed: +7.0, +3.0)"
        in md
    )
    assert (
        "(per example − ½ on every one, paired by seed): +1.0 ± 2.0 points (per seed: +3.0, -1.0)"
        in md
    )
    # Live teachers: said so where a seed's targets ran live, and paired with the stored ones.
    result.update(control_share_by="fixed", soft_targets=[{"source": "clip", "live": True}, None])
    result["students"].update(kd_clip_live=[0.40, 0.33], kd_clip_stored=[0.31, 0.34])
    md = write_ablation_md(result, tmp_path / "e.md").read_text()
    assert ("The KD rows learn from the teachers run live on each augmented batch on seeds 0 (on "
            "the others from stored targets and the control) (distill.clip_targets; without the "
            "control's") in md  # fmt: skip
    assert "The teachers' lead over the probe student" not in md  # no 'auto' decision was made
    assert ("− of the clean clip, stored, paired by seed): +4.0 ± 5.0 points (per seed: +9.0, -1.0)"
            in md)  # fmt: skip
    assert "(clip-level, live − CE only, paired by seed): +5.5 ± 4.5 points" in md
    # 'auto' on both seeds: each seed's held-out comparison, the way it went.
    lead = {"teachers": 0.734, "student": 0.556, "teachers_label": 0.657, "student_label": 0.462,
            "clips": 320, "locations": 10, "lead": 0.214, "p_value": 0.0107, "clear": True}  # fmt: skip
    result["soft_targets"] = [{"source": "clip", "live": True, "lead": lead},
                              {"source": "clip", "lead": {**lead, "lead": -0.071, "p_value": 0.915},
                               "control_share": 0.5, "control_share_by": "fixed"}]  # fmt: skip
    md = write_ablation_md(result, tmp_path / "f.md").read_text()
    assert ("the label's probability (distill.clip_targets 'auto': live on a lead of p below "
            "distill.live_lead_p), per seed: "
            "0: 65.7 % against 46.2 %, +21.4 points by location, p = 0.011; 1: 65.7 % against "
            "46.2 %, -7.1 points by location, p = 0.915.") in md  # fmt: skip
    assert "showed no lead" not in md  # seed 1: stored, with the configured half
    # Seed 1 without a lead taught by its control alone (control_share_no_lead 1); then
    # both seeds: the configured half is nobody's, so not said.
    result["soft_targets"][1]["control_share"] = 1.0
    md = write_ablation_md(result, tmp_path / "g.md").read_text()
    assert ("On seed 1 the teachers showed no lead to run live on: the KD rows learn from the "
            "seed's CE "
            "control (row ce_only) alone, run live on each augmented batch: born-again there "
            "(distill.control_share_no_lead).") in md  # fmt: skip
    result["soft_targets"][0] = {**result["soft_targets"][1]}
    md = write_ablation_md(result, tmp_path / "h.md").read_text()
    assert "On seeds 0, 1 the teachers showed no lead to run live on" in md
    assert (
        "The KD rows learn 50 %" not in md and "run live on each augmented batch on seeds" not in md
    )


def test_tiny_ablation_writes_its_table_and_resumes(
    tiny_run, damaged_tau, tiny_work, tmp_path, recipe_calls, monkeypatch
):
    # One small teacher per seed: the table's machinery is what is tested, not the recipe.
    args = ["ablation", "--system", "2", "--data", str(damaged_tau[0]), "--work", str(tiny_work), "--out",
            str(tmp_path / "abl"), "--seeds", "0", "1", "--rows", "ce_only", "kd_cnn", "--quiet", "--skip-bad-audio",
            "--set", *TINY, "teachers.names=[cnn]", "optim.steps=6", "optim.rounds=1",
            "distill.auto_label_probability=0", "distill.clip_targets=live"]  # fmt: skip
    assert main(args) == 0
    assert (
        recipe_calls["fit"] == [(8, 1.0), (8, 0.1)] * 2
    )  # CE only, then KD from the CNN; per seed
    # The KD rows learn from the CNN run live on each augmented batch (clip-level targets,
    # distill.clip_targets 'live'), without the control's share (stored targets only).
    assert recipe_calls["teaching"] == [(0, 0.0, "fixed"), (1, 0.0, "fixed")] * 2
    # ... at the quick profile's live T (distill.live_temperature 1; the CE fits keep T 2).
    assert recipe_calls["temperature"] == [2.0, 1.0] * 2
    r = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert [c["temperature"] for c in r["soft_targets"]] == [1.0, 1.0]
    assert set(r["teachers"]) == {"cnn"} and list(r["students"]) == ["ce_only", "kd_cnn"]
    # target_source 'auto' with a limit of 0 takes the teachers' output on each clip, every seed.
    assert [(c["source"], c["auto"]["limit"]) for c in r["soft_targets"]] == [("clip", 0.0)] * 2
    assert all(len(v) == 2 and all(0 <= a <= 1 for a in v) for v in r["students"].values())
    md = (tmp_path / "abl" / "ablation.md").read_text()
    assert "| student, CE only (no teachers) |" in md and "± " in md and "| cnn |" in md
    assert "hearing each clip through a device drawn from those that recorded its sound" in md
    assert (tmp_path / "abl" / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Resumable: a second call reads every row back instead of training it again.
    assert main(args) == 0 and len(recipe_calls["fit"]) == 4
    # Rows that learn from no teacher reach no teacher stage, and the control they train is the
    # one trained where the teachers were (the same clips, the same seed): to the bit.
    import asc_keras.orchestration.run as run_module

    def no_teachers(*_a, **_k):
        raise AssertionError("the teachers' stage ran for rows that need no teacher")

    free = [*args[: args.index("--out") + 1], str(tmp_path / "free"), "--seeds", "0", "--rows",
            "plain", "ce_only", *args[args.index("--quiet") :]]  # fmt: skip
    before = {k: len(v) for k, v in recipe_calls.items()}  # the calls below count without it
    with monkeypatch.context() as m:
        m.setattr(run_module, "teachers_stage", no_teachers)
        assert main(free) == 0
    f = json.loads((tmp_path / "free" / "ablation.json").read_text())
    assert f["teachers"] == {} and f["students"]["ce_only"] == r["students"]["ce_only"][:1]
    # ... and scored on whole recordings as there: the features' stage is the same without them.
    on_recordings = f["students_recordings"]["ce_only"]
    assert on_recordings == r["students_recordings"]["ce_only"][:1] and None not in on_recordings
    md = (tmp_path / "free" / "ablation.md").read_text()
    assert "| student, CE only (no teachers) |" in md and "None trained: no row of this" in md
    assert "| teacher |" not in md and "The KD rows learn" not in md
    d = 100 * (f["students"]["ce_only"][0] - f["students"]["plain"][0])
    assert (
        f"The recipe's augmentation (CE only − trained plainly, no augmentation, paired by seed): {d:+.1f}"
        in md
    )
    for k, n in before.items():
        del recipe_calls[k][n:]
    # The born-again row reuses the seed's control where the ce_only row trained it, and trains
    # the control itself where it has not (a new folder: CE first, then KD from it).
    only = [*args[: args.index("--seeds")], "--seeds", "1", "--rows", "kd_control",
            *args[args.index("--quiet") :]]  # fmt: skip
    assert main(only) == 0
    assert recipe_calls["fit"][4:] == [(8, 0.1)]
    fresh = [*args[:args.index("--out") + 1], str(tmp_path / "abl2"), "--seeds", "0", "--rows", "kd_control",
             *args[args.index("--quiet"):]]  # fmt: skip
    assert main(fresh) == 0 and recipe_calls["fit"][5:] == [(8, 1.0), (8, 0.1)]
    assert (tmp_path / "abl2" / "seed0" / "ce_only" / "final.keras").is_file()
    r = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert list(r["students"]) == ["kd_control"] and len(r["students"]["kd_control"]) == 1
    # The report's target (the teachers' alone) is a row: no control trained, none live.  (Its
    # live teacher hears each clip as recorded: distill.teacher_view 'own', below.)
    alone = [*fresh[: fresh.index("--out") + 1], str(tmp_path / "abl3"), *fresh[fresh.index("--seeds") :],
             "distill.teacher_view=own"]  # fmt: skip
    alone[alone.index("kd_control")] = "kd_control_share_0"
    assert main(alone) == 0 and recipe_calls["fit"][7:] == [(8, 0.1)]
    assert recipe_calls["teaching"][7:] == [(1, 0.0, "fixed")]
    # The share by confidence is a row: the seed's control (abl2's, trained above) live under it,
    # with the teachers' targets stored (live teachers take no control share).
    confident = [*fresh[: fresh.index("--rows") + 1], "kd_control_confidence",
                 *fresh[fresh.index("--quiet") :], "distill.clip_targets=stored"]  # fmt: skip
    assert main(confident) == 0 and recipe_calls["fit"][8:] == [(8, 0.1)]
    assert recipe_calls["teaching"][8:] == [(0, 0.5, "confidence")]
    # A stored part in the target: distill.temperature (the live teacher of abl3: the live one).
    assert recipe_calls["temperature"][7:] == [1.0, 2.0]
    assert not (tmp_path / "abl3" / "seed0" / "ce_only").exists()
    # The quick profile's own 'auto': the probe student first (CE, on the clips the teachers
    # learned from), then the KD row taught as the probe's comparison says -- the CNN live on a
    # clear lead (live_lead_p 0.05), else the seed's control alone, run live (control_share_no_lead 1).
    auto = [*alone[: alone.index("--out") + 1], str(tmp_path / "abl4"),
            *alone[alone.index("--seeds") : alone.index("--set") + 1], *TINY, "teachers.names=[cnn]",
            "optim.steps=6", "optim.rounds=1", "distill.auto_label_probability=0"]  # fmt: skip
    auto[auto.index("kd_control_share_0")] = "kd_cnn"
    assert main(auto) == 0
    record = json.loads((tmp_path / "abl4" / "ablation.json").read_text())["soft_targets"][0]
    lead = record["lead"]
    # The seed's record holds the share it was taught with (live: none; no lead: 1).
    assert lead["live"] is lead["clear"]  # the same limit, 0.05
    assert record.get("control_share") == (None if lead["live"] else 1.0)
    assert lead["clips"] > 0 and lead["locations"] > 0 and 0 < lead["p_value"] <= 1
    # ... each held-out clip heard as recorded and through the profile's 3 simulated devices, the
    # teachers' logits of them stored beside the probe (distill.probe_devices).
    assert (
        lead["devices"] == 3
        and len(list((tiny_work / "probes").glob("teachers-devices-*.npy"))) == 1
    )
    fits = list(zip(recipe_calls["fit"][9:], recipe_calls["teaching"][9:], strict=True))
    probe = ((8, 1.0), (0, 0.0, "fixed"))
    if lead["live"]:
        assert fits == [probe, ((8, 0.1), (1, 0.0, "fixed"))]
    else:
        assert fits == [probe, ((8, 1.0), (0, 0.0, "fixed")), ((8, 0.1), (0, 1.0, "fixed"))]
    # Live teachers, or the control alone (born-again): no part stored, the live T.
    assert recipe_calls["temperature"][-1] == 1.0 and record["temperature"] == 1.0
    assert len(list((tiny_work / "probes").glob("probe-*.json"))) == 1
    md = (tmp_path / "abl4" / "ablation.md").read_text()
    assert ("The teachers' lead over the probe student on the clips held out from them, each "
            "heard as recorded and through 3 simulated devices (distill.probe_devices), the "
            "label's probability") in md  # fmt: skip
    assert ("On seed 0 the teachers showed no lead to run live on" in md) is not lead["live"]
    # The quick profile's distill.teacher_view 'parallel': the live teachers' data carries each
    # clip's parallels (the KD rows of the first call), the CE fits' not; 'own' switches it off
    # (the report's row above, abl3).
    assert recipe_calls["heard"][:4] == [["own", False], ["parallel", True]] * 2
    assert recipe_calls["heard"][7] == ["own", False]
    assert "hearing each clip" not in (tmp_path / "abl3" / "ablation.md").read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_width_search_chief_worker_mode(tiny_run, damaged_tau, tiny_work, tmp_path):
    """The tune command's real subprocesses: keras-tuner's chief hands one trial to a worker."""
    cmd = [sys.executable, str(ROOT / "experiments" / "tune_width.py"), "--system", "2", "--data",
           str(damaged_tau[0]), "--work", str(tiny_work), "--out", str(tmp_path / "dist"), "--widths", "8",
           "--seeds", "1", "--quiet", "--skip-bad-audio", "--set", *TINY, "optim.steps=3"]  # fmt: skip
    base = {**os.environ, "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(_free_port()),
            "TF_CPP_MIN_LOG_LEVEL": "3"}  # fmt: skip
    chief = subprocess.Popen(cmd, env={**base, "KERASTUNER_TUNER_ID": "chief"}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(3)
    worker = subprocess.run(cmd, env={**base, "KERASTUNER_TUNER_ID": "tuner0"}, capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    out, err = chief.communicate(timeout=300)
    assert worker.returncode == 0, worker.stderr[-2000:]
    assert chief.returncode == 0, err[-2000:]
    assert len(list((tmp_path / "dist" / "width_search").glob("trial_*"))) == 1
    assert "worker tuner0 finished" in worker.stdout and "best: {'width': 8}" in out
