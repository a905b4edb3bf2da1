"""Quantized arithmetic, bit for bit: the rounding rules of ONNX and TFLite, and how quantization
parameters pass through ops that only move integers.

Two families of rules, and the ops that use each (ir/ops_quant.py):

- **float** (ONNX, onnxruntime, and neo's own `--quantize`): real-valued factors are float32,
  products are float32, and results round half to even (`np.rint`, `cvtps2dq`, `fcvtns`).
  `quantize` divides by the float32 scale (`onnx/reference/ops/op_quantize_linear.py`);
  `requantize(mode="float")` multiplies `float32(acc - zp)` by one float32 factor per channel
  (onnxruntime's `MlasRequantizeOutput`; the ONNX reference multiplies in float64 and may land
  one step away on a tie).
- **fixed point** (TFLite's reference kernels, `tensorflow/lite/kernels/internal/common.h`):
  a real multiplier (computed in double) becomes a Q31 integer and a power-of-two shift
  (`QuantizeMultiplier`, the Q31 value rounded half away from zero), applied as
  `RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x << left, m), right)`: a doubling high
  multiply rounded half away from zero, then a right shift rounded half away from zero (gemmlowp's
  double rounding, TFLite's default without TFLITE_SINGLE_ROUNDING). TFLite's `QUANTIZE` and
  concatenation round half away from zero in float (`TfLiteRound`).
"""
from __future__ import annotations

import numpy as np

from .types import QuantParams, TensorType

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def round_half_even(x: np.ndarray) -> np.ndarray:
    return np.rint(x)


def round_half_away(x: np.ndarray) -> np.ndarray:
    """std::round: exact for float32 inputs (the +0.5 happens in float64)."""
    x64 = np.asarray(x, np.float64)
    return np.sign(x64) * np.floor(np.abs(x64) + 0.5)


ROUNDING = {"half_to_even": round_half_even, "half_away_from_zero": round_half_away}


def int_range(dtype: str) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


# -- TFLite fixed point ---------------------------------------------------------------------------
def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: real ~= m * 2^(shift - 31), m a Q31 value in [2^30, 2^31)."""
    if real == 0.0:
        return 0, 0
    q, shift = np.frexp(float(real))
    q_fixed = int(round_half_away(np.float64(q) * float(1 << 31)))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        return (1 << 31) - 1, 30
    return q_fixed, int(shift)


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemmlowp: (a * b * 2 + 2^31 rounding nudge) >> 32, the division truncating toward zero;
    the only overflow, INT32_MIN * INT32_MIN, saturates."""
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    s = ab + nudge
    high = np.where(s >= 0, s >> 31, -((-s) >> 31))  # C++ division: toward zero
    overflow = (a == b) & (a == INT32_MIN)
    return np.where(overflow, INT32_MAX, high).astype(np.int64)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """x / 2^exponent rounded half away from zero (gemmlowp's RoundingDivideByPOT)."""
    x = np.asarray(x, np.int64)
    e = np.asarray(exponent, np.int64)
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def multiply_by_quantized_multiplier(x: np.ndarray, m: np.ndarray, shift: np.ndarray
                                     ) -> np.ndarray:
    """TFLite's MultiplyByQuantizedMultiplier on int32 values (int64 arrays in and out)."""
    shift = np.asarray(shift, np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    x = (np.asarray(x, np.int64) << left)
    x = ((x + (1 << 31)) % (1 << 32)) - (1 << 31)  # int32 wraparound, as the C++ multiply
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, m), right)


def fixed_point_multipliers(real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (Q31 multiplier, shift) arrays of real multipliers."""
    pairs = [quantize_multiplier(float(r)) for r in np.ravel(real)]
    return (np.array([p[0] for p in pairs], np.int64).reshape(np.shape(real)),
            np.array([p[1] for p in pairs], np.int64).reshape(np.shape(real)))


# -- quantization parameters through ops that move integers --------------------------------------
ALL = None  # every input carries data
# op -> the inputs whose integers the output holds (moved, selected or clamped, not computed on):
# when they all carry the same parameters, so does the output.
KEEPS_QUANT: dict[str, tuple[int, ...] | None] = {
    "reshape": (0,), "transpose": (0,), "slice": (0,), "expand": (0,), "copy": (0,),
    "gather": (0,), "gather_elements": (0,), "gather_nd": (0,), "concat": ALL, "pad": (0,),
    "max_pool": (0,), "reduce_max": (0,), "reduce_min": (0,), "clip": (0,), "resize": (0,),
    "where": (1, 2), "maximum": ALL, "minimum": ALL,
}


def _moves_values(op: str, attrs: dict, q: QuantParams) -> bool:
    if op == "pad":  # padding is a value of the integers' own domain
        return attrs.get("mode", "constant") != "constant" or (
            q.is_per_tensor and float(attrs.get("value", 0)) == q.zero_point[0])
    if op == "resize":
        return attrs.get("mode") == "nearest"
    return True


def propagate_quant(op: str, attrs: dict, types: list[TensorType], out: list[TensorType]
                    ) -> list[TensorType]:
    """`out` with the quantization parameters of the inputs `op` moves integers from."""
    if op not in KEEPS_QUANT or len(out) != 1 or out[0].quant is not None:
        return out
    which = KEEPS_QUANT[op]
    data = [types[i] for i in (range(len(types)) if which is ALL else which) if i < len(types)]
    quants = {t.quant for t in data}
    if len(quants) != 1 or any(t.dtype != out[0].dtype for t in data):
        return out
    q = quants.pop()
    if q is None or not _moves_values(op, attrs, q):
        return out
    if not q.is_per_tensor:  # per-axis parameters survive only ops that keep the axis
        if op == "transpose":
            q = QuantParams(q.scale, q.zero_point, list(attrs["perm"]).index(q.axis))
        elif op in ("copy", "clip", "maximum", "minimum", "where") or (
                op == "reshape" and out[0].shape[:q.axis + 1] == data[0].shape[:q.axis + 1]):
            pass
        else:
            return out
    return [out[0].with_quant(q)]
