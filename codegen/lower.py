"""Lowering a fused node to one kernel: GEMM-based for conv/matmul anchors, tensor expressions
for everything else."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from llvmlite import ir

from neo.ir import Node
from neo.ir.ops_nn import _spatial

from . import kernel_trees, lower_quant, te
from .blocking import channel_shape, gemm_shape
from .kernel_gemm import (
    Blocking,
    GemmSpec,
    Im2col,
    choose_blocking,
    emit_gemm_kernel,
    pack_a,
    pack_b,
    row_chunk,
)
from .kernel_te import KernelContext, _mask_loads, build_body_expr, emit_te_kernel
from .llvm_util import I64
from .render import Renderer
from .te_ops import COMPUTES
from .tuning import Tuning


class LoweringError(NotImplementedError):
    pass


@dataclass
class KernelInfo:
    func: str
    op: str  # a readable description: conv2d+add+relu
    args: list  # Value (graph value) or ("param", name, ndarray) per buffer slot, output last
    parallel: bool = True
    extra_params: list = field(default_factory=list)
    kernel: str = "te"  # te, gemm, direct, channel, depthwise, plane (pool), winograd
    tile: tuple[int, int] | None = None  # register tile (rows, vectors) of gemm/direct/channel


def describe(node: Node) -> str:
    body = node.attrs.get("body")
    if body is None:
        return node.op
    ops = [n.op for n in body.nodes]
    if len(ops) > 12:  # a fused per-row integer chain (an int8 softmax) has hundreds of ops
        ops = ops[:5] + [f"({len(ops) - 10} more)"] + ops[-5:]
    return "+".join(ops)


def lower_node(module: ir.Module, node: Node, func: str, tun: Tuning) -> KernelInfo:
    """The kernel of one fused node, shaped for `tun` (codegen/tuning.py: tuning_for(target))."""
    body = node.attrs["body"]
    anchor = node.attrs.get("anchor")
    if anchor == "conv":
        info = _try_conv_gemm(module, node, func, tun)
        if info is not None:
            return info
    if anchor == "matmul":
        info = _try_matmul_gemm(module, node, func, tun)
        if info is not None:
            return info
    # dedicated kernels: the anchor's, or else the first op's that has one (they decide whether
    # they take this body: its producers and epilogue)
    own = KERNELS.get(anchor) if anchor is not None else next(
        (KERNELS[n.op] for n in body.nodes if n.op in KERNELS), None)
    if own is not None:
        info = own(module, node, func, tun)  # None: not this instance, use TE
        if info is not None:
            return info
    return _lower_te(module, node, body, func, tun)


def _lanes(vector_bits: int, dtype: str) -> int:
    item = {"float64": 8, "int64": 8, "uint64": 8}.get(dtype, 4)
    return max(1, vector_bits // (8 * item))


def _lower_te(module, node, body, func, tun: Tuning) -> KernelInfo:
    ext = list(node.inputs)
    ctx = KernelContext(len(ext), consts={i: v.data for i, v in enumerate(ext) if v.is_const})
    ins = [te.buffer_tensor(i, v.shape, v.dtype) for i, v in enumerate(ext)]
    out_t = build_body_expr(body, ctx, ins)
    out = node.outputs[0]
    dtypes = [v.dtype for v in ext] + [te_dtype(t) for t in ctx.tables] + [out.dtype]
    emit_te_kernel(module, func, out.shape, out.dtype, out_t.fn, dtypes, len(dtypes) - 1,
                   _lanes(tun.vector_bits, out.dtype))
    args = list(ext) + [("param", f"{node.name}.table{i}", t) for i, t in enumerate(ctx.tables)]
    return KernelInfo(func, describe(node), args + [out])


def te_dtype(arr: np.ndarray) -> str:
    from neo.ir.types import dtype_name

    return dtype_name(arr.dtype)


# -- epilogues ----------------------------------------------------------------------------------
def _epilogue(node: Node, anchor_index_fn, bias_buf: int | None, ctx: KernelContext, out_rank: int,
              anchor: Node | None = None):
    """TE expression of the fused output given the anchor's accumulator (the first body node's
    output unless `anchor` says otherwise; only later nodes are evaluated) as Var('acc')."""
    body = node.attrs["body"]
    first = anchor if anchor is not None else body.nodes[0]
    ext = list(node.inputs)
    tensors = [te.buffer_tensor(i, v.shape, v.dtype) for i, v in enumerate(ext)]
    env: dict[int, te.Tensor] = {id(v): t for v, t in zip(body.inputs, tensors)}
    acc = te.Var("acc", "float32")

    def anchor_fn(idx):
        if bias_buf is not None:
            return acc + te.Load(bias_buf, idx[1], "float32")
        return acc

    env[id(first.outputs[0])] = te.Tensor(first.outputs[0].shape, "float32", anchor_fn)
    for n in body.nodes[body.nodes.index(first) + 1:]:
        ins = [env[id(v)] for v in n.inputs]
        fn = COMPUTES[n.op](n.attrs, n.outputs[0].type, ins, ctx)
        env[id(n.outputs[0])] = te.Tensor(n.outputs[0].shape, n.outputs[0].dtype, fn)
    final = env[id(body.outputs[0])]
    vars_ = tuple(te.Var(f"e{d}") for d in range(out_rank))
    return final(vars_), vars_


def _make_epilogue(expr: te.Expr, vec_var: str, bind, buf_dtypes: list[str], bufs_holder: list,
                   limit: int, lanes: int):
    """A GemmSpec.epilogue callback rendering `expr` per tile row with the accumulator bound."""
    trivial = isinstance(expr, te.Var) and expr.name == "acc"
    if trivial:
        return None
    masked_expr = _mask_loads(expr, vec_var)

    def cb(b, acc, m, n0, img, grp, mask):
        env = bind(b, m, n0, img, grp)
        env["acc"] = acc
        env[vec_var + "#base"] = n0
        env[vec_var] = n0
        env[vec_var + "#end"] = I64(limit)
        r = Renderer(b, bufs_holder[0], buf_dtypes, lanes, vec_var, b.function.entry_basic_block)
        return r.vec(r.render(masked_expr if mask is not None else expr, env))

    return cb


# -- conv ---------------------------------------------------------------------------------------
def _try_conv_gemm(module, node: Node, func: str, tun: Tuning) -> KernelInfo | None:
    body = node.attrs["body"]
    conv = body.nodes[0]
    x_b, w_b = conv.inputs[0], conv.inputs[1]
    ext = list(node.inputs)
    pos = {id(v): i for i, v in enumerate(body.inputs)}
    xi, wi = pos[id(x_b)], pos[id(w_b)]
    bi = pos[id(conv.inputs[2])] if len(conv.inputs) > 2 else None
    w = ext[wi]
    half = half_arithmetic(conv)
    if ((conv.outputs[0].dtype != "float32" and not half) or not w.is_const
            or x_b.type.rank not in (3, 4) or (bi is not None and not ext[bi].is_const)):
        return None
    g = conv.attrs["groups"]
    nsp = x_b.type.rank - 2
    strides, dil, pads = _spatial(conv.attrs, nsp)
    if nsp == 1:  # 1-D as 2-D with height 1
        strides, dil, pads = (1,) + strides, (1,) + dil, (0, pads[0], 0, pads[1])
    xs = x_b.shape if nsp == 2 else x_b.shape[:2] + (1,) + x_b.shape[2:]
    ws = w.shape if nsp == 2 else w.shape[:2] + (1,) + w.shape[2:]
    os_ = conv.outputs[0].shape if nsp == 2 else (conv.outputs[0].shape[:2] + (1,)
                                                   + conv.outputs[0].shape[2:])
    N_img, C, H, W = xs
    OC, Cg, KH, KW = ws
    OH, OW = os_[2], os_[3]
    M, K, P = OC // g, Cg * KH * KW, OH * OW
    if half:
        return _half_conv(module, node, func, ext, xi, wi, bi, (N_img, C, H, W),
                          (OC, Cg, KH, KW), (OH, OW), strides, dil, pads, g, tun)
    if Cg == 1 and g > 1 and KH * KW > 1 and tun.vector_bits >= 128:
        info = _depthwise_conv(module, node, func, ext, xi, wi, bi, (N_img, C, H, W),
                               (OC, Cg, KH, KW), (OH, OW), strides, dil, pads, g, tun)
        if info is not None:
            return info
    if K < 4 or (M < 4 and g > 1):
        return None  # depthwise-like: the direct tensor-expression kernel is better
    pays, blk = channel_tiles_pay(tun, M, K, (H, W), (OH, OW), (KH, KW), strides, pads, g)
    packed = pack_a(w.data.astype(np.float32).reshape(OC, K), g, M, K, blk.mr).astype(w.dtype)
    if pays:
        return _channel_conv(module, node, func, ext, xi, wi, bi, blk, (N_img, C, H, W),
                             (OC, Cg, KH, KW), (OH, OW), strides, dil, g, M, tun)
    if (KH * KW > 1 and strides[1] == 1 and not any(pads) and blk.lanes > 1
            and dil[1] == 1 and OW >= 2 * blk.lanes):
        return _direct_conv(module, node, func, ext, xi, wi, bi, packed, blk, (N_img, C, H, W),
                            (OC, Cg, KH, KW), (OH, OW), strides, dil, g, M, K)
    return _gemm_conv(module, node, func, ext, xi, wi, bi, blk, packed, (N_img, C, H, W),
                      (OC, Cg, KH, KW), (OH, OW), strides, dil, pads, g, tun.l2_bytes,
                      a_dtype=w.dtype)


def channel_tiles_pay(tun: Tuning, M: int, K: int, plane, out, kernel, strides, pads,
                      g: int) -> tuple[bool, Blocking]:
    """Whether a float32 conv (M output channels per group, a reduction of K, on an H x W
    `plane` to an OH x OW `out`) runs on channel-vector tiles (kernel_convc), not the GEMM or
    direct kernels; and the GEMM blocking."""
    (H, W), (OH, OW), (KH, KW) = plane, out, kernel
    P = OH * OW
    direct = KH == KW == 1 and tuple(strides) == (1, 1) and not any(pads)
    if _modelled(tun):
        # AVX-512: GEMM tile and family from the cycle model (codegen/blocking.py)
        gs = gemm_shape(tun, M, P, K, "contig" if direct else "im2col", strides[1],
                        0 if direct else OW)
        blk = Blocking(gs.rows, gs.vectors, tun.lanes, gs.kc)
        # channel vectors less than half full (a few output channels) leave it to the
        # spatial kernels
        full = M / (-(-M // tun.lanes) * tun.lanes)
        # The model misses the weights' cache traffic, which favours channel tiles (a Winograd
        # GEMM's 1 MiB per group): the GEMM takes a 1x1 conv only by a margin.
        # ... nor the stalls of broadcasts a plane apart where the CPU does not prefetch them
        far = KH * KW == 1 and K >= 128 and H * W >= 784 and tun.core_bandwidth_low
        pays = not any(pads) and full > 0.5 and not far and (
            KH * KW > 1 or 0.97 * channel_shape(tun, M, P, K).cycles <= gs.cycles)
        return pays, blk
    blk = choose_blocking(tun.vector_bits, K, M)
    return _channel_kernel_pays(blk, KH * KW, K, M, P, strides, pads, g), blk


def _gemm_conv(module, node, func, ext, xi, wi, bi, blk, packed, xs, ws, os_, strides, dil, pads,
               g, l2_bytes: int = 1 << 20, **dtypes) -> KernelInfo:
    """A conv on the GEMM kernel: weights packed as A, the input read directly (1x1, stride 1,
    unpadded) or through im2col as B; `dtypes` are GemmSpec's element types (fp16 arithmetic)."""
    N_img, C, H, W = xs
    OC, Cg, KH, KW = ws
    OH, OW = os_
    M, K, P = OC // g, Cg * KH * KW, OH * OW
    direct = KH == KW == 1 and strides == (1, 1) and not any(pads)
    im2col = None if direct else Im2col(Cg, H, W, KH, KW, strides[0], strides[1], dil[0], dil[1],
                                         pads[0], pads[1], OW)
    epi, tables, buf_dtypes, bufs_holder = _conv_epilogue(node, ext, bi, M, P, blk.lanes)
    elem = 2 if dtypes.get("a_dtype") == "float16" else 4
    spec = GemmSpec(M=M, N=P, K=K, images=N_img, groups=g, a_buf=wi, a_packed=True,
                    a_strides=(0, 0, 0, 0), b_buf=xi, b_kind="contig" if direct else "im2col",
                    b_strides=(C * H * W, Cg * H * W, H * W), c_buf=len(buf_dtypes) - 1,
                    c_strides=(OC * P, M * P, P), blocking=blk, im2col=im2col, epilogue=epi,
                    mchunk=row_chunk(M, K, blk, elem, l2_bytes), **dtypes)
    out = node.outputs[0]  # a residual the epilogue adds: read as the output is written
    spec.extra["out_like"] = [i for i, v in enumerate(ext) if i not in (xi, wi, bi)
                              and v.shape == out.shape and v.dtype == out.dtype
                              and not v.is_const]
    _emit_with_bufs(module, func, spec, len(buf_dtypes), bufs_holder)
    args: list = list(ext)
    args[wi] = ("param", f"{node.name}.w_packed", packed)
    args += [("param", f"{node.name}.table{i}", t) for i, t in enumerate(tables)]
    return KernelInfo(func, describe(node), args + [node.outputs[0]], kernel="gemm",
                      tile=(blk.mr, blk.nv))


