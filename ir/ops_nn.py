"""Neural-network ops: convolution, matmul, pooling, normalization, softmax."""
from __future__ import annotations

import itertools

import numpy as np

from .ops_elementwise import broadcast_shapes
from .registry import FusionKind, define_op
from .types import FLOAT_DTYPES, TensorType


def conv_out_dim(size: int, k: int, stride: int, pad_b: int, pad_e: int, dil: int) -> int:
    return (size + pad_b + pad_e - dil * (k - 1) - 1) // stride + 1


def pool_out_dim(size, k, stride, pad_b, pad_e, dil, ceil_mode) -> int:
    span = size + pad_b + pad_e - dil * (k - 1) - 1
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    # The last window must start inside the input or its leading padding (PyTorch and ONNX agree).
    if (out - 1) * stride >= size + pad_b:
        out -= 1
    return out


def _spatial(attrs, nsp):
    strides = tuple(attrs["strides"] or (1,) * nsp)
    dil = tuple(attrs["dilations"] or (1,) * nsp)
    pads = tuple(attrs["pads"] or (0,) * (2 * nsp))
    if len(strides) != nsp or len(dil) != nsp or len(pads) != 2 * nsp:
        raise ValueError(f"strides/dilations/pads do not match {nsp} spatial dims")
    return strides, dil, pads


# -- data layout ----------------------------------------------------------------------------------
# Convolutions and pools carry the layout of their data (input and output): "NCHW", channels
# first, or "NHWC", channels last (the names stand for any number of spatial dims: NCW/NWC,
# NCDHW/NDHWC). Weights are always OIHW (conv) / IOHW (conv_transpose). Kernels compute
# channels first; passes/layout.py converts the others and cancels the transposes that makes.
LAYOUTS = ("NCHW", "NHWC")


def to_channels_first(rank: int) -> tuple[int, ...]:
    """The transpose perm from channels-last to channels-first data."""
    return (0, rank - 1) + tuple(range(1, rank - 1))


def to_channels_last(rank: int) -> tuple[int, ...]:
    """The transpose perm from channels-first to channels-last data."""
    return (0,) + tuple(range(2, rank)) + (1,)


def _layout_aware(infer, reference):
    """infer and reference for any layout, from channels-first ones."""

    def layout_infer(attrs, types):
        layout = attrs.get("layout", "NCHW")
        if layout not in LAYOUTS:
            raise ValueError(f"layout {layout!r} is not one of {', '.join(LAYOUTS)}")
        if layout == "NCHW" or types[0].rank < 3:
            return infer(attrs, types)
        x = types[0]
        first = TensorType(tuple(x.shape[i] for i in to_channels_first(x.rank)), x.dtype)
        outs = infer(attrs, [first, *types[1:]])
        return [TensorType(tuple(o.shape[i] for i in to_channels_last(o.rank)), o.dtype)
                for o in outs]

    def layout_reference(attrs, x, *rest):
        if attrs.get("layout", "NCHW") == "NCHW":
            return reference(attrs, x, *rest)
        y = reference(attrs, np.transpose(x, to_channels_first(x.ndim)), *rest)
        return np.ascontiguousarray(np.transpose(y, to_channels_last(y.ndim)))

    return layout_infer, layout_reference


def half_weights(x: TensorType, w: TensorType) -> bool:
    """Weights stored at half precision for a float32 conv or matmul (--precision fp16): the op
    computes in float32 on them."""
    return x.dtype == "float32" and w.dtype in ("float16", "bfloat16")


