"""Offline feature extraction into an atomic, resumable, memory-mapped cache.

A cache is a folder ``<cache_root>/<name>-<key>/`` holding

* ``features.npy`` -- (items, frames, n_mels) array, float16 by default, opened memory-mapped;
* ``items.csv``    -- one row per item: ``item`` (its files joined by '|');
* ``meta.json``    -- feature settings, shape, dtype, audio fix-up counts.

``key`` hashes the feature settings, the dataset folder and the item list, so a
change of any of them makes a new cache.  Work happens in ``<...>.partial/``
with a ``done.npy`` mask flushed after each chunk's rows; the folder is renamed
to its final name only when every row is written, so a killed run never leaves
a half cache that is later read as valid, and running again resumes the
missing rows.  Items are 1 s clips (one file) or rebuilt 10 s recordings (ten
files concatenated in order).  Extraction runs over processes; each worker
writes its rows straight into the memory map, so neither audio nor features
are held in memory beyond one chunk.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from asc_keras.config import FeatureConfig
from asc_keras.data.audio import MIN_CLIP_FRACTION, TAU_SAMPLE_RATE, AudioFixes, load_audio
from asc_keras.data.errors import AudioError, DataError
from asc_keras.features.logmel import logmel
from asc_keras.files import atomic_path, work_lock
from asc_keras.log import warn

CHUNK = 128


@dataclass(frozen=True)
class FeatureCache:
    """A complete feature cache opened read-only (memory-mapped)."""

    path: Path
    features: np.ndarray  # memmap (items, frames, n_mels)
    items: pd.Series  # item name -> row
    config: FeatureConfig
    bad_items: dict = dataclasses.field(default_factory=dict)  # item -> why it could not be read

    def __len__(self) -> int:
        return self.features.shape[0]

    def rows(self, names: Sequence[str]) -> np.ndarray:
        """Row numbers of the given items (file name, or files joined by '|')."""
        try:
            return self.items.loc[list(names)].to_numpy()
        except KeyError as e:
            raise KeyError(f"{self.path}: item(s) not in this cache, e.g. {e}") from None

    @classmethod
    def open(cls, path: str | Path) -> FeatureCache:
        path = Path(path)
        meta_file = path / "meta.json"
        if not meta_file.is_file():
            raise DataError(
                f"{path}: not a complete feature cache (no meta.json); extract it again."
            )
        try:
            meta = json.loads(meta_file.read_text())
            problem = cache_problem(path, meta)
            if problem:
                raise DataError(f"{path}: {problem}; delete the folder and extract again.")
            # Numbers only: a pickled (object) array is refused, never unpickled.
            feats = np.load(path / "features.npy", mmap_mode="r", allow_pickle=False)
            names = pd.read_csv(path / "items.csv", dtype=str, keep_default_na=False)["item"]
            config = FeatureConfig(**meta["config"])
        except (ValueError, KeyError, TypeError, OSError, pd.errors.ParserError) as e:
            if isinstance(e, DataError):
                raise
            raise DataError(f"{path}: not a feature cache of asc_keras ({type(e).__name__}: {e}); "
                            "delete the folder and extract again.") from None  # fmt: skip
        if feats.dtype.kind != "f" or len(names) != len(feats):
            raise DataError(
                f"{path}: its features and items do not match; delete it and extract again."
            )
        index = pd.Series(np.arange(len(names)), index=names.values)
        return cls(path, feats, index, config, dict(meta.get("bad_items", {})))


def _complete_and_sound(final: Path, repair: bool = False) -> bool:
    """True for a finished cache whose data file is whole; with ``repair``, a damaged one is
    reported and removed so that it is extracted again."""
    if not (final / "meta.json").is_file():
        return False
    problem = cache_problem(final, json.loads((final / "meta.json").read_text()))
    if problem is not None and repair:
        warn(f"{final}: {problem}; extracting it again")
        shutil.rmtree(final)
    return problem is None


def cache_problem(path: Path, meta: dict) -> str | None:
    """What is wrong with a complete-looking cache (truncated or resized data), or None.

    ``features.npy`` must hold exactly its header plus shape x item size bytes: a disk that
    filled up, or a copy cut short, leaves a shorter file.
    """
    feat_file = Path(path) / "features.npy"
    try:
        with open(feat_file, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = {
                (1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
            }
            if version not in read:
                return f"features.npy has an unknown .npy format version {version}"
            shape, _, dtype = read[version](f)
            header = f.tell()
    except (OSError, ValueError) as e:
        return f"features.npy is unreadable ({e})"
    if list(shape) != list(meta["shape"]):
        return f"features.npy has shape {tuple(shape)}, meta.json says {tuple(meta['shape'])}"
    want = header + int(np.prod(shape)) * np.dtype(dtype).itemsize
    size = feat_file.stat().st_size
    if size != want:
        return f"features.npy holds {size:,} bytes, its shape needs {want:,} (truncated?)"
    return None


def item_name(files: Sequence[str] | str) -> str:
    return files if isinstance(files, str) else "|".join(files)


def cache_path(
    cache_root: str | Path,
    name: str,
    dataset_root: str | Path,
    items: Sequence[str],
    cfg: FeatureConfig,
) -> Path:
    h = hashlib.sha1()
    h.update(cfg.key().encode())
    h.update(str(Path(dataset_root).resolve()).encode())
    for it in items:
        h.update(it.encode())
        h.update(b"\n")
    return Path(cache_root) / f"{name}-{h.hexdigest()[:12]}"


def _extract_chunk(args) -> tuple[int, int, list[tuple[str, str]], dict]:
    """Worker: compute rows [start, stop) and write them into the partial memmap."""
    partial, dataset_root, items, start, cfg = args
    fixes = AudioFixes()
    errors: list[tuple[str, str]] = []
    out = np.load(Path(partial) / "features.npy", mmap_mode="r+", allow_pickle=False)
    audio = []
    for it in items:
        try:
            parts = [
                load_audio(
                    Path(dataset_root) / f,
                    cfg.sample_rate,
                    duration=cfg.clip_seconds,
                    expected_rate=TAU_SAMPLE_RATE,
                    fixes=fixes,
                    min_fraction=MIN_CLIP_FRACTION,
                )
                for f in it.split("|")
            ]
            audio.append(np.concatenate(parts))
        except AudioError as e:
            errors.append((it, str(e)))
            audio.append(None)
    good = [i for i, a in enumerate(audio) if a is not None]
    if good:
        feats = logmel(np.stack([audio[i] for i in good]), cfg)
        for j, i in enumerate(good):
            out[start + i] = feats[j]
    out.flush()
    del out
    return start, len(items), errors, fixes.to_dict()


def extract_features(
    dataset_root: str | Path,
    items: Sequence[Sequence[str] | str],
    cfg: FeatureConfig,
    cache_root: str | Path,
    name: str = "clips",
    workers: int | None = None,
    progress: bool = True,
    skip_bad: bool = False,
) -> FeatureCache:
    """Compute (or reuse) the log-mel cache of ``items`` under ``cache_root``.

    Args:
        dataset_root: folder the item file names are relative to.
        items: one entry per output row: a file name (a 1 s clip) or a sequence of
            file names concatenated in order (a rebuilt recording).
        cfg: feature settings; every item must have the same number of files.
        cache_root: where caches live.
        name: readable prefix of the cache folder ('clips', 'recordings').
        workers: processes (default: CPU count).
        progress: show a progress bar.
        skip_bad: complete the cache even when some items cannot be read (corrupt, not finite):
            their rows stay empty and :attr:`FeatureCache.bad_items` names them, for the caller
            to leave out.  Without it those items stop the extraction (below).

    Returns:
        The opened :class:`FeatureCache`.

    Raises:
        DataError: some audio files could not be read.  Everything else is kept in
            the partial cache, so fixing (or removing) those files and running again
            computes only what is missing.
    """
    names = [item_name(it) for it in items]
    n_files = {n.count("|") + 1 for n in names}
    if len(n_files) > 1:
        raise ValueError(f"items must all have the same number of files, got {sorted(n_files)}")
    if len(set(names)) != len(names):
        raise ValueError("items contain duplicates")
    final = cache_path(cache_root, name, dataset_root, names, cfg)
    if _complete_and_sound(final):  # the usual case: no lock needed to read a finished cache
        return FeatureCache.open(final)
    # Runs sharing a work folder: one extracts, the others wait here, then reuse its cache.
    with work_lock(final, f"feature cache {final.name}"):
        if _complete_and_sound(final, repair=True):
            return FeatureCache.open(final)
        seconds = n_files.pop() * cfg.clip_seconds if names else cfg.clip_seconds
        return _build(final, names, seconds, dataset_root, cfg, name, workers, progress, skip_bad)


def _build(final: Path, names: list[str], seconds: float, dataset_root, cfg: FeatureConfig, name: str,
           workers: int | None, progress: bool, skip_bad: bool = False) -> FeatureCache:  # fmt: skip
    """Extract every missing row into ``final``'s partial folder, then complete it."""
    partial = final.with_name(final.name + ".partial")
    shape = (len(names), cfg.n_frames(seconds), cfg.n_mels)
    done_file = _open_partial(partial, shape, names, cfg)
    done = np.load(done_file, mmap_mode="r+", allow_pickle=False)
    todo = [s for s in range(0, len(names), CHUNK) if not done[s : s + CHUNK].all()]
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    jobs = [(str(partial), str(dataset_root), names[s : s + CHUNK], s, cfg) for s in todo]
    bar = tqdm(
        total=len(names),
        initial=len(names) - sum(len(j[2]) for j in jobs),
        unit="item",
        desc=f"log-mel {name}",
        disable=not progress,
        file=sys.stderr,
    )
    errors, fixes = _run_chunks(jobs, workers, names, done, bar)
    bar.close()
    all_done = bool(np.asarray(done).all())
    done = None  # release the memmap before the folder is renamed
    if fixes.counts:
        warn(f"audio repaired while extracting {name}: {fixes.summary()}")
    if errors:  # every unreadable item, in one report
        (partial / "bad_items.txt").write_text("".join(f"{msg}\n" for _, msg in errors))
    if (errors or not all_done) and not (
        skip_bad and len(errors) == int(len(names) - _done_count(partial))
    ):
        listing = "\n  ".join(msg for _, msg in errors[:10])
        more = (
            f"\n  ... all {len(errors)} in {partial / 'bad_items.txt'}" if len(errors) > 10 else ""
        )
        raise DataError(
            f"{len(errors)} item(s) could not be read; the other rows are kept in {partial} and "
            f"a new run computes only what is missing once these are fixed or removed from "
            f"the CSV files (or run with --skip-bad-audio to leave them out):\n  {listing}{more}"
        )
    meta = {
        "config": dataclasses.asdict(cfg),
        "shape": list(shape),
        "dtype": cfg.cache_dtype,
        "dataset_root": str(Path(dataset_root).resolve()),
        "fixes": fixes.to_dict(),
        "bad_items": {item: msg for item, msg in errors},
    }
    return _complete(partial, final, meta)


