"""Shape and data movement: Concat, Flatten, Reshape (with MXNet's special codes), transpose,
expand_dims, squeeze, slice, slice_axis, SliceChannel/split, Pad, SwapAxis, stack, broadcast_to,
take, identities, and the constant makers (`_zeros`, `zeros_like`, ...)."""
from __future__ import annotations

import math

import numpy as np

from neo import ir
from neo.ir import Value

from .context import MxContext, as_tuple
from .registry import converter


@converter("Concat", "concat", "_rnn_param_concat")
def Concat(cx: MxContext, *args: Value, num_args=None, dim=1) -> Value:
    if not args:
        cx.required("the inputs")
    return cx.concat(list(args), cx.axis(dim, args[0].type.rank))


@converter("stack")
def stack(cx: MxContext, *args: Value, axis=0, num_args=None) -> Value:
    rank = args[0].type.rank + 1
    ax = cx.axis(axis, rank)
    parts = [cx.reshape(a, a.shape[:ax] + (1,) + a.shape[ax:]) for a in args]
    return cx.concat(parts, ax)


@converter("Flatten", "flatten")
def Flatten(cx: MxContext, data: Value) -> Value:
    return cx.reshape(data, (data.shape[0], math.prod(data.shape[1:])) if data.type.rank else (1,))


def reshape_shape(src: tuple[int, ...], spec: tuple[int, ...], reverse: bool = False
                  ) -> tuple[int, ...]:
    """MXNet's Reshape: 0 copies the input dim, -1 is inferred, -2 copies all the remaining
    input dims, -3 merges two input dims, -4 splits one into the next two values (one may be
    -1). `reverse` matches the codes from the right."""
    dshape, codes = list(src), list(spec)
    if reverse:
        dshape.reverse()
        codes.reverse()
    out: list[int] = []
    infer = -1
    i = j = 0  # i: position in codes, j: in the input dims
    while i < len(codes):
        c = codes[i]
        if c == 0:
            out.append(dshape[j])
            j += 1
        elif c == -1:
            if infer >= 0:
                raise ValueError(f"Reshape shape {list(spec)} has more than one -1")
            infer = len(out)
            out.append(1)
            j += 1
        elif c == -2:
            out.extend(dshape[j:])
            j = len(dshape)
        elif c == -3:
            if j + 1 >= len(dshape):
                raise ValueError(f"Reshape -3 needs two input dims at {j} of {src}")
            out.append(dshape[j] * dshape[j + 1])
            j += 2
        elif c == -4:
            if i + 2 >= len(codes):
                raise ValueError(f"Reshape -4 needs two values after it in {list(spec)}")
            d0, d1, d2 = dshape[j], codes[i + 1], codes[i + 2]
            if d1 == -1 and d2 == -1:
                raise ValueError("Reshape -4 splits into at most one -1")
            d1 = d0 // d2 if d1 == -1 else d1
            d2 = d0 // d1 if d2 == -1 else d2
            if d1 * d2 != d0:
                raise ValueError(f"Reshape -4 cannot split {d0} into {d1} x {d2}")
            out.extend((d1, d2))
            i += 2
            j += 1
        elif c > 0:
            out.append(c)
            j += 1
        else:
            raise ValueError(f"Reshape code {c} is not one of 0, -1, -2, -3, -4 or a size")
        i += 1
    total = math.prod(src)
    if infer >= 0:
        known = math.prod(d for k, d in enumerate(out) if k != infer)
        if known == 0 or total % known:
            raise ValueError(f"cannot reshape {list(src)} to {list(spec)}")
        out[infer] = total // known
    if reverse:
        out.reverse()
    if math.prod(out) != total:
        raise ValueError(f"cannot reshape {list(src)} ({total} elements) to {out}")
    return tuple(out)


@converter("Reshape", "reshape")
def Reshape(cx: MxContext, data: Value, *, shape=(), reverse=False, target_shape=(),
            keep_highest=False) -> Value:
    spec = tuple(int(d) for d in as_tuple(shape))
    legacy = tuple(int(d) for d in as_tuple(target_shape))
    if not spec and legacy:  # the deprecated form: 0 is inferred, keep_highest keeps dim 0
        if keep_highest:
            spec = (0,) + tuple(-1 if d == 0 else d for d in legacy)
        else:
            spec = tuple(-1 if d == 0 else d for d in legacy)
    if not spec:
        cx.required("shape")
    return cx.reshape(data, reshape_shape(data.shape, spec, bool(reverse)))


@converter("reshape_like")
def reshape_like(cx: MxContext, lhs: Value, rhs: Value) -> Value:
    return cx.reshape(lhs, rhs.shape)


@converter("transpose")
def transpose(cx: MxContext, data: Value, *, axes=()) -> Value:
    rank = data.type.rank
    ax = as_tuple(axes)
    perm = tuple(cx.axis(a, rank) for a in ax) if ax else tuple(reversed(range(rank)))
    return cx.transpose(data, perm)