def half_arithmetic(anchor: Node) -> bool:
    """Whether a conv or matmul computes in fp16 (--precision fp16 where the target has fp16
    arithmetic: passes/precision.py gives it float16 activations, weights and output)."""
    x, w = anchor.inputs[0], anchor.inputs[1]
    return x.dtype == w.dtype == anchor.outputs[0].dtype == "float16" and w.type.rank >= 2


def _half_conv(module, node, func, ext, xi, wi, bi, xs, ws, os_, strides, dil, pads, g,
               tun: Tuning) -> KernelInfo | None:
    """A conv in fp16 arithmetic: the channel-vector or GEMM kernel on half elements (twice
    the lanes), chosen as for float32 by the NEON/AVX2 rules (the AVX-512 cycle model is
    calibrated for float32). Depthwise-like convs go to tensor expressions."""
    OC, Cg, KH, KW = ws
    OH, OW = os_
    M, K, P = OC // g, Cg * KH * KW, OH * OW
    if K < 4 or (M < 4 and g > 1) or tun.vector_bits < 128:
        return None
    blk = choose_blocking(tun.vector_bits, K, M, elem_bits=16)
    if _channel_kernel_pays(blk, KH * KW, K, M, P, strides, pads, g):
        return _channel_conv(module, node, func, ext, xi, wi, bi, blk, xs, ws, os_, strides, dil,
                             g, M, tun, half=True)
    packed = pack_a(ext[wi].data.astype(np.float32).reshape(OC, K), g, M, K,
                    blk.mr).astype(np.float16)
    return _gemm_conv(module, node, func, ext, xi, wi, bi, blk, packed, xs, ws, os_, strides, dil,
                      pads, g, tun.l2_bytes, a_dtype="float16", x_dtype="float16",
                      c_dtype=node.outputs[0].dtype, arith="float16")


