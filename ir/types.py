"""Tensor types: a static shape and a numpy dtype name."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# dtype names the IR knows, numpy spelling; bfloat16 comes from ml_dtypes when present.
DTYPES = (
    "float32", "float64", "float16", "bfloat16",
    "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "bool",
)
FLOAT_DTYPES = frozenset({"float32", "float64", "float16", "bfloat16"})
INT_DTYPES = frozenset({"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"})
SIGNED_DTYPES = frozenset({"int8", "int16", "int32", "int64"})


def np_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def dtype_name(dt) -> str:
    name = np.dtype(dt).name
    if name not in DTYPES:
        raise TypeError(f"unsupported dtype {name}; the IR supports {', '.join(DTYPES)}")
    return name


def itemsize(name: str) -> int:
    return 2 if name == "bfloat16" else np.dtype(name).itemsize


@dataclass(frozen=True)
class TensorType:
    shape: tuple[int, ...]
    dtype: str

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise TypeError(f"unknown dtype {self.dtype!r}")
        if any((not isinstance(d, int)) or d < 0 for d in self.shape):
            raise TypeError(f"shape {self.shape} must be non-negative ints (static shapes only)")

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.size * itemsize(self.dtype)

    def __str__(self) -> str:
        return f"{self.dtype}[{','.join(map(str, self.shape))}]"
