"""Shared fixtures, made once per test session and shared by every test that needs them:

* ``tiny_tau`` / ``tiny_dataset`` / ``clip_cache``: a small generated TAU-layout set (~900 clips)
  and its clip features;
* ``tiny_splits`` / ``tiny_student``: its fold-1 splits, and one small SERFR-CNN trained on them
  through the run's own recipe (plumbing tests use it instead of training their own);
* ``damaged_tau``: the same set with one clip cut to 3,000 bytes;
* ``tiny_run``: one whole system run (``asc-keras run`` in a subprocess, the student recipe's
  calls recorded) on ``damaged_tau`` with ``--skip-bad-audio``, tiny teachers (the MobileNetV2
  from a PANNs checkpoint, frozen then fine-tuned) and a width-8 student, in ``tiny_work``.

Upstream-behaviour canaries are marked ``canary`` and left out unless asked for
(``pytest -m canary``).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # One worker per core: each runs TensorFlow on one thread (its subprocesses too), rather than
    # two workers' thread pools contending for both cores (2-core machine, test_training.py and
    # test_models.py on two workers: 142 s, 128 s with one thread each).
    for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(name, "1")

import pytest

from asc_keras.config import FeatureConfig, OptimConfig, SystemConfig

ROOT = Path(__file__).resolve().parents[1]
PANNS = ROOT / "tests" / "fixtures" / "panns_mobilenetv2_tiny_legacy.pth"
# The tiny run: system 2 with a width-8 student and tiny teachers; plumbing, not the recipe.
TINY = [
    f"teachers.pretrained_mobilenetv2={PANNS}", "teachers.frozen_epochs=1", "student_width=8",
    "data.recordings_per_class=3", "data.cities=3", "optim.steps=24", "optim.rounds=3",
    "optim.batch_size=32", "teachers.steps=6", "teachers.batch_size=8", "teachers.cnn_width=4",
    "teachers.bcresnet_width=4", "teachers.mobilenet_alpha=0.35", "compress.prune_steps=6",
    "compress.qat_steps=4", "compress.representative_samples=64", "compress.bn_recalibration_batches=2",
    "controls.baseline_steps=12", "teachers.views.cnn_clips.steps=6",
    "teachers.views.cnn_clips.batch_size=8", "optim.min_passes=null",  # the steps above, exactly
]  # fmt: skip
# The tiny student: width 8, the run's recipe (system 1's augmentation), a short length.
TINY_STUDENT = SystemConfig(
    student_width=8,
    optim=OptimConfig(steps=80, rounds=4, batch_size=32, peak_lr=3e-3, warmup_fraction=0.1),
)


# The tiny run's longest tests: run first in their file, so that when xdist hands that worker its
# next file (once two of its tests are left) only quick ones remain.
LONG_PIPELINE_TESTS = ("test_tiny_ablation", "test_width_search")
# Files by their measured time, longest first (pytest --durations, 2-core machine, one thread
# per worker: the tiny run's file 470 s, training 130, models 75, compress 60, beside 50, finetune
# 45, panns 25, reliability 25); the rest after them in their order.  Whole files go to a worker
# (--dist loadfile), so handing out the long ones first leaves only short ones for the end, and
# the two workers finish together (8:31 in all).
LONGEST_FILES = ("test_pipeline.py", "test_training.py", "test_models.py", "test_compress.py",
                 "test_beside.py", "test_finetune.py", "test_panns.py", "test_reliability.py")  # fmt: skip


def pytest_collection_modifyitems(items):
    """The tiny run's file first: the worker that takes it is busy for most of the suite, while
    the other works through the rest, longest files first; then they share what is left."""

    def order(item):
        name = item.path.name
        rank = LONGEST_FILES.index(name) if name in LONGEST_FILES else len(LONGEST_FILES)
        first = name == "test_pipeline.py"
        return (rank, not (first and item.name.startswith(LONG_PIPELINE_TESTS)))

    items.sort(key=order)  # stable: everything else in its order


def shared_folder(tmp_path_factory, name: str) -> Path:
    """``name`` in a folder every xdist worker of this session shares (the parent of their own
    temporary folders), or in the session's own one without xdist."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name


