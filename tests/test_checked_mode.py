"""The runtime's checked mode and its crash reports.

Checked mode (NEO_LOAD_CHECKED in neort.h, `Model(path, check=True)`, `neo-run --check`,
`neo run --check`) puts guard bytes around every buffer and verifies them after every kernel. Hand-made
artifacts (the pattern of test_runtime.py: C kernels compiled with zig, graph JSON written by hand)
with deliberately broken kernels check that each kind of out-of-bounds write is caught and named,
that a kernel that faults is reported as one line naming it, and that correct models give the same
outputs in both modes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from neo import ir
from neo.codegen.build import build_artifact
from neo.codegen.toolchain import build_runtime, compile_c, host_arch, link_shared, zig_cc
from neo.ir.interpreter import interpret
from neo.passes import run_pipeline
from neo.runtime import Model
from neo.runtime.params import write_params
from neo.targets import get_target

N = 128  # floats per tensor: 512 bytes, so tensors sit back to back in the unchecked arena
NB = 4 * N
REPO = Path(__file__).resolve().parent.parent

KERNELS = r"""
#include <stdint.h>
#define N 128

static void share(int32_t task, int32_t ntasks, int64_t *lo, int64_t *hi) {
    *lo = (int64_t)N * task / ntasks;
    *hi = (int64_t)N * (task + 1) / ntasks;
}

/* b = x * x, c = x + 3 */
int32_t k_prep(void **args, int32_t task, int32_t ntasks) {
    const float *x = args[0];
    float *b = args[1], *c = args[2];
    int64_t lo, hi;
    share(task, ntasks, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) b[i] = x[i] * x[i], c[i] = x[i] + 3.0f;
    return 0;
}

/* a = 2x: the correct kernel and its broken variants */
int32_t k_double(void **args, int32_t task, int32_t ntasks) {
    const float *x = args[0];
    float *a = args[1];
    int64_t lo, hi;
    share(task, ntasks, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) a[i] = 2.0f * x[i];
    return 0;
}

/* the last task runs 3 elements (12 bytes) too far */
int32_t k_double_over(void **args, int32_t task, int32_t ntasks) {
    const float *x = args[0];
    float *a = args[1];
    int64_t lo, hi;
    share(task, ntasks, &lo, &hi);
    if (task == ntasks - 1) hi += 3;
    for (int64_t i = lo; i < hi; i++) a[i] = 2.0f * x[i % N];
    return 0;
}

/* task 0 starts one element (4 bytes) before the buffer */
int32_t k_double_under(void **args, int32_t task, int32_t ntasks) {
    const float *x = args[0];
    float *a = args[1];
    int64_t lo, hi;
    share(task, ntasks, &lo, &hi);
    if (task == 0) lo = -1;
    for (int64_t i = lo; i < hi; i++) a[i] = 2.0f * x[i < 0 ? 0 : i];
    return 0;
}

/* writes 8 bytes before its *input* x (an input is read-only to kernels) */
int32_t k_double_into_input(void **args, int32_t task, int32_t ntasks) {
    float *x = args[0];
    if (task == 0) x[-2] = x[-1] = 0.0f;
    return k_double(args, task, ntasks);
}

/* forgets the second half */
int32_t k_double_half(void **args, int32_t task, int32_t ntasks) {
    const float *x = args[0];
    float *a = args[1];
    int64_t lo, hi;
    share(task, ntasks, &lo, &hi);
    for (int64_t i = lo; i < hi && i < N / 2; i++) a[i] = 2.0f * x[i];
    return 0;
}

/* 4 KiB past the end: beyond the guard bytes */
int32_t k_double_far(void **args, int32_t task, int32_t ntasks) {
    float *a = args[1];
    if (task == ntasks - 1) a[N + 1024] = 1.0f;
    return k_double(args, task, ntasks);
}

/* the last task dereferences NULL (the address comes from the data: 0.0f), so on a worker
 * thread when there are several */
int32_t k_null(void **args, int32_t task, int32_t ntasks) {
    const float *x = args[0];
    if (task == ntasks - 1) *(volatile float *)(uintptr_t)(int64_t)(x[0] * 0.0f) = 1.0f;
    return k_double(args, task, ntasks);
}

/* integer division by zero in every task (traps on x86 only) */
int32_t k_divzero(void **args, int32_t task, int32_t ntasks) {
    const float *x = args[0];
    volatile int32_t zero = (int32_t)(x[0] * 0.0f);
    volatile int32_t q = 100 / zero;
    (void)q;
    return k_double(args, task, ntasks);
}

