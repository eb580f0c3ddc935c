"""Read a PyTorch checkpoint (``.pth``) into NumPy arrays without PyTorch, and without running its code.

A ``.pth`` file is a pickle, or several.  Unpickling runs whatever callables the file names, so
loading an untrusted file with plain ``pickle`` (or ``torch.load(weights_only=False)``) can
execute code.  Here *every* pickle of the file goes through a restricted unpickler:

* the legacy format's magic number, protocol version, system info and storage-key list through
  :class:`PlainUnpickler`, which refuses every global and every persistent id: those pickles
  hold plain ints, bools, strings, lists and dicts, and each is checked to be exactly that;
* the object itself (``data.pkl`` in the zip format) through :class:`TensorUnpickler`, which
  lets a file name only what rebuilding tensors needs -- the tensor rebuild functions, the typed
  storage classes, ``collections.OrderedDict`` and NumPy's array reconstruction (training
  checkpoints also pickle sampler state as arrays) -- and refuses every other global with an
  error naming it: the guarantee of ``torch.load(weights_only=True)``.

Nothing is allocated from a size the file declares before that size is checked against the
bytes the file holds: a storage's declared element count, a tensor's extent within its storage,
a zip member's size.  Anything unexpected raises :class:`CheckpointError` naming the file and
what was found; nothing is returned half-read.

Both serialisations are read:

* **zip** (``torch.save`` since PyTorch 1.6): ``<archive>/data.pkl`` plus one uncompressed
  record per storage, ``<archive>/data/<key>``, raw little-endian bytes; every member lies in
  the one ``<archive>/`` folder;
* **legacy** (PyTorch <= 1.5, and ``_use_new_zipfile_serialization=False``): five pickles in a
  row -- magic number, protocol version, system info, the object, the list of storage keys --
  then, for each key in that order, an 8-byte element count and the storage's raw bytes.  The
  PANNs AudioSet checkpoints (2019-2020, PyTorch 1.x before 1.6) are in this format.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from asc_keras.models.torch_pickle import (
    CheckpointError,
    Guarded,
    LazyTensor,
    PlainUnpickler,
    Storage,
    TensorUnpickler,
    load_pickle,
)

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


def _expect(value, kind, what: str):
    if not isinstance(value, kind):
        raise CheckpointError(f"{what} is a {type(value).__name__}, expected {kind.__name__}")
    return value


def _read_zip(path: Path) -> object:
    with zipfile.ZipFile(path) as z:
        infos = {i.filename: i for i in z.infolist()}
        prefix = _zip_archive_folder(list(infos))
        size = path.stat().st_size
        if infos[f"{prefix}data.pkl"].file_size > size:
            raise CheckpointError(f"data.pkl declares {infos[f'{prefix}data.pkl'].file_size} bytes")
        order = infos.get(f"{prefix}byteorder")
        if order is not None and z.read(order)[:16] != b"little":
            raise CheckpointError("its storages are big-endian (only little-endian files are read)")
        storages: dict[str, Storage] = {}
        obj = load_pickle(io.BytesIO(z.read(f"{prefix}data.pkl")), TensorUnpickler, storages)
        for key, st in storages.items():
            info = infos.get(f"{prefix}data/{key}")
            if info is None:
                raise CheckpointError(f"storage {key} is named in data.pkl but has no record")
            need = st.numel * st.dtype.itemsize
            if info.compress_type != zipfile.ZIP_STORED:
                raise CheckpointError(
                    f"record data/{key} is compressed; torch.save writes them stored"
                )
            if info.file_size < need or info.file_size > size:
                raise CheckpointError(
                    f"storage {key} declares {need} bytes; its record holds {info.file_size} "
                    f"(the file {size})"
                )
            with z.open(info) as member:
                raw = member.read(need)
            st.array = np.frombuffer(raw, dtype=st.dtype.newbyteorder("<"))
    return obj


def _zip_archive_folder(names: list[str]) -> str:
    """The one top-level folder every member lies in (``archive/``), checked; with its slash."""
    tops = set()
    for name in names:
        parts = PurePosixPath(name).parts
        if name.startswith("/") or "\\" in name or ".." in parts or len(parts) < 2:
            raise CheckpointError(f"zip member {name!r} lies outside the archive folder")
        tops.add(parts[0])
    if len(tops) != 1:
        raise CheckpointError(f"zip members in {len(tops)} top-level folders ({sorted(tops)[:4]})")
    prefix = f"{tops.pop()}/"
    if f"{prefix}data.pkl" not in names:
        raise CheckpointError("a zip file without <archive>/data.pkl is not a PyTorch checkpoint")
    return prefix


def _read_legacy(path: Path) -> object:
    # The whole file in memory: a pickle opcode's declared length then never reaches a file read
    # that would allocate it, and every storage is a slice of bytes that exist.
    f = io.BytesIO(path.read_bytes())
    size = len(f.getbuffer())
    if load_pickle(f, PlainUnpickler) != _LEGACY_MAGIC:
        raise CheckpointError("not a PyTorch checkpoint (wrong magic number)")
    if load_pickle(f, PlainUnpickler) != _LEGACY_PROTOCOL:
        raise CheckpointError(f"unsupported legacy protocol (expected {_LEGACY_PROTOCOL})")
    info = _expect(load_pickle(f, PlainUnpickler), dict, "the system info")
    if info.get("little_endian", True) is not True:
        raise CheckpointError("it was saved big-endian (only little-endian files are read)")
    storages: dict[str, Storage] = {}
    obj = load_pickle(f, TensorUnpickler, storages)
    keys = _expect(load_pickle(f, PlainUnpickler), list, "the storage-key list")
    if sorted(map(str, keys)) != sorted(storages):
        raise CheckpointError(f"storage keys {keys[:6]} do not match the object's storages")
    for key in keys:
        st = storages[str(key)]
        header = f.read(8)
        if len(header) < 8:
            raise CheckpointError(f"storage {key} missing or truncated")
        numel, need = int(np.frombuffer(header, "<i8")[0]), st.numel * st.dtype.itemsize
        if numel != st.numel or need > size - f.tell():
            raise CheckpointError(
                f"storage {key} declares {numel} elements ({st.numel} in the object); "
                f"{size - f.tell()} bytes remain in the file"
            )
        st.array = np.frombuffer(f.read(need), dtype=st.dtype.newbyteorder("<"))
    return obj


def _materialise(obj, budget: list[int]):
    """Replace every tensor in ``obj`` (dicts, lists, tuples) by its NumPy array.

    ``budget``: bytes the arrays may still take (views may share a storage, so copies can exceed
    the file; twice its storages is plenty for any real state dict)."""
    if isinstance(obj, LazyTensor):
        obj.check()
        budget[0] -= obj.numel * obj.storage.dtype.itemsize
        if budget[0] < 0:
            raise CheckpointError("its tensors would take more than twice its storages' bytes")
        return obj.numpy()
    if isinstance(obj, dict):
        return type(obj)((k, _materialise(v, budget)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v, budget) for v in obj)
    if isinstance(obj, (Storage, Guarded)):
        raise CheckpointError("a bare storage outside any tensor")
    return obj


def read_torch_checkpoint(path: str | Path) -> object:
    """The object a ``.pth`` file holds (typically a dict of tensors), tensors as NumPy arrays.

    Raises CheckpointError (naming ``path`` and what was found) for anything but a checkpoint of
    tensors, dicts, lists and NumPy arrays; nothing in the file is executed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: checkpoint not found (nothing is downloaded; pass a local file)"
        )
    try:
        obj = _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
        stored = 2 * path.stat().st_size + (1 << 20)
        return _materialise(obj, [stored])
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except RecursionError:
        raise CheckpointError(f"{path}: nested too deeply to be a checkpoint") from None
    except Exception as e:  # noqa: BLE001 - whatever a crafted file provokes, it is refused by name
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})"
        ) from None


def state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The model state dict of a checkpoint: the file's dict itself, or its ``'model'`` /
    ``'state_dict'`` entry (PANNs saves ``{'model': ..., 'iteration': ..., 'sampler': ...}``)."""
    obj = read_torch_checkpoint(path)
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    numeric = (
        all(isinstance(v, np.ndarray) and v.dtype.kind in "biuf" for v in obj.values())
        if isinstance(obj, dict)
        else False
    )
    if not numeric:
        raise CheckpointError(
            f"{path}: holds no state dict of tensors (keys: {list(obj)[:8] if isinstance(obj, dict) else type(obj)})"
        )
    return dict(obj)
