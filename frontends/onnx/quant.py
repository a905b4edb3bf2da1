"""Converters for QuantizeLinear / DequantizeLinear (QDQ models), built from IR elementwise ops.

Following `onnx/reference/ops/op_quantize_linear.py`: y = saturate(round_half_even(x / scale) + zp).
Quantized weights dequantize at compile time because their inputs are constants.
"""
from __future__ import annotations

import numpy as np

from ir import Value

from .context import NodeContext, normalize_axis, onnx_dtype
from .registry import converter

INTEGER_TYPES = ("int8", "uint8", "int16", "uint16", "int32")


def _per_axis(cx: NodeContext, v: Value, x: Value, axis: int) -> Value:
    """A scale or zero point shaped to broadcast against `x` (1-D ones along `axis`)."""
    if len(v.shape) == 0 or (len(v.shape) == 1 and v.shape[0] == 1):
        return cx.reshape(v, ())
    if len(v.shape) != 1:
        cx.unsupported("blocked (multi-dimensional) scales are not implemented")
    axis = normalize_axis(axis, len(x.shape))
    shape = [1] * len(x.shape)
    shape[axis] = v.shape[0]
    return cx.reshape(v, shape)


def _axis(axis: int | None) -> int:
    return 1 if axis is None else axis  # opset 10 has no axis (and only per-tensor scales)


@converter("QuantizeLinear", since=10)
def QuantizeLinear(cx: NodeContext, x: Value, y_scale: Value, y_zero_point: Value | None = None,
                   *, axis, block_size, output_dtype, saturate) -> Value:
    # `saturate` only concerns float8 outputs, which the IR does not have.
    if block_size:
        cx.unsupported_attribute("block_size", block_size, "0 (per-tensor or per-axis)")
    if y_zero_point is not None:
        out_type = y_zero_point.dtype
    elif output_dtype:
        out_type = onnx_dtype(output_dtype)
    else:
        out_type = "uint8"
    if out_type not in INTEGER_TYPES:
        cx.unsupported(f"quantizing to {out_type} is not implemented")
    scale = _per_axis(cx, cx.cast(y_scale, x.dtype), x, _axis(axis))
    q = cx.op("round", cx.op("div", x, scale))
    if y_zero_point is not None:
        q = cx.op("add", q, _per_axis(cx, cx.cast(y_zero_point, x.dtype), x, _axis(axis)))
    info = np.iinfo(out_type)
    q = cx.op("clip", q, min=float(info.min), max=float(info.max))
    return cx.cast(q, out_type)


@converter("DequantizeLinear", since=10)
def DequantizeLinear(cx: NodeContext, x: Value, x_scale: Value, x_zero_point: Value | None = None,
                     *, axis, block_size) -> Value:
    if block_size:
        cx.unsupported_attribute("block_size", block_size, "0 (per-tensor or per-axis)")
    ftype = x_scale.dtype
    y = cx.cast(x, ftype)
    if x_zero_point is not None:
        y = cx.op("sub", y, _per_axis(cx, cx.cast(x_zero_point, ftype), x, _axis(axis)))
    return cx.op("mul", y, _per_axis(cx, x_scale, x, _axis(axis)))
