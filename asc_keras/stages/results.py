"""The last stages of a run: evaluate every model on the fold-1 evaluation clips, then report.

``results.json`` holds the teachers and their ensemble, the student three ways -- the trained
float model, the compressed float model (the pruned + QAT weights the int8 file was converted
from) and int8 -- the CE control and the DCASE baseline, complexity, whether each training had
stopped learning, a verdict and a warning list (:mod:`asc_keras.stages.verdict`); ``results.md``,
plots and the DCASE submission files are made from it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from asc_keras.config import OPTIM_STUDENTS_ONLY, SystemConfig
from asc_keras.files import file_identity
from asc_keras.metrics import classification_metrics, item_right, recording_probabilities
from asc_keras.stages.layout import TRAINED
from asc_keras.stages.runner import StageRunner
from asc_keras.stages.shared import Prepared, RunPlace
from asc_keras.stages.teaching import teaching_record
from asc_keras.stages.verdict import kd_lead, length_settings, run_warnings, verdict
from asc_keras.training.history import last_value, learning_check

_NO_LAYERS = ("layers",)  # per-layer tables stay out of results.json


def _summary(complexity) -> dict:
    return {k: v for k, v in complexity.to_dict().items() if k not in _NO_LAYERS}


@dataclasses.dataclass
class Evaluation:
    """What the evaluate stage hands the report stage: ``results`` (what results.json holds) and
    the int8 model's probabilities of the evaluation clips (the DCASE system output)."""

    results: dict
    int8_probs: np.ndarray


def score(model_or_probs, split, history: Path | None = None, recs=None, clips_right=False) -> dict:
    """DCASE metrics of a model (or its probabilities) on ``split``; with ``history`` the last
    round's validation accuracy beside them; with ``recs`` the accuracy on whole recordings; with
    ``clips_right`` which clips it gets right ('clip_right', for
    :func:`~asc_keras.stages.verdict.kd_lead`, which takes it out again)."""
    probs = model_or_probs
    if not isinstance(probs, np.ndarray):
        probs = model_or_probs.predict(split.inputs(), batch_size=256, verbose=0)
    m = classification_metrics(split.labels, probs, split.devices)
    if clips_right:
        m["clip_right"] = item_right(split.labels, probs)
    if history is not None:
        m["last_epoch_val_accuracy"] = last_value(history)
    if recs is not None and len(recs):
        # The teachers' yardstick: the same clip model, its clips averaged per recording; which
        # recordings it gets right, for the verdict's paired comparison with the ensemble.
        mean = recording_probabilities(split.names, probs, recs.files)
        m["recording_accuracy"] = classification_metrics(recs.labels, mean)["accuracy"]
        m["recording_right"] = item_right(recs.labels, mean)
    return m


def evaluate_stage(cfg: SystemConfig, place: RunPlace, runner: StageRunner, prep: Prepared, student,
                   compressed, tflite_path: Path, compress_info: dict) -> Evaluation:  # fmt: skip
    """The student's three rows (trained float, compressed float, int8) and its complexity."""
    from asc_keras.compress.tflite import TFLiteModel

    ev, files = prep.splits.evaluate, place.files
    tfl = TFLiteModel(tflite_path)
    p_int8 = tfl.predict(ev.inputs()[..., 0], batch_size=256)
    rows = {
        "float": score(student, ev, files.history("student"), prep.splits.eval_recordings, True),
        "compressed": score(compressed, ev),
        "int8": score(p_int8, ev),
    }
    complexity = _complexity(student, tflite_path, compress_info)
    f, c, q = (100 * rows[k]["accuracy"] for k in ("float", "compressed", "int8"))
    runner.log(f"student: trained float {f:.1f} %, compressed float {c:.1f} %, int8 {q:.1f} %; "
               f"{complexity['summary']}")  # fmt: skip
    also = " (also trained on: train_split=all)" if place.train_split == "all" else ""
    results = {
        "system": cfg.system, "system_name": cfg.name, "profile": cfg.profile,
        "data": str(prep.data_root), "train_split": place.train_split,
        "init_from": file_identity(place.init_from) if place.init_from else None,
        "evaluated_on": "fold1_evaluate" + also, "teachers": prep.teacher_metrics,
        "soft_targets": teaching_record(cfg, prep.targets, prep.splits),
        "student": {
            **rows,
            # Compression (pruning + QAT fine-tuning) against the trained model; quantisation
            # alone: int8 against the float model it was converted from.
            "compression_gap_points": c - f,
            "int8_gap_points": q - c,
            "litert_delegate": tfl.delegate,
            "final_weights": {k: getattr(cfg.optim, k) for k in OPTIM_STUDENTS_ONLY},
        },
        "complexity": {k: v for k, v in complexity.items() if k != "summary"},
        "skipped_bad_audio": {"count": len(prep.skipped_clips), "files": list(prep.skipped_clips)},
        "length_settings": length_settings(cfg, len(prep.splits.train)),
        "warnings": [],
    }  # fmt: skip
    return Evaluation(results, p_int8)


