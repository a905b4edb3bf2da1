"""Quantized ONNX: QuantizeLinear/DequantizeLinear (QDQ models), the QOperator ops (QLinearConv,
QLinearMatMul, ConvInteger, MatMulInteger) and onnxruntime's contrib ops that quantize_static
writes (com.microsoft QLinearAdd, QLinearConcat, QGemm, QLinearGlobalAveragePool, ...).

Integer ops become the IR's integer ops (ir/ops_quant.py) with onnxruntime's arithmetic: exact
int32 sums, a float32 multiplier per output channel (x_scale * w_scale / y_scale, in float32),
results rounded half to even. Ops onnxruntime computes in float (the pools, sigmoid, mul) run in
float32 between a dequantize and a quantize. `DequantizeLinear` of quantized weights stays a
node (not folded), so that passes/qdq.py can put QDQ convs and matmuls on integer kernels.
"""
from __future__ import annotations

import numpy as np

from neo.ir import QuantParams, Value

from .context import NodeContext, normalize_axis, onnx_dtype
from .registry import converter

INTEGER_TYPES = ("int8", "uint8", "int16", "uint16", "int32")


def params(cx: NodeContext, scale: Value, zero_point: Value | None, rank: int, axis: int | None,
           what: str) -> QuantParams:
    """The QuantParams of a scale and zero point that the model gives as constants."""
    s = np.asarray(cx.constant(scale, f"{what} scale"), np.float64)
    z = (np.zeros(s.shape, np.int64) if zero_point is None
         else np.asarray(cx.constant(zero_point, f"{what} zero point"), np.int64))
    if s.ndim > 1:
        cx.unsupported(f"{what}: blocked (multi-dimensional) scales are not implemented")
    if s.size == 1:
        return QuantParams.per_tensor(float(s.reshape(-1)[0]), int(z.reshape(-1)[0]))
    ax = normalize_axis(1 if axis is None else axis, rank)  # opset 10 has no axis
    return QuantParams(s.reshape(-1), z.reshape(-1), ax)


def _dtype_of(zero_point: Value | None, default: str = "uint8") -> str:
    return zero_point.dtype if zero_point is not None else default


def _per_tensor(cx: NodeContext, q: QuantParams, what: str) -> QuantParams:
    if not q.is_per_tensor:
        cx.unsupported(f"{what}: per-axis parameters are not implemented here (per tensor only)")
    return q


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
    if out_type not in INTEGER_TYPES[:4]:
        cx.unsupported(f"quantizing to {out_type} is not implemented")
    q = params(cx, y_scale, y_zero_point, x.type.rank, axis, "y")
    return cx.op("quantize", x, quant=q, dtype=out_type, rounding="half_to_even")


@converter("DequantizeLinear", since=10)
def DequantizeLinear(cx: NodeContext, x: Value, x_scale: Value, x_zero_point: Value | None = None,
                     *, axis, block_size) -> Value:
    if block_size:
        cx.unsupported_attribute("block_size", block_size, "0 (per-tensor or per-axis)")
    if x.dtype not in INTEGER_TYPES:
        cx.unsupported(f"dequantizing {x.dtype} is not implemented")
    q = params(cx, x_scale, x_zero_point, x.type.rank, axis, "x")
    if x.type.quant is not None and x.type.quant != q:
        # the integers re-read with other parameters: a cast drops the ones they had
        return cx.op("dequantize", cx.op("cast", x, to=x.dtype), quant=q, dtype=x_scale.dtype)
    return cx.keep("dequantize", x, quant=q, dtype=x_scale.dtype)


# -- integer convolution and matmul ----------------------------------------------------------------
def _conv_attrs(cx: NodeContext, x: Value, w: Value, auto_pad, dilations, group, kernel_shape,
                pads, strides) -> dict:
    from .nn import _window, auto_pads

    nsp = x.type.rank - 2
    kernel = w.shape[2:]
    if kernel_shape and tuple(kernel_shape) != kernel:
        raise ValueError(f"kernel_shape {kernel_shape} differs from the weight shape {w.shape}")
    strides, dilations = _window(nsp, strides, dilations)
    pads = auto_pads(cx, auto_pad, x.shape[2:], kernel, strides, dilations, pads)
    return {"strides": strides, "pads": tuple(pads), "dilations": dilations, "groups": group}


