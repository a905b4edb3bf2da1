"""Converters for neural-network ops: convolutions, bias, batch normalization, matrix products,
pooling, softmax, and Einsum.

Convolutions and pools keep TensorFlow's data layout in the IR (`layout="NHWC"` for its default
data_format; `passes/layout.py` makes them channels first without transposes between them).
Weights become the IR's OIHW at compile time: Conv2D/Conv3D filters are HWIO,
DepthwiseConv2dNative's HWCM (channel multiplier M), Conv2DBackpropInput's HWOI.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from neo.ir import Value
from neo.ir.ops_nn import to_channels_first, to_channels_last

from .context import TFContext, same_pads
from .registry import converter


# -- padding ----------------------------------------------------------------------------------
def _pads(cx: TFContext, padding: str, explicit_paddings: Sequence[int] | None, in_sp, kernel,
          strides, dilations, channels_last: bool, rank: int) -> tuple[int, ...]:
    """(begin..., end...) over the spatial dims for TensorFlow's padding attribute."""
    nsp = rank - 2
    if padding == "VALID":
        return (0,) * (2 * nsp)
    if padding == "SAME":
        return same_pads(in_sp, kernel, strides, dilations)
    if padding == "EXPLICIT":
        ep = [int(p) for p in explicit_paddings or ()]
        if len(ep) != 2 * rank:
            cx.invalid("explicit_paddings", tuple(ep), f"{2 * rank} values (before, after per "
                       "dimension)")
        pairs = [ep[2 * i:2 * i + 2] for i in range(rank)]
        outer = (pairs[0], pairs[-1]) if channels_last else (pairs[0], pairs[1])
        if any(p != [0, 0] for p in outer):
            cx.unsupported("explicit padding of the batch or channel dimension")
        sp = pairs[1:-1] if channels_last else pairs[2:]
        return tuple(p[0] for p in sp) + tuple(p[1] for p in sp)
    cx.unsupported_attribute("padding", padding, "SAME, VALID, EXPLICIT")


def _sp(x: Value, channels_last: bool) -> tuple[int, ...]:
    return x.shape[1:-1] if channels_last else x.shape[2:]


def _channels(x: Value, channels_last: bool) -> int:
    return x.shape[-1] if channels_last else x.shape[1]


# -- convolutions -----------------------------------------------------------------------------
@converter("Conv2D", "Conv3D", "Conv")
def Conv2D(cx: TFContext, input: Value, filter: Value, *, strides, padding, explicit_paddings,
           data_format, dilations, use_cudnn_on_gpu=True, batch_dims=1, groups=1) -> Value:
    del use_cudnn_on_gpu  # a GPU kernel choice, no effect on the result
    rank = input.type.rank
    if batch_dims not in (None, 1):
        cx.unsupported_attribute("batch_dims", batch_dims, "1")
    if filter.type.rank != rank:
        raise ValueError(f"filter {filter.shape} does not match the rank-{rank} input")
    last = cx.channels_last(data_format, rank)
    s = cx.spatial(strides, last, rank, "strides")
    d = cx.spatial(dilations, last, rank, "dilations")
    kernel = filter.shape[:-2]
    c_in, per_group = _channels(input, last), filter.shape[-2]
    if c_in % per_group:
        raise ValueError(f"input has {c_in} channels, not a multiple of the filter's {per_group}")
    pads = _pads(cx, padding, explicit_paddings, _sp(input, last), kernel, s, d, last, rank)
    # HWIO -> OIHW
    w = cx.transpose(filter, (rank - 1, rank - 2) + tuple(range(rank - 2)))
    return cx.op("conv", input, w, strides=s, pads=pads, dilations=d, groups=c_in // per_group,
                 layout=cx.layout(last))


@converter("DepthwiseConv2dNative")
def DepthwiseConv2dNative(cx: TFContext, input: Value, filter: Value, *, strides, padding,
                          explicit_paddings, data_format, dilations) -> Value:
    rank = input.type.rank
    last = cx.channels_last(data_format, rank)
    s = cx.spatial(strides, last, rank, "strides")
    d = cx.spatial(dilations, last, rank, "dilations")
    kh, kw, c, m = filter.shape
    if _channels(input, last) != c:
        raise ValueError(f"input has {_channels(input, last)} channels, the filter {c}")
    pads = _pads(cx, padding, explicit_paddings, _sp(input, last), (kh, kw), s, d, last, rank)
    # HWCM -> (C*M)1HW: output channel c*M + m reads input channel c
    w = cx.reshape(cx.transpose(filter, (2, 3, 0, 1)), (c * m, 1, kh, kw))
    return cx.op("conv", input, w, strides=s, pads=pads, dilations=d, groups=c,
                 layout=cx.layout(last))


