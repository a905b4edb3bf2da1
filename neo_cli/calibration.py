"""Calibration and validation samples for `neo compile --quantize int8`: a directory of .npy
files or one .npz, streamed (memory-mapped arrays, or read sample by sample out of the .npz),
never all in memory.

Layouts:
- DIR/*.npy, one input: each file is one sample of the input's shape, or a stack of samples
  (a leading sample axis: [k, *shape], or [k, *shape[1:]] when the batch is 1); files in name
  order.
- DIR/<sample>/<input name>.npy, several inputs: one subdirectory per sample.
- FILE.npz: one array per input name, a stack of samples ([k, *shape], or [k, *shape[1:]]
  when the batch is 1) or one sample; every input the same number of samples.

Everything is checked before any sample is used (dtype, shape, the inputs all there); a NaN or
an infinity is found as the samples stream. Problems are one line naming the file, the input
and what was expected (UsageError: exit 2).
"""
from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import UsageError

InputSpec = tuple[str, tuple[int, ...], str]


def _samples_in(shape: tuple[int, ...], input_shape: tuple[int, ...], where: str, name: str,
                what: str) -> int:
    """How many samples an array of `shape` holds for an input of `input_shape`."""
    if tuple(shape) == tuple(input_shape):
        return 1
    if len(shape) == len(input_shape) + 1 and tuple(shape[1:]) == tuple(input_shape):
        return int(shape[0])
    if (input_shape and input_shape[0] == 1 and len(shape) == len(input_shape)
            and tuple(shape[1:]) == tuple(input_shape[1:])):
        return int(shape[0])
    raise UsageError(f"{what} {where}: input {name!r} has shape {list(shape)}; expected "
                     f"{list(input_shape)} (one sample) or [N, {', '.join(map(str, input_shape))}]"
                     " (N samples)")


def _check_dtype(dtype: np.dtype, expected: str, where: str, name: str, what: str) -> None:
    if np.dtype(dtype) != np.dtype(expected):
        raise UsageError(f"{what} {where}: input {name!r} is {np.dtype(dtype).name}; the model "
                         f"takes {expected} (convert it with arr.astype('{expected}'))")


def _sample(arr: np.ndarray, i: int, n: int, input_shape) -> np.ndarray:
    """Sample i of an array holding n of them, shaped as the input."""
    if n == 1 and tuple(arr.shape) == tuple(input_shape):
        return np.asarray(arr)
    return np.ascontiguousarray(arr[i]).reshape(input_shape)


def _read_header(f):
    """(shape, fortran order, dtype) of a .npy stream, leaving it at the data."""
    major, _ = np.lib.format.read_magic(f)
    read = (np.lib.format.read_array_header_1_0 if major == 1
            else np.lib.format.read_array_header_2_0)
    return read(f)


class _NpzMember:
    """A .npy inside a .npz, read sample by sample from the zip stream."""

    def __init__(self, zpath: Path, member: str):
        self.zpath, self.member = zpath, member
        with zipfile.ZipFile(zpath) as z, z.open(member) as f:
            shape, fortran, dtype = _read_header(f)
        if fortran:
            raise UsageError(f"{zpath}: array {member!r} is stored in Fortran order; save it "
                             "C-contiguous (np.ascontiguousarray)")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)

    def chunks(self, count: int, sample_shape: tuple[int, ...]) -> Iterator[np.ndarray]:
        nbytes = int(np.prod(sample_shape, dtype=np.int64)) * self.dtype.itemsize
        with zipfile.ZipFile(self.zpath) as z, z.open(self.member) as f:
            _read_header(f)
            for _ in range(count):
                buf = f.read(nbytes)
                if len(buf) != nbytes:
                    raise UsageError(f"{self.zpath}: array {self.member!r} is shorter than its "
                                     "header says (a damaged .npz)")
                yield np.frombuffer(buf, self.dtype)


