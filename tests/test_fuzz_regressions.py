"""Regressions from fuzzed models: an injective producer inlined into a kernel that iterates over
a larger domain (a pad, a concat, a padded pool) must never load outside a buffer, whatever lane
or branch it is in. The feature-pyramid pattern of the report (resize + add, then a padded conv)
died with SIGSEGV in its fused pad: the pad's Select did not stop the resize's index-table loads
at the border, whose garbage then fed an unmasked gather.

Each case is checked twice: statically, by evaluating every load of every tensor-expression
kernel the way the renderer emits it (both sides of a Select, a guarded load only where its
guard holds) and asserting the address is inside its buffer; and compiled at opt-levels 0..3 and
vector widths 128/256/512 (512-bit vectors are legalized on the AVX2 target), against the IR's
numpy interpreter or onnxruntime.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from onnx import helper
from onnx_helpers import make_model, run_ort

from neo import ir
from neo.codegen import te
from neo.codegen.build import build_artifact, generate_kernels
from neo.codegen.kernel_te import KernelContext, build_body_expr
from neo.frontends.onnx import import_onnx
from neo.ir.interpreter import interpret
from neo.ir.ops_elementwise import BINARY, UNARY
from neo.ir.registry import run_reference
from neo.ir.types import np_dtype
from neo.passes import run_pipeline
from neo.runtime import Model
from neo.targets import get_target

WIDTHS = (128, 256, 512)
LEVELS = (0, 1, 2, 3)


def target(width: int):
    return replace(get_target("x86_64"), vector_bits=width)


# -- the cases: (graph, feeds) -------------------------------------------------------------------
def _inputs(g, rng, **shapes):
    vals = {n: g.input(n, s) for n, s in shapes.items()}
    feeds = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}
    return vals, feeds


def _pad_hw(g, x, t=1, left=1, b=1, right=2, **kw):
    return g.op("pad", x, pads=(0, 0, t, left, 0, 0, b, right), **kw)


def fpn_pad(g, rng):  # the report's kernel: mul + add + nearest resize + add, padded
    v, f = _inputs(g, rng, x1=(1, 8, 20, 34), h=(1, 8, 1, 1), x2=(1, 8, 10, 17))
    a = g.op("add", g.op("mul", v["x1"], v["h"]), v["x1"])
    r = g.op("resize", v["x2"], size=(1, 8, 20, 34), scales=(1.0, 1.0, 2.0, 2.0), mode="nearest",
             coord="asymmetric", nearest_mode="floor")
    return [_pad_hw(g, g.op("add", a, r))], f


def pad_resize(g, rng):  # a lone resize under the pad: its table loads at the border
    v, f = _inputs(g, rng, x=(2, 3, 7, 9))
    r = g.op("resize", v["x"], size=(2, 3, 14, 27), scales=(1.0, 1.0, 2.0, 3.0), mode="nearest",
             coord="asymmetric", nearest_mode="floor")
    return [_pad_hw(g, r, 2, 1, 1, 3)], f


def pad_resize_linear(g, rng):
    v, f = _inputs(g, rng, x=(1, 4, 6, 9), y=(1, 4, 12, 18))
    r = g.op("resize", v["x"], size=(1, 4, 12, 18), scales=(1.0, 1.0, 2.0, 2.0), mode="linear",
             coord="half_pixel")
    return [_pad_hw(g, g.op("add", r, v["y"]))], f


def pad_gather(g, rng):  # indices (run-time, negative ones too) loaded at the padded border
    v, f = _inputs(g, rng, x=(2, 4, 6, 11))
    ind = g.input("ind", (17,), "int64")
    f["ind"] = rng.integers(-11, 11, 17).astype(np.int64)
    return [_pad_hw(g, g.op("relu", g.op("gather", v["x"], ind, axis=3)), 0, 2, 3, 1)], f


def pad_concat(g, rng):
    v, f = _inputs(g, rng, a=(2, 3, 5, 17), b=(2, 4, 5, 17))
    c = g.op("concat", g.op("relu", v["a"]), v["b"], axis=1)
    return [_pad_hw(g, c, value=0.5)], f


def pad_transpose(g, rng):
    v, f = _inputs(g, rng, a=(2, 19, 3, 6), b=(2, 19, 3, 6))
    t = g.op("transpose", g.op("add", v["a"], v["b"]), perm=(0, 2, 3, 1))
    return [_pad_hw(g, t, 1, 2, 2, 1)], f


def pad_slice(g, rng):
    v, f = _inputs(g, rng, a=(2, 3, 12, 40))
    s = g.op("slice", g.op("mul", v["a"], g.const(np.float32(2.0))), starts=(0, 0, 1, 3),
             ends=(2, 3, 12, 40), steps=(1, 1, 2, 2))
    return [_pad_hw(g, s)], f


def pad_of_pad(g, rng):
    v, f = _inputs(g, rng, a=(1, 3, 6, 21))
    return [_pad_hw(g, _pad_hw(g, g.op("exp", v["a"]), 0, 1, 1, 0, value=1.0), value=-1.0)], f


def pad_channels(g, rng):  # pad of C (not a plane copy): every load is guarded along C
    v, f = _inputs(g, rng, a=(1, 5, 3, 33), b=(1, 5, 3, 33))
    return [g.op("pad", g.op("sub", v["a"], v["b"]), pads=(0, 2, 0, 0, 0, 1, 0, 0))], f


def concat_producers(g, rng):  # each input's loads run over the whole concat axis
    v, f = _inputs(g, rng, a=(2, 3, 4, 17), b=(2, 2, 4, 17), c=(2, 3, 4, 17))
    return [g.op("concat", g.op("relu", v["a"]), g.op("sigmoid", v["b"]),
                 g.op("add", v["c"], v["c"]), axis=1)], f


def avg_pool_producer(g, rng):
    v, f = _inputs(g, rng, x=(1, 4, 11, 19))
    return [g.op("avg_pool", g.op("relu", v["x"]), kernel=(3, 3), strides=(2, 2),
                 pads=(1, 1, 1, 1))], f


def max_pool_producer(g, rng):
    v, f = _inputs(g, rng, a=(1, 4, 9, 20), b=(1, 4, 9, 20))
    return [g.op("max_pool", g.op("add", v["a"], v["b"]), kernel=(3, 3), strides=(1, 1),
                 pads=(1, 1, 1, 1))], f


def pool_of_pad_resize(g, rng):
    v, f = _inputs(g, rng, x=(1, 3, 5, 9))
    r = g.op("resize", v["x"], size=(1, 3, 10, 18), scales=(1.0, 1.0, 2.0, 2.0), mode="nearest",
             coord="asymmetric", nearest_mode="floor")
    return [g.op("avg_pool", _pad_hw(g, r), kernel=(2, 2), strides=(2, 2), pads=(1, 0, 0, 1),
                 count_include_pad=1)], f


CASES = [fpn_pad, pad_resize, pad_resize_linear, pad_gather, pad_concat, pad_transpose,
         pad_slice, pad_of_pad, pad_channels, concat_producers, avg_pool_producer,
         max_pool_producer, pool_of_pad_resize]


def build(case):
    g = ir.Graph()
    g.outputs, feeds = case(g, np.random.default_rng(0))
    return g, feeds


# -- what the renderer loads ---------------------------------------------------------------------
_INDEX_OPS = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "min": np.minimum,
              "max": np.maximum, "and": np.logical_and, "or": np.logical_or,
              "floordiv": lambda a, b: np.fix(a / b).astype(np.int64),  # sdiv, srem
              "mod": np.fmod, "div": np.divide, "pow": np.power}
_CMP_OPS = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
            "gt": np.greater, "ge": np.greater_equal}


def out_of_bounds_loads(expr: te.Expr, shape: tuple[int, ...], bufs: list[np.ndarray]) -> list:
    """Evaluate expr at every output index (numpy, one axis per loop and reduction variable) as
    the rendered kernel does and return (buffer, address) of each load outside its buffer."""
    extents = {f"i{d}": n for d, n in enumerate(shape)}
    seen = set()

    def collect(e):
        if id(e) not in seen:
            seen.add(id(e))
            if isinstance(e, te.Reduce):
                extents.update(zip(e.vars, e.extents))
            for c in te.children(e):
                collect(c)

    collect(expr)
    names = list(extents)
    env = {v: np.arange(n).reshape([n if u == v else 1 for u in names])
           for v, n in extents.items()}
    bad, memo = [], {}

    def ev(e):
        if id(e) in memo:
            return memo[id(e)][1]
        if isinstance(e, te.Const):
            r = np.asarray(e.value)
        elif isinstance(e, te.Var):
            r = env[e.name]
        elif isinstance(e, te.Bin):
            fn = _INDEX_OPS.get(e.op) or BINARY[e.op][0]
            r = fn(ev(e.a), ev(e.b))
        elif isinstance(e, te.Cmp):
            r = _CMP_OPS[e.op](ev(e.a), ev(e.b))
        elif isinstance(e, te.Un):
            x = ev(e.a)
            r = UNARY[e.op][0](x.astype(np_dtype(e.dtype)), **dict(e.attrs))
        elif isinstance(e, te.Select):  # both sides are rendered
            r = np.where(ev(e.cond), ev(e.a), ev(e.b))
        elif isinstance(e, te.Cast):
            r = ev(e.a).astype(np.int64 if e.dtype == te.INDEX else np_dtype(e.dtype))
        elif isinstance(e, te.Load):
            buf = bufs[e.buf].reshape(-1)
            idx = np.asarray(ev(e.index)).astype(np.int64)
            g = np.asarray(True) if e.guard is None else ev(e.guard)
            idx, g = np.broadcast_arrays(idx, g)
            out = g & ((idx < 0) | (idx >= buf.size))
            if out.any():
                bad.append((e.buf, int(idx[out].flat[0])))
            r = np.where(g, buf[np.clip(idx, 0, buf.size - 1)], e.fill)
        elif isinstance(e, te.Reduce):
            body = np.asarray(ev(e.body))
            axes = tuple(names.index(v) for v in e.vars)
            full = body.shape
            for v in e.vars:
                full = np.broadcast_shapes(full, env[v].shape)
            fn = {"sum": np.sum, "prod": np.prod, "max": np.max, "min": np.min}[e.op]
            r = fn(np.broadcast_to(body, full), axis=axes, keepdims=True)
        else:
            raise TypeError(type(e).__name__)
        memo[id(e)] = (e, r)
        return r

    with np.errstate(all="ignore"):
        ev(expr)
    return bad


def te_kernel_loads(graph: ir.Graph, feeds: dict) -> dict[str, list]:
    """Out-of-bounds loads per tensor-expression kernel of an optimized graph."""
    vals = {id(v): feeds[v.name] for v in graph.inputs}
    _, kernels = generate_kernels(graph, target(256))
    found = {}
    for n, info in kernels:
        args = [v.data if v.is_const else vals[id(v)] for v in n.inputs]
        for o, a in zip(n.outputs, run_reference(n.op, n.attrs, args)):
            vals[id(o)] = np.asarray(a)
        if info is None or info.kernel != "te":
            continue
        ctx = KernelContext(len(n.inputs), consts={i: v.data for i, v in enumerate(n.inputs)
                                                   if v.is_const})
        ins = [te.buffer_tensor(i, v.shape, v.dtype) for i, v in enumerate(n.inputs)]
        out = build_body_expr(n.attrs["body"], ctx, ins)
        shape = n.outputs[0].shape
        expr = out(tuple(te.Var(f"i{d}") for d in range(len(shape))))
        found[info.func] = out_of_bounds_loads(expr, shape, [np.asarray(a) for a in args]
                                               + ctx.tables)
    return found


@pytest.mark.parametrize("level", (2, 3))
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_inlined_producers_never_load_outside(case, level):
    g, feeds = build(case)
    found = te_kernel_loads(run_pipeline(g, level), feeds)
    assert found, "no tensor-expression kernel to check"
    assert not any(found.values()), f"loads outside a buffer (buffer, address): {found}"


def test_checker_sees_an_unguarded_select():
    # The checker itself: a Select does not stop the load of its untaken side.
    i = te.Var("i0")
    load = te.buffer_tensor(0, (4,), "float32")((i - 1,))
    sel = te.select(te.cmp("ge", i - 1, 0), load, te.Const("float32", 0.0))
    bufs = [np.zeros(4, np.float32)]
    assert out_of_bounds_loads(sel, (5,), bufs) == [(0, -1)]
    assert out_of_bounds_loads(te.buffer_tensor(0, (4,), "float32").guarded(
        (i - 1,), te.cmp("ge", i - 1, 0), 0.0), (4,), bufs) == []


# -- compiled --------------------------------------------------------------------------------------
def run_compiled(graph, width, level, tmp_path, feeds):
    build_artifact(graph, target(width), tmp_path, {"inputs": []}, level)
    with Model(str(tmp_path)) as m:
        return m.run({k: feeds[k] for k in m.input_names})


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_inlined_producers_compiled(case, level, width, tmp_path):
    g, feeds = build(case)
    ref = interpret(g, feeds)
    got = run_compiled(run_pipeline(g, level), width, level, tmp_path, feeds)
    for r, o in zip(ref, got):
        np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-5)


def fpn_model(channels: int, size: int, stride: int):
    """The report's model: Mul, Add, nearest Resize x2, Add, then a 3x3 conv (opset 12)."""
    c, s, h = channels, size, size // 2
    w = np.random.default_rng(1).standard_normal((24, c, 3, 3)).astype(np.float32) * 0.1
    nodes = [
        helper.make_node("Mul", ["x1", "h"], ["m"]),
        helper.make_node("Add", ["m", "x1"], ["a"]),
        helper.make_node("Resize", ["x2", "roi", "scales"], ["r"], mode="nearest",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("Add", ["a", "r"], ["s"]),
        helper.make_node("Conv", ["s", "W"], ["y"], pads=[1, 1, 1, 1], strides=[stride] * 2,
                         kernel_shape=[3, 3]),
    ]
    model = make_model(nodes, [("x1", np.float32, [1, c, s, s]), ("h", np.float32, [1, c, 1, 1]),
                               ("x2", np.float32, [1, c, h, h])], ["y"],
                       {"W": w, "roi": np.zeros(0, np.float32),
                        "scales": np.array([1, 1, 2, 2], np.float32)}, opset=12)
    r = np.random.default_rng(2)
    feeds = {"x1": r.standard_normal((1, c, s, s)).astype(np.float32),
             "h": r.standard_normal((1, c, 1, 1)).astype(np.float32),
             "x2": r.standard_normal((1, c, h, h)).astype(np.float32)}
    return model, feeds


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("fpn", [(96, 80, 2), (96, 80, 1), (32, 160, 2)],
                         ids=["96c80-s2", "96c80-s1", "32c160-s2"])
def test_fpn_resize_add_conv(fpn, level, width, tmp_path):
    model, feeds = fpn_model(*fpn)
    graph = run_pipeline(import_onnx(model), level)
    if level >= 2:
        assert not any(te_kernel_loads(graph, feeds).values())
    got = run_compiled(graph, width, level, tmp_path / "out", feeds)[0]
    ref = run_ort(model, feeds)[0]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


# -- found by the graph fuzzer (tests/fuzz; docs/FUZZING.md) -------------------------------------
# Each case is the fuzzer's minimized graph, checked with the fuzzer's own oracle: compiled at the
# configs given, run by neo-run in checked mode in a subprocess (as `neo run` does), compared with
# the float64 reference and onnxruntime.
def fuzz_check(model, feeds, configs=("O0-w256", "O3-w512")):
    from fuzz.oracle import Config, check_model

    res = check_model(model, feeds, [Config.parse(c) for c in configs])
    assert res.configs, "no config ran"
    assert not res.failures, "\n".join(f.line() for f in res.failures)


def test_scalar_graph_input_runs():
    # seed 508: a rank-0 graph input (the scalar operand of a broadcast). run_artifact saved it
    # with np.ascontiguousarray, which makes a scalar 1-D, and neo-run refused the shape (1).
    model = make_model([helper.make_node("Mul", ["x", "s"], ["y"])],
                       [("x", np.float32, [2, 3]), ("s", np.float32, [])], ["y"])
    fuzz_check(model, {"x": np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5,
                       "s": np.array(-1.75, np.float32)})


def _pad_rows_and_tail(dtype):
    # seed 974: a constant pad of the channels (whole rows of fill) and of the last axis. In the
    # vector tail the load's mask was `splat(row guard) & constant`, and LLVM 22 turns the half
    # of such a masked load that it splits off (16 floats on AVX2, or 8 doubles) into an unmasked
    # load when that half's constant is all false: reads past the input (SIGSEGV in checked mode)
    # and stores them where the fill belongs.
    nodes = [helper.make_node("Cast", ["x"], ["c"], to=1),
             helper.make_node("Pad", ["c", "pads", "v", "axes"], ["y"], mode="constant")]
    inits = {"pads": np.array([1, 2, 3, 2], np.int64), "v": np.array(0.5, np.float32),
             "axes": np.array([1, 2], np.int64)}
    model = make_model(nodes, [("x", dtype, [1, 3, 133])], ["y"], inits, opset=18)
    x = np.random.default_rng(974).standard_normal((1, 3, 133)).astype(dtype)
    return model, {"x": x}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_padded_rows_in_a_vector_tail_load_nothing(dtype):
    model, feeds = _pad_rows_and_tail(dtype)
    fuzz_check(model, feeds, [f"O{lv}-{w}" for lv in (0, 1, 3) for w in ("w128", "w256", "w512",
                                                                         "avx512")])


# seed 7087 / 7006: an epilogue operand that varies along one spatial axis only. The plane
# kernels index epilogue operands over the whole output plane, so such an operand must not fuse
# into them: fusion refused it for conv anchors but not for winograd_output (the matmul rule let
# [1,C,H,1] through), and a max pool takes any same-shaped epilogue.
@pytest.mark.parametrize("shape", [(1, 16, 12, 1), (1, 16, 1, 12), (1, 1, 12, 1), (16, 1, 1)],
                         ids=lambda s: "x".join(map(str, s)))
def test_winograd_epilogue_operand_along_one_axis(shape):
    r = np.random.default_rng(7087)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["y", "c"], ["z"])]
    model = make_model(nodes, [("x", np.float32, [1, 16, 12, 12])], ["z"],
                       {"w": (r.standard_normal((16, 16, 3, 3)) / 12).astype(np.float32),
                        "c": r.standard_normal(shape).astype(np.float32)})
    fuzz_check(model, {"x": r.standard_normal((1, 16, 12, 12)).astype(np.float32)},
               ["O3-w128", "O3-w256", "O3-w512", "O3-avx512"])