@converter("Conv2DBackpropInput", "Conv3DBackpropInputV2")
def Conv2DBackpropInput(cx: TFContext, input_sizes: Value, filter: Value, out_backprop: Value, *,
                        strides, padding, explicit_paddings, data_format, dilations,
                        use_cudnn_on_gpu=True) -> Value:
    """The gradient of a conv with respect to its input: a transposed conv of `out_backprop`
    whose output has `input_sizes`."""
    del use_cudnn_on_gpu
    x = out_backprop
    rank = x.type.rank
    last = cx.channels_last(data_format, rank)
    s = cx.spatial(strides, last, rank, "strides")
    d = cx.spatial(dilations, last, rank, "dilations")
    size = cx.ints(input_sizes, "input_sizes")
    if len(size) == 2 and rank == 4:  # only the spatial size given (allowed for NHWC and NCHW)
        size = [x.shape[0]] + ([*size, filter.shape[-2]] if last else [filter.shape[-2], *size])
    if len(size) != rank:
        cx.invalid("input_sizes", size, f"{rank} dims")
    out_sp = tuple(size[1:-1] if last else size[2:])
    kernel = filter.shape[:-2]
    c_out = size[-1] if last else size[1]
    if filter.shape[-1] != _channels(x, last) or c_out % filter.shape[-2]:
        raise ValueError(f"filter {filter.shape} does not match out_backprop {x.shape} and "
                         f"input_sizes {size}")
    if c_out != filter.shape[-2]:
        cx.unsupported("a grouped Conv2DBackpropInput")
    # the forward conv's padding, from the forward input size
    pads = _pads(cx, padding, explicit_paddings, out_sp, kernel, s, d, last, rank)
    nsp = rank - 2
    in_sp = _sp(x, last)
    out_pad = tuple(out_sp[i] - ((in_sp[i] - 1) * s[i] - pads[i] - pads[nsp + i]
                                 + d[i] * (kernel[i] - 1) + 1) for i in range(nsp))
    if any(p < 0 or p >= max(s[i], d[i]) for i, p in enumerate(out_pad)):
        raise ValueError(f"input_sizes {size} cannot come from out_backprop {x.shape} with "
                         f"strides {s}")
    # HWOI (O: the forward conv's input channels per group, I: its outputs) -> IOHW
    w = cx.transpose(filter, (rank - 1, rank - 2) + tuple(range(rank - 2)))
    return cx.op("conv_transpose", x, w, strides=s, pads=pads, dilations=d, groups=1,
                 output_padding=out_pad, layout=cx.layout(last))


# -- bias and batch normalization -------------------------------------------------------------
def _per_channel(cx: TFContext, v: Value, rank: int, last: bool) -> Value:
    """A [C] vector shaped to broadcast along the channel dim."""
    if last or rank <= 2:
        return v
    return cx.reshape(v, (v.shape[0],) + (1,) * (rank - 2))


@converter("BiasAdd", "BiasAddV1")
def BiasAdd(cx: TFContext, value: Value, bias: Value, *, data_format="NHWC") -> Value:
    rank = value.type.rank
    last = rank < 3 or cx.channels_last(data_format, rank)
    return cx.op("add", value, _per_channel(cx, bias, rank, last))


