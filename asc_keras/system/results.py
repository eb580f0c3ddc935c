"""The last stages of a run: evaluate every model on fold-1 evaluation clips, then report.

``results.json`` holds the teachers, the float and int8 student, the CE control and the DCASE
baseline (``student.ce_control``, ``student.kd_gain_points``, ``baseline``), complexity and a
warning list; ``results.md``, plots and the DCASE submission files are made from it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import yaml

from asc_keras.config import SystemConfig
from asc_keras.data import DataError
from asc_keras.system.runner import StageRunner
from asc_keras.system.shared import Prepared, RunPlace, last_val_accuracy

_NO_LAYERS = ("layers",)  # per-layer tables stay out of results.json


def _summary(complexity) -> dict:
    return {k: v for k, v in complexity.to_dict().items() if k not in _NO_LAYERS}


def evaluate_stage(
    cfg: SystemConfig,
    place: RunPlace,
    runner: StageRunner,
    prep: Prepared,
    student,
    tflite_path: Path,
    compress_info: dict,
) -> dict:
    """Float and int8 student metrics and complexity: the core of ``results.json``."""
    from asc_keras.compress.complexity import keras_complexity, tflite_complexity
    from asc_keras.compress.nessi import nessi_complexity
    from asc_keras.compress.tflite import TFLiteModel
    from asc_keras.evaluate.metrics import classification_metrics

    ev = prep.splits.evaluate
    x = ev.inputs()
    tfl = TFLiteModel(tflite_path)
    m_float = classification_metrics(
        ev.labels, student.predict(x, batch_size=256, verbose=0), ev.devices
    )
    p_int8 = tfl.predict(x[..., 0], batch_size=256)
    m_int8 = classification_metrics(ev.labels, p_int8, ev.devices)
    np.save(place.out / "eval_probs_int8.npy", p_int8)
    m_float["last_epoch_val_accuracy"] = last_val_accuracy(place.out / "student" / "history.csv")
    kc, tc = keras_complexity(student), tflite_complexity(tflite_path)
    nessi = nessi_complexity(tflite_path)
    complexity = {
        "keras": _summary(kc),
        "tflite": {
            "params": tc.params,
            "macs": tc.macs,
            "int8_kb": tc.memory_bytes(8) / 1024,
            "within_dcase_limits": tc.within_limits,
        },
        "tflite_matches_keras": tc.params == kc.deployed_params and tc.macs == kc.macs,
        # The organisers' count (NeSsi rules) of the deployed int8 file: what a submission reports.
        "nessi": nessi.to_dict(),
    }
    if compress_info:
        complexity["sparsity"] = compress_info.get("sparsity", 0.0)
        complexity["nonzero_params"] = int(round(kc.params * (1 - complexity["sparsity"])))
    runner.log(
        f"student float {100 * m_float['accuracy']:.1f} %, int8 {100 * m_int8['accuracy']:.1f} % "
        f"(log loss {m_float['log_loss']:.3f} / {m_int8['log_loss']:.3f}); {kc.summary()}; "
        f"{nessi.summary()}"
    )
    also = " (also trained on: train_split=all)" if place.train_split == "all" else ""
    return {
        "system": cfg.system,
        "system_name": cfg.name,
        "profile": cfg.profile,
        "data": str(prep.data_root),
        "train_split": place.train_split,
        "evaluated_on": "fold1_evaluate" + also,
        "teachers": prep.teacher_metrics,
        "student": {
            "float": m_float,
            "int8": m_int8,
            "int8_gap_points": 100 * (m_int8["accuracy"] - m_float["accuracy"]),
            "litert_delegate": tfl.delegate,
        },
        "complexity": complexity,
        "skipped_bad_audio": {"count": len(prep.skipped_clips), "files": list(prep.skipped_clips)},
        "warnings": [],
    }


def add_control_rows(
    results: dict, place: RunPlace, runner: StageRunner, prep: Prepared, control=None, baseline=None
) -> dict:
    """Add the CE control and baseline rows to ``results``, and the warning when teachers cannot help."""
    from asc_keras.compress.complexity import keras_complexity
    from asc_keras.compress.nessi import nessi_of_model
    from asc_keras.evaluate.metrics import classification_metrics, recording_accuracy
    from asc_keras.models.baseline import BASELINE_FEATURES

    ev, student = prep.splits.evaluate, results["student"]
    if control is not None:
        probs = control.predict(ev.inputs(), batch_size=256, verbose=0)
        m = classification_metrics(ev.labels, probs, ev.devices)
        m["last_epoch_val_accuracy"] = last_val_accuracy(place.out / "control" / "history.csv")
        recs = prep.splits.eval_recordings
        if recs is not None and len(recs):
            # The teachers' yardstick: the same student, its clips averaged per recording.
            m["recording_accuracy"] = recording_accuracy(ev.names, probs, recs.files, recs.labels)
        student["ce_control"] = m
        student["kd_gain_points"] = 100 * (student["float"]["accuracy"] - m["accuracy"])
        runner.log(
            f"CE control {100 * m['accuracy']:.1f} %, KD student {100 * student['float']['accuracy']:.1f} %"
        )
        ens = (results.get("teachers") or {}).get("ensemble")
        own = m.get("recording_accuracy", m["accuracy"])
        if ens is not None and ens["accuracy"] <= own:
            msg = (
                f"the teacher ensemble ({100 * ens['accuracy']:.1f} % on 10 s recordings) is not ahead "
                f"of the CE-only student on the same recordings ({100 * own:.1f} %, its clips' "
                "probabilities averaged): the teachers know no more than the student learns alone, "
                "and distilling from them will likely hurt. Train the teachers longer or larger "
                "(teachers.epochs, teachers.*_width), or use pretrained weights "
                "(teachers.pretrained_mobilenetv2)."
            )
            runner.log(f"WARNING: {msg}")
            results["warnings"].append(msg)
    if baseline is not None:
        model, split = baseline
        m = classification_metrics(
            split.labels, model.predict(split.inputs(), batch_size=256, verbose=0), split.devices
        )
        m["last_epoch_val_accuracy"] = last_val_accuracy(place.out / "baseline" / "history.csv")
        results["baseline"] = {
            "float": m,
            "features": dataclasses.asdict(BASELINE_FEATURES),
            # The official model inside (the cached features' Permute aside), counted both ways.
            "complexity": {
                **_summary(keras_complexity(model.get_layer("dcase_baseline"))),
                "nessi": nessi_of_model(model.get_layer("dcase_baseline")).to_dict(),
            },
        }
        runner.log(f"DCASE baseline {100 * m['accuracy']:.1f} %")
    return results


def report_stage(
    cfg: SystemConfig,
    place: RunPlace,
    runner: StageRunner,
    prep: Prepared,
    results: dict,
    label: str,
) -> None:
    """Plots and the DCASE submission files (system output CSVs, meta YAML)."""
    from asc_keras.evaluate.dcase_files import (
        meta_placeholders,
        meta_problems,
        write_meta_yaml,
        write_system_output,
    )
    from asc_keras.evaluate.plots import plot_confusion, plot_learning_curves, plot_per_device

    plots, s = place.out / "plots", results["student"]
    plot_confusion(
        s["int8"]["confusion"], plots / "confusion_int8.png", "int8 student, fold-1 evaluation"
    )
    plot_confusion(
        s["float"]["confusion"], plots / "confusion_float.png", "float student, fold-1 evaluation"
    )
    plot_per_device(
        {"float": s["float"]["per_device"], "int8": s["int8"]["per_device"]},
        plots / "per_device_accuracy.png",
        f"{cfg.name}: accuracy per device",
    )
    plot_learning_curves(
        place.out / "student" / "history.csv",
        plots / "learning_curves.png",
        f"{cfg.name}: student training",
    )
    for row, title in (("control", "CE control"), ("baseline", "DCASE baseline")):
        plot_learning_curves(
            place.out / row / "history.csv",
            plots / f"learning_curves_{row}.png",
            f"{title}: training",
        )  # no plot when the row is switched off
    sub = place.out / "submission"
    probs = np.load(place.out / "eval_probs_int8.npy")
    write_system_output(prep.splits.evaluate.names, probs, sub / f"{label}.development.output.csv")
    if place.eval_data is not None:
        predict_eval_set(cfg, place, runner, sub / f"{label}.output.csv")
    meta_path = write_meta_yaml(
        sub / f"{label}.meta.yaml",
        label=label,
        name=cfg.name,
        abbreviation=f"SERFR{cfg.student_width}",
        results=results,
        config=cfg.to_dict(),
    )
    meta = yaml.safe_load(meta_path.read_text())
    for problem in meta_problems(meta):
        runner.log(f"WARNING: {meta_path.name}: {problem}")
    todo = meta_placeholders(meta)
    runner.log(f"{meta_path}: fill in {len(todo)} value(s) before submitting: {', '.join(todo)}")


def predict_eval_set(cfg: SystemConfig, place: RunPlace, runner: StageRunner, path: Path) -> None:
    """The int8 student's predictions for every file of the evaluation set ``place.eval_data``."""
    import pandas as pd

    from asc_keras.compress.tflite import TFLiteModel
    from asc_keras.evaluate.dcase_files import write_system_output
    from asc_keras.features.cache import extract_features

    root = Path(place.eval_data)
    listing = next(
        (
            p
            for p in (root / "evaluation_setup" / "fold1_test.csv", root / "meta.csv")
            if p.is_file()
        ),
        None,
    )
    if listing is None:
        raise DataError(
            f"{root}: no evaluation_setup/fold1_test.csv or meta.csv listing the evaluation files"
        )
    files = list(pd.read_csv(listing, sep="\t", dtype=str)["filename"])
    cache = extract_features(
        root, files, cfg.features, place.work / "features", name="evalset", progress=place.progress
    )
    x = cache.features[cache.rows(files)].astype(np.float32)
    write_system_output(files, TFLiteModel(place.out / "student_int8.tflite").predict(x), path)
    runner.log(f"evaluation-set predictions: {path} ({len(files)} files)")
