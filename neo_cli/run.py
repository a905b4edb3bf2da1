"""`neo run`: execute a compiled artifact on inputs from .npy files through its neo-run, natively or
under qemu."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .errors import NeoRuntimeError, UsageError


def read_meta(art: Path) -> dict:
    if not art.is_dir():
        raise UsageError(f"{art}: not a directory; expected a compiled artifact from neo compile")
    p = art / "compiled.meta"
    if not p.exists():
        raise NeoRuntimeError(f"compiled artifact {art} is missing compiled.meta",
                              hint="recompile with neo compile")
    try:
        meta = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise NeoRuntimeError(f"{p}: corrupt metadata ({e.msg if hasattr(e, 'msg') else e})") from e
    missing = [k for k in ("target", "inputs", "outputs") if k not in meta]
    if missing or not isinstance(meta.get("target"), dict) or "arch" not in meta["target"]:
        raise NeoRuntimeError(f"{p}: corrupt metadata (missing {', '.join(missing) or 'target.arch'})",
                              hint="recompile with neo compile")
    return meta


def parse_inputs(specs: tuple[str, ...], meta: dict) -> dict[str, np.ndarray]:
    names = [i["name"] for i in meta["inputs"]]
    feeds: dict[str, np.ndarray] = {}
    for s in specs:
        if "=" in s and not Path(s).exists():
            name, path = s.split("=", 1)
        elif len(names) == 1:
            name, path = names[0], s
        else:
            raise UsageError(f"--input {s}: the model has {len(names)} inputs "
                             f"({', '.join(names)}); give NAME=FILE.npy for each")
        if name not in names:
            raise UsageError(f"--input {name}: the model has no input {name!r}; its inputs are "
                             f"{', '.join(names)}")
        try:
            arr = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise UsageError(f"--input {name}: file {path} does not exist") from None
        except (ValueError, OSError) as e:
            raise UsageError(f"--input {name}: {path} is not a readable .npy file ({e})") from None
        if not isinstance(arr, np.ndarray):
            raise UsageError(f"--input {name}: {path} must be a .npy array, not an .npz archive")
        feeds[name] = arr
    missing = [n for n in names if n not in feeds]
    if missing:
        raise UsageError(f"missing --input for {', '.join(missing)}; expected "
                         + ", ".join(f"{i['name']} {i['dtype']}{i['shape']}" for i in meta["inputs"]))
    for i in meta["inputs"]:
        a = feeds[i["name"]]
        if list(a.shape) != i["shape"] or a.dtype.name != i["dtype"]:
            raise UsageError(f"--input {i['name']}: got {a.dtype.name}{list(a.shape)}, the model "
                             f"expects {i['dtype']}{i['shape']}")
    return feeds


# neo-run's report of a fatal signal in a kernel (runtime/neo_run.c:on_fatal_signal)
_CRASH = re.compile(r"^neo-run: (kernel .* crashed with SIG[A-Z]+ in .*)$")


def _death_signal(returncode: int) -> str | None:
    """The name of the signal a child died of (negative return codes), else None."""
    if returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def run_artifact(art: Path, feeds: dict[str, np.ndarray], threads: int | None = None,
                 repeat: int = 1, check: bool = False, timeout: float | None = None
                 ) -> tuple[list[str], list[np.ndarray], dict]:
    """Run the artifact's own neo-run in a subprocess (under qemu for a foreign arch), so that a
    kernel that crashes is reported as one line naming it instead of taking the caller down.
    check: the runtime's checked mode (guard bytes around every buffer, verified per kernel).
    timeout: seconds before neo-run is killed (a kernel that never ends), None to wait."""
    meta = read_meta(art)
    arch = meta["target"]["arch"]
    from neo.codegen.toolchain import host_arch

    host = host_arch()
    out_names = [o["name"] for o in meta["outputs"]]
    info: dict = {"arch": arch, "emulated": arch != host}
    prefix: list[str] = []
    if arch != host:
        from neo.codegen.toolchain import missing_emulator_hint, qemu_command
        from neo.ir.target import ARCHES

        if arch not in ARCHES:
            raise NeoRuntimeError(f"{art} is compiled for {arch}, an arch this neo does not know "
                                  f"(known: {', '.join(ARCHES)})",
                                  hint="recompile it with this neo, or run it on the device")
        target = meta["target"]
        qemu = qemu_command(arch, target.get("cpu"), target.get("features") or "")
        if qemu is None:
            raise NeoRuntimeError(
                f"{art} is compiled for {arch}; this machine is {host} and has no "
                f"{ARCHES[arch].qemu} emulator",
                hint=f"{missing_emulator_hint(arch)}, or copy the directory to the device and "
                     "run its neo-run there")
        prefix = qemu
        info["emulator"] = qemu[0]
        info["emulator_command"] = qemu  # with qemu's -cpu where the target needs one
    for name in ("neo-run", "libneort.so"):
        if not (art / name).is_file():
            raise NeoRuntimeError(f"compiled artifact {art} is missing {name}",
                                  hint="recompile with neo compile")
    with tempfile.TemporaryDirectory(prefix="neo-run-") as tmp:
        cmd = [*prefix, str(art / "neo-run"), str(art), "--outdir", tmp,
               "--repeat", str(max(1, repeat))]
        if threads:
            cmd += ["--threads", str(threads)]
        if check:
            cmd.append("--check")
        for i, (name, a) in enumerate(feeds.items()):
            p = Path(tmp) / f"in{i}.npy"
            np.save(p, np.asarray(a, order="C"))  # ascontiguousarray would make a scalar 1-D
            cmd += ["--input", f"{name}={p}"]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, check=False,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            raise NeoRuntimeError(f"{art}: neo-run did not finish within {timeout:g} s") from None
        except OSError as e:
            raise NeoRuntimeError(f"cannot run {cmd[0]}: {e.strerror or e}") from None
        if r.returncode != 0:
            raise NeoRuntimeError(_failure(art, r, prefix))
        try:
            info["median_ms"] = float(json.loads(r.stdout.strip().splitlines()[-1])["median_ms"])
        except (ValueError, KeyError, IndexError):
            raise NeoRuntimeError(f"{art}: neo-run printed no timings: {r.stdout.strip()!r}") \
                from None
        outs = [np.load(Path(tmp) / f"output_{i}.npy") for i in range(len(out_names))]
    from neo.runtime.params import numpy_dtype

    # .npy has no bfloat16: neo-run writes its bits as uint16
    outs = [o.view(numpy_dtype(m["dtype"])) if o.dtype.name != m["dtype"] else o
            for o, m in zip(outs, meta["outputs"])]
    return out_names, outs, info


def _failure(art: Path, r: subprocess.CompletedProcess, prefix: list[str]) -> str:
    """One line for a failed neo-run: its crash report, its error, or the signal it died of."""
    lines = [ln.strip() for ln in (r.stderr or "").splitlines() if ln.strip()]
    for ln in reversed(lines):
        m = _CRASH.match(ln)
        if m:
            return m.group(1)
    sig = _death_signal(r.returncode)
    if sig:
        where = f" under {prefix[0]}" if prefix else ""
        return f"{art}: neo-run died of {sig}{where} (no kernel was identified)"
    ours = [ln[len("neo-run: "):] for ln in lines if ln.startswith("neo-run: ")]
    msg = ours[-1] if ours else (lines[-1] if lines else f"neo-run exited with {r.returncode}")
    # load errors already name the artifact; run errors get it in front
    return msg if str(art) in msg else f"{art}: {msg}"