/* y = a + b + c; the _over variant writes 16 floats (64 bytes) past the end of y */
int32_t k_combine(void **args, int32_t task, int32_t ntasks) {
    const float *a = args[0], *b = args[1], *c = args[2];
    float *y = args[3];
    (void)task, (void)ntasks;
    for (int i = 0; i < N; i++) y[i] = a[i] + b[i] + c[i];
    return 0;
}

int32_t k_combine_over(void **args, int32_t task, int32_t ntasks) {
    float *y = args[3];
    k_combine(args, task, ntasks);
    for (int i = N; i < N + 16; i++) y[i] = 1.0f;
    return 0;
}
"""


def graph_json(arch: str, mid: str) -> dict:
    """x -> prep (b = x*x, c = x+3) -> mid (a = 2x) -> combine (y = a + b + c). The arena holds
    b, a, c back to back, so in unchecked mode an overrun of a lands in c and an underrun in b."""
    f32 = {"shape": [N], "dtype": "float32", "nbytes": NB}
    combine = "k_combine_over" if mid == "k_combine_over" else "k_combine"
    mid = "k_double" if mid == "k_combine_over" else mid
    return {
        "format": "neo-graph", "format_version": 1, "arch": arch,
        "triple": f"{arch}-unknown-linux-gnu", "library": "compiled.so",
        "params": "compiled.params", "workspace_nbytes": 3 * NB,
        "tensors": [
            {"id": 0, "name": "x", **f32, "storage": "input", "index": 0},
            {"id": 1, "name": "b", **f32, "storage": "workspace", "storage_id": 0, "offset": 0},
            {"id": 2, "name": "a", **f32, "storage": "workspace", "storage_id": 1, "offset": NB},
            {"id": 3, "name": "c", **f32, "storage": "workspace", "storage_id": 2,
             "offset": 2 * NB},
            {"id": 4, "name": "y", **f32, "storage": "output", "index": 0},
        ],
        "inputs": [0], "outputs": [4],
        "nodes": [
            {"name": "prep", "op": "mul", "func": "k_prep", "args": [0, 1, 3],
             "num_inputs": 1, "num_outputs": 2, "parallel": True},
            {"name": "double", "op": "mul", "func": mid, "args": [0, 2],
             "num_inputs": 1, "num_outputs": 1, "parallel": True},
            {"name": "combine", "op": "add", "func": combine, "args": [2, 1, 3, 4],
             "num_inputs": 3, "num_outputs": 1, "parallel": False},
        ],
    }


def reference(x: np.ndarray) -> np.ndarray:
    return 2 * x + x * x + (x + 3)


def sample(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.5, 2.0, N).astype(np.float32)


def write_artifact(src: Path, arch: str, mid: str, out: Path) -> Path:
    """A copy of the kernels and runtime in src with the graph that runs `mid`."""
    out.mkdir(parents=True)
    for name in ("compiled.so", "compiled.params", "libneort.so", "neo-run", "neort.h"):
        shutil.copy2(src / name, out / name)
    (out / "compiled_model.json").write_text(json.dumps(graph_json(arch, mid), indent=1))
    (out / "compiled.meta").write_text(json.dumps({
        "format_version": 1, "compiler": "hand-made", "framework": "none", "model": "test",
        "target": {"name": arch, "arch": arch, "triple": f"{arch}-unknown-linux-gnu"},
        "inputs": [{"name": "x", "dtype": "float32", "shape": [N]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [N]}],
        "options": {}, "files": {},
    }))
    return out


def _build(arch: str, out: Path) -> Path:
    out.mkdir(parents=True)
    link_shared([compile_c(KERNELS, arch, flags=["-ffp-contract=off"])], arch,
                out / "compiled.so")
    write_params(out / "compiled.params", {})
    build_runtime(arch, out)
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Kernels and runtime per arch (host and aarch64; armv7 only for the C program)."""
    root = tmp_path_factory.mktemp("checked")
    arches = sorted({host_arch(), "aarch64", "armv7"})
    with ThreadPoolExecutor(len(arches)) as pool:
        futures = {a: pool.submit(_build, a, root / a) for a in arches}
        return {a: f.result() for a, f in futures.items()}


@pytest.fixture
def artifact(built, tmp_path):
    """artifact(mid, arch=host) -> a private artifact whose middle node runs kernel `mid`."""
    def make(mid: str, arch: str | None = None) -> Path:
        arch = arch or host_arch()
        return write_artifact(built[arch], arch, mid, tmp_path / f"{arch}-{mid}")
    return make


