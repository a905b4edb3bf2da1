"""Converters for constants, shapes and data movement: Const, Identity, Shape, Reshape,
StridedSlice, ConcatV2, Pack, Split, Pad, Tile, GatherV2, Resize... Every shape is static, so
shape-computing subgraphs (Shape -> StridedSlice -> Pack -> Reshape) fold to constants."""
from __future__ import annotations

import math

import numpy as np

from neo import ir
from neo.ir import Value
from neo.ir.ops_tensor import slice_len
from neo.ir.types import FLOAT_DTYPES

from .context import TFContext
from .registry import converter


# -- constants, identities, shapes ------------------------------------------------------------
@converter("Const")
def Const(cx: TFContext, *, value, dtype) -> Value:
    arr = np.asarray(value)
    if arr.dtype.kind in "OSU":
        cx.unsupported("string constants are not implemented")
    try:
        ir.dtype_name(arr.dtype)
    except TypeError:
        cx.unsupported_attribute("dtype", dtype, "a numeric or bool type")
    return cx.const(arr)


@converter("Identity", "StopGradient", "Snapshot", "PlaceholderWithDefault")
def Identity(cx: TFContext, input: Value, *, shape=None) -> list:
    del shape  # PlaceholderWithDefault: the default's shape (a frozen model feeds nothing)
    return [input]  # (a list: the input may be a tensor list, see control.py)


@converter("PreventGradient", "CheckNumerics")
def PreventGradient(cx: TFContext, input: Value, *, message="") -> Value:
    del message
    return input


@converter("EnsureShape")
def EnsureShape(cx: TFContext, input: Value, *, shape) -> Value:
    if shape is not None and (len(shape) != input.type.rank or any(
            d is not None and d != s for d, s in zip(shape, input.shape))):
        raise ValueError(f"EnsureShape expects {shape}, the tensor is {input.shape}")
    return input


@converter("IdentityN")
def IdentityN(cx: TFContext, *input: Value) -> list[Value]:
    return list(input)


@converter("NoOp")
def NoOp(cx: TFContext) -> list[Value]:
    return []


@converter("Placeholder")
def Placeholder(cx: TFContext, *, dtype, shape=None) -> Value:
    cx.unsupported("a placeholder that is not one of the model's inputs")


@converter("Shape")
def Shape(cx: TFContext, input: Value, *, out_type) -> Value:
    return cx.const(np.array(input.shape, ir.np_dtype(out_type)))


@converter("ShapeN")
def ShapeN(cx: TFContext, *input: Value, out_type) -> list[Value]:
    return [cx.const(np.array(v.shape, ir.np_dtype(out_type))) for v in input]


@converter("Size")
def Size(cx: TFContext, input: Value, *, out_type) -> Value:
    return cx.const(np.array(math.prod(input.shape), ir.np_dtype(out_type)))


@converter("Rank")
def Rank(cx: TFContext, input: Value) -> Value:
    return cx.const(np.array(input.type.rank, np.int32))


@converter("Fill")
def Fill(cx: TFContext, dims: Value, value: Value) -> Value:
    shape = tuple(cx.ints(dims, "dims"))
    return cx.op("expand", cx.reshape(value, ()), shape=shape)


@converter("ZerosLike")
def ZerosLike(cx: TFContext, x: Value) -> Value:
    return cx.const(np.zeros(x.shape, ir.np_dtype(x.dtype)))


@converter("OnesLike")
def OnesLike(cx: TFContext, x: Value) -> Value:
    return cx.const(np.ones(x.shape, ir.np_dtype(x.dtype)))


@converter("Range")
def Range(cx: TFContext, start: Value, limit: Value, delta: Value) -> Value:
    s, lim, d = (np.asarray(cx.constant(v, name)).reshape(()) for v, name in
                 ((start, "start"), (limit, "limit"), (delta, "delta")))
    n = max(int(np.ceil((lim - s) / d)), 0)
    return cx.const((s + d * np.arange(n)).astype(start.dtype if isinstance(start, Value)
                                                  else s.dtype))


