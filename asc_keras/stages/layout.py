"""Every path the stages write or read, named in one place.

:class:`RunLayout` is a run's output folder (``--out``), :class:`WorkLayout` the shared work
folder (``--work``) whose products several runs reuse.  A stage asks its layout for a path and
never spells one itself, so two stages that share a file share its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from asc_keras.config import DataConfig

# The output stages that train a clip model: the KD student, the CE control, the DCASE baseline.
TRAINED = ("student", "control", "baseline")


@dataclass(frozen=True)
class RunLayout:
    """The files of one run's output folder."""

    out: Path

    def model(self, stage: str) -> Path:
        """The trained model of ``stage`` ('student', 'control', 'baseline'): ``<stage>.keras``."""
        return self.out / f"{stage}.keras"

    def training(self, stage: str) -> Path:
        """The training folder of ``stage``: backups, logs, ``final.keras`` (resumable)."""
        return self.out / stage

    def history(self, stage: str) -> Path:
        """``history.csv`` of ``stage``'s training: one row per round."""
        return self.training(stage) / "history.csv"

    @property
    def compress(self) -> Path:
        return self.out / "compress"

    @property
    def qat_weights(self) -> Path:
        """The pruned + QAT tf_keras model's weights (what is converted to int8)."""
        return self.compress / "qat.weights.h5"

    @property
    def compress_info(self) -> Path:
        return self.compress / "info.json"

    @property
    def compressed_float(self) -> Path:
        """The compressed model's float twin: the pruned + QAT weights, without fake quantisation."""
        return self.out / "student_compressed.keras"

    @property
    def int8(self) -> Path:
        return self.out / "student_int8.tflite"

    @property
    def stamps(self) -> Path:
        return self.out / "stamps"

    @property
    def config(self) -> Path:
        return self.out / "config.yaml"

    @property
    def features(self) -> Path:
        """The feature settings ``asc-keras predict`` reads beside the model."""
        return self.out / "features.json"

    @property
    def classes(self) -> Path:
        """The class names of the models beside it (the ``.tflite`` has no room for them)."""
        return self.out / "classes.json"

    @property
    def results_json(self) -> Path:
        return self.out / "results.json"

    @property
    def results_md(self) -> Path:
        return self.out / "results.md"

    @property
    def plots(self) -> Path:
        return self.out / "plots"

    @property
    def submission(self) -> Path:
        """The DCASE submission package: the evaluation set's system output and the meta YAML."""
        return self.out / "submission"

    def development_output(self, label: str) -> Path:
        """The system output on the fold-1 evaluation clips, named as the validator names every
        output (``<label>.output.csv``) but kept out of the package, so it is never zipped as
        the evaluation set's."""
        return self.out / "development" / f"{label}.output.csv"


@dataclass(frozen=True)
class WorkLayout:
    """The shared work folder: feature caches, generated data, teachers, stored teacher outputs."""

    work: Path

    @property
    def features(self) -> Path:
        return self.work / "features"

    def generated(self, size: DataConfig) -> Path:
        """The built-in generated data set of that size and seed (the name of a set with the
        default two extra devices is the name it had before their number could change)."""
        extra = "" if size.extra_devices == 2 else f"-e{size.extra_devices}"
        return (
            self.work / f"generated-r{size.recordings_per_class}-c{size.cities}-s{size.seed}{extra}"
        )

    def teacher(self, name: str, key: str) -> Path:
        """A teacher's folder: ``final.keras``, ``eval.json`` and its training phases."""
        return self.work / "teachers" / f"{name}-{key}"

    def targets(self, source: str, key: str) -> Path:
        """The teachers' logits of every training clip (the distillation targets), ``.npy``."""
        return self.work / "targets" / f"{source}-per-teacher-{key}.npy"

    def ensemble_outputs(self, key: str) -> Path:
        """The teachers' logits of every evaluation recording (the ensemble's scores), ``.npy``."""
        return self.work / "targets" / f"eval-recordings-{key}.npy"

    def probe(self, key: str) -> Path:
        """The probe student's record on the clips held out from the teachers, ``.json``; its
        training folder is the same path without the suffix (stages.teaching.probe_stage)."""
        return self.work / "probes" / f"probe-{key}.json"

    def probe_devices(self, key: str) -> Path:
        """The teachers' logits of the held-out clips heard through the probe's simulated devices
        (stages.probe_devices), ``.npy``."""
        return self.work / "probes" / f"teachers-devices-{key}.npy"
