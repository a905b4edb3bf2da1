"""gemmlowp's fixed-point arithmetic (the `fixedpoint.h` that TFLite's reference kernels use for
quantized SOFTMAX and LOG_SOFTMAX), written once over int32 values held in int64 lanes, for two
backends: numpy arrays (compile-time tables) and IR values (`IrInts`: the per-row parts that
depend on the data, built from the IR's int64 add/mul/shift/where ops).

A value `FixedPoint<int32, k>` is its raw int32 integer; k integer bits leave 31 - k fractional
bits. The functions take the backend `xp` first (numpy, or an `IrInts`), so the same code makes a
table and a graph. Identities are gemmlowp's:

- `srdhm(a, b)` = SaturatingRoundingDoublingHighMul: (a b + nudge) / 2^31, the division
  truncating toward zero, nudge = 2^30 (1 - 2^30 for a negative product). Its one saturating
  case, INT32_MIN * INT32_MIN, cannot happen here: every product has an operand that is a
  positive constant or a value in (-2^31, 2^31).
- `rdbpot(x, e)` = RoundingDivideByPOT: x / 2^e rounded half away from zero.
- `sat_shl(x, e)` = SaturatingRoundingMultiplyByPOT for e >= 0: x << e, saturated to int32.
"""
from __future__ import annotations

import numpy as np

from neo.ir import Value

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


class NumpyInts:
    """The numpy backend: int64 arrays."""

    @staticmethod
    def where(c, a, b):
        return np.where(c, a, b).astype(np.int64)

    @staticmethod
    def minimum(a, b):
        return np.minimum(a, b)

    @staticmethod
    def maximum(a, b):
        return np.maximum(a, b)

    @staticmethod
    def clz32(x):
        """Count of leading zeros of a positive value below 2^32: #{j in 1..31 : x < 2^j}."""
        x = np.asarray(x, np.int64)
        return (x[..., None] < (np.int64(1) << np.arange(1, 32, dtype=np.int64))).sum(
            -1).astype(np.int64)


NP = NumpyInts()


class IrInts:
    """The IR backend: wraps int64 IR values so that Python operators build IR ops."""

    def __init__(self, cx):
        self.cx = cx

    def lift(self, v) -> Lanes:
        if isinstance(v, Lanes):
            return v
        if isinstance(v, Value):
            return Lanes(self, self.cx.cast(v, "int64") if v.dtype != "bool" else v)
        return Lanes(self, self.cx.const(np.asarray(v, np.int64)))

    def op(self, name: str, *args, **attrs) -> Lanes:
        return Lanes(self, self.cx.op(name, *(self.lift(a).v for a in args), **attrs))

    def where(self, c, a, b) -> Lanes:
        return self.op("where", c, a, b)

    def minimum(self, a, b) -> Lanes:
        return self.op("minimum", a, b)

    def maximum(self, a, b) -> Lanes:
        return self.op("maximum", a, b)

    def clz32(self, x) -> Lanes:
        """#{j in 1..31 : x < 2^j} (NumpyInts.clz32) for any int32 value, by a binary search:
        five elementwise steps, so the per-row chain they sit in fuses into one kernel (a
        reduction over the 31 powers would be a second row reduction inside it)."""
        x = self.lift(x)
        n = self.lift(0)
        for s in (16, 8, 4, 2, 1):
            small = x < (1 << (32 - s))
            n = n + self.where(small, s, 0)
            x = self.where(small, x << s, x)
        return n


