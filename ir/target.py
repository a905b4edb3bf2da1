"""Targets as data: what an artifact is built for, derived from one table of facts per arch and OS.

A `Target` is OS + arch + ABI + CPU + features + object format + library naming + float vector
width. Everything the compiler, the toolchain, the runtime build and the tests need to know about an
architecture is one `ArchFacts` row of `ARCHES`: the LLVM triple's arch, the zig target and its
glibc, the qemu-user binary and sysroot for running it here, pointer size and byte order, the
default CPU and features, the CPUs to suggest, and the rule that gives the float vector width of a
CPU + feature set. An OS is one `OsFacts` row of `OSES`: triple OS, object format, library and
executable naming. Adding an arch is adding a row (docs/ARCHITECTURE.md, "Targets").

This is the bottom layer (`neo.ir.target`): codegen and passes type their `target` parameters with
it, and tests build targets without the CLI. Neo's device names, --target-platform and
--compiler-options live in `neo.targets` (neo_cli/targets.py), which builds on this.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Endian = Literal["little", "big"]


# --- the OS table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OsFacts:
    """What an operating system means for an artifact: triple OS, object format, file naming."""

    name: str  # neo's name: linux, android, windows
    triple_os: str  # the OS part of the LLVM triple
    object_format: str  # elf, coff
    shared_prefix: str  # "lib" for libneort.so
    shared_suffix: str  # ".so", ".dll"
    exe_suffix: str  # "", ".exe"
    # False until the runtime (pthreads, dlopen, mmap in runtime/neort.c) and the toolchain (zig's
    # libc for it, an emulator for the tests) are ported; such a target is refused by the CLI.
    supported: bool

    def shared_library(self, stem: str, *, lib_prefix: bool = True) -> str:
        """The file name of shared library `stem`: libneort.so, neort.dll; compiled.so."""
        return f"{self.shared_prefix if lib_prefix else ''}{stem}{self.shared_suffix}"

    def executable(self, stem: str) -> str:
        return f"{stem}{self.exe_suffix}"


OSES: dict[str, OsFacts] = {
    "linux": OsFacts("linux", "linux", "elf", "lib", ".so", "", supported=True),
    "android": OsFacts("android", "linux", "elf", "lib", ".so", "", supported=False),
    "windows": OsFacts("windows", "windows", "coff", "", ".dll", ".exe", supported=False),
}


# --- vector width rules ---------------------------------------------------------------------------


def _flags(features: str) -> dict[str, bool]:
    """'+a,-b' -> {'a': True, 'b': False} (the last mention wins, as in LLVM)."""
    return {f[1:]: f[0] == "+" for f in features.split(",") if f[:1] in "+-" and len(f) > 1}


# x86 CPUs by the widest float vectors they have; used only when the features do not say.
_AVX512_CPUS = frozenset((
    "x86-64-v4", "skylake-avx512", "cascadelake", "cooperlake", "cannonlake", "icelake-client",
    "icelake-server", "tigerlake", "rocketlake", "sapphirerapids", "emeraldrapids",
    "graniterapids", "graniterapids-d", "diamondrapids", "knl", "knm", "znver4", "znver5",
))  # fmt: skip
_AVX_CPUS = frozenset((
    "x86-64-v3", "sandybridge", "ivybridge", "corei7-avx", "core-avx-i", "haswell", "core-avx2",
    "broadwell", "skylake", "alderlake", "raptorlake", "meteorlake", "arrowlake", "arrowlake-s",
    "lunarlake", "pantherlake", "gracemont", "sierraforest", "grandridge", "clearwaterforest",
    "znver1", "znver2", "znver3", "bdver1", "bdver2", "bdver3", "bdver4", "btver2",
))  # fmt: skip


def _x86_vector_bits(cpu: str, features: str) -> int:
    flags = _flags(features)
    avx512 = flags.get("avx512f", cpu in _AVX512_CPUS)
    cpu_has_avx = cpu in _AVX_CPUS or cpu in _AVX512_CPUS
    # Enabling AVX2/AVX-512 implies AVX; disabling AVX disables everything wider (as in LLVM).
    avx = flags.get("avx", cpu_has_avx or flags.get("avx2", False) or avx512)
    if avx and avx512:
        return 512
    return 256 if avx else 128


def _neon_vector_bits(cpu: str, features: str) -> int:
    # NEON registers are 128 bits; without NEON only scalar (VFP) floats are left.
    return 128 if _flags(features).get("neon", True) else 32


def _riscv_vector_bits(cpu: str, features: str) -> int:
    """The guaranteed vector length (VLEN) of the CPU + features, when it has float vectors.

    LLVM lowers fixed-length vectors to RVV only up to what it knows every such CPU has: the
    Zvl<N>b extensions (V implies Zvl128b; a CPU like spacemit-x60 brings Zvl256b). Code built for
    that minimum runs on any longer VLEN. Without float vectors (rv64gc) codegen is scalar.
    """
    isa = riscv_isa("riscv64-unknown-linux-gnu", cpu, features)
    if not {"v", "zve32f"} & isa:
        return 32
    vlen = max((int(m.group(1)) for ext in isa if (m := re.fullmatch(r"zvl(\d+)b", ext))),
               default=128)
    return min(vlen, 512)  # the kernels are tuned up to 512-bit vectors (16 float lanes)


def _riscv_qemu_cpu(cpu: str | None, features: str) -> str:
    """qemu-riscv64's -cpu for code built for cpu + features: RVV on, at the VLEN the code assumes,
    only when the code may use it (so scalar code that used V would trap under test)."""
    if cpu is None:  # unknown code: the most capable CPU we build for
        return "rv64,v=true,vlen=128,vext_spec=v1.0"
    bits = _riscv_vector_bits(cpu, features)
    if bits == 32:
        return "rv64,v=false"
    return f"rv64,v=true,vlen={max(bits, 128)},vext_spec=v1.0"


def _riscv_check(cpu: str, features: str) -> str | None:
    isa = riscv_isa("riscv64-unknown-linux-gnu", cpu, features)
    if "d" not in isa:
        return ("riscv64 Linux uses the lp64d ABI (doubles in FP registers), which needs the D "
                "extension: keep +d (e.g. mattr [\"+m\",\"+a\",\"+f\",\"+d\",\"+c\"])")
    return None


@functools.cache
def riscv_isa(triple: str, cpu: str, features: str) -> frozenset[str]:
    """The RISC-V extensions LLVM enables for cpu + features (implied ones included), as written in
    the `.attribute arch` of its objects: {'i', 'm', 'a', 'f', 'd', 'c', 'v', 'zvl128b', ...}."""
    llvm = llvm_binding()
    module = llvm.parse_assembly("")
    module.triple = triple
    machine = llvm.Target.from_triple(triple).create_target_machine(cpu=cpu, features=features)
    asm = machine.emit_assembly(module)
    found = re.search(r'\.attribute\s+(?:5|arch),\s*"rv(?:32|64)([^"]*)"', asm)
    if found is None:
        return frozenset()
    exts = {re.sub(r"\d+p\d+$", "", part) for part in found.group(1).split("_")}
    return frozenset(exts)


# --- the arch table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchFacts:
    """Everything neo knows about one instruction-set architecture."""

    name: str  # neo's arch name: an artifact's "arch", the runtime's NEO_ARCH
    llvm_arch: str  # the triple's arch
    linux_abi: str  # the triple's environment on Linux (gnu, gnueabihf)
    pointer_bits: int
    endian: Endian
    machine_names: tuple[str, ...]  # what `uname -m` / platform.machine() says on such a host
    zig_arch: str
    glibc: str  # the oldest glibc the artifacts link against (zig's stubs)
    zig_cpu: str | None  # -mcpu for C code (the runtime); None: zig's baseline for the arch
    qemu: str  # the qemu-user binary that runs it on another host
    sysroot: str  # the target's C library for qemu -L (Debian's cross libc package)
    cross_libc: str  # that Debian/Ubuntu package
    default_cpu: str  # LLVM CPU of the generic target; also what "generic" means
    base_features: str  # features every target of the arch gets unless mattr replaces them
    known_cpus: tuple[str, ...]  # a few CPU names LLVM knows, for messages
    vector_bits: Callable[[str, str], int]  # (cpu, features) -> float vector width in bits
    # (cpu or None, features) -> qemu -cpu value, or None for qemu's default
    qemu_cpu: Callable[[str | None, str], str | None] = lambda cpu, features: None
    # (cpu, features) -> why this CPU + features cannot build Linux code of this ABI, or None
    check: Callable[[str, str], str | None] = lambda cpu, features: None

    def triple(self, os: str = "linux") -> str:
        return f"{self.llvm_arch}-unknown-{OSES[os].triple_os}-{self.linux_abi}"

    @property
    def zig_target(self) -> str:
        """zig's -target for C code that runs on Linux with glibc: aarch64-linux-gnu.2.17."""
        return f"{self.zig_arch}-linux-{self.linux_abi}.{self.glibc}"

    def qemu_command(self, cpu: str | None = None, features: str = "") -> list[str]:
        """The qemu-user command prefix for code built for cpu + features (without a check that
        the emulator is installed: see codegen.toolchain.qemu_command)."""
        qcpu = self.qemu_cpu(cpu, features)
        return [self.qemu, *(["-cpu", qcpu] if qcpu else []), "-L", self.sysroot]


