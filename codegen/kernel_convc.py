"""Direct convolution vectorized over output channels, for any stride, on an explicitly padded
input: no im2col, and no waste when the output plane is small or oddly sized.

A tile is MR output positions (consecutive in the flattened output plane, so it may wrap to the
next row) by NR = NV vectors of output channels. The weights are packed at compile time as
[group][OC/NR][Cg][KH*KW][NR] (zero channels past M), so each reduction step loads NV aligned
vectors of weights and broadcasts one input element per position: MR*NV FMAs per MR+NV loads.
The kernel loops over input channels and unrolls the KH*KW window with offsets known at compile
time. Results are transposed on the way out (scalar stores; they are a small fraction of a
tile's work, which is K = Cg*KH*KW steps). The epilogue runs on channel vectors: per-channel
operands (bias, scale) load as vectors, per-position ones (a residual) as gathers.

This is the layout-free counterpart of the NCHWc kernels: layers with a 7x7 or 14x14 output
keep every accumulator busy, where spatial vectors of 16 columns would be mostly padding.

With `arith` "float16" (fp16 arithmetic, as in kernel_gemm) input, weights, accumulators and the
partial sums between chunks are halves, with twice the channels per vector; the epilogue runs
on the accumulators widened to float32.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from . import math_table as mt
from .kernel_gemm import MAX_SPLIT_PARTS, Blocking, tile_cost
from .llvm_util import (
    F16,
    F32,
    I1,
    I32,
    I8,
    I64,
    STORAGE,
    convert_float,
    for_range,
    gep,
    kernel_function,
    load_float,
    masked_store,
    prefetch_lines,
    smax,
    smin,
    splat,
    split_last,
    stack_buffer,
    unravel,
    weighted_task_range,
)


@dataclass
class ChannelConvSpec:
    M: int  # output channels per group
    Cg: int  # input channels per group
    KH: int
    KW: int
    images: int
    groups: int
    OH: int
    OW: int
    Hp: int  # padded input height and width
    Wp: int
    strides: tuple[int, int]
    dilations: tuple[int, int]
    x_strides: tuple[int, int]  # image, group (elements)
    c_strides: tuple[int, int, int]  # image, group, output channel (elements)
    w_buf: int
    x_buf: int
    c_buf: int
    blocking: Blocking  # mr = positions per tile, nv = channel vectors per tile
    # epilogue(b, acc_vec, m0 (i64, first channel of the vector within the group), p (i64
    # position), img, grp, mask|None) -> vec; with `transposed`, over positions instead:
    # epilogue(b, acc_vec, m (channel within the group), p0 (first position), img, grp, mask)
    epilogue: Callable | None = None
    bufs_holder: list | None = None
    # Tiles of MR = 4, 8 or 16 positions (a power of two up to the lanes) are transposed in
    # registers and leave as vectors of MR positions per channel (masked stores for the last
    # tile: AVX-512); otherwise every result is extracted and stored on its own.
    transposed: bool = False
    w_dtype: str = "float32"  # the packed weights: float16 with --precision fp16
    # weight bytes per reduction chunk (None: WEIGHT_CHUNK_BYTES); partial sums go through the
    # stack between chunks
    chunk_bytes: int | None = None
    x_dtype: str = "float32"  # the (padded) input
    c_dtype: str = "float32"  # the output
    arith: str = "float32"  # "float16": half accumulators and FMAs (fp16 arithmetic)
    # tiles within one output row get a copy of the code with one input pointer (x86: a
    # broadcast FMA reads memory at any displacement from it; NEON's ld1r takes a bare register)
    straight_tiles: bool = False
    # each reduction step prefetches the input lines the tile this many position blocks ahead
    # will read from the same channel (0: none; see INPUT_PREFETCH_BLOCKS)
    input_prefetch: int = 0

    @property
    def elem(self) -> ir.Type:
        return F16 if self.arith == "float16" else F32

    @property
    def positions_outer(self) -> bool:
        """Whether the threads split the output positions rather than the channel panels: where
        all of a group's weights fit in L2 (`POSITIONS_OUTER_WEIGHT_BYTES`) and there is more
        than one panel. A thread then reads and writes only its share of each plane, the part
        that the kernels before and after it (position-split GEMMs, other such convs) keep in
        its own core's cache. Split by panels, every thread read the whole input, half of it
        from the other core's cache: on a Xeon VM that moved 25 KB in 2.6 us, and a chain of
        forty 64-channel 1x1 convs on 14x14 ran 2.2x slower on 2 threads than on 1."""
        panels = -(-self.M // self.blocking.nr)
        wbytes = self.M * self.Cg * self.KH * self.KW * (2 if self.w_dtype == "float16" else 4)
        return panels > 1 and wbytes <= POSITIONS_OUTER_WEIGHT_BYTES

    @property
    def spatial(self) -> bool:
        """Whether each thread takes a run of the output positions and all the panels for them
        (its share of the (block, panel) parts by cost, `spatial_parts`), rather than a share
        of the panels: for one image, one group, weights past L2 (more than one
        panel, not `positions_outer`) and SPATIAL_MIN_BLOCKS position blocks or more. A thread
        then reads the input at its positions only (the part the kernel before it wrote on its
        core, where that kernel split positions too) and writes its positions of every channel
        for the kernel after it; each thread streams all the weights, which are read-only and
        shared. By panels every thread read the whole input, half of it from the other core's
        cache. On the Xeon with 2 threads: resnet50's 1024 -> 256 1x1 convs on 14x14 0.52-0.57 ->
        0.42-0.45 ms, its 3x3 stride-2 convs of layer2 and layer3 1.06 -> 0.84 and 0.93 -> 0.80;
        the same work in the same order on 1 thread."""
        panels = -(-self.M // self.blocking.nr)
        pblocks = -(-self.OH * self.OW // self.blocking.mr)
        return (self.images == 1 and self.groups == 1 and panels > 1 and not self.positions_outer
                and pblocks >= SPATIAL_MIN_BLOCKS)


def pack_weights(w: np.ndarray, groups: int, nr: int) -> np.ndarray:
    """[G*M, Cg, KH, KW] -> [G][ceil(M/NR)][Cg*KH*KW][NR], zero channels past M."""
    OC = w.shape[0]
    M = OC // groups
    K = int(np.prod(w.shape[1:]))
    panels = -(-M // nr)
    out = np.zeros((groups, panels * nr, K), np.float32)
    out[:, :M, :] = w.reshape(groups, M, K)
    return np.ascontiguousarray(out.reshape(groups, panels, nr, K).transpose(0, 1, 3, 2))


# Weights per reduction chunk, reused by every position block of a unit. A chunk also pulls in
# the input channels it covers for each block, a few cache lines per channel: 1x1 convs take
# fewer channels per chunk so that footprint stays in L1 (measured on Zen 3 with AVX2: 32 KiB /
# 8 KiB). With AVX-512 tiles on Zen 4 streaming the weights from L2 measured faster than
# chunking (the spec's chunk_bytes).
WEIGHT_CHUNK_BYTES = {False: 8 * 1024, True: 32 * 1024}  # by "kernel larger than 1x1"
SCRATCH_BYTES = 32 * 1024  # partial sums of one unit's position blocks between chunks
# Taps per input channel up to which the reduction step is one unrolled block; a larger window
# (the 7x7 stem) loops over its rows with one row unrolled. In one long block LLVM's AMD
# scheduling models (znver3 to znver5) hoist the broadcasts of later taps far ahead of their
# FMAs and spill the accumulator tile: the 7x7 stride-2 stem of resnet18 made 622 stack accesses
# and ran at 2.0 ms on Zen 5, 1.3 ms under an Intel model. A one-row window gets no loop of one
# iteration (LLVM took twice as long on one); a long row loops over its taps (ROW_GROUP_TAPS).
ROW_LOOP_TAPS = 9
# Taps of one kernel row up to which the row is unrolled; a longer row (an audio model's 1x256
# window) loops over groups of this many, the rest unrolled after them. Unrolled whole, each of
# basic-pitch's 1x256 constant-Q convs was 10 MB of IR and the 200 KB model took 164 s to
# compile, 132 s of it in LLVM.
ROW_GROUP_TAPS = 16


def chunking(spec: ChannelConvSpec) -> tuple[int, int]:
    """(input channels per reduction chunk, position blocks per unit)."""
    blk = spec.blocking
    khw = spec.KH * spec.KW
    wcb = spec.chunk_bytes or WEIGHT_CHUNK_BYTES[khw > 1]
    cc = max(1, wcb // (khw * blk.nr * 4))
    pblocks = -(-spec.OH * spec.OW // blk.mr)
    if cc >= spec.Cg:
        return spec.Cg, pblocks
    return cc, max(1, min(pblocks, SCRATCH_BYTES // (blk.mr * blk.nr * 4)))


# Units of work a kernel offers at least (when it has as many position blocks): the threads
# split them by cost, so a conv with one panel of channels still runs on every core.
MIN_UNITS = 32
# A group's weights up to which the units run position chunks outermost (every thread cycles
# through all the panels' weights for its chunk of positions: they stay in its L2)
POSITIONS_OUTER_WEIGHT_BYTES = 256 * 1024
# Position blocks from which a conv with more weights splits its positions between the threads
# (`ChannelConvSpec.spatial`): fewer (a 7x7 plane's 7 blocks) would leave the threads unequal
# shares, and all the weights to stream for a few positions each
SPATIAL_MIN_BLOCKS = 16


def _tile_costs(spec: ChannelConvSpec) -> list[list[int]]:
    """`tile_cost` of every tile, [panel][position block]."""
    blk = spec.blocking
    P = spec.OH * spec.OW
    pblocks, panels = -(-P // blk.mr), -(-spec.M // blk.nr)
    return [[tile_cost(min(blk.mr, P - pb * blk.mr),
                       -(-min(blk.nr, spec.M - panel * blk.nr) // blk.lanes))
             for pb in range(pblocks)] for panel in range(panels)]


def unit_costs(spec: ChannelConvSpec, pcb: int) -> list[int]:
    """The relative cost of each unit (image, group, panel, chunk of pcb position blocks), in
    the kernel's unit order: the sum of its tiles' `tile_cost`. The threads split whole units:
    parts of one (some blocks on one thread, the rest on another) measured slower where a
    panel's weights are large, as each thread streamed all of them (resnet50's 3x3 convs on
    7x7, 885 KB a panel: the second of 2 threads 70 us late)."""
    per_panel = [[sum(row[pb0:pb0 + pcb]) for pb0 in range(0, len(row), pcb)]
                 for row in _tile_costs(spec)]
    if spec.positions_outer:  # chunk-major: [chunk][panel]
        one = [chunks[i] for i in range(len(per_panel[0])) for chunks in per_panel]
    else:
        one = [c for chunks in per_panel for c in chunks]
    return one * (spec.images * spec.groups)


def spatial_parts(spec: ChannelConvSpec) -> tuple[int, list[int]]:
    """(g, costs): the parts a `spatial` conv's threads split, g position blocks of one panel,
    g = 1 up to MAX_SPLIT_PARTS parts; their costs block-major (the sum of their tiles'
    `tile_cost`). By whole blocks (a plane of 196 positions is 24 blocks of 8 and one of 4) the
    first of 2 threads took 104 positions and the second 92, and ran 7% longer; by parts the
    split falls inside a block, between two panels."""
    tiles = _tile_costs(spec)
    pblocks = len(tiles[0])
    g = max(1, -(-pblocks * len(tiles) // MAX_SPLIT_PARTS))
    return g, [sum(row[pb0:pb0 + g]) for pb0 in range(0, pblocks, g) for row in tiles]


def emit_channel_conv_kernel(module: ir.Module, name: str, spec: ChannelConvSpec,
                             nbufs: int) -> ir.Function:
    fn, b, bufs = kernel_function(module, name, nbufs)
    if spec.bufs_holder is not None:
        spec.bufs_holder[0] = bufs
    blk = spec.blocking
    L, NV, MR, NR = blk.lanes, blk.nv, blk.mr, blk.nr
    vt = ir.VectorType(spec.elem, L)
    accs = [[b.alloca(vt, name=f"acc{r}_{v}") for v in range(NV)] for r in range(MR)]
    cc, pcb = chunking(spec)
    chunks = -(-spec.Cg // cc)
    scratch = None
    if chunks > 1:
        scratch = stack_buffer(b, pcb * MR * NR, "partial")
    body = b.append_basic_block("body")
    b.branch(body)
    b.position_at_end(body)
    W, X, C = bufs[spec.w_buf], bufs[spec.x_buf], bufs[spec.c_buf]
    P = spec.OH * spec.OW
    pblocks = -(-P // MR)
    last_rows = P - (pblocks - 1) * MR
    panels = -(-spec.M // NR)
    last_chans = spec.M - (panels - 1) * NR
    outer = spec.images * spec.groups * panels
    pos_outer = spec.positions_outer
    if pos_outer:  # the positions are what the threads split: enough chunks of them
        pcb = min(pcb, -(-pblocks // min(pblocks, MIN_UNITS)))
    elif spec.spatial:  # a task's positions in chunks as long as the partial sums allow
        pass
    elif outer * -(-pblocks // pcb) < MIN_UNITS:  # too few units to share: split the positions
        pcb = min(pcb, -(-pblocks // min(pblocks, -(-MIN_UNITS // outer))))
    pchunks = -(-pblocks // pcb)
    # a unit's tiles fetch the weights its next reduction chunk (or next panel) reads while they
    # compute from this one's: past L2 the weights come from memory, and the first tile of a
    # chunk would otherwise wait on all of them at once (its later tiles read them from L2)
    weights = spec.groups * spec.M * spec.Cg * _channel_bytes(spec)
    prefetch = not pos_outer and weights > PREFETCH_BYTES
    def unit_body(img, grp, panel, pb_lo, pb_hi):
        """Position blocks [pb_lo, pb_hi) of one panel, over the reduction in chunks."""

        def chunk_body(c0, c1, first, last):
            with for_range(b, pb_lo, pb_hi, 1, "pb") as pb:
                p0 = b.mul(pb, I64(MR))
                part = None
                if scratch is not None:
                    part = b.mul(b.sub(pb, pb_lo), I64(MR * NR))

                ahead = (b.sub(pb, pb_lo), pcb) if prefetch else None

                def by_chans(rows: int):
                    def tile(chans, straight):
                        _tile(b, spec, W, X, C, accs, img, grp, panel, p0, rows, chans, vt, c0,
                              c1, scratch, part, first, last, ahead, straight, pb_hi)

                    def by_row(chans):
                        if straight_rows(spec) or rows == 1:
                            return tile(chans, True)
                        if not spec.straight_tiles or spec.OW < STRAIGHT_MIN_ROWS * rows:
                            return tile(chans, False)  # (most tiles wrap: one copy)
                        fits = b.icmp_signed("<=", b.add(b.srem(p0, I64(spec.OW)), I64(rows)),
                                             I64(spec.OW))
                        with b.if_else(fits) as (then, other):
                            with then:
                                tile(chans, True)
                            with other:
                                tile(chans, False)

                    split_last(b, panel, panels, NR, last_chans, by_row)

                split_last(b, pb, pblocks, MR, last_rows, by_chans)

        if chunks == 1:
            chunk_body(I64(0), I64(spec.Cg), None, None)
        else:
            with for_range(b, 0, spec.Cg, cc, "cchunk") as c0:
                c1 = b.add(c0, I64(cc))
                c1 = b.select(b.icmp_signed("<", c1, I64(spec.Cg)), c1, I64(spec.Cg))
                chunk_body(c0, c1, b.icmp_signed("==", c0, I64(0)),
                           b.icmp_signed(">=", c1, I64(spec.Cg)))

    if spec.spatial:  # this task's run of parts (blocks of one panel), block-major; by panel
        g, costs = spatial_parts(spec)
        lo, hi = weighted_task_range(b, costs, fn.args[1], fn.args[2], name)
        with for_range(b, 0, panels, 1, "panel") as panel:
            # the blocks of this panel's parts q with q * panels + panel in [lo, hi)
            def first_block(u):
                ahead = smax(b, b.sub(u, panel), I64(0))
                return smin(b, b.mul(b.sdiv(b.add(ahead, I64(panels - 1)), I64(panels)),
                                     I64(g)), I64(pblocks))

            b_lo, b_hi = first_block(lo), first_block(hi)
            with for_range(b, b_lo, b_hi, pcb, "pchunk") as s0:
                s1 = b.add(s0, I64(pcb))
                unit_body(I64(0), I64(0), panel,
                          s0, b.select(b.icmp_signed("<", s1, b_hi), s1, b_hi))
        b.ret(I32(0))
        return fn
    lo, hi = weighted_task_range(b, unit_costs(spec, pcb), fn.args[1], fn.args[2], name)
    with for_range(b, lo, hi, 1, "unit") as unit:
        if pos_outer:  # panels innermost: a chunk of positions stays on one thread
            panel, pc, grp, img = unravel(b, unit, (panels, pchunks, spec.groups))
        else:  # position blocks innermost: a weight chunk is reused while it is hot in cache
            pc, panel, grp, img = unravel(b, unit, (pchunks, panels, spec.groups))
        pb_lo = b.mul(pc, I64(pcb))
        pb_hi = b.add(pb_lo, I64(pcb))
        unit_body(img, grp, panel, pb_lo,
                  b.select(b.icmp_signed("<", pb_hi, I64(pblocks)), pb_hi, I64(pblocks)))
    b.ret(I32(0))
    return fn


# A tile's positions may wrap to the next output row. Where a row holds this many tiles or
# more, the tiles that do not wrap get their own copy of the code (`straight`), whose input
# reads are constant offsets from one pointer: each wrapping position otherwise holds its own
# window pointer, and 16 of them (a transposed tile) spilled and were reloaded before every
# broadcast FMA, 33 loads for 16 FMAs. On the Xeon: squeezenet's 3x3 stride-2 stem (3 -> 64
# channels, 111 x 111 outputs, 16-position tiles) 0.36 -> 0.31 ms, mobilenet_v2's (3 -> 32)
# 0.20 -> 0.155 ms, resnet's 7x7 one (8-position tiles) 1.25 -> 1.15 ms. x86 only
# (`ChannelConvSpec.straight_tiles`).
STRAIGHT_MIN_ROWS = 3


# Position blocks ahead whose input a tile prefetches, one line per kernel row and input channel
# (`ChannelConvSpec.input_prefetch`, x86). A tile reads each input channel's plane at its own
# positions, one plane (a few KB) apart per reduction step, and moves along the planes only one
# block per pass over the channels: no hardware prefetcher follows that, and an input that was
# not in L2 (written before a larger kernel, or by the other core) came line by line at a miss'
# latency. On the Xeon: squeezenet's 256 -> 32 1x1 on 27x27 with its input in L3 0.154 -> 0.103
# ms (1 thread), 0.166 -> 0.057 ms (2 threads); the networks on 2 threads: squeezenet 4%,
# resnet18 5%, resnet50 3% faster, mobilenet_v2 unchanged. 2 and 8 blocks ahead measured within
# 1% of 4. The prefetch stays within the unit's positions: prefetched past them, into rows the
# other thread reads, a 3x3 conv of squeezenet left the GEMM two kernels on (fire4's expand1x1)
# at 0.08 ms on 2 threads instead of 0.04.
INPUT_PREFETCH_BLOCKS = 4


def straight_rows(spec: ChannelConvSpec) -> bool:
    """Whether wrapping to the next output row moves the input window by as much as one more
    column does (a 1x1 stride-1 conv on an unpadded plane), so no tile needs its own pointers."""
    return spec.strides[0] * spec.Wp == spec.OW * spec.strides[1]


def _tile(b, spec: ChannelConvSpec, W, X, C, accs, img, grp, panel, p0, rows: int, chans: int, vt,
          c0, c1, scratch, part, first, last, ahead=None, straight=False, pb_end=None):
    """One tile over input channels [c0, c1). With a scratch (several chunks), partial sums start
    from it unless `first` and go back to it unless `last`; only the last chunk runs the
    epilogue and writes the output. `ahead` (the tile's index among its unit's tiles, their
    number): prefetch that share of the weights that follow this chunk's, a few lines per input
    channel. `straight`: the tile's positions lie in one output row (or wrapping moves like a
    column: straight_rows), so position r's window is the first's plus r strides. `pb_end`: the
    unit's end (position blocks), past which the input is not prefetched."""
    blk = spec.blocking
    L, NR = blk.lanes, blk.nr
    nv = -(-chans // L)
    sh, sw = spec.strides
    dh, dw = spec.dilations
    KHW = spec.KH * spec.KW
    K = spec.Cg * KHW
    zero = ir.Constant(vt, [0.0] * L)
    xs_img, xs_grp = spec.x_strides
    xbase = b.add(b.mul(img, I64(xs_img)), b.mul(grp, I64(xs_grp)))
    corners = []  # each position's window corner in the padded input

    def corner(p):
        oh, ow = b.sdiv(p, I64(spec.OW)), b.srem(p, I64(spec.OW))
        return b.add(xbase, b.add(b.mul(oh, I64(sh * spec.Wp)), b.mul(ow, I64(sw))))

    if straight:
        first_corner = corner(p0)
        corners = [first_corner] + [b.add(first_corner, I64(r * sw)) for r in range(1, rows)]
    else:
        corners = [corner(b.add(p0, I64(r))) for r in range(rows)]
    ahead_corner = None
    if spec.input_prefetch:  # the window input_prefetch blocks on, within the unit's positions
        P = spec.OH * spec.OW
        pa = b.add(p0, I64(spec.input_prefetch * blk.mr))
        end = b.sub(b.mul(pb_end, I64(blk.mr)), I64(1))
        end = b.select(b.icmp_signed("<", end, I64(P - 1)), end, I64(P - 1))
        ahead_corner = corner(b.select(b.icmp_signed("<", pa, end), pa, end))

    E = spec.elem

    def slot(r, v):
        return gep(b, scratch, b.add(part, I64(r * NR + v * L)), E)

    if scratch is None:
        for r in range(rows):
            for v in range(nv):
                b.store(zero, accs[r][v])
    else:
        with b.if_else(first) as (then, other):
            with then:
                for r in range(rows):
                    for v in range(nv):
                        b.store(zero, accs[r][v])
            with other:
                for r in range(rows):
                    for v in range(nv):
                        b.store(b.load(slot(r, v), typ=vt, align=4), accs[r][v])
    panels = -(-spec.M // NR)
    wbase = b.mul(b.add(b.mul(grp, I64(panels)), panel), I64(K * NR))
    plane = spec.Hp * spec.Wp
    offs = [(j // spec.KW) * dh * spec.Wp + (j % spec.KW) * dw for j in range(KHW)]
    def taps(xc, wc, offsets):
        for j, off in enumerate(offsets):
            wv = [load_float(b, W, b.add(wc, I64(j * NR + v * L)), spec.w_dtype, L, reg=E)
                  for v in range(nv)]
            for r in range(rows):
                xe = load_float(b, X, b.add(corners[r], b.add(xc, I64(off))), spec.x_dtype,
                                reg=E)
                a = splat(b, xe, L)
                for v in range(nv):
                    b.store(mt.fma(b, a, wv[v], b.load(accs[r][v], typ=vt)), accs[r][v])

    def kernel_row(xc, wc):
        """The KW taps of one kernel row (its window at xc, its weights at wc)."""
        if spec.KW <= ROW_GROUP_TAPS:
            return taps(xc, wc, offs[:spec.KW])
        full = spec.KW // ROW_GROUP_TAPS * ROW_GROUP_TAPS
        with for_range(b, 0, full, ROW_GROUP_TAPS, "kw") as kw:
            taps(b.add(xc, b.mul(kw, I64(dw))), b.add(wc, b.mul(kw, I64(NR))),
                 offs[:ROW_GROUP_TAPS])
        if full < spec.KW:
            taps(b.add(xc, I64(full * dw)), b.add(wc, I64(full * NR)), offs[:spec.KW - full])

    with for_range(b, c0, c1, 1, "c") as c:
        xc = b.mul(c, I64(plane))
        wc = b.add(wbase, b.mul(c, I64(KHW * NR)))
        if ahead is not None:
            _prefetch_ahead(b, spec, W, wbase, c0, c1, c, ahead)
        if ahead_corner is not None:
            xs = STORAGE[spec.x_dtype]
            for kh in range(spec.KH):
                row = b.add(ahead_corner, b.add(xc, I64(kh * dh * spec.Wp)))
                prefetch_lines(b, gep(b, X, row, xs), 1)
        if KHW <= ROW_LOOP_TAPS:
            taps(xc, wc, offs)
        elif spec.KH == 1:  # one row: nothing to loop over
            kernel_row(xc, wc)
        else:  # a loop over the kernel rows
            with for_range(b, 0, spec.KH, 1, "kh") as kh:
                kernel_row(b.add(xc, b.mul(kh, I64(dh * spec.Wp))),
                           b.add(wc, b.mul(kh, I64(spec.KW * NR))))
    write = _write_transposed if spec.transposed else _write_out
    if scratch is None:
        write(b, spec, C, accs, img, grp, panel, p0, rows, chans, vt)
        return
    with b.if_else(last) as (then, other):
        with then:
            write(b, spec, C, accs, img, grp, panel, p0, rows, chans, vt)
        with other:
            for r in range(rows):
                for v in range(nv):
                    b.store(b.load(accs[r][v], typ=vt), slot(r, v), align=4)


def _channel_bytes(spec: ChannelConvSpec) -> int:
    """Weight bytes of one input channel for one output channel (its KH x KW taps)."""
    return spec.KH * spec.KW * (2 if spec.w_dtype == "float16" else 4)


# the weights past which a kernel prefetches the next chunk's (smaller ones stay in cache).
# Measured on the Xeon: resnet50's last stage (1x1 2048->512, 4 MB) ran 0.65 ms with its weights
# in cache and 0.85-0.90 ms with them in memory, as in the network; prefetched, 0.66-0.71 ms
PREFETCH_BYTES = 256 << 10


def _prefetch_ahead(b, spec: ChannelConvSpec, W, wbase, c0, c1, c, ahead) -> None:
    """At input channel c of tile `idx` of `n`: prefetch (into L2) the lines of the chunk that
    follows [c0, c1) (the same size, contiguous after it) from byte ((idx * (c1 - c0) + c - c0)
    * per) on, per = the chunk's bytes per channel over n, in whole lines; clamped to the
    chunk."""
    idx, n = ahead
    step = _channel_bytes(spec) * spec.blocking.nr  # a channel's weight bytes
    lines = max(1, -(-step // (64 * n)))
    wbytes = 2 if spec.w_dtype == "float16" else 4
    start = b.mul(b.add(wbase, b.mul(c1, I64(step // wbytes))), I64(wbytes))  # next chunk
    size = b.mul(b.sub(c1, c0), I64(step))
    last = b.sub(size, I64(64))
    at = b.mul(b.add(b.mul(idx, b.sub(c1, c0)), b.sub(c, c0)), I64(lines * 64))
    for i in range(lines):
        off = b.add(at, I64(64 * i))
        off = b.select(b.icmp_signed("<", off, last), off, last)
        prefetch_lines(b, gep(b, W, b.add(start, off), I8), 64)


def _write_out(b, spec: ChannelConvSpec, C, accs, img, grp, panel, p0, rows: int, chans: int, vt):
    L, NR = spec.blocking.lanes, spec.blocking.nr
    nv = -(-chans // L)
    cs = STORAGE[spec.c_dtype]
    ist, gst, mst = spec.c_strides
    cbase = b.add(b.mul(img, I64(ist)), b.mul(grp, I64(gst)))
    m_panel = b.mul(panel, I64(NR))
    for v in range(nv):
        valid = min(L, chans - v * L)
        mask = None if valid == L else ir.Constant(ir.VectorType(I1, L),
                                                   [1] * valid + [0] * (L - valid))
        m0 = b.add(m_panel, I64(v * L))
        for r in range(rows):
            p = b.add(p0, I64(r))
            acc = convert_float(b, b.load(accs[r][v], typ=vt), F32)
            if spec.epilogue is not None:
                acc = spec.epilogue(b, acc, m0, p, img, grp, mask)
            acc = convert_float(b, acc, cs)
            out0 = b.add(cbase, b.add(b.mul(m0, I64(mst)), p))
            for lane in range(valid):
                b.store(b.extract_element(acc, I32(lane)),
                        gep(b, C, b.add(out0, I64(lane * mst)), cs))


def transpose_rows(b, rows: list, n: int) -> list:
    """Transpose n row vectors (n a power of two, at most their lane count L) in n-lane blocks:
    afterwards row i, lanes [q*n, (q+1)*n), holds lane q*n + i of rows 0..n-1. A butterfly of
    log2(n) stages of two-input shuffles (swap the off-diagonal s x s blocks, s = n/2 .. 1)."""
    L = rows[0].type.count
    rows = list(rows)
    s = n // 2
    while s >= 1:
        out = list(rows)
        for i in range(n):
            if (i // s) % 2:
                continue
            lo, hi = rows[i], rows[i + s]
            first = [g * 2 * s + w if w < s else L + g * 2 * s + w - s
                     for g in range(L // (2 * s)) for w in range(2 * s)]
            second = [g * 2 * s + s + w if w < s else L + g * 2 * s + w
                      for g in range(L // (2 * s)) for w in range(2 * s)]
            out[i] = b.shuffle_vector(lo, hi, ir.Constant(ir.VectorType(I32, L), first))
            out[i + s] = b.shuffle_vector(lo, hi, ir.Constant(ir.VectorType(I32, L), second))
        rows = out
        s //= 2
    return rows


def _write_transposed(b, spec: ChannelConvSpec, C, accs, img, grp, panel, p0, rows: int,
                      chans: int, vt):
    """The tile's results as vectors of MR positions per output channel: an in-register
    transpose per channel vector, then the (column) epilogue and one vector store per channel,
    masked to `rows` positions in a short last tile."""
    L, NR, MR = spec.blocking.lanes, spec.blocking.nr, spec.blocking.mr
    nv = -(-chans // L)
    cs = STORAGE[spec.c_dtype]
    ist, gst, mst = spec.c_strides
    cbase = b.add(b.mul(img, I64(ist)), b.mul(grp, I64(gst)))
    m_panel = b.mul(panel, I64(NR))
    zero = ir.Constant(ir.VectorType(F32, L), [0.0] * L)
    mask = None if rows == MR else ir.Constant(ir.VectorType(I1, MR),
                                               [1] * rows + [0] * (MR - rows))
    for v in range(nv):
        t = transpose_rows(b, [convert_float(b, b.load(accs[r][v], typ=vt), F32) if r < rows
                               else zero for r in range(MR)], MR)
        for i in range(MR):
            for q in range(L // MR):
                lane0 = v * L + q * MR + i  # the channel of this piece within the panel
                if lane0 >= chans:
                    continue
                piece = t[i] if MR == L else b.shuffle_vector(t[i], ir.Constant(t[i].type, None),
                    ir.Constant(ir.VectorType(I32, MR), list(range(q * MR, (q + 1) * MR))))
                m = b.add(m_panel, I64(lane0))
                if spec.epilogue is not None:
                    piece = spec.epilogue(b, piece, m, p0, img, grp, mask)
                piece = convert_float(b, piece, cs)
                ptr = gep(b, C, b.add(cbase, b.add(b.mul(m, I64(mst)), p0)), cs)
                if mask is None:
                    b.store(piece, ptr, align=2 if cs == F16 else 4)
                else:
                    masked_store(b, piece, ptr, mask)
