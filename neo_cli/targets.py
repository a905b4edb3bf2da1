"""Compilation targets as users name them: Neo's devices, generic architectures, this machine,
TargetPlatform and CompilerOptions.

The `Target` model and the facts of every architecture and OS live in `neo.ir.target` (the bottom
layer, so codegen can type its parameters with it); this module is the user-facing side. It emits
Linux CPU code for x86_64, aarch64, hard-float ARMv7 and riscv64. Neo's devices map to the CPU of the
board or instance; devices whose point is a GPU, an AI accelerator, Windows or Core ML are refused
with a message saying what to use instead.

`resolve_target` turns the CLI's `--target` / `--target-platform` / `--compiler-options` into a
`Target` and a `CompilerOptions`. CPU and feature names are checked against the LLVM that llvmlite
ships, so a typo is an error here rather than a silent "ignoring processor" warning later.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import sys
import tempfile
import threading
from dataclasses import dataclass, field, replace
from typing import Any

from neo.errors import UsageError
from neo.ir.target import ARCHES, OSES, Arch, Target, arch_of_machine, llvm_binding, make_target

TRIPLES: dict[str, str] = {name: facts.triple() for name, facts in ARCHES.items()}
# Features every target of the arch gets unless the user replaces them with `mattr`.
BASE_FEATURES: dict[str, str] = {name: facts.base_features for name, facts in ARCHES.items()}
# A few CPU names per arch for error messages (each is checked against LLVM by the tests).
KNOWN_CPUS: dict[str, tuple[str, ...]] = {name: f.known_cpus for name, f in ARCHES.items()}

# Neo's own spelling of ARM FPU features (its docs say "+vfpv4") differs from LLVM's.
_FEATURE_ALIASES = {
    "vfpv2": "vfp2",
    "vfpv3": "vfp3",
    "vfpv4": "vfp4",
    "vfpv3-d16": "vfp3d16",
    "vfpv4-d16": "vfp4d16",
}

_USE_INSTEAD = (
    "this compiler emits Linux CPU code; use --target ml_c5 / x86_64 / host, "
    "or for the Jetson's CPU use jetson_nano"
)


def _supported_platforms() -> str:
    oses = [o.name.capitalize() for o in OSES.values() if o.supported]
    return f"{' and '.join(oses)} on {', '.join(ARCHES)}"


def _unsupported_os(os_name: str) -> str:
    return (f"{os_name} targets are not supported yet (the runtime is ported to "
            f"{_supported_platforms()} only)")


UNSUPPORTED_TARGETS: dict[str, str] = {
    "ml_p2": "ml_p2 is an NVIDIA K80 GPU instance",
    "ml_p3": "ml_p3 is an NVIDIA V100 GPU instance",
    "ml_g4dn": "ml_g4dn is an NVIDIA T4 GPU instance",
    "ml_inf1": "ml_inf1 targets AWS Inferentia chips",
    "ml_inf2": "ml_inf2 targets AWS Inferentia2 chips",
    "ml_trn1": "ml_trn1 targets AWS Trainium chips",
    "ml_eia2": "ml_eia2 is an Elastic Inference GPU accelerator",
    "x86_win32": f"x86_win32 is 32-bit Windows: {_unsupported_os('Windows')}",
    "x86_win64": f"x86_win64 is Windows on x86-64: {_unsupported_os('Windows')}",
    "coreml": "coreml produces an Apple Core ML model",
}


@dataclass
class CompilerOptions:
    """Neo's `CompilerOptions` JSON, parsed. `mcpu`/`mattr` are already applied to the Target."""

    mcpu: str | None = None
    mattr: tuple[str, ...] | None = None
    # PyTorch input dtype: one for all inputs, or per input name.
    dtype: str | dict[str, str] | None = None
    notes: list[str] = field(default_factory=list)


KNOWN_OPTIONS = ("mcpu", "mattr", "dtype", "ANDROID_PLATFORM")
_GPU_OPTIONS = ("gpu-code", "trt-ver", "cuda-ver")
DTYPES = ("float32", "float16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")