class Samples:
    """A re-iterable stream of feed dicts (one per sample) from a path."""

    def __init__(self, path: Path, inputs: list[InputSpec], what: str = "--calibration"):
        self.path, self.inputs, self.what = Path(path), inputs, what
        if not self.path.exists():
            raise UsageError(f"{what} {path}: no such file or directory")
        if self.path.is_dir():
            self._scan_dir()
        elif self.path.suffix == ".npz":
            self._scan_npz()
        else:
            raise UsageError(f"{what} {path}: expected a directory of .npy files or an .npz file")
        if self.count == 0:
            raise UsageError(f"{what} {path}: no samples in it")

    # -- layouts ---------------------------------------------------------------------------------
    def _scan_dir(self) -> None:
        names = [n for n, _, _ in self.inputs]
        subdirs = sorted(p for p in self.path.iterdir() if p.is_dir())
        files = sorted(p for p in self.path.iterdir() if p.suffix == ".npy")
        self._items: list = []
        if len(names) == 1 and files:
            name, shape, dtype = self.inputs[0]
            for f in files:
                arr = self._open(f)
                _check_dtype(arr.dtype, dtype, str(f), name, self.what)
                n = _samples_in(arr.shape, shape, str(f), name, self.what)
                self._items.append(({name: f}, n))
        elif subdirs:
            for d in subdirs:
                got = {}
                for name, shape, dtype in self.inputs:
                    f = d / f"{name}.npy"
                    if not f.exists():
                        raise UsageError(f"{self.what} {d}: no {name}.npy (one .npy per input, "
                                         f"named after it: {', '.join(f'{n}.npy' for n in names)})")
                    arr = self._open(f)
                    _check_dtype(arr.dtype, dtype, str(f), name, self.what)
                    if tuple(arr.shape) != tuple(shape):
                        raise UsageError(f"{self.what} {f}: input {name!r} has shape "
                                         f"{list(arr.shape)}; expected {list(shape)}")
                    got[name] = f
                self._items.append((got, 1))
        else:
            layout = ("*.npy files, one sample or a stack of samples each" if len(names) == 1
                      else "one subdirectory per sample holding " +
                      ", ".join(f"{n}.npy" for n in names))
            raise UsageError(f"{self.what} {self.path}: no samples found; expected {layout}")
        self.count = sum(n for _, n in self._items)
        self._kind = "dir"

    def _open(self, f: Path) -> np.ndarray:
        try:
            return np.load(f, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise UsageError(f"{self.what} {f}: cannot read it as a .npy array ({e})") from None

    def _scan_npz(self) -> None:
        try:
            with zipfile.ZipFile(self.path) as z:
                members = {Path(m).stem: m for m in z.namelist() if m.endswith(".npy")}
        except (OSError, zipfile.BadZipFile) as e:
            raise UsageError(f"{self.what} {self.path}: not a readable .npz ({e})") from None
        self._members = {}
        counts = set()
        for name, shape, dtype in self.inputs:
            if name not in members:
                raise UsageError(f"{self.what} {self.path}: no array named {name!r} (keys: "
                                 f"{', '.join(sorted(members)) or 'none'}; expected the model's "
                                 f"input names: {', '.join(n for n, _, _ in self.inputs)})")
            m = _NpzMember(self.path, members[name])
            _check_dtype(m.dtype, dtype, str(self.path), name, self.what)
            counts.add(_samples_in(m.shape, shape, str(self.path), name, self.what))
            self._members[name] = m
        if len(counts) > 1:
            raise UsageError(f"{self.what} {self.path}: the inputs hold different numbers of "
                             f"samples ({sorted(counts)})")
        self.count = counts.pop()
        self._kind = "npz"

    # -- streaming -----------------------------------------------------------------------------
    def __call__(self) -> Iterator[dict[str, np.ndarray]]:
        shapes = {n: s for n, s, _ in self.inputs}
        index = 0
        if self._kind == "dir":
            for files, n in self._items:
                arrays = {name: self._open(f) for name, f in files.items()}
                for i in range(n):
                    feed = {name: _sample(a, i, n, shapes[name]) for name, a in arrays.items()}
                    self._check_finite(feed, index, files)
                    index += 1
                    yield feed
            return
        streams = {name: m.chunks(self.count, shapes[name]) for name, m in self._members.items()}
        for index in range(self.count):
            feed = {name: next(s).reshape(shapes[name]) for name, s in streams.items()}
            self._check_finite(feed, index, None)
            yield feed

    def _check_finite(self, feed: dict, index: int, files: dict | None) -> None:
        for name, a in feed.items():
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                where = str(files[name]) if files else str(self.path)
                bad = "NaN" if np.isnan(a).any() else "an infinity"
                raise UsageError(f"{self.what} {where}: sample {index} of input {name!r} has "
                                 f"{bad} in it; calibration needs finite values")
