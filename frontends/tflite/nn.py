"""Converters for neural-network operators: convolutions, fully connected and batch matmul,
pooling, softmax, normalization and the activations.

TFLite data is channels-last: convs and pools are built with layout="NHWC" and
passes/layout.py makes them channels-first. IR weights are OIHW (IOHW for conv_transpose), so
TFLite's filters are transposed here, as constants: CONV_2D's [O, H, W, I], DEPTHWISE_CONV_2D's
[1, H, W, I*multiplier] and TRANSPOSE_CONV's [O, H, W, I].
"""
from __future__ import annotations

from neo.ir import Value

from . import quantized as q
from .context import TfliteContext
from .registry import converter


def _channels(cx: TfliteContext, x: Value, what: str = "input") -> int:
    if x.type.rank != 4:
        cx.unsupported(f"the {what} has rank {x.type.rank}; a 4-D NHWC tensor is expected")
    return x.shape[3]


# -- convolutions ----------------------------------------------------------------------------------
@converter("CONV_2D")
def CONV_2D(cx: TfliteContext, input: Value, filter: Value, bias: Value | None = None, *,
            padding, stride_h, stride_w, dilation_h_factor, dilation_w_factor,
            fused_activation_function) -> Value:
    strides, dil = (stride_h, stride_w), (dilation_h_factor, dilation_w_factor)
    if q.is_quantized(input):
        _channels(cx, input)
        if filter.type.rank != 4 or input.shape[3] % filter.shape[3]:
            cx.invalid("filter", filter.shape, f"[out, height, width, in] with in dividing "
                       f"{input.shape[3]}")
        return q.conv(cx, input, filter, bias, depthwise=False, padding=padding,
                      strides=strides, dilations=dil, fused=fused_activation_function)
    x = cx.dequantized(input, 0)
    w = cx.dequantized(filter, 1)
    b = cx.dequantized(bias, 2)
    cin = _channels(cx, x)
    if w.type.rank != 4 or cin % w.shape[3]:
        cx.invalid("filter", w.shape, f"[out, height, width, in] with in dividing {cin}")
    groups = cin // w.shape[3]  # grouped convolution (op version 6)
    w = cx.transpose(w, (0, 3, 1, 2))  # OHWI -> OIHW
    pads = cx.pads(padding, x.shape[1:3], w.shape[2:], strides, dil)
    ins = (x, w) if b is None else (x, w, b)
    y = cx.op("conv", *ins, strides=strides, pads=pads, dilations=dil, groups=groups,
              layout="NHWC")
    return cx.activation(y, fused_activation_function)


@converter("DEPTHWISE_CONV_2D")
def DEPTHWISE_CONV_2D(cx: TfliteContext, input: Value, filter: Value, bias: Value | None = None,
                      *, padding, stride_h, stride_w, depth_multiplier, dilation_h_factor,
                      dilation_w_factor, fused_activation_function) -> Value:
    # depth_multiplier is redundant with the shapes (and left 0 or stale by some converters):
    # output channel c * multiplier + m reads input channel c
    del depth_multiplier
    strides, dil = (stride_h, stride_w), (dilation_h_factor, dilation_w_factor)
    if q.is_quantized(input):
        cin = _channels(cx, input)
        if filter.type.rank != 4 or filter.shape[0] != 1 or filter.shape[3] % cin:
            cx.invalid("filter", filter.shape, f"[1, height, width, {cin} * multiplier]")
        return q.conv(cx, input, filter, bias, depthwise=True, padding=padding,
                      strides=strides, dilations=dil, fused=fused_activation_function)
    x = cx.dequantized(input, 0)
    w = cx.dequantized(filter, 1)
    b = cx.dequantized(bias, 2)
    cin = _channels(cx, x)
    if w.type.rank != 4 or w.shape[0] != 1 or w.shape[3] % cin:
        cx.invalid("filter", w.shape, f"[1, height, width, {cin} * multiplier]")
    kh, kw, cout = w.shape[1:]
    w = cx.reshape(cx.transpose(cx.reshape(w, (kh, kw, cout)), (2, 0, 1)), (cout, 1, kh, kw))
    pads = cx.pads(padding, x.shape[1:3], (kh, kw), strides, dil)
    ins = (x, w) if b is None else (x, w, b)
    y = cx.op("conv", *ins, strides=strides, pads=pads, dilations=dil, groups=cin,
              layout="NHWC")
    return cx.activation(y, fused_activation_function)


