"""The compiler-side toolchain: zig as a cross C compiler/linker, the runtime build cache, and qemu.

Zig ships clang, lld and glibc stubs for every target, so one pip package links shared objects for
every arch of `neo.ir.target.ARCHES` without a system cross toolchain. Each arch's row names its zig
target and the oldest glibc it links against (2.17 where the arch allows: the armv7 and aarch64
images of the last decade run the results; riscv64 starts at 2.27), and the qemu-user binary and
sysroot that run it here.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from neo.ir.target import ARCHES, arch_of_machine

# Derived from the arch table (neo.ir.target.ARCHES); kept as names for callers.
ZIG_TARGETS: dict[str, str] = {name: facts.zig_target for name, facts in ARCHES.items()}
# Baseline CPUs for C code when the caller names none (None: zig's baseline for the arch).
DEFAULT_CPU: dict[str, str | None] = {name: facts.zig_cpu for name, facts in ARCHES.items()}
QEMU: dict[str, tuple[str, str]] = {name: (f.qemu, f.sysroot) for name, f in ARCHES.items()}
RUNTIME_DIR = Path(__file__).resolve().parent.parent / "runtime"
RUNTIME_SOURCES = ("neort.h", "neort.c", "neo_run.c")
RUNTIME_FILES = ("libneort.so", "neort.h", "neo-run")
# glibc 2.17 keeps these in separate libraries; newer ones merely accept the flags
SYSTEM_LIBS = ["-lpthread", "-ldl", "-lm"]
RUNTIME_CFLAGS = ["-std=c11", "-O2", "-g0", "-Wall", "-Wextra", "-fno-sanitize=all",
                  "-fvisibility=hidden"]
# zig's cached libc/compiler-rt objects carry debug info with absolute paths of the machine that built
# them; dropping debug sections at link time keeps our outputs byte-identical across machines
DETERMINISTIC_LDFLAGS = ["-Wl,--build-id=none", "-Wl,--strip-debug"]


class ToolchainError(RuntimeError):
    """A compiler or linker invocation failed, or no usable toolchain exists."""


def host_arch() -> str:
    """The host as one of the target arch names (a key of neo.ir.target.ARCHES)."""
    arch = arch_of_machine(platform.machine())
    if arch is None:
        raise ToolchainError(f"unsupported host architecture {platform.machine()!r}; "
                             f"known: {', '.join(ARCHES)}")
    return arch


def _check_arch(arch: str) -> None:
    if arch not in ZIG_TARGETS:
        raise ToolchainError(f"unknown arch {arch!r}; expected one of {', '.join(ZIG_TARGETS)}")


def _have_zig() -> bool:
    return importlib.util.find_spec("ziglang") is not None


@functools.cache
def zig_exe() -> list[str]:
    """The zig executable of the ziglang package, run directly: `python -m ziglang` would add a
    Python start-up (~0.1 s) to every compile and link."""
    spec = importlib.util.find_spec("ziglang")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        for name in ("zig", "zig.exe"):
            exe = Path(loc, name)
            if exe.is_file() and os.access(exe, os.X_OK):
                return [str(exe)]
    return [sys.executable, "-m", "ziglang"]


def zig_cc() -> list[str]:
    """The C compiler command: zig's clang, or the system `cc` (host builds only) without ziglang."""
    if _have_zig():
        return [*zig_exe(), "cc"]
    cc = shutil.which("cc")
    if cc is None:
        raise ToolchainError("no C compiler: install the 'ziglang' package (pip install ziglang)")
    return [cc]


