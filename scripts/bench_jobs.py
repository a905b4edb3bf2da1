"""Throughput of small compiles through `neo jobs`, and the latency the jobs machinery adds.

- Throughput: N compiles of the digits MLP (half for x86_64, half for arm64, --no-cache so each is
  a real compile), on the local backend (--max-parallel = the cores), on one Dask worker and on
  two (one thread each, started here on 127.0.0.1, with the compiler imported before timing, as
  on a standing cluster). Jobs are created from this process through the same code `neo jobs
  create` runs (spec.build_spec + service.create), so the figure is the backend's, not the
  command line's start-up; the clock runs from the first create to the last job finished.
- Latency: `neo compile` against `neo jobs create --wait` for the same model, each a fresh
  process, median of --repeat runs.

usage: python scripts/bench_jobs.py [--jobs 24] [--repeat 5]   (prints a markdown table)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHAPE = '{"input":[16,64]}'


def digits_mlp(path: Path) -> None:
    """The 64-128-10 digits MLP of tests/test_jobs.py (output layer fitted in closed form)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    rng = np.random.default_rng(0)
    train = rng.permutation(len(x))[:1400]
    w1 = rng.normal(0.0, 0.5, (64, 128)).astype(np.float32)
    b1 = rng.normal(0.0, 0.1, 128).astype(np.float32)
    h = np.maximum(x[train] @ w1 + b1, 0.0)
    onehot = np.eye(10, dtype=np.float32)[data.target[train]]
    w2 = np.linalg.solve(h.T @ h + 1e-1 * np.eye(128), h.T @ onehot).astype(np.float32) * 8.0
    nodes = [helper.make_node("Gemm", ["input", "w1", "b1"], ["h"]),
             helper.make_node("Relu", ["h"], ["hr"]),
             helper.make_node("Gemm", ["hr", "w2", "b2"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probs"], axis=1)]
    inits = [numpy_helper.from_array(a, n) for a, n in
             ((w1, "w1"), (b1, "b1"), (w2, "w2"), (np.zeros(10, np.float32), "b2"))]
    graph = helper.make_graph(
        nodes, "digits_mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def run_batch(root: Path, model: Path, n: int, backend: str, scheduler: str | None) -> float:
    """Seconds from the first create to the last of n jobs finished (all must complete)."""
    from neo.jobs import service
    from neo.jobs.spec import Overrides, build_spec
    from neo.jobs.store import TERMINAL, JobStore

    store = JobStore(root / f"store-{backend}-{time.monotonic_ns()}" / "jobs.db")
    t0 = time.perf_counter()
    for i in range(n):
        target = ("x86_64", "arm64")[i % 2]
        over = Overrides(name=f"j{i}", model=str(model), framework="onnx", shape=SHAPE,
                         target=target, output=str(root / "out" / f"{backend}-{i}"),
                         backend=backend, scheduler=scheduler, use_cache=False)
        service.create(store, build_spec({}, over, root))
    while True:
        jobs = store.query()
        if all(j.status in TERMINAL for j in jobs):
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    bad = [(j.name, j.failure_reason) for j in jobs if j.status != "COMPLETED"]
    if bad:
        sys.exit(f"jobs failed: {bad}")
    return elapsed


class Cluster:
    """A dask scheduler and `workers` one-thread workers on 127.0.0.1, compiler preloaded."""

    def __init__(self, root: Path, workers: int) -> None:
        from distributed import Client

        sfile = root / f"scheduler-{workers}.json"
        self.procs = [subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
             "--port", "0", "--no-dashboard", "--scheduler-file", str(sfile)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        for i in range(workers):
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file",
                 str(sfile), "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny",
                 "--no-dashboard", "--name", f"w{i}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        end = time.monotonic() + 60
        while not sfile.exists():
            if time.monotonic() > end:
                sys.exit("the dask scheduler did not start")
            time.sleep(0.1)
        with Client(scheduler_file=str(sfile), timeout=60) as client:
            client.wait_for_workers(workers, timeout=60)
            self.address = client.scheduler.address
            client.run(_preload)

    def close(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def _preload() -> None:
    import importlib

    for module in ("neo.compiler", "neo.frontends.onnx", "neo.jobs.runner"):
        importlib.import_module(module)


def latency(root: Path, model: Path, repeat: int) -> tuple[float, float]:
    env = {**os.environ, "NEO_JOB_STORE": str(root / "latency" / "jobs.db")}

    def timed(args: list[str]) -> float:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "neo", *args], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        return time.perf_counter() - t

    bare, jobs = [], []
    for i in range(repeat):  # interleaved, so drifting load hits both alike
        bare.append(timed(["compile", str(model), "--framework", "onnx", "--shape", SHAPE,
                           "--target", "x86_64", "--output", str(root / "lat" / f"c{i}"),
                           "--no-cache"]))
        jobs.append(timed(["jobs", "create", "--name", f"lat{i}", "--model", str(model),
                           "--framework", "onnx", "--shape", SHAPE, "--target", "x86_64",
                           "--output", str(root / "lat" / f"j{i}"), "--no-cache", "--wait"]))
    return statistics.median(bare), statistics.median(jobs)


def cpu_name() -> str:
    out = subprocess.run(["lscpu", "--json"], capture_output=True, text=True, check=False).stdout
    try:
        fields = {f["field"].rstrip(":"): f["data"] for f in json.loads(out)["lscpu"]}
    except (ValueError, KeyError):
        return "unknown CPU"
    return f"{fields.get('Model name', '?')}, {os.cpu_count()} cores"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=24)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="neo-bench-jobs-") as tmp:
        root = Path(tmp)
        model = root / "digits.onnx"
        digits_mlp(model)
        load0 = os.getloadavg()[0]
        rows = []
        t = run_batch(root, model, args.jobs, "local", None)
        rows.append((f"local (--max-parallel {os.cpu_count()})", t))
        for workers in (1, 2):
            cluster = Cluster(root, workers)
            try:
                t = run_batch(root, model, args.jobs, "dask", cluster.address)
            finally:
                cluster.close()
            rows.append((f"dask, {workers} worker{'s' if workers > 1 else ''} x 1 thread", t))
        bare, job = latency(root, model, args.repeat)
        load1 = os.getloadavg()[0]
    print(f"{args.jobs} compiles of the digits MLP (x86_64 and arm64 alternately, --no-cache), "
          f"{cpu_name()}; load average {load0:.1f} before, {load1:.1f} after\n")
    print("| backend | wall time | compiles/min |")
    print("|---|---|---|")
    for name, t in rows:
        print(f"| {name} | {t:.1f} s | {60 * args.jobs / t:.0f} |")
    print(f"\nlatency (median of {args.repeat}): `neo compile` {bare:.2f} s, "
          f"`neo jobs create --wait` {job:.2f} s (+{job - bare:.2f} s)")


if __name__ == "__main__":
    main()
