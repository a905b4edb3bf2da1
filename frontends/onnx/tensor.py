"""Converters for data movement, shapes and constants: Reshape, Transpose, Slice, Pad, Gather,
Shape, Constant, Cast, ... Shape arithmetic folds to constants because every shape is static."""
from __future__ import annotations

import math

import numpy as np
from onnx import numpy_helper

from neo.ir import Value
from neo.ir.ops_elementwise import broadcast_shapes

from .context import NodeContext, normalize_axes, normalize_axis, onnx_dtype
from .registry import converter


def _dtype(cx: NodeContext, attribute: str, elem_type: int) -> str:
    try:
        return onnx_dtype(elem_type)
    except TypeError as e:
        cx.unsupported(f"attribute {attribute}: {e}")


# -- shapes and constants --------------------------------------------------------------------------
@converter("Shape", since=1)
def Shape(cx: NodeContext, data: Value, *, start, end) -> Value:
    rank = len(data.shape)
    lo = 0 if start is None else min(max(start + rank if start < 0 else start, 0), rank)
    hi = rank if end is None else min(max(end + rank if end < 0 else end, 0), rank)
    return cx.const(np.array(data.shape[lo:hi], np.int64))


@converter("Size", since=1)
def Size(cx: NodeContext, data: Value) -> Value:
    return cx.const(np.array(math.prod(data.shape), np.int64))


@converter("Constant", since=1)
def Constant(cx: NodeContext, *, value, sparse_value, value_float, value_floats, value_int,
             value_ints, value_string, value_strings) -> Value:
    if value is not None:
        return cx.const(value)
    if sparse_value is not None:
        dense = np.zeros(tuple(sparse_value.dims), numpy_helper.to_array(sparse_value.values).dtype)
        idx = numpy_helper.to_array(sparse_value.indices)
        vals = numpy_helper.to_array(sparse_value.values)
        if idx.ndim == 1:
            dense.reshape(-1)[idx] = vals
        else:
            dense[tuple(idx.T)] = vals
        return cx.const(dense)
    if value_float is not None:
        return cx.const(np.array(value_float, np.float32))
    if value_floats is not None:
        return cx.const(np.array(value_floats, np.float32))
    if value_int is not None:
        return cx.const(np.array(value_int, np.int64))
    if value_ints is not None:
        return cx.const(np.array(value_ints, np.int64))
    cx.unsupported("string constants are not implemented")


@converter("ConstantOfShape", since=9)
def ConstantOfShape(cx: NodeContext, input: Value, *, value) -> Value:
    shape = cx.ints(input, "input")
    fill = np.zeros(1, np.float32) if value is None else np.asarray(value)
    return cx.const(np.full(shape, fill.reshape(-1)[0], fill.dtype))


@converter("Range", since=11)
def Range(cx: NodeContext, start: Value, limit: Value, delta: Value) -> Value:
    s, lim, d = (cx.constant(v, name).reshape(()) for v, name in
                 ((start, "start"), (limit, "limit"), (delta, "delta")))
    n = max(int(np.ceil((lim - s) / d)), 0)
    return cx.const((s + d * np.arange(n)).astype(s.dtype))


@converter("Identity", since=1)
def Identity(cx: NodeContext, input: Value) -> Value:
    return input


@converter("Dropout", since=7)
def Dropout_7(cx: NodeContext, data: Value, *, ratio) -> tuple[Value, Value | None]:
    # Inference: the identity; the mask (if the model asks for it) keeps everything.
    return data, _dropout_mask(cx, data)


@converter("Dropout", since=12)
def Dropout(cx: NodeContext, data: Value, ratio: Value | None = None,
            training_mode: Value | None = None, *, seed) -> tuple[Value, Value | None]:
    if training_mode is not None and bool(cx.constant(training_mode, "training_mode")):
        cx.unsupported("training_mode=true is not implemented; Neo compiles inference only")
    return data, _dropout_mask(cx, data)


def _dropout_mask(cx: NodeContext, data: Value) -> Value | None:
    if cx.requested_outputs < 2:
        return None
    mask_type = "bool" if cx.opset >= 10 else data.dtype
    return cx.const(np.ones(data.shape, bool), dtype=mask_type)


@converter("Cast", since=6)
def Cast(cx: NodeContext, input: Value, *, to, saturate) -> Value:
    # `saturate` only changes conversions to float8 types, which the IR does not have.
    return cx.cast(input, _dtype(cx, "to", to))


@converter("CastLike", since=15)
def CastLike(cx: NodeContext, input: Value, target_type: Value, *, saturate) -> Value:
    return cx.cast(input, target_type.dtype)


# -- reshaping -------------------------------------------------------------------------------------
@converter("Reshape", since=5)
def Reshape(cx: NodeContext, data: Value, shape: Value, *, allowzero) -> Value:
    target = cx.ints(shape, "shape")
    out = [data.shape[i] if d == 0 and not allowzero else d for i, d in enumerate(target)]
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        out[out.index(-1)] = math.prod(data.shape) // known if known else 0
    return cx.reshape(data, out)


