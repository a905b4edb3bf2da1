"""Fully-integer TFLite operators (int8/uint8 activations) on the IR's quantized ops, with the
arithmetic of TFLite's own kernels (the builtin ones LiteRT runs without a delegate), so that
outputs are LiteRT's bit for bit:

- CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED: `conv_integer` / `matmul_integer` (exact int32
  sums, int32 bias) then `requantize(mode="fixed_point")` with one multiplier per output channel,
  s_x * s_w[c] / s_y in double (PopulateConvolutionQuantizationParams), clamped to the fused
  activation's range (CalculateActivationRangeQuantized: zp + round(f / s) in float);
- ADD: `qadd(mode="fixed_point")` (inputs shifted left 20 bits, three multipliers); SUB the same
  with `subtract` (TFLite negates input 2's multiplier: the same integers as negating it); MUL: (a - za) (b - zb) in int32, requantized
  by s_a * s_b / s_y computed in float32 as mul.cc does;
- MEAN (reduce.cc's reference QuantizedMeanOrSum): (sum - n zp_x) through s_x / s_y's Q31
  multiplier rescaled by 1/n in integers;
- int8 -> int8 functions of one value (LOGISTIC, TANH, HARD_SWISH, LEAKY_RELU, ELU, and
  requantizing QUANTIZE or CONCATENATION inputs): a 256-entry table computed here exactly as the
  kernel computes each value (LUTPopulate's float arithmetic, HardSwish's int16 fixed point),
  looked up with `gather`;
- QUANTIZE from float: `quantize(rounding="half_away_from_zero")`; DEQUANTIZE: `dequantize`;
  ops that only move integers (RESHAPE, PAD with the zero point, MAX_POOL, CONCATENATION of equal
  parameters, slices) keep their input's parameters (ir/quant.py).
"""
from __future__ import annotations

import math

import numpy as np

from neo.ir import QuantParams, Value
from neo.ir.quant import (
    int_range,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    round_half_away,
)

from . import fixed_point as fp
from .context import TfliteContext
from .reader import TensorInfo

QUANTIZED = ("int8", "uint8")
F32 = np.float32


def is_quantized(v: Value | None) -> bool:
    """An integer activation carrying quantization parameters (a fully-integer model)."""
    return (v is not None and not v.is_const and v.dtype in QUANTIZED + ("int16",)
            and v.type.quant is not None)


def params(t: TensorInfo) -> QuantParams:
    q = t.quant
    if q is None:
        raise ValueError(f"tensor {t.name!r} has no quantization parameters")
    if q.per_tensor:
        return QuantParams.per_tensor(float(q.scale[0]), int(q.zero_point[0]))
    return QuantParams(tuple(float(s) for s in q.scale), tuple(int(z) for z in q.zero_point),
                       q.axis)


def _per_tensor(cx: TfliteContext, t: TensorInfo, what: str) -> tuple[float, int]:
    q = params(t)
    if not q.is_per_tensor:
        cx.unsupported(f"per-axis quantization of the {what} {t.name!r}")
    if t.dtype not in QUANTIZED:
        cx.unsupported(f"{t.tflite_type} quantized {what} {t.name!r}; int8 and uint8 are "
                       "implemented")
    return q.scale[0], q.zero_point[0]


def output_params(cx: TfliteContext) -> tuple[QuantParams, str]:
    t = cx.output(0)
    _per_tensor(cx, t, "output")
    return params(t), t.dtype


def activation_range(cx: TfliteContext, fused: str | None, q: QuantParams, dtype: str
                     ) -> tuple[int, int]:
    """CalculateActivationRangeQuantized: the fused activation's bounds in output integers."""
    lo, hi = int_range(dtype)
    scale, zp = F32(q.scale[0]), q.zero_point[0]

    def quant(f: float) -> int:
        return zp + int(round_half_away(F32(f) / scale))

    if fused in (None, "NONE"):
        return lo, hi
    if fused == "RELU":
        return max(lo, quant(0.0)), hi
    if fused == "RELU6":
        return max(lo, quant(0.0)), min(hi, quant(6.0))
    if fused == "RELU_N1_TO_1":
        return max(lo, quant(-1.0)), min(hi, quant(1.0))
    cx.unsupported_attribute("fused_activation_function", fused,
                             "NONE, RELU, RELU6, RELU_N1_TO_1 on quantized outputs")


def _requantize(cx: TfliteContext, acc: Value, multipliers, axis: int | None, out_q: QuantParams,
                dtype: str, lo: int, hi: int, **extra) -> Value:
    m = tuple(float(v) for v in np.atleast_1d(multipliers))
    return cx.op("requantize", acc, multiplier=m, axis=axis if len(m) > 1 else None,
                 in_zero_point=0, out_zero_point=out_q.zero_point[0], dtype=dtype,
                 mode="fixed_point", min=lo, max=hi, quant=out_q, **extra)