def _zero_point_attr(cx: NodeContext, zp: Value | None, what: str):
    if zp is None:
        return 0
    z = np.asarray(cx.constant(zp, f"{what} zero point"), np.int64).reshape(-1)
    return int(z[0]) if z.size == 1 else tuple(int(v) for v in z)


def _scalar_zero_point(cx: NodeContext, zp: Value | None, what: str) -> int:
    z = _zero_point_attr(cx, zp, what)
    if isinstance(z, tuple):
        if len(set(z)) > 1:
            cx.unsupported(f"a per-row {what} zero point is not implemented")
        z = z[0]
    return z


@converter("ConvInteger", since=10)
def ConvInteger(cx: NodeContext, x: Value, w: Value, x_zero_point: Value | None = None,
                w_zero_point: Value | None = None, *, auto_pad, dilations, group, kernel_shape,
                pads, strides) -> Value:
    attrs = _conv_attrs(cx, x, w, auto_pad, dilations, group, kernel_shape, pads, strides)
    return cx.op("conv_integer", x, w, x_zero_point=_scalar_zero_point(cx, x_zero_point, "x"),
                 w_zero_point=_zero_point_attr(cx, w_zero_point, "w"), **attrs)


@converter("MatMulInteger", since=10)
def MatMulInteger(cx: NodeContext, A: Value, B: Value, a_zero_point: Value | None = None,
                  b_zero_point: Value | None = None) -> Value:
    return cx.op("matmul_integer", A, B, a_zero_point=_scalar_zero_point(cx, a_zero_point, "A"),
                 b_zero_point=_zero_point_attr(cx, b_zero_point, "B"))


def multiplier(cx: NodeContext, in_scales, w_q: QuantParams, y_q: QuantParams) -> tuple:
    """onnxruntime's requantization factors: in_scale * w_scale[c] / y_scale, in float32."""
    sx = np.float32(in_scales)
    sw = np.asarray(w_q.scale, np.float32)
    return tuple(float(v) for v in (sx * sw / np.float32(y_q.scale[0])).astype(np.float32))


def requantize_acc(cx: NodeContext, acc: Value, m: tuple, axis: int, y_q: QuantParams,
                   dtype: str) -> Value:
    return cx.op("requantize", acc, multiplier=m, axis=axis if len(m) > 1 else None,
                 out_zero_point=y_q.zero_point[0], dtype=dtype, mode="float", quant=y_q)


@converter("QLinearConv", since=10)
def QLinearConv(cx: NodeContext, x: Value, x_scale: Value, x_zero_point: Value, w: Value,
                w_scale: Value, w_zero_point: Value, y_scale: Value, y_zero_point: Value,
                B: Value | None = None, *, auto_pad, dilations, group, kernel_shape, pads,
                strides) -> Value:
    attrs = _conv_attrs(cx, x, w, auto_pad, dilations, group, kernel_shape, pads, strides)
    xq = _per_tensor(cx, params(cx, x_scale, x_zero_point, x.type.rank, None, "x"), "x")
    wq = params(cx, w_scale, w_zero_point, w.type.rank, 0, "w")
    yq = _per_tensor(cx, params(cx, y_scale, y_zero_point, x.type.rank, None, "y"), "y")
    ins = (x, w) if B is None else (x, w, cx.cast(B, "int32"))
    acc = cx.op("conv_integer", *ins, x_zero_point=xq.zero_point[0],
                w_zero_point=tuple(wq.zero_point) if not wq.is_per_tensor else wq.zero_point[0],
                **attrs)
    return requantize_acc(cx, acc, multiplier(cx, xq.scale[0], wq, yq), 1, yq,
                          _dtype_of(y_zero_point, x.dtype))


@converter("QLinearMatMul", since=10)
def QLinearMatMul(cx: NodeContext, a: Value, a_scale: Value, a_zero_point: Value, b: Value,
                  b_scale: Value, b_zero_point: Value, y_scale: Value, y_zero_point: Value
                  ) -> Value:
    aq = _per_tensor(cx, params(cx, a_scale, a_zero_point, a.type.rank, None, "a"), "a")
    bq = params(cx, b_scale, b_zero_point, b.type.rank, b.type.rank - 1, "b")
    yq = _per_tensor(cx, params(cx, y_scale, y_zero_point, a.type.rank, None, "y"), "y")
    acc = cx.op("matmul_integer", a, b, a_zero_point=aq.zero_point[0],
                b_zero_point=tuple(bq.zero_point) if not bq.is_per_tensor else bq.zero_point[0])
    return requantize_acc(cx, acc, multiplier(cx, aq.scale[0], bq, yq), acc.type.rank - 1, yq,
                          _dtype_of(y_zero_point, a.dtype))


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


