"""Quantized ops: quantize, dequantize, requantize, integer conv and matmul (int32 accumulators),
quantized add. Their parameters are attributes, so each numpy reference is self-contained and
bit exact; the outputs' types carry the parameters they produce (`TensorType.quant`), and where
an input's type carries some, they must agree with the attributes.

Which rounding each uses (ir/quant.py has the arithmetic):

| op | rounding |
|---|---|
| `quantize` | `x / float32(scale)` in float32, then `rounding`: half_to_even (ONNX) or half_away_from_zero (TFLite) |
| `dequantize` | `float32(q - zp) * float32(scale)`: exact product, one rounding (ONNX and TFLite agree) |
| `requantize` mode float | `float32(x - in_zp) * float32(multiplier)`, half to even (onnxruntime, ONNX, neo --quantize) |
| `requantize` mode fixed_point | TFLite: Q31 multiplier and shift, gemmlowp double rounding; `q31` gives the (multiplier, shift) pairs where a kernel derives them in integers (TFLite's MEAN divides the Q31 multiplier by the count: not normalized); `single_rounding`: x * m + 2^(30 - shift) >> (31 - shift), one rounding half up (LiteRT's per-channel int8 FULLY_CONNECTED) |
| `qadd` mode float | onnxruntime's QLinearAdd: float32 ratios sa/sc, sb/sc, half to even |
| `qadd` mode fixed_point | TFLite's int8 ADD: inputs shifted left 20 bits, three fixed-point multipliers; `subtract` makes it SUB (b's centered value negated) |
| `conv_integer`, `matmul_integer` | exact int32 sums of (x - x_zp) * (w - w_zp) (ONNX ConvInteger, MatMulInteger) |
"""
from __future__ import annotations

import numpy as np

from .ops_elementwise import broadcast_shapes
from .ops_nn import _conv_infer, _layout_aware, _matmul_infer, conv_reference
from .quant import (
    ROUNDING,
    fixed_point_multipliers,
    int_range,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
)
from .registry import FusionKind, define_op
from .types import FLOAT_DTYPES, QuantParams, TensorType

QUANT_DTYPES = ("int8", "uint8", "int16", "uint16")
MODES = ("float", "fixed_point")


def _check_input_quant(name: str, t: TensorType, q: QuantParams | None) -> None:
    if t.quant is not None and q is not None and t.quant != q:
        raise ValueError(f"{name} is quantized as {t.quant}, the op says {q}")


def _check_zero_point(name: str, t: TensorType, zp) -> None:
    if t.quant is None:
        return
    z = tuple(int(v) for v in np.atleast_1d(zp))
    tz = t.quant.zero_point
    if z != tz and not (len(set(tz)) == 1 and set(z) == {tz[0]}):
        raise ValueError(f"{name} has zero point {tz[:4]}, the op says {z[:4]}")


def _out_quant(attrs, dtype: str) -> QuantParams | None:
    q = attrs.get("quant")
    if q is not None and not isinstance(q, QuantParams):
        raise TypeError(f"quant must be a QuantParams, got {type(q).__name__}")
    return q


def _clamp_bounds(attrs, dtype: str) -> tuple[int, int]:
    lo, hi = int_range(dtype)
    if attrs.get("min") is not None:
        lo = max(lo, int(attrs["min"]))
    if attrs.get("max") is not None:
        hi = min(hi, int(attrs["max"]))
    if lo > hi:
        raise ValueError(f"clamp range [{lo}, {hi}] is empty")
    return lo, hi


# -- quantize: float -> integers ------------------------------------------------------------------
def _quantize_infer(attrs, types):
    x = types[0]
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"quantize needs a float tensor, got {x.dtype}")
    if attrs["dtype"] not in QUANT_DTYPES:
        raise TypeError(f"quantize to {attrs['dtype']}: expected one of {', '.join(QUANT_DTYPES)}")
    if attrs["rounding"] not in ROUNDING:
        raise ValueError(f"rounding {attrs['rounding']!r}: expected {', '.join(ROUNDING)}")
    q = _out_quant(attrs, attrs["dtype"])
    if q is None:
        raise ValueError("quantize needs its parameters (quant=QuantParams(...))")
    return [TensorType(x.shape, attrs["dtype"], q)]


