"""Concats whose inputs are written in place into their output (codegen/build.py:
concat_in_place): no copy kernel runs, the inputs are views ("view_of") of the output's bytes,
and the results equal the IR's numpy reference, in checked mode and in the plain runtime."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_artifact_checked

from neo import ir
from neo.codegen.build import build_artifact, generate_kernels
from neo.ir.interpreter import interpret
from neo.passes import run_pipeline
from neo.runtime import Model
from neo.targets import get_target


def _conv(gr, x, oc, rng, k=1):
    c = x.shape[1]
    w = gr.const((rng.normal(size=(oc, c, k, k)) / np.sqrt(c * k * k)).astype("float32"))
    b = gr.const(rng.normal(size=oc).astype("float32"))
    return gr.op("relu", gr.op("conv", x, w, b, pads=(k // 2,) * 4))


def _fire(n=1, c=8, hw=9, seed=0):
    """A squeezenet fire module: squeeze 1x1, then 1x1 and 3x3 expands concatenated, then a
    conv reading the concat."""
    rng = np.random.default_rng(seed)
    gr = ir.Graph()
    x = gr.input("x", (n, c, hw, hw))
    s = _conv(gr, x, 4, rng)
    cat = gr.op("concat", _conv(gr, s, 12, rng), _conv(gr, s, 20, rng, 3), axis=1)
    gr.outputs = [_conv(gr, cat, 6, rng)]
    return gr, {"x": rng.normal(size=(n, c, hw, hw)).astype("float32")}


def _dense(seed=0):
    """A DenseNet block: each concat is a piece of the next, so all of them share one buffer."""
    rng = np.random.default_rng(seed)
    gr = ir.Graph()
    x = gr.input("x", (1, 3, 10, 10))
    f = _conv(gr, x, 8, rng, 3)
    for _ in range(3):
        f = gr.op("concat", f, _conv(gr, f, 5, rng, 3), axis=1)
    gr.outputs = [gr.op("reduce_mean", f, axes=(2, 3), keepdims=False), _conv(gr, f, 4, rng)]
    return gr, {"x": rng.normal(size=(1, 3, 10, 10)).astype("float32")}


def _build(gr, target, tmp_path):
    graph = run_pipeline(gr, 3)
    _, kernels = generate_kernels(graph, target)
    copies = [n for n, info in kernels if info is None and n.op != "reshape"]
    build_artifact(graph, target, tmp_path, {"inputs": []}, 3)
    tensors = json.loads((tmp_path / "compiled_model.json").read_text())["tensors"]
    return copies, [t for t in tensors if "view_of" in t]


def _check(tmp_path, gr, feeds):
    ref = interpret(gr, feeds)
    checked = run_artifact_checked(tmp_path, feeds)
    with Model(str(tmp_path)) as m:
        plain = m.run(feeds)
    for r, a, b in zip(ref, checked, plain):
        assert np.abs(a - r).max() <= 1e-5 * np.abs(r).max()
        assert np.array_equal(a, b)


@pytest.mark.parametrize("target", ["x86_64", "host"])
def test_fire_module_concat_is_written_in_place(target, tmp_path):
    gr, feeds = _fire()
    copies, views = _build(gr, get_target(target), tmp_path)
    assert len(copies) == 1 and len(views) == 2  # the two expand convs write into the concat
    base = {v["view_of"] for v in views}
    assert len(base) == 1
    offsets = sorted(v["offset"] for v in views)
    assert offsets[1] - offsets[0] == 12 * 9 * 9 * 4  # the 3x3 expand after the 1x1's bytes
    _check(tmp_path, gr, feeds)


def test_dense_block_concats_nest_in_one_buffer(tmp_path):
    gr, feeds = _dense()
    copies, views = _build(gr, get_target("host"), tmp_path)
    assert len(copies) == 3
    assert len({v["view_of"] for v in views}) == 1  # every piece of every concat: one base
    _check(tmp_path, gr, feeds)


def test_concats_that_cannot_be_views_keep_their_kernel(tmp_path):
    rng = np.random.default_rng(1)
    gr = ir.Graph()
    x = gr.input("x", (2, 4, 6, 6))  # batch 2: each input is two separate byte ranges
    a, b = _conv(gr, x, 4, rng), _conv(gr, x, 3, rng)
    y = gr.input("y", (1, 4, 6, 6))
    c = _conv(gr, y, 4, rng)
    gr.outputs = [_conv(gr, gr.op("concat", a, b, axis=1), 2, rng),
                  _conv(gr, gr.op("concat", c, y, axis=1), 2, rng),  # a graph input
                  _conv(gr, gr.op("concat", c, c, axis=1), 2, rng),  # the same value twice
                  _conv(gr, gr.op("concat", c, _conv(gr, y, 4, rng), axis=2), 2, rng)]
    feeds = {"x": rng.normal(size=(2, 4, 6, 6)).astype("float32"),
             "y": rng.normal(size=(1, 4, 6, 6)).astype("float32")}
    copies, views = _build(gr, get_target("host"), tmp_path)
    # none: along axis 2 a piece's rows interleave with the other's (4 channels before it)
    assert copies == [] and views == []
    _check(tmp_path, gr, feeds)


@pytest.mark.parametrize("check", [False, True])
def test_runtime_refuses_a_view_outside_its_base(check, tmp_path):
    gr, _ = _fire()
    _build(gr, get_target("host"), tmp_path)
    path = tmp_path / "compiled_model.json"
    doc = json.loads(path.read_text())
    view = next(t for t in doc["tensors"] if "view_of" in t)
    view["offset"] += 64 * 1024  # past the end of the concat's bytes, inside the workspace
    doc["workspace_nbytes"] += 64 * 1024
    path.write_text(json.dumps(doc))
    with pytest.raises(Exception, match=r"not inside those of tensor \d+ \(view_of\)"):
        Model(str(tmp_path), check=check).close()
    param = next(t["id"] for t in doc["tensors"] if t["storage"] == "param")
    view["view_of"] = param
    path.write_text(json.dumps(doc))
    with pytest.raises(Exception, match=r"view_of \d+ is not a workspace tensor"):
        Model(str(tmp_path), check=check).close()


@pytest.mark.parametrize("target", ["arm64", "armv7"])
def test_concat_views_on_arm(target, tmp_path, require_qemu):
    """The runtime binds the views on every arch (its C is the same; the pointers are 32-bit on
    armv7): the dense block in checked mode under qemu."""
    from neo.run import run_artifact

    require_qemu(target)
    gr, feeds = _dense(seed=3)
    ref = interpret(gr, feeds)
    meta = {"inputs": [{"name": "x", "dtype": "float32", "shape": [1, 3, 10, 10]}],
            "outputs": [{"name": n, "dtype": "float32", "shape": list(r.shape)}
                        for n, r in zip(gr.out_names(), ref)]}
    graph = run_pipeline(gr, 3)
    build_artifact(graph, get_target(target), tmp_path, meta, 3)
    doc = json.loads((tmp_path / "compiled_model.json").read_text())
    assert any("view_of" in t for t in doc["tensors"])
    _, outs, info = run_artifact(tmp_path, feeds, threads=2, check=True)
    assert info["emulated"]
    for r, a in zip(ref, outs):
        assert np.abs(a - r).max() <= 1e-5 * np.abs(r).max()
