"""What a converter sees of the graph being built: `NodeContext`, plus ONNX value helpers."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np
import onnx
from onnx import numpy_helper

from neo import ir
from neo.ir import Graph, Value


class AttributeNotImplemented(Exception):
    """An attribute value (or an input that must be constant) Neo cannot handle in one node.

    The driver collects these over the whole model and reports them together.
    """

    def __init__(self, reason: str, graph_inputs: frozenset[str] = frozenset()):
        super().__init__(reason)
        self.reason = reason
        # Graph inputs whose run-time values would make the input that must be constant known
        # (a caller that has those values can fold them and convert again: input specialization).
        self.graph_inputs = graph_inputs


def onnx_dtype(elem_type: int) -> str:
    """The IR dtype name of an ONNX `TensorProto.DataType`; TypeError when the IR has none."""
    name = onnx.TensorProto.DataType.Name(elem_type).lower() if elem_type else "undefined"
    try:
        np_type = onnx.helper.tensor_dtype_to_np_dtype(elem_type)
        return ir.dtype_name(np_type)
    except (KeyError, TypeError, ValueError):
        raise TypeError(f"ONNX element type {name} is not supported") from None


def attribute_value(attr: onnx.AttributeProto) -> Any:
    """A Python value for an ONNX attribute: ints, floats, str, tuples of them, or numpy arrays."""
    t = onnx.AttributeProto
    if attr.type == t.INT:
        return int(attr.i)
    if attr.type == t.FLOAT:
        return float(attr.f)
    if attr.type == t.STRING:
        return attr.s.decode("utf-8", "replace")
    if attr.type == t.INTS:
        return tuple(int(v) for v in attr.ints)
    if attr.type == t.FLOATS:
        return tuple(float(v) for v in attr.floats)
    if attr.type == t.STRINGS:
        return tuple(s.decode("utf-8", "replace") for s in attr.strings)
    if attr.type == t.TENSOR:
        return numpy_helper.to_array(attr.t)
    return onnx.helper.get_attribute_value(attr)  # graphs, sparse tensors, type protos


def make_const(g: Graph, data: np.ndarray | float, name: str, dtype: str | None = None
               ) -> Value:
    """`g.const`, keeping rank-0 arrays rank 0."""
    v = g.const(data, name, dtype)
    shape = np.shape(data)
    if v.shape != shape:
        # Graph.const goes through np.ascontiguousarray, which turns a scalar into shape (1,).
        fixed = v.data.reshape(shape)
        fixed.setflags(write=False)
        v.data, v.type = fixed, ir.TensorType(shape, v.dtype)
    return v


class NodeContext:
    """One ONNX node being converted: builds IR nodes with its origin and folds constant ones."""

    def __init__(self, g: Graph, node: onnx.NodeProto, origin: str, opset: int):
        self.g = g
        self.node = node
        self.origin = origin
        self.opset = opset
        self.op_type = node.op_type
        # Output names as in the model; "" marks an optional output the model does not use.
        self.outputs: list[str] = list(node.output)
        first = next((o for o in self.outputs if o), "")
        self.name = first or origin

    @property
    def requested_outputs(self) -> int:
        """How many outputs the model asks for (the index of the last used one, plus one)."""
        used = [i for i, o in enumerate(self.outputs) if o]
        return used[-1] + 1 if used else 0

    # -- building --------------------------------------------------------------------------------
    def op(self, op: str, *inputs: Value, **attrs) -> Value:
        """Add an IR node (single output); when every input is a constant, fold it to a constant."""
        return self.add(op, inputs, attrs)[0]

    def add(self, op: str, inputs: Sequence[Value], attrs: dict | None = None) -> list[Value]:
        node = self.g.add(op, inputs, attrs, name=self.name, origin=self.origin)
        if inputs and all(v.is_const for v in inputs):
            self.g.nodes.pop()
            arrays = ir.run_reference(op, node.attrs, [v.data for v in inputs])
            return [self.const(np.asarray(a).astype(ir.np_dtype(o.dtype)).reshape(o.shape))
                    for a, o in zip(arrays, node.outputs)]
        return list(node.outputs)

    def const(self, data: np.ndarray | float, dtype: str | None = None) -> Value:
        return make_const(self.g, data, self.name, dtype)

    def scalar(self, value: float | bool, dtype: str) -> Value:
        """A rank-0 constant of `dtype` (for arithmetic with a value of that dtype)."""
        return make_const(self.g, np.asarray(value), self.name, dtype)

    def cast(self, x: Value, dtype: str) -> Value:
        return x if x.dtype == dtype else self.op("cast", x, to=dtype)

    def reshape(self, x: Value, shape: Sequence[int]) -> Value:
        shape = tuple(int(d) for d in shape)
        return x if x.shape == shape else self.op("reshape", x, shape=shape)

    # -- constants the converter needs at compile time ---------------------------------------------
    def constant(self, v: Value | None, what: str) -> np.ndarray | None:
        """The data of an input that must be known at compile time (None stays None)."""
        if v is None:
            return None
        if not v.is_const:
            raise AttributeNotImplemented(
                f"input {what} is computed at run time; Neo needs it constant (static shapes)",
                self.graph_inputs_of(v))
        return v.data

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

    def ints(self, v: Value | None, what: str) -> list[int] | None:
        data = self.constant(v, what)
        return None if data is None else [int(d) for d in np.asarray(data).reshape(-1)]

    def floats(self, v: Value | None, what: str) -> list[float] | None:
        data = self.constant(v, what)
        return None if data is None else [float(d) for d in np.asarray(data).reshape(-1)]

    # -- errors ------------------------------------------------------------------------------------
    def unsupported(self, reason: str) -> NoReturn:
        raise AttributeNotImplemented(reason)

    def unsupported_attribute(self, attribute: str, value: Any, supported: str) -> NoReturn:
        raise AttributeNotImplemented(
            f"attribute {attribute}={value!r} is not implemented; supported: {supported}")


def normalize_axis(axis: int, rank: int, cx: NodeContext | None = None) -> int:
    if not -rank <= axis < max(rank, 1):
        msg = f"axis {axis} is out of range for rank {rank}"
        if cx is not None:
            raise ValueError(f"{cx.op_type} {cx.origin}: {msg}")
        raise ValueError(msg)
    return axis % rank if rank else 0


def normalize_axes(axes: Sequence[int], rank: int) -> list[int]:
    return [normalize_axis(int(a), rank) for a in axes]
