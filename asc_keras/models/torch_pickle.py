"""The safe pickle layer of the ``.pth`` reader: unpicklers that execute nothing.

:class:`PlainUnpickler` refuses every global and persistent id (plain data only);
:class:`TensorUnpickler` lets a pickle name only the tensor rebuild functions, PyTorch's typed
storage classes, ``collections.OrderedDict`` and NumPy's array reconstruction, each checked
(:mod:`asc_keras.models.torch_checkpoint` reads the two file formats with them).  Every pickle
is first parsed without being run (:func:`load_pickle`).
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
from collections import OrderedDict

import numpy as np

STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}  # fmt: skip
STORAGE_TYPES = frozenset(STORAGE_DTYPES.values())


class CheckpointError(ValueError):
    """A checkpoint that cannot be read safely (unknown global, truncated storage, bad format)."""


class Guarded:
    """No pickle may set state on these objects (BUILD): their fields come from checked calls."""

    __slots__ = ()

    def __setstate__(self, state):
        raise CheckpointError(f"the file sets the state of a {type(self).__name__[1:]} directly")


class Storage(Guarded):
    """A typed storage named in the pickle; its bytes are attached once read."""

    __slots__ = ("dtype", "key", "numel", "array")

    def __init__(self, dtype, key: str, numel: int):
        self.dtype, self.key, self.numel, self.array = np.dtype(dtype), key, numel, None


def _index(value, what: str) -> int:
    """``value`` as a non-negative int (bools and other types refused)."""
    if type(value) is not int or value < 0:
        raise CheckpointError(f"{what} is {value!r}, not a non-negative integer")
    return value


def _rebuild_tensor(storage, offset, size, stride, *_ignored) -> LazyTensor:
    if not isinstance(storage, Storage):
        raise CheckpointError(f"a tensor is rebuilt from a {type(storage).__name__}, not a storage")
    if not isinstance(size, tuple) or not isinstance(stride, tuple) or len(size) != len(stride):
        raise CheckpointError(f"tensor of storage {storage.key}: size {size!r} / stride {stride!r}")
    size = tuple(_index(n, f"a size of storage {storage.key}'s tensor") for n in size)
    stride = tuple(_index(s, f"a stride of storage {storage.key}'s tensor") for s in stride)
    return LazyTensor(storage, _index(offset, f"storage {storage.key}'s offset"), size, stride)


def _rebuild_parameter(data, *_ignored) -> LazyTensor:
    if not isinstance(data, LazyTensor):
        raise CheckpointError(f"a parameter wraps a {type(data).__name__}, not a tensor")
    return data


class LazyTensor(Guarded):
    """A tensor view on a storage whose bytes may come later in the file (legacy format)."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage: Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    @property
    def numel(self) -> int:
        return math.prod(self.size)

    def check(self) -> None:
        """Refuse a tensor that reads outside its storage's bytes (or more elements than it has)."""
        a, key = self.storage.array, self.storage.key
        if a is None:
            raise CheckpointError(f"storage {key} has no data in the file (truncated?)")
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if self.numel and (last >= len(a) or self.numel > len(a)):
            raise CheckpointError(
                f"storage {key}: a tensor of shape {self.size} at offset {self.offset} reads past "
                f"its {len(a)} elements"
            )

    def numpy(self) -> np.ndarray:
        self.check()
        a = self.storage.array
        if self.numel == 0:
            return np.zeros(self.size, a.dtype)
        item = a.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            a[self.offset :], shape=self.size, strides=tuple(s * item for s in self.stride),
            writeable=False,
        )  # fmt: skip
        return np.array(view)


def _numpy_global(name: str):
    try:
        from numpy._core import multiarray  # NumPy 2
    except ImportError:  # NumPy 1
        from numpy.core import multiarray
    return getattr(multiarray, name)


class PlainUnpickler(pickle.Unpickler):
    """Plain data only: every global and every persistent id is refused."""

    def find_class(self, module: str, name: str):
        raise CheckpointError(
            f"refusing to load global {module}.{name}: nothing in a checkpoint is executed"
        )

    def persistent_load(self, pid):
        raise CheckpointError(f"unexpected persistent id {pid!r} outside the checkpoint's object")


class TensorUnpickler(PlainUnpickler):
    """Rebuilds tensors, typed storages, ordered dicts and NumPy arrays; refuses anything else."""

    _ALLOWED = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("collections", "OrderedDict"): OrderedDict,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def __init__(self, file, storages: dict[str, Storage]):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[module, name]
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in (
            "_reconstruct",
            "scalar",
        ):
            return _numpy_global(name)
        return super().find_class(module, name)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(f"unknown persistent id {pid!r}")
        _, dtype, key, _location, numel = pid[:5]
        if len(pid) > 5 and pid[5] is not None:
            raise CheckpointError(f"storage {key!r} is a view of another storage (not supported)")
        if dtype not in STORAGE_TYPES:
            raise CheckpointError(f"storage {key!r}: unsupported storage type {dtype!r}")
        if type(key) not in (str, int) or not str(key).isalnum():
            raise CheckpointError(f"storage key {key!r} is not a plain name")
        key = str(key)
        if key not in self._storages:
            self._storages[key] = Storage(dtype, key, _index(numel, f"storage {key}'s size"))
        elif self._storages[key].dtype != np.dtype(dtype):
            raise CheckpointError(f"storage {key} is declared with two types")
        return self._storages[key]


def load_pickle(f: io.BytesIO, unpickler, *args):
    """One pickle from ``f``: first parsed without being run (:mod:`pickletools`), then loaded by
    ``unpickler``.  The parse refuses what would make the loader allocate from a declared number:
    a memo index beyond the objects seen so far (the C unpickler grows its memo to the index)."""
    start, seen = f.tell(), 0
    for op, arg, _pos in pickletools.genops(f):
        if op.name in ("PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"):
            if int(arg) > seen:
                raise CheckpointError(f"a pickle memo index {arg} beyond its {seen} objects")
        if op.name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            seen += 1
    end = f.tell()
    f.seek(start)
    obj = unpickler(f, *args).load()
    if f.tell() != end:
        raise CheckpointError("a pickle ends where its parse did not")
    return obj
