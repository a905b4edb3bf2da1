"""Reader and writer of `compiled.params`, the weights file of a compiled artifact (format v1).

The layout is specified in docs/ARTIFACT_FORMAT.md; `runtime/neort.c` reads the same bytes and applies
the same checks, so a file that passes `read_params` also loads in the C runtime. Pure numpy.
"""

from __future__ import annotations

import math
import os
import struct
import tempfile
from pathlib import Path

import numpy as np

MAGIC = b"NEOPARAM"
FORMAT_VERSION = 1
ALIGN = 64
HEADER_NBYTES = 48
# magic, version, count, data_offset, data_nbytes, checksum, index_nbytes
_HEADER = struct.Struct("<8sIIQQQQ")

DTYPE_CODES: dict[str, int] = {
    "float32": 0,
    "float64": 1,
    "float16": 2,
    "bfloat16": 3,
    "int8": 4,
    "uint8": 5,
    "int16": 6,
    "uint16": 7,
    "int32": 8,
    "uint32": 9,
    "int64": 10,
    "uint64": 11,
    "bool": 12,
}
CODE_DTYPES: dict[int, str] = {code: name for name, code in DTYPE_CODES.items()}
DTYPE_ITEMSIZE: dict[str, int] = {
    "float32": 4, "float64": 8, "float16": 2, "bfloat16": 2, "int8": 1, "uint8": 1, "int16": 2,
    "uint16": 2, "int32": 4, "uint32": 4, "int64": 8, "uint64": 8, "bool": 1,
}