# -- conv ---------------------------------------------------------------------------------------
def _conv_infer(attrs, types):
    x, w = types[0], types[1]
    if x.rank < 3 or w.rank != x.rank:
        raise ValueError(f"conv needs input and weight of equal rank >= 3, got {x.shape} and {w.shape}")
    if x.dtype not in FLOAT_DTYPES or not (w.dtype == x.dtype or half_weights(x, w)):
        raise TypeError(f"conv needs float tensors of one dtype, got {x.dtype} and {w.dtype}")
    g = attrs["groups"]
    nsp = x.rank - 2
    strides, dil, pads = _spatial(attrs, nsp)
    if x.shape[1] != w.shape[1] * g:
        raise ValueError(f"conv input has {x.shape[1]} channels; weight {w.shape} with groups={g} "
                         f"expects {w.shape[1] * g}")
    if w.shape[0] % g:
        raise ValueError(f"conv output channels {w.shape[0]} not divisible by groups={g}")
    if len(types) == 3 and types[2].shape != (w.shape[0],):
        raise ValueError(f"conv bias must have shape ({w.shape[0]},), got {types[2].shape}")
    sp = tuple(conv_out_dim(x.shape[2 + i], w.shape[2 + i], strides[i], pads[i], pads[nsp + i], dil[i])
               for i in range(nsp))
    if any(d <= 0 for d in sp):
        raise ValueError(f"conv output would be empty: spatial {sp}")
    return [TensorType((x.shape[0], w.shape[0]) + sp, x.dtype)]


def _windows(xp: np.ndarray, kshape, strides, dil, out_sp):
    """Yield (kernel index, strided view of xp[..., spatial]) for each kernel position."""
    nsp = len(kshape)
    for k in itertools.product(*(range(d) for d in kshape)):
        sl = tuple(slice(k[i] * dil[i], k[i] * dil[i] + strides[i] * (out_sp[i] - 1) + 1, strides[i])
                   for i in range(nsp))
        yield k, xp[(Ellipsis,) + sl]


