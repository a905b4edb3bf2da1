"""What a converter sees of the graph being built: `NodeContext`, dtypes and type promotion."""
from __future__ import annotations

from typing import Any, NoReturn

import numpy as np

from neo import ir
from neo.ir import Graph, Value
from neo.ir.types import FLOAT_DTYPES, INT_DTYPES

from ..common.context import (  # noqa: F401  (make_const: re-export)
    ConversionContext,
    make_const,
    normalize_axis,
)
from ..common.errors import OperatorAttributeNotImplemented

# TorchScript keeps dtypes as c10::ScalarType numbers.
SCALAR_TYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16",
                6: "float32", 7: "float64", 11: "bool", 15: "bfloat16"}


# A converter's problem in one node: the driver collects these over the whole model and reports
# them together.
AttributeNotImplemented = OperatorAttributeNotImplemented


class Missing:
    """A result a converter does not compute (the indices of max_pool2d_with_indices, say): fine
    while nothing uses it; a node that does is reported with `reason`."""

    def __init__(self, reason: str):
        self.reason = reason

    def __repr__(self) -> str:
        return f"Missing({self.reason!r})"


def dtype_name(dtype: Any) -> str:
    """The IR dtype name of a torch.dtype or a TorchScript ScalarType number."""
    if isinstance(dtype, int) and not isinstance(dtype, bool):
        if dtype not in SCALAR_TYPES:
            raise AttributeNotImplemented(f"dtype number {dtype} is not supported")
        return SCALAR_TYPES[dtype]
    name = str(dtype).replace("torch.", "")
    if name not in ir.DTYPES:
        raise AttributeNotImplemented(f"dtype {name} is not supported")
    return name


def category(dtype: str) -> int:
    """bool < integer < floating point, the order of PyTorch's type promotion."""
    return 2 if dtype in FLOAT_DTYPES else 1 if dtype in INT_DTYPES else 0


def _scalar_category(x) -> int:
    return 0 if isinstance(x, bool) else 1 if isinstance(x, int) else 2


def result_dtype(*xs) -> str:
    """torch.result_type: tensors with dims decide; a 0-dim tensor or a Python number only raises
    the category (int tensor * 0.5 is float32)."""
    def best(dtypes):
        return max(dtypes, key=lambda d: (category(d), ir.itemsize(d)))

    dims = [x.dtype for x in xs if isinstance(x, Value) and x.type.rank > 0]
    zero = [x.dtype for x in xs if isinstance(x, Value) and x.type.rank == 0]
    nums = [x for x in xs if not isinstance(x, Value) and x is not None]
    out = best(dims) if dims else None
    if zero:
        z = best(zero)
        if out is None or category(z) > category(out):
            out = z
    if nums:
        c = max(_scalar_category(x) for x in nums)
        if out is None or c > category(out):
            out = ("bool", "int64", "float32")[c]
    return out or "float32"


class NodeContext(ConversionContext):
    """One PyTorch node being converted (frontends/common/context.py has the building helpers)."""

    def __init__(self, g: Graph, name: str, origin: str, kind: str, num_outputs: int = 1):
        super().__init__(g, name, origin, kind)
        self.kind = kind
        self.num_outputs = num_outputs

    def tensor(self, x, dtype: str | None = None) -> Value:
        """`x` (an IR value or a Python number) as an IR value of `dtype` (default: its own)."""
        if isinstance(x, Value):
            return x if dtype is None else self.cast(x, dtype)
        if dtype is None:
            dtype = ("bool", "int64", "float32")[_scalar_category(x)]
        return self.scalar(x, dtype)

    def promote(self, *xs) -> list[Value]:
        """The operands as IR values of their common PyTorch result dtype."""
        dt = result_dtype(*xs)
        return [self.tensor(x, dt) for x in xs]

    def float(self, x: Value) -> Value:
        """`x` itself when floating point, else as float32 (true division, mean of ints)."""
        return x if x.dtype in FLOAT_DTYPES else self.cast(x, "float32")

    # -- arguments ---------------------------------------------------------------------------------
    def dim(self, d: int, rank: int) -> int:
        """A non-negative axis (PyTorch allows -rank..rank-1; rank-0 tensors take 0 and -1)."""
        return normalize_axis(d, rank)

    def dims(self, ds, rank: int) -> list[int]:
        if ds is None:
            return list(range(rank))
        if isinstance(ds, int):
            ds = [ds]
        return sorted({self.dim(int(d), rank) for d in ds})

    def constant(self, x: Value | Any, what: str) -> np.ndarray:
        """The data of an argument that must be known at compile time."""
        if isinstance(x, Value) and not x.is_const:
            self.unsupported(f"{what} is computed at run time; Neo needs it constant")
        return super().constant(x, what)

    def unsupported_argument(self, name: str, value, supported: str) -> NoReturn:
        raise AttributeNotImplemented(
            f"argument {name}={value!r} is not implemented; supported: {supported}")


def ntuple(v, n: int) -> tuple[int, ...]:
    """PyTorch's `_ntuple`: an int or a 1-element list repeated n times, else the list itself."""
    if isinstance(v, (list, tuple)):
        v = [int(x) for x in v]
        if len(v) == 1:
            return tuple(v * n)
        if len(v) != n:
            raise ValueError(f"expected {n} values, got {v}")
        return tuple(v)
    return (int(v),) * n