@converter("BroadcastTo")
def BroadcastTo(cx: TFContext, input: Value, shape: Value) -> Value:
    target = tuple(cx.ints(shape, "shape"))
    if input.shape == target:
        return input
    return cx.op("expand", input, shape=target)


# -- reshaping --------------------------------------------------------------------------------
@converter("Reshape")
def Reshape(cx: TFContext, tensor: Value, shape: Value) -> Value:
    dims = cx.ints(shape, "shape")
    if dims.count(-1) > 1:
        cx.invalid("shape", dims, "at most one -1")
    if -1 in dims:
        known = math.prod(d for d in dims if d != -1)
        if known == 0 or tensor.type.size % known:
            raise ValueError(f"cannot reshape {tensor.shape} to {dims}")
        dims[dims.index(-1)] = tensor.type.size // known
    return cx.reshape(tensor, dims)


@converter("Squeeze")
def Squeeze(cx: TFContext, input: Value, *, squeeze_dims) -> Value:
    rank = input.type.rank
    axes = cx.axes(squeeze_dims or (), rank, "squeeze_dims") if squeeze_dims else [
        i for i, d in enumerate(input.shape) if d == 1]
    if any(input.shape[a] != 1 for a in axes):
        raise ValueError(f"cannot squeeze dims {axes} of {input.shape}")
    return cx.reshape(input, [d for i, d in enumerate(input.shape) if i not in axes])


@converter("ExpandDims")
def ExpandDims(cx: TFContext, input: Value, dim: Value) -> Value:
    axis = cx.axis(dim, input.type.rank + 1, "dim")
    shape = list(input.shape)
    shape.insert(axis, 1)
    return cx.reshape(input, shape)


@converter("Transpose", "ConjugateTranspose")
def Transpose(cx: TFContext, x: Value, perm: Value) -> Value:
    p = cx.ints(perm, "perm")
    if sorted(p) != list(range(x.type.rank)):
        cx.invalid("perm", p, f"a permutation of {x.type.rank} axes")
    return cx.transpose(x, p)


# -- joining and splitting --------------------------------------------------------------------
@converter("ConcatV2")
def ConcatV2(cx: TFContext, *values: Value, N) -> Value:
    *parts, axis = values
    return cx.concat(parts, cx.axis(axis, parts[0].type.rank))


@converter("Concat")
def Concat(cx: TFContext, concat_dim: Value, *values: Value, N) -> Value:
    return cx.concat(values, cx.axis(concat_dim, values[0].type.rank))


@converter("Pack")
def Pack(cx: TFContext, *values: Value, axis, N) -> Value:
    ax = cx.axis(int(axis), values[0].type.rank + 1)
    parts = []
    for v in values:
        shape = list(v.shape)
        shape.insert(ax, 1)
        parts.append(cx.reshape(v, shape))
    return cx.concat(parts, ax)


@converter("Unpack")
def Unpack(cx: TFContext, value: Value, *, num, axis) -> list[Value]:
    ax = cx.axis(int(axis), value.type.rank)
    shape = [d for i, d in enumerate(value.shape) if i != ax]
    return [cx.reshape(cx.slice(value, ax, i, i + 1), shape) for i in range(value.shape[ax])]


def _split(cx: TFContext, x: Value, ax: int, sizes: list[int]) -> list[Value]:
    out, start = [], 0
    for s in sizes:
        out.append(cx.slice(x, ax, start, start + s))
        start += s
    return out