def conv_reference(attrs, x, w, b=None):
    g = attrs["groups"]
    nsp = x.ndim - 2
    strides, dil, pads = _spatial(attrs, nsp)
    xp = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[nsp + i]) for i in range(nsp)])
    out_sp = tuple(conv_out_dim(x.shape[2 + i], w.shape[2 + i], strides[i], pads[i], pads[nsp + i],
                                dil[i]) for i in range(nsp))
    n, c = x.shape[:2]
    oc = w.shape[0]
    acc = np.zeros((n, g, oc // g) + out_sp, dtype=np.float64)
    wg = w.reshape((g, oc // g, c // g) + w.shape[2:]).astype(np.float64)
    for k, win in _windows(xp, w.shape[2:], strides, dil, out_sp):
        xw = win.reshape((n, g, c // g) + out_sp).astype(np.float64)
        acc += np.einsum("ngc...,goc->ngo...", xw, wg[(Ellipsis,) + k])
    out = acc.reshape((n, oc) + out_sp)
    if b is not None:
        out += b.reshape((1, oc) + (1,) * nsp)
    return out.astype(x.dtype)


define_op("conv", FusionKind.OUT_ELEMWISE_FUSABLE, *_layout_aware(_conv_infer, conv_reference),
          inputs=(2, 3),
          attrs={"strides": None, "pads": None, "dilations": None, "groups": 1, "layout": "NCHW"})


# -- conv_transpose ---------------------------------------------------------------------------
def _convt_out(attrs, x, w):
    nsp = len(x) - 2
    strides, dil, pads = _spatial(attrs, nsp)
    op = tuple(attrs["output_padding"] or (0,) * nsp)
    return tuple((x[2 + i] - 1) * strides[i] - pads[i] - pads[nsp + i] + dil[i] * (w[2 + i] - 1)
                 + op[i] + 1 for i in range(nsp))


def _convt_infer(attrs, types):
    x, w = types[0], types[1]
    if x.rank < 3 or w.rank != x.rank:
        raise ValueError(f"conv_transpose needs input and weight of equal rank >= 3, got {x.shape}, "
                         f"{w.shape}")
    g = attrs["groups"]
    if x.shape[1] != w.shape[0]:
        raise ValueError(f"conv_transpose input has {x.shape[1]} channels, weight {w.shape} "
                         f"expects {w.shape[0]}")
    sp = _convt_out(attrs, x.shape, w.shape)
    if any(d <= 0 for d in sp):
        raise ValueError(f"conv_transpose output would be empty: {sp}")
    return [TensorType((x.shape[0], w.shape[1] * g) + sp, x.dtype)]


def conv_transpose_reference(attrs, x, w, b=None):
    g = attrs["groups"]
    nsp = x.ndim - 2
    strides, dil, pads = _spatial(attrs, nsp)
    n, c = x.shape[:2]
    ocg = w.shape[1]
    ksp = w.shape[2:]
    full = tuple((x.shape[2 + i] - 1) * strides[i] + dil[i] * (ksp[i] - 1) + 1 for i in range(nsp))
    out_sp = _convt_out(attrs, x.shape, w.shape)
    size = tuple(max(full[i], pads[i] + out_sp[i]) for i in range(nsp))
    acc = np.zeros((n, g, ocg) + size, dtype=np.float64)
    xg = x.reshape((n, g, c // g) + x.shape[2:]).astype(np.float64)
    wg = w.reshape((g, c // g, ocg) + ksp).astype(np.float64)
    for k in itertools.product(*(range(d) for d in ksp)):
        sl = tuple(slice(k[i] * dil[i], k[i] * dil[i] + strides[i] * (x.shape[2 + i] - 1) + 1,
                         strides[i]) for i in range(nsp))
        acc[(slice(None),) * 3 + sl] += np.einsum("ngc...,gco->ngo...", xg, wg[(Ellipsis,) + k])
    crop = tuple(slice(pads[i], pads[i] + out_sp[i]) for i in range(nsp))
    out = acc[(slice(None),) * 3 + crop].reshape((n, g * ocg) + out_sp)
    if b is not None:
        out = out + b.reshape((1, -1) + (1,) * nsp)
    return out.astype(x.dtype)


define_op("conv_transpose", FusionKind.OPAQUE,
          *_layout_aware(_convt_infer, conv_transpose_reference), inputs=(2, 3),
          attrs={"strides": None, "pads": None, "dilations": None, "groups": 1,
                 "output_padding": None, "layout": "NCHW"})


# -- matmul -------------------------------------------------------------------------------------
def _matmul_infer(attrs, types):
    a, b = types
    if a.dtype != b.dtype and not half_weights(a, b):
        raise TypeError(f"matmul operands differ in dtype: {a.dtype} and {b.dtype}")
    if a.rank == 0 or b.rank == 0:
        raise ValueError("matmul operands must have rank >= 1")
    ash = a.shape if a.rank > 1 else (1,) + a.shape
    bsh = b.shape if b.rank > 1 else b.shape + (1,)
    if ash[-1] != bsh[-2]:
        raise ValueError(f"matmul inner dimensions differ: {a.shape} @ {b.shape}")
    batch = broadcast_shapes(ash[:-2], bsh[:-2])
    out = batch + (ash[-2], bsh[-1])
    if a.rank == 1:
        out = out[:-2] + out[-1:]
    if b.rank == 1:
        out = out[:-1]
    return [TensorType(out, a.dtype)]


def _matmul_ref(attrs, a, b):
    if a.dtype.kind == "f":
        return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(a.dtype)
    return np.matmul(a, b).astype(a.dtype)


define_op("matmul", FusionKind.OUT_ELEMWISE_FUSABLE, _matmul_infer, _matmul_ref, inputs=2)


# -- pooling ------------------------------------------------------------------------------------
_POOL_ATTRS = {"kernel": None, "strides": None, "pads": None, "dilations": None, "ceil_mode": 0,
               "count_include_pad": 0, "layout": "NCHW"}


def _pool_infer(attrs, types):
    x = types[0]
    k = tuple(attrs["kernel"])
    nsp = len(k)
    if x.rank != nsp + 2:
        raise ValueError(f"pool with a {nsp}-D kernel needs a rank-{nsp + 2} input, got {x.shape}")
    strides, dil, pads = _spatial(attrs, nsp)
    sp = tuple(pool_out_dim(x.shape[2 + i], k[i], strides[i], pads[i], pads[nsp + i], dil[i],
                            attrs["ceil_mode"]) for i in range(nsp))
    if any(d <= 0 for d in sp):
        raise ValueError(f"pool output would be empty: {sp}")
    return [TensorType(x.shape[:2] + sp, x.dtype)]


def _pool_reference(attrs, x, kind):
    k = tuple(attrs["kernel"])
    nsp = len(k)
    strides, dil, pads = _spatial(attrs, nsp)
    out_sp = tuple(pool_out_dim(x.shape[2 + i], k[i], strides[i], pads[i], pads[nsp + i], dil[i],
                                attrs["ceil_mode"]) for i in range(nsp))
    # Extra trailing padding so that ceil-mode windows stay in bounds; it never counts.
    extra = [max(0, (out_sp[i] - 1) * strides[i] + dil[i] * (k[i] - 1) + 1
                 - (x.shape[2 + i] + pads[i] + pads[nsp + i])) for i in range(nsp)]
    widths = [(0, 0), (0, 0)] + [(pads[i], pads[nsp + i] + extra[i]) for i in range(nsp)]
    if kind == "max":
        fill = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
        xp = np.pad(x, widths, constant_values=fill)
        out = None
        for _, win in _windows(xp, k, strides, dil, out_sp):
            out = win.copy() if out is None else np.maximum(out, win)
        return out.astype(x.dtype)
    xp = np.pad(x.astype(np.float64), widths)
    inside = np.pad(np.ones(x.shape[2:]), [(pads[i], pads[nsp + i] + extra[i]) for i in range(nsp)])
    if attrs["count_include_pad"]:
        inside = np.pad(np.ones(tuple(x.shape[2 + i] + pads[i] + pads[nsp + i] for i in range(nsp))),
                        [(0, extra[i]) for i in range(nsp)])
    total = 0.0
    count = 0.0
    for (kk, win), (_, cwin) in zip(_windows(xp, k, strides, dil, out_sp),
                                    _windows(inside, k, strides, dil, out_sp)):
        total = total + win
        count = count + cwin
    return (total / np.maximum(count, 1)).astype(x.dtype)


define_op("max_pool", FusionKind.REDUCTION, *_layout_aware(
    _pool_infer, lambda attrs, x: _pool_reference(attrs, x, "max")), attrs=_POOL_ATTRS)
define_op("avg_pool", FusionKind.REDUCTION, *_layout_aware(
    _pool_infer, lambda attrs, x: _pool_reference(attrs, x, "avg")), attrs=_POOL_ATTRS)


# -- normalization, softmax ---------------------------------------------------------------------
def _bn_infer(attrs, types):
    x = types[0]
    for t in types[1:]:
        if t.shape != (x.shape[1],):
            raise ValueError(f"batch_norm parameters must have shape ({x.shape[1]},), got {t.shape}")
    return [x]


def _bn_ref(attrs, x, scale, bias, mean, var):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    inv = scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + attrs["epsilon"])
    out = (x - mean.reshape(shape)) * inv.reshape(shape) + bias.reshape(shape)
    return out.astype(x.dtype)


define_op("batch_norm", FusionKind.BROADCAST, _bn_infer, _bn_ref, inputs=5,
          attrs={"epsilon": 1e-5})


def _axis_infer(attrs, types):
    x = types[0]
    if not -x.rank <= attrs["axis"] < x.rank:
        raise ValueError(f"axis {attrs['axis']} out of range for rank {x.rank}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"needs a float tensor, got {x.dtype}")
    return [x]


def _softmax(attrs, x):
    x64 = x.astype(np.float64)
    e = np.exp(x64 - x64.max(axis=attrs["axis"], keepdims=True))
    return (e / e.sum(axis=attrs["axis"], keepdims=True)).astype(x.dtype)


def _log_softmax(attrs, x):
    x64 = x.astype(np.float64)
    m = x64 - x64.max(axis=attrs["axis"], keepdims=True)
    return (m - np.log(np.exp(m).sum(axis=attrs["axis"], keepdims=True))).astype(x.dtype)


define_op("softmax", FusionKind.OPAQUE, _axis_infer, _softmax, attrs={"axis": -1})
define_op("log_softmax", FusionKind.OPAQUE, _axis_infer, _log_softmax, attrs={"axis": -1})


# -- fused: a kernel's worth of nodes, made by passes.fusion ------------------------------------
def _fused_infer(attrs, types):
    body = attrs["body"]
    if [v.type for v in body.inputs] != list(types):
        raise ValueError("fused body inputs do not match the node's inputs")
    return [v.type for v in body.outputs]


def _fused_ref(attrs, *xs):
    from .interpreter import interpret

    body = attrs["body"]
    return interpret(body, {v.name: x for v, x in zip(body.inputs, xs)})


define_op("fused", FusionKind.OPAQUE, _fused_infer, _fused_ref, inputs=(0, -1),
          attrs={"body": None, "anchor": None})


# -- Winograd F(2x2, 3x3) convolution ---------------------------------------------------------
# A 3x3 stride-1 conv as three ops (passes/winograd.py): winograd_input turns each 4x4 input
# patch (stride 2) into 16 transformed values, a 16-group 1x1 conv multiplies them by the
# transformed weights G g G^T, and winograd_output turns each 16 products into a 2x2 output tile.
# 2.25x fewer multiplies than the direct conv; the matrices are Lavin & Gray's.
WINOGRAD_F2 = {
    "BT": np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32),
    "G": np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float32),
    "AT": np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32),
}


def winograd_tiles(oh: int, ow: int) -> tuple[int, int]:
    return -(-oh // 2), -(-ow // 2)


def winograd_weights(w: np.ndarray) -> np.ndarray:
    """[OC, C, 3, 3] -> the 16-group 1x1 conv weight [16 * OC, C, 1, 1] (group = 4 * i + k)."""
    G = WINOGRAD_F2["G"].astype(np.float64)
    u = np.einsum("ia,ocab,kb->ikoc", G, w.astype(np.float64), G)
    return np.ascontiguousarray(u.reshape(16 * w.shape[0], w.shape[1], 1, 1).astype(np.float32))


def _winograd_input_infer(attrs, types):
    x = types[0]
    if x.rank != 4 or x.dtype != "float32":
        raise ValueError(f"winograd_input needs a float32 NCHW tensor, got {x}")
    th, tw = attrs["tiles"]
    return [TensorType((x.shape[0], 16 * x.shape[1], 1, th * tw), x.dtype)]


def winograd_input_reference(attrs, x):
    n, c, h, w = x.shape
    th, tw = attrs["tiles"]
    top, left = attrs["pads"][0], attrs["pads"][1]
    xp = np.zeros((n, c, 2 * th + 2, 2 * tw + 2), np.float32)
    hh, ww = min(h, 2 * th + 2 - top), min(w, 2 * tw + 2 - left)
    xp[:, :, top:top + hh, left:left + ww] = x[:, :, :hh, :ww]
    rows = np.arange(th)[:, None] * 2 + np.arange(4)[None, :]  # [th, 4]
    cols = np.arange(tw)[:, None] * 2 + np.arange(4)[None, :]  # [tw, 4]
    d = xp[:, :, rows[:, None, :, None], cols[None, :, None, :]]  # [n, c, th, tw, 4, 4]
    BT = WINOGRAD_F2["BT"]
    v = np.einsum("ir,ncturj,kj->nikctu", BT, d, BT)
    return np.ascontiguousarray(v.reshape(n, 16 * c, 1, th * tw).astype(np.float32))


def _winograd_output_infer(attrs, types):
    m = types[0]
    if m.rank != 4 or m.shape[1] % 16 or m.dtype != "float32":
        raise ValueError(f"winograd_output needs float32 [N, 16*OC, 1, tiles], got {m}")
    oh, ow = attrs["out"]
    return [TensorType((m.shape[0], m.shape[1] // 16, oh, ow), m.dtype)]


def winograd_output_reference(attrs, m):
    n = m.shape[0]
    oc = m.shape[1] // 16
    th, tw = attrs["tiles"]
    oh, ow = attrs["out"]
    mm = m.reshape(n, 4, 4, oc, th, tw)
    AT = WINOGRAD_F2["AT"]
    y = np.einsum("ai,nikotu,bk->notaub", AT, mm, AT).reshape(n, oc, 2 * th, 2 * tw)
    return np.ascontiguousarray(y[:, :, :oh, :ow].astype(np.float32))


define_op("winograd_input", FusionKind.OPAQUE, _winograd_input_infer, winograd_input_reference,
          attrs={"pads": (0, 0, 0, 0), "tiles": None})
define_op("winograd_output", FusionKind.OUT_ELEMWISE_FUSABLE, _winograd_output_infer,
          winograd_output_reference, attrs={"out": None, "tiles": None})
