"""The passes around int8 quantization, one at a time, on real inputs (scikit-image photo crops):
cross-layer equalization keeps the fp32 function (1e-5 of the output's range) and equalizes the
channel ranges, crossing a ReLU6 only where the calibration data allows; bias correction removes
the output shift int8 weights cause; the entropy calibrator's thresholds. And end to end: on a
digits CNN whose channel ranges were made unequal (the same function), per-tensor int8 collapses
and equalization restores it.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from test_quantize import digits  # noqa: F401  (the session's digits CNN fixture)

from neo.ir import Graph
from neo.ir.interpreter import interpret
from neo.passes.bias_correction import correct_bias, weight_quantization_shift
from neo.passes.calibrate import HIST_BINS, TensorStats, _entropy_range
from neo.passes.equalize import HEADROOM, equalization_pairs, equalize_cross_layer
from neo.passes.quantize import QuantizeConfig, quantize_weights

SIZE = 24


def _photos(n: int, seed: int) -> np.ndarray:
    """n [3, SIZE, SIZE] crops of scikit-image photos, ImageNet-normalized."""
    from skimage import data

    imgs = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    r = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = imgs[i % len(imgs)]
        y, x = r.integers(0, img.shape[0] - SIZE), r.integers(0, img.shape[1] - SIZE)
        p = img[y:y + SIZE, x:x + SIZE].astype(np.float32) / 255.0
        out.append(((p - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).transpose(2, 0, 1))
    return np.stack(out).astype(np.float32)


def _unequal(r: np.random.Generator, shape, spread: float = 3.0) -> np.ndarray:
    """Weights whose output channels' ranges differ by up to 10^spread (as BatchNorm folding
    makes them in trained networks)."""
    w = r.normal(0, 1 / np.sqrt(np.prod(shape[1:])), shape)
    return (w * 10 ** r.uniform(-spread / 2, spread / 2, (shape[0],) + (1,) * (len(shape) - 1))
            ).astype(np.float32)


def _mobile_block(r: np.random.Generator) -> Graph:
    """conv 3x3 -> relu -> depthwise 3x3 -> clip(0, 6) -> conv 1x1 -> relu -> conv 1x1."""
    g = Graph("block")
    x = g.input("x", (8, 3, SIZE, SIZE))
    pad = {"pads": (1, 1, 1, 1)}
    y = g.op("conv", x, g.const(_unequal(r, (16, 3, 3, 3))), g.const(r.normal(0, .5, 16)
                                                                          .astype(np.float32)),
             name="c1", **pad)
    y = g.op("relu", y)
    y = g.op("conv", y, g.const(_unequal(r, (16, 1, 3, 3)) * 3),
             g.const(r.normal(0, .5, 16).astype(np.float32)), name="dw", groups=16, **pad)
    y = g.op("clip", y, min=0.0, max=6.0)
    y = g.op("conv", y, g.const(_unequal(r, (12, 16, 1, 1)) * 0.05), name="c3")
    y = g.op("relu", y)
    y = g.op("conv", y, g.const(_unequal(r, (10, 12, 1, 1))), name="c4")
    g.outputs = [y]
    return g


def _run(g: Graph, x: np.ndarray, values=None) -> list[np.ndarray]:
    """g's outputs, or the values of g named as `values` are, on x."""
    if values is not None:
        by_name = {o.name: o for n in g.nodes for o in n.outputs}
        values = [by_name[v.name] for v in values]
    view = Graph(g.name, list(g.inputs), list(values or g.outputs), list(g.nodes))
    return interpret(view, {"x": x})


def _channel_max(g: Graph, x: np.ndarray) -> dict[str, np.ndarray]:
    pre = [p.first.outputs[0] for p in equalization_pairs(g)]
    return {v.name: a.max(axis=(0, 2, 3)) for v, a in zip(pre, _run(g, x, pre))}


