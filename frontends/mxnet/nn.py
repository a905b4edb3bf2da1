"""Layers: convolution, fully connected, normalization, activations, pooling, softmax and the loss
layers at inference, dropout, embedding, upsampling.

MXNet's data layout is NCHW (channels first), the IR's default; weights are OIHW (convolution)
and IOHW (deconvolution), as the IR's.
"""
from __future__ import annotations

import math

import numpy as np

from neo.ir import Value

from ..common import decompose
from .context import MxContext, as_tuple
from .registry import converter

CHANNELS_FIRST = (None, "NCW", "NCHW", "NCDHW")
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_LAMBDA = 1.0507009873554804934193349852946
FLOAT32_LOWEST = float(np.finfo(np.float32).min)


def _spatial(cx: MxContext, kernel, stride, dilate, pad, layout, rank: int):
    kernel = as_tuple(kernel)
    if not kernel:
        cx.required("kernel")
    nsp = len(kernel)
    if layout not in CHANNELS_FIRST:
        cx.unsupported_attribute("layout", layout, "NCW, NCHW, NCDHW (channels first)")
    if rank != nsp + 2:
        raise ValueError(f"a {nsp}-D kernel needs a rank-{nsp + 2} input, got rank {rank}")

    def full(v, fill):
        v = as_tuple(v)
        return tuple(int(x) for x in v) if v else (fill,) * nsp

    return (tuple(int(k) for k in kernel), full(stride, 1), full(dilate, 1), full(pad, 0))


def _add_channel_bias(cx: MxContext, y: Value, bias: Value) -> Value:
    return cx.op("add", y, cx.reshape(bias, (bias.shape[0],) + (1,) * (y.type.rank - 2)))


@converter("Convolution")
def Convolution(cx: MxContext, data: Value, weight: Value, bias: Value | None = None, *,
                kernel=None, num_filter=None, stride=(), dilate=(), pad=(), num_group=1,
                no_bias=False, layout=None) -> Value:
    k, s, d, p = _spatial(cx, kernel, stride, dilate, pad, layout, data.type.rank)
    if num_filter is None:
        cx.required("num_filter")
    if weight.shape[0] != num_filter or tuple(weight.shape[2:]) != k:
        raise ValueError(f"weight shape {list(weight.shape)} does not match num_filter="
                         f"{num_filter}, kernel={list(k)}")
    inputs = [data, weight] + ([bias] if bias is not None and not no_bias else [])
    return cx.op("conv", *inputs, strides=s, dilations=d, pads=p + p, groups=int(num_group))


