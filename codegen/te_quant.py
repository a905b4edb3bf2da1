"""Tensor-expression computes of the quantized ops (ir/ops_quant.py), bit for bit as their numpy
references: the generic kernels, the fused epilogues of the integer conv and matmul kernels, and
how quantize/dequantize fuse into their neighbours.

The float rules compute in float32 (a division for quantize, one product for requantize and
dequantize); the fixed-point rules (TFLite) in int64 lanes. Registered into `te_ops.COMPUTES`.
"""
from __future__ import annotations

import numpy as np

from neo.ir.ops_quant import (
    _clamp_bounds,
    fixed_point_pairs,
    qadd_fixed_point,
    qadd_float_ratios,
)
from neo.ir.quant import int_range

from . import te
from .te import Const, broadcast_index
from .te_ops import _conv, _matmul, register

F32 = "float32"


def per_axis(values, axis, ctx, dtype: str):
    """idx -> a per-tensor constant, or the value along `axis` at idx from a compile-time table
    (added now: a kernel's buffers are known once its computes are built)."""
    values = np.asarray(values)
    if values.size == 1 or np.all(values == values.flat[0]):
        v = values.flat[0].item()
        c = Const(dtype, float(v) if dtype.startswith("float") else int(v))
        return lambda idx: c
    table = ctx.add_table(np.ascontiguousarray(values.astype(dtype)))
    return lambda idx: table((idx[axis],))


# 1.5 * 2^23: adding it to a float32 of magnitude below 2^22 leaves the integer part in the
# mantissa, rounded half to even by the addition itself (no roundeven libcall on ARMv7)
_MAGIC = 12582912.0


def round_to(y: te.Expr, rounding: str) -> te.Expr:
    """y rounded to an integer value; y must be clamped to below 2^22 in magnitude first."""
    if rounding == "half_to_even":
        magic = Const(F32, _MAGIC)
        return te.Bin("sub", te.Bin("add", y, magic, F32), magic, F32)
    return te.unary("round_half_away", y)


def _clamp(y: te.Expr, lo: float, hi: float) -> te.Expr:
    """max(min(y, hi), lo) for a y that is never NaN: compare-and-select in the order that is
    one vmaxps/vminps (fmax/fmin on ARM)."""
    lo_c, hi_c = Const(F32, lo), Const(F32, hi)
    y = te.select(te.cmp("gt", y, lo_c), y, lo_c)
    return te.select(te.cmp("lt", y, hi_c), y, hi_c)


def float_to_int(y: te.Expr, lo: int, hi: int, zp, rounding: str, dtype: str,
                 maybe_nan: bool = True) -> te.Expr:
    """clip(round(y), lo - zp, hi - zp) + zp as `dtype`: a float32 y clamped before it is
    converted (so huge values saturate and the conversion is exact), NaN as 0. `zp` may be a
    per-channel int32 expression, then the clamp happens after the add, in int32."""
    if maybe_nan:
        y = te.select(te.cmp("ne", y, y), Const(F32, 0.0), y)
    if isinstance(zp, int) and rounding == "half_to_even" and not maybe_nan:
        # clamp, then the magic-number rounding read back as an integer with the zero point
        # added in the same subtraction (math_table: round_even_int)
        y = _clamp(y, float(lo - zp), float(hi - zp))
        return te.cast(te.Un("round_even_int", y, (("offset", zp),), "int32"), dtype)
    if isinstance(zp, int):  # clamped first: the integer bounds commute with rounding
        y = round_to(te.unary("clip", y, min=float(lo - zp), max=float(hi - zp)), rounding)
        q = te.cast(y, "int32")
        if zp:
            q = q + Const("int32", zp)
        return te.cast(q, dtype)
    span = float(hi - lo)  # any value outside +-span saturates whatever the zero point
    y = round_to(te.unary("clip", y, min=-span, max=span), rounding)
    q = te.cast(y, "int32") + zp
    return te.cast(te.unary("clip", q, min=lo, max=hi), dtype)


