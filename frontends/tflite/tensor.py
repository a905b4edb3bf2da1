"""Converters for data movement, shapes, types and resizing: RESHAPE, TRANSPOSE, slices, pads,
joins and splits, GATHER, TILE, resizes, DEPTH_TO_SPACE, CAST, SHAPE, DEQUANTIZE, DENSIFY.

Shapes are static, so shape arithmetic (SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE) folds to
constants while converting."""
from __future__ import annotations

import math

import numpy as np

from neo import ir
from neo.ir import Value
from neo.ir.ops_elementwise import broadcast_shapes
from neo.ir.ops_tensor import resize_axis_table

from . import quantized as q
from .context import TfliteContext, dequantize
from .registry import converter


def _data(cx: TfliteContext, v: Value, position: int = 0) -> Value:
    """A data operand: float ones as float32 (dequantizing quantized constants); quantized
    integers as they are (these ops move them); a quantized constant as integers with its
    parameters where the op's output is quantized too, else dequantized."""
    if v.dtype.startswith("float"):
        return cx.dequantized(v, position)
    if q.is_quantized(v):
        return v
    t = cx.tensor(position)
    if t is not None and t.quant is not None:
        out = cx.output(0)
        if v.is_const and out.quant is not None and out.dtype == v.dtype:
            return cx.g.const(v.data, cx.name, quant=q.params(t))
        return cx.dequantized(v, position)  # a quantized constant, or an error
    return v


def _same_dtype(cx: TfliteContext, values: list[Value], first: int = 0) -> list[Value]:
    out = [_data(cx, v, first + i) for i, v in enumerate(values)]
    if len({v.dtype for v in out}) > 1:
        cx.invalid("inputs", [v.dtype for v in out], "inputs of one dtype")
    return out


def _output_dtype(cx: TfliteContext, position: int = 0) -> str:
    t = cx.output(position)
    if t.dtype is None:
        cx.unsupported(f"output {t.name!r} is {t.tflite_type}, which Neo does not have")
    return t.dtype


# -- shapes ----------------------------------------------------------------------------------------
@converter("RESHAPE")
def RESHAPE(cx: TfliteContext, input: Value, shape: Value | None = None, *, new_shape) -> Value:
    x = _data(cx, input)
    dims = cx.ints(shape, "shape") if shape is not None else list(new_shape or ())
    if shape is not None and shape.type.rank == 1 and shape.shape[0] == 0 and new_shape:
        dims = list(new_shape)  # an empty shape tensor beside the options: old converters
    if not dims and x.type.size != 1 and shape is None:
        dims = list(cx.output().shape)
    if dims.count(-1) > 1:
        cx.invalid("shape", dims, "at most one -1")
    if -1 in dims:
        known = math.prod(d for d in dims if d != -1)
        if known == 0 or x.type.size % known:
            cx.invalid("shape", dims, f"a shape of {x.type.size} elements")
        dims[dims.index(-1)] = x.type.size // known
    if math.prod(dims) != x.type.size:
        cx.invalid("shape", dims, f"a shape of {x.type.size} elements (input {list(x.shape)})")
    return cx.reshape(x, dims)


@converter("SQUEEZE")
def SQUEEZE(cx: TfliteContext, input: Value, *, squeeze_dims) -> Value:
    x = _data(cx, input)
    r = x.type.rank
    axes = cx.axes(list(squeeze_dims), r, "squeeze_dims") if squeeze_dims else [
        i for i, d in enumerate(x.shape) if d == 1]
    if any(x.shape[a] != 1 for a in axes):
        cx.invalid("squeeze_dims", list(squeeze_dims), f"dims of size 1 of {list(x.shape)}")
    return cx.reshape(x, [d for i, d in enumerate(x.shape) if i not in axes])


@converter("EXPAND_DIMS")
def EXPAND_DIMS(cx: TfliteContext, input: Value, axis: Value) -> Value:
    x = _data(cx, input)
    a = cx.axis(axis, x.type.rank + 1)
    return cx.reshape(x, x.shape[:a] + (1,) + x.shape[a:])


@converter("SHAPE")
def SHAPE(cx: TfliteContext, input: Value, *, out_type) -> Value:
    del out_type  # the output tensor's type says the same (and is there when options are not)
    return cx.const(np.array(input.shape, ir.np_dtype(_output_dtype(cx))))


@converter("RANK")
def RANK(cx: TfliteContext, input: Value) -> Value:
    return cx.const(np.array(input.type.rank, ir.np_dtype(_output_dtype(cx))))