ARCHES: dict[str, ArchFacts] = {a.name: a for a in (
    ArchFacts(
        "x86_64", "x86_64", "gnu", 64, "little", ("x86_64", "amd64"),
        zig_arch="x86_64", glibc="2.17", zig_cpu=None,
        qemu="qemu-x86_64-static", sysroot="/usr/x86_64-linux-gnu", cross_libc="libc6-amd64-cross",
        default_cpu="x86-64-v3", base_features="",
        known_cpus=("x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4", "goldmont", "haswell",
                    "broadwell", "skylake", "skylake-avx512", "cascadelake", "icelake-server",
                    "sapphirerapids", "alderlake", "znver2", "znver3", "znver4"),
        vector_bits=_x86_vector_bits),
    ArchFacts(
        "aarch64", "aarch64", "gnu", 64, "little", ("aarch64", "arm64"),
        zig_arch="aarch64", glibc="2.17", zig_cpu=None,
        qemu="qemu-aarch64-static", sysroot="/usr/aarch64-linux-gnu",
        cross_libc="libc6-arm64-cross",
        default_cpu="generic", base_features="+neon,+fp-armv8",
        known_cpus=("generic", "cortex-a53", "cortex-a55", "cortex-a57", "cortex-a72",
                    "cortex-a73", "cortex-a75", "cortex-a76", "cortex-a78", "carmel",
                    "neoverse-n1", "neoverse-n2", "neoverse-v1", "apple-m1"),
        vector_bits=_neon_vector_bits),
    # zig's armv7 baseline is v7-A + VFPv3 + NEON; every board we target in 32-bit mode
    # (Raspberry Pi 2 v1.1, 3, 4: Cortex-A7/A53/A72) also has VFPv4 (fused multiply-add), which
    # qemu-arm emulates too. Cortex-A8/A9 boards need --compiler-options '{"mcpu":"cortex-a9"}'.
    ArchFacts(
        "armv7", "armv7", "gnueabihf", 32, "little", ("armv7l", "armv7", "armv8l", "armhf"),
        zig_arch="arm", glibc="2.17", zig_cpu="generic+v7a+neon+vfp4",
        qemu="qemu-arm-static", sysroot="/usr/arm-linux-gnueabihf",
        cross_libc="libc6-armhf-cross",
        default_cpu="generic", base_features="+neon,+vfp4",
        known_cpus=("generic", "cortex-a7", "cortex-a8", "cortex-a9", "cortex-a15", "cortex-a17",
                    "cortex-a53"),
        vector_bits=_neon_vector_bits),
    # RV64GC is what every RISC-V Linux board runs (RVA20/RVA22: SiFive U74, StarFive JH7110, T-Head
    # C910); the V extension is optional before the RVA23 profile. glibc supports riscv64 since
    # 2.27. zig's baseline rv64 CPU is RV64GC.
    ArchFacts(
        "riscv64", "riscv64", "gnu", 64, "little", ("riscv64",),
        zig_arch="riscv64", glibc="2.27", zig_cpu=None,
        qemu="qemu-riscv64-static", sysroot="/usr/riscv64-linux-gnu",
        cross_libc="libc6-riscv64-cross",
        default_cpu="generic-rv64", base_features="+m,+a,+f,+d,+c",
        known_cpus=("generic-rv64", "rocket-rv64", "sifive-u74", "sifive-p550", "sifive-p670",
                    "sifive-x280", "spacemit-x60", "xiangshan-nanhu"),
        vector_bits=_riscv_vector_bits, qemu_cpu=_riscv_qemu_cpu, check=_riscv_check),
)}  # fmt: skip

