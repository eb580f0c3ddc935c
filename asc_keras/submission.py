"""Run one submission system end to end (report sec. 4.3), stage by stage, resumably.

Stages and what marks them done (a done stage is not redone unless ``force`` names it):

==========  =====================================================================
data        the dataset folder (generated into ``work/`` when none is given)
features    clip and 10 s recording log-mel caches in ``work/features/``
teachers    ``work/teachers/<name>-<hash>/final.keras`` + ``eval.json`` per teacher
targets     ``work/targets/<hash>.npy`` per-teacher logits per training clip
student     ``out/student.keras`` (KD training in ``out/student/``, resumable)
control     ``out/control.keras``: the same student trained with CE only (``controls.ce_control``)
baseline    ``out/baseline.keras``: the DCASE baseline on its own log-mels (``controls.baseline``)
compress    ``out/compress/qat.weights.h5`` marker + sparsity (pruning + QAT on the tf_keras twin)
tflite      ``out/student_int8.tflite``
evaluate    ``out/results.json``
report      ``out/results.md``, ``out/plots/*.png``, ``out/submission/*``
==========  =====================================================================

Teachers and targets live in the shared ``work`` folder keyed by everything they depend on.
The control and baseline rows show what distillation bought: ``results.json`` has
``student.ce_control``, ``student.kd_gain_points`` and ``baseline``, and a warning (log,
``results.md``, ``results.json['warnings']``) says when the teacher ensemble does not beat the
CE control, i.e. when distilling from it will likely hurt.
Teachers train with the system's masks and time stretching (time mask scaled to their window;
mixup only with ``teachers.mixup``), so systems 1-2 share
one set and systems 3-4, which add time stretching, another.  The output stages (student,
compress, tflite) record what they were made from in ``out/stamps/<stage>.json``; when that
changes (``--set optim.epochs=...``, new teachers or targets) the stage and those after it are
redone.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from asc_keras.config import SCENE_CLASSES, SystemConfig
from asc_keras.data import DataError, read_tau, rebuild_recordings
from asc_keras.data.synthetic import is_complete, make_synthetic_tau

STAGES = ("data", "features", "teachers", "targets", "student", "control", "baseline", "compress", "tflite",
          "evaluate", "report")


class RunError(RuntimeError):
    """A run cannot start (bad paths, an output folder holding another run)."""


def _hash(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


@dataclasses.dataclass
class Prepared:
    """What the shared stages produce: dataset index, caches, splits, teacher results, soft targets."""

    dataset: object
    clip_cache: object
    rec_cache: object
    train_clips: object
    eval_clips: object
    teacher_metrics: dict
    targets: object | None  # SoftTargets of the training clips (per-teacher logits), or None

    def soft(self, temperature: float) -> np.ndarray | None:
        """The ensemble's soft targets at ``temperature`` per training clip (None without teachers)."""
        return None if self.targets is None else self.targets.distribution(temperature)