@converter("CAST")
def CAST(cx: TfliteContext, input: Value, *, in_data_type, out_data_type) -> Value:
    del in_data_type, out_data_type  # the tensors' types (CastOptions are often left out)
    return cx.cast(_data(cx, input), _output_dtype(cx))


@converter("DEQUANTIZE")
def DEQUANTIZE(cx: TfliteContext, input: Value) -> Value:
    # float16 weights (fp16 models) and quantized constants become float32 constants at
    # compile time
    t = cx.tensor(0)
    if input.dtype == "float16":
        return cx.cast(input, "float32")
    if t is not None and t.quant is not None and input.is_const:
        return cx.const(dequantize(input.data, t.quant))
    if q.is_quantized(input):
        return q.dequantize(cx, input)
    return cx.dequantized(input, 0)  # raises for what is neither


@converter("QUANTIZE")
def QUANTIZE(cx: TfliteContext, input: Value) -> Value:
    # float -> integers (rounding half away from zero), or integers -> other parameters
    if input.dtype.startswith("float"):
        return q.quantize_from_float(cx, cx.dequantized(input, 0))
    if q.is_quantized(input):
        return q.requantize(cx, input)
    cx.unsupported(f"QUANTIZE of a {input.dtype} tensor")


@converter("DENSIFY")
def DENSIFY(cx: TfliteContext, input: Value) -> Value:
    # the reader densifies sparse constants (tensor.sparse), so this is a copy of a constant
    if not input.is_const:
        cx.unsupported("DENSIFY of a tensor computed at run time")
    return input


# -- transposes, pads, slices ----------------------------------------------------------------------
@converter("TRANSPOSE")
def TRANSPOSE(cx: TfliteContext, input: Value, perm: Value) -> Value:
    x = _data(cx, input)
    p = [cx.axis(int(a), x.type.rank, "perm") for a in cx.ints(perm, "perm")]
    if sorted(p) != list(range(x.type.rank)):
        cx.invalid("perm", p, f"a permutation of {x.type.rank} axes")
    return cx.transpose(x, p)


def _paddings(cx: TfliteContext, paddings: Value, rank: int) -> tuple[int, ...]:
    p = np.asarray(cx.constant(paddings, "paddings"), np.int64).reshape(-1, 2)
    if p.shape[0] != rank:
        cx.invalid("paddings", p.tolist(), f"[{rank}, 2] (before, after) per dim")
    if (p < 0).any():
        cx.invalid("paddings", p.tolist(), "non-negative pads")
    return tuple(int(v) for v in p[:, 0]) + tuple(int(v) for v in p[:, 1])


@converter("PAD")
def PAD(cx: TfliteContext, input: Value, paddings: Value) -> Value:
    x = _data(cx, input)
    pads = _paddings(cx, paddings, x.type.rank)
    if not any(pads):
        return x
    # quantized integers pad with the zero point: the real value 0
    value = 0.0 if x.dtype.startswith("float") else (
        x.type.quant.zero_point[0] if q.is_quantized(x) else 0)
    return cx.op("pad", x, pads=pads, mode="constant", value=value)


@converter("PADV2")
def PADV2(cx: TfliteContext, input: Value, paddings: Value, constant_values: Value | None = None
          ) -> Value:
    x = _data(cx, input)
    pads = _paddings(cx, paddings, x.type.rank)
    fill = 0.0 if constant_values is None else float(
        np.asarray(cx.constant(_data(cx, constant_values, 2), "constant_values")).reshape(-1)[0])
    if not any(pads):
        return x
    return cx.op("pad", x, pads=pads, mode="constant",
                 value=fill if x.dtype.startswith("float") else int(fill))


@converter("MIRROR_PAD")
def MIRROR_PAD(cx: TfliteContext, input: Value, paddings: Value, *, mode) -> Value:
    x = _data(cx, input)
    pads = _paddings(cx, paddings, x.type.rank)
    if mode == "REFLECT":
        return cx.op("pad", x, pads=pads, mode="reflect") if any(pads) else x
    if mode != "SYMMETRIC":
        cx.unsupported_attribute("mode", mode, "REFLECT, SYMMETRIC")
    # SYMMETRIC repeats the edge: the mirrored slices joined around x, one axis at a time
    r = x.type.rank
    for ax in range(r):
        before, after = pads[ax], pads[r + ax]
        if not before and not after:
            continue
        n = x.shape[ax]
        if before > n or after > n:
            cx.invalid("paddings", list(pads), f"at most {n} along dim {ax} for SYMMETRIC")
        parts = []
        if before:
            parts.append(_reverse(cx, cx.slice(x, ax, 0, before), ax))
        parts.append(x)
        if after:
            parts.append(_reverse(cx, cx.slice(x, ax, n - after, n), ax))
        x = cx.concat(parts, ax)
    return x


