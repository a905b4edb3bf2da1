"""Converters for neural-network ops: convolution, normalization, pooling, embedding, padding and
resampling."""
from __future__ import annotations

import math

import numpy as np

from neo.ir import Value

from ..common import decompose
from .context import Missing, NodeContext, ntuple
from .registry import converter

_CONV_IGNORE = ("benchmark", "deterministic", "cudnn_enabled", "allow_tf32")


# -- convolution -----------------------------------------------------------------------------------
def _same_pads(cx: NodeContext, x: Value, weight: Value, stride, dilation) -> list[int]:
    """padding='same' (stride 1): total d*(k-1) per dim, the odd pixel at the end."""
    nsp = x.type.rank - 2
    if any(s != 1 for s in stride):
        cx.unsupported("padding='same' with a stride other than 1")
    total = [dilation[i] * (weight.shape[2 + i] - 1) for i in range(nsp)]
    return [t // 2 for t in total] + [t - t // 2 for t in total]


def conv_(cx: NodeContext, x: Value, weight: Value, bias: Value | None, stride, padding, dilation,
          groups: int, transposed: bool = False, output_padding=None) -> Value:
    nsp = x.type.rank - 2
    if nsp < 1:
        raise ValueError(f"convolution input must have rank >= 3, got {x.shape}")
    stride, dilation = ntuple(stride, nsp), ntuple(dilation, nsp)
    if isinstance(padding, str):
        if padding == "valid":
            pads = [0] * (2 * nsp)
        elif padding == "same":
            pads = _same_pads(cx, x, weight, stride, dilation)
        else:
            cx.unsupported_argument("padding", padding, "'valid', 'same' or numbers")
    else:
        p = ntuple(padding, nsp)
        pads = list(p) + list(p)
    x = cx.float(x)
    inputs = (x, weight) if bias is None else (x, weight, bias)
    if transposed:
        return cx.op("conv_transpose", *inputs, strides=stride, pads=tuple(pads),
                     dilations=dilation, groups=int(groups),
                     output_padding=ntuple(output_padding or 0, nsp))
    return cx.op("conv", *inputs, strides=stride, pads=tuple(pads), dilations=dilation,
                 groups=int(groups))


@converter("aten::_convolution", "aten::convolution", ignore=_CONV_IGNORE)
def _convolution(cx: NodeContext, input: Value, weight: Value, bias, stride, padding,
                 dilation, transposed, output_padding, groups) -> Value:
    return conv_(cx, input, weight, bias, stride, padding, dilation, groups, bool(transposed),
                 output_padding)


@converter("aten::_convolution_mode")
def _convolution_mode(cx: NodeContext, input: Value, weight: Value, bias, stride, padding,
                      dilation, groups) -> Value:
    return conv_(cx, input, weight, bias, stride, padding, dilation, groups)


@converter("aten::conv1d", "aten::conv2d", "aten::conv3d")
def conv2d(cx: NodeContext, input: Value, weight: Value, bias=None, stride=1, padding=0,
           dilation=1, groups=1) -> Value:
    return conv_(cx, input, weight, bias, stride, padding, dilation, groups)


@converter("aten::conv_transpose1d", "aten::conv_transpose2d", "aten::conv_transpose3d")
def conv_transpose2d(cx: NodeContext, input: Value, weight: Value, bias=None, stride=1,
                     padding=0, output_padding=0, groups=1, dilation=1) -> Value:
    return conv_(cx, input, weight, bias, stride, padding, dilation, groups, True, output_padding)


# -- normalization ---------------------------------------------------------------------------------
def _channel_param(cx: NodeContext, p: Value | None, c: int, fill: float, dtype: str) -> Value:
    return cx.const(np.full((c,), fill, dtype)) if p is None else cx.cast(p, dtype)


def batch_norm_(cx: NodeContext, x: Value, weight, bias, mean, var, eps) -> Value:
    c = x.shape[1]
    x = cx.float(x)
    return cx.op("batch_norm", x, _channel_param(cx, weight, c, 1.0, x.dtype),
                 _channel_param(cx, bias, c, 0.0, x.dtype), cx.cast(mean, x.dtype),
                 cx.cast(var, x.dtype), epsilon=float(eps))


@converter("aten::batch_norm", ignore=("momentum", "cudnn_enabled"))
def batch_norm(cx: NodeContext, input: Value, weight, bias, running_mean, running_var,
               training, eps) -> Value:
    if training or running_mean is None or running_var is None:
        cx.unsupported("batch_norm with batch statistics (training mode); call model.eval() "
                       "before tracing")
    return batch_norm_(cx, input, weight, bias, running_mean, running_var, eps)


@converter("aten::_native_batch_norm_legit_no_training", ignore=("momentum",))
def _native_batch_norm_legit_no_training(cx: NodeContext, input: Value, weight, bias,
                                         running_mean, running_var, eps):
    y = batch_norm_(cx, input, weight, bias, running_mean, running_var, eps)
    empty = cx.const(np.zeros((0,), y.dtype))
    return y, empty, empty


def layer_norm_(cx: NodeContext, x: Value, normalized_shape, weight, bias, eps) -> Value:
    k = len(normalized_shape)
    x = cx.float(x)
    if tuple(x.shape[x.type.rank - k:]) != tuple(normalized_shape):
        raise ValueError(f"layer_norm over {list(normalized_shape)} of a {list(x.shape)} tensor")
    return decompose.layer_norm(cx, x, range(x.type.rank - k, x.type.rank), weight, bias,
                                float(eps))


@converter("aten::layer_norm", ignore=("cudnn_enable",))
def layer_norm(cx: NodeContext, input: Value, normalized_shape, weight=None, bias=None,
               eps=1e-5) -> Value:
    return layer_norm_(cx, input, normalized_shape, weight, bias, eps)


@converter("aten::native_layer_norm")
def native_layer_norm(cx: NodeContext, input: Value, normalized_shape, weight, bias, eps):
    y = layer_norm_(cx, input, normalized_shape, weight, bias, eps)
    why = Missing("the mean and rstd outputs of native_layer_norm are not implemented")
    return y, why, why


def group_norm_(cx: NodeContext, x: Value, groups: int, weight, bias, eps) -> Value:
    return decompose.group_norm(cx, cx.float(x), groups, weight, bias, float(eps))


@converter("aten::group_norm", ignore=("cudnn_enabled",))
def group_norm(cx: NodeContext, input: Value, num_groups, weight=None, bias=None,
               eps=1e-5) -> Value:
    return group_norm_(cx, input, int(num_groups), weight, bias, eps)


@converter("aten::instance_norm", ignore=("momentum", "cudnn_enabled"))
def instance_norm(cx: NodeContext, input: Value, weight, bias, running_mean, running_var,
                  use_input_stats, eps) -> Value:
    if not use_input_stats:
        return batch_norm_(cx, input, weight, bias, running_mean, running_var, eps)
    return group_norm_(cx, input, input.shape[1], weight, bias, eps)


# -- pooling ---------------------------------------------------------------------------------------
def _pool_args(x: Value, kernel_size, stride, padding, dilation=1):
    nsp = x.type.rank - 2
    k = ntuple(kernel_size, nsp)
    s = k if stride is None or stride == [] or stride == () else ntuple(stride, nsp)
    p = ntuple(padding, nsp)
    return k, s, tuple(p) + tuple(p), ntuple(dilation, nsp)


@converter("aten::max_pool1d", "aten::max_pool2d", "aten::max_pool3d")
def max_pool2d(cx: NodeContext, self: Value, kernel_size, stride=(), padding=0, dilation=1,
               ceil_mode=False) -> Value:
    k, s, p, d = _pool_args(self, kernel_size, stride, padding, dilation)
    return cx.op("max_pool", self, kernel=k, strides=s, pads=p, dilations=d,
                 ceil_mode=int(bool(ceil_mode)))


@converter("aten::max_pool2d_with_indices", "aten::max_pool1d_with_indices",
           "aten::max_pool3d_with_indices")
def max_pool2d_with_indices(cx: NodeContext, self: Value, kernel_size, stride=(), padding=0,
                            dilation=1, ceil_mode=False):
    y = max_pool2d(cx, self, kernel_size, stride, padding, dilation, ceil_mode)
    return y, Missing("the indices output of max pooling (return_indices=True) is not implemented")


@converter("aten::avg_pool1d", "aten::avg_pool2d", "aten::avg_pool3d")
def avg_pool2d(cx: NodeContext, self: Value, kernel_size, stride=(), padding=0, ceil_mode=False,
               count_include_pad=True) -> Value:
    k, s, p, d = _pool_args(self, kernel_size, stride, padding)
    return cx.op("avg_pool", cx.float(self), kernel=k, strides=s, pads=p, dilations=d,
                 ceil_mode=int(bool(ceil_mode)), count_include_pad=int(bool(count_include_pad)))


def _adaptive_sizes(x: Value, output_size) -> tuple[tuple[int, ...], tuple[int, ...]]:
    nsp = x.type.rank - 2
    out = ntuple(output_size, nsp) if not isinstance(output_size, (list, tuple)) else tuple(
        x.shape[2 + i] if o is None else int(o) for i, o in enumerate(output_size))
    if len(out) != nsp:
        raise ValueError(f"output_size {output_size} does not match the {nsp} spatial dims")
    return tuple(x.shape[2:]), out


def averaging_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Rows average the windows [floor(i*in/out), ceil((i+1)*in/out)) of adaptive pooling."""
    m = np.zeros((n_out, n_in), np.float64)
    for i in range(n_out):
        a = (i * n_in) // n_out
        b = -(-((i + 1) * n_in) // n_out)
        m[i, a:b] = 1.0 / (b - a)
    return m


@converter("aten::adaptive_avg_pool1d", "aten::adaptive_avg_pool2d", "aten::adaptive_avg_pool3d",
           "aten::_adaptive_avg_pool2d")
def adaptive_avg_pool2d(cx: NodeContext, self: Value, output_size) -> Value:
    x = cx.float(self)
    ins, outs = _adaptive_sizes(x, output_size)
    nsp = len(ins)
    if ins == outs:
        return x
    if all(o == 1 for o in outs):
        return cx.op("reduce_mean", x, axes=tuple(range(2, 2 + nsp)), keepdims=1)
    if all(i % o == 0 for i, o in zip(ins, outs)):
        k = tuple(i // o for i, o in zip(ins, outs))
        return cx.op("avg_pool", x, kernel=k, strides=k, pads=(0,) * (2 * nsp),
                     dilations=(1,) * nsp)
    # Adaptive average pooling is separable: one averaging matmul per spatial axis.
    rank = x.type.rank
    for i, (n_in, n_out) in enumerate(zip(ins, outs)):
        if n_in == n_out:
            continue
        axis = 2 + i
        perm = [a for a in range(rank) if a != axis] + [axis]
        m = cx.const(averaging_matrix(n_in, n_out).T.astype(x.dtype))
        y = cx.op("matmul", cx.transpose(x, perm), m)
        x = cx.transpose(y, [perm.index(a) for a in range(rank)])
    return x


@converter("aten::adaptive_max_pool1d", "aten::adaptive_max_pool2d", "aten::adaptive_max_pool3d")
def adaptive_max_pool2d(cx: NodeContext, self: Value, output_size):
    ins, outs = _adaptive_sizes(self, output_size)
    nsp = len(ins)
    if all(o == 1 for o in outs):
        y = cx.op("reduce_max", self, axes=tuple(range(2, 2 + nsp)), keepdims=1)
    elif all(i % o == 0 for i, o in zip(ins, outs)):
        k = tuple(i // o for i, o in zip(ins, outs))
        y = cx.op("max_pool", self, kernel=k, strides=k, pads=(0,) * (2 * nsp),
                  dilations=(1,) * nsp)
    else:
        cx.unsupported(f"adaptive max pooling from {list(ins)} to {list(outs)} (not divisible)")
    return y, Missing("the indices output of adaptive max pooling is not implemented")


# -- embedding -------------------------------------------------------------------------------------
@converter("aten::embedding", ignore=("padding_idx", "scale_grad_by_freq", "sparse"))
def embedding(cx: NodeContext, weight: Value, indices: Value) -> Value:
    # padding_idx and scale_grad_by_freq only change gradients
    if indices.dtype not in ("int32", "int64"):
        cx.unsupported(f"embedding indices of dtype {indices.dtype}; they must be int32 or int64")
    return cx.op("gather", weight, indices, axis=0)


# -- padding ---------------------------------------------------------------------------------------
_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge",
              "circular": "wrap"}


def pad_(cx: NodeContext, x: Value, pad, mode: str, value) -> Value:
    pad = [int(p) for p in pad]
    if len(pad) % 2 or len(pad) // 2 > x.type.rank:
        raise ValueError(f"pad {pad} does not fit a rank-{x.type.rank} tensor")
    rank = x.type.rank
    begins, ends = [0] * rank, [0] * rank
    for i in range(len(pad) // 2):  # pairs from the last dim backwards
        begins[rank - 1 - i] = pad[2 * i]
        ends[rank - 1 - i] = pad[2 * i + 1]
    if mode not in _PAD_MODES:
        cx.unsupported_argument("mode", mode, ", ".join(_PAD_MODES))
    if not any(begins) and not any(ends):
        return x
    return cx.op("pad", x, pads=tuple(begins + ends), mode=_PAD_MODES[mode],
                 value=float(value or 0.0))


@converter("aten::pad")
def pad(cx: NodeContext, self: Value, pad, mode="constant", value=None) -> Value:
    return pad_(cx, self, pad, mode, value)


@converter("aten::constant_pad_nd")
def constant_pad_nd(cx: NodeContext, self: Value, pad, value=0) -> Value:
    return pad_(cx, self, pad, "constant", value)


@converter("aten::reflection_pad1d", "aten::reflection_pad2d", "aten::reflection_pad3d")
def reflection_pad2d(cx: NodeContext, self: Value, padding) -> Value:
    return pad_(cx, self, padding, "reflect", 0)


@converter("aten::replication_pad1d", "aten::replication_pad2d", "aten::replication_pad3d")
def replication_pad2d(cx: NodeContext, self: Value, padding) -> Value:
    return pad_(cx, self, padding, "replicate", 0)


# -- resampling ------------------------------------------------------------------------------------
def _resize(cx: NodeContext, x: Value, output_size, scales, mode: str, coord: str) -> Value:
    nsp = x.type.rank - 2
    if output_size:
        out = tuple(int(o) for o in output_size)
        sc = tuple(o / i for o, i in zip(out, x.shape[2:]))
        if scales and all(s for s in scales):
            sc = tuple(float(s) for s in scales)
    elif scales:
        sc = tuple(float(s) for s in ntuple_float(scales, nsp))
        out = tuple(math.floor(i * s) for i, s in zip(x.shape[2:], sc))
    else:
        raise ValueError("upsampling needs output_size or scale_factors")
    size = tuple(x.shape[:2]) + out
    return cx.op("resize", x, size=size, scales=(1.0, 1.0) + sc, mode=mode, coord=coord,
                 nearest_mode="floor")


def ntuple_float(v, n: int) -> tuple[float, ...]:
    if isinstance(v, (list, tuple)):
        return tuple(float(s) for s in v) if len(v) == n else (float(v[0]),) * n
    return (float(v),) * n


@converter("aten::upsample_nearest1d", "aten::upsample_nearest2d", "aten::upsample_nearest3d")
def upsample_nearest2d(cx: NodeContext, self: Value = None, output_size=None, scales_h=None,
                       scales_w=None, scales_d=None, scales=None, input: Value = None,
                       scale_factors=None) -> Value:
    x = self if self is not None else input
    given = scale_factors or [s for s in (scales_d, scales_h, scales_w, scales) if s is not None]
    return _resize(cx, x, output_size, given or None, "nearest", "asymmetric")


@converter("aten::upsample_bilinear2d", "aten::upsample_linear1d", "aten::upsample_trilinear3d")
def upsample_bilinear2d(cx: NodeContext, self: Value = None, output_size=None,
                        align_corners=False, scales_h=None, scales_w=None, scales_d=None,
                        scales=None, input: Value = None, scale_factors=None) -> Value:
    x = self if self is not None else input
    given = scale_factors or [s for s in (scales_d, scales_h, scales_w, scales) if s is not None]
    coord = "align_corners" if align_corners else "pytorch_half_pixel"
    return _resize(cx, x, output_size, given or None, "linear", coord)


@converter("aten::pixel_shuffle")
def pixel_shuffle(cx: NodeContext, self: Value, upscale_factor) -> Value:
    r = int(upscale_factor)
    n, c, h, w = self.shape
    y = cx.reshape(self, (n, c // (r * r), r, r, h, w))
    y = cx.transpose(y, (0, 1, 4, 2, 5, 3))
    return cx.reshape(y, (n, c // (r * r), h * r, w * r))


@converter("aten::channel_shuffle", "aten::native_channel_shuffle")
def channel_shuffle(cx: NodeContext, self: Value, groups) -> Value:
    g = int(groups)
    n, c = self.shape[:2]
    rest = tuple(self.shape[2:])
    y = cx.reshape(self, (n, g, c // g) + rest)
    y = cx.transpose(y, (0, 2, 1) + tuple(range(3, 3 + len(rest))))
    return cx.reshape(y, self.shape)
