"""Compiling one job, the same way on every backend: `compile_model`, then Neo's packaging.

The artifact is the directory `neo compile` writes, packed as a `.tar.gz` with the files at its
root (as Neo's model-<device>.tar.gz), deterministically: sorted names, zero times and owners, no
gzip timestamp, so the same job gives the same bytes (and ModelDigests) on any machine with the
same neo. `dask_compile_task` is the function a Dask worker runs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from neo.errors import (
    CompileError,
    ModelLoadError,
    NeoError,
    NeoRuntimeError,
    NotSupportedError,
    UnsupportedModelError,
    UsageError,
    exit_code_for,
)

from . import locations

Log = Callable[[str], None]


def pack_artifact(directory: Path) -> bytes:
    """The files of an artifact directory as a reproducible .tar.gz."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in directory.iterdir() if p.is_file()):
            info = tarfile.TarInfo(path.name)
            info.size = path.stat().st_size
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(path, "rb") as fh:
                tar.addfile(info, fh)
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def artifact_digest(data: bytes) -> str:
    """ModelDigests.ArtifactDigest: BLAKE2b-512 of the .tar.gz, in hex (what `b2sum` prints)."""
    return hashlib.blake2b(data).hexdigest()


def failure_reason(exc: BaseException) -> tuple[str, int]:
    """FailureReason (Neo's error kind, then the message) and neo's exit code for the error."""
    code = exit_code_for(exc)
    if isinstance(exc, NeoError):
        msg = exc.message + (f"; hint: {exc.hint}" if exc.hint else "")
    else:
        msg = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    if isinstance(exc, UnsupportedModelError):
        head = exc.message.split(" are not implemented", 1)[0]
        kind = "OperatorAttributeNotImplemented" if "attribute" in head else \
            "OperatorNotImplemented"
        return f"ClientError: {kind}: {msg}", code
    if isinstance(exc, (ModelLoadError, UsageError)):
        return f"ClientError: InputConfiguration: {msg}", code
    if isinstance(exc, NotSupportedError):
        return f"ClientError: NotSupported: {msg}", code
    if isinstance(exc, (CompileError, NeoRuntimeError)):
        return f"CompilationError: {msg}", code
    return (f"InternalError: {msg} (a bug in neo; the traceback is in the job's log)", code)


def derived_input_config(framework: str, inputs: list[dict[str, Any]]) -> str:
    """DerivedDataInputConfig: the input shapes compiled, written as DataInputConfig is (NCHW
    for a Keras image input although the model is NHWC)."""
    from neo.frameworks import parse_framework
    from neo.shapes import _model_to_user

    fw = parse_framework(framework)
    shapes = {i["name"]: list(_model_to_user(fw, tuple(i["shape"]))) for i in inputs}
    return json.dumps(shapes, separators=(",", ":"))


def run_compile(request: dict[str, Any], execution: dict[str, Any], model: Path, work: Path,
                log: Log) -> dict[str, Any]:
    """Compile the job's model (already local at `model`) into work/<ArtifactName>.

    Returns {"ok": True, "artifact_file", "digest", "derived", "summary"} or
    {"ok": False, "reason", "exit_code"}; errors never escape.
    """
    from neo.compiler import CompileOptions, compile_model

    inp, out = request["InputConfig"], request["OutputConfig"]
    platform = out.get("TargetPlatform")
    opts = CompileOptions(
        framework=inp["Framework"], shape=inp.get("DataInputConfig"),
        target=out.get("TargetDevice"),
        target_platform=json.dumps(platform) if platform else None,
        compiler_options=out.get("CompilerOptions"), output=work / "artifact",
        model=str(model), use_cache=bool(execution.get("UseCache", True)), workdir=model.parent)
    t0 = time.perf_counter()
    try:
        res = compile_model(opts, log)
        data = pack_artifact(work / "artifact")
    except BaseException as e:  # every failure becomes the job's FailureReason
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        if not isinstance(e, NeoError):
            log(traceback.format_exc().rstrip())
        reason, code = failure_reason(e)
        log(f"failed: {reason}")
        return {"ok": False, "reason": reason, "exit_code": code}
    artifact = work / execution["ArtifactName"]
    artifact.write_bytes(data)
    summary = {k: res.get(k) for k in ("kernels", "params_nbytes", "workspace_nbytes",
                                       "artifact_cached", "timings")}
    log(f"compiled {model.name} for {res['target']['name']} in "
        f"{time.perf_counter() - t0:.2f}s: {res.get('kernels')} kernels, {len(data)} bytes packed")
    return {"ok": True, "artifact_file": str(artifact), "digest": artifact_digest(data),
            "derived": derived_input_config(inp["Framework"], res["inputs"]), "summary": summary}


# -- the Dask task -------------------------------------------------------------------------------

# compile_model is not made for two compiles at once in one process (its caches write temporary
# files named by pid), so a worker with several threads runs one compile at a time; start
# workers with --nthreads 1 and scale with --nworkers.
_COMPILE_LOCK = threading.Lock()


def dask_compile_task(request: dict[str, Any], execution: dict[str, Any], payload: dict[str, Any],
                      topic: str) -> dict[str, Any]:
    """Run on a Dask worker: compile and return the packed artifact's bytes.

    Progress goes to the scheduler's event log under `topic` (a "start" event per attempt, then
    the compile log lines), which the supervisor on the submitting side follows.
    """
    import tempfile

    from distributed import get_worker

    from neo.artifact_cache import source_digest

    worker = get_worker()

    def event(kind: str, **fields: Any) -> None:
        worker.log_event(topic, {"event": kind, "worker": worker.address, "pid": os.getpid(),
                                 **fields})

    with _COMPILE_LOCK:
        event("start")
        with tempfile.TemporaryDirectory(prefix="neo-job-") as tmp:
            work = Path(tmp)
            try:
                model = locations.materialize(payload, work / "model")
            except (OSError, NeoError) as e:
                reason, code = failure_reason(
                    e if isinstance(e, NeoError) else ModelLoadError(f"cannot read the model: {e}"))
                return {"ok": False, "reason": reason, "exit_code": code,
                        "worker": worker.address}
            res = run_compile(request, execution, model, work,
                              lambda line: event("log", line=line))
            if res["ok"]:
                res["artifact_bytes"] = Path(res.pop("artifact_file")).read_bytes()
    res["worker"] = worker.address
    res["source_digest"] = source_digest()
    return res


__all__ = [
    "artifact_digest",
    "dask_compile_task",
    "derived_input_config",
    "failure_reason",
    "pack_artifact",
    "run_compile",
]