@converter("SwapAxis", "swapaxes")
def SwapAxis(cx: MxContext, data: Value, *, dim1=0, dim2=0) -> Value:
    rank = data.type.rank
    perm = list(range(rank))
    a, b = cx.axis(dim1, rank), cx.axis(dim2, rank)
    perm[a], perm[b] = perm[b], perm[a]
    return cx.transpose(data, perm)


@converter("expand_dims")
def expand_dims(cx: MxContext, data: Value, *, axis=None) -> Value:
    if axis is None:
        cx.required("axis")
    ax = cx.axis(axis, data.type.rank + 1)
    return cx.reshape(data, data.shape[:ax] + (1,) + data.shape[ax:])


@converter("squeeze")
def squeeze(cx: MxContext, data: Value, *, axis=None) -> Value:
    rank = data.type.rank
    ax = as_tuple(axis)
    drop = {cx.axis(a, rank) for a in ax} if ax else {i for i, d in enumerate(data.shape)
                                                      if d == 1}
    if any(data.shape[a] != 1 for a in drop):
        raise ValueError(f"squeeze axis {sorted(drop)} of {list(data.shape)} is not 1")
    shape = tuple(d for i, d in enumerate(data.shape) if i not in drop)
    return cx.reshape(data, shape or (1,))


def _slice(cx: MxContext, x: Value, begin, end, step) -> Value:
    """Python slicing per axis (None: the default; negative values count from the end)."""
    begin, end, step = as_tuple(begin), as_tuple(end), as_tuple(step)
    if len(begin) != len(end) or len(begin) > x.type.rank or (step and len(step) != len(begin)):
        raise ValueError(f"slice begin {list(begin)}, end {list(end)}, step {list(step)} do not "
                         f"match the rank {x.type.rank}")
    starts, ends, steps = [0] * x.type.rank, list(x.shape), [1] * x.type.rank
    for i, (b, e) in enumerate(zip(begin, end)):
        s = step[i] if step and step[i] is not None else 1
        if s == 0:
            cx.invalid("step", list(step), "non-zero steps")
        start, stop, stride = slice(b, e, s).indices(x.shape[i])
        starts[i], ends[i], steps[i] = start, stop, stride
    if starts == [0] * x.type.rank and ends == list(x.shape) and steps == [1] * x.type.rank:
        return x
    return cx.op("slice", x, starts=tuple(starts), ends=tuple(ends), steps=tuple(steps))


@converter("slice")
def slice_(cx: MxContext, data: Value, *, begin=None, end=None, step=()) -> Value:
    if begin is None or end is None:
        cx.required("begin and end")
    return _slice(cx, data, begin, end, step)


@converter("slice_axis")
def slice_axis(cx: MxContext, data: Value, *, axis=None, begin=None, end=None) -> Value:
    if axis is None or begin is None:
        cx.required("axis and begin")
    ax = cx.axis(axis, data.type.rank)
    begins, ends = [None] * (ax + 1), [None] * (ax + 1)
    begins[ax], ends[ax] = begin, end
    return _slice(cx, data, tuple(begins), tuple(ends), ())


@converter("slice_like")
def slice_like(cx: MxContext, data: Value, shape_like: Value, *, axes=()) -> Value:
    rank = data.type.rank
    ax = {cx.axis(a, rank) for a in as_tuple(axes)} or set(range(min(rank, shape_like.type.rank)))
    ends = tuple(shape_like.shape[i] if i in ax else None for i in range(rank))
    return _slice(cx, data, (0,) * rank, ends, ())


@converter("SliceChannel", "split")
def SliceChannel(cx: MxContext, data: Value, *, num_outputs=None, axis=1, squeeze_axis=False
                 ) -> list[Value]:
    if num_outputs is None:
        cx.required("num_outputs")
    n = int(num_outputs)
    ax = cx.axis(axis, data.type.rank)
    size = data.shape[ax]
    if size % n:
        raise ValueError(f"SliceChannel: axis {ax} of {list(data.shape)} does not split into {n}")
    step = size // n
    outs = []
    for i in range(n):
        part = cx.slice(data, ax, i * step, (i + 1) * step)
        if squeeze_axis:
            if step != 1:
                raise ValueError("squeeze_axis needs parts of size 1")
            part = cx.reshape(part, data.shape[:ax] + data.shape[ax + 1:])
        outs.append(part)
    return outs


@converter("Pad", "pad")
def Pad(cx: MxContext, data: Value, *, mode="constant", pad_width=None, constant_value=0.0
        ) -> Value:
    if pad_width is None:
        cx.required("pad_width")
    widths = [int(w) for w in as_tuple(pad_width)]
    rank = data.type.rank
    if len(widths) != 2 * rank:
        cx.invalid("pad_width", widths, f"{2 * rank} values (before, after per axis)")
    if mode not in ("constant", "edge", "reflect"):
        cx.unsupported_attribute("mode", mode, "constant, edge, reflect")
    pads = tuple(widths[0::2]) + tuple(widths[1::2])
    if not any(pads):
        return data
    value = float(constant_value) if data.dtype.startswith("float") else int(constant_value)
    return cx.op("pad", data, pads=pads, mode=mode, value=value)


