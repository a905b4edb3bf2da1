"""Each pass on a before graph against the expected graph (structure) and the interpreter (numbers)."""
from __future__ import annotations

import numpy as np
import onnx.parser
import pytest

from neo.frontends.onnx import import_onnx
from neo.ir import Graph
from neo.ir.interpreter import interpret
from neo.ir.verify import verify
from neo.passes import (
    decompose_softmax,
    eliminate_dead_code,
    fold_batchnorm_into_conv,
    fold_constants,
    fuse_operators,
    pipeline,
    run_pipeline,
    simplify,
    winograd_convs,
)


def parse(text: str, **inits) -> Graph:
    """An IR graph from ONNX text syntax; keyword arrays become initializers."""
    m = onnx.parser.parse_model(text)
    for name, arr in inits.items():
        m.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(arr), name))
    return import_onnx(m)


def ops(g: Graph) -> list:
    """The graph's structure: op names, with fused nodes as (anchor, [body ops])."""
    out = []
    for n in g.nodes:
        if n.op == "fused":
            out.append(("fused", [m.op for m in n.attrs["body"].nodes]))
        else:
            out.append(n.op)
    return out


def same_numbers(a: Graph, b: Graph, seed: int = 0, atol: float = 1e-6):
    rng = np.random.default_rng(seed)
    feeds = {v.name: rng.normal(size=v.shape).astype(v.dtype) for v in a.inputs}
    for x, y in zip(interpret(a, feeds), interpret(b, feeds)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=atol)


HEADER = '<ir_version: 8, opset_import: ["" : 17]>\n'


def test_fold_constants_evaluates_constant_subgraphs():
    # add(c1, c2) -> const; the graph keeps only mul(x, const)
    g = parse(HEADER + """
      g (float[2] x) => (float[2] y) {
        c1 = Constant <value = float[2] {1.0, 2.0}> ()
        c2 = Constant <value = float[2] {3.0, 4.0}> ()
        s = Add(c1, c2)
        y = Mul(x, s)
      }""")
    out = eliminate_dead_code(fold_constants(g))
    verify(out)
    assert ops(out) == ["mul"]
    np.testing.assert_array_equal(out.nodes[0].inputs[1].data, [4.0, 6.0])


def test_dead_code_is_removed():
    g = parse(HEADER + """
      g (float[4] x) => (float[4] y) {
        unused = Exp(x)
        y = Relu(x)
      }""")
    assert ops(eliminate_dead_code(g)) == ["relu"]


def test_simplify_merges_reshapes_and_cancels_transposes():
    g = parse(HEADER + """
      g (float[2,3,4] x) => (float[4,3,2] y) {
        s1 = Constant <value = int64[2] {6, 4}> ()
        s2 = Constant <value = int64[3] {4, 3, 2}> ()
        a = Reshape(x, s1)
        b = Reshape(a, s2)
        t1 = Transpose <perm = [2, 0, 1]> (b)
        y = Transpose <perm = [1, 2, 0]> (t1)
      }""")
    out = eliminate_dead_code(simplify(fold_constants(g)))
    verify(out)
    assert ops(out) == ["reshape"]  # reshape(reshape(x)) -> reshape(x); transposes cancel
    same_numbers(g, out)


def test_batchnorm_folds_into_the_conv_before_it():
    rng = np.random.default_rng(1)
    g = parse(HEADER + """
      g (float[1,3,8,8] x) => (float[1,4,8,8] y) {
        c = Conv <pads = [1, 1, 1, 1]> (x, w, b)
        y = BatchNormalization <epsilon = 0.001> (c, s, t, m, v)
      }""", w=rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
        b=rng.normal(size=4).astype(np.float32), s=rng.uniform(0.5, 2, 4).astype(np.float32),
        t=rng.normal(size=4).astype(np.float32), m=rng.normal(size=4).astype(np.float32),
        v=rng.uniform(0.5, 2, 4).astype(np.float32))
    out = eliminate_dead_code(fold_batchnorm_into_conv(g))
    verify(out)
    assert ops(out) == ["conv"]
    same_numbers(g, out)