def quantize_reference(attrs, x):
    q: QuantParams = attrs["quant"]
    lo, hi = int_range(attrs["dtype"])
    y = x.astype(np.float32) / q.scales(x.ndim)  # float32 division, as both references
    y = np.where(np.isnan(y), np.float32(0), y)
    r = ROUNDING[attrs["rounding"]](y)
    zp = q.zero_points(x.ndim)
    return (np.clip(r, lo - zp, hi - zp) + zp).astype(attrs["dtype"])


define_op("quantize", FusionKind.ELEMWISE, _quantize_infer, quantize_reference,
          attrs={"quant": None, "dtype": "uint8", "rounding": "half_to_even"})


# -- dequantize: integers -> float ----------------------------------------------------------------
def _dequantize_infer(attrs, types):
    x = types[0]
    q = attrs["quant"]
    if x.dtype not in QUANT_DTYPES + ("int32",):
        raise TypeError(f"dequantize needs an 8-, 16- or 32-bit integer tensor, got {x.dtype}")
    if not isinstance(q, QuantParams):
        raise ValueError("dequantize needs the input's parameters (quant=QuantParams(...))")
    _check_input_quant("the input", x, q)
    TensorType(x.shape, x.dtype, q)  # checks a per-axis q against the shape
    if attrs["dtype"] not in FLOAT_DTYPES:
        raise TypeError(f"dequantize to {attrs['dtype']}: expected a float type")
    return [TensorType(x.shape, attrs["dtype"])]


def dequantize_reference(attrs, x):
    q: QuantParams = attrs["quant"]
    y = (x.astype(np.int64) - q.zero_points(x.ndim)).astype(np.float32) * q.scales(x.ndim)
    return y.astype(attrs["dtype"])


define_op("dequantize", FusionKind.ELEMWISE, _dequantize_infer, dequantize_reference,
          attrs={"quant": None, "dtype": "float32"})


# -- requantize: integers (an int32 accumulator, or 8-bit values) -> 8-bit values of new params --
def _requantize_infer(attrs, types):
    x = types[0]
    if x.dtype not in QUANT_DTYPES + ("int32",):
        raise TypeError(f"requantize needs an integer tensor, got {x.dtype}")
    dtype = attrs["dtype"]
    if dtype not in QUANT_DTYPES:
        raise TypeError(f"requantize to {dtype}: expected one of {', '.join(QUANT_DTYPES)}")
    if attrs["mode"] not in MODES:
        raise ValueError(f"requantize mode {attrs['mode']!r}: expected {' or '.join(MODES)}")
    m = tuple(attrs["multiplier"] or ())
    if not m or not all(np.isfinite(v) and v > 0 for v in m):
        raise ValueError(f"requantize needs positive multipliers, got {m[:4]}")
    q31 = attrs.get("q31")
    if q31 is not None and (attrs["mode"] != "fixed_point" or len(q31) != len(m) or not all(
            0 < int(qm) < (1 << 31) and -31 <= int(sh) <= 30 for qm, sh in q31)):
        raise ValueError(f"q31 must give one (multiplier in (0, 2^31), shift in [-31, 30]) pair "
                         f"per multiplier of a fixed_point requantize, got {tuple(q31)[:4]}")
    axis = attrs["axis"]
    if len(m) > 1 and (axis is None or not 0 <= axis < x.rank or x.shape[axis] != len(m)):
        raise ValueError(f"{len(m)} multipliers along axis {axis} do not fit shape {x.shape}")
    _check_zero_point("the input", x, attrs["in_zero_point"])
    lo, hi = _clamp_bounds(attrs, dtype)
    if not int_range(dtype)[0] <= attrs["out_zero_point"] <= int_range(dtype)[1]:
        raise ValueError(f"output zero point {attrs['out_zero_point']} outside {dtype}")
    q = _out_quant(attrs, dtype)
    if q is not None and (not q.is_per_tensor or q.zero_point[0] != attrs["out_zero_point"]):
        raise ValueError(f"output parameters {q} must be per tensor with zero point "
                         f"{attrs['out_zero_point']}")
    return [TensorType(x.shape, dtype, q)]


def multipliers(attrs, rank: int) -> np.ndarray:
    """The requantize multipliers shaped to broadcast over a rank-`rank` input (float64)."""
    m = np.asarray(attrs["multiplier"], np.float64)
    if m.size == 1:
        return m.reshape(())
    shape = [1] * rank
    shape[attrs["axis"]] = m.size
    return m.reshape(shape)