@pytest.fixture(scope="session")
def tiny_tau(tmp_path_factory):
    """~900 clips: 10 classes x 3 sources x 3 devices x 10 s, 3 cities; generated once for all
    workers (the first generates, the others wait for it)."""
    from asc_keras.data.synthetic import make_synthetic_tau
    from asc_keras.files import work_lock

    root = shared_folder(tmp_path_factory, "tau") / "dev"
    with work_lock(root, "the tiny set"):
        if not (root / "meta.csv").is_file():
            make_synthetic_tau(root, recordings_per_class=3, cities=3, seed=1, workers=2)
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tiny_tau):
    from asc_keras.data import read_tau

    return read_tau(tiny_tau)


@pytest.fixture(scope="session")
def clip_cache(tiny_dataset, tmp_path_factory):
    from asc_keras.features.cache import extract_features

    return extract_features(
        tiny_dataset.root,
        list(tiny_dataset.clips["filename"]),
        FeatureConfig(),
        shared_folder(tmp_path_factory, "cache"),  # one worker extracts, the other waits for it
        workers=1,
        progress=False,
    )


@pytest.fixture(scope="session")
def tiny_splits(clip_cache, tiny_dataset):
    """(train, evaluate) clip splits of the tiny set."""
    from asc_keras.data.splits import ClipSplit

    return (ClipSplit.from_table(clip_cache, tiny_dataset.train),
            ClipSplit.from_table(clip_cache, tiny_dataset.evaluate))  # fmt: skip


@pytest.fixture(scope="session")
def tiny_student(tiny_splits, tmp_path_factory):
    """(model, run folder, config): a width-8 SERFR-CNN trained by ``train_student`` (CE, system
    1's augmentation, 80 steps in 4 rounds, validated on the evaluation clips)."""
    from asc_keras.training.student import train_student

    run_dir = tmp_path_factory.mktemp("student") / "student"
    train, ev = tiny_splits
    model = train_student(TINY_STUDENT, train, ev, None, run_dir=run_dir, verbose=0)
    return model, run_dir, TINY_STUDENT


def tiny_config(**changes) -> SystemConfig:
    """The tiny student's configuration with ``changes`` (dataclass fields, nested ones as dicts)."""
    cfg = TINY_STUDENT
    for key, value in changes.items():
        sub = getattr(cfg, key)
        value = dataclasses.replace(sub, **value) if isinstance(value, dict) else value
        cfg = dataclasses.replace(cfg, **{key: value})
    return cfg


def damage_copy(source: Path, dest: Path, damaged: str) -> Path:
    """A copy of a TAU-layout set (audio linked, not copied) whose ``damaged`` clip is cut to
    3,000 bytes: the header and a few milliseconds of audio."""
    shutil.copytree(source, dest, symlinks=True,
                    ignore=lambda d, names: names if Path(d).name == "audio" else [])  # fmt: skip
    for wav in (source / "audio").iterdir():
        (dest / "audio" / wav.name).symlink_to(wav)
    (dest / damaged).unlink()
    (dest / damaged).write_bytes((source / damaged).read_bytes()[:3000])
    return dest


@pytest.fixture(scope="session")
def damaged_tau(tiny_tau, tiny_dataset, tmp_path_factory):
    """(root, clip): the tiny set with one training clip truncated."""
    clip = tiny_dataset.train["filename"].iloc[7]
    return damage_copy(tiny_tau, tmp_path_factory.mktemp("damaged") / "dev", clip), clip


@pytest.fixture(scope="session")
def tiny_work(tmp_path_factory):
    return tmp_path_factory.mktemp("work")


def run_args(data: Path, work: Path, out: Path, *more: str) -> list[str]:
    """``asc-keras run`` arguments of the tiny system-2 run."""
    return ["run", "--system", "2", "--profile", "quick", "--data", str(data), "--work", str(work),
            "--out", str(out), "--quiet", "--skip-bad-audio", *more, "--set", *TINY]  # fmt: skip


@pytest.fixture(scope="session")
def tiny_run(damaged_tau, tiny_work, tmp_path_factory):
    """The output folder of the tiny system run: the run command's one real subprocess
    (``asc_keras.cli.main`` in a fresh interpreter, as the ``asc-keras`` script calls it), with
    the student recipe's spies (``recipe_spy.py``), whose record is ``recipe_calls.json`` beside it."""
    out = tmp_path_factory.mktemp("runs") / "system2"
    calls = out.with_name("recipe_calls.json")
    cmd = [sys.executable, str(ROOT / "tests" / "recipe_spy.py"), str(calls)]
    r = subprocess.run([*cmd, *run_args(damaged_tau[0], tiny_work, out)], capture_output=True,
                       text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=1500)  # fmt: skip
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    (out / "run.log").write_text(r.stdout + r.stderr)
    return out
