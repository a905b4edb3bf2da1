"""Instruction choice: (op, dtype) -> LLVM instructions, on scalars and vectors alike.

Transcendentals for float32 use our own polynomial approximations (a few ulp, vectorizable) instead
of per-lane libm calls; float64 and the rest use LLVM intrinsics (libm).
"""
from __future__ import annotations

import math

from llvmlite import ir

from .llvm_util import I1, I32, intrinsic, is_float, splat

F32 = ir.FloatType()


def _c(v: ir.Value, x: float) -> ir.Value:
    """A float constant shaped like v (scalar or vector)."""
    t = v.type
    if isinstance(t, ir.VectorType):
        return ir.Constant(t, [float(x)] * t.count)
    return ir.Constant(t, float(x))


def _ci(v: ir.Value, x: int) -> ir.Value:
    t = v.type
    if isinstance(t, ir.VectorType):
        return ir.Constant(t, [int(x)] * t.count)
    return ir.Constant(t, int(x))


def _int_like(t: ir.Type) -> ir.Type:
    return ir.VectorType(I32, t.count) if isinstance(t, ir.VectorType) else I32


def _bool_like(t: ir.Type) -> ir.Type:
    return ir.VectorType(I1, t.count) if isinstance(t, ir.VectorType) else I1


def fmax(b, x, y):
    return intrinsic(b, "llvm.maxnum", [x, y])


def fmin(b, x, y):
    return intrinsic(b, "llvm.minnum", [x, y])


def fma(b, x, y, z):
    return intrinsic(b, "llvm.fma", [x, y, z])


def max_keep_nan(b, x, c):
    """max(x, c) that passes a NaN x through (maxnum would return c); one maxps on x86."""
    return b.select(b.fcmp_ordered("<", x, c), c, x)


def min_keep_nan(b, x, c):
    """min(x, c) that passes a NaN x through."""
    return b.select(b.fcmp_ordered(">", x, c), c, x)


def _nan_through(b, x, y):
    """y, except where x is NaN: x (for results computed from clamped or compared inputs)."""
    return b.select(b.fcmp_unordered("uno", x, x), x, y)


def is_f32(v) -> bool:
    t = v.type.element if isinstance(v.type, ir.VectorType) else v.type
    return isinstance(t, ir.FloatType)


