"""DCASE submission files: the system output CSV and the meta YAML (docs/sources.md)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from asc_keras.config import ALL_DEVICES, SCENE_CLASSES


def write_system_output(
    filenames: Sequence[str],
    probs: np.ndarray,
    path: str | Path,
    classes: Sequence[str] = SCENE_CLASSES,
) -> Path:
    """Tab-separated: filename, scene_label, then one probability column per class (official order)."""
    probs = np.asarray(probs, np.float64)
    df = pd.DataFrame(probs, columns=list(classes))
    df.insert(0, "scene_label", [classes[i] for i in probs.argmax(axis=1)])
    df.insert(0, "filename", [Path(f).name for f in filenames])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, sep="\t", index=False, float_format="%.4f")
    return path


# What the organisers' submission validator requires of the meta YAML.  Exactly: the checks of
# toni-heittola/dcase2020_task1_submission_validator (commit 0235e91, task 1a: overall, class-wise
# and device-wise results, outputs named <label>.output.csv), whose result layout the 2021-2023
# editions kept, plus the complexity and energy fields of 2022-2023 and the 2024 description's
# "split_adaptations" and "system_adaptations".  Not the 2024 validator (dcase2024_task1_
# submission_validator c868be0): it wants results and outputs for the 2024 training subsets
# (split_5 ... split_100), which need five trainings on subsets a run does not make.
REQUIRED_META_FIELDS = {
    "submission": ["label", "name", "abbreviation", "authors"],
    "submission.authors[]": ["lastname", "firstname", "email", "affiliation"],
    "system": ["description", "complexity", "energy_consumption", "external_datasets", "source_code"],
    "system.description": [
        "input_sampling_rate", "acoustic_features", "embeddings", "data_augmentation",
        "machine_learning_method", "ensemble_method_subsystem_count", "decision_making",
        "external_data_usage", "complexity_management", "pipeline", "framework",
        "split_adaptations", "system_adaptations",
    ],
    "system.complexity": ["total_model_size", "total_parameters", "total_parameters_non_zero", "memory_use", "macs"],
    "system.energy_consumption": ["training", "inference", "baseline_inference"],
    "system.external_datasets[]": ["name", "url", "total_audio_length"],
    "results": ["development_dataset"],
    "results.development_dataset": ["overall", "class_wise", "device_wise"],
    "results.development_dataset.overall": ["accuracy", "logloss"],
    "results.development_dataset.class_wise": list(SCENE_CLASSES),
    "results.development_dataset.class_wise.*": ["accuracy", "logloss"],
    "results.development_dataset.device_wise": list(ALL_DEVICES),
    "results.development_dataset.device_wise.*": ["accuracy", "logloss"],
}  # fmt: skip
FILL_IN = "FILL IN"  # marks a value only the submitting team can give


def _blocks(meta: dict, path: str) -> list[tuple[str, object]]:
    """The blocks at ``path`` ('a.b', 'a.b[]' for list items, 'a.b.*' for every value of a dict)."""
    nodes = [("", meta)]
    for part in path.split("."):
        nxt = []
        for name, node in nodes:
            if part == "*":
                nxt += [
                    (f"{name}.{k}", v) for k, v in (node.items() if isinstance(node, dict) else [])
                ]
                continue
            key, many = (part[:-2], True) if part.endswith("[]") else (part, False)
            value = node.get(key) if isinstance(node, dict) else None
            if many:
                nxt += [(f"{name}.{key}[{i}]", v) for i, v in enumerate(value or [])]
            elif value is not None:
                nxt.append((f"{name}.{key}".lstrip("."), value))
        nodes = nxt
    return nodes


def meta_problems(meta: dict) -> list[str]:
    """What the organisers' validator would refuse in ``meta``: missing fields and bad values.

    Placeholders (:data:`FILL_IN`) are not problems here; :func:`meta_placeholders` lists them.
    """
    problems = []
    for top in ("submission", "system", "results"):
        if top not in meta:
            problems.append(f"'{top}' block missing")
    for path, fields in REQUIRED_META_FIELDS.items():
        for name, block in _blocks(meta, path):
            missing = [f for f in fields if not isinstance(block, dict) or f not in block]
            if missing:
                problems.append(f"{name or path}: missing {', '.join(missing)}")
    authors = (meta.get("submission") or {}).get("authors") or []
    if sum(bool(a.get("corresponding")) for a in authors) != 1:
        problems.append("submission.authors: exactly one author must be marked corresponding")
    label = str((meta.get("submission") or {}).get("label", ""))
    if len(label.split("_")) != 4 or label.split("_")[2] != "task1":
        problems.append(f"submission.label {label!r}: must be LASTNAME_INSTITUTE_task1_N")
    if len(str((meta.get("submission") or {}).get("abbreviation", ""))) > 10:
        problems.append("submission.abbreviation: at most 10 characters")
    return problems


def meta_placeholders(meta, prefix: str = "") -> list[str]:
    """Paths of the values still marked :data:`FILL_IN` (for the user to complete)."""
    if isinstance(meta, dict):
        return [
            p for k, v in meta.items() for p in meta_placeholders(v, f"{prefix}.{k}".lstrip("."))
        ]
    if isinstance(meta, list):
        return [p for i, v in enumerate(meta) for p in meta_placeholders(v, f"{prefix}[{i}]")]
    return [prefix] if isinstance(meta, str) and meta.startswith(FILL_IN) else []


def write_meta_yaml(
    path: str | Path, *, label: str, name: str, abbreviation: str, results: dict, config: dict
) -> Path:
    """The submission meta file: system description, complexity (the organisers' NeSsi count),
    energy, external data, source code and development-set results (DCASE metrics, int8 model).

    What only the submitting team knows (authors, affiliation, source code URL, energy measured
    on their hardware) is written as a ``FILL IN: ...`` placeholder; :func:`meta_placeholders`
    lists them and :func:`meta_problems` checks the organisers' required fields.
    """
    meta = {
        "submission": {
            "label": label,
            "name": name,
            "abbreviation": abbreviation[:10],
            "authors": [
                {
                    "lastname": f"{FILL_IN}: last name",
                    "firstname": f"{FILL_IN}: first name",
                    "email": f"{FILL_IN}: e-mail",
                    "affiliation": {"institution": f"{FILL_IN}: institution", "department": ""},
                    "corresponding": True,
                }
            ],
        },
        "system": _system_block(results, config),
        "results": {"development_dataset": _development_results(results)},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(meta, sort_keys=False, allow_unicode=True))
    return path


def _system_block(results: dict, config: dict) -> dict:
    c = results.get("complexity", {})
    nessi, tfl = c.get("nessi", {}), c.get("tflite", {})
    pretrained = config["teachers"].get("pretrained_mobilenetv2")
    aug = config["augment"]
    augmentations = [k for k, on in (("mixup", aug["mixup"]), ("frequency masking", aug["freq_mask"]),
                                     ("time masking", aug["time_mask"]), ("time stretching", aug["time_stretch"]),
                                     ("frequency-wise MixStyle", aug.get("freq_mixstyle", 0) > 0))
                     if on]  # fmt: skip
    f = config["features"]
    return {
        "description": {
            "input_sampling_rate": f"{f['sample_rate'] / 1000:g}kHz",
            "acoustic_features": f"log-mel energies ({f['n_mels']} bands)",
            "embeddings": None,
            "data_augmentation": ", ".join(augmentations) or None,
            "machine_learning_method": "CNN (SERFR-CNN)",
            "ensemble_method_subsystem_count": None,
            "decision_making": None,
            "external_data_usage": "pre-trained model" if pretrained else None,
            "complexity_management": "knowledge distillation, pruning, int8 quantisation (QAT)",
            "pipeline": "log-mel > SERFR-CNN student distilled from a teacher ensemble > pruning + QAT > int8 TFLite",
            "framework": "keras/tensorflow",
            "split_adaptations": None,
            "system_adaptations": None,
        },
        # NeSsi's count of the deployed int8 file (asc_keras.compress.nessi): model size and memory
        # are its parameter bytes; total_parameters the deployed (BN-folded) parameter count.
        "complexity": {
            "total_model_size": int(nessi.get("param_bytes", 0)),
            "total_parameters": int(tfl.get("params", 0)),
            "total_parameters_non_zero": int(c.get("nonzero_params", tfl.get("params", 0))),
            "memory_use": int(nessi.get("param_bytes", 0)),
            "macs": int(nessi.get("macs", tfl.get("macs", 0))),
        },
        # Measured by the organisers' 2023 baseline with codecarbon on the team's own hardware.
        "energy_consumption": {
            "training": f"{FILL_IN}: kWh",
            "inference": f"{FILL_IN}: kWh",
            "baseline_inference": f"{FILL_IN}: kWh",
        },
        "external_datasets": (
            [
                {
                    "name": "AudioSet",
                    "url": "https://research.google.com/audioset/",
                    "total_audio_length": 5800,
                }
            ]
            if pretrained
            else []
        ),
        "source_code": f"{FILL_IN}: URL of the system's code",
    }


def _development_results(results: dict) -> dict:
    """Int8 student on fold1_evaluate: DCASE accuracy (%, macro class-wise) and log loss.

    Every class and development-set device is written, as the validator asks; one absent from the
    evaluated clips (a small or filtered data set) reads NaN: not measured.
    """
    s = results.get("student", {})
    dev = s.get("int8") or s.get("float") or {}
    nan = float("nan")

    def pair(kind: str, key: str | None = None) -> dict:
        acc = dev.get(kind, {}).get(key, nan) if key else dev.get(kind, nan)
        ll = dev.get(f"{kind}_log_loss", {}).get(key, nan) if key else dev.get("log_loss", nan)
        return {"accuracy": round(100 * acc, 2), "logloss": round(ll, 3)}

    return {
        "overall": pair("accuracy"),
        "class_wise": {c: pair("per_class", c) for c in SCENE_CLASSES},
        "device_wise": {d: pair("per_device", d) for d in ALL_DEVICES},
    }