def test_softmax_decomposes_into_reductions():
    g = parse(HEADER + """
      g (float[2,5] x) => (float[2,5] y) {
        y = Softmax <axis = -1> (x)
      }""")
    out = decompose_softmax(g)
    assert ops(out) == ["reduce_max", "sub", "exp", "reduce_sum", "div"]
    same_numbers(g, out)


def test_conv_bias_residual_relu_is_one_kernel():
    rng = np.random.default_rng(2)
    g = parse(HEADER + """
      g (float[1,4,8,8] x) => (float[1,4,8,8] y) {
        c = Conv <pads = [1, 1, 1, 1]> (x, w, b)
        r = Add(c, x)
        y = Relu(r)
      }""", w=rng.normal(size=(4, 4, 3, 3)).astype(np.float32), b=np.zeros(4, np.float32))
    out = fuse_operators(g)
    verify(out)
    assert ops(out) == [("fused", ["conv", "add", "relu"])]
    assert out.nodes[0].attrs["anchor"] == "conv"
    same_numbers(g, out)


def test_winograd_rewrites_3x3_convs_that_pay_and_keeps_the_numbers():
    rng = np.random.default_rng(4)
    g = parse(HEADER + """
      g (float[2,16,13,11] x) => (float[2,16,13,11] y, float[2,16,4,4] z) {
        c = Conv <pads = [1, 1, 1, 1]> (x, w, b)
        r = Add(c, x)
        y = Relu(r)
        z = Conv <strides = [3, 3], pads = [1, 1, 1, 1]> (x, w)
      }""", w=rng.normal(size=(16, 16, 3, 3)).astype(np.float32),
              b=rng.normal(size=16).astype(np.float32))
    out = winograd_convs(g)
    verify(out)
    # the stride-3 conv stays; the other becomes transform, 16-group 1x1 conv, transform + bias
    assert ops(out) == ["winograd_input", "conv", "winograd_output", "add", "add", "relu", "conv"]
    assert out.nodes[1].attrs["groups"] == 16 and out.nodes[1].inputs[1].shape == (256, 16, 1, 1)
    same_numbers(g, out, atol=1e-5)  # outputs reach ~50: float32 rounding differs by ~2e-6
    fused = fuse_operators(out)
    assert ops(fused)[2] == ("fused", ["winograd_output", "add", "add", "relu"])


def test_winograd_leaves_small_or_huge_planes_and_few_channels_alone():
    rng = np.random.default_rng(5)
    g = parse(HEADER + """
      g (float[1,16,5,5] x, float[1,8,16,16] u) => (float[1,16,5,5] y, float[1,8,16,16] v) {
        y = Conv <pads = [1, 1, 1, 1]> (x, w)
        v = Conv <pads = [1, 1, 1, 1]> (u, w8)
      }""", w=rng.normal(size=(16, 16, 3, 3)).astype(np.float32),
              w8=rng.normal(size=(8, 8, 3, 3)).astype(np.float32))
    assert ops(winograd_convs(g)) == ["conv", "conv"]
    big = parse(HEADER + """
      g (float[1,16,260,260] x) => (float[1,16,260,260] y) {
        y = Conv <pads = [1, 1, 1, 1]> (x, w)
      }""", w=rng.normal(size=(16, 16, 3, 3)).astype(np.float32))
    assert ops(winograd_convs(big)) == ["conv"]  # its padded plane would not fit the stack budget


def test_one_anchor_per_kernel():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(4, 4, 1, 1)).astype(np.float32)
    g = parse(HEADER + """
      g (float[1,4,8,8] x) => (float[1,4,8,8] y) {
        a = Conv(x, w)
        b = Conv(x, w)
        s = Add(a, b)
        y = Relu(s)
      }""", w=w)
    out = fuse_operators(g)
    assert ops(out) == [("fused", ["conv"]), ("fused", ["conv", "add", "relu"])]
    same_numbers(g, out)


def test_reduction_takes_its_elementwise_epilogue_and_injective_producers_inline():
    g = parse(HEADER + """
      g (float[2,3,4] x) => (float[2,4] y) {
        t = Transpose <perm = [0, 2, 1]> (x)
        e = Exp(t)
        s = ReduceSum <keepdims = 0> (e, axes)
        y = Sqrt(s)
      }""", axes=np.array([2], np.int64))
    out = fuse_operators(fold_constants(g))
    assert ops(out) == [("fused", ["transpose", "exp", "reduce_sum", "sqrt"])]
    same_numbers(g, out)