@converter("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
def FusedBatchNorm(cx: TFContext, x: Value, scale: Value, offset: Value, mean: Value,
                   variance: Value, *, epsilon, data_format, is_training,
                   exponential_avg_factor=1.0) -> Value:
    del exponential_avg_factor  # updates the moving statistics in training only
    if is_training:
        cx.unsupported_attribute("is_training", True, "false (an inference graph)")
    rank = x.type.rank
    last = cx.channels_last(data_format, rank)
    # As the IR's batch_norm (channels first), so that it folds into a preceding conv once
    # the layout pass has cancelled these transposes against the conv's.
    xf = cx.transpose(x, to_channels_first(rank)) if last else x
    y = cx.op("batch_norm", xf, scale, offset, mean, variance, epsilon=float(epsilon))
    return cx.transpose(y, to_channels_last(rank)) if last else y


# -- matrix products --------------------------------------------------------------------------
def _swap_last(cx: TFContext, v: Value) -> Value:
    r = v.type.rank
    return cx.transpose(v, tuple(range(r - 2)) + (r - 1, r - 2))


@converter("MatMul")
def MatMul(cx: TFContext, a: Value, b: Value, *, transpose_a, transpose_b, grad_a=False,
           grad_b=False) -> Value:
    del grad_a, grad_b  # markers for gradient graphs
    return cx.op("matmul", _swap_last(cx, a) if transpose_a else a,
                 _swap_last(cx, b) if transpose_b else b)


@converter("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3")
def BatchMatMulV2(cx: TFContext, x: Value, y: Value, *, adj_x, adj_y, grad_x=False,
                  grad_y=False) -> Value:
    del grad_x, grad_y
    return cx.op("matmul", _swap_last(cx, x) if adj_x else x, _swap_last(cx, y) if adj_y else y)


# -- pooling ----------------------------------------------------------------------------------
def _pool(cx: TFContext, op: str, x: Value, ksize, strides, padding, data_format,
          explicit_paddings=None) -> Value:
    rank = x.type.rank
    last = cx.channels_last(data_format, rank)
    k = cx.spatial(ksize, last, rank, "ksize")
    s = cx.spatial(strides, last, rank, "strides")
    ones = (1,) * (rank - 2)
    pads = _pads(cx, padding, explicit_paddings, _sp(x, last), k, s, ones, last, rank)
    # TensorFlow's average pools count only the input elements in each window
    return cx.op(op, x, kernel=k, strides=s, pads=pads, dilations=ones, ceil_mode=0,
                 count_include_pad=0, layout=cx.layout(last))


@converter("MaxPool", "MaxPool3D")
def MaxPool(cx: TFContext, input: Value, *, ksize, strides, padding, data_format,
            explicit_paddings=None) -> Value:
    return _pool(cx, "max_pool", input, ksize, strides, padding, data_format, explicit_paddings)


@converter("MaxPoolV2")
def MaxPoolV2(cx: TFContext, input: Value, ksize: Value, strides: Value, *, padding,
              data_format) -> Value:
    return _pool(cx, "max_pool", input, cx.ints(ksize, "ksize"), cx.ints(strides, "strides"),
                 padding, data_format)


@converter("AvgPool", "AvgPool3D")
def AvgPool(cx: TFContext, value: Value, *, ksize, strides, padding, data_format) -> Value:
    return _pool(cx, "avg_pool", value, ksize, strides, padding, data_format)


# -- softmax ----------------------------------------------------------------------------------
@converter("Softmax")
def Softmax(cx: TFContext, logits: Value) -> Value:
    return cx.op("softmax", logits, axis=logits.type.rank - 1)


@converter("LogSoftmax")
def LogSoftmax(cx: TFContext, logits: Value) -> Value:
    return cx.op("log_softmax", logits, axis=logits.type.rank - 1)


# -- Einsum -----------------------------------------------------------------------------------
def _parse_einsum(cx: TFContext, equation: str, ranks: list[int]) -> tuple[list[str], str]:
    eq = equation.replace(" ", "")
    if "->" not in eq:
        cx.unsupported("an Einsum equation without '->'")
    lhs, out = eq.split("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        cx.invalid("equation", equation, f"{len(ranks)} operand terms")
    used = set(eq) - set(",->.")
    spare = iter(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in used)
    ell = ""
    fixed = []
    for t, r in zip(terms, ranks):
        if "..." in t:
            n = r - (len(t) - 3)
            while len(ell) < n:
                ell = next(spare) + ell
            t = t.replace("...", ell[len(ell) - n:] if n else "")
        if len(t) != r:
            cx.invalid("equation", equation, f"a term with {r} letters for a rank-{r} operand")
        if len(set(t)) != len(t):
            cx.unsupported("an Einsum term repeating a letter (a diagonal)")
        fixed.append(t)
    out = out.replace("...", ell)
    return fixed, out


def _sum_out(cx: TFContext, v: Value, term: str, keep: set[str]) -> tuple[Value, str]:
    """Sum over the letters of `term` not in `keep`."""
    axes = tuple(i for i, c in enumerate(term) if c not in keep)
    if not axes:
        return v, term
    return (cx.op("reduce_sum", v, axes=axes, keepdims=0),
            "".join(c for c in term if c in keep))


@converter("Einsum")
def Einsum(cx: TFContext, *inputs: Value, equation) -> Value:
    """One or two operands: transposes, reshapes and one batched matmul."""
    if len(inputs) not in (1, 2):
        cx.unsupported(f"Einsum of {len(inputs)} operands (1 or 2 are implemented)")
    terms, out = _parse_einsum(cx, equation, [v.type.rank for v in inputs])
    if len(inputs) == 1:
        v, t = _sum_out(cx, inputs[0], terms[0], set(out))
        return cx.transpose(v, tuple(t.index(c) for c in out))
    (a, ta), (b, tb) = (_sum_out(cx, inputs[0], terms[0], set(out) | set(terms[1])),
                        _sum_out(cx, inputs[1], terms[1], set(out) | set(terms[0])))
    dims = {c: a.shape[i] for i, c in enumerate(ta)}
    for i, c in enumerate(tb):
        if c in dims and dims[c] != b.shape[i] and 1 not in (dims[c], b.shape[i]):
            raise ValueError(f"Einsum {equation}: dimension {c} is {dims[c]} and {b.shape[i]}")
        dims[c] = max(dims.get(c, 1), b.shape[i])
    batch = [c for c in ta if c in tb and c in out]
    contract = [c for c in ta if c in tb and c not in out]
    left = [c for c in ta if c not in tb]
    right = [c for c in tb if c not in ta]

    def prod(cs):
        return int(np.prod([dims[c] for c in cs], dtype=np.int64)) if cs else 1

    def arrange(v: Value, t: str, groups: list[list[str]]) -> Value:
        order = [c for g in groups for c in g]
        v = cx.transpose(v, tuple(t.index(c) for c in order))
        full = tuple(dims[c] for c in order)
        if v.shape != full:  # a broadcast batch dim of size 1
            v = cx.op("expand", v, shape=full)
        return cx.reshape(v, tuple(prod(g) for g in groups))

    am = arrange(a, ta, [batch, left, contract])
    bm = arrange(b, tb, [batch, contract, right])
    y = cx.op("matmul", am, bm)
    got = batch + left + right
    y = cx.reshape(y, tuple(dims[c] for c in got))
    return cx.transpose(y, tuple(got.index(c) for c in out))
