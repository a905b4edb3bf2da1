"""The operations behind `neo jobs`: create, describe, list, stop, wait, and finding dead jobs.

The CLI calls these; so do the tests and scripts/bench_jobs.py. Each reads and writes the store
only through `JobStore`, so they are safe from any number of processes at once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from neo.errors import NeoError, UsageError

from . import locations, proc
from .spec import JobSpec
from .store import SORT_KEYS, STATUSES, TERMINAL, JobRecord, JobStore

STOP_GRACE_S = 5.0  # SIGTERM, then SIGKILL this much later
SPAWN_GRACE_S = 60.0  # a job whose supervisor never recorded itself is dead after this
POLL_S = 0.2

# `neo jobs wait` exit codes: distinct from neo's 0-6 so a script can tell them apart.
WAIT_EXIT = {"COMPLETED": 0, "FAILED": 10, "STOPPED": 11}
WAIT_TIMEOUT_EXIT = 12


class WaitTimeout(NeoError):
    """`neo jobs wait --timeout` ran out with the job still running."""

    exit_code = WAIT_TIMEOUT_EXIT


def iso(t: float | None) -> str | None:
    """A store time as ISO 8601 in UTC with milliseconds, as the JSON output shows it."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


def parse_time(text: str, flag: str) -> float:
    """A time filter: ISO 8601 (a time without zone is local time) or seconds since the epoch."""
    s = text.strip()
    try:
        return float(s)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00") if s.endswith("Z") else s)
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected a time like 2026-12-01T00:00, "
                         "2026-12-01T00:00:00Z or seconds since 1970") from None
    if dt.tzinfo is None:
        dt = dt.astimezone()  # the local time zone
    return dt.timestamp()


def log_path(store: JobStore, job: JobRecord) -> Path:
    return store.job_dir(job) / "job.log"


def describe(store: JobStore, job: JobRecord) -> dict[str, Any]:
    """Neo's DescribeCompilationJob response (every field always present, null when unset), with
    the local execution details under "Execution"."""
    req, exe = job.request, job.execution
    done = job.status == "COMPLETED"
    return {
        "CompilationJobName": job.name,
        "CompilationJobStatus": job.status,
        "FailureReason": job.failure_reason,
        "CreationTime": iso(job.creation_time),
        "CompilationStartTime": iso(job.start_time),
        "CompilationEndTime": iso(job.end_time),
        "LastModifiedTime": iso(job.last_modified_time),
        "StoppingCondition": req["StoppingCondition"],
        "InputConfig": req["InputConfig"],
        "OutputConfig": req["OutputConfig"],
        "ModelArtifacts": {"S3ModelArtifacts": job.artifact if done else None},
        "ModelDigests": {"ArtifactDigest": job.digest if done else None},
        "DerivedInformation": {"DerivedDataInputConfig": job.derived if done else None},
        "RoleArn": req.get("RoleArn"),
        "Tags": req.get("Tags", []),
        "Execution": {
            "Backend": exe.get("Backend"),
            "Scheduler": exe.get("Scheduler"),
            "MaxParallel": exe.get("MaxParallel"),
            "UseCache": exe.get("UseCache"),
            "ArtifactName": exe.get("ArtifactName"),
            "Host": job.host,
            "SupervisorPid": job.supervisor_pid,
            "Worker": job.worker,
            "Attempts": job.attempts,
            "FailureExitCode": job.exit_code,
            "LogFile": str(log_path(store, job)),
            "Store": str(store.path),
        },
    }


