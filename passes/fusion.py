"""Operator fusion: groups nodes into kernels (`fused` nodes holding a body graph).

Rules (TVM's, by fusion kind):
- an elementwise/broadcast consumer takes a conv/matmul producer as its epilogue (one anchor per
  kernel; the epilogue is a chain whose other operands are whole buffers, or broadcast per channel;
  float32, or anything after an int32 accumulator: bias add, requantize, clamp; or after a
  float16 one, a cast to float16);
- an elementwise/broadcast consumer of the same shape takes a reduction as its epilogue;
- a consumer rendered from tensor expressions (kind <= REDUCTION) inlines injective producers;
- a value is inlined only into its single consumer and never when it is a graph output, except
  that a value all of whose consumers are in one group of row-wise ops (elementwise, broadcast,
  last-axis reductions, constant table lookups) joins that group, a reduction included when the
  group reads it as one value per row (an int8 softmax's row max and sum, and the reciprocal
  and shift computed from them, become one kernel with its output);
- `reshape` is never fused: it is a view of its input's memory (see codegen memory planning).
"""
from __future__ import annotations

from neo.codegen.registry import has_lowering, kernel_of
from neo.ir import FusionKind, Graph, Node, Value, op_def
from neo.ir.types import FLOAT_DTYPES

K = FusionKind


def _kind(n: Node) -> FusionKind:
    return op_def(n.op).kind


def _coalescable(v: Value, out_shape: tuple[int, ...]) -> bool:
    """v broadcast to out_shape is constant over all spatial dims, or varies over all of them."""
    sh = (1,) * (len(out_shape) - v.type.rank) + v.shape
    sp, osp = sh[2:], out_shape[2:]
    return all(d == 1 for d in sp) or tuple(sp) == tuple(osp)


def _matmul_epilogue_ok(v: Value, out_shape) -> bool:
    sh = (1,) * (len(out_shape) - v.type.rank) + v.shape
    return sh[-1] in (1, out_shape[-1])


def fuse_operators(g: Graph) -> Graph:
    users = g.consumers()
    outputs = {id(v) for v in g.outputs}
    group: dict[int, int] = {}  # node id -> group id
    members: dict[int, list[Node]] = {}
    anchor: dict[int, Node | None] = {}
    has_reduce: dict[int, bool] = {}
    for i, n in enumerate(g.nodes):
        group[id(n)] = i
        members[i] = [n]
        anchor[i] = n if _kind(n) == K.OUT_ELEMWISE_FUSABLE else None
        has_reduce[i] = _kind(n) == K.REDUCTION

    def single_use_by(v: Value, c: Node) -> bool:
        return id(v) not in outputs and all(u is c for u in users.get(v, []))

    def merge(src: int, dst: int):
        members[dst] = members[src] + members[dst]
        for m in members[src]:
            group[id(m)] = dst
        anchor[dst] = anchor[dst] or anchor[src]
        has_reduce[dst] = has_reduce[dst] or has_reduce[src]
        del members[src]

    for c in g.nodes:
        kc = _kind(c)
        if c.op == "reshape" or kc > K.REDUCTION or len(c.outputs) != 1:
            continue
        gc = group[id(c)]
        prods = [(v, v.producer) for v in c.inputs if v.producer is not None and not v.is_const]
        out = c.outputs[0]
        # 1. epilogue into conv / matmul
        if kc <= K.BROADCAST:
            for v, x in prods:
                gx = group[id(x)]
                a = anchor[gx]
                if a is None or gx == gc or not single_use_by(v, c) or v.shape != out.shape:
                    continue
                # float32 epilogues; an integer accumulator (conv_integer) takes its
                # requantize and the integer ops around it; an fp16 conv or matmul
                # (--precision fp16) its output's cast to float16 for the next one
                if out.dtype != "float32" and a.outputs[0].dtype not in ("int32", "float16"):
                    continue
                others = [u for u in c.inputs if u is not v]
                ok = all(u.is_const or u.producer is None or group[id(u.producer)] != gx
                         for u in others)
                if a.op not in ("matmul", "matmul_integer"):  # conv, winograd_output: over the plane
                    ok = ok and len(out.shape) >= 3 and all(_coalescable(u, out.shape) for u in others)
                else:
                    ok = ok and all(_matmul_epilogue_ok(u, out.shape) for u in others)
                if ok and len(members[gc]) == 1:
                    merge(gx, gc)
                    break
            if anchor[gc] is not None:
                continue
        # 2. reduction epilogue, 3. inline injective producers
        for v, x in prods:
            gx = group[id(x)]
            if gx == gc or not single_use_by(v, c) or x.op == "reshape" or len(x.outputs) != 1:
                continue
            if anchor[gx] is not None or anchor[gc] is not None:
                continue
            kx = _kind(x)
            if has_reduce[gx]:
                if kc <= K.BROADCAST and v.shape == out.shape and not has_reduce[gc]:
                    merge(gx, gc)
            elif kx <= K.INJECTIVE and x is members[gx][-1]:
                merge(gx, gc)
    # 4. a value all of whose consumers ended in one row-wise group joins it (consumers before
    # producers, so a whole DAG of per-row integer arithmetic can), a row reduction included
    # when the group reads it as one value per row of its output
    for x in reversed(g.nodes):
        gx = group[id(x)]
        if x is not members[gx][-1] or len(x.outputs) != 1 or anchor[gx] is not None:
            continue
        v = x.outputs[0]
        gcs = {group[id(u)] for u in users.get(v, [])}
        if id(v) in outputs or len(gcs) != 1 or not all(map(_rowwise, members[gx])):
            continue
        gc = gcs.pop()
        if gc == gx or anchor[gc] is not None or not all(map(_rowwise, members[gc])):
            continue
        # a value the group reads per row is computed once per row (hoisted); else recomputed
        # per use, which CSE merges in an elementwise group but not across a reduction's loop
        # and the output's (a float softmax's exp would run twice, once in the scalar sum)
        # Float row reductions keep their kernels: merged, a float softmax over rows of 144
        # ran 10% slower (its scalar sum loop inside the row loop), and it has ~4 kernels only.
        per_row = _per_row(v, members[gc]) and not (has_reduce[gx] and v.dtype in FLOAT_DTYPES)
        if per_row or not has_reduce[gx] and (len(users[v]) == 1 or not has_reduce[gc]):
            merge(gx, gc)
    return _build(g, group, members, anchor)


