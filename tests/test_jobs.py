"""`neo jobs` with the local backend, through the real CLI in subprocesses, on a per-test store.

Lifecycle (create -> INPROGRESS -> COMPLETED with artifact, digest and derived shapes), a model
with unsupported operators, stop, queueing under --max-parallel, MaxRuntimeInSeconds, duplicate
names and validation errors at create, list filters/sorting/paging over 150 jobs, kill -9 of a
supervisor, and 20 jobs created at once from 4 processes. Nothing is mocked: every job is a
detached supervisor process compiling with neo's compiler. Models: the digits MLP (trained on
scikit-learn's digits, ~1-2 s to compile) and small conv chains whose compile takes a few
seconds (each test gets its own, so no compile cache makes it fast).

`neo jobs wait` exit codes: 0 COMPLETED, 10 FAILED, 11 STOPPED, 12 --timeout ran out.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import in_ci
from onnx import TensorProto, helper, numpy_helper

from neo.jobs import proc
from neo.jobs.store import ACTIVE, TERMINAL, JobRecord, JobStore

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACT_FILES = sorted(("compiled.so", "compiled_model.json", "compiled.params", "compiled.meta",
                         "libneort.so", "neort.h", "neo-run"))
DIGITS_SHAPE = '{"input":[16,64]}'


# -- running neo ---------------------------------------------------------------------------------


def neo(*args, env: dict, cwd: Path | None = None, timeout: float = 120):
    return subprocess.run([sys.executable, "-m", "neo", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def show(p: subprocess.CompletedProcess) -> str:
    return f"exit {p.returncode}\n--- stdout:\n{p.stdout}\n--- stderr:\n{p.stderr}"


def assert_one_error(p: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    assert p.returncode == code, show(p)
    assert "Traceback" not in p.stderr, show(p)
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, show(p)
    for needle in needles:
        assert needle.lower() in errors[0].lower(), show(p)
    return errors[0]


@dataclass
class JobsEnv:
    """A private job store for one test, and the environment that points `neo` at it."""

    root: Path
    store_path: Path
    env: dict

    @property
    def store(self) -> JobStore:
        return JobStore(self.store_path)

    def neo(self, *args, cwd: Path | None = None, timeout: float = 120):
        return neo(*args, env=self.env, cwd=cwd or self.root, timeout=timeout)

    def describe(self, name: str) -> dict:
        p = self.neo("jobs", "describe", name, "--json")
        assert p.returncode == 0, show(p)
        return json.loads(p.stdout)

    def poll(self, name: str, until: Callable[[JobRecord], bool], timeout: float = 120,
             statuses: list | None = None) -> JobRecord:
        """Read the store (as any process may) until `until(job)`; records statuses seen."""
        end = time.monotonic() + timeout
        while True:
            job = self.store.get(name)
            if job is not None:
                if statuses is not None and (not statuses or statuses[-1] != job.status):
                    statuses.append(job.status)
                if until(job):
                    return job
            assert time.monotonic() < end, f"{name}: still {job and job.status} after {timeout}s"
            time.sleep(0.02)


@pytest.fixture
def jobs_env(tmp_path: Path):
    store = tmp_path / "store" / "jobs.db"
    env = {**os.environ, "NEO_JOB_STORE": str(store)}
    yield JobsEnv(tmp_path, store, env)
    # Leave no process behind, whatever the test did.
    if store.exists():
        for job in JobStore(store).active():
            if job.supervisor_pid == os.getpid():
                continue  # rows a test wrote itself, naming this process
            if proc.alive(job.supervisor_pid, job.supervisor_start, job.boot_id):
                proc.kill_group(job.supervisor_pid, signal.SIGKILL)


# -- models --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def digits(tmp_path_factory) -> Path:
    """A 64-128-10 MLP for scikit-learn's handwritten digits (Gemm, Relu, Gemm, Softmax, like
    examples/demo.py's), trained in milliseconds: a fixed random hidden layer and the output layer
    fitted in closed form (ridge regression). 16 held-out images beside it (x16.npy, y16.npy)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(x))
    train, test = idx[:1400], idx[1400:]
    w1 = rng.normal(0.0, 0.5, (64, 128)).astype(np.float32)
    b1 = rng.normal(0.0, 0.1, 128).astype(np.float32)
    h = np.maximum(x[train] @ w1 + b1, 0.0)
    onehot = np.eye(10, dtype=np.float32)[data.target[train]]
    w2 = np.linalg.solve(h.T @ h + 1e-1 * np.eye(128), h.T @ onehot).astype(np.float32) * 8.0
    b2 = np.zeros(10, np.float32)
    nodes = [helper.make_node("Gemm", ["input", "w1", "b1"], ["h"]),
             helper.make_node("Relu", ["h"], ["hr"]),
             helper.make_node("Gemm", ["hr", "w2", "b2"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probs"], axis=1)]
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"),
                                                         (b2, "b2"))]
    graph = helper.make_graph(
        nodes, "digits_mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    root = tmp_path_factory.mktemp("digits")
    path = root / "digits.onnx"
    onnx.save(model, path)
    np.save(root / "x16.npy", x[test[:16]])
    np.save(root / "y16.npy", data.target[test[:16]])
    return path


def conv_chain(path: Path, size: int, layers: int = 120, channels: int = 16) -> Path:
    """Conv(3x3|5x5)+Relu x layers on a size x size image: 0.2 s of compile per layer for x86_64
    on a quiet Zen 5, about a second on a loaded Zen 4, and a different LLVM module for every
    size (so no cache makes one test's compile instant). The tests that use it stop or kill it
    while it compiles, so it must outlast their steps on the fastest machine (30 layers took 6 s
    there and finished before test_stop_and_queue stopped it); its length costs nothing else."""
    r = np.random.default_rng(size)
    nodes, inits, x, c = [], [], "input", 3
    for i in range(layers):
        k = 3 if i % 2 == 0 else 5
        w = (r.standard_normal((channels, c, k, k)) * 0.2).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], pads=[k // 2] * 4,
                                      kernel_shape=[k, k], name=f"conv{i}"))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"))
        x, c = f"r{i}", channels
    graph = helper.make_graph(
        nodes, "conv_chain",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, channels, size, size])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def unsupported_model(path: Path) -> Path:
    """Relu, then Det and Unique, two operators neo does not implement."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Det", ["r"], ["d"], name="det0"),
             helper.make_node("Unique", ["r"], ["u"], name="uniq0", sorted=1)]
    graph = helper.make_graph(
        nodes, "unsupported", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 3])],
        [helper.make_tensor_value_info("d", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("u", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def files_in(directory: Path) -> list[str]:
    """Every file under a directory, hidden ones included ([] when it does not exist)."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*")) \
        if directory.exists() else []