@pytest.mark.parametrize("shape", [(1, 1, 3, 1), (1, 1, 1, 2), (1, 4, 3, 1)],
                         ids=lambda s: "x".join(map(str, s)))
def test_max_pool_epilogue_operand_along_one_axis(shape):
    r = np.random.default_rng(7006)
    nodes = [helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2, 2], pads=[1, 0, 1, 0],
                              strides=[2, 2]),
             helper.make_node("Min", ["c", "p"], ["y"])]
    model = make_model(nodes, [("x", np.float32, [1, 4, 4, 4]), ("c", np.float32, list(shape))],
                       ["y"])
    fuzz_check(model, {"x": r.standard_normal((1, 4, 4, 4)).astype(np.float32),
                       "c": r.standard_normal(shape).astype(np.float32)},
               ["O2-w128", "O2-w256", "O3-w512", "O3-avx512"])


@pytest.mark.parametrize("pads", [(1, 1), (6, 6), (0, 1)])
def test_division_under_a_pad_is_not_nan(pads):
    # seed 7068: MeanVarianceNormalization (x - mean) / sqrt(var + eps) fused under a spatial pad.
    # The pad's select discards the division in the padded lanes, where its guarded loads read
    # 0 and 0/0 is NaN; LLVM 22's x86 backend takes that 0/0 for a known zero and drops the
    # select's mask, so NaN reached the output. Those loads now read 1 where they are discarded.
    top, left = pads
    model = make_model([helper.make_node("MeanVarianceNormalization", ["x"], ["n"], axes=[1]),
                        helper.make_node("Pad", ["n", "p"], ["y"])],
                       [("x", np.float32, [1, 2, 1, 3])], ["y"],
                       {"p": np.array([0, 0, top, left, 0, 0, top, left], np.int64)}, opset=12)
    x = np.random.default_rng(7068).standard_normal((1, 2, 1, 3)).astype(np.float32)
    fuzz_check(model, {"x": x}, ["O0-w256"] + [f"O2-{w}" for w in ("w128", "w256", "w512",
                                                                     "avx512")])


def test_long_float32_sums_are_accurate():
    # seed 1100045: a LayerNormalization over 12 x 36 x 23 = 9936 values, one per channel (an
    # expanded tensor). Summed in float32 one after another, equal terms round the same way every
    # time and the mean was off by 4.5e-5 of itself (onnxruntime: 1e-6), outputs near zero by 1%
    # of their value. Float32 sums of >= 256 terms accumulate in float64.
    r = np.random.default_rng(1100045)
    shape = [1, 12, 36, 23]
    node = helper.make_node("LayerNormalization", ["x", "s", "b"], ["y"], axis=1)
    inits = {"s": r.uniform(0.5, 1.5, shape[1:]).astype(np.float32),
             "b": (r.standard_normal(shape[1:]) * 0.3).astype(np.float32)}
    model = make_model([node], [("x", np.float32, shape)], ["y"], inits, opset=18)
    per_channel = r.uniform(0.14, 0.8, (1, 12, 1, 1)).astype(np.float32)
    x = np.ascontiguousarray(np.broadcast_to(per_channel, shape))
    fuzz_check(model, {"x": x}, ["O0-w128", "O3-w256", "O3-avx512"])
