"""`neo jobs --backend dask` on a real Dask cluster: a scheduler and two workers started here on
127.0.0.1 (separate processes, stopped at the end), jobs created through the CLI.

One test in phases, so that pytest-xdist cannot start a second cluster on this 2-core budget:
1. Six jobs run across the two workers; the worker running the longest one is killed with SIGKILL
   mid-compile, and that job is retried once on the other worker (Attempts 2) and completes.
   Every artifact is byte-identical to a compile of the same job on this machine.
2. A stopped job cancels its task and leaves nothing in its output location.
3. A job whose worker is lost twice (a third worker joins, both are killed in turn) FAILS with
   WorkerLost naming both.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import test_jobs as tj
from conftest import in_ci

from neo.jobs import service
from neo.jobs.store import TERMINAL

jobs_env = tj.jobs_env  # the fixtures, shared
digits = tj.digits


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(scheduler address, {worker name: (address, Popen)}, add_worker(name)): `dask scheduler`
    and two `dask worker` processes (one thread each, no nanny, so a killed worker stays dead)."""
    if in_ci():  # CI installs dask (the test extra): a skip there would hide the backend
        import distributed
    else:
        distributed = pytest.importorskip("distributed")
    root = tmp_path_factory.mktemp("dask")
    sfile = root / "scheduler.json"
    procs: list[subprocess.Popen] = []

    def start(module: str, *args: str, log: str) -> subprocess.Popen:
        with open(root / log, "w") as out:  # the child keeps its own copy
            p = subprocess.Popen([sys.executable, "-m", f"distributed.cli.{module}", *args],
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(p)
        return p

    try:
        start("dask_scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
              "--scheduler-file", str(sfile), log="scheduler.log")
        workers = {name: start("dask_worker", "--scheduler-file", str(sfile), "--host",
                               "127.0.0.1", "--nthreads", "1", "--no-nanny", "--no-dashboard",
                               "--name", name, "--death-timeout", "60", log=f"{name}.log")
                   for name in ("w1", "w2")}
        end = time.monotonic() + 60
        while not sfile.exists():
            assert time.monotonic() < end, (root / "scheduler.log").read_text()
            time.sleep(0.1)
        with distributed.Client(scheduler_file=str(sfile), timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
            address = client.scheduler.address
            info = client.scheduler_info()["workers"]
        by_name = {w["name"]: addr for addr, w in info.items()}

        def add_worker(name: str) -> tuple[str, subprocess.Popen]:
            p = start("dask_worker", "--scheduler-file", str(sfile), "--host", "127.0.0.1",
                      "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", name,
                      log=f"{name}.log")
            with distributed.Client(scheduler_file=str(sfile), timeout=60) as client:
                end = time.monotonic() + 60
                while True:
                    found = [a for a, w in client.scheduler_info()["workers"].items()
                             if w["name"] == name]
                    if found:
                        return found[0], p
                    assert time.monotonic() < end, (root / f"{name}.log").read_text()
                    time.sleep(0.2)

        yield address, {n: (by_name[n], p) for n, p in workers.items()}, add_worker
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=15)


def _local_compile(job: dict, tmp: Path) -> bytes:
    """The same job compiled here, in this process, with the code the local backend runs."""
    from neo.jobs import runner

    request = {k: job[k] for k in ("InputConfig", "OutputConfig", "StoppingCondition")}
    execution = {"UseCache": False, "ArtifactName": job["Execution"]["ArtifactName"]}
    model = Path(job["InputConfig"]["S3Uri"])
    res = runner.run_compile(request, execution, model, tmp, lambda line: None)
    assert res["ok"], res
    return Path(res["artifact_file"]).read_bytes()


def test_dask_backend(cluster, jobs_env, digits):
    scheduler, workers, add_worker = cluster
    root = jobs_env.root

    # -- 1. six jobs on two workers, one worker lost mid-job --------------------------------
    # x86 targets only: every arch's runtime is built once per test session (~10-25 s each here),
    # and which arch is compiled changes nothing in how jobs run.
    chain = tj.conv_chain(root / "chain.onnx", 22, layers=6)
    jobs = {  # name -> (model, target, shape)
        "chain-x86": (chain, "x86_64", None),
        "digits-x86": (digits, "x86_64", tj.DIGITS_SHAPE),
        "digits-c5": (digits, "ml_c5", tj.DIGITS_SHAPE),
        "digits-m5": (digits, "ml_m5", tj.DIGITS_SHAPE),
        "digits-c4": (digits, "ml_c4", tj.DIGITS_SHAPE),
        "digits-lambda": (digits, "lambda", tj.DIGITS_SHAPE),
    }

    def create(name: str) -> subprocess.Popen:
        model, target, shape = jobs[name]
        args = [sys.executable, "-m", "neo", "jobs", "create", "--name", name, "--model",
                str(model), "--framework", "onnx", "--target", target, "--output", f"out/{name}",
                "--backend", "dask", "--scheduler", scheduler, "--no-cache"]
        return subprocess.Popen(args + (["--shape", shape] if shape else []), cwd=root,
                                env=jobs_env.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    # The five small jobs first (the scheduler spreads them over the idle workers), then the
    # long one, whose worker is killed while it compiles.
    small = [create(name) for name in jobs if name != "chain-x86"]
    for c in small:
        out, err = c.communicate(timeout=120)
        assert c.returncode == 0, (out, err)
    c = create("chain-x86")
    assert c.wait(timeout=120) == 0, c.communicate()
    job = jobs_env.poll("chain-x86", lambda j: j.status == "INPROGRESS", timeout=120)
    victim = next(n for n, (addr, _) in workers.items() if addr == job.worker)
    workers[victim][1].send_signal(signal.SIGKILL)
    survivor = workers[next(n for n in workers if n != victim)][0]

    w = jobs_env.neo("jobs", "wait", "chain-x86", "--timeout", "180")
    assert w.returncode == 0, tj.show(w) + tj.show(jobs_env.neo("jobs", "logs", "chain-x86"))
    for name in jobs:  # the others, read from the store (as `describe --json` prints them)
        jobs_env.poll(name, lambda j: j.status in TERMINAL, timeout=180)
    described = {name: service.describe(jobs_env.store, jobs_env.store.get(name))
                 for name in jobs}
    assert all(d["CompilationJobStatus"] == "COMPLETED" for d in described.values()), described
    lost = described["chain-x86"]
    assert lost["Execution"]["Attempts"] == 2 and lost["Execution"]["Worker"] == survivor, lost
    log = jobs_env.neo("jobs", "logs", "chain-x86").stdout
    assert f"worker {job.worker} was lost while compiling" in log, log
    used = {d["Execution"]["Worker"] for d in described.values()} | {job.worker}
    assert used == {a for a, _ in workers.values()}  # both workers compiled
    for name, d in described.items():
        assert d["Execution"]["Backend"] == "dask" and d["Execution"]["Scheduler"] == scheduler
        artifact = Path(d["ModelArtifacts"]["S3ModelArtifacts"])
        assert artifact.parent == root / "out" / name
        assert tj.files_in(artifact.parent) == [artifact.name]
        assert d["ModelDigests"]["ArtifactDigest"] == tj.blake2b(artifact)
        if name.startswith("digits"):
            assert json.loads(d["DerivedInformation"]["DerivedDataInputConfig"]) == \
                {"input": [16, 64]}
        here = root / "local" / name
        here.mkdir(parents=True)
        assert artifact.read_bytes() == _local_compile(d, here), name
    assert described["digits-c5"]["ModelArtifacts"]["S3ModelArtifacts"].endswith(
        "digits-ml_c5.tar.gz")

    # -- 2. stop cancels the task ------------------------------------------------------------
    # long enough to be stopped while it compiles: six layers compiled in 0.8 s on a Xeon and
    # finished before the stop reached the supervisor (no task left to cancel)
    chain = tj.conv_chain(root / "chain2.onnx", 18, layers=60)
    p = jobs_env.neo("jobs", "create", "--name", "cancel-me", "--model", chain, "--framework",
                     "onnx", "--target", "x86_64", "--output", "out-cancel", "--backend", "dask",
                     "--scheduler", scheduler, "--no-cache")
    assert p.returncode == 0, tj.show(p)
    jobs_env.poll("cancel-me", lambda j: j.status == "INPROGRESS", timeout=120)
    assert jobs_env.neo("jobs", "stop", "cancel-me").returncode == 0
    w = jobs_env.neo("jobs", "wait", "cancel-me", "--timeout", "60")
    tj.assert_one_error(w, 11, "STOPPED")
    assert "task cancelled" in jobs_env.neo("jobs", "logs", "cancel-me").stdout
    assert tj.files_in(root / "out-cancel") == []

    # -- 3. a worker lost a second time fails the job ------------------------------------------
    alive = {survivor: workers[next(n for n in workers if n != victim)][1]}
    address, proc3 = add_worker("w3")
    alive[address] = proc3
    chain = tj.conv_chain(root / "chain3.onnx", 16, layers=4)
    p = jobs_env.neo("jobs", "create", "--name", "unlucky", "--model", chain, "--framework",
                     "onnx", "--target", "x86_64", "--output", "out-unlucky", "--backend", "dask",
                     "--scheduler", scheduler, "--no-cache")
    assert p.returncode == 0, tj.show(p)
    killed = []
    for attempt in (1, 2):
        job = jobs_env.poll("unlucky", lambda j, a=attempt: j.status == "INPROGRESS"
                            and j.attempts == a, timeout=120)
        alive.pop(job.worker).send_signal(signal.SIGKILL)
        killed.append(job.worker)
    w = jobs_env.neo("jobs", "wait", "unlucky", "--timeout", "60")
    line = tj.assert_one_error(w, 10, "WorkerLost")
    assert f"Dask workers {killed[0]} and {killed[1]} were lost" in line, line
    assert tj.files_in(root / "out-unlucky") == []