class Lanes:
    """An int64 IR value with arithmetic operators (int32 values in int64 lanes)."""

    def __init__(self, xp: IrInts, v: Value):
        self.xp = xp
        self.v = v

    def _bin(self, name, other, swap=False):
        a, b = (other, self) if swap else (self, other)
        return self.xp.op(name, a, b)

    def __add__(self, o):
        return self._bin("add", o)

    def __radd__(self, o):
        return self._bin("add", o, True)

    def __sub__(self, o):
        return self._bin("sub", o)

    def __rsub__(self, o):
        return self._bin("sub", o, True)

    def __mul__(self, o):
        return self._bin("mul", o)

    def __rmul__(self, o):
        return self._bin("mul", o, True)

    def __neg__(self):
        return self._bin("sub", 0, True)

    def __and__(self, o):
        return self._bin("bitwise_and", o)

    def __rshift__(self, o):
        return self._bin("shift_right", o)

    def __lshift__(self, o):
        return self._bin("shift_left", o)

    def __rlshift__(self, o):
        return self._bin("shift_left", o, True)

    def __lt__(self, o):
        return self._bin("less", o)

    def __le__(self, o):
        return self._bin("less_equal", o)

    def __gt__(self, o):
        return self._bin("greater", o)

    def __ge__(self, o):
        return self._bin("greater_equal", o)

    def eq(self, o):
        return self._bin("equal", o)


def _eq(a, b):
    return a.eq(b) if isinstance(a, Lanes) else np.equal(a, b)


# -- gemmlowp primitives --------------------------------------------------------------------------
def srdhm(xp, a, b):
    ab = a * b
    s = ab + xp.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    return xp.where(s >= 0, s >> 31, -((-s) >> 31))


def rdbpot(xp, x, e):
    if isinstance(e, int) and e == 0:
        return x
    mask = (1 << e) - 1
    threshold = (mask >> 1) + xp.where(x < 0, 1, 0)
    return (x >> e) + xp.where((x & mask) > threshold, 1, 0)


def sat_shl(xp, x, e):
    """SaturatingRoundingMultiplyByPOT(Param) for e >= 0 (e an int or per-row lanes)."""
    if isinstance(e, int) and e == 0:
        return x
    threshold = (1 << (31 - e)) - 1
    y = xp.where(x > threshold, INT32_MAX, x << e)
    return xp.where(x < -threshold, INT32_MIN, y)


def rescale(xp, x, src_bits: int, dst_bits: int):
    """gemmlowp::Rescale<dst>(FixedPoint<src>)."""
    e = src_bits - dst_bits
    return sat_shl(xp, x, e) if e >= 0 else rdbpot(xp, x, -e)


def rounding_half_sum(xp, a, b):
    s = a + b
    # (s + sign) / 2, truncating toward zero
    t = s + xp.where(s >= 0, 1, -1)
    return xp.where(t >= 0, t >> 1, -((-t) >> 1))


def saturate32(xp, x):
    return xp.minimum(xp.maximum(x, INT32_MIN), INT32_MAX)


# -- functions --------------------------------------------------------------------------------------
def _exp_quarter(xp, a):
    """exp(a) for a in [-1/4, 0), F0 -> F0 (Taylor expansion around -1/8)."""
    constant_term, one_third = 1895147668, 715827883
    x = a + (1 << 28)
    x2 = srdhm(xp, x, x)
    x3 = srdhm(xp, x2, x)
    x4 = srdhm(xp, x2, x2)
    x4_over_4 = rdbpot(xp, x4, 2)
    poly = rdbpot(xp, srdhm(xp, x4_over_4 + x3, one_third) + x2, 1)
    return constant_term + srdhm(xp, constant_term, x + poly)


# exp(-2^e) in Q0.31 for the barrel shifter, e = -2..4
_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
               (2, 39332535), (3, 720401), (4, 242))


def exp_on_negative_values(xp, a, integer_bits: int):
    """exp(a) for a <= 0 in FixedPoint<integer_bits>, as FixedPoint<0>."""
    frac = 31 - integer_bits
    quarter = 1 << (frac - 2)
    a_mod = (a & (quarter - 1)) - quarter
    result = _exp_quarter(xp, rescale(xp, a_mod, integer_bits, 0))
    remainder = a_mod - a
    for e, m in _EXP_BARREL:
        if integer_bits > e:
            bit = 1 << (frac + e)
            result = xp.where((remainder & bit) > 0, srdhm(xp, result, m), result)
    if integer_bits > 5:
        clamp = -(1 << (36 - integer_bits))
        result = xp.where(a < clamp, 0, result)
    return xp.where(_eq(a, 0), INT32_MAX, result)


