"""The integer depthwise conv kernel (kernel_dwconv.py with integer slots, "int8-depthwise"),
compiled and run in the runtime's checked mode, equal to the numpy references bit for bit.

Every case runs at every vector width (conftest.VECTOR_WIDTHS: 128/256/512 legalized to AVX2,
native AVX-512) and asserts that the int8 depthwise kernel is the one that runs. x86 sums pairs
of rows of taps with vpmaddwd; arm64 and armv7 (under qemu) run int32 multiply-adds.

Cases: strides 1, 2 and 3, asymmetric and no padding, dilation, 3x3 and 5x5 windows, planes
whose rows end in a tail vector (7x7, 14x14, 13x17), channel multiplier 2, int8 and uint8
activations with nonzero zero points, per-channel weights and multipliers, weights with zero
points (ONNX ConvInteger), TFLite's fixed-point requantize and onnxruntime's float one, a fused
ReLU6 clamp, no bias, batch 2, and TFLite's int8 AVERAGE_POOL_2D (a depthwise conv_integer of
ones, then a division by each window's count: a tensor-expression kernel, since the sum has three
consumers).
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import run_artifact_checked

from neo import ir
from neo.codegen.build import build_artifact, emit_assembly, generate_kernels
from neo.ir import QuantParams
from neo.ir.interpreter import interpret
from neo.passes import run_pipeline
from neo.targets import get_target

KERNEL = "int8-depthwise"


def dw_graph(c, mult, h, w, k, s, pads, d=1, *, xdt="int8", xz=-3, wz=0, wdt="int8",
             bias=True, mode="fixed_point", relu6=True, batch=1, seed=0):
    """conv_integer (depthwise, `mult` outputs per channel) + requantize to int8, clamped to
    ReLU6 (scale 0.05: [zo, zo + 120]) or the int8 range."""
    rng = np.random.default_rng(seed)
    g = ir.Graph()
    x = g.input("x", (batch, c, h, w), xdt)
    oc = c * mult
    if wdt == "int8":
        wt = rng.integers(-127, 128, (oc, 1, k, k)).astype(np.int8)
    else:
        wt = rng.integers(0, 256, (oc, 1, k, k)).astype(np.uint8)
    ins = [x, g.const(wt, "w")]
    if bias:
        ins.append(g.const(rng.integers(-3000, 3000, oc).astype(np.int32), "b"))
    pads = pads if isinstance(pads, tuple) else (pads,) * 4
    acc = g.op("conv_integer", *ins, x_zero_point=xz, w_zero_point=wz, strides=(s, s),
               pads=pads, dilations=(d, d), groups=c)
    # |x - xz| and |w - wz| average ~74: the sums' spread is ~5400 k; outputs span ~80 steps
    m = tuple(rng.uniform(0.5, 1.5, oc) * 40 / (5400 * k))
    zo = -100
    lo, hi = (zo, zo + 120) if relu6 else (-128, 127)
    y = g.op("requantize", acc, multiplier=m, axis=1, out_zero_point=zo, dtype="int8",
             mode=mode, min=lo, max=hi, quant=QuantParams.per_tensor(0.05, zo))
    g.outputs = [y]
    span = (-128, 128) if xdt == "int8" else (0, 256)
    feeds = {"x": rng.integers(*span, (batch, c, h, w)).astype(xdt)}
    return g, feeds


def avg_pool_graph(c, h, w, k, s, p, *, zx=-7, seed=0):
    """TFLite's int8 AVERAGE_POOL_2D as its frontend builds it (frontends/tflite/quantized.py:
    pool), channels first: the window sums of x - zx by a depthwise conv of ones, plus
    count * zx, divided by each window's count of inside positions rounding half away from
    zero."""
    from neo.ir.ops_nn import conv_reference

    rng = np.random.default_rng(seed)
    g = ir.Graph()
    x = g.input("x", (1, c, h, w), "int8")
    pads = (p,) * 4
    ones = g.const(np.ones((c, 1, k, k), np.int8), "ones")
    centered = g.op("conv_integer", x, ones, strides=(s, s), pads=pads, groups=c,
                    x_zero_point=zx, w_zero_point=0)
    counts = conv_reference({"strides": (s, s), "pads": pads, "dilations": None, "groups": 1},
                            np.ones((1, 1, h, w)), np.ones((1, 1, k, k)))
    counts = np.rint(counts).astype(np.int32)
    total = g.op("add", centered, g.const(counts * np.int32(zx)))
    up = g.op("div", g.op("add", total, g.const(counts // 2)), g.const(counts))
    down = g.op("div", g.op("sub", total, g.const(counts // 2)), g.const(counts))
    rounded = g.op("where", g.op("greater", total, g.const(np.int32(0))), up, down)
    q = QuantParams.per_tensor(0.1, zx)
    g.outputs = [g.op("requantize", rounded, multiplier=(1.0,), in_zero_point=zx,
                      out_zero_point=zx, dtype="int8", mode="fixed_point", min=-128, max=127,
                      quant=q)]
    return g, {"x": rng.integers(-128, 128, (1, c, h, w)).astype(np.int8)}


# (channels, multiplier, H, W, kernel, stride, pads, dilation)
CASES = [
    (16, 1, 14, 14, 3, 1, 1, 1),  # MobileNet's 14x14: a full vector and a tail per row
    (8, 1, 7, 7, 3, 1, 1, 1),  # 7x7: rows shorter than a vector
    (8, 1, 13, 17, 3, 1, 1, 1),
    (8, 1, 13, 17, 3, 2, (0, 0, 1, 1), 1),  # TFLite's SAME for stride 2: pad bottom/right
    (8, 1, 28, 28, 3, 2, 1, 1),
    (6, 1, 21, 37, 5, 2, 2, 1),  # 5x5 stride 2 (EfficientNet)
    (6, 1, 13, 17, 5, 1, 2, 1),  # 5x5: three pairs of rows of taps, the last half empty
    (8, 1, 16, 19, 3, 1, 2, 2),  # dilation 2: pairs of rows two apart
    (6, 1, 17, 18, 3, 2, 2, 2),  # stride 2 and dilation 2: the pairs read every other row
    (4, 2, 14, 14, 3, 1, 1, 1),  # channel multiplier 2
    (5, 1, 12, 11, 3, 3, (1, 0, 2, 1), 1),  # stride 3, asymmetric pads
    (8, 1, 9, 10, 3, 1, 0, 1),  # no padding
]


def _id(c):
    ch, mult, h, w, k, s, p, d = c
    p = "p" + ("-".join(map(str, p)) if isinstance(p, tuple) else str(p))
    return f"{ch}x{mult}-{h}x{w}-k{k}s{s}{p}d{d}"


def conv_kernels(graph, target) -> list[str]:
    """The kernel family of every fused node holding a conv_integer."""
    _, kernels = generate_kernels(graph, target)
    return [info.kernel for _, info in kernels if info is not None and "conv_integer" in info.op]


def _check(g, feeds, target, tmp_path):
    graph = run_pipeline(g, 3)
    assert conv_kernels(graph, target) == [KERNEL]
    want = interpret(g, feeds)[0]
    assert len(np.unique(want)) > 8, "the reference is not informative"
    build_artifact(graph, target, tmp_path, {"inputs": []}, 3)
    np.testing.assert_array_equal(run_artifact_checked(tmp_path, feeds)[0], want)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_depthwise_int8_matches_reference(case, vtarget, tmp_path):
    i = CASES.index(case)
    # int8 and uint8 activations alternate; the zero points are far from 0 either way
    xdt, xz = ("int8", -3) if i % 2 == 0 else ("uint8", 131)
    g, feeds = dw_graph(*case, xdt=xdt, xz=xz, seed=i)
    _check(g, feeds, vtarget, tmp_path)


VARIANTS = {
    # ONNX ConvInteger: uint8 weights with per-channel zero points, no bias
    "weight-zero-points": {"wdt": "uint8", "wz": tuple(range(120, 136)), "bias": False},
    # onnxruntime's QLinearConv requantize: float multiply, half to even
    "float-requantize": {"mode": "float", "xdt": "uint8", "xz": 128},
    "no-clamp-batch2": {"relu6": False, "batch": 2, "xz": -128},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_depthwise_int8_variants(variant, vtarget, tmp_path):
    g, feeds = dw_graph(16, 1, 14, 14, 3, 1, 1, seed=7, **VARIANTS[variant])
    _check(g, feeds, vtarget, tmp_path)


@pytest.mark.parametrize("case", [(8, 14, 14, 3, 1, 1), (32, 7, 7, 7, 1, 0), (4, 13, 17, 3, 2, 1)],
                         ids=["3x3s1", "global-7x7", "3x3s2"])
def test_int8_average_pool(case, vtarget, tmp_path):
    g, feeds = avg_pool_graph(*case)
    _check(g, feeds, vtarget, tmp_path)


@pytest.mark.parametrize("target", ["arm64", "armv7"])
def test_depthwise_int8_on_arm(target, tmp_path, require_qemu):
    from neo.run import run_artifact

    t = get_target(target)
    require_qemu(target)
    for i, case in enumerate((CASES[0], CASES[3], CASES[7])):
        g, feeds = dw_graph(*case, xdt="uint8" if i % 2 else "int8", xz=131 if i % 2 else -3,
                            seed=i)
        graph = run_pipeline(g, 3)
        assert conv_kernels(graph, t) == [KERNEL]
        want = interpret(g, feeds)[0]
        meta = {"inputs": [{"name": "x", "dtype": g.inputs[0].dtype,
                            "shape": list(g.inputs[0].shape)}],
                "outputs": [{"name": g.out_names()[0], "dtype": "int8",
                             "shape": list(want.shape)}]}
        art = tmp_path / f"a{i}"
        build_artifact(graph, t, art, meta, 3)
        _, outs, info = run_artifact(art, feeds, threads=2, check=True)
        assert info["emulated"]
        np.testing.assert_array_equal(outs[0], want)


def test_x86_sums_pairs_of_taps_with_pmaddwd():
    # AVX2 (x86-64-v3) and the host (AVX-512; with VNNI, LLVM fuses the add: vpdpwssd)
    for name in ("x86_64", "host"):
        t = get_target(name)
        g, _ = dw_graph(32, 1, 14, 14, 3, 1, 1)
        module, _ = generate_kernels(run_pipeline(g, 3), t)
        asm = emit_assembly(module, t)
        assert re.search(r"\b(vpmaddwd|vpdpwssd)\b", asm), name
        assert not re.search(r"\bvpmulld\b", asm), name


@pytest.mark.parametrize("layout", ["rows", "lanes"])
@pytest.mark.parametrize("shifts", ["mixed", "right"])
@pytest.mark.parametrize("target", ["x86_64", "host", "arm64", "armv7"])
def test_fixed_point_requantize_ties_and_extremes(target, shifts, layout, tmp_path,
                                                   require_qemu):
    """TFLite's double rounding in int32 lanes (te_quant.fixed_point_multiply_i32), on the
    values where it can go wrong: every tie of both roundings (power-of-two multipliers over a
    run of consecutive accumulators), accumulators near +-2^31, and a multiplier above 1 (a
    left shift first), each channel's outputs within int8 so no error hides in saturation.
    `right`: every channel shifts right (math_table.rshift_away), one of them by 1; `mixed`:
    the multiplier 3.0 shifts left, so its channel does not. `rows`: a channel's multiplier is
    the same in every lane; `lanes`: the channels (18: the six, three times) are the vectors'
    lanes, each lane its own multiplier and shift."""
    from neo.run import run_artifact

    t = get_target(target)
    if t.arch != "x86_64":
        require_qemu(target)
    n = 4096
    ramp = np.arange(-n // 2, n // 2, dtype=np.int64)
    big = np.linspace(-(2**31), 2**31 - 1, n).astype(np.int64)
    # (multiplier, accumulators): the first two tie at each rounding; 2^-25 and 0.7 * 2^-24
    # on the whole int32 range; 3.0 shifts left by 2 before its doubling high multiply
    rows = [(2.0**-6, ramp), (3 * 2.0**-8, ramp), (2.0**-25, big), (0.7 * 2.0**-24, big),
            (1.37e-3 / 16, ramp * 23), (3.0, ramp % 81 - 40)]
    if shifts == "right":  # 0.4999: shift 1, where the doubling high multiply's ties matter
        rows[-1] = (0.4999, ramp % 201 - 100)
    acc = np.stack([v for _, v in rows]).astype(np.int32)
    if layout == "lanes":
        rows = rows * 3
        acc = np.concatenate([acc, acc[:, ::-1], np.roll(acc, 7, axis=1)]).T.copy()
    shape = (1, len(rows), 1, n) if layout == "rows" else (1, 1, n, len(rows))
    g = ir.Graph()
    x = g.input("x", shape, "int32")
    g.outputs = [g.op("requantize", x, multiplier=tuple(m for m, _ in rows),
                      axis=1 if layout == "rows" else 3, out_zero_point=3, dtype="int8",
                      mode="fixed_point", min=-128, max=127,
                      quant=QuantParams.per_tensor(0.1, 3))]
    feeds = {"x": acc.reshape(shape)}
    want = interpret(g, feeds)[0]
    assert (np.abs(want.astype(int)) < 127).mean() > 0.99  # not saturated
    meta = {"inputs": [{"name": "x", "dtype": "int32", "shape": list(x.shape)}],
            "outputs": [{"name": g.out_names()[0], "dtype": "int8", "shape": list(want.shape)}]}
    build_artifact(run_pipeline(g, 3), t, tmp_path, meta, 3)
    _, outs, _ = run_artifact(tmp_path, feeds, check=True)
    np.testing.assert_array_equal(outs[0], want)


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
@pytest.mark.parametrize("target", ["x86_64", "host", "arm64", "armv7"])
def test_fixed_point_qadd_every_pair(target, dtype, tmp_path, require_qemu):
    """TFLite's int8/uint8 ADD and SUB (qadd, fixed point: three doubling high multiplies and
    rounding shifts in int32 lanes) on every pair of 8-bit inputs, for scales where a's, b's
    or neither is the larger, against the int64 numpy reference."""
    from neo.run import run_artifact

    t = get_target(target)
    if t.arch != "x86_64":
        require_qemu(target)
    lo, hi = (-128, 127) if dtype == "int8" else (0, 255)
    grid = np.arange(lo, hi + 1)
    a_vals, b_vals = np.meshgrid(grid, grid, indexing="ij")
    g = ir.Graph()
    a = g.input("a", (1, 1, 256, 256), dtype)
    b = g.input("b", (1, 1, 256, 256), dtype)
    z = 0 if dtype == "int8" else 128
    cases = [(0.05, 0.08, 0.1, False), (0.2, 0.013, 0.17, True), (0.0371, 0.0371, 0.0213, False)]
    outs = []
    for sa, sb, sc, sub in cases:
        outs.append(g.op("qadd", a, b, a_quant=QuantParams.per_tensor(sa, z - 7),
                         b_quant=QuantParams.per_tensor(sb, z + 5),
                         quant=QuantParams.per_tensor(sc, z + 3), dtype=dtype,
                         mode="fixed_point", subtract=sub))
    g.outputs = outs
    feeds = {"a": a_vals.astype(dtype).reshape(1, 1, 256, 256),
             "b": b_vals.astype(dtype).reshape(1, 1, 256, 256)}
    want = interpret(g, feeds)
    assert all(len(np.unique(w)) > 120 for w in want), [len(np.unique(w)) for w in want]
    meta = {"inputs": [{"name": n, "dtype": dtype, "shape": [1, 1, 256, 256]} for n in "ab"],
            "outputs": [{"name": n, "dtype": dtype, "shape": [1, 1, 256, 256]}
                        for n in g.out_names()]}
    build_artifact(run_pipeline(g, 3), t, tmp_path, meta, 3)
    _, got, _ = run_artifact(tmp_path, feeds, check=True)
    for w, o in zip(want, got):
        np.testing.assert_array_equal(o, w)
