"""`neo jobs ...`: the click commands. neo/main.py registers the group with its own error guard
and common flags (build_jobs_group), so jobs report errors exactly as every neo command does."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import click

STORE_HELP = ("The job store (an SQLite file; default: $XDG_DATA_HOME/neo/jobs.db or "
              "~/.local/share/neo/jobs.db).")


def _store_option(f):
    return click.option("--store", type=click.Path(path_type=Path), envvar="NEO_JOB_STORE",
                        show_envvar=True, help=STORE_HELP)(f)


def _dump(data) -> None:
    click.echo(json.dumps(data, indent=1))


def _local(t: float | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def _target(job) -> str:
    out = job.request["OutputConfig"]
    if out.get("TargetDevice"):
        return out["TargetDevice"]
    p = out.get("TargetPlatform") or {}
    return "_".join(p[k] for k in ("Os", "Arch", "Accelerator") if p.get(k))


def _human_describe(d: dict) -> str:
    import yaml

    return yaml.safe_dump(d, sort_keys=False, default_flow_style=False, width=100).rstrip()


def build_jobs_group(common: Callable, guard: Callable) -> click.Group:
    """The `jobs` group; `common` adds --json/--verbose/--debug and `guard` turns errors into one
    line and neo's exit code (both from neo.main)."""

    @click.group("jobs")
    def jobs():
        """Compilation jobs that run in the background (Neo's CreateCompilationJob & co):
        create, describe, list, stop, wait, logs. Locally, or on a Dask cluster."""

    @jobs.command("create")
    @click.option("--config", "config_file", type=click.Path(path_type=Path),
                  help="A job file, YAML or JSON, with CreateCompilationJob's fields; flags "
                       "override its fields.")
    @click.option("--name", help="CompilationJobName: 1-63 letters, digits, hyphens; unique.")
    @click.option("--model", help="InputConfig.S3Uri: a model file, directory or .tar.gz; a path, "
                                   "file:// URL or fsspec URL.")
    @click.option("--framework", "-f", help="InputConfig.Framework, e.g. ONNX, PYTORCH.")
    @click.option("--framework-version", help="InputConfig.FrameworkVersion (recorded).")
    @click.option("--shape", "--data-input-config", "shape",
                  help="InputConfig.DataInputConfig: input shapes as JSON.")
    @click.option("--target", "-t", help="OutputConfig.TargetDevice, e.g. rasp4b, ml_c5, x86_64.")
    @click.option("--target-platform",
                  help="OutputConfig.TargetPlatform, e.g. os=LINUX,arch=ARM64.")
    @click.option("--compiler-options", help="OutputConfig.CompilerOptions as JSON.")
    @click.option("--output", "-o",
                  help="OutputConfig.S3OutputLocation: where the .tar.gz goes (path or URL).")
    @click.option("--max-runtime", type=int,
                  help="StoppingCondition.MaxRuntimeInSeconds (default 900).")
    @click.option("--tag", "tags", multiple=True, help="KEY=VALUE (repeatable).")
    @click.option("--backend", type=click.Choice(["local", "dask"], case_sensitive=False),
                  help="local (default): a detached process on this machine; dask: a task on "
                       "a Dask cluster.")
    @click.option("--scheduler", help="The Dask scheduler, tcp://HOST:8786 (--backend dask).")
    @click.option("--max-parallel", type=int,
                  help="Local jobs running at once on this machine (default: the number of "
                       "cores); the rest wait as STARTING.")
    @click.option("--no-cache", is_flag=True,
                  help="Compile even if the same model was compiled before with these options.")
    @click.option("--wait", "wait_", is_flag=True,
                  help="Then wait for the job to finish, with `neo jobs wait`'s exit codes.")
    @click.option("--timeout", type=float, help="With --wait: give up after this many seconds.")
    @_store_option
    @common
    @guard
    def create_cmd(config_file, name, model, framework, framework_version, shape, target,
                   target_platform, compiler_options, output, max_runtime, tags, backend,
                   scheduler, max_parallel, no_cache, wait_, timeout, store, json_out, verbose,
                   debug):
        """Create a compilation job from --config FILE and/or flags; every field is checked
        now, then the job runs in the background (STARTING -> INPROGRESS -> COMPLETED)."""
        from . import service
        from .spec import Overrides, build_spec, load_job_file
        from .store import JobStore

        doc = load_job_file(config_file) if config_file else {}
        over = Overrides(name=name, model=model, framework=framework,
                         framework_version=framework_version, shape=shape, target=target,
                         target_platform=target_platform, compiler_options=compiler_options,
                         output=output, max_runtime=max_runtime, tags=tuple(tags),
                         backend=backend, scheduler=scheduler, max_parallel=max_parallel,
                         use_cache=False if no_cache else None)
        spec = build_spec(doc, over, Path.cwd(), str(config_file) if config_file else "job")
        st = JobStore(store)
        for note in spec.notes:
            click.echo(f"note: {note}", err=True)
        job = service.create(st, spec)
        if wait_:
            _finish_wait(st, job.name, timeout, json_out)
        if json_out:
            _dump(service.describe(st, job))
        else:
            click.echo(f"{job.name} {job.status}")

    @jobs.command("describe")
    @click.argument("name")
    @_store_option
    @common
    @guard
    def describe_cmd(name, store, json_out, verbose, debug):
        """Everything about one job (Neo's DescribeCompilationJob)."""
        from . import service
        from .store import JobStore

        st = JobStore(store)
        service.reconcile(st)
        d = service.describe(st, st.require(name))
        if json_out:
            _dump(d)
        else:
            click.echo(_human_describe(d))

    @jobs.command("list")
    @click.option("--status-equals", help="STARTING, INPROGRESS, COMPLETED, FAILED, STOPPING or "
                                          "STOPPED.")
    @click.option("--name-contains", help="Jobs whose name contains this (any case).")
    @click.option("--creation-time-after", help="ISO time (local if no zone) or epoch seconds.")
    @click.option("--creation-time-before")
    @click.option("--last-modified-time-after")
    @click.option("--last-modified-time-before")
    @click.option("--sort-by", default="CreationTime", show_default=True,
                  help="Name, CreationTime or Status.")
    @click.option("--sort-order", default="Ascending", show_default=True,
                  help="Ascending or Descending.")
    @click.option("--max-results", type=int,
                  help="A page of 1-100 jobs, with a NextToken for the next (default: all).")
    @click.option("--next-token", help="The NextToken of the previous page.")
    @_store_option
    @common
    @guard
    def list_cmd(status_equals, name_contains, creation_time_after, creation_time_before,
                 last_modified_time_after, last_modified_time_before, sort_by, sort_order,
                 max_results, next_token, store, json_out, verbose, debug):
        """List jobs (Neo's ListCompilationJobs): filters, sorting and paging."""
        from . import service
        from .store import JobStore

        st = JobStore(store)
        rows, token = service.list_jobs(
            st, status_equals=status_equals, name_contains=name_contains,
            creation_time_after=creation_time_after, creation_time_before=creation_time_before,
            last_modified_time_after=last_modified_time_after,
            last_modified_time_before=last_modified_time_before, sort_by=sort_by,
            sort_order=sort_order, max_results=max_results, next_token=next_token)
        if json_out:
            _dump({"CompilationJobSummaries": [service.summary(j) for j in rows],
                   "NextToken": token})
            return
        if rows:
            width = max(4, *(len(j.name) for j in rows))
            click.echo(f"{'NAME':<{width}}  {'STATUS':<10}  {'CREATED':<19}  {'TARGET':<16}  "
                       "BACKEND")
            for j in rows:
                click.echo(f"{j.name:<{width}}  {j.status:<10}  {_local(j.creation_time):<19}  "
                           f"{_target(j):<16}  {j.backend}")
        if token:
            click.echo(f"more: --next-token {token}", err=True)

    @jobs.command("stop")
    @click.argument("name")
    @_store_option
    @common
    @guard
    def stop_cmd(name, store, json_out, verbose, debug):
        """Stop a job (Neo's StopCompilationJob): STOPPING now, then STOPPED once its compile is
        killed (SIGTERM, SIGKILL after a grace period); no partial artifact is left behind. A
        finished job is left as it is."""
        from . import service
        from .store import JobStore

        st = JobStore(store)
        job = service.stop(st, name)
        if json_out:
            _dump(service.describe(st, job))
        else:
            click.echo(f"{job.name} {job.status}")

    @jobs.command("wait")
    @click.argument("name")
    @click.option("--timeout", type=float, help="Give up after this many seconds (exit 12).")
    @_store_option
    @common
    @guard
    def wait_cmd(name, timeout, store, json_out, verbose, debug):
        """Wait until a job finishes. Exit 0 COMPLETED, 10 FAILED, 11 STOPPED, 12 --timeout ran
        out (the job goes on)."""
        from .store import JobStore

        _finish_wait(JobStore(store), name, timeout, json_out)

    @jobs.command("logs")
    @click.argument("name")
    @click.option("--follow", "-f", is_flag=True, help="Keep printing until the job finishes.")
    @_store_option
    @common
    @guard
    def logs_cmd(name, follow, store, json_out, verbose, debug):
        """Print a job's log (its supervisor's and compiler's output)."""
        from . import service
        from .store import TERMINAL, JobStore

        st = JobStore(store)
        job = st.require(name)
        path = service.log_path(st, job)
        pos = 0
        while True:
            if follow:
                service.reconcile(st)
                job = st.require(name)
            try:
                with open(path, "rb") as fh:
                    fh.seek(pos)
                    data = fh.read()
            except FileNotFoundError:
                data = b""
            if data:
                sys.stdout.write(data.decode("utf-8", "replace"))
                sys.stdout.flush()
                pos += len(data)
            if not follow or (job.status in TERMINAL and not data):
                return
            time.sleep(0.2)

    return jobs


def _finish_wait(store, name: str, timeout: float | None, json_out: bool):
    """Wait, print the outcome, and exit with `neo jobs wait`'s code for it."""
    from . import service

    try:
        job = service.wait(store, name, timeout)
        code = service.WAIT_EXIT[job.status]
        problem = f"job {job.name} {job.status}" + (f": {job.failure_reason}"
                                                    if job.failure_reason else "")
    except service.WaitTimeout as e:
        job = store.require(name)
        code = e.exit_code
        problem = e.message
    if json_out:
        _dump(service.describe(store, job))
    elif code == 0:
        click.echo(f"{job.name} {job.status} {job.artifact}")
    if code:
        click.echo(f"error: {problem}", err=True)
    sys.exit(code)


__all__ = ["build_jobs_group"]