@functools.cache
def compiler_version() -> str:
    """Version of the compiler behind zig_cc(), part of every cache key."""
    if _have_zig():
        cmd = [*zig_exe(), "version"]
    else:
        cmd = [*zig_cc(), "--version"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = (out.stdout or out.stderr).strip().splitlines()
    return ("zig " if _have_zig() else "cc ") + (lines[0] if lines else "unknown")


def target_flags(arch: str, cpu: str | None = None) -> list[str]:
    """-target/-mcpu flags for `arch`; the system-cc fallback can only build for the host."""
    _check_arch(arch)
    if not _have_zig():
        if arch != host_arch():
            raise ToolchainError(f"cross-compiling for {arch} needs the 'ziglang' package")
        return []
    flags = ["-target", ZIG_TARGETS[arch]]
    cpu = cpu or DEFAULT_CPU[arch]
    if cpu:
        flags.append(f"-mcpu={cpu}")
    return flags


def cache_dir() -> Path:
    """The user cache of neo: $XDG_CACHE_HOME/neo or ~/.cache/neo (created on demand)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    path = Path(base) / "neo"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-30:])
        raise ToolchainError(f"{what} failed (exit {proc.returncode}):\n{tail}")


def compile_c(source: str, arch: str, *, cpu: str | None = None,
              flags: list[str] | tuple[str, ...] = ()) -> bytes:
    """Compile C source text into a position-independent object file for `arch`; returns its bytes."""
    with tempfile.TemporaryDirectory(prefix="neo-cc-") as tmp:
        # fixed relative names keep the object independent of the temp directory
        Path(tmp, "kernel.c").write_text(source)
        cmd = [*zig_cc(), *target_flags(arch, cpu), "-c", "-fPIC", "-O2", "-g0", "-fno-sanitize=all",
               *flags, "kernel.c", "-o", "kernel.o"]
        _run(cmd, Path(tmp), f"compiling C for {arch}")
        return Path(tmp, "kernel.o").read_bytes()


def link_shared(objects: list[bytes], arch: str, out_path: Path, *, cpu: str | None = None) -> None:
    """Link object files (their bytes) into the shared object `out_path` for `arch`.

    The output appears atomically (temp file, then rename) and is byte-identical for identical inputs.
    """
    out_path = Path(out_path)
    flags = target_flags(arch, cpu)
    if not objects:
        raise ToolchainError("link_shared: no object files")
    # Linking costs ~0.1 s of process start-up per model; identical objects link identically.
    h = hashlib.sha256("\0".join([arch, *flags, *DETERMINISTIC_LDFLAGS, _cached_version()]).encode())
    for obj in objects:
        h.update(hashlib.sha256(obj).digest())
    cached = cache_dir() / "linked" / f"{h.hexdigest()}.so"
    if cached.is_file():
        _install(cached, out_path)
        return
    with tempfile.TemporaryDirectory(prefix="neo-link-") as tmp:
        names = []
        for i, obj in enumerate(objects):
            name = f"obj{i}.o"
            Path(tmp, name).write_bytes(obj)
            names.append(name)
        cmd = [*zig_cc(), *flags, "-shared", "-fPIC", *DETERMINISTIC_LDFLAGS, *names, "-lm",
               "-o", "out.so"]
        _run(cmd, Path(tmp), f"linking {out_path.name} for {arch}")
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            _install(Path(tmp, "out.so"), cached)
        except OSError:
            pass  # an unwritable cache only costs time
        _install(Path(tmp, "out.so"), out_path)


@functools.lru_cache(maxsize=1)
def _cached_version() -> str:
    return compiler_version()


def _install(src: Path, dst: Path, mode: int | None = None) -> None:
    """Copy src to dst through a temp file in dst's directory, so dst is never half-written."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, mode if mode is not None else (src.stat().st_mode & 0o777))
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _runtime_key(arch: str, flags: list[str]) -> str:
    h = hashlib.sha256()
    for name in RUNTIME_SOURCES:
        h.update(name.encode() + b"\0" + (RUNTIME_DIR / name).read_bytes() + b"\0")
    h.update("\0".join([compiler_version(), arch, *flags, *SYSTEM_LIBS]).encode())
    return h.hexdigest()


def _build_runtime_into(arch: str, flags: list[str], build: Path) -> None:
    for name in RUNTIME_SOURCES:
        shutil.copyfile(RUNTIME_DIR / name, build / name)
    cc = [*zig_cc(), *flags]
    # relative source names and no -g keep the binaries free of build paths (deterministic)
    _run([*cc, "-shared", "-fPIC", *DETERMINISTIC_LDFLAGS, "-Wl,-soname,libneort.so",
          "neort.c", "-o", "libneort.so", *SYSTEM_LIBS], build, f"building libneort.so for {arch}")
    _run([*cc, *DETERMINISTIC_LDFLAGS, "neo_run.c", "-o", "neo-run", "-L.", "-lneort",
          "-Wl,-rpath,$ORIGIN", *SYSTEM_LIBS], build, f"building neo-run for {arch}")


def build_runtime(arch: str, out_dir: Path) -> None:
    """Place libneort.so, neort.h and neo-run for `arch` into out_dir, building them on a cache miss.

    Builds are cached in cache_dir()/runtime/<key>, key = sha256(C sources, compiler version, arch,
    flags), so only the first call per arch and runtime version pays for the compiler.
    """
    # The runtime's arch (the one it checks artifacts against) comes from the build, not from an
    # arch list in its sources.
    flags = [*target_flags(arch), *RUNTIME_CFLAGS, f'-DNEO_ARCH="{arch}"']
    key = _runtime_key(arch, flags)
    root = cache_dir() / "runtime"
    cached = root / f"{arch}-{key[:32]}"
    if not all((cached / f).is_file() for f in RUNTIME_FILES):
        root.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(prefix=f".{arch}-build-", dir=root))
        try:
            _build_runtime_into(arch, flags, build)
            for name in RUNTIME_SOURCES:
                if name not in RUNTIME_FILES:
                    (build / name).unlink()
            try:
                os.rename(build, cached)  # atomic publish; a concurrent builder may win the race
            except OSError:
                if not all((cached / f).is_file() for f in RUNTIME_FILES):
                    shutil.rmtree(cached, ignore_errors=True)
                    os.rename(build, cached)
        finally:
            shutil.rmtree(build, ignore_errors=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _install(cached / "libneort.so", out_dir / "libneort.so", 0o755)
    _install(cached / "neort.h", out_dir / "neort.h", 0o644)
    _install(cached / "neo-run", out_dir / "neo-run", 0o755)


def qemu_command(arch: str, cpu: str | None = None, features: str = "") -> list[str] | None:
    """The command prefix that runs an `arch` Linux binary here.

    [] for the host's own arch (run it directly), the qemu-user command for another arch when the
    emulator is on PATH and the target's sysroot exists, None when `arch` cannot run on this host.
    cpu and features (the artifact's target) pick qemu's CPU where that matters: RISC-V vectors are
    on, at the length the code assumes, only for code built with them; without a cpu, the most
    capable CPU neo builds for.
    """
    _check_arch(arch)
    if arch == host_arch():
        return []
    facts = ARCHES[arch]
    if shutil.which(facts.qemu) is None or not Path(facts.sysroot).is_dir():
        return None
    return facts.qemu_command(cpu, features)


def missing_emulator_hint(arch: str) -> str:
    """What to install to run `arch` binaries here (Debian/Ubuntu)."""
    facts = ARCHES[arch]
    return f"apt-get install qemu-user-static {facts.cross_libc} (for {facts.qemu} and {facts.sysroot})"