def deconv_pads(k, s, d, p, adj, target_shape, in_sp):
    """Deconvolution's (pad, adj) per spatial dim (MXNet's InferPad): a non-zero target_shape
    sets them so that the output is exactly that."""
    target = as_tuple(target_shape)
    if target and any(target):
        pads, adjs = [], []
        for i in range(len(k)):
            total = s[i] * (in_sp[i] - 1) + d[i] * (k[i] - 1) + 1 - int(target[i])
            if total < 0:
                raise ValueError(f"target_shape {list(target)} is larger than the deconvolution "
                                 "can produce")
            adjs.append(total % 2)
            pads.append((total + 1) // 2)
        return tuple(pads), tuple(adjs)
    adj = as_tuple(adj)
    return p, tuple(int(a) for a in adj) if adj else (0,) * len(k)


@converter("Deconvolution")
def Deconvolution(cx: MxContext, data: Value, weight: Value, bias: Value | None = None, *,
                  kernel=None, num_filter=None, stride=(), dilate=(), pad=(), adj=(),
                  target_shape=(), num_group=1, no_bias=True, layout=None) -> Value:
    k, s, d, p = _spatial(cx, kernel, stride, dilate, pad, layout, data.type.rank)
    p, a = deconv_pads(k, s, d, p, adj, target_shape, data.shape[2:])
    y = cx.op("conv_transpose", data, weight, strides=s, dilations=d, pads=p + p,
              groups=int(num_group), output_padding=a)
    return y if bias is None or no_bias else _add_channel_bias(cx, y, bias)


@converter("FullyConnected")
def FullyConnected(cx: MxContext, data: Value, weight: Value, bias: Value | None = None, *,
                   num_hidden=None, no_bias=False, flatten=True) -> Value:
    x = data
    if flatten:
        x = cx.reshape(x, (x.shape[0], math.prod(x.shape[1:])))
    y = cx.op("matmul", x, cx.transpose(weight, (1, 0)))  # folded: W is a constant
    return y if bias is None or no_bias else cx.op("add", y, bias)


def _per_axis(cx: MxContext, v: Value, axis: int, rank: int) -> Value:
    """A [C] vector shaped to broadcast along `axis` of a rank-`rank` tensor."""
    return cx.reshape(v, tuple(v.shape[0] if i == axis else 1 for i in range(rank)))


@converter("BatchNorm", "BatchNorm_v1")
def BatchNorm(cx: MxContext, data: Value, gamma: Value, beta: Value, moving_mean: Value,
              moving_var: Value, *, eps=1e-3, fix_gamma=True, axis=1, output_mean_var=False,
              act_type=None) -> Value | list[Value]:
    # Inference reads the moving statistics (whatever use_global_stats says); fix_gamma means a
    # scale of 1, whatever gamma holds.
    if act_type is not None:  # the oneDNN-fused form
        cx.unsupported_attribute("act_type", act_type, "none (no fused activation)")
    rank = data.type.rank
    ax = cx.axis(axis, rank)
    if fix_gamma:
        gamma = cx.const(np.ones(gamma.shape, dtype=np.dtype(gamma.dtype)))
    if ax == 1 and rank >= 2:
        y = cx.op("batch_norm", data, gamma, beta, moving_mean, moving_var, epsilon=float(eps))
    else:
        inv = cx.op("div", gamma, cx.op("sqrt", cx.op("add", moving_var,
                                                      cx.scalar(eps, moving_var.dtype))))
        y = cx.op("add", cx.op("mul", cx.op("sub", data, _per_axis(cx, moving_mean, ax, rank)),
                               _per_axis(cx, inv, ax, rank)), _per_axis(cx, beta, ax, rank))
    return [y, moving_mean, moving_var] if output_mean_var else y


def activation(cx: MxContext, x: Value, act_type: str) -> Value:
    if act_type in ("relu", "sigmoid", "tanh"):
        return cx.op(act_type, x)
    if act_type == "softrelu":
        return cx.op("softplus", x)
    if act_type == "softsign":  # x / (1 + |x|)
        return cx.op("div", x, cx.op("add", cx.op("abs", x), cx.scalar(1, x.dtype)))
    if act_type == "log_sigmoid":  # -softplus(-x)
        return cx.op("neg", cx.op("softplus", cx.op("neg", x)))
    if act_type == "mish":  # x * tanh(softplus(x))
        return cx.op("mul", x, cx.op("tanh", cx.op("softplus", x)))
    cx.unsupported_attribute("act_type", act_type,
                             "relu, sigmoid, tanh, softrelu, softsign, log_sigmoid, mish")


@converter("Activation")
def Activation(cx: MxContext, data: Value, *, act_type=None) -> Value:
    if act_type is None:
        cx.required("act_type")
    return activation(cx, data, act_type)


@converter("LeakyReLU")
def LeakyReLU(cx: MxContext, data: Value, gamma: Value | None = None, *, act_type="leaky",
              slope=0.25, lower_bound=0.125, upper_bound=0.334) -> Value:
    x = data
    if act_type == "leaky":
        return cx.op("leaky_relu", x, alpha=float(slope))
    if act_type == "rrelu":  # at inference: the mean slope
        return cx.op("leaky_relu", x, alpha=(float(lower_bound) + float(upper_bound)) / 2)
    if act_type == "elu":
        return cx.op("elu", x, alpha=float(slope))
    if act_type == "selu":  # lambda * (x > 0 ? x : alpha * (exp(x) - 1))
        return cx.op("mul", cx.op("elu", x, alpha=SELU_ALPHA), cx.scalar(SELU_LAMBDA, x.dtype))
    if act_type == "gelu":  # MXNet 1.x: the erf form
        return cx.op("gelu", x)
    if act_type == "prelu":
        if gamma is None:
            cx.required("gamma (the input)")
        # gamma [C] lines up with axis 1 (a single value: every element)
        g = gamma if gamma.shape in ((1,), ()) or x.type.rank < 2 else \
            cx.reshape(gamma, (1, gamma.shape[0]) + (1,) * (x.type.rank - 2))
        neg = cx.op("mul", cx.op("minimum", x, cx.scalar(0, x.dtype)), g)
        return cx.op("add", cx.op("relu", x), neg)
    cx.unsupported_attribute("act_type", act_type, "leaky, prelu, rrelu, elu, selu, gelu")


# -- pooling ---------------------------------------------------------------------------------------
def _pool_out(size: int, k: int, s: int, p: int, convention: str) -> int:
    if convention == "full":
        return 1 + -(-(size + 2 * p - k) // s)
    return 1 + (size + 2 * p - k) // s


@converter("Pooling", "Pooling_v1")
def Pooling(cx: MxContext, data: Value, *, kernel=(), pool_type="max", global_pool=False,
            pooling_convention="valid", stride=(), pad=(), p_value=None, count_include_pad=None,
            layout=None) -> Value:
    rank = data.type.rank
    if layout not in CHANNELS_FIRST:
        cx.unsupported_attribute("layout", layout, "NCW, NCHW, NCDHW (channels first)")
    if pool_type not in ("max", "avg", "sum", "lp"):
        cx.unsupported_attribute("pool_type", pool_type, "max, avg, sum, lp")
    axes = tuple(range(2, rank))
    if global_pool:
        if pool_type == "max":
            return cx.op("reduce_max", data, axes=axes, keepdims=1)
        if pool_type == "avg":
            return cx.op("reduce_mean", data, axes=axes, keepdims=1)
        if pool_type == "sum":
            return cx.op("reduce_sum", data, axes=axes, keepdims=1)
        return _lp(cx, data, p_value, lambda v: cx.op("reduce_sum", v, axes=axes, keepdims=1))
    if pooling_convention not in ("valid", "full"):
        cx.unsupported_attribute("pooling_convention", pooling_convention, "valid, full")
    k, s, _, p = _spatial(cx, kernel, stride, (), pad, None, rank)
    sizes = data.shape[2:]
    outs = tuple(_pool_out(n, k[i], s[i], p[i], pooling_convention)
                 for i, n in enumerate(sizes))
    # MXNet's window i covers [i*s - p, i*s - p + k) clipped to the padded input; windows past
    # the padding (full convention) only see what is left. The IR's pools count the same way
    # but drop a last window that starts in the padding, so such a model is padded by hand.
    ceil = pooling_convention == "full"
    trailing = [max(0, (outs[i] - 1) * s[i] + k[i] - (sizes[i] + 2 * p[i]))
                for i in range(len(k))]
    past_padding = ceil and any((outs[i] - 1) * s[i] >= sizes[i] + p[i] for i in range(len(k)))
    include = True if count_include_pad is None else bool(count_include_pad)
    if pool_type == "max":
        if past_padding:  # an empty window gives the lowest float, as MXNet's does
            x = cx.op("pad", data, pads=(0, 0) + p + (0, 0) + tuple(
                p[i] + trailing[i] for i in range(len(k))), value=FLOAT32_LOWEST)
            return cx.op("max_pool", x, kernel=k, strides=s, pads=(0,) * (2 * len(k)))
        return cx.op("max_pool", data, kernel=k, strides=s, pads=p + p, ceil_mode=int(ceil))
    if pool_type == "avg" and not past_padding:
        return cx.op("avg_pool", data, kernel=k, strides=s, pads=p + p, ceil_mode=int(ceil),
                     count_include_pad=int(include))

    # Sums over windows as a depthwise convolution with a kernel of ones (padding with zeros
    # covers the windows past the end); avg divides by MXNet's count per output position.
    def window_sum(x: Value) -> Value:
        c = x.shape[1]
        ones = cx.const(np.ones((c, 1) + k, dtype=np.dtype(x.dtype)))
        xp = cx.op("pad", x, pads=(0, 0) + p + (0, 0) + tuple(
            p[i] + trailing[i] for i in range(len(k))))
        return cx.op("conv", xp, ones, strides=s, pads=(0,) * (2 * len(k)), groups=c)

    if pool_type == "sum":
        return window_sum(data)
    if pool_type == "lp":
        return _lp(cx, data, p_value, window_sum)
    counts = np.ones((), dtype=np.float64)
    for i in range(len(k)):
        start = np.arange(outs[i]) * s[i] - p[i]
        end = np.minimum(start + k[i], sizes[i] + p[i])
        if not include:
            end = np.minimum(end, sizes[i])
            start = np.maximum(start, 0)
        n = np.maximum(end - start, 1)
        counts = np.multiply.outer(counts, n)
    return cx.op("div", window_sum(data), cx.const(counts.astype(np.dtype(data.dtype))))


def _lp(cx: MxContext, x: Value, p_value, total) -> Value:
    """(sum |x|^p)^(1/p) over each window (MXNet: p=1 is sum |x|, p=2 the L2 norm)."""
    if p_value is None:
        cx.required("p_value")
    pv = float(p_value)
    if pv == 1:
        return total(cx.op("abs", x))
    if pv == 2:
        return cx.op("sqrt", total(cx.op("mul", x, x)))
    powered = cx.op("pow", cx.op("abs", x), cx.scalar(pv, x.dtype))
    return cx.op("pow", total(powered), cx.scalar(1 / pv, x.dtype))


# -- normalization ---------------------------------------------------------------------------------
@converter("LayerNorm")
def LayerNorm(cx: MxContext, data: Value, gamma: Value, beta: Value, *, axis=-1, eps=1e-5,
              output_mean_var=False) -> Value:
    if output_mean_var:
        cx.unsupported_attribute("output_mean_var", True, "False")
    rank = data.type.rank
    ax = cx.axis(axis, rank)
    return decompose.layer_norm(cx, data, (ax,), _per_axis(cx, gamma, ax, rank),
                                _per_axis(cx, beta, ax, rank), float(eps))


@converter("InstanceNorm")
def InstanceNorm(cx: MxContext, data: Value, gamma: Value, beta: Value, *, eps=1e-3) -> Value:
    return decompose.instance_norm(cx, data, gamma, beta, float(eps))


@converter("L2Normalization")
def L2Normalization(cx: MxContext, data: Value, *, eps=1e-10, mode="instance") -> Value:
    rank = data.type.rank
    axes = {"instance": tuple(range(1, rank)), "channel": (1,),
            "spatial": tuple(range(2, rank))}.get(mode)
    if axes is None:
        cx.unsupported_attribute("mode", mode, "instance, channel, spatial")
    sq = cx.op("reduce_sum", cx.op("mul", data, data), axes=axes, keepdims=1)
    return cx.op("div", data, cx.op("sqrt", cx.op("add", sq, cx.scalar(eps, data.dtype))))


# -- softmax and the loss layers at inference ------------------------------------------------------
def _softmax(cx: MxContext, x: Value, axis: int, temperature, log: bool = False) -> Value:
    if temperature is not None and float(temperature) != 1.0:
        x = cx.op("div", x, cx.scalar(float(temperature), x.dtype))
    return cx.op("log_softmax" if log else "softmax", x, axis=cx.axis(axis, x.type.rank))


@converter("softmax")
def softmax(cx: MxContext, data: Value, length: Value | None = None, *, axis=-1,
            temperature=None, dtype=None, use_length=False) -> Value:
    if use_length:
        cx.unsupported_attribute("use_length", True, "False")
    y = _softmax(cx, data, axis, temperature)
    return y if dtype is None else cx.cast(y, dtype)


@converter("log_softmax")
def log_softmax(cx: MxContext, data: Value, *, axis=-1, temperature=None, dtype=None,
                use_length=False) -> Value:
    if use_length:
        cx.unsupported_attribute("use_length", True, "False")
    y = _softmax(cx, data, axis, temperature, log=True)
    return y if dtype is None else cx.cast(y, dtype)


@converter("SoftmaxOutput", "Softmax")
def SoftmaxOutput(cx: MxContext, data: Value, label: Value | None = None, *, multi_output=False,
                  preserve_shape=False) -> Value:
    # Forward at inference: softmax over the classes, the label is not read.
    rank = data.type.rank
    if multi_output:  # (n, classes, ...): over axis 1
        return cx.op("softmax", data, axis=1)
    if preserve_shape:
        return cx.op("softmax", data, axis=rank - 1)
    flat = cx.reshape(data, (data.shape[0], math.prod(data.shape[1:])))
    return cx.reshape(cx.op("softmax", flat, axis=1), data.shape)


@converter("SoftmaxActivation")
def SoftmaxActivation(cx: MxContext, data: Value, *, mode="instance") -> Value:
    if mode == "channel":
        return cx.op("softmax", data, axis=1)
    if mode != "instance":
        cx.unsupported_attribute("mode", mode, "instance, channel")
    # "instance" reads the data as 2-D (everything but the last axis, the last axis): a softmax
    # over the last axis (over all of an instance only when the input is 2-D)
    return cx.op("softmax", data, axis=data.type.rank - 1)


@converter("LinearRegressionOutput", "MAERegressionOutput")
def LinearRegressionOutput(cx: MxContext, data: Value, label: Value | None = None) -> Value:
    return data


@converter("LogisticRegressionOutput")
def LogisticRegressionOutput(cx: MxContext, data: Value, label: Value | None = None) -> Value:
    return cx.op("sigmoid", data)


@converter("Dropout", ignore=("axes", "cudnn_off"))
def Dropout(cx: MxContext, data: Value, *, p=0.5, mode="training") -> Value:
    if mode == "always" and float(p) > 0:
        cx.unsupported("mode='always' drops at inference too, at random; Neo compiles "
                       "deterministic inference (export with mode='training')")
    return data


@converter("Embedding")
def Embedding(cx: MxContext, data: Value, weight: Value, *, input_dim=None, output_dim=None,
              dtype="float32") -> Value:
    # Indices arrive as floats (or ints), are truncated and clipped into the table.
    rows = weight.shape[0]
    idx = data
    if idx.dtype.startswith("float"):
        idx = cx.op("clip", idx, min=0.0, max=float(rows - 1))
        idx = cx.cast(idx, "int64")
    else:
        idx = cx.cast(cx.op("clip", cx.cast(idx, "int64"), min=0, max=rows - 1), "int64")
    return cx.op("gather", weight, idx, axis=0)


@converter("UpSampling")
def UpSampling(cx: MxContext, *args: Value, scale=None, sample_type=None, num_filter=0,
               multi_input_mode="concat", num_args=1) -> Value:
    if scale is None:
        cx.required("scale")
    if sample_type is None:
        cx.required("sample_type")
    s = int(scale)
    if sample_type == "bilinear":
        # A depthwise deconvolution with the given weight (Gluon fills it with a bilinear kernel)
        if len(args) != 2:
            cx.invalid("num_args", len(args), "2 for bilinear (the data and the weight)")
        data, weight = args
        k = 2 * s - s % 2
        p = math.ceil((s - 1) / 2)
        c = data.shape[1]
        if weight.shape != (c, 1, k, k):
            cx.invalid("weight", list(weight.shape), f"[{c}, 1, {k}, {k}]")
        return cx.op("conv_transpose", data, weight, strides=(s, s), pads=(p, p, p, p),
                     dilations=(1, 1), groups=c, output_padding=(0, 0))
    if sample_type != "nearest":
        cx.unsupported_attribute("sample_type", sample_type, "nearest, bilinear")
    h, w = args[0].shape[2] * s, args[0].shape[3] * s
    ups = []
    for x in args:
        if h % x.shape[2] or w % x.shape[3]:
            raise ValueError(f"input shape {list(x.shape)} does not divide the output {h}x{w}")
        fh, fw = h // x.shape[2], w // x.shape[3]
        ups.append(x if fh == fw == 1 else cx.op(
            "resize", x, size=x.shape[:2] + (h, w), scales=(1.0, 1.0, float(fh), float(fw)),
            mode="nearest", coord="asymmetric", nearest_mode="floor"))
    if len(ups) == 1:
        return ups[0]
    if multi_input_mode == "sum":
        return cx.add_all(*ups)
    return cx.concat(ups, 1)