def _row_chain_graph(rows: int = 5, cols: int = 37) -> Graph:
    """An int8 softmax's shape of work in int64: the row max, a table lookup of x - max, its row
    sum, a per-row chain that uses its values several times (a DAG), and the row's outputs from
    the per-row result and the looked-up values."""
    g = Graph("rows")
    x = g.input("x", (1, rows, cols), "int32")
    table = g.const(np.arange(64, dtype=np.int64) * 7 - 100)
    m = g.add("reduce_max", [x], {"axes": (2,), "keepdims": 1}).outputs[0]
    d = g.add("sub", [x, m]).outputs[0]
    idx = g.add("bitwise_and", [d, g.const(np.int32(63))]).outputs[0]
    e = g.add("gather", [table, idx], {"axis": 0}).outputs[0]
    s = g.add("reduce_sum", [e], {"axes": (2,), "keepdims": 1}).outputs[0]
    t = g.add("mul", [s, g.const(np.int64(3))]).outputs[0]
    u = g.add("add", [t, s]).outputs[0]
    w = g.add("where", [g.add("greater", [u, t]).outputs[0], u, t]).outputs[0]
    k = g.add("shift_right", [w, g.const(np.int64(2))]).outputs[0]
    y = g.add("add", [g.add("mul", [e, k]).outputs[0], w]).outputs[0]
    g.outputs = [y]
    return g


def test_a_row_reduction_and_its_per_row_chain_fuse_into_the_rows_kernel():
    g = _row_chain_graph()
    out = fuse_operators(g)
    verify(out)
    # the max and the sum are read once per row (codegen computes them once per row) and join
    # the kernels of their rows; the per-row values used by several nodes join their users; the
    # looked-up values feed both the row sum and the output, so they are stored once
    assert ops(out) == [("fused", ["reduce_max", "sub", "bitwise_and", "gather"]),
                        ("fused", ["reduce_sum", "mul", "add", "greater", "where", "shift_right",
                                   "mul", "add"])]
    rng = np.random.default_rng(0)
    feeds = {"x": rng.integers(-300, 300, (1, 5, 37)).astype(np.int32)}
    (ref,), (got,) = interpret(g, feeds), interpret(out, feeds)
    np.testing.assert_array_equal(got, ref)


def test_float_row_reductions_and_row_wide_shared_values_keep_their_kernels():
    # a float softmax: the exp feeds both the scalar row sum and the output, so it stays
    # stored (fused into the sum and the output it would run twice, once unvectorized); float
    # row reductions stay separate kernels (merged, a 144-wide softmax ran 10% slower)
    g = decompose_softmax(parse(HEADER + """
      g (float[4,144] x) => (float[4,144] y) {
        y = Softmax <axis = -1> (x)
      }"""))
    assert ops(fuse_operators(g)) == [("fused", ["reduce_max"]), ("fused", ["sub", "exp"]),
                                      ("fused", ["reduce_sum"]), ("fused", ["div"])]


@pytest.mark.parametrize("width", ["w128", "w512"])
def test_fused_row_chain_compiles_to_the_interpreters_numbers(width, tmp_path):
    from conftest import run_artifact_checked, width_target

    from neo.codegen.build import build_artifact

    g = _row_chain_graph(rows=6, cols=45)  # 45 columns: full vectors and a masked tail
    fused = fuse_operators(g)
    assert len(fused.nodes) == 2
    meta = {"compiler": "test", "framework": "onnx",
            "inputs": [{"name": "x", "dtype": "int32", "shape": [1, 6, 45]}],
            "outputs": [{"name": fused.out_names()[0], "dtype": "int64", "shape": [1, 6, 45]}]}
    target = width_target(width)
    meta["target"] = {"name": target.name, "arch": target.arch, "triple": target.triple}
    build_artifact(fused, target, tmp_path / "a", meta)
    rng = np.random.default_rng(1)
    for _ in range(3):
        feeds = {"x": rng.integers(-500, 500, (1, 6, 45)).astype(np.int32)}
        (ref,) = interpret(g, feeds)
        (got,) = run_artifact_checked(tmp_path / "a", feeds)
        np.testing.assert_array_equal(got, ref)


