"""Depthwise convolution (one input channel per group) and max pooling, one output channel plane
per task unit.

The unit copies its input plane into a scratch buffer on the stack whose padding border is
filled once per task (the padding is done here, in cache, instead of by a separate pad node
writing the whole tensor; tail vectors may read past a row, never past the scratch), then
computes blocks of output rows in vectors of output columns: KH*KW FMAs per vector with the
weights held as splatted scalars, each input row of the block loaded once per window column for
all the output rows that read it. Stride 2 reads rows stored as their even then odd columns:
plain vector loads. The fused epilogue runs per vector, as in the other conv kernels. The
vector width and the rows per block are chosen per plane (lower.py: _row_tuning, _plane_rows).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from llvmlite import ir

from . import math_table as mt
from .llvm_util import (
    F32,
    I1,
    I32,
    I64,
    for_range,
    gep,
    kernel_function,
    load_float,
    load_strided,
    masked_load,
    masked_store,
    splat,
    stack_buffer,
    task_range,
)

SCRATCH_LIMIT = 64 * 1024  # floats of stack scratch per plane; larger planes use a pad node


@dataclass
class DepthwiseSpec:
    channels: int  # output channels (groups * multiplier)
    multiplier: int  # output channels per input channel
    images: int
    H: int
    W: int
    OH: int
    OW: int
    KH: int
    KW: int
    strides: tuple[int, int]
    dilations: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    x_buf: int
    w_buf: int
    c_buf: int
    lanes: int
    epilogue: Callable | None = None  # (b, acc, m, col0, img, grp, mask) -> vec
    bufs_holder: list | None = None
    mode: str = "conv"  # "conv" (w_buf: [channels, KH*KW] weights) or "max" (max pooling)
    # input planes from several buffers (a channel concat fused into a pool): (buf, channels)
    sources: list | None = None
    rows: int = 4  # output rows computed together (they share their input rows' loads)
    masked_stores_fast: bool = False  # tail vectors: masked stores (AVX-512) or whole ones
    # max pooling as an ordered max per tap and a NaN flag per vector (x86, where the
    # NaN-propagating llvm.maximum expands to six instructions; NEON's fmax is one)
    ordered_max: bool = False
    w_dtype: str = "float32"  # the weights: float16 with --precision fp16

    @property
    def padded(self) -> tuple[int, int]:
        return self.H + self.pads[0] + self.pads[2], self.W + self.pads[1] + self.pads[3]

    @property
    def split(self) -> bool:
        """Stride 2 in width: scratch rows hold the even columns, then the odd ones, so every
        window column is a plain contiguous vector load instead of two loads and a shuffle."""
        return self.strides[1] == 2

    @property
    def pitch(self) -> int:  # scratch row length
        wp = self.padded[1]
        return 2 * (-(-wp // 2)) if self.split else wp

    def scratch_floats(self) -> int:
        return self.padded[0] * self.pitch + (self.strides[1] + 1) * self.lanes


def emit_depthwise_kernel(module: ir.Module, name: str, spec: DepthwiseSpec,
                          nbufs: int) -> ir.Function:
    fn, b, bufs = kernel_function(module, name, nbufs)
    if spec.bufs_holder is not None:
        spec.bufs_holder[0] = bufs
    L = spec.lanes
    vt = ir.VectorType(F32, L)
    scratch = stack_buffer(b, spec.scratch_floats(), "plane")
    body = b.append_basic_block("body")
    b.branch(body)
    b.position_at_end(body)
    C = bufs[spec.c_buf]
    pool = spec.mode == "max"
    fill = float("-inf") if pool else 0.0
    KHW = spec.KH * spec.KW
    units = spec.images * spec.channels
    lo, hi = task_range(b, units, fn.args[1], fn.args[2])
    # The padding (and the slack past the plane, which tail vectors read into discarded lanes)
    # is the same for every plane: filled once per task; each plane writes only its data.
    _fill_run(b, scratch, I64(0), spec.scratch_floats(), ir.Constant(vt, [fill] * L))
    with for_range(b, lo, hi, 1, "unit") as unit:
        oc = b.srem(unit, I64(spec.channels))
        img = b.sdiv(unit, I64(spec.channels))
        ic = b.sdiv(oc, I64(spec.multiplier))
        xin, src = _source_plane(b, spec, bufs, img, ic)
        if spec.split:
            fill_plane_split(b, xin, src, scratch, spec.H, spec.W, spec.pads, L, fill)
        else:
            fill_plane(b, xin, src, scratch, spec.H, spec.W, spec.pads, L, fill, borders=False)
        plane, base = scratch, I64(0)
        wv = None
        if not pool:
            Wt = bufs[spec.w_buf]
            wv = [splat(b, load_float(b, Wt, b.add(b.mul(oc, I64(KHW)), I64(j)), spec.w_dtype),
                        L) for j in range(KHW)]
        out0 = b.add(b.mul(img, I64(spec.channels * spec.OH * spec.OW)),
                     b.mul(oc, I64(spec.OH * spec.OW)))
        R = min(spec.rows, spec.OH)
        nblocks, rem = divmod(spec.OH, R)
        if nblocks:
            with for_range(b, 0, nblocks * R, R, "oh0") as oh0:
                _row_block(b, spec, plane, base, C, out0, oc, img, wv, oh0, R)
        if rem:
            _row_block(b, spec, plane, base, C, out0, oc, img, wv, I64(nblocks * R), rem)
    b.ret(I32(0))
    return fn


def _row_block(b, spec: DepthwiseSpec, plane, base, C, out0, oc, img, wv, oh0, nrows: int):
    """Output rows oh0 .. oh0 + nrows - 1, one column vector at a time: each input row the block
    reads is loaded once per window column and feeds every output row whose window holds it
    (a 3x3 stride-1 block of 4 rows: 18 loads for 36 FMAs instead of 36)."""
    L = spec.lanes
    vt = ir.VectorType(F32, L)
    pool = spec.mode == "max"
    fill = ir.Constant(vt, [float("-inf") if pool else 0.0] * L)
    pitch = spec.pitch
    sh, sw = spec.strides
    dh, dw = spec.dilations
    row0 = b.add(base, b.mul(oh0, I64(sh * pitch)))
    nin = (nrows - 1) * sh + (spec.KH - 1) * dh + 1
    users = [[(r, (i - r * sh) // dh) for r in range(nrows)
              if i >= r * sh and (i - r * sh) % dh == 0 and (i - r * sh) // dh < spec.KH]
             for i in range(nin)]

    def compute(ow0):
        accs = [fill] * nrows
        # max pooling propagates NaN as numpy's maximum: llvm.maximum per tap, or (ordered_max)
        # a plain max per tap and whether a NaN was seen
        nans = [None] * nrows
        for i, us in enumerate(users):
            if not us:
                continue
            for kw in range(spec.KW):
                if spec.split:  # column 2*ow + c is at (c % 2) * half + ow + c // 2
                    c = kw * dw
                    at = b.add(row0, b.add(I64(i * pitch + (c % 2) * (pitch // 2) + c // 2),
                                           ow0))
                    x = b.load(gep(b, plane, at, F32), typ=vt, align=4)
                else:
                    at = b.add(row0, b.add(I64(i * pitch + kw * dw), b.mul(ow0, I64(sw))))
                    x = load_strided(b, plane, at, sw, L, F32, overrun_ok=True)
                isnan = b.fcmp_unordered("uno", x, x) if pool and spec.ordered_max else None
                for r, kh in us:
                    if isnan is not None:
                        accs[r] = b.select(b.fcmp_ordered(">", accs[r], x), accs[r], x)
                        nans[r] = isnan if nans[r] is None else b.or_(nans[r], isnan)
                    elif pool:
                        accs[r] = mt.binary(b, "maximum", accs[r], x, "float32")
                    else:
                        accs[r] = mt.fma(b, wv[kh * spec.KW + kw], x, accs[r])
        if pool and spec.ordered_max:
            nan = ir.Constant(vt, [float("nan")] * L)
            accs = [b.select(n, nan, a) if n is not None else a for a, n in zip(accs, nans)]
        return accs

    def store(acc, r, ow0, mask):
        col0 = b.add(b.mul(b.add(oh0, I64(r)), I64(spec.OW)), ow0)
        if spec.epilogue is not None:
            acc = spec.epilogue(b, acc, oc, col0, img, I64(0), mask)
        p = gep(b, C, b.add(out0, col0), F32)
        if mask is None:
            b.store(acc, p, align=4)
        else:
            masked_store(b, acc, p, mask)

    nfull, tail = divmod(spec.OW, L)
    if tail:
        # The tail vector first: where its store is whole, the lanes past the row land on
        # later rows' first columns, which the full vectors after it overwrite. Masked stores
        # are cheap with AVX-512 masks, slow on AMD with AVX2: there only the rows whose
        # tail would run past the plane's end are masked.
        mask = ir.Constant(ir.VectorType(I1, L), [1] * tail + [0] * (L - tail))
        ow0 = I64(nfull * L)
        accs = compute(ow0)
        whole_rows = (spec.OH * spec.OW - nfull * L - L) // spec.OW + 1
        whole_rows = max(0, min(whole_rows, spec.OH - 1))
        for r in range(nrows):
            if spec.masked_stores_fast:
                store(accs[r], r, ow0, mask)
                continue
            with b.if_else(b.icmp_signed("<", b.add(oh0, I64(r)), I64(whole_rows))) as (
                    inner, last):
                with inner:
                    store(accs[r], r, ow0, None)
                with last:
                    store(accs[r], r, ow0, mask)
    if nfull:
        with for_range(b, 0, nfull * L, L, "ow") as ow0:
            accs = compute(ow0)
            for r in range(nrows):
                store(accs[r], r, ow0, None)


def emit_pad_kernel(module: ir.Module, name: str, *, planes: int, H: int, W: int, pads,
                    fill: float, lanes: int) -> ir.Function:
    """A constant pad of the two spatial dims of [N, C, H, W] float32: fill_plane per plane,
    straight into the output. bufs: x, y."""
    fn, b, (X, Y) = kernel_function(module, name, 2)
    top, left, bottom, right = pads
    wp = left + W + right
    tail = W % lanes
    # a tail vector may overrun its row by lanes - tail: into this plane's bottom padding only
    spill = tail == 0 or bottom * wp + right >= lanes - tail
    lo, hi = task_range(b, planes, fn.args[1], fn.args[2])
    with for_range(b, lo, hi, 1, "plane") as p:
        out = gep(b, Y, b.mul(p, I64((top + H + bottom) * wp)), F32)
        fill_plane(b, X, b.mul(p, I64(H * W)), out, H, W, pads, lanes, fill, spill)
    b.ret(I32(0))
    return fn


def _source_plane(b, spec: DepthwiseSpec, bufs, img, ic):
    """(buffer, element offset) of input channel ic's plane."""
    plane = spec.H * spec.W
    if spec.sources is None:
        cin = spec.channels // spec.multiplier
        return bufs[spec.x_buf], b.add(b.mul(img, I64(cin * plane)), b.mul(ic, I64(plane)))
    starts, at = [], 0
    for _, n in spec.sources:
        starts.append(at)
        at += n
    buf_i, n_i = spec.sources[-1]
    ptr, local, chans = bufs[buf_i], b.sub(ic, I64(starts[-1])), I64(n_i)
    for (buf_i, n_i), st in zip(reversed(spec.sources[:-1]), reversed(starts[:-1])):
        inside = b.icmp_signed("<", ic, I64(st + n_i))
        ptr = b.select(inside, bufs[buf_i], ptr)
        local = b.select(inside, b.sub(ic, I64(st)), local)
        chans = b.select(inside, I64(n_i), chans)
    return ptr, b.mul(b.add(b.mul(img, chans), local), I64(plane))


