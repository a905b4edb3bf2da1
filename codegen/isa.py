"""Which integer dot-product and half-precision instructions a target has.

A target's features string lists what the user or the host gave (`+avx512vnni`, `+dotprod`);
a named CPU implies the rest (LLVM knows, but llvmlite does not say), so the CPUs that imply
them are listed here.
"""
from __future__ import annotations

from .tuning import Tuning

# x86 CPUs (LLVM names) with AVX-512 VNNI, and those with only the VEX-encoded AVX-VNNI
_AVX512_VNNI_CPUS = frozenset((
    "cascadelake", "cooperlake", "icelake-client", "icelake-server", "tigerlake", "rocketlake",
    "sapphirerapids", "emeraldrapids", "graniterapids", "graniterapids-d", "diamondrapids",
    "znver4", "znver5"))
_AVX_VNNI_CPUS = frozenset((
    "alderlake", "raptorlake", "meteorlake", "arrowlake", "arrowlake-s", "lunarlake",
    "gracemont", "sierraforest", "grandridge", "clearwaterforest", "pantherlake"))
# AArch64 cores with the dot product (ARMv8.2 dotprod) and with fp16 arithmetic (fullfp16)
_DOTPROD_CPUS = frozenset((
    "neoverse-n1", "neoverse-n2", "neoverse-n3", "neoverse-v1", "neoverse-v2", "neoverse-v3",
    "neoverse-e1", "cortex-a55", "cortex-a65", "cortex-a75", "cortex-a76", "cortex-a76ae",
    "cortex-a77", "cortex-a78", "cortex-a78c", "cortex-a710", "cortex-a715", "cortex-a720",
    "cortex-x1", "cortex-x2", "cortex-x3", "cortex-x4", "apple-a13", "apple-a14", "apple-a15",
    "apple-a16", "apple-m1", "apple-m2", "apple-m3", "ampere1", "ampere1a", "a64fx"))
_FULLFP16_CPUS = _DOTPROD_CPUS


def _flags(tun: Tuning) -> dict[str, bool]:
    return {f[1:]: f[0] == "+" for f in tun.features.split(",") if f[:1] in "+-" and len(f) > 1}


def has_feature(tun: Tuning, name: str, cpus: frozenset = frozenset()) -> bool:
    flags = _flags(tun)
    return flags.get(name, tun.cpu in cpus)


def int8_dot(tun: Tuning) -> str:
    """The instruction family of int8 dot products for this target:

    - "vnni": vpdpbusd (u8 x s8, 4 products per int32 lane) at the kernel's width, AVX-512 VNNI
      (or AVX-VNNI at 256 bits);
    - "avx2": vpmaddubsw + vpmaddwd (u8 x s8 pairs in int16, which can saturate: used only where
      the weights make it exact, else "avx2-exact");
    - "avx2-exact": vpmaddwd on zero-extended activations (int16 pairs, exact);
    - "sdot": AArch64 dotprod, s8 x s8, 4 products per lane;
    - "smull": NEON without dotprod (AArch64 and ARMv7): widening s8 multiplies, pairwise adds
      into int32 (smull/sadalp, vmull/vpadal);
    - "generic": plain int32 arithmetic (scalar targets, RISC-V).
    """
    if tun.arch == "x86_64":
        if tun.vector_bits >= 512 and has_feature(tun, "avx512vnni", _AVX512_VNNI_CPUS):
            return "vnni"
        if tun.vector_bits == 256 and (
                has_feature(tun, "avxvnni", _AVX_VNNI_CPUS)
                or (has_feature(tun, "avx512vnni", _AVX512_VNNI_CPUS)
                    and has_feature(tun, "avx512vl", _AVX512_VNNI_CPUS))):
            return "vnni"
        return "avx2" if tun.vector_bits >= 256 else "generic"
    if tun.arch == "aarch64":
        return "sdot" if has_feature(tun, "dotprod", _DOTPROD_CPUS) else "smull"
    if tun.arch == "armv7" and tun.vector_bits >= 128:
        return "smull"
    return "generic"


_AMX_CPUS = frozenset(("sapphirerapids", "emeraldrapids", "graniterapids", "graniterapids-d",
                       "diamondrapids"))


def has_amx_int8(tun: Tuning) -> bool:
    """x86 AMX-INT8 tiles (TDPBSUD and kin), used by the int8 conv kernel beside AVX-512 VNNI."""
    return (tun.arch == "x86_64" and tun.vector_bits >= 512 and int8_dot(tun) == "vnni"
            and has_feature(tun, "amx-int8", _AMX_CPUS) and has_feature(tun, "amx-tile", _AMX_CPUS))


def native_fp16(tun: Tuning) -> bool:
    """fp16 arithmetic in registers: AArch64 fullfp16, x86 AVX512-FP16."""
    if tun.arch == "aarch64":
        return has_feature(tun, "fullfp16", _FULLFP16_CPUS)
    if tun.arch == "x86_64":
        return tun.vector_bits >= 512 and has_feature(
            tun, "avx512fp16", frozenset(("sapphirerapids", "emeraldrapids", "graniterapids",
                                         "graniterapids-d", "diamondrapids")))
    return False