def test_reshape_is_never_fused_and_graph_outputs_are_materialized():
    g = parse(HEADER + """
      g (float[2,6] x) => (float[3,4] y, float[2,6] e) {
        e = Exp(x)
        s = Constant <value = int64[2] {3, 4}> ()
        r = Reshape(e, s)
        y = Relu(r)
      }""")
    out = fuse_operators(fold_constants(g))
    assert ops(out) == [("fused", ["exp"]), "reshape", ("fused", ["relu"])]


def test_pipeline_is_a_visible_list():
    names = [p.__name__ for p in pipeline(3)]
    # layout first at every level (codegen's kernels are channels-first), fusion last
    assert names[0] == "convert_layout" and names[-1] == "fuse_operators"
    # quantized weights are still dequantize nodes until lower_qdq: it runs before folding
    assert names.index("lower_qdq") < names.index("fold_constants")
    assert "fold_batchnorm_into_conv" in names and "winograd_convs" in names
    names0 = [p.__name__ for p in pipeline(0)]
    assert names0[0] == "convert_layout" and names0[-1] == "fuse_nothing"
    assert "winograd_convs" not in names0 and "fold_constants" not in names0


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_pipeline_keeps_the_numbers(level, tmp_path):
    rng = np.random.default_rng(4)
    g = parse(HEADER + """
      g (float[1,3,8,8] x) => (float[1,5] y) {
        c = Conv <pads = [1, 1, 1, 1], strides = [2, 2]> (x, w)
        n = BatchNormalization (c, s, t, m, v)
        r = Relu(n)
        p = GlobalAveragePool(r)
        f = Flatten(p)
        z = Gemm <transB = 1> (f, fw, fb)
        y = Softmax <axis = 1> (z)
      }""", w=rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
        s=rng.uniform(0.5, 2, 4).astype(np.float32), t=rng.normal(size=4).astype(np.float32),
        m=rng.normal(size=4).astype(np.float32), v=rng.uniform(0.5, 2, 4).astype(np.float32),
        fw=rng.normal(size=(5, 4)).astype(np.float32), fb=rng.normal(size=5).astype(np.float32))
    out = run_pipeline(g, level, debug=True, dump_dir=tmp_path)
    same_numbers(g, out)
    assert len(list(tmp_path.iterdir())) == len(pipeline(level)) + 1


def test_memory_plan_shares_storage_between_non_overlapping_lifetimes():
    from neo.codegen.memory import plan_memory

    # a -> b -> c -> d, each 1000 bytes: two storages suffice (ping-pong)
    steps = [([0], [1]), ([1], [2]), ([2], [3]), ([3], [4])]
    plan = plan_memory(steps, {k: 1000 for k in range(5)}, {}, pinned={0, 4})
    assert len(plan.sizes) == 2
    assert plan.storage_of[1] == plan.storage_of[3] != plan.storage_of[2]
    assert plan.workspace_nbytes == 2 * 1024  # 64-byte aligned


def _tuning(name, mcpu=None):
    """The Tuning of a named target, or of x86_64 for another -mcpu."""
    from neo.codegen.tuning import tuning_for
    from neo.targets import resolve_target

    return tuning_for(resolve_target(name, None, f'{{"mcpu": "{mcpu}"}}' if mcpu else None)[0])


def _convs(g: Graph, t) -> list:
    """(input channels, whether a Winograd GEMM: 16 groups of 1x1) of each conv g compiles to."""
    return sorted((n.inputs[1].shape[1], n.inputs[1].shape[2:] == (1, 1))
                  for n in run_pipeline(g, 3, tuning=t).nodes if n.attrs["anchor"] == "conv")


