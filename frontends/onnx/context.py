"""What a converter sees of the graph being built: `NodeContext`, plus ONNX value helpers."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import onnx
from onnx import numpy_helper

from neo import ir
from neo.ir import Graph, Value

from ..common.context import ConversionContext, make_const  # noqa: F401  (make_const: re-export)
from ..common.errors import OperatorAttributeNotImplemented

# A converter's problem in one node (an attribute value, or an input that must be constant, that Neo
# cannot handle): the driver collects these over the whole model and reports them together.
AttributeNotImplemented = OperatorAttributeNotImplemented


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


class NodeContext(ConversionContext):
    """One ONNX node being converted (see frontends/common/context.py for the building helpers)."""

    def __init__(self, g: Graph, node: onnx.NodeProto, origin: str, opset: int,
                 subgraph: Callable[[onnx.GraphProto, str], list[Value]] | None = None):
        # Output names as in the model; "" marks an optional output the model does not use.
        outputs = list(node.output)
        first = next((o for o in outputs if o), "")
        super().__init__(g, first or origin, origin, node.op_type)
        self.node = node
        self.opset = opset
        self.outputs = outputs
        self._subgraph = subgraph

    def subgraph(self, graph: onnx.GraphProto, prefix: str) -> list[Value]:
        """Convert a nested graph (an If branch) in place; its outputs' values."""
        if self._subgraph is None:
            self.unsupported("nested graphs are not converted here")
        return self._subgraph(graph, prefix)

    @property
    def requested_outputs(self) -> int:
        """How many outputs the model asks for (the index of the last used one, plus one)."""
        used = [i for i, o in enumerate(self.outputs) if o]
        return used[-1] + 1 if used else 0


def normalize_axis(axis: int, rank: int, cx: NodeContext | None = None) -> int:
    if not -rank <= axis < max(rank, 1):
        msg = f"axis {axis} is out of range for rank {rank}"
        if cx is not None:
            raise ValueError(f"{cx.op_type} {cx.origin}: {msg}")
        raise ValueError(msg)
    return axis % rank if rank else 0


def normalize_axes(axes: Sequence[int], rank: int) -> list[int]:
    return [normalize_axis(int(a), rank) for a in axes]
