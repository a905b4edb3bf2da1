"""The matmul GEMM kernel: batched activations times a constant matrix run as one GEMM with the
batch folded into the rows, and the fused epilogue still sees each row's batch index."""
from __future__ import annotations

import numpy as np
import pytest

import ir
from codegen.build import build_artifact, generate_kernels
from ir.interpreter import interpret
from neo_cli.targets import get_target
from passes import run_pipeline
from runtime import Model


@pytest.mark.parametrize("shape", [(64, 1, 24), (3, 5, 24), (2, 3, 7, 24)],
                         ids=["attention-rows", "batch3x5", "rank4"])
def test_batched_rows_times_a_constant_fold_into_one_gemm(shape, tmp_path):
    rng = np.random.default_rng(0)
    g = ir.Graph()
    a = g.input("a", shape)
    w = g.const(rng.normal(size=(24, 40)).astype(np.float32), "w")
    bias = g.const(rng.normal(size=40).astype(np.float32), "bias")
    y = g.op("matmul", a, w)
    r = g.input("r", y.shape)  # varies with every batch index: a wrong fold shows up here
    g.outputs = [g.op("relu", g.op("add", g.op("add", y, bias), r))]
    feeds = {"a": rng.normal(size=shape).astype(np.float32),
             "r": rng.normal(size=y.shape).astype(np.float32)}
    ref = interpret(g, feeds)[0]
    graph = run_pipeline(g, 3)
    _, kernels = generate_kernels(graph, get_target("x86_64"))
    assert [i.kernel for _, i in kernels if i is not None] == ["gemm"]
    build_artifact(graph, get_target("host"), tmp_path, {"inputs": []})
    with Model(str(tmp_path)) as m:
        out = m.run(feeds)[0]
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()