def one_over_one_plus_x_for_x_in_0_1(xp, a):
    """1 / (1 + a) for a in [0, 1), F0 -> F0 (Newton-Raphson in F2)."""
    half_denominator = rounding_half_sum(xp, a, INT32_MAX)
    x = 1515870810 + srdhm(xp, half_denominator, -1010580540)
    one_f2 = 1 << 29
    for _ in range(3):
        hdx = srdhm(xp, half_denominator, x)
        x = x + rescale(xp, srdhm(xp, x, one_f2 - hdx), 4, 2)
    return rescale(xp, x, 1, 0)  # ExactMulByPot<-1>: F2 -> F1, the same raw


def get_reciprocal(xp, x, x_integer_digits: int):
    """TFLite's GetReciprocal of a positive FixedPoint<x_integer_digits>: (1 / x scaled into
    F0, num_bits_over_unit)."""
    headroom_plus_one = xp.clz32(x)
    shifted_minus_one = (x << headroom_plus_one) - (1 << 31)
    return (one_over_one_plus_x_for_x_in_0_1(xp, shifted_minus_one),
            x_integer_digits - headroom_plus_one)


def log_x_for_x_greater_than_or_equal_to_1(xp, x, input_bits: int, output_bits: int):
    """log(x) of FixedPoint<input_bits> x >= 1, as FixedPoint<output_bits> (TFLite common.h)."""
    accum_bits = output_bits + 1
    log_2, sqrt_sqrt_half, sqrt_half = 1488522236, 1805811301, 1518500250
    one_quarter = 536870912
    alpha_n, alpha_d, alpha_i, alpha_f = 117049297, 127690142, 1057819769, 638450708
    shifted_quarter = int(rescale(NP, np.int64(one_quarter), 0, accum_bits))

    z_a = x
    z_a_headroom_plus_1 = xp.clz32(z_a)
    r_a_tmp = sat_shl(xp, z_a, z_a_headroom_plus_1 - 1)
    r_a_raw = sat_shl(xp, srdhm(xp, r_a_tmp, sqrt_half), 1)
    z_a_pow_2_adj = saturate32(xp, sat_shl(xp, input_bits - z_a_headroom_plus_1,
                                           31 - accum_bits) + shifted_quarter)
    z_b = srdhm(xp, z_a, sqrt_half)
    z_b_headroom = xp.clz32(z_b) - 1
    r_b_raw = sat_shl(xp, z_a, z_b_headroom)
    z_b_pow_2_adj = saturate32(xp, sat_shl(xp, input_bits - z_b_headroom, 31 - accum_bits)
                               - shifted_quarter)
    r = xp.minimum(r_a_raw, r_b_raw)
    z_pow_2_adj = xp.maximum(z_a_pow_2_adj, z_b_pow_2_adj)

    p = rounding_half_sum(xp, r, sqrt_sqrt_half)
    q = r - sqrt_sqrt_half
    q = q + q
    common_sq = srdhm(xp, q, q)
    num = srdhm(xp, q, r) + srdhm(xp, srdhm(xp, q, common_sq), alpha_n)
    denom_minus_one = srdhm(xp, p, alpha_i + q + srdhm(xp, alpha_d, common_sq)) + srdhm(
        xp, alpha_f, q)
    recip_denom = one_over_one_plus_x_for_x_in_0_1(xp, denom_minus_one)
    num_scaled = rescale(xp, num, 0, accum_bits)
    total = srdhm(xp, z_pow_2_adj, log_2) + srdhm(xp, num_scaled, recip_denom)
    return rescale(xp, total, accum_bits, output_bits)


def multiply_by_quantized_multiplier(xp, x, m: int, shift: int):
    """TFLite's MultiplyByQuantizedMultiplier (double rounding) of int32 values."""
    left, right = max(shift, 0), max(-shift, 0)
    return rdbpot(xp, srdhm(xp, x * (1 << left) if left else x, m), right)