def test_equalization_keeps_the_function_and_equalizes_ranges(rng):
    g = _mobile_block(rng)
    pairs = equalization_pairs(g)
    assert [(p.first.name, p.act.op, p.second.name) for p in pairs] == [
        ("c1", "relu", "dw"), ("dw", "clip", "c3"), ("c3", "relu", "c4")]
    calib, test = _photos(8, 0), _photos(8, 1)
    cmax = _channel_max(g, calib)
    eq, n = equalize_cross_layer(g, cmax)
    assert n == 3
    for x in (calib, test):
        ref, got = _run(g, x)[0], _run(eq, x)[0]
        assert np.abs(ref).max() > 1 and ref.std() > 0.1 * np.abs(ref).max()  # informative
        np.testing.assert_allclose(got, ref, atol=1e-5 * np.abs(ref).max())

    def weight(graph, name):
        return np.abs(next(n for n in graph.nodes if n.name == name).inputs[1].data)

    # the relu pair c3 -> c4: c3's output channel c and c4's input channel c end equal
    r3, r4 = weight(eq, "c3").reshape(12, -1).max(1), weight(eq, "c4").max(axis=(0, 2, 3))
    before = weight(g, "c4").max(axis=(0, 2, 3))
    assert before.max() / before.min() > 10
    np.testing.assert_allclose(r3, r4, rtol=0.05)
    # the clip pair dw -> c3: channels whose calibrated maximum comes near the clip keep their
    # scale, the others are only scaled down (so they stay below the clip)
    y = cmax["dw"]
    near = HEADROOM * y > 6.0
    assert near.any() and (~near).any()  # both kinds in this block

    def dw_out(graph):
        v = next(n for n in graph.nodes if n.name == "dw").outputs[0]
        return np.abs(_run(graph, calib, [v])[0]).max(axis=(0, 2, 3))

    ratio = dw_out(eq) / dw_out(g)  # 1 / s per channel
    np.testing.assert_allclose(ratio[near], 1.0, rtol=1e-5)
    assert (ratio[~near] <= 1 + 1e-5).all() and (ratio[~near] < 0.9).any(), ratio


def test_equalization_leaves_clip_pairs_without_data(rng):
    g = _mobile_block(rng)
    eq, n = equalize_cross_layer(g)
    assert n == 2  # the two relu pairs
    x = _photos(8, 2)
    ref = _run(g, x)[0]
    np.testing.assert_allclose(_run(eq, x)[0], ref, atol=1e-5 * np.abs(ref).max())


def _dequantized(g: Graph, per_channel: bool) -> Graph:
    """g with every conv's and matmul's weights through int8 and back (the error the integer
    kernels make in the weights, exactly)."""
    from neo.ir.rewrite import Rewriter

    rw = Rewriter(g)
    for n in g.nodes:
        ins = [rw.get(v) for v in n.inputs]
        if n.op in ("conv", "matmul"):
            w = n.inputs[1].data
            ints, q = quantize_weights(w, per_channel, 0 if n.op == "conv" else 1)
            ins[1] = rw.new.const((ints * q.scales(w.ndim)).astype(np.float32), "wq")
        for o, no in zip(n.outputs, rw.copy(n, ins)):
            rw.map[id(o)] = no
    rw.new.outputs = [rw.get(v) for v in g.outputs]
    return rw.new


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("layer", ["conv", "matmul"])
def test_bias_correction_removes_the_weight_shift(rng, layer, per_channel):
    """A 3x3 conv (no padding: the shift is the same at every position) on photo crops, or a
    matmul on their pixels: the mean output difference int8 weights cause, per channel, before
    and after correction."""
    g = Graph("one")
    x = g.input("x", (48, 3, SIZE, SIZE))
    if layer == "conv":
        y = g.op("conv", x, g.const(_unequal(rng, (16, 3, 3, 3))), name="c")
        axes = (0, 2, 3)
    else:
        y = g.op("reshape", x, shape=(48 * 3, SIZE * SIZE))
        y = g.op("matmul", y, g.const(_unequal(rng, (10, SIZE * SIZE)).T.copy()), name="m")
        axes = 0
    g.outputs = [y]
    cfg = QuantizeConfig(per_channel=per_channel)
    calib, test = _photos(48, 3), _photos(48, 4)
    node = g.nodes[-1]
    mean = (calib.mean(axis=(0, 2, 3)) if layer == "conv"
            else calib.reshape(-1, SIZE * SIZE).mean(axis=0))
    fixed, n = correct_bias(g, cfg, {node.inputs[0].name: mean})
    assert n == 1
    # the predicted shift is the measured one on the calibration crops (the conv's: up to its
    # taps' windows, each of which misses a different border of the crop)
    ref = _run(g, calib)[0]
    meas = (_run(_dequantized(g, per_channel), calib)[0] - ref).mean(axis=axes)
    pred = weight_quantization_shift(node, mean, per_channel)
    np.testing.assert_allclose(pred, meas, atol=(0.05 if layer == "conv" else 1e-4)
                               * np.abs(meas).max())
    # corrected, it is gone there; on other crops of the same photos the correction removes
    # what their channel means share with the calibration crops' (which differ by up to 0.24)
    for data, most in ((calib, 0.1 if layer == "conv" else 0.01), (test, 0.8)):
        ref = _run(g, data)[0]
        before = np.abs((_run(_dequantized(g, per_channel), data)[0] - ref).mean(axis=axes))
        after = np.abs((_run(_dequantized(fixed, per_channel), data)[0] - ref).mean(axis=axes))
        assert before.mean() > 1e-5 * np.abs(ref).max()  # a shift to remove
        assert after.mean() < most * before.mean(), (most, before.mean(), after.mean())


