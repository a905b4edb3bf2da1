"""int8/uint8 SOFTMAX and LOG_SOFTMAX as TFLite's reference kernels compute them
(reference_ops::Softmax, reference_integer_ops::LogSoftmax, reference_ops::LogSoftmax), in
integers:

- over the last axis, each input minus the row's maximum is an integer d in [-255, 0]; what the
  kernels compute from d alone (the input rescaled to Q5.26 by the beta * s_x multiplier,
  gemmlowp's fixed-point exp of it, its Q12.19 share of the sum) is a 256-entry table made here
  with fixed_point.py's numpy backend and looked up with `gather`;
- the row's parts (the sum of exps, its reciprocal by Newton-Raphson or its logarithm, the
  count of leading zeros that scales them) are int64 IR arithmetic built by the same functions
  on `IrInts`, per row;
- the output is a fixed-point product and rounding shift of the two, clamped.

Nothing is computed in float at run time (PreprocessSoftmaxScaling's double arithmetic happens
here, as in the kernels' Prepare).
"""
from __future__ import annotations

import math

import numpy as np

from neo.ir import Value
from neo.ir.quant import int_range, quantize_multiplier

from . import fixed_point as fp
from .context import TfliteContext
from .quantized import _per_tensor, label, output_params

SCALED_DIFF_BITS = 5  # the exp's input is Q5.26
ACCUM_BITS = 12  # the sum of exps is Q12.19
MAX_DEPTH = 1 << 12  # Q12.19 sums of up to 2^12 terms cannot overflow int32


def _scaling(cx: TfliteContext, beta: float, input_scale: float) -> tuple[int, int, int]:
    """PreprocessSoftmaxScaling and CalculateInputRadius: (Q31 multiplier, left shift,
    diff_min) of beta * s_x into Q5.26."""
    real = min(float(beta) * float(input_scale) * (1 << (31 - SCALED_DIFF_BITS)),
               float((1 << 31) - 1))
    if not real > 1.0:
        cx.unsupported(f"beta * input scale = {beta * input_scale:g}: TFLite's kernel needs it "
                       "above 2^-26")
    qm, shift = quantize_multiplier(real)
    radius = math.floor(((1 << SCALED_DIFF_BITS) - 1) * float(1 << (31 - SCALED_DIFF_BITS))
                        / float(1 << shift))
    return qm, shift, -radius


def _diff_tables(qm: int, shift: int, diff_min: int) -> tuple[np.ndarray, np.ndarray]:
    """For d = -255..0: (d rescaled to Q5.26, exp(d) in Q0.31 and 0 below diff_min)."""
    d = np.arange(-255, 1, dtype=np.int64)
    valid = d >= diff_min
    dv = np.where(valid, d, 0)
    rescaled = fp.srdhm(fp.NP, dv * (1 << shift), qm)  # MultiplyByQuantizedMultiplierGreaterThanOne
    exp = fp.exp_on_negative_values(fp.NP, rescaled, SCALED_DIFF_BITS)
    return rescaled, np.where(valid, exp, 0)


def _row_diffs(cx: TfliteContext, x: Value) -> tuple[Value, Value, int]:
    """(d + 255 as int32 gather indices, d as int64, the last axis)."""
    axis = x.type.rank - 1
    if x.shape[axis] > MAX_DEPTH:
        cx.unsupported(f"a quantized {cx.op_type} over {x.shape[axis]} values; TFLite's kernel "
                       f"sums at most {MAX_DEPTH} of them without overflow")
    top = cx.op("reduce_max", x, axes=(axis,), keepdims=1)
    d = cx.op("sub", cx.cast(x, "int32"), cx.cast(top, "int32"))
    return cx.op("add", d, cx.const(np.int32(255))), d, axis


def _sum_of_exps(cx: TfliteContext, xp: fp.IrInts, idx: Value, exp: np.ndarray, axis: int):
    """The row sums of Rescale<12>(exp(d)), int64 lanes of shape [..., 1]."""
    shares = fp.rdbpot(fp.NP, exp, ACCUM_BITS).astype(np.int32)
    terms = cx.op("gather", cx.const(shares), idx, axis=0)
    return xp.lift(cx.op("reduce_sum", terms, axes=(axis,), keepdims=1))