def _rowwise(n: Node) -> bool:
    """Rendered by tensor expressions and reading its input values at the output's index (up
    to broadcasting; a reduction: the output's index over the kept axes)."""
    if n.op == "reshape" or len(n.outputs) != 1 or kernel_of(n.op) is not None:
        return False
    k = _kind(n)
    if k <= K.BROADCAST:
        return True
    if k == K.REDUCTION:
        return "axes" in n.attrs and bool(n.attrs.get("keepdims"))
    # a lookup in a constant 1-D table: elementwise in its indices (TFLite's int8 softmax)
    return (n.op == "gather" and n.inputs[0].is_const and n.inputs[0].type.rank == 1)


def _per_row(v: Value, group: list[Node]) -> bool:
    """Whether the group reads v (a value [..., 1]) once per row of its output: every value in
    it has the output's leading dims, its reductions are over the last axis only, so v is read
    at (row, 0) whatever the innermost loop and reduction indices (codegen computes such a
    value once per row: kernel_te hoists it out of the row's loop, render out of a reduction)."""
    lead = group[-1].outputs[0].shape[:-1]
    if v.type.rank == 0 or v.shape[-1] != 1 or v.shape[:-1] != lead:
        return False
    for n in group:
        if n.outputs[0].shape[:-1] != lead:
            return False
        if _kind(n) == K.REDUCTION and tuple(n.attrs["axes"]) != (len(lead),):
            return False
    return True


def _build(g: Graph, group, members, anchor) -> Graph:
    from neo.ir.rewrite import Rewriter

    rw = Rewriter(g)
    order = {id(n): i for i, n in enumerate(g.nodes)}
    for gid in members:
        members[gid].sort(key=lambda m: order[id(m)])
    done: set[int] = set()
    for n in g.nodes:
        gid = group[id(n)]
        mem = members[gid]
        if n is not mem[-1]:
            continue  # groups are emitted at their root (last member in topological order)
        if gid in done:
            continue
        done.add(gid)
        od = op_def(n.op) if n.op != "reshape" else None
        if len(mem) == 1 and (od is None or not has_lowering(n.op)
                              and od.kind > K.OUT_ELEMWISE_FUSABLE):
            outs = rw.copy(n)
            for o, no in zip(n.outputs, outs):
                rw.map[id(o)] = no
            continue
        inside = {id(o) for m in mem for o in m.outputs}
        ext: list[Value] = []
        for m in mem:
            for v in m.inputs:
                if id(v) not in inside and all(v is not e for e in ext):
                    ext.append(v)
        body = Graph(f"{n.name}")
        bmap: dict[int, Value] = {}
        for i, v in enumerate(ext):
            bmap[id(v)] = body.input(f"in{i}", v.shape, v.dtype, v.type.quant)
        for m in mem:
            bn = body.add(m.op, [bmap[id(v)] for v in m.inputs], m.attrs, m.name, m.origin)
            for o, bo in zip(m.outputs, bn.outputs):
                bmap[id(o)] = bo
        body.outputs = [bmap[id(o)] for o in n.outputs]
        a = anchor[gid]
        fused = rw.new.add("fused", [rw.get(v) for v in ext],
                           {"body": body, "anchor": a.op if a is not None else None},
                           name=n.name, origin=n.origin, out_names=[o.name for o in n.outputs])
        for o, no in zip(n.outputs, fused.outputs):
            rw.map[id(o)] = no
    rw.new.outputs = [rw.get(v) for v in g.outputs]
    rw.new.output_names = g.out_names()
    return rw.new
