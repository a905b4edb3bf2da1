"""A subset of the kernel tests on arm64 and armv7 (128-bit NEON) under qemu, in the runtime's
checked mode: the conv families (armv7; arm64 runs them in test_conv_kernels.py), the pool and
pad plane kernels with tails, and the matmul GEMM with its row/batch fold.
"""
from __future__ import annotations

import numpy as np
import pytest
from test_conv_kernels import CASES as CONV_CASES
from test_conv_kernels import _graph as conv_graph

from neo import ir
from neo.codegen.build import build_artifact
from neo.ir.interpreter import interpret
from neo.passes import run_pipeline
from neo.targets import get_target

ARCHES = ["arm64", "armv7"]


def _run(gr: ir.Graph, feeds: dict, target_name: str, tmp_path, require_qemu) -> None:
    from neo.run import run_artifact

    require_qemu(target_name)
    refs = interpret(gr, feeds)
    target = get_target(target_name)
    build_artifact(run_pipeline(gr, 3), target, tmp_path,
                   {"inputs": [{"name": k, "dtype": "float32", "shape": list(v.shape)}
                               for k, v in feeds.items()],
                    "outputs": [{"name": f"y{i}", "dtype": "float32", "shape": list(r.shape)}
                                for i, r in enumerate(refs)]})
    _, outs, info = run_artifact(tmp_path, feeds, check=True)
    assert info["emulated"]
    for out, ref in zip(outs, refs):
        assert out.shape == ref.shape
        assert np.abs(out - ref).max() <= 1e-5 * max(np.abs(ref).max(), 1e-6)


@pytest.mark.parametrize("case", [CONV_CASES[i][0] for i in (0, 6, 14, 19, 20)],
                         ids=["channel", "depthwise-s2", "1x1-chunks", "direct", "winograd"])
def test_conv_kernel_on_armv7(case, tmp_path, require_qemu):
    gr, feeds = conv_graph(*case, np.random.default_rng(2))
    _run(gr, feeds, "armv7", tmp_path, require_qemu)


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("case", [("max_pool", 23, 3, 2, 1, 1), ("max_pool", 13, 3, 3, 1, 1),
                                  ("avg_pool", 17, 3, 2, 1, 0)],
                         ids=["max-s2-ceil", "max-s3", "avg-s2"])
def test_pool_kernel_cross_arch(case, arch, tmp_path, require_qemu):
    op, hw, k, s, p, ceil = case
    g = ir.Graph()
    x = g.input("x", (1, 6, hw, hw + 2))
    y = g.op(op, x, kernel=(k, k), strides=(s, s), pads=(p, p, p, p), ceil_mode=ceil)
    g.outputs = [g.op("relu", y)]
    feeds = {"x": np.random.default_rng(3).normal(size=(1, 6, hw, hw + 2)).astype(np.float32)}
    _run(g, feeds, arch, tmp_path, require_qemu)


@pytest.mark.parametrize("arch", ARCHES)
def test_pad_plane_kernel_cross_arch(arch, tmp_path, require_qemu):
    g = ir.Graph()
    x = g.input("x", (1, 3, 9, 13))
    g.outputs = [g.op("pad", g.op("tanh", x), pads=(0, 0, 2, 1, 0, 0, 1, 3), value=-0.5)]
    feeds = {"x": np.random.default_rng(4).normal(size=(1, 3, 9, 13)).astype(np.float32)}
    _run(g, feeds, arch, tmp_path, require_qemu)


@pytest.mark.parametrize("arch", ARCHES)
def test_matmul_gemm_cross_arch(arch, tmp_path, require_qemu):
    """Batched rows times a constant matrix (folded into one GEMM), with a bias epilogue and a
    column tail; and a run-time B."""
    r = np.random.default_rng(5)
    g = ir.Graph()
    a = g.input("a", (3, 5, 37))
    b = g.input("b", (3, 37, 11))
    w = g.const(r.normal(size=(37, 19)).astype(np.float32), "w")
    bias = g.const(r.normal(size=19).astype(np.float32), "bias")
    g.outputs = [g.op("relu", g.op("add", g.op("matmul", a, w), bias)), g.op("matmul", a, b)]
    feeds = {"a": r.normal(size=(3, 5, 37)).astype(np.float32),
             "b": r.normal(size=(3, 37, 11)).astype(np.float32)}
    _run(g, feeds, arch, tmp_path, require_qemu)
