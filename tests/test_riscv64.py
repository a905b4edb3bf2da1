"""riscv64 as a target: models compiled for it run under qemu-riscv64-static and match onnxruntime,
and every kernel family falls back correctly where vectors are narrow or absent.

Two targets: `riscv64` (RV64GC, scalar floats: vector_bits 32, every kernel at one lane) and
`rv64gcv` (RVV 1.0 with 128-bit vectors). qemu runs each on the CPU its code needs: vectors off for
riscv64 (a vector instruction in scalar code would trap), on with VLEN 128 for rv64gcv.

The scalar fallbacks are also checked natively, fast: the x86_64 target with its vector width
forced to 32 bits (one lane) and 64 bits (two lanes, as a Zve32f/Zvl64b CPU would get) runs the
conv, pool, pad and matmul cases of the kernel tests in checked mode.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from conftest import run_artifact_checked
from test_conv_kernels import _graph as conv_graph
from test_e2e_models import assert_matches_reference, references  # noqa: F401 (a fixture)

from neo import ir
from neo.codegen.build import build_artifact
from neo.ir.interpreter import interpret
from neo.passes import run_pipeline
from neo.targets import get_target

# -- end to end under qemu ------------------------------------------------------------------------

# mobilenet_v2 on RVV: depthwise plane kernels, channel-vector convs and GEMM at 4 lanes;
# squeezenet1_1 scalar: concat + max pool and every conv at one lane. ~15-20 s each under qemu.
MODELS = [("mobilenet_v2", "rv64gcv"), ("squeezenet1_1", "riscv64")]


# one pytest-xdist worker per torchvision model: its export and reference run once
@pytest.mark.parametrize(("name", "target"), [
    pytest.param(n, t, id=f"{n}-{t}", marks=pytest.mark.xdist_group(f"torchvision-{n}"))
    for n, t in MODELS])
def test_torchvision_model_on_riscv64(name, target, references, compile_cached,  # noqa: F811
                                      require_qemu):
    from neo.run import run_artifact

    require_qemu(target)
    path, inputs = references(name)
    art = compile_cached(path, target, shape={"input": [1, 3, 224, 224]})
    meta = json.loads((art / "compiled.meta").read_text())
    assert meta["target"] == get_target(target).meta()
    for i, (x, ref) in enumerate(inputs):
        names, outs, info = run_artifact(art, {"input": x}, threads=2)
        assert names == ["output"] and info["arch"] == "riscv64" and info["emulated"]
        assert_matches_reference(outs[0], ref, f"{name} on {target}, input {i}")


def test_cli_compiles_and_runs_riscv64(small_cnn, tmp_path, require_qemu):
    """`neo compile --target-platform os=LINUX,arch=RISCV64` then `neo run` (qemu) on the result."""
    require_qemu("riscv64")
    out = tmp_path / "out"

    def neo(*args):
        return subprocess.run([sys.executable, "-m", "neo", *map(str, args), "--json"],
                              capture_output=True, text=True, timeout=600, check=False)

    proc = neo("compile", small_cnn.path, "--framework", "onnx", "--shape", small_cnn.shape_json,
               "--target-platform", "os=LINUX,arch=RISCV64", "--output", out)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((out / "compiled.meta").read_text())
    assert (meta["target"]["triple"], meta["target"]["vector_bits"]) == (
        "riscv64-unknown-linux-gnu", 32)
    x = small_cnn.sample(5)
    np.save(tmp_path / "x.npy", x)
    proc = neo("run", out, "--input", f"{small_cnn.input_name}={tmp_path / 'x.npy'}",
               "--output", tmp_path / "y.npz", "--check")
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["emulated"] is True and res["emulator"] == "qemu-riscv64-static", res
    ref = small_cnn.reference(x)
    with np.load(tmp_path / "y.npz") as z:
        out_y = z[small_cnn.output_name]
    assert ref.std() > 1e-2, f"degenerate reference {ref}"
    assert np.abs(out_y - ref).max() <= 1e-4 * np.abs(ref).max()


def test_neo_targets_lists_riscv64():
    proc = subprocess.run([sys.executable, "-m", "neo", "targets"], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.strip()}
    assert rows["riscv64"][1:4] == ["riscv64-unknown-linux-gnu", "generic-rv64", "32-bit"]
    assert rows["rv64gcv"][1:4] == ["riscv64-unknown-linux-gnu", "generic-rv64", "128-bit"]
    proc = subprocess.run([sys.executable, "-m", "neo", "targets", "--json"], capture_output=True,
                          text=True, timeout=120, check=False)
    targets = {t["name"]: t for t in json.loads(proc.stdout)["targets"]}
    assert targets["rv64gcv"]["features"] == "+m,+a,+f,+d,+c,+v"
    assert (targets["riscv64"]["os"], targets["riscv64"]["abi"]) == ("linux", "gnu")


# -- scalar and two-lane kernels, natively -------------------------------------------------------

NARROW = (32, 64)
# one conv case per kernel family and shape hazard of test_conv_kernels.CASES:
# (in channels, out channels, H, W, kernel, stride, pads, dilation, groups)
CONVS = {
    "channel": (8, 16, 20, 20, 3, 1, 1, 1, 1),
    "7x7-plane": (8, 32, 7, 7, 3, 1, 1, 1, 1),
    "grouped-6": (4, 12, 17, 17, 3, 1, 1, 1, 2),
    "depthwise-s2": (8, 8, 21, 37, 3, 2, 1, 1, 8),
    "dw-multiplier": (8, 16, 14, 14, 3, 1, 1, 1, 8),
    "dilated": (8, 16, 20, 20, 5, 1, 2, 2, 1),
    "stem": (3, 16, 32, 32, 7, 2, 3, 1, 1),
    "1x1-gemm": (12, 20, 16, 40, 1, 1, 0, 1, 1),
    "1x1-chunks": (160, 24, 7, 7, 1, 1, 0, 1, 1),
    "im2col": (12, 20, 15, 15, 1, 2, 0, 1, 1),
    "asym-pads": (8, 13, 16, 18, 3, 1, (1, 0, 2, 1), 1, 1),
    "few-channels": (8, 4, 12, 40, 3, 1, 1, 1, 1),
    "winograd": (16, 24, 20, 20, 3, 1, 1, 1, 1),
    "one-column-gemm": (1, 1, 7, 3, 5, 1, (0, 0, 0, 2), 1, 1),
    "one-column": (8, 16, 9, 1, 3, 1, 1, 1, 1),
}


def narrow_target(bits: int):
    return replace(get_target("x86_64"), name=f"x86_64-w{bits}", vector_bits=bits)


def _check(g: ir.Graph, feeds: dict, bits: int, level: int, tmp_path, rtol: float = 1e-5) -> None:
    ref = interpret(g, feeds)[0]
    target = narrow_target(bits)
    build_artifact(run_pipeline(g, level), target, tmp_path, {"inputs": []}, level)
    out = run_artifact_checked(tmp_path, feeds)[0]  # checked mode: guard bytes per buffer
    assert np.nanmax(np.abs(ref)) > 0  # an informative reference
    err = np.nanmax(np.abs(out - ref))
    assert np.array_equal(np.isnan(out), np.isnan(ref)) and err <= rtol * np.nanmax(np.abs(ref)), (
        f"{bits}-bit vectors: max error {err:.3g}")


@pytest.mark.parametrize("bits", NARROW)
@pytest.mark.parametrize("conv", list(CONVS))
def test_conv_at_narrow_widths(conv, bits, tmp_path):
    g, feeds = conv_graph(*CONVS[conv], np.random.default_rng(0))
    _check(g, feeds, bits, 3, tmp_path)


POOLS = [  # (op, H, W, kernel, stride, pad, ceil_mode, dilation)
    ("max_pool", 111, 111, 3, 2, 0, 1, 1),
    ("max_pool", 20, 21, 2, 2, 0, 1, 1),
    ("max_pool", 19, 23, 3, 1, 2, 0, 2),
    ("avg_pool", 17, 19, 3, 2, 1, 1, 1),
]


@pytest.mark.parametrize("bits", NARROW)
@pytest.mark.parametrize("case", POOLS, ids=lambda c: "-".join(map(str, c)))
def test_pool_at_narrow_widths(case, bits, tmp_path):
    op, h, w, k, s, p, ceil, d = case
    g = ir.Graph()
    x = g.input("x", (1, 5, h, w))
    pool = g.op(op, x, kernel=(k, k), strides=(s, s), pads=(p, p, p, p), ceil_mode=ceil,
                count_include_pad=0, dilations=(d, d))
    g.outputs = [g.op("relu", pool)]
    feeds = {"x": np.random.default_rng(0).normal(size=(1, 5, h, w)).astype(np.float32)}
    feeds["x"][0, 1, 3, 4] = np.nan  # max pooling propagates NaN
    _check(g, feeds, bits, 3, tmp_path)


@pytest.mark.parametrize("bits", NARROW)
def test_concat_pool_pad_and_matmul_at_narrow_widths(bits, tmp_path):
    """squeezenet's concat + max pool, a spatial constant pad, and matmuls with row tails."""
    rng = np.random.default_rng(1)
    g = ir.Graph()
    a, b = g.input("a", (2, 3, 15, 15)), g.input("b", (2, 5, 15, 15))
    cat = g.op("concat", a, b, axis=1)
    pooled = g.op("max_pool", cat, kernel=(3, 3), strides=(2, 2), pads=(0, 0, 0, 0), ceil_mode=1,
                  count_include_pad=0, dilations=(1, 1))
    padded = g.op("pad", pooled, pads=(0, 0, 1, 2, 0, 0, 3, 1), mode="constant", value=-1.5)
    flat = g.op("reshape", padded, shape=(2, 8 * 11 * 10))
    w = g.const(rng.normal(size=(8 * 11 * 10, 13)).astype(np.float32), "w")
    g.outputs = [g.op("matmul", flat, w)]
    feeds = {"a": rng.normal(size=(2, 3, 15, 15)).astype(np.float32),
             "b": rng.normal(size=(2, 5, 15, 15)).astype(np.float32)}
    _check(g, feeds, bits, 3, tmp_path)