def fill_plane(b, X, src, scratch, H: int, W: int, pads, L: int, fill: float = 0.0,
               spill: bool = True, borders: bool = True):
    """scratch[r][c] = X[src + (r - top) * W + (c - left)] inside the H x W plane, `fill` on the
    border (the scratch rows are left + W + right wide, top + H + bottom of them; without
    `borders` the caller has filled them already). With `spill` a row's tail is one whole
    vector store whose extra lanes (`fill`) may run up to L floats past the plane (the scratch
    buffers have that slack); without, a masked store."""
    top, left, bottom, right = pads
    hp, wp = top + H + bottom, left + W + right
    vt = ir.VectorType(F32, L)
    zero = ir.Constant(vt, [fill] * L)
    # border rows: whole rows of zeros
    for r0, r1 in ((0, top), (top + H, hp)):
        if r1 > r0 and borders:
            _fill_run(b, scratch, I64(r0 * wp), (r1 - r0) * wp, zero)
    with for_range(b, 0, H, 1, "r") as r:
        drow = b.add(I64(top * wp + left), b.mul(r, I64(wp)))
        for c in range(left if borders else 0):
            b.store(ir.Constant(F32, fill), gep(b, scratch, b.sub(drow, I64(left - c)), F32))
        for c in range(right if borders else 0):
            b.store(ir.Constant(F32, fill), gep(b, scratch, b.add(drow, I64(W + c)), F32))
        srow = b.add(src, b.mul(r, I64(W)))
        nfull, tail = divmod(W, L)
        if nfull:
            with for_range(b, 0, nfull * L, L, "cc") as c:
                v = b.load(gep(b, X, b.add(srow, c), F32), typ=vt, align=4)
                b.store(v, gep(b, scratch, b.add(drow, c), F32), align=4)
        if tail:
            mk = ir.Constant(ir.VectorType(I1, L), [1] * tail + [0] * (L - tail))
            v = masked_load(b, gep(b, X, b.add(srow, I64(nfull * L)), F32), F32, mk, zero)
            p = gep(b, scratch, b.add(drow, I64(nfull * L)), F32)
            if spill:  # the lanes past the row are `fill`, landing on padding, on the next
                b.store(v, p, align=4)  # row's data (copied after) or on the slack
            else:
                masked_store(b, v, p, mk)