def _conv_epilogue(node, ext, bi, M: int, P: int, lanes: int, extra_tables=(), anchor=None,
                   over_channels: bool = False):
    """The fused epilogue of a conv kernel, its constant tables, the kernel's buffer dtypes (inputs,
    tables, extra tables, output) and the holder the kernel fills with its buffer pointers.

    The epilogue is indexed (n, oc, [oh = 0,] col): with oh pinned to 0 operands that vary over the
    whole spatial plane are read contiguously along the column. The vector runs over columns
    (callback (b, acc, m, col0, img, grp, mask)), or with `over_channels` over output channels
    (callback (b, acc, m0, col, img, grp, mask); m and m0 count within the group).
    """
    ctx = KernelContext(len(ext))
    out_rank = len(node.outputs[0].shape)
    expr, _ = _epilogue(node, None, bi, ctx, out_rank, anchor)
    tables = list(ctx.tables)
    dtypes = ([v.dtype for v in ext] + [te_dtype(t) for t in tables + list(extra_tables)]
              + [node.outputs[0].dtype])
    holder: list = [None]
    # One index runs over the whole output plane (P positions): the plane's last dim with the
    # others pinned to 0. Epilogue operands are constant over the plane or cover all of it
    # (fusion's _coalescable), so a full-plane operand is read contiguously along it. A load
    # drops the index of a dim of size 1, so where the rows are one element wide (OW == 1)
    # the index runs over the rows instead.
    pinned, col = {}, f"e{out_rank - 1}"
    if out_rank == 4:
        flat_h = node.outputs[0].shape[3] == 1
        pinned = {"e3" if flat_h else "e2": I64(0)}
        col = "e2" if flat_h else "e3"
    if not over_channels:
        def bind(b, m, n0, img, grp):
            return {"e0": img, "e1": b.add(b.mul(grp, I64(M)), m), **pinned}

        return _make_epilogue(expr, col, bind, dtypes, holder, P, lanes), tables, dtypes, holder

    def bind_c(b, p, c0, img, grp):
        return {"e0": img, col: p, **pinned}

    inner = _make_epilogue(expr, "e1", bind_c, dtypes, holder, node.outputs[0].shape[1], lanes)
    if inner is None:
        return None, tables, dtypes, holder

    def cb(b, acc, m0, p, img, grp, mask):
        return inner(b, acc, p, b.add(b.mul(grp, I64(M)), m0), img, grp, mask)

    return cb, tables, dtypes, holder