def blake2b(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes()).hexdigest()


# -- lifecycle -----------------------------------------------------------------------------------


def test_create_runs_in_background_to_completed_artifact(jobs_env: JobsEnv, digits: Path):
    import yaml

    root = jobs_env.root
    # Neo's packaging: the model in a model.tar.gz; the artifact is named model-<target>.tar.gz.
    with tarfile.open(root / "model.tar.gz", "w:gz") as tar:
        tar.add(digits, arcname="digits.onnx")
    (root / "job.yaml").write_text(yaml.safe_dump({
        "CompilationJobName": "digits-x86",
        "RoleArn": "arn:aws:iam::123456789012:role/neo",
        "InputConfig": {"S3Uri": "model.tar.gz", "DataInputConfig": DIGITS_SHAPE,
                        "Framework": "ONNX"},
        "OutputConfig": {"S3OutputLocation": "out/", "TargetDevice": "x86_64"},
        "StoppingCondition": {"MaxRuntimeInSeconds": 300},
        "Tags": [{"Key": "team", "Value": "vision"}],
    }))
    p = jobs_env.neo("jobs", "create", "--config", "job.yaml", "--json")
    assert p.returncode == 0, show(p)
    created = json.loads(p.stdout)
    # `create` has returned (its process is gone) while the job is still to run: it lives on in
    # its own detached supervisor.
    assert created["CompilationJobStatus"] in ("STARTING", "INPROGRESS"), created
    statuses: list[str] = []
    jobs_env.poll("digits-x86", lambda j: j.status in TERMINAL, statuses=statuses)
    assert "INPROGRESS" in statuses and statuses[-1] == "COMPLETED", statuses

    p = jobs_env.neo("jobs", "wait", "digits-x86", "--timeout", "60")
    artifact = root / "out" / "model-x86_64.tar.gz"
    assert p.returncode == 0 and p.stdout.split() == ["digits-x86", "COMPLETED", str(artifact)], \
        show(p)
    d = jobs_env.describe("digits-x86")
    assert d["CompilationJobStatus"] == "COMPLETED" and d["FailureReason"] is None
    assert d["ModelArtifacts"]["S3ModelArtifacts"] == str(artifact)
    assert d["ModelDigests"]["ArtifactDigest"] == blake2b(artifact)
    assert json.loads(d["DerivedInformation"]["DerivedDataInputConfig"]) == {"input": [16, 64]}
    assert d["InputConfig"] == {"S3Uri": str(root / "model.tar.gz"),
                                "DataInputConfig": DIGITS_SHAPE, "Framework": "ONNX",
                                "FrameworkVersion": None}
    assert d["OutputConfig"]["S3OutputLocation"] == str(root / "out")
    assert d["OutputConfig"]["TargetDevice"] == "x86_64"
    assert d["StoppingCondition"] == {"MaxRuntimeInSeconds": 300}
    assert d["Tags"] == [{"Key": "team", "Value": "vision"}]
    assert d["RoleArn"] == "arn:aws:iam::123456789012:role/neo"
    assert d["CreationTime"] <= d["CompilationStartTime"] <= d["CompilationEndTime"] \
        <= d["LastModifiedTime"]
    assert d["Execution"]["Attempts"] == 1 and d["Execution"]["Backend"] == "local"
    assert files_in(root / "out") == ["model-x86_64.tar.gz"]  # nothing else, nothing hidden

    # The artifact is neo compile's directory at the root of the .tar.gz, and it runs: the same
    # probabilities as onnxruntime on real digits.
    import onnxruntime as ort

    from neo.runtime import Model

    with tarfile.open(artifact) as tar:
        assert sorted(tar.getnames()) == ARTIFACT_FILES
        tar.extractall(root / "extracted", filter="data")
    x = np.load(digits.parent / "x16.npy")
    want = ort.InferenceSession(str(digits)).run(None, {"input": x})[0]
    with Model(str(root / "extracted")) as m:
        got = m.run(x)[0]
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    assert (got.argmax(1) == np.load(digits.parent / "y16.npy")).mean() >= 0.8

    log = jobs_env.neo("jobs", "logs", "digits-x86")
    assert log.returncode == 0 and "[worker]" in log.stdout and "COMPLETED" in log.stdout, show(log)
    human = jobs_env.neo("jobs", "describe", "digits-x86")
    assert "CompilationJobStatus: COMPLETED" in human.stdout, show(human)

    # The name is taken: Neo's ResourceInUse, and the store still holds one job.
    dup = jobs_env.neo("jobs", "create", "--config", "job.yaml")
    assert_one_error(dup, 2, "ResourceInUse", "digits-x86")
    assert len(jobs_env.store.query()) == 1