try:  # bfloat16 is not a numpy dtype; ml_dtypes provides one when installed
    import ml_dtypes

    BFLOAT16: np.dtype = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - depends on the environment
    BFLOAT16 = np.dtype(np.uint16)  # same bits, viewed as uint16


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype for an artifact dtype name (bfloat16 -> ml_dtypes.bfloat16 or uint16)."""
    if name not in DTYPE_CODES:
        raise ValueError(f"unknown dtype {name!r}; expected one of {', '.join(DTYPE_CODES)}")
    # explicit little-endian so a big-endian view never compares equal
    return BFLOAT16 if name == "bfloat16" else np.dtype(name).newbyteorder("<")


def dtype_name(dtype: np.dtype) -> str:
    """The artifact dtype name of a numpy dtype; ValueError for unsupported ones."""
    dtype = np.dtype(dtype)
    if dtype == BFLOAT16 and dtype.name != "uint16":
        return "bfloat16"
    if dtype.name in DTYPE_CODES and dtype.name != "bfloat16" and dtype.byteorder in "<=|":
        return dtype.name
    raise ValueError(f"dtype {dtype} cannot be stored in compiled.params")


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def checksum(data: memoryview | np.ndarray | bytes) -> int:
    """sum_i w[i] * (2i + 1) mod 2**64 over the little-endian u64 words w of `data`."""
    raw = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    raw = raw.reshape(-1).view(np.uint8)
    if raw.size % 8:
        raise ValueError(f"checksum needs a multiple of 8 bytes, got {raw.size}")
    words = raw.view("<u8")
    total = 0
    chunk = 1 << 20  # bounded temporaries for large weight files
    for start in range(0, words.size, chunk):
        w = words[start : start + chunk]
        weights = np.arange(start, start + w.size, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        # uint64 array arithmetic wraps modulo 2**64, which is exactly the definition
        total += int(np.sum(w * weights, dtype=np.uint64))
    return total % (1 << 64)


def write_params(path: str | os.PathLike, entries: dict[str, np.ndarray]) -> None:
    """Write `entries` (name -> array) as compiled.params; the same entries give identical bytes."""
    path = Path(path)
    names = sorted(entries)  # str order == UTF-8 byte order, which the C reader checks
    index = bytearray()
    blobs: list[tuple[int, bytes]] = []
    data_nbytes = 0
    for name in names:
        arr = np.asarray(entries[name])  # tobytes() below writes C order for any layout
        dname = dtype_name(arr.dtype)
        encoded = name.encode("utf-8")
        if not encoded or len(encoded) > 0xFFFF:
            raise ValueError(f"param name {name!r} must be 1..65535 bytes of UTF-8")
        if arr.ndim > 255:
            raise ValueError(f"param {name!r} has {arr.ndim} dimensions, at most 255 fit")
        blob = arr.tobytes()  # dtype_name admitted only little-endian or native (hosts are LE)
        index += struct.pack("<H", len(encoded)) + encoded
        index += struct.pack(f"<BB{arr.ndim}q", DTYPE_CODES[dname], arr.ndim, *arr.shape)
        index += struct.pack("<QQ", data_nbytes, len(blob))
        blobs.append((data_nbytes, blob))
        data_nbytes += _align(len(blob))
    data_offset = _align(HEADER_NBYTES + len(index))
    data = np.zeros(data_nbytes, dtype=np.uint8)
    for offset, blob in blobs:
        data[offset : offset + len(blob)] = np.frombuffer(blob, dtype=np.uint8)
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, len(names), data_offset, data_nbytes,
                          checksum(data), len(index))
    head = header + bytes(index)
    head += bytes(data_offset - len(head))

    # a reader never sees a half-written file: write beside the target, then rename over it
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(head)
            f.write(data.data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_params(path: str | os.PathLike, mmap: bool = True) -> dict[str, np.ndarray]:
    """Read and verify compiled.params; arrays are read-only views of a memory map when `mmap`."""
    path = Path(path)
    size = path.stat().st_size
    if size < HEADER_NBYTES:
        raise ValueError(f"{path} is truncated: {size} bytes, the header alone is {HEADER_NBYTES}")
    if mmap:
        buf = np.memmap(path, dtype=np.uint8, mode="r")
    else:
        buf = np.fromfile(path, dtype=np.uint8)
        buf.flags.writeable = False
    magic, version, count, data_offset, data_nbytes, stored, index_nbytes = _HEADER.unpack(
        buf[:HEADER_NBYTES].tobytes()
    )
    if magic != MAGIC:
        raise ValueError(f"{path} is not a neo params file (bad magic)")
    if version != FORMAT_VERSION:
        raise ValueError(f"{path} has format version {version}, this runtime reads 1")
    if data_offset % ALIGN or data_nbytes % ALIGN:
        raise ValueError(
            f"{path}: data_offset {data_offset} / data_nbytes {data_nbytes} are not multiples of 64"
        )
    if data_offset < HEADER_NBYTES or index_nbytes > data_offset - HEADER_NBYTES:
        raise ValueError(
            f"{path}: index of {index_nbytes} bytes does not fit before data_offset {data_offset}"
        )
    if data_offset + data_nbytes != size:
        what = "truncated" if size < data_offset + data_nbytes else "longer than declared"
        raise ValueError(f"{path} is {what}: {size} bytes, the header says "
                         f"{data_offset + data_nbytes}")

    index = buf[HEADER_NBYTES : HEADER_NBYTES + index_nbytes].tobytes()
    entries: list[tuple[str, str, tuple[int, ...], int, int]] = []
    pos = 0
    prev: bytes | None = None
    truncated = ValueError(
        f"{path}: index is truncated (declared {index_nbytes} bytes for {count} entries)"
    )
    for _ in range(count):
        if len(index) - pos < 2:
            raise truncated
        (name_len,) = struct.unpack_from("<H", index, pos)
        pos += 2
        if len(index) - pos < name_len + 2:
            raise truncated
        raw_name = index[pos : pos + name_len]
        name = raw_name.decode("utf-8", errors="replace")
        code, ndim = index[pos + name_len], index[pos + name_len + 1]
        pos += name_len + 2
        if len(index) - pos < 8 * ndim + 16:
            raise truncated
        if code not in CODE_DTYPES:
            raise ValueError(f"{path}: entry '{name}' has unknown dtype code {code}")
        dims = struct.unpack_from(f"<{ndim}q", index, pos)
        offset, nbytes = struct.unpack_from("<QQ", index, pos + 8 * ndim)
        pos += 8 * ndim + 16
        dname = CODE_DTYPES[code]
        problem = None
        if prev is not None and prev >= raw_name:
            problem = "is not sorted after the previous entry (or is a duplicate)"
        elif offset % ALIGN:
            problem = "has an offset that is not a multiple of 64"
        elif offset > data_nbytes or nbytes > data_nbytes - offset:
            problem = "lies outside the data region"
        elif any(d < 0 for d in dims) or math.prod(dims) * DTYPE_ITEMSIZE[dname] != nbytes:
            problem = "has nbytes that do not match its shape and dtype"
        if problem:
            raise ValueError(f"{path}: entry '{name}' {problem}")
        prev = raw_name
        entries.append((name, dname, tuple(dims), offset, nbytes))
    if pos != len(index):
        raise ValueError(f"{path}: index has {len(index) - pos} unused bytes after {count} entries")

    data = buf[data_offset : data_offset + data_nbytes]
    computed = checksum(data)
    if computed != stored:
        raise ValueError(f"{path} is corrupt: checksum mismatch (stored {stored:016x}, "
                         f"computed {computed:016x})")
    out: dict[str, np.ndarray] = {}
    for name, dname, dims, offset, nbytes in entries:
        out[name] = data[offset : offset + nbytes].view(numpy_dtype(dname)).reshape(dims)
    return out
