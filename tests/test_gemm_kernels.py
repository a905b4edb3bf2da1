"""The GEMM kernel (matmul and 1x1 conv) at every vector width (conftest.VECTOR_WIDTHS): row and
column tails around the panel width (6 rows x 2-4 vectors), constant (prepacked) and activation
B, fused epilogues, and batched activations times a constant matrix run as one GEMM with the batch
folded into the rows (the epilogue still sees each row's batch index)."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import run_artifact_checked

from neo import ir
from neo.codegen.build import build_artifact, generate_kernels
from neo.ir.interpreter import interpret
from neo.passes import run_pipeline


def _check(g, feeds, target, tmp_path, kernels_expected=("gemm",)):
    ref = interpret(g, feeds)[0]
    graph = run_pipeline(g, 3)
    _, kernels = generate_kernels(graph, target)
    assert [i.kernel for _, i in kernels if i is not None] == list(kernels_expected)
    build_artifact(graph, target, tmp_path, {"inputs": []})
    out = run_artifact_checked(tmp_path, feeds)[0]
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()


@pytest.mark.parametrize("shape", [(64, 1, 24), (3, 5, 24), (2, 3, 7, 24)],
                         ids=["attention-rows", "batch3x5", "rank4"])
def test_batched_rows_times_a_constant_fold_into_one_gemm(shape, vtarget, tmp_path):
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
    _check(g, feeds, vtarget, tmp_path)


# (M, K, N): N around multiples of 4, 8, 16, 32 and 64 lanes; M around the 6 and 8 row tiles;
# K short, odd and longer than one K block
MATMULS = [(1, 3, 1), (5, 7, 5), (7, 24, 15), (6, 16, 16), (13, 9, 17), (2, 33, 31),
           (9, 20, 33), (3, 300, 47), (8, 5, 64), (11, 12, 65), (4, 600, 129), (100, 64, 10)]


@pytest.mark.parametrize("const_b", [True, False], ids=["packed-b", "activation-b"])
@pytest.mark.parametrize("mkn", MATMULS, ids=lambda s: "x".join(map(str, s)))
def test_matmul_tails(mkn, const_b, vtarget, tmp_path):
    M, K, N = mkn
    rng = np.random.default_rng(M * 1000 + N)
    g = ir.Graph()
    a = g.input("a", (M, K))
    bm = rng.normal(size=(K, N)).astype(np.float32)
    b = g.const(bm, "b") if const_b else g.input("b", (K, N))
    y = g.op("matmul", a, b)
    r = g.input("r", (M, N))
    g.outputs = [g.op("tanh", g.op("add", y, r))]
    feeds = {"a": rng.normal(size=(M, K)).astype(np.float32),
             "r": rng.normal(size=(M, N)).astype(np.float32)}
    if not const_b:
        feeds["b"] = bm
    ref = interpret(g, feeds)[0]
    graph = run_pipeline(g, 3)
    _, kernels = generate_kernels(graph, vtarget)
    gemms = [i for _, i in kernels if i is not None and i.kernel == "gemm"]
    assert len(gemms) == 1
    if const_b:  # B is packed in panels of only the vectors its columns fill (10 -> 16, not 64)
        packed = next(a[2] for a in gemms[0].args if isinstance(a, tuple) and
                      a[1].endswith("b_packed"))
        assert packed.shape[-1] < N + 16, (packed.shape, gemms[0].tile)
    build_artifact(graph, vtarget, tmp_path, {"inputs": []})
    out = run_artifact_checked(tmp_path, feeds)[0]
    assert np.abs(out - ref).max() <= 2e-5 * np.abs(ref).max()


@pytest.mark.parametrize("chw", [(12, 5, 7), (16, 8, 8), (33, 7, 9), (64, 1, 17), (24, 14, 14)],
                         ids=lambda s: "x".join(map(str, s)))
def test_pointwise_conv_as_gemm(chw, vtarget, tmp_path):
    C, H, W = chw
    rng = np.random.default_rng(C + H)
    g = ir.Graph()
    x = g.input("x", (2, C, H, W))
    w = g.const(rng.normal(size=(20, C, 1, 1)).astype(np.float32), "w")
    bias = g.const(rng.normal(size=20).astype(np.float32), "bias")
    g.outputs = [g.op("relu", g.op("conv", x, w, bias, strides=(1, 1), pads=(0, 0, 0, 0),
                                   dilations=(1, 1), groups=1))]
    feeds = {"x": rng.normal(size=(2, C, H, W)).astype(np.float32)}
    ref = interpret(g, feeds)[0]
    graph = run_pipeline(g, 3)
    build_artifact(graph, vtarget, tmp_path, {"inputs": []})
    out = run_artifact_checked(tmp_path, feeds)[0]
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()


@pytest.mark.parametrize("M,K", [(512, 1024), (2048, 1024), (1000, 512), (256, 512), (203, 700)])
@pytest.mark.parametrize("mr,nv,lanes", [(6, 2, 8), (14, 2, 16), (8, 3, 4)])
def test_row_chunks_are_equal_and_fit_half_of_l2(M, K, mr, nv, lanes):
    """Weights past half of L2 go in as few chunks of whole MR blocks as fit in half of it, of
    about equal size: not full chunks and a small remnant."""
    from neo.codegen.kernel_gemm import Blocking, row_chunk

    l2 = 2 << 20
    rows = row_chunk(M, K, Blocking(mr, nv, lanes), 4, l2)
    if M * K * 4 <= l2 // 2:
        assert rows == 0
        return
    assert rows % mr == 0 and 0 < rows < M
    chunks = -(-M // rows)
    assert chunks <= -(-(M * K * 4) // (l2 // 2))  # no more than it takes
    assert (rows - mr) * K * 4 < l2 // 2  # each fits, up to the rounding to MR
    assert M - (chunks - 1) * rows >= rows - mr * chunks  # the last as large, up to rounding


@pytest.mark.parametrize("side", [5, 13])
@pytest.mark.parametrize("stride", [1, 2])
def test_gemm_conv_row_chunks(stride, side, vtarget, tmp_path, monkeypatch):
    """Weights past half of L2, on a plane of few column panels (5 x 5) or many (13 x 13): the
    GEMM's units take equal chunks of rows (kernel_gemm.row_chunk), the last one with the rows
    past the whole MR blocks; equal to the reference at 1, 2 and 3 threads in checked mode, on
    both images of a batch."""
    from neo.codegen import lower
    from neo.runtime import Model

    M, C, H = 203, 700, side * stride
    rng = np.random.default_rng(M + stride)
    g = ir.Graph()
    x = g.input("x", (2, C, H, H))
    w = g.const(rng.normal(size=(M, C, 1, 1)).astype(np.float32) / 20, "w")
    bias = g.const(rng.normal(size=M).astype(np.float32), "bias")
    g.outputs = [g.op("relu", g.op("conv", x, w, bias, strides=(stride, stride),
                                   pads=(0, 0, 0, 0), dilations=(1, 1), groups=1))]
    feeds = {"x": rng.normal(size=(2, C, H, H)).astype(np.float32)}
    ref = interpret(g, feeds)[0]
    chunks, choose = [], lower.row_chunk

    def spy(*args):
        chunks.append(choose(*args))
        return chunks[-1]

    monkeypatch.setattr(lower, "row_chunk", spy)
    # the GEMM, whatever the family model prefers for this shape
    monkeypatch.setattr(lower, "_channel_kernel_pays", lambda *a, **k: False)
    monkeypatch.setattr(lower, "_modelled", lambda tun: False)
    build_artifact(run_pipeline(g, 3), vtarget, tmp_path, {"inputs": []})
    assert chunks and 0 < chunks[0] < M and M % (chunks[0] // 1) != 0, chunks
    for threads in (1, 2, 3):
        with Model(str(tmp_path), num_threads=threads, check=True) as m:
            out = m.run(feeds)[0]
        assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()


@pytest.mark.parametrize("max_parts", [4096, 7], ids=["block-parts", "grouped-parts"])
def test_gemm_threads_split_inside_units(max_parts, vtarget, tmp_path, monkeypatch):
    """The threads split a GEMM by parts of a unit's row blocks (kernel_gemm.split_parts), so
    a split may fall inside a panel: a 7 x 7 plane (a last panel part empty), rows in chunks
    with a short last block, two images; parts of one block, or of several where a cap on
    their number groups them. Equal to the reference at 1 to 5 threads in checked mode."""
    from neo.codegen import kernel_gemm, lower
    from neo.runtime import Model

    M, C, H = 203, 700, 7
    rng = np.random.default_rng(max_parts)
    g = ir.Graph()
    x = g.input("x", (2, C, H, H))
    w = g.const(rng.normal(size=(M, C, 1, 1)).astype(np.float32) / 20, "w")
    bias = g.const(rng.normal(size=M).astype(np.float32), "bias")
    g.outputs = [g.op("relu", g.op("conv", x, w, bias, strides=(1, 1), pads=(0, 0, 0, 0),
                                   dilations=(1, 1), groups=1))]
    feeds = {"x": rng.normal(size=(2, C, H, H)).astype(np.float32)}
    ref = interpret(g, feeds)[0]
    seen, split = [], kernel_gemm.split_parts

    def spy(spec):
        seen.append((spec.mchunk, split(spec)))
        return seen[-1][1]

    monkeypatch.setattr(kernel_gemm, "MAX_SPLIT_PARTS", max_parts)
    monkeypatch.setattr(kernel_gemm, "split_parts", spy)
    monkeypatch.setattr(lower, "_channel_kernel_pays", lambda *a, **k: False)
    monkeypatch.setattr(lower, "_modelled", lambda tun: False)
    build_artifact(run_pipeline(g, 3), vtarget, tmp_path, {"inputs": []})
    (mchunk, (parts_of, costs)), = seen
    assert 0 < mchunk < M and M % mchunk and M % 16  # chunks, the last one short
    assert (parts_of > 1) == (max_parts < 4096) and len(costs) <= max(max_parts, 100)
    assert len(set(costs)) > 1  # the short last block: the split is weighted
    for threads in (1, 2, 3, 4, 5):
        with Model(str(tmp_path), num_threads=threads, check=True) as m:
            out = m.run(feeds)[0]
        assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max(), threads