def test_unsupported_operators_fail_the_job_listing_all(jobs_env: JobsEnv):
    model = unsupported_model(jobs_env.root / "uns.onnx")
    p = jobs_env.neo("jobs", "create", "--name", "uns", "--model", model, "--framework", "onnx",
                     "--target", "arm64", "--output", "out")
    assert p.returncode == 0, show(p)
    w = jobs_env.neo("jobs", "wait", "uns", "--timeout", "120")
    line = assert_one_error(w, 10, "uns FAILED")
    d = jobs_env.describe("uns")
    reason = d["FailureReason"]
    assert reason.startswith("ClientError: OperatorNotImplemented: The following operators are "
                             "not implemented:"), reason
    assert "Det (1 node: det0)" in reason and "Unique (1 node: uniq0)" in reason, reason
    assert reason in line
    assert d["Execution"]["FailureExitCode"] == 4  # neo compile's exit code for the same model
    assert d["ModelArtifacts"]["S3ModelArtifacts"] is None
    assert d["ModelDigests"]["ArtifactDigest"] is None
    assert files_in(jobs_env.root / "out") == []


def test_stop_and_queue(jobs_env: JobsEnv, digits: Path):
    """With --max-parallel 1 a second and third job wait as STARTING; stopping the queued one
    never starts it; stopping the running one kills its compile and leaves nothing behind; then
    the queue moves on, the next job taken over by the supervisor whose compiler is loaded."""
    root = jobs_env.root
    slow = conv_chain(root / "chain.onnx", 26)
    common = ["--framework", "onnx", "--target", "x86_64", "--max-parallel", "1"]
    assert jobs_env.neo("jobs", "create", "--name", "slow", "--model", slow, "--output",
                        "out-slow", *common).returncode == 0
    slow_job = jobs_env.poll("slow", lambda j: j.status == "INPROGRESS", timeout=60)
    creates = [subprocess.Popen(
        [sys.executable, "-m", "neo", "jobs", "create", "--name", name, "--model", str(digits),
         "--shape", DIGITS_SHAPE, "--output", f"out-{name}", *common], cwd=root, env=jobs_env.env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in ("next", "last")]
    for c in creates:
        out, err = c.communicate(timeout=60)
        assert c.returncode == 0, (out, err)
    jobs_env.poll("last", lambda j: j.supervisor_pid is not None)
    time.sleep(0.8)  # time enough for a slot to be taken, were one free
    assert [jobs_env.store.get(n).status for n in ("slow", "next", "last")] == \
        ["INPROGRESS", "STARTING", "STARTING"]
    timed = jobs_env.neo("jobs", "wait", "next", "--timeout", "0.5")
    assert_one_error(timed, 12, "still STARTING")

    p = jobs_env.neo("jobs", "stop", "last")
    assert p.returncode == 0 and p.stdout.split()[1] in ("STOPPING", "STOPPED"), show(p)
    assert_one_error(jobs_env.neo("jobs", "wait", "last", "--timeout", "30"), 11, "STOPPED")
    assert jobs_env.describe("last")["CompilationStartTime"] is None  # it never ran

    worker_pid = int(jobs_env.store.get("slow").worker.split()[-1])
    assert proc.alive(worker_pid, None, None)
    p = jobs_env.neo("jobs", "stop", "slow", "--json")
    assert p.returncode == 0, show(p)
    assert json.loads(p.stdout)["CompilationJobStatus"] in ("STOPPING", "STOPPED")
    w = jobs_env.neo("jobs", "wait", "slow", "--timeout", "30", "--json")
    assert w.returncode == 11, show(w)
    d = json.loads(w.stdout)
    assert d["CompilationJobStatus"] == "STOPPED" and d["CompilationEndTime"] is not None
    assert d["ModelArtifacts"]["S3ModelArtifacts"] is None
    assert files_in(root / "out-slow") == []  # no artifact, no partial file
    assert not (jobs_env.store.job_dir(slow_job) / "stage").exists()
    assert not proc.alive(worker_pid, None, None)

    # The slot the stop freed went, in the same transaction, to the oldest waiting job, under
    # the supervisor that had its compiler loaded already.
    w = jobs_env.neo("jobs", "wait", "next", "--timeout", "120")
    assert w.returncode == 0, show(w)
    assert files_in(root / "out-next") == ["digits-x86_64.tar.gz"]
    assert jobs_env.store.get("next").supervisor_pid == slow_job.supervisor_pid
    assert "takes over job next" in jobs_env.neo("jobs", "logs", "next").stdout


def test_max_runtime_fails_the_job_with_a_time_out(jobs_env: JobsEnv):
    slow = conv_chain(jobs_env.root / "chain.onnx", 25)
    p = jobs_env.neo("jobs", "create", "--name", "too-slow", "--model", slow, "--framework",
                     "onnx", "--target", "x86_64", "--output", "out", "--max-runtime", "1")
    assert p.returncode == 0, show(p)
    follow = jobs_env.neo("jobs", "logs", "too-slow", "--follow", timeout=60)
    assert follow.returncode == 0 and "MaxRuntimeInSeconds exceeded" in follow.stdout, show(follow)
    line = assert_one_error(jobs_env.neo("jobs", "wait", "too-slow"), 10, "FAILED", "TimeOut")
    assert "MaxRuntimeInSeconds (1 s)" in line
    d = jobs_env.describe("too-slow")
    assert d["FailureReason"].startswith("TimeOut:")
    job = jobs_env.store.get("too-slow")
    assert 1.0 <= job.end_time - job.start_time < 1.0 + 5 + 2  # the limit, then at most the grace
    assert files_in(jobs_env.root / "out") == []


# -- crash -------------------------------------------------------------------------------------


def test_kill_9_of_the_supervisor_fails_the_job_on_next_describe(jobs_env: JobsEnv):
    slow = conv_chain(jobs_env.root / "chain.onnx", 24)
    p = jobs_env.neo("jobs", "create", "--name", "doomed", "--model", slow, "--framework",
                     "onnx", "--target", "x86_64", "--output", "out")
    assert p.returncode == 0, show(p)
    job = jobs_env.poll("doomed", lambda j: j.status == "INPROGRESS" and j.worker is not None)
    worker_pid = int(job.worker.split()[-1])
    os.kill(job.supervisor_pid, signal.SIGKILL)
    # The compile dies with its supervisor (PR_SET_PDEATHSIG) and never writes an artifact.
    end = time.monotonic() + 10
    while proc.alive(worker_pid, None, None):
        assert time.monotonic() < end, "the worker outlived its supervisor"
        time.sleep(0.05)
    assert jobs_env.store.get("doomed").status == "INPROGRESS"  # nobody has looked yet
    d = jobs_env.describe("doomed")
    assert d["CompilationJobStatus"] == "FAILED", d
    assert d["FailureReason"].startswith("WorkerLost: the job's supervisor "
                                         f"(pid {job.supervisor_pid}"), d["FailureReason"]
    assert "killed or crashed" in d["FailureReason"]
    assert jobs_env.store.integrity_check() == "ok"
    assert files_in(jobs_env.root / "out") == []
    assert not (jobs_env.store.job_dir(job) / "stage").exists()
    assert_one_error(jobs_env.neo("jobs", "wait", "doomed"), 10, "WorkerLost")


# -- list ----------------------------------------------------------------------------------------


def test_list_filters_sorting_and_paging_over_150_jobs(jobs_env: JobsEnv):
    """150 jobs written straight through the store API (compiling 150 models would only make the
    test slow: list reads rows). Unfinished ones name this test process as their supervisor, so
    the dead-job check sees them alive, as it would real ones."""
    store = jobs_env.store
    rng = np.random.default_rng(3)
    base = 1_790_000_000.0  # 2026-09-21
    statuses = ["STARTING", "INPROGRESS", "COMPLETED", "FAILED", "STOPPING", "STOPPED"]
    me = os.getpid()
    for i, n in enumerate(rng.permutation(150)):
        status = statuses[i % 6]
        t = base + 60.0 * i
        job = JobRecord(
            f"model-{n:03d}", status, t, t + 30.0 + (i % 7),
            {"InputConfig": {"S3Uri": "/m.onnx", "DataInputConfig": None, "Framework": "ONNX",
                             "FrameworkVersion": None},
             "OutputConfig": {"S3OutputLocation": "/out", "TargetDevice": "rasp4b",
                              "TargetPlatform": None, "CompilerOptions": None},
             "StoppingCondition": {"MaxRuntimeInSeconds": 900}, "Tags": [], "RoleArn": None},
            {"Backend": "local", "MaxParallel": 2, "UseCache": True,
             "ArtifactName": "m-rasp4b.tar.gz"},
            host=proc.host_name(), boot_id=proc.boot_id(), supervisor_pid=me,
            supervisor_start=proc.start_time(me))
        store.insert(job)
    rows = store.query()
    by_time = [j.name for j in rows]
    assert len(by_time) == 150

    def listed(*args) -> tuple[list[dict], str | None]:
        p = jobs_env.neo("jobs", "list", "--json", *args)
        assert p.returncode == 0, show(p)
        out = json.loads(p.stdout)
        return out["CompilationJobSummaries"], out["NextToken"]

    everything, token = listed()
    assert [s["CompilationJobName"] for s in everything] == by_time and token is None
    assert all(s["CompilationTargetDevice"] == "rasp4b" for s in everything)

    # Pages of 40 in creation order: 40, 40, 40, 30; together exactly the list, no repeats.
    pages, token = [], None
    while True:
        page, token = listed("--max-results", "40", *(["--next-token", token] if token else []))
        pages.append([s["CompilationJobName"] for s in page])
        if token is None:
            break
    assert [len(p) for p in pages] == [40, 40, 40, 30]
    assert [n for page in pages for n in page] == by_time

    by_status, _ = listed("--sort-by", "Status")
    key = {j.name: (j.status, j.creation_time) for j in rows}
    got = [s["CompilationJobName"] for s in by_status]
    assert got == sorted(by_time, key=lambda n: key[n])

    # Filter and sort together, flags in any case: the 25 COMPLETED ones by name, descending.
    completed, _ = listed("--status-equals", "completed", "--sort-by", "name", "--sort-order",
                          "descending")
    names = [s["CompilationJobName"] for s in completed]
    assert names == sorted((n for n in by_time if key[n][0] == "COMPLETED"), reverse=True)
    assert len(names) == 25

    contains, _ = listed("--name-contains", "L-04")
    assert sorted(s["CompilationJobName"] for s in contains) == \
        sorted(n for n in by_time if "l-04" in n.lower())
    assert len(contains) == 10

    # Jobs 100..120 by creation time (epoch seconds and ISO with a zone), of which those last
    # modified before job 110 was created: 100..109.
    after, before = base + 60.0 * 99.5, base + 60.0 * 120.5
    window, _ = listed("--creation-time-after", f"{after}", "--creation-time-before",
                       time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(before)),
                       "--last-modified-time-before", f"{base + 60.0 * 110}")
    assert [s["CompilationJobName"] for s in window] == by_time[100:110]

    human = jobs_env.neo("jobs", "list", "--max-results", "5")
    assert human.returncode == 0 and len(human.stdout.splitlines()) == 6, show(human)
    token = human.stderr.split("--next-token", 1)[1].split()[0]

    assert_one_error(jobs_env.neo("jobs", "list", "--max-results", "101"), 2, "1 to 100")
    assert_one_error(jobs_env.neo("jobs", "list", "--status-equals", "FAILED", "--next-token",
                                  token), 2, "other filters")
    assert_one_error(jobs_env.neo("jobs", "list", "--creation-time-after", "yesterday"), 2,
                     "expected a time")
    # The unfinished ones are still unfinished: their supervisor (this process) is alive.
    assert sum(1 for j in store.query() if j.status in ACTIVE) == 75