def _done_count(partial: Path) -> int:
    return int(np.load(partial / "done.npy", allow_pickle=False).sum())


def _run_chunks(jobs: list, workers: int, names: list[str], done: np.ndarray, bar):
    """Extract every chunk (in ``workers`` processes), marking its good rows in the ``done`` mask
    as each chunk returns: (errors, audio fixes)."""
    fixes, errors = AudioFixes(), []

    def finish(result):
        start, n, errs, fx = result
        bad = {it for it, _ in errs}
        done[start : start + n] = np.array([names[start + i] not in bad for i in range(n)])
        done.flush()  # rows were flushed by the worker before it returned
        errors.extend(errs)
        fixes.merge(fx)
        bar.update(n)

    if workers == 1:
        for j in jobs:
            finish(_extract_chunk(j))
    else:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
            for fut in as_completed([ex.submit(_extract_chunk, j) for j in jobs]):
                finish(fut.result())
    return errors, fixes


def _open_partial(partial: Path, shape: tuple, names: list[str], cfg: FeatureConfig) -> Path:
    """Create ``partial`` (features memmap, done mask, items) unless a matching one exists.

    Returns the done mask's file: one bool per row, True once the row is written.  It is written
    last and atomically; a partial whose files do not read back at their shapes starts afresh.
    """
    partial.mkdir(parents=True, exist_ok=True)
    feat_file, done_file = partial / "features.npy", partial / "done.npy"
    try:  # the headers only; no map is kept open over files that may be written again below
        found = [(a.shape, a.dtype) for a in (np.load(f, mmap_mode="r", allow_pickle=False)
                                              for f in (feat_file, done_file))]  # fmt: skip
        resumable = found[0][0] == shape and found[1] == ((len(names),), bool)
    except (ValueError, OSError, EOFError):  # missing, cut short, not a .npy
        resumable = False
    if not resumable:
        np.lib.format.open_memmap(feat_file, mode="w+", dtype=cfg.cache_dtype, shape=shape).flush()
        pd.DataFrame({"item": names}).to_csv(partial / "items.csv", index=False)
        with atomic_path(done_file) as tmp:
            np.save(tmp, np.zeros(len(names), dtype=bool))
    return done_file


def _complete(partial: Path, final: Path, meta: dict) -> FeatureCache:
    """Write ``meta.json`` and rename the finished ``partial`` folder to ``final`` (atomic)."""
    (partial / "meta.json").write_text(json.dumps(meta, indent=1))
    (partial / "done.npy").unlink()
    if final.exists():  # a concurrent run finished first
        shutil.rmtree(partial)
    else:
        os.replace(partial, final)
    return FeatureCache.open(final)
