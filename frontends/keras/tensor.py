"""Merge, shape, padding and preprocessing layers, Embedding, and the inference no-ops."""
from __future__ import annotations

import math
from functools import reduce

import numpy as np

from neo.ir import Value

from .context import LayerContext, axes_list, ntuple
from .registry import converter


# -- merge layers ----------------------------------------------------------------------------------
def _same_dtype(cx: LayerContext, xs) -> list[Value]:
    return [cx.cast(x, xs[0].dtype) for x in xs]


def _merge(op: str):
    def merge(cx: LayerContext, *inputs: Value):
        xs = _same_dtype(cx, inputs)
        if len(xs) < 2 and op != "add":
            cx.invalid("inputs", len(xs), "at least 2 tensors")
        return reduce(lambda a, b: cx.op(op, a, b), xs)

    return merge


Add = converter("Add")(_merge("add"))
Multiply = converter("Multiply")(_merge("mul"))
Maximum = converter("Maximum")(_merge("maximum"))
Minimum = converter("Minimum")(_merge("minimum"))


@converter("Subtract")
def Subtract(cx: LayerContext, *inputs: Value):
    if len(inputs) != 2:
        cx.invalid("inputs", len(inputs), "exactly 2 tensors")
    a, b = _same_dtype(cx, inputs)
    return cx.op("sub", a, b)


@converter("Average")
def Average(cx: LayerContext, *inputs: Value):
    xs = _same_dtype(cx, inputs)
    total = reduce(lambda a, b: cx.op("add", a, b), xs)
    return cx.binary("div", total, float(len(xs)))


@converter("Concatenate")
def Concatenate(cx: LayerContext, *inputs: Value, axis=-1):
    xs = _same_dtype(cx, inputs)
    return cx.concat(xs, cx.axis(axis, xs[0].type.rank))


# -- padding, cropping, resampling -------------------------------------------------------------------
def _pairs(v, nsp: int, what: str) -> list[tuple[int, int]]:
    """Keras padding/cropping: an int, a tuple per dim, or a (begin, end) pair per dim."""
    if isinstance(v, (list, tuple)):
        if len(v) == nsp and all(isinstance(p, (list, tuple)) for p in v):
            return [(int(p[0]), int(p[1])) for p in v]
        if nsp == 1 and len(v) == 2 and all(isinstance(p, int) for p in v):
            return [(int(v[0]), int(v[1]))]
        vals = ntuple(v, nsp, what)
        return [(p, p) for p in vals]
    return [(int(v), int(v))] * nsp


def _padding_converter(nsp: int):
    def zero_padding(cx: LayerContext, inputs: Value, *, padding=1,
                     data_format="channels_last"):
        cx.check_channels_last(data_format)
        x = inputs
        pairs = _pairs(padding, nsp, "padding")
        begins = [0] + [b for b, _ in pairs] + [0]
        ends = [0] + [e for _, e in pairs] + [0]
        return cx.op("pad", x, pads=tuple(begins + ends), mode="constant", value=0.0)

    return zero_padding


def _cropping_converter(nsp: int):
    def cropping(cx: LayerContext, inputs: Value, *, cropping=1, data_format="channels_last"):
        cx.check_channels_last(data_format)
        x = inputs
        for i, (b, e) in enumerate(_pairs(cropping, nsp, "cropping")):
            n = x.shape[1 + i]
            if b + e >= n:
                cx.invalid("cropping", cropping, f"less than the size {n} of dim {1 + i}")
            x = cx.slice(x, 1 + i, b, n - e)
        return x

    return cropping


for _nsp in (1, 2, 3):
    converter(f"ZeroPadding{_nsp}D")(_padding_converter(_nsp))
    converter(f"Cropping{_nsp}D")(_cropping_converter(_nsp))


def _resize(cx: LayerContext, x: Value, factors, interpolation: str) -> Value:
    """Up-sample the spatial dims (1 .. rank-2) by integer factors."""
    scales = (1.0, *(float(f) for f in factors), 1.0)
    size = tuple(int(d * s) for d, s in zip(x.shape, scales))
    if interpolation == "nearest":  # each element repeated: floor(i / s)
        return cx.op("resize", x, size=size, scales=scales, mode="nearest", coord="asymmetric",
                     nearest_mode="floor")
    if interpolation == "bilinear":  # tf.image.resize: half-pixel centers
        return cx.op("resize", x, size=size, scales=scales, mode="linear", coord="half_pixel")
    cx.unsupported_attribute("interpolation", interpolation, "nearest, bilinear")


@converter("UpSampling1D")
def UpSampling1D(cx: LayerContext, inputs: Value, *, size=2):
    return _resize(cx, inputs, ntuple(size, 1, "size"), "nearest")


@converter("UpSampling2D")
def UpSampling2D(cx: LayerContext, inputs: Value, *, size=2, data_format="channels_last",
                 interpolation="nearest"):
    cx.check_channels_last(data_format)
    return _resize(cx, inputs, ntuple(size, 2, "size"), interpolation)