# -- validation at create ------------------------------------------------------------------------

_GOOD = {"CompilationJobName": "ok-name",
         "InputConfig": {"S3Uri": "MODEL", "DataInputConfig": DIGITS_SHAPE, "Framework": "ONNX"},
         "OutputConfig": {"S3OutputLocation": "out", "TargetDevice": "rasp4b"}}


def _with(path: str, value) -> dict:
    doc = json.loads(json.dumps(_GOOD))
    *parents, last = path.split(".")
    node = doc
    for p in parents:
        node = node[p]
    if value is None:
        node.pop(last)
    else:
        node[last] = value
    return doc


INVALID = [
    ("name-pattern", _with("CompilationJobName", "bad_name"), [], "CompilationJobName"),
    ("name-too-long", _with("CompilationJobName", "a" * 64), [], "1 to 63"),
    ("name-missing", _with("CompilationJobName", None), [], "CompilationJobName is required"),
    ("device-and-platform", _with("OutputConfig.TargetPlatform", {"Os": "LINUX", "Arch": "ARM64"}),
     [], "not both"),
    ("no-target", _with("OutputConfig.TargetDevice", None), [], "TargetDevice or TargetPlatform"),
    ("unknown-target", _with("OutputConfig.TargetDevice", "rasp5b"), [], "did you mean rasp4b"),
    ("gpu-platform", _with("OutputConfig.TargetDevice", None),
     ["--target-platform", "os=LINUX,arch=ARM64,accelerator=NVIDIA"], "NVIDIA"),
    ("unknown-field", _with("OutputConfig.TargetDevise", "rasp4b"), [],
     "did you mean TargetDevice"),
    ("unknown-top-field", _with("Foo", 1), [], "unknown field 'Foo'"),
    ("refused-field", _with("VpcConfig", {"Subnets": []}), [], "VpcConfig is not supported"),
    ("shape-json", _with("InputConfig.DataInputConfig", "{'input': [16, 64]}"), [],
     "double quotes"),
    ("shape-list-for-onnx", _with("InputConfig.DataInputConfig", "[[16,64]]"), [],
     "only PyTorch takes a list"),
    ("shape-name", _with("InputConfig.DataInputConfig", '{"data":[16,64]}'), [],
     "the model does not have"),
    ("pytorch-names", _with("InputConfig.Framework", "PYTORCH"), [], "input0"),
    ("framework", _with("InputConfig.Framework", "DARKNET"), [], "unknown framework"),
    ("max-runtime", _with("StoppingCondition", {"MaxRuntimeInSeconds": 0}), [], ">= 1"),
    ("compiler-options", _with("OutputConfig.CompilerOptions", '{"mcpu":"cortex-a99"}'), [],
     "cortex-a99"),
    ("model-missing", _with("InputConfig.S3Uri", "nowhere.onnx"), [], "no such file"),
    ("output-is-a-file", _with("OutputConfig.S3OutputLocation", "MODEL"), [], "is a file"),
    ("dask-unreachable", _GOOD, ["--backend", "dask", "--scheduler", "tcp://127.0.0.1:9"],
     "cannot reach the Dask scheduler"),
    ("scheduler-without-dask", _GOOD, ["--scheduler", "tcp://127.0.0.1:9"], "--backend dask"),
    ("bad-yaml", "InputConfig: [unclosed", [], "not valid YAML"),
]


