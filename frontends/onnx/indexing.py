"""Converters for index-producing and index-consuming ops: ArgMax/ArgMin, Trilu, CumSum/CumProd,
OneHot, Compress, CenterCropPad, EyeLike, GatherElements, GatherND, ScatterElements, ScatterND. Most decompose exactly into
existing IR ops."""
from __future__ import annotations

import math

import numpy as np

from neo import ir
from neo.ir import Value

from .context import NodeContext, normalize_axes, normalize_axis, onnx_dtype
from .registry import converter
from .tensor import slice_onnx

# ScatterND unrolls its index tuples into every output element's expression.
SCATTER_ND_MAX_UPDATES = 256


def _iota_along(cx: NodeContext, rank: int, axis: int, n: int) -> Value:
    """0..n-1 along `axis`, shaped to broadcast against a rank-`rank` tensor."""
    shape = [1] * rank
    shape[axis] = n
    return cx.const(np.arange(n, dtype=np.int64).reshape(shape))


def _arg(cx: NodeContext, data: Value, axis: int, keepdims: int, select_last_index: int,
         extreme: str) -> Value:
    # argmax = min { i : x[i] == max(x) } (max { ... } for the last index)
    ax = normalize_axis(axis, data.type.rank, cx)
    n = data.shape[ax]
    best = cx.op(extreme, data, axes=(ax,), keepdims=1)
    hit = cx.op("equal", data, best)
    iota = _iota_along(cx, data.type.rank, ax, n)
    if select_last_index:
        return cx.op("reduce_max", cx.op("where", hit, iota, cx.scalar(-1, "int64")),
                     axes=(ax,), keepdims=int(keepdims))
    return cx.op("reduce_min", cx.op("where", hit, iota, cx.scalar(n, "int64")), axes=(ax,),
                 keepdims=int(keepdims))


@converter("ArgMax", since=1)
def ArgMax(cx: NodeContext, data: Value, *, axis, keepdims, select_last_index=0) -> Value:
    return _arg(cx, data, axis, keepdims, select_last_index or 0, "reduce_max")


@converter("ArgMin", since=1)
def ArgMin(cx: NodeContext, data: Value, *, axis, keepdims, select_last_index=0) -> Value:
    return _arg(cx, data, axis, keepdims, select_last_index or 0, "reduce_min")


@converter("Trilu", since=14)
def Trilu(cx: NodeContext, input: Value, k: Value | None = None, *, upper) -> Value:
    # keep x[..., i, j] where j - i >= k (upper) or j - i <= k (lower), zero elsewhere
    diag = (cx.ints(k, "k") or [0])[0]
    rows, cols = input.shape[-2:]
    offset = np.arange(cols)[None, :] - np.arange(rows)[:, None]
    keep = offset >= diag if upper else offset <= diag
    if keep.all():
        return input
    return cx.op("where", cx.const(keep), input, cx.scalar(0, input.dtype))


def _shift(cx: NodeContext, x: Value, axis: int, by: int, reverse: bool, fill: int) -> Value:
    """`x` moved by `by` along `axis` (towards the end, or the start when `reverse`), the vacated
    places filled with `fill`."""
    rank, n = x.type.rank, x.shape[axis]
    pads = [0] * (2 * rank)
    pads[axis + (rank if reverse else 0)] = by
    value = float(fill) if x.dtype.startswith(("float", "bfloat")) else fill
    padded = cx.op("pad", x, pads=tuple(pads), mode="constant", value=value)
    start = by if reverse else 0
    return slice_onnx(cx, padded, [start], [start + n], [axis], [1])


def _scan(cx: NodeContext, op: str, identity: int, x: Value, axis: Value, exclusive: int,
          reverse: int) -> Value:
    # Hillis-Steele scan: after the step with shift d every element combines 2d inputs; log2(n)
    # steps of shift-and-combine (exact for integers).
    ax = normalize_axis(cx.ints(axis, "axis")[0], x.type.rank, cx)
    n = x.shape[ax]
    y = _shift(cx, x, ax, 1, bool(reverse), identity) if exclusive else x
    d = 1
    while d < n:
        y = cx.op(op, y, _shift(cx, y, ax, d, bool(reverse), identity))
        d *= 2
    return y