def _complexity(student, tflite_path: Path, compress_info: dict) -> dict:
    from asc_keras.compress.complexity import keras_complexity, tflite_complexity
    from asc_keras.compress.nessi import nessi_complexity

    kc, tc = keras_complexity(student), tflite_complexity(tflite_path)
    nessi = nessi_complexity(tflite_path)
    out = {
        "keras": _summary(kc),
        "tflite": {
            "params": tc.params,
            "macs": tc.macs,
            "int8_kb": tc.memory_bytes(8) / 1024,
            "within_dcase_limits": tc.within_limits,
        },  # fmt: skip
        "tflite_matches_keras": tc.params == kc.deployed_params and tc.macs == kc.macs,
        # The organisers' count (NeSsi rules) of the deployed int8 file: what a submission reports.
        "nessi": nessi.to_dict(),
        "summary": f"{kc.summary()}; {nessi.summary()}",
    }
    if compress_info:
        out["sparsity"] = compress_info.get("sparsity", 0.0)
        out["nonzero_params"] = int(round(kc.params * (1 - out["sparsity"])))
    return out


def add_control_rows(results: dict, place: RunPlace, runner: StageRunner, prep: Prepared,
                     control=None, baseline=None) -> dict:  # fmt: skip
    """Add the CE control and baseline rows, the learning checks and the verdict to ``results``."""
    ev, student, files = prep.splits.evaluate, results["student"], place.files
    if control is not None:
        m = score(control, ev, files.history("control"), prep.splits.eval_recordings, True)
        student["ce_control"] = m
        student["kd_gain_points"] = 100 * (student["float"]["accuracy"] - m["accuracy"])
        runner.log(f"CE control {100 * m['accuracy']:.1f} %, KD student "
                   f"{100 * student['float']['accuracy']:.1f} %")  # fmt: skip
    lead = kd_lead(student["float"], student.get("ce_control") or {}, ev.names)  # lists out
    if baseline is not None:
        results["baseline"] = _baseline_row(*baseline, files.history("baseline"))
        runner.log(f"DCASE baseline {100 * results['baseline']['float']['accuracy']:.1f} %")
    results["learning"] = {
        stage: check for stage in TRAINED if (check := learning_check(files.history(stage)))
    }
    results["verdict"] = verdict(results, lead)
    for msg in run_warnings(results):
        runner.log(f"WARNING: {msg}")
        results["warnings"].append(msg)
    return results


def _baseline_row(model, split, history: Path) -> dict:
    from asc_keras.compress.complexity import keras_complexity
    from asc_keras.compress.nessi import nessi_of_model
    from asc_keras.models.baseline import BASELINE_FEATURES

    official = model.get_layer("dcase_baseline")  # the official model inside the cache's Permute
    done = history.with_name("done.json")
    return {
        "float": score(model, split, history),
        # The organisers' recipe: its validation is held out of the training split, and the model
        # kept is its best round after the delay (so not the last round's validation score).
        "training": json.loads(done.read_text()) if done.is_file() else None,
        "features": dataclasses.asdict(BASELINE_FEATURES),
        "complexity": {
            **_summary(keras_complexity(official)),
            "nessi": nessi_of_model(official).to_dict(),
        },  # fmt: skip
    }


