"""The graph IR: values with static types, nodes that are built (and type-checked) in one step."""
from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .registry import infer_types, op_def
from .types import QuantParams, TensorType, dtype_name


class IRError(ValueError):
    """A malformed graph: the message names the node."""


class Value:
    """An SSA value: a graph input, a constant (param), or a node output."""

    __slots__ = ("data", "index", "name", "producer", "type")

    def __init__(self, name: str, type: TensorType, producer: Node | None = None, index: int = 0,
                 data: np.ndarray | None = None):
        self.name = name
        self.type = type
        self.producer = producer
        self.index = index
        self.data = data

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def is_const(self) -> bool:
        return self.data is not None

    def __repr__(self) -> str:
        return f"%{self.name}:{self.type}"


@dataclass(eq=False)
class Node:
    op: str
    inputs: tuple[Value, ...]
    attrs: dict[str, Any]
    outputs: tuple[Value, ...] = ()
    name: str = ""
    # Where the node came from in the user's model (framework node name, source line): for messages.
    origin: str = ""

    @property
    def output(self) -> Value:
        return self.outputs[0]

    def __repr__(self) -> str:
        return f"Node({self.name}: {self.op})"


@dataclass(eq=False)
class Graph:
    name: str = "main"
    inputs: list[Value] = field(default_factory=list)
    outputs: list[Value] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    # User-visible names of the outputs (the model's output names); defaults to the values' names.
    output_names: list[str] | None = None
    # Axis 0 of every input and output is a batch of independent rows (a tree ensemble's
    # samples): the runtime then runs any number of rows in chunks (compiled_model.json
    # "row_batch"). Set by the frontend; the compile driver carries it to the artifact.
    row_batch: bool = False
    _names: set[str] = field(default_factory=set, repr=False)
    _node_names: set[str] = field(default_factory=set, repr=False)
    _counter: Any = field(default_factory=itertools.count, repr=False)

    # -- naming ---------------------------------------------------------------------------------
    def unique(self, base: str, names: set[str] | None = None) -> str:
        names = self._names if names is None else names
        base = base or "v"
        name = base
        while name in names:
            name = f"{base}_{next(self._counter)}"
        names.add(name)
        return name

    def out_names(self) -> list[str]:
        return list(self.output_names) if self.output_names else [v.name for v in self.outputs]

    # -- building -------------------------------------------------------------------------------
    def input(self, name: str, shape: Iterable[int], dtype: str = "float32",
              quant: QuantParams | None = None) -> Value:
        v = Value(self.unique(name), TensorType(tuple(int(d) for d in shape), dtype, quant))
        if v.name != name:
            raise IRError(f"graph input name {name!r} is used twice")
        self.inputs.append(v)
        return v

    def const(self, data: np.ndarray | float, name: str = "const", dtype: str | None = None,
              quant: QuantParams | None = None) -> Value:
        arr = np.asarray(data)
        if dtype is not None:
            from .types import np_dtype

            arr = arr.astype(np_dtype(dtype))
        if not arr.flags.c_contiguous:  # (np.ascontiguousarray would make rank-0 arrays 1-D)
            arr = arr.copy()
        arr.setflags(write=False)
        return Value(self.unique(name), TensorType(tuple(arr.shape), dtype_name(arr.dtype), quant),
                     data=arr)

    def add(self, op: str, inputs: Iterable[Value], attrs: dict[str, Any] | None = None,
            name: str | None = None, origin: str = "", out_names: list[str] | None = None) -> Node:
        """Build a node: attributes get their defaults, output types are inferred here or it fails."""
        d = op_def(op)
        inputs = tuple(inputs)
        name = self.unique(name or op, self._node_names)
        lo, hi = d.num_inputs
        if len(inputs) < lo or (hi >= 0 and len(inputs) > hi):
            raise IRError(f"node {name} ({op}): takes {lo}..{hi if hi >= 0 else 'n'} inputs, "
                          f"got {len(inputs)}")
        for i, v in enumerate(inputs):
            if not isinstance(v, Value):
                raise IRError(f"node {name} ({op}): input {i} is {type(v).__name__}, not a Value")
        full = {**d.attrs, **(attrs or {})}
        try:
            types = infer_types(d, full, [v.type for v in inputs])
        except IRError:
            raise
        except (ValueError, TypeError, IndexError, KeyError) as e:
            ins = ", ".join(str(v.type) for v in inputs)
            raise IRError(f"node {name} ({op}) with inputs ({ins}): {e}") from None
        node = Node(op, inputs, full, (), name, origin)
        if out_names is None:
            out_names = [f"{name}:{i}" if len(types) > 1 else name for i in range(len(types))]
        outs = tuple(Value(self.unique(nm), t, node, i) for i, (nm, t) in enumerate(zip(out_names, types)))
        node.outputs = outs
        self.nodes.append(node)
        return node

    def op(self, op: str, *inputs: Value, name: str | None = None, origin: str = "", **attrs
           ) -> Value:
        """Shorthand for single-output ops: `g.op("relu", x)`."""
        return self.add(op, inputs, attrs, name, origin).outputs[0]

    # -- queries --------------------------------------------------------------------------------
    def consumers(self) -> dict[Value, list[Node]]:
        users: dict[Value, list[Node]] = {}
        for n in self.nodes:
            for v in n.inputs:
                users.setdefault(v, []).append(n)
        return users

    def constants(self) -> list[Value]:
        seen: dict[int, Value] = {}
        for n in self.nodes:
            for v in n.inputs:
                if v.is_const:
                    seen.setdefault(id(v), v)
        for v in self.outputs:
            if v.is_const:
                seen.setdefault(id(v), v)
        return list(seen.values())

    def op_histogram(self) -> dict[str, int]:
        h: dict[str, int] = {}
        for n in self.nodes:
            h[n.op] = h.get(n.op, 0) + 1
        return dict(sorted(h.items(), key=lambda kv: (-kv[1], kv[0])))

    def __str__(self) -> str:
        from .printer import format_graph

        return format_graph(self)