def _stats(x: np.ndarray) -> TensorStats:
    st = TensorStats(float(x.min()), float(x.max()))
    st.hist = np.histogram(np.abs(x), bins=HIST_BINS, range=(0, st.amax))[0]
    return st


def test_entropy_thresholds(rng):
    """Gaussian: clips only the far tail; ReLU output (half zeros): likewise, the zeros do not
    drag it down; one far outlier: clipped away."""
    g = rng.normal(size=200_000)
    t = _entropy_range(_stats(g), 128)
    assert 3.5 < t <= np.abs(g).max() + 1e-9, t
    relu = np.maximum(g, 0)
    t = _entropy_range(_stats(relu), 256)
    assert 3.0 < t, t
    t = _entropy_range(_stats(np.r_[g, 50.0]), 128)
    assert 3.5 < t < 6, t


def test_equalization_restores_per_tensor_int8(digits, tmp_path):  # noqa: F811
    """The digits CNN with conv1's output channels scaled by 10^U(-2, 2) and conv2's input
    channels by the inverse (ReLU between: the same function): one int8 scale per weight
    tensor loses the small channels, and --equalize gets the accuracy back."""
    import onnx
    from onnx import numpy_helper
    from test_quantize import BATCH, _accuracy

    from neo.compiler import CompileOptions, compile_model
    from neo.runtime import Model

    d = digits
    m = onnx.load(str(d.model))
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    init = {i.name: i for i in m.graph.initializer}
    k = 10 ** np.random.default_rng(1).uniform(-2, 2, 16).astype(np.float32)
    w1, b1, w2 = (numpy_helper.to_array(init[n]) for n in
                  (convs[0].input[1], convs[0].input[2], convs[1].input[1]))
    for name, arr in ((convs[0].input[1], w1 * k[:, None, None, None]),
                      (convs[0].input[2], b1 * k), (convs[1].input[1], w2 / k[None, :, None, None])):
        init[name].CopyFrom(numpy_helper.from_array(arr.astype(np.float32), name))
    skewed = tmp_path / "skewed.onnx"
    onnx.save(m, str(skewed))
    acc = {}
    for eq in (False, True):
        out = tmp_path / f"eq{int(eq)}"
        res = compile_model(CompileOptions(
            framework="onnx", shape=json.dumps({"input": [BATCH, 1, 8, 8]}), target="host",
            output=out, model=str(skewed), use_cache=False, quantize="int8",
            calibration=d.calib, per_channel=False, equalize=eq))
        assert res["precision"]["equalized_pairs"] == (1 if eq else 0)
        with Model(out) as rt:
            acc[eq] = _accuracy(lambda x: rt.run(x)[0], d)
    print(f"\nskewed digits CNN, per-tensor int8: test accuracy {acc[False]:.4f}, with "
          f"equalization {acc[True]:.4f} (fp32 {d.fp32_accuracy:.4f})")
    assert acc[True] >= d.fp32_accuracy - 0.01, (acc, d.fp32_accuracy)
    assert acc[False] < acc[True] - 0.02, acc  # the skew mattered
