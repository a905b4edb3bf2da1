"""Renders tensor expressions into LLVM IR, scalar or `lanes`-wide along one loop variable.

A rendered value is uniform (a scalar, the same in every lane) or a vector. Loads whose address is
affine in the vector variable with unit stride become (masked) vector loads, other strides and
non-affine addresses become gathers, and addresses that do not depend on it stay scalar.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable

from llvmlite import ir

from . import math_table as mt
from . import te
from .llvm_util import (
    F32,
    I1,
    I16,
    I32,
    I64,
    REGISTER,
    STORAGE,
    for_range,
    gather,
    gep,
    intrinsic,
    iota,
    load_strided,
    masked_load,
    reg_type,
    splat,
)
from .llvm_util import const as lconst

IDENTITY = {"sum": 0.0, "prod": 1.0, "max": float("-inf"), "min": float("inf")}


WIDE_SUM_TERMS = 256  # float32 sums of at least this many terms accumulate in float64


class Interner:
    """One object per distinct expression, so the CSE tables compare keys by identity: two equal
    but separately built DAGs (a fused per-row chain, and its copy with masked loads for the
    vector tail) compare in time exponential in their depth under dataclass equality."""

    def __init__(self):
        self.by_id: dict[int, te.Expr] = {}
        self.table: dict[tuple, te.Expr] = {}
        self.keep: list[te.Expr] = []  # the objects whose ids by_id holds

    def __call__(self, e: te.Expr) -> te.Expr:
        c = self.by_id.get(id(e))
        if c is None:
            key = [type(e)]
            for n in _fields(type(e)):  # a loop, not a generator: one frame per level
                f = getattr(e, n)
                key.append(self(f) if isinstance(f, te.Expr) else f)
            c = self.table.setdefault(tuple(key), e)
            self.by_id[id(e)] = c
            self.keep.append(e)
        return c


@functools.cache
def _fields(cls) -> tuple[str, ...]:
    import dataclasses

    return tuple(f.name for f in dataclasses.fields(cls))


class Renderer:
    def __init__(self, b: ir.IRBuilder, bufs: list[ir.Value], buf_dtypes: list[str], lanes: int = 1,
                 vec_var: str | None = None, entry: ir.Block | None = None,
                 interner: Interner | None = None, reduce_lanes: int | None = None):
        self.canon = interner if interner is not None else Interner()
        # lanes for a reduction whose result is one value (not a vector over vec_var): its
        # terms are summed in vectors along the reduction's contiguous innermost variable
        self.reduce_lanes = reduce_lanes if reduce_lanes is not None else lanes
        self.b = b
        self.bufs = bufs
        self.buf_dtypes = buf_dtypes
        self.lanes = lanes
        self.vec_var = vec_var if lanes > 1 else None
        self.entry = entry
        self.scopes: list[dict] = [{}]

    # -- conversions between storage and registers -----------------------------------------------
    def to_register(self, v: ir.Value, dtype: str) -> ir.Value:
        b = self.b
        lanes = v.type.count if isinstance(v.type, ir.VectorType) else 1
        if dtype == "float16":
            return b.fpext(v, reg_type("float32", lanes))
        if dtype == "bfloat16":
            wide = b.shl(b.zext(v, reg_type("int32", lanes)), _splat_const(I32, 16, lanes))
            return b.bitcast(wide, reg_type("float32", lanes))
        if dtype == "bool":
            return b.icmp_unsigned("!=", v, _splat_const(STORAGE["bool"], 0, lanes))
        return v

    def to_storage(self, v: ir.Value, dtype: str) -> ir.Value:
        b = self.b
        lanes = v.type.count if isinstance(v.type, ir.VectorType) else 1
        st = STORAGE[dtype] if lanes == 1 else ir.VectorType(STORAGE[dtype], lanes)
        if dtype == "float16":
            return b.fptrunc(v, st)
        if dtype == "bfloat16":
            # round to nearest even on the upper 16 bits
            bits = b.bitcast(v, reg_type("int32", lanes))
            lsb = b.and_(b.lshr(bits, _splat_const(I32, 16, lanes)), _splat_const(I32, 1, lanes))
            rounded = b.add(bits, b.add(_splat_const(I32, 0x7FFF, lanes), lsb))
            return b.trunc(b.lshr(rounded, _splat_const(I32, 16, lanes)), st)
        if dtype == "bool":
            return b.zext(v, st)
        return v

    # -- CSE scopes -------------------------------------------------------------------------------
    def _lookup(self, e):
        for s in reversed(self.scopes):
            if e in s:
                return s[e]
        return None

    def vec(self, rv) -> ir.Value:
        v, is_vec = rv
        return v if is_vec or self.lanes == 1 else splat(self.b, v, self.lanes)

    # -- rendering ----------------------------------------------------------------------------------
    def render(self, e: te.Expr, env: dict[str, ir.Value]):
        """Returns (value, is_vector)."""
        e = self.canon(e)
        hit = self._lookup(e)
        if hit is not None:
            return hit
        out = self._render(e, env)
        self.scopes[-1][e] = out
        return out

    def _render(self, e: te.Expr, env):
        b = self.b
        if isinstance(e, te.Const):
            return lconst(e.dtype, e.value), False
        if isinstance(e, te.Var):
            base = env[e.name]
            if isinstance(base.type, ir.VectorType):  # a value bound per lane (the accumulator)
                return base, True
            if e.name == self.vec_var:
                return b.add(splat(b, base, self.lanes), iota(self.lanes)), True
            return base, False
        if isinstance(e, te.Bin):
            if (e.op == "add" and isinstance(e.a, te.Bin) and e.a.op == "rshift_away"
                    and isinstance(e.b, te.Const)):  # a requantize's zero point: folded in
                (x, vx), (y, vy) = self.render(e.a.a, env), self.render(e.a.b, env)
                if vx != vy:
                    x, y = self.vec((x, vx)), self.vec((y, vy))
                return mt.rshift_away(b, x, y, int(e.b.value)), vx or vy
            (x, vx), (y, vy) = self.render(e.a, env), self.render(e.b, env)
            if vx != vy:
                x, y = self.vec((x, vx)), self.vec((y, vy))
            return mt.binary(b, e.op, x, y, e.a.dtype), vx or vy
        if isinstance(e, te.Cmp):
            (x, vx), (y, vy) = self.render(e.a, env), self.render(e.b, env)
            if vx != vy:
                x, y = self.vec((x, vx)), self.vec((y, vy))
            return mt.compare(b, e.op, x, y, e.a.dtype), vx or vy
        if isinstance(e, te.Un):
            x, vx = self.render(e.a, env)
            return mt.unary(b, e.op, x, e.dtype, dict(e.attrs)), vx
        if isinstance(e, te.Select):
            c, vc = self.render(e.cond, env)
            x, vx = self.render(e.a, env)
            y, vy = self.render(e.b, env)
            if vc or vx or vy:
                c, x, y = self.vec((c, vc)), self.vec((x, vx)), self.vec((y, vy))
            return b.select(c, x, y), vc or vx or vy
        if isinstance(e, te.Cast):
            narrowed = self._narrow_saturating(e, env)
            if narrowed is not None:
                return narrowed, True
            x, vx = self.render(e.a, env)
            return self.cast(x, e.a.dtype, e.dtype), vx
        if isinstance(e, te.Load):
            return self.load(e, env)
        if isinstance(e, te.Reduce):
            return self.reduce(e, env)
        raise TypeError(f"cannot render {type(e).__name__}")

    def _narrow_saturating(self, e: te.Cast, env) -> ir.Value | None:
        """int8 of an int32 clipped to [-128, 127], 16 lanes on AVX-512: one saturating
        vpmovsdb (LLVM 22 clamps with vpmaxsd, narrows with vpmovusdb and flips the sign bit:
        four instructions for a requantize's last step). None where it does not apply."""
        a = e.a
        if not (e.dtype == "int8" and a.dtype == "int32" and isinstance(a, te.Un)
                and a.op == "clip" and self.lanes == 16
                and getattr(self.b.module, "neo_avx512", False)):
            return None
        bounds = dict(a.attrs)
        if bounds.get("min") != -128 or bounds.get("max") != 127:
            return None
        x, vx = self.render(a.a, env)
        if not vx:
            return None
        i8x16 = ir.VectorType(ir.IntType(8), 16)
        return intrinsic(self.b, "llvm.x86.avx512.mask.pmovs.db.512",
                         [x, ir.Constant(i8x16, None), ir.Constant(I16, -1)], ret=i8x16,
                         overload=[])

    def cast(self, x: ir.Value, src: str, dst: str) -> ir.Value:
        b = self.b
        lanes = x.type.count if isinstance(x.type, ir.VectorType) else 1
        rt = reg_type(dst, lanes)
        fs, fd = src in ("float32", "float64", "float16", "bfloat16"), dst in (
            "float32", "float64", "float16", "bfloat16")
        if src == dst:
            return x
        if dst == "bool":
            if fs:
                return b.fcmp_unordered("!=", x, ir.Constant(x.type, None))
            return b.icmp_unsigned("!=", x, ir.Constant(x.type, None))
        if fs and fd:
            if x.type == rt:
                out = x
            elif _width(x.type) < _width(rt):
                out = b.fpext(x, rt)
            else:
                out = b.fptrunc(x, rt)
            if dst in ("float16", "bfloat16"):  # round to the narrow type, keep f32 registers
                out = self.to_register(self.to_storage(out, dst), dst)
            return out
        if fs:
            return b.fptoui(x, rt) if dst.startswith("u") else b.fptosi(x, rt)
        if fd:
            out = b.uitofp(x, rt) if src.startswith("u") or src == "bool" else b.sitofp(x, rt)
            if dst in ("float16", "bfloat16"):
                out = self.to_register(self.to_storage(out, dst), dst)
            return out
        sw, dw = _width(x.type), _width(rt)
        if sw == dw:
            return x
        if sw > dw:
            return b.trunc(x, rt)
        return b.zext(x, rt) if src.startswith("u") or src == "bool" else b.sext(x, rt)

    def load(self, e: te.Load, env):
        b = self.b
        dt = self.buf_dtypes[e.buf]
        st = STORAGE[dt]
        ptr = self.bufs[e.buf]
        depends = self.vec_var is not None and (te.uses_var(e.index, self.vec_var) or (
            e.guard is not None and te.uses_var(e.guard, self.vec_var)))
        fill = lconst(e.dtype, e.fill)
        if not depends:
            idx, _ = self.render(e.index, env)
            if e.guard is None:
                return self.to_register(b.load(gep(b, ptr, idx, st), typ=st), dt), False
            g, _ = self.render(e.guard, env)
            safe = b.select(g, idx, I64(0))
            v = self.to_register(b.load(gep(b, ptr, safe, st), typ=st), dt)
            return b.select(g, v, fill), False
        lanes = self.lanes
        vt = ir.VectorType(st, lanes)
        mask = None
        aff = te.affine(e.index)
        contiguous = aff is not None and aff[0].get(self.vec_var, 0) == 1
        if e.guard is not None and contiguous and not te.uses_var(e.guard, self.vec_var):
            # A guard that is the same for every lane (concat's input ranges, padding rows):
            # branch on it instead of masking; LLVM unswitches the loop on it.
            g, _ = self.render(e.guard, env)
            base, _ = self.render(_at_lane0(e.index, self.vec_var), env)
            p = gep(b, ptr, base, st)
            fillv = splat(b, fill, lanes)
            with b.if_else(g) as (then, other):
                with then:
                    v1 = self.to_register(b.load(p, typ=vt, align=_align(st)), dt)
                    bt = b.block
                with other:
                    bo = b.block
            phi = b.phi(v1.type)
            phi.add_incoming(v1, bt)
            phi.add_incoming(fillv, bo)
            return phi, True
        uniform = None
        if e.guard is not None:
            # Branch on the conjuncts that are the same for every lane (a padded row) and mask
            # only with the others. A mask `splat(row guard) & per-lane guard` folds to
            # `splat(c) & constant` in a vector tail, and LLVM 22 miscompiles such a masked load
            # when it splits it across registers (16 floats on AVX2, 8 doubles or int64s on
            # AVX2): a half whose constant is all false becomes an unmasked load (reading past
            # the buffer, and its lanes stored instead of the fill).
            parts = te.conjuncts(e.guard)
            lane_parts = [c for c in parts if te.uses_var(c, self.vec_var)]
            if lane_parts and len(lane_parts) < len(parts):
                uniform, _ = self.render(functools.reduce(te.and_, [
                    c for c in parts if not te.uses_var(c, self.vec_var)]), env)
            mask = self.vec(self.render(functools.reduce(te.and_, lane_parts or parts), env))
        if contiguous:
            base, _ = self.render(_at_lane0(e.index, self.vec_var), env)
            p = gep(b, ptr, base, st)
            if mask is None:
                v = b.load(p, typ=vt, align=_align(st))
            else:
                pas = ir.Constant(vt, None)
                v = self._where(uniform, lambda: masked_load(b, p, st, mask, pas), vt)
            v = self.to_register(v, dt)
        elif (mask is None and aff is not None and 2 <= aff[0].get(self.vec_var, 0) <= 4
              and lanes >= 4):
            # Small constant stride (stride-2 convs and pools): load the covering span as
            # `stride` vectors and pick every stride-th element, instead of a gather. The last
            # vector is masked to the elements actually needed, so nothing past them is read.
            c = aff[0][self.vec_var]
            base, _ = self.render(_at_lane0(e.index, self.vec_var), env)
            v = load_strided(b, ptr, base, c, lanes, st)
            v = self.to_register(v, dt)
        else:
            idx = self.vec(self.render(e.index, env))
            ptrs = vector_gep(b, ptr, idx, st)
            m = mask if mask is not None else ir.Constant(ir.VectorType(I1, lanes), [1] * lanes)
            v = self.to_register(self._where(
                uniform, lambda: gather(b, ptrs, st, m, ir.Constant(vt, None)), vt), dt)
        if mask is not None:
            if uniform is not None:
                mask = b.and_(mask, splat(b, uniform, lanes))
            v = b.select(mask, v, splat(b, fill, lanes))
        return v, True

    def _where(self, cond: ir.Value | None, make: Callable[[], ir.Value],
               typ: ir.Type) -> ir.Value:
        """make() where the scalar cond holds, undefined elsewhere (the caller selects the
        fill there); make() only emits a memory access, so nothing it renders is reused."""
        if cond is None:
            return make()
        b = self.b
        with b.if_else(cond) as (then, other):
            with then:
                v = make()
                bt = b.block
            with other:
                bo = b.block
        phi = b.phi(typ)
        phi.add_incoming(v, bt)
        phi.add_incoming(ir.Constant(typ, None), bo)
        return phi

    def reduce(self, e: te.Reduce, env):
        b = self.b
        vec = self.vec_var is not None and te.uses_var(e.body, self.vec_var)
        lanes = self.lanes if vec else 1
        # A float32 sum over many terms accumulates in float64: in float32, one term after
        # another, a mean of 10^4 equal-ish values was off by 4.5e-5 of itself (a LayerNorm's
        # statistics; onnxruntime: 1e-6); short windows (pools, small rows) stay float32.
        wide = e.op == "sum" and e.dtype == "float32" and math.prod(e.extents) >= WIDE_SUM_TERMS
        acc_dtype = "float64" if wide else e.dtype
        rt = reg_type(acc_dtype, lanes)
        init = self._identity(e.op, acc_dtype, lanes)
        # The accumulator lives in an entry-block alloca; mem2reg turns it into SSA.
        with b.goto_block(self.entry):
            b.position_at_start(self.entry)
            acc = b.alloca(rt)
        b.store(init, acc)
        if all(e.extents):  # what does not depend on the reduction's variables runs once, before
            for x in te.invariants(e.body, frozenset(e.vars)):  # (a per-row value in a row sum)
                self.render(x, env)
            if not vec:
                vr = self._vector_reduce(e, env, wide, acc_dtype)
                if vr is not None:
                    return vr, False
        env = dict(env)

        def nest(k):
            if k == len(e.vars):
                self.scopes.append({})
                v, isv = self.render(e.body, env)
                self.scopes.pop()
                v = self.vec((v, isv)) if vec else v
                if wide:
                    v = b.fpext(v, rt)
                cur = b.load(acc, typ=rt)
                b.store(self._combine(e.op, cur, v, acc_dtype), acc)
                return
            with for_range(b, 0, e.extents[k], name=e.vars[k]) as i:
                env[e.vars[k]] = i
                nest(k + 1)

        self.scopes.append({})
        nest(0)
        self.scopes.pop()
        total = b.load(acc, typ=rt)
        if wide:
            total = b.fptrunc(total, reg_type(e.dtype, lanes))
        return total, vec

    def _vector_reduce(self, e: te.Reduce, env, wide: bool, acc_dtype: str):
        """A float32 sum/max/min with a single result, its terms taken `reduce_lanes` at a time
        along the innermost reduction variable (trailing variables merged while the loads read
        them as one contiguous run: a 13x13 plane is 169 consecutive floats): vector
        accumulators, a scalar loop for the last extent % lanes terms, then a halving tree
        across the lanes. One scalar chain of 169 dependent adds (squeezenet's global average
        pool over 1000 planes: 0.053 ms at 12.7 GB/s on the Xeon) becomes ~11 vector steps.
        None where that does not apply; the caller then runs the scalar nest."""
        L = self.reduce_lanes
        if L <= 1 or e.op not in ("sum", "max", "min") or e.dtype != "float32":
            return None
        body, vars_, extents = te.merge_trailing(e.body, e.vars, e.extents)
        var, n = vars_[-1], extents[-1]
        if n < L or not te.unit_stride(body, var):
            return None
        b = self.b
        vt = reg_type(acc_dtype, L)
        with b.goto_block(self.entry):
            b.position_at_start(self.entry)
            vacc = b.alloca(vt)
            sacc = b.alloca(reg_type(acc_dtype, 1))
        b.store(self._identity(e.op, acc_dtype, L), vacc)
        b.store(self._identity(e.op, acc_dtype, 1), sacc)
        # the vector renderer starts from what this one has rendered (the body's invariants,
        # scalars: none of it depends on this renderer's vector variable)
        vr = Renderer(b, self.bufs, self.buf_dtypes, L, var, self.entry, self.canon)
        vr.scopes = [{k: v for scope in self.scopes for k, v in scope.items()}]
        full = n // L * L
        env = dict(env)

        def nest(k):
            if k < len(vars_) - 1:
                with for_range(b, 0, extents[k], name=vars_[k]) as i:
                    env[vars_[k]] = i
                    nest(k + 1)
                return
            with for_range(b, 0, full, L, name=var) as j:
                vr.scopes.append({})
                v = vr.vec(vr.render(body, {**env, var: j, var + "#base": j}))
                vr.scopes.pop()
                if wide:
                    v = b.fpext(v, vt)
                b.store(self._combine(e.op, b.load(vacc, typ=vt), v, acc_dtype), vacc)
            if full < n:
                with for_range(b, full, n, name=var) as j:
                    self.scopes.append({})
                    v, _ = self.render(body, {**env, var: j})
                    self.scopes.pop()
                    if wide:
                        v = b.fpext(v, reg_type(acc_dtype, 1))
                    cur = b.load(sacc, typ=reg_type(acc_dtype, 1))
                    b.store(self._combine(e.op, cur, v, acc_dtype), sacc)

        nest(0)
        v, width = b.load(vacc, typ=vt), L
        while width > 1:
            width //= 2
            lo = b.shuffle_vector(v, ir.Constant(v.type, None),
                                  ir.Constant(ir.VectorType(I32, width), list(range(width))))
            hi = b.shuffle_vector(v, ir.Constant(v.type, None),
                                  ir.Constant(ir.VectorType(I32, width),
                                              list(range(width, 2 * width))))
            v = self._combine(e.op, lo, hi, acc_dtype)
        total = b.extract_element(v, I32(0))
        total = self._combine(e.op, total, b.load(sacc, typ=reg_type(acc_dtype, 1)), acc_dtype)
        if wide:
            total = b.fptrunc(total, reg_type(e.dtype, 1))
        return total

    def _identity(self, op, dtype, lanes):
        v = IDENTITY[op]
        if dtype not in ("float32", "float64", "float16", "bfloat16"):
            import numpy as np

            info = np.iinfo(dtype) if dtype != "bool" else None
            if op == "max":
                v = info.min if info else 0
            elif op == "min":
                v = info.max if info else 1
            else:
                v = int(v)
        return lconst(dtype, v, lanes)

    def _combine(self, op, acc, v, dtype):
        if op == "sum":
            return mt.binary(self.b, "add", acc, v, dtype)
        if op == "prod":
            return mt.binary(self.b, "mul", acc, v, dtype)
        return mt.binary(self.b, "maximum" if op == "max" else "minimum", acc, v, dtype)


def vector_gep(b, ptr, idx, elem):
    """<lanes x ptr> addresses ptr + idx[l] * sizeof(elem) (llvmlite's gep has no vector form)."""
    lanes = idx.type.count
    size = _width(elem) // 8
    basei = splat(b, b.ptrtoint(ptr, I64), lanes)
    addr = b.add(basei, b.mul(idx, ir.Constant(ir.VectorType(I64, lanes), [size] * lanes)))
    return b.inttoptr(addr, ir.VectorType(ir.PointerType(), lanes))


def _splat_const(t, v, lanes):
    return ir.Constant(t, v) if lanes == 1 else ir.Constant(ir.VectorType(t, lanes), [v] * lanes)


def _width(t):
    t = t.element if isinstance(t, ir.VectorType) else t
    if isinstance(t, ir.IntType):
        return t.width
    return {ir.HalfType: 16, ir.FloatType: 32, ir.DoubleType: 64}[type(t)]


def _align(t):
    return max(1, _width(t) // 8)


def _at_lane0(e: te.Expr, var: str) -> te.Expr:
    """e with the vector variable standing for its lane-0 value (the scalar base)."""
    return _subst(e, var, te.Var(var + "#base"))


def _subst(e, var, repl):
    if isinstance(e, te.Var):
        return repl if e.name == var else e
    if isinstance(e, te.Bin):
        return te.binop(e.op, _subst(e.a, var, repl), _subst(e.b, var, repl))
    if isinstance(e, te.Const):
        return e
    raise TypeError("affine index expected")


__all__ = ["F32", "I16", "REGISTER", "Renderer"]
