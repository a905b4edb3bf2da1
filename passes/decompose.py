"""Composite ops expressed with simpler ones so fusion and the tensor-expression path cover them."""
from __future__ import annotations

from neo.ir import Graph, Node
from neo.ir.rewrite import Rewriter, rewrite


def decompose_softmax(g: Graph) -> Graph:
    """softmax(x) -> e / sum(e), e = exp(x - max(x)); log_softmax(x) -> y - log(sum(exp(y)))."""

    def emit(rw: Rewriter, n: Node):
        if n.op not in ("softmax", "log_softmax"):
            return None
        x = rw.get(n.inputs[0])
        ax = n.attrs["axis"] % x.type.rank
        G = rw.new
        m = G.op("reduce_max", x, axes=(ax,), keepdims=1, name=f"{n.name}.max", origin=n.origin)
        y = G.op("sub", x, m, name=f"{n.name}.sub", origin=n.origin)
        e = G.op("exp", y, name=f"{n.name}.exp", origin=n.origin)
        s = G.op("reduce_sum", e, axes=(ax,), keepdims=1, name=f"{n.name}.sum", origin=n.origin)
        name = n.outputs[0].name
        if n.op == "softmax":
            return list(G.add("div", [e, s], {}, n.name, n.origin, out_names=[name]).outputs)
        ls = G.op("log", s, name=f"{n.name}.log", origin=n.origin)
        return list(G.add("sub", [y, ls], {}, n.name, n.origin, out_names=[name]).outputs)

    return rewrite(g, emit)
