"""DCASE submission files: the system output CSV and the meta YAML (docs/sources.md)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from asc_keras.config import SCENE_CLASSES


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


def write_meta_yaml(
    path: str | Path, *, label: str, name: str, abbreviation: str, results: dict, config: dict
) -> Path:
    """The submission meta file: system description, complexity and development-set results."""
    c = results.get("complexity", {}).get("tflite") or results.get("complexity", {}).get(
        "keras", {}
    )
    dev = results.get("student", {}).get("int8") or results.get("student", {}).get("float") or {}
    meta = {
        "submission": {
            "label": label,
            "name": name,
            "abbreviation": abbreviation,
            "authors": [
                {
                    "lastname": "Lastname",
                    "firstname": "Firstname",
                    "email": "name@example.com",
                    "corresponding": True,
                }
            ],
        },
        "system": {
            "description": {
                "input_sampling_rate": f"{config['features']['sample_rate'] / 1000:g}kHz",
                "acoustic_features": f"log-mel energies ({config['features']['n_mels']} bands, "
                f"{config['features']['mel_scale']} mel scale)",
                "data_augmentation": ", ".join(
                    k
                    for k, on in (
                        ("mixup", config["augment"]["mixup"]),
                        ("frequency masking", config["augment"]["freq_mask"]),
                        ("time masking", config["augment"]["time_mask"]),
                        ("time stretching", config["augment"]["time_stretch"]),
                    )
                    if on
                )
                or "none",
                "machine_learning_method": "CNN (SERFR-CNN)",
                "ensemble_method_subsystem_count": 1,
                "decision_making": "average over 1 s windows (one window per clip)",
                "external_data_usage": "none"
                if not config["teachers"].get("pretrained_mobilenetv2")
                else "pretrained MobileNetV2 teacher weights",
                "knowledge_distillation": bool(config["distill"]["enabled"]),
                "teachers": list(config["teachers"]["names"])
                if config["distill"]["enabled"]
                else [],
                "model_compression": "pruning + quantization-aware training, int8 TFLite",
            },
            "complexity": {
                "total_model_size": int(c.get("params", 0)),
                "total_parameters": int(c.get("params", 0)),
                "total_parameters_non_zero": int(
                    results.get("complexity", {}).get("nonzero_params", c.get("params", 0))
                ),
                "memory_use_bytes": int(round(c.get("int8_kb", 0) * 1024)),
                "macs": int(c.get("macs", 0)),
            },
        },
        "results": {
            "development_dataset": {
                "overall": {
                    "accuracy": round(100 * dev.get("accuracy", float("nan")), 2),
                    "logloss": round(dev.get("log_loss", float("nan")), 3),
                },
                "class_wise": {
                    k: {"accuracy": round(100 * v, 2)} for k, v in dev.get("per_class", {}).items()
                },
                "device_wise": {
                    k: {"accuracy": round(100 * v, 2)} for k, v in dev.get("per_device", {}).items()
                },
            }
        },
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(meta, sort_keys=False))
    return path
