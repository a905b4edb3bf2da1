"""Convolutions, Dense, normalization and pooling layers.

Keras is channels last: convs and pools are built with `layout="NHWC"` (passes/layout.py makes
them channels first and cancels the transposes between them). Kernels are transposed to the IR's
layout here, as constants: Conv HWIO -> OIHW, DepthwiseConv HWCM -> (C*M)1HW, Conv2DTranspose
HWOI -> IOHW. BatchNormalization on a channels-last tensor is a `batch_norm` between two
transposes, which the layout pass cancels, so it folds into the conv before it.
"""
from __future__ import annotations

import numpy as np

from neo.ir import Value

from ..common.decompose import layer_norm
from .context import LayerContext, axes_list, ntuple
from .registry import converter

_CONV_IGNORE = ("lora_rank", "lora_alpha")


def _kernel_oihw(kernel: np.ndarray) -> np.ndarray:
    """Keras conv kernel (*spatial, in, out) -> (out, in, *spatial)."""
    nsp = kernel.ndim - 2
    return np.ascontiguousarray(np.transpose(kernel, (nsp + 1, nsp, *range(nsp))))


def _conv(cx: LayerContext, x: Value, w: np.ndarray, b: np.ndarray | None, *, kernel_size,
          strides, padding, dilation_rate, groups=1) -> Value:
    nsp = x.type.rank - 2
    ks = w.shape[2:]
    st = ntuple(strides, nsp, "strides")
    dil = ntuple(dilation_rate, nsp, "dilation_rate")
    pads = cx.spatial_pads(padding, x.shape[1:-1], ks, st, dil)
    ins = [x, cx.weight(w)] + ([] if b is None else [cx.weight(b)])
    return cx.op("conv", *ins, strides=st, pads=pads, dilations=dil, groups=int(groups),
                 layout="NHWC")