@converter("Split")
def Split(cx: TFContext, split_dim: Value, value: Value, *, num_split) -> list[Value]:
    ax = cx.axis(split_dim, value.type.rank, "split_dim")
    n = value.shape[ax]
    if n % num_split:
        raise ValueError(f"cannot split a dimension of {n} into {num_split} equal parts")
    return _split(cx, value, ax, [n // num_split] * num_split)


@converter("SplitV")
def SplitV(cx: TFContext, value: Value, size_splits: Value, split_dim: Value, *,
           num_split) -> list[Value]:
    ax = cx.axis(split_dim, value.type.rank, "split_dim")
    sizes = cx.ints(size_splits, "size_splits")
    if sizes.count(-1) == 1:
        sizes[sizes.index(-1)] = value.shape[ax] - (sum(sizes) + 1)
    if len(sizes) != num_split or sum(sizes) != value.shape[ax] or min(sizes) < 0:
        raise ValueError(f"size_splits {sizes} do not split a dimension of {value.shape[ax]}")
    return _split(cx, value, ax, sizes)


# -- slicing ----------------------------------------------------------------------------------
def _full_slice(cx: TFContext, x: Value, starts, ends, steps) -> Value:
    if (list(starts) == [0] * x.type.rank and list(ends) == list(x.shape)
            and list(steps) == [1] * x.type.rank):
        return x
    return cx.op("slice", x, starts=tuple(starts), ends=tuple(ends), steps=tuple(steps))


@converter("Slice")
def Slice(cx: TFContext, input: Value, begin: Value, size: Value) -> Value:
    b, s = cx.ints(begin, "begin"), cx.ints(size, "size")
    rank = input.type.rank
    if len(b) != rank or len(s) != rank:
        raise ValueError(f"Slice of a rank-{rank} tensor with begin {b} and size {s}")
    ends = [input.shape[i] if s[i] == -1 else b[i] + s[i] for i in range(rank)]
    if any(not 0 <= b[i] <= ends[i] <= input.shape[i] for i in range(rank)):
        raise ValueError(f"Slice begin {b} size {s} is outside {input.shape}")
    return _full_slice(cx, input, b, ends, [1] * rank)


def _bit(mask: int, i: int) -> bool:
    return bool((mask >> i) & 1)


@converter("StridedSlice")
def StridedSlice(cx: TFContext, input: Value, begin: Value, end: Value, strides: Value, *,
                 begin_mask, end_mask, ellipsis_mask, new_axis_mask,
                 shrink_axis_mask) -> Value:
    """numpy-style indexing: `x[b0:e0:s0, ..., tf.newaxis, i]`, with the masks saying which
    entries are full ranges (begin/end), the ellipsis, new axes and single indices (shrink)."""
    b, e, s = cx.ints(begin, "begin"), cx.ints(end, "end"), cx.ints(strides, "strides")
    if not len(b) == len(e) == len(s):
        raise ValueError(f"StridedSlice begin {b}, end {e} and strides {s} differ in length")
    if int(ellipsis_mask).bit_count() > 1:
        cx.invalid("ellipsis_mask", ellipsis_mask, "at most one ellipsis")
    rank = input.type.rank
    sparse = len(b)
    # entries consuming an input dim (not new axes, not the ellipsis)
    consuming = sum(1 for i in range(sparse)
                    if not _bit(new_axis_mask, i) and not _bit(ellipsis_mask, i))
    starts, ends, steps = [0] * rank, list(input.shape), [1] * rank
    out_shape: list[int] = []
    dim = 0
    entries = list(range(sparse))
    if not ellipsis_mask:  # an implicit ellipsis at the end
        entries.append(-1)
    for i in entries:
        if i == -1 or _bit(ellipsis_mask, i):
            n_full = rank - consuming
            for _ in range(max(n_full, 0)):
                out_shape.append(input.shape[dim])
                dim += 1
            continue
        if _bit(new_axis_mask, i):
            out_shape.append(1)
            continue
        if dim >= rank:
            raise ValueError(f"StridedSlice indexes {consuming} dims of a rank-{rank} tensor")
        n = input.shape[dim]
        st = s[i]
        if st == 0:
            cx.invalid("strides", s, "non-zero strides")
        if _bit(shrink_axis_mask, i):
            idx = b[i] + n if b[i] < 0 else b[i]
            if not 0 <= idx < n:
                raise ValueError(f"StridedSlice index {b[i]} is outside a dimension of {n}")
            starts[dim], ends[dim], steps[dim] = idx, idx + 1, 1
            dim += 1
            continue
        lo, hi = (0, n) if st > 0 else (-1, n - 1)
        if _bit(begin_mask, i):
            start = lo if st > 0 else hi
        else:
            start = min(max(b[i] + n if b[i] < 0 else b[i], lo), hi)
        if _bit(end_mask, i):
            stop = hi if st > 0 else lo
        else:
            stop = min(max(e[i] + n if e[i] < 0 else e[i], lo), hi)
        length = slice_len(start, stop, st)
        if length == 0:
            cx.unsupported("a StridedSlice with an empty result")
        starts[dim], ends[dim], steps[dim] = start, stop, st
        out_shape.append(length)
        dim += 1
    y = _full_slice(cx, input, starts, ends, steps)
    return cx.reshape(y, out_shape)


@converter("ReverseV2")
def ReverseV2(cx: TFContext, tensor: Value, axis: Value) -> Value:
    rank = tensor.type.rank
    axes = cx.axes(axis, rank)
    starts = [tensor.shape[i] - 1 if i in axes else 0 for i in range(rank)]
    ends = [-1 if i in axes else tensor.shape[i] for i in range(rank)]
    steps = [-1 if i in axes else 1 for i in range(rank)]
    return _full_slice(cx, tensor, starts, ends, steps)


# -- padding and tiling -----------------------------------------------------------------------
def _paddings(cx: TFContext, x: Value, paddings: Value) -> tuple[int, ...]:
    p = np.asarray(cx.constant(paddings, "paddings")).astype(np.int64)
    if p.shape != (x.type.rank, 2):
        raise ValueError(f"paddings of shape {p.shape} for a rank-{x.type.rank} tensor")
    return tuple(int(v) for v in p[:, 0]) + tuple(int(v) for v in p[:, 1])


@converter("Pad")
def Pad(cx: TFContext, input: Value, paddings: Value) -> Value:
    pads = _paddings(cx, input, paddings)
    if not any(pads):
        return input
    return cx.op("pad", input, pads=pads, mode="constant", value=0.0)


@converter("PadV2")
def PadV2(cx: TFContext, input: Value, paddings: Value, constant_values: Value) -> Value:
    pads = _paddings(cx, input, paddings)
    if not any(pads):
        return input
    value = np.asarray(cx.constant(constant_values, "constant_values")).reshape(())
    v = float(value) if input.dtype in FLOAT_DTYPES else int(value)
    return cx.op("pad", input, pads=pads, mode="constant", value=v)


@converter("MirrorPad")
def MirrorPad(cx: TFContext, input: Value, paddings: Value, *, mode) -> Value:
    pads = _paddings(cx, input, paddings)
    if mode == "REFLECT":
        return cx.op("pad", input, pads=pads, mode="reflect") if any(pads) else input
    if mode != "SYMMETRIC":
        cx.unsupported_attribute("mode", mode, "REFLECT, SYMMETRIC")
    # SYMMETRIC repeats the edge: the mirrored slices, concatenated axis by axis
    rank = input.type.rank
    y = input
    for ax in range(rank):
        before, after = pads[ax], pads[rank + ax]
        n = y.shape[ax]
        if before > n or after > n:
            raise ValueError(f"MirrorPad SYMMETRIC pads {before}, {after} exceed dimension {n}")
        parts = []
        if before:
            parts.append(cx.slice(y, ax, before - 1, -1, -1))
        parts.append(y)
        if after:
            parts.append(cx.slice(y, ax, n - 1, n - after - 1, -1))
        y = cx.concat(parts, ax)
    return y


@converter("Tile")
def Tile(cx: TFContext, input: Value, multiples: Value) -> Value:
    m = cx.ints(multiples, "multiples")
    if len(m) != input.type.rank:
        raise ValueError(f"Tile multiples {m} for a rank-{input.type.rank} tensor")
    if all(k == 1 for k in m):
        return input
    # [d0, d1] -> [1, d0, 1, d1] -> expand to [m0, d0, m1, d1] -> [m0*d0, m1*d1]
    inter = [v for d in input.shape for v in (1, d)]
    full = [v for k, d in zip(m, input.shape) for v in (k, d)]
    y = cx.op("expand", cx.reshape(input, inter), shape=tuple(full))
    return cx.reshape(y, [k * d for k, d in zip(m, input.shape)])


# -- gathering --------------------------------------------------------------------------------
@converter("GatherV2")
def GatherV2(cx: TFContext, params: Value, indices: Value, axis: Value, *,
             batch_dims) -> Value:
    if batch_dims:
        cx.unsupported_attribute("batch_dims", batch_dims, "0")
    return cx.op("gather", params, indices, axis=cx.axis(axis, params.type.rank))


@converter("Gather")
def Gather(cx: TFContext, params: Value, indices: Value, *, validate_indices=True) -> Value:
    del validate_indices
    return cx.op("gather", params, indices, axis=0)


@converter("GatherNd")
def GatherNd(cx: TFContext, params: Value, indices: Value) -> Value:
    return cx.op("gather_nd", params, indices, batch_dims=0)


@converter("OneHot")
def OneHot(cx: TFContext, indices: Value, depth: Value, on_value: Value, off_value: Value, *,
           axis) -> Value:
    n = cx.ints(depth, "depth")[0]
    rank = indices.type.rank + 1
    ax = rank - 1 if axis == -1 else cx.axis(int(axis), rank)
    shape = [1] * rank
    shape[ax] = n
    iota = cx.const(np.arange(n, dtype=ir.np_dtype(indices.dtype)).reshape(shape))
    idx = list(indices.shape)
    idx.insert(ax, 1)
    hit = cx.op("equal", cx.reshape(indices, idx), iota)
    return cx.op("where", hit, cx.reshape(on_value, ()), cx.reshape(off_value, ()))


@converter("MatrixBandPart")
def MatrixBandPart(cx: TFContext, input: Value, num_lower: Value, num_upper: Value) -> Value:
    lower, upper = cx.ints(num_lower, "num_lower")[0], cx.ints(num_upper, "num_upper")[0]
    rows, cols = input.shape[-2:]
    i = np.arange(rows)[:, None]
    j = np.arange(cols)[None, :]
    keep = ((lower < 0) | (i - j <= lower)) & ((upper < 0) | (j - i <= upper))
    if keep.all():
        return input
    return cx.op("where", cx.const(keep), input, cx.scalar(0, input.dtype))


# -- resizing ---------------------------------------------------------------------------------
def _resize(cx: TFContext, images: Value, size: Value, mode: str, align_corners: bool,
            half_pixel_centers: bool) -> Value:
    if align_corners and half_pixel_centers:
        cx.invalid("half_pixel_centers", True, "false when align_corners is true")
    if images.type.rank != 4:
        raise ValueError(f"resize needs [batch, height, width, channels], got {images.shape}")
    oh, ow = cx.ints(size, "size")
    n, h, w, c = images.shape
    if (oh, ow) == (h, w):
        return images
    if align_corners:
        coord = "align_corners"
    elif half_pixel_centers:
        coord = "half_pixel"
    else:
        coord = "asymmetric"
    # nearest: TensorFlow rounds half away from zero (align_corners), floors (x + 0.5) at half
    # pixel centers, and floors otherwise
    nearest = "floor" if coord == "asymmetric" else "round_prefer_ceil"
    return cx.op("resize", images, size=(n, oh, ow, c), scales=(1.0, oh / h, ow / w, 1.0),
                 mode=mode, coord=coord, nearest_mode=nearest)


@converter("ResizeBilinear")
def ResizeBilinear(cx: TFContext, images: Value, size: Value, *, align_corners,
                   half_pixel_centers) -> Value:
    if images.dtype not in FLOAT_DTYPES:
        images = cx.cast(images, "float32")  # TensorFlow's bilinear resize returns float32
    return _resize(cx, images, size, "linear", align_corners, half_pixel_centers)


@converter("ResizeNearestNeighbor")
def ResizeNearestNeighbor(cx: TFContext, images: Value, size: Value, *, align_corners,
                          half_pixel_centers) -> Value:
    return _resize(cx, images, size, "nearest", align_corners, half_pixel_centers)

