"""The input and output transforms of Winograd F(2x2, 3x3) convolution (passes/winograd.py).

Both run one channel plane per task unit and vectorize over `lanes` consecutive tiles of a tile
row. The input transform copies its plane into a zero-bordered stack buffer (the conv's padding,
plus the rows and columns a partial last tile reads), reads each tile's 4x4 patch as 16 stride-2
vectors and writes V[n][i*4+k][c][tile]. The output transform reads the 16 products of a tile
vector, forms the 2x2 outputs, interleaves each output row's two columns into contiguous vectors
and runs the fused epilogue on them. The arithmetic is generated from the transform matrices
(ir/ops_nn.py WINOGRAD_F2), skipping zero coefficients and multiplications by +-1.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from llvmlite import ir

from neo.ir.ops_nn import WINOGRAD_F2

from .kernel_dwconv import fill_plane
from .llvm_util import (
    F32,
    I32,
    I64,
    for_range,
    gep,
    kernel_function,
    lane_mask,
    load_strided,
    masked_load,
    masked_store,
    splat,
    stack_buffer,
    task_range,
)


def _combine(b, coeffs: np.ndarray, xs: list, lanes: int):
    """sum_j coeffs[j] * xs[j] without the zero terms (coefficients +-1 need no multiply)."""
    acc = None
    for c, x in zip(coeffs.tolist(), xs):
        if c == 0:
            continue
        if abs(c) != 1:
            x = b.fmul(x, splat(b, ir.Constant(F32, abs(c)), lanes))
        if acc is None:
            acc = x if c > 0 else b.fneg(x)
        else:
            acc = b.fadd(acc, x) if c > 0 else b.fsub(acc, x)
    return acc if acc is not None else ir.Constant(ir.VectorType(F32, lanes), [0.0] * lanes)


def _transform(b, T: np.ndarray, d: list[list], lanes: int) -> list[list]:
    """T d T^T for a square or wide T (rows of the result: T.shape[0])."""
    rows = [[_combine(b, T[i], [d[r][j] for r in range(len(d))], lanes)
             for j in range(len(d[0]))] for i in range(T.shape[0])]
    return [[_combine(b, T[k], rows[i], lanes) for k in range(T.shape[0])]
            for i in range(T.shape[0])]


def emit_winograd_input(module: ir.Module, name: str, *, images: int, C: int, H: int, W: int,
                        pads: tuple[int, int], tiles: tuple[int, int], lanes: int) -> ir.Function:
    """bufs: x [N, C, H, W], v [N, 16, C, TH*TW]."""
    fn, b, bufs = kernel_function(module, name, 2)
    L = lanes
    vt = ir.VectorType(F32, L)
    TH, TW = tiles
    top, left = pads
    hs, ws = 2 * TH + 2, 2 * TW + 2
    slack = 3 * L + 4  # a tail vector's stride-2 reads run up to 2L past the last patch
    scratch = stack_buffer(b, hs * ws + slack, "plane")
    body = b.append_basic_block("body")
    b.branch(body)
    b.position_at_end(body)
    X, V = bufs
    zero = ir.Constant(vt, [0.0] * L)
    for i in range(-(-slack // L)):  # finite values in the slack that tail lanes read
        n = min(L, slack - i * L)
        masked_store(b, zero, gep(b, scratch, I64(hs * ws + i * L), F32),
                     ir.Constant(ir.VectorType(ir.IntType(1), L), [1] * n + [0] * (L - n)))
    BT = WINOGRAD_F2["BT"]
    T = TH * TW
    lo, hi = task_range(b, images * C, fn.args[1], fn.args[2])
    with for_range(b, lo, hi, 1, "unit") as unit:
        c = b.srem(unit, I64(C))
        img = b.sdiv(unit, I64(C))
        fill_plane(b, X, b.mul(unit, I64(H * W)), scratch, H, W,
                   (top, left, hs - H - top, ws - W - left), L)
        vbase = b.add(b.mul(img, I64(16 * C * T)), b.mul(c, I64(T)))
        with for_range(b, 0, TH, 1, "th") as th:

            def tile_vector(tw0, mask):
                corner = b.add(b.mul(th, I64(2 * ws)), b.mul(tw0, I64(2)))
                d = [[load_strided(b, scratch, b.add(corner, I64(r * ws + j)), 2, L, F32,
                                   overrun_ok=True)
                      for j in range(4)] for r in range(4)]
                v = _transform(b, BT, d, L)
                t = b.add(b.mul(th, I64(TW)), tw0)
                for i in range(4):
                    for k in range(4):
                        p = gep(b, V, b.add(vbase, b.add(I64((4 * i + k) * C * T), t)), F32)
                        if mask is None:
                            b.store(v[i][k], p, align=4)
                        else:
                            masked_store(b, v[i][k], p, mask)

            _over_tiles(b, TW, L, tile_vector, th, TH)
    b.ret(I32(0))
    return fn


def emit_winograd_output(module: ir.Module, name: str, *, images: int, OC: int,
                         out: tuple[int, int], tiles: tuple[int, int], lanes: int, m_buf: int,
                         c_buf: int, nbufs: int, epilogue: Callable | None,
                         bufs_holder: list) -> ir.Function:
    """bufs[m_buf]: m [N, 16, OC, TH*TW]; bufs[c_buf]: y [N, OC, OH, OW]. epilogue(b, acc, oc,
    col (flattened oh*OW + ow of lane 0), img, grp, mask) -> vec."""
    fn, b, bufs = kernel_function(module, name, nbufs)
    bufs_holder[0] = bufs
    L = lanes
    vt = ir.VectorType(F32, L)
    TH, TW = tiles
    OH, OW = out
    T = TH * TW
    Mb, Y = bufs[m_buf], bufs[c_buf]
    AT = WINOGRAD_F2["AT"]
    zero = ir.Constant(vt, [0.0] * L)
    lo, hi = task_range(b, images * OC, fn.args[1], fn.args[2])
    with for_range(b, lo, hi, 1, "unit") as unit:
        oc = b.srem(unit, I64(OC))
        img = b.sdiv(unit, I64(OC))
        mbase = b.add(b.mul(img, I64(16 * OC * T)), b.mul(oc, I64(T)))
        ybase = b.mul(unit, I64(OH * OW))
        with for_range(b, 0, TH, 1, "th") as th:

            def tile_vector(tw0, mask):
                t = b.add(b.mul(th, I64(TW)), tw0)

                def load(i, k):
                    p = gep(b, Mb, b.add(mbase, b.add(I64((4 * i + k) * OC * T), t)), F32)
                    if mask is None:
                        return b.load(p, typ=vt, align=4)
                    return masked_load(b, p, F32, mask, zero)

                m = [[load(i, k) for k in range(4)] for i in range(4)]
                y = _transform(b, AT, m, L)
                for a in range(2):
                    row = b.add(b.mul(th, I64(2)), I64(a))

                    def store_row(row=row, a=a):
                        both = b.shuffle_vector(y[a][0], y[a][1], ir.Constant(
                            ir.VectorType(I32, 2 * L), [x for l in range(L) for x in (l, L + l)]))
                        for h in range(2):
                            half = b.shuffle_vector(both, ir.Constant(both.type, None), ir.Constant(
                                ir.VectorType(I32, L), list(range(h * L, (h + 1) * L))))
                            col = b.add(b.mul(tw0, I64(2)), I64(h * L))
                            left = b.sub(I64(OW), col)
                            flat = b.add(b.mul(row, I64(OW)), col)
                            p = gep(b, Y, b.add(ybase, flat), F32)
                            # whole vectors also on a tile's second row when they stay in
                            # the plane: the lanes past the row land on later rows, written
                            # after (on a first row they would clobber the second row's
                            # earlier columns)
                            whole_ok = b.icmp_signed(">=", left, I64(L))
                            if a == 1:
                                whole_ok = b.or_(whole_ok, b.and_(
                                    b.icmp_signed(">", left, I64(0)),
                                    b.icmp_signed("<=", b.add(flat, I64(L)), I64(OH * OW))))
                            with b.if_else(whole_ok) as (whole, part):
                                with whole:
                                    out = half
                                    if epilogue is not None:
                                        out = epilogue(b, half, oc, flat, img, I64(0), None)
                                    b.store(out, p, align=4)
                                with part, b.if_then(b.icmp_signed(">", left, I64(0))):
                                    mk = lane_mask(b, left, L)
                                    out = half
                                    if epilogue is not None:
                                        out = epilogue(b, half, oc, flat, img, I64(0), mk)
                                    masked_store(b, out, p, mk)

                    if a == 1 and OH % 2:
                        with b.if_then(b.icmp_signed("<", row, I64(OH))):
                            store_row()
                    else:
                        store_row()

            _over_tiles(b, TW, L, tile_vector, th, TH)
    b.ret(I32(0))
    return fn


def _over_tiles(b, TW: int, L: int, tile_vector, th, TH: int):
    """tile_vector(first tile, mask or None) over tile row th: whole vectors, then the tail.
    Masked memory ops are slow on AMD: the tail runs unmasked when its extra lanes land on
    later tile rows of the same plane (of V, or of the output), written after. With wide
    vectors and narrow rows they span several tile rows, so the rows that may do so are those
    whose tail ends within the plane's TH*TW tiles."""
    full, tail = divmod(TW, L)
    if full:
        with for_range(b, 0, full * L, L, "tw") as tw0:
            tile_vector(tw0, None)
    if tail:
        mask = ir.Constant(ir.VectorType(ir.IntType(1), L), [1] * tail + [0] * (L - tail))
        # th * TW + full * L + L <= TH * TW
        unmasked_rows = max(0, (TH * TW - full * L - L) // TW + 1)
        with b.if_else(b.icmp_signed("<", th, I64(min(unmasked_rows, TH - 1)))) as (inner, last):
            with inner:
                tile_vector(I64(full * L), None)
            with last:
                tile_vector(I64(full * L), mask)
