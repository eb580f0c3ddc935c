"""Classify audio files of any length, rate and channel count with a .tflite or .keras model.

Each file is decoded (soundfile), downmixed, resampled to the model's rate, cut into 1 s
windows with a configurable hop (the last partial window is zero-padded; a file shorter
than 1 s is one padded window), turned into log-mels and classified.  The whole-file
scene probabilities are the mean over windows.  Bad files are reported and skipped.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from asc_keras.config import FeatureConfig
from asc_keras.data.audio import load_audio
from asc_keras.data.errors import AudioError
from asc_keras.features.logmel import logmel
from asc_keras.features.windows import cut
from asc_keras.models.classes import model_classes


@dataclass
class FilePrediction:
    path: str
    scene: str | None = None
    probabilities: list[float] = field(default_factory=list)
    windows: list[dict] = field(default_factory=list)  # start_s, scene, probabilities
    error: str | None = None
    warnings: list[str] = field(default_factory=list)  # e.g. silent, or shorter than one window
    classes: tuple[str, ...] = ()  # the model's class names, in the order of the probabilities


def load_model(path: str | Path):
    """Return a callable (N, frames, mels) float -> (N, classes) probabilities, the input shape
    and the number of outputs.

    ``.keras`` files load in safe mode (no arbitrary code); ``.tflite`` files run on LiteRT.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    if path.suffix == ".tflite":
        from asc_keras.compress.tflite import TFLiteModel

        m = TFLiteModel(path)
        return m.predict, m.input_shape, m.n_outputs
    if path.suffix == ".keras":
        import asc_keras.features.layer  # noqa: F401  (registers the log-mel layer)
        from asc_keras.models.common import load_model_file

        km = load_model_file(path)
        model = getattr(km, "student", km)
        return keras_runner(model), tuple(model.input_shape[1:]), int(model.output_shape[-1])
    raise ValueError(f"{path}: unknown model type {path.suffix!r}; use a .tflite or .keras file")


