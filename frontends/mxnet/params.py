"""A reader of MXNet's `.params` files (what `mx.nd.save` and Gluon's `export` write), with numpy
only, so that compiling an MXNet model does not need MXNet.

The format (MXNet 1.x `src/ndarray/ndarray.cc`, little-endian):

    u64 0x112 (list magic), u64 0 (reserved), u64 n, then n arrays, then u64 n_names and n_names
    names, each u64 length + UTF-8 bytes ("arg:NAME" / "aux:NAME" from export, bare names from
    `save_parameters`; no names at all for an unnamed list).

An array is `u32 magic`, then
    0xF993FAC9 (V2) or 0xF993FACA (V3, NumPy shape semantics): i32 storage type (0 dense);
        sparse types add a storage shape here; then the shape, i32 dev_type, i32 dev_id,
        i32 dtype code, (sparse: aux types and shapes), raw data;
    0xF993FAC8 (V1): the shape, context, dtype code, data;
    anything else (legacy, before V1): that u32 is ndim, then ndim u32 dims, context, dtype, data.
A shape is i32 ndim then ndim i64 dims. In V1/V2 ndim 0 means "no array" (nothing follows); in
V3 ndim -1 does, and ndim 0 is a scalar.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from neo.ir.errors import ModelLoadError, UnsupportedModelError, UnsupportedOp

LIST_MAGIC = 0x112
V1_MAGIC = 0xF993FAC8
V2_MAGIC = 0xF993FAC9
V3_MAGIC = 0xF993FACA
MAX_NDIM = 32

# mshadow type flags -> numpy dtypes (kFloat32 .. kBool; kBfloat16 = 12 has no numpy type)
DTYPE_CODES: dict[int, np.dtype] = {
    0: np.dtype("<f4"), 1: np.dtype("<f8"), 2: np.dtype("<f2"), 3: np.dtype("u1"),
    4: np.dtype("<i4"), 5: np.dtype("i1"), 6: np.dtype("<i8"), 7: np.dtype("?"),
}
KNOWN_UNSUPPORTED = {8: "int16", 9: "uint16", 10: "uint32", 11: "uint64", 12: "bfloat16"}
STORAGE_TYPES = {0: "default", 1: "row_sparse", 2: "csr"}


class _Reader:
    def __init__(self, data: bytes, path: Path):
        self.data = memoryview(data)
        self.pos = 0
        self.path = path

    def bad(self, what: str) -> ModelLoadError:
        return ModelLoadError(f"{self.path} is not a valid MXNet .params file: {what} "
                              f"(at byte {self.pos})",
                              hint="the weights must be the NAME-0000.params that Gluon's export "
                                   "or mx.nd.save wrote")

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise self.bad(f"truncated: {n} more bytes needed, {len(self.data) - self.pos} left")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def u32(self) -> int:
        return self.unpack("I")[0]

    def i32(self) -> int:
        return self.unpack("i")[0]

    def u64(self) -> int:
        return self.unpack("Q")[0]

    def shape(self) -> tuple[int, ...] | None:
        ndim = self.i32()
        if ndim == -1:
            return None
        if not 0 <= ndim <= MAX_NDIM:
            raise self.bad(f"an array has {ndim} dimensions")
        dims = self.unpack(f"{ndim}q") if ndim else ()
        if any(d < 0 for d in dims):
            raise self.bad(f"an array has the shape {list(dims)}")
        return tuple(int(d) for d in dims)

    def payload(self, shape: tuple[int, ...], code: int, index: int) -> np.ndarray:
        if code not in DTYPE_CODES and code not in KNOWN_UNSUPPORTED:
            raise self.bad(f"array #{index} has the dtype code {code}")
        if code not in DTYPE_CODES:
            raise UnsupportedModelError(
                [UnsupportedOp(f"array #{index} of {self.path.name}", 1, [],
                               reason=f"MXNet dtype {KNOWN_UNSUPPORTED[code]} is not supported; "
                                      "supported: float32, float64, float16, uint8, int32, int8, "
                                      "int64, bool")], what="parameter types")
        dtype = DTYPE_CODES[code]
        count = int(np.prod(shape, dtype=np.int64))
        raw = self.take(count * dtype.itemsize)
        return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))

    def array(self, index: int) -> np.ndarray | None:
        magic = self.u32()
        if magic in (V2_MAGIC, V3_MAGIC):
            stype = self.i32()
            if stype != 0:
                raise UnsupportedModelError(
                    [UnsupportedOp(f"array #{index} of {self.path.name}", 1, [],
                                   reason=f"{STORAGE_TYPES.get(stype, stype)} storage is not "
                                          "supported; save dense arrays (tostype('default'))")],
                    what="parameter storage types")
            shape = self.shape()
            if shape is None or (magic == V2_MAGIC and shape == ()):
                return None
        elif magic == V1_MAGIC:
            shape = self.shape()
            if not shape:
                return None
        else:  # legacy: the magic was ndim, dims are u32
            if magic > MAX_NDIM:
                raise self.bad(f"array #{index} starts with 0x{magic:08x}, no array magic")
            shape = tuple(int(d) for d in self.unpack(f"{magic}I")) if magic else ()
            if not shape:
                return None
        self.i32(), self.i32()  # context: dev_type, dev_id (the data is on the host in the file)
        return self.payload(shape, self.i32(), index)


def read_params(path: str | Path) -> dict[str, np.ndarray]:
    """{name: array} of a .params file, names with their "arg:"/"aux:" prefixes as stored."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelLoadError(f"cannot read MXNet weights {path}: {e.strerror or e}") from None
    r = _Reader(data, path)
    if len(data) < 24:
        raise r.bad(f"only {len(data)} bytes")
    magic, _reserved = r.u64(), r.u64()
    if magic != LIST_MAGIC:
        raise r.bad(f"it starts with 0x{magic:x}, not the NDArray list magic 0x112")
    n = r.u64()
    if n > len(data) // 8:
        raise r.bad(f"it claims {n} arrays")
    arrays = [r.array(i) for i in range(n)]
    count = r.u64()
    if count not in (0, n):
        raise r.bad(f"{n} arrays but {count} names")
    names = []
    for _ in range(count):
        length = r.u64()
        if length > len(data):
            raise r.bad(f"a name of {length} bytes")
        try:
            names.append(bytes(r.take(length)).decode("utf-8"))
        except UnicodeDecodeError:
            raise r.bad("a name is not UTF-8") from None
    if not names:
        raise r.bad("the arrays have no names (an unnamed list cannot be matched to the symbol)")
    if r.pos != len(data):
        raise r.bad(f"{len(data) - r.pos} bytes after the last name")
    return {name: a for name, a in zip(names, arrays) if a is not None}


def split_params(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{argument or auxiliary state name: array}: the "arg:"/"aux:" prefixes removed."""
    out = {}
    for name, arr in params.items():
        key = name.split(":", 1)[1] if name.startswith(("arg:", "aux:")) else name
        out[key] = arr
    return out


def write_params(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write `arrays` in the V2 format, as MXNet 1.x does (for tests and hand-made fixtures)."""
    codes = {dt: code for code, dt in DTYPE_CODES.items()}
    out = [struct.pack("<QQQ", LIST_MAGIC, 0, len(arrays))]
    for arr in arrays.values():
        a = np.ascontiguousarray(arr)
        dt = a.dtype.newbyteorder("<") if a.dtype.itemsize > 1 else a.dtype
        out.append(struct.pack("<Iii", V2_MAGIC, 0, a.ndim))
        out.append(struct.pack(f"<{a.ndim}q", *a.shape))
        out.append(struct.pack("<iii", 1, 0, codes[np.dtype(dt)]))
        out.append(a.astype(dt).tobytes())
    out.append(struct.pack("<Q", len(arrays)))
    for name in arrays:
        b = name.encode()
        out.append(struct.pack("<Q", len(b)) + b)
    Path(path).write_bytes(b"".join(out))