def summary(job: JobRecord) -> dict[str, Any]:
    """One entry of Neo's ListCompilationJobs CompilationJobSummaries."""
    out = job.request["OutputConfig"]
    platform = out.get("TargetPlatform") or {}
    return {
        "CompilationJobName": job.name,
        "CompilationJobStatus": job.status,
        "CreationTime": iso(job.creation_time),
        "CompilationStartTime": iso(job.start_time),
        "CompilationEndTime": iso(job.end_time),
        "LastModifiedTime": iso(job.last_modified_time),
        "CompilationTargetDevice": out.get("TargetDevice"),
        "CompilationTargetPlatformOs": platform.get("Os"),
        "CompilationTargetPlatformArch": platform.get("Arch"),
        "CompilationTargetPlatformAccelerator": platform.get("Accelerator"),
    }


# -- create --------------------------------------------------------------------------------------


def create(store: JobStore, spec: JobSpec) -> JobRecord:
    """Record the job (STARTING) and start its detached supervisor; returns the new record."""
    now = time.time()
    job = store.insert(JobRecord(spec.name, "STARTING", now, now, spec.request, spec.execution,
                                 host=proc.host_name(), boot_id=proc.boot_id()))
    assert job.id is not None
    jdir = store.job_dir(job)
    jdir.mkdir(parents=True, exist_ok=True)
    log = log_path(store, job)
    with open(log, "a") as fh:
        fh.write(f"{_stamp()} [create] job {job.name} ({job.backend} backend) in {store.path}\n")
        fh.writelines(f"{_stamp()} [create] note: {note}\n" for note in spec.notes)
    try:
        pid = _start_supervisor(store, job.id, log, jdir)
    except OSError as e:
        store.transition(job.id, ("STARTING",), "FAILED", exit_code=1,
                         failure_reason=f"InternalError: cannot start the supervisor: {e}")
        raise NeoError(f"job {job.name}: cannot start its supervisor process: {e}") from None
    store.set_supervisor(job.id, pid, proc.start_time(pid))
    return store.get_by_id(job.id) or job


def _start_supervisor(store: JobStore, job_id: int, log: Path, jdir: Path) -> int:
    """Start the job's supervisor, detached: its own session (no terminal, no SIGHUP when the
    shell that ran `create` goes away), output to the job's log, not a child of this process.

    Where fork exists the supervisor is this process, forked twice: it inherits what `create`
    has loaded already (the frontend that checked the model), which saves a second interpreter
    start and import. Elsewhere it is `python -m neo.jobs.supervisor`."""
    if not hasattr(os, "fork"):
        with open(log, "ab") as fh:
            p = subprocess.Popen([sys.executable, "-m", "neo.jobs.supervisor", str(store.path),
                                  str(job_id)], stdin=subprocess.DEVNULL, stdout=fh,
                                 stderr=subprocess.STDOUT, cwd=jdir, start_new_session=True)
        return p.pid
    sys.stdout.flush()
    sys.stderr.flush()
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # the first child: fork the supervisor, tell its pid, leave
        code = 1
        try:
            os.close(r)
            grandchild = os.fork()
            if grandchild == 0:
                os.close(w)
                _become_supervisor(store, job_id, log, jdir)  # never returns
            os.write(w, str(grandchild).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        data = pipe.read()
    os.waitpid(child, 0)
    if not data:
        raise OSError("the supervisor process could not be forked")
    return int(data)


def _become_supervisor(store: JobStore, job_id: int, log: Path, jdir: Path) -> None:
    code = 1
    try:
        os.setsid()
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 1024)
        os.chdir(jdir)
        from .supervisor import Supervisor

        code = Supervisor(JobStore(store.path), job_id).run()
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _stamp() -> str:
    return datetime.now().isoformat(sep=" ", timespec="milliseconds")


# -- dead jobs -----------------------------------------------------------------------------------