def test_winograd_needs_more_tiles_where_512_bit_fmas_are_full_rate_or_cores_stream_slowly():
    """A 7x7 output (16 tiles) pays on AMD's AVX2, NEON and Zen 4's half-rate zmm; with two
    full-width 512-bit FMA pipes (Intel Xeon, Zen 5) or on Intel cores at any width its larger
    transformed weights cost more than the multiplies saved, so it stays a direct conv there;
    14x14 (49 tiles) pays everywhere."""
    from neo.passes.winograd import min_tiles

    tun = _tuning
    full_rate = [tun("ml_c5"), tun("x86_64", "sapphirerapids"), tun("x86_64", "znver5"),
                 tun("x86_64", "haswell")]  # the last: an Intel AVX2 core
    others = [tun("x86_64"), tun("x86_64", "znver4"), tun("arm64"), tun("ml_c6g"), None]
    assert [min_tiles(t) for t in full_rate] == [25, 25, 25, 25]
    assert [min_tiles(t) for t in others] == [16] * 5
    rng = np.random.default_rng(6)
    g = parse(HEADER + """
      g (float[1,32,7,7] x, float[1,32,14,14] u) => (float[1,32,7,7] y, float[1,32,14,14] v) {
        y = Conv <pads = [1, 1, 1, 1]> (x, w)
        v = Conv <pads = [1, 1, 1, 1]> (u, w)
      }""", w=rng.normal(size=(32, 32, 3, 3)).astype(np.float32))

    def winograds(t):
        return sum(n.op == "fused" and n.attrs["anchor"] == "winograd_output"
                   for n in run_pipeline(g, 3, tuning=t).nodes)

    assert [winograds(t) for t in full_rate] == [1, 1, 1, 1]
    assert [winograds(t) for t in others] == [2] * 5


def test_winograd_needs_32_input_channels_where_fmas_outpace_streams():
    """At 16 input channels the Winograd GEMM is bound by the transformed values it writes and
    the output transform reads back, where the FMAs are fast (as for min_tiles): squeezenet's
    16 -> 64 3x3 convs stay direct there, on AMD's AVX2 and NEON they turn Winograd."""
    from neo.passes.winograd import min_channels

    fast, slow = _tuning("ml_c5"), _tuning("x86_64")
    assert (min_channels(fast), min_channels(slow), min_channels(None)) == (32, 16, 16)
    rng = np.random.default_rng(7)
    g = parse(HEADER + """
      g (float[1,16,28,28] x, float[1,32,28,28] u) => (float[1,64,28,28] y, float[1,64,28,28] v) {
        y = Conv <pads = [1, 1, 1, 1]> (x, w16)
        v = Conv <pads = [1, 1, 1, 1]> (u, w32)
      }""", w16=rng.normal(size=(64, 16, 3, 3)).astype(np.float32),
               w32=rng.normal(size=(64, 32, 3, 3)).astype(np.float32))
    assert _convs(g, fast) == [(16, False), (32, True)]
    assert _convs(g, slow) == [(16, True), (32, True)]


def test_winograd_keeps_its_transformed_planes_in_l2_with_full_rate_512_bit_fmas():
    """With two 512-bit FMA pipes, a conv whose transformed input or output (16 floats per 2x2
    tile and channel) passes 2 MB stays direct: resnet's 64-channel 56x56 convs (3.2 MB), not
    its 128-channel 28x28 ones (1.6 MB); AVX2 (also Intel's) and NEON keep both Winograd."""
    from neo.passes.winograd import MAX_TRANSFORMED_BYTES, max_transformed_bytes

    tun = _tuning
    full_rate = [tun("ml_c5"), tun("x86_64", "sapphirerapids")]
    others = [tun("x86_64"), tun("x86_64", "haswell"), tun("x86_64", "znver4"), tun("arm64"),
              None]
    assert [max_transformed_bytes(t) for t in full_rate] == [MAX_TRANSFORMED_BYTES] * 2
    assert [max_transformed_bytes(t) for t in others] == [None] * 5
    rng = np.random.default_rng(9)
    g = parse(HEADER + """
      g (float[1,64,56,56] x, float[1,128,28,28] u) => (float[1,64,56,56] y, float[1,128,28,28] v) {
        y = Conv <pads = [1, 1, 1, 1]> (x, w64)
        v = Conv <pads = [1, 1, 1, 1]> (u, w128)
      }""", w64=rng.normal(size=(64, 64, 3, 3)).astype(np.float32),
               w128=rng.normal(size=(128, 128, 3, 3)).astype(np.float32))
    assert [_convs(g, t) for t in full_rate] == [[(64, False), (128, True)]] * 2
    assert [_convs(g, t) for t in others] == [[(64, True), (128, True)]] * 5