def softmax(cx: TfliteContext, x: Value, beta: float) -> Value:
    sx, _ = _per_tensor(cx, cx.tensor(0), "input")
    yq, ydtype = output_params(cx)
    lo, hi = int_range(ydtype)
    if abs(yq.scale[0] - 1 / 256) > 0.001 / 256 or yq.zero_point[0] != lo:
        cx.unsupported(f"a quantized softmax output of scale {yq.scale[0]:g} and zero point "
                       f"{yq.zero_point[0]}; TFLite's kernel writes scale 1/256, zero point {lo}")
    qm, shift, diff_min = _scaling(cx, beta, sx)
    _, exp = _diff_tables(qm, shift, diff_min)
    idx, _, axis = _row_diffs(cx, x)
    xp = fp.IrInts(cx)
    total = _sum_of_exps(cx, xp, idx, exp, axis)
    scale, bits_over_unit = fp.get_reciprocal(xp, total, ACCUM_BITS)
    e = xp.lift(cx.op("gather", cx.const(exp), idx, axis=0))
    # (1 / sum) * exp(d) in Q0.31, shifted down to 8 bits (below diff_min: exp 0 -> the minimum)
    y = fp.rdbpot(xp, fp.srdhm(xp, scale, e), bits_over_unit + (31 - 8)) + lo
    return label(cx, cx.cast(y.v, "int32"), yq, ydtype, lo, hi)


def log_softmax(cx: TfliteContext, x: Value) -> Value:
    """int8 (reference_integer_ops::LogSoftmax) and uint8 (reference_ops::LogSoftmax): the same
    fixed-point arithmetic, the uint8 output 128 higher (zero point 255, clamp [0, 255])."""
    sx, _ = _per_tensor(cx, cx.tensor(0), "input")
    yq, ydtype = output_params(cx)
    if ydtype != x.dtype:
        cx.unsupported(f"a {x.dtype} -> {ydtype} quantized LOG_SOFTMAX; TFLite's kernels keep "
                       "the input's type")
    lo, hi = int_range(ydtype)
    if yq.scale[0] != 16 / 256 or yq.zero_point[0] != hi:
        cx.unsupported(f"a quantized log-softmax output of scale {yq.scale[0]:g} and zero point "
                       f"{yq.zero_point[0]}; TFLite's kernel writes scale 1/16, zero point {hi}")
    qm, shift, diff_min = _scaling(cx, 1.0, sx)
    # PreprocessLogSoftmaxScalingExp: the inverse of the input rescaling, below one
    rev_m, rev_shift = quantize_multiplier(float(1 << (31 - shift)) / float(qm))
    rescaled, exp = _diff_tables(qm, shift, diff_min)
    idx, d, axis = _row_diffs(cx, x)
    xp = fp.IrInts(cx)
    total = _sum_of_exps(cx, xp, idx, exp, axis)
    log_sum = fp.log_x_for_x_greater_than_or_equal_to_1(xp, total, ACCUM_BITS,
                                                        SCALED_DIFF_BITS)
    # the smallest d whose output is representable: below it the output is the minimum
    reach = fp.multiply_by_quantized_multiplier(xp, log_sum + fp.INT32_MIN, rev_m, rev_shift)
    adjusted_diff_min = xp.maximum(reach, diff_min - 1)
    q5 = xp.lift(cx.op("gather", cx.const(rescaled), idx, axis=0))
    out = fp.rdbpot(xp, q5 - log_sum, 31 - SCALED_DIFF_BITS - 4) + hi
    out = xp.minimum(xp.maximum(out, lo), hi)
    y = xp.where(xp.lift(d) > adjusted_diff_min, out, lo)
    return label(cx, cx.cast(y.v, "int32"), yq, ydtype, lo, hi)