@converter("Flatten", since=1)
def Flatten(cx: NodeContext, input: Value, *, axis) -> Value:
    axis = axis + input.type.rank if axis < 0 else axis
    return cx.reshape(input, (math.prod(input.shape[:axis]), math.prod(input.shape[axis:])))


def _squeeze(cx: NodeContext, data: Value, axes) -> Value:
    if axes is None or len(axes) == 0:
        axes = [i for i, d in enumerate(data.shape) if d == 1]
    drop = set(normalize_axes(axes, data.type.rank))
    return cx.reshape(data, [d for i, d in enumerate(data.shape) if i not in drop])


def _unsqueeze(cx: NodeContext, data: Value, axes) -> Value:
    rank = data.type.rank + len(axes)
    new = set(normalize_axes(axes, rank))
    dims = iter(data.shape)
    return cx.reshape(data, [1 if i in new else next(dims) for i in range(rank)])


@converter("Squeeze", since=1)
def Squeeze(cx: NodeContext, data: Value, *, axes) -> Value:
    return _squeeze(cx, data, axes)


@converter("Squeeze", since=13)
def Squeeze_13(cx: NodeContext, data: Value, axes: Value | None = None) -> Value:
    return _squeeze(cx, data, cx.ints(axes, "axes"))


@converter("Unsqueeze", since=1)
def Unsqueeze(cx: NodeContext, data: Value, *, axes) -> Value:
    return _unsqueeze(cx, data, axes)


@converter("Unsqueeze", since=13)
def Unsqueeze_13(cx: NodeContext, data: Value, axes: Value) -> Value:
    return _unsqueeze(cx, data, cx.ints(axes, "axes"))


@converter("Transpose", since=1)
def Transpose(cx: NodeContext, data: Value, *, perm) -> Value:
    rank = data.type.rank
    perm = tuple(normalize_axes(perm, rank)) if perm else tuple(reversed(range(rank)))
    if perm == tuple(range(data.type.rank)):
        return data
    return cx.op("transpose", data, perm=perm)


@converter("Expand", since=8)
def Expand(cx: NodeContext, input: Value, shape: Value) -> Value:
    target = tuple(cx.ints(shape, "shape"))
    if broadcast_shapes(input.shape, target) == input.shape:
        return input
    return cx.op("expand", input, shape=target)


@converter("Tile", since=6)
def Tile(cx: NodeContext, input: Value, repeats: Value) -> Value:
    reps = cx.ints(repeats, "repeats")
    if all(r == 1 for r in reps):
        return input
    # (d0, d1, ...) -> (1, d0, 1, d1, ...) -> expand to (r0, d0, r1, d1, ...) -> (r0*d0, r1*d1, ...)
    spread = [v for d in input.shape for v in (1, d)]
    wide = [v for r, d in zip(reps, input.shape) for v in (r, d)]
    x = cx.op("expand", cx.reshape(input, spread), shape=tuple(wide))
    return cx.reshape(x, [r * d for r, d in zip(reps, input.shape)])