@converter("CumSum", since=11)
def CumSum(cx: NodeContext, x: Value, axis: Value, *, exclusive, reverse) -> Value:
    return _scan(cx, "add", 0, x, axis, exclusive, reverse)


@converter("CumProd", since=26)
def CumProd(cx: NodeContext, x: Value, axis: Value, *, exclusive, reverse) -> Value:
    return _scan(cx, "mul", 1, x, axis, exclusive, reverse)


@converter("OneHot", since=9)
def OneHot(cx: NodeContext, indices: Value, depth: Value, values: Value, *, axis) -> Value:
    # out[..., j, ...] = values[1] if j == indices[...] (negative ones count from depth) else
    # values[0]
    n = int(cx.floats(depth, "depth")[0])
    rank = indices.type.rank + 1
    ax = normalize_axis(axis, rank, cx)
    i = cx.cast(indices, "int64")
    i = cx.op("where", cx.op("less", i, cx.scalar(0, "int64")),
              cx.op("add", i, cx.scalar(n, "int64")), i)
    i = cx.reshape(i, i.shape[:ax] + (1,) + i.shape[ax:])
    hit = cx.op("equal", i, _iota_along(cx, rank, ax, n))
    off = slice_onnx(cx, cx.reshape(values, (2,)), [0], [1], [0], [1])
    on = slice_onnx(cx, cx.reshape(values, (2,)), [1], [2], [0], [1])
    return cx.op("where", hit, on, off)


@converter("Compress", since=9)
def Compress(cx: NodeContext, input: Value, condition: Value, *, axis) -> Value:
    # the slices along `axis` (of the flattened input without one) where condition is true
    cond = np.asarray(cx.constant(condition, "condition")).reshape(-1).astype(bool)
    x = input if axis is not None else cx.reshape(input, (math.prod(input.shape),))
    ax = 0 if axis is None else normalize_axis(axis, x.type.rank, cx)
    keep = np.nonzero(cond[:x.shape[ax]])[0].astype(np.int64)
    return cx.op("gather", x, cx.const(keep), axis=ax)


@converter("CenterCropPad", since=18)
def CenterCropPad(cx: NodeContext, input_data: Value, shape: Value, *, axes) -> Value:
    # per axis: crop the centered window of the target length, or pad around the input centered
    target = cx.ints(shape, "shape")
    rank = input_data.type.rank
    axes = normalize_axes(axes, rank) if axes else list(range(rank))
    x = input_data
    pads = [0] * (2 * rank)
    for ax, want in zip(axes, target):
        have = x.shape[ax]
        if want < have:
            start = (have - want) // 2
            x = slice_onnx(cx, x, [start], [start + want], [ax], [1])
        elif want > have:
            pads[ax] = (want - have) // 2
            pads[rank + ax] = want - have - pads[ax]
    if any(pads):
        x = cx.op("pad", x, pads=tuple(pads), mode="constant",
                  value=0.0 if x.dtype.startswith(("float", "bfloat")) else 0)
    return x


@converter("EyeLike", since=9)
def EyeLike(cx: NodeContext, input: Value, *, dtype, k) -> Value:
    # ones on the k-th diagonal of a matrix shaped like the input: a compile-time constant
    out = input.dtype if dtype is None else onnx_dtype(dtype)
    rows, cols = input.shape
    return cx.const(np.eye(rows, cols, k, dtype=ir.np_dtype(out)))


@converter("GatherElements", since=11)
def GatherElements(cx: NodeContext, data: Value, indices: Value, *, axis) -> Value:
    return cx.op("gather_elements", data, indices,
                 axis=normalize_axis(axis, data.type.rank, cx))


@converter("GatherND", since=11)
def GatherND(cx: NodeContext, data: Value, indices: Value, *, batch_dims=0) -> Value:
    return cx.op("gather_nd", data, indices, batch_dims=int(batch_dims or 0))


@converter("ScatterElements", since=11)
def ScatterElements(cx: NodeContext, data: Value, indices: Value, updates: Value, *, axis,
                    reduction="none") -> Value:
    return cx.op("scatter_elements", data, indices, updates,
                 axis=normalize_axis(axis, data.type.rank, cx), reduction=reduction or "none")