def _direct_conv(module, node, func, ext, xi, wi, bi, packed, blk, xs, ws, os_, strides, dil, g,
                 M, K) -> KernelInfo:
    from .kernel_direct import DirectConvSpec, emit_direct_conv_kernel, kernel_offsets

    N_img, C, H, W = xs
    OC, Cg, KH, KW = ws
    OH, OW = os_
    koff = kernel_offsets(Cg, KH, KW, H, W, dil[0], dil[1])
    P = OH * OW
    epi, tables, dtypes, bufs_holder = _conv_epilogue(node, ext, bi, M, P, blk.lanes, [koff])
    koff_buf = len(ext) + len(tables)
    spec = DirectConvSpec(M=M, K=K, images=N_img, groups=g, OH=OH, OW=OW, Wp=W, sh=strides[0],
                          x_strides=(C * H * W, Cg * H * W), c_strides=(OC * P, M * P, P),
                          a_buf=wi, x_buf=xi, koff_buf=koff_buf, c_buf=len(dtypes) - 1,
                          blocking=blk, epilogue=epi, extra={"bufs_holder": bufs_holder},
                          a_dtype=str(packed.dtype))
    emit_direct_conv_kernel(module, func, spec, len(dtypes))
    args: list = list(ext)
    args[wi] = ("param", f"{node.name}.w_packed", packed)
    args += [("param", f"{node.name}.table{i}", t) for i, t in enumerate(tables)]
    args += [("param", f"{node.name}.koff", koff)]
    return KernelInfo(func, describe(node), args + [node.outputs[0]], kernel="direct",
                      tile=(blk.mr, blk.nv))