@converter("DepthToSpace", since=1)
def DepthToSpace(cx: NodeContext, input: Value, *, blocksize, mode) -> Value:
    n, c, h, w = input.shape
    b = blocksize
    if mode == "DCR":
        x = cx.reshape(input, (n, b, b, c // (b * b), h, w))
        x = cx.op("transpose", x, perm=(0, 3, 4, 1, 5, 2))
    else:  # CRD
        x = cx.reshape(input, (n, c // (b * b), b, b, h, w))
        x = cx.op("transpose", x, perm=(0, 1, 4, 2, 5, 3))
    return cx.reshape(x, (n, c // (b * b), h * b, w * b))


@converter("SpaceToDepth", since=1)
def SpaceToDepth(cx: NodeContext, input: Value, *, blocksize) -> Value:
    n, c, h, w = input.shape
    b = blocksize
    x = cx.reshape(input, (n, c, h // b, b, w // b, b))
    x = cx.op("transpose", x, perm=(0, 3, 5, 1, 2, 4))
    return cx.reshape(x, (n, c * b * b, h // b, w // b))


# -- joining and splitting -------------------------------------------------------------------------
@converter("Concat", since=4)
def Concat(cx: NodeContext, *inputs: Value, axis) -> Value:
    axis = normalize_axis(axis, inputs[0].type.rank)
    # Exporters concatenate empty shape pieces; the IR need not see them.
    parts = [v for v in inputs if math.prod(v.shape) > 0] or list(inputs)
    if len(parts) == 1 and parts[0].shape == _concat_shape(inputs, axis):
        return parts[0]
    return cx.op("concat", *parts, axis=axis)


def _concat_shape(inputs, axis) -> tuple[int, ...]:
    shape = list(inputs[0].shape)
    shape[axis] = sum(v.shape[axis] for v in inputs)
    return tuple(shape)


def _split(cx: NodeContext, x: Value, axis: int, split, num_outputs) -> list[Value]:
    axis = normalize_axis(axis, x.type.rank)
    dim = x.shape[axis]
    n = len(cx.outputs)
    if split is None or len(split) == 0:
        if num_outputs is not None:
            # Opset 18: ceil-sized chunks, the last one smaller.
            chunk = -(-dim // num_outputs)
            split = [min(chunk, dim - i * chunk) for i in range(num_outputs)]
        else:
            if dim % n:
                raise ValueError(f"cannot split dim {dim} into {n} equal parts")
            split = [dim // n] * n
    if sum(split) != dim:
        raise ValueError(f"split sizes {list(split)} do not add up to dim {dim}")
    outs, begin = [], 0
    for size in split:
        starts = [0] * x.type.rank
        ends = list(x.shape)
        starts[axis], ends[axis] = begin, begin + size
        outs.append(_slice(cx, x, starts, ends, [1] * x.type.rank))
        begin += size
    return outs


@converter("Split", since=2)
def Split_2(cx: NodeContext, input: Value, *, axis, split) -> list[Value]:
    return _split(cx, input, axis, split, None)


@converter("Split", since=13)
def Split(cx: NodeContext, input: Value, split: Value | None = None, *, axis, num_outputs
          ) -> list[Value]:
    return _split(cx, input, axis, cx.ints(split, "split"), num_outputs)


# -- slicing ---------------------------------------------------------------------------------------
def _slice(cx: NodeContext, x: Value, starts, ends, steps) -> Value:
    if (list(starts) == [0] * x.type.rank and list(ends) == list(x.shape)
            and list(steps) == [1] * x.type.rank):
        return x
    return cx.op("slice", x, starts=tuple(starts), ends=tuple(ends), steps=tuple(steps))


def slice_onnx(cx: NodeContext, x: Value, starts, ends, axes, steps) -> Value:
    """ONNX Slice semantics (negative indices, clamping, negative steps) to the IR's full form."""
    axes = normalize_axes(axes, x.type.rank) if axes is not None else list(range(len(starts)))
    steps = list(steps) if steps is not None else [1] * len(starts)
    full_start, full_end, full_step = [0] * x.type.rank, list(x.shape), [1] * x.type.rank
    for ax, s, e, st in zip(axes, starts, ends, steps):
        if st == 0:
            raise ValueError("Slice step 0")
        dim = x.shape[ax]
        s = s + dim if s < 0 else s
        e = e + dim if e < 0 else e
        if st > 0:
            s, e = min(max(s, 0), dim), min(max(e, 0), dim)
        else:
            s, e = min(max(s, 0), dim - 1), min(max(e, -1), dim - 1)
        full_start[ax], full_end[ax], full_step[ax] = s, e, st
    return _slice(cx, x, full_start, full_end, full_step)


@converter("Slice", since=1)
def Slice_1(cx: NodeContext, data: Value, *, axes, ends, starts) -> Value:
    return slice_onnx(cx, data, starts, ends, axes, None)


@converter("Slice", since=10)
def Slice(cx: NodeContext, data: Value, starts: Value, ends: Value, axes: Value | None = None,
          steps: Value | None = None) -> Value:
    return slice_onnx(cx, data, cx.ints(starts, "starts"), cx.ints(ends, "ends"),
                      cx.ints(axes, "axes"), cx.ints(steps, "steps"))


@converter("Gather", since=1)
def Gather(cx: NodeContext, data: Value, indices: Value, *, axis) -> Value:
    if indices.dtype not in ("int32", "int64"):
        indices = cx.cast(indices, "int64")
    return cx.op("gather", data, indices, axis=normalize_axis(axis, data.type.rank))


# -- padding ---------------------------------------------------------------------------------------
PAD_MODES = ("constant", "reflect", "edge", "wrap")


def _pad(cx: NodeContext, data: Value, mode: str, pads, value, axes) -> Value:
    if mode not in PAD_MODES:
        cx.unsupported_attribute("mode", mode, ", ".join(PAD_MODES))
    rank = data.type.rank
    if axes is not None:
        axes = normalize_axes(axes, rank)
        full = [0] * (2 * rank)
        for i, ax in enumerate(axes):
            full[ax], full[rank + ax] = pads[i], pads[len(axes) + i]
        pads = full
    if not any(pads):
        return data
    if value is None:
        value = 0
    value = float(value) if data.dtype.startswith(("float", "bfloat")) else int(value)
    return cx.op("pad", data, pads=tuple(int(p) for p in pads), mode=mode, value=value)


@converter("Pad", since=2)
def Pad_2(cx: NodeContext, data: Value, *, mode, pads, value) -> Value:
    return _pad(cx, data, mode, pads, value, None)


@converter("Pad", since=11)
def Pad(cx: NodeContext, data: Value, pads: Value, constant_value: Value | None = None,
        axes: Value | None = None, *, mode) -> Value:
    value = cx.constant(constant_value, "constant_value")
    value = None if value is None or value.size == 0 else value.reshape(-1)[0].item()
    return _pad(cx, data, mode, cx.ints(pads, "pads"), value, cx.ints(axes, "axes"))
