"""Import a PANNs AudioSet MobileNetV2 checkpoint (PyTorch ``.pth``) into Keras, without PyTorch.

Every convolution, depthwise convolution, BatchNorm and dense tensor is copied by name and shape
(PANNs ``features.3.conv.4.weight`` -> Keras layer ``features_3_conv_4``):

* Conv2d ``(out, in, kh, kw)`` -> Conv2D kernel ``(kh, kw, in, out)``;
* depthwise Conv2d ``(channels, 1, kh, kw)`` -> DepthwiseConv2D kernel ``(kh, kw, channels, 1)``;
* BatchNorm ``weight, bias, running_mean, running_var`` -> ``gamma, beta, moving_mean,
  moving_variance`` (``num_batches_tracked`` is a counter, not a weight);
* Linear ``(out, in)`` -> Dense kernel ``(in, out)``.

Dropped on purpose, and listed in the report: the STFT and mel-filter buffers of PANNs' own
front end (``spectrogram_extractor.*``, ``logmel_extractor.*``: asc_keras computes its log-mels
offline).  A checkpoint with missing, extra or mis-shaped tensors is refused with a message that
lists them, before any weight is set: nothing is loaded half-way.

For a scene-classification teacher (:func:`panns_teacher`) two more things are done on purpose:
``fc_audioset`` (527 AudioSet tags) is replaced by a new 10-class softmax head, and ``bn0`` is
re-initialised (scale 1, offset 0, mean 0, variance 1), because its statistics are those of
PANNs' 32 kHz, 64-band dB log-mels, while the teacher sees asc_keras' natural-log bands pooled
to 64; with BatchNorm momentum 0.9 it re-estimates them within a few steps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asc_keras._runtime import keras
from asc_keras.config import N_CLASSES
from asc_keras.models.common import BN_MOMENTUM, load_model_file
from asc_keras.models.panns import PANNS_SETTING, build_panns_mobilenetv2, build_panns_teacher
from asc_keras.models.torch_checkpoint import CheckpointError, state_dict

FRONT_END_PREFIXES = ("spectrogram_extractor.", "logmel_extractor.")


def is_torch_checkpoint(path) -> bool:
    """True for a PyTorch checkpoint file name (``.pth`` / ``.pt``), which is imported, not loaded."""
    return path is not None and Path(path).suffix in (".pth", ".pt")


def check_checkpoint(path: str | Path) -> dict:
    """Read a PANNs MobileNetV2 checkpoint's sizes, refusing a file that is not one (CheckpointError
    naming it): what a run checks before any long work."""
    try:
        return panns_sizes(state_dict(path))
    except CheckpointError as e:
        raise CheckpointError(str(e) if str(path) in str(e) else f"{path}: {e}") from None


def panns_sizes(sd: dict[str, np.ndarray]) -> dict:
    """Builder sizes of a PANNs MobileNetV2 state dict (width, last channel, fc1, tags, mel bands)."""
    try:
        last_block = 1 + sum(n for _, _, n, _ in PANNS_SETTING)
        width = sd[f"features.{last_block - 1}.conv.7.weight"].shape[0] / PANNS_SETTING[-1][1]
        return {
            "width_mult": float(width),
            "last_channel": int(sd[f"features.{last_block}.0.weight"].shape[0]),
            "fc1_units": int(sd["fc1.weight"].shape[0]),
            "audioset_classes": int(sd["fc_audioset.weight"].shape[0]),
            "mels": int(sd["bn0.weight"].shape[0]),
        }
    except KeyError as e:
        raise CheckpointError(f"not a PANNs MobileNetV2 state dict: no tensor {e}") from None


def _weight_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _weight_layers(layer)
        elif layer.weights:
            yield layer


def _torch_key_of(layer_name: str) -> str:
    """PyTorch module name of a Keras layer of the PANNs layout (``features_3_conv_4`` -> ...)."""
    parts = layer_name.split("_")
    if parts[0] != "features":
        return layer_name
    return ".".join(parts)


def load_panns_state(model, sd: dict[str, np.ndarray]) -> dict:
    """Copy a PANNs state dict into ``model`` (PANNs layout); all or nothing.  Returns a report."""
    problems, plan, used = [], [], set()
    for layer in _weight_layers(model):
        key = _torch_key_of(layer.name)
        tensors = _weights_for(layer, key, sd, problems)
        if tensors is not None:
            plan.append((layer, tensors))
            used.update(
                k for k in sd if k.startswith(key + ".") and not k.endswith("num_batches_tracked")
            )
    dropped = sorted(k for k in sd if k.startswith(FRONT_END_PREFIXES))
    counters = sorted(k for k in sd if k.endswith("num_batches_tracked"))
    extra = sorted(set(sd) - used - set(dropped) - set(counters))
    if extra:
        problems.append(
            f"tensors with no place in the model: {', '.join(extra[:12])}"
            + (" ..." if len(extra) > 12 else "")
        )
    if problems:
        raise CheckpointError("checkpoint refused, nothing loaded:\n  " + "\n  ".join(problems))
    for layer, tensors in plan:
        layer.set_weights(tensors)
    return {
        "loaded_tensors": len(used),
        "dropped_front_end": dropped,
        "ignored_counters": len(counters),
    }


def _weights_for(layer, key: str, sd, problems):
    kind = layer.__class__.__name__
    names = {
        "Conv2D": ["weight"],
        "DepthwiseConv2D": ["weight"],
        "BatchNormalization": ["weight", "bias", "running_mean", "running_var"],
        "Dense": ["weight", "bias"],
    }.get(kind)
    if names is None:
        problems.append(f"Keras layer {layer.name} ({kind}) has weights but no PANNs counterpart")
        return None
    missing = [f"{key}.{n}" for n in names if f"{key}.{n}" not in sd]
    if missing:
        problems.append(f"missing {', '.join(missing)} (for Keras layer {layer.name})")
        return None
    t = [np.asarray(sd[f"{key}.{n}"]) for n in names]
    if kind == "Conv2D":
        t = [t[0].transpose(2, 3, 1, 0)]
    elif kind == "DepthwiseConv2D":
        t = [t[0].transpose(2, 3, 0, 1)]
    elif kind == "Dense":
        t = [t[0].T, t[1]]
    want = [tuple(w.shape) for w in layer.get_weights()]
    if [a.shape for a in t] != want:
        problems.append(
            f"{key}: shapes {[a.shape for a in t]} do not fit Keras layer {layer.name} {want}"
        )
        return None
    return [a.astype(np.float32) for a in t]


def load_panns_tagger(checkpoint: str | Path):
    """The whole PANNs tagger in Keras (bn0 and fc_audioset included), with the checkpoint's weights:
    (model, report).  Its outputs equal PyTorch's for the same log-mel input."""
    sd = state_dict(checkpoint)
    sizes = panns_sizes(sd)
    model = build_panns_mobilenetv2(input_shape=(None, sizes.pop("mels"), 1), **sizes)
    report = load_panns_state(model, sd)
    return model, {**report, "checkpoint": str(checkpoint), "sizes": panns_sizes(sd)}