def _max_pool_plane(module, node: Node, func: str, tun: Tuning) -> KernelInfo | None:
    """A 2-D float32 max pool (and its elementwise epilogue) on the plane kernel of
    kernel_dwconv: the padding, -inf here, is filled in cache; ceil-mode windows that run past
    the padding read more of it."""
    from .kernel_dwconv import SCRATCH_LIMIT, DepthwiseSpec, emit_depthwise_kernel

    body = node.attrs["body"]
    pool = next(n for n in body.nodes if n.op == "max_pool")
    x_b = pool.inputs[0]
    ext = list(node.inputs)
    pos = {id(v): i for i, v in enumerate(body.inputs)}
    tun = _row_tuning(tun, pool.outputs[0].shape[-1])
    lanes = tun.lanes
    sources = None
    cat = x_b.producer
    if cat is not None and cat.op == "concat" and cat.attrs["axis"] == 1 and all(
            id(v) in pos for v in cat.inputs) and body.nodes[0] is cat and body.nodes[1] is pool:
        sources = [(pos[id(v)], v.shape[1]) for v in cat.inputs]  # read each part in place
    elif body.nodes[0] is not pool or id(x_b) not in pos:
        return None
    # 8-bit integers (quantized graphs) run in int32 slots, the type's minimum as padding
    integer = x_b.dtype in ("int8", "uint8") and sources is None
    if (x_b.type.rank != 4 or (x_b.dtype != "float32" and not integer) or lanes < 4
            or len(pool.outputs) != 1
            or (not integer and node.outputs[0].dtype != "float32")):  # (it stores float32)
        return None
    strides, dil, pads = _spatial(pool.attrs, 2)
    N_img, C, H, W = x_b.shape
    OH, OW = pool.outputs[0].shape[2:]
    KH, KW = pool.attrs["kernel"]
    need_h = (OH - 1) * strides[0] + (KH - 1) * dil[0] + 1
    need_w = (OW - 1) * strides[1] + (KW - 1) * dil[1] + 1
    spad = (pads[0], pads[1], max(pads[2], need_h - pads[0] - H), max(pads[3], need_w - pads[1] - W))
    spec = DepthwiseSpec(channels=C, multiplier=1, images=N_img, H=H, W=W, OH=OH, OW=OW, KH=KH,
                         KW=KW, strides=strides, dilations=dil, pads=spad,
                         x_buf=pos.get(id(x_b), -1), w_buf=-1, c_buf=0, lanes=lanes, mode="max",
                         sources=sources, rows=_plane_rows(tun, 0),
                         masked_stores_fast=tun.masked_stores_fast,
                         ordered_max=tun.arch == "x86_64" and not integer)
    if integer:
        spec.arith, spec.x_dtype, spec.out_dtype = "int32", x_b.dtype, node.outputs[0].dtype
    if spec.scratch_floats() > SCRATCH_LIMIT or strides[1] > 4 or not _plane_operands(node, pool):
        return None
    if not integer:
        spec.bands = plane_bands(spec)
    extra: list = []
    if integer:  # the epilogue sees the max as an int32 accumulator (plus a zero "bias")
        extra = [np.zeros(C, np.int32)]
        holder: list = [None]
        epi, tables, dtypes = lower_quant.int_epilogue(node, ext, 1, OH * OW, lanes, holder,
                                                       extra)
        epi = _narrowed(epi, node.outputs[0].dtype)
    else:
        epi, tables, dtypes, holder = _conv_epilogue(node, ext, None, 1, OH * OW, lanes,
                                                     anchor=pool)
    spec.c_buf, spec.epilogue, spec.bufs_holder = len(dtypes) - 1, epi, holder
    emit_depthwise_kernel(module, func, spec, len(dtypes))
    args = list(ext) + [("param", f"{node.name}.zero", t) for t in extra]
    args += [("param", f"{node.name}.table{i}", t) for i, t in enumerate(tables)]
    return KernelInfo(func, describe(node), args + [node.outputs[0]], kernel="plane")


def _narrowed(epi, dtype: str):
    """An integer epilogue whose result keeps the int32 of its accumulator (a max pool with no
    requantize after it) stored as `dtype`: the values are already in its range."""
    from .llvm_util import STORAGE

    want = STORAGE[dtype]

    def cb(b, acc, *rest):
        v = epi(b, acc, *rest)
        elem = v.type.element
        if isinstance(elem, ir.IntType) and isinstance(want, ir.IntType) and elem.width > want.width:
            v = b.trunc(v, ir.VectorType(want, v.type.count))
        return v

    cb.prepare = getattr(epi, "prepare", None)
    return cb


def _plane_operands(node: Node, anchor: Node) -> bool:
    """Whether every operand of the epilogue after `anchor` is constant over the output plane or
    covers all of it, as _conv_epilogue reads them. Fusion ensures it for conv anchors; a
    reduction takes any same-shaped epilogue (a [1,C,H,1] operand varies along H only)."""
    body = node.attrs["body"]
    out = node.outputs[0].shape
    inside = {id(o) for n in body.nodes for o in n.outputs}
    for n in body.nodes[body.nodes.index(anchor) + 1:]:
        for v in n.inputs:
            if id(v) not in inside:
                sp = ((1,) * (len(out) - v.type.rank) + v.shape)[2:]
                if any(d != 1 for d in sp) and tuple(sp) != tuple(out[2:]):
                    return False
    return True


def _pad_plane(module, node: Node, func: str, tun: Tuning) -> KernelInfo | None:
    """A lone constant pad of H and W of a float32 NCHW tensor (the conv paddings made explicit)
    as plane copies: vector rows, no per-element bounds checks."""
    from .kernel_dwconv import emit_pad_kernel

    body = node.attrs["body"]
    if len(body.nodes) != 1:
        return None
    pad = body.nodes[0]
    x = node.inputs[0]
    pads = tuple(pad.attrs["pads"] or ())
    lanes = tun.vector_bits // 32
    if (x.type.rank != 4 or x.dtype != "float32" or lanes < 4
            or pad.attrs["mode"] != "constant" or len(pads) != 8 or min(pads) < 0
            or any(pads[i] for i in (0, 1, 4, 5))):
        return None
    N, C, H, W = x.shape
    emit_pad_kernel(module, func, planes=N * C, H=H, W=W,
                    pads=(pads[2], pads[3], pads[6], pads[7]), fill=float(pad.attrs["value"]),
                    lanes=lanes)
    return KernelInfo(func, describe(node), [x, node.outputs[0]], kernel="plane")