def reconcile(store: JobStore) -> list[str]:
    """Settle the unfinished jobs of this host whose supervisor is gone (kill -9, crash, reboot):
    FAILED with the reason (STOPPED if a stop was asked for), and their partial files removed.
    A job whose stop outlasts the grace period gets its supervisor killed. Returns their names."""
    host = proc.host_name()
    now = time.time()
    settled = []
    for job in store.active():
        if job.host != host:
            continue  # a store shared between machines: only the job's own host can tell
        if job.supervisor_pid is None:
            if now - job.creation_time > SPAWN_GRACE_S:
                _settle_dead(store, job, "the job's supervisor never started")
                settled.append(job.name)
            continue
        if not proc.alive(job.supervisor_pid, job.supervisor_start, job.boot_id):
            what = ("the machine restarted" if job.boot_id and proc.boot_id()
                    and job.boot_id != proc.boot_id() else "it was killed or crashed")
            _settle_dead(store, job, f"the job's supervisor (pid {job.supervisor_pid} on {host}) "
                                     f"ended before the job finished: {what}")
            settled.append(job.name)
        elif (job.status == "STOPPING" and job.stop_requested_time is not None
              and now - job.stop_requested_time > STOP_GRACE_S + 10):
            proc.kill_group(job.supervisor_pid, signal.SIGKILL)
            _settle_dead(store, job, "it did not stop within the grace period")
            settled.append(job.name)
    return settled


def _settle_dead(store: JobStore, job: JobRecord, why: str) -> None:
    assert job.id is not None
    if job.status == "STOPPING":
        store.transition(job.id, ("STOPPING",), "STOPPED")
    elif job.digest and job.artifact and _published(job):
        # It died after putting the artifact in place and before recording it: the artifact is
        # whole (its digest matches), so the job did complete.
        store.transition(job.id, ("INPROGRESS",), "COMPLETED")
    else:
        store.transition(job.id, ("STARTING", "INPROGRESS"), "FAILED",
                         failure_reason=f"WorkerLost: {why}; see `neo jobs logs {job.name}`")
    cleanup(store, job)


def _published(job: JobRecord) -> bool:
    from .runner import artifact_digest

    try:
        return artifact_digest(locations.read_bytes(str(job.artifact))) == job.digest
    except (OSError, NeoError):
        return False


def cleanup(store: JobStore, job: JobRecord) -> None:
    """Remove what an unfinished job may leave: its partial artifact and its staging files."""
    assert job.id is not None
    out = job.request["OutputConfig"]["S3OutputLocation"]
    name = job.execution.get("ArtifactName")
    if name:
        locations.remove(locations.join(out, locations.partial_name(name, job.id)))
    shutil.rmtree(store.job_dir(job) / "stage", ignore_errors=True)


# -- list ----------------------------------------------------------------------------------------


def _canonical(value: str | None, allowed, flag: str) -> str | None:
    if value is None:
        return None
    for a in allowed:
        if a.lower() == value.strip().lower():
            return a
    raise UsageError(f"{flag} {value!r}: expected one of {', '.join(allowed)}")


def list_jobs(store: JobStore, *, status_equals: str | None = None,
              name_contains: str | None = None, creation_time_after: str | None = None,
              creation_time_before: str | None = None,
              last_modified_time_after: str | None = None,
              last_modified_time_before: str | None = None, sort_by: str = "CreationTime",
              sort_order: str = "Ascending", max_results: int | None = None,
              next_token: str | None = None) -> tuple[list[JobRecord], str | None]:
    """Neo's ListCompilationJobs: filters, SortBy Name|CreationTime|Status, SortOrder, and pages
    of MaxResults (1-100) with NextToken. Without max_results every job is returned."""
    status = _canonical(status_equals, STATUSES, "--status-equals")
    sort_by = _canonical(sort_by, tuple(SORT_KEYS), "--sort-by") or "CreationTime"
    order = _canonical(sort_order, ("Ascending", "Descending"), "--sort-order") or "Ascending"
    if max_results is not None and not 1 <= max_results <= 100:
        raise UsageError(f"--max-results must be 1 to 100, got {max_results}")
    filters = {
        "status": status, "name_contains": name_contains or None,
        "created_after": _opt_time(creation_time_after, "--creation-time-after"),
        "created_before": _opt_time(creation_time_before, "--creation-time-before"),
        "modified_after": _opt_time(last_modified_time_after, "--last-modified-time-after"),
        "modified_before": _opt_time(last_modified_time_before, "--last-modified-time-before"),
    }
    query_id = hashlib.sha256(json.dumps([filters, sort_by, order], sort_keys=True)
                              .encode()).hexdigest()[:16]
    after = _decode_token(next_token, query_id) if next_token else None
    reconcile(store)
    rows = store.query(**filters, sort_by=sort_by, descending=order == "Descending",
                       after=after, limit=None if max_results is None else max_results + 1)
    token = None
    if max_results is not None and len(rows) > max_results:
        rows = rows[:max_results]
        key = JobStore.sort_key(rows[-1], sort_by)
        token = base64.urlsafe_b64encode(json.dumps({"q": query_id, "k": key}).encode()).decode()
    return rows, token


