"""The system and profile YAML files, and turning them (plus ``--set`` overrides) into a ``SystemConfig``.

``systems/system{1..4}.yaml`` are the report's four submissions (sec. 4.3); ``profiles/paper.yaml``
the report's schedule and ``profiles/quick.yaml`` a 2-core CPU run.  Defaults <- system <- profile
<- overrides, merged key by key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from asc_keras.config import (
    TEACHER_ARCHITECTURES,
    TEACHER_INPUT_NORMS,
    TEACHER_POOLINGS,
    VIEW_SETTINGS,
    AugmentConfig,
    SystemConfig,
    TeacherConfig,
)


def _deep_merge(base: dict, over: Mapping) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = (
            _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
        )
    return out


def load_system_config(
    system_file: str | Path,
    profile_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> SystemConfig:
    """Merge defaults <- system YAML <- profile YAML <- overrides into a SystemConfig."""
    merged = SystemConfig().to_dict()
    for path in (system_file, profile_file):
        if path is None:
            continue
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise FileNotFoundError(f"configuration file not found: {path}") from None
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML ({e})") from None
        merged = _deep_merge(merged, loaded)
    merged = _deep_merge(merged, overrides or {})
    try:
        return typed(SystemConfig.from_dict(merged))
    except ValueError as e:
        sources = [Path(f).name for f in (system_file, profile_file) if f] + ["--set"]
        raise ValueError(f"configuration ({' <- '.join(sources)}): {e}") from None


def typed(cfg, where: str = ""):
    """``cfg`` (a config dataclass) with every field checked against its annotation, recursively.

    Why: YAML gives any value any type, and a wrong one would otherwise fail much later or never
    (``--set distill.swap_wrong=maybe`` is a truthy string; ``distill.alpha=abc`` fails inside the
    first training step).  Numbers given as strings are read for float fields, because YAML 1.1
    reads ``3e-3`` (no dot) as a string; ints are accepted for floats.  Raises ValueError naming
    the setting, the expected type and the value given.
    """
    changes = {}
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value, name = getattr(cfg, f.name), f"{where}{f.name}"
        if dataclasses.is_dataclass(value):
            changes[f.name] = typed(value, f"{name}.")
            continue
        ok, value = _conform(value, hints[f.name])
        if not ok:
            raise ValueError(f"{name} must be {_describe(hints[f.name])}, got {value!r} "
                             f"({type(value).__name__})")  # fmt: skip
        changes[f.name] = value
    cfg = dataclasses.replace(cfg, **changes)
    if isinstance(cfg, AugmentConfig):
        _check_mixstyle(cfg, where)
    return _checked_teachers(cfg) if isinstance(cfg, TeacherConfig) else cfg


def _check_mixstyle(a: AugmentConfig, where: str) -> None:
    """Freq-MixStyle's share in [0, 1] and its Beta parameter above 0: a share of 2 would restyle
    every clip without a word, an alpha of 0 draw lam = 0 for all of them."""
    if not 0.0 <= a.freq_mixstyle <= 1.0:
        raise ValueError(f"{where}freq_mixstyle is the share of clips restyled, in [0, 1]; got "
                         f"{a.freq_mixstyle}")  # fmt: skip
    if a.freq_mixstyle_alpha <= 0:
        raise ValueError(f"{where}freq_mixstyle_alpha is Beta(a, a)'s a, above 0; got "
                         f"{a.freq_mixstyle_alpha}")  # fmt: skip


def _check_teacher_name(name: str, where: str) -> None:
    """Refuse a teacher name that is not an architecture, or one with a label of letters and
    digits after '_': the name becomes a folder name in the work folder (``cnn_../x`` would leave
    it)."""
    arch, labelled, label = str(name).partition("_")
    if arch not in TEACHER_ARCHITECTURES or (
        labelled and not (label.isascii() and label.isalnum())
    ):
        raise ValueError(f"{where}: no teacher {name!r}; use {', '.join(TEACHER_ARCHITECTURES)}, or "
                         "one of them with a label of ASCII letters and digits after '_' (cnn_clips)")  # fmt: skip


def _checked_teachers(t: TeacherConfig) -> TeacherConfig:
    """``t`` with its names and each teacher's ``views``, ``pooling`` and ``input_norm`` entry
    checked: valid names (:func:`_check_teacher_name`), each once; an entry for a validly named
    teacher (one not in ``names`` is unused); a pooling or input of the builders'; a view of
    ``VIEW_SETTINGS`` only, each of its field's type (read as :func:`typed` reads it)."""
    for name in t.names:
        _check_teacher_name(name, "teachers.names")
    if len(set(t.names)) < len(t.names):
        raise ValueError(f"teachers.names: a teacher named twice in {list(t.names)}")
    # A misspelt teacher here would be silently unused, a misspelt value fail only when its
    # teacher is built, after the data and features stages.
    for table, allowed in (("pooling", TEACHER_POOLINGS), ("input_norm", TEACHER_INPUT_NORMS)):
        hint = typing.Literal[allowed]  # read and described as any one-of-a-few-words setting
        for name, value in getattr(t, table).items():
            _check_teacher_name(name, f"teachers.{table}.{name}")
            if not _conform(value, hint)[0]:
                raise ValueError(f"teachers.{table}.{name} must be {_describe(hint)}, got {value!r} "
                                 f"({type(value).__name__})")  # fmt: skip
    views = {}
    for name, own in t.views.items():
        where = f"teachers.views.{name}"
        _check_teacher_name(name, where)
        if not isinstance(own, Mapping):
            raise ValueError(f"{where} must be a mapping of settings ({{mel_pool: 1}} in YAML), "
                             f"got {own!r} ({type(own).__name__})")  # fmt: skip
        if unknown := sorted(set(own) - set(VIEW_SETTINGS)):
            raise ValueError(f"{where}: {', '.join(map(str, unknown))} cannot differ per teacher; "
                             f"these can: {', '.join(VIEW_SETTINGS)}")  # fmt: skip
        checked = typed(dataclasses.replace(t, views={}, **own), f"{where}.")
        views[name] = {k: getattr(checked, k) for k in own}
    return dataclasses.replace(t, views=views)


