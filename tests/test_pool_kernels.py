"""Pooling kernels compiled and run against the reference: padding, ceil mode, strides, dilation.
Max pools run on the plane kernel (kernel_dwconv), average pools on tensor expressions. Every
test runs at every vector width (conftest.VECTOR_WIDTHS) on the kernels built for it."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import run_artifact_checked

from neo import ir
from neo.codegen.build import build_artifact, generate_kernels
from neo.ir.interpreter import interpret
from neo.passes import run_pipeline

# (op, H, W, kernel, stride, pads, ceil_mode, count_include_pad, dilation)
CASES = [
    ("max_pool", 111, 111, 3, 2, 0, 1, 0, 1),  # squeezenet: in bounds, strided loads
    ("max_pool", 112, 112, 3, 2, 1, 0, 0, 1),  # resnet stem pool: padded
    ("max_pool", 20, 21, 2, 2, 0, 1, 0, 1),  # ceil mode leaves the input
    ("avg_pool", 17, 19, 3, 1, 1, 0, 1, 1),
    ("avg_pool", 17, 19, 3, 2, 1, 1, 0, 1),
    ("avg_pool", 16, 16, 3, 2, 1, 1, 1, 1),
    ("max_pool", 19, 23, 3, 1, 2, 0, 0, 2),  # dilated
    ("max_pool", 13, 13, 3, 3, 1, 1, 0, 1),  # stride 3, ceil mode
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_pool_kernel_matches_reference(case, vtarget, tmp_path):
    op, h, w, k, s, p, ceil, cip, d = case
    g = ir.Graph()
    x = g.input("x", (1, 5, h, w))
    g.outputs = [g.op(op, x, kernel=(k, k), strides=(s, s), pads=(p, p, p, p), ceil_mode=ceil,
                      count_include_pad=cip, dilations=(d, d))]
    g.outputs = [g.op("relu", g.outputs[0])]  # an epilogue
    feeds = {"x": np.random.default_rng(0).normal(size=(1, 5, h, w)).astype(np.float32)}
    feeds["x"][0, 1, 3, 4] = np.nan  # max pooling propagates NaN, as numpy and onnxruntime
    ref = interpret(g, feeds)[0]
    graph = run_pipeline(g, 3)
    _, kernels = generate_kernels(graph, vtarget)
    assert [i.kernel for _, i in kernels] == ["plane" if op == "max_pool" else "te"]
    build_artifact(graph, vtarget, tmp_path, {"inputs": []})
    out = run_artifact_checked(tmp_path, feeds)[0]
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)


def test_max_pool_reads_a_fused_channel_concat_in_place(vtarget, tmp_path):
    """squeezenet's concat + max_pool: one plane kernel that picks each channel's source buffer."""
    rng = np.random.default_rng(1)
    g = ir.Graph()
    a, b = g.input("a", (2, 3, 15, 15)), g.input("b", (2, 5, 15, 15))
    cat = g.op("concat", a, b, axis=1)
    g.outputs = [g.op("max_pool", cat, kernel=(3, 3), strides=(2, 2), pads=(0, 0, 0, 0),
                      ceil_mode=1, count_include_pad=0, dilations=(1, 1))]
    feeds = {"a": rng.normal(size=(2, 3, 15, 15)).astype(np.float32),
             "b": rng.normal(size=(2, 5, 15, 15)).astype(np.float32)}
    ref = interpret(g, feeds)[0]
    graph = run_pipeline(g, 3)
    _, kernels = generate_kernels(graph, vtarget)
    pools = [i for _, i in kernels if "max_pool" in i.op]
    assert [(i.op, i.kernel) for i in pools] == [("concat+max_pool", "plane")]
    build_artifact(graph, vtarget, tmp_path, {"inputs": []})
    out = run_artifact_checked(tmp_path, feeds)[0]
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("shape,pads", [
    ((1, 3, 224, 224), (3, 3, 3, 3)),  # resnet stem: whole vectors
    ((2, 5, 13, 11), (1, 2, 0, 1)),  # row tails; no bottom padding: the last tail is masked
    ((1, 4, 6, 7), (0, 0, 3, 2)),  # the last tail may spill into the bottom padding
], ids=["stem", "masked-last", "spill"])
def test_constant_pad_of_planes(shape, pads, vtarget, tmp_path):
    g = ir.Graph()
    x = g.input("x", shape)
    top, left, bottom, right = pads
    g.outputs = [g.op("pad", x, pads=(0, 0, top, left, 0, 0, bottom, right), mode="constant",
                      value=-1.5)]
    feeds = {"x": np.random.default_rng(2).normal(size=shape).astype(np.float32)}
    ref = interpret(g, feeds)[0]
    graph = run_pipeline(g, 3)
    _, kernels = generate_kernels(graph, vtarget)
    assert [i.kernel for _, i in kernels] == ["plane"]
    build_artifact(graph, vtarget, tmp_path, {"inputs": []})
    out = run_artifact_checked(tmp_path, feeds)[0]
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
@pytest.mark.parametrize("case", [c for c in CASES if c[0] == "max_pool"],
                         ids=lambda c: "-".join(map(str, c)))
def test_integer_max_pool_on_the_plane_kernel(case, dtype, vtarget, tmp_path):
    """Quantized graphs' max pools (int8 resnet50's stem) on the plane kernel in int32 slots:
    the padding is the type's minimum, so a window of negative values over the border keeps
    its maximum (a 0 padding would win there); an elementwise epilogue rides along."""
    _, h, w, k, s, p, ceil, _, d = case
    rng = np.random.default_rng(3)
    lo, hi = (-128, 128) if dtype == "int8" else (0, 256)
    x = rng.integers(lo, hi, (2, 5, h, w)).astype(dtype)
    if dtype == "int8":
        x[:, 2] = rng.integers(-128, -100, (2, h, w))  # all negative: the padding must lose
    x[0, 1, :, :] = lo  # a plane at the type's minimum
    g = ir.Graph()
    xin = g.input("x", x.shape, dtype, ir.QuantParams.per_tensor(0.05, 3))
    pooled = g.op("max_pool", xin, kernel=(k, k), strides=(s, s), pads=(p, p, p, p),
                  ceil_mode=ceil, count_include_pad=0, dilations=(d, d))
    g.outputs = [pooled, g.op("dequantize", pooled, quant=ir.QuantParams.per_tensor(0.05, 3))]
    feeds = {"x": x}
    refs = interpret(g, feeds)
    graph = run_pipeline(g, 3)
    _, kernels = generate_kernels(graph, vtarget)
    assert "plane" in [i.kernel for _, i in kernels if "max_pool" in i.op]
    build_artifact(graph, vtarget, tmp_path, {"inputs": []})
    outs = run_artifact_checked(tmp_path, feeds)
    assert outs[0].dtype == np.dtype(dtype)
    np.testing.assert_array_equal(outs[0], refs[0])
    np.testing.assert_allclose(outs[1], refs[1], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("target", ["arm64", "armv7"])
def test_integer_max_pool_on_arm(target, tmp_path, require_qemu):
    """The plane kernel's int32 max on NEON (under qemu), padded and in ceil mode."""
    from neo.run import run_artifact
    from neo.targets import get_target

    require_qemu(target)
    rng = np.random.default_rng(4)
    x = rng.integers(-128, -60, (1, 3, 20, 21)).astype(np.int8)  # negative: the padding loses
    g = ir.Graph()
    xin = g.input("x", x.shape, "int8", ir.QuantParams.per_tensor(0.05, 3))
    g.outputs = [g.op("max_pool", xin, kernel=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1),
                      ceil_mode=1, count_include_pad=0, dilations=(1, 1))]
    want = interpret(g, {"x": x})[0]
    graph = run_pipeline(g, 3)
    t = get_target(target)
    _, kernels = generate_kernels(graph, t)
    assert [i.kernel for _, i in kernels] == ["plane"]
    meta = {"inputs": [{"name": "x", "dtype": "int8", "shape": list(x.shape)}],
            "outputs": [{"name": g.out_names()[0], "dtype": "int8", "shape": list(want.shape)}]}
    build_artifact(graph, t, tmp_path, meta, 3)
    _, outs, info = run_artifact(tmp_path, {"x": x}, threads=2, check=True)
    assert info["emulated"]
    np.testing.assert_array_equal(outs[0], want)