def fill_plane_split(b, X, src, scratch, H: int, W: int, pads, L: int, fill: float):
    """fill_plane for stride-2 kernels: each padded row of width wp is stored as its even
    columns (half = ceil(wp / 2) of them) followed by its odd columns. Only the data: the
    caller fills the padding once (it is the same for every plane)."""
    top, left, _, right = pads
    wp = left + W + right
    half = -(-wp // 2)
    pitch = 2 * half
    vt = ir.VectorType(F32, L)
    border = ir.Constant(vt, [fill] * L)
    evens = ir.Constant(ir.VectorType(I32, L), list(range(0, 2 * L, 2)))
    odds = ir.Constant(ir.VectorType(I32, L), list(range(1, 2 * L, 2)))
    # chunk element i sits at padded column left + c0 + i; with c0 even its parity is left + i's
    first_even = (0, left // 2) if left % 2 == 0 else (half, (left - 1) // 2)  # (region, index)
    first_odd = (half, left // 2) if left % 2 == 0 else (0, (left + 1) // 2)
    nfull, tail = divmod(W, 2 * L)

    def chunk(drow, srow, c0, lo, hi):
        k = b.sdiv(c0, I64(2)) if isinstance(c0, ir.Value) else I64(c0 // 2)
        # the even region first: a tail's extra lanes there run into the odd region
        for sel, (region, idx) in sorted(((evens, first_even), (odds, first_odd)),
                                         key=lambda t: t[1][0]):
            at = b.add(drow, b.add(I64(region + idx), k))
            b.store(b.shuffle_vector(lo, hi, sel), gep(b, scratch, at, F32), align=4)

    with for_range(b, 0, H, 1, "r") as r:
        drow = b.mul(b.add(r, I64(top)), I64(pitch))
        srow = b.add(src, b.mul(r, I64(W)))
        if tail:
            # First, whole vectors: the even region's extra lanes (`fill`) run into the odd
            # region, rewritten by the odd store and the chunks below; the odd region's into the
            # next row (written after) or the bottom padding and slack, `fill` anyway.
            c0 = nfull * 2 * L
            parts = []
            for j in range(2):
                n = min(L, max(0, tail - j * L))
                if n == 0:
                    parts.append(border)
                    continue
                mk = ir.Constant(ir.VectorType(I1, L), [1] * n + [0] * (L - n))
                parts.append(masked_load(b, gep(b, X, b.add(srow, I64(c0 + j * L)), F32), F32,
                                         mk, border))
            chunk(drow, srow, c0, *parts)
        if nfull:
            with for_range(b, 0, nfull * 2 * L, 2 * L, "cc") as c0:
                lo = b.load(gep(b, X, b.add(srow, c0), F32), typ=vt, align=4)
                hi = b.load(gep(b, X, b.add(srow, b.add(c0, I64(L))), F32), typ=vt, align=4)
                chunk(drow, srow, c0, lo, hi)


def _fill_run(b, ptr, start, n: int, value):
    """ptr[start : start + n] = value's lanes: plain vector stores, a masked one for the tail."""
    L = value.type.count
    full, tail = divmod(n, L)
    if full:
        with for_range(b, 0, full * L, L, "fill") as i:
            b.store(value, gep(b, ptr, b.add(start, i), F32), align=4)
    if tail:
        masked_store(b, value, gep(b, ptr, b.add(start, I64(full * L)), F32),
                     ir.Constant(ir.VectorType(I1, L), [1] * tail + [0] * (L - tail)))