@register("quantize")
def _quantize(attrs, out, ins, ctx):
    q = attrs["quant"]
    lo, hi = int_range(attrs["dtype"])

    scale = per_axis(q.scale, q.axis, ctx, F32)
    zps = per_axis(q.zero_point, q.axis, ctx, "int32")

    def fn(idx):
        x = te.cast(ins[0](idx), F32)
        y = te.Bin("div", x, scale(idx), F32)
        zp = q.zero_point[0] if q.is_per_tensor else zps(idx)
        return float_to_int(y, lo, hi, zp, attrs["rounding"], attrs["dtype"])

    return fn


@register("dequantize")
def _dequantize(attrs, out, ins, ctx):
    q = attrs["quant"]

    zps = per_axis(q.zero_point, q.axis, ctx, "int32")
    scale = per_axis(q.scale, q.axis, ctx, F32)

    def fn(idx):
        x = te.cast(ins[0](idx), "int32")
        zp = zps(idx)
        if not (isinstance(zp, Const) and zp.value == 0):
            x = x - zp
        y = te.Bin("mul", te.cast(x, F32), scale(idx), F32)
        return te.cast(y, out.dtype)

    return fn


def requantizer(attrs, ctx):
    """(x, idx) -> requantize of the int32 (or 8-bit) expression x at output index idx."""
    dtype = attrs["dtype"]
    lo, hi = _clamp_bounds(attrs, dtype)
    zo = int(attrs["out_zero_point"])
    zi = int(attrs["in_zero_point"])
    m = np.asarray(attrs["multiplier"], np.float64)
    if attrs["mode"] == "float":
        mult = per_axis(m.astype(np.float32), attrs["axis"], ctx, F32)
    else:
        qm, shift = fixed_point_pairs(attrs, m)
        # TFLite's double rounding in int32 lanes where the multipliers are Q31 (all are but
        # hand-made q31 pairs): fixed_point_multiply_i32
        i32_lanes = (not attrs.get("single_rounding") and 0 <= qm.min()
                     and qm.max() < 1 << 31 and -31 <= shift.min() and shift.max() <= 30)
        if i32_lanes:
            qm32 = per_axis(qm, attrs["axis"], ctx, "int32")
            lefts = per_axis(np.maximum(shift, 0), attrs["axis"], ctx, "int32")
            right = np.maximum(-shift, 0)
            rights = per_axis(right, attrs["axis"], ctx, "int32")
        else:
            qms = per_axis(qm, attrs["axis"], ctx, "int64")
            shifts = per_axis(shift, attrs["axis"], ctx, "int64")

    def fn(x, idx):
        x = te.cast(x, "int32")
        if zi:
            x = x - Const("int32", zi)
        if attrs["mode"] == "float":
            y = te.Bin("mul", te.cast(x, F32), mult(idx), F32)
            return float_to_int(y, lo, hi, zo, "half_to_even", dtype, maybe_nan=False)
        if attrs.get("single_rounding"):
            # (x * m + 2^(30 - shift)) >> (31 - shift): one rounding, half up
            total = Const("int64", 31) - shifts(idx)
            half = te.Bin("shift_left", Const("int64", 1), total - Const("int64", 1), "int64")
            y = te.Bin("shift_right", te.Bin("mul", te.cast(x, "int64"), qms(idx), "int64")
                       + half, total, "int64")
        elif i32_lanes:
            y = fixed_point_multiply_i32(x, qm32(idx), lefts(idx), rights(idx),
                                         bool(right.min() >= 1))
            if right.min() >= 1 and shift.max() <= 0:
                # below 2^30 in magnitude (a right shift of a product below 2^62, over 2^31):
                # the zero point added first, then the clamp in the output type's terms, which
                # x86 narrows with one saturating vpmovsdb where it is the type's whole range
                return te.cast(te.unary("clip", y + Const("int32", zo) if zo else y,
                                        min=lo, max=hi), dtype)
            # clamped before the zero point is added: no int32 overflow
            y = te.unary("clip", y, min=lo - zo, max=hi - zo)
            return te.cast(y + Const("int32", zo) if zo else y, dtype)
        else:
            y = fixed_point_multiply(te.cast(x, "int64"), qms(idx), shifts(idx))
        y = y + Const("int64", zo)
        return te.cast(te.unary("clip", y, min=lo, max=hi), dtype)

    return fn


