"""The system and profile YAML files, and turning them (plus ``--set`` overrides) into a ``SystemConfig``.

``systems/system{1..4}.yaml`` are the report's four submissions (sec. 4.3); ``profiles/paper.yaml``
the report's schedule and ``profiles/quick.yaml`` a 2-core CPU run.  Defaults <- system <- profile
<- overrides, merged key by key.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from asc_keras.config import SystemConfig


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
        return SystemConfig.from_dict(merged)
    except ValueError as e:
        sources = [Path(f).name for f in (system_file, profile_file) if f] + ["--set"]
        raise ValueError(f"configuration ({' <- '.join(sources)}): {e}") from None


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