def _reverse(cx: TfliteContext, x: Value, axis: int) -> Value:
    n = x.shape[axis]
    if n == 1:
        return x
    starts, ends, steps = [0] * x.type.rank, list(x.shape), [1] * x.type.rank
    starts[axis], ends[axis], steps[axis] = n - 1, -1, -1
    return cx.op("slice", x, starts=tuple(starts), ends=tuple(ends), steps=tuple(steps))


@converter("REVERSE_V2")
def REVERSE_V2(cx: TfliteContext, input: Value, axis: Value) -> Value:
    x = _data(cx, input)
    for a in cx.axes(axis, x.type.rank):
        x = _reverse(cx, x, a)
    return x


@converter("SLICE")
def SLICE(cx: TfliteContext, input: Value, begin: Value, size: Value) -> Value:
    x = _data(cx, input)
    b, s = cx.ints(begin, "begin"), cx.ints(size, "size")
    if len(b) != x.type.rank or len(s) != x.type.rank:
        cx.invalid("begin", b, f"{x.type.rank} values, as size")
    ends = []
    for i, (start, n, dim) in enumerate(zip(b, s, x.shape)):
        end = dim if n == -1 else start + n
        if not 0 <= start <= end <= dim:
            cx.invalid("size", s, f"a slice inside {list(x.shape)} from {b}")
        ends.append(end)
    return cx.op("slice", x, starts=tuple(b), ends=tuple(ends), steps=(1,) * x.type.rank) \
        if tuple(b) != (0,) * x.type.rank or tuple(ends) != x.shape else x


@converter("STRIDED_SLICE")
def STRIDED_SLICE(cx: TfliteContext, input: Value, begin: Value, end: Value,
                  strides: Value | None = None, *, begin_mask, end_mask, ellipsis_mask,
                  new_axis_mask, shrink_axis_mask, offset) -> Value:
    x = _data(cx, input)
    b = cx.ints(begin, "begin")
    e = cx.ints(end, "end")
    s = cx.ints(strides, "strides") if strides is not None else [1] * len(b)
    if not len(b) == len(e) == len(s):
        cx.invalid("begin", b, "begin, end and strides of one length")
    if any(v == 0 for v in s):
        cx.invalid("strides", s, "non-zero strides")
    starts, ends, steps, out_shape = _strided_spec(x.shape, b, e, s, begin_mask, end_mask,
                                                   ellipsis_mask, new_axis_mask,
                                                   shrink_axis_mask, bool(offset))
    y = x
    if starts != [0] * x.type.rank or ends != list(x.shape) or steps != [1] * x.type.rank:
        y = cx.op("slice", x, starts=tuple(starts), ends=tuple(ends), steps=tuple(steps))
    return cx.reshape(y, out_shape)


def _bit(mask: int, i: int) -> bool:
    return bool((mask >> i) & 1)


