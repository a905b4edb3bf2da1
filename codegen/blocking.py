"""Register tiles of the conv/matmul kernels, chosen per problem with a small cycle model.

A tile keeps rows x vectors accumulators in registers and, per reduction step, loads `vectors`
vectors and broadcasts `rows` scalars, then issues rows x vectors FMAs. Its cost per step is the
largest of: the FMAs at the core's rate, the FMA latency (too few accumulators leave the pipes
idle), and the loads at two per cycle (a 512-bit load takes both 256-bit load slots of a Zen 4).
Whole problems add the work of the padding: a plane of 196 columns in panels of 64 computes 256.
The model only ranks candidate shapes for one problem; it never predicts a time.
"""
from __future__ import annotations

from dataclasses import dataclass

from .tuning import Tuning


def step_cycles(tun: Tuning, rows: int, vectors: int) -> float:
    """Cycles per reduction step of a rows x vectors tile."""
    fma = rows * vectors / tun.fma_per_cycle
    slots = max(1, -(-tun.vector_bits // tun.pipe_bits)) if tun.arch == "x86_64" else 1
    loads = (vectors * slots + rows) / 2.0
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


def transpose_cycles(tun: Tuning, rows: int, lanes: int) -> float:
    """Shuffles and stores to write one channel vector of a rows-position tile transposed:
    log2(rows) shuffle stages over `rows` vectors, then one store per channel."""
    stages = max(1, rows.bit_length() - 1)
    return rows * stages * 0.5 + lanes * 0.5


def channel_shape(tun: Tuning, M: int, P: int, K: int) -> ChannelShape:
    """Tile of the channel-vector conv (kernel_convc) for M output channels, P output positions
    and a reduction of K: the candidate with the fewest estimated cycles over the whole
    problem, transposed outputs where masked stores are cheap (AVX-512)."""
    L = tun.lanes
    cands = []
    for transposed in (True, False):
        if transposed and not (tun.masked_stores_fast and L >= 8):
            continue
        row_choices = [r for r in (4, 8, 16) if r <= L] if transposed else range(2, 17)
        for rows in row_choices:
            for nv in range(1, 5):
                if not fits(tun, rows, nv):
                    continue
                nr = nv * L
                panels, last_ch = -(-M // nr), M - (-(-M // nr) - 1) * nr
                pblocks, last_rows = -(-P // rows), P - (-(-P // rows) - 1) * rows
                last_nv = -(-last_ch // L)
                cyc = 0.0
                for pr, pn in ((rows, pblocks - 1), (last_rows, 1)):
                    for cv, cn in ((nv, panels - 1), (last_nv, 1)):
                        tile = K * step_cycles(tun, pr, cv)
                        if transposed:
                            tile += cv * transpose_cycles(tun, rows, L)
                        else:
                            tile += pr * cv * L * 1.5  # extract + scalar store per result
                        cyc += pn * cn * tile
                cyc += pblocks * panels * TILE_OVERHEAD
                cands.append(ChannelShape(rows, nv, transposed, cyc))
    return _pick(cands, lambda c: c.rows * c.vectors)


# Cycles a tile costs besides its steps: loop control, addresses, loading partial sums.
TILE_OVERHEAD = 30.0


def _pick(cands: list, size):
    """The cheapest candidate; among those within 3% of it, the largest tile (fewer loads per
    FMA than the model counts, and fewer tiles)."""
    low = min(c.cycles for c in cands)
    return max((c for c in cands if c.cycles <= 1.03 * low), key=lambda c: (size(c), -c.cycles))