def fixed_point_multiply_i32(x: te.Expr, m: te.Expr, left: te.Expr, right: te.Expr,
                             positive_right: bool = False) -> te.Expr:
    """fixed_point_multiply of an int32 x by a multiplier 0 <= m < 2^31 in int32 lanes: the
    left shift, gemmlowp's doubling high multiply (`mul_q31`: floor((x m + 2^30) / 2^31), which
    fits) and the rounding divide by 2^right (`rshift_away`); math_table renders both with the
    target's instructions."""
    i32 = "int32"
    if not (isinstance(left, Const) and left.value == 0):
        x = te.Bin("shift_left", x, left, i32)  # wraps, as the C++ int32 shift
    high = te.Bin("mul_q31", x, m, i32)
    if isinstance(right, Const) and right.value == 0:
        return high
    if isinstance(right, Const) or positive_right:
        return te.Bin("rshift_away", high, right, i32)
    # some channels shift by 0 (their multiplier is at least 1/2): gemmlowp's form, the
    # remainder against (2^right - 1) / 2, plus one where the value is negative
    mask = te.Bin("sub", te.Bin("shift_left", Const(i32, 1), right, i32), Const(i32, 1), i32)
    rem = te.Bin("bitwise_and", high, mask, i32)
    threshold = te.Bin("shift_right", mask, Const(i32, 1), i32) + te.select(
        te.cmp("lt", high, Const(i32, 0)), Const(i32, 1), Const(i32, 0))
    return te.Bin("shift_right", high, right, i32) + te.select(
        te.cmp("gt", rem, threshold), Const(i32, 1), Const(i32, 0))


def fixed_point_multiply(x: te.Expr, m: te.Expr, shift: te.Expr) -> te.Expr:
    """TFLite's MultiplyByQuantizedMultiplier on int64 lanes holding int32 values (ir/quant.py):
    x << max(shift, 0), the saturating rounding doubling high multiply by m (m > 0, so never
    the saturating case), then a rounding right shift by max(-shift, 0)."""
    i64 = "int64"

    def c(v):
        return Const(i64, v)

    zero = c(0)
    left = te.Bin("max", shift, zero, i64)
    right = te.Bin("max", te.Bin("sub", zero, shift, i64), zero, i64)
    x = te.Bin("shift_left", x, left, i64)
    # the C++ int32 multiply wraps: sign-extend the low 32 bits
    x = te.Bin("shift_right", te.Bin("shift_left", x, c(32), i64), c(32), i64)
    ab = te.Bin("mul", x, m, i64)
    s = ab + te.select(te.cmp("ge", ab, zero), c(1 << 30), c(1 - (1 << 30)))
    high = te.select(te.cmp("ge", s, zero), te.Bin("shift_right", s, c(31), i64),
                     te.Bin("sub", zero, te.Bin("shift_right", te.Bin("sub", zero, s, i64),
                                                c(31), i64), i64))
    mask = te.Bin("sub", te.Bin("shift_left", c(1), right, i64), c(1), i64)
    rem = te.Bin("bitwise_and", high, mask, i64)
    threshold = te.Bin("shift_right", mask, c(1), i64) + te.select(
        te.cmp("lt", high, zero), c(1), zero)
    return te.Bin("shift_right", high, right, i64) + te.select(
        te.cmp("gt", rem, threshold), c(1), zero)


