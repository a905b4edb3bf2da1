"""Converters for QuantizeLinear / DequantizeLinear (QDQ models), built from IR elementwise ops.

Following `onnx/reference/ops/op_quantize_linear.py`: y = saturate(round_half_even(x / scale) + zp).
Quantized weights dequantize at compile time because their inputs are constants.
"""
from __future__ import annotations

import numpy as np

from neo.ir import Value

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


# -- integer matmul and convolution: (a - a_zp) (x) (b - b_zp) accumulated exactly ---------------
# The products are accumulated in float64, which holds every int32 sum of 8-bit products exactly
# (each is below 2^16; 2^37 of them fit in the 53-bit mantissa).
def _centered(cx: NodeContext, x: Value, zp: Value | None, zp_shape=None) -> Value:
    y = cx.cast(x, "float64")
    if zp is None:
        return y
    z = cx.cast(zp, "float64")
    if zp_shape is not None and len(z.shape) == 1 and z.shape[0] > 1:
        z = cx.reshape(z, zp_shape(z.shape[0]))
    return cx.op("sub", y, z)


def _requantize(cx: NodeContext, acc: Value, factor: Value, zp: Value | None, out_type: str
                ) -> Value:
    # saturate(round_half_even(acc * factor) + zp), as the ONNX reference computes it (float64)
    y = cx.op("mul", acc, cx.cast(factor, "float64"))
    if zp is not None:
        y = cx.op("add", y, cx.cast(zp, "float64"))
    info = np.iinfo(out_type)
    y = cx.op("clip", cx.op("round", y), min=float(info.min), max=float(info.max))
    return cx.cast(y, out_type)


@converter("MatMulInteger", since=10)
def MatMulInteger(cx: NodeContext, A: Value, B: Value, a_zero_point: Value | None = None,
                  b_zero_point: Value | None = None) -> Value:
    # a per-row a_zero_point is [M], a per-column b_zero_point [N]
    a = _centered(cx, A, a_zero_point, lambda m: (m, 1))
    b = _centered(cx, B, b_zero_point)
    return cx.cast(cx.op("matmul", a, b), "int32")


@converter("QLinearMatMul", since=10)
def QLinearMatMul(cx: NodeContext, a: Value, a_scale: Value, a_zero_point: Value, b: Value,
                  b_scale: Value, b_zero_point: Value, y_scale: Value, y_zero_point: Value
                  ) -> Value:
    acc = cx.op("matmul", _centered(cx, a, a_zero_point), _centered(cx, b, b_zero_point))
    factor = cx.op("div", cx.op("mul", a_scale, cx.cast(b_scale, a_scale.dtype)),
                   cx.cast(y_scale, a_scale.dtype))
    return _requantize(cx, acc, factor, y_zero_point, y_zero_point.dtype)


def _conv(cx: NodeContext, x: Value, w: Value, attrs: dict) -> Value:
    from .nn import Conv

    return Conv(cx, x, w, None, **attrs)


@converter("ConvInteger", since=10)
def ConvInteger(cx: NodeContext, x: Value, w: Value, x_zero_point: Value | None = None,
                w_zero_point: Value | None = None, *, auto_pad, dilations, group, kernel_shape,
                pads, strides) -> Value:
    attrs = {"auto_pad": auto_pad, "dilations": dilations, "group": group,
             "kernel_shape": kernel_shape, "pads": pads, "strides": strides}
    # a per-output-channel w_zero_point is [M]
    xc = _centered(cx, x, x_zero_point)
    wc = _centered(cx, w, w_zero_point, lambda m: (m,) + (1,) * (w.type.rank - 1))
    return cx.cast(_conv(cx, xc, wc, attrs), "int32")


@converter("QLinearConv", since=10)
def QLinearConv(cx: NodeContext, x: Value, x_scale: Value, x_zero_point: Value, w: Value,
                w_scale: Value, w_zero_point: Value, y_scale: Value, y_zero_point: Value,
                B: Value | None = None, *, auto_pad, dilations, group, kernel_shape, pads,
                strides) -> Value:
    attrs = {"auto_pad": auto_pad, "dilations": dilations, "group": group,
             "kernel_shape": kernel_shape, "pads": pads, "strides": strides}
    per_channel = (lambda m: (m,) + (1,) * (w.type.rank - 1))
    acc = _conv(cx, _centered(cx, x, x_zero_point), _centered(cx, w, w_zero_point, per_channel),
                attrs)
    channel = (1, -1) + (1,) * (x.type.rank - 2)
    if B is not None:
        acc = cx.op("add", acc, cx.reshape(cx.cast(B, "float64"), (B.shape[0],) + channel[2:]))
    w_s = cx.cast(w_scale, x_scale.dtype)
    if len(w_s.shape) == 1 and w_s.shape[0] > 1:
        w_s = cx.reshape(w_s, (w_s.shape[0],) + channel[2:])
    factor = cx.op("div", cx.op("mul", x_scale, w_s), cx.cast(y_scale, x_scale.dtype))
    return _requantize(cx, acc, factor, y_zero_point, y_zero_point.dtype)


@converter("DynamicQuantizeLinear", since=11)
def DynamicQuantizeLinear(cx: NodeContext, x: Value) -> list[Value]:
    # scale = (max(0, max x) - min(0, min x)) / 255 (1/255 when that range is empty),
    # zp = round(clip(-min / scale, 0, 255)), y = saturate(round(x / scale) + zp), as uint8
    axes = tuple(range(x.type.rank))
    zero = cx.scalar(0, x.dtype)
    hi = cx.op("maximum", cx.op("reduce_max", x, axes=axes, keepdims=0), zero)
    lo = cx.op("minimum", cx.op("reduce_min", x, axes=axes, keepdims=0), zero)
    span = cx.op("sub", hi, lo)
    span = cx.op("where", cx.op("equal", span, zero), cx.scalar(1, x.dtype), span)
    scale = cx.op("div", span, cx.scalar(255, x.dtype))
    zp = cx.op("round", cx.op("clip", cx.op("sub", zero, cx.op("div", lo, scale)), min=0.0,
                              max=255.0))
    y = cx.op("clip", cx.op("add", cx.op("round", cx.op("div", x, scale)), zp), min=0.0,
              max=255.0)
    return [cx.cast(y, "uint8"), scale, cx.cast(zp, "uint8")]
