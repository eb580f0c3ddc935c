"""Your own recordings and classes: finetune -> int8 -> predict with the new names, models that
carry their class names, and --init-from."""

from __future__ import annotations

import csv
import io
import json
import shutil
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
from conftest import TINY_STUDENT
from own_recordings import CLASSES, make_own_recordings

from asc_keras.cli import main

# Short phases, and QAT without pruning (run's pruning is tested on the run): the machinery is
# tested, on clearly different sounds.
FAST = ["--epochs", "4", "--set", "finetune.frozen_epochs=2", "finetune.val_fraction=0.25",
        "compress.prune=false", "compress.qat_steps=4"]  # fmt: skip


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    root = make_own_recordings(tmp_path_factory.mktemp("own") / "recordings")
    rng = np.random.default_rng(5)
    # One file shorter than a window: padded to one, and counted.
    sf.write(
        root / "tap_running" / "short.wav", rng.normal(0, 0.2, 26000).astype(np.float32), 44100
    )
    return root


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A width-8 SERFR-CNN of the ten DCASE scenes as ``run`` writes it (untrained: the machinery
    is tested; fine-tuning from it still separates the three sounds)."""
    from asc_keras._runtime import keras
    from asc_keras.models import build_serfr_cnn
    from asc_keras.models.classes import save_model_file

    keras.utils.set_random_seed(0)  # the same source every session (unseeded, the test was a draw)
    return save_model_file(build_serfr_cnn(8), tmp_path_factory.mktemp("source") / "student.keras")


@pytest.fixture(scope="module")
def tuned(own, source, tmp_path_factory):
    """``asc-keras finetune`` of the ten-scene student on three new classes."""
    out = tmp_path_factory.mktemp("finetuned") / "out"
    assert main(["finetune", str(source), str(own), "--out", str(out), "--quiet", *FAST]) == 0
    return out


def test_finetune_int8_and_predict_name_the_new_classes(tuned, own, capsys):
    r = json.loads((tuned / "results.json").read_text())
    assert r["classes"] == sorted(CLASSES) and r["new_head"] is True
    assert r["padded_files"] == [str((own / "tap_running" / "short.wav").resolve())]
    assert r["files"] == {"train": 19, "validation": 6} and r["export"]["method"] == "QAT"
    assert (
        r["export"]["nessi"]["within_dcase_limits"]
        and r["export"]["compress"]["target_sparsity"] == 0
    )
    # The validation split is by file: no recording has windows on both sides.
    assert not set(r["validation_files"]) & set(r["train_files"])
    md = (tuned / "results.md").read_text()
    assert "## Confusion matrix" in md and all(f"| {c} |" in md for c in CLASSES)
    # The models carry their class names: inside the .keras, beside the .tflite.
    with zipfile.ZipFile(tuned / "student.keras") as z:
        assert json.loads(z.read("asc_keras_classes.json")) == sorted(CLASSES)
    assert json.loads((tuned / "classes.json").read_text()) == sorted(CLASSES)
    # predict, on the held-out files, reads the names.
    held = [str(p) for p in r["validation_files"]]
    capsys.readouterr()
    assert main(["predict", str(tuned / "student_int8.tflite"), *held, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0])[3:] == sorted(CLASSES)
    truth = {f: f.split("/")[-2] for f in held}
    right = sum(row["scene"] == truth[row["file"]] for row in rows)
    assert len(rows) == len(held) == 6 and right >= 0.8 * len(held), rows


def test_finetune_resumes_and_redoes_nothing_done(tuned, own, source, capsys):
    made = {p: p.stat().st_mtime_ns for p in (tuned / "student_int8.tflite", tuned / "windows.npz",
                                              tuned / "finetune" / "final.keras")}  # fmt: skip
    assert main(["finetune", str(source), str(own), "--out", str(tuned), "--quiet", *FAST]) == 0
    out = capsys.readouterr().out
    assert "cutting" not in out and "pruning" not in out  # windows and export reused
    assert {p: p.stat().st_mtime_ns for p in made} == made  # nothing trained or converted again


def test_a_csv_with_paths_outside_its_folder_is_refused(own, tmp_path, source, capsys):
    (tmp_path / "list.csv").write_text("filename,label\n../../etc/passwd,x\nb.wav,y\n")
    assert (
        main(["finetune", str(source), str(tmp_path / "list.csv"), "--out", str(tmp_path / "o")])
        == 2
    )
    assert "row 2 names '../../etc/passwd', outside the CSV's folder" in capsys.readouterr().err
    from asc_keras.data.own import read_own_recordings

    rows = ["filename,label,device"] + [f"{p.relative_to(own)},{p.parent.name},phone"
                                        for p in sorted(own.rglob("*.flac"))]  # fmt: skip
    (own / "list.csv").write_text("\n".join(rows) + "\n")
    rec = read_own_recordings(own / "list.csv")
    assert rec.classes == tuple(sorted(CLASSES)) and set(rec.devices) == {"phone"}
    (own / "list.csv").unlink()


def test_predict_refuses_a_model_whose_outputs_do_not_match_its_class_list(tuned, tmp_path, capsys):
    wav = tmp_path / "a.wav"
    sf.write(wav, np.random.default_rng(0).normal(0, 0.1, 44100), 44100)
    for name in ("student_int8.tflite", "features.json"):
        shutil.copy(tuned / name, tmp_path / name)
    model = str(tmp_path / "student_int8.tflite")
    (tmp_path / "classes.json").write_text(json.dumps(["only", "two"]))
    assert main(["predict", model, str(wav)]) == 2
    assert "the model has 3 outputs but its class list names 2 classes" in capsys.readouterr().err
    (tmp_path / "classes.json").write_text("!!python/object/apply:os.system ['touch pwned']")
    assert main(["predict", model, str(wav)]) == 2
    assert "classes.json: not a JSON class list" in capsys.readouterr().err
    (tmp_path / "classes.json").unlink()  # no names, and not the ten scenes: refused, not guessed
    assert main(["predict", model, str(wav)]) == 2
    assert "3 outputs and no class names" in capsys.readouterr().err


def test_the_head_is_kept_for_the_same_classes_and_new_for_others(source):
    from asc_keras.config import SCENE_CLASSES
    from asc_keras.models.common import load_model_file
    from asc_keras.training.finetune import with_classes

    m = load_model_file(source)
    assert with_classes(m, SCENE_CLASSES, SCENE_CLASSES) is m
    new = with_classes(m, ("a", "b"), SCENE_CLASSES)
    assert new.output_shape[-1] == 2 and new.class_names == ("a", "b")
    for layer in new.layers:
        if layer.weights and layer.name not in ("logits", "probabilities"):
            for a, b in zip(
                layer.get_weights(), m.get_layer(layer.name).get_weights(), strict=True
            ):
                np.testing.assert_array_equal(a, b)


def test_init_from_starts_the_student_there_and_a_changed_source_redoes_it(tmp_path, monkeypatch):
    import asc_keras.training.student as student
    from asc_keras.data.splits import ClipSplit
    from asc_keras.models.classes import save_model_file
    from asc_keras.stages.outputs import student_inputs
    from asc_keras.stages.shared import RunPlace

    cfg = TINY_STUDENT
    source = student.build_serfr_cnn(8, name="fold1")
    src = save_model_file(source, tmp_path / "fold1_student.keras")
    rng = np.random.default_rng(0)
    train = ClipSplit(rng.normal(size=(40, 28, 256)).astype(np.float16), np.arange(40), np.arange(40) % 10,
                      np.array(["a"] * 40), tuple(map(str, range(40))))  # fmt: skip
    monkeypatch.setattr(student, "fit_student", lambda *a, **k: None)  # no training: the start only
    m = student.train_student(cfg, train, None, None, run_dir=tmp_path / "s", init_from=src)
    for a, b in zip(m.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # The source is one of the student stage's inputs: another file (or the same file changed)
    # makes the recorded stage stale, so it is trained again.
    prep = SimpleNamespace(splits=SimpleNamespace(clip_cache_name="c"), targets_key="t",
                           targets=None)  # fmt: skip
    place = RunPlace(tmp_path / "o", tmp_path / "w", init_from=src)
    before = student_inputs(cfg, place, prep)
    assert before["init_from"]["path"] == str(src.resolve())
    src.write_bytes(src.read_bytes() + b"\0")
    assert student_inputs(cfg, place, prep) != before
    assert "init_from" not in student_inputs(cfg, RunPlace(tmp_path / "o", tmp_path / "w"), prep)
    # What the live teachers hear is an input only where they run live: without them (here no
    # targets) a run recorded before distill.teacher_view existed stays done.
    assert "teacher_view" not in before["distill"] and "alpha" in before["distill"]
    wide = save_model_file(student.build_serfr_cnn(12), tmp_path / "w12.keras")
    with pytest.raises(ValueError, match="w12.keras: cannot start fold1 from it"):
        student.start_from(source, wide)


def test_a_teacher_of_any_length_is_fine_tuned_and_converted_post_training(tmp_path, capsys):
    """A teacher (any number of frames) gets a new head, post-training int8 of the 1 s windows,
    and predict reads its names; the machinery, not its accuracy (two epochs)."""
    from asc_keras.models.classes import save_model_file
    from asc_keras.models.teachers import build_cnn_teacher

    root = make_own_recordings(tmp_path / "own", per_class=3, seed=1)
    teacher = save_model_file(build_cnn_teacher(width=4), tmp_path / "teacher.keras")
    out = tmp_path / "out"
    args = ["finetune", str(teacher), str(root), "--out", str(out), "--quiet", "--epochs", "1",
            "--set", "finetune.frozen_epochs=1"]  # fmt: skip
    assert main(args) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["export"]["method"] == "post-training int8" and r["new_head"] is True
    capsys.readouterr()
    wav = str(root / "fridge_hum" / "fridge_hum_00.wav")
    assert main(["predict", str(out / "student_int8.tflite"), wav, "--format", "json"]) == 0
    assert list(json.loads(capsys.readouterr().out)[0]["probabilities"]) == sorted(CLASSES)