@register("requantize")
def _requantize(attrs, out, ins, ctx):
    rq = requantizer(attrs, ctx)
    return lambda idx: rq(ins[0](idx), idx)


@register("qadd")
def _qadd(attrs, out, ins, ctx):
    a, b = ins
    qa, qb, qc = attrs["a_quant"], attrs["b_quant"], attrs["quant"]
    dtype = attrs["dtype"]
    lo, hi = _clamp_bounds(attrs, dtype)
    za, zb, zc = qa.zero_point[0], qb.zero_point[0], qc.zero_point[0]

    def fn(idx):
        x = te.cast(a(broadcast_index(idx, a.shape, out.shape)), "int32") - Const("int32", za)
        y = te.cast(b(broadcast_index(idx, b.shape, out.shape)), "int32") - Const("int32", zb)
        if attrs.get("subtract"):
            y = Const("int32", 0) - y
        if attrs["mode"] == "float":
            ra, rb = qadd_float_ratios(attrs)
            s = te.Bin("add", te.Bin("mul", Const(F32, float(ra)), te.cast(x, F32), F32),
                       te.Bin("mul", Const(F32, float(rb)), te.cast(y, F32), F32), F32)
            return float_to_int(s, lo, hi, zc, "half_to_even", dtype, maybe_nan=False)
        (ma, sa), (mb, sb), (mo, so), left = qadd_fixed_point(attrs)
        if dtype in ("int8", "uint8") and all(
                0 <= m < 1 << 31 and -31 <= s <= 30 for m, s in ((ma, sa), (mb, sb), (mo, so))):
            # int32 lanes: |x - za| <= 255 shifted left by 20, and each scaled sum, fit
            def fpm(v, m, s):
                return fixed_point_multiply_i32(v, Const("int32", m), Const("int32", max(s, 0)),
                                                Const("int32", max(-s, 0)))

            shifted = [te.Bin("shift_left", v, Const("int32", left), "int32") for v in (x, y)]
            r = fpm(fpm(shifted[0], ma, sa) + fpm(shifted[1], mb, sb), mo, so)
            r = te.unary("clip", r, min=lo - zc, max=hi - zc)
            return te.cast(r + Const("int32", zc) if zc else r, dtype)
        i64 = "int64"
        xs = fixed_point_multiply(te.cast(x, i64) * (1 << left), Const(i64, ma), Const(i64, sa))
        ys = fixed_point_multiply(te.cast(y, i64) * (1 << left), Const(i64, mb), Const(i64, sb))
        r = fixed_point_multiply(xs + ys, Const(i64, mo), Const(i64, so)) + Const(i64, zc)
        return te.cast(te.unary("clip", r, min=lo, max=hi), dtype)

    return fn


def centered(t: te.Tensor, zero_points, axis: int, ctx) -> te.Tensor:
    """t's integers minus their zero point (per tensor, or per index along `axis`), as int32."""
    zps = per_axis(np.atleast_1d(zero_points), axis, ctx, "int32")

    def fn(idx):
        v = te.cast(t(idx), "int32")
        z = zps(idx)
        return v if isinstance(z, Const) and z.value == 0 else v - z

    return te.Tensor(t.shape, "int32", fn)


@register("conv_integer")
def _conv_integer(attrs, out, ins, ctx):
    # the float conv's compute on centered int32 operands: padding is 0 after centering, as
    # the input's zero point before it
    x, w = ins[0], ins[1]
    cins = [centered(x, attrs["x_zero_point"], 1, ctx), centered(w, attrs["w_zero_point"], 0, ctx)]
    return _conv(attrs, out, cins + list(ins[2:]), ctx)


@register("matmul_integer")
def _matmul_integer(attrs, out, ins, ctx):
    a, b = ins
    return _matmul(attrs, out, [centered(a, attrs["a_zero_point"], 0, ctx),
                                centered(b, attrs["b_zero_point"], len(b.shape) - 1, ctx)], ctx)