def _opt_time(text: str | None, flag: str) -> float | None:
    return None if text is None else parse_time(text, flag)


def _decode_token(token: str, query_id: str) -> list[Any]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        key, q = data["k"], data["q"]
    except (ValueError, KeyError, TypeError):
        raise UsageError("--next-token is not a token `neo jobs list` printed") from None
    if q != query_id:
        raise UsageError("--next-token belongs to a list with other filters or sort order; "
                         "repeat the same filters and sort with it")
    return key


# -- stop, wait ----------------------------------------------------------------------------------


def stop(store: JobStore, name: str) -> JobRecord:
    """Neo's StopCompilationJob: STOPPING now, and SIGTERM to the job's compile; its supervisor
    (which polls the status) sends SIGKILL after STOP_GRACE_S if needed, removes the partial
    files and marks it STOPPED. A Dask job's task is cancelled. A finished job is left as it is."""
    reconcile(store)
    job = store.require(name)
    assert job.id is not None
    if job.status in ("STARTING", "INPROGRESS"):
        moved = store.transition(job.id, ("STARTING", "INPROGRESS"), "STOPPING",
                                 stop_requested_time=time.time())
        if moved is not None:
            job = moved
            worker = _local_worker(job)
            if worker is not None:
                proc.kill_group(worker, signal.SIGTERM)
            if not proc.alive(job.supervisor_pid, job.supervisor_start, job.boot_id):
                reconcile(store)
    return store.require(name)


def _local_worker(job: JobRecord) -> int | None:
    """The pid of the job's local compile process, if it is running (a child of the job's live
    supervisor: the check that it is that process and not a reused pid)."""
    if job.backend != "local" or not job.worker or not job.worker.startswith("local pid "):
        return None
    pid = int(job.worker.rsplit(" ", 1)[1])
    if not proc.alive(job.supervisor_pid, job.supervisor_start, job.boot_id):
        return None
    return pid if proc.parent(pid) == job.supervisor_pid else None


def wait(store: JobStore, name: str, timeout: float | None = None) -> JobRecord:
    """Block until the job is COMPLETED, FAILED or STOPPED; WaitTimeout after `timeout` s."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.05
    while True:
        reconcile(store)
        job = store.require(name)
        if job.status in TERMINAL:
            return job
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeout(f"job {name} is still {job.status} after {timeout:g} s "
                              "(--timeout)", hint=f"`neo jobs stop {name}` stops it")
        time.sleep(delay if deadline is None else max(0.0, min(delay, deadline -
                                                               time.monotonic())))
        delay = min(delay * 1.5, POLL_S * 2)


__all__ = [
    "STOP_GRACE_S",
    "WAIT_EXIT",
    "WAIT_TIMEOUT_EXIT",
    "WaitTimeout",
    "cleanup",
    "create",
    "describe",
    "iso",
    "list_jobs",
    "log_path",
    "parse_time",
    "reconcile",
    "stop",
    "summary",
    "wait",
]
