"""Kernels from tensor expressions: one loop nest over the output, innermost dimension vectorized,
outer rows statically partitioned across tasks."""
from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from llvmlite import ir

from neo.ir import Graph
from neo.ir.types import dtype_name

from . import te
from .llvm_util import I32, I64, PTR, STORAGE, for_range, gep, lane_mask, masked_store, task_range
from .render import Renderer
from .te_ops import COMPUTES


@dataclass
class KernelContext:
    """What a kernel needs besides its graph inputs: constant tables and scratch."""

    n_inputs: int
    tables: list[np.ndarray] = field(default_factory=list)
    consts: dict[int, np.ndarray] = field(default_factory=dict)  # input position -> constant data
    _fresh: itertools.count = field(default_factory=itertools.count)
    _table_tensors: list = field(default_factory=list)

    def fresh(self) -> int:
        return next(self._fresh)

    def add_table(self, arr: np.ndarray) -> te.Tensor:
        arr = np.ascontiguousarray(arr)
        buf = self.n_inputs + len(self.tables)
        self.tables.append(arr)
        t = te.buffer_tensor(buf, tuple(arr.shape), dtype_name(arr.dtype))
        self._table_tensors.append(t)
        return t

    def const_of(self, i: int) -> np.ndarray:
        if i not in self.consts:
            raise ValueError("this lowering needs a constant input")
        return self.consts[i]


def build_body_expr(body: Graph, ctx: KernelContext, input_tensors: list[te.Tensor]
                    ) -> te.Tensor:
    """Inline every node of a fused body into one accessor for its (single) output."""
    env: dict[int, te.Tensor] = {id(v): t for v, t in zip(body.inputs, input_tensors)}
    for n in body.nodes:
        compute = COMPUTES.get(n.op)
        if compute is None:
            raise NotImplementedError(f"op {n.op} has no tensor-expression lowering")
        ins = []
        for v in n.inputs:
            if v.is_const:  # small constants folded into the body stay as tables
                ins.append(ctx.add_table(v.data))
            else:
                ins.append(env[id(v)])
        out = n.outputs[0]
        fn = compute(n.attrs, out.type, ins, ctx)
        env[id(out)] = te.Tensor(out.shape, out.dtype, _memoized(fn))
    return env[id(body.outputs[0])]


def _memoized(fn: Callable) -> Callable:
    """fn(idx), built once per index: a value several nodes of the body use (a DAG) is one
    expression object, not a copy per path (which grows exponentially along a chain)."""
    memo: dict[tuple, te.Expr] = {}

    def at(idx):
        e = memo.get(idx)
        if e is None:
            e = memo[idx] = fn(idx)
        return e

    return at


