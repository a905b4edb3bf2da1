"""Converters for neural-network ops: convolution, Gemm/MatMul, pooling, normalization, softmax and
the activations that take attributes."""
from __future__ import annotations

import math

import numpy as np

from neo import ir
from neo.ir import Value

from ..common.decompose import group_norm, instance_norm, normalize
from .context import NodeContext, normalize_axes, normalize_axis, onnx_dtype
from .registry import converter


# -- padding ---------------------------------------------------------------------------------------
def auto_pads(cx: NodeContext, auto_pad: str, in_sp, kernel, strides, dilations, pads
              ) -> list[int]:
    """Explicit (begin..., end...) pads for ONNX `auto_pad` on a conv or pool window.

    A window smaller than the stride would need negative SAME pads; like convolutions in
    onnxruntime and TensorFlow's SAME, they are clamped to zero (onnxruntime's pools are not
    consistent there: they fail or crop).
    """
    nsp = len(in_sp)
    if auto_pad in ("NOTSET", ""):
        return list(pads) if pads else [0] * (2 * nsp)
    if auto_pad == "VALID":
        return [0] * (2 * nsp)
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        cx.unsupported_attribute("auto_pad", auto_pad, "NOTSET, VALID, SAME_UPPER, SAME_LOWER")
    begin, end = [], []
    for i in range(nsp):
        out = -(-in_sp[i] // strides[i])
        total = max(0, (out - 1) * strides[i] + dilations[i] * (kernel[i] - 1) + 1 - in_sp[i])
        # SAME_UPPER puts the odd pixel at the end, SAME_LOWER at the beginning.
        head = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
        begin.append(head)
        end.append(total - head)
    return begin + end


def _window(nsp: int, strides, dilations) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return tuple(strides or (1,) * nsp), tuple(dilations or (1,) * nsp)


# -- convolution -----------------------------------------------------------------------------------
@converter("Conv", since=1)
def Conv(cx: NodeContext, X: Value, W: Value, B: Value | None = None, *, auto_pad, dilations, group,
         kernel_shape, pads, strides) -> Value:
    nsp = X.type.rank - 2
    kernel = W.shape[2:]
    if kernel_shape and tuple(kernel_shape) != kernel:
        raise ValueError(f"kernel_shape {kernel_shape} differs from the weight shape {W.shape}")
    strides, dilations = _window(nsp, strides, dilations)
    pads = auto_pads(cx, auto_pad, X.shape[2:], kernel, strides, dilations, pads)
    inputs = (X, W) if B is None else (X, W, B)
    return cx.op("conv", *inputs, strides=strides, pads=tuple(pads), dilations=dilations,
                 groups=group)


@converter("ConvTranspose", since=1)
def ConvTranspose(cx: NodeContext, X: Value, W: Value, B: Value | None = None, *, auto_pad,
                  dilations, group, kernel_shape, output_padding, output_shape, pads, strides
                  ) -> Value:
    nsp = X.type.rank - 2
    kernel = W.shape[2:]
    strides, dilations = _window(nsp, strides, dilations)
    out_pad = tuple(output_padding or (0,) * nsp)
    in_sp = X.shape[2:]
    if output_shape or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        # The spec's total padding for a requested output size; SAME wants in * stride.
        target = (tuple(output_shape)[-nsp:] if output_shape
                  else tuple(d * s for d, s in zip(in_sp, strides)))
        begin, end = [], []
        for i in range(nsp):
            total = (strides[i] * (in_sp[i] - 1) + out_pad[i] + (kernel[i] - 1) * dilations[i] + 1
                     - target[i])
            if total < 0 and not output_shape:
                cx.unsupported(f"auto_pad={auto_pad} with a kernel smaller than the stride asks "
                               "for an output larger than the unpadded result; not implemented")
            if total < 0:
                # output_shape beyond the unpadded result: the extra rows and columns come at
                # the end (negative end padding), as onnxruntime and the ONNX reference do.
                begin.append(0)
                end.append(total)
            elif auto_pad == "SAME_UPPER":
                begin.append(total // 2)
                end.append(total - total // 2)
            else:
                begin.append(total - total // 2)
                end.append(total // 2)
        pads = begin + end
    elif auto_pad in ("NOTSET", "", "VALID"):
        pads = list(pads) if pads and auto_pad != "VALID" else [0] * (2 * nsp)
    else:
        cx.unsupported_attribute("auto_pad", auto_pad, "NOTSET, VALID, SAME_UPPER, SAME_LOWER")
    inputs = (X, W) if B is None else (X, W, B)
    return cx.op("conv_transpose", *inputs, strides=strides, pads=tuple(pads),
                 dilations=dilations, groups=group, output_padding=out_pad)


# -- matrix products -------------------------------------------------------------------------------
@converter("MatMul", since=1)
def MatMul(cx: NodeContext, A: Value, B: Value) -> Value:
    return cx.op("matmul", A, B)


@converter("Gemm", since=7)
def Gemm(cx: NodeContext, A: Value, B: Value, C: Value | None = None, *, alpha, beta, transA,
         transB) -> Value:
    # Y = alpha * op(A) @ op(B) + beta * C; transposes and scalings of constants fold right away.
    if transA:
        A = cx.op("transpose", A, perm=(1, 0))
    if transB:
        B = cx.op("transpose", B, perm=(1, 0))
    scale_b = alpha != 1.0 and B.is_const
    if scale_b:
        B = cx.op("mul", B, cx.scalar(alpha, B.dtype))
    y = cx.op("matmul", A, B)
    if alpha != 1.0 and not scale_b:
        y = cx.op("mul", y, cx.scalar(alpha, y.dtype))
    if C is not None and beta != 0.0:
        if beta != 1.0:
            C = cx.op("mul", C, cx.scalar(beta, C.dtype))
        y = cx.op("add", y, C)
    return y


# -- pooling ---------------------------------------------------------------------------------------
def _pool(cx: NodeContext, kind: str, X: Value, auto_pad, ceil_mode, count_include_pad,
          dilations, kernel_shape, pads, strides) -> Value:
    nsp = len(kernel_shape)
    strides, dilations = _window(nsp, strides, dilations)
    pads = auto_pads(cx, auto_pad, X.shape[2:], kernel_shape, strides, dilations, pads)
    return cx.op(kind, X, kernel=tuple(kernel_shape), strides=strides, pads=tuple(pads),
                 dilations=dilations, ceil_mode=int(ceil_mode or 0),
                 count_include_pad=int(count_include_pad or 0))


@converter("MaxPool", since=1)
def MaxPool(cx: NodeContext, X: Value, *, auto_pad, ceil_mode, dilations, kernel_shape, pads,
            storage_order, strides) -> Value:
    # storage_order only orders the Indices output, which Neo does not produce (the driver reports
    # a model that asks for it), so any value is fine here.
    return _pool(cx, "max_pool", X, auto_pad, ceil_mode, 0, dilations, kernel_shape, pads, strides)


@converter("AveragePool", since=1)
def AveragePool(cx: NodeContext, X: Value, *, auto_pad, ceil_mode, count_include_pad, dilations,
                kernel_shape, pads, strides) -> Value:
    return _pool(cx, "avg_pool", X, auto_pad, ceil_mode, count_include_pad, dilations,
                 kernel_shape, pads, strides)


@converter("LpPool", since=2)
def LpPool(cx: NodeContext, X: Value, *, auto_pad, ceil_mode=0, dilations=None, kernel_shape,
           p, pads, strides) -> Value:
    # (sum over the window of |x|^p)^(1/p): the sum is an average pool counting the padding
    # (zeros) times the window size
    powered = cx.op("abs", X) if p == 1 else (
        cx.op("mul", X, X) if p == 2 else cx.op("pow", cx.op("abs", X), cx.scalar(p, X.dtype)))
    avg = _pool(cx, "avg_pool", powered, auto_pad, ceil_mode, 1, dilations, kernel_shape, pads,
                strides)
    total = cx.op("mul", avg, cx.scalar(math.prod(kernel_shape), X.dtype))
    if p == 1:
        return total
    if p == 2:
        return cx.op("sqrt", total)
    return cx.op("pow", total, cx.scalar(1 / p, X.dtype))


@converter("LRN", since=1)
def LRN(cx: NodeContext, X: Value, *, alpha, beta, bias, size) -> Value:
    # x / (bias + alpha / size * sum of x^2 over channels c - floor((size-1)/2) ..
    # c + ceil((size-1)/2))^beta: the window sum is `size` shifted slices of the padded squares
    from .tensor import slice_onnx

    channels, rank = X.shape[1], X.type.rank
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    pads = [0] * (2 * rank)
    pads[1], pads[rank + 1] = before, after
    sq = cx.op("pad", cx.op("mul", X, X), pads=tuple(pads), mode="constant", value=0.0)
    total = None
    for k in range(size):
        part = slice_onnx(cx, sq, [k], [k + channels], [1], [1])
        total = part if total is None else cx.op("add", total, part)
    base = cx.op("add", cx.scalar(bias, X.dtype),
                 cx.op("mul", total, cx.scalar(alpha / size, X.dtype)))
    return cx.op("div", X, cx.op("pow", base, cx.scalar(beta, X.dtype)))


@converter("GlobalAveragePool", since=1)
def GlobalAveragePool(cx: NodeContext, X: Value) -> Value:
    return cx.op("reduce_mean", X, axes=tuple(range(2, X.type.rank)), keepdims=1)


@converter("GlobalMaxPool", since=1)
def GlobalMaxPool(cx: NodeContext, X: Value) -> Value:
    return cx.op("reduce_max", X, axes=tuple(range(2, X.type.rank)), keepdims=1)


# -- normalization ---------------------------------------------------------------------------------
@converter("BatchNormalization", since=7)
def BatchNormalization(cx: NodeContext, X: Value, scale: Value, B: Value, input_mean: Value,
                       input_var: Value, *, epsilon, momentum, spatial, training_mode) -> Value:
    # `momentum` only updates running statistics in training; inference ignores it.
    if spatial == 0:
        cx.unsupported_attribute("spatial", spatial, "1 (per-channel statistics)")
    if training_mode:
        cx.unsupported_attribute("training_mode", training_mode, "0 (inference)")
    params = [cx.cast(v, X.dtype) for v in (scale, B, input_mean, input_var)]
    return cx.op("batch_norm", X, *params, epsilon=float(epsilon))


@converter("InstanceNormalization", since=1)
def InstanceNormalization(cx: NodeContext, input: Value, scale: Value, B: Value, *, epsilon
                          ) -> Value:
    return instance_norm(cx, input, scale, B, float(epsilon))


@converter("LayerNormalization", since=17)
def LayerNormalization(cx: NodeContext, X: Value, Scale: Value, B: Value | None = None, *, axis,
                       epsilon, stash_type) -> list[Value]:
    # The statistics (and the optional Mean and InvStdDev outputs) are computed in stash_type.
    first = normalize_axis(axis, X.type.rank)
    axes = tuple(range(first, X.type.rank))
    x = cx.cast(X, onnx_dtype(stash_type))
    mean = cx.op("reduce_mean", x, axes=axes, keepdims=1)
    d = cx.op("sub", x, mean)
    var = cx.op("reduce_mean", cx.op("mul", d, d), axes=axes, keepdims=1)
    std = cx.op("sqrt", cx.op("add", var, cx.scalar(epsilon, x.dtype)))
    y = cx.op("mul", cx.cast(cx.op("div", d, std), X.dtype), Scale)
    y = y if B is None else cx.op("add", y, B)
    return [y, mean, cx.op("reciprocal", std)]


# -- softmax ---------------------------------------------------------------------------------------
def _softmax_flattened(cx: NodeContext, op: str, x: Value, axis: int) -> Value:
    # Before opset 13 the input is coerced to 2-D at `axis` and normalized over the second dim.
    axis = normalize_axis(axis, x.type.rank)
    if axis == x.type.rank - 1:
        return cx.op(op, x, axis=axis)
    flat = cx.reshape(x, (math.prod(x.shape[:axis]), math.prod(x.shape[axis:])))
    return cx.reshape(cx.op(op, flat, axis=1), x.shape)


@converter("Softmax", since=1)
def Softmax(cx: NodeContext, input: Value, *, axis) -> Value:
    return _softmax_flattened(cx, "softmax", input, axis)


@converter("Softmax", since=13)
def Softmax_13(cx: NodeContext, input: Value, *, axis) -> Value:
    return cx.op("softmax", input, axis=normalize_axis(axis, input.type.rank))


@converter("LogSoftmax", since=1)
def LogSoftmax(cx: NodeContext, input: Value, *, axis) -> Value:
    return _softmax_flattened(cx, "log_softmax", input, axis)


@converter("LogSoftmax", since=13)
def LogSoftmax_13(cx: NodeContext, input: Value, *, axis) -> Value:
    return cx.op("log_softmax", input, axis=normalize_axis(axis, input.type.rank))


# -- activations with attributes -------------------------------------------------------------------
@converter("LeakyRelu", since=1)
def LeakyRelu(cx: NodeContext, X: Value, *, alpha) -> Value:
    return cx.op("leaky_relu", X, alpha=float(alpha))


@converter("HardSigmoid", since=1)
def HardSigmoid(cx: NodeContext, X: Value, *, alpha, beta) -> Value:
    return cx.op("hard_sigmoid", X, alpha=float(alpha), beta=float(beta))


@converter("Gelu", since=20)
def Gelu(cx: NodeContext, X: Value, *, approximate) -> Value:
    if approximate not in ("none", "tanh"):
        cx.unsupported_attribute("approximate", approximate, "none, tanh")
    return cx.op("gelu", X, approximate=approximate)


@converter("Elu", since=1)
def Elu(cx: NodeContext, X: Value, *, alpha) -> Value:
    return cx.op("elu", X, alpha=float(alpha))


@converter("Selu", since=1)
def Selu(cx: NodeContext, X: Value, *, alpha, gamma) -> Value:
    return cx.op("mul", cx.op("elu", X, alpha=float(alpha)), cx.scalar(gamma, X.dtype))


@converter("PRelu", since=1)
def PRelu(cx: NodeContext, X: Value, slope: Value) -> Value:
    # x >= 0 ? x : slope * x
    negative = cx.op("mul", X, cx.cast(slope, X.dtype))
    return cx.op("where", cx.op("greater_equal", X, cx.scalar(0, X.dtype)), X, negative)


@converter("Mish", since=18)
def Mish(cx: NodeContext, X: Value) -> Value:
    # x * tanh(softplus(x))
    return cx.op("mul", X, cx.op("tanh", cx.op("softplus", X)))


@converter("Softsign", since=1)
def Softsign(cx: NodeContext, input: Value) -> Value:
    # x / (1 + |x|)
    return cx.op("div", input, cx.op("add", cx.scalar(1, input.dtype), cx.op("abs", input)))


@converter("Celu", since=12)
def Celu(cx: NodeContext, X: Value, *, alpha) -> Value:
    # max(0, x) + min(0, alpha * (exp(x / alpha) - 1)) = alpha * elu(x / alpha) with elu's alpha 1
    scaled = cx.op("div", X, cx.scalar(alpha, X.dtype))
    return cx.op("mul", cx.op("elu", scaled, alpha=1.0), cx.scalar(alpha, X.dtype))


@converter("ThresholdedRelu", since=10)
def ThresholdedRelu(cx: NodeContext, X: Value, *, alpha) -> Value:
    # x > alpha ? x : 0
    return cx.op("where", cx.op("greater", X, cx.scalar(alpha, X.dtype)), X,
                 cx.scalar(0, X.dtype))


@converter("Shrink", since=9)
def Shrink(cx: NodeContext, input: Value, *, bias, lambd) -> Value:
    # x < -lambd ? x + bias : x > lambd ? x - bias : 0 (in the input's type)
    x = input
    low = cx.op("less", x, cx.scalar(-lambd, x.dtype))
    high = cx.op("greater", x, cx.scalar(lambd, x.dtype))
    b = cx.scalar(bias, x.dtype)
    return cx.op("where", low, cx.op("add", x, b),
                 cx.op("where", high, cx.op("sub", x, b), cx.scalar(0, x.dtype)))


@converter("RMSNormalization", since=23)
def RMSNormalization(cx: NodeContext, X: Value, scale: Value, *, axis, epsilon, stash_type
                     ) -> Value:
    # x / sqrt(mean(x^2 over the axes from `axis` on) + epsilon) * scale, statistics in stash_type
    axes = tuple(range(normalize_axis(axis, X.type.rank, cx), X.type.rank))
    x = cx.cast(X, onnx_dtype(stash_type))
    ms = cx.op("reduce_mean", cx.op("mul", x, x), axes=axes, keepdims=1)
    rms = cx.op("sqrt", cx.op("add", ms, cx.scalar(epsilon, x.dtype)))
    return cx.op("mul", cx.cast(cx.op("div", x, rms), X.dtype), scale)


@converter("LpNormalization", since=1)
def LpNormalization(cx: NodeContext, input: Value, *, axis, p) -> Value:
    # x / ||x||_p along `axis` (p is 1 or 2)
    if p not in (1, 2):
        cx.unsupported_attribute("p", p, "1, 2")
    ax = (normalize_axis(axis, input.type.rank, cx),)
    if p == 1:
        norm = cx.op("reduce_sum", cx.op("abs", input), axes=ax, keepdims=1)
    else:
        norm = cx.op("sqrt", cx.op("reduce_sum", cx.op("mul", input, input), axes=ax, keepdims=1))
    # a zero norm gives 0, not 0/0 (as the ONNX reference)
    zero = cx.scalar(0, input.dtype)
    return cx.op("where", cx.op("equal", norm, zero), zero, cx.op("div", input, norm))


@converter("GroupNormalization", since=18)
def GroupNormalization(cx: NodeContext, X: Value, scale: Value, bias: Value, *, epsilon,
                       num_groups, stash_type=1) -> Value:
    # normalize over (channels of a group, spatial) per group, then scale and bias: per group
    # in opset 18, per channel from opset 21
    c = X.shape[1]
    spatial = X.shape[2:]
    x = cx.cast(X, onnx_dtype(stash_type or 1))
    y = cx.cast(group_norm(cx, x, int(num_groups), None, None, float(epsilon)), X.dtype)
    if scale.shape[0] != c:  # opset 18: one scale and bias per group
        reps = c // num_groups
        idx = cx.const(np.repeat(np.arange(num_groups), reps).astype(np.int64))
        scale, bias = cx.op("gather", scale, idx, axis=0), cx.op("gather", bias, idx, axis=0)
    per_channel = (c,) + (1,) * len(spatial)
    y = cx.op("mul", y, cx.reshape(scale, per_channel))
    return cx.op("add", y, cx.reshape(bias, per_channel))


@converter("Hardmax", since=13)
def Hardmax(cx: NodeContext, input: Value, *, axis) -> Value:
    # 1 at the first maximum along `axis`, 0 elsewhere
    ax = normalize_axis(axis, input.type.rank, cx)
    n = input.shape[ax]
    hit = cx.op("equal", input, cx.op("reduce_max", input, axes=(ax,), keepdims=1))
    shape = [1] * input.type.rank
    shape[ax] = n
    iota = cx.const(np.arange(n, dtype=np.int64).reshape(shape))
    first = cx.op("reduce_min", cx.op("where", hit, iota, cx.scalar(n, "int64")), axes=(ax,),
                  keepdims=1)
    return cx.cast(cx.op("equal", iota, first), input.dtype)


@converter("Hardmax", since=1)
def Hardmax_1(cx: NodeContext, input: Value, *, axis) -> Value:
    # before opset 13: hardmax of the input flattened to 2-D at `axis`
    ax = normalize_axis(axis, input.type.rank, cx)
    rows = math.prod(input.shape[:ax])
    flat = cx.reshape(input, (rows, math.prod(input.shape[ax:])))
    return cx.reshape(Hardmax(cx, flat, axis=1), input.shape)


@converter("Swish", since=24)
def Swish(cx: NodeContext, X: Value, *, alpha) -> Value:
    # x * sigmoid(alpha * x)
    return cx.op("mul", X, cx.op("sigmoid", cx.op("mul", X, cx.scalar(alpha, X.dtype))))


@converter("MeanVarianceNormalization", since=9)
def MeanVarianceNormalization(cx: NodeContext, X: Value, *, axes) -> Value:
    # (x - mean) / sqrt(var), the epsilon of the ONNX function body being 1e-9
    return normalize(cx, X, tuple(sorted(normalize_axes(axes, X.type.rank))), 1e-9)


# -- window functions: compile-time constants of the given size --------------------------------------
def _cosine_window(cx: NodeContext, size: Value, periodic: int, output_datatype: int, terms) -> Value:
    # sum_k a_k cos(2 pi k n / N), N = size (periodic) or size - 1 (symmetric)
    n = int(cx.ints(size, "size")[0])
    denom = n if periodic else n - 1
    t = 2 * np.pi * np.arange(n) / denom if denom > 0 else np.zeros(n)
    w = sum(a * np.cos(k * t) for k, a in enumerate(terms))
    return cx.const(np.asarray(w).astype(ir.np_dtype(onnx_dtype(output_datatype))))


@converter("HannWindow", since=17)
def HannWindow(cx: NodeContext, size: Value, *, output_datatype, periodic) -> Value:
    return _cosine_window(cx, size, periodic, output_datatype, (0.5, -0.5))


@converter("HammingWindow", since=17)
def HammingWindow(cx: NodeContext, size: Value, *, output_datatype, periodic) -> Value:
    return _cosine_window(cx, size, periodic, output_datatype, (25 / 46, -(1 - 25 / 46)))


@converter("BlackmanWindow", since=17)
def BlackmanWindow(cx: NodeContext, size: Value, *, output_datatype, periodic) -> Value:
    return _cosine_window(cx, size, periodic, output_datatype, (0.42, -0.5, 0.08))