def _conv_layer(cx: LayerContext, x: Value, nsp: int, *, filters, kernel_size, strides, padding,
                data_format, dilation_rate, groups, activation, use_bias) -> Value:
    cx.check_channels_last(data_format)
    if x.type.rank != nsp + 2:
        cx.unsupported(f"a {nsp}-D convolution of a rank-{x.type.rank} input")
    names = ["kernel", "bias"] if use_bias else ["kernel"]
    ws = cx.expect_weights(names)
    kernel = ws[0]
    ks = ntuple(kernel_size, nsp, "kernel_size")
    cin = x.shape[-1]
    want = (*ks, cin // int(groups), int(filters))
    if tuple(kernel.shape) != want:
        cx.invalid("kernel", list(kernel.shape), f"a kernel of shape {list(want)}")
    y = _conv(cx, x, _kernel_oihw(kernel), ws[1] if use_bias else None, kernel_size=ks,
              strides=strides, padding=padding, dilation_rate=dilation_rate, groups=groups)
    return cx.activation(y, activation)


def _conv_converter(nsp: int):
    def conv(cx: LayerContext, inputs: Value, *, filters, kernel_size, strides=1, padding="valid",
             data_format="channels_last", dilation_rate=1, groups=1, activation="linear",
             use_bias=True):
        return _conv_layer(cx, inputs, nsp, filters=filters, kernel_size=kernel_size,
                           strides=strides, padding=padding, data_format=data_format,
                           dilation_rate=dilation_rate, groups=groups, activation=activation,
                           use_bias=use_bias)

    return conv


Conv1D = converter("Conv1D", "Convolution1D", ignore=_CONV_IGNORE)(_conv_converter(1))
Conv2D = converter("Conv2D", "Convolution2D", ignore=_CONV_IGNORE)(_conv_converter(2))
Conv3D = converter("Conv3D", "Convolution3D", ignore=_CONV_IGNORE)(_conv_converter(3))


def _depthwise_oihw(kernel: np.ndarray) -> np.ndarray:
    """(*spatial, C, M) -> (C * M, 1, *spatial): output channel c * M + m."""
    nsp = kernel.ndim - 2
    c, m = kernel.shape[-2:]
    k = np.transpose(kernel, (nsp, nsp + 1, *range(nsp)))
    return np.ascontiguousarray(k.reshape((c * m, 1, *kernel.shape[:nsp])))


def _depthwise(cx: LayerContext, x: Value, kernel: np.ndarray, bias, nsp: int, kernel_size,
               depth_multiplier, strides, padding, dilation_rate) -> Value:
    ks = ntuple(kernel_size, nsp, "kernel_size")
    want = (*ks, x.shape[-1], int(depth_multiplier))
    if tuple(kernel.shape) != want:
        cx.invalid("depthwise_kernel", list(kernel.shape), f"a kernel of shape {list(want)}")
    return _conv(cx, x, _depthwise_oihw(kernel), bias, kernel_size=ks, strides=strides,
                 padding=padding, dilation_rate=dilation_rate, groups=x.shape[-1])


def _depthwise_converter(nsp: int):
    def depthwise(cx: LayerContext, inputs: Value, *, kernel_size, depth_multiplier=1, strides=1,
                  padding="valid", data_format="channels_last", dilation_rate=1,
                  activation="linear", use_bias=True, groups=1, filters=None):
        cx.check_channels_last(data_format)
        if int(groups) != 1:
            cx.unsupported_attribute("groups", groups, "1")
        ws = cx.expect_weights(["depthwise_kernel", "bias"] if use_bias else ["depthwise_kernel"])
        y = _depthwise(cx, inputs, ws[0], ws[1] if use_bias else None, nsp, kernel_size,
                       depth_multiplier, strides, padding, dilation_rate)
        return cx.activation(y, activation)

    return depthwise


DepthwiseConv1D = converter("DepthwiseConv1D")(_depthwise_converter(1))
DepthwiseConv2D = converter("DepthwiseConv2D")(_depthwise_converter(2))


def _separable_converter(nsp: int):
    def separable(cx: LayerContext, inputs: Value, *, filters, kernel_size, strides=1,
                  padding="valid", data_format="channels_last", dilation_rate=1,
                  depth_multiplier=1, activation="linear", use_bias=True, groups=1):
        cx.check_channels_last(data_format)
        if int(groups) != 1:
            cx.unsupported_attribute("groups", groups, "1")
        names = ["depthwise_kernel", "pointwise_kernel"] + (["bias"] if use_bias else [])
        ws = cx.expect_weights(names)
        y = _depthwise(cx, inputs, ws[0], None, nsp, kernel_size, depth_multiplier, strides,
                       padding, dilation_rate)
        pointwise = ws[1]
        want = ((1,) * nsp) + (y.shape[-1], int(filters))
        if tuple(pointwise.shape) != want:
            cx.invalid("pointwise_kernel", list(pointwise.shape), f"shape {list(want)}")
        y = _conv(cx, y, _kernel_oihw(pointwise), ws[2] if use_bias else None,
                  kernel_size=(1,) * nsp, strides=1, padding="valid", dilation_rate=1)
        return cx.activation(y, activation)

    return separable


SeparableConv1D = converter("SeparableConv1D", "SeparableConvolution1D")(_separable_converter(1))
SeparableConv2D = converter("SeparableConv2D", "SeparableConvolution2D")(_separable_converter(2))


def _transpose_converter(nsp: int):
    def conv_transpose(cx: LayerContext, inputs: Value, *, filters, kernel_size, strides=1,
                       padding="valid", output_padding=None, data_format="channels_last",
                       dilation_rate=1, activation="linear", use_bias=True, groups=1):
        cx.check_channels_last(data_format)
        if int(groups) != 1:
            cx.unsupported_attribute("groups", groups, "1")
        x = inputs
        ws = cx.expect_weights(["kernel", "bias"] if use_bias else ["kernel"])
        kernel = ws[0]  # (*spatial, out, in)
        ks = ntuple(kernel_size, nsp, "kernel_size")
        want = (*ks, int(filters), x.shape[-1])
        if tuple(kernel.shape) != want:
            cx.invalid("kernel", list(kernel.shape), f"a kernel of shape {list(want)}")
        st = ntuple(strides, nsp, "strides")
        dil = ntuple(dilation_rate, nsp, "dilation_rate")
        opad = None if output_padding is None else ntuple(output_padding, nsp, "output_padding")
        begins, ends, extra = [], [], []
        for i in range(nsp):
            n, k, s, d = x.shape[1 + i], ks[i], st[i], dil[i]
            span = (k - 1) * d + 1
            mode = str(padding).lower()
            if mode not in ("valid", "same"):
                cx.invalid("padding", padding, '"valid" or "same"')
            # Keras's output length, then the padding TensorFlow's conv_transpose derives from it
            if opad is None:
                out = n * s + max(span - s, 0) if mode == "valid" else n * s
            else:
                pad = span // 2 if mode == "same" else 0
                out = (n - 1) * s + span - 2 * pad + opad[i]
            before = max((n - 1) * s + span - out, 0) // 2 if mode == "same" else 0
            natural = (n - 1) * s + span - before
            begins.append(before)
            ends.append(max(natural - out, 0))
            extra.append(max(out - natural, 0))
        # IOHW: (in, out, *spatial)
        w = np.ascontiguousarray(np.transpose(kernel, (nsp + 1, nsp, *range(nsp))))
        ins = [x, cx.weight(w)] + ([cx.weight(ws[1])] if use_bias else [])
        y = cx.op("conv_transpose", *ins, strides=st, pads=tuple(begins + ends), dilations=dil,
                  output_padding=tuple(extra), layout="NHWC")
        return cx.activation(y, activation)

    return conv_transpose


Conv1DTranspose = converter("Conv1DTranspose")(_transpose_converter(1))
Conv2DTranspose = converter("Conv2DTranspose", "Deconvolution2D")(_transpose_converter(2))
Conv3DTranspose = converter("Conv3DTranspose")(_transpose_converter(3))


@converter("Dense", ignore=_CONV_IGNORE)
def Dense(cx: LayerContext, inputs: Value, *, units, activation="linear", use_bias=True,
          quantization_config=None):
    if quantization_config is not None:
        cx.unsupported_attribute("quantization_config", quantization_config, "None")
    x = inputs
    ws = cx.expect_weights(["kernel", "bias"] if use_bias else ["kernel"])
    kernel = ws[0]
    if tuple(kernel.shape) != (x.shape[-1], int(units)):
        cx.invalid("kernel", list(kernel.shape), f"shape {[x.shape[-1], int(units)]}")
    if x.type.rank >= 4:
        # a Dense over the channels of an image is a 1x1 conv: it keeps the layout channels
        # last for passes/layout.py (ConvNeXt's pointwise layers)
        nsp = x.type.rank - 2
        w = np.ascontiguousarray(kernel.T.reshape((int(units), x.shape[-1]) + (1,) * nsp))
        y = _conv(cx, x, w, ws[1] if use_bias else None, kernel_size=(1,) * nsp, strides=1,
                  padding="valid", dilation_rate=1)
    else:
        y = cx.op("matmul", x, cx.weight(kernel))
        if use_bias:
            y = cx.op("add", y, cx.weight(ws[1]))
    return cx.activation(y, activation)


def _channel_first_perm(rank: int, axis: int) -> tuple[int, ...]:
    rest = [d for d in range(rank) if d not in (0, axis)]
    return (0, axis, *rest)


@converter("BatchNormalization", ignore=("momentum", "fused", "synchronized", "renorm_momentum",
                                         "renorm_clipping"))
def BatchNormalization(cx: LayerContext, inputs: Value, *, axis=-1, epsilon=1e-3, center=True,
                       scale=True, renorm=False, virtual_batch_size=None, adjustment=None):
    x = inputs
    if renorm:
        cx.unsupported_attribute("renorm", renorm, "False")
    if virtual_batch_size is not None:
        cx.unsupported_attribute("virtual_batch_size", virtual_batch_size, "None")
    axes = [cx.axis(a, x.type.rank) for a in axes_list(axis)]
    names = (["gamma"] if scale else []) + (["beta"] if center else []) + ["moving_mean",
                                                                           "moving_variance"]
    ws = cx.expect_weights(names)
    gamma = ws.pop(0) if scale else None
    beta = ws.pop(0) if center else None
    mean, var = ws
    if len(axes) == 1 and axes[0] != 0:
        c = x.shape[axes[0]]
        params = [np.ones(c, np.float32) if gamma is None else gamma.reshape(c),
                  np.zeros(c, np.float32) if beta is None else beta.reshape(c),
                  mean.reshape(c), var.reshape(c)]
        perm = _channel_first_perm(x.type.rank, axes[0])
        inv = tuple(int(i) for i in np.argsort(perm))
        y = cx.op("batch_norm", cx.transpose(x, perm), *(cx.weight(p) for p in params),
                  epsilon=float(epsilon))
        return cx.transpose(y, inv)
    # several axes: x * s + t with s, t broadcast over them
    shape = [x.shape[d] if d in axes else 1 for d in range(x.type.rank)]
    s = (np.float64(1) if gamma is None else gamma.astype(np.float64)).reshape(-1) / np.sqrt(
        var.astype(np.float64).reshape(-1) + float(epsilon))
    t = (0 if beta is None else beta.astype(np.float64).reshape(-1)) - mean.reshape(-1) * s
    return cx.op("add", cx.op("mul", x, cx.weight(s.astype(np.float32).reshape(shape))),
                 cx.weight(t.astype(np.float32).reshape(shape)))


@converter("LayerNormalization")
def LayerNormalization(cx: LayerContext, inputs: Value, *, axis=-1, epsilon=1e-3, center=True,
                       scale=True, rms_scaling=False):
    x = inputs
    axes = sorted(cx.axis(a, x.type.rank) for a in axes_list(axis))
    names = (["gamma"] if scale else []) + (["beta"] if center and not rms_scaling else [])
    ws = cx.expect_weights(names)
    shape = [x.shape[d] if d in axes else 1 for d in range(x.type.rank)]
    gamma = cx.weight(ws.pop(0).reshape(shape)) if scale else None
    beta = cx.weight(ws.pop(0).reshape(shape)) if center and not rms_scaling else None
    if rms_scaling:
        # x * rsqrt(mean(x^2) + eps) * gamma
        ms = cx.op("reduce_mean", cx.op("mul", x, x), axes=tuple(axes), keepdims=1)
        y = cx.op("div", x, cx.op("sqrt", cx.binary("add", ms, float(epsilon))))
        return y if gamma is None else cx.op("mul", y, gamma)
    return layer_norm(cx, x, axes, gamma, beta, float(epsilon))


# -- pooling -------------------------------------------------------------------------------------
def _pool_converter(op: str, nsp: int):
    def pool(cx: LayerContext, inputs: Value, *, pool_size=2, strides=None, padding="valid",
             data_format="channels_last"):
        cx.check_channels_last(data_format)
        x = inputs
        k = ntuple(pool_size, nsp, "pool_size")
        st = k if strides is None else ntuple(strides, nsp, "strides")
        pads = cx.spatial_pads(padding, x.shape[1:-1], k, st, (1,) * nsp)
        # TensorFlow's average pools divide by the number of real (unpadded) inputs
        return cx.op(op, x, kernel=k, strides=st, pads=pads, count_include_pad=0, layout="NHWC")

    return pool


for _nsp in (1, 2, 3):
    converter(f"MaxPooling{_nsp}D", f"MaxPool{_nsp}D")(_pool_converter("max_pool", _nsp))
    converter(f"AveragePooling{_nsp}D", f"AvgPool{_nsp}D")(_pool_converter("avg_pool", _nsp))


def _global_converter(op: str):
    def global_pool(cx: LayerContext, inputs: Value, mask: Value | None = None, *,
                    data_format="channels_last", keepdims=False):
        cx.check_channels_last(data_format)
        if mask is not None:
            cx.unsupported("global pooling with a mask")
        x = inputs
        axes = tuple(range(1, x.type.rank - 1))
        return cx.op(op, x, axes=axes, keepdims=int(bool(keepdims)))

    return global_pool


for _nsp in (1, 2, 3):
    converter(f"GlobalAveragePooling{_nsp}D", f"GlobalAvgPool{_nsp}D")(
        _global_converter("reduce_mean"))
    converter(f"GlobalMaxPooling{_nsp}D", f"GlobalMaxPool{_nsp}D")(_global_converter("reduce_max"))