def report_stage(cfg: SystemConfig, place: RunPlace, runner: StageRunner, prep: Prepared,
                 evaluation: Evaluation, label: str) -> None:  # fmt: skip
    """Plots and the DCASE submission files (system output CSVs, meta YAML)."""
    from asc_keras.evaluate.dcase_files import write_system_output

    _plots(cfg, place, evaluation.results)
    sub = place.files.submission
    write_system_output(prep.splits.evaluate.names, evaluation.int8_probs,
                        place.files.development_output(label))  # fmt: skip
    if place.eval_data is not None:
        predict_eval_set(cfg, place, runner, sub / f"{label}.output.csv")
    _meta_file(cfg, place, runner, evaluation.results, label)


def _plots(cfg: SystemConfig, place: RunPlace, results: dict) -> None:
    from asc_keras.evaluate.plots import plot_confusion, plot_learning_curves, plot_per_device

    plots, s, files = place.files.plots, results["student"], place.files
    for key in ("int8", "float"):
        plot_confusion(s[key]["confusion"], plots / f"confusion_{key}.png",
                       f"{key} student, fold-1 evaluation")  # fmt: skip
    plot_per_device({key: s[key]["per_device"] for key in ("float", "compressed", "int8")},
                    plots / "per_device_accuracy.png", f"{cfg.name}: accuracy per device")  # fmt: skip
    titles = {"student": f"{cfg.name}: student training", "control": "CE control: training",
              "baseline": "DCASE baseline: training"}  # fmt: skip
    for stage in TRAINED:  # no plot when the row is switched off or its history is unreadable
        name = "learning_curves.png" if stage == "student" else f"learning_curves_{stage}.png"
        plot_learning_curves(files.history(stage), plots / name, titles[stage])


def _meta_file(cfg: SystemConfig, place: RunPlace, runner: StageRunner, results: dict, label: str):
    import yaml

    from asc_keras.evaluate.dcase_files import meta_placeholders, meta_problems, write_meta_yaml

    meta_path = write_meta_yaml(place.files.submission / f"{label}.meta.yaml", label=label,
                                name=cfg.name, abbreviation=f"SERFR{cfg.student_width}",
                                results=results, config=cfg.to_dict())  # fmt: skip
    meta = yaml.safe_load(meta_path.read_text())
    for problem in meta_problems(meta):
        runner.log(f"WARNING: {meta_path.name}: {problem}")
    todo = meta_placeholders(meta)
    runner.log(f"{meta_path}: fill in {len(todo)} value(s) before submitting: {', '.join(todo)}")


def predict_eval_set(cfg: SystemConfig, place: RunPlace, runner: StageRunner, path: Path) -> None:
    """The int8 student's predictions for every file of the evaluation set ``place.eval_data``."""
    from asc_keras.compress.tflite import TFLiteModel
    from asc_keras.data import DataError
    from asc_keras.data.tables import read_table
    from asc_keras.evaluate.dcase_files import write_system_output
    from asc_keras.features.cache import extract_features

    root = Path(place.eval_data)
    candidates = (root / "evaluation_setup" / "fold1_test.csv", root / "meta.csv")
    listing = next((p for p in candidates if p.is_file()), None)
    if listing is None:
        raise DataError(
            f"{root}: no evaluation_setup/fold1_test.csv or meta.csv listing the evaluation files"
        )
    files = list(read_table(listing, ("filename",))["filename"])
    cache = extract_features(root, files, cfg.features, place.shared.features, name="evalset",
                             progress=place.progress)  # fmt: skip
    x = cache.features[cache.rows(files)].astype(np.float32)
    write_system_output(files, TFLiteModel(place.files.int8).predict(x), path)
    runner.log(f"evaluation-set predictions: {path} ({len(files)} files)")