def fixed_point_pairs(attrs, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (Q31 multiplier, shift) arrays of a fixed_point requantize, shaped as `m`: the
    explicit `q31` pairs where given, else QuantizeMultiplier of each multiplier."""
    if attrs.get("q31") is None:
        return fixed_point_multipliers(m)
    pairs = np.asarray(attrs["q31"], np.int64).reshape(-1, 2)
    return pairs[:, 0].reshape(np.shape(m)), pairs[:, 1].reshape(np.shape(m))


def requantize_reference(attrs, x):
    dtype = attrs["dtype"]
    lo, hi = _clamp_bounds(attrs, dtype)
    zo = int(attrs["out_zero_point"])
    xc = x.astype(np.int64) - int(attrs["in_zero_point"])
    m = multipliers(attrs, x.ndim)
    if attrs["mode"] == "float":
        y = xc.astype(np.float32) * m.astype(np.float32)
        y = np.rint(np.clip(y, np.float32(lo - zo), np.float32(hi - zo)))
        return (y.astype(np.int64) + zo).astype(dtype)
    qm, shift = fixed_point_pairs(attrs, m)
    xc = np.clip(xc, -(1 << 31), (1 << 31) - 1)
    if attrs.get("single_rounding"):
        # TFLite's single-rounding MultiplyByQuantizedMultiplier: one rounding half up
        total = 31 - shift
        y = ((xc * qm + (np.int64(1) << (total - 1))) >> total) + zo
        return np.clip(y, lo, hi).astype(dtype)
    y = multiply_by_quantized_multiplier(xc, qm, shift) + zo
    return np.clip(y, lo, hi).astype(dtype)


define_op("requantize", FusionKind.ELEMWISE, _requantize_infer, requantize_reference,
          attrs={"multiplier": None, "axis": None, "in_zero_point": 0, "out_zero_point": 0,
                 "dtype": "int8", "mode": "float", "min": None, "max": None, "quant": None,
                 "q31": None, "single_rounding": False})


# -- integer convolution and matmul: exact int32 sums ---------------------------------------------
def _zero_points(zp, n: int, what: str) -> np.ndarray:
    z = np.atleast_1d(np.asarray(zp, np.int64))
    if z.size not in (1, n):
        raise ValueError(f"{what} zero point has {z.size} values, expected 1 or {n}")
    return z


def _conv_integer_infer(attrs, types):
    x, w = types[0], types[1]
    for name, t in (("input", x), ("weight", w)):
        if t.dtype not in ("int8", "uint8"):
            raise TypeError(f"conv_integer {name} must be int8 or uint8, got {t.dtype}")
    if len(types) == 3 and types[2].dtype != "int32":
        raise TypeError(f"conv_integer bias must be int32, got {types[2].dtype}")
    _zero_points(attrs["x_zero_point"], 1, "input")
    _zero_points(attrs["w_zero_point"], w.shape[0], "weight")
    _check_zero_point("the input", x, attrs["x_zero_point"])
    _check_zero_point("the weight", w, attrs["w_zero_point"])
    as_float = [TensorType(t.shape, "float32") for t in types]
    return [TensorType(t.shape, "int32") for t in _conv_infer(attrs, as_float)]


def _conv_integer_ref(attrs, x, w, b=None):
    wz = _zero_points(attrs["w_zero_point"], w.shape[0], "weight")
    wc = w.astype(np.float64) - wz.reshape((-1,) + (1,) * (w.ndim - 1))
    xc = x.astype(np.float64) - int(np.atleast_1d(attrs["x_zero_point"])[0])
    # float64 holds these sums exactly: products below 2^16, far fewer than 2^37 of them
    out = conv_reference(attrs, xc, wc, None if b is None else b.astype(np.float64))
    return np.rint(out).astype(np.int32)


_ci_infer, _ci_ref = _layout_aware(_conv_integer_infer, _conv_integer_ref)
define_op("conv_integer", FusionKind.OUT_ELEMWISE_FUSABLE, _ci_infer, _ci_ref, inputs=(2, 3),
          attrs={"strides": None, "pads": None, "dilations": None, "groups": 1,
                 "layout": "NCHW", "x_zero_point": 0, "w_zero_point": 0})


def _matmul_integer_infer(attrs, types):
    a, b = types
    for name, t in (("A", a), ("B", b)):
        if t.dtype not in ("int8", "uint8"):
            raise TypeError(f"matmul_integer {name} must be int8 or uint8, got {t.dtype}")
    _zero_points(attrs["a_zero_point"], 1, "A")
    _zero_points(attrs["b_zero_point"], b.shape[-1], "B")
    _check_zero_point("A", a, attrs["a_zero_point"])
    _check_zero_point("B", b, attrs["b_zero_point"])
    out = _matmul_infer(attrs, [TensorType(a.shape, "float32"), TensorType(b.shape, "float32")])
    return [TensorType(t.shape, "int32") for t in out]


def _matmul_integer_ref(attrs, a, b):
    az = int(np.atleast_1d(attrs["a_zero_point"])[0])
    bz = _zero_points(attrs["b_zero_point"], b.shape[-1], "B")
    return np.matmul(a.astype(np.int64) - az, b.astype(np.int64) - bz).astype(np.int32)


define_op("matmul_integer", FusionKind.OUT_ELEMWISE_FUSABLE, _matmul_integer_infer,
          _matmul_integer_ref, inputs=2, attrs={"a_zero_point": 0, "b_zero_point": 0})


# -- quantized add --------------------------------------------------------------------------------
def _qadd_infer(attrs, types):
    a, b = types
    dtype = attrs["dtype"]
    for name, t in (("a", a), ("b", b)):
        if t.dtype not in QUANT_DTYPES:
            raise TypeError(f"qadd operand {name} must be 8- or 16-bit integers, got {t.dtype}")
    for key in ("a_quant", "b_quant", "quant"):
        q = attrs[key]
        if not isinstance(q, QuantParams) or not q.is_per_tensor:
            raise ValueError(f"qadd needs per-tensor parameters {key}=QuantParams(...)")
    _check_input_quant("operand a", a, attrs["a_quant"])
    _check_input_quant("operand b", b, attrs["b_quant"])
    if attrs["mode"] not in MODES:
        raise ValueError(f"qadd mode {attrs['mode']!r}: expected {' or '.join(MODES)}")
    _clamp_bounds(attrs, dtype)
    return [TensorType(broadcast_shapes(a.shape, b.shape), dtype, attrs["quant"])]


def qadd_reference(attrs, a, b):
    qa, qb, qc = attrs["a_quant"], attrs["b_quant"], attrs["quant"]
    dtype = attrs["dtype"]
    lo, hi = _clamp_bounds(attrs, dtype)
    za, zb, zc = qa.zero_point[0], qb.zero_point[0], qc.zero_point[0]
    ac = a.astype(np.int64) - za
    bc = b.astype(np.int64) - zb
    if attrs.get("subtract"):
        bc = -bc  # TFLite's SUB: ADD with input 2's multiplier negated, the same integers
    if attrs["mode"] == "float":
        ra, rb = qadd_float_ratios(attrs)
        y = ra * ac.astype(np.float32) + rb * bc.astype(np.float32)
        y = np.rint(np.clip(y, np.float32(lo - zc), np.float32(hi - zc)))
        return (y.astype(np.int64) + zc).astype(dtype)
    (ma, sa), (mb, sb), (mo, so), left = qadd_fixed_point(attrs)
    sa_ = multiply_by_quantized_multiplier(ac << left, ma, sa)
    sb_ = multiply_by_quantized_multiplier(bc << left, mb, sb)
    y = multiply_by_quantized_multiplier(sa_ + sb_, mo, so) + zc
    return np.clip(y, lo, hi).astype(dtype)


def qadd_float_ratios(attrs) -> tuple[np.float32, np.float32]:
    """float32 sa / sc and sb / sc (onnxruntime's QLinearAdd)."""
    sc = np.float32(attrs["quant"].scale[0])
    return (np.float32(attrs["a_quant"].scale[0]) / sc, np.float32(attrs["b_quant"].scale[0]) / sc)


def qadd_fixed_point(attrs):
    """TFLite's int8 ADD parameters: ((m_a, shift_a), (m_b, shift_b), (m_out, shift_out), 20)."""
    left = 20
    sa = float(np.float32(attrs["a_quant"].scale[0]))
    sb = float(np.float32(attrs["b_quant"].scale[0]))
    sc = float(np.float32(attrs["quant"].scale[0]))
    twice_max = 2 * max(sa, sb)
    return (quantize_multiplier(sa / twice_max), quantize_multiplier(sb / twice_max),
            quantize_multiplier(twice_max / ((1 << left) * sc)), left)


define_op("qadd", FusionKind.BROADCAST, _qadd_infer, qadd_reference, inputs=2,
          attrs={"a_quant": None, "b_quant": None, "quant": None, "dtype": "int8",
                 "mode": "float", "min": None, "max": None, "subtract": False})