def exp_f32(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """Cephes-style expf: range reduction by ln2, degree-6 polynomial, scale by 2^n (~1 ulp)."""
    x_in = x
    x = fmin(b, fmax(b, x, _c(x, -87.3365447505531)), _c(x, 88.72283935546875))
    n = intrinsic(b, "llvm.rint", [b.fmul(x, _c(x, 1.4426950408889634))])
    r = fma(b, n, _c(x, -0.693359375), x)
    r = fma(b, n, _c(x, 2.12194440e-4), r)
    p = _c(x, 1.9875691500e-4)
    for k in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
        p = fma(b, p, r, _c(x, k))
    r2 = b.fmul(r, r)
    y = b.fadd(fma(b, p, r2, r), _c(x, 1.0))
    it = _int_like(x.type)
    # 2^n built in two halves so that n = 128 (x near the top of the range) does not overflow.
    ni = b.fptosi(n, it)
    h = b.ashr(ni, _ci(ni, 1))
    s1 = b.bitcast(b.shl(b.add(h, _ci(ni, 127)), _ci(ni, 23)), x.type)
    s2 = b.bitcast(b.shl(b.add(b.sub(ni, h), _ci(ni, 127)), _ci(ni, 23)), x.type)
    # the clamp above turns NaN into a bound: exp(NaN) must stay NaN (softmax, sigmoid, ...)
    return _nan_through(b, x_in, b.fmul(b.fmul(y, s1), s2))


def exp(b, x):
    return exp_f32(b, x) if is_f32(x) else intrinsic(b, "llvm.exp", [x])


def sigmoid(b, x):
    return b.fdiv(_c(x, 1.0), b.fadd(_c(x, 1.0), exp(b, b.fneg(x))))


def tanh(b, x):
    if not is_f32(x):
        return _libm(b, "tanh", x)
    # |x| < 0.625: odd polynomial (Cephes tanhf); otherwise 1 - 2/(exp(2|x|)+1) with the sign.
    ax = intrinsic(b, "llvm.fabs", [x])
    z = b.fmul(x, x)
    p = _c(x, -5.70498872745e-3)
    for k in (2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1):
        p = fma(b, p, z, _c(x, k))
    small = fma(b, b.fmul(p, z), x, x)
    e = exp_f32(b, b.fmul(ax, _c(x, 2.0)))
    big = b.fsub(_c(x, 1.0), b.fdiv(_c(x, 2.0), b.fadd(e, _c(x, 1.0))))
    big = intrinsic(b, "llvm.copysign", [big, x])
    return b.select(b.fcmp_ordered("<", ax, _c(x, 0.625)), small, big)


def _libm(b, name, x):
    """Per-lane libm call (float64 paths and the rarer functions)."""
    scalar_t = x.type.element if isinstance(x.type, ir.VectorType) else x.type
    fname = name + ("f" if isinstance(scalar_t, ir.FloatType) else "")
    from .llvm_util import declare

    fn = declare(b.module, fname, scalar_t, [scalar_t])
    if not isinstance(x.type, ir.VectorType):
        return b.call(fn, [x])
    out = ir.Constant(x.type, ir.Undefined)
    for i in range(x.type.count):
        out = b.insert_element(out, b.call(fn, [b.extract_element(x, I32(i))]), I32(i))
    return out


def erf(b, x):
    return _libm(b, "erf", x)


def gelu(b, x, approximate="none"):
    if approximate == "tanh":
        inner = b.fmul(_c(x, math.sqrt(2 / math.pi)),
                       fma(b, b.fmul(b.fmul(x, x), x), _c(x, 0.044715), x))
        return b.fmul(b.fmul(_c(x, 0.5), x), b.fadd(_c(x, 1.0), tanh(b, inner)))
    return b.fmul(b.fmul(_c(x, 0.5), x), b.fadd(_c(x, 1.0), erf(b, b.fmul(x, _c(x, 1 / math.sqrt(2))))))


BITWISE = {"bitwise_and": "and_", "bitwise_or": "or_", "bitwise_xor": "xor"}

# IR ops that are the libm function of the same name, called per lane.
LIBM_UNARY = ("tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh")


def round_even_int(b: ir.IRBuilder, x: ir.Value, offset: int) -> ir.Value:
    """rint(x) + offset as int32, for float32 |x| < 2^22: adding 1.5 * 2^23 leaves the integer,
    rounded half to even, in the low mantissa bits (cvtps2dq without its libcall or its
    rounding mode; the offset joins the subtraction)."""
    magic = 12582912.0
    bits = b.bitcast(b.fadd(x, _c(x, magic)), _int_like(x.type))
    return b.sub(bits, _ci(bits, 0x4B400000 - offset))


def _arch(b: ir.IRBuilder) -> str:
    triple = b.module.triple or ""
    return triple.split("-")[0]


def _halves(b: ir.IRBuilder, x: ir.Value, odd: bool) -> ir.Value:
    """The even (or odd) int32 lanes of x sign-extended into int64 lanes, in place: the operand
    form x86's vpmuldq multiplies (the odd ones need a shift, no shuffle)."""
    n = x.type.count // 2
    q = b.bitcast(x, ir.VectorType(ir.IntType(64), n))
    c32 = ir.Constant(q.type, [32] * n)
    return b.ashr(q if odd else b.shl(q, c32), c32)


def _is_splat(v: ir.Value) -> bool:
    if isinstance(v, ir.Constant):
        c = v.constant
        return not isinstance(c, list) or all(str(e) == str(c[0]) for e in c)
    if not isinstance(v, ir.instructions.ShuffleVector):
        return False
    picks = [c.constant for c in v.operands[2].constant]
    return all(p == picks[0] for p in picks)


def mul_q31(b: ir.IRBuilder, x: ir.Value, m: ir.Value) -> ir.Value:
    """floor((x m + 2^30) / 2^31) of int32 lanes: gemmlowp's saturating rounding doubling high
    multiply (TFLite's SaturatingRoundingDoublingHighMul) for m >= 0, where it never saturates
    and its nudge-then-truncate equals this floor. AArch64 `sqrdmulh`, ARMv7 `vqrdmulh`: one
    instruction. x86: vpmuldq on the even and the odd lanes in their 64-bit slots, the rounding
    added there, and the two halves' bits 31..62 shifted into place and blended: no shuffles
    through the one vector-shuffle port, which a sign-extension to <N x i64> and a truncation
    back cost (two vpmovzxdq, two vpmovqd, an extract and an insert per 16 lanes)."""
    arch = _arch(b)
    vec = isinstance(x.type, ir.VectorType)
    if vec and x.type.count == 4 and arch in ("aarch64", "armv7"):
        name = "llvm.aarch64.neon.sqrdmulh" if arch == "aarch64" else "llvm.arm.neon.vqrdmulh"
        return intrinsic(b, name, [x, m])
    if not vec or x.type.count % 2 or not arch.startswith("x86"):
        wide = ir.VectorType(ir.IntType(64), x.type.count) if vec else ir.IntType(64)
        p = b.mul(b.sext(x, wide), b.sext(m, wide))
        r = b.ashr(b.add(p, _ci(p, 1 << 30)), _ci(p, 31))
        return b.trunc(r, x.type)
    n = x.type.count
    halves = []
    for odd in (False, True):
        # a splat's even lanes serve the odd products too (vpmuldq reads the low halves)
        p = b.mul(_halves(b, x, odd), _halves(b, m, odd and not _is_splat(m)))
        p = b.add(p, _ci(p, 1 << 30))
        # bits 31..62 go to the low int32 of the slot (even lanes) or the high one (odd lanes)
        halves.append(b.bitcast(b.shl(p, _ci(p, 1)) if odd else b.lshr(p, _ci(p, 31)), x.type))
    pick = ir.Constant(ir.VectorType(I32, n), [i + (n if i % 2 else 0) for i in range(n)])
    return b.shuffle_vector(halves[0], halves[1], pick)


def rshift_away(b: ir.IRBuilder, x: ir.Value, e: ir.Value, addend: int = 0) -> ir.Value:
    """x / 2^e rounded half away from zero, for int32 lanes, 1 <= e <= 31 and x > INT_MIN
    (gemmlowp's RoundingDivideByPOT of a doubling high multiply's result, which is never
    INT_MIN), without overflow: the negative x less one, so that rounding half up rounds their
    halves toward zero. AArch64/ARMv7: the rounding shift `srshl` by -e. Elsewhere: shifted by
    e - 1, one added and the last bit shifted out: floor((x' / 2^(e-1) + 1) / 2). `addend`
    (a requantize's zero point) is added to the result; on x86 as 2 * addend with the one,
    before the last shift (exact: floor((v + 2a) / 2) = floor(v / 2) + a)."""
    arch = _arch(b)
    vec = isinstance(x.type, ir.VectorType)
    minus1 = b.ashr(x, _ci(x, 31))  # -1 where x < 0
    fixed = b.add(x, minus1)
    if vec and x.type.count == 4 and arch in ("aarch64", "armv7"):
        srshl = "llvm.aarch64.neon.srshl" if arch == "aarch64" else "llvm.arm.neon.vrshifts"
        out = intrinsic(b, srshl, [fixed, b.sub(_ci(x, 0), e)])
        return b.add(out, _ci(x, addend)) if addend else out
    one = _ci(x, 1)
    return b.ashr(b.add(b.ashr(fixed, b.sub(e, one)), _ci(x, 1 + 2 * addend)), one)


def unary(b: ir.IRBuilder, op: str, x: ir.Value, dtype: str, attrs: dict) -> ir.Value:
    if op == "round_even_int":  # float32 in, int32 out (codegen/te_quant.py)
        return round_even_int(b, x, int(attrs.get("offset", 0)))
    f = is_float(dtype)
    zero = _c(x, 0.0) if f else _ci(x, 0)
    if op == "relu":
        return max_keep_nan(b, x, zero) if f else b.select(b.icmp_signed(">", x, zero), x, zero)
    if op == "neg":
        return b.fneg(x) if f else b.sub(zero, x)
    if op == "abs":
        if f:
            return intrinsic(b, "llvm.fabs", [x])
        if dtype.startswith("u"):
            return x
        return b.select(b.icmp_signed("<", x, zero), b.sub(zero, x), x)
    if op == "sign":
        if f:
            one = _c(x, 1.0)
            pos = b.uitofp(b.fcmp_ordered(">", x, zero), x.type)
            neg = b.uitofp(b.fcmp_ordered("<", x, zero), x.type)
            return _nan_through(b, x, b.fmul(b.fsub(pos, neg), one))
        pos = b.zext(b.icmp_signed(">", x, zero), x.type)
        neg = b.zext(b.icmp_signed("<", x, zero), x.type)
        return b.sub(pos, neg)
    if op in ("not", "bitwise_not"):
        return b.not_(x)
    if op == "clip":
        lo, hi = attrs.get("min"), attrs.get("max")
        if f:  # NaN stays NaN, as onnxruntime
            if lo is not None:
                x = max_keep_nan(b, x, _c(x, lo))
            if hi is not None:
                x = min_keep_nan(b, x, _c(x, hi))
            return x
        signed = not dtype.startswith("u")
        cmp = b.icmp_signed if signed else b.icmp_unsigned
        if lo is not None:
            c = _ci(x, int(lo))
            x = b.select(cmp("<", x, c), c, x)
        if hi is not None:
            c = _ci(x, int(hi))
            x = b.select(cmp(">", x, c), c, x)
        return x
    if not f:
        raise NotImplementedError(f"unary op {op} on {dtype}")
    if op == "exp":
        return exp(b, x)
    if op == "sigmoid":
        return sigmoid(b, x)
    if op == "tanh":
        return tanh(b, x)
    if op == "silu":
        return b.fmul(x, sigmoid(b, x))
    if op == "erf":
        return erf(b, x)
    if op in LIBM_UNARY:
        return _libm(b, op, x)
    if op == "gelu":
        return gelu(b, x, attrs.get("approximate", "none"))
    if op == "sqrt":
        return intrinsic(b, "llvm.sqrt", [x])
    if op == "log":
        return intrinsic(b, "llvm.log", [x])
    if op == "sin":
        return intrinsic(b, "llvm.sin", [x])
    if op == "cos":
        return intrinsic(b, "llvm.cos", [x])
    if op == "floor":
        return intrinsic(b, "llvm.floor", [x])
    if op == "ceil":
        return intrinsic(b, "llvm.ceil", [x])
    if op == "round":
        return intrinsic(b, "llvm.roundeven", [x])
    if op == "round_half_away":  # std::round (TFLite's TfLiteRound)
        return intrinsic(b, "llvm.round", [x])
    if op == "reciprocal":
        return b.fdiv(_c(x, 1.0), x)
    if op == "softplus":
        # log(1 + exp(x)) without overflow: max(x,0) + log1p(exp(-|x|))
        ax = intrinsic(b, "llvm.fabs", [x])
        t = exp(b, b.fneg(ax))
        return b.fadd(fmax(b, x, zero), intrinsic(b, "llvm.log", [b.fadd(_c(x, 1.0), t)]))
    if op == "leaky_relu":
        neg = b.fmul(x, _c(x, attrs["alpha"]))
        return b.select(b.fcmp_ordered(">=", x, zero), x, neg)
    if op == "elu":
        neg = b.fmul(_c(x, attrs["alpha"]), b.fsub(exp(b, x), _c(x, 1.0)))
        return b.select(b.fcmp_ordered(">=", x, zero), x, neg)
    if op == "hard_sigmoid":
        y = fma(b, x, _c(x, attrs["alpha"]), _c(x, attrs["beta"]))
        return min_keep_nan(b, max_keep_nan(b, y, zero), _c(x, 1.0))
    if op == "hard_swish":
        y = fma(b, x, _c(x, 1 / 6), _c(x, 0.5))
        return b.fmul(x, min_keep_nan(b, max_keep_nan(b, y, zero), _c(x, 1.0)))
    raise NotImplementedError(f"unary op {op} has no lowering")


def binary(b: ir.IRBuilder, op: str, x: ir.Value, y: ir.Value, dtype: str) -> ir.Value:
    f = is_float(dtype)
    signed = not dtype.startswith("u") and dtype != "bool"
    if op == "add":
        return b.fadd(x, y) if f else b.add(x, y)
    if op == "sub":
        return b.fsub(x, y) if f else b.sub(x, y)
    if op == "mul":
        return b.fmul(x, y) if f else b.mul(x, y)
    if op == "div":
        if f:
            return b.fdiv(x, y)
        y = _nonzero(b, y)  # x/0 is undefined in ONNX; never trap (vector tails compute on fill)
        return b.sdiv(x, y) if signed else b.udiv(x, y)
    if op == "minimum":
        if f:
            return intrinsic(b, "llvm.minimum", [x, y])  # NaN-propagating, as numpy
        return b.select((b.icmp_signed if signed else b.icmp_unsigned)("<", x, y), x, y)
    if op == "maximum":
        if f:
            return intrinsic(b, "llvm.maximum", [x, y])
        return b.select((b.icmp_signed if signed else b.icmp_unsigned)(">", x, y), x, y)
    if op == "pow":
        if f:
            return intrinsic(b, "llvm.pow", [x, y])
        # Integer pow through float64 (exact while the result fits in 53 bits), as numpy's
        # reference computes it; truncates back to the integer type.
        lanes = x.type.count if isinstance(x.type, ir.VectorType) else None
        dt = ir.DoubleType() if lanes is None else ir.VectorType(ir.DoubleType(), lanes)
        to_f = b.sitofp if signed else b.uitofp
        r = intrinsic(b, "llvm.pow", [to_f(x, dt), to_f(y, dt)])
        return b.fptosi(r, x.type) if signed else b.fptoui(r, x.type)
    if op == "and":
        return b.and_(x, y)
    if op == "or":
        return b.or_(x, y)
    if op == "xor":
        return b.xor(x, y)
    if op in BITWISE:
        return getattr(b, BITWISE[op])(x, y)
    if op == "shift_left":
        return b.shl(x, y)
    if op == "mul_q31":  # int32 only (codegen/te_quant.py)
        return mul_q31(b, x, y)
    if op == "rshift_away":
        return rshift_away(b, x, y)
    if op == "shift_right":
        return b.ashr(x, y) if signed else b.lshr(x, y)
    if op == "floordiv":  # index math only: operands are non-negative by construction
        return b.sdiv(x, y)
    if op == "mod":
        if f:
            return b.frem(x, y)
        y = _nonzero(b, y)
        return b.srem(x, y) if signed else b.urem(x, y)
    if op in ("min", "max"):
        pred = "<" if op == "min" else ">"
        if f:
            return (fmin if op == "min" else fmax)(b, x, y)
        return b.select((b.icmp_signed if signed else b.icmp_unsigned)(pred, x, y), x, y)
    raise NotImplementedError(f"binary op {op}")


def _nonzero(b, y):
    zero = ir.Constant(y.type, None)
    one = _ci(y, 1)
    return b.select(b.icmp_unsigned("==", y, zero), one, y)


CMP = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def compare(b, op: str, x, y, dtype: str):
    if is_float(dtype):
        if op == "ne":
            return b.fcmp_unordered("!=", x, y)
        return b.fcmp_ordered(CMP[op], x, y)
    signed = not dtype.startswith("u") and dtype != "bool"
    return (b.icmp_signed if signed else b.icmp_unsigned)(CMP[op], x, y)


__all__ = ["binary", "compare", "exp", "fma", "fmax", "fmin", "splat", "unary"]