def _weights(cx: TfliteContext, w: Value, position: int) -> tuple[np.ndarray, QuantParams]:
    t = cx.tensor(position)
    if not w.is_const or t is None or t.quant is None or w.dtype not in QUANTIZED:
        cx.unsupported(f"weights {t.name if t else position!r} that are not constant int8 or "
                       "uint8 tensors")
    return np.asarray(w.data), params(t)


def _bias(cx: TfliteContext, b: Value | None, position: int) -> Value | None:
    if b is None:
        return None
    if not b.is_const or b.dtype != "int32":
        cx.unsupported(f"a {b.dtype} bias {cx.tensor(position).name!r}; int32 is implemented")
    return cx.const(np.asarray(b.data, np.int32))


def conv(cx: TfliteContext, x: Value, w: Value, b: Value | None, *, depthwise: bool,
         padding: str, strides, dilations, fused) -> Value:
    """CONV_2D (filter OHWI) or DEPTHWISE_CONV_2D (filter 1HWC) on int8/uint8 activations."""
    sx, zx = _per_tensor(cx, cx.tensor(0), "input")
    data, wq = _weights(cx, w, 1)
    yq, ydtype = output_params(cx)
    cin = x.shape[3]
    if depthwise:
        kh, kw, cout = data.shape[1:]
        oihw = np.ascontiguousarray(np.transpose(data.reshape(kh, kw, cout), (2, 0, 1))
                                    ).reshape(cout, 1, kh, kw)
        groups, wq_axis = cin, 3
    else:
        oihw = np.ascontiguousarray(np.transpose(data, (0, 3, 1, 2)))
        cout, groups, wq_axis = data.shape[0], cin // data.shape[3], 0
    if not wq.is_per_tensor and wq.axis != wq_axis:
        cx.unsupported(f"filter quantized along axis {wq.axis}")
    wscale = np.broadcast_to(np.asarray(wq.scale, np.float64), (cout,))
    wzp = np.broadcast_to(np.asarray(wq.zero_point, np.int64), (cout,))
    pads = cx.pads(padding, x.shape[1:3], oihw.shape[2:], strides, dilations)
    bias = _bias(cx, b, 2)
    ins = (x, cx.const(oihw)) if bias is None else (x, cx.const(oihw), bias)
    acc = cx.op("conv_integer", *ins, strides=tuple(strides), pads=pads,
                dilations=tuple(dilations), groups=groups, layout="NHWC", x_zero_point=zx,
                w_zero_point=int(wzp[0]) if len(set(wzp.tolist())) == 1 else tuple(
                    int(z) for z in wzp))
    # double(s_x) * double(s_w[c]) / double(s_y), as PopulateConvolutionQuantizationParams
    m = float(sx) * wscale / float(yq.scale[0])
    lo, hi = activation_range(cx, fused, yq, ydtype)
    return _requantize(cx, acc, m, 3, yq, ydtype, lo, hi)