def _strided_spec(shape, begin, end, strides, begin_mask, end_mask, ellipsis_mask,
                  new_axis_mask, shrink_axis_mask, offset):
    """TensorFlow's strided slice as a full-rank IR slice (starts, ends, steps, clamped) and the
    output shape (shrunk dims dropped, new axes inserted)."""
    rank, n = len(shape), len(begin)
    if not any(_bit(ellipsis_mask, i) for i in range(n)):  # an implicit ellipsis at the end
        ellipsis_mask |= 1 << n
        begin, end, strides = list(begin) + [0], list(end) + [0], list(strides) + [1]
        n += 1
    # sparse spec entries -> dense dims
    dense = []  # per input dim: (b, e, s, begin masked, end masked, shrink) or None (full)
    out: list[tuple[str, int]] = []  # ("new", -) or ("dim", input dim) or ("shrink", dim)
    for i in range(n):
        if _bit(ellipsis_mask, i):
            after_new = sum(_bit(new_axis_mask, j) for j in range(i + 1, n))
            covered = rank - (n - 1 - i) + after_new - len(dense)
            for _ in range(max(covered, 0)):
                out.append(("dim", len(dense)))
                dense.append(None)
        elif _bit(new_axis_mask, i):
            out.append(("new", -1))
        else:
            d = len(dense)
            if d >= rank:
                raise ValueError(f"strided slice indexes {d + 1} dims of a rank-{rank} input")
            dense.append((begin[i], end[i], strides[i], _bit(begin_mask, i), _bit(end_mask, i),
                          _bit(shrink_axis_mask, i)))
            out.append(("shrink" if _bit(shrink_axis_mask, i) else "dim", d))
    while len(dense) < rank:
        out.append(("dim", len(dense)))
        dense.append(None)
    starts, ends, steps, sizes = [], [], [], []
    for d, spec in enumerate(dense):
        dim = shape[d]
        if spec is None:
            starts.append(0)
            ends.append(dim)
            steps.append(1)
            sizes.append(dim)
            continue
        b, e, s, bm, em, shrink = spec
        if offset and not shrink:
            e = b + e
        if shrink:
            b = b + dim if b < 0 else b
            if not 0 <= b < dim:
                raise ValueError(f"strided slice index {spec[0]} is out of range for dim {dim}")
            starts.append(b)
            ends.append(b + 1)
            steps.append(1)
            sizes.append(1)
            continue
        bb, ee = _clamp(b, bm, True, s, dim), _clamp(e, em, False, s, dim)
        length = max(0, -(-(ee - bb) // s)) if s > 0 else max(0, -(-(bb - ee) // -s))
        if length == 0:
            raise ValueError("strided slice gives an empty tensor; Neo needs non-empty ones")
        starts.append(bb)
        ends.append(ee)
        steps.append(s)
        sizes.append(length)
    out_shape = []
    for kind, d in out:
        if kind == "new":
            out_shape.append(1)
        elif kind == "dim":
            out_shape.append(sizes[d])
    return starts, ends, steps, out_shape


def _clamp(v: int, masked: bool, first: bool, step: int, dim: int) -> int:
    """A strided slice bound in [0, dim] (step > 0) or [-1, dim - 1] (step < 0, -1: past the
    start); a masked one is the whole range's."""
    lo, hi = (0, dim) if step > 0 else (-1, dim - 1)
    if masked:
        return lo if (step > 0) == first else hi
    v = v + dim if v < 0 else v
    return min(max(v, lo), hi)


@converter("TILE")
def TILE(cx: TfliteContext, input: Value, multiples: Value) -> Value:
    x = _data(cx, input)
    reps = cx.ints(multiples, "multiples")
    if len(reps) != x.type.rank or any(r < 1 for r in reps):
        cx.invalid("multiples", reps, f"{x.type.rank} positive values")
    if all(r == 1 for r in reps):
        return x
    # (d0, d1, ...) -> (1, d0, 1, d1, ...) -> expand to (r0, d0, r1, d1, ...) -> (r0*d0, ...)
    spread = [v for d in x.shape for v in (1, d)]
    wide = [v for r, d in zip(reps, x.shape) for v in (r, d)]
    y = cx.op("expand", cx.reshape(x, spread), shape=tuple(wide))
    return cx.reshape(y, [r * d for r, d in zip(reps, x.shape)])


@converter("BROADCAST_TO")
def BROADCAST_TO(cx: TfliteContext, input: Value, shape: Value) -> Value:
    x = _data(cx, input)
    target = tuple(cx.ints(shape, "shape"))
    if broadcast_shapes(x.shape, target) != target:
        cx.invalid("shape", list(target), f"a shape {list(x.shape)} broadcasts to")
    return x if x.shape == target else cx.op("expand", x, shape=target)


@converter("FILL")
def FILL(cx: TfliteContext, dims: Value, value: Value) -> Value:
    shape = tuple(cx.ints(dims, "dims"))
    v = _data(cx, value, 1)
    return cx.op("expand", cx.reshape(v, ()), shape=shape) if shape else cx.reshape(v, ())


@converter("ZEROS_LIKE")
def ZEROS_LIKE(cx: TfliteContext, input: Value) -> Value:
    return cx.const(np.zeros(input.shape, ir.np_dtype(_output_dtype(cx))))


@converter("ONES_LIKE")
def ONES_LIKE(cx: TfliteContext, input: Value) -> Value:
    return cx.const(np.ones(input.shape, ir.np_dtype(_output_dtype(cx))))


@converter("RANGE")
def RANGE(cx: TfliteContext, start: Value, limit: Value, delta: Value) -> Value:
    a, b, d = (np.asarray(cx.constant(v, w)).reshape(()) for v, w in
               ((start, "start"), (limit, "limit"), (delta, "delta")))
    return cx.const(np.arange(a, b, d).astype(ir.np_dtype(_output_dtype(cx))))


# -- joining and splitting -------------------------------------------------------------------------
@converter("CONCATENATION")
def CONCATENATION(cx: TfliteContext, *values: Value, axis, fused_activation_function) -> Value:
    xs = _same_dtype(cx, list(values))
    a = cx.axis(axis, xs[0].type.rank)
    if any(q.is_quantized(v) for v in xs):
        # inputs of other parameters than the output's are rescaled (uint8 models)
        out_q, dtype = q.output_params(cx)
        xs = [q.relabel(cx, v, out_q, dtype) for v in xs]
        if fused_activation_function not in (None, "NONE"):
            cx.unsupported_attribute("fused_activation_function", fused_activation_function,
                                     "NONE on quantized inputs")
    parts = [v for v in xs if v.shape[a] > 0] or xs
    return cx.activation(cx.concat(parts, a), fused_activation_function)


@converter("PACK")
def PACK(cx: TfliteContext, *values: Value, values_count, axis) -> Value:
    xs = _same_dtype(cx, list(values))
    if values_count and values_count != len(xs):
        cx.invalid("values_count", values_count, f"the {len(xs)} inputs")
    a = cx.axis(axis, xs[0].type.rank + 1)
    return cx.concat([cx.reshape(v, v.shape[:a] + (1,) + v.shape[a:]) for v in xs], a)


@converter("UNPACK")
def UNPACK(cx: TfliteContext, input: Value, *, num, axis) -> list[Value]:
    x = _data(cx, input)
    a = cx.axis(axis, x.type.rank)
    n = x.shape[a]
    if num and num != n:
        cx.invalid("num", num, f"{n}, the size of dim {a}")
    rest = x.shape[:a] + x.shape[a + 1:]
    return [cx.reshape(cx.slice(x, a, i, i + 1), rest) for i in range(n)]


def _split(cx: TfliteContext, x: Value, axis: int, sizes: list[int]) -> list[Value]:
    outs, begin = [], 0
    for size in sizes:
        outs.append(cx.slice(x, axis, begin, begin + size))
        begin += size
    return outs


@converter("SPLIT")
def SPLIT(cx: TfliteContext, axis: Value, input: Value, *, num_splits) -> list[Value]:
    x = _data(cx, input, 1)
    a = cx.axis(axis, x.type.rank)
    n = num_splits or len(cx.info.outputs)
    if x.shape[a] % n:
        cx.invalid("num_splits", n, f"a divisor of {x.shape[a]}")
    return _split(cx, x, a, [x.shape[a] // n] * n)


@converter("SPLIT_V")
def SPLIT_V(cx: TfliteContext, input: Value, size_splits: Value, axis: Value, *, num_splits
            ) -> list[Value]:
    del num_splits  # the length of size_splits
    x = _data(cx, input)
    a = cx.axis(axis, x.type.rank)
    sizes = cx.ints(size_splits, "size_splits")
    if sizes.count(-1) == 1:
        sizes[sizes.index(-1)] = x.shape[a] - (sum(sizes) + 1)
    if sum(sizes) != x.shape[a] or any(s < 0 for s in sizes):
        cx.invalid("size_splits", sizes, f"sizes adding up to {x.shape[a]}")
    return _split(cx, x, a, sizes)


# -- indexing --------------------------------------------------------------------------------------
@converter("GATHER")
def GATHER(cx: TfliteContext, params: Value, indices: Value, *, axis, batch_dims) -> Value:
    x = _data(cx, params)
    a = cx.axis(axis, x.type.rank)
    if batch_dims:
        cx.unsupported_attribute("batch_dims", batch_dims, "0")
    if indices.dtype not in ("int32", "int64"):
        cx.invalid("indices", indices.dtype, "int32 or int64 indices")
    return cx.op("gather", x, indices, axis=a)


@converter("GATHER_ND")
def GATHER_ND(cx: TfliteContext, params: Value, indices: Value) -> Value:
    return cx.op("gather_nd", _data(cx, params), indices, batch_dims=0)


# -- resizing and rearranging ----------------------------------------------------------------------
def tflite_nearest(n_in: int, n_out: int, align_corners: bool, half_pixel: bool) -> np.ndarray:
    """The source index of every output position, in float32 as TFLite's kernels compute it."""
    f = np.float32
    scale = f(n_in - 1) / f(n_out - 1) if align_corners and n_out > 1 else f(n_in) / f(n_out)
    pos = (np.arange(n_out, dtype=f) + f(0.5 if half_pixel else 0.0)) * f(scale)
    # TfLiteRound rounds half away from zero; positions are non-negative
    idx = np.floor(pos + f(0.5)) if align_corners else np.floor(pos)
    return np.clip(idx.astype(np.int64), 0, n_in - 1)


def _resize(cx: TfliteContext, input: Value, size: Value, align_corners, half_pixel_centers,
            mode: str) -> Value:
    x = _data(cx, input)
    if x.type.rank != 4:
        cx.unsupported(f"resizing a rank-{x.type.rank} tensor; NHWC images are expected")
    oh, ow = cx.ints(size, "size")
    n, ih, iw, c = x.shape
    if align_corners and half_pixel_centers and mode == "linear":
        cx.unsupported("align_corners and half_pixel_centers together")
    if q.is_quantized(x) and mode == "linear":
        return q.resize_bilinear(cx, x, (oh, ow), bool(align_corners), bool(half_pixel_centers))
    if (oh, ow) == (ih, iw) and not align_corners:
        return x
    coord = ("align_corners" if align_corners else
             "half_pixel" if half_pixel_centers else "asymmetric")
    if mode == "linear":
        return cx.op("resize", x, size=(n, oh, ow, c), scales=(1.0, oh / ih, ow / iw, 1.0),
                     mode="linear", coord=coord)
    # nearest: the IR's resize where its source indices are TFLite's (checked here, since
    # TFLite computes them in float32), else a gather of TFLite's own indices
    nearest_mode = "round_prefer_ceil" if align_corners or half_pixel_centers else "floor"
    exact = True
    tables = []
    for n_in, n_out in ((ih, oh), (iw, ow)):
        want = tflite_nearest(n_in, n_out, bool(align_corners), bool(half_pixel_centers))
        tables.append(want)
        if align_corners and half_pixel_centers:
            exact = False
            continue
        got = resize_axis_table(n_in, n_out, n_out / n_in, "nearest", coord, nearest_mode,
                                -0.75, 0)[0][:, 0]
        exact = exact and np.array_equal(got, want)
    if exact:
        return cx.op("resize", x, size=(n, oh, ow, c), scales=(1.0, oh / ih, ow / iw, 1.0),
                     mode="nearest", coord=coord, nearest_mode=nearest_mode)
    y = cx.op("gather", x, cx.const(tables[0].astype(np.int32)), axis=1)
    return cx.op("gather", y, cx.const(tables[1].astype(np.int32)), axis=2)


@converter("RESIZE_BILINEAR")
def RESIZE_BILINEAR(cx: TfliteContext, input: Value, size: Value, *, align_corners,
                    half_pixel_centers) -> Value:
    return _resize(cx, input, size, align_corners, half_pixel_centers, "linear")


@converter("RESIZE_NEAREST_NEIGHBOR")
def RESIZE_NEAREST_NEIGHBOR(cx: TfliteContext, input: Value, size: Value, *, align_corners,
                            half_pixel_centers) -> Value:
    return _resize(cx, input, size, align_corners, half_pixel_centers, "nearest")


@converter("DEPTH_TO_SPACE")
def DEPTH_TO_SPACE(cx: TfliteContext, input: Value, *, block_size) -> Value:
    # out[n, h * b + i, w * b + j, c] = in[n, h, w, (i * b + j) * C + c]
    x = _data(cx, input)
    n, h, w, c = x.shape
    b = block_size
    if b < 1 or c % (b * b):
        cx.invalid("block_size", b, f"a block whose square divides the {c} channels")
    y = cx.transpose(cx.reshape(x, (n, h, w, b, b, c // (b * b))), (0, 1, 3, 2, 4, 5))
    return cx.reshape(y, (n, h * b, w * b, c // (b * b)))


@converter("SPACE_TO_DEPTH")
def SPACE_TO_DEPTH(cx: TfliteContext, input: Value, *, block_size) -> Value:
    x = _data(cx, input)
    n, h, w, c = x.shape
    b = block_size
    if b < 1 or h % b or w % b:
        cx.invalid("block_size", b, f"a block dividing the {h}x{w} plane")
    y = cx.transpose(cx.reshape(x, (n, h // b, b, w // b, b, c)), (0, 1, 3, 2, 4, 5))
    return cx.reshape(y, (n, h // b, w // b, b * b * c))
