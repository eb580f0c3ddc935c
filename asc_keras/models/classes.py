"""The class names a model was trained on, kept with the model.

A ``.keras`` file carries them as one extra zip member, ``asc_keras_classes.json`` (Keras reads
only its own members, so the file loads anywhere as before); a ``.tflite`` (and any model) has
them in ``classes.json`` beside it, the way ``features.json`` holds its feature settings.  Both
are untrusted on the way in: a JSON list of distinct, non-empty names, or a ValueError naming
the file.  A model written before class names were kept is read as the ten DCASE scenes when,
and only when, it has ten outputs.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from pathlib import Path

from asc_keras.config import SCENE_CLASSES
from asc_keras.files import atomic_path

MEMBER = "asc_keras_classes.json"
SIDECAR = "classes.json"
MAX_CLASSES, MAX_NAME = 10_000, 200


def check_classes(names, source: str = "class list") -> tuple[str, ...]:
    """``names`` as a tuple of distinct, non-empty strings without line breaks, else ValueError."""
    if not isinstance(names, (list, tuple)) or not names:
        raise ValueError(f"{source}: expected a non-empty list of class names")
    if len(names) > MAX_CLASSES:
        raise ValueError(f"{source}: {len(names)} class names, at most {MAX_CLASSES}")
    for n in names:
        if (
            not isinstance(n, str)
            or not n.strip()
            or len(n) > MAX_NAME
            or any(c in n for c in "\r\n")
        ):
            raise ValueError(
                f"{source}: {n!r} is not a class name (1-{MAX_NAME} characters, one line)"
            )
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"{source}: class names repeated: {dup}")
    return tuple(names)


def classes_of(model) -> tuple[str, ...]:
    """The class names a model in memory stands for: its ``class_names`` attribute (set by
    ``finetune``), else the DCASE scenes for a ten-way model, else ``class_0``, ``class_1``..."""
    names = getattr(model, "class_names", None)
    if names:
        return check_classes(list(names), f"model {model.name}")
    n = int(model.output_shape[-1])
    return SCENE_CLASSES if n == len(SCENE_CLASSES) else tuple(f"class_{i}" for i in range(n))


def save_model_file(model, path: str | Path, classes: Sequence[str] | None = None) -> Path:
    """``model.save`` to ``path`` (atomically), with its class names inside the file (``classes``,
    or :func:`classes_of` the model)."""
    path = Path(path)
    names = check_classes(list(classes)) if classes is not None else classes_of(model)
    with atomic_path(path) as tmp:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as z:
            z.writestr(MEMBER, json.dumps(list(names)))
    return path


def write_classes(path: str | Path, classes: Sequence[str]) -> Path:
    """A ``classes.json`` (at ``path``) beside the models it describes."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(list(check_classes(list(classes)))))
    return Path(path)


def _parse(text: bytes | str, source: str) -> tuple[str, ...]:
    if len(text) > MAX_CLASSES * (MAX_NAME + 8):
        raise ValueError(f"{source}: too large for a class list")
    try:
        names = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{source}: not a JSON class list ({e})") from None
    return check_classes(names, source)


def stored_classes(model_path: str | Path) -> tuple[str, ...] | None:
    """The class names kept with a model: inside a ``.keras`` file, else ``classes.json`` beside
    it; None when neither holds any."""
    path = Path(model_path)
    if path.suffix == ".keras" and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if MEMBER in z.namelist():
                info = z.getinfo(MEMBER)
                if info.file_size > MAX_CLASSES * (MAX_NAME + 8):
                    raise ValueError(f"{path}: its class list is too large")
                return _parse(z.read(MEMBER), f"{path} ({MEMBER})")
    side = path.with_name(SIDECAR)
    if side.is_file():
        return _parse(side.read_bytes(), str(side))
    return None


def model_classes(model_path: str | Path, n_outputs: int) -> tuple[str, ...]:
    """The class names of a model with ``n_outputs`` outputs, checked against that number."""
    names = stored_classes(model_path)
    if names is None:
        if n_outputs == len(SCENE_CLASSES):
            return SCENE_CLASSES  # written before models kept their classes: the DCASE scenes
        raise ValueError(
            f"{model_path}: the model has {n_outputs} outputs and no class names; put the "
            f"{SIDECAR} of the run that made it beside the model"
        )
    if len(names) != n_outputs:
        raise ValueError(
            f"{model_path}: the model has {n_outputs} outputs but its class list names "
            f"{len(names)} classes ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''}); "
            f"use the {SIDECAR} of the run that made this model"
        )
    return names
