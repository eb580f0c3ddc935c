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

For a scene-classification teacher (:func:`panns_teacher`) ``fc_audioset`` (527 AudioSet tags)
is replaced by a new 10-class softmax head.  By default the teacher is fed PANNs' own front end
(32 kHz, 64-band dB log-mels, computed by :data:`asc_keras.features.logmel.PANNS_FEATURES` from
the audio, with a cache of its own) and keeps ``bn0``.  The other choice, the report's log-mels
pooled to 64 bands, re-initialises ``bn0`` (scale 1, offset 0, mean 0, variance 1), whose
statistics are those of PANNs' bands; with BatchNorm momentum 0.9 it re-estimates them within a
few steps.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from asc_keras._runtime import keras
from asc_keras.config import N_CLASSES, FeatureConfig
from asc_keras.features.logmel import PANNS_FEATURES
from asc_keras.models.common import BN_MOMENTUM, load_model_file
from asc_keras.models.panns import PANNS_SETTING, build_panns_mobilenetv2, build_panns_teacher
from asc_keras.models.torch_checkpoint import CheckpointError, state_dict

FRONT_END_PREFIXES = ("spectrogram_extractor.", "logmel_extractor.")
FRONT_ENDS = ("panns", "report")  # what a PANNs teacher is fed (panns_teacher)


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


def panns_teacher(checkpoint: str | Path, *, front_end: str = "panns", n_classes: int = N_CLASSES,
                  input_mels: int = 256, bn_momentum: float = BN_MOMENTUM,
                  name: str = "mobilenetv2_teacher"):  # fmt: skip
    """A scene-classification teacher on the checkpoint's backbone and ``fc1``: (model, report).

    ``fc_audioset`` is replaced by a new ``n_classes`` head.  ``front_end``:

    * 'panns': the teacher takes PANNs' own log-mels (:data:`asc_keras.features.logmel
      .PANNS_FEATURES`, 64 bands, 10 ms frames) and keeps every tensor of the checkpoint,
      ``bn0`` included: it sees what it learnt on;
    * 'report': it takes the report's ``input_mels`` log-mels, averaged to the checkpoint's bands
      and each 32 ms frame repeated three times, and ``bn0`` is re-initialised (scale 1, offset 0,
      mean 0, variance 1): its statistics are those of PANNs' dB bands, not of these.

    The report lists what was loaded, dropped, re-initialised and replaced.
    """
    if front_end not in FRONT_ENDS:
        raise ValueError(f"unknown front end {front_end!r}; use one of {FRONT_ENDS}")
    tagger, report = load_panns_tagger(checkpoint)
    sizes = report["sizes"]
    own = front_end == "panns"
    teacher = build_panns_teacher(
        input_mels=sizes["mels"] if own else input_mels, mels=sizes["mels"],
        time_upsample=1 if own else 3, width_mult=sizes["width_mult"],
        last_channel=sizes["last_channel"], fc1_units=sizes["fc1_units"], n_classes=n_classes,
        bn_momentum=bn_momentum, name=name,
    )  # fmt: skip
    teacher.get_layer("backbone").set_weights(tagger.get_layer("backbone").get_weights())
    teacher.get_layer("fc1").set_weights(tagger.get_layer("fc1").get_weights())
    report.update(front_end=front_end, reinitialised=[],
                  replaced={"fc_audioset": f"a new {n_classes}-class softmax head ('logits')"})  # fmt: skip
    if not own:
        m = sizes["mels"]
        bn0 = teacher.get_layer("backbone").get_layer("bn0")
        bn0.set_weights([np.ones(m), np.zeros(m), np.zeros(m), np.ones(m)])
        report["reinitialised"] = ["bn0 (statistics of PANNs' own 32 kHz dB log-mels)"]
    return teacher, report


def resolved_front_end(t) -> str:
    """What the MobileNetV2 teacher of ``t`` (a :class:`~asc_keras.config.TeacherConfig`) is fed:
    'panns' or 'report'.  'auto' is 'panns' for a PANNs checkpoint (.pth) and, for a teacher file
    ``asc-keras import-panns`` wrote, the front end it was written for; 'report' otherwise."""
    choice, path = t.mobilenetv2_front_end, t.pretrained_mobilenetv2
    if choice not in ("auto", *FRONT_ENDS):
        raise ValueError(
            f"teachers.mobilenetv2_front_end must be 'auto', 'panns' or 'report', got {choice!r}"
        )
    if is_torch_checkpoint(path):
        return "report" if choice == "report" else "panns"
    written = (
        _file_front_end(str(path), Path(path).stat().st_mtime)
        if path and Path(path).is_file()
        else None
    )
    if choice == "panns" and written != "panns":
        raise ValueError(f"teachers.mobilenetv2_front_end 'panns' needs a PANNs checkpoint in "
                         f"teachers.pretrained_mobilenetv2 (a .pth, or a teacher import-panns wrote for "
                         f"PANNs' front end); it is {path!r}")  # fmt: skip
    if choice == "report" and written == "panns":
        raise ValueError(
            f"{path}: this teacher was written for PANNs' front end; write it again with "
            "`asc-keras import-panns --front-end report`, or set mobilenetv2_front_end: auto"
        )
    return written or "report"


@lru_cache(maxsize=8)
def _file_front_end(path: str, mtime: float) -> str | None:
    model = load_panns_teacher_file(path)
    return None if model is None else teacher_front_end(model)


def teacher_features(name: str, t, features: FeatureConfig) -> FeatureConfig:
    """The log-mel settings teacher ``name`` is fed: PANNs' for a MobileNetV2 on PANNs' front end
    (:func:`resolved_front_end`), else the run's ``features``."""
    if name == "mobilenetv2" and t.pretrained_mobilenetv2 and resolved_front_end(t) == "panns":
        return PANNS_FEATURES
    return features


def teacher_front_end(model) -> str:
    """'panns' for a PANNs-layout teacher that takes PANNs' own log-mels (its input has the
    backbone's bands and no frame repetition), else 'report'."""
    if not is_panns_layout(model):
        return "report"
    names = [layer.name for layer in model.layers]
    own = "time_upsample" not in names and "mel_pool" not in names
    return "panns" if own else "report"


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