Arch = str  # a key of ARCHES (x86_64, aarch64, armv7, riscv64)


def arch_facts(arch: str) -> ArchFacts:
    try:
        return ARCHES[arch]
    except KeyError:
        raise ValueError(f"unknown arch {arch!r}; known: {', '.join(ARCHES)}") from None


def arch_of_machine(machine: str) -> str | None:
    """The arch a host's `uname -m` (platform.machine(), or a triple's first part) names, or None."""
    m = machine.strip().lower()
    for facts in ARCHES.values():
        if m in facts.machine_names or m == facts.llvm_arch:
            return facts.name
    if m.startswith("armv7"):  # armv7a, armv7l, armv7hl
        return "armv7"
    return None


# --- the target ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What to generate code for: OS, arch and ABI (the triple), CPU and features, and the float
    vector width kernels use. Build one with `make_target`, which derives the rest from the facts.
    """

    name: str
    arch: Arch
    triple: str
    cpu: str
    features: str
    vector_bits: int  # float vector register width codegen should use: 512, 256, 128 (32: scalar)
    description: str
    os: str = "linux"
    abi: str = field(default="")  # the triple's environment: gnu, gnueabihf ("" = the arch's)

    def __post_init__(self) -> None:
        if not self.abi:
            object.__setattr__(self, "abi", self.triple.rsplit("-", 1)[-1])

    @property
    def arch_facts(self) -> ArchFacts:
        return ARCHES[self.arch]

    @property
    def os_facts(self) -> OsFacts:
        return OSES[self.os]

    @property
    def object_format(self) -> str:
        return self.os_facts.object_format

    @property
    def pointer_bits(self) -> int:
        return self.arch_facts.pointer_bits

    @property
    def endian(self) -> Endian:
        return self.arch_facts.endian

    @property
    def model_library(self) -> str:
        """The kernels' shared object in the artifact: compiled.so."""
        return self.os_facts.shared_library("compiled", lib_prefix=False)

    @property
    def runtime_library(self) -> str:
        """The runtime's shared library: libneort.so."""
        return self.os_facts.shared_library("neort")

    @property
    def runner(self) -> str:
        """The command-line runner: neo-run."""
        return self.os_facts.executable("neo-run")

    def lanes(self, element_bits: int = 32) -> int:
        """Vector lanes of an element type: 8 float32 lanes in 256 bits; 1 when scalar."""
        return max(1, self.vector_bits // element_bits)

    def meta(self) -> dict[str, Any]:
        """The target as recorded in an artifact's compiled.meta (docs/ARTIFACT_FORMAT.md)."""
        return {"name": self.name, "arch": self.arch, "triple": self.triple, "cpu": self.cpu,
                "features": self.features, "os": self.os, "abi": self.abi,
                "object_format": self.object_format, "vector_bits": self.vector_bits}

    def create_target_machine(
        self, opt: int = 3, reloc: str = "pic", codemodel: str = "default"
    ) -> Any:
        """An llvmlite TargetMachine for this target (position-independent for shared objects)."""
        llvm = llvm_binding()
        return llvm.Target.from_triple(self.triple).create_target_machine(
            cpu=self.cpu, features=self.features, opt=opt, reloc=reloc, codemodel=codemodel
        )


def make_target(name: str, arch: str, cpu: str | None = None, description: str = "",
                features: str | None = None, os: str = "linux") -> Target:
    """A Target from the facts: the arch's triple, default CPU and base features unless given, and
    the vector width its rule gives for that CPU and those features."""
    facts = arch_facts(arch)
    if os not in OSES:
        raise ValueError(f"unknown os {os!r}; known: {', '.join(OSES)}")
    cpu = facts.default_cpu if cpu is None else cpu
    feats = facts.base_features if features is None else features
    return Target(name, arch, facts.triple(os), cpu, feats, facts.vector_bits(cpu, feats),
                  description or f"{arch} ({cpu})", os=os, abi=facts.linux_abi)


@functools.cache
def llvm_binding() -> Any:
    """llvmlite.binding with every target initialized (imported on first use)."""
    import llvmlite.binding as llvm

    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    return llvm


__all__ = [
    "ARCHES",
    "OSES",
    "Arch",
    "ArchFacts",
    "OsFacts",
    "Target",
    "arch_facts",
    "arch_of_machine",
    "llvm_binding",
    "make_target",
    "riscv_isa",
]
