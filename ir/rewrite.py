"""Copying a graph node by node with substitutions: the way passes build their output graph."""
from __future__ import annotations

from collections.abc import Callable

from .graph import Graph, Node, Value


class Rewriter:
    """`emit(node, inputs)` -> list of new output Values, or None to copy the node unchanged."""

    def __init__(self, g: Graph):
        self.old = g
        self.new = Graph(g.name)
        self.map: dict[int, Value] = {}
        for v in g.inputs:
            nv = self.new.input(v.name, v.shape, v.dtype, v.type.quant)
            self.map[id(v)] = nv

    def get(self, v: Value) -> Value:
        return v if v.is_const else self.map[id(v)]

    def copy(self, n: Node, inputs: list[Value] | None = None, attrs: dict | None = None
             ) -> list[Value]:
        ins = inputs if inputs is not None else [self.get(v) for v in n.inputs]
        nn = self.new.add(n.op, ins, attrs if attrs is not None else n.attrs, n.name, n.origin,
                          out_names=[o.name for o in n.outputs])
        return list(nn.outputs)

    def run(self, emit: Callable[[Rewriter, Node], list[Value] | None]) -> Graph:
        for n in self.old.nodes:
            outs = emit(self, n)
            if outs is None:
                outs = self.copy(n)
            for o, no in zip(n.outputs, outs):
                self.map[id(o)] = no
        self.new.outputs = [self.get(v) for v in self.old.outputs]
        self.new.output_names = self.old.out_names()
        return self.new


def rewrite(g: Graph, emit: Callable[[Rewriter, Node], list[Value] | None]) -> Graph:
    return Rewriter(g).run(emit)