# -- identities ------------------------------------------------------------------------------------
@converter("_copy", "BlockGrad", "stop_gradient", "identity", "_identity_with_attr_like_rhs",
           "MakeLoss", "make_loss", "_CrossDeviceCopy", "IdentityAttachKLSparseReg")
def identity(cx: MxContext, data: Value, *rest: Value) -> Value:
    return data


# -- constants -------------------------------------------------------------------------------------
def _dtype(dtype) -> str:
    return "float32" if dtype in (None, "None") else str(dtype)


@converter("zeros_like")
def zeros_like(cx: MxContext, data: Value) -> Value:
    return cx.const(np.zeros(data.shape, ir.np_dtype(data.dtype)))


@converter("ones_like")
def ones_like(cx: MxContext, data: Value) -> Value:
    return cx.const(np.ones(data.shape, ir.np_dtype(data.dtype)))


@converter("_zeros", "_zeros_without_dtype")
def _zeros(cx: MxContext, *, shape=(), dtype="float32") -> Value:
    return cx.defer(as_tuple(shape), 0.0, _dtype(dtype))


@converter("_ones")
def _ones(cx: MxContext, *, shape=(), dtype="float32") -> Value:
    return cx.defer(as_tuple(shape), 1.0, _dtype(dtype))


@converter("_full")
def _full(cx: MxContext, *, shape=(), dtype="float32", value=None) -> Value:
    if value is None:
        cx.required("value")
    return cx.defer(as_tuple(shape), float(value), _dtype(dtype))


@converter("_arange")
def _arange(cx: MxContext, *, start=0.0, stop=None, step=1.0, repeat=1, infer_range=False,
            dtype="float32") -> Value:
    if stop is None:
        start, stop = 0.0, start
    values = np.repeat(np.arange(float(start), float(stop), float(step)), int(repeat))
    return cx.const(values.astype(ir.np_dtype(_dtype(dtype))))


@converter("_contrib_arange_like")
def arange_like(cx: MxContext, data: Value, *, start=0.0, step=1.0, repeat=1, axis=None
                ) -> Value:
    """start, start + step, ... (each `repeat` times) in data's shape, or along one axis."""
    shape = data.shape if axis is None else (data.shape[cx.axis(axis, data.type.rank)],)
    n = math.prod(shape)
    values = float(start) + float(step) * (np.arange(n) // int(repeat))
    return cx.const(values.reshape(shape).astype(ir.np_dtype(data.dtype)))


# -- broadcasting and gathering --------------------------------------------------------------------
@converter("broadcast_to")
def broadcast_to(cx: MxContext, data: Value, *, shape=()) -> Value:
    target = tuple(int(s) if s else data.shape[i] for i, s in enumerate(as_tuple(shape)))
    return data if target == data.shape else cx.op("expand", data, shape=target)


@converter("broadcast_like")
def broadcast_like(cx: MxContext, lhs: Value, rhs: Value, *, lhs_axes=None, rhs_axes=None
                   ) -> Value:
    target = list(lhs.shape)
    if lhs_axes is None:
        target = list(rhs.shape)
    else:
        for a, b in zip(as_tuple(lhs_axes), as_tuple(rhs_axes)):
            target[cx.axis(a, lhs.type.rank)] = rhs.shape[cx.axis(b, rhs.type.rank)]
    return lhs if tuple(target) == lhs.shape else cx.op("expand", lhs, shape=tuple(target))


@converter("broadcast_axis", "broadcast_axes")
def broadcast_axis(cx: MxContext, data: Value, *, axis=(), size=()) -> Value:
    target = list(data.shape)
    for a, s in zip(as_tuple(axis), as_tuple(size)):
        target[cx.axis(a, data.type.rank)] = int(s)
    return data if tuple(target) == data.shape else cx.op("expand", data, shape=tuple(target))


@converter("take")
def take(cx: MxContext, a: Value, indices: Value, *, axis=0, mode="clip") -> Value:
    ax = cx.axis(axis, a.type.rank)
    n = a.shape[ax]
    idx = cx.cast(indices, "int64")  # float indices truncate
    if mode == "clip":
        idx = cx.op("clip", idx, min=0, max=n - 1)
    elif mode == "wrap":  # ((i % n) + n) % n without a mod op: i - n * floor(i / n)
        f = cx.cast(idx, "float64")
        q = cx.op("floor", cx.op("div", f, cx.scalar(float(n), "float64")))
        idx = cx.cast(cx.op("sub", f, cx.op("mul", q, cx.scalar(float(n), "float64"))), "int64")
    else:
        cx.unsupported_attribute("mode", mode, "clip, wrap")
    return cx.op("gather", a, idx, axis=ax)
