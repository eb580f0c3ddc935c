"""Read a PyTorch checkpoint (``.pth``) into NumPy arrays without PyTorch, and without running its code.

A ``.pth`` file is a pickle.  Unpickling runs whatever callables the file names, so loading an
untrusted file with plain ``pickle`` (or ``torch.load(weights_only=False)``) can execute code.
:class:`_RestrictedUnpickler` only lets a file name what rebuilding tensors needs -- the tensor
rebuild functions, the typed storage classes, ``collections.OrderedDict`` and NumPy's array
reconstruction (training checkpoints also pickle sampler state as arrays) -- and refuses every
other global with an error naming it: the guarantee of ``torch.load(weights_only=True)``.
Tensors come back as NumPy arrays; every storage is read from the file, nothing is executed.

Both serialisations are read:

* **zip** (``torch.save`` since PyTorch 1.6): ``<archive>/data.pkl`` plus one file per storage,
  ``<archive>/data/<key>``, raw little-endian bytes;
* **legacy** (PyTorch <= 1.5, and ``_use_new_zipfile_serialization=False``): five pickles in a
  row -- magic number, protocol version, system info, the object, the list of storage keys --
  then, for each key in that order, an 8-byte element count and the storage's raw bytes.  The
  PANNs AudioSet checkpoints (2019-2020, PyTorch 1.x before 1.6) are in this format.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}  # fmt: skip


class CheckpointError(ValueError):
    """A checkpoint that cannot be read safely (unknown global, truncated storage, bad format)."""


class _Storage:
    """A typed storage named in the pickle; its bytes are attached once read."""

    def __init__(self, dtype, key: str, numel: int):
        self.dtype, self.key, self.numel, self.array = np.dtype(dtype), key, numel, None


def _rebuild_tensor(storage: _Storage, offset: int, size, stride, *_ignored) -> _LazyTensor:
    return _LazyTensor(storage, int(offset), tuple(size), tuple(stride))


class _LazyTensor:
    """A tensor view on a storage whose bytes may come later in the file (legacy format)."""

    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def numpy(self) -> np.ndarray:
        a = self.storage.array
        if a is None:
            raise CheckpointError(
                f"storage {self.storage.key} has no data in the file (truncated?)"
            )
        item = a.dtype.itemsize
        need = (
            self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride)) + 1
            if self.size
            else 1
        )
        if need > len(a):
            raise CheckpointError(
                f"storage {self.storage.key}: a tensor reads past its {len(a)} elements"
            )
        view = np.lib.stride_tricks.as_strided(
            a[self.offset :], shape=self.size, strides=tuple(s * item for s in self.stride)
        )
        return np.array(view)


class _RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds tensors, typed storages, ordered dicts and NumPy arrays; refuses anything else."""

    def __init__(self, file, storages: dict[str, _Storage]):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str):
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda data, requires_grad, backward_hooks, *rest: data
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in (
            "_reconstruct",
            "scalar",
        ):
            return getattr(_numpy_multiarray(), name)
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        raise CheckpointError(
            f"refusing to load global {module}.{name}: only tensors, storages, dicts and NumPy arrays "
            "are read from a checkpoint (nothing in it is executed)"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise CheckpointError(f"unknown persistent id {pid!r}")
        _, dtype, key, _location, numel = pid[:5]
        if not isinstance(dtype, type):
            raise CheckpointError(f"storage {key}: unsupported storage type {dtype!r}")
        if key not in self._storages:
            self._storages[key] = _Storage(dtype, str(key), int(numel))
        return self._storages[key]


def _numpy_multiarray():
    try:
        from numpy._core import multiarray  # NumPy 2
    except ImportError:  # NumPy 1
        from numpy.core import multiarray
    return multiarray


def _materialise(obj):
    """Replace every tensor in ``obj`` (dicts, lists, tuples) by its NumPy array."""
    if isinstance(obj, _LazyTensor):
        return obj.numpy()
    if isinstance(obj, dict):
        return type(obj)((k, _materialise(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v) for v in obj)
    return obj


def _read_zip(path: Path) -> object:
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise CheckpointError(
                f"{path}: a zip file without data.pkl is not a PyTorch checkpoint"
            )
        prefix = pkl[: -len("data.pkl")]
        storages: dict[str, _Storage] = {}
        obj = _RestrictedUnpickler(io.BytesIO(z.read(pkl)), storages).load()
        for key, st in storages.items():
            raw = z.read(f"{prefix}data/{key}")
            st.array = np.frombuffer(
                raw, dtype=st.dtype.newbyteorder("<"), count=len(raw) // st.dtype.itemsize
            )
    return obj


def _read_legacy(path: Path) -> object:
    with open(path, "rb") as f:
        if pickle.load(f) != _LEGACY_MAGIC:  # an int: no globals involved
            raise CheckpointError(f"{path}: not a PyTorch checkpoint (wrong magic number)")
        pickle.load(f), pickle.load(f)  # protocol version, system info (ints, bools, a dict)
        storages: dict[str, _Storage] = {}
        obj = _RestrictedUnpickler(f, storages).load()
        keys = pickle.load(f)
        for key in keys:
            st = storages.get(str(key))
            header = f.read(8)
            if st is None or len(header) < 8:
                raise CheckpointError(f"{path}: storage {key} missing or truncated")
            numel = int(np.frombuffer(header, "<i8")[0])
            raw = f.read(numel * st.dtype.itemsize)
            if len(raw) < numel * st.dtype.itemsize:
                raise CheckpointError(f"{path}: storage {key} truncated ({len(raw)} bytes read)")
            st.array = np.frombuffer(raw, dtype=st.dtype.newbyteorder("<"))
    return obj


def read_torch_checkpoint(path: str | Path) -> object:
    """The object a ``.pth`` file holds (typically a dict of tensors), tensors as NumPy arrays."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: checkpoint not found (nothing is downloaded; pass a local file)"
        )
    try:
        obj = _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
    except (pickle.UnpicklingError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({e})") from None
    return _materialise(obj)


def state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The model state dict of a checkpoint: the file's dict itself, or its ``'model'`` /
    ``'state_dict'`` entry (PANNs saves ``{'model': ..., 'iteration': ..., 'sampler': ...}``)."""
    obj = read_torch_checkpoint(path)
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
        raise CheckpointError(
            f"{path}: holds no state dict of tensors (keys: {list(obj)[:8] if isinstance(obj, dict) else type(obj)})"
        )
    return dict(obj)