# --- LLVM -------------------------------------------------------------------------------------


_llvm = llvm_binding

_stderr_lock = threading.Lock()


def llvm_diagnostics(triple: str, cpu: str, features: str) -> list[str]:
    """What LLVM prints when creating a TargetMachine for these settings ([] when it accepts them).

    LLVM reports an unknown CPU or feature only as a warning on the process's stderr and then
    ignores it, so we capture file descriptor 2 around the call to turn that into an error.
    """
    llvm = _llvm()
    with _stderr_lock:
        sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no stderr to capture (closed by the caller): nothing can be checked
            return []
        try:
            with tempfile.TemporaryFile() as sink:
                os.dup2(sink.fileno(), 2)
                try:
                    llvm.Target.from_triple(triple).create_target_machine(
                        cpu=cpu, features=features
                    )
                finally:
                    os.dup2(saved, 2)
                sink.seek(0)
                text = sink.read().decode("utf-8", "replace")
        finally:
            os.close(saved)
    return list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))


def _cpu_known(arch: str, cpu: str) -> bool:
    return not any("processor" in line for line in llvm_diagnostics(TRIPLES[arch], cpu, ""))


# --- the target table -------------------------------------------------------------------------


def _make(name: str, arch: Arch, cpu: str, description: str, features: str | None = None) -> Target:
    return make_target(name, arch, cpu, description, features)


_GENERIC: tuple[Target, ...] = (
    _make("x86_64", "x86_64", "x86-64-v3",
          "portable x86-64 with AVX2 + FMA (x86-64-v3: Intel Haswell / AMD Zen and newer)"),
    _make("arm64", "aarch64", "generic", "portable 64-bit ARMv8-A with NEON (alias: aarch64)"),
    _make("armv7", "armv7", "generic", "portable 32-bit ARMv7-A hard-float with NEON and VFPv4"),
    # RVV is optional before the RVA23 profile, so the portable riscv64 target is scalar RV64GC;
    # rv64gcv is for boards with RVV 1.0 (SpacemiT K1, Sophgo SG2044, Canaan K230): 128-bit
    # vectors, the VLEN the V extension guarantees, so its code runs on any VLEN (ir/target.py).
    _make("riscv64", "riscv64", "generic-rv64",
          "portable 64-bit RISC-V RV64GC, scalar floats (alias: rv64gc)"),
    _make("rv64gcv", "riscv64", "generic-rv64",
          "64-bit RISC-V RV64GC + vector extension 1.0 (RVV), 128-bit vectors (VLEN >= 128)",
          "+m,+a,+f,+d,+c,+v"),
)  # fmt: skip

