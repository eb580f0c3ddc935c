"""``asc-keras finetune``: a trained model adapted to your own recordings and classes, then
compressed and converted exactly as ``run`` does, with a validation report.

Stages, each skipped when its output exists and was made from the same inputs (recorded in
``DIR/stamp.json``; changed inputs start the fine-tuning over):

1. windows: every recording cut into the model's 1 s windows with the model's own feature
   settings (``features.json`` beside it), cached in ``DIR/windows.npz``;
2. training: the head on the frozen body, then the whole model (resumable, ``DIR/finetune/``);
3. export: pruning + QAT + int8 for a SERFR-CNN (``run``'s compression), post-training int8 for
   another model, and the organisers' complexity count;
4. report: per-class accuracy and the confusion matrix on the validation files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from asc_keras.config import SystemConfig
from asc_keras.data.own import OwnRecordings, read_own_recordings, split_by_file
from asc_keras.data.splits import ClipSplit
from asc_keras.features.windows import Windows, recording_windows
from asc_keras.files import atomic_path, content_hash, folder_lock, jsonable, write_json
from asc_keras.metrics import classification_metrics
from asc_keras.models.classes import model_classes, save_model_file, write_classes
from asc_keras.training.finetune import FinetuneConfig, finetune_model, with_classes


def _source_key(model_path: Path, rec: OwnRecordings) -> dict:
    files = [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in rec.files]
    return {"model": hashlib.sha256(model_path.read_bytes()).hexdigest()[:16],
            "recordings": content_hash(files), "labels": rec.labels.tolist(), "classes": list(rec.classes)}  # fmt: skip


def _windows(rec: OwnRecordings, feats_cfg, path: Path, key: str, log, progress: bool) -> Windows:
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) == key:
                return Windows(z["features"], z["window_file"], [str(p) for p in z["padded"]])
    log(f"cutting {len(rec)} recordings into {feats_cfg.clip_seconds:g} s windows")
    w = recording_windows(rec.files, feats_cfg, progress)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, features=w.features, window_file=w.file, padded=np.array(w.padded, dtype=str),
                     key=np.array(key))  # fmt: skip
    return w


def _split(w: Windows, rec: OwnRecordings, files: np.ndarray) -> ClipSplit:
    rows = np.flatnonzero(np.isin(w.file, files))
    return ClipSplit(w.features, rows, rec.labels[w.file[rows]],
                     np.array([rec.devices[i] for i in w.file[rows]]),
                     tuple(str(rec.files[i]) for i in w.file[rows]))  # fmt: skip


def _file_scores(probs: np.ndarray, split: ClipSplit, classes) -> dict:
    """Per-file predictions (the mean of each file's windows, as ``predict`` makes them)."""
    names = np.array(split.names)
    order = list(dict.fromkeys(split.names))
    mean = np.stack([probs[names == n].mean(0) for n in order])
    labels = np.array([split.labels[names == n][0] for n in order])
    return classification_metrics(labels, mean, classes=classes)


def finetune(model_path: str | Path, data: str | Path, out: str | Path, cfg: FinetuneConfig,
             system: SystemConfig, *, verbose=2, log=print) -> dict:  # fmt: skip
    """Fine-tune ``model_path`` on ``data`` into ``out``; returns what ``results.json`` holds."""
    from asc_keras.evaluate.predict import feature_config_for
    from asc_keras.models.common import load_model_file

    model_path, out = Path(model_path), Path(out)
    if model_path.suffix != ".keras":
        raise ValueError(f"{model_path}: fine-tune a .keras model written by asc-keras run")
    source = load_model_file(model_path)
    source = getattr(source, "student", source)
    input_shape = tuple(source.input_shape[1:])
    old = model_classes(model_path, int(source.output_shape[-1]))
    feats_cfg = feature_config_for(model_path, input_shape)
    rec = read_own_recordings(data)
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out, "asc-keras finetune"):
        inputs = {"source": _source_key(model_path, rec), "features": dataclasses.asdict(feats_cfg),
                  "finetune": dataclasses.asdict(cfg), "compress": dataclasses.asdict(system.compress)}  # fmt: skip
        stamp = out / "stamp.json"
        if stamp.is_file() and json.loads(stamp.read_text()) != jsonable(inputs):
            log(f"{out}: made from other inputs before; fine-tuning starts over")
            for stale in ("finetune", "windows.npz", "student_int8.tflite"):
                p = out / stale
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        write_json(stamp, inputs)
        w = _windows(
            rec,
            feats_cfg,
            out / "windows.npz",
            content_hash(inputs["source"]),
            log,
            verbose not in (0, "0"),
        )
        train_files, val_files = split_by_file(rec.labels, cfg.val_fraction, cfg.seed)
        train, val = _split(w, rec, train_files), _split(w, rec, val_files)
        log(f"{len(rec.classes)} classes, {len(train_files)} training and {len(val_files)} validation "
            f"files ({len(train)} / {len(val)} windows); {len(w.padded)} file(s) shorter than one "
            "window, padded")  # fmt: skip
        new_head = tuple(rec.classes) != tuple(old)
        model = with_classes(source, rec.classes, old)
        model = finetune_model(model, cfg, train, val, run_dir=out / "finetune", verbose=verbose)
        save_model_file(model, out / "student.keras", rec.classes)
        write_json(out / "features.json", dataclasses.asdict(feats_cfg))
        write_classes(out / "classes.json", rec.classes)
        export = _export(model, system, train, out / "student_int8.tflite", log)
        results = _report(model, out, val, rec, export, verbose)
        results.update(source=str(model_path), data=str(data), new_head=new_head,
                       classes=list(rec.classes), padded_files=w.padded,
                       files={"train": len(train_files), "validation": len(val_files)},
                       train_files=[str(rec.files[i]) for i in train_files],
                       validation_files=[str(rec.files[i]) for i in val_files],
                       windows={"train": len(train), "validation": len(val)})  # fmt: skip
        write_json(out / "results.json", results)
    return results


