"""The stage runner: which output stages are done, which are stale, and how long each took.

An output stage records what it was made from (its *inputs*: settings, upstream stamps, cache
names) in ``out/stamps/<stage>.json`` when it starts.  It is done when its outputs exist, its
recorded inputs equal the current ones and ``--force`` does not name it; an interrupted stage
with unchanged inputs resumes from its backups, a stage whose inputs changed starts over.
Inputs include the upstream stage's stamp, so a retrained student also redoes compression and
conversion.  Each stage's skip rule is one line in the stage::

    if runner.done("student", inputs, final):
        return load(final)
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from asc_keras.files import jsonable, write_json

STAGES = (
    "data",
    "features",
    "teachers",
    "targets",
    "probe",
    "control",
    "student",
    "baseline",
    "compress",
    "tflite",
    "evaluate",
    "report",
)


class RunError(RuntimeError):
    """A run cannot start (bad paths, an output folder holding another run)."""


class StageRunner:
    """Done / stale / redo for the stages of one output folder, and their wall times.

    Args:
        out: the run's output folder (stamps go to ``out/stamps``).
        force: stage names to redo even when done ('all': every stage).
        log: where progress lines go.
    """

    def __init__(self, out: Path, force=frozenset(), log: Callable[[str], None] = print):
        bad = set(force) - set(STAGES) - {"all"}
        if bad:
            raise RunError(
                f"unknown stage(s) {sorted(bad)} in --force; stages are {', '.join(STAGES)}"
            )
        self.out, self.force, self.log = Path(out), frozenset(force), log
        self.timings: dict[str, float] = {}
        self.started: list[str] = []  # the output stages this run (re)did, in order
        self.beside: dict[str, float] = {}  # seconds of the stages trained in a second process

    def forced(self, stage: str) -> bool:
        """True when ``--force`` names ``stage`` (or 'all')."""
        return stage not in self.beside and (stage in self.force or "all" in self.force)

    def ran_beside(self, stage: str, seconds: float, redone: bool) -> None:
        """``stage`` was trained (``redone``) or found done in a second process (stages.beside),
        taking ``seconds``: it counts as started here when redone there, and ``--force`` no longer
        names it (it is not to be trained twice)."""
        self.beside[stage] = seconds
        if redone:
            self.started.append(stage)

    def recorded(self, stage: str) -> dict | None:
        """The inputs last recorded for ``stage`` (None if never)."""
        stamp = self.out / "stamps" / f"{stage}.json"
        return json.loads(stamp.read_text()) if stamp.is_file() else None

    def done(self, stage: str, inputs: dict, *outputs: Path) -> bool:
        """True when ``outputs`` exist, were made from ``inputs`` and ``stage`` is not forced."""
        return (
            not self.forced(stage)
            and all(Path(p).is_file() for p in outputs)
            and self.recorded(stage) == jsonable(inputs)
        )

    def start(self, stage: str, inputs: dict, scratch: Path | None = None) -> None:
        """Record ``inputs`` for ``stage``; clear its ``scratch`` folder when that work is stale.

        Same inputs as recorded: ``scratch`` (backups of an interrupted training) is kept and the
        stage resumes.  Other inputs, or a forced stage: ``scratch`` is removed first.
        """
        self.started.append(stage)
        changed = self.recorded(stage) != jsonable(inputs)
        write_json(self.out / "stamps" / f"{stage}.json", jsonable(inputs))
        if scratch is not None and (changed or self.forced(stage)) and Path(scratch).exists():
            shutil.rmtree(scratch)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Log the stage's start and add its wall time to ``timings[name]``."""
        self.log(f"== {name}")
        t = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t