def keras_runner(model, batch_size: int = 64):
    """(N, frames, mels[, 1]) float windows -> (N, classes) probabilities with a float Keras model,
    in batches of ``batch_size`` through one compiled call.

    Why not ``model.predict``: its per-call setup costs more than the windows of a file; measured
    (SERFR-CNN-32, 600 windows = a 10-minute recording, 2 cores): predict 0.81 s, this 0.59 s,
    window by window 2.2 s (``benchmarks/bench_inference.py``).  The first call compiles.
    """
    from asc_keras._runtime import tf

    call = tf.function(lambda v: model(v, training=False), reduce_retracing=True)

    def run(x, batch_size: int = batch_size) -> np.ndarray:
        x = np.asarray(x, np.float32)
        x = x[..., None] if x.ndim == 3 else x
        parts = [np.asarray(call(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
        return (
            np.concatenate(parts)
            if parts
            else np.zeros((0, int(model.output_shape[-1])), np.float32)
        )

    return run


def read_feature_config(path: Path) -> FeatureConfig:
    """The feature settings a run wrote beside its model (``features.json``), checked: known
    fields only, each of its type, in a sane range; anything else names the file."""
    import dataclasses

    try:
        d = json.loads(Path(path).read_text())
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        fields = {f.name: f for f in dataclasses.fields(FeatureConfig)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ValueError(f"unknown setting(s) {unknown}")
        cfg = FeatureConfig(**d)
        _check_features(cfg)
    except (ValueError, TypeError, UnicodeDecodeError) as e:
        raise ValueError(
            f"{path}: not a feature settings file of asc_keras ({e}); delete it to use the report's "
            "log-mels, or copy the features.json of the run that made the model"
        ) from None
    return cfg


def _check_features(c: FeatureConfig) -> None:
    ints = {"sample_rate": (1000, 192000), "n_fft": (16, 65536), "hop_length": (1, 65536),
            "n_mels": (1, 1024)}  # fmt: skip
    for name, (lo, hi) in ints.items():
        v = getattr(c, name)
        if type(v) is not int or not lo <= v <= hi:
            raise ValueError(f"{name} = {v!r}, expected an integer in [{lo}, {hi}]")
    if not isinstance(c.clip_seconds, (int, float)) or not 0.05 <= c.clip_seconds <= 60:
        raise ValueError(f"clip_seconds = {c.clip_seconds!r}")
    if c.mel_scale not in ("report", "htk", "slaney") or c.window not in ("hann", "hamming"):
        raise ValueError(f"mel_scale {c.mel_scale!r} / window {c.window!r}")
    if not isinstance(c.center, bool) or not isinstance(c.peak_int16, bool):
        raise ValueError(
            f"center {c.center!r} / peak_int16 {c.peak_int16!r}: expected true or false"
        )
    if c.n_frames() < 1:
        raise ValueError("the clip is shorter than one STFT window")


# The organisers' trained DCASE 2022 baseline (model_task1.tflite): 40 mels x 51 frames, mels first.
DCASE2022_BASELINE = "dcase2022-baseline"
BASELINE_INPUT = (40, 51, 1)


def input_features(model_path: str | Path, input_shape: tuple, features: str | None = None):
    """(feature settings, mels_first) of a model's input.  ``features`` 'dcase2022-baseline', or a
    model with the organisers' baseline input (40 mels x 51 frames) and no ``features.json``
    beside it: the official baseline features (mels first); else :func:`feature_config_for`."""
    from asc_keras.models.baseline import BASELINE_FEATURES

    if features not in (None, "auto", DCASE2022_BASELINE):
        raise ValueError(f"unknown --features {features!r}; use auto or {DCASE2022_BASELINE}")
    side = Path(model_path).with_name("features.json")
    if features == DCASE2022_BASELINE or (
        tuple(input_shape) == BASELINE_INPUT and not side.is_file()
    ):
        mels_first = tuple(input_shape[:2]) == BASELINE_INPUT[:2]
        want = (40, 51) if mels_first else (51, 40)
        if tuple(input_shape[:2]) != want:
            raise ValueError(
                f"{model_path}: input {tuple(input_shape)} is not the DCASE 2022 baseline's"
            )
        return BASELINE_FEATURES, mels_first
    return feature_config_for(model_path, input_shape), False


def feature_config_for(model_path: str | Path, input_shape: tuple) -> FeatureConfig:
    """Feature settings saved beside the model (``features.json``) or the report's defaults,
    checked against the model's input shape."""
    side = Path(model_path).with_name("features.json")
    cfg = read_feature_config(side) if side.is_file() else FeatureConfig()
    want = (cfg.n_frames(), cfg.n_mels)
    # A teacher takes any number of frames (None): only the known axes must match.
    if any(have is not None and have != w for have, w in zip(input_shape[:2], want, strict=True)):
        raise ValueError(
            f"{model_path}: model expects {tuple(input_shape[:2])} (frames, mels) but the feature "
            f"settings give {want}; put the matching features.json beside the model."
        )
    return cfg


def predict_files(
    model_path: str | Path,
    files: Sequence[str | Path],
    hop_seconds: float = 1.0,
    classes: Sequence[str] | None = None,
    features: str | None = None,
) -> list[FilePrediction]:
    """Classify each file; failures are returned with ``error`` set, never raised.

    ``classes``: the names of the model's outputs; None: the names kept with the model
    (:func:`~asc_keras.models.classes.model_classes`; a model whose output count does not match
    its class list is refused).  ``features``: :func:`input_features` ('dcase2022-baseline' for the
    organisers' model file; recognised by its input when left out)."""
    if hop_seconds <= 0:
        raise ValueError("hop must be positive")
    run, input_shape, n_outputs = load_model(model_path)
    classes = tuple(classes) if classes is not None else model_classes(model_path, n_outputs)
    if len(classes) != n_outputs:
        raise ValueError(f"{model_path}: {n_outputs} outputs, {len(classes)} class names given")
    cfg, mels_first = input_features(model_path, input_shape, features)
    win = int(round(cfg.clip_seconds * cfg.sample_rate))
    hop = int(round(hop_seconds * cfg.sample_rate))
    results = []
    for f in files:
        try:
            y = load_audio(f, cfg.sample_rate, context="file")
        except AudioError as e:
            results.append(FilePrediction(str(f), error=str(e)))
            continue
        notes = _audio_warnings(f, y, win, cfg.sample_rate)
        starts, segs = cut(y, win, hop)
        x = logmel(segs, cfg)
        probs = run(x.transpose(0, 2, 1) if mels_first else x)
        mean = probs.mean(axis=0)
        results.append(
            FilePrediction(
                str(f),
                classes[int(mean.argmax())],
                [float(v) for v in mean],
                [
                    {
                        "start_s": s / cfg.sample_rate,
                        "scene": classes[int(p.argmax())],
                        "probabilities": [float(v) for v in p],
                    }
                    for s, p in zip(starts, probs)
                ],
                warnings=notes,
                classes=classes,
            )
        )
    return results


def _audio_warnings(path, y: np.ndarray, win: int, rate: int) -> list[str]:
    """What makes a prediction of ``y`` (``path`` at ``rate`` Hz) doubtful: a file recorded at a
    lower rate, silence, a float file scaled far above full scale, or less audio than one model
    window."""
    from asc_keras.data.audio import OVER_FULL_SCALE_PEAK, SILENCE_PEAK

    notes = []
    source = sf.info(str(path)).samplerate  # the file decoded already (load_audio)
    if source < rate:
        # Upsampling adds no content: the mel bands above its Nyquist frequency are empty, a
        # spectrum no training clip had (a phone call's 8 kHz audio for a 16 kHz model).
        notes.append(
            f"{path}: recorded at {source} Hz, it holds nothing above {source / 2:.0f} Hz where "
            f"the model's features reach {rate / 2:.0f} Hz: the prediction may be biased "
            f"(record at {rate} Hz or more)"
        )
    peak = float(np.abs(y).max()) if len(y) else 0.0
    if peak < SILENCE_PEAK:
        level = "-inf" if peak == 0 else f"{20 * np.log10(peak):.0f}"
        notes.append(
            f"{path}: silent or near-silent (peak {level} dBFS): the prediction means little"
        )
    if peak > OVER_FULL_SCALE_PEAK:
        notes.append(
            f"{path}: peak +{20 * np.log10(peak):.0f} dBFS, above full scale (float samples "
            "scaled by mistake?): far louder than any training recording, the prediction may be "
            "off (rescale it to at most 1.0, 0 dBFS)"
        )
    if len(y) < win:
        notes.append(
            f"{path}: {len(y) / rate:.2f} s is shorter than the model's {win / rate:.2f} s window: "
            f"padded with {(win - len(y)) / rate:.2f} s of silence"
        )
    return notes


def render_predictions(results: list[FilePrediction], fmt: str, windows: bool) -> str:
    """The predictions as 'table' (screen), 'csv' or 'json' text, with the model's class names;
    files with errors are left out."""
    ok = [r for r in results if r.error is None]
    classes = ok[0].classes if ok else ()
    if fmt == "json":
        return json.dumps(
            [
                {
                    "file": r.path,
                    "scene": r.scene,
                    "probabilities": dict(zip(r.classes, r.probabilities)),
                    **({"windows": r.windows} if windows else {}),
                }
                for r in ok
            ],
            indent=1,
        )
    rows = []
    for r in ok:
        rows.append([r.path, "all", r.scene] + [f"{p:.4f}" for p in r.probabilities])
        if windows:
            rows += [
                [r.path, f"{w['start_s']:.2f}", w["scene"]]
                + [f"{p:.4f}" for p in w["probabilities"]]
                for w in r.windows
            ]
    header = ["file", "window_start_s", "scene"] + list(classes)
    if fmt == "csv":
        buf = io.StringIO()
        csv.writer(buf).writerows([header] + rows)
        return buf.getvalue()
    short = [h[:8] for h in header[3:]]
    width = max([len(r[0]) for r in rows] + [4])
    scene = max([len(r[2]) for r in rows] + [17])
    lines = [
        f"{'file':<{width}} {'window':>7} {'scene':<{scene}} " + " ".join(f"{s:>8}" for s in short)
    ]
    lines += [
        f"{r[0]:<{width}} {r[1]:>7} {r[2]:<{scene}} " + " ".join(f"{v:>8}" for v in r[3:])
        for r in rows
    ]
    return "\n".join(lines)
