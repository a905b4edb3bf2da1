"""Data-movement ops (reshape, transpose, concat, slice, pad, resize, gather, expand) and reductions.

Attributes here are normalized by the frontend: axes are non-negative, slices are given for every dim
and already clamped, reshape carries the final shape.
"""
from __future__ import annotations

import math

import numpy as np

from .ops_elementwise import broadcast_shapes
from .registry import FusionKind, define_op
from .types import TensorType


def _contig(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a if a.flags.c_contiguous else a.copy()


def _reshape_infer(attrs, types):
    x = types[0]
    shape = tuple(attrs["shape"])
    if math.prod(shape) != x.size:
        raise ValueError(f"cannot reshape {x.shape} ({x.size} elements) to {shape}")
    return [TensorType(shape, x.dtype)]


define_op("reshape", FusionKind.INJECTIVE, _reshape_infer,
          lambda attrs, x: x.reshape(attrs["shape"]), attrs={"shape": None})


def _transpose_infer(attrs, types):
    x = types[0]
    perm = tuple(attrs["perm"])
    if sorted(perm) != list(range(x.rank)):
        raise ValueError(f"perm {perm} is not a permutation of {x.rank} axes")
    return [TensorType(tuple(x.shape[p] for p in perm), x.dtype)]


define_op("transpose", FusionKind.INJECTIVE, _transpose_infer,
          lambda attrs, x: _contig(np.transpose(x, attrs["perm"])), attrs={"perm": None})


def _concat_infer(attrs, types):
    ax = attrs["axis"]
    first = types[0]
    if not 0 <= ax < first.rank:
        raise ValueError(f"concat axis {ax} out of range for rank {first.rank}")
    for t in types[1:]:
        if t.dtype != first.dtype or t.rank != first.rank or any(
                a != b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != ax):
            raise ValueError(f"concat inputs {first} and {t} do not match off axis {ax}")
    shape = list(first.shape)
    shape[ax] = sum(t.shape[ax] for t in types)
    return [TensorType(tuple(shape), first.dtype)]


define_op("concat", FusionKind.INJECTIVE, _concat_infer,
          lambda attrs, *xs: np.concatenate(xs, axis=attrs["axis"]), inputs=(1, -1),
          attrs={"axis": 0})


def slice_len(start: int, end: int, step: int) -> int:
    return max(0, -(-(end - start) // step)) if step > 0 else max(0, -(-(start - end) // -step))


def _slice_infer(attrs, types):
    x = types[0]
    st, en, sp = attrs["starts"], attrs["ends"], attrs["steps"]
    if not len(st) == len(en) == len(sp) == x.rank:
        raise ValueError(f"slice needs starts/ends/steps for all {x.rank} dims")
    if any(s == 0 for s in sp):
        raise ValueError("slice step 0")
    return [TensorType(tuple(slice_len(a, b, c) for a, b, c in zip(st, en, sp)), x.dtype)]


def _slice_ref(attrs, x):
    idx = tuple(slice(a, (b if b >= 0 else None), c)
                for a, b, c in zip(attrs["starts"], attrs["ends"], attrs["steps"]))
    return _contig(x[idx])


define_op("slice", FusionKind.INJECTIVE, _slice_infer, _slice_ref,
          attrs={"starts": None, "ends": None, "steps": None})


def _pad_infer(attrs, types):
    x = types[0]
    pads = attrs["pads"]
    if len(pads) != 2 * x.rank:
        raise ValueError(f"pad needs {2 * x.rank} pad values, got {len(pads)}")
    shape = tuple(x.shape[i] + pads[i] + pads[x.rank + i] for i in range(x.rank))
    if any(d < 0 for d in shape):
        raise ValueError(f"pads {pads} crop {x.shape} below zero")
    if attrs["mode"] not in ("constant", "reflect", "edge", "wrap"):
        raise ValueError(f"pad mode {attrs['mode']!r} is not constant, reflect, edge or wrap")
    return [TensorType(shape, x.dtype)]


def _pad_ref(attrs, x):
    r = x.ndim
    pads = attrs["pads"]
    # Negative pads crop first, then positive pads extend.
    crop = tuple(slice(max(0, -pads[i]), x.shape[i] - max(0, -pads[r + i])) for i in range(r))
    x = x[crop]
    widths = [(max(0, pads[i]), max(0, pads[r + i])) for i in range(r)]
    mode = attrs["mode"]
    if mode == "constant":
        return np.pad(x, widths, constant_values=np.asarray(attrs["value"]).astype(x.dtype))
    return np.pad(x, widths, mode={"reflect": "reflect", "edge": "edge", "wrap": "wrap"}[mode])


define_op("pad", FusionKind.INJECTIVE, _pad_infer, _pad_ref,
          attrs={"pads": None, "mode": "constant", "value": 0.0})


def _gather_infer(attrs, types):
    x, idx = types
    ax = attrs["axis"]
    if not 0 <= ax < x.rank:
        raise ValueError(f"gather axis {ax} out of range for rank {x.rank}")
    if idx.dtype not in ("int32", "int64"):
        raise TypeError(f"gather indices must be int32 or int64, got {idx.dtype}")
    return [TensorType(x.shape[:ax] + idx.shape + x.shape[ax + 1:], x.dtype)]


def _gather_ref(attrs, x, idx):
    ax = attrs["axis"]
    idx = np.where(idx < 0, idx + x.shape[ax], idx)
    return np.take(x, idx, axis=ax)


define_op("gather", FusionKind.INJECTIVE, _gather_infer, _gather_ref, inputs=2, attrs={"axis": 0})


def _gather_elements_infer(attrs, types):
    x, idx = types
    ax = attrs["axis"]
    if not 0 <= ax < x.rank or idx.rank != x.rank:
        raise ValueError(f"gather_elements: axis {ax}, data rank {x.rank}, indices rank "
                         f"{idx.rank}")
    if idx.dtype not in ("int32", "int64"):
        raise TypeError(f"gather_elements indices must be int32 or int64, got {idx.dtype}")
    return [TensorType(idx.shape, x.dtype)]


def _gather_elements_ref(attrs, x, idx):
    ax = attrs["axis"]
    idx = np.where(idx < 0, idx + x.shape[ax], idx)
    return np.take_along_axis(x, idx, axis=ax)


define_op("gather_elements", FusionKind.INJECTIVE, _gather_elements_infer, _gather_elements_ref,
          inputs=2, attrs={"axis": 0})


def _gather_nd_infer(attrs, types):
    x, idx = types
    b = attrs["batch_dims"]
    k = idx.shape[-1] if idx.rank else 0
    if idx.rank < 1 or b + k > x.rank or x.shape[:b] != idx.shape[:b]:
        raise ValueError(f"gather_nd: data {x.shape}, indices {idx.shape}, batch_dims {b}")
    if idx.dtype not in ("int32", "int64"):
        raise TypeError(f"gather_nd indices must be int32 or int64, got {idx.dtype}")
    return [TensorType(idx.shape[:-1] + x.shape[b + k:], x.dtype)]


def _gather_nd_ref(attrs, x, idx):
    b = attrs["batch_dims"]
    k = idx.shape[-1]
    out = np.empty(idx.shape[:-1] + x.shape[b + k:], x.dtype)
    for pos in np.ndindex(*idx.shape[:-1]):
        where = tuple(int(i) + (x.shape[b + j] if i < 0 else 0) for j, i in enumerate(idx[pos]))
        out[pos] = x[pos[:b] + where]
    return out


define_op("gather_nd", FusionKind.INJECTIVE, _gather_nd_infer, _gather_nd_ref, inputs=2,
          attrs={"batch_dims": 0})


# -- scatter: each output element is the input combined with every update whose index hits it, in
# the updates' order ("none" keeps the last) ----------------------------------------------------
SCATTER_REDUCTIONS = ("none", "add", "mul", "max", "min")
_COMBINE = {"none": lambda a, b: b, "add": np.add, "mul": np.multiply, "max": np.maximum,
            "min": np.minimum}


def _scatter_check(name, attrs, x, idx, upd):
    if attrs["reduction"] not in SCATTER_REDUCTIONS:
        raise ValueError(f"{name} reduction {attrs['reduction']!r}")
    if idx.dtype not in ("int32", "int64"):
        raise TypeError(f"{name} indices must be int32 or int64, got {idx.dtype}")
    if upd.dtype != x.dtype:
        raise TypeError(f"{name} updates are {upd.dtype}, data {x.dtype}")


def _scatter_elements_infer(attrs, types):
    x, idx, upd = types
    _scatter_check("scatter_elements", attrs, x, idx, upd)
    ax = attrs["axis"]
    if not 0 <= ax < x.rank or idx.shape != upd.shape or idx.rank != x.rank:
        raise ValueError(f"scatter_elements: data {x.shape}, indices {idx.shape}, updates "
                         f"{upd.shape}, axis {ax}")
    return [x]


def _scatter_elements_ref(attrs, x, idx, upd):
    ax, combine = attrs["axis"], _COMBINE[attrs["reduction"]]
    out = x.copy()
    for pos in np.ndindex(*idx.shape):
        i = int(idx[pos])
        target = pos[:ax] + (i + x.shape[ax] if i < 0 else i,) + pos[ax + 1:]
        out[target] = combine(out[target], upd[pos])
    return out


define_op("scatter_elements", FusionKind.INJECTIVE, _scatter_elements_infer,
          _scatter_elements_ref, inputs=3, attrs={"axis": 0, "reduction": "none"})


def _scatter_nd_infer(attrs, types):
    x, idx, upd = types
    _scatter_check("scatter_nd", attrs, x, idx, upd)
    k = idx.shape[-1] if idx.rank else 0
    if idx.rank < 1 or k > x.rank or upd.shape != idx.shape[:-1] + x.shape[k:]:
        raise ValueError(f"scatter_nd: data {x.shape}, indices {idx.shape}, updates {upd.shape}")
    return [x]


def _scatter_nd_ref(attrs, x, idx, upd):
    combine = _COMBINE[attrs["reduction"]]
    out = x.copy()
    for pos in np.ndindex(*idx.shape[:-1]):
        target = tuple(int(i) + (x.shape[j] if i < 0 else 0) for j, i in enumerate(idx[pos]))
        out[target] = combine(out[target], upd[pos])
    return out


define_op("scatter_nd", FusionKind.INJECTIVE, _scatter_nd_infer, _scatter_nd_ref, inputs=3,
          attrs={"reduction": "none"})


def _expand_infer(attrs, types):
    x = types[0]
    return [TensorType(broadcast_shapes(x.shape, tuple(attrs["shape"])), x.dtype)]


define_op("expand", FusionKind.BROADCAST, _expand_infer,
          lambda attrs, x: _contig(
              np.broadcast_to(x, broadcast_shapes(x.shape, tuple(attrs["shape"])))),
          attrs={"shape": None})


# -- resize -------------------------------------------------------------------------------------
def resize_axis_table(in_len: int, out_len: int, scale: float, mode: str, coord: str,
                      nearest_mode: str, cubic_a: float, exclude_outside: int,
                      roi: tuple[float, float] = (0.0, 1.0)):
    """Per-axis taps: (index[out, taps], weight[out, taps], valid[out]) as ONNX Resize defines them.

    `valid` is False where tf_crop_and_resize samples outside the input (extrapolation value there).
    """
    o = np.arange(out_len, dtype=np.float64)
    if coord == "half_pixel":
        x = (o + 0.5) / scale - 0.5
    elif coord == "half_pixel_symmetric":
        adj = out_len / (scale * in_len)
        x = in_len / 2 * (1 - adj) + (o + 0.5) / scale - 0.5
    elif coord == "pytorch_half_pixel":
        x = (o + 0.5) / scale - 0.5 if out_len > 1 else np.zeros_like(o)
    elif coord == "align_corners":
        # ONNX scales by the unrounded output length scale * in_len (= out_len for given sizes).
        length = scale * in_len
        x = o * (in_len - 1) / (length - 1) if length != 1 else np.zeros_like(o)
    elif coord == "asymmetric":
        x = o / scale
    elif coord == "tf_crop_and_resize":
        s, e = roi
        x = (s * (in_len - 1) + o * (e - s) * (in_len - 1) / (out_len - 1) if out_len > 1
             else np.full_like(o, 0.5 * (s + e) * (in_len - 1)))
    else:
        raise ValueError(f"resize coordinate_transformation_mode {coord!r} is not supported")
    valid = np.ones(out_len, bool)
    if coord == "tf_crop_and_resize":
        valid = (x >= 0) & (x <= in_len - 1)
    if mode == "nearest":
        if nearest_mode == "round_prefer_floor":
            i = np.where(x - np.floor(x) == 0.5, np.floor(x), np.round(x))
        elif nearest_mode == "round_prefer_ceil":
            i = np.floor(x + 0.5)
        elif nearest_mode == "floor":
            i = np.floor(x)
        elif nearest_mode == "ceil":
            i = np.ceil(x)
        else:
            raise ValueError(f"resize nearest_mode {nearest_mode!r} is not supported")
        idx = np.clip(i, 0, in_len - 1).astype(np.int64)[:, None]
        return idx, np.ones((out_len, 1)), valid
    if mode == "linear":
        if coord != "tf_crop_and_resize" and coord != "align_corners":
            x = np.clip(x, 0, in_len - 1)
        x0 = np.floor(x)
        frac = x - x0
        taps = np.stack([x0, x0 + 1], 1)
        w = np.stack([1 - frac, frac], 1)
    elif mode == "cubic":
        x0 = np.floor(x)
        t = x - x0
        a = cubic_a
        taps = np.stack([x0 - 1, x0, x0 + 1, x0 + 2], 1)
        d = np.stack([1 + t, t, 1 - t, 2 - t], 1)
        w = np.where(d <= 1, ((a + 2) * d - (a + 3)) * d * d + 1,
                     ((a * d - 5 * a) * d + 8 * a) * d - 4 * a)
    else:
        raise ValueError(f"resize mode {mode!r} is not supported")
    inside = (taps >= 0) & (taps <= in_len - 1)
    if exclude_outside:
        w = np.where(inside, w, 0.0)
        w = w / np.maximum(w.sum(1, keepdims=True), 1e-300)
    idx = np.clip(taps, 0, in_len - 1).astype(np.int64)
    return idx, w, valid


def _resize_infer(attrs, types):
    x = types[0]
    size = tuple(attrs["size"])
    if len(size) != x.rank:
        raise ValueError(f"resize size {size} does not match rank {x.rank}")
    return [TensorType(size, x.dtype)]


def resize_tables(attrs, in_shape):
    roi = attrs.get("roi") or ()
    tables = []
    for ax, (n_in, n_out) in enumerate(zip(in_shape, attrs["size"])):
        r = (roi[ax], roi[len(in_shape) + ax]) if roi else (0.0, 1.0)
        if n_in == n_out and attrs["scales"][ax] == 1.0 and attrs["coord"] != "tf_crop_and_resize":
            tables.append(None)  # identity axis
            continue
        tables.append(resize_axis_table(n_in, n_out, attrs["scales"][ax], attrs["mode"],
                                        attrs["coord"], attrs["nearest_mode"], attrs["cubic_coeff_a"],
                                        attrs["exclude_outside"], r))
    return tables


def _resize_ref(attrs, x):
    out = x.astype(np.float64)
    mask = np.ones((), bool)
    for ax, tab in enumerate(resize_tables(attrs, x.shape)):
        if tab is None:
            continue
        idx, w, valid = tab
        m = np.zeros((idx.shape[0], x.shape[ax]))
        for t in range(idx.shape[1]):
            np.add.at(m, (np.arange(idx.shape[0]), idx[:, t]), w[:, t])
        out = np.moveaxis(np.tensordot(m, np.moveaxis(out, ax, 0), axes=1), 0, ax)
        vshape = [1] * x.ndim
        vshape[ax] = -1
        mask = mask & valid.reshape(vshape)
    out = np.where(mask, out, attrs["extrapolation_value"])
    if x.dtype.kind in "iu":  # round half to even and saturate, as the ONNX reference
        info = np.iinfo(x.dtype)
        out = np.clip(np.round(out), info.min, info.max)
    return out.astype(x.dtype)


define_op("resize", FusionKind.INJECTIVE, _resize_infer, _resize_ref,
          attrs={"size": None, "scales": None, "mode": "nearest", "coord": "half_pixel",
                 "nearest_mode": "round_prefer_floor", "cubic_coeff_a": -0.75,
                 "exclude_outside": 0, "extrapolation_value": 0.0, "roi": None})


# -- reductions ---------------------------------------------------------------------------------
def _reduce_infer(attrs, types):
    x = types[0]
    axes = tuple(attrs["axes"])
    if any(not 0 <= a < x.rank for a in axes):
        raise ValueError(f"reduce axes {axes} out of range for rank {x.rank}")
    if attrs["keepdims"]:
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    else:
        shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    return [TensorType(shape, x.dtype)]


def _reducer(fn, acc64=True):
    def ref(attrs, x):
        axes = tuple(attrs["axes"])
        xx = x.astype(np.float64) if acc64 and x.dtype.kind == "f" else x
        if not axes:
            return x.copy()
        return np.asarray(fn(xx, axis=axes, keepdims=bool(attrs["keepdims"]))).astype(x.dtype)

    return ref


for _name, _fn in (("reduce_sum", np.sum), ("reduce_mean", np.mean), ("reduce_max", np.max),
                   ("reduce_min", np.min), ("reduce_prod", np.prod)):
    define_op(_name, FusionKind.REDUCTION, _reduce_infer, _reducer(_fn),
              attrs={"axes": (), "keepdims": 1})
