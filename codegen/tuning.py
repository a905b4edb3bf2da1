"""What the kernels' shapes are chosen from: the float vector width and what the target CPU does
with vectors of that width each cycle.

Kernel builders and the heuristics in `lower.py` read a `Tuning`, never a bare vector width, so a
choice that depends on the microarchitecture says so where it is made. The facts that differ
between the x86 CPUs with AVX-512:

- AMD Zen 4 (`znver4`) executes a 512-bit operation as two 256-bit halves on its 256-bit FMA
  pipes: one zmm FMA per cycle, the same FLOPs as two ymm FMAs. A zmm whose upper half is padding
  therefore costs twice the useful work, while a 256-bit vector (32 registers too, with
  AVX-512VL) costs half: narrow data (a 7-column plane) is cheaper at 256 bits.
- Intel server cores (Skylake-SP through Sapphire Rapids: ml_c5, ml_m5) and AMD Zen 5
  (`znver5`) have two full-width 512-bit FMA pipes: two zmm FMAs per cycle, twice the AVX2 FLOPs,
  and need twice as many independent accumulators to cover the 4-cycle latency. A half-empty zmm
  costs the same as a full ymm there, so narrow vectors gain nothing.
- Both have 32 vector registers and mask registers that make masked loads and stores as cheap as
  plain ones. AVX2 has 16 registers, and on AMD its masked stores (vmaskmovps) are slow.

A legalized width (512-bit vectors on an AVX2 CPU, as the width tests build) counts registers of
that width: 16 ymm hold 8 such vectors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

# x86 CPUs (LLVM names) whose 512-bit FMAs run at half the 256-bit rate per instruction
_HALF_RATE_512 = frozenset(("znver4",))


@dataclass(frozen=True)
class Tuning:
    """The vector unit kernels are blocked for."""

    vector_bits: int  # float vector width of the kernels: 512, 256, 128 (32: scalar)
    registers: int  # vector registers of that width
    fma_pipes: int = 2  # FMA pipes per core
    pipe_bits: int = 256  # their width: a wider vector occupies a pipe for several cycles
    fma_latency: int = 4
    l1_bytes: int = 32 * 1024  # L1 data cache per core
    l2_bytes: int = 1024 * 1024  # L2 per core
    masked_stores_fast: bool = False  # AVX-512 masks: cheap; AVX2 vmaskmovps on AMD: slow
    cpu: str = "generic"
    arch: str = "x86_64"
    max_bits: int = 0  # the widest the target has (narrowed() keeps it); 0: vector_bits
    features: str = ""  # the target's LLVM features (+avx512vnni, +dotprod: codegen/isa.py)

    @property
    def lanes(self) -> int:
        """float32 lanes per vector."""
        return max(1, self.vector_bits // 32)

    def lanes_of(self, dtype: str) -> int:
        """Lanes per vector of elements of `dtype` (vector_bits // its bits)."""
        from neo.ir.types import dtype_bits

        return max(1, self.vector_bits // dtype_bits(dtype))

    @property
    def widest(self) -> int:
        return self.max_bits or self.vector_bits

    @property
    def fma_per_cycle(self) -> float:
        """Vector FMAs of this width issued per cycle."""
        return self.fma_pipes * min(1.0, self.pipe_bits / max(self.vector_bits, 32))

    @property
    def narrow_is_cheaper(self) -> bool:
        """Whether a vector of half this width costs half (Zen 4's zmm): half-empty vectors
        then waste cycles, not just lanes."""
        return self.vector_bits > self.pipe_bits

    @property
    def min_accumulators(self) -> int:
        """Independent FMA chains that keep the FMA pipes busy (throughput x latency)."""
        return max(1, math.ceil(self.fma_per_cycle * self.fma_latency))

    @property
    def core_bandwidth_low(self) -> bool:
        """Whether one core streams from L3 and memory at a small fraction of what its FMAs
        consume: Intel's named x86 CPUs (their server mesh), not Zen and not the generic x86-64
        levels (no vendor). Measured on a Xeon (AVX-512 and, with it hidden, AVX2 alike):
        - loads that walk a large plane a channel at a time (a 1x1 channel-vector conv on 28x28
          or 56x56 with 128-512 input channels, a cache line per 3-12 KiB stride) stall: those
          convs ran 1.5-1.7x faster on the GEMM's packed rows;
        - a 7x7 output's Winograd weights (16/9 of the direct ones) cost more to stream than
          the multiplies they save: resnet50's last stage 5.24 -> 4.67 ms per block at AVX2.
        On Zen 4 and Zen 5 the cycle model's channel tiles and 7x7 Winograd measured best."""
        return (self.arch == "x86_64" and not self.cpu.startswith("znver")
                and self.cpu not in _GENERIC_X86)

    def narrowed(self, bits: int) -> Tuning:
        """The same CPU with vectors of `bits` (at most the current width). With AVX-512VL a ymm
        keeps the 32 registers and the masks."""
        if bits >= self.vector_bits:
            return self
        return replace(self, vector_bits=bits, max_bits=self.widest)


def tuning_for(target) -> Tuning:
    """The Tuning of a Target (its arch, CPU name, features and vector width)."""
    return replace(_tuning_for(target), features=target.features or "")


def _tuning_for(target) -> Tuning:
    bits = target.vector_bits
    arch, cpu = target.arch, (target.cpu or "generic")
    flags = {f[1:]: f[0] == "+" for f in (target.features or "").split(",")
             if f[:1] in "+-" and len(f) > 1}
    if arch != "x86_64":
        # NEON: 32 q registers on AArch64, 16 on ARMv7; two 128-bit FMA pipes on the A72/A76/N1
        # class, one on in-order cores (A53/A55), which the shapes tolerate.
        regs = 32 if arch in ("aarch64", "riscv64") else 16
        return Tuning(bits, regs, 2, max(bits, 128), cpu=cpu, arch=arch)
    # 512 bits on a generic pre-v4 CPU without +avx512f: vectors legalized into ymm pieces (the
    # width tests); any other 512-bit target has AVX-512 (the width comes from its CPU/features)
    avx512 = bits >= 512 and flags.get("avx512f", cpu not in _PRE_AVX512_GENERIC)
    if avx512:
        pipe = 256 if cpu in _HALF_RATE_512 else 512
        l1 = 48 * 1024 if cpu in _L1_48K else 32 * 1024
        return Tuning(512, 32, 2, pipe, l1_bytes=l1, masked_stores_fast=True, cpu=cpu, arch=arch)
    # AVX2 (x86-64-v3, Haswell+ and Zen 2+): two 256-bit FMA pipes, 16 ymm; wider widths are
    # legalized into ymm pieces (16 ymm hold 8 zmm), narrower ones issue at the same rate.
    regs = 16 * 256 // bits if bits > 256 else 16
    return Tuning(bits, regs, 2, 256, cpu=cpu, arch=arch, masked_stores_fast=_vl(flags))


def _vl(flags: dict) -> bool:
    return flags.get("avx512vl", False)


_PRE_AVX512_GENERIC = frozenset(("x86-64", "x86-64-v2", "x86-64-v3"))
_GENERIC_X86 = _PRE_AVX512_GENERIC | {"x86-64-v4", "generic"}
# AVX-512 cores with a 48 KiB L1D (Ice Lake and later, Zen 5); Skylake-SP and Zen 4 have 32 KiB
_L1_48K = frozenset(("icelake-client", "icelake-server", "tigerlake", "rocketlake",
                     "sapphirerapids", "emeraldrapids", "graniterapids", "graniterapids-d",
                     "znver5"))
