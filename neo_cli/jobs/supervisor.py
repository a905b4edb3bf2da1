"""The supervisor of a job: `python -m neo.jobs.supervisor STORE JOB_ID`, started detached by
`neo jobs create` (its own session; its output appended to the job's log).

Local backend: wait for a slot (at most MaxParallel local jobs compile at once on this host; the
rest stay STARTING, first come first served), load the compiler, fork a worker process that
compiles into the job's private staging directory, and watch it: MaxRuntimeInSeconds (FAILED,
time-out) and stop requests (`neo jobs stop` marks the job STOPPING and sends SIGTERM to the
worker's process group; the supervisor sends SIGKILL after the grace period and marks it
STOPPED). The artifact is published under a partial name in the output location and renamed into
place with SIGTERM blocked, and the job marked COMPLETED in the same breath.

A supervisor that has finished its job takes over the oldest job still waiting on this host (if
its MaxParallel allows), whose own supervisor then leaves: the compiler stays loaded, so a queue
of jobs pays for loading it once per slot instead of once per job. Its log follows the job.

Dask backend: submit the compile as a task to the scheduler, follow its events (each attempt's
start and the compile log), retry once when a worker is lost mid-compile, cancel it on stop or
time-out, and publish the artifact bytes the task returns.

If a supervisor dies (kill -9, reboot), its worker dies with it (PR_SET_PDEATHSIG) and the next
`neo jobs describe/list/wait` finds the job and marks it FAILED (service.reconcile). SIGTERM to a
supervisor stops the job it runs.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import shutil
import signal
import sys
import time
import traceback
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from neo.errors import NeoError

from . import locations, proc, runner, service
from .store import JobRecord, JobStore

POLL_S = 0.05
SLOT_POLL_S = 0.25
STATUS_POLL_S = 0.25  # how often a job's status is re-read (a stop is a status change)
MAX_DASK_ATTEMPTS = 2  # the first run and one retry after a lost worker


def _stamp(when: float | None = None) -> str:
    t = datetime.now() if when is None else datetime.fromtimestamp(when)
    return t.isoformat(sep=" ", timespec="milliseconds")


class Supervisor:
    def __init__(self, store: JobStore, job_id: int) -> None:
        self.store = store
        self.job_id = job_id  # the job being supervised now
        self.pid = os.getpid()
        self.started = proc.start_time(self.pid)
        self.term = False
        self.local = False  # a local-backend supervisor, which takes over waiting jobs
        self.next_job: JobRecord | None = None
        self.warm: set[str] = set()
        self._status_checked = 0.0
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    def _on_term(self, signum, frame) -> None:
        self.term = True

    def log(self, msg: str, who: str = "supervisor", when: float | None = None) -> None:
        print(f"{_stamp(when)} [{who}] {msg}", flush=True)

    def job(self) -> JobRecord:
        job = self.store.get_by_id(self.job_id)
        assert job is not None
        return job

    @property
    def stage(self) -> Path:
        return self.store.job_dir(self.job()) / "stage"

    # -- state changes ---------------------------------------------------------------------------

    def stop_wanted(self) -> bool:
        """A stop was asked for: STOPPING in the store, or SIGTERM to this process."""
        if self.term or signal.SIGTERM in signal.sigpending():
            return True
        now = time.monotonic()
        if now - self._status_checked >= STATUS_POLL_S:
            self._status_checked = now
            return self.job().status == "STOPPING"
        return False

    def _finish(self, from_states: tuple[str, ...], to_state: str, **values: Any) -> bool:
        """The current job's final transition; a local supervisor that goes on takes the next
        waiting job in the same transaction (self.next_job)."""
        go_on = self.local and not self.term
        adopt_for = (proc.host_name(), self.pid, self.started) if go_on else None
        done, self.next_job = self.store.finish(self.job_id, from_states, to_state, adopt_for,
                                                **values)
        return done is not None

    def settle_stopped(self) -> None:
        self._finish(("STARTING", "INPROGRESS", "STOPPING"), "STOPPED")
        self.log("STOPPED")

    def fail(self, reason: str, exit_code: int | None = None) -> None:
        if not self._finish(("STARTING", "INPROGRESS"), "FAILED", failure_reason=reason,
                            exit_code=exit_code) and self.job().status == "STOPPING":
            self.settle_stopped()
            return
        self.log(f"FAILED: {reason}")

    def timeout_reason(self, job: JobRecord) -> str:
        limit = job.request["StoppingCondition"]["MaxRuntimeInSeconds"]
        return (f"TimeOut: the compilation ran longer than StoppingCondition.MaxRuntimeInSeconds "
                f"({limit} s) and was stopped")

    def publish(self, job: JobRecord, artifact: Path, digest: str, derived: str) -> None:
        """Put the artifact in place and mark the job COMPLETED, or leave nothing if a stop came
        first. SIGTERM waits while this runs, so it cannot cut it in half."""
        out = job.request["OutputConfig"]["S3OutputLocation"]
        name = job.execution["ArtifactName"]
        final = locations.join(out, name)
        # Remembered first: if this process dies after the rename, reconcile can still tell the
        # artifact in place is this job's, by its digest.
        self.store.update(self.job_id, touch=False, digest=digest, derived=derived, artifact=final)
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            self._status_checked = 0.0
            if self.stop_wanted():
                self.settle_stopped()
                return
            try:
                final = locations.publish(artifact, out, name, self.job_id)
            except (OSError, NeoError) as e:
                self.fail(f"ClientError: OutputConfiguration: cannot write {final}: "
                          f"{getattr(e, 'strerror', None) or e}", 2)
                return
            if not self._finish(("INPROGRESS",), "COMPLETED", artifact=final):
                locations.remove(final)  # stopped meanwhile: a stopped job leaves nothing
                self.settle_stopped()
                return
            self.log(f"COMPLETED: {final} (blake2b {digest[:16]}...)")
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    # -- entry -----------------------------------------------------------------------------------

    def run(self) -> int:
        job = self.store.get_by_id(self.job_id)
        if job is None:
            self.log(f"no job {self.job_id} in {self.store.path}")
            return 1
        self.store.set_supervisor(self.job_id, self.pid, self.started)  # if `create` could not
        if job.supervisor_pid not in (None, self.pid):
            self.log(f"job {job.name} is run by supervisor pid {job.supervisor_pid} already")
            return 0
        self.log(f"supervisor pid {self.pid} for job {job.name}")
        try:
            if job.status != "STARTING":
                if job.status == "STOPPING":
                    self.settle_stopped()
                return 0
            if job.backend == "dask":
                self.run_dask(job)
                return 0
            self.local = True
            claimed = self.wait_for_slot(job)
            if claimed is None and self.next_job is not None:  # stopped in the queue, and
                claimed = self.next_job                         # handed a free slot meanwhile
                self.take_over(claimed)
            while claimed is not None:
                self.next_job = None
                self.run_local(claimed)
                claimed = self.next_job
                if claimed is not None:
                    self.take_over(claimed)
        except BaseException as e:  # noqa: BLE001  (a bug: the job says so, the log has why)
            self.log(traceback.format_exc().rstrip())
            self.local = False  # take nothing more over: this process is about to exit
            reason, code = runner.failure_reason(e)
            self.fail(reason, code)
            return 1
        return 0

    def take_over(self, job: JobRecord) -> None:
        """Continue with `job` (adopted from the queue): its log becomes this process's output."""
        assert job.id is not None
        self.log(f"next: job {job.name} (waiting in the queue) runs here")
        sys.stdout.flush()
        sys.stderr.flush()
        fd = os.open(service.log_path(self.store, job), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        self.job_id = job.id
        self._status_checked = 0.0
        self.log(f"supervisor pid {self.pid} (compiler loaded) takes over job {job.name}")

    # -- local backend ---------------------------------------------------------------------------

    def wait_for_slot(self, job: JobRecord) -> JobRecord | None:
        """The job, INPROGRESS, once a slot is free; None if it was stopped meanwhile or another
        supervisor took it over."""
        limit = int(job.execution.get("MaxParallel") or 1)
        host = proc.host_name()
        queued = False
        last_reconcile = 0.0
        while True:
            if self.term:
                self.settle_stopped()
                return None
            if time.monotonic() - last_reconcile > 1.0:
                service.reconcile(self.store)  # dead jobs must not hold slots
                last_reconcile = time.monotonic()
            claimed = self.store.claim_slot(self.job_id, host, limit)
            if claimed is not None:
                self.log("INPROGRESS")
                return claimed
            current = self.job()
            if current.supervisor_pid != self.pid:
                self.log(f"taken over by supervisor pid {current.supervisor_pid}, whose compiler "
                         "is loaded already")
                return None
            if current.status != "STARTING":
                if current.status == "STOPPING":
                    self.settle_stopped()
                return None
            if not queued:
                self.log(f"queued: {limit} local job(s) may compile at once (--max-parallel)")
                queued = True
            time.sleep(SLOT_POLL_S * (1 + random.random()))

    def load_compiler(self, job: JobRecord) -> None:
        """Import the compiler (and the job's frontend) here, once: every worker forked from this
        process starts with it loaded."""
        framework = str(job.request["InputConfig"]["Framework"]).lower()
        for module in ("neo.compiler", "neo.passes", "neo.codegen.build",
                       f"neo.frontends.{framework}"):
            if module in self.warm:
                continue
            try:
                importlib.import_module(module)
            except ImportError:
                pass  # the worker meets it again and reports it
            self.warm.add(module)

    def run_local(self, job: JobRecord) -> None:
        """Compile the claimed (INPROGRESS) job in a forked worker and settle it."""
        stage = self.stage
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
        try:
            self._run_local(job, stage)
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def _run_local(self, job: JobRecord, stage: Path) -> None:
        self.load_compiler(job)
        assert job.start_time is not None
        deadline = job.start_time + job.request["StoppingCondition"]["MaxRuntimeInSeconds"]
        if self.stop_wanted():
            self.settle_stopped()
            return
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._worker(job, stage)  # never returns
        try:
            os.setpgid(pid, pid)  # (the child does it too; whichever runs first)
        except OSError:
            pass
        self.store.update(self.job_id, worker=f"local pid {pid}")
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if self.stop_wanted():
                self.log("stop requested: terminating the compile")
                self.kill_worker(pid)
                service.cleanup(self.store, job)
                self.settle_stopped()
                return
            if time.time() > deadline:
                self.log("MaxRuntimeInSeconds exceeded: terminating the compile")
                self.kill_worker(pid)
                service.cleanup(self.store, job)
                self.fail(self.timeout_reason(job))
                return
            time.sleep(POLL_S)
        proc.kill_group(pid, signal.SIGKILL)  # anything the worker left running
        self._status_checked = 0.0
        if self.stop_wanted():  # `neo jobs stop` signalled the worker itself
            service.cleanup(self.store, job)
            self.settle_stopped()
            return
        self.finish_local(job, stage, status)

    def finish_local(self, job: JobRecord, stage: Path, status: int) -> None:
        result_file = stage / "result.json"
        result = json.loads(result_file.read_text()) if result_file.is_file() else None
        if result is None:
            if os.WIFSIGNALED(status):
                sig = signal.Signals(os.WTERMSIG(status)).name
                if sig == "SIGKILL":
                    self.fail("WorkerLost: the compiler process was killed (SIGKILL; out of "
                              "memory?)")
                else:
                    self.fail(f"InternalError: the compiler process died of {sig} (a bug in neo "
                              "or its toolchain; see the job's log)", 1)
            else:
                self.fail("InternalError: the compiler process exited with code "
                          f"{os.WEXITSTATUS(status)} without a result (see the job's log)", 1)
            return
        if not result["ok"]:
            self.fail(result["reason"], result["exit_code"])
            return
        self.publish(job, Path(result["artifact_file"]), result["digest"], result["derived"])

    def kill_worker(self, pid: int) -> None:
        """SIGTERM to the worker's process group (the compile and its zig children), SIGKILL
        after the grace period."""
        proc.kill_group(pid, signal.SIGTERM)
        end = time.monotonic() + service.STOP_GRACE_S
        while time.monotonic() < end:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                proc.kill_group(pid, signal.SIGKILL)  # any child it left
                return
            time.sleep(POLL_S)
        self.log(f"the compile ignored SIGTERM for {service.STOP_GRACE_S:g} s: SIGKILL")
        proc.kill_group(pid, signal.SIGKILL)
        os.waitpid(pid, 0)

    def _worker(self, job: JobRecord, stage: Path) -> None:
        """The forked worker: compile into the staging directory, write result.json, exit."""
        code = 1
        try:
            os.setpgid(0, 0)
            proc.die_with_parent()
            if os.getppid() != self.pid:  # the supervisor died before the line above
                os._exit(1)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)

            def say(line: str) -> None:
                self.log(line, "worker")

            s3uri = job.request["InputConfig"]["S3Uri"]
            say(f"pid {os.getpid()}: compiling {s3uri}")
            try:
                model = locations.fetch(s3uri, stage / "model")
            except (OSError, NeoError) as e:
                reason, rc = runner.failure_reason(
                    e if isinstance(e, NeoError) else
                    NeoError(f"cannot read the model {s3uri}: {e}"))
                result: dict[str, Any] = {"ok": False, "reason": reason, "exit_code": rc}
            else:
                result = runner.run_compile(job.request, job.execution, model, stage, say)
            tmp = stage / "result.json.tmp"
            tmp.write_text(json.dumps(result))
            os.replace(tmp, stage / "result.json")
            code = 0
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    # -- Dask backend ----------------------------------------------------------------------------

    def run_dask(self, job: JobRecord) -> None:
        from distributed import Client
        from distributed.scheduler import KilledWorker

        from neo.artifact_cache import source_digest

        address = job.execution["Scheduler"]
        self.log(f"connecting to the Dask scheduler {address}")
        try:
            client = Client(address, timeout="20s", set_as_default=False)
        except (OSError, TimeoutError) as e:
            self.fail(f"ClientError: Scheduler: cannot connect to the Dask scheduler {address}: "
                      f"{e}", 2)
            return
        try:
            s3uri = job.request["InputConfig"]["S3Uri"]
            try:
                payload = locations.read_payload(s3uri)
            except (OSError, NeoError) as e:
                self.fail(f"ClientError: InputConfiguration: cannot read the model {s3uri}: {e}",
                          3)
                return
            key = f"neo-compile-{job.name}-{job.id}-{uuid.uuid4().hex[:8]}"
            future = client.submit(runner.dask_compile_task, job.request, job.execution, payload,
                                   key, key=key, pure=False, retries=0)
            self.log(f"submitted task {key}")
            outcome = self._follow(job, client, future, key)
            if outcome is None:
                return
            if self.job().status == "STARTING":  # finished before its start event was seen
                self.store.transition(self.job_id, ("STARTING",), "INPROGRESS",
                                      start_time=time.time(), attempts=1)
            if future.status == "error":
                exc = future.exception()
                if isinstance(exc, KilledWorker):
                    self.fail(f"WorkerLost: Dask workers died while running the compile ({exc})")
                else:
                    reason, code = runner.failure_reason(exc)
                    self.fail(reason, code)
                return
            if future.status != "finished":
                self.fail(f"WorkerLost: the task ended {future.status} on the scheduler")
                return
            result = future.result()
            if result.get("source_digest") != source_digest():
                self.log(f"note: worker {result.get('worker')} runs another neo build than this "
                         "machine: artifacts may differ from local compiles")
            if not result["ok"]:
                self.fail(result["reason"], result["exit_code"])
                return
            stage = self.stage
            stage.mkdir(parents=True, exist_ok=True)
            artifact = stage / job.execution["ArtifactName"]
            artifact.write_bytes(result["artifact_bytes"])
            self.publish(self.job(), artifact, result["digest"], result["derived"])
        finally:
            client.close()
            shutil.rmtree(self.stage, ignore_errors=True)

    def _follow(self, job: JobRecord, client, future, topic: str) -> bool | None:
        """Follow the task until it is done (True), or settle the job and return None: stopped,
        timed out, or its worker lost a second time."""
        workers: list[str] = []  # the worker of each attempt, from the task's start events
        lost: list[str] = []
        running_on: str | None = None
        seen = 0
        deadline = None
        checked = time.monotonic()
        limit = job.request["StoppingCondition"]["MaxRuntimeInSeconds"]

        def lose(worker: str) -> bool:
            """Record a lost worker; True when that was one loss too many (the job failed)."""
            if worker in lost:
                return False
            lost.append(worker)
            self.log(f"worker {worker} was lost while compiling (attempt {len(workers)})")
            if len(lost) < MAX_DASK_ATTEMPTS:
                return False
            future.cancel()
            self.fail(f"WorkerLost: Dask workers {' and '.join(lost)} were lost while compiling "
                      "this job (it is retried once)")
            return True

        while True:
            if self.stop_wanted():
                future.cancel()
                self.log("stop requested: task cancelled")
                self.settle_stopped()
                return None
            done = future.done()  # before reading the events: a finished task's are all in
            events = client.get_events(topic)
            for when, msg in events[seen:]:
                if msg.get("event") == "start":
                    workers.append(msg["worker"])
                    running_on = msg["worker"]
                    if len(workers) == 1:
                        started = self.store.transition(self.job_id, ("STARTING",), "INPROGRESS",
                                                        start_time=time.time(), attempts=1,
                                                        worker=msg["worker"])
                        if started is None:
                            continue  # a stop came first; the next turn settles it
                        assert started.start_time is not None
                        deadline = started.start_time + limit
                        self.log(f"INPROGRESS on worker {msg['worker']} (pid {msg['pid']})")
                        continue
                    if lose(workers[-2]):
                        return None
                    self.log(f"the scheduler started the task again on {msg['worker']} "
                             f"(attempt {len(workers)})")
                    self.store.update(self.job_id, attempts=len(workers), worker=msg["worker"])
                elif msg.get("event") == "log":
                    self.log(msg.get("line", ""), msg.get("worker", "worker"), when)
            seen = len(events)
            if done:
                return True
            if running_on is not None and time.monotonic() - checked > 1.0:
                checked = time.monotonic()
                if running_on not in client.scheduler_info()["workers"]:
                    if lose(running_on):
                        return None
                    running_on = None  # until the scheduler starts it elsewhere
            if deadline is not None and time.time() > deadline:
                future.cancel()
                self.fail(self.timeout_reason(job))
                return None
            time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m neo.jobs.supervisor STORE JOB_ID", file=sys.stderr)
        return 2
    return Supervisor(JobStore(args[0]), int(args[1])).run()


if __name__ == "__main__":
    sys.exit(main())