# -- shapes --------------------------------------------------------------------------------------
@converter("Reshape")
def Reshape(cx: LayerContext, inputs: Value, *, target_shape):
    x = inputs
    dims = [int(d) for d in target_shape]
    rest = math.prod(x.shape[1:])
    if dims.count(-1) > 1:
        cx.invalid("target_shape", target_shape, "at most one -1")
    if -1 in dims:
        known = math.prod(d for d in dims if d != -1)
        dims[dims.index(-1)] = rest // known if known else 0
    if math.prod(dims) != rest:
        cx.invalid("target_shape", target_shape,
                   f"a shape of {rest} elements (the input is {list(x.shape[1:])})")
    return cx.reshape(x, (x.shape[0], *dims))


@converter("Flatten")
def Flatten(cx: LayerContext, inputs: Value, *, data_format="channels_last"):
    cx.check_channels_last(data_format)
    x = inputs
    return cx.reshape(x, (x.shape[0], math.prod(x.shape[1:])))


@converter("Permute")
def Permute(cx: LayerContext, inputs: Value, *, dims):
    x = inputs
    perm = [int(d) for d in dims]
    if sorted(perm) != list(range(1, x.type.rank)):
        cx.invalid("dims", dims, f"a permutation of 1..{x.type.rank - 1}")
    return cx.transpose(x, (0, *perm))


@converter("RepeatVector")
def RepeatVector(cx: LayerContext, inputs: Value, *, n):
    x = inputs
    b, f = x.shape
    return cx.op("expand", cx.reshape(x, (b, 1, f)), shape=(b, int(n), f))


# -- no-ops at inference ---------------------------------------------------------------------------
@converter("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
           "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Identity",
           "StochasticDepth", ignore=("rate", "noise_shape", "stddev", "l1", "l2", "seed"))
def Dropout(cx: LayerContext, inputs: Value):
    return inputs


# -- preprocessing ---------------------------------------------------------------------------------
def _broadcast_param(cx: LayerContext, x: Value, v, axes: list[int], what: str) -> Value:
    """A per-axis parameter (scalar, or one value per element of `axes`) shaped to broadcast."""
    arr = np.asarray(v, dtype=np.float32)
    if arr.size == 1:
        return cx.const(arr.reshape(()))
    shape = [x.shape[d] if d in axes else 1 for d in range(x.type.rank)]
    if arr.size != math.prod(shape):
        cx.invalid(what, list(arr.shape), f"{math.prod(shape)} values (axes {axes})")
    return cx.const(arr.reshape(shape))


@converter("Rescaling")
def Rescaling(cx: LayerContext, inputs: Value, *, scale, offset=0.0):
    x = cx.cast(inputs, "float32")
    axes = [x.type.rank - 1]
    y = cx.op("mul", x, _broadcast_param(cx, x, scale, axes, "scale"))
    return cx.op("add", y, _broadcast_param(cx, x, offset, axes, "offset"))


@converter("Normalization")
def Normalization(cx: LayerContext, inputs: Value, *, axis=-1, mean=None, variance=None,
                  invert=False):
    # (x - mean) / max(sqrt(variance), epsilon); invert: x * that + mean
    x = cx.cast(inputs, "float32")
    axes = [] if axis is None else [cx.axis(a, x.type.rank) for a in axes_list(axis)]
    if mean is None or variance is None:
        ws = cx.weights
        if len(ws) < 2:
            cx.required("mean")  # neither in the config nor adapted
        mean, variance = ws[0], ws[1]
    m = _broadcast_param(cx, x, mean, axes, "mean")
    std = np.maximum(np.sqrt(np.asarray(variance, dtype=np.float32)), np.float32(1e-7))
    s = _broadcast_param(cx, x, std, axes, "variance")
    if invert:
        return cx.op("add", cx.op("mul", x, s), m)
    return cx.op("div", cx.op("sub", x, m), s)


@converter("LayerScale")
def LayerScale(cx: LayerContext, inputs: Value, *, init_values=None, projection_dim=None):
    # keras.applications.convnext: x * gamma (per channel)
    (gamma,) = cx.expect_weights(["gamma"])
    x = inputs
    if gamma.size != x.shape[-1]:
        cx.invalid("gamma", list(gamma.shape), f"{x.shape[-1]} values")
    return cx.op("mul", x, cx.weight(gamma.reshape(-1)))


@converter("Embedding", ignore=("input_length", "sparse"))
def Embedding(cx: LayerContext, inputs: Value, *, input_dim, output_dim, mask_zero=False,
              quantization_config=None):
    if mask_zero:
        cx.unsupported_attribute("mask_zero", mask_zero, "False (masked sequences)")
    if quantization_config is not None:
        cx.unsupported_attribute("quantization_config", quantization_config, "None")
    (table,) = cx.expect_weights(["embeddings"])
    if tuple(table.shape) != (int(input_dim), int(output_dim)):
        cx.invalid("embeddings", list(table.shape), f"shape {[input_dim, output_dim]}")
    ids = inputs
    if ids.dtype not in ("int32", "int64"):
        ids = cx.cast(ids, "int32")  # Keras casts float ids to int
    return cx.op("gather", cx.weight(table), ids, axis=0)