_DEVICES: tuple[Target, ...] = (
    _make("lambda", "x86_64", "x86-64-v3", "AWS Lambda x86_64 (AVX2)"),
    _make("ml_m4", "x86_64", "broadwell", "SageMaker ml.m4 (Intel Broadwell, AVX2)"),
    _make("ml_m5", "x86_64", "skylake-avx512", "SageMaker ml.m5 (Intel Skylake-SP, AVX-512)"),
    _make("ml_m6g", "aarch64", "neoverse-n1", "SageMaker ml.m6g (AWS Graviton2, Neoverse-N1)"),
    _make("ml_c4", "x86_64", "haswell", "SageMaker ml.c4 (Intel Haswell, AVX2)"),
    _make("ml_c5", "x86_64", "skylake-avx512", "SageMaker ml.c5 (Intel Skylake-SP, AVX-512)"),
    _make("ml_c6g", "aarch64", "neoverse-n1", "SageMaker ml.c6g (AWS Graviton2, Neoverse-N1)"),
    _make("jetson_tx1", "aarch64", "cortex-a57", "NVIDIA Jetson TX1 CPU (Cortex-A57; GPU unused)"),
    _make("jetson_tx2", "aarch64", "cortex-a57", "NVIDIA Jetson TX2 CPU (Cortex-A57; GPU unused)"),
    _make("jetson_nano", "aarch64", "cortex-a57",
          "NVIDIA Jetson Nano CPU (Cortex-A57; GPU unused)"),
    _make("jetson_xavier", "aarch64", "carmel",
          "NVIDIA Jetson Xavier CPU (Carmel; GPU unused)"),
    _make("rasp3b", "armv7", "cortex-a53",
          "Raspberry Pi 3 Model B (Cortex-A53 running 32-bit ARMv7 hard-float)"),
    _make("rasp4b", "aarch64", "cortex-a72", "Raspberry Pi 4 Model B (Cortex-A72, 64-bit OS)"),
    _make("imx8qm", "aarch64", "cortex-a72", "NXP i.MX 8QuadMax (Cortex-A72 + A53)"),
    _make("deeplens", "x86_64", "goldmont", "AWS DeepLens (Intel Atom E3930, Goldmont, SSE4.2)"),
    _make("rk3399", "aarch64", "cortex-a72", "Rockchip RK3399 (Cortex-A72 + A53)"),
    _make("rk3288", "armv7", "cortex-a17", "Rockchip RK3288 (Cortex-A17, 32-bit ARMv7)"),
    _make("aisage", "aarch64", "cortex-a53", "aiSage (Cortex-A53)"),
    _make("sbe_c", "x86_64", "x86-64-v3", "AWS Snowball Edge Compute (x86-64, AVX2)"),
    _make("qcs605", "aarch64", "cortex-a75", "Qualcomm QCS605 (Kryo 300, Cortex-A75 class)"),
    _make("qcs603", "aarch64", "cortex-a75", "Qualcomm QCS603 (Kryo 300, Cortex-A75 class)"),
    _make("sitara_am57x", "armv7", "cortex-a15", "TI Sitara AM57x (Cortex-A15, 32-bit ARMv7)"),
    _make("amba_cv2", "aarch64", "cortex-a53", "Ambarella CV2 (Cortex-A53)"),
    _make("amba_cv22", "aarch64", "cortex-a53", "Ambarella CV22 (Cortex-A53)"),
    _make("amba_cv25", "aarch64", "cortex-a53", "Ambarella CV25 (Cortex-A53)"),
    _make("jacinto_tda4vm", "aarch64", "cortex-a72", "TI Jacinto TDA4VM (Cortex-A72)"),
    _make("imx8mplus", "aarch64", "cortex-a53", "NXP i.MX 8M Plus (Cortex-A53)"),
)  # fmt: skip

_TARGETS: dict[str, Target] = {t.name: t for t in _GENERIC + _DEVICES}
TARGET_ALIASES: dict[str, str] = {"aarch64": "arm64", "rv64gc": "riscv64"}


@functools.cache
def host_target() -> Target:
    """This machine's CPU, as LLVM detects it (name and the full feature string)."""
    llvm = _llvm()
    machine = llvm.get_process_triple().split("-", 1)[0].lower()
    arch = arch_of_machine(machine)
    if arch is None:
        raise UsageError(
            f"--target host: this machine is {machine}, which this compiler cannot generate code "
            f"for; supported: {', '.join(ARCHES)}"
        )
    cpu = llvm.get_host_cpu_name() or "generic"
    try:
        features = llvm.get_host_cpu_features().flatten()
    except RuntimeError:  # LLVM cannot read the features on some hosts; the CPU name still works
        features = ""
    # the description says when to pick it: code for this CPU's full vector width (AVX-512 where
    # it has it), which the portable x86_64 target (AVX2) leaves unused
    return _make("host", arch, cpu, f"this machine ({cpu}, {arch}): the fastest code for the "
                 "machine you compile on; portable targets run anywhere", features)


def all_targets() -> list[Target]:
    """Every supported target, generic ones and this machine first, then Neo's devices."""
    return [*_GENERIC, host_target(), *_DEVICES]