# -- onnxruntime's contrib ops (com.microsoft) ---------------------------------------------------
def _dequantized(cx: NodeContext, x: Value, scale: Value, zp: Value | None, what: str) -> Value:
    q = params(cx, scale, zp, x.type.rank, None, what)
    return cx.op("dequantize", x, quant=q, dtype="float32")


def _quantized(cx: NodeContext, y: Value, scale: Value, zp: Value | None, dtype: str) -> Value:
    q = _per_tensor(cx, params(cx, scale, zp, y.type.rank, None, "y"), "y")
    return cx.op("quantize", y, quant=q, dtype=dtype, rounding="half_to_even")


@converter("com.microsoft.QLinearAdd", since=1)
def QLinearAdd(cx: NodeContext, A: Value, A_scale: Value, A_zero_point: Value | None, B: Value,
               B_scale: Value, B_zero_point: Value | None, C_scale: Value,
               C_zero_point: Value | None = None) -> Value:
    aq = _per_tensor(cx, params(cx, A_scale, A_zero_point, A.type.rank, None, "A"), "A")
    bq = _per_tensor(cx, params(cx, B_scale, B_zero_point, B.type.rank, None, "B"), "B")
    cq = _per_tensor(cx, params(cx, C_scale, C_zero_point, A.type.rank, None, "C"), "C")
    return cx.op("qadd", A, B, a_quant=aq, b_quant=bq, quant=cq, dtype=A.dtype, mode="float")


@converter("com.microsoft.QLinearMul", since=1)
def QLinearMul(cx: NodeContext, A: Value, A_scale: Value, A_zero_point: Value | None, B: Value,
               B_scale: Value, B_zero_point: Value | None, C_scale: Value,
               C_zero_point: Value | None = None) -> Value:
    y = cx.op("mul", _dequantized(cx, A, A_scale, A_zero_point, "A"),
              _dequantized(cx, B, B_scale, B_zero_point, "B"))
    return _quantized(cx, y, C_scale, C_zero_point, A.dtype)


@converter("com.microsoft.QLinearConcat", since=1)
def QLinearConcat(cx: NodeContext, Y_scale: Value, Y_zero_point: Value, *inputs: Value, axis
                  ) -> Value:
    if len(inputs) % 3 or not inputs:
        cx.invalid("inputs", len(inputs), "(tensor, scale, zero point) triples")
    dtype = Y_zero_point.dtype
    rank = inputs[0].type.rank
    yq = _per_tensor(cx, params(cx, Y_scale, Y_zero_point, rank, None, "Y"), "Y")
    parts = []
    for i in range(0, len(inputs), 3):
        x, s, z = inputs[i:i + 3]
        xq = _per_tensor(cx, params(cx, s, z, rank, None, f"input {i // 3}"), "input")
        if xq == yq:
            parts.append(x)
            continue
        m = (float(np.float32(xq.scale[0]) / np.float32(yq.scale[0])),)
        parts.append(cx.op("requantize", x, multiplier=m, in_zero_point=xq.zero_point[0],
                           out_zero_point=yq.zero_point[0], dtype=dtype, mode="float",
                           quant=yq))
    return cx.concat(parts, normalize_axis(axis, rank))


