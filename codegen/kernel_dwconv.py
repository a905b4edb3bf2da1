"""Depthwise convolution (one input channel per group) and max pooling, one output channel plane
(float planes: one band of its rows, `DepthwiseSpec.bands`) per task unit.

The unit copies its input plane (or the rows its band's windows cover) into a scratch buffer on
the stack whose padding border is filled once per task (the padding is done here, in cache,
instead of by a separate pad node writing the whole tensor; tail vectors may read past a row,
never past the scratch; a band refills the padding rows it covers), then
computes blocks of output rows in vectors of output columns: KH*KW FMAs per vector with the
weights held as splatted scalars, each input row of the block loaded once per window column for
all the output rows that read it. Stride 2 reads rows stored as their even then odd columns:
plain vector loads. The fused epilogue runs per vector, as in the other conv kernels. The
vector width and the rows per block are chosen per plane (lower.py: _row_tuning, _plane_rows).

Integer convs (conv_integer, lower_quant.py) run on the same structure with 32-bit scratch slots
holding the input minus its zero point, so the padding is 0 and the sums are exact:
- "pairs" (x86): a slot holds rows i and i + dilation of one column as two int16, and the
  weights of taps (kh, kw) and (kh + 1, kw) are one splatted int16 pair, so `vpmaddwd` does two
  taps per instruction (a 3x3 window: 6 instead of 9 multiplies); 8-bit operands minus their
  zero points are within +-255, whose products and pair sums are exact in int32;
- "int32" (elsewhere): a slot holds one int32, one multiply-add per tap (NEON `mla`).
The int32 accumulator leaves through the integer epilogue (bias, requantize, clamp).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from llvmlite import ir

from . import math_table as mt
from .llvm_util import (
    F32,
    I1,
    I8,
    I16,
    I32,
    I64,
    STORAGE,
    UNSIGNED,
    clamp,
    for_range,
    gep,
    intrinsic,
    kernel_function,
    load_float,
    load_strided,
    masked_load,
    masked_store,
    splat,
    stack_buffer,
    task_range,
    unravel,
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
    # integer convs: "float" (fp32 FMAs), "int32" or "pairs" (see the module docstring); w_buf
    # then holds int32 words: [channels, KH*KW] (int32) or [channels, ceil(KH/2)*KW] int16
    # pairs (w[kh][kw], w[kh+1][kw]) minus the weights' zero points
    arith: str = "float"
    x_dtype: str = "float32"  # the input's storage: int8 or uint8 for integer convs
    x_zero_point: int = 0
    out_dtype: str = "float32"  # what the epilogue returns (int8 after a requantize)
    madd_bits: int = 128  # pairs: the widest vpmaddwd the target has (128, 256, 512)
    dpwssd: bool = False  # pairs: VNNI's vpdpwssd (multiply-add-accumulate) at madd_bits
    # bands of output rows per plane (float only: lower.plane_bands): a unit is one band of one
    # plane, the units ordered (image, band, channel) so that the threads split the rows
    bands: int = 1

    @property
    def slot(self) -> ir.Type:
        """The scratch element: f32, or a 32-bit integer word."""
        return F32 if self.arith == "float" else I32

    @property
    def weight_words(self) -> int:
        """Weight words per channel: one per tap, or one per pair of rows of taps."""
        return (-(-self.KH // 2) if self.arith == "pairs" else self.KH) * self.KW

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

    @property
    def band_rows(self) -> int:
        """Output rows per band (the last may have fewer): a multiple of the row block."""
        r = min(self.rows, self.OH)
        return -(-(-(-self.OH // self.bands)) // r) * r

    @property
    def nbands(self) -> int:
        return -(-self.OH // self.band_rows)

    @property
    def scratch_rows(self) -> int:
        """Padded rows in scratch: the plane's, or those one band's windows cover."""
        if self.nbands == 1:
            return self.padded[0]
        return min(self.padded[0],
                   (self.band_rows - 1) * self.strides[0] + (self.KH - 1) * self.dilations[0] + 1)

    def scratch_floats(self) -> int:
        return self.scratch_rows * self.pitch + (self.strides[1] + 1) * self.lanes


def emit_depthwise_kernel(module: ir.Module, name: str, spec: DepthwiseSpec,
                          nbufs: int) -> ir.Function:
    fn, b, bufs = kernel_function(module, name, nbufs)
    if spec.bufs_holder is not None:
        spec.bufs_holder[0] = bufs
    L = spec.lanes
    vt = ir.VectorType(spec.slot, L)
    scratch = stack_buffer(b, spec.scratch_floats(), "plane")
    body = b.append_basic_block("body")
    b.branch(body)
    b.position_at_end(body)
    C = bufs[spec.c_buf]
    pool = spec.mode == "max"
    fill = float("-inf") if pool else 0.0
    nb = spec.nbands
    assert nb == 1 or spec.arith == "float", "bands of rows: float planes only"
    units = spec.images * nb * spec.channels
    lo, hi = task_range(b, units, fn.args[1], fn.args[2])
    # The padding (and the slack past the plane, which tail vectors read into discarded lanes)
    # is the same for every plane: filled once per task; each plane writes only its data.
    _fill_run(b, scratch, I64(0), spec.scratch_floats(), _fill_vector(vt, fill))
    with for_range(b, lo, hi, 1, "unit") as unit:
        oc, band, img = unravel(b, unit, (spec.channels, nb))
        ic = b.sdiv(oc, I64(spec.multiplier))
        xin, src = _source_plane(b, spec, bufs, img, ic)
        rows = _plane_source(spec, xin, src)
        plane, base = scratch, I64(0)
        if nb == 1:
            if spec.split:
                fill_plane_split(b, xin, src, scratch, spec.H, spec.W, spec.pads, L, fill,
                                 rows=rows, keep=_read_rows(spec))
            else:
                fill_plane(b, xin, src, scratch, spec.H, spec.W, spec.pads, L, fill,
                           borders=False, rows=rows, keep=_read_rows(spec))
        else:
            base = _fill_band(b, spec, xin, src, scratch, band, rows, vt, fill)
        wv = None
        if not pool:
            Wt = bufs[spec.w_buf]
            nw = spec.weight_words
            if spec.arith == "float":
                wv = [splat(b, load_float(b, Wt, b.add(b.mul(oc, I64(nw)), I64(j)),
                                          spec.w_dtype), L) for j in range(nw)]
            else:
                wv = [splat(b, b.load(gep(b, Wt, b.add(b.mul(oc, I64(nw)), I64(j)), I32),
                                      typ=I32, align=4), L) for j in range(nw)]
        prepare = getattr(spec.epilogue, "prepare", None)
        if prepare is not None:  # the epilogue's per-channel values, once per plane
            prepare(b, oc, img, I64(0))
        out0 = b.add(b.mul(img, I64(spec.channels * spec.OH * spec.OW)),
                     b.mul(oc, I64(spec.OH * spec.OW)))
        R = min(spec.rows, spec.OH)

        def rows_from(first, count: int):
            nblocks, rem = divmod(count, R)
            end = None if nb == 1 else b.add(first, I64(count))
            if nblocks:
                with for_range(b, first, b.add(first, I64(nblocks * R)), R, "oh0") as oh0:
                    _row_block(b, spec, plane, base, C, out0, oc, img, wv, oh0, R, end)
            if rem:
                _row_block(b, spec, plane, base, C, out0, oc, img, wv,
                           b.add(first, I64(nblocks * R)), rem, end)

        if nb == 1:
            rows_from(I64(0), spec.OH)
        else:
            BR = spec.band_rows
            first = b.mul(band, I64(BR))
            with b.if_else(b.icmp_signed("<", band, I64(nb - 1))) as (full, last):
                with full:
                    rows_from(first, BR)
                with last:
                    rows_from(first, spec.OH - (nb - 1) * BR)
    b.ret(I32(0))
    return fn


def _fill_band(b, spec: DepthwiseSpec, xin, src, scratch, band, rows, vt, fill: float):
    """Scratch for one band of output rows: padded rows pr0 = band * BR * stride on, as many as
    `spec.scratch_rows`, at scratch row pr - pr0 (the plane's last band may need fewer). Rows of
    padding in that range are refilled (another band may have put data there); the border
    columns and the slack hold `fill` from the task's first fill, which data rows never touch.
    Returns the `base` offset for _row_block (minus pr0 rows: its rows index the padded plane)."""
    top = spec.pads[0]
    H, pitch, SR = spec.H, spec.pitch, spec.scratch_rows
    pr0 = b.mul(band, I64(spec.band_rows * spec.strides[0]))
    end = b.add(pr0, I64(SR))
    hp = I64(spec.padded[0])
    end = b.select(b.icmp_signed("<", end, hp), end, hp)

    pad_vec = _fill_vector(vt, fill)
    # padding rows above and below the plane inside [pr0, end): scratch rows pr - pr0
    for p_lo, p_hi in ((pr0, clamp(b, I64(top), pr0, end)),
                       (clamp(b, I64(top + H), pr0, end), end)):
        with for_range(b, b.sub(p_lo, pr0), b.sub(p_hi, pr0), 1, "padrow") as k:
            _fill_run(b, scratch, b.mul(k, I64(pitch)), pitch, pad_vec)
    # data rows r = pr - top
    r_lo = clamp(b, b.sub(pr0, I64(top)), I64(0), I64(H))
    r_hi = clamp(b, b.sub(end, I64(top)), I64(0), I64(H))
    if spec.split:
        fill_plane_split(b, xin, src, scratch, H, spec.W, spec.pads, spec.lanes, fill, rows=rows,
                         span=(r_lo, r_hi, pr0))
    else:
        fill_plane(b, xin, src, scratch, H, spec.W, spec.pads, spec.lanes, fill, borders=False,
                   rows=rows, span=(r_lo, r_hi, pr0))
    return b.sub(I64(0), b.mul(pr0, I64(pitch)))


def _fill_vector(vt: ir.VectorType, fill: float) -> ir.Constant:
    """A vector of the padding value: `fill` in float slots; in integer ones 0 for a conv (the
    input minus its zero point) and the type's minimum for a max pool (fill -inf)."""
    if isinstance(vt.element, ir.IntType):
        low = -(1 << (vt.element.width - 1))
        return ir.Constant(vt, [low if fill == float("-inf") else int(fill)] * vt.count)
    return ir.Constant(vt, [fill] * vt.count)


def _row_block(b, spec: DepthwiseSpec, plane, base, C, out0, oc, img, wv, oh0, nrows: int,
               band_end=None):
    """Output rows oh0 .. oh0 + nrows - 1, one column vector at a time: each input row the block
    reads is loaded once per window column and feeds every output row whose window holds it
    (a 3x3 stride-1 block of 4 rows: 18 loads for 36 FMAs instead of 36). With "pairs" a
    scratch row holds two input rows, so only even kh read one (the odd ones ride along).
    `band_end` (i64, banded planes): the unit's rows end there, so the row before it stores its
    tail masked (a whole one would land on the next band's first row, which another unit, maybe
    on another thread, writes)."""
    L = spec.lanes
    slot = spec.slot
    vt = ir.VectorType(slot, L)
    pool = spec.mode == "max"
    fill = _fill_vector(vt, float("-inf") if pool else 0.0)
    pitch = spec.pitch
    sh, sw = spec.strides
    dh, dw = spec.dilations
    row0 = b.add(base, b.mul(oh0, I64(sh * pitch)))
    kstep = 2 if spec.arith == "pairs" else 1
    taps_h = range(0, spec.KH, kstep)
    nin = (nrows - 1) * sh + taps_h[-1] * dh + 1
    users = [[(r, (i - r * sh) // dh) for r in range(nrows)
              if i >= r * sh and (i - r * sh) % dh == 0 and (i - r * sh) // dh in taps_h]
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
                    x = b.load(gep(b, plane, at, slot), typ=vt, align=4)
                else:
                    at = b.add(row0, b.add(I64(i * pitch + kw * dw), b.mul(ow0, I64(sw))))
                    x = load_strided(b, plane, at, sw, L, slot, overrun_ok=True)
                isnan = b.fcmp_unordered("uno", x, x) if pool and spec.ordered_max else None
                for r, kh in us:
                    if isnan is not None:
                        accs[r] = b.select(b.fcmp_ordered(">", accs[r], x), accs[r], x)
                        nans[r] = isnan if nans[r] is None else b.or_(nans[r], isnan)
                    elif pool and spec.arith != "float":  # integers: no NaN to carry
                        accs[r] = b.select(b.icmp_signed(">", accs[r], x), accs[r], x)
                    elif pool:
                        accs[r] = mt.binary(b, "maximum", accs[r], x, "float32")
                    elif spec.arith == "float":
                        accs[r] = mt.fma(b, wv[kh * spec.KW + kw], x, accs[r])
                    elif spec.arith == "int32":
                        accs[r] = b.add(accs[r], b.mul(wv[kh * spec.KW + kw], x))
                    else:
                        accs[r] = madd_pairs_acc(b, accs[r], x, wv[kh // 2 * spec.KW + kw],
                                                 spec.madd_bits, spec.dpwssd)
        if pool and spec.ordered_max:
            nan = ir.Constant(vt, [float("nan")] * L)
            accs = [b.select(n, nan, a) if n is not None else a for a, n in zip(accs, nans)]
        return accs

    out_t = STORAGE[spec.out_dtype]
    align = max(1, out_t.width // 8) if isinstance(out_t, ir.IntType) else 4

    def store(acc, r, ow0, mask):
        col0 = b.add(b.mul(b.add(oh0, I64(r)), I64(spec.OW)), ow0)
        if spec.epilogue is not None:
            acc = spec.epilogue(b, acc, oc, col0, img, I64(0), mask)
        p = gep(b, C, b.add(out0, col0), out_t)
        if mask is None:
            b.store(acc, p, align=align)
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
        whole_rows = I64(max(0, min(whole_rows, spec.OH - 1)))
        if band_end is not None:
            last_row = b.sub(band_end, I64(1))
            whole_rows = b.select(b.icmp_signed("<", last_row, whole_rows), last_row, whole_rows)
        for r in range(nrows):
            if spec.masked_stores_fast:
                store(accs[r], r, ow0, mask)
                continue
            with b.if_else(b.icmp_signed("<", b.add(oh0, I64(r)), whole_rows)) as (
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


_PMADDWD = {128: "llvm.x86.sse2.pmadd.wd", 256: "llvm.x86.avx2.pmadd.wd",
            512: "llvm.x86.avx512.pmaddw.d.512"}


def madd_pairs_acc(b, acc: ir.Value, x: ir.Value, w: ir.Value, native_bits: int,
                   dpwssd: bool) -> ir.Value:
    """acc + madd_pairs(x, w): one vpdpwssd where the target has VNNI at the vector's width
    (LLVM 22 keeps vpmaddwd + vpaddd apart), else the two."""
    if dpwssd and 32 * x.type.count == native_bits:
        return intrinsic(b, f"llvm.x86.avx512.vpdpwssd.{native_bits}", [acc, x, w], overload=[])
    return b.add(acc, madd_pairs(b, x, w, native_bits))


def madd_pairs(b, x: ir.Value, w: ir.Value, native_bits: int) -> ir.Value:
    """Per int32 lane: lo(x) * lo(w) + hi(x) * hi(w) of its two int16 halves (x86 vpmaddwd),
    exact; a vector wider than the target's (a legalized width) in native pieces."""
    L = x.type.count
    n16 = ir.VectorType(I16, 2 * L)
    xs, ws = b.bitcast(x, n16), b.bitcast(w, n16)
    bits = min(native_bits, 32 * L)
    k = bits // 16  # int16 lanes per instruction
    if k == 2 * L:
        return intrinsic(b, _PMADDWD[bits], [xs, ws], ret=x.type, overload=[])
    parts = []
    for j in range(0, 2 * L, k):
        sel = ir.Constant(ir.VectorType(I32, k), list(range(j, j + k)))
        parts.append(intrinsic(b, _PMADDWD[bits], [b.shuffle_vector(xs, xs, sel),
                                                    b.shuffle_vector(ws, ws, sel)],
                               ret=ir.VectorType(I32, k // 2), overload=[]))
    while len(parts) > 1:  # concatenate pairwise
        n = parts[0].type.count
        cat = ir.Constant(ir.VectorType(I32, 2 * n), list(range(2 * n)))
        parts = [b.shuffle_vector(parts[i], parts[i + 1], cat) for i in range(0, len(parts), 2)]
    return parts[0]


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



class PlaneRows:
    """Where a plane's scratch rows come from: `load(b, row, c, n)` is data row `row` (from
    `row_of(b, r)`), columns c .. c + L - 1 as scratch slots (only the first n read; the rest
    the padding value). Rows `first` .. H - 1 are written (scratch row top + r)."""

    first = 0

    def __init__(self, X, src, H: int, W: int, L: int, fill: float):
        self.X, self.src, self.H, self.W, self.L = X, src, H, W, L
        self.vt = ir.VectorType(F32, L)
        self.fill = _fill_vector(self.vt, fill)

    def row_of(self, b, r):
        return b.add(self.src, b.mul(r, I64(self.W)))

    def load(self, b, row, c, n: int):
        p = gep(b, self.X, b.add(row, c), F32)
        if n == self.L:
            return b.load(p, typ=self.vt, align=4)
        mk = ir.Constant(ir.VectorType(I1, self.L), [1] * n + [0] * (self.L - n))
        return masked_load(b, p, F32, mk, self.fill)


class IntPlaneRows(PlaneRows):
    """An 8-bit plane minus its zero point, as int32 slots or ("pairs") int16 pairs of rows r
    and r + dh (rows outside the plane are 0: from -dh on, the rows above it whose second half
    is data). Tail columns: a whole load, its extra lanes replaced, where it stays within the
    plane (a masked byte load is many instructions without AVX-512), else a masked one."""

    def __init__(self, X, src, H: int, W: int, L: int, dtype: str, zero_point: int,
                 pairs_dh: int | None, top: int, masked_fast: bool, fill: float = 0.0):
        super().__init__(X, src, H, W, L, 0.0)
        self.signed = dtype not in UNSIGNED
        self.zp = zero_point
        self.dh = pairs_dh
        self.first = -min(top, pairs_dh) if pairs_dh else 0
        self.masked_fast = masked_fast
        self.vt = ir.VectorType(I32, L)
        self.fill = _fill_vector(self.vt, fill)  # what a tail's lanes past the row hold

    def row_of(self, b, r):
        if self.dh is None:
            return (super().row_of(b, r), r, None)
        lo_ok = b.icmp_signed(">=", r, I64(0))
        hi_ok = b.icmp_signed("<", r, I64(self.H - self.dh))
        r_lo = b.select(lo_ok, r, I64(0))
        r_hi = b.select(hi_ok, b.add(r, I64(self.dh)), I64(self.H - 1))
        return ((super().row_of(b, r_lo), r_lo, lo_ok), (super().row_of(b, r_hi), r_hi, hi_ok))

    def _centered(self, b, row, c, n: int, wide: ir.IntType):
        """Row `row` (element offset, row index, valid or None) at columns c.., minus the zero
        point, as <L x wide>."""
        at, r, ok = row
        L = self.L
        bt = ir.VectorType(I8, L)
        zb = ir.Constant(bt, [self.zp & 0xFF] * L)
        p = gep(b, self.X, b.add(at, c), I8)
        if n == L:
            v = b.load(p, typ=bt, align=1)
        else:
            mk = ir.Constant(ir.VectorType(I1, L), [1] * n + [0] * (L - n))
            cc = c.constant if isinstance(c, ir.Constant) else None
            # rows whose whole L-byte load ends inside the plane
            safe = 0 if cc is None or self.masked_fast else max(
                0, min(self.H, (self.H * self.W - cc - L) // self.W + 1))
            if safe == 0:
                v = masked_load(b, p, I8, mk, zb)
            elif safe >= self.H:
                v = b.select(mk, b.load(p, typ=bt, align=1), zb)
            else:
                whole = b.append_basic_block("tail.whole")
                part = b.append_basic_block("tail.masked")
                join = b.append_basic_block("tail.join")
                b.cbranch(b.icmp_signed("<", r, I64(safe)), whole, part)
                b.position_at_end(whole)
                v1 = b.select(mk, b.load(p, typ=bt, align=1), zb)
                b.branch(join)
                b.position_at_end(part)
                v2 = masked_load(b, p, I8, mk, zb)
                b.branch(join)
                b.position_at_end(join)
                v = b.phi(bt)
                v.add_incoming(v1, whole)
                v.add_incoming(v2, part)
        wt = ir.VectorType(wide, L)
        v = b.sext(v, wt) if self.signed else b.zext(v, wt)
        if self.zp:
            v = b.sub(v, ir.Constant(wt, [self.zp] * L))
        if ok is not None:
            v = b.select(ok, v, ir.Constant(wt, [0] * L))
        if n < L and wide is I32 and self.fill.constant[0] != 0:  # a pool's padding
            v = b.select(ir.Constant(ir.VectorType(I1, L), [1] * n + [0] * (L - n)), v,
                         self.fill)
        return v

    def load(self, b, row, c, n: int):
        if self.dh is None:
            return self._centered(b, row, c, n, I32)
        lo = self._centered(b, row[0], c, n, I16)
        hi = self._centered(b, row[1], c, n, I16)
        L = self.L
        zip_ = ir.Constant(ir.VectorType(I32, 2 * L), [k for j in range(L) for k in (j, L + j)])
        return b.bitcast(b.shuffle_vector(lo, hi, zip_), self.vt)


def _plane_source(spec: DepthwiseSpec, X, src) -> PlaneRows:
    if spec.arith == "float":
        return PlaneRows(X, src, spec.H, spec.W, spec.lanes,
                         float("-inf") if spec.mode == "max" else 0.0)
    return IntPlaneRows(X, src, spec.H, spec.W, spec.lanes, spec.x_dtype, spec.x_zero_point,
                        spec.dilations[0] if spec.arith == "pairs" else None, spec.pads[0],
                        spec.masked_stores_fast, float("-inf") if spec.mode == "max" else 0.0)


def fill_plane(b, X, src, scratch, H: int, W: int, pads, L: int, fill: float = 0.0,
               spill: bool = True, borders: bool = True, rows: PlaneRows | None = None,
               span=None, keep=None):
    """scratch[r][c] = X[src + (r - top) * W + (c - left)] inside the H x W plane, `fill` on the
    border (the scratch rows are left + W + right wide, top + H + bottom of them; without
    `borders` the caller has filled them already). With `spill` a row's tail is one whole
    vector store whose extra lanes (`fill`) may run up to L floats past the plane (the scratch
    buffers have that slack); without, a masked store. `rows` gives other slots than X's
    floats (integer convs). `span` (r_lo, r_hi, pr0: i64 values) copies only data rows r_lo ..
    r_hi - 1, padded row pr at scratch row pr - pr0 (a band of the plane: _fill_band). `keep`
    (b, r) -> i1 copies only the rows the kernel reads (strided pairs: _read_rows)."""
    rows = rows or PlaneRows(X, src, H, W, L, fill)
    top, left, bottom, right = pads
    hp, wp = top + H + bottom, left + W + right
    zero = rows.fill
    elem = zero.type.element
    # border rows: whole rows of zeros
    for r0, r1 in ((0, top), (top + H, hp)):
        if r1 > r0 and borders and span is None:
            _fill_run(b, scratch, I64(r0 * wp), (r1 - r0) * wp, zero)
    r_lo, r_hi, origin = span if span is not None else (rows.first, H, I64(0))
    with for_range(b, r_lo, r_hi, 1, "r") as r, _only(b, keep, r):
        drow = b.add(I64(top * wp + left), b.mul(b.sub(r, origin), I64(wp)))
        for c in range(left if borders else 0):
            b.store(ir.Constant(elem, fill), gep(b, scratch, b.sub(drow, I64(left - c)), elem))
        for c in range(right if borders else 0):
            b.store(ir.Constant(elem, fill), gep(b, scratch, b.add(drow, I64(W + c)), elem))
        srow = rows.row_of(b, r)
        nfull, tail = divmod(W, L)
        if nfull:
            with for_range(b, 0, nfull * L, L, "cc") as c:
                v = rows.load(b, srow, c, L)
                b.store(v, gep(b, scratch, b.add(drow, c), elem), align=4)
        if tail:
            mk = ir.Constant(ir.VectorType(I1, L), [1] * tail + [0] * (L - tail))
            v = rows.load(b, srow, I64(nfull * L), tail)
            p = gep(b, scratch, b.add(drow, I64(nfull * L)), elem)
            if spill:  # the lanes past the row are `fill`, landing on padding, on the next
                b.store(v, p, align=4)  # row's data (copied after) or on the slack
            else:
                masked_store(b, v, p, mk)


def fill_plane_split(b, X, src, scratch, H: int, W: int, pads, L: int, fill: float,
                     rows: PlaneRows | None = None, span=None, keep=None):
    """fill_plane for stride-2 kernels: each padded row of width wp is stored as its even
    columns (half = ceil(wp / 2) of them) followed by its odd columns. Only the data: the
    caller fills the padding once (it is the same for every plane). `span` and `keep` as in
    fill_plane."""
    rows = rows or PlaneRows(X, src, H, W, L, fill)
    top, left, _, right = pads
    wp = left + W + right
    half = -(-wp // 2)
    pitch = 2 * half
    border = rows.fill
    elem = border.type.element
    evens = ir.Constant(ir.VectorType(I32, L), list(range(0, 2 * L, 2)))
    odds = ir.Constant(ir.VectorType(I32, L), list(range(1, 2 * L, 2)))
    # chunk element i sits at padded column left + c0 + i; with c0 even its parity is left + i's
    first_even = (0, left // 2) if left % 2 == 0 else (half, (left - 1) // 2)  # (region, index)
    first_odd = (half, left // 2) if left % 2 == 0 else (0, (left + 1) // 2)
    nfull, tail = divmod(W, 2 * L)

    def chunk(drow, c0, lo, hi):
        k = b.sdiv(c0, I64(2)) if isinstance(c0, ir.Value) else I64(c0 // 2)
        # the even region first: a tail's extra lanes there run into the odd region
        for sel, (region, idx) in sorted(((evens, first_even), (odds, first_odd)),
                                         key=lambda t: t[1][0]):
            at = b.add(drow, b.add(I64(region + idx), k))
            b.store(b.shuffle_vector(lo, hi, sel), gep(b, scratch, at, elem), align=4)

    r_lo, r_hi, origin = span if span is not None else (rows.first, H, I64(0))
    with for_range(b, r_lo, r_hi, 1, "r") as r, _only(b, keep, r):
        drow = b.mul(b.sub(b.add(r, I64(top)), origin), I64(pitch))
        srow = rows.row_of(b, r)
        if tail:
            # First, whole vectors: the even region's extra lanes (`fill`) run into the odd
            # region, rewritten by the odd store and the chunks below; the odd region's into the
            # next row (written after) or the bottom padding and slack, `fill` anyway.
            c0 = nfull * 2 * L
            parts = []
            for j in range(2):
                n = min(L, max(0, tail - j * L))
                parts.append(border if n == 0 else rows.load(b, srow, I64(c0 + j * L), n))
            chunk(drow, c0, *parts)
        if nfull:
            with for_range(b, 0, nfull * 2 * L, 2 * L, "cc") as c0:
                lo = rows.load(b, srow, c0, L)
                hi = rows.load(b, srow, b.add(c0, I64(L)), L)
                chunk(drow, c0, lo, hi)


@contextlib.contextmanager
def _only(b, keep, r):
    """The body for row r only where keep(b, r) holds (always without `keep`)."""
    if keep is None:
        yield
        return
    with b.if_then(keep(b, r)):
        yield


def _read_rows(spec: DepthwiseSpec):
    """keep(b, r) for the data rows a strided "pairs" kernel reads, or None (all of them): a
    scratch row r holds input rows r and r + dh, and the kernel reads it for the pairs of taps
    (kh, kh + 1) with kh even, at padded rows oh * sh + kh * dh, so only rows whose padded
    index is congruent to some kh * dh modulo sh (a 3x3 stride-2 window: every other row; the
    other half of the int16 pair rows was converted and never read)."""
    sh = spec.strides[0]
    if spec.arith != "pairs" or sh == 1:
        return None
    residues = sorted({kh * spec.dilations[0] % sh for kh in range(0, spec.KH, 2)})
    if len(residues) == sh:
        return None
    top = spec.pads[0]

    def keep(b, r):
        phase = b.srem(b.add(r, I64(top + sh * (spec.dilations[0] + 1))), I64(sh))
        conds = [b.icmp_signed("==", phase, I64(k)) for k in residues]
        out = conds[0]
        for c in conds[1:]:
            out = b.or_(out, c)
        return out

    return keep


def _fill_run(b, ptr, start, n: int, value):
    """ptr[start : start + n] = value's lanes: plain vector stores, a masked one for the tail."""
    L = value.type.count
    elem = value.type.element
    full, tail = divmod(n, L)
    if full:
        with for_range(b, 0, full * L, L, "fill") as i:
            b.store(value, gep(b, ptr, b.add(start, i), elem), align=4)
    if tail:
        masked_store(b, value, gep(b, ptr, b.add(start, I64(full * L)), elem),
                     ir.Constant(ir.VectorType(I1, L), [1] * tail + [0] * (L - tail)))