@converter("TRANSPOSE_CONV")
def TRANSPOSE_CONV(cx: TfliteContext, output_shape: Value, weights: Value, input: Value,
                   bias: Value | None = None, *, padding, stride_h, stride_w,
                   fused_activation_function) -> Value:
    if padding not in ("SAME", "VALID"):
        cx.unsupported_attribute("padding", padding, "SAME, VALID")
    if q.is_quantized(input):
        out = cx.ints(output_shape, "output_shape")
        _channels(cx, input)
        if (len(out) != 4 or weights.type.rank != 4 or weights.shape[3] != input.shape[3]
                or out[3] != weights.shape[0] or out[0] != input.shape[0]):
            cx.invalid("output_shape", out, f"[{input.shape[0]}, height, width, "
                       f"{weights.shape[0]}] for weights {list(weights.shape)} and "
                       f"{input.shape[3]} input channels")
        return q.transpose_conv(cx, input, weights, bias, out[1:3], (stride_h, stride_w),
                                padding, fused_activation_function)
    x = cx.dequantized(input, 2)
    w = cx.dequantized(weights, 1)
    b = cx.dequantized(bias, 3)
    cin = _channels(cx, x)
    out = cx.ints(output_shape, "output_shape")
    if len(out) != 4 or w.type.rank != 4 or w.shape[3] != cin or out[3] != w.shape[0]:
        cx.invalid("output_shape", out, f"[batch, height, width, {w.shape[0]}] for weights "
                   f"{list(w.shape)} and {cin} input channels")
    w = cx.transpose(w, (3, 0, 1, 2))  # OHWI -> IOHW
    kernel, strides = w.shape[2:], (stride_h, stride_w)
    begin, end, extra = [], [], []
    for n, o, k, s in zip(x.shape[1:3], out[1:3], kernel, strides):
        # TFLite pads the transposed conv as the conv from its output back to its input
        conv_out = -(-o // s) if padding == "SAME" else (o - k + s) // s
        head = max(0, (conv_out - 1) * s + k - o) // 2
        tail = (n - 1) * s + k - head - o  # what is left to crop at the end
        begin.append(head)
        end.append(max(tail, 0))
        extra.append(max(-tail, 0))  # an output longer than the full result: zeros at the end
    if padding not in ("SAME", "VALID"):
        cx.unsupported_attribute("padding", padding, "SAME, VALID")
    ins = (x, w) if b is None else (x, w, b)
    y = cx.op("conv_transpose", *ins, strides=strides, pads=tuple(begin + end),
              output_padding=tuple(extra), layout="NHWC")
    return cx.activation(y, fused_activation_function)


# -- matrix products -------------------------------------------------------------------------------
@converter("FULLY_CONNECTED")
def FULLY_CONNECTED(cx: TfliteContext, input: Value, weights: Value, bias: Value | None = None,
                    *, fused_activation_function, weights_format, keep_num_dims,
                    asymmetric_quantize_inputs) -> Value:
    # asymmetric_quantize_inputs only says how a hybrid kernel quantizes float inputs on the
    # fly; Neo computes the dequantized weights in float
    del asymmetric_quantize_inputs
    if weights_format != "DEFAULT":
        cx.unsupported_attribute("weights_format", weights_format, "DEFAULT")
    if q.is_quantized(input):
        if weights.type.rank != 2 or input.type.size % weights.shape[1]:
            cx.invalid("weights", weights.shape, "[units, k] with k dividing the input's "
                       f"{input.type.size} elements")
        return q.fully_connected(cx, input, weights, bias, keep_num_dims,
                                 fused_activation_function)
    x = cx.dequantized(input, 0)
    w = cx.dequantized(weights, 1)
    b = cx.dequantized(bias, 2)
    if w.type.rank != 2 or x.type.size % w.shape[1]:
        cx.invalid("weights", w.shape, f"[units, k] with k dividing the input's {x.type.size} "
                   "elements")
    units, depth = w.shape
    y = cx.op("matmul", cx.reshape(x, (x.type.size // depth, depth)), cx.transpose(w, (1, 0)))
    if b is not None:
        y = cx.op("add", y, b)
    if keep_num_dims:
        y = cx.reshape(y, x.shape[:-1] + (units,))
    return cx.activation(y, fused_activation_function)


@converter("BATCH_MATMUL")
def BATCH_MATMUL(cx: TfliteContext, x: Value, y: Value, *, adj_x, adj_y,
                 asymmetric_quantize_inputs) -> Value:
    del asymmetric_quantize_inputs  # hybrid kernels only (see FULLY_CONNECTED)
    if q.is_quantized(x) or q.is_quantized(y):
        return q.batch_matmul(cx, x, y, bool(adj_x), bool(adj_y))
    a, b = cx.dequantized(x, 0), cx.dequantized(y, 1)

    def adjoint(v: Value) -> Value:
        r = v.type.rank
        return cx.transpose(v, tuple(range(r - 2)) + (r - 1, r - 2))

    return cx.op("matmul", adjoint(a) if adj_x else a, adjoint(b) if adj_y else b)


# -- pooling ---------------------------------------------------------------------------------------
def _pool(cx: TfliteContext, kind: str, x: Value, padding, stride_h, stride_w, filter_height,
          filter_width, fused) -> Value:
    kernel, strides = (filter_height, filter_width), (stride_h, stride_w)
    if q.is_quantized(x):
        _channels(cx, x)
        pads = cx.pads(padding, x.shape[1:3], kernel, strides)
        return q.pool(cx, kind, x, kernel, strides, pads, fused)
    x = cx.dequantized(x, 0)
    _channels(cx, x)
    pads = cx.pads(padding, x.shape[1:3], kernel, strides)
    # TFLite's average divides by the window's elements inside the input
    y = cx.op(kind, x, kernel=kernel, strides=strides, pads=pads, count_include_pad=0,
              layout="NHWC")
    return cx.activation(y, fused)


@converter("AVERAGE_POOL_2D")
def AVERAGE_POOL_2D(cx: TfliteContext, input: Value, *, padding, stride_h, stride_w,
                    filter_height, filter_width, fused_activation_function) -> Value:
    return _pool(cx, "avg_pool", input, padding, stride_h, stride_w, filter_height, filter_width,
                 fused_activation_function)


@converter("MAX_POOL_2D")
def MAX_POOL_2D(cx: TfliteContext, input: Value, *, padding, stride_h, stride_w, filter_height,
                filter_width, fused_activation_function) -> Value:
    return _pool(cx, "max_pool", input, padding, stride_h, stride_w, filter_height, filter_width,
                 fused_activation_function)


# -- softmax and normalization -------------------------------------------------------------------
@converter("SOFTMAX")
def SOFTMAX(cx: TfliteContext, input: Value, *, beta) -> Value:
    if q.is_quantized(input):
        from .quantized_softmax import softmax

        return softmax(cx, input, beta)
    x = cx.dequantized(input, 0)
    if beta != 1.0:
        x = cx.op("mul", x, cx.scalar(beta, x.dtype))
    return cx.op("softmax", x, axis=x.type.rank - 1)


@converter("LOG_SOFTMAX")
def LOG_SOFTMAX(cx: TfliteContext, input: Value) -> Value:
    if q.is_quantized(input):
        from .quantized_softmax import log_softmax

        return log_softmax(cx, input)
    x = cx.dequantized(input, 0)
    return cx.op("log_softmax", x, axis=x.type.rank - 1)


@converter("L2_NORMALIZATION")
def L2_NORMALIZATION(cx: TfliteContext, input: Value, *, fused_activation_function) -> Value:
    # x / max(sqrt(sum of squares over the last axis), 1e-6), as TFLite's kernel
    x = cx.dequantized(input, 0)
    sq = cx.op("reduce_sum", cx.op("mul", x, x), axes=(x.type.rank - 1,), keepdims=1)
    norm = cx.op("maximum", cx.op("sqrt", sq), cx.scalar(1e-6, x.dtype))
    return cx.activation(cx.op("div", x, norm), fused_activation_function)


# -- activations -----------------------------------------------------------------------------------
def _unary(cx: TfliteContext, x: Value, op: str, **attrs) -> Value:
    return cx.op(op, cx.dequantized(x, 0), **attrs)


def _activation(cx: TfliteContext, x: Value, kind: str, op: str, **attrs) -> Value:
    """A float activation, or on quantized integers TFLite's table of it."""
    if q.is_quantized(x):
        return q.unary_table(cx, x, kind, **attrs)
    return _unary(cx, x, op, **attrs)


@converter("RELU")
def RELU(cx: TfliteContext, input: Value) -> Value:
    return _activation(cx, input, "relu", "relu")


@converter("RELU6")
def RELU6(cx: TfliteContext, input: Value) -> Value:
    return _activation(cx, input, "relu6", "clip", min=0.0, max=6.0)


@converter("RELU_N1_TO_1")
def RELU_N1_TO_1(cx: TfliteContext, input: Value) -> Value:
    return _activation(cx, input, "relu_n1_to_1", "clip", min=-1.0, max=1.0)


@converter("RELU_0_TO_1")
def RELU_0_TO_1(cx: TfliteContext, input: Value) -> Value:
    return _activation(cx, input, "relu_0_to_1", "clip", min=0.0, max=1.0)


@converter("LEAKY_RELU")
def LEAKY_RELU(cx: TfliteContext, input: Value, *, alpha) -> Value:
    if q.is_quantized(input):
        return q.unary_table(cx, input, "leaky_relu", alpha=alpha)
    return _unary(cx, input, "leaky_relu", alpha=float(alpha))


@converter("PRELU")
def PRELU(cx: TfliteContext, input: Value, alpha: Value) -> Value:
    # x >= 0 ? x : alpha * x, alpha broadcast against x (usually [1, 1, C])
    x, a = cx.dequantized(input, 0), cx.dequantized(alpha, 1)
    negative = cx.op("mul", a, cx.op("minimum", x, cx.scalar(0, x.dtype)))
    return cx.op("add", cx.op("relu", x), negative)


@converter("LOGISTIC")
def LOGISTIC(cx: TfliteContext, input: Value) -> Value:
    return _activation(cx, input, "logistic", "sigmoid")


@converter("TANH")
def TANH(cx: TfliteContext, input: Value) -> Value:
    return _activation(cx, input, "tanh", "tanh")


@converter("ELU")
def ELU(cx: TfliteContext, input: Value) -> Value:
    return _activation(cx, input, "elu", "elu", alpha=1.0)


@converter("HARD_SWISH")
def HARD_SWISH(cx: TfliteContext, input: Value) -> Value:
    return _activation(cx, input, "hard_swish", "hard_swish")


@converter("GELU")
def GELU(cx: TfliteContext, input: Value, *, approximate) -> Value:
    return _unary(cx, input, "gelu", approximate="tanh" if approximate else "none")
