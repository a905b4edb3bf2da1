"""A reader for the subset of UBJSON (Universal Binary JSON, draft 12) that XGBoost writes.

Why our own: the PyPI readers do not fit. `py-ubjson` has had no release since 2020 and turns
every typed array into a Python list; `bjdata` reads BJData (a little-endian UBJSON dialect)
and, asked for big-endian UBJSON, rejects XGBoost's files, and its compiled extension is built
against NumPy 1. XGBoost's writer (`src/common/json.cc: UBJWriter`) uses a small, fixed part of
the format, which this module reads in about a hundred lines:

- values: `Z` null, `T`/`F` booleans, `i` int8, `U` uint8, `I` int16, `l` int32, `L` int64,
  `d` float32, `D` float64, `C` char, `S` string (an integer length, then UTF-8 bytes),
  `H` high-precision number (written as a string), `N` no-op (skipped);
- containers: `{` objects whose keys are an integer length and UTF-8 bytes, `[` arrays, both
  either closed by `}`/`]` or sized by `#` (XGBoost writes `[#L<count>`), and typed arrays
  `[$<type>#<count>` of fixed-size numbers, which become numpy arrays in one `frombuffer`;
- all numbers big-endian, as the specification says.

Anything else is a `UbjsonError` naming the byte offset.
"""
from __future__ import annotations

import struct
from typing import Any

import numpy as np

# fixed-size number markers -> big-endian numpy dtype
_NUMBERS = {
    b"i": np.dtype(">i1"), b"U": np.dtype(">u1"), b"I": np.dtype(">i2"), b"l": np.dtype(">i4"),
    b"L": np.dtype(">i8"), b"d": np.dtype(">f4"), b"D": np.dtype(">f8"),
}
_STRUCT = {m: struct.Struct(">" + c) for m, c in
           zip((b"i", b"U", b"I", b"l", b"L", b"d", b"D"), "bBhiqfd")}
_MAX_DEPTH = 64  # XGBoost models nest 6 deep; this only stops malicious recursion


class UbjsonError(ValueError):
    """The bytes are not UBJSON of the subset XGBoost writes; `.offset` is where reading failed."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} at byte {offset}")
        self.offset = offset


def loads(data: bytes | bytearray | memoryview) -> Any:
    """The value encoded in `data`: dicts, lists, str, int, float, bool, None and numpy arrays."""
    reader = _Reader(memoryview(data).cast("B"))
    value = reader.value(reader.marker(), 0)
    while reader.pos < len(reader.buf) and reader.buf[reader.pos:reader.pos + 1] == b"N":
        reader.pos += 1
    if reader.pos != len(reader.buf):
        raise UbjsonError("trailing bytes after the top-level value", reader.pos)
    return value


class _Reader:
    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, n: int) -> memoryview:
        end = self.pos + n
        if n < 0 or end > len(self.buf):
            raise UbjsonError(f"truncated: {n} more bytes needed", self.pos)
        chunk = self.buf[self.pos:end]
        self.pos = end
        return chunk

    def marker(self) -> bytes:
        while True:
            m = bytes(self.take(1))
            if m != b"N":  # no-op padding
                return m

    def number(self, m: bytes) -> int | float:
        st = _STRUCT[m]
        return st.unpack(self.take(st.size))[0]

    def count(self, m: bytes) -> int:
        if m not in (b"i", b"U", b"I", b"l", b"L"):
            raise UbjsonError(f"expected an integer length, got marker {m!r}", self.pos - 1)
        n = int(self.number(m))
        if n < 0:
            raise UbjsonError(f"negative length {n}", self.pos)
        return n

    def string(self) -> str:
        n = self.count(self.marker())
        try:
            return str(self.take(n), "utf-8")
        except UnicodeDecodeError:
            raise UbjsonError("string is not UTF-8", self.pos - n) from None

    def value(self, m: bytes, depth: int) -> Any:
        if m in _NUMBERS:
            return self.number(m)
        if m == b"S":
            return self.string()
        if m == b"H":
            text = self.string()
            try:
                return int(text) if text.lstrip("-").isdigit() else float(text)
            except ValueError:
                raise UbjsonError(f"bad high-precision number {text!r}", self.pos) from None
        if m == b"C":
            return str(self.take(1), "latin-1")
        if m in (b"T", b"F"):
            return m == b"T"
        if m == b"Z":
            return None
        if m in (b"[", b"{"):
            if depth >= _MAX_DEPTH:
                raise UbjsonError(f"nested deeper than {_MAX_DEPTH}", self.pos - 1)
            return self.array(depth + 1) if m == b"[" else self.object(depth + 1)
        raise UbjsonError(f"unknown marker {m!r}", self.pos - 1)

    def container_header(self) -> tuple[bytes | None, int | None]:
        """The optional `$type` and `#count` after `[` or `{`."""
        kind = count = None
        start = self.pos
        m = bytes(self.take(1))
        if m == b"$":
            kind = bytes(self.take(1))
            m = bytes(self.take(1))
            if m != b"#":
                raise UbjsonError("a typed container needs a count ('#')", self.pos - 1)
        if m == b"#":
            count = self.count(self.marker())
        else:
            self.pos = start
        return kind, count

    def array(self, depth: int) -> Any:
        kind, count = self.container_header()
        if kind is not None and kind in _NUMBERS:
            dt = _NUMBERS[kind]
            raw = self.take(count * dt.itemsize)
            return np.frombuffer(raw, dtype=dt).astype(dt.newbyteorder("="))
        items = []
        if count is not None:
            for _ in range(count):
                items.append(self.value(kind or self.marker(), depth))
            return items
        while True:
            m = self.marker()
            if m == b"]":
                return items
            items.append(self.value(m, depth))

    def object(self, depth: int) -> dict[str, Any]:
        kind, count = self.container_header()
        out: dict[str, Any] = {}
        if count is not None:
            for _ in range(count):
                key = self.string()
                out[key] = self.value(kind or self.marker(), depth)
            return out
        while True:
            m = self.marker()
            if m == b"}":
                return out
            self.pos -= 1
            key = self.string()
            out[key] = self.value(self.marker(), depth)