@converter("com.microsoft.QGemm", since=1)
def QGemm(cx: NodeContext, A: Value, a_scale: Value, a_zero_point: Value | None, B: Value,
          b_scale: Value, b_zero_point: Value | None, C: Value | None = None,
          y_scale: Value | None = None, y_zero_point: Value | None = None, *, alpha=1.0,
          transA=0, transB=0) -> Value:
    if transA:
        A = cx.transpose(A, (1, 0))
    bq = params(cx, b_scale, b_zero_point, 2, 0 if transB else 1, "b")
    if transB:
        B = cx.transpose(B, (1, 0))
        if not bq.is_per_tensor:
            bq = QuantParams(bq.scale, bq.zero_point, 1)
    aq = _per_tensor(cx, params(cx, a_scale, a_zero_point, 2, None, "a"), "a")
    acc = cx.op("matmul_integer", A, B, a_zero_point=aq.zero_point[0],
                b_zero_point=tuple(bq.zero_point) if not bq.is_per_tensor else bq.zero_point[0])
    if C is not None:
        acc = cx.op("add", acc, cx.cast(C, "int32"))
    sa = np.float32(aq.scale[0]) * np.float32(alpha)
    if y_scale is None:  # a float output: the accumulator times a_scale * b_scale * alpha
        s = (sa * np.asarray(bq.scale, np.float32)).astype(np.float32)
        q = QuantParams(s, 0, 1) if s.size > 1 else QuantParams.per_tensor(float(s[0]))
        return cx.op("dequantize", acc, quant=q, dtype="float32")
    yq = _per_tensor(cx, params(cx, y_scale, y_zero_point, 2, None, "y"), "y")
    return requantize_acc(cx, acc, multiplier(cx, sa, bq, yq), 1, yq,
                          _dtype_of(y_zero_point, A.dtype))


@converter("com.microsoft.QLinearGlobalAveragePool", since=1)
def QLinearGlobalAveragePool(cx: NodeContext, X: Value, x_scale: Value, x_zero_point: Value,
                             y_scale: Value, y_zero_point: Value, *, channels_last=0) -> Value:
    x = _dequantized(cx, X, x_scale, x_zero_point, "x")
    axes = tuple(range(1, x.type.rank - 1)) if channels_last else tuple(range(2, x.type.rank))
    y = cx.op("reduce_mean", x, axes=axes, keepdims=1)
    return _quantized(cx, y, y_scale, y_zero_point, X.dtype)


@converter("com.microsoft.QLinearAveragePool", since=1)
def QLinearAveragePool(cx: NodeContext, X: Value, x_scale: Value, x_zero_point: Value | None,
                       y_scale: Value, y_zero_point: Value | None = None, *, auto_pad="NOTSET",
                       ceil_mode=0, channels_last=0, count_include_pad=0, kernel_shape=None,
                       pads=None, strides=None) -> Value:
    from .nn import _pool

    if channels_last:
        cx.unsupported_attribute("channels_last", channels_last, "0")
    x = _dequantized(cx, X, x_scale, x_zero_point, "x")
    y = _pool(cx, "avg_pool", x, auto_pad, ceil_mode, count_include_pad, None, kernel_shape,
              pads, strides)
    return _quantized(cx, y, y_scale, y_zero_point, X.dtype)


@converter("com.microsoft.QLinearSigmoid", since=1)
def QLinearSigmoid(cx: NodeContext, X: Value, X_scale: Value, X_zero_point: Value | None,
                   Y_scale: Value, Y_zero_point: Value | None = None) -> Value:
    y = cx.op("sigmoid", _dequantized(cx, X, X_scale, X_zero_point, "X"))
    return _quantized(cx, y, Y_scale, Y_zero_point, X.dtype)


@converter("com.microsoft.QLinearLeakyRelu", since=1)
def QLinearLeakyRelu(cx: NodeContext, X: Value, X_scale: Value, X_zero_point: Value | None,
                     Y_scale: Value, Y_zero_point: Value | None = None, *, alpha=0.01) -> Value:
    y = cx.op("leaky_relu", _dequantized(cx, X, X_scale, X_zero_point, "X"), alpha=float(alpha))
    return _quantized(cx, y, Y_scale, Y_zero_point, X.dtype)


@converter("com.microsoft.QLinearSoftmax", since=1)
def QLinearSoftmax(cx: NodeContext, X: Value, X_scale: Value, x_zero_point: Value | None,
                   y_scale: Value, y_zero_point: Value, *, axis=-1, opset=13) -> Value:
    from .nn import _softmax_flattened

    x = _dequantized(cx, X, X_scale, x_zero_point, "X")
    y = (cx.op("softmax", x, axis=normalize_axis(axis, X.type.rank)) if opset >= 13
         else _softmax_flattened(cx, "softmax", x, axis))
    return _quantized(cx, y, y_scale, y_zero_point, X.dtype)
