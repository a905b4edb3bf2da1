"""Tensor-expression computes for the IR ops: `compute(attrs, out_type, inputs, ctx) -> fn(index)`.

`COMPUTES` maps each op name to its compute (codegen/registry.py is the lookup). A compute gets
accessors for its inputs (buffer loads, or a producer's inlined expression) and returns the
expression of one output element. `ctx.add_table(array)` adds a compile-time constant buffer.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from neo.ir import op_def
from neo.ir.ops_elementwise import BINARY, UNARY
from neo.ir.ops_nn import _spatial
from neo.ir.ops_tensor import resize_tables

from . import te
from .te import broadcast_index, const

# op name -> compute(attrs, out_type, input_accessors, ctx) -> (index -> Expr): the op as a
# tensor expression. Filled by the @register functions below and read by kernel_te, lower and
# codegen.registry; nothing outside this module adds to it.
COMPUTES: dict[str, Callable] = {}


def register(name: str):
    def deco(fn):
        op_def(name)  # an IR op of that name must exist
        if name in COMPUTES:
            raise ValueError(f"tensor-expression compute for {name!r} registered twice")
        COMPUTES[name] = fn
        return fn

    return deco


# -- elementwise ----------------------------------------------------------------------------------
def _unary_compute(name):
    defaults = UNARY[name][1]

    def compute(attrs, out, ins, ctx):
        kw = {k: attrs[k] for k in defaults}
        return lambda idx: te.unary(name, ins[0](idx), **kw)

    return compute


for _n in UNARY:
    register(_n)(_unary_compute(_n))

_CMP = {"equal": "eq", "less": "lt", "less_equal": "le", "greater": "gt", "greater_equal": "ge"}


def _binary_compute(name):
    def compute(attrs, out, ins, ctx):
        a, b = ins

        def fn(idx):
            x = a(broadcast_index(idx, a.shape, out.shape))
            y = b(broadcast_index(idx, b.shape, out.shape))
            if name in _CMP:
                return te.cmp(_CMP[name], x, y)
            return te.Bin(name, x, y, out.dtype if name not in ("and", "or", "xor") else "bool")

        return fn

    return compute


for _n in BINARY:
    register(_n)(_binary_compute(_n))


@register("where")
def _where(attrs, out, ins, ctx):
    c, a, b = ins
    return lambda idx: te.select(c(broadcast_index(idx, c.shape, out.shape)),
                                 a(broadcast_index(idx, a.shape, out.shape)),
                                 b(broadcast_index(idx, b.shape, out.shape)))


@register("cast")
def _cast(attrs, out, ins, ctx):
    # float -> int truncates toward zero (fptosi), as C, numpy and onnxruntime do
    return lambda idx: te.cast(ins[0](idx), out.dtype)


@register("copy")
def _copy(attrs, out, ins, ctx):
    return lambda idx: ins[0](idx)


@register("expand")
def _expand(attrs, out, ins, ctx):
    return lambda idx: ins[0](broadcast_index(idx, ins[0].shape, out.shape))


@register("batch_norm")
def _batch_norm(attrs, out, ins, ctx):
    # (x - mean) * scale / sqrt(var + eps) + bias per channel (dim 1). The pipelines decompose
    # batch_norm before codegen; this keeps a batch_norm that reaches a kernel correct whatever
    # its parameters are (constant tables or run-time buffers).
    x, scale, bias, mean, var = ins
    dt = out.dtype

    def fn(idx):
        c = (idx[1],)
        std = te.unary("sqrt", var(c) + te.Const(dt, float(attrs["epsilon"])))
        return te.Bin("div", (x(idx) - mean(c)) * scale(c), std, dt) + bias(c)

    return fn


# -- data movement --------------------------------------------------------------------------------
def _unflatten(flat: te.Expr, shape) -> tuple[te.Expr, ...]:
    out = []
    strides = te.row_major_strides(shape)
    for s, d in zip(strides, shape):
        out.append(const(0) if d == 1 else (flat // s) % d)
    return tuple(out)


@register("reshape")
def _reshape(attrs, out, ins, ctx):
    x = ins[0]
    ost = te.row_major_strides(out.shape)

    def fn(idx):
        flat = const(0)
        for i, s, d in zip(idx, ost, out.shape):
            if d != 1:
                flat = flat + i * s
        return x(_unflatten(flat, x.shape))

    return fn


@register("transpose")
def _transpose(attrs, out, ins, ctx):
    perm = attrs["perm"]

    def fn(idx):
        src = [None] * len(perm)
        for o, p in enumerate(perm):
            src[p] = idx[o]
        return ins[0](tuple(src))

    return fn


@register("concat")
def _concat(attrs, out, ins, ctx):
    ax = attrs["axis"]

    def fn(idx):
        expr = None
        offsets = np.cumsum([0] + [t.shape[ax] for t in ins])
        for k in reversed(range(len(ins))):
            sub = list(idx)
            sub[ax] = idx[ax] - int(offsets[k])
            guard = te.and_(te.cmp("ge", idx[ax], int(offsets[k])),
                            te.cmp("lt", idx[ax], int(offsets[k + 1])))
            val = ins[k].guarded(tuple(sub), guard, 0)
            expr = val if expr is None else te.select(guard, val, expr)
        return expr

    return fn


@register("slice")
def _slice(attrs, out, ins, ctx):
    st, sp = attrs["starts"], attrs["steps"]
    return lambda idx: ins[0](tuple(i * p + s for i, s, p in zip(idx, st, sp)))


@register("pad")
def _pad(attrs, out, ins, ctx):
    x = ins[0]
    r = len(x.shape)
    pads = attrs["pads"]
    mode = attrs["mode"]

    def fn(idx):
        src, guard = [], None
        for i in range(r):
            n = x.shape[i]
            j = idx[i] - pads[i]
            if pads[i] == 0 and pads[r + i] <= 0:
                src.append(j)
                continue
            if mode == "constant":
                guard = te.and_(guard, te.and_(te.cmp("ge", j, 0), te.cmp("lt", j, n)))
                src.append(j)
            elif mode == "edge":
                src.append(te.binop("max", te.binop("min", j, const(n - 1)), const(0)))
            elif mode == "reflect":
                # reflect without repeating the edge: period 2(n-1)
                per = max(2 * (n - 1), 1)
                k = ((j % per) + per) % per
                src.append(te.select(te.cmp("lt", k, n), k, const(per) - k) if n > 1 else const(0))
            else:  # wrap
                src.append(((j % n) + n) % n)
        return x.guarded(tuple(src), guard, attrs["value"])

    return fn


@register("gather")
def _gather(attrs, out, ins, ctx):
    x, ind = ins
    ax = attrs["axis"]
    k = len(ind.shape)

    def fn(idx):
        i = te.cast(ind(idx[ax:ax + k]), "index")
        i = te.select(te.cmp("lt", i, 0), i + x.shape[ax], i)
        # Out-of-range indices are an error in ONNX; clamp them so that bad run-time data can
        # never read outside the tensor.
        i = te.binop("max", te.binop("min", i, const(x.shape[ax] - 1)), const(0))
        return x(idx[:ax] + (i,) + idx[ax + k:])

    return fn


def _index_in(i: te.Expr, dim: int) -> te.Expr:
    """A run-time index into a dim of length `dim`: negative counts from the end; clamped so that
    bad data (an error in ONNX) can never read outside the tensor."""
    i = te.cast(i, "index")
    i = te.select(te.cmp("lt", i, 0), i + dim, i)
    return te.binop("max", te.binop("min", i, const(dim - 1)), const(0))


@register("gather_elements")
def _gather_elements(attrs, out, ins, ctx):
    x, ind = ins
    ax = attrs["axis"]
    return lambda idx: x(idx[:ax] + (_index_in(ind(idx), x.shape[ax]),) + idx[ax + 1:])


@register("gather_nd")
def _gather_nd(attrs, out, ins, ctx):
    x, ind = ins
    b = attrs["batch_dims"]
    lead = len(ind.shape) - 1
    k = ind.shape[-1]

    def fn(idx):
        where = tuple(_index_in(ind(idx[:lead] + (const(j),)), x.shape[b + j]) for j in range(k))
        return x(idx[:b] + where + idx[lead:])

    return fn


_SCATTER_COMBINE = {"add": "add", "mul": "mul", "max": "max", "min": "min"}


def _combine(reduction: str, acc: te.Expr, update: te.Expr) -> te.Expr:
    return update if reduction == "none" else te.binop(_SCATTER_COMBINE[reduction], acc, update)


@register("scatter_elements")
def _scatter_elements(attrs, out, ins, ctx):
    # Output element idx: fold in updates[p] for p = idx with p[axis] = 0, 1, ... (the order of
    # the updates) where indices[p] == idx[axis]; other coordinates must lie inside updates.
    x, ind, upd = ins
    ax, red = attrs["axis"], attrs["reduction"]

    def fn(idx):
        inside = None
        at = list(idx)
        for d, n in enumerate(upd.shape):
            if d != ax and n < out.shape[d]:
                inside = te.and_(inside, te.cmp("lt", idx[d], n))
                at[d] = te.binop("min", idx[d], const(n - 1))
        acc = x(idx)
        for k in range(upd.shape[ax]):
            p = tuple(at[:ax]) + (const(k),) + tuple(at[ax + 1:])
            hit = te.and_(inside, te.cmp("eq", _index_in(ind(p), x.shape[ax]), idx[ax]))
            acc = te.select(hit, _combine(red, acc, upd(p)), acc)
        return acc

    return fn


@register("scatter_nd")
def _scatter_nd(attrs, out, ins, ctx):
    x, ind, upd = ins
    red = attrs["reduction"]
    lead, k = ind.shape[:-1], ind.shape[-1]

    def fn(idx):
        acc = x(idx)
        for u in np.ndindex(*lead):
            u = tuple(const(i) for i in u)
            hit = None
            for j in range(k):
                hit = te.and_(hit, te.cmp("eq", _index_in(ind(u + (const(j),)), x.shape[j]),
                                          idx[j]))
            update = upd(u + tuple(idx[k:]))
            acc = update if hit is None and red == "none" else te.select(
                hit, _combine(red, acc, update), acc)
        return acc

    return fn


@register("resize")
def _resize(attrs, out, ins, ctx):
    x = ins[0]
    tabs = resize_tables(attrs, x.shape)
    # float64 where float32 cannot hold every value of the input dtype exactly
    compute_dt = "float64" if x.dtype in ("float64", "int32", "uint32", "int64", "uint64") \
        else "float32"
    axes = []
    for ax, tab in enumerate(tabs):
        if tab is None:
            continue
        idx_t, w_t, valid = tab
        axes.append((ax, ctx.add_table(idx_t.astype(np.int64)),
                     ctx.add_table(w_t.astype(np.dtype(compute_dt))), idx_t.shape[1],
                     None if valid.all() else ctx.add_table(valid.astype(np.bool_))))
    nearest = attrs["mode"] == "nearest"

    def fn(idx):
        terms = [(te.Const(compute_dt, 1.0), list(idx))]
        guard = None
        for ax, ti, tw, taps, tv in axes:
            new = []
            for wexpr, sub in terms:
                for t in range(taps):
                    s2 = list(sub)
                    s2[ax] = ti((idx[ax], const(t)))
                    wt = tw((idx[ax], const(t)))
                    new.append((wexpr if nearest else wexpr * te.cast(wt, compute_dt), s2))
            terms = new
            if tv is not None:
                guard = te.and_(guard, tv((idx[ax],)))
        if nearest:
            val = x(tuple(terms[0][1]))
        else:
            val = None
            for wexpr, sub in terms:
                t = wexpr * te.cast(x(tuple(sub)), compute_dt)
                val = t if val is None else val + t
            if x.dtype not in ("float32", "float64", "float16", "bfloat16"):
                # round half to even and saturate, as the ONNX reference (cubic overshoots)
                info = np.iinfo(x.dtype)
                val = te.unary("clip", te.unary("round", val), min=float(info.min),
                               max=float(info.max))
            val = te.cast(val, x.dtype)
        if guard is not None:
            val = te.select(guard, val, te.Const(x.dtype, attrs["extrapolation_value"]))
        return val

    return fn


# -- reductions and pooling -------------------------------------------------------------------
def _reduce(kind):
    def compute(attrs, out, ins, ctx):
        x = ins[0]
        axes = tuple(attrs["axes"])
        keep = attrs["keepdims"]

        def fn(idx):
            vars_ = tuple(f"r{ctx.fresh()}" for _ in axes)
            src, it = [], iter(idx)
            for d in range(len(x.shape)):
                if d in axes:
                    src.append(te.Var(vars_[axes.index(d)]))
                    if keep:
                        next(it)
                else:
                    src.append(next(it))
            body = x(tuple(src))
            if kind == "mean":
                acc_dt = body.dtype
                r = te.Reduce("sum", vars_, tuple(x.shape[a] for a in axes), body, acc_dt)
                n = math.prod(x.shape[a] for a in axes)
                return te.Bin("div", r, te.Const(acc_dt, n if acc_dt.startswith(("int", "uint"))
                                                 else float(n)), acc_dt)
            return te.Reduce(kind, vars_, tuple(x.shape[a] for a in axes), body, body.dtype)

        return fn

    return compute


for _k in ("sum", "mean", "max", "min", "prod"):
    register(f"reduce_{_k}")(_reduce(_k))


def channels_first(attrs, op: str) -> None:
    """Kernels compute channels-first data; passes/layout.py converts the rest before codegen."""
    if attrs.get("layout", "NCHW") != "NCHW":
        raise NotImplementedError(f"{op} in layout {attrs['layout']} reached codegen; the "
                                  "convert_layout pass makes every conv and pool NCHW first")


def _pool(kind):
    def compute(attrs, out, ins, ctx):
        channels_first(attrs, f"{kind}_pool")
        x = ins[0]
        k = tuple(attrs["kernel"])
        nsp = len(k)
        strides, dil, pads = _spatial(attrs, nsp)
        fill = float("-inf") if kind == "max" else 0.0
        if kind == "max" and x.dtype not in ("float32", "float64", "float16", "bfloat16"):
            fill = int(np.iinfo(x.dtype).min)

        def fn(idx):
            vars_ = tuple(f"k{ctx.fresh()}" for _ in range(nsp))
            src, guard = list(idx[:2]), None
            for i in range(nsp):
                pos = idx[2 + i] * strides[i] + te.Var(vars_[i]) * dil[i] - pads[i]
                src.append(pos)
                if pads[i] or (out.shape[2 + i] - 1) * strides[i] + (k[i] - 1) * dil[i] >= (
                        x.shape[2 + i] + pads[i]):  # windows can leave the input: bounds checks
                    guard = te.and_(guard, te.and_(te.cmp("ge", pos, 0),
                                                   te.cmp("lt", pos, x.shape[2 + i])))
            body = x.guarded(tuple(src), guard, fill)
            red = te.Reduce("max" if kind == "max" else "sum", vars_, k, body, body.dtype)
            if kind == "max":
                return red
            # divisor: window positions inside the input (or inside input+pads with
            # count_include_pad), computed per output position from the bounds.
            cnt = None
            for i in range(nsp):
                n = x.shape[2 + i]
                lo_b, hi_b = (-pads[i], n + pads[nsp + i]) if attrs["count_include_pad"] else (0, n)
                c = _count_in(idx[2 + i] * strides[i] - pads[i], k[i], dil[i], lo_b, hi_b, ctx)
                cnt = c if cnt is None else cnt * c
            return te.Bin("div", red, te.cast(cnt, body.dtype), body.dtype)

        return fn

    return compute


def _count_in(start, k, d, lo, hi, ctx):
    """Number of t in [0,k) with lo <= start + t*d < hi (as an index expression)."""
    total = const(0)
    for t in range(k):
        pos = start + t * d
        inside = te.and_(te.cmp("ge", pos, lo), te.cmp("lt", pos, hi))
        total = total + te.select(inside, const(1), const(0))
    return total


register("max_pool")(_pool("max"))
register("avg_pool")(_pool("avg"))


# -- convolution / matmul fallbacks (direct, for shapes the GEMM kernels do not take) ----------
@register("conv")
def _conv(attrs, out, ins, ctx):
    channels_first(attrs, "conv")
    x, w = ins[0], ins[1]
    bias = ins[2] if len(ins) > 2 else None
    g = attrs["groups"]
    nsp = len(x.shape) - 2
    strides, dil, pads = _spatial(attrs, nsp)
    cg = w.shape[1]
    ocg = w.shape[0] // g

    def fn(idx):
        n, oc = idx[0], idx[1]
        vars_ = tuple(f"c{ctx.fresh()}" for _ in range(nsp + (1 if cg > 1 else 0)))
        ic_local = te.Var(vars_[-1]) if cg > 1 else const(0)
        ic = (oc // ocg) * cg + ic_local if g > 1 else ic_local
        src, guard, wi = [n, ic], None, [oc, ic_local]
        for i in range(nsp):
            kv = te.Var(vars_[i])
            pos = idx[2 + i] * strides[i] + kv * dil[i] - pads[i]
            src.append(pos)
            wi.append(kv)
            if pads[i] or pads[nsp + i] or (out.shape[2 + i] - 1) * strides[i] + (
                    w.shape[2 + i] - 1) * dil[i] >= x.shape[2 + i]:
                guard = te.and_(guard, te.and_(te.cmp("ge", pos, 0), te.cmp("lt", pos, x.shape[2 + i])))
        prod = x.guarded(tuple(src), guard, 0.0) * w(tuple(wi))
        ext = tuple(w.shape[2:]) + ((cg,) if cg > 1 else ())
        red = te.Reduce("sum", vars_, ext, prod, out.dtype)
        return red + bias((oc,)) if bias is not None else red

    return fn


@register("matmul")
def _matmul(attrs, out, ins, ctx):
    a, b = ins
    ar, br = len(a.shape), len(b.shape)
    K = a.shape[-1]

    def fn(idx):
        kv = te.Var(f"m{ctx.fresh()}")
        batch = idx[:-2] if (ar > 1 and br > 1) else idx[:-1] if ar > 1 or br > 1 else ()
        if ar == 1:
            ai = (kv,)
        else:
            m = idx[-2] if br > 1 else idx[-1]
            ai = broadcast_index(batch, a.shape[:-2], batch_shape(out.shape, ar, br)) + (m, kv)
        if br == 1:
            bi = (kv,)
        else:
            n = idx[-1]
            bi = broadcast_index(batch, b.shape[:-2], batch_shape(out.shape, ar, br)) + (kv, n)
        return te.Reduce("sum", (kv.name,), (K,), a(ai) * b(bi), out.dtype)

    return fn


def batch_shape(out_shape, ar, br):
    if ar > 1 and br > 1:
        return out_shape[:-2]
    return out_shape[:-1] if (ar > 1 or br > 1) else ()




@register("conv_transpose")
def _conv_transpose(attrs, out, ins, ctx):
    channels_first(attrs, "conv_transpose")
    x, w = ins[0], ins[1]
    bias = ins[2] if len(ins) > 2 else None
    g = attrs["groups"]
    nsp = len(x.shape) - 2
    strides, dil, pads = _spatial(attrs, nsp)
    cin_g = x.shape[1] // g
    ocg = w.shape[1]

    def fn(idx):
        n, oc = idx[0], idx[1]
        vars_ = tuple(f"t{ctx.fresh()}" for _ in range(nsp + 1))
        icl = te.Var(vars_[-1])
        grp = oc // ocg if g > 1 else const(0)
        ic = grp * cin_g + icl if g > 1 else icl
        src, guard, wi = [n, ic], None, [ic, oc % ocg if g > 1 else oc]
        for i in range(nsp):
            kv = te.Var(vars_[i])
            t = idx[2 + i] + pads[i] - kv * dil[i]
            pos = t // strides[i] if strides[i] > 1 else t
            ok = te.and_(te.cmp("ge", t, 0), te.cmp("lt", pos, x.shape[2 + i]))
            if strides[i] > 1:
                ok = te.and_(ok, te.cmp("eq", t % strides[i], 0))
            guard = te.and_(guard, ok)
            src.append(pos)
            wi.append(kv)
        prod = x.guarded(tuple(src), guard, 0.0) * w(tuple(wi))
        red = te.Reduce("sum", vars_, tuple(w.shape[2:]) + (cin_g,), prod, out.dtype)
        return red + bias((oc,)) if bias is not None else red

    return fn


from . import te_quant  # noqa: F401  (the quantized ops' computes, registered above)