def _strided_1x1_graph() -> Graph:
    """Three stride-2 1x1 convs: 64 -> 128 from 13x13 (an odd input: its last row and column
    kept) and 32 -> 48 from 14x14 to 7x7, 8 -> 16 from 60x60 to 30x30."""
    rng = np.random.default_rng(8)
    return parse(HEADER + """
      g (float[1,64,13,13] x, float[1,32,14,14] u, float[1,8,60,60] t)
          => (float[1,128,7,7] y, float[1,48,7,7] v, float[1,16,30,30] z) {
        y = Conv <strides = [2, 2]> (x, w, b)
        v = Conv <strides = [2, 2]> (u, w2)
        z = Conv <strides = [2, 2]> (t, w3)
      }""", w=rng.normal(size=(128, 64, 1, 1)).astype(np.float32),
               b=rng.normal(size=128).astype(np.float32),
               w2=rng.normal(size=(48, 32, 1, 1)).astype(np.float32),
               w3=rng.normal(size=(16, 8, 1, 1)).astype(np.float32))


def _tun(name):
    from neo.codegen.tuning import tuning_for
    from neo.targets import resolve_target

    return tuning_for(resolve_target(name, None, None)[0])


def test_strided_1x1_convs_read_a_subsampled_copy_where_channel_tiles_take_them():
    """A strided 1x1 conv becomes slice + a plain 1x1 conv on x86 where the plain conv runs on
    channel-vector tiles (`codegen.lower.channel_tiles_pay`): 64 -> 128 on 7x7 with AVX-512 and
    AVX2, 32 -> 48 on 7x7 only with AVX-512 (AVX2 runs it as a GEMM), 8 -> 16 on 30x30
    nowhere; arm is unmeasured and keeps them all strided."""
    from neo.passes.conv_padding import subsample_pays, subsample_strided_1x1

    fast, avx2, arm = _tun("ml_c5"), _tun("x86_64"), _tun("arm64")
    assert subsample_pays(fast) and subsample_pays(avx2) and not subsample_pays(arm)
    assert not subsample_pays(None)
    g = _strided_1x1_graph()
    out = subsample_strided_1x1(g, fast)
    assert ops(out) == ["slice", "conv", "slice", "conv", "conv"]
    assert out.nodes[1].inputs[0].shape == (1, 64, 7, 7) and out.nodes[1].attrs["strides"] == (1, 1)
    assert out.nodes[4].attrs["strides"] == (2, 2)
    same_numbers(g, out, atol=1e-4)
    assert ops(subsample_strided_1x1(g, avx2)) == ["slice", "conv", "conv", "conv"]

    def sliced_convs(t):
        return sum(n.op == "fused" and "slice" in [m.op for m in n.attrs["body"].nodes]
                   for n in run_pipeline(g, 3, tuning=t).nodes)

    assert (sliced_convs(fast), sliced_convs(avx2), sliced_convs(arm)) == (2, 1, 0)


@pytest.mark.parametrize("width", ["w128", "w256", "w512"])
def test_subsampled_1x1_conv_compiles_to_the_interpreters_numbers(width, tmp_path):
    from conftest import run_artifact_checked, width_target

    from neo.codegen.build import build_artifact
    from neo.passes.conv_padding import subsample_strided_1x1

    g = _strided_1x1_graph()
    out = fuse_operators(subsample_strided_1x1(g, _tun("ml_c5")))
    meta = {"compiler": "test", "framework": "onnx",
            "inputs": [{"name": v.name, "dtype": "float32", "shape": list(v.shape)}
                       for v in g.inputs],
            "outputs": [{"name": n, "dtype": "float32", "shape": list(v.shape)}
                        for n, v in zip(out.out_names(), out.outputs)]}
    target = width_target(width)
    meta["target"] = {"name": target.name, "arch": target.arch, "triple": target.triple}
    build_artifact(out, target, tmp_path / "a", meta)
    rng = np.random.default_rng(2)
    feeds = {v.name: rng.normal(size=v.shape).astype(np.float32) for v in g.inputs}
    for got, want in zip(run_artifact_checked(tmp_path / "a", feeds), interpret(g, feeds)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