@converter("Scatter", since=9)
def Scatter(cx: NodeContext, data: Value, indices: Value, updates: Value, *, axis) -> Value:
    # the deprecated name of ScatterElements
    return ScatterElements(cx, data, indices, updates, axis=axis)


@converter("ScatterND", since=11)
def ScatterND(cx: NodeContext, data: Value, indices: Value, updates: Value, *,
              reduction="none") -> Value:
    if math.prod(indices.shape[:-1]) > SCATTER_ND_MAX_UPDATES:
        cx.unsupported(f"more than {SCATTER_ND_MAX_UPDATES} index tuples")
    return cx.op("scatter_nd", data, indices, updates, reduction=reduction or "none")


def _topk(cx: NodeContext, X: Value, k: int, axis: int, largest: int) -> list[Value]:
    # rank[i] = #{j : x[j] before x[i]} (before: larger, or smaller when not `largest`; ties go to
    # the lower index); output r is the element of rank r, picked by a one-hot sum.
    rank = X.type.rank
    ax = normalize_axis(axis, rank, cx)
    n = X.shape[ax]
    if not 0 <= k <= n:
        raise ValueError(f"TopK k={k} for an axis of length {n}")
    perm = tuple(d for d in range(rank) if d != ax) + (ax,)
    x = X if ax == rank - 1 else cx.op("transpose", X, perm=perm)
    lead = x.shape[:-1]
    xi = cx.reshape(x, lead + (n, 1))
    xj = cx.reshape(x, lead + (1, n))
    lower = cx.const(np.arange(n)[None, :] < np.arange(n)[:, None])  # [i, j]: j < i
    beats = cx.op("greater" if largest else "less", xj, xi)
    before = cx.op("or", beats, cx.op("and", cx.op("equal", xj, xi), lower))
    order = cx.op("reduce_sum", cx.cast(before, "int64"), axes=(rank,), keepdims=0)
    picked = cx.op("equal", cx.reshape(order, lead + (1, n)),
                   cx.const(np.arange(k, dtype=np.int64).reshape(k, 1)))
    values = cx.op("reduce_sum", cx.op("where", picked, xj, cx.scalar(0, x.dtype)),
                   axes=(rank,), keepdims=0)
    iota = cx.const(np.arange(n, dtype=np.int64))
    indices = cx.op("reduce_sum", cx.op("where", picked, iota, cx.scalar(0, "int64")),
                    axes=(rank,), keepdims=0)
    if ax != rank - 1:
        back = tuple(int(i) for i in np.argsort(perm))
        values = cx.op("transpose", values, perm=back)
        indices = cx.op("transpose", indices, perm=back)
    return [values, indices]


@converter("TopK", since=1)
def TopK_1(cx: NodeContext, X: Value, *, axis, k) -> list[Value]:
    return _topk(cx, X, k, axis, 1)


@converter("TopK", since=10)
def TopK(cx: NodeContext, X: Value, K: Value, *, axis, largest=1, sorted=1) -> list[Value]:
    # the outputs are always sorted, which sorted=0 allows too
    return _topk(cx, X, cx.ints(K, "K")[0], axis, 1 if largest is None else largest)


@converter("ReverseSequence", since=10)
def ReverseSequence(cx: NodeContext, input: Value, sequence_lens: Value, *, batch_axis,
                    time_axis) -> Value:
    # along time_axis, the first sequence_lens[b] elements of batch b reversed, the rest kept:
    # a gather_elements with compile-time indices
    lens = cx.ints(sequence_lens, "sequence_lens")
    shape = input.shape
    t_ax, b_ax = time_axis % input.type.rank, batch_axis % input.type.rank
    t = np.arange(shape[t_ax])
    index = np.empty(shape, np.int64)
    for b, n in enumerate(lens):
        row = np.where(t < n, n - 1 - t, t)
        view = [1] * input.type.rank
        view[t_ax] = shape[t_ax]
        where = [slice(None)] * input.type.rank
        where[b_ax] = b
        index[tuple(where)] = np.broadcast_to(
            row.reshape(view), shape)[tuple(where)]
    return cx.op("gather_elements", input, cx.const(index), axis=t_ax)
