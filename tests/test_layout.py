"""Data layout in the IR: convs and pools carry theirs, and passes/layout.py puts the graph into
the kernels' (channels first), cancelling the transposes that creates.

A Keras-style channels-last network built directly in IR (the input arrives NCHW, as Neo's rule
for Keras says, and is transposed once) must compile with no transpose left anywhere between its
convs, and give the outputs of the same network built channels-first.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import run_artifact_checked, width_target

from neo import ir
from neo.codegen.build import build_artifact
from neo.ir.interpreter import interpret
from neo.passes import convert_layout, run_pipeline

C_LAST = (0, 2, 3, 1)
C_FIRST = (0, 3, 1, 2)


def _transposes(g: ir.Graph) -> int:
    count = 0
    for n in g.nodes:
        if n.op == "transpose":
            count += 1
        body = n.attrs.get("body")
        if body is not None:
            count += _transposes(body)
    return count


def network(layout: str, seed: int = 0) -> tuple[ir.Graph, dict]:
    """conv-bias-relu, a residual block, max pool, a strided conv with relu6, a two-branch
    channel concat, average pool, global mean, dense, softmax; in `layout`. Weights OIHW."""
    r = np.random.default_rng(seed)
    g = ir.Graph(f"net_{layout}")
    x = g.input("x", (2, 3, 20, 20))
    last = layout == "NHWC"
    h = g.op("transpose", x, perm=C_LAST) if last else x
    caxis = 3 if last else 1

    def const(shape, scale=0.3):
        return g.const((r.standard_normal(shape) * scale).astype(np.float32), "w")

    def bias(c):
        b = const((c,), 0.1)
        return b if last else g.op("reshape", b, shape=(c, 1, 1))

    def conv(v, cin, cout, k=3, s=1, groups=1):
        p = k // 2
        y = g.op("conv", v, const((cout, cin // groups, k, k), 1 / np.sqrt(cin * k * k / groups)),
                 strides=(s, s), pads=(p, p, p, p), groups=groups, layout=layout)
        return g.op("add", y, bias(cout))

    h = g.op("relu", conv(h, 3, 16))
    res = h
    h = g.op("relu", conv(h, 16, 16))
    h = g.op("relu", g.op("add", conv(h, 16, 16), res))
    h = g.op("max_pool", h, kernel=(2, 2), strides=(2, 2), layout=layout)
    h = g.op("clip", conv(h, 16, 24, s=2), min=0.0, max=6.0)
    a = g.op("relu", conv(h, 24, 8, k=1))
    b = g.op("sigmoid", conv(h, 24, 24, groups=24))  # depthwise
    h = g.op("concat", a, b, axis=caxis)
    h = g.op("avg_pool", h, kernel=(3, 3), strides=(1, 1), pads=(1, 1, 1, 1), layout=layout,
             count_include_pad=0)
    spatial = (1, 2) if last else (2, 3)
    h = g.op("reduce_mean", h, axes=spatial, keepdims=0)  # [2, 32]
    logits = g.op("matmul", h, const((32, 10), 0.5))
    g.outputs = [g.op("softmax", logits, axis=1)]
    feeds = {"x": r.standard_normal((2, 3, 20, 20)).astype(np.float32)}
    return g, feeds


def test_reference_handles_both_layouts():
    (a, fa), (b, fb) = network("NHWC", 3), network("NCHW", 3)
    ya, yb = interpret(a, fa)[0], interpret(b, fb)[0]
    np.testing.assert_allclose(ya, yb, rtol=1e-5, atol=1e-6)
    assert ya.std() > 0.01  # informative: the class probabilities differ


def test_layout_pass_leaves_no_transpose():
    g, _ = network("NHWC")
    assert _transposes(g) == 1
    out = convert_layout(g)
    assert _transposes(out) == 0
    assert all(n.attrs.get("layout", "NCHW") == "NCHW" for n in out.nodes)


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_channels_last_net_compiles_without_transposes(level, tmp_path):
    g, feeds = network("NHWC")
    ref = interpret(g, feeds)[0]
    compiled = run_pipeline(g, level)
    assert _transposes(compiled) == 0
    target = width_target("w256")
    build_artifact(compiled, target, tmp_path / "nhwc", {"inputs": []}, level)
    y = run_artifact_checked(tmp_path / "nhwc", feeds)[0]
    g2, _ = network("NCHW")
    build_artifact(run_pipeline(g2, level), target, tmp_path / "nchw", {"inputs": []}, level)
    y2 = run_artifact_checked(tmp_path / "nchw", feeds)[0]
    np.testing.assert_allclose(y, y2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-6)


def test_transposes_the_pass_cannot_absorb_stay_correct(tmp_path):
    """A reshape (Keras's Flatten) after an NHWC conv needs the channels-last order: one
    transpose stays, right before it."""
    r = np.random.default_rng(5)
    g = ir.Graph("flatten")
    x = g.input("x", (1, 4, 6, 6))
    h = g.op("transpose", x, perm=C_LAST)
    w = g.const(r.standard_normal((5, 4, 3, 3)).astype(np.float32), "w")
    h = g.op("relu", g.op("conv", h, w, pads=(1, 1, 1, 1), layout="NHWC"))
    g.outputs = [g.op("reshape", h, shape=(1, 180))]
    feeds = {"x": r.standard_normal((1, 4, 6, 6)).astype(np.float32)}
    ref = interpret(g, feeds)[0]
    out = convert_layout(g)
    assert _transposes(out) == 1
    t = next(n for n in out.nodes if n.op == "transpose")
    assert [n.op for n in out.nodes if t.outputs[0] in n.inputs] == ["reshape"]
    build_artifact(run_pipeline(g, 3), width_target("w256"), tmp_path, {"inputs": []})
    np.testing.assert_allclose(run_artifact_checked(tmp_path, feeds)[0], ref, rtol=1e-5,
                               atol=1e-5)


def test_transposes_compose():
    from neo.passes.layout import compose, inverse

    p = (0, 2, 3, 1)
    assert compose(p, inverse(p)) == (0, 1, 2, 3)
    x = np.arange(24).reshape(1, 2, 3, 4)
    q = (3, 1, 0, 2)
    np.testing.assert_array_equal(np.transpose(np.transpose(x, p), q),
                                  np.transpose(x, compose(p, q)))
