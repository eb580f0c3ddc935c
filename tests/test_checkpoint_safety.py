"""The .pth reader executes nothing and reads nothing past what a file holds: crafted checkpoints.

Every crafted file here is refused with a CheckpointError naming it, and the payload's marker
file is never created.  The files are made in the test with a stand-in ``torch`` module, so
pickle writes the same global names PyTorch's files hold (``torch._utils._rebuild_tensor_v2``,
``torch.FloatStorage``) without PyTorch installed.
"""

from __future__ import annotations

import builtins
import io
import os
import pickle
import subprocess
import sys
import types
import zipfile
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from asc_keras.models.torch_checkpoint import CheckpointError, read_torch_checkpoint, state_dict

FIXTURES = Path(__file__).parent / "fixtures"
LEGACY = FIXTURES / "panns_mobilenetv2_tiny_legacy.pth"
MAGIC, PROTOCOL = 0x1950A86A20F9469CFC6C, 1001
SYS_INFO = {"protocol_version": PROTOCOL, "little_endian": True, "type_sizes": {"int": 4}}


@contextmanager
def fake_torch():
    """``torch`` and ``torch._utils`` stand-ins, so pickle can name PyTorch's globals."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # never called: the reader maps the name to its own function
        raise AssertionError

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch.FloatStorage = type(
        "FloatStorage", (), {"__module__": "torch", "__qualname__": "FloatStorage"}
    )
    torch._utils = utils
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        yield torch
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class Storage:
    """A float32 storage: ``key`` and its values; pickled as a persistent id."""

    def __init__(self, key: str, values, numel: int | None = None):
        self.key, self.values = key, np.asarray(values, np.float32)
        self.numel = len(self.values) if numel is None else numel


class Tensor:
    def __init__(self, storage: Storage, offset=0, size=None, stride=None):
        self.args = (storage, offset, size or (len(storage.values),), stride or (1,))

    def __reduce__(self):
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        return rebuild, (*self.args, False, OrderedDict())


class Payload:
    """Unpickling this runs ``call(*args)``, which would create the marker file."""

    def __init__(self, call, args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def _pickle(obj, storages: dict | None = None, key_of=None) -> bytes:
    buf = io.BytesIO()
    p = pickle.Pickler(buf, protocol=2)

    def persistent_id(o):
        if isinstance(o, Storage):
            if storages is not None:
                storages[o.key] = o
            return ("storage", sys.modules["torch"].FloatStorage, key_of(o) if key_of else o.key,
                    "cpu", o.numel)  # fmt: skip
        return None

    p.persistent_id = persistent_id
    p.dump(obj)
    return buf.getvalue()


def write_legacy(path: Path, obj, parts: dict | None = None, header_numel=None) -> Path:
    """A legacy-format file of ``obj``; ``parts`` replaces any of the five pickles by index."""
    storages: dict = {}
    with fake_torch():
        body = _pickle(obj, storages)
        pickles = [pickle.dumps(MAGIC, 2), pickle.dumps(PROTOCOL, 2), pickle.dumps(SYS_INFO, 2), body,
                   pickle.dumps(list(storages), 2)]  # fmt: skip
        for i, part in (parts or {}).items():
            pickles[i] = _pickle(part)
    data = b"".join(pickles)
    for st in storages.values():
        n = st.numel if header_numel is None else header_numel
        data += np.int64(n).tobytes() + st.values.tobytes()
    path.write_bytes(data)
    return path


def write_zip(path: Path, obj, extra: dict | None = None, key_of=None, skip=()) -> Path:
    """A zip-format file of ``obj`` (records under ``archive/``), plus ``extra`` members."""
    storages: dict = {}
    with fake_torch():
        body = _pickle(obj, storages, key_of)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", body)
        z.writestr("archive/byteorder", "little")
        for st in storages.values():
            if st.key not in skip:
                z.writestr(f"archive/data/{st.key}", st.values.tobytes())
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return path


def good_checkpoint():
    a = Storage("0", np.arange(6))
    return {"model": OrderedDict(w=Tensor(a, 0, (2, 3), (3, 1)), b=Tensor(a, 4, (2,), (1,)))}


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_a_crafted_checkpoint_of_tensors_reads_back(tmp_path, fmt):
    path = (write_legacy if fmt == "legacy" else write_zip)(tmp_path / "ok.pth", good_checkpoint())
    sd = state_dict(path)
    np.testing.assert_array_equal(sd["w"], [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(sd["b"], [4, 5])


def _payloads(marker: Path):
    """One reducer per dangerous global (the global the refusal must name -> the reducer); each
    would create ``marker`` or hand the file a way to."""
    cmd = f"touch {marker}"
    return {
        "system": Payload(os.system, (cmd,)),
        "Popen": Payload(subprocess.Popen, (["touch", str(marker)],)),
        "eval": Payload(builtins.eval, (f"open({str(marker)!r}, 'w')",)),
        "getattr": Payload(builtins.getattr, (Payload(builtins.__import__, ("os",)), "system")),
        "__import__": Payload(builtins.__import__, ("os",)),
        "getattr ": Payload(Path.touch, (marker,)),  # a method reduces through getattr
    }


def _refused(path: Path, marker: Path, match: str | None = None) -> CheckpointError:
    with pytest.raises(CheckpointError, match=match) as e:
        state_dict(path)
    assert str(path) in str(e.value), "the error names the file"
    assert not marker.exists(), "the payload ran"
    return e.value


@pytest.mark.parametrize(
    "position", range(5), ids=["magic", "protocol", "sys_info", "object", "keys"]
)
def test_a_reducer_in_any_legacy_pickle_is_refused_unexecuted(tmp_path, position):
    marker = tmp_path / "ran"
    for name, payload in _payloads(marker).items():
        part = {"model": payload} if position == 3 else payload
        path = write_legacy(tmp_path / f"{position}.pth", good_checkpoint(), {position: part})
        err = _refused(path, marker, "refusing to load global")
        assert f".{name.strip()}:" in str(err), (name, err)


def test_a_reducer_in_the_zip_data_pkl_is_refused_unexecuted(tmp_path):
    marker = tmp_path / "ran"
    for _name, payload in _payloads(marker).items():
        path = write_zip(tmp_path / "evil.pth", {**good_checkpoint(), "extra": payload})
        _refused(path, marker, "refusing to load global")


def test_a_persistent_id_to_a_missing_record_is_refused(tmp_path):
    marker = tmp_path / "ran"
    _refused(write_zip(tmp_path / "z.pth", good_checkpoint(), skip={"0"}), marker, "has no record")
    # Legacy: the object's storage is not in the key list (keys pickle replaced).
    path = write_legacy(tmp_path / "l.pth", good_checkpoint(), {4: ["99"]})
    _refused(path, marker, "do not match")


def test_a_storage_declared_far_larger_than_the_file_is_refused_before_allocation(tmp_path):
    huge = 10**15  # 4 PB of float32: allocating it would fail loudly, not with our message
    big = {"model": OrderedDict(w=Tensor(Storage("0", np.arange(6), numel=huge), 0, (6,), (1,)))}
    _refused(write_zip(tmp_path / "z.pth", big), tmp_path / "m", "declares")
    _refused(write_legacy(tmp_path / "l.pth", big), tmp_path / "m", "declares")
    _refused(write_legacy(tmp_path / "h.pth", good_checkpoint(), header_numel=huge), tmp_path / "m",
             "declares")  # fmt: skip


def test_tensors_reading_outside_their_storage_are_refused(tmp_path):
    a = Storage("0", np.arange(6))
    cases = {
        "reads past": Tensor(a, 4, (3,), (1,)),  # past the end
        "not a non-negative integer": Tensor(a, 5, (3,), (-1,)),  # a negative stride
        "reads past its 6": Tensor(a, 0, (10**9,), (0,)),  # broadcast far beyond its storage
    }
    for why, tensor in cases.items():
        path = write_zip(tmp_path / "t.pth", {"model": OrderedDict(w=tensor)})
        _refused(path, tmp_path / "m", why)


def test_truncated_and_empty_files_are_refused(tmp_path):
    data = LEGACY.read_bytes()
    for cut in [0, 1, 8, 30, 200, len(data) // 3, len(data) // 2, len(data) - 9, len(data) - 1]:
        path = tmp_path / f"cut{cut}.pth"
        path.write_bytes(data[:cut])
        _refused(path, tmp_path / "m")
    zipped = write_zip(tmp_path / "z.pth", good_checkpoint()).read_bytes()
    for cut in (len(zipped) // 2, len(zipped) - 30):
        path = tmp_path / f"zcut{cut}.pth"
        path.write_bytes(zipped[:cut])
        _refused(path, tmp_path / "m")


def test_zip_members_outside_the_archive_folder_are_refused(tmp_path):
    for name in ("../evil.txt", "/etc/evil", "other/data.pkl", "archive/../../evil"):
        path = write_zip(tmp_path / "z.pth", good_checkpoint(), extra={name: b"x"})
        _refused(path, tmp_path / "m", "outside|top-level")
    path = write_zip(tmp_path / "k.pth", good_checkpoint(), key_of=lambda st: "../../x")
    _refused(path, tmp_path / "m", "not a plain name")


def test_random_corruption_is_either_read_or_refused_by_name(tmp_path):
    """Fuzz: 300 copies of the real-PyTorch fixture with random bytes changed; each one loads or
    raises CheckpointError naming the file -- no other exception, nothing executed."""
    data = np.frombuffer(LEGACY.read_bytes(), np.uint8)
    rng = np.random.default_rng(0)
    refused = 0
    for _i in range(300):
        mutated = data.copy()
        at = rng.integers(0, len(data), rng.integers(1, 8))
        mutated[at] = rng.integers(0, 256, len(at))
        path = tmp_path / "fuzz.pth"
        path.write_bytes(mutated.tobytes())
        try:
            state_dict(path)
        except CheckpointError as e:
            assert str(path) in str(e)
            refused += 1
    assert refused > 0  # the mutations do hit the structure


def test_import_panns_and_the_teacher_setting_refuse_a_crafted_file_before_any_work(tmp_path):
    """The two ways a user hands us a .pth: ``asc-keras import-panns`` writes nothing, and a run with
    ``teachers.pretrained_mobilenetv2`` stops before generating data."""
    from asc_keras.cli import main

    marker = tmp_path / "ran"
    crafted = write_legacy(tmp_path / "crafted.pth", good_checkpoint(),
                           {2: Payload(os.system, (f"touch {marker}",))})  # fmt: skip
    out = tmp_path / "teacher.keras"
    assert main(["import-panns", str(crafted), str(out)]) == 2
    assert not out.exists() and not marker.exists()
    work = tmp_path / "work"
    args = ["run", "--system", "1", "--profile", "quick", "--work", str(work), "--out", str(tmp_path / "o"),
            "--quiet", "--set", f"teachers.pretrained_mobilenetv2={crafted}"]  # fmt: skip
    assert main(args) == 2
    assert not marker.exists() and not (work / "teachers").exists()
    assert not any(p.name.startswith("generated") for p in work.glob("*"))


def test_read_torch_checkpoint_returns_plain_containers():
    obj = read_torch_checkpoint(LEGACY)
    assert isinstance(obj, dict) and isinstance(obj["model"], dict)