def emit_te_kernel(module: ir.Module, name: str, out_shape: tuple[int, ...], out_dtype: str,
                   expr_of: Callable, buf_dtypes: list[str], out_buf: int, vector_lanes: int
                   ) -> ir.Function:
    """`out[idx] = expr_of(idx)` for every idx of out_shape, as a task-partitioned kernel."""
    fn = ir.Function(module, ir.FunctionType(I32, [PTR, I32, I32]), name)
    fn.args[0].name, fn.args[1].name, fn.args[2].name = "args", "task", "ntasks"
    entry = fn.append_basic_block("entry")
    b = ir.IRBuilder(entry)
    if 0 in tuple(out_shape):  # an empty tensor: nothing to compute (and nothing to write)
        b.ret(I32(0))
        return fn
    bufs = [b.load(gep(b, fn.args[0], I64(i), PTR), typ=PTR, name=f"buf{i}")
            for i in range(len(buf_dtypes))]
    shape = tuple(out_shape) if out_shape else (1,)
    vars_ = [te.Var(f"i{d}") for d in range(len(shape))]
    expr = expr_of(tuple(vars_)) if out_shape else expr_of(())
    expr, shape = coalesce(expr, shape)
    rank = len(shape)
    inner = shape[-1]
    rows = int(np.prod(shape[:-1])) if rank > 1 else 1
    st = STORAGE[out_dtype]
    lanes = vector_lanes if inner >= vector_lanes > 1 else 1
    outp = bufs[out_buf]
    body_start = b.append_basic_block("body")
    b.branch(body_start)
    b.position_at_end(body_start)

    # what does not depend on the innermost index (a per-row value broadcast along the row,
    # such as a fused row reduction) is computed once per row, before the row's loop
    row_invariant = te.invariants(expr, frozenset((f"i{rank - 1}",)))

    def emit_row(row: ir.Value, j_lo: ir.Value, j_hi: ir.Value):
        env = {}
        rem = row
        for d in reversed(range(rank - 1)):
            env[f"i{d}"] = b.srem(rem, I64(shape[d])) if d > 0 else rem
            rem = b.sdiv(rem, I64(shape[d]))
        base = b.mul(row, I64(inner))
        if lanes > 1:
            n_full = b.add(j_lo, b.mul(b.sdiv(b.sub(j_hi, j_lo), I64(lanes)), I64(lanes)))
            r = Renderer(b, bufs, buf_dtypes, lanes, f"i{rank - 1}", entry)
            for x in row_invariant:
                r.render(x, env)
            hoisted = dict(r.scopes[0])  # they dominate the tail too; the loop's values do not
            with for_range(b, j_lo, n_full, lanes, "j") as j:
                env2 = {**env, f"i{rank - 1}": j, f"i{rank - 1}#base": j}
                v = r.vec(r.render(expr, env2))
                b.store(r.to_storage(v, out_dtype), gep(b, outp, b.add(base, j), st), align=1)
            # tail: one masked vector step
            left = b.sub(j_hi, n_full)
            with b.if_then(b.icmp_signed(">", left, I64(0))):
                r2 = Renderer(b, bufs, buf_dtypes, lanes, f"i{rank - 1}", entry, r.canon)
                r2.scopes = [dict(hoisted)]
                env2 = {**env, f"i{rank - 1}": n_full, f"i{rank - 1}#base": n_full,
                        f"i{rank - 1}#end": j_hi}
                v = r2.vec(r2.render(_mask_loads(expr, f"i{rank - 1}"), env2))
                masked_store(b, r2.to_storage(v, out_dtype), gep(b, outp, b.add(base, n_full), st),
                             lane_mask(b, left, lanes))
        else:
            r = Renderer(b, bufs, buf_dtypes, 1, None, entry, reduce_lanes=vector_lanes)
            for x in row_invariant:
                r.render(x, env)
            with for_range(b, j_lo, j_hi, 1, "j") as j:
                env2 = {**env, f"i{rank - 1}": j}
                v, _ = r.render(expr, env2)
                b.store(r.to_storage(v, out_dtype), gep(b, outp, b.add(base, j), st), align=1)

    if rows > 1:
        lo, hi = task_range(b, rows, fn.args[1], fn.args[2])
        with for_range(b, lo, hi, 1, "row") as row:
            emit_row(row, I64(0), I64(inner))
    else:
        lo, hi = task_range(b, inner, fn.args[1], fn.args[2], grain=max(lanes, 16))
        emit_row(I64(0), lo, hi)
    b.ret(I32(0))
    return fn


def coalesce(expr: te.Expr, shape: tuple[int, ...]) -> tuple[te.Expr, tuple[int, ...]]:
    """Merge trailing loop dimensions while every load reads them contiguously (e.g. the H and W
    of a channel concat), so rows are long and vectorize; the output is row-major either way."""
    expr, _, shape = te.merge_trailing(expr, [f"i{d}" for d in range(len(shape))], shape)
    return expr, tuple(shape)


def _mask_loads(expr: te.Expr, var: str) -> te.Expr:
    """Add `var < end` to the guard of every load that depends on var (for the vector tail)."""
    limit = te.Var(var + "#end")
    memo: dict[int, te.Expr] = {}  # by id: shared subexpressions stay shared

    def go(e):
        r = memo.get(id(e))
        if r is None:
            r = memo[id(e)] = go1(e)
        return r

    def go1(e):
        if isinstance(e, te.Load):
            idx = go(e.index)
            g = go(e.guard) if e.guard is not None else None
            if te.uses_var(e.index, var):
                g = te.and_(g, te.cmp("lt", te.Var(var), limit))
            return te.Load(e.buf, idx, e.dtype, g, e.fill)
        if isinstance(e, te.Bin):
            return te.Bin(e.op, go(e.a), go(e.b), e.dtype)
        if isinstance(e, te.Cmp):
            return te.Cmp(e.op, go(e.a), go(e.b))
        if isinstance(e, te.Un):
            return te.Un(e.op, go(e.a), e.attrs, e.dtype)
        if isinstance(e, te.Select):
            return te.Select(go(e.cond), go(e.a), go(e.b), e.dtype)
        if isinstance(e, te.Cast):
            return te.Cast(go(e.a), e.dtype)
        if isinstance(e, te.Reduce):
            return te.Reduce(e.op, e.vars, e.extents, go(e.body), e.dtype)
        return e

    return go(expr)
