"""What a converter sees of the graph being built: `NodeContext`, dtypes and type promotion."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np

from neo import ir
from neo.ir import Graph, Value
from neo.ir.types import FLOAT_DTYPES, INT_DTYPES

# TorchScript keeps dtypes as c10::ScalarType numbers.
SCALAR_TYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16",
                6: "float32", 7: "float64", 11: "bool", 15: "bfloat16"}


class AttributeNotImplemented(Exception):
    """An argument value (or a run-time value where Neo needs a constant) that a converter cannot
    handle in one node; the driver collects these over the whole model and reports them together."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


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


def make_const(g: Graph, data, name: str, dtype: str | None = None) -> Value:
    """`g.const` keeping rank-0 arrays rank 0."""
    arr = np.asarray(data)
    v = g.const(arr, name, dtype)
    if v.shape != arr.shape:
        fixed = v.data.reshape(arr.shape)
        fixed.setflags(write=False)
        v.data, v.type = fixed, ir.TensorType(tuple(arr.shape), v.dtype)
    return v


class NodeContext:
    """One PyTorch node being converted: builds IR nodes with its origin, folds constant ones."""

    def __init__(self, g: Graph, name: str, origin: str, kind: str, num_outputs: int = 1):
        self.g = g
        self.name = name
        self.origin = origin
        self.kind = kind
        self.num_outputs = num_outputs

    # -- building ----------------------------------------------------------------------------------
    def op(self, op: str, *inputs: Value, **attrs) -> Value:
        """Add an IR node (single output); when every input is a constant, fold it to a constant."""
        node = self.g.add(op, inputs, attrs, name=self.name, origin=self.origin)
        if inputs and all(v.is_const for v in inputs):
            self.g.nodes.pop()
            (arr,) = ir.run_reference(op, node.attrs, [v.data for v in inputs])
            out = node.outputs[0]
            return self.const(np.asarray(arr).astype(ir.np_dtype(out.dtype)).reshape(out.shape))
        return node.outputs[0]

    def const(self, data, dtype: str | None = None) -> Value:
        return make_const(self.g, data, self.name, dtype)

    def scalar(self, value, dtype: str) -> Value:
        """A rank-0 constant of `dtype`."""
        return make_const(self.g, np.asarray(value), self.name, dtype)

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

    def cast(self, x: Value, dtype: str) -> Value:
        return x if x.dtype == dtype else self.op("cast", x, to=dtype)

    def float(self, x: Value) -> Value:
        """`x` itself when floating point, else as float32 (true division, mean of ints)."""
        return x if x.dtype in FLOAT_DTYPES else self.cast(x, "float32")

    def reshape(self, x: Value, shape: Sequence[int]) -> Value:
        shape = tuple(int(d) for d in shape)
        return x if x.shape == shape else self.op("reshape", x, shape=shape)

    def transpose(self, x: Value, perm: Sequence[int]) -> Value:
        perm = tuple(perm)
        return x if perm == tuple(range(x.type.rank)) else self.op("transpose", x, perm=perm)

    def slice(self, x: Value, axis: int, start: int, end: int, step: int = 1) -> Value:
        """x[..., start:end:step, ...] along `axis` (bounds already clamped)."""
        if start == 0 and end == x.shape[axis] and step == 1:
            return x
        starts = [0] * x.type.rank
        ends = list(x.shape)
        steps = [1] * x.type.rank
        starts[axis], ends[axis], steps[axis] = start, end, step
        return self.op("slice", x, starts=tuple(starts), ends=tuple(ends), steps=tuple(steps))

    def concat(self, xs: Sequence[Value], axis: int) -> Value:
        return xs[0] if len(xs) == 1 else self.op("concat", *xs, axis=axis)

    # -- arguments ---------------------------------------------------------------------------------
    def dim(self, d: int, rank: int) -> int:
        """A non-negative axis (PyTorch allows -rank..rank-1; rank-0 tensors take 0 and -1)."""
        r = max(rank, 1)
        if not -r <= d < r:
            raise ValueError(f"dim {d} is out of range for rank {rank}")
        return d % r

    def dims(self, ds, rank: int) -> list[int]:
        if ds is None:
            return list(range(rank))
        if isinstance(ds, int):
            ds = [ds]
        return sorted({self.dim(int(d), rank) for d in ds})

    def constant(self, x: Value | Any, what: str) -> np.ndarray:
        """The data of an argument that must be known at compile time."""
        if isinstance(x, Value):
            if not x.is_const:
                self.unsupported(f"{what} is computed at run time; Neo needs it constant")
            return x.data
        return np.asarray(x)

    # -- errors ------------------------------------------------------------------------------------
    def unsupported(self, reason: str) -> NoReturn:
        raise AttributeNotImplemented(reason)

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