def _winograd_input(module, node: Node, func: str, tun: Tuning) -> KernelInfo:
    from .kernel_winograd import emit_winograd_input

    wi = node.attrs["body"].nodes[0]
    x = node.inputs[0]
    N_img, C, H, W = x.shape
    pads = wi.attrs["pads"]
    emit_winograd_input(module, func, images=N_img, C=C, H=H, W=W, pads=(pads[0], pads[1]),
                        tiles=wi.attrs["tiles"], lanes=max(4, tun.vector_bits // 32))
    return KernelInfo(func, describe(node), [x, node.outputs[0]], kernel="winograd")


def _winograd_output(module, node: Node, func: str, tun: Tuning) -> KernelInfo:
    from .kernel_winograd import emit_winograd_output

    body = node.attrs["body"]
    wo = body.nodes[0]
    ext = list(node.inputs)
    mi = {id(v): i for i, v in enumerate(body.inputs)}[id(wo.inputs[0])]
    N_img, OC, OH, OW = wo.outputs[0].shape
    lanes = max(4, tun.vector_bits // 32)
    epi, tables, dtypes, holder = _conv_epilogue(node, ext, None, OC, OH * OW, lanes)
    emit_winograd_output(module, func, images=N_img, OC=OC, out=(OH, OW), tiles=wo.attrs["tiles"],
                         lanes=lanes, m_buf=mi, c_buf=len(dtypes) - 1, nbufs=len(dtypes),
                         epilogue=epi, bufs_holder=holder)
    args = list(ext) + [("param", f"{node.name}.table{i}", t) for i, t in enumerate(tables)]
    return KernelInfo(func, describe(node), args + [node.outputs[0]], kernel="winograd")


def _modelled(tun: Tuning) -> bool:
    """Whether conv tiles and kernel families come from the cycle model (codegen/blocking.py):
    native AVX-512, where it was calibrated. AVX2 and NEON keep the shapes measured on them."""
    return tun.vector_bits >= 512 and tun.masked_stores_fast


def _channel_kernel_pays(blk, khw: int, K: int, M: int, P: int, strides, pads, g: int) -> bool:
    """Channel vectors (kernel_convc) or spatial vectors (GEMM / direct kernels) for this conv.

    Channel tiles never waste lanes on the output plane's size and need no im2col, so they take
    every conv larger than 1x1. A 1x1 conv is a plain GEMM over the plane, which the spatial
    kernel runs at full speed unless the plane is a poor multiple of its panel width (7x7 = 49
    columns in panels of 16); its transposed stores need a long K to amortize. Strided 1x1 convs
    measured faster as im2col GEMMs.
    """
    if blk.lanes == 1 or any(pads) or M < blk.lanes or (g > 1 and M % blk.lanes):
        return False
    if khw > 1:
        return True
    waste = -(-P // blk.nr) * blk.nr / P
    return K >= 64 and waste > 1.15 and tuple(strides) == (1, 1)


def _rows_per_tile(P: int, mr: int, nv: int) -> int:
    """Positions per channel-conv tile: the row count (at most mr, at least half of it) that
    covers the P positions in the fewest FMA cycles. A tile with fewer than 8 accumulators waits
    on FMA latency (two 4-cycle pipes), so a short last tile costs as much as 8 // nv rows."""
    floor = -(-8 // nv)

    def cycles(r):
        full, last = divmod(P, r)
        return full * max(r, floor) + (max(last, floor) if last else 0)

    return min(range(mr, max(floor, mr // 2) - 1, -1), key=lambda r: (cycles(r), -r))


def _channel_conv(module, node, func, ext, xi, wi, bi, blk, xs, ws, os_, strides, dil, g, M,
                  tun: Tuning, half: bool = False) -> KernelInfo:
    from .kernel_convc import (INPUT_PREFETCH_BLOCKS, ChannelConvSpec, emit_channel_conv_kernel,
                               pack_weights)
    from .kernel_gemm import Blocking, fit_columns

    N_img, C, H, W = xs
    OC, Cg, KH, KW = ws
    OH, OW = os_
    P = OH * OW
    transposed = False
    chunk_bytes = None
    if _modelled(tun) and not half:
        shape = channel_shape(tun, M, P, Cg * KH * KW)
        cblk = Blocking(mr=shape.rows, nv=shape.vectors, lanes=blk.lanes)
        transposed = shape.transposed
        chunk_bytes = tun.l2_bytes // 4
        if KH * KW == 1 and g == 1 and tun.core_bandwidth_low:
            # Intel: a 1x1 conv's weights in chunks that stay in L1 (kernel_convc.chunking):
            # on the Xeon resnet50's 1x1 convs on 14x14 and 7x7 ran 5-17% faster (its 2048 ->
            # 512 downsample 1.71 -> 1.46 ms), the 16-group Winograd GEMMs 4-6% slower
            chunk_bytes = tun.l1_bytes // 3
    else:
        # the channel vectors the output channels fill (32 channels are one zmm of halves, not
        # four), the accumulators freed going to more positions
        mr, nv = fit_columns(blk.mr, blk.nv, blk.lanes, M)
        cblk = Blocking(mr=_rows_per_tile(P, mr, nv), nv=nv, lanes=blk.lanes)
    packed = pack_weights(ext[wi].data.astype(np.float32).reshape(OC, Cg, KH, KW), g,
                          cblk.nr).astype(ext[wi].dtype)
    if transposed:  # the epilogue runs on vectors of positions, as in the GEMM kernel
        epi, tables, dtypes, holder = _conv_epilogue(node, ext, bi, M, P, cblk.mr)
    else:
        epi, tables, dtypes, holder = _conv_epilogue(node, ext, bi, M, P, cblk.lanes,
                                                     over_channels=True)
    spec = ChannelConvSpec(M=M, Cg=Cg, KH=KH, KW=KW, images=N_img, groups=g, OH=OH, OW=OW,
                           Hp=H, Wp=W, strides=strides, dilations=dil,
                           x_strides=(C * H * W, Cg * H * W), c_strides=(OC * P, M * P, P),
                           w_buf=wi, x_buf=xi, c_buf=len(dtypes) - 1, blocking=cblk,
                           epilogue=epi, bufs_holder=holder, transposed=transposed,
                           w_dtype=ext[wi].dtype,
                           chunk_bytes=chunk_bytes, x_dtype=ext[xi].dtype,
                           c_dtype=node.outputs[0].dtype,
                           arith="float16" if half else "float32",
                           straight_tiles=tun.arch == "x86_64",
                           input_prefetch=INPUT_PREFETCH_BLOCKS if tun.arch == "x86_64" else 0)
    emit_channel_conv_kernel(module, func, spec, len(dtypes))
    args: list = list(ext)
    args[wi] = ("param", f"{node.name}.w_packed", packed)
    args += [("param", f"{node.name}.table{i}", t) for i, t in enumerate(tables)]
    return KernelInfo(func, describe(node), args + [node.outputs[0]], kernel="channel",
                      tile=(cblk.mr, cblk.nv))


def _row_tuning(tun: Tuning, width: int) -> Tuning:
    """The vector width for a kernel vectorized along output rows `width` wide (the plane
    kernels): the fewest FMA cycles per row. A 7-column row fills half a zmm; where a zmm costs
    two ymm (Zen 4) ymm rows are as fast or faster at every width (ties go narrow: a misaligned
    ymm load splits a cache line half as often), where it costs one (Intel) the widest is."""
    best, best_cost = tun, None
    bits = tun.vector_bits
    while bits >= 128:
        t = tun.narrowed(bits)
        cost = -(-width // t.lanes) / t.fma_per_cycle
        if best_cost is None or cost < best_cost or (cost == best_cost
                                                     and best.narrow_is_cheaper):
            best, best_cost = t, cost
        bits //= 2
    return best


def _plane_rows(tun: Tuning, taps: int) -> int:
    """Output rows a plane kernel computes together: registers for their accumulators beside
    the splatted weights (4 for 3x3 taps with 16 registers, 8 with 32)."""
    return max(2, min(8, tun.registers - taps - 3))


def _depthwise_conv(module, node, func, ext, xi, wi, bi, xs, ws, os_, strides, dil, pads, g,
                    tun: Tuning) -> KernelInfo | None:
    from .kernel_dwconv import SCRATCH_LIMIT, DepthwiseSpec, emit_depthwise_kernel

    N_img, _, H, W = xs
    OC, _, KH, KW = ws
    OH, OW = os_
    tun = _row_tuning(tun, OW)
    lanes = tun.lanes
    spec = DepthwiseSpec(channels=OC, multiplier=OC // g, images=N_img, H=H, W=W, OH=OH, OW=OW,
                         KH=KH, KW=KW, strides=strides, dilations=dil, pads=tuple(pads),
                         x_buf=xi, w_buf=wi, c_buf=0, lanes=lanes,
                         rows=_plane_rows(tun, KH * KW),
                         masked_stores_fast=tun.masked_stores_fast, w_dtype=ext[wi].dtype)
    if spec.scratch_floats() > SCRATCH_LIMIT or strides[1] > 4:
        return None
    spec.bands = plane_bands(spec)
    epi, tables, dtypes, holder = _conv_epilogue(node, ext, bi, 1, OH * OW, lanes)
    spec.c_buf, spec.epilogue, spec.bufs_holder = len(dtypes) - 1, epi, holder
    emit_depthwise_kernel(module, func, spec, len(dtypes))
    args: list = list(ext)
    args[wi] = ("param", f"{node.name}.w", np.ascontiguousarray(
        ext[wi].data.reshape(OC, KH * KW)))
    args += [("param", f"{node.name}.table{i}", t) for i, t in enumerate(tables)]
    return KernelInfo(func, describe(node), args + [node.outputs[0]], kernel="depthwise")


def plane_bands(spec) -> int:
    """Bands of output rows a float depthwise conv or max pool splits each plane into: where the
    whole padded plane's scratch would not fit in half of L1 (a 112x112 plane: 52 KB), bands of
    about 16 KB (at most 4, each at least two row blocks). Measured on a Xeon: mobilenet_v2's
    stride-2 depthwise on 112x112 0.35 -> 0.25 ms, squeezenet's 111x111 max pool 0.14 -> 0.11
    ms on 2 threads; on 28x28 planes bands cost more (the halo rows copied twice, more units)
    than they saved."""
    full = spec.scratch_floats() * 4
    if full <= 32 * 1024:
        return 1
    r = max(1, min(spec.rows, spec.OH))
    return max(1, min(4, -(-full // (16 * 1024)), -(-spec.OH // (2 * r))))


def _emit_with_bufs(module, func, spec, nbufs, bufs_holder):
    spec.extra["bufs_holder"] = bufs_holder
    return emit_gemm_kernel(module, func, spec, nbufs)


# -- matmul -------------------------------------------------------------------------------------
def _try_matmul_gemm(module, node: Node, func: str, tun: Tuning) -> KernelInfo | None:
    body = node.attrs["body"]
    mm = body.nodes[0]
    a_b, b_b = mm.inputs
    ext = list(node.inputs)
    pos = {id(v): i for i, v in enumerate(body.inputs)}
    ai, bi = pos[id(a_b)], pos[id(b_b)]
    A, B = ext[ai], ext[bi]
    half = half_arithmetic(mm) and B.is_const
    if ((mm.outputs[0].dtype != "float32" and not half) or A.type.rank < 2
            or B.type.rank < 2):
        return None
    M, K = A.shape[-2], A.shape[-1]
    N = B.shape[-1]
    a_batch = int(np.prod(A.shape[:-2])) if A.type.rank > 2 else 1
    b_batch = int(np.prod(B.shape[:-2])) if B.type.rank > 2 else 1
    out = node.outputs[0]
    batch = int(np.prod(out.shape[:-2])) if len(out.shape) > 2 else 1
    if b_batch not in (1, batch) or a_batch not in (1, batch):
        return None
    if b_batch == batch and a_batch != batch:
        return None
    if b_batch > 1 and B.is_const:
        return None
    # A batch of row blocks times one B ([64, 1, 256] x [256, 768] in attention) is one GEMM
    # with the batch folded into M: row blocks of one row would leave the microkernel idle.
    fold = b_batch == 1 and a_batch == batch > 1
    Mrows = M * batch if fold else M
    elem = 16 if half else 32
    bits = tun.vector_bits  # vectors no wider than twice the columns: 10 classes of halves
    while bits > 128 and N * elem <= bits // 2:  # fill a ymm, not a third of a zmm
        bits //= 2
    blk = choose_blocking(bits, K, Mrows, elem_bits=elem, N=N)
    ctx = KernelContext(len(ext))
    expr, _ = _epilogue(node, None, None, ctx, len(out.shape))
    dtypes = [v.dtype for v in ext] + [te_dtype(t) for t in ctx.tables] + [out.dtype]
    out_buf = len(dtypes) - 1
    bufs_holder: list = [None]
    rank = len(out.shape)
    batch_shape = out.shape[:-2]

    def bind(b, m, n0, img, grp):
        if fold:  # row m of the folded GEMM: batch m // M, row m % M
            img, m = b.sdiv(m, I64(M)), b.srem(m, I64(M))
        env = {f"e{rank - 2}": m}
        rem = img
        for d in reversed(range(rank - 2)):
            env[f"e{d}"] = b.srem(rem, I64(batch_shape[d])) if d > 0 else rem
            rem = b.sdiv(rem, I64(batch_shape[d]))
        return env

    epi = _make_epilogue(expr, f"e{rank - 1}", bind, dtypes, bufs_holder, N, blk.lanes)
    args: list = list(ext)
    if B.is_const and b_batch == 1:
        args[bi] = ("param", f"{node.name}.b_packed", pack_b(B.data.astype(np.float32)
                                                               .reshape(K, N), blk.nr)
                    .astype(B.dtype))
        kind, bst = "prepacked", (0, 0, 0)
    else:
        kind, bst = "contig", (K * N if b_batch > 1 else 0, 0, N)
    spec = GemmSpec(M=Mrows, N=N, K=K, images=1 if fold else batch, groups=1, a_buf=ai,
                    a_packed=False, a_strides=(M * K if a_batch > 1 else 0, 0, K, 1), b_buf=bi,
                    b_kind=kind, b_strides=bst, c_buf=out_buf, c_strides=(M * N, 0, N),
                    blocking=blk, epilogue=epi, b_dtype=B.dtype, x_dtype=A.dtype,
                    c_dtype=out.dtype, arith="float16" if half else "float32")
    _emit_with_bufs(module, func, spec, len(dtypes), bufs_holder)
    args += [("param", f"{node.name}.table{i}", t) for i, t in enumerate(ctx.tables)]
    return KernelInfo(func, describe(node), args + [out], kernel="gemm", tile=(blk.mr, blk.nv))


# op name -> a dedicated kernel: lower(module, fused_node, func, tuning) -> KernelInfo, or
# None when it does not take this instance (its producers or epilogue), which then goes to the
# tensor-expression path. codegen/registry.py is the lookup.
KERNELS = {
    "winograd_input": _winograd_input,
    "winograd_output": _winograd_output,
    "max_pool": _max_pool_plane,
    "pad": _pad_plane,
    "tree_ensemble": kernel_trees.lower_tree_ensemble,
    "linear_booster": kernel_trees.lower_linear_booster,
    # integer anchors: dot-product kernels (codegen/lower_quant.py, kernel_qconv.py)
    "conv_integer": lower_quant.lower_conv_integer,
    "matmul_integer": lower_quant.lower_matmul_integer,
}
