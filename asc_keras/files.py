"""Small file helpers every stage shares: atomic writes, JSON stamps, content hashes.

Atomic: a file is written beside its destination under a hidden temporary name and renamed
over it (``os.replace`` is atomic on one file system), so a killed run never leaves a
half-written file that a later run would read as complete.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def content_hash(obj: Any, length: int = 10) -> str:
    """Short stable SHA-1 hex digest of ``obj`` (JSON with sorted keys; other objects by str)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:length]


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it goes.

    The temporary name keeps the whole file name as its suffix (``.weights.h5``, ``.keras``,
    ``.npy``), since Keras and NumPy choose the format, or append one, by the name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".partial-{os.getpid()}-{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def file_identity(path: str | Path) -> dict:
    """A file as a stage input: its absolute path and the SHA-256 of its bytes."""
    path = Path(path)
    return {"path": str(path.resolve()), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically (NumPy scalars become floats)."""
    return write_text(path, json.dumps(obj, indent=1, default=float))


def jsonable(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists), to compare with stored stamps."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


@contextmanager
def work_lock(path: str | Path, what: str = "", log=print) -> Iterator[None]:
    """Hold an inter-process lock on ``path`` (``.locks/<name>.lock`` beside it) while building it.

    Runs that share a work folder (the four systems at once, on four GPUs) build each feature
    cache, teacher and target file once: the first takes the lock and builds, the others wait,
    then find the result and reuse it.  The lock is released when its holder exits, killed
    processes included (an OS file lock, via the ``filelock`` package).
    """
    from filelock import FileLock, Timeout

    path = Path(path)
    (path.parent / ".locks").mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path.parent / ".locks" / f"{path.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log(f"waiting for another run to finish {what or path} ...")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


class FolderBusy(RuntimeError):
    """Another live process is writing the same output folder."""


@contextmanager
def folder_lock(folder: str | Path, command: str = "", name: str = "") -> Iterator[None]:
    """Hold ``folder`` for one process (``folder/.lock``) while a command writes into it.

    ``name`` gives processes that share a folder by design (keras-tuner's chief and workers)
    one lock each: ``.lock-<name>``.

    A second process asking for a held folder gets :class:`FolderBusy` at once, naming the
    holder (its pid, host, start time and command from ``folder/.lock.owner``).  The lock is an
    OS file lock: a holder that is killed releases it, so a killed run's folder is reusable and
    a stale owner file is simply overwritten by the next holder.
    """
    import datetime
    import socket
    import sys

    from filelock import FileLock, Timeout

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    base = folder / (f".lock-{name}" if name else ".lock")
    owner = base.with_name(base.name + ".owner")
    lock = FileLock(str(base), is_singleton=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            who = json.loads(owner.read_text())
            holder = (f"process {who['pid']} on {who['host']} (started {who['started']}: "
                      f"{who['command']})")  # fmt: skip
        except (OSError, ValueError, KeyError):
            holder = "another process"
        raise FolderBusy(
            f"{folder} is in use by {holder}. Wait for it to finish or stop it, or choose "
            "another --out."
        ) from None
    try:
        started = datetime.datetime.now().isoformat(timespec="seconds")
        write_json(owner, {"pid": os.getpid(), "host": socket.gethostname(), "started": started,
                           "command": command or " ".join(sys.argv)})  # fmt: skip
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()
