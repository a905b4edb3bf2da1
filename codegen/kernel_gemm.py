"""Register-blocked GEMM kernels for convolution and matmul, with fused epilogues.

C[m, n] = sum_k A[m, k] * B[k, n] for a batch of problems. A is the broadcast operand (conv weights
packed at compile time as [group][M/MR][K][MR], or a strided activation), B the vector operand:
columns are read in panels of NR = NV vector registers, either packed at compile time (matmul
weights, [N/NR][K][NR]) or packed per task at run time into a stack buffer (a strided copy, or
im2col for convolution). The microkernel keeps an MR x NV tile of accumulators in registers and
does MR*NV vector FMAs per k step. Tasks split the (batch, column panel) space statically.

fp16 arithmetic (`GemmSpec.arith` "float16": --precision fp16 on AArch64 fullfp16 or x86
AVX512-FP16) runs the same kernel on half elements: twice the lanes per vector, half weights and
activations (the panel holds halves), half accumulators with fp16 FMAs (`fmla v.8h`,
`vfmadd231ph`); partial sums between K blocks keep their half values in the output buffer, and
the epilogue widens the accumulator to float32. Where LLVM has no half arithmetic (the host that
computes the accuracy report) it computes each operation in float32 and rounds it to half.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from llvmlite import ir

from . import math_table as mt
from .llvm_util import (
    F16,
    F32,
    I32,
    I64,
    PTR,
    STORAGE,
    clamp,
    convert_float,
    for_range,
    gep,
    lane_mask,
    load_float,
    load_strided,
    masked_load,
    masked_store,
    prefetch_lines,
    smin,
    splat,
    stack_buffer,
    unravel,
    weighted_task_range,
)


@dataclass
class Blocking:
    mr: int
    nv: int
    lanes: int
    kc: int = 256

    @property
    def nr(self) -> int:
        return self.nv * self.lanes


def fit_columns(mr: int, nv: int, lanes: int, n: int) -> tuple[int, int]:
    """A tile of mr rows by nv vectors narrowed to the vectors `n` columns (or channels) fill,
    the accumulators freed going to more rows (at most 12)."""
    need = -(-n // lanes)
    if need >= nv:
        return mr, nv
    return min(12, mr * nv // need), need


def choose_blocking(vector_bits: int, K: int, M: int, elem_bits: int = 32,
                    N: int = 0) -> Blocking:
    """The register tile for elements of `elem_bits` (16: fp16 arithmetic, twice the lanes).
    With the column count `N` (0: unknown, many), a narrow B (a classifier's 10 columns) gets
    only the vectors it fills, and the accumulators go to more rows instead: B is packed in
    panels of nv vectors, so 4 zmm of halves for 10 columns would compute and store 12.8x the
    columns."""
    lanes = max(1, vector_bits // elem_bits)
    if vector_bits >= 512:
        mr, nv = 6, 4  # 24 of 32 zmm accumulators
    elif vector_bits >= 256:
        mr, nv = 6, 2  # 12 of 16 ymm
    else:
        mr, nv = 8, 3  # 24 of 32 NEON q registers (8x12)
    if N > 0:
        mr, nv = fit_columns(mr, nv, lanes, N)
    if M < mr:
        mr = max(1, M)
    nr = nv * lanes
    kc = max(16, min(K, (32768 // (elem_bits // 8 * nr)) // 8 * 8))
    return Blocking(mr, nv, lanes, kc)


@dataclass
class Im2col:
    channels: int  # input channels per group
    h: int
    w: int
    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    ph: int
    pw: int
    ow: int  # output width (columns are oh*ow + ow)


@dataclass
class GemmSpec:
    M: int
    N: int
    K: int
    images: int  # outer batch
    groups: int  # inner batch (conv groups)
    a_buf: int
    a_packed: bool
    a_strides: tuple[int, int, int, int]  # image, group, m, k (when not packed)
    b_buf: int
    b_kind: str  # "prepacked" | "contig" | "im2col"
    b_strides: tuple[int, int, int]  # image, group, k (contig/im2col source)
    c_buf: int
    c_strides: tuple[int, int, int]  # image, group, m
    blocking: Blocking
    im2col: Im2col | None = None
    # epilogue(b, acc_vec, m (i64), n0 (i64), image (i64), group (i64), mask|None) -> vec
    epilogue: Callable | None = None
    extra: dict = field(default_factory=dict)
    a_dtype: str = "float32"  # packed A (conv weights): float16 with --precision fp16
    b_dtype: str = "float32"  # prepacked B (matmul weights)
    x_dtype: str = "float32"  # the activations: B when packed at run time, A when not packed
    c_dtype: str = "float32"  # the output, which also holds partial sums between K blocks
    arith: str = "float32"  # "float16": half accumulators and FMAs (fp16 arithmetic)
    mchunk: int = 0  # rows of A per task unit, a multiple of MR (0: all M): row_chunk

    @property
    def elem(self) -> ir.Type:
        """The element type of registers, panel and accumulators."""
        return F16 if self.arith == "float16" else F32


def row_chunk(M: int, K: int, blk: Blocking, elem_bytes: int, l2_bytes: int) -> int:
    """GemmSpec.mchunk for packed weights A [M, K]: all rows in a unit (0) unless the weights
    exceed half of L2; then as few chunks of rows as keep each chunk's weights in half of L2,
    of equal size (whole MR blocks), a thread's units running a chunk's panels one after
    another. Unchunked, every panel streamed all the weights from L3 again (a 1x1 stride-2 conv
    of 1024 to 2048 channels on a 7x7 plane: 8 MB per panel; with AVX2, resnet50's 1024 -> 512
    on 14x14, 2 MB for each of 13 panels). Equal chunks also split the weights between the
    threads: on 2, each streams one chunk, not all of them."""
    weights = M * K * elem_bytes
    if weights <= l2_bytes // 2:
        return 0
    chunks = -(-weights // (l2_bytes // 2))
    rows = -(-(-(-M // chunks)) // blk.mr) * blk.mr
    return rows if rows < M else 0


def tile_cost(rows: int, nv: int) -> int:
    """A tile's relative cost, for splitting work between threads: FMA vectors per reduction
    step, a short block costing as much as the rows that hide the FMA latency (as in
    lower._rows_per_tile), plus a block's overhead."""
    return max(rows, -(-8 // nv)) * nv + 2


# The most parts a GEMM's threads split it into (the kernel holds their cost prefix in a table)
MAX_SPLIT_PARTS = 4096


def split_parts(spec: GemmSpec) -> tuple[int, list[int]]:
    """(g, costs): the threads split a GEMM into parts of g row blocks (MR rows) of one unit
    (image, group, row chunk, panel), g = 1 up to MAX_SPLIT_PARTS parts; each part's cost in
    the kernel's order, parts past M (in a last chunk shorter than the others) costing 0.
    Split by whole units, resnet50's 1x1 convs on 28x28 (784 columns: 25 panels of 32) gave
    the first of 2 threads 13 panels and the second 12, one of them half empty (7% idle)."""
    blk = spec.blocking
    MR = blk.mr
    n_panels = -(-spec.N // blk.nr)
    mchunk = spec.mchunk or -(-spec.M // MR) * MR
    n_chunks = -(-spec.M // mchunk)
    blocks = mchunk // MR  # per unit
    units = spec.images * spec.groups * n_chunks * n_panels
    g = max(1, -(-units * blocks // MAX_SPLIT_PARTS))
    per_chunk = []
    for mc in range(n_chunks):
        firsts = [mc * mchunk + j * MR for j in range(blocks)]
        block_costs = [tile_cost(min(MR, spec.M - r0), blk.nv) if r0 < spec.M else 0
                       for r0 in firsts]
        per_chunk.append([sum(block_costs[j:j + g]) for j in range(0, blocks, g)])
    one = [c for chunk in per_chunk for _ in range(n_panels) for c in chunk]
    return g, one * (spec.images * spec.groups)


def pack_a(w: np.ndarray, groups: int, M: int, K: int, mr: int) -> np.ndarray:
    """[G*M, K] weights -> [G][ceil(M/MR)][K][MR], zero rows past M."""
    mb = -(-M // mr)
    out = np.zeros((groups, mb * mr, K), np.float32)
    out[:, :M, :] = w.reshape(groups, M, K)
    return np.ascontiguousarray(out.reshape(groups, mb, mr, K).transpose(0, 1, 3, 2))


def pack_b(w: np.ndarray, nr: int) -> np.ndarray:
    """[K, N] weights -> [ceil(N/NR)][K][NR], zero columns past N."""
    K, N = w.shape
    npan = -(-N // nr)
    out = np.zeros((K, npan * nr), np.float32)
    out[:, :N] = w
    return np.ascontiguousarray(out.reshape(K, npan, nr).transpose(1, 0, 2))


def emit_gemm_kernel(module: ir.Module, name: str, spec: GemmSpec, nbufs: int) -> ir.Function:
    fn = ir.Function(module, ir.FunctionType(I32, [PTR, I32, I32]), name)
    entry = fn.append_basic_block("entry")
    b = ir.IRBuilder(entry)
    bufs = [b.load(gep(b, fn.args[0], I64(i), PTR), typ=PTR) for i in range(nbufs)]
    if "bufs_holder" in spec.extra:  # the epilogue renders loads from these pointers
        spec.extra["bufs_holder"][0] = bufs
    # the epilogue's operands laid out as the output (a residual; "out_like": their buffers)
    spec.extra["out_like_ptrs"] = [bufs[i] for i in spec.extra.get("out_like", ())]
    blk = spec.blocking
    L, NV, MR, NR = blk.lanes, blk.nv, blk.mr, blk.nr
    E = spec.elem
    vt = ir.VectorType(E, L) if L > 1 else E
    kc = blk.kc
    packed_b = spec.b_kind == "prepacked"
    panel = None
    if not packed_b:
        panel = stack_buffer(b, kc * NR, "panel")
    accs = [[b.alloca(vt, name=f"acc{r}_{v}") for v in range(NV)] for r in range(MR)]
    if spec.b_kind == "im2col":
        spec.extra["colpos"] = (b.alloca(I64, size=NR, name="pos_h"), b.alloca(I64, size=NR,
                                                                               name="pos_w"))
    body = b.append_basic_block("body")
    b.branch(body)
    b.position_at_end(body)

    n_panels = -(-spec.N // NR)
    mchunk = spec.mchunk or -(-spec.M // MR) * MR
    n_chunks = -(-spec.M // mchunk)
    # units (image, group, row chunk, panel): a thread's units share their rows' weights. The
    # threads split them by parts of g row blocks (split_parts), so a split may fall inside a
    # unit: both threads then pack its panel, each running its own rows.
    g, costs = split_parts(spec)
    spu = len(costs) // (spec.images * spec.groups * n_chunks * n_panels)  # parts per unit
    lo, hi = weighted_task_range(b, costs, fn.args[1], fn.args[2], name)
    A, B, C = bufs[spec.a_buf], bufs[spec.b_buf], bufs[spec.c_buf]
    m_rem = spec.M % MR
    whole = I64(spec.M - m_rem)  # the rows in whole MR blocks; the rows past them below
    u_lo = b.sdiv(lo, I64(spu))
    u_hi = b.sdiv(b.add(hi, I64(spu - 1)), I64(spu))
    with for_range(b, u_lo, u_hi, 1, "unit") as unit:
        p, mc, bg = unravel(b, unit, (n_panels, n_chunks))
        base = b.mul(unit, I64(spu))
        c0 = b.mul(mc, I64(mchunk))
        c1 = b.add(c0, I64(mchunk))
        # this task's parts of the unit, as rows [m_lo, m_end) of its chunk
        m_lo = b.add(c0, b.mul(clamp(b, b.sub(lo, base), I64(0), I64(spu)), I64(g * MR)))
        m_end = b.add(c0, b.mul(clamp(b, b.sub(hi, base), I64(0), I64(spu)), I64(g * MR)))
        m_end = smin(b, m_end, c1)
        m_hi = smin(b, m_end, whole)
        has_rows = b.icmp_signed("<", m_lo, smin(b, m_end, I64(spec.M)))
        if m_rem:  # the short last block: in the last chunk, in this task's part of it
            tail = b.and_(b.icmp_signed("<=", m_lo, whole), b.icmp_signed(">", m_end, whole))
        with b.if_then(has_rows):
            grp = b.srem(bg, I64(spec.groups))
            img = b.sdiv(bg, I64(spec.groups))
            n0 = b.mul(p, I64(NR))
            left = b.sub(I64(spec.N), n0)
            valid = b.select(b.icmp_signed("<", left, I64(NR)), left, I64(NR))
            # K blocks: a runtime loop (code size stays one tile whatever K is)
            with for_range(b, 0, spec.K, kc, "kb") as kb:
                rest = b.sub(I64(spec.K), kb)
                kcur = b.select(b.icmp_signed("<", rest, I64(kc)), rest, I64(kc))
                if packed_b:
                    # [panel][K][NR]: this panel's rows kb.. start here
                    bp = gep(b, B, b.add(b.mul(p, I64(spec.K * NR)), b.mul(kb, I64(NR))),
                             STORAGE[spec.b_dtype])
                else:
                    _pack_panel(b, spec, B, panel, img, grp, n0, valid, kb, kcur)
                    bp = panel
                first = b.icmp_signed("==", kb, I64(0))
                last = b.icmp_signed(">=", b.add(kb, I64(kc)), I64(spec.K))

                def tile(mb: ir.Value, mr: int, share):
                    _tile(b, spec, A, B, bp, C, accs, mb, mr, img, grp, n0, valid, kb, kcur, first,
                          last, vt, share)

                # the next panel's B rows each row tile prefetches (where they split them): the
                # whole MR blocks share them, a short last block alone takes them all
                if spec.M >= MR:
                    ntiles = b.sdiv(b.sub(m_hi, m_lo), I64(MR))
                    ntiles = b.select(b.icmp_signed(">", ntiles, I64(1)), ntiles, I64(1))
                    rows = b.sdiv(b.add(kcur, b.sub(ntiles, I64(1))), ntiles)
                    with for_range(b, m_lo, m_hi, MR, "mb") as mb:
                        tile(mb, MR, (b.sdiv(b.sub(mb, m_lo), I64(MR)), rows))
                if m_rem:
                    with b.if_then(tail):
                        tile(whole, m_rem, (I64(0), kcur if spec.M < MR else I64(0)))
    b.ret(I32(0))
    return fn


def _pack_panel(b, spec: GemmSpec, B, panel, img, grp, n0, valid, kb, kcur):
    """panel[kk][v] = B(kb+kk, n0+v), zero for v >= valid."""
    blk = spec.blocking
    L, NR = blk.lanes, blk.nr
    E, xs = spec.elem, STORAGE[spec.x_dtype]
    ist, gst, kst = spec.b_strides
    base = b.add(b.mul(img, I64(ist)), b.mul(grp, I64(gst)))
    if spec.b_kind == "contig":
        with for_range(b, 0, kcur, 1, "pk") as kk:
            row = b.add(base, b.add(b.mul(b.add(kk, kb), I64(kst)), n0))
            dst_row = b.mul(kk, I64(NR))
            full = b.icmp_signed("==", valid, I64(NR))
            with b.if_else(full) as (then, other):
                with then:
                    for v in range(0, NR, L):
                        x = load_float(b, B, b.add(row, I64(v)), spec.x_dtype, L, reg=E)
                        b.store(x, gep(b, panel, b.add(dst_row, I64(v)), E), align=_al(E))
                with other:
                    for v in range(0, NR, L):
                        m = lane_mask(b, b.sub(valid, I64(v)), L) if L > 1 else None
                        src = gep(b, B, b.add(row, I64(v)), xs)
                        if L > 1:
                            x = masked_load(b, src, xs, m, ir.Constant(_vt(L, xs), [0.0] * L))
                        else:
                            x = _guarded_scalar(b, src, b.icmp_signed(">", valid, I64(v)), xs)
                        b.store(convert_float(b, x, E), gep(b, panel, b.add(dst_row, I64(v)), E),
                                align=_al(E))
        return
    ic = spec.im2col
    assert ic is not None
    # Per column: the top-left input position of its window, computed once per panel (no division
    # in the inner loop); columns past N get a position that fails the bounds check (zeros).
    pos_h, pos_w = spec.extra["colpos"]
    with for_range(b, 0, NR, 1, "pc") as v:
        col = b.add(n0, v)
        oh = b.sdiv(col, I64(ic.ow))
        ow = b.srem(col, I64(ic.ow))
        inside = b.icmp_signed("<", v, valid)
        far = I64(-(1 << 40))
        b.store(b.select(inside, b.sub(b.mul(oh, I64(ic.sh)), I64(ic.ph)), far),
                gep(b, pos_h, v, I64))
        b.store(b.sub(b.mul(ow, I64(ic.sw)), I64(ic.pw)), gep(b, pos_w, v, I64))
    # all NR columns valid and in one output row (ow0 + NR <= OW)
    same_row = b.and_(b.icmp_signed("==", valid, I64(NR)),
                      b.icmp_signed("<=", b.add(b.srem(n0, I64(ic.ow)), I64(NR)), I64(ic.ow)))
    with for_range(b, 0, kcur, 1, "pk") as kk:
        k = b.add(kk, kb)
        kw_ = b.srem(k, I64(ic.kw))
        t = b.sdiv(k, I64(ic.kw))
        kh_ = b.srem(t, I64(ic.kh))
        c = b.sdiv(t, I64(ic.kh))
        cbase = b.add(base, b.mul(c, I64(ic.h * ic.w)))
        dh = b.mul(kh_, I64(ic.dh))
        dw = b.mul(kw_, I64(ic.dw))
        dst_row = b.mul(kk, I64(NR))

        def scalar_row():
            with for_range(b, 0, NR, 1, "pv") as v:
                ih = b.add(b.load(gep(b, pos_h, v, I64), typ=I64), dh)
                iw = b.add(b.load(gep(b, pos_w, v, I64), typ=I64), dw)
                ok = b.and_(b.icmp_unsigned("<", ih, I64(ic.h)),
                            b.icmp_unsigned("<", iw, I64(ic.w)))
                off = b.add(cbase, b.add(b.mul(ih, I64(ic.w)), iw))
                off = b.select(ok, off, I64(0))
                x = load_float(b, B, off, spec.x_dtype, reg=E)
                x = b.select(ok, x, ir.Constant(E, 0.0))
                b.store(x, gep(b, panel, b.add(dst_row, v), E))

        if ic.sw > 4 or L == 1:
            scalar_row()
        else:
            # Fast path: the panel's columns lie in one output row and the window row is inside the
            # input, so the row is NR input elements at stride sw: vector (or strided) copies.
            ih0 = b.add(b.load(gep(b, pos_h, I64(0), I64), typ=I64), dh)
            iw0 = b.add(b.load(gep(b, pos_w, I64(0), I64), typ=I64), dw)
            fast = b.and_(same_row, b.and_(
                b.icmp_unsigned("<", ih0, I64(ic.h)),
                b.and_(b.icmp_signed(">=", iw0, I64(0)),
                       b.icmp_signed("<", b.add(iw0, I64(ic.sw * (NR - 1))), I64(ic.w)))))
            with b.if_else(fast) as (then, other):
                with then:
                    src = b.add(cbase, b.add(b.mul(ih0, I64(ic.w)), iw0))
                    for v in range(0, NR, L):
                        at = b.add(src, I64(v * ic.sw))
                        x = (load_float(b, B, at, spec.x_dtype, L, reg=E) if ic.sw == 1
                             else convert_float(b, load_strided(b, B, at, ic.sw, L, xs), E))
                        b.store(x, gep(b, panel, b.add(dst_row, I64(v)), E), align=_al(E))
                with other:
                    scalar_row()


# panels ahead whose B rows a contiguous-B tile prefetches (0: none), where B has this many
# bytes at least (smaller ones stay in L2)
PREFETCH_PANELS = 1
PREFETCH_B_BYTES = 512 << 10


def _al(elem) -> int:
    return 2 if elem == F16 else 4


def _vt(L, elem=F32):
    return ir.VectorType(elem, L) if L > 1 else elem


def _guarded_scalar(b, ptr, ok, elem=F32):
    safe = b.select(ok, ptr, ptr)  # same pointer; the load happens only under ok below
    out = b.alloca(elem)
    b.store(ir.Constant(elem, 0.0), out)
    with b.if_then(ok):
        b.store(b.load(safe, typ=elem), out)
    return b.load(out, typ=elem)


def _tile(b, spec: GemmSpec, A, B, bp, C, accs, mb, mr: int, img, grp, n0, valid, kb, kcur,
          first, last, vt, share):
    """One MR x NR tile over the K block at kb. `share` (its index among the unit's row tiles,
    the B rows each prefetches): where the tiles split the prefetch of the next panel's rows."""
    blk = spec.blocking
    L, NV, MR, NR = blk.lanes, blk.nv, blk.mr, blk.nr
    E, cs = spec.elem, STORAGE[spec.c_dtype]
    ist, gst, mst = spec.c_strides
    cbase = b.add(b.add(b.mul(img, I64(ist)), b.mul(grp, I64(gst))), n0)
    full = b.icmp_signed("==", valid, I64(NR))

    def c_ptr(r, v):
        row = b.add(mb, I64(r))
        return gep(b, C, b.add(cbase, b.add(b.mul(row, I64(mst)), I64(v * L))), cs)

    def mask(v):
        return lane_mask(b, b.sub(valid, I64(v * L)), L) if L > 1 else None

    # init accumulators: zero for the first K block, the partial sums in C after that
    zero = ir.Constant(vt, [0.0] * L) if L > 1 else ir.Constant(E, 0.0)
    with b.if_else(first) as (then, other):
        with then:
            for r in range(mr):
                for v in range(NV):
                    b.store(zero, accs[r][v])
        with other, b.if_else(full) as (then2, other2):
            with then2:
                for r in range(mr):
                    for v in range(NV):
                        b.store(convert_float(b, b.load(c_ptr(r, v), typ=_vt(L, cs), align=_al(cs)),
                                              E), accs[r][v])
            with other2:
                for r in range(mr):
                    for v in range(NV):
                        part = _load_masked(b, c_ptr(r, v), mask(v), L, valid, v, cs)
                        b.store(convert_float(b, part, E), accs[r][v])
    # A addressing
    if spec.a_packed:
        mblocks = -(-spec.M // MR)
        # [G][MB][K][MR]: element (m = mb + r, k) at ((g*MB + mb/MR)*K + k)*MR + r
        a_base = b.mul(b.add(b.mul(grp, I64(mblocks)), b.sdiv(mb, I64(MR))), I64(spec.K * MR))
        a_base = b.add(a_base, b.mul(kb, I64(MR)))
        a_kst, a_mst = MR, 1
    else:
        aist, agst, a_mst, a_kst = spec.a_strides
        a_base = b.add(b.add(b.mul(img, I64(aist)), b.mul(grp, I64(agst))),
                       b.add(b.mul(mb, I64(a_mst)), b.mul(kb, I64(a_kst))))
    # B's rows lie a plane apart (a 1x1 conv's input channels): the hardware prefetchers, which
    # follow a 4 KiB page, lose them between one panel and the next; the tiles fetch the next
    # panel's part of each row while they compute. 16-lane tiles have load slots to spare and
    # each prefetches every row (a share each measured 4% slower on the Xeon); AVX2's 6 x 2
    # tiles have none (every row in every tile ran 10% slower), so there the panel's row tiles
    # split the rows, each prefetching its share in its first steps: with AVX-512 hidden,
    # resnet50's 256 -> 64 1x1 on 56x56 (its input in L3) 1.24 -> 1.02 ms, 1.5 -> 1.3 ms in
    # the network. The output's and a residual's rows, a few prefetches per tile, pay at 8 lanes
    # too: with AVX-512 hidden, resnet50's 64 -> 256 1x1 on 56x56 plus its residual add took
    # 1.55 ms without them, 1.26 with (0.97 without the residual).
    planes = (spec.b_kind == "contig" and PREFETCH_PANELS
              and spec.K * spec.N * _al(STORAGE[spec.x_dtype]) >= PREFETCH_B_BYTES)
    ahead = None
    if planes and L >= 8:
        ist, gst, kst = spec.b_strides
        ahead = b.add(b.add(b.mul(img, I64(ist)), b.mul(grp, I64(gst))),
                      b.add(b.mul(kb, I64(kst)), b.add(n0, I64(PREFETCH_PANELS * NR))))
        xs = STORAGE[spec.x_dtype]
    with for_range(b, 0, kcur, 1, "k") as k:
        if ahead is not None and L >= 16:
            prefetch_lines(b, gep(b, B, b.add(ahead, b.mul(k, I64(kst))), xs), NR * _al(xs))
        elif ahead is not None:
            index, rows = share
            with b.if_then(b.icmp_signed("<", k, rows)):
                row = b.add(b.mul(index, rows), k)
                row = b.select(b.icmp_signed("<", row, kcur), row, b.sub(kcur, I64(1)))
                prefetch_lines(b, gep(b, B, b.add(ahead, b.mul(row, I64(kst))), xs), NR * _al(xs))
        if planes and L >= 8:
            # the output's rows (and a residual's, which the epilogue reads) lie a plane apart
            # too: the first mr steps take one row of the next panel's each
            with b.if_then(b.icmp_signed("<", k, I64(mr))):
                at = b.add(cbase, b.add(b.mul(b.add(mb, k), I64(mst)),
                                        I64(PREFETCH_PANELS * NR)))
                for buf in spec.extra["out_like_ptrs"]:
                    prefetch_lines(b, gep(b, buf, at, cs), NR * _al(cs))
                prefetch_lines(b, gep(b, C, at, cs), NR * _al(cs), write=True)
        bdt = (spec.b_dtype if spec.b_kind == "prepacked"
               else "float16" if E == F16 else "float32")  # the panel
        bv = [load_float(b, bp, b.add(b.mul(k, I64(NR)), I64(v * L)), bdt, L, reg=E)
              for v in range(NV)]
        arow = b.add(a_base, b.mul(k, I64(a_kst)))
        for r in range(mr):
            a = load_float(b, A, b.add(arow, I64(r * a_mst)), spec.a_dtype if spec.a_packed
                           else spec.x_dtype, reg=E)
            av = splat(b, a, L)
            for v in range(NV):
                acc = b.load(accs[r][v], typ=vt)
                b.store(mt.fma(b, av, bv[v], acc), accs[r][v])
    # store: raw partial sums, or after the last K block through the epilogue
    def store_all(with_epilogue: bool):
        with b.if_else(full) as (then, other):
            for is_full, blkctx in ((True, then), (False, other)):
                with blkctx:
                    for r in range(mr):
                        m = b.add(mb, I64(r))
                        for v in range(NV):
                            acc = b.load(accs[r][v], typ=vt)
                            mk = None if is_full else mask(v)
                            if with_epilogue:  # in float32 registers
                                acc = spec.epilogue(b, convert_float(b, acc, F32), m,
                                                    b.add(n0, I64(v * L)), img, grp, mk)
                            acc = convert_float(b, acc, cs)
                            if is_full:
                                b.store(acc, c_ptr(r, v), align=_al(cs))
                            elif L > 1:
                                masked_store(b, acc, c_ptr(r, v), mk)
                            else:
                                with b.if_then(b.icmp_signed(">", valid, I64(v))):
                                    b.store(acc, c_ptr(r, v))

    if spec.epilogue is None:
        store_all(False)
    else:
        with b.if_else(last) as (then, other):
            with then:
                store_all(True)
            with other:
                store_all(False)


def _load_masked(b, ptr, mk, L, valid, v, elem=F32):
    if L > 1:
        return masked_load(b, ptr, elem, mk, ir.Constant(ir.VectorType(elem, L), [0.0] * L))
    return _guarded_scalar(b, ptr, b.icmp_signed(">", valid, I64(v)), elem)
