"""Direct convolution for stride-1 (in width) convs on an explicitly padded input: no im2col.

Output tiles are NR consecutive columns of one output row (the last tile of a row may be shorter:
its vector count and lane mask are static). For a tile, the k-th reduction step (input channel c,
kernel row kh, kernel column kw) reads the NR input elements starting at a precomputed offset
koff[k] from the tile's corner: contiguous, so the microkernel loads them as vectors straight from
the input. Accumulators: MR output channels x NV vectors, as in the GEMM kernel, with the same
packed weights and fused epilogue.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from . import math_table as mt
from .kernel_gemm import Blocking
from .llvm_util import (
    F32,
    I1,
    I32,
    I64,
    PTR,
    for_range,
    gep,
    load_float,
    masked_load,
    masked_store,
    splat,
    split_last,
    task_range,
)


@dataclass
class DirectConvSpec:
    M: int  # output channels per group
    K: int  # input channels per group * KH * KW
    images: int
    groups: int
    OH: int
    OW: int
    Wp: int  # padded input width
    sh: int  # stride along H
    x_strides: tuple[int, int]  # image, group (elements)
    c_strides: tuple[int, int, int]  # image, group, m (elements)
    a_buf: int
    x_buf: int
    koff_buf: int
    c_buf: int
    blocking: Blocking
    epilogue: Callable | None = None
    extra: dict | None = None
    a_dtype: str = "float32"  # the packed weights: float16 with --precision fp16


def kernel_offsets(cg: int, kh: int, kw: int, hp: int, wp: int, dh: int, dw: int) -> np.ndarray:
    c, r, s = np.meshgrid(np.arange(cg), np.arange(kh), np.arange(kw), indexing="ij")
    return (c * hp * wp + r * dh * wp + s * dw).reshape(-1).astype(np.int64)


def emit_direct_conv_kernel(module: ir.Module, name: str, spec: DirectConvSpec, nbufs: int):
    fn = ir.Function(module, ir.FunctionType(I32, [PTR, I32, I32]), name)
    entry = fn.append_basic_block("entry")
    b = ir.IRBuilder(entry)
    bufs = [b.load(gep(b, fn.args[0], I64(i), PTR), typ=PTR) for i in range(nbufs)]
    if spec.extra is not None and "bufs_holder" in spec.extra:
        spec.extra["bufs_holder"][0] = bufs
    blk = spec.blocking
    L, NV, MR, NR = blk.lanes, blk.nv, blk.mr, blk.nr
    vt = ir.VectorType(F32, L)
    # MR x NV accumulators; a short tile (fewer vectors) uses them for more output channels
    accs = [[b.alloca(vt, name=f"acc{r}_{v}") for v in range(NV)] for r in range(MR * NV)]
    body = b.append_basic_block("body")
    b.branch(body)
    b.position_at_end(body)
    A, X, KO, C = (bufs[spec.a_buf], bufs[spec.x_buf], bufs[spec.koff_buf], bufs[spec.c_buf])
    tiles = -(-spec.OW // NR)
    last_cols = spec.OW - (tiles - 1) * NR  # columns in a row's last tile (1..NR)
    units = spec.images * spec.groups * spec.OH * tiles
    lo, hi = task_range(b, units, fn.args[1], fn.args[2])
    with for_range(b, lo, hi, 1, "unit") as unit:
        t = b.srem(unit, I64(tiles))
        rest = b.sdiv(unit, I64(tiles))
        oh = b.srem(rest, I64(spec.OH))
        rest = b.sdiv(rest, I64(spec.OH))
        grp = b.srem(rest, I64(spec.groups))
        img = b.sdiv(rest, I64(spec.groups))
        ow0 = b.mul(t, I64(NR))
        xbase = b.add(b.add(b.mul(img, I64(spec.x_strides[0])), b.mul(grp, I64(spec.x_strides[1]))),
                      b.add(b.mul(oh, I64(spec.sh * spec.Wp)), ow0))
        col0 = b.add(b.mul(oh, I64(spec.OW)), ow0)

        def tiles_for(cols: int):
            nv = -(-cols // L)
            tail = cols - (nv - 1) * L  # lanes used in the last vector
            mask = None if tail == L else ir.Constant(ir.VectorType(I1, L),
                                                      [1] * tail + [0] * (L - tail))
            # rows per tile: whole MR blocks, as many as the accumulators allow at this width
            rows = MR * max(1, NV // nv)
            full, rem = spec.M // rows, spec.M % rows

            def tile(mb, mr):
                _tile(b, spec, A, X, KO, C, accs, mb, mr, nv, mask, img, grp, xbase, col0, vt)

            if full:
                with for_range(b, 0, full * rows, rows, "mb") as mb:
                    tile(mb, rows)
            while rem:  # leftover rows in MR-sized (then smaller) tiles
                step = min(rem, MR)
                tile(I64(spec.M - rem), step)
                rem -= step

        split_last(b, t, tiles, NR, last_cols, tiles_for)
    b.ret(I32(0))
    return fn


def _tile(b, spec: DirectConvSpec, A, X, KO, C, accs, mb, mr, nv, mask, img, grp, xbase, col0, vt):
    blk = spec.blocking
    L, MR = blk.lanes, blk.mr
    zero = ir.Constant(vt, [0.0] * L)
    for r in range(mr):
        for v in range(nv):
            b.store(zero, accs[r][v])
    # packed A: [G][M/MR][K][MR]; row r of this tile is in block mb/MR + r//MR at lane r%MR
    a_base = b.mul(b.add(b.mul(grp, I64(-(-spec.M // MR))), b.sdiv(mb, I64(MR))), I64(spec.K * MR))
    with for_range(b, 0, spec.K, 1, "k") as k:
        off = b.add(xbase, b.load(gep(b, KO, k, I64), typ=I64))
        bv = []
        for v in range(nv):
            p = gep(b, X, b.add(off, I64(v * L)), F32)
            if v == nv - 1 and mask is not None:
                bv.append(masked_load(b, p, F32, mask, zero))
            else:
                bv.append(b.load(p, typ=vt, align=4))
        arow = b.add(a_base, b.mul(k, I64(MR)))
        for r in range(mr):
            a_off = (r // MR) * spec.K * MR + r % MR
            a = splat(b, load_float(b, A, b.add(arow, I64(a_off)), spec.a_dtype), L)
            for v in range(nv):
                b.store(mt.fma(b, a, bv[v], b.load(accs[r][v], typ=vt)), accs[r][v])
    ist, gst, mst = spec.c_strides
    cbase = b.add(b.add(b.mul(img, I64(ist)), b.mul(grp, I64(gst))), col0)
    for r in range(mr):
        m = b.add(mb, I64(r))
        for v in range(nv):
            acc = b.load(accs[r][v], typ=vt)
            mk = mask if v == nv - 1 else None
            if spec.epilogue is not None:
                acc = spec.epilogue(b, acc, m, b.add(col0, I64(v * L)), img, grp, mk)
            p = gep(b, C, b.add(cbase, b.add(b.mul(m, I64(mst)), I64(v * L))), F32)
            if mk is None:
                b.store(acc, p, align=4)
            else:
                masked_store(b, acc, p, mk)