@pytest.mark.parametrize("doc, args, needle", [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])
def test_invalid_jobs_are_refused_at_create(jobs_env: JobsEnv, digits: Path, doc, args, needle):
    text = doc if isinstance(doc, str) else json.dumps(doc).replace("MODEL", str(digits))
    (jobs_env.root / "job.json").write_text(text)
    p = jobs_env.neo("jobs", "create", "--config", "job.json", *args, "--json")
    assert_one_error(p, 2, needle)
    assert json.loads(p.stdout)["exit_code"] == 2
    # Refused before anything was recorded or started.
    assert not jobs_env.store_path.exists() or jobs_env.store.query() == []


def test_an_unusable_store_is_one_line_and_exit_2(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("not a database\n")
    env = {**os.environ, "NEO_JOB_STORE": str(tmp_path / "notes.txt")}
    assert_one_error(neo("jobs", "list", env=env), 2, "is not a neo job store")
    p = neo("jobs", "describe", "x", "--store", tmp_path / "notes.txt" / "jobs.db", env=env)
    assert_one_error(p, 2, "cannot open the job store")


# -- locations -----------------------------------------------------------------------------------


def require_fsspec() -> None:
    if in_ci():  # CI installs it (dask needs it): a skip there would hide these tests
        import fsspec  # noqa: F401
    else:
        pytest.importorskip("fsspec")


def test_file_and_fsspec_urls(jobs_env: JobsEnv, digits: Path):
    """S3Uri as a file:// URL (read without fsspec) and S3OutputLocation as an fsspec URL
    (local:// is fsspec's local file system, written through fsspec's API). Local tests compile
    for x86_64 only: each arch's runtime is built once per test session (~10-25 s here)."""
    require_fsspec()
    out = jobs_env.root / "fs-out"
    p = jobs_env.neo("jobs", "create", "--name", "urls", "--model", digits.as_uri(), "--framework",
                     "onnx", "--shape", DIGITS_SHAPE, "--target", "x86_64",
                     "--output", f"local://{out}", "--wait", "--timeout", "120")
    assert p.returncode == 0, show(p)
    d = jobs_env.describe("urls")
    assert d["InputConfig"]["S3Uri"] == digits.as_uri()
    assert d["ModelArtifacts"]["S3ModelArtifacts"] == f"local://{out}/digits-x86_64.tar.gz"
    assert files_in(out) == ["digits-x86_64.tar.gz"]
    assert d["ModelDigests"]["ArtifactDigest"] == blake2b(out / "digits-x86_64.tar.gz")


def test_local_paths_need_no_fsspec(tmp_path: Path):
    """With fsspec unimportable, local paths and file:// work and other URLs say what to
    install."""
    code = f"""
import sys
sys.modules["fsspec"] = None  # import fsspec now raises ImportError
from pathlib import Path
from neo.errors import UsageError
from neo.jobs import locations
src = Path({str(tmp_path)!r}) / "a.bin"
src.write_bytes(b"artifact")
assert locations.exists(src.as_uri()) and locations.exists(str(src))
final = locations.publish(src, {str(tmp_path / "out")!r}, "a-x86_64.tar.gz", 7)
assert Path(final).read_bytes() == b"artifact", final
assert locations.read_payload(str(src)) == {{"name": "a.bin", "data": b"artifact"}}
try:
    locations.exists("s3://bucket/model.tar.gz")
except UsageError as e:
    print(e.message, "|", e.hint)
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       check=False)
    assert p.returncode == 0, show(p)
    assert "s3:// locations need fsspec" in p.stdout and "pip install fsspec" in p.stdout
    assert sorted(os.listdir(tmp_path / "out")) == ["a-x86_64.tar.gz"]


def test_publish_through_fsspec_memory(tmp_path: Path):
    require_fsspec()
    from neo.jobs import locations

    src = tmp_path / "a.tar.gz"
    src.write_bytes(b"compiled")
    final = locations.publish(src, "memory://neo-test/out", "m-rasp4b.tar.gz", 3)
    assert final == "memory://neo-test/out/m-rasp4b.tar.gz"
    assert locations.read_bytes(final) == b"compiled"
    assert not locations.exists("memory://neo-test/out/" + locations.partial_name(
        "m-rasp4b.tar.gz", 3))
    assert locations.read_payload("memory://neo-test/out/m-rasp4b.tar.gz") == \
        {"url": "memory://neo-test/out/m-rasp4b.tar.gz"}
    got = locations.fetch(final, tmp_path / "fetched")
    assert got.read_bytes() == b"compiled"
    locations.remove(final)
    assert not locations.exists(final)


# -- concurrency ---------------------------------------------------------------------------------


def test_twenty_jobs_created_at_once_from_four_processes(jobs_env: JobsEnv, digits: Path):
    """4 processes create 5 jobs each and, at the same time, try one name another process is
    creating: every name is created exactly once, the loser gets ResourceInUse, all 20 complete
    with at most --max-parallel compiling at once, and no lock error escapes."""
    names = [f"c{p}-{i}" for p in range(4) for i in range(5)]
    shells = []
    for p in range(4):
        mine = names[p * 5:(p + 1) * 5]
        theirs = names[((p + 1) % 4) * 5 + 2]  # another shell's third name, tried at once
        # Each process runs the CLI's entry point for its creates (one interpreter start and
        # one import of the compiler per process instead of six).
        driver = (
            "from neo.main import main\n"
            f"for name in {[*mine[:2], theirs, *mine[2:]]!r}:\n"
            "    try:\n"
            f"        main(['jobs', 'create', '--name', name, '--model', {str(digits)!r},\n"
            f"              '--framework', 'onnx', '--shape', {DIGITS_SHAPE!r}, '--target',\n"
            "              'x86_64', '--output', 'out/' + name, '--max-parallel', '2'])\n"
            "    except SystemExit as e:\n"
            "        print('rc', name, e.code or 0, flush=True)\n")
        shells.append(subprocess.Popen([sys.executable, "-c", driver], cwd=jobs_env.root,
                                       env=jobs_env.env, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True))
    peak, stop = [0], threading.Event()

    def watch():  # the number compiling at once, as the store says
        while not stop.is_set():
            if jobs_env.store_path.exists():
                running = jobs_env.store.query(status="INPROGRESS")
                peak[0] = max(peak[0], len(running))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        outputs = [s.communicate(timeout=240) for s in shells]
        results = [ln.split() for out, _ in outputs for ln in out.splitlines()
                   if ln.startswith("rc ")]
        assert len(results) == 24
        wins = sorted(n for _, n, rc in results if rc == "0")
        losses = [(n, rc) for _, n, rc in results if rc != "0"]
        assert wins == sorted(names), outputs
        assert len(losses) == 4 and all(rc == "2" for _, rc in losses), outputs
        stderr = "".join(err for _, err in outputs)
        assert stderr.count("ResourceInUse") == 4, stderr
        end = time.monotonic() + 240
        while any(j.status not in TERMINAL for j in jobs_env.store.query()):
            assert time.monotonic() < end, "jobs did not finish"
            time.sleep(0.2)
    finally:
        stop.set()
        watcher.join()
    jobs = jobs_env.store.query()
    assert sorted(j.name for j in jobs) == sorted(names)
    assert [j.status for j in jobs] == ["COMPLETED"] * 20, [(j.name, j.failure_reason)
                                                            for j in jobs]
    assert 1 <= peak[0] <= 2
    digests = {j.digest for j in jobs}
    assert len(digests) == 1  # the same model and target: the same bytes every time
    for j in jobs:
        assert blake2b(Path(j.artifact)) == j.digest
    assert jobs_env.store.integrity_check() == "ok"
    logs = "".join(p.read_text() for p in jobs_env.store.jobs_dir.rglob("job.log"))
    assert "locked" not in (logs + stderr).lower()
