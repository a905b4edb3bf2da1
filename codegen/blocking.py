"""Register tiles of the conv/matmul kernels, chosen per problem with a small cycle model.

A tile keeps rows x vectors accumulators in registers and, per reduction step, loads `vectors`
vectors and broadcasts `rows` scalars, then issues rows x vectors FMAs. Its cost per step is the
largest of: the FMAs at the core's rate, the FMA latency (too few accumulators leave the pipes
idle), and the loads at two per cycle (a 512-bit load takes both 256-bit load slots of a Zen 4).
A tile then writes its results: the GEMM kernel one store and one epilogue per vector; the
channel kernel, whose vectors run over output channels while the output is laid out by position,
either an in-register transpose (log2(rows) shuffle stages) and one store and epilogue per
channel, or one extract and scalar store per result. Whole problems add the work of the padding
(a plane of 196 columns in panels of 64 computes 256; 24 channels in vectors of 16 compute 32)
and, for the GEMM, the packing of each panel of B. The model ranks candidate shapes and the two
kernel families for one problem (used on native AVX-512 only: `codegen/lower.py: _modelled`);
it never predicts a time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .tuning import Tuning

# Cycles a tile costs besides its steps and its writes: loop control, addresses, partial sums.
TILE_OVERHEAD = 30.0
EPILOGUE_OPS = 2.0  # per output vector: a bias and an activation


def _slots(tun: Tuning, bits: int | None = None) -> int:
    """256-bit pipe slots a vector of `bits` occupies (2 for a zmm on Zen 4)."""
    bits = bits or tun.vector_bits
    return max(1, -(-bits // tun.pipe_bits)) if tun.arch == "x86_64" else 1


def step_cycles(tun: Tuning, rows: int, vectors: int) -> float:
    """Cycles per reduction step of a rows x vectors tile."""
    fma = rows * vectors / tun.fma_per_cycle
    loads = (vectors * _slots(tun) + rows) / 2.0
    return max(fma, float(tun.fma_latency), loads)


def fits(tun: Tuning, rows: int, vectors: int) -> bool:
    """Accumulators plus the step's vectors and a broadcast fit the register file."""
    return rows * vectors + vectors + 1 <= tun.registers


@dataclass(frozen=True)
class ChannelShape:
    rows: int  # output positions per tile
    vectors: int  # channel vectors per tile
    transposed: bool  # results transposed in registers (vector stores) or stored one by one
    cycles: float


def write_cycles_transposed(tun: Tuning, rows: int) -> float:
    """Writing one channel vector of a rows-position tile: rows x log2(rows) shuffles, then per
    channel a `rows`-lane piece through the epilogue and a store."""
    L = tun.lanes
    piece = _slots(tun, rows * 32)
    return rows * max(1, int(math.log2(rows))) * _slots(tun) + L * piece * (1 + EPILOGUE_OPS)


def write_cycles_scalar(tun: Tuning) -> float:
    """Writing one channel vector result by result: the epilogue on the vector, then an extract
    and a store per lane."""
    return EPILOGUE_OPS * _slots(tun) + tun.lanes * 2.0


def channel_shape(tun: Tuning, M: int, P: int, K: int) -> ChannelShape:
    """Tile of the channel-vector conv (kernel_convc) for M output channels, P output positions
    and a reduction of K: the candidate with the fewest estimated cycles over the whole
    problem, transposed outputs where masked stores are cheap (AVX-512)."""
    L = tun.lanes
    cands = []
    # transposed writes where masked stores are cheap: they measured faster at every shape
    for transposed in ((True,) if tun.masked_stores_fast and L >= 8 else (False,)):
        row_choices = [r for r in (4, 8, 16) if r <= L] if transposed else range(2, 17)
        for rows in row_choices:
            for nv in range(1, 5):
                if not fits(tun, rows, nv):
                    continue
                nr = nv * L
                panels, last_ch = -(-M // nr), M - (-(-M // nr) - 1) * nr
                pblocks, last_rows = -(-P // rows), P - (-(-P // rows) - 1) * rows
                last_nv = -(-last_ch // L)
                wr = write_cycles_transposed(tun, rows) if transposed else None
                cyc = 0.0
                for pr, pn in ((rows, pblocks - 1), (last_rows, 1)):
                    for cv, cn in ((nv, panels - 1), (last_nv, 1)):
                        tile = K * step_cycles(tun, pr, cv) + TILE_OVERHEAD
                        tile += cv * (wr if transposed else pr / L * write_cycles_scalar(tun))
                        cyc += pn * cn * tile
                cands.append(ChannelShape(rows, nv, transposed, cyc))
    return _pick(cands, lambda c: c.rows * c.vectors)


def _pick(cands: list, size):
    """The cheapest candidate; among those within 2% of it, the largest tile (fewer loads per
    FMA than the model counts, and fewer tiles)."""
    low = min(c.cycles for c in cands)
    return max((c for c in cands if c.cycles <= 1.02 * low), key=lambda c: (size(c), -c.cycles))


@dataclass(frozen=True)
class GemmShape:
    rows: int  # MR: rows of A (output channels) per tile
    vectors: int  # NV: vectors of columns per tile
    kc: int  # reduction chunk: a panel of kc x NR floats of B stays in L1
    cycles: float


def pack_cycles(tun: Tuning, kind: str, nr: int, stride: int = 1, same_row: bool = True) -> float:
    """Cycles to copy one reduction row of an NR-column panel of B: vector loads and stores for
    a contiguous row (strided loads and a shuffle per vector for a strided one that stays in
    one output row), a scalar load, bounds check and store per element otherwise (im2col across
    row ends)."""
    if kind == "prepacked":
        return 0.0
    vecs = -(-nr // tun.lanes)
    if kind == "contig" or same_row:
        return vecs * _slots(tun) * (1.0 + stride)
    return nr * 2.0


def gemm_shape(tun: Tuning, M: int, N: int, K: int, kind: str = "contig", stride: int = 1,
               row_width: int = 0) -> GemmShape:
    """Tile of the GEMM kernel (kernel_gemm: MR rows of M by NV vectors of N columns) for a
    problem of M x N x K: fewest estimated cycles, counting the columns padded up to whole
    panels, the short last row block and the packing of B (`kind`: prepacked, contig, or im2col
    with `stride` and output rows `row_width` wide, whose panels pack fast only within a row)."""
    L = tun.lanes
    cands = []
    for nv in range(1, 5):
        for mr in range(2, 17):
            if not fits(tun, mr, nv):
                continue
            nr = nv * L
            panels = -(-N // nr)
            full, rem = divmod(M, mr)
            steps = full * step_cycles(tun, mr, nv) + (step_cycles(tun, rem, nv) if rem else 0.0)
            same_row = row_width == 0 or (nr <= row_width and row_width % nr == 0)
            cyc = panels * K * (steps + pack_cycles(tun, kind, nr, stride, same_row))
            tiles = panels * (full + (rem > 0))
            cyc += tiles * TILE_OVERHEAD + panels * M * nv * _slots(tun) * (1 + EPILOGUE_OPS)
            kc = max(16, min(K, tun.l1_bytes // 2 // (4 * nr) // 8 * 8))
            cands.append(GemmShape(mr, nv, kc, cyc))
    return _pick(cands, lambda c: c.rows * c.vectors)