@dataclasses.dataclass
class SystemRun:
    cfg: SystemConfig
    out: Path
    work: Path
    data: Path | None = None
    eval_data: Path | None = None
    train_split: str = "train"
    strategy: str = "default"
    force: frozenset = frozenset()
    verbose: int | str = 2
    log: Callable[[str], None] = print
    submission_label: str | None = None
    _targets_name: str | None = dataclasses.field(default=None, init=False, repr=False)

    # ------------------------------------------------------------------ checks
    def check(self) -> None:
        """Fail fast, before any long work: bad paths, another system's run in ``out``."""
        if self.data is not None and not Path(self.data).is_dir():
            raise RunError(f"--data {self.data}: folder not found. Pass the TAU Urban Acoustic Scenes 2022 Mobile "
                           "development folder (meta.csv, audio/, evaluation_setup/) or leave --data out.")
        if self.eval_data is not None and not Path(self.eval_data).is_dir():
            raise RunError(f"--eval-data {self.eval_data}: folder not found.")
        if self.train_split not in ("train", "all"):
            raise RunError(f"--train-split must be 'train' or 'all', got {self.train_split!r}")
        bad = set(self.force) - set(STAGES) - {"all"}
        if bad:
            raise RunError(f"unknown stage(s) {sorted(bad)} in --force; stages are {', '.join(STAGES)}")
        prev = self.out / "config.yaml"
        if prev.is_file():
            old = yaml.safe_load(prev.read_text()) or {}
            mine = self._identity()
            theirs = old.get("run", {})
            if theirs and theirs != mine:
                diff = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
                raise RunError(f"{self.out} holds another run ({', '.join(f'{k}: {a!r} there, {b!r} now' for k, (a, b) in diff.items())}). "
                               "Choose another --out, or delete that folder to start over.")

    def _identity(self) -> dict:
        return {"system": self.cfg.system, "profile": self.cfg.profile, "student_width": self.cfg.student_width,
                "data": str(Path(self.data).resolve()) if self.data else "generated",
                "train_split": self.train_split}

    def _forced(self, stage: str) -> bool:
        return stage in self.force or "all" in self.force

    def _fresh(self, stage: str, inputs: dict, *outputs: Path) -> bool:
        """True when ``outputs`` exist, were made from ``inputs`` and ``stage`` is not forced.

        Each output stage records what it was made from in ``out/stamps/<stage>.json`` when it
        starts (so an interrupted stage with unchanged inputs resumes).  Inputs include the
        upstream stage's stamp, so a retrained student also redoes compression and conversion.
        """
        return (not self._forced(stage) and all(p.is_file() for p in outputs)
                and self._recorded(stage) == _jsonable(inputs))

    def _recorded(self, stage: str) -> dict | None:
        """The inputs last recorded for ``stage`` (None if never)."""
        stamp = self.out / "stamps" / f"{stage}.json"
        return json.loads(stamp.read_text()) if stamp.is_file() else None

    def _stamp(self, stage: str, inputs: dict) -> bool:
        """Record ``inputs`` for ``stage``; return True when they differ from the previous record."""
        changed = self._recorded(stage) != _jsonable(inputs)
        _write_json(self.out / "stamps" / f"{stage}.json", _jsonable(inputs))
        return changed

    # ------------------------------------------------------------------ stages
    def _start(self) -> None:
        self.check()
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        (self.out / "config.yaml").write_text(yaml.safe_dump({"run": self._identity(), **self.cfg.to_dict()},
                                                             sort_keys=False))
        (self.out / "features.json").write_text(json.dumps(dataclasses.asdict(self.cfg.features), indent=1))

    def _stage(self, name: str) -> float:
        self.log(f"== {name}")
        return time.perf_counter()

    def prepare(self, timings: dict | None = None) -> "Prepared":
        """Stages shared by every system and by the width search: data, features, teachers, targets."""
        timings = {} if timings is None else timings
        t = self._stage("data")
        ds = self._data()
        timings["data"] = time.perf_counter() - t
        t = self._stage("features")
        clip_cache, rec_cache, recs = self._features(ds)
        timings["features"] = time.perf_counter() - t
        train_clips = ds.split(self.train_split).reset_index(drop=True)
        eval_clips = ds.evaluate.reset_index(drop=True)
        train_recs = recs[recs["recording_id"].isin(set(train_clips["recording_id"]))].reset_index(drop=True)
        eval_recs = recs[recs["recording_id"].isin(set(eval_clips["recording_id"]))].reset_index(drop=True)
        teachers, teacher_metrics, targets = [], {}, None
        if self.cfg.distill.enabled:
            t = self._stage("teachers")
            teachers, teacher_metrics = self._teachers(rec_cache, train_recs, eval_recs)
            timings["teachers"] = time.perf_counter() - t
            t = self._stage("targets")
            targets = self._targets(teachers, clip_cache, rec_cache, train_clips, train_recs)
            timings["targets"] = time.perf_counter() - t
        return Prepared(ds, clip_cache, rec_cache, train_clips, eval_clips, teacher_metrics, targets)

    def run(self) -> dict:
        """All stages; returns the results dict also written to ``out/results.json``."""
        self._start()
        t_start = time.perf_counter()
        timings: dict[str, float] = {}
        prep = self.prepare(timings)
        ds, clip_cache, train_clips, eval_clips = prep.dataset, prep.clip_cache, prep.train_clips, prep.eval_clips
        soft, teacher_metrics = prep.soft(self.cfg.distill.temperature), prep.teacher_metrics
        stage = self._stage

        t = stage("student")
        student = self._student(clip_cache, train_clips, eval_clips, soft)
        timings["student"] = time.perf_counter() - t

        controls = {}
        if self.cfg.controls.ce_control and soft is not None:
            t = stage("control")
            controls["ce_control"] = self._student(clip_cache, train_clips, eval_clips, None, stage="control")
            timings["control"] = time.perf_counter() - t
        if self.cfg.controls.baseline:
            t = stage("baseline")
            controls["baseline"] = self._baseline(ds, train_clips, eval_clips)
            timings["baseline"] = time.perf_counter() - t

        t = stage("compress")
        qat, compress_info = self._compress(student, clip_cache, train_clips, soft)
        timings["compress"] = time.perf_counter() - t

        t = stage("tflite")
        tflite_path = self._tflite(qat if qat is not None else student, clip_cache, train_clips,
                                   redo=qat is not None)
        timings["tflite"] = time.perf_counter() - t

        t = stage("evaluate")
        results = self._evaluate(student, tflite_path, clip_cache, eval_clips, teacher_metrics, compress_info)
        results.update(self._controls_results(controls, clip_cache, eval_clips, results))
        timings["evaluate"] = time.perf_counter() - t

        t = stage("report")
        self._report(results, ds, clip_cache)
        timings["report"] = time.perf_counter() - t
        results["timings_s"] = timings
        results["wall_time_s"] = time.perf_counter() - t_start
        _write_json(self.out / "results.json", results)
        from asc_keras.evaluate.report import write_results_md

        write_results_md(results, self.out / "results.md")
        self.log(f"done in {results['wall_time_s']:.0f} s: {self.out / 'results.md'}")
        return results

    def _data(self):
        if self.data is None:
            size = self.cfg.data
            root = self.work / f"generated-r{size.recordings_per_class}-c{size.cities}-s{size.seed}"
            if not is_complete(root) or "data" in self.force:
                self.log(f"generating the built-in dataset in {root} ...")
                make_synthetic_tau(root, size.recordings_per_class, size.cities, size.seed, workers=2)
            self.data_root = root
        else:
            self.data_root = Path(self.data)
        ds = read_tau(self.data_root)
        self.log(f"{self.data_root}: {len(ds.train)} train / {len(ds.evaluate)} evaluate clips")
        return ds

    def _features(self, ds):
        from asc_keras.features.cache import extract_features

        root = self.work / "features"
        clips = list(dict.fromkeys(list(ds.train["filename"]) + list(ds.evaluate["filename"])))
        clip_cache = extract_features(ds.root, clips, self.cfg.features, root, name="clips",
                                      progress=self.verbose not in (0, "0"))
        rec_cache, recs = None, None
        recs, problems = rebuild_recordings(ds.split("all"))
        if self.cfg.distill.enabled and len(recs):
            rec_cache = extract_features(ds.root, list(recs["files"]), self.cfg.features, root, name="recordings",
                                         progress=self.verbose not in (0, "0"))
        return clip_cache, rec_cache, recs

    def _teacher_dir(self, name: str) -> Path:
        c = self.cfg
        key = _hash(name, dataclasses.asdict(c.teachers), dataclasses.asdict(c.features), dataclasses.asdict(c.augment),
                    c.optim.weight_decay, c.optim.weight_decay_mode, c.optim.warmup_fraction, c.optim.final_lr,
                    c.optim.bn_momentum, str(self.data_root.resolve()), self.train_split, c.seed)
        return self.work / "teachers" / f"{name}-{key}"

    def _teachers(self, rec_cache, train_recs, eval_recs):
        from asc_keras.evaluate.metrics import classification_metrics
        from asc_keras.training.teachers import train_teacher

        models, metrics = [], {}
        crop = self.cfg.teachers.crop_seconds
        crop_frames = None if crop is None else self.cfg.features.n_frames(crop)
        tr_rows = rec_cache.rows(["|".join(f) for f in train_recs["files"]])
        ev_rows = rec_cache.rows(["|".join(f) for f in eval_recs["files"]])
        for name in self.cfg.teachers.names:
            d = self._teacher_dir(name)
            if "teachers" in self.force and d.exists():
                shutil.rmtree(d)
            self.log(f"-- teacher {name} ({d.name})")
            m, met = train_teacher(name, rec_cache.features, tr_rows, train_recs["label"].to_numpy(), ev_rows,
                                   eval_recs["label"].to_numpy(), cfg=self.cfg.teachers, optim=self.cfg.optim,
                                   augment=self.cfg.augment, run_dir=d, eval_devices=eval_recs["device"].to_numpy(),
                                   strategy=self.strategy, seed=self.cfg.seed, verbose=self.verbose,
                                   crop_frames=crop_frames)
            self.log(f"   {name}: {100 * met['accuracy']:.1f} % on {len(ev_rows)} evaluation recordings (10 s)")
            models.append(m)
            last_phase = d / ("finetune" if (d / "finetune").is_dir() else "train")  # transfer learning: 2 phases
            metrics[name] = {**_brief(met), "last_epoch_val_accuracy": _last_val(last_phase / "history.csv")}
        if len(models) > 1 and len(ev_rows):
            from asc_keras.distill.targets import ensemble_distribution, teacher_logits

            # The ensemble at T = 1 by the one definition the soft targets use (distill.targets).
            z = teacher_logits(models, rec_cache.features, ev_rows, batch_size=16)
            p = ensemble_distribution(z, 1.0, self.cfg.distill.ensemble)
            metrics["ensemble"] = _brief(classification_metrics(eval_recs["label"], p, eval_recs["device"]))
            self.log(f"   ensemble: {100 * metrics['ensemble']['accuracy']:.1f} %")
        return models, metrics

    def _targets(self, teachers, clip_cache, rec_cache, train_clips, train_recs):
        from asc_keras.distill.targets import SoftTargets, teacher_logits

        d = self.cfg.distill
        names = list(self.cfg.teachers.names)
        key = _hash([self._teacher_dir(n).name for n in names], d.target_source, clip_cache.path.name,
                    self.train_split)
        # Per-teacher logits: the ensemble mode and T are applied when read (SoftTargets.distribution).
        path = self.work / "targets" / f"{d.target_source}-per-teacher-{key}.npy"
        self._targets_name = path.name
        items = tuple(train_clips["filename"])
        meta = {"ensemble": d.ensemble, "target_source": d.target_source, "teachers": names}
        if path.is_file() and "targets" not in self.force:
            stored = SoftTargets.load(path)
            return SoftTargets(stored.logits, stored.items, {**stored.meta, "ensemble": d.ensemble}).select(items)
        logits = np.full((len(items), len(names), 10), np.nan, np.float32)
        if d.target_source == "recording" and rec_cache is not None and len(train_recs):
            # The teachers see each clip's whole 10 s recording; its ten clips share the target.
            rec_logits = teacher_logits(teachers, rec_cache.features,
                                        rec_cache.rows(["|".join(f) for f in train_recs["files"]]), batch_size=16)
            pos = {f: i for i, f in enumerate(items)}
            for r, files in enumerate(train_recs["files"]):
                for f in files:
                    if f in pos:
                        logits[pos[f]] = rec_logits[r]
        todo = np.where(np.isnan(logits[:, 0, 0]))[0]  # 'clip' source, or clips of incomplete recordings
        if len(todo):
            logits[todo] = teacher_logits(teachers, clip_cache.features, clip_cache.rows([items[i] for i in todo]),
                                          batch_size=64)
        targets = SoftTargets(logits, items, meta)
        targets.save(path)
        return targets

    def _student_inputs(self, clip_cache) -> dict:
        c = self.cfg
        return {"width": c.student_width, "seed": c.seed, "augment": dataclasses.asdict(c.augment),
                "optim": dataclasses.asdict(c.optim), "distill": dataclasses.asdict(c.distill),
                "features": clip_cache.path.name, "targets": self._targets_name, "train_split": self.train_split}

    def _compress_inputs(self) -> dict:
        return {"student": _hash(self._recorded("student")),
                "compress": dataclasses.asdict(self.cfg.compress)}

    def _tflite_inputs(self) -> dict:
        return {"compress": _hash(self._compress_inputs()),
                "representative_samples": self.cfg.compress.representative_samples}

    def _student(self, clip_cache, train_clips, eval_clips, soft, stage: str = "student"):
        """Train (or load) the student of ``stage``: 'student' learns from ``soft`` (KD), 'control' is
        the CE control -- the same student, augmentation, schedule and epochs, no teachers."""
        from asc_keras._runtime import keras
        from asc_keras.training.student import train_student

        final, run_dir = self.out / f"{stage}.keras", self.out / stage
        inputs = self._student_inputs(clip_cache)
        if stage == "control":  # what the teachers are does not change the control
            inputs = {k: v for k, v in inputs.items() if k not in ("distill", "targets")}
        if self._fresh(stage, inputs, final):
            return keras.saving.load_model(final, compile=False, safe_mode=True)
        # Same inputs and no <stage>.keras: an interrupted run, resumed from its backup.
        # Other inputs (or --force): the old training folder is stale.
        if (self._stamp(stage, inputs) or self._forced(stage)) and run_dir.exists():
            shutil.rmtree(run_dir)
        model = train_student(clip_cache.features, clip_cache.rows(train_clips["filename"]),
                              train_clips["label"].to_numpy(), soft, clip_cache.rows(eval_clips["filename"]),
                              eval_clips["label"].to_numpy(), cfg=self.cfg, run_dir=run_dir,
                              strategy=self.strategy, verbose=self.verbose)
        model.save(final)
        return model

    def _baseline(self, ds, train_clips, eval_clips):
        """The DCASE baseline on its own log-mels of the same clips: (model, its feature cache)."""
        from asc_keras._runtime import keras
        from asc_keras.features.cache import extract_features
        from asc_keras.models.baseline import BASELINE_FEATURES
        from asc_keras.training.baseline import train_baseline

        clips = list(dict.fromkeys(list(train_clips["filename"]) + list(eval_clips["filename"])))
        cache = extract_features(ds.root, clips, BASELINE_FEATURES, self.work / "features", name="baseline-clips",
                                 progress=self.verbose not in (0, "0"))
        final = self.out / "baseline.keras"
        inputs = {"seed": self.cfg.seed, "optim": dataclasses.asdict(self.cfg.optim), "features": cache.path.name,
                  "train_split": self.train_split}
        if self._fresh("baseline", inputs, final):
            return keras.saving.load_model(final, compile=False, safe_mode=True), cache
        if (self._stamp("baseline", inputs) or self._forced("baseline")) and (self.out / "baseline").exists():
            shutil.rmtree(self.out / "baseline")
        model = train_baseline(cache.features, cache.rows(train_clips["filename"]), train_clips["label"].to_numpy(),
                               cache.rows(eval_clips["filename"]), eval_clips["label"].to_numpy(), cfg=self.cfg,
                               run_dir=self.out / "baseline", strategy=self.strategy, verbose=self.verbose)
        model.save(final)
        return model, cache

    def _controls_results(self, controls: dict, clip_cache, eval_clips, results: dict) -> dict:
        """results.json entries of the control rows, and the warning when the teachers cannot help."""
        from asc_keras.compress.complexity import keras_complexity
        from asc_keras.evaluate.metrics import classification_metrics
        from asc_keras.models.baseline import BASELINE_FEATURES

        y, dev = eval_clips["label"].to_numpy(), eval_clips["device"].to_numpy()
        out: dict = {"warnings": []}
        results["student"]["float"]["last_epoch_val_accuracy"] = _last_val(self.out / "student" / "history.csv")
        if "ce_control" in controls:
            x = clip_cache.features[clip_cache.rows(eval_clips["filename"])].astype(np.float32)[..., None]
            m = classification_metrics(y, controls["ce_control"].predict(x, batch_size=256, verbose=0), dev)
            m["last_epoch_val_accuracy"] = _last_val(self.out / "control" / "history.csv")
            results["student"]["ce_control"] = m
            results["student"]["kd_gain_points"] = 100 * (results["student"]["float"]["accuracy"] - m["accuracy"])
            self.log(f"CE control {100 * m['accuracy']:.1f} %, KD student "
                     f"{100 * results['student']['float']['accuracy']:.1f} %")
            ens = (results.get("teachers") or {}).get("ensemble")
            if ens is not None and ens["accuracy"] <= m["accuracy"]:
                msg = (f"the teacher ensemble ({100 * ens['accuracy']:.1f} % on 10 s recordings) does not beat the "
                       f"CE-only student ({100 * m['accuracy']:.1f} % on 1 s clips): distilling from it will likely "
                       "hurt. Train the teachers longer or larger (teachers.epochs, teachers.*_width), or use "
                       "pretrained weights (teachers.pretrained_mobilenetv2).")
                self.log(f"WARNING: {msg}")
                out["warnings"].append(msg)
        if "baseline" in controls:
            model, cache = controls["baseline"]
            x = cache.features[cache.rows(eval_clips["filename"])].astype(np.float32)[..., None]
            m = classification_metrics(y, model.predict(x, batch_size=256, verbose=0), dev)
            m["last_epoch_val_accuracy"] = _last_val(self.out / "baseline" / "history.csv")
            kc = keras_complexity(model)
            out["baseline"] = {"float": m, "features": dataclasses.asdict(BASELINE_FEATURES),
                               "complexity": {k: v for k, v in kc.to_dict().items() if k != "layers"}}
            self.log(f"DCASE baseline {100 * m['accuracy']:.1f} %")
        return out

    def _compress(self, student, clip_cache, train_clips, soft):
        from asc_keras.compress.tfmot_compress import prune_and_quantize
        c = self.cfg.compress
        info_path = self.out / "compress" / "info.json"
        if not (c.prune or c.qat):
            return None, {}
        weights = self.out / "compress" / "qat.weights.h5"
        # The QAT model lives only in memory: compression is skipped only when its int8
        # conversion is fresh too (else the converter would get the float student).
        if self._fresh("compress", self._compress_inputs(), weights, info_path) and \
                self._fresh("tflite", self._tflite_inputs(), self.out / "student_int8.tflite"):
            return None, json.loads(info_path.read_text())
        self._stamp("compress", self._compress_inputs())
        qat, info = prune_and_quantize(student, clip_cache.features, clip_cache.rows(train_clips["filename"]),
                                       train_clips["label"].to_numpy(), soft, cfg=c,
                                       alpha=self.cfg.distill.alpha, temperature=self.cfg.distill.temperature,
                                       batch_size=min(self.cfg.optim.batch_size, 128), seed=self.cfg.seed,
                                       verbose=self.verbose, bn_batches=c.bn_recalibration_batches,
                                       log=self.log)
        weights.parent.mkdir(parents=True, exist_ok=True)
        qat.save_weights(weights)
        _write_json(info_path, info)
        (self.out / "student_int8.tflite").unlink(missing_ok=True)  # must be re-converted from this model
        return qat, info

    def _tflite(self, model, clip_cache, train_clips, redo: bool) -> Path:
        from asc_keras.compress.tflite import calibration_rows, convert_int8

        path = self.out / "student_int8.tflite"
        if not redo and self._fresh("tflite", self._tflite_inputs(), path):
            return path
        self._stamp("tflite", self._tflite_inputs())
        rows = calibration_rows(clip_cache.rows(train_clips["filename"]), self.cfg.compress.representative_samples,
                                self.cfg.seed)
        rep = clip_cache.features[rows]
        info = convert_int8(model, rep, path)
        self.log(f"int8 TFLite: {path} ({info['bytes'] / 1024:.1f} KiB)")
        return path

    def _evaluate(self, student, tflite_path, clip_cache, eval_clips, teacher_metrics, compress_info) -> dict:
        from asc_keras.compress.complexity import keras_complexity, tflite_complexity
        from asc_keras.compress.tflite import TFLiteModel
        from asc_keras.evaluate.metrics import classification_metrics

        x = clip_cache.features[clip_cache.rows(eval_clips["filename"])].astype(np.float32)
        y, dev = eval_clips["label"].to_numpy(), eval_clips["device"].to_numpy()
        p_float = student.predict(x[..., None], batch_size=256, verbose=0)
        tfl = TFLiteModel(tflite_path)
        p_int8 = tfl.predict(x, batch_size=256)
        m_float = classification_metrics(y, p_float, dev)
        m_int8 = classification_metrics(y, p_int8, dev)
        np.save(self.out / "eval_probs_int8.npy", p_int8)
        kc, tc = keras_complexity(student), tflite_complexity(tflite_path)
        complexity = {"keras": {k: v for k, v in kc.to_dict().items() if k != "layers"},
                      "tflite": {"params": tc.params, "macs": tc.macs, "int8_kb": tc.memory_bytes(8) / 1024,
                                 "within_dcase_limits": tc.within_limits},
                      "tflite_matches_keras": tc.params == kc.deployed_params and tc.macs == kc.macs}
        if compress_info:
            complexity["sparsity"] = compress_info.get("sparsity", 0.0)
            complexity["nonzero_params"] = int(round(kc.params * (1 - complexity["sparsity"])))
        self.log(f"student float {100 * m_float['accuracy']:.1f} %, int8 {100 * m_int8['accuracy']:.1f} % "
                 f"(log loss {m_float['log_loss']:.3f} / {m_int8['log_loss']:.3f}); {kc.summary()}")
        return {
            "system": self.cfg.system, "system_name": self.cfg.name, "profile": self.cfg.profile,
            "data": str(self.data_root), "train_split": self.train_split,
            "evaluated_on": "fold1_evaluate" + (" (also trained on: train_split=all)" if self.train_split == "all" else ""),
            "teachers": teacher_metrics,
            "student": {"float": m_float, "int8": m_int8,
                        "int8_gap_points": 100 * (m_int8["accuracy"] - m_float["accuracy"]),
                        "litert_delegate": tfl.delegate},
            "complexity": complexity,
        }

    def _report(self, results, ds, clip_cache) -> None:
        from asc_keras.evaluate.dcase_files import write_meta_yaml, write_system_output
        from asc_keras.evaluate.plots import plot_confusion, plot_learning_curves, plot_per_device

        plots = self.out / "plots"
        s = results["student"]
        plot_confusion(s["int8"]["confusion"], plots / "confusion_int8.png", "int8 student, fold-1 evaluation")
        plot_confusion(s["float"]["confusion"], plots / "confusion_float.png", "float student, fold-1 evaluation")
        plot_per_device({"float": s["float"]["per_device"], "int8": s["int8"]["per_device"]},
                        plots / "per_device_accuracy.png", f"{self.cfg.name}: accuracy per device")
        plot_learning_curves(self.out / "student" / "history.csv", plots / "learning_curves.png",
                             f"{self.cfg.name}: student training")
        for row, title in (("control", "CE control"), ("baseline", "DCASE baseline")):
            plot_learning_curves(self.out / row / "history.csv", plots / f"learning_curves_{row}.png",
                                 f"{title}: training")  # no plot when the row is switched off
        label = self.submission_label or f"asc_keras_task1_{self.cfg.system}"
        sub = self.out / "submission"
        probs = np.load(self.out / "eval_probs_int8.npy")
        write_system_output(ds.evaluate["filename"], probs, sub / f"{label}.development.output.csv")
        if self.eval_data is not None:
            self._predict_eval_set(sub / f"{label}.output.csv")
        write_meta_yaml(sub / f"{label}.meta.yaml", label=label, name=self.cfg.name,
                        abbreviation=f"SERFR{self.cfg.student_width}", results=results, config=self.cfg.to_dict())

    def _predict_eval_set(self, path: Path) -> None:
        import pandas as pd

        from asc_keras.compress.tflite import TFLiteModel
        from asc_keras.evaluate.dcase_files import write_system_output
        from asc_keras.features.cache import extract_features

        root = Path(self.eval_data)
        listing = next((p for p in (root / "evaluation_setup" / "fold1_test.csv", root / "meta.csv") if p.is_file()), None)
        if listing is None:
            raise DataError(f"{root}: no evaluation_setup/fold1_test.csv or meta.csv listing the evaluation files")
        files = list(pd.read_csv(listing, sep="\t", dtype=str)["filename"])
        cache = extract_features(root, files, self.cfg.features, self.work / "features", name="evalset",
                                 progress=self.verbose not in (0, "0"))
        probs = TFLiteModel(self.out / "student_int8.tflite").predict(cache.features[cache.rows(files)].astype(np.float32))
        write_system_output(files, probs, path)
        self.log(f"evaluation-set predictions: {path} ({len(files)} files)")


def _last_val(history_csv: Path) -> float | None:
    """The last epoch's ``val_accuracy`` of a training run's CSV log (None without one)."""
    import pandas as pd

    if not Path(history_csv).is_file():
        return None
    h = pd.read_csv(history_csv)
    return float(h["val_accuracy"].iloc[-1]) if "val_accuracy" in h and len(h) else None


def _brief(m: dict) -> dict:
    return {k: m[k] for k in ("accuracy", "macro_accuracy", "log_loss", "per_device", "n") if k in m}


def _jsonable(obj):
    """``obj`` as it reads back from JSON (tuples become lists), for comparisons with stored stamps."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=float))
    tmp.replace(path)


__all__ = ["RunError", "STAGES", "SCENE_CLASSES", "SystemRun"]
