"""Integer convolution and matmul kernels: 8-bit operands, int32 accumulators, the target's dot
product instructions (codegen/isa.py), and the fused epilogue (bias, requantize, clamp, residual
qadd) on the accumulators.

The dot products take K in groups of `kg` elements per int32 lane: four bytes for AVX-512 VNNI
`vpdpbusd` (u8 x s8), AVX2 `vpmaddubsw` + `vpmaddwd` (u8 x s8, where the weights cannot
saturate its int16 pair sums) and AArch64 `sdot` (s8 x s8); two for the exact AVX2 form
(`vpmaddwd` on zero-extended activations) and NEON without dotprod (`smull`/`vmull.s8`, then
`sadalp`/`vpadal.s16`). Activations are converted to the signedness the instruction wants by
flipping their top bit (x ^ 0x80 = x -+ 128), and the difference, with the input's zero point,
is a per-channel constant folded into the bias: sum (x - zx) w = sum xk w + (off - zx) sum w.

Convolution (NCHW): a task unit is a block of output rows of one image and group and a chunk of
output channels. It first copies the input rows the block reads into a stack buffer, kg channels
interleaved per element ([C/kg][rows][Wp][kg], zero-point padding included), so the kg values a
lane multiplies are one word and a vector of lanes is one load. Tiles are MR output channels x NV
vectors of output positions; for stride 1 the positions run along the padded rows (a row's last
Wp - OW positions are computed and dropped), so every tap of a tile is a contiguous load at a
constant offset. Weights are packed at compile time as [G][M/MR][C/kg][KH*KW][MR][kg]. After
the whole reduction the tile's accumulators go to a small stack buffer and leave through the
epilogue one output-row segment at a time (vectors of output columns, a masked tail).

With AMX-INT8 (x86 AMX: Sapphire Rapids and later) the same packed plane feeds TDPBSUD: a tile
of 16 output channels x kq quads of signed weights (packed [G][M/MR][chunks][KH*KW][MR][kq][4])
times a tile of kq quads x 16 positions, the plane's words as they lie (one row per channel
group, its pitch a group's plane), into 16 x 16 int32 accumulators; four of them make a 32 x 32
tile, stored to the tile buffer the vector path's epilogue reads. The kernel asks the OS for the
tile state once per process (arch_prctl) and fails with AMX_DENIED where it is refused.

Matmul (A [.., M, K] activations x B [K, N] constant weights): vectors over N, the weights packed
[N/NR][K/kg][NR][kg], each row's kg activations broadcast as one word; K is padded to a multiple
of kg with zeros in the packed weights, and the activations' tail read masked.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from . import isa
from .llvm_util import (
    I1,
    I8,
    I16,
    I32,
    I64,
    PTR,
    STORAGE,
    declare,
    for_range,
    gep,
    intrinsic,
    kernel_function,
    load_strided,
    masked_load,
    masked_store,
    splat,
    task_range,
    unravel,
    weighted_task_range,
)
from .tuning import Tuning

# AMX: rows of a tile; int32 columns of an accumulator tile; at most this many K quads per tile
AMX_TILE = 16
# what an AMX kernel returns where the OS refuses the process the tile state ("AMX")
AMX_DENIED = 0x414D58


@dataclass(frozen=True)
class Dot:
    """How a target multiplies 8-bit operands into int32 lanes."""

    kind: str  # vnni, avx2, avx2-exact, sdot, smull
    lanes: int  # int32 lanes per accumulator vector
    kg: int  # K elements per lane per instruction
    signed: bool  # activations in the instruction are int8 (else uint8)
    arch: str = "x86_64"

    @property
    def word(self) -> ir.IntType:
        return ir.IntType(8 * self.kg)

    @property
    def vec(self) -> ir.VectorType:
        return ir.VectorType(I32, self.lanes)


def dot_for(tun: Tuning, weight_groups: np.ndarray | None = None) -> Dot | None:
    """The Dot of a target; `weight_groups` ([..., 4] int8 quads as the kernel packs them)
    decides whether AVX2's saturating vpmaddubsw is exact for these weights."""
    kind = isa.int8_dot(tun)
    if kind == "vnni":
        return Dot("vnni", tun.vector_bits // 32, 4, False)
    if kind == "avx2":
        if weight_groups is not None and pmaddubsw_exact(weight_groups):
            return Dot("avx2", 8, 4, False)
        return Dot("avx2-exact", 8, 2, False)
    if kind == "sdot":
        return Dot("sdot", 4, 4, True, "aarch64")
    if kind == "smull":
        return Dot("smull", 4, 2, True, tun.arch)
    return None


def pmaddubsw_exact(quads: np.ndarray) -> bool:
    """vpmaddubsw sums u8 x s8 products in pairs (k0, k1), (k2, k3) saturating to int16: exact
    when no pair's positive (or negative) weights times 255 leave [-32768, 32767]."""
    w = np.asarray(quads, np.int64).reshape(-1, 2)
    pos = np.maximum(w, 0).sum(axis=1)
    neg = np.maximum(-w, 0).sum(axis=1)
    return bool((255 * pos).max(initial=0) <= 32767 and (255 * neg).max(initial=0) <= 32768)


def emit_dot(b: ir.IRBuilder, d: Dot, acc: ir.Value, xv: ir.Value, w: ir.Value) -> ir.Value:
    """acc + per lane the sum over its kg elements of activation x weight. xv: <lanes x word>
    of activations; w: one weight word, the same for every lane."""
    L = d.lanes

    def bytes_(v, n):
        return b.bitcast(v, ir.VectorType(I8, n))

    if d.kind in ("vnni", "avx2"):
        return _dot_u8s8(b, d, acc, xv, splat(b, w, L))
    if d.kind == "avx2-exact":
        xw = b.zext(bytes_(xv, 16), ir.VectorType(I16, 16))
        wpair = b.sext(b.bitcast(w, ir.VectorType(I8, 2)), ir.VectorType(I16, 2))
        wv = b.bitcast(splat(b, b.bitcast(wpair, I32), 8), ir.VectorType(I16, 16))
        return b.add(acc, intrinsic(b, "llvm.x86.avx2.pmadd.wd", [xw, wv], ret=d.vec,
                                    overload=[]))
    if d.kind == "sdot":
        return intrinsic(b, "llvm.aarch64.neon.sdot", [acc, bytes_(xv, 16),
                                                       bytes_(splat(b, w, 4), 16)],
                         overload=[d.vec, ir.VectorType(I8, 16)])
    if d.kind == "smull":
        v8 = ir.VectorType(I16, 8)
        prod = b.mul(b.sext(bytes_(xv, 8), v8), b.sext(bytes_(splat(b, w, 4), 8), v8))
        if d.arch == "aarch64":
            return b.add(acc, intrinsic(b, "llvm.aarch64.neon.saddlp", [prod], ret=d.vec,
                                        overload=[d.vec, v8]))
        return intrinsic(b, "llvm.arm.neon.vpadals", [acc, prod], overload=[d.vec, v8])
    raise ValueError(f"unknown dot kind {d.kind}")


def _dot_u8s8(b: ir.IRBuilder, d: Dot, acc: ir.Value, u: ir.Value, s: ir.Value) -> ir.Value:
    """acc + per lane the sum of its 4 unsigned bytes of u times its 4 signed bytes of s (both
    <lanes x i32>): vpdpbusd, or AVX2's vpmaddubsw + vpmaddwd by ones."""
    if d.kind == "vnni":
        name = "llvm.x86.avx512.vpdpbusd.512" if d.lanes == 16 else "llvm.x86.avx512.vpdpbusd.256"
        return intrinsic(b, name, [acc, u, s], overload=[])
    b32 = ir.VectorType(I8, 32)
    p = intrinsic(b, "llvm.x86.avx2.pmadd.ub.sw", [b.bitcast(u, b32), b.bitcast(s, b32)],
                  ret=ir.VectorType(I16, 16), overload=[])
    ones = ir.Constant(ir.VectorType(I16, 16), [1] * 16)
    return b.add(acc, intrinsic(b, "llvm.x86.avx2.pmadd.wd", [p, ones], ret=d.vec, overload=[]))


def flip(d: Dot, stored_signed: bool) -> int:
    """The XOR that turns stored activation bytes into the instruction's (0 or 0x80)."""
    return 0x80 if stored_signed != d.signed else 0


def offset(d: Dot, stored_signed: bool) -> int:
    """off with x = xk + off (x the stored value, xk the instruction's)."""
    if stored_signed == d.signed:
        return 0
    return 128 if d.signed else -128


# -- convolution ------------------------------------------------------------------------------------
@dataclass
class QConvSpec:
    M: int  # output channels per group
    Cg: int  # input channels per group
    KH: int
    KW: int
    images: int
    groups: int
    H: int
    W: int
    OH: int
    OW: int
    strides: tuple[int, int]
    dilations: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    x_buf: int
    w_buf: int
    c_buf: int
    dot: Dot
    mr: int
    nv: int
    rows: int  # output rows per task unit
    mchunk: int  # output channels per task unit (a multiple of mr, or M)
    xor: int  # 0 or 0x80: stored activation bytes -> the instruction's
    pad_byte: int  # the padding (the zero point) as the instruction's byte
    out_dtype: str
    # epilogue(b, acc <L x i32>, m (in group), col0 (flat output index), img, grp, mask|None)
    # -> the output vector in its storage type
    epilogue: Callable | None = None
    bufs_holder: list | None = None
    bias_buf: int | None = None  # the accumulators start from this per-channel int32 table
    kq: int = 0  # AMX (dot.kind "amx"): K quads per weight tile; chunks of kq cover groups_k

    @property
    def chunks(self) -> int:
        """AMX: K chunks of kq channel groups (the last padded with zero weights)."""
        return -(-self.groups_k // self.kq)

    @property
    def groups_k(self) -> int:
        """Channel groups of kg per input group."""
        return -(-self.Cg // self.dot.kg)

    @property
    def wp(self) -> int:
        """The padded input row."""
        return self.W + self.pads[1] + self.pads[3]

    @property
    def in_rows(self) -> int:
        """Input rows a unit reads."""
        return (self.rows - 1) * self.strides[0] + (self.KH - 1) * self.dilations[0] + 1

    # Packed input: per channel group, per phase (row % sh, column % sw) of the rows the taps
    # read, a plane of rows_p x wp_p words: input (r, c) of the unit's window is at phase
    # (r % sh, c % sw), position (r // sh, c // sw). A tap (kh, kw) of output (oh, ow) then
    # reads position (oh + kh*dh // sh, ow + kw*dw // sw) of phase (kh*dh % sh, kw*dw % sw):
    # every tap of a run of outputs along the rows (pitch wp_p) is one contiguous run.
    @property
    def phases_h(self) -> list[int]:
        return sorted({kh * self.dilations[0] % self.strides[0] for kh in range(self.KH)})

    @property
    def phases_w(self) -> list[int]:
        return sorted({kw * self.dilations[1] % self.strides[1] for kw in range(self.KW)})

    @property
    def rows_p(self) -> int:
        return -(-self.in_rows // self.strides[0])

    @property
    def wp_p(self) -> int:
        return -(-self.wp // self.strides[1])

    @property
    def plane(self) -> int:
        return self.rows_p * self.wp_p

    @property
    def group_words(self) -> int:
        return len(self.phases_h) * len(self.phases_w) * self.plane

    def tap_offset(self, kh: int, kw: int) -> int:
        sh, sw = self.strides
        dh, dw = self.dilations
        ph = self.phases_h.index(kh * dh % sh) * len(self.phases_w) + self.phases_w.index(
            kw * dw % sw)
        return ph * self.plane + (kh * dh // sh) * self.wp_p + kw * dw // sw

    def packed_words(self) -> int:
        # slack: the last tile's vectors run up to a tile past the last position; AMX's last
        # chunk reads whole planes past the last group (zero weights multiply them)
        past = (self.chunks * self.kq - self.groups_k) * self.group_words if self.kq else 0
        return self.groups_k * self.group_words + past + self.nv * self.dot.lanes + self.wp_p

    def packed_bytes(self) -> int:
        return self.packed_words() * self.dot.kg


def pack_conv_weights(w: np.ndarray, groups: int, kg: int, mr: int) -> np.ndarray:
    """[G*M, Cg, KH, KW] int8 -> [G][M/MR][Cg/kg][KH*KW][MR][kg], zeros past M and Cg."""
    oc, cg, kh, kw = w.shape
    m = oc // groups
    mb, cgk = -(-m // mr), -(-cg // kg)
    out = np.zeros((groups, mb * mr, cgk * kg, kh * kw), np.int8)
    out[:, :m, :cg, :] = w.reshape(groups, m, cg, kh * kw)
    out = out.reshape(groups, mb, mr, cgk, kg, kh * kw)
    return np.ascontiguousarray(out.transpose(0, 1, 3, 5, 2, 4))


def pack_conv_weights_amx(w: np.ndarray, groups: int, mr: int, kq: int) -> np.ndarray:
    """[G*M, Cg, KH, KW] int8 -> [G][M/MR][chunks][KH*KW][MR][kq*4]: per chunk and tap the
    weight tiles' rows (one output channel each, kq quads of input channels), zeros past M and
    past the channels."""
    oc, cg, kh, kw = w.shape
    m = oc // groups
    mb, cgk = -(-m // mr), -(-cg // 4)
    chunks = -(-cgk // kq)
    out = np.zeros((groups, mb * mr, chunks * kq * 4, kh * kw), np.int8)
    out[:, :m, :cg, :] = w.reshape(groups, m, cg, kh * kw)
    out = out.reshape(groups, mb, mr, chunks, kq * 4, kh * kw)
    return np.ascontiguousarray(out.transpose(0, 1, 3, 5, 2, 4))


def conv_weight_groups(w: np.ndarray, kg: int) -> np.ndarray:
    """The kg-channel groups of the weights, as the kernel multiplies them (for exactness)."""
    oc, cg, kh, kw = w.shape
    cgk = -(-cg // kg)
    padded = np.zeros((oc, cgk * kg, kh * kw), np.int8)
    padded[:, :cg] = w.reshape(oc, cg, kh * kw)
    return padded.reshape(oc, cgk, kg, kh * kw).transpose(0, 1, 3, 2).reshape(-1, kg)


def unit_costs(spec: QConvSpec) -> list[int]:
    """The relative cost of each unit (image, group, band of rows, chunk of channels) in the
    kernel's order: dot products over its tiles plus packing its input rows. A last band of one
    row beside bands of eleven would otherwise leave one thread a whole band behind."""
    L, NR = spec.dot.lanes, spec.nv * spec.dot.lanes
    steps = spec.groups_k * spec.KH * spec.KW
    out = []
    for oh0 in range(0, spec.OH, spec.rows):
        nrows = min(spec.rows, spec.OH - oh0)
        tiles = -(-((nrows - 1) * spec.wp_p + spec.OW) // NR)
        in_rows = (nrows - 1) * spec.strides[0] + (spec.KH - 1) * spec.dilations[0] + 1
        pack = in_rows * spec.wp * spec.groups_k * (4 + 2 * spec.dot.kg) // L
        for m0 in range(0, spec.M, spec.mchunk):
            chans = -(-min(spec.mchunk, spec.M - m0) // spec.mr) * spec.mr
            out.append(tiles * NR // L * chans * steps + pack + 200)
    return out * (spec.images * spec.groups)


def emit_qconv_kernel(module: ir.Module, name: str, spec: QConvSpec, nbufs: int) -> ir.Function:
    fn, b, bufs = kernel_function(module, name, nbufs)
    if spec.bufs_holder is not None:
        spec.bufs_holder[0] = bufs
    d = spec.dot
    L, MR, NV = d.lanes, spec.mr, spec.nv
    NR = NV * L
    packed = _stack(b, d.word, spec.packed_words(), "packed")
    tilebuf = _stack(b, I32, MR * NR, "tile")
    accs = [[b.alloca(d.vec, name=f"acc{r}_{v}") for v in range(NV)] for r in range(MR)]
    body = b.append_basic_block("body")
    b.branch(body)
    b.position_at_end(body)
    amx = d.kind == "amx"
    if amx:
        _amx_permission(b)
        b.call(_amx_fn(module, "ldtilecfg", [PTR]), [_amx_config(module, name, spec)])
    X, Wt, C = bufs[spec.x_buf], bufs[spec.w_buf], bufs[spec.c_buf]
    Bias = bufs[spec.bias_buf] if spec.bias_buf is not None else None
    row_units = -(-spec.OH // spec.rows)
    mchunks = -(-spec.M // spec.mchunk)
    lo, hi = weighted_task_range(b, unit_costs(spec), fn.args[1], fn.args[2], name)
    with for_range(b, lo, hi, 1, "unit") as unit:
        mc, ru, grp, img = unravel(b, unit, (mchunks, row_units, spec.groups))
        oh0 = b.mul(ru, I64(spec.rows))
        nrows = b.sub(I64(spec.OH), oh0)
        nrows = b.select(b.icmp_signed("<", nrows, I64(spec.rows)), nrows, I64(spec.rows))
        _pack(b, spec, X, packed, img, grp, oh0)
        m_lo = b.mul(mc, I64(spec.mchunk))
        m_hi = b.add(m_lo, I64(spec.mchunk))
        m_hi = b.select(b.icmp_signed("<", m_hi, I64(spec.M)), m_hi, I64(spec.M))
        full_mb = spec.M // MR  # whole MR blocks in the group
        # the unit's positions: one run along its rows of pitch wp_p (the last row needs OW)
        vlen = b.add(b.mul(b.sub(nrows, I64(1)), I64(spec.wp_p)), I64(spec.OW))
        with for_range(b, m_lo, m_hi, MR, "mb") as mb:
            def tiles(mr: int):
                with for_range(b, 0, vlen, NR, "tc") as col0:
                    tile = _tile_amx if amx else _tile
                    tile(b, spec, Wt, C, Bias, packed, tilebuf, accs, img, grp, oh0, mb, mr,
                         col0, vlen)

            _whole_or_tail(b, spec.M, MR, lambda: b.icmp_signed("<", b.sdiv(mb, I64(MR)),
                                                               I64(full_mb)), tiles)
    if amx:
        b.call(_amx_fn(module, "tilerelease", []), [])
    b.ret(I32(0))
    return fn


def _whole_or_tail(b, n: int, MR: int, is_whole, emit) -> None:
    """emit(MR) for a whole block of MR (rows, channels) of n, emit(n % MR) for the last one
    where MR does not divide n, branching on is_whole() (an i1 built only then)."""
    if n % MR == 0:
        emit(MR)
        return
    with b.if_else(is_whole()) as (t, e):
        with t:
            emit(MR)
        with e:
            emit(n % MR)


def _stack(b, elem: ir.Type, n: int, name: str) -> ir.Value:
    """A 64-byte aligned stack array as an opaque pointer."""
    raw = b.alloca(elem, size=n, name=name)
    raw.align = 64
    ptr = b.bitcast(raw, PTR)
    ptr.type = PTR
    return ptr


def _lane_mask(b, n, L: int):
    """<L x i1>: lanes below n (an i64 value or an int)."""
    if isinstance(n, int):
        return ir.Constant(ir.VectorType(I1, L), [1] * min(n, L) + [0] * (L - min(n, L)))
    return b.icmp_signed("<", ir.Constant(ir.VectorType(I64, L), list(range(L))),
                         splat(b, n, L))


def _fill(b, ptr, start, n: int, value, L: int):
    """ptr[start : start + n] = value (a word), in vectors of L words."""
    vec = ir.Constant(ir.VectorType(value.type, L), [value.constant] * L)
    full, tail = divmod(n, L)
    if full:
        with for_range(b, 0, full * L, L, "fill") as i:
            b.store(vec, gep(b, ptr, b.add(start, i), value.type), align=1)
    if tail:
        masked_store(b, vec, gep(b, ptr, b.add(start, I64(full * L)), value.type),
                     _lane_mask(b, tail, L))


def _load_bytes(b, X, at, n: int, stride: int, L: int):
    """<L x i8>: X[at], X[at + stride], ... for the first n lanes (n <= L); the rest undefined,
    and nothing read past the n-th element."""
    bt = ir.VectorType(I8, L)
    if stride == 1:
        p = gep(b, X, at, I8)
        if n == L:
            return b.load(p, typ=bt, align=1)
        return masked_load(b, p, I8, _lane_mask(b, n, L), ir.Constant(bt, None))
    if n == L:
        return load_strided(b, X, at, stride, L, I8)
    span = L * stride
    wide = masked_load(b, gep(b, X, at, I8), I8, _lane_mask(b, (n - 1) * stride + 1, span),
                       ir.Constant(ir.VectorType(I8, span), None))
    return b.shuffle_vector(wide, ir.Constant(wide.type, None), ir.Constant(
        ir.VectorType(I32, L), [stride * i for i in range(L)]))


def _pack(b, spec: QConvSpec, X, packed, img, grp, oh0):
    """The unit's input window, kg channels per word, in phase planes (QConvSpec); the zero
    point (as the instruction's byte) outside the input and past its channels."""
    d = spec.dot
    kg, L = d.kg, d.lanes
    word = d.word
    sh, sw = spec.strides
    top, left = spec.pads[0], spec.pads[1]
    wp_p, rows_p = spec.wp_p, spec.rows_p
    plane = spec.H * spec.W
    xbase = b.add(b.mul(img, I64(spec.groups * spec.Cg * plane)), b.mul(grp, I64(spec.Cg * plane)))
    padv = ir.Constant(word, int.from_bytes(bytes([spec.pad_byte]) * kg, "little"))
    bvt = ir.VectorType(I8, L)
    flipv = ir.Constant(bvt, [spec.xor] * L)
    padbytes = ir.Constant(bvt, [spec.pad_byte] * L)
    ih0 = b.sub(b.mul(oh0, I64(sh)), I64(top))
    nphw = len(spec.phases_w)

    def group(cgk, nvalid: int):
        chans = [b.add(xbase, b.mul(b.add(b.mul(cgk, I64(kg)), I64(t)), I64(plane)))
                 for t in range(nvalid)]
        gbase = b.mul(cgk, I64(spec.group_words))
        for hi_, ph in enumerate(spec.phases_h):
            with for_range(b, 0, rows_p, 1, "pr") as rp:
                ih = b.add(ih0, b.add(b.mul(rp, I64(sh)), I64(ph)))
                for wi, pw in enumerate(spec.phases_w):
                    dst = b.add(gbase, b.add(I64((hi_ * nphw + wi) * spec.plane),
                                             b.mul(rp, I64(wp_p))))
                    # positions j whose column j*sw + pw - left is inside the input
                    j_lo = max(0, -(-(left - pw) // sw))
                    j_hi = min(wp_p, max(j_lo, -(-(spec.W + left - pw) // sw)))
                    inside = b.icmp_unsigned("<", ih, I64(spec.H))
                    with b.if_else(inside) as (then, other):
                        with then:
                            _fill(b, packed, dst, j_lo, padv, L)
                            _fill(b, packed, b.add(dst, I64(j_hi)), wp_p - j_hi, padv, L)
                            row = [b.add(c, b.mul(ih, I64(spec.W))) for c in chans]

                            def chunk(j, n: int):
                                col = b.add(b.mul(j, I64(sw)), I64(pw - left))
                                parts = [b.xor(_load_bytes(b, X, b.add(r, col), n, sw, L), flipv)
                                         for r in row]
                                parts += [padbytes] * (kg - nvalid)
                                wv = b.bitcast(_interleave(b, parts, L), ir.VectorType(word, L))
                                at = gep(b, packed, b.add(dst, j), word)
                                if n == L:
                                    b.store(wv, at, align=1)
                                else:
                                    masked_store(b, wv, at, _lane_mask(b, n, L))

                            count = j_hi - j_lo
                            nfull, tail = divmod(count, L)
                            if nfull:
                                with for_range(b, j_lo, j_lo + nfull * L, L, "pj") as j:
                                    chunk(j, L)
                            if tail:
                                chunk(I64(j_lo + nfull * L), tail)
                        with other:
                            _fill(b, packed, dst, wp_p, padv, L)

    full = spec.Cg // kg
    if full:
        with for_range(b, 0, full, 1, "pc") as cgk:
            group(cgk, kg)
    if spec.Cg % kg:
        group(I64(full), spec.Cg % kg)
    # the slack past the last plane (read by the last tiles' dropped lanes)
    base = spec.groups_k * spec.group_words
    _fill(b, packed, I64(base), spec.packed_words() - base, padv, L)


def _interleave(b, parts: list, L: int) -> ir.Value:
    """kg vectors of L bytes -> one of L*kg bytes, element i of part t at i*kg + t."""
    kg = len(parts)
    if kg == 1:
        return parts[0]
    if kg == 2:
        return b.shuffle_vector(parts[0], parts[1], ir.Constant(
            ir.VectorType(I32, 2 * L), [i // 2 + (i % 2) * L for i in range(2 * L)]))
    ab = b.shuffle_vector(parts[0], parts[1], ir.Constant(
        ir.VectorType(I32, 2 * L), list(range(2 * L))))
    cd = b.shuffle_vector(parts[2], parts[3], ir.Constant(
        ir.VectorType(I32, 2 * L), list(range(2 * L))))
    # element i of part t is at t*L + i of (ab ++ cd)
    return b.shuffle_vector(ab, cd, ir.Constant(
        ir.VectorType(I32, 4 * L), [(i % 4) * L + i // 4 for i in range(4 * L)]))


def _tile(b, spec: QConvSpec, Wt, C, Bias, packed, tilebuf, accs, img, grp, oh0, mb, mr: int,
          col0, vlen):
    d = spec.dot
    L, NV, MR = d.lanes, spec.nv, spec.mr
    word = d.word
    NR = NV * L
    for r in range(mr):
        init = ir.Constant(d.vec, [0] * L)
        if Bias is not None:  # the bias in the accumulators from the start
            m = b.add(b.mul(grp, I64(spec.M)), b.add(mb, I64(r)))
            bias = b.load(gep(b, Bias, m, I32), typ=I32)
            init = splat(b, bias, L)
        for v in range(NV):
            b.store(init, accs[r][v])
    khw = spec.KH * spec.KW
    taps = [spec.tap_offset(j // spec.KW, j % spec.KW) for j in range(khw)]
    mblocks = -(-spec.M // MR)
    wbase = b.mul(b.add(b.mul(grp, I64(mblocks)), b.sdiv(mb, I64(MR))),
                  I64(spec.groups_k * khw * MR))
    xvt = ir.VectorType(word, L)
    with for_range(b, 0, spec.groups_k, 1, "kc") as c:
        xc = b.add(col0, b.mul(c, I64(spec.group_words)))
        wc = b.add(wbase, b.mul(c, I64(khw * MR)))
        for j, off in enumerate(taps):
            xs = [b.load(gep(b, packed, b.add(xc, I64(off + v * L)), word), typ=xvt, align=1)
                  for v in range(NV)]
            for r in range(mr):
                wv = b.load(gep(b, Wt, b.add(wc, I64(j * MR + r)), word), typ=word, align=1)
                for v in range(NV):
                    acc = b.load(accs[r][v], typ=d.vec)
                    b.store(emit_dot(b, d, acc, xs[v], wv), accs[r][v])
    if spec.wp_p == spec.OW:  # no dropped positions: straight out
        _write_direct(b, spec, C, accs, img, grp, oh0, mb, mr, col0, vlen)
        return
    # results: to the tile buffer, then out through the epilogue by output-row segments
    for r in range(mr):
        for v in range(NV):
            b.store(b.load(accs[r][v], typ=d.vec),
                    gep(b, tilebuf, I64(r * NR + v * L), I32), align=4)
    _write_tile(b, spec, C, tilebuf, img, grp, oh0, mb, mr, col0, vlen)


# -- AMX -------------------------------------------------------------------------------------------
# tiles: accumulators 0-3 (channel block i, position block v at 2i + v), weights 4-5, activations
# 6-7
_A, _B = 4, 6


def _amx_fn(module: ir.Module, name: str, args: list) -> ir.Function:
    return declare(module, f"llvm.x86.{name}", ir.VoidType(), args)


def _amx_config(module: ir.Module, name: str, spec: QConvSpec) -> ir.GlobalVariable:
    """The kernel's tile palette (LDTILECFG's 64 bytes: palette 1, bytes per row of each tile
    at 16 + 2t, rows at 48 + t)."""
    cfg = bytearray(64)
    cfg[0] = 1
    shapes = {2 * i + v: (AMX_TILE, 64) for i in range(2) for v in range(spec.nv)}
    shapes.update({_A + i: (AMX_TILE, 4 * spec.kq) for i in range(2)})
    shapes.update({_B + v: (spec.kq, 64) for v in range(spec.nv)})
    for t, (rows, colsb) in shapes.items():
        cfg[16 + 2 * t:18 + 2 * t] = colsb.to_bytes(2, "little")
        cfg[48 + t] = rows
    ty = ir.ArrayType(I8, 64)
    g = ir.GlobalVariable(module, ty, f"{name}.tilecfg")
    g.global_constant = True
    g.linkage = "internal"
    g.align = 64
    g.initializer = ir.Constant(ty, cfg)
    return g


def _amx_permission(b: ir.IRBuilder) -> None:
    """Linux gives a process the tile state only once it asks (arch_prctl(ARCH_REQ_XCOMP_PERM,
    XFEATURE_XTILEDATA)); the first AMX kernel to run asks, the answer stays in a flag the
    module's kernels share. Refused: the kernel returns AMX_DENIED before any tile instruction."""
    module = b.module
    flag = module.globals.get("neo.amx_permission")
    if flag is None:
        flag = ir.GlobalVariable(module, I32, "neo.amx_permission")
        flag.linkage = "internal"
        flag.initializer = I32(0)  # 0 not asked yet, 1 granted, 2 refused
    with b.if_then(b.icmp_signed("==", b.load_atomic(flag, "monotonic", 4, typ=I32), I32(0))):
        syscall = module.globals.get("syscall") or ir.Function(
            module, ir.FunctionType(I64, [I64], var_arg=True), "syscall")  # libc's
        rc = b.call(syscall, [I64(158), I64(0x1023), I64(18)])  # arch_prctl(REQ_XCOMP_PERM)
        b.store_atomic(b.select(b.icmp_signed("==", rc, I64(0)), I32(1), I32(2)), flag,
                       "monotonic", 4)
    granted = b.icmp_signed("==", b.load_atomic(flag, "monotonic", 4, typ=I32), I32(1))
    go, denied = b.append_basic_block("amx.granted"), b.append_basic_block("amx.denied")
    b.cbranch(granted, go, denied)
    b.position_at_end(denied)
    b.ret(I32(AMX_DENIED))
    b.position_at_end(go)


def _tile_amx(b, spec: QConvSpec, Wt, C, Bias, packed, tilebuf, accs, img, grp, oh0, mb, mr: int,
              col0, vlen):
    """The vector path's tile (MR channels x NV * 16 positions) on AMX accumulators: per K chunk
    and tap, ceil(mr / 16) weight tiles and NV activation tiles, a TDPBSUD for each pair; then
    to the tile buffer and out through the epilogue as the vector path's tiles leave. (Bias is
    None: AMX accumulators start from zero and the epilogue adds it.)"""
    module = b.module
    load = _amx_fn(module, "tileloadd64", [I8, PTR, I64])
    dp = _amx_fn(module, "tdpbsud", [I8, I8, I8])
    L, NV, MR, kq = spec.dot.lanes, spec.nv, spec.mr, spec.kq
    NR = NV * L
    nmt = -(-mr // AMX_TILE)
    for i in range(nmt):
        for v in range(NV):
            b.call(_amx_fn(module, "tilezero", [I8]), [I8(2 * i + v)])
    khw = spec.KH * spec.KW
    taps = [spec.tap_offset(j // spec.KW, j % spec.KW) for j in range(khw)]
    mblocks = -(-spec.M // MR)
    block = MR * kq * 4  # bytes of a chunk's tap
    wbase = b.mul(b.add(b.mul(grp, I64(mblocks)), b.sdiv(mb, I64(MR))),
                  I64(spec.chunks * khw * block))
    xstride = I64(spec.group_words * 4)
    with for_range(b, 0, spec.chunks, 1, "kc") as c:
        xc = b.add(col0, b.mul(c, I64(kq * spec.group_words)))
        wc = b.add(wbase, b.mul(c, I64(khw * block)))
        for j, off in enumerate(taps):
            for i in range(nmt):
                at = b.add(wc, I64(j * block + i * AMX_TILE * kq * 4))
                b.call(load, [I8(_A + i), gep(b, Wt, at, I8), I64(kq * 4)])
            for v in range(NV):
                at = b.add(xc, I64(off + v * L))
                b.call(load, [I8(_B + v), gep(b, packed, at, I32), xstride])
            for i in range(nmt):
                for v in range(NV):
                    b.call(dp, [I8(2 * i + v), I8(_A + i), I8(_B + v)])
    store = _amx_fn(module, "tilestored64", [I8, PTR, I64])
    for i in range(nmt):
        for v in range(NV):
            at = I64(i * AMX_TILE * NR + v * L)
            b.call(store, [I8(2 * i + v), gep(b, tilebuf, at, I32), I64(NR * 4)])
    if spec.wp_p == spec.OW:
        for r in range(mr):
            for v in range(NV):
                b.store(b.load(gep(b, tilebuf, I64(r * NR + v * L), I32), typ=spec.dot.vec,
                               align=64), accs[r][v])
        _write_direct(b, spec, C, accs, img, grp, oh0, mb, mr, col0, vlen)
        return
    _write_tile(b, spec, C, tilebuf, img, grp, oh0, mb, mr, col0, vlen)


def _out_ptr(b, spec: QConvSpec, C, img, grp, m, at):
    P = spec.OH * spec.OW
    cbase = b.add(b.mul(img, I64(spec.groups * spec.M * P)), b.mul(grp, I64(spec.M * P)))
    return gep(b, C, b.add(cbase, b.add(b.mul(m, I64(P)), at)), STORAGE[spec.out_dtype])


def _write_direct(b, spec: QConvSpec, C, accs, img, grp, oh0, mb, mr, col0, vlen):
    """The tile's positions are output positions oh0 * OW + col0 + ...: the epilogue on the
    accumulators, one vector store each (masked past the unit's last position)."""
    d = spec.dot
    L, NV = d.lanes, spec.nv
    NR = NV * L
    out0 = b.add(b.mul(oh0, I64(spec.OW)), col0)
    whole = b.icmp_signed("<=", b.add(col0, I64(NR)), vlen)
    prepare = getattr(spec.epilogue, "prepare", None)
    for r in range(mr):  # a channel's per-channel values rendered once for its vectors
        m = b.add(mb, I64(r))
        if prepare is not None:
            prepare(b, m, img, grp)
        with b.if_else(whole) as (then, other):
            for masked, blk in ((False, then), (True, other)):
                with blk:
                    for v in range(NV):
                        at = b.add(out0, I64(v * L))
                        mask = None
                        if masked:
                            mask = _lane_mask(b, b.sub(vlen, b.add(col0, I64(v * L))), L)
                        y = spec.epilogue(b, b.load(accs[r][v], typ=d.vec), m, at, img, grp, mask)
                        ptr = _out_ptr(b, spec, C, img, grp, m, at)
                        if mask is None:
                            b.store(y, ptr, align=1)
                        else:
                            masked_store(b, y, ptr, mask)


def _write_tile(b, spec: QConvSpec, C, tilebuf, img, grp, oh0, mb, mr, col0, vlen):
    """Tile positions [col0, col0 + NR) of the unit's run (pitch wp_p) through the epilogue to
    the output, one output-row segment at a time."""
    d = spec.dot
    L = d.lanes
    NR = spec.nv * L
    wp = spec.wp_p
    end = b.add(col0, I64(NR))
    end = b.select(b.icmp_signed("<", end, vlen), end, vlen)
    first = b.sdiv(col0, I64(wp))
    last = b.sdiv(b.sub(end, I64(1)), I64(wp))
    with for_range(b, first, b.add(last, I64(1)), 1, "orow") as row:
        rs = b.mul(row, I64(wp))
        lo = b.select(b.icmp_signed(">", col0, rs), col0, rs)
        re_ = b.add(rs, I64(spec.OW))
        hi = b.select(b.icmp_signed("<", end, re_), end, re_)
        with b.if_then(b.icmp_signed("<", lo, hi)):
            out0 = b.add(b.mul(b.add(oh0, row), I64(spec.OW)), b.sub(lo, rs))
            n = b.sub(hi, lo)
            with for_range(b, 0, n, L, "seg") as i:
                left = b.sub(n, i)
                mask = _lane_mask(b, left, L)
                whole = b.icmp_signed(">=", left, I64(L))
                src = b.add(b.sub(lo, col0), i)
                at = b.add(out0, i)
                for r in range(mr):
                    m = b.add(mb, I64(r))
                    acc = b.load(gep(b, tilebuf, b.add(I64(r * NR), src), I32), typ=d.vec,
                                 align=4)
                    ptr = _out_ptr(b, spec, C, img, grp, m, at)
                    with b.if_else(whole) as (t, e):
                        with t:
                            b.store(spec.epilogue(b, acc, m, at, img, grp, None), ptr, align=1)
                        with e:
                            masked_store(b, spec.epilogue(b, acc, m, at, img, grp, mask), ptr,
                                         mask)


# -- matmul ---------------------------------------------------------------------------------------
def emit_dot_rows(b: ir.IRBuilder, d: Dot, acc: ir.Value, x: ir.Value, wv: ir.Value) -> ir.Value:
    """emit_dot with the roles of the operands turned: x is one word of kg activations (the same
    for every lane, as the instruction's type: unsigned for VNNI and AVX2) and wv <lanes x word>
    holds each lane's kg weights."""
    if d.kind in ("vnni", "avx2"):
        return _dot_u8s8(b, d, acc, splat(b, x, d.lanes), wv)
    if d.kind == "avx2-exact":
        xpair = b.zext(b.bitcast(x, ir.VectorType(I8, 2)), ir.VectorType(I16, 2))
        xw = b.bitcast(splat(b, b.bitcast(xpair, I32), 8), ir.VectorType(I16, 16))
        ww = b.sext(b.bitcast(wv, ir.VectorType(I8, 16)), ir.VectorType(I16, 16))
        return b.add(acc, intrinsic(b, "llvm.x86.avx2.pmadd.wd", [xw, ww], ret=d.vec,
                                    overload=[]))
    return emit_dot(b, d, acc, wv, x)  # sdot, smull: signed x signed, the same either way


@dataclass
class QMatmulSpec:
    """C[rows, N] = epilogue(A[rows, K] x B[K, N]) with B constant, packed [N/NR][Kg][NR][kg]
    (Kg = ceil(K / kg), zeros past K and N). A task unit is a panel of NR = nv * lanes columns
    and a block of mr rows; units run row blocks innermost, so a thread's rows reuse the panel
    it holds in cache."""

    rows: int
    N: int
    K: int
    a_buf: int
    w_buf: int
    bias_buf: int  # per-column int32, zeros past N to whole panels: the accumulators' start
    c_buf: int
    dot: Dot
    mr: int
    nv: int
    xor: int  # 0 or 0x80: stored activation bytes -> the instruction's
    out_dtype: str
    # epilogue(b, acc <L x i32>, row, col0, mask|None) -> the output vector in its storage type
    epilogue: Callable | None = None
    bufs_holder: list | None = None

    @property
    def nr(self) -> int:
        return self.nv * self.dot.lanes

    @property
    def kgroups(self) -> int:
        return -(-self.K // self.dot.kg)

    @property
    def panels(self) -> int:
        return -(-self.N // self.nr)

    @property
    def row_blocks(self) -> int:
        return -(-self.rows // self.mr)


def pack_matmul_weights(w: np.ndarray, kg: int, nr: int) -> np.ndarray:
    """[K, N] int8 -> [N/NR][K/kg][NR][kg], zeros past K and N."""
    k, n = w.shape
    nb, kgs = -(-n // nr), -(-k // kg)
    out = np.zeros((nb * nr, kgs * kg), np.int8)
    out[:n, :k] = w.T
    return np.ascontiguousarray(out.reshape(nb, nr, kgs, kg).transpose(0, 2, 1, 3))


def matmul_weight_groups(w: np.ndarray, kg: int) -> np.ndarray:
    """The kg-row groups of B's columns, as the kernel multiplies them (for exactness)."""
    k, n = w.shape
    padded = np.zeros((-(-k // kg) * kg, n), np.int8)
    padded[:k] = w
    return padded.reshape(-1, kg, n).transpose(0, 2, 1).reshape(-1, kg)


def emit_qmatmul_kernel(module: ir.Module, name: str, spec: QMatmulSpec, nbufs: int) -> ir.Function:
    fn, b, bufs = kernel_function(module, name, nbufs)
    if spec.bufs_holder is not None:
        spec.bufs_holder[0] = bufs
    d = spec.dot
    L, MR, NV, NR, kg = d.lanes, spec.mr, spec.nv, spec.nr, d.kg
    word = d.word
    accs = [[b.alloca(d.vec, name=f"acc{r}_{v}") for v in range(NV)] for r in range(MR)]
    body = b.append_basic_block("body")
    b.branch(body)
    b.position_at_end(body)
    A, Wt, C = bufs[spec.a_buf], bufs[spec.w_buf], bufs[spec.c_buf]
    Bias = bufs[spec.bias_buf]
    flipw = ir.Constant(word, int.from_bytes(bytes([spec.xor]) * kg, "little"))
    full_k = spec.K // kg
    wvt = ir.VectorType(word, L)
    lo, hi = task_range(b, spec.panels * spec.row_blocks, fn.args[1], fn.args[2])
    with for_range(b, lo, hi, 1, "unit") as unit:
        panel = b.sdiv(unit, I64(spec.row_blocks))
        r0 = b.mul(b.srem(unit, I64(spec.row_blocks)), I64(MR))
        wbase = b.mul(panel, I64(spec.kgroups * NR))
        col0 = b.mul(panel, I64(NR))

        def block(mr: int):
            for v in range(NV):  # from the bias (padded with zeros to whole panels)
                bias = b.load(gep(b, Bias, b.add(col0, I64(v * L)), I32), typ=d.vec, align=4)
                for r in range(mr):
                    b.store(bias, accs[r][v])
            arow = [b.mul(b.add(r0, I64(r)), I64(spec.K)) for r in range(mr)]

            def step(kc, xwords):
                wk = b.add(wbase, b.mul(kc, I64(NR)))
                ws = [b.load(gep(b, Wt, b.add(wk, I64(v * L)), word), typ=wvt, align=1)
                      for v in range(NV)]
                for r in range(mr):
                    for v in range(NV):
                        acc = b.load(accs[r][v], typ=d.vec)
                        b.store(emit_dot_rows(b, d, acc, xwords[r], ws[v]), accs[r][v])

            if full_k:
                with for_range(b, 0, full_k, 1, "kc") as kc:
                    at = b.mul(kc, I64(kg))
                    step(kc, [b.xor(b.load(gep(b, A, b.add(a, at), I8), typ=word, align=1),
                                    flipw) for a in arow])
            if spec.K % kg:  # the last group byte by byte: nothing read past the row
                words = []
                for a in arow:
                    wv = flipw
                    for t in range(spec.K % kg):
                        byte = b.load(gep(b, A, b.add(a, I64(full_k * kg + t)), I8), typ=I8)
                        wv = b.xor(wv, b.shl(b.zext(byte, word), ir.Constant(word, 8 * t)))
                    words.append(wv)
                step(I64(full_k), words)
            for v in range(NV):
                c = b.add(col0, I64(v * L))
                left = b.sub(I64(spec.N), c)
                with b.if_then(b.icmp_signed(">", left, I64(0))):
                    whole = b.icmp_signed(">=", left, I64(L))
                    mask = _lane_mask(b, left, L)
                    for r in range(mr):
                        row = b.add(r0, I64(r))
                        acc = b.load(accs[r][v], typ=d.vec)
                        ptr = gep(b, C, b.add(b.mul(row, I64(spec.N)), c),
                                  STORAGE[spec.out_dtype])
                        with b.if_else(whole) as (t, e):
                            with t:
                                b.store(spec.epilogue(b, acc, row, c, None), ptr, align=1)
                            with e:
                                masked_store(b, spec.epilogue(b, acc, row, c, mask), ptr, mask)

        _whole_or_tail(b, spec.rows, MR,
                       lambda: b.icmp_signed("<=", b.add(r0, I64(MR)), I64(spec.rows)), block)
    b.ret(I32(0))
    return fn
