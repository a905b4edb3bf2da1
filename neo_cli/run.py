"""`neo run`: execute a compiled artifact on inputs from .npy files, natively or under qemu."""
from __future__ import annotations

import json
import subprocess
import tempfile
import time
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


def run_artifact(art: Path, feeds: dict[str, np.ndarray], threads: int | None = None,
                 repeat: int = 1) -> tuple[list[str], list[np.ndarray], dict]:
    meta = read_meta(art)
    arch = meta["target"]["arch"]
    from codegen.toolchain import host_arch

    host = host_arch()
    out_names = [o["name"] for o in meta["outputs"]]
    info: dict = {"arch": arch, "emulated": arch != host}
    if arch == host:
        from runtime import ArtifactError, Model

        try:
            m = Model(str(art), num_threads=threads)
        except ArtifactError as e:
            raise NeoRuntimeError(str(e)) from e
        try:
            times = []
            outs = None
            for _ in range(max(1, repeat)):
                t = time.perf_counter()
                outs = m.run(feeds)
                times.append(time.perf_counter() - t)
        except (ValueError, TypeError, RuntimeError) as e:
            raise NeoRuntimeError(f"{art}: {e}") from e
        finally:
            m.close()
        info["median_ms"] = float(np.median(times) * 1000)
        return out_names, outs, info
    from codegen.toolchain import qemu_command

    qemu = qemu_command(arch)
    if qemu is None:
        raise NeoRuntimeError(
            f"{art} is compiled for {arch}; this machine is {host} and has no qemu-{arch} emulator",
            hint="apt-get install qemu-user-static libc6-arm64-cross libc6-armhf-cross, or copy "
                 "the directory to the device and run its neo-run there")
    with tempfile.TemporaryDirectory(prefix="neo-run-") as tmp:
        cmd = qemu + [str(art / "neo-run"), str(art), "--outdir", tmp]
        if threads:
            cmd += ["--threads", str(threads)]
        for i, (name, a) in enumerate(feeds.items()):
            p = Path(tmp) / f"in{i}.npy"
            np.save(p, np.ascontiguousarray(a))
            cmd += ["--input", f"{name}={p}"]
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, check=False)
        info["median_ms"] = (time.perf_counter() - t) * 1000
        if r.returncode != 0:
            raise NeoRuntimeError(f"{art}: running under {qemu[0]} failed: "
                                  f"{(r.stderr or r.stdout).strip().splitlines()[-1:] or r.returncode}")
        outs = [np.load(Path(tmp) / f"output_{i}.npy") for i in range(len(out_names))]
    info["emulator"] = qemu[0]
    return out_names, outs, info