def _conform(value, hint) -> tuple[bool, Any]:
    """(whether ``value`` is of type ``hint``, the value -- a float field's number read)."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType):  # X | None
        for h in args:
            ok, v = (value is None, value) if h is type(None) else _conform(value, h)
            if ok:
                return True, v
        return False, value
    origin = typing.get_origin(hint) or hint
    if origin is typing.Literal:  # one of a few words (e.g. distill.target_source)
        return isinstance(value, str) and value in args, value
    if origin is bool:
        return isinstance(value, bool), value
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if origin is float:
        # inf and nan are numbers to YAML (.inf, .nan) but no setting means either: a learning
        # rate of inf would train to NaN weights, a limit of nan would compare False everywhere.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                return False, value
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return number and math.isfinite(value), value
    if origin is tuple:
        return isinstance(value, tuple) and all(_conform(v, args[0])[0] for v in value), value
    if origin is dict:
        return isinstance(value, Mapping), value
    return isinstance(value, origin), value


def _describe(hint) -> str:
    names = {bool: "true or false", int: "a whole number", float: "a finite number",
             str: "a string", dict: "a mapping", type(None): "null"}  # fmt: skip
    if isinstance(hint, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:  # e.g. teachers.names=[cnn, bcresnet]
        plural = {str: "strings", int: "whole numbers", float: "numbers"}
        item = plural.get(typing.get_args(hint)[0], "values")
        return f"a list of {item} ([a, b] in YAML)"
    return names.get(typing.get_origin(hint) or hint, str(hint))


CONFIG_DIR = Path(__file__).resolve().parent
SYSTEMS = (1, 2, 3, 4)  # report sec. 4.3
PROFILES = ("paper", "quick")


def system_config(
    system: int, profile: str = "paper", overrides: Mapping[str, Any] | None = None
) -> SystemConfig:
    """System ``system`` (1-4) under ``profile`` ('paper' or 'quick') with ``overrides`` applied."""
    if system not in SYSTEMS or profile not in PROFILES:
        raise ValueError(
            f"system must be one of {SYSTEMS} and profile one of {PROFILES}; got {system}, {profile!r}"
        )
    return load_system_config(
        CONFIG_DIR / "systems" / f"system{system}.yaml",
        CONFIG_DIR / "profiles" / f"{profile}.yaml",
        overrides,
    )


def parse_overrides(pairs) -> dict:
    """``["optim.epochs=3", "teachers.names=[cnn]"]`` -> nested dict (values parsed as YAML)."""
    out: dict = {}
    for pair in pairs or []:
        key, eq, value = pair.partition("=")
        if not eq:
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {pair}: {p} was given a value before, not settings")
        try:  # plain YAML values only: safe_load constructs no Python objects from tags
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ValueError(
                f"--set {pair}: not a plain YAML value ({str(e).splitlines()[0]})"
            ) from None
    return out