def panns_teacher(checkpoint: str | Path, *, n_classes: int = N_CLASSES, input_mels: int = 256,
                  bn_momentum: float = BN_MOMENTUM, name: str = "mobilenetv2_teacher"):  # fmt: skip
    """A scene-classification teacher on the checkpoint's backbone and ``fc1``: (model, report).

    ``bn0`` is re-initialised and ``fc_audioset`` replaced by a new ``n_classes`` head (module
    docstring); the report lists what was loaded, dropped, re-initialised and replaced.
    """
    tagger, report = load_panns_tagger(checkpoint)
    sizes = report["sizes"]
    teacher = build_panns_teacher(
        input_mels=input_mels, mels=sizes["mels"], width_mult=sizes["width_mult"],
        last_channel=sizes["last_channel"], fc1_units=sizes["fc1_units"], n_classes=n_classes,
        bn_momentum=bn_momentum, name=name,
    )  # fmt: skip
    teacher.get_layer("backbone").set_weights(tagger.get_layer("backbone").get_weights())
    bn0 = teacher.get_layer("backbone").get_layer("bn0")
    bn0.set_weights(
        [
            np.ones(sizes["mels"]),
            np.zeros(sizes["mels"]),
            np.zeros(sizes["mels"]),
            np.ones(sizes["mels"]),
        ]
    )
    teacher.get_layer("fc1").set_weights(tagger.get_layer("fc1").get_weights())
    report.update(
        reinitialised=["bn0 (statistics of PANNs' own 32 kHz dB log-mels)"],
        replaced={"fc_audioset": f"a new {n_classes}-class softmax head ('logits')"},
    )
    return teacher, report


def load_panns_teacher_file(path: str | Path):
    """The PANNs-layout teacher saved in ``path`` (a ``.keras`` file from ``asc-keras import-panns``),
    or None when the file holds another model."""
    path = Path(path)
    if path.suffix != ".keras" or not path.is_file():
        return None
    model = load_model_file(path, "a teacher")
    return model if is_panns_layout(model) else None


def is_panns_layout(model) -> bool:
    """True for a teacher on PANNs' MobileNetV2 backbone (``fc1`` and a backbone with ``bn0``)."""
    names = [layer.name for layer in model.layers]
    return (
        "fc1" in names
        and "backbone" in names
        and "bn0" in [x.name for x in model.get_layer("backbone").layers]
    )