def fully_connected(cx: TfliteContext, x: Value, w: Value, b: Value | None, keep_num_dims,
                    fused) -> Value:
    sx, zx = _per_tensor(cx, cx.tensor(0), "input")
    data, wq = _weights(cx, w, 1)
    yq, ydtype = output_params(cx)
    units, depth = data.shape
    if not wq.is_per_tensor and wq.axis != 0:
        cx.unsupported(f"weights quantized along axis {wq.axis}")
    x2 = cx.reshape(x, (x.type.size // depth, depth))
    wzp = np.broadcast_to(np.asarray(wq.zero_point, np.int64), (units,))
    acc = cx.op("matmul_integer", x2, cx.const(np.ascontiguousarray(data.T)), a_zero_point=zx,
                b_zero_point=int(wzp[0]) if len(set(wzp.tolist())) == 1 else tuple(
                    int(z) for z in wzp))
    bias = _bias(cx, b, 2)
    if bias is not None:
        acc = cx.op("add", acc, bias)
    m = float(sx) * np.broadcast_to(np.asarray(wq.scale, np.float64), (units,)) / float(
        yq.scale[0])
    lo, hi = activation_range(cx, fused, yq, ydtype)
    # LiteRT 2.3's per-channel int8 kernel rounds once (measured: a tie that double rounding
    # moves by one step); the per-tensor one keeps the double rounding of convs (no tie seen)
    y = _requantize(cx, acc, m, 1, yq, ydtype, lo, hi,
                    **({"single_rounding": True} if not wq.is_per_tensor else {}))
    return cx.reshape(y, x.shape[:-1] + (units,)) if keep_num_dims else y


def label(cx: TfliteContext, x: Value, out_q: QuantParams, dtype: str, lo: int, hi: int
          ) -> Value:
    """int32 integers that already are the output's (TFLite computed them in integers), clamped
    to [lo, hi] and carrying the output's parameters: a requantize by exactly 1."""
    zo = out_q.zero_point[0]
    return cx.op("requantize", x, multiplier=(1.0,), in_zero_point=zo, out_zero_point=zo,
                 dtype=dtype, mode="fixed_point", min=lo, max=hi, quant=out_q)


def pool(cx: TfliteContext, kind: str, x: Value, kernel, strides, pads, fused) -> Value:
    """MAX_POOL_2D on the integers; AVERAGE_POOL_2D as TFLite's integer kernels: the window's sum
    over the positions inside the input, divided by their count rounding half away from zero."""
    yq, ydtype = output_params(cx)
    xq = params(cx.tensor(0))
    if xq != yq or x.dtype != ydtype:
        cx.unsupported(f"a quantized {kind} whose output parameters differ from its input's")
    lo, hi = activation_range(cx, fused, yq, ydtype)
    if kind == "max_pool":
        y = cx.op("max_pool", x, kernel=tuple(kernel), strides=tuple(strides), pads=pads,
                  layout="NHWC")
        return y if (lo, hi) == int_range(ydtype) else cx.op("clip", y, min=lo, max=hi)
    c = x.shape[3]
    zx = xq.zero_point[0]
    ones = cx.const(np.ones((c, 1) + tuple(kernel), x.dtype))
    # the window sums of x - zx (padding adds nothing: it is zx), then of x: + count * zx
    centered = cx.op("conv_integer", x, ones, strides=tuple(strides), pads=pads, groups=c,
                     layout="NHWC", x_zero_point=zx, w_zero_point=0)
    # the count of input positions in each window (padding excluded), from the same conv
    inside = np.ones((1, 1) + x.shape[1:3], np.float64)
    from neo.ir.ops_nn import conv_reference

    counts = conv_reference({"strides": tuple(strides), "pads": pads, "dilations": None,
                             "groups": 1}, inside, np.ones((1, 1) + tuple(kernel)))
    counts = np.rint(counts).astype(np.int32).transpose(0, 2, 3, 1)
    total = cx.op("add", centered, cx.const(counts * np.int32(zx))) if zx else centered
    count = cx.const(counts)
    half = cx.const(counts // 2)
    zero = cx.const(np.int32(0))
    up = cx.op("div", cx.op("add", total, half), count)
    down = cx.op("div", cx.op("sub", total, half), count)
    rounded = cx.op("where", cx.op("greater", total, zero), up, down)
    return label(cx, rounded, yq, ydtype, lo, hi)


# -- elementwise -----------------------------------------------------------------------------------
def _operand(cx: TfliteContext, v: Value, position: int) -> tuple[Value, QuantParams]:
    t = cx.tensor(position)
    _per_tensor(cx, t, "operand")
    return v, params(t)


def add(cx: TfliteContext, a: Value, b: Value, fused, negate_b: bool = False) -> Value:
    a, aq = _operand(cx, a, 0)
    b, bq = _operand(cx, b, 1)
    yq, ydtype = output_params(cx)
    if a.dtype != ydtype or b.dtype != ydtype:
        cx.unsupported(f"adding {a.dtype} and {b.dtype} into {ydtype}")
    lo, hi = activation_range(cx, fused, yq, ydtype)
    return cx.op("qadd", a, b, a_quant=aq, b_quant=bq, quant=yq, dtype=ydtype,
                 mode="fixed_point", min=lo, max=hi, subtract=negate_b)


def _centered(cx: TfliteContext, v: Value, zp: int) -> Value:
    v32 = cx.cast(v, "int32")
    return v32 if zp == 0 else cx.op("sub", v32, cx.const(np.int32(zp)))


def mul(cx: TfliteContext, a: Value, b: Value, fused) -> Value:
    a, aq = _operand(cx, a, 0)
    b, bq = _operand(cx, b, 1)
    yq, ydtype = output_params(cx)
    prod = cx.op("mul", _centered(cx, a, aq.zero_point[0]), _centered(cx, b, bq.zero_point[0]))
    # mul.cc: input1 scale * input2 scale / output scale, in float
    m = float(F32(aq.scale[0]) * F32(bq.scale[0]) / F32(yq.scale[0]))
    lo, hi = activation_range(cx, fused, yq, ydtype)
    return _requantize(cx, prod, m, None, yq, ydtype, lo, hi)


def mean(cx: TfliteContext, x: Value, axes: list[int], keep_dims: bool,
         compute_sum: bool = False) -> Value:
    """MEAN as LiteRT's reference kernels (reduce.cc, reference QuantizedMeanOrSum, for every
    axis set in LiteRT 2.3): (sum - n zp_x) through s_x / s_y's Q31 multiplier divided by the
    count in integers (no longer normalized, so given as explicit `q31` pairs), one rescaling."""
    sx, zx = _per_tensor(cx, cx.tensor(0), "input")
    yq, ydtype = output_params(cx)
    n = math.prod(x.shape[a] for a in axes)
    total = cx.op("reduce_sum", cx.cast(x, "int32"), axes=tuple(axes), keepdims=int(keep_dims))
    centered = cx.op("sub", total, cx.const(np.int32(zx * n))) if zx else total
    lo, hi = int_range(ydtype)
    real = float(sx) / float(yq.scale[0])  # PrepareMeanOrSum: in double
    if compute_sum:
        return _sum(cx, total, float(sx), zx, n, yq, ydtype)
    qm, shift = quantize_multiplier(real)
    s = min(n.bit_length() - 1, 32, 31 + shift)
    qm, shift = (qm << s) // n, shift - s
    if not 0 < qm < (1 << 31) or shift < -31:
        cx.unsupported(f"a MEAN over {n} values whose rescaling underflows TFLite's multiplier")
    return _requantize(cx, centered, qm * 2.0 ** (shift - 31), None, yq, ydtype, lo, hi,
                       q31=((int(qm), int(shift)),))


def _sum(cx: TfliteContext, total: Value, sx: float, zx: int, n: int, out_q: QuantParams,
         dtype: str) -> Value:
    """SUM of 8-bit integers as LiteRT's optimized kernel (optimized_ops::QuantizedMeanOrSum),
    which its XNNPACK runs agree with: round(float32(sum) * s + bias) + zp_y in float32, s =
    s_x / s_y, bias = -zp_x * s * n, rounded half away from zero. Its reference kernel is not the
    reference here: LiteRT 2.3's BUILTIN_REF SUM reads int8 data as uint8 (reduce.cc passes
    uint8_t pointers), so its int8 sums are wrong."""
    scale = F32(sx) / F32(out_q.scale[0])
    bias = F32(F32(-zx) * scale) * F32(n)
    t = cx.op("mul", cx.cast(total, "float32"), cx.const(np.float32(scale)))
    t = cx.op("add", t, cx.const(np.float32(bias)))
    zo = out_q.zero_point[0]
    q = cx.op("quantize", t, quant=QuantParams.per_tensor(1.0, zo), dtype=dtype,
              rounding="half_away_from_zero")
    lo, hi = int_range(dtype)
    return cx.op("requantize", q, multiplier=(1.0,), in_zero_point=zo, out_zero_point=zo,
                 dtype=dtype, mode="fixed_point", min=lo, max=hi, quant=out_q)


PROD_MAX_TERMS = 64  # REDUCE_PROD unrolls its sequential rescaling: one chain of ops per term


def reduce_prod(cx: TfliteContext, x: Value, axes: list[int], keep_dims: bool) -> Value:
    """int8 REDUCE_PROD as LiteRT's kernels (reduce.cc: QuantizedReduceProd, the same in its
    reference and optimized kernels): over each output's terms in input order, acc = x_0 - zp,
    then acc = MultiplyByQuantizedMultiplier(int64(acc) * (x_k - zp)) for each later term, once
    more at the end, plus the output's zero point, clamped. The multiplier is s_x / s_y^(1/n)
    (GetQuantProdScaling, double), applied n times in all; MultiplyByQuantizedMultiplier's int64
    form rounds once, half up, with the multiplier reduced to 16 bits."""
    sx, zx = _per_tensor(cx, cx.tensor(0), "input")
    yq, ydtype = output_params(cx)
    if x.dtype != "int8" or ydtype != "int8":
        cx.unsupported(f"a {x.dtype} -> {ydtype} quantized REDUCE_PROD; LiteRT's is int8 (or "
                       "int16, not implemented here)")
    rank = x.type.rank
    axes = sorted(a % rank for a in axes)
    n = math.prod(x.shape[a] for a in axes)
    if n > PROD_MAX_TERMS:
        cx.unsupported(f"a quantized REDUCE_PROD of {n} terms per output; up to "
                       f"{PROD_MAX_TERMS} are implemented (each rescales the running product)")
    qm, shift = quantize_multiplier(float(sx) / float(yq.scale[0]) ** (1.0 / n))
    reduced = (qm + (1 << 15)) >> 16 if qm < 0x7FFF0000 else 0x7FFF
    total = 15 - shift
    if not 1 <= total <= 62:
        cx.unsupported(f"a quantized REDUCE_PROD whose rescaling shifts by {total}")
    xp = fp.IrInts(cx)
    others = [a for a in range(rank) if a not in axes]
    rest = tuple(x.shape[a] for a in others)
    terms = cx.reshape(cx.op("transpose", x, perm=tuple(axes + others)), (n,) + rest)

    def term(k: int):
        r = len(rest)
        t = cx.op("slice", terms, starts=(k,) + (0,) * r, ends=(k + 1,) + rest,
                  steps=(1,) * (r + 1))
        return xp.lift(cx.op("sub", cx.cast(t, "int32"), cx.const(np.int32(zx))))

    def rescale(v):  # the int64 overload, then its truncating cast to int32
        r = (v * reduced + (1 << (total - 1))) >> total
        return xp.lift(cx.cast(r.v, "int32"))

    acc = term(0)
    for k in range(1, n):
        acc = rescale(acc * term(k))
    out = rescale(acc) + int(yq.zero_point[0])
    lo, hi = int_range(ydtype)
    y = label(cx, cx.cast(xp.minimum(xp.maximum(out, lo), hi).v, "int32"), yq, ydtype, lo, hi)
    shape = tuple(1 if a in axes else x.shape[a] for a in range(rank)) if keep_dims else rest
    return cx.reshape(y, shape)


# -- functions of one value: tables --------------------------------------------------------------
def lookup(cx: TfliteContext, x: Value, table: np.ndarray, out_q: QuantParams, dtype: str
           ) -> Value:
    """table[x - min]: the integers of any function of one 8-bit value."""
    lo, _ = int_range(x.dtype)
    idx = cx.cast(x, "int32")
    if lo:
        idx = cx.op("sub", idx, cx.const(np.int32(lo)))
    t = cx.g.const(np.asarray(table, dtype), cx.name, quant=out_q)
    return cx.op("gather", t, idx, axis=0)


def lut_float(in_q: QuantParams, out_q: QuantParams, dtype: str, fn) -> np.ndarray:
    """LUTPopulate: each input integer dequantized, transformed and requantized in float32,
    rounded half away from zero."""
    lo, hi = int_range(dtype)
    vals = np.arange(lo, hi + 1, dtype=np.int64)
    deq = F32(in_q.scale[0]) * (vals - in_q.zero_point[0]).astype(F32)
    with np.errstate(over="ignore"):
        transformed = fn(deq.astype(F32)).astype(F32)
    inv = F32(1) / F32(out_q.scale[0])
    rescaled = round_half_away((transformed * inv).astype(F32))
    q = rescaled + out_q.zero_point[0]
    return np.clip(q, lo, hi).astype(np.int64)


def sigmoid32(v: np.ndarray) -> np.ndarray:
    # 1 / (1 + exp(-v)) in float32 (exp correctly rounded through float64, as glibc's expf)
    e = np.exp(-v.astype(np.float64)).astype(F32)
    return (F32(1) / (F32(1) + e)).astype(F32)


def tanh32(v: np.ndarray) -> np.ndarray:
    return np.tanh(v.astype(np.float64)).astype(F32)


def _srdhm16(a: np.ndarray, b: int) -> np.ndarray:
    """gemmlowp's SaturatingRoundingDoublingHighMul on int16."""
    a = np.asarray(a, np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 14, 1 - (1 << 14))
    s = ab + nudge
    high = np.where(s >= 0, s >> 15, -((-s) >> 15))
    return np.where((a == b) & (a == -32768), 32767, high)


def _rdbpot(x: np.ndarray, e: int) -> np.ndarray:
    x = np.asarray(x, np.int64)
    mask = (1 << e) - 1
    return (x >> e) + ((x & mask) > ((mask >> 1) + (x < 0)))


def _sat16(x: np.ndarray) -> np.ndarray:
    return np.clip(x, -32768, 32767)


def hard_swish_table(in_q: QuantParams, out_q: QuantParams, dtype: str) -> np.ndarray:
    """TFLite's quantized HardSwish (reference_ops::HardSwish with HardSwishPrepare's int16
    fixed-point parameters), for every input integer."""
    si, so = F32(in_q.scale[0]), F32(out_q.scale[0])
    hires = F32(1.0 / 128.0) * si
    out_m, out_e = quantize_multiplier(float(hires / so))
    relu_m, relu_e = quantize_multiplier(float(hires / F32(3.0 / 32768.0)))

    def down16(m: int) -> int:  # DownScaleInt32ToInt16Multiplier
        return 32767 if m >= (1 << 31) - 1 - (1 << 15) else (m + (1 << 15)) >> 16

    out_m16, relu_m16 = down16(out_m), down16(relu_m)
    if out_e > 0:
        raise ValueError("hard swish output multiplier above 1")
    lo, hi = int_range(dtype)
    v = np.arange(lo, hi + 1, dtype=np.int64) - in_q.zero_point[0]
    v = ((v + 32768) % 65536) - 32768  # int16_t
    hires_v = ((v * 128 + 32768) % 65536) - 32768
    pre_out = _srdhm16(hires_v, out_m16)
    r = hires_v
    if relu_e > 0:
        r = _sat16(r * (1 << (relu_e - 1)))
    r = _srdhm16(r, relu_m16)
    if relu_e > 0:
        r = _sat16(r * 2)
    if relu_e < 0:
        r = _rdbpot(r, -relu_e)
    r = (r + (1 << 15)) >> 1
    # SaturatingDoublingHighMul: truncating division of the int32 product by 2^15
    ab = r * pre_out
    prod = np.where(ab >= 0, ab >> 15, -((-ab) >> 15))
    prod = np.where((r == pre_out) & (r == -32768), 32767, prod)
    prod = ((prod + 32768) % 65536) - 32768
    y = _rdbpot(prod, -out_e) + out_q.zero_point[0]
    return np.clip(y, lo, hi)


def requantize_table(in_q: QuantParams, out_q: QuantParams, dtype: str) -> np.ndarray:
    """Float rescaling as concatenation does for inputs of other parameters:
    round(q * s_in / s_out + (-z_in * s_in / s_out)) + z_out, in float32."""
    lo, hi = int_range(dtype)
    vals = np.arange(lo, hi + 1, dtype=np.int64)
    scale = F32(in_q.scale[0]) * (F32(1) / F32(out_q.scale[0]))
    bias = F32(-in_q.zero_point[0]) * scale
    y = round_half_away((vals.astype(F32) * scale + bias).astype(F32)) + out_q.zero_point[0]
    return np.clip(y, lo, hi).astype(np.int64)


def fixed_point_table(in_q: QuantParams, out_q: QuantParams, dtype: str, multiplier: float,
                      negative_multiplier: float | None = None, act: tuple[int, int] | None = None
                      ) -> np.ndarray:
    """zp_out + MultiplyByQuantizedMultiplier(q - zp_in, m) for every input integer (ReluX;
    LeakyRelu takes another multiplier below zero), clamped to `act` or the type's range."""
    lo, hi = act or int_range(dtype)
    first, last = int_range(dtype)
    v = np.arange(first, last + 1, dtype=np.int64) - in_q.zero_point[0]
    y = multiply_by_quantized_multiplier(v, *quantize_multiplier(multiplier))
    if negative_multiplier is not None:
        y = np.where(v >= 0, y, multiply_by_quantized_multiplier(
            v, *quantize_multiplier(negative_multiplier)))
    return np.clip(y + out_q.zero_point[0], lo, hi)


# ReluX's bounds: (min, max) of the real output, None for unbounded
_RELU_BOUNDS = {"relu": (0.0, None), "relu6": (0.0, 6.0), "relu_n1_to_1": (-1.0, 1.0),
                "relu_0_to_1": (0.0, 1.0)}


def unary_table(cx: TfliteContext, x: Value, kind: str, **kw) -> Value:
    """LOGISTIC, TANH, ELU (LUTPopulate's float), HARD_SWISH (int16 fixed point), RELU family and
    LEAKY_RELU (fixed-point multipliers) on 8-bit values, by table."""
    t = cx.tensor(0)
    _per_tensor(cx, t, "input")
    in_q = params(t)
    out_q, dtype = output_params(cx)
    if x.dtype != dtype:
        cx.unsupported(f"{kind} from {x.dtype} to {dtype}")
    si, so = F32(in_q.scale[0]), F32(out_q.scale[0])
    if kind == "hard_swish":
        table = hard_swish_table(in_q, out_q, dtype)
    elif kind in _RELU_BOUNDS:
        # ReluX: bounds zp + roundf(f / s), the multiplier s_in / s_out in float
        lo_t, hi_t = int_range(dtype)
        fmin, fmax = _RELU_BOUNDS[kind]
        zo = out_q.zero_point[0]
        lo = max(lo_t, zo + int(round_half_away(F32(fmin) / so)))
        hi = hi_t if fmax is None else min(hi_t, zo + int(round_half_away(F32(fmax) / so)))
        table = fixed_point_table(in_q, out_q, dtype, float(si / so), act=(lo, hi))
    elif kind == "leaky_relu":
        alpha = F32(kw["alpha"])
        table = fixed_point_table(in_q, out_q, dtype, float(si / so),
                                  negative_multiplier=float(si * alpha / so))
    else:
        fns = {
            "logistic": sigmoid32,
            "tanh": tanh32,
            "elu": lambda v: np.where(v < 0, np.expm1(v.astype(np.float64)).astype(F32), v),
        }
        table = lut_float(in_q, out_q, dtype, fns[kind])
    return lookup(cx, x, table, out_q, dtype)


def quantize_from_float(cx: TfliteContext, x: Value) -> Value:
    q, dtype = output_params(cx)
    return cx.op("quantize", cx.cast(x, "float32"), quant=q, dtype=dtype,
                 rounding="half_away_from_zero")


def requantize(cx: TfliteContext, x: Value) -> Value:
    """QUANTIZE from integers: TFLite's Requantize, s_in / s_out in Q31."""
    sx, zx = _per_tensor(cx, cx.tensor(0), "input")
    q, dtype = output_params(cx)
    lo, hi = int_range(dtype)
    return cx.op("requantize", x, multiplier=(float(sx) / float(q.scale[0]),), in_zero_point=zx,
                 out_zero_point=q.zero_point[0], dtype=dtype, mode="fixed_point", min=lo,
                 max=hi, quant=q)


def dequantize(cx: TfliteContext, x: Value) -> Value:
    t = cx.tensor(0)
    return cx.op("dequantize", x, quant=params(t), dtype="float32")


def relabel(cx: TfliteContext, x: Value, q: QuantParams, dtype: str) -> Value:
    """`x` in parameters `q` (concatenation inputs of other parameters), by table."""
    if x.type.quant == q:
        return x
    return lookup(cx, x, requantize_table(x.type.quant, q, dtype), q, dtype)


# -- matrix products and transposed convolutions ---------------------------------------------------
def batch_matmul(cx: TfliteContext, a: Value, b: Value, adj_x: bool, adj_y: bool) -> Value:
    """BATCH_MATMUL of int8 operands (activations or constants): exact int32 sums of
    (a - za)(b - zb), requantized by double(s_a) double(s_b) / s_y (GetQuantizedConvolution-
    Multipler) with gemmlowp's double rounding, the whole int8 range (no fused activation)."""
    sa, za = _per_tensor(cx, cx.tensor(0), "operand")
    sb, zb = _per_tensor(cx, cx.tensor(1), "operand")
    yq, ydtype = output_params(cx)
    if a.dtype != "int8" or b.dtype != "int8" or ydtype != "int8":
        cx.unsupported(f"a quantized BATCH_MATMUL of {a.dtype} and {b.dtype} into {ydtype}; "
                       "int8 is implemented")

    def adjoint(v: Value) -> Value:
        r = v.type.rank
        return cx.transpose(v, tuple(range(r - 2)) + (r - 1, r - 2))

    acc = cx.op("matmul_integer", adjoint(a) if adj_x else a, adjoint(b) if adj_y else b,
                a_zero_point=za, b_zero_point=zb)
    lo, hi = int_range(ydtype)
    return _requantize(cx, acc, float(sa) * float(sb) / float(yq.scale[0]), None, yq, ydtype,
                       lo, hi)


def _spread(cx: TfliteContext, x: Value, axis: int, stride: int, zp: int) -> Value:
    """x's entries `stride` apart along `axis`, the zero point between them:
    n -> (n - 1) * stride + 1."""
    if stride == 1:
        return x
    shape = x.shape
    n = shape[axis]
    y = cx.reshape(x, shape[:axis + 1] + (1,) + shape[axis + 1:])
    pads = [0] * (2 * y.type.rank)
    pads[y.type.rank + axis + 1] = stride - 1
    y = cx.op("pad", y, pads=tuple(pads), mode="constant", value=float(zp))
    y = cx.reshape(y, shape[:axis] + (n * stride,) + shape[axis + 1:])
    return cx.slice(y, axis, 0, (n - 1) * stride + 1)


def transpose_conv(cx: TfliteContext, x: Value, w: Value, b: Value | None, out_hw, strides,
                   padding: str, fused) -> Value:
    """TRANSPOSE_CONV of int8 activations (reference_integer_ops::TransposeConv): the scattered
    int32 sums of (x - zx) * w (the filter's zero point is not subtracted: TFLite's filters are
    symmetric), plus the bias, requantized per output channel as CONV_2D. The same sums are a
    convolution of x spread `stride` apart (zero points between) by the flipped filter, padded
    so that output row oy is the scatter's row oy + pad."""
    sx, zx = _per_tensor(cx, cx.tensor(2), "input")
    data, wq = _weights(cx, w, 1)
    yq, ydtype = output_params(cx)
    cout, kh, kw, _ = data.shape
    if not wq.is_per_tensor and wq.axis != 0:
        cx.unsupported(f"filter quantized along axis {wq.axis}")
    oihw = np.ascontiguousarray(np.transpose(data, (0, 3, 1, 2))[:, :, ::-1, ::-1])
    y = x
    pads = [0] * 8
    for i, (n, o, k, s) in enumerate(zip(x.shape[1:3], out_hw, (kh, kw), strides)):
        # TFLite's padding of the conv from the output back to the input (ComputePadding)
        conv_out = -(-o // s) if padding == "SAME" else (o - k + s) // s
        head = max(0, (conv_out - 1) * s + k - o) // 2
        y = _spread(cx, y, 1 + i, s, zx)
        pads[1 + i] = k - 1 - head
        pads[5 + i] = o - (n - 1) * s - 1 + head
    if any(pads):
        y = cx.op("pad", y, pads=tuple(pads), mode="constant", value=float(zx))
    bias = _bias(cx, b, 3)
    ins = (y, cx.const(oihw)) if bias is None else (y, cx.const(oihw), bias)
    acc = cx.op("conv_integer", *ins, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1),
                groups=1, layout="NHWC", x_zero_point=zx, w_zero_point=0)
    m = float(sx) * np.broadcast_to(np.asarray(wq.scale, np.float64), (cout,)) / float(
        yq.scale[0])
    lo, hi = activation_range(cx, fused, yq, ydtype)
    return _requantize(cx, acc, m, 3, yq, ydtype, lo, hi)


# -- bilinear resize -------------------------------------------------------------------------------
def _bilinear_axis(n_in: int, n_out: int, align_corners: bool, half_pixel: bool
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ResizeBilinearInteger along one axis: (lower index, upper index, the upper one's weight
    in 1/1024) of every output position, scale and positions in 10-bit fixed point."""
    if align_corners and n_out > 1:
        scale = ((1 << 10) * (n_in - 1) + (n_out - 1) // 2) // (n_out - 1)
    else:
        scale = ((1 << 10) * n_in + n_out // 2) // n_out
    pos = np.arange(n_out, dtype=np.int64) * scale
    if half_pixel:
        pos = pos + scale // 2 - (1 << 9)
    trunc = np.where(pos >= 0, pos >> 10, -((-pos) >> 10))  # C division toward zero
    lower = np.maximum(trunc, 0)
    up = pos + (1 << 10) - 1
    upper = np.minimum(np.where(up >= 0, up >> 10, -((-up) >> 10)), n_in - 1)
    return lower, upper, pos - (lower << 10)


def resize_bilinear(cx: TfliteContext, x: Value, out_hw, align_corners: bool,
                    half_pixel: bool) -> Value:
    """RESIZE_BILINEAR on int8/uint8 as reference_ops::ResizeBilinearInteger: the four
    neighbours weighted in 1/1024 steps per axis (int64 sums of value * wy * wx), divided by 2^20
    rounding half away from zero; the integers keep the input's parameters."""
    xq = params(cx.tensor(0))
    yq, ydtype = output_params(cx)
    if xq != yq or x.dtype != ydtype:
        cx.unsupported("a quantized bilinear resize whose output parameters differ from its "
                       "input's")
    (_, ih, iw, _), (oh, ow) = x.shape, out_hw
    y0, y1, wy = _bilinear_axis(ih, oh, align_corners, half_pixel)
    x0, x1, wx = _bilinear_axis(iw, ow, align_corners, half_pixel)
    one = 1 << 10
    total = None
    for rows, ry in ((y0, one - wy), (y1, wy)):
        picked = cx.op("gather", x, cx.const(rows.astype(np.int32)), axis=1)
        for cols, rx in ((x0, one - wx), (x1, wx)):
            v = cx.cast(cx.op("gather", picked, cx.const(cols.astype(np.int32)), axis=2), "int64")
            weight = (ry[:, None] * rx[None, :]).astype(np.int64).reshape(1, oh, ow, 1)
            term = cx.op("mul", v, cx.const(weight))
            total = term if total is None else cx.op("add", total, term)
    # (total + sign * 2^19) / 2^20, the division truncating toward zero
    half = cx.op("where", cx.op("greater", total, cx.const(np.int64(0))),
                 cx.const(np.int64(1 << 19)), cx.const(np.int64(-(1 << 19))))
    s = cx.op("add", total, half)
    twenty = cx.const(np.int64(20))
    down = cx.op("where", cx.op("greater_equal", s, cx.const(np.int64(0))),
                 cx.op("shift_right", s, twenty),
                 cx.op("sub", cx.const(np.int64(0)),
                       cx.op("shift_right", cx.op("sub", cx.const(np.int64(0)), s), twenty)))
    lo, hi = int_range(ydtype)
    return label(cx, cx.cast(down, "int32"), yq, ydtype, lo, hi)