def _normalize(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def get_target(name: str) -> Target:
    """The target called `name` (any case; `aarch64` is `arm64`), or a UsageError saying why not."""
    key = _normalize(name)
    key = TARGET_ALIASES.get(key, key)
    if key == "host":
        return host_target()
    if key in _TARGETS:
        return _TARGETS[key]
    if key in UNSUPPORTED_TARGETS:
        raise UsageError(
            f"--target {key} is not supported: {UNSUPPORTED_TARGETS[key]}; {_USE_INSTEAD}"
        )
    names = [*_TARGETS, "host", *TARGET_ALIASES]
    close = difflib.get_close_matches(key, names, n=1)
    guess = f"did you mean {close[0]}? " if close else ""
    raise UsageError(
        f"unknown --target {name!r}; {guess}valid targets: {', '.join(sorted(names))} "
        f"(or use --target-platform os=LINUX,arch={'|'.join(_PLATFORM_ARCHES)})"
    )


# --- TargetPlatform ---------------------------------------------------------------------------

# Neo's TargetPlatform arches, and RISCV64 (not one of Neo's) for the riscv64 target.
_PLATFORM_ARCHES = {"X86_64": "x86_64", "ARM64": "arm64", "ARM_EABIHF": "armv7",
                    "RISCV64": "riscv64"}
_OSES = ("LINUX", "ANDROID")
_ARCHES = ("X86_64", "X86", "ARM64", "ARM_EABI", "ARM_EABIHF", "RISCV64")
_ACCELERATORS = ("INTEL_GRAPHICS", "MALI", "NVIDIA", "NNA")


def _parse_platform_fields(text: str) -> dict[str, str]:
    stripped = text.strip()
    if stripped.startswith("{"):
        # Neo's API writes TargetPlatform as {"Os": ..., "Arch": ...}; accept that too.
        try:
            raw = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--target-platform is not valid JSON ({exc.msg})") from None
        if not isinstance(raw, dict):
            raise UsageError('--target-platform JSON must be an object like {"Os":"LINUX"}')
        pairs = [(str(k), str(v)) for k, v in raw.items()]
    else:
        pairs = []
        for part in filter(None, (p.strip() for p in stripped.split(","))):
            key, sep, value = part.partition("=")
            if not sep or not value.strip():
                raise UsageError(
                    f"--target-platform: {part!r} is not key=value; e.g. os=LINUX,arch=ARM64"
                )
            pairs.append((key, value))
    fields: dict[str, str] = {}
    for key, value in pairs:
        k = key.strip().lower()
        if k not in ("os", "arch", "accelerator"):
            raise UsageError(
                f"--target-platform: unknown key {key.strip()!r}; keys are os, arch, accelerator"
            )
        fields[k] = value.strip().upper()
    return fields


def parse_target_platform(text: str) -> Target:
    """The generic target for Neo's TargetPlatform, e.g. `os=LINUX,arch=ARM64`."""
    fields = _parse_platform_fields(text)
    for key in ("os", "arch"):
        if key not in fields:
            raise UsageError(f"--target-platform needs {key}=...; e.g. os=LINUX,arch=ARM64")
    os_name, arch, accel = fields["os"], fields["arch"], fields.get("accelerator")
    if os_name not in _OSES:
        raise UsageError(f"--target-platform: unknown os {os_name}; valid: {', '.join(_OSES)}")
    if arch not in _ARCHES:
        raise UsageError(f"--target-platform: unknown arch {arch}; valid: {', '.join(_ARCHES)}")
    if accel is not None:
        known = accel in _ACCELERATORS
        listed = "" if known else f" (Neo's accelerators: {', '.join(_ACCELERATORS)})"
        raise UsageError(
            f"--target-platform accelerator={accel} is not supported{listed}: this compiler emits "
            "CPU code; drop accelerator= to compile for the board's CPU"
        )
    if os_name == "ANDROID":
        raise UsageError(
            "--target-platform os=ANDROID is not supported yet: the runtime is built for Linux "
            "with glibc (supported: os=LINUX with arch=" + ", ".join(_PLATFORM_ARCHES)
            + "); use os=LINUX for Linux boards"
        )
    if arch == "X86":
        raise UsageError(
            "--target-platform arch=X86 (32-bit x86) is not supported; use arch=X86_64"
        )
    if arch == "ARM_EABI":
        raise UsageError(
            "--target-platform arch=ARM_EABI (soft-float ARM) is not supported; use "
            "arch=ARM_EABIHF for 32-bit ARMv7 boards with an FPU and NEON, or arch=ARM64"
        )
    base = _TARGETS[_PLATFORM_ARCHES[arch]]
    return replace(base, description=f"TargetPlatform {os_name}/{arch}: {base.description}")


# --- CompilerOptions --------------------------------------------------------------------------


def _parse_dtype(value: Any) -> str | dict[str, str]:
    def check(dtype: Any, where: str) -> str:
        if not isinstance(dtype, str) or dtype.strip().lower() not in DTYPES:
            raise UsageError(
                f"--compiler-options dtype{where} must be one of {', '.join(DTYPES)}; "
                f"got {json.dumps(dtype)}"
            )
        return dtype.strip().lower()

    if isinstance(value, dict):
        if not value:
            raise UsageError('--compiler-options dtype is an empty object; e.g. {"input0":"int64"}')
        return {str(name): check(dtype, f"[{name!r}]") for name, dtype in value.items()}
    return check(value, "")


def _parse_mattr(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [item.strip() for item in value.split(",")]
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        items = [item.strip() for item in value]
    else:
        raise UsageError(
            '--compiler-options mattr must be a list like ["+neon","+vfp4"] or a string like '
            f'"+neon,+vfp4"; got {json.dumps(value)}'
        )
    items = [item for item in items if item]
    bad = [item for item in items if item[0] not in "+-" or len(item) < 2]
    if bad:
        raise UsageError(
            f"--compiler-options mattr entries start with + or -, e.g. +neon; got {', '.join(bad)}"
        )
    return tuple(items)


def parse_compiler_options(text: str | None) -> CompilerOptions:
    """Neo's CompilerOptions JSON object: mcpu, mattr, dtype; ANDROID_PLATFORM is ignored."""
    options = CompilerOptions()
    if text is None or not text.strip():
        return options
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"--compiler-options is not valid JSON ({exc.msg} at column {exc.colno}); "
            'e.g. {"mcpu":"cortex-a72","mattr":["+neon"]}'
        ) from None
    if not isinstance(raw, dict):
        raise UsageError('--compiler-options must be a JSON object, e.g. {"mcpu":"skylake-avx512"}')
    by_lower = {k.lower(): k for k in KNOWN_OPTIONS}
    for key, value in raw.items():
        canonical = by_lower.get(key.lower())
        if canonical == "mcpu":
            if not isinstance(value, str) or not value.strip():
                raise UsageError(
                    f"--compiler-options mcpu must be a CPU name; got {json.dumps(value)}"
                )
            options.mcpu = value.strip()
        elif canonical == "mattr":
            options.mattr = _parse_mattr(value)
        elif canonical == "dtype":
            options.dtype = _parse_dtype(value)
        elif canonical == "ANDROID_PLATFORM":
            options.notes.append(
                "--compiler-options ANDROID_PLATFORM ignored: Android is not a target"
            )
        elif key.lower() in _GPU_OPTIONS:
            raise UsageError(
                f"--compiler-options {key} is an NVIDIA GPU option; this compiler emits CPU code "
                f"(known options: {', '.join(KNOWN_OPTIONS)})"
            )
        else:
            raise UsageError(
                f"--compiler-options: unknown option {key!r}; "
                f"known options: {', '.join(KNOWN_OPTIONS)}"
            )
    return options


def _check_cpu(target: Target, cpu: str) -> None:
    if cpu.lower() == "native":
        raise UsageError("--compiler-options mcpu native is not a CPU name; use --target host")
    if _cpu_known(target.arch, cpu):
        return
    other = [arch for arch in TRIPLES if arch != target.arch and _cpu_known(arch, cpu)]
    if other:
        raise UsageError(
            f"--compiler-options mcpu {cpu!r} is an {other[0]} CPU but target {target.name} is "
            f"{target.arch}; some {target.arch} CPUs: {', '.join(KNOWN_CPUS[target.arch])}"
        )
    close = difflib.get_close_matches(cpu, KNOWN_CPUS[target.arch], n=1)
    guess = f"did you mean {close[0]}? " if close else ""
    raise UsageError(
        f"--compiler-options mcpu {cpu!r} is not a CPU LLVM knows for {target.arch}; {guess}"
        f"some valid ones: {', '.join(KNOWN_CPUS[target.arch])}"
    )


def _check_features(target: Target, cpu: str, features: str) -> None:
    unknown = [
        line.split("'")[1] if line.count("'") >= 2 else line
        for line in llvm_diagnostics(target.triple, cpu, features)
        if "feature" in line
    ]
    if unknown:
        raise UsageError(
            f"--compiler-options mattr {', '.join(unknown)}: not a feature LLVM knows for "
            f"{target.arch} (e.g. {BASE_FEATURES[target.arch] or '+avx2,+fma'})"
        )


def apply_compiler_options(target: Target, options: CompilerOptions) -> Target:
    """`target` with `mcpu` replacing its CPU and `mattr` replacing its features, both checked."""
    if options.mcpu is None and options.mattr is None:
        return target
    cpu = target.cpu
    features = target.features
    if options.mcpu is not None:
        _check_cpu(target, options.mcpu)
        cpu = options.mcpu
        # A named CPU brings its own features; the old target's (or the host's) would contradict it.
        generic = cpu in ("generic", target.arch_facts.default_cpu)
        features = BASE_FEATURES[target.arch] if generic else ""
    if options.mattr is not None:
        mattr = []
        for item in options.mattr:
            name = _FEATURE_ALIASES.get(item[1:].lower(), item[1:])
            if name != item[1:]:
                options.notes.append(f"mattr {item} is spelled {item[0]}{name} in LLVM; using that")
            mattr.append(item[0] + name)
        features = ",".join(mattr)
        _check_features(target, cpu, features)
    problem = target.arch_facts.check(cpu, features)
    if problem:
        raise UsageError(f"--compiler-options for target {target.name}: {problem}")
    changed = ", ".join(
        part
        for part in (
            f"mcpu={options.mcpu}" if options.mcpu else "",
            f"mattr={features}" if options.mattr is not None else "",
        )
        if part
    )
    return replace(
        target,
        cpu=cpu,
        features=features,
        vector_bits=target.arch_facts.vector_bits(cpu, features),
        description=f"{target.description}; with {changed}",
    )


def resolve_target(
    target: str | None, target_platform: str | None = None, compiler_options: str | None = None
) -> tuple[Target, CompilerOptions]:
    """The Target for exactly one of --target / --target-platform, with --compiler-options."""
    if target and target_platform:
        raise UsageError(
            "give either --target or --target-platform, not both (Neo's TargetDevice XOR "
            "TargetPlatform)"
        )
    if not target and not target_platform:
        raise UsageError(
            "--target is required, e.g. --target host, x86_64, arm64, rasp4b, ml_c5 "
            "(see `neo targets`), or --target-platform os=LINUX,arch=ARM64"
        )
    base = get_target(target) if target else parse_target_platform(target_platform or "")
    options = parse_compiler_options(compiler_options)
    return apply_compiler_options(base, options), options


__all__ = [
    "ARCHES",
    "BASE_FEATURES",
    "DTYPES",
    "KNOWN_CPUS",
    "KNOWN_OPTIONS",
    "TARGET_ALIASES",
    "TRIPLES",
    "UNSUPPORTED_TARGETS",
    "CompilerOptions",
    "Target",
    "all_targets",
    "apply_compiler_options",
    "get_target",
    "host_target",
    "llvm_diagnostics",
    "parse_compiler_options",
    "parse_target_platform",
    "resolve_target",
]