def _export(model, system: SystemConfig, train: ClipSplit, path: Path, log) -> dict:
    """Int8 TFLite at ``path`` (kept when already made) and its complexity by NeSsi's rules."""
    from asc_keras.compress.nessi import nessi_complexity
    from asc_keras.compress.tflite import calibration_rows, convert_int8
    from asc_keras.models.serfr_cnn import SerfrCnn

    c = system.compress
    tfmot = isinstance(model, SerfrCnn) and (c.prune or c.qat)  # run's compression for a student
    steps = [name for name, on in (("pruning", c.prune), ("QAT", c.qat)) if on]
    info = {"method": " + ".join(steps) if tfmot else "post-training int8"}
    if not path.is_file():
        convert = model
        if tfmot:
            from asc_keras.compress.tfmot_compress import prune_and_quantize

            convert, info["compress"] = prune_and_quantize(
                model, system, train, None, verbose=0, log=log
            )
        rows = calibration_rows(train.rows, system.compress.representative_samples, system.seed)
        frames, mels = train.features.shape[1:]
        convert_int8(convert, np.asarray(train.features[rows]), path, input_shape=(frames, mels, 1))
        write_json(path.with_name("export.json"), info)
    info = json.loads(path.with_name("export.json").read_text())
    nessi = nessi_complexity(path)
    info["nessi"] = {"param_bytes": nessi.param_bytes, "macs": nessi.macs,
                     "within_dcase_limits": nessi.within_limits}  # fmt: skip
    log(nessi.summary())
    return info


def _report(model, out: Path, val: ClipSplit, rec: OwnRecordings, export: dict, verbose) -> dict:
    from asc_keras.compress.tflite import TFLiteModel
    from asc_keras.evaluate.finetune_report import finetune_markdown

    x = np.asarray(val.features[val.rows], np.float32)
    rows = {
        "float": _file_scores(np.asarray(model.predict(x[..., None], verbose=0)), val, rec.classes),
        "int8": _file_scores(TFLiteModel(out / "student_int8.tflite").predict(x), val, rec.classes),
    }  # fmt: skip
    results = {"validation": rows, "export": export}
    (out / "results.md").write_text(finetune_markdown(results, rec.classes))
    return results
