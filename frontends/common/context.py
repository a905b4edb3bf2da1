"""What a converter sees of the graph being built: `ConversionContext`, shared by every frontend.

One context per framework node: it adds IR nodes under the node's name and origin (so errors and
`--dump-ir` point back at the model), folds nodes whose inputs are all constants right away
(shape computations and weight transforms never reach the compiled graph), and raises the
conversion problems of Neo's four kinds. Frontends subclass it for their own helpers
(ONNX's optional outputs, PyTorch's type promotion).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np

from neo import ir
from neo.ir import Graph, Value

from .errors import (
    OperatorAttributeNotImplemented,
    OperatorAttributeRequired,
    OperatorAttributeValueNotValid,
)


def make_const(g: Graph, data: Any, name: str, dtype: str | None = None,
               quant: ir.QuantParams | None = None) -> Value:
    """`g.const`, keeping rank-0 arrays rank 0."""
    arr = np.asarray(data)
    v = g.const(arr, name, dtype, quant)
    if v.shape != arr.shape:
        # Graph.const goes through np.ascontiguousarray, which turns a scalar into shape (1,).
        fixed = v.data.reshape(arr.shape)
        fixed.setflags(write=False)
        v.data, v.type = fixed, ir.TensorType(tuple(arr.shape), v.dtype, v.type.quant)
    return v


class ConversionContext:
    """Builds the IR for one framework node `origin` (of op type `op_type`) into `g`."""

    def __init__(self, g: Graph, name: str, origin: str, op_type: str):
        self.g = g
        self.name = name  # base name of the IR values it makes
        self.origin = origin  # how messages name the framework node
        self.op_type = op_type

    # -- building ----------------------------------------------------------------------------------
    def op(self, op: str, *inputs: Value, **attrs) -> Value:
        """Add an IR node (single output); when every input is a constant, fold it to a constant."""
        return self.add(op, inputs, attrs)[0]

    def add(self, op: str, inputs: Sequence[Value], attrs: dict | None = None) -> list[Value]:
        node = self.g.add(op, inputs, attrs, name=self.name, origin=self.origin)
        if inputs and all(v.is_const for v in inputs):
            self.g.nodes.pop()
            arrays = ir.run_reference(op, node.attrs, [v.data for v in inputs])
            return [make_const(self.g, np.asarray(a).astype(ir.np_dtype(o.dtype)).reshape(o.shape),
                               self.name, None, o.type.quant)
                    for a, o in zip(arrays, node.outputs)]
        return list(node.outputs)

    def keep(self, op: str, *inputs: Value, **attrs) -> Value:
        """Add an IR node (single output) without folding it: a `dequantize` of quantized
        weights stays, so that passes/qdq.py can put the integers on an integer kernel."""
        return self.g.add(op, inputs, attrs, name=self.name, origin=self.origin).outputs[0]

    def const(self, data: Any, dtype: str | None = None) -> Value:
        return make_const(self.g, data, self.name, dtype)

    def scalar(self, value: float | bool, dtype: str) -> Value:
        """A rank-0 constant of `dtype` (for arithmetic with a value of that dtype)."""
        return make_const(self.g, np.asarray(value), self.name, dtype)

    def cast(self, x: Value, dtype: str) -> Value:
        return x if x.dtype == dtype else self.op("cast", x, to=dtype)

    def reshape(self, x: Value, shape: Sequence[int]) -> Value:
        shape = tuple(int(d) for d in shape)
        return x if x.shape == shape else self.op("reshape", x, shape=shape)

    def transpose(self, x: Value, perm: Sequence[int]) -> Value:
        perm = tuple(int(p) for p in perm)
        return x if perm == tuple(range(x.type.rank)) else self.op("transpose", x, perm=perm)

    def slice(self, x: Value, axis: int, start: int, end: int, step: int = 1) -> Value:
        """x[..., start:end:step, ...] along `axis` (bounds already clamped)."""
        if start == 0 and end == x.shape[axis] and step == 1:
            return x
        starts, ends, steps = [0] * x.type.rank, list(x.shape), [1] * x.type.rank
        starts[axis], ends[axis], steps[axis] = start, end, step
        return self.op("slice", x, starts=tuple(starts), ends=tuple(ends), steps=tuple(steps))

    def concat(self, xs: Sequence[Value], axis: int) -> Value:
        return xs[0] if len(xs) == 1 else self.op("concat", *xs, axis=axis)

    def add_all(self, *vs: Value | None) -> Value:
        """The sum of the values that are not None (at least one must be)."""
        out = None
        for v in vs:
            if v is not None:
                out = v if out is None else self.op("add", out, v)
        assert out is not None
        return out

    # -- operands that must be known at compile time -------------------------------------------------
    def constant(self, v: Value | Any, what: str) -> np.ndarray | None:
        """The data of an operand Neo needs at compile time (None stays None; Python values pass)."""
        if v is None:
            return None
        if not isinstance(v, Value):
            return np.asarray(v)
        if not v.is_const:
            raise OperatorAttributeNotImplemented(
                f"input {what} is computed at run time; Neo needs it constant (static shapes)",
                self.graph_inputs_of(v))
        return v.data

    def ints(self, v: Value | Any, what: str) -> list[int] | None:
        data = self.constant(v, what)
        return None if data is None else [int(d) for d in np.asarray(data).reshape(-1)]

    def floats(self, v: Value | Any, what: str) -> list[float] | None:
        data = self.constant(v, what)
        return None if data is None else [float(d) for d in np.asarray(data).reshape(-1)]

    def graph_inputs_of(self, v: Value) -> frozenset[str]:
        """The graph inputs `v` is computed from."""
        inputs = {id(i): i.name for i in self.g.inputs}
        found: set[str] = set()
        seen: set[int] = set()
        stack = [v]
        while stack:
            u = stack.pop()
            if id(u) in seen or u.is_const:
                continue
            seen.add(id(u))
            if id(u) in inputs:
                found.add(inputs[id(u)])
            elif u.producer is not None:
                stack.extend(u.producer.inputs)
        return frozenset(found)

    # -- problems (Neo's error kinds) ----------------------------------------------------------------
    def unsupported(self, reason: str) -> NoReturn:
        """Something valid that Neo does not implement (OperatorAttributeNotImplemented)."""
        raise OperatorAttributeNotImplemented(reason)

    def unsupported_attribute(self, attribute: str, value: Any, supported: str) -> NoReturn:
        raise OperatorAttributeNotImplemented(
            f"attribute {attribute}={value!r} is not implemented; supported: {supported}")

    def required(self, attribute: str) -> NoReturn:
        raise OperatorAttributeRequired(f"attribute {attribute} is required")

    def invalid(self, attribute: str, value: Any, expected: str) -> NoReturn:
        raise OperatorAttributeValueNotValid(
            f"attribute {attribute}={value!r} is not valid; expected {expected}")


def named_output(g: Graph, v: Value, name: str) -> Value:
    """`v` as the graph output `name`: renamed when it is free to take it (the importer reserves
    the output names with `g.unique` before converting, so no other value has it), else through a
    copy (an input, or a value already output under another name)."""
    if v.name == name:
        return v
    taken = any(o is v for o in g.outputs) or any(v is i for i in g.inputs)
    if not taken and (v.is_const or v.producer is not None):
        v.name = name
        return v
    out = g.add("copy", [v], name=name, origin=f"output {name}").outputs[0]
    out.name = name
    return out


def normalize_axis(axis: int, rank: int) -> int:
    """A non-negative axis; ValueError when out of range (rank-0 tensors take 0 and -1)."""
    r = max(rank, 1)
    if not -r <= axis < r:
        raise ValueError(f"axis {axis} is out of range for rank {rank}")
    return axis % r


def normalize_axes(axes: Sequence[int], rank: int) -> list[int]:
    return [normalize_axis(int(a), rank) for a in axes]
