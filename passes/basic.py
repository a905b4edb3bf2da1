"""Graph cleanups: constant folding, dead-code elimination, algebraic simplification."""
from __future__ import annotations

import numpy as np

from neo.ir import Graph, Node, run_reference
from neo.ir.rewrite import Rewriter, rewrite

# Folding a node whose inputs are all constant must not blow the params up: an `expand` or a
# `resize` of a small constant would store the large result. Above this, keep the node.
FOLD_LIMIT_BYTES = 1 << 24


def fold_constants(g: Graph) -> Graph:
    """op(const...) -> const, evaluated with the op's numpy reference."""

    def emit(rw: Rewriter, n: Node):
        ins = [rw.get(v) for v in n.inputs]
        if n.op == "fused" or not ins or not all(v.is_const for v in ins):
            return None
        if sum(o.type.nbytes for o in n.outputs) > max(FOLD_LIMIT_BYTES,
                                                       2 * sum(v.type.nbytes for v in ins)):
            return None
        outs = run_reference(n.op, n.attrs, [v.data for v in ins])
        return [rw.new.const(np.asarray(a).reshape(o.shape), o.name, o.dtype, o.type.quant)
                for a, o in zip(outs, n.outputs)]

    return rewrite(g, emit)


def eliminate_dead_code(g: Graph) -> Graph:
    """Drop nodes whose outputs nothing uses."""
    live = {id(v) for v in g.outputs}
    keep = []
    for n in reversed(g.nodes):
        if any(id(o) in live for o in n.outputs):
            keep.append(n)
            live.update(id(v) for v in n.inputs)
    keep_ids = {id(n) for n in keep}

    def emit(rw: Rewriter, n: Node):
        return [] if id(n) not in keep_ids else None

    out = rewrite(_Filtered(g, keep_ids), emit)
    return out


class _Filtered(Graph):
    """A view of g with only the kept nodes (so the rewriter never builds dead ones)."""

    def __init__(self, g: Graph, keep: set[int]):
        super().__init__(g.name, g.inputs, g.outputs, [n for n in g.nodes if id(n) in keep],
                         g.output_names)


def simplify(g: Graph) -> Graph:
    """Remove no-op data movement and merge chains of it."""

    def emit(rw: Rewriter, n: Node):
        x = rw.get(n.inputs[0]) if n.inputs else None
        out = n.outputs[0] if n.outputs else None
        # reshape(x) to x's own shape -> x; cast to the same dtype -> x; identity transpose -> x
        if n.op in ("reshape", "expand", "cast") and x.type == out.type:
            return [x]
        if n.op == "transpose" and tuple(n.attrs["perm"]) == tuple(range(x.type.rank)):
            return [x]
        if n.op == "slice" and out.type == x.type and all(s == 1 for s in n.attrs["steps"]):
            return [x]
        if n.op == "pad" and not any(n.attrs["pads"]):
            return [x]
        # reshape(reshape(x)) -> reshape(x)
        if n.op == "reshape" and x.producer is not None and x.producer.op == "reshape":
            inner = x.producer.inputs[0]
            return rw.copy(n, [inner])
        # transpose(transpose(x, p), q) -> transpose(x, p[q])
        if n.op == "transpose" and x.producer is not None and x.producer.op == "transpose":
            p, q = x.producer.attrs["perm"], n.attrs["perm"]
            perm = tuple(p[i] for i in q)
            inner = x.producer.inputs[0]
            if perm == tuple(range(len(perm))):
                return [inner]
            return rw.copy(n, [inner], {**n.attrs, "perm": perm})
        return None

    return rewrite(g, emit)