def neo(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "neo", *map(str, args)], cwd=cwd or REPO,
                          capture_output=True, text=True, timeout=300, check=False)


def neo_run_cli(art: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    np.save(tmp / "x.npy", sample())
    return neo("run", art, "--input", tmp / "x.npy", "--output", tmp / "y.npz", *extra)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr and "Segmentation fault" not in proc.stderr
    return lines[0]


# -- out-of-bounds writes are caught and named -----------------------------------------------------

GUARD_CASES = {
    # kernel: (message part, the buffer)
    "k_double_over": ("wrote 12 bytes past the end of buffer 'a' (storage 1, 512 bytes)", "double"),
    "k_double_under": ("wrote 4 bytes before the start of buffer 'a' (storage 1, 512 bytes)",
                       "double"),
    "k_double_into_input": ("wrote 8 bytes before the start of buffer 'x' (input 0, 512 bytes)",
                            "double"),
    "k_combine_over": ("wrote 64 bytes past the end of buffer 'y' (output 0, 512 bytes)",
                       "combine"),
}


@pytest.mark.parametrize("kernel", list(GUARD_CASES))
@pytest.mark.parametrize("threads", [1, 2])
def test_out_of_bounds_write_is_caught_and_named(kernel, threads, artifact):
    what, node = GUARD_CASES[kernel]
    with Model(artifact(kernel), num_threads=threads, check=True) as m:
        assert m.checked
        for _ in range(2):  # the guards are restored: the second run reports the same
            with pytest.raises(RuntimeError) as e:
                m.run(sample())
            assert str(e.value) == f"checked mode: kernel {kernel} (node {node}) {what}"


def test_unchecked_mode_lets_the_overrun_corrupt_a_neighbour(artifact):
    """What checked mode is for: unchecked, the 12-byte overrun of a silently lands in c."""
    x = sample()
    with Model(artifact("k_double_over")) as m:
        assert not m.checked
        y = m.run(x)[0]
    wrong = np.flatnonzero(y != reference(x))
    assert list(wrong) == [0, 1, 2], wrong


def test_write_beyond_the_guard_bytes_faults(artifact, tmp_path):
    """Past the guard bytes there is a no-access page: a fault, reported naming the kernel."""
    art = artifact("k_double_far")
    proc = neo_run_cli(art, tmp_path, "--check")
    assert proc.returncode == 6
    line = one_error_line(proc)
    assert line.startswith(f"error: kernel k_double_far (node double) crashed with SIGSEGV "
                           f"in {art} (checked mode"), line


def test_reads_of_unwritten_memory_show_as_nan(artifact):
    x, art = sample(), artifact("k_double_half")
    with Model(art, check=True) as m:
        y = m.run(x)[0]
    assert not np.isnan(y[:N // 2]).any() and np.isnan(y[N // 2:]).all(), y
    with Model(art) as m:  # unchecked: the zeroed arena hides it
        assert not np.isnan(m.run(x)[0]).any()


def test_buffers_are_aligned_and_separate_in_checked_mode(artifact):
    """Same shapes and results; the I/O buffers stay 64-byte aligned."""
    import ctypes

    art = artifact("k_double")
    x = sample(3)
    with Model(art) as plain, Model(art, num_threads=2, check=True) as checked:
        a, b = plain.run(x)[0], checked.run(x)[0]
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(b, reference(x), rtol=1e-6)
        ptr = checked._lib.neo_model_output_ptr
        ptr.restype, ptr.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_int]
        assert ptr(checked._handle, 0) % 64 == 0
        profile = checked.profile(2)  # the profiling path runs the checks too
        assert [name for name, _ in profile] == ["prep", "double", "combine"]


# -- correct compiled models: identical outputs in both modes --------------------------------------


def _mixed_graph(rng: np.random.Generator):
    """One small model through many kernel families: Winograd, channel-vector and 1x1 GEMM conv,
    explicit pad, max pool, depthwise conv, reduction, matmul, softmax."""
    g = ir.Graph()
    x = g.input("x", (1, 16, 18, 18))

    def conv(v, oc, k, groups=1, pad=None):
        ic = v.shape[1]
        w = g.const(rng.normal(size=(oc, ic // groups, k, k)).astype("float32") * 0.2)
        b = g.const(rng.normal(size=oc).astype("float32"))
        p = k // 2 if pad is None else pad
        return g.op("conv", v, w, b, strides=(1, 1), pads=(p, p, p, p), dilations=(1, 1),
                    groups=groups)

    y = g.op("relu", conv(x, 16, 3))                       # Winograd at -O3
    y = g.op("max_pool", y, kernel=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1), dilations=(1, 1))
    y = g.op("relu", conv(y, 16, 3, groups=16))            # depthwise
    y = g.op("add", conv(y, 24, 5), conv(y, 24, 1))        # 5x5 (pad node) + 1x1 GEMM
    y = g.op("reduce_mean", y, axes=(2, 3), keepdims=0)    # (1, 24)
    w = g.const(rng.normal(size=(24, 10)).astype("float32"))
    g.outputs = [g.op("softmax", g.op("matmul", y, w), axis=1)]
    return g, {"x": rng.normal(size=(1, 16, 18, 18)).astype("float32")}


@pytest.mark.parametrize("level", [0, 3])
def test_compiled_model_gives_identical_outputs_checked_and_unchecked(level, tmp_path):
    rng = np.random.default_rng(0)
    g, feeds = _mixed_graph(rng)
    ref = interpret(g, feeds)[0]
    build_artifact(run_pipeline(g, level), get_target("x86_64"), tmp_path, {"inputs": []}, level)
    with Model(tmp_path, num_threads=2) as plain, Model(tmp_path, num_threads=2, check=True) as chk:
        a = plain.run(feeds)[0]
        b, b2 = chk.run(feeds)[0], chk.run(feeds)[0]
    assert np.abs(a - ref).max() < 1e-5
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(b, b2)


def test_small_cnn_identical_in_checked_mode(small_cnn, compile_cached):
    art = compile_cached(small_cnn.path, "x86_64")
    x = small_cnn.sample(2)
    with Model(art) as plain, Model(art, check=True) as chk:
        np.testing.assert_array_equal(plain.run(x)[0], chk.run(x)[0])


# -- neo run --check and neo-run --check -----------------------------------------------------------


def test_neo_run_check_reports_one_line_and_exit_6(artifact, tmp_path):
    art = artifact("k_double_over")
    proc = neo_run_cli(art, tmp_path, "--check")
    assert proc.returncode == 6, proc.stderr
    assert one_error_line(proc) == (
        f"error: {art}: checked mode: kernel k_double_over (node double) wrote 12 bytes past the "
        f"end of buffer 'a' (storage 1, 512 bytes)")
    assert not (tmp_path / "y.npz").exists()


def test_neo_run_check_on_a_correct_model(artifact, tmp_path):
    art = artifact("k_double")
    proc = neo_run_cli(art, tmp_path, "--check", "--threads", "2")
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "y.npz") as z:
        np.testing.assert_allclose(z["y"], reference(sample()), rtol=1e-6)


@pytest.mark.parametrize("arch", ["aarch64", "armv7"])
def test_neo_run_check_under_qemu(arch, artifact, require_qemu, tmp_path):
    prefix = require_qemu(arch)
    x = sample()
    np.save(tmp_path / "x.npy", x)
    good, bad = artifact("k_double", arch), artifact("k_double_under", arch)
    proc = neo("run", good, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npz",
               "--check")
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "y.npz") as z:
        np.testing.assert_allclose(z["y"], reference(x), rtol=1e-6)
    # neo-run itself: one "neo-run: " line, exit 1
    r = subprocess.run([*prefix, str(bad / "neo-run"), str(bad), "--check", "--threads", "2",
                        "--input", f"x={tmp_path / 'x.npy'}"],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == ("neo-run: checked mode: kernel k_double_under (node double) wrote "
                                "4 bytes before the start of buffer 'a' (storage 1, 512 bytes)")


# -- fatal signals in a kernel ---------------------------------------------------------------------


@pytest.mark.parametrize("threads", ["1", "2"])  # 2: the faulting task runs on a worker thread
def test_neo_run_names_the_kernel_that_crashed(threads, artifact, tmp_path):
    art = artifact("k_null")
    proc = neo_run_cli(art, tmp_path, "--threads", threads)
    assert proc.returncode == 6
    assert one_error_line(proc) == (
        f"error: kernel k_null (node double) crashed with SIGSEGV in {art}; rerun with --check "
        f"to find an out-of-bounds write")
    assert not (tmp_path / "y.npz").exists()


@pytest.mark.skipif(host_arch() != "x86_64", reason="integer division by zero traps on x86 only")
def test_neo_run_names_a_sigfpe(artifact, tmp_path):
    """Every task traps at the same time: still one report."""
    art = artifact("k_divzero")
    proc = neo_run_cli(art, tmp_path, "--threads", "4")
    assert proc.returncode == 6
    assert "kernel k_divzero (node double) crashed with SIGFPE" in one_error_line(proc)


def test_neo_run_crash_report_under_qemu(artifact, require_qemu, tmp_path):
    require_qemu("aarch64")
    art = artifact("k_null", "aarch64")
    proc = neo_run_cli(art, tmp_path, "--threads", "2")
    assert proc.returncode == 6
    assert one_error_line(proc) == (
        f"error: kernel k_null (node double) crashed with SIGSEGV in {art}; rerun with --check "
        f"to find an out-of-bounds write")


def test_neo_run_binary_dies_of_the_signal_after_its_line(artifact, tmp_path):
    """neo-run on the device: its own line, then the default action (status shows SIGSEGV)."""
    art = artifact("k_null")
    np.save(tmp_path / "x.npy", sample())
    r = subprocess.run([str(art / "neo-run"), str(art), "--input", f"x={tmp_path / 'x.npy'}"],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == -11
    assert r.stderr.strip() == (f"neo-run: kernel k_null (node double) crashed with SIGSEGV in "
                                f"{art}; rerun with --check to find an out-of-bounds write")


# -- the C API -------------------------------------------------------------------------------------

PROGRAM = r"""
/* checked_test DIR: neo_model_load_ex with NEO_LOAD_CHECKED on an artifact whose middle kernel
 * writes past its output; prints the run's error */
#include "neort.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, what)                                                             \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "FAIL line %d: %s [%s]\n", __LINE__, what, neo_last_error()); \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

int main(int argc, char **argv) {
    CHECK(argc == 2, "usage: checked_test DIR");
    NeoModel *m = NULL;
    CHECK(neo_model_load_ex(argv[1], 2, 0x80u, &m) != 0 && m == NULL, "unknown flag accepted");
    CHECK(strstr(neo_last_error(), "unknown flags 0x80") != NULL, "unknown flag message");
    CHECK(neo_model_load(argv[1], 1, &m) == 0, "neo_model_load");
    CHECK(neo_model_flags(m) == 0, "flags of neo_model_load");
    neo_model_free(m);
    CHECK(neo_model_load_ex(argv[1], 2, NEO_LOAD_CHECKED, &m) == 0, "neo_model_load_ex");
    CHECK(neo_model_flags(m) == NEO_LOAD_CHECKED, "flags");
    CHECK(neo_model_current_node(m) == -1, "current node outside a run");
    CHECK(strcmp(neo_model_node_func(m, 1), "k_double_over") == 0, "node_func");
    CHECK(neo_model_node_func(m, 3) == NULL, "node_func out of range");
    float x[128];
    for (int i = 0; i < 128; i++) x[i] = 1.0f;
    CHECK(neo_model_set_input(m, "x", x, sizeof x) == 0, "set_input");
    CHECK(neo_model_run(m) != 0, "the overrun was not caught");
    CHECK(neo_model_current_node(m) == -1, "current node after a run");
    printf("%s\n", neo_last_error());
    neo_model_free(m);
    return 0;
}
"""

ZIG_TARGETS = {"x86_64": "x86_64-linux-gnu.2.17", "aarch64": "aarch64-linux-gnu.2.17",
               "armv7": "arm-linux-gnueabihf.2.17"}


@pytest.mark.parametrize("arch", ["x86_64", "aarch64", "armv7"])
def test_c_api_checked_mode(arch, artifact, require_qemu, tmp_path):
    prefix = require_qemu(arch)
    art = artifact("k_double_over", arch)
    (tmp_path / "checked_test.c").write_text(PROGRAM)
    exe = art / "checked_test"
    build = subprocess.run([*zig_cc(), "-target", ZIG_TARGETS[arch], "-std=c11", "-O2", "-Wall",
                            "-Wextra", "-Werror", f"-I{art}", str(tmp_path / "checked_test.c"),
                            "-o", str(exe), f"-L{art}", "-lneort", "-Wl,-rpath,$ORIGIN"],
                           capture_output=True, text=True, timeout=300, check=False)
    assert build.returncode == 0, build.stderr
    r = subprocess.run([*prefix, str(exe), str(art)], capture_output=True, text=True, timeout=120,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ("checked mode: kernel k_double_over (node double) wrote 12 bytes "
                                "past the end of buffer 'a' (storage 1, 512 bytes)")
