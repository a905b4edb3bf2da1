"""Every op the ONNX frontend converts, compiled through NeoBackend at every vector width
(conftest.VECTOR_WIDTHS) and run here, against onnxruntime: floats to rtol 1e-4 / atol 1e-5,
integers and booleans exactly.

Shapes are picked to hit the code generator's edge cases: inner dimensions of 1, 7, 17 and 33 (vector
tails of 8-lane kernels), broadcasting of scalars, channels and [N,1] x [1,M], negative axes, the
conv/matmul GEMM paths with fused epilogues and their tensor-expression fallbacks.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import VECTOR_WIDTHS, width_target
from onnx import helper
from onnx_helpers import make_model, run_ort

from neo.frontends.onnx import supported_ops
from neo.onnx_backend import NeoBackend

RNG = np.random.default_rng(20240611)
CHECKED = True  # the runtime's checked mode (guard bytes around every buffer)
# Inner dims that leave no, a partial, and a full-plus-partial vector (of 4, 8 or 16 float lanes).
TAIL_SHAPES = [(1,), (2, 7), (3, 17), (2, 3, 33)]


def rand(*shape, dtype="float32", low=-2.0, high=2.0):
    return np.asarray(RNG.uniform(low, high, shape)).astype(dtype)


def ints(*shape, low=-9, high=10, dtype="int64"):
    return np.asarray(RNG.integers(low, high, shape)).astype(dtype)


def i64(*values):
    return np.array(values, np.int64)


def f32(*values):
    return np.array(values, np.float32)


class Case:
    """A model and its feeds: graph inputs from `feeds`, initializers from `inits`."""

    def __init__(self, nodes, feeds, inits=None, *, outputs=None, opset=17, rtol=1e-4,
                 atol=1e-5, oracle="onnxruntime", steps=0):
        feeds = {k: np.asarray(v) for k, v in feeds.items()}  # 0-d results of numpy ops
        self.feeds = feeds
        outs = outputs or [o for o in nodes[-1].output if o]
        inputs = [(n, a.dtype, a.shape) for n, a in feeds.items()]
        self.model = make_model(nodes, inputs, outs, inits or {}, opset)
        domains = sorted({n.domain for n in nodes} - {"", "ai.onnx"})
        self.model.opset_import.extend(helper.make_opsetid(d, 1) for d in domains)
        self.rtol, self.atol = rtol, atol
        self.oracle = oracle
        # integer outputs may differ from the oracle's by this many steps (quantized ops whose
        # float intermediate onnxruntime computes in its own order: 1 quantization step)
        self.steps = steps


def node(op, ins, outs=("y",), **attrs):
    return helper.make_node(op, list(ins), list(outs), **attrs)


def single(op, feeds, inits=None, *, ins=None, opset=17, n_out=1, rtol=1e-4, atol=1e-5,
           oracle="onnxruntime", steps=0, **attrs):
    """One node reading `feeds` (graph inputs) then `inits` (initializers) unless `ins` says.
    An `op` of "domain.Op" (com.microsoft.QLinearAdd) is that domain's op."""
    inits = inits or {}
    ins = ins if ins is not None else [*feeds, *inits]
    outs = [f"y{i}" for i in range(n_out)]
    domain, _, op_type = op.rpartition(".")
    n = node(op_type, ins, outs, **attrs)
    n.domain = domain
    return Case([n], feeds, inits, opset=opset, rtol=rtol, atol=atol, oracle=oracle,
                steps=steps)


def per_shape(op, make_input, *, opset=17, rtol=1e-4, atol=1e-5, **attrs):
    """One model applying `op` to an input of each TAIL_SHAPES shape (one compile, four kernels)."""
    feeds = {f"x{i}": make_input(s) for i, s in enumerate(TAIL_SHAPES)}
    nodes = [node(op, [f"x{i}"], [f"y{i}"], **attrs) for i in range(len(TAIL_SHAPES))]
    return Case(nodes, feeds, opset=opset, rtol=rtol, atol=atol,
                outputs=[f"y{i}" for i in range(len(TAIL_SHAPES))])


def _typed_outputs(model: onnx.ModelProto, arrays) -> onnx.ModelProto:
    """`model` with its outputs declared as the arrays onnxruntime produced (the checker that
    Backend.prepare runs wants output types)."""
    typed = onnx.ModelProto()
    typed.CopyFrom(model)
    for out, a in zip(typed.graph.output, arrays):
        a = np.asarray(a)
        out.CopyFrom(helper.make_tensor_value_info(
            out.name, helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape)))
    return typed


def run_case(case: Case, opt_level: int = 3, width: str = "w256") -> None:
    if case.oracle == "onnxruntime":
        expected = run_ort(case.model, case.feeds)
    else:  # where onnxruntime departs from the spec, the ONNX reference implementation
        from onnx.reference import ReferenceEvaluator

        expected = ReferenceEvaluator(case.model).run(None, case.feeds)
    rep = NeoBackend.prepare(_typed_outputs(case.model, expected), opt_level=opt_level,
                             target=width_target(width), check=CHECKED)
    try:
        got = rep.run(list(case.feeds.values()))
    finally:
        rep.close()
    names = [o.name for o in case.model.graph.output]
    assert len(got) == len(expected)
    for name, g, e in zip(names, got, expected):
        e = np.asarray(e)
        assert g.shape == e.shape, f"{name}: shape {g.shape}, onnxruntime {e.shape}"
        assert g.dtype == e.dtype, f"{name}: dtype {g.dtype}, onnxruntime {e.dtype}"
        if e.dtype.kind in "fc":
            np.testing.assert_allclose(g, e, rtol=case.rtol, atol=case.atol, err_msg=name)
        elif case.steps:
            diff = np.abs(g.astype(np.int64) - e.astype(np.int64))
            assert diff.max(initial=0) <= case.steps, (
                f"{name}: {int((diff > case.steps).sum())} of {diff.size} values more than "
                f"{case.steps} step(s) from onnxruntime's (max {int(diff.max())})")
        else:
            np.testing.assert_array_equal(g, e, err_msg=name)


CASES: dict[str, list] = {}


def add(op: str, case_id: str, case: Case) -> None:
    CASES.setdefault(op, []).append(pytest.param(case, id=f"{op}-{case_id}"))


# -- unary elementwise ------------------------------------------------------------------------------
def _any(s):
    return rand(*s)


def _positive(s):
    return rand(*s, low=0.05, high=4.0)


def _nonzero(s):
    x = rand(*s, low=0.2, high=3.0)
    return x * np.where(rand(*s) > 0, 1, -1).astype(np.float32)


def _halves(s):
    # values at and near .5 to check round-half-to-even and floor/ceil
    return (ints(*s, low=-8, high=9).astype(np.float32) / 2
            + rand(*s, low=-0.01, high=0.01) * (rand(*s) > 1.5))


UNARY_FLOAT = {
    "Relu": _any, "Sigmoid": lambda s: rand(*s, low=-12, high=12),
    "Tanh": lambda s: rand(*s, low=-6, high=6), "Exp": lambda s: rand(*s, low=-20, high=20),
    "Log": _positive, "Sqrt": _positive, "Neg": _any, "Abs": _any, "Erf": _any,
    "Reciprocal": _nonzero, "Floor": _halves, "Ceil": _halves, "Round": _halves, "Sign": _halves,
    "Sin": lambda s: rand(*s, low=-7, high=7), "Cos": lambda s: rand(*s, low=-7, high=7),
    "Softplus": lambda s: rand(*s, low=-30, high=30), "HardSwish": lambda s: rand(*s, low=-5, high=5),
    "Mish": lambda s: rand(*s, low=-8, high=8), "Identity": _any,
}
for _op, _gen in UNARY_FLOAT.items():
    add(_op, "tails", per_shape(_op, lambda s, g=_gen: g(s).astype(np.float32), opset=18))

for _op, _attrs in [("Elu", {}), ("Elu", {"alpha": 0.3}), ("LeakyRelu", {}),
                    ("LeakyRelu", {"alpha": 0.2}), ("HardSigmoid", {}),
                    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}), ("Selu", {}),
                    ("Selu", {"alpha": 1.5, "gamma": 2.0})]:
    add(_op, "-".join(f"{k}{v}" for k, v in _attrs.items()) or "default",
        per_shape(_op, lambda s: rand(*s, low=-4, high=4), **_attrs))
# NaN, infinities, signed zero, denormals and overflowing arguments: NaN must come out as NaN
# (a clamped exp once turned softmax of a NaN row into a uniform distribution).
SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, 100.0, -100.0, 88.7, 88.8,
                    -87.4, -88.0, 30.0, -30.0, 1e30, -1e30, 0.5, -2.5], np.float32)
for _op in ["Exp", "Log", "Sqrt", "Sigmoid", "Tanh", "Softplus", "Erf", "Relu", "Reciprocal",
            "Neg", "Abs", "Floor", "Ceil", "Round", "Sign", "HardSwish", "Mish", "Elu",
            "LeakyRelu", "HardSigmoid", "Selu", "Softmax", "LogSoftmax"]:
    add(_op, "special-values", single(_op, {"x": SPECIAL.reshape(1, -1)}, opset=18))
add("Gelu", "special-values", single("Gelu", {"x": SPECIAL}, opset=20))
add("Clip", "special-values", single("Clip", {"x": SPECIAL}, {"lo": f32(-1), "hi": f32(1)}))
for _approx in ("none", "tanh"):
    add("Gelu", _approx, per_shape("Gelu", lambda s: rand(*s, low=-5, high=5), opset=20,
                                   approximate=_approx))
for _dt in ("int32", "int64", "int8"):
    for _op in ("Abs", "Neg", "Sign", "Relu"):
        add(_op, _dt, per_shape(_op, lambda s, d=_dt: ints(*s, low=-100, high=100, dtype=d),
                                opset=18))
add("Not", "bool", per_shape("Not", lambda s: rand(*s) > 0))
for _dt in ("float64", "float16"):
    for _op in ("Relu", "Exp", "Tanh", "Sigmoid", "Abs", "Sqrt"):
        add(_op, _dt, per_shape(_op, lambda s, d=_dt: _positive(s).astype(d),
                                rtol=1e-3 if _dt == "float16" else 1e-6,
                                atol=1e-3 if _dt == "float16" else 1e-7))

# -- binary elementwise and broadcasting -------------------------------------------------------------
BROADCASTS = [
    ("same", (2, 3, 17), (2, 3, 17)),
    ("scalar", (2, 3, 33), ()),
    ("scalar-left", (), (4, 7)),
    ("channel", (2, 3, 5, 7), (1, 3, 1, 1)),
    ("channel-rank3", (2, 3, 5, 7), (3, 1, 1)),
    ("col-row", (5, 1), (1, 33)),
    ("row-col", (1, 17), (6, 1)),
    ("trailing", (2, 3, 7), (7,)),
    ("one", (4, 9), (1,)),
    ("inner1", (3, 4, 1), (3, 1, 1)),
]
for _op in ("Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Equal", "Less", "Greater",
            "LessOrEqual", "GreaterOrEqual"):
    for _bid, _sa, _sb in BROADCASTS:
        _a = rand(*_sa, low=0.5, high=3) if _op == "Pow" else rand(*_sa)
        _b = rand(*_sb, low=-2, high=2) if _op == "Pow" else _nonzero(_sb)
        if _op in ("Equal", "LessOrEqual", "GreaterOrEqual"):  # make ties happen
            _b = np.round(_b)
            _a = np.round(_a)
        add(_op, _bid, single(_op, {"a": _a, "b": _b}))

for _dt in ("int32", "int64", "uint8", "int8"):
    _lo = 0 if _dt.startswith("u") else -50
    for _op in ("Add", "Sub", "Mul", "Div", "Max", "Min", "Equal", "Less", "Greater"):
        _a = ints(3, 17, low=_lo, high=50, dtype=_dt)
        _b = ints(1, 17, low=1, high=9, dtype=_dt)
        if _op == "Div" and not _dt.startswith("u"):
            _b = _b * np.where(ints(1, 17) > 0, 1, -1).astype(_dt)  # truncation toward zero
        add(_op, _dt, single(_op, {"a": _a, "b": _b}))
add("Pow", "int32", single("Pow", {"a": ints(3, 9, low=-4, high=5, dtype="int32"),
                                   "b": ints(1, 9, low=0, high=4, dtype="int32")}))
add("Pow", "int64-float-exp", single("Pow", {"a": ints(3, 9, low=-4, high=5)},
                                     {"b": f32(2.0)}, opset=15))
for _e in (0.5, 2.5):  # int ** non-integer float: computed in float, truncated (not x ** 0)
    add("Pow", f"int32-float-exp{_e}", single("Pow", {"a": ints(3, 9, low=0, high=50,
                                                              dtype="int32")},
                                              {"b": f32(_e)}, opset=15))
add("Pow", "float-int-exp", single("Pow", {"a": rand(2, 17)}, {"b": i64(3)}, opset=15))
for _op in ("And", "Or", "Xor"):
    for _bid, _sa, _sb in BROADCASTS[:6]:
        add(_op, _bid, single(_op, {"a": rand(*_sa) > 0, "b": rand(*_sb) > 0}))
for _fmod, _dt in [(0, "int32"), (0, "int64"), (1, "int32"), (1, "float32"), (0, "float32")]:
    if _dt == "float32":
        _a, _b = rand(3, 17, low=-9, high=9), _nonzero((1, 17))
    else:
        _a = ints(3, 17, low=-30, high=30, dtype=_dt)
        _b = ints(17, low=1, high=7, dtype=_dt) * np.where(ints(17) > 0, 1, -1).astype(_dt)
    if _fmod or _dt != "float32":  # ONNX requires fmod=1 for floats
        add("Mod", f"fmod{_fmod}-{_dt}", single("Mod", {"a": _a, "b": _b}, fmod=_fmod))
for _op in ("Sum", "Mean", "Max", "Min"):
    add(_op, "three-broadcast", single(_op, {"a": rand(2, 3, 7), "b": rand(3, 1), "c": rand(7)}))
    add(_op, "one-input", single(_op, {"a": rand(3, 17)}))
add("Where", "broadcast", single("Where", {"c": rand(3, 1, 17) > 0, "a": rand(4, 17),
                                           "b": rand(3, 4, 1)}))
add("Where", "scalars", single("Where", {"c": rand(2, 33) > 0}, {"a": f32(1.5), "b": f32(-2)}))
add("Where", "int64", single("Where", {"c": rand(5, 7) > 0, "a": ints(5, 7), "b": ints(1, 7)}))
add("PRelu", "channel", single("PRelu", {"x": rand(2, 3, 5, 7)},
                               {"slope": rand(3, 1, 1, low=0, high=1)}))
add("PRelu", "scalar-slope", single("PRelu", {"x": rand(4, 17)}, {"slope": f32(0.25)}))
add("PRelu", "dynamic-slope", single("PRelu", {"x": rand(4, 33), "slope": rand(33)}))

# -- cast ---------------------------------------------------------------------------------------------
_CAST_SOURCES = {
    "float32": rand(3, 17, low=-100, high=100),
    "float64": rand(3, 17, low=-100, high=100, dtype="float64"),
    "float16": rand(3, 17, low=-100, high=100, dtype="float16"),
    "int32": ints(3, 17, low=-100, high=100, dtype="int32"),
    "int64": ints(3, 17, low=-100, high=100),
    "int8": ints(3, 17, low=-100, high=100, dtype="int8"),
    "uint8": ints(3, 17, low=0, high=200, dtype="uint8"),
    "bool": rand(3, 17) > 0,
}
_CAST_TARGETS = ["float32", "float64", "float16", "int32", "int64", "int8", "uint8", "bool"]
for _src, _x in _CAST_SOURCES.items():
    for _dst in _CAST_TARGETS:
        if _src == _dst:
            continue
        if _dst in ("uint8",) and _src not in ("uint8", "bool"):
            _x = np.abs(_x)  # out-of-range float->unsigned is undefined
        if _dst == "int8" and _src in ("int32", "int64", "float32", "float64", "float16"):
            _x = np.clip(_x, -100, 100)
        _to = helper.np_dtype_to_tensor_dtype(np.dtype(_dst))
        add("Cast", f"{_src}-{_dst}", single("Cast", {"x": _x}, to=_to))
add("CastLike", "float-int32", single("CastLike", {"x": rand(3, 17, low=-50, high=50)},
                                      {"like": np.zeros(1, np.int32)}))

# -- clip ---------------------------------------------------------------------------------------------
add("Clip", "opset7", single("Clip", {"x": rand(3, 17)}, opset=7, min=-0.5, max=1.0))
add("Clip", "opset7-default", single("Clip", {"x": rand(3, 17)}, opset=7))
add("Clip", "min-max", single("Clip", {"x": rand(2, 33)}, {"lo": f32(-0.5), "hi": f32(1.0)}))
add("Clip", "min-only", single("Clip", {"x": rand(2, 33)}, {"lo": f32(0.1)}, ins=["x", "lo"]))
add("Clip", "max-only", single("Clip", {"x": rand(2, 33)}, {"hi": f32(0.1)}, ins=["x", "", "hi"]))
add("Clip", "int32", single("Clip", {"x": ints(3, 17, dtype="int32")},
                            {"lo": np.array(-3, np.int32), "hi": np.array(4, np.int32)}))
add("Clip", "none", single("Clip", {"x": rand(7)}))

# -- reductions ---------------------------------------------------------------------------------------
REDUCE_OPS = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
              "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"]
REDUCE_AXES = [((2, 3, 17), (1,)), ((2, 3, 17), (-1,)), ((2, 3, 17), (0, 2)), ((3, 33), None),
               ((4, 1, 7), (1,)), ((2, 5, 4, 9), (2, 3)), ((2, 5, 4, 9), (-3,))]
for _op in REDUCE_OPS:
    for _shape, _axes in REDUCE_AXES:
        for _keep in (0, 1):
            _x = rand(*_shape, low=0.5, high=1.5) if _op in ("ReduceProd", "ReduceLogSum") else \
                rand(*_shape)
            _aid = "all" if _axes is None else "_".join(map(str, _axes))
            _cid = f"{'x'.join(map(str, _shape))}-axes{_aid}-keep{_keep}"
            if _axes is None:
                add(_op, _cid + "-opset18", single(_op, {"x": _x}, opset=18, keepdims=_keep))
            else:
                add(_op, _cid + "-opset18", single(_op, {"x": _x}, {"axes": i64(*_axes)},
                                                   opset=18, keepdims=_keep))
    add(_op, "attr-axes-opset13" if _op != "ReduceSum" else "attr-axes-opset11",
        single(_op, {"x": rand(3, 4, 17, low=0.5, high=1.5)},
               opset=13 if _op != "ReduceSum" else 11, axes=[0, -1], keepdims=1))
add("ReduceSum", "noop-empty-axes", single("ReduceSum", {"x": rand(3, 17)}, opset=18,
                                           noop_with_empty_axes=1))
add("ReduceSum", "int64", single("ReduceSum", {"x": ints(3, 4, 17)}, {"axes": i64(1)}, opset=18))
add("ReduceMax", "int32", single("ReduceMax", {"x": ints(3, 4, 17, dtype="int32")},
                                 {"axes": i64(-1)}, opset=18, keepdims=0))
add("ReduceMin", "int64", single("ReduceMin", {"x": ints(3, 4, 17)}, {"axes": i64(0, 2)},
                                 opset=18))
add("ReduceMean", "large-axis", single("ReduceMean", {"x": rand(2, 1000)}, {"axes": i64(1)},
                                       opset=18))

# -- softmax ------------------------------------------------------------------------------------------
for _op in ("Softmax", "LogSoftmax"):
    for _shape, _axis in [((3, 17), -1), ((2, 3, 33), 1), ((2, 3, 7), 0), ((4, 1), -1),
                          ((2, 3, 5, 7), -1), ((2, 3, 5, 7), 2)]:
        for _opset in (11, 13):
            add(_op, f"{'x'.join(map(str, _shape))}-axis{_axis}-opset{_opset}",
                single(_op, {"x": rand(*_shape, low=-10, high=10)}, opset=_opset, axis=_axis))
    add(_op, "default-axis-opset11", single(_op, {"x": rand(2, 3, 9)}, opset=11))

# -- matmul and gemm ----------------------------------------------------------------------------------
MATMUL = [
    ("2d", (7, 17), (17, 33)),
    ("2d-tiny", (1, 1), (1, 1)),
    ("2d-vector-out", (5, 9), (9, 1)),
    ("3d-batched", (2, 5, 7), (2, 7, 9)),
    ("4d-batched", (2, 3, 4, 5), (2, 3, 5, 6)),
    ("batch-broadcast-a", (1, 4, 5), (3, 5, 6)),
    ("batch-broadcast-b", (3, 4, 5), (1, 5, 6)),
    ("rank-broadcast", (2, 3, 4, 5), (5, 6)),
    ("rank-broadcast-a", (4, 5), (2, 5, 17)),
    ("vec-mat", (5,), (5, 3)),
    ("mat-vec", (3, 5), (5,)),
    ("vec-batched", (5,), (2, 5, 3)),
    ("vec-vec", (17,), (17,)),
    ("big-k", (16, 300), (300, 24)),
]
for _mid, _sa, _sb in MATMUL:
    add("MatMul", _mid + "-dynamic", single("MatMul", {"a": rand(*_sa), "b": rand(*_sb)}))
    add("MatMul", _mid + "-const-b", single("MatMul", {"a": rand(*_sa)}, {"b": rand(*_sb)}))
add("MatMul", "int32", single("MatMul", {"a": ints(3, 4, dtype="int32"),
                                         "b": ints(4, 5, dtype="int32")}))
add("MatMul", "int64-batched", single("MatMul", {"a": ints(2, 3, 4), "b": ints(2, 4, 5)}))
add("MatMul", "float64", single("MatMul", {"a": rand(3, 4, dtype="float64"),
                                           "b": rand(4, 5, dtype="float64")}))
for _mid, _sa, _sb, _bias in [("2d", (7, 17), (17, 33), (33,)), ("3d", (2, 5, 7), (7, 9), (9,)),
                              ("3d-dyn", (2, 5, 7), (2, 7, 9), (2, 5, 9)),
                              ("col-bias", (6, 8), (8, 12), (6, 1))]:
    _inits = {"bias": rand(*_bias)}
    _feeds = {"a": rand(*_sa)}
    if _mid.endswith("dyn"):
        _feeds["b"] = rand(*_sb)
    else:
        _inits["b"] = rand(*_sb)
    add("MatMul", f"{_mid}-add-relu-epilogue", Case(
        [node("MatMul", ["a", "b"], ["m"]), node("Add", ["m", "bias"], ["s"]),
         node("Relu", ["s"], ["y"])], _feeds, _inits))
add("MatMul", "residual-epilogue", Case(
    [node("MatMul", ["a", "b"], ["m"]), node("Add", ["m", "r"], ["y"])],
    {"a": rand(9, 16), "r": rand(9, 20)}, {"b": rand(16, 20)}))

GEMM_C = [("no-c", None), ("c-vector", (33,)), ("c-row", (1, 33)), ("c-col", (7, 1)),
          ("c-full", (7, 33)), ("c-scalar", ()), ("c-one", (1,))]
for _ta in (0, 1):
    for _tb in (0, 1):
        for _cid, _cs in GEMM_C:
            _a = rand(17, 7) if _ta else rand(7, 17)
            _b = rand(33, 17) if _tb else rand(17, 33)
            _inits = {"b": _b}
            if _cs is not None:
                _inits["c"] = rand(*_cs)
            add("Gemm", f"tA{_ta}-tB{_tb}-{_cid}", single("Gemm", {"a": _a}, _inits,
                                                         transA=_ta, transB=_tb))
for _alpha, _beta in [(0.5, 2.0), (1.0, 0.0), (-1.5, 1.0)]:
    add("Gemm", f"alpha{_alpha}-beta{_beta}", single(
        "Gemm", {"a": rand(6, 9)}, {"b": rand(9, 17), "c": rand(17)}, alpha=_alpha, beta=_beta))
add("Gemm", "dynamic-b-c", single("Gemm", {"a": rand(5, 8), "b": rand(12, 8), "c": rand(5, 12)},
                                  transB=1, alpha=0.7, beta=0.3))
add("Gemm", "relu-epilogue", Case([node("Gemm", ["a", "b", "c"], ["g"], transB=1),
                                   node("Relu", ["g"], ["y"])],
                                  {"a": rand(4, 64)}, {"b": rand(10, 64), "c": rand(10)}))

# -- convolution --------------------------------------------------------------------------------------
def _conv(x_shape, w_shape, *, bias=True, epilogue=False, dynamic_w=False, opset=17, **attrs):
    feeds = {"x": rand(*x_shape)}
    inits = {}
    (feeds if dynamic_w else inits)["w"] = rand(*w_shape, low=-0.5, high=0.5)
    ins = ["x", "w"]
    if bias:
        inits["b"] = rand(w_shape[0])
        ins.append("b")
    if not epilogue:
        return Case([node("Conv", ins, ["y"], **attrs)], feeds, inits, opset=opset)
    # conv + residual add + relu: the fused-epilogue path of the GEMM kernels
    probe = make_model([node("Conv", ins, ["c"], **attrs)],
                       [(n, a.dtype, a.shape) for n, a in feeds.items()], ["c"], inits, opset)
    out_shape = run_ort(probe, feeds)[0].shape
    feeds["r"] = rand(*out_shape)
    return Case([node("Conv", ins, ["c"], **attrs), node("Add", ["c", "r"], ["s"]),
                 node("Relu", ["s"], ["y"])], feeds, inits, opset=opset)


CONV = [
    ("3x3-pad1", (1, 8, 12, 12), (16, 8, 3, 3), {"pads": [1, 1, 1, 1]}),
    ("3x3-nopad", (2, 4, 9, 17), (8, 4, 3, 3), {}),
    ("3x3-stride2", (1, 8, 15, 15), (16, 8, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("5x5-dilated", (1, 8, 20, 20), (8, 8, 5, 5), {"dilations": [2, 2], "pads": [4, 4, 4, 4]}),
    ("grouped", (1, 8, 10, 10), (12, 4, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]}),
    ("grouped4", (2, 16, 9, 9), (16, 4, 3, 3), {"group": 4, "strides": [2, 2]}),
    ("depthwise", (1, 8, 13, 13), (8, 1, 3, 3), {"group": 8, "pads": [1, 1, 1, 1]}),
    ("depthwise-mult2", (1, 4, 11, 11), (8, 1, 3, 3), {"group": 4, "pads": [1, 1, 1, 1]}),
    ("depthwise-s2", (1, 8, 17, 17), (8, 1, 3, 3), {"group": 8, "strides": [2, 2],
                                                       "pads": [1, 1, 1, 1]}),
    ("1x1", (1, 16, 7, 9), (32, 16, 1, 1), {}),
    ("1x1-stride2", (1, 16, 8, 8), (8, 16, 1, 1), {"strides": [2, 2]}),
    ("asym-pads", (1, 6, 10, 11), (13, 6, 3, 3), {"pads": [1, 0, 2, 1]}),
    ("rect-kernel", (1, 4, 9, 16), (8, 4, 1, 7), {"pads": [0, 3, 0, 3]}),
    ("stem-7x7-s2", (1, 3, 32, 32), (16, 3, 7, 7), {"strides": [2, 2], "pads": [3, 3, 3, 3]}),
    ("same-upper", (1, 4, 10, 10), (8, 4, 3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ("same-lower", (1, 4, 10, 10), (8, 4, 4, 4), {"auto_pad": "SAME_LOWER"}),
    ("valid", (1, 4, 10, 10), (8, 4, 3, 3), {"auto_pad": "VALID"}),
    ("1d", (2, 4, 33), (8, 4, 3), {"pads": [1, 1]}),
    ("1d-strided-dilated", (1, 6, 40), (5, 6, 5), {"strides": [2], "dilations": [2], "pads": [2, 3]}),
    ("1d-grouped", (1, 6, 17), (6, 2, 3), {"group": 3}),
    ("3d", (1, 2, 5, 6, 7), (4, 2, 3, 3, 3), {"pads": [1, 1, 1, 1, 1, 1]}),
    ("one-out-channel", (1, 5, 9, 9), (1, 5, 3, 3), {}),
    ("tiny-k", (1, 1, 6, 6), (4, 1, 1, 1), {}),
    ("batch3", (3, 4, 7, 7), (6, 4, 3, 3), {"pads": [1, 1, 1, 1]}),
]
for _cid, _xs, _ws, _attrs in CONV:
    add("Conv", _cid, _conv(_xs, _ws, **_attrs))
    add("Conv", _cid + "-add-relu", _conv(_xs, _ws, epilogue=True, **_attrs))
for _cid, _xs, _ws, _attrs in CONV[:3] + CONV[6:7] + CONV[17:18]:
    add("Conv", _cid + "-nobias", _conv(_xs, _ws, bias=False, **_attrs))
    add("Conv", _cid + "-dynamic-weight", _conv(_xs, _ws, dynamic_w=True, **_attrs))
add("Conv", "bn-fold", Case(
    [node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
     node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["y"])],
    {"x": rand(1, 4, 8, 8)},
    {"w": rand(6, 4, 3, 3), "s": rand(6, low=0.5, high=2), "bb": rand(6), "m": rand(6),
     "v": rand(6, low=0.5, high=2)}))
add("Conv", "channel-scale-epilogue", Case(
    [node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), node("Mul", ["c", "s"], ["m"]),
     node("Sigmoid", ["m"], ["y"])],
    {"x": rand(1, 8, 9, 9)}, {"w": rand(16, 8, 3, 3), "b": rand(16), "s": rand(1, 16, 1, 1)}))

CONVT = [
    ("basic", (1, 4, 5, 5), (4, 6, 3, 3), {}),
    ("stride2", (1, 4, 5, 6), (4, 3, 3, 3), {"strides": [2, 2]}),
    ("stride2-pads", (1, 4, 5, 5), (4, 3, 4, 4), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("output-padding", (1, 2, 4, 4), (2, 3, 3, 3), {"strides": [2, 2], "output_padding": [1, 1]}),
    ("dilated", (1, 2, 5, 5), (2, 2, 3, 3), {"dilations": [2, 2]}),
    ("grouped", (1, 4, 5, 5), (4, 2, 3, 3), {"group": 2, "strides": [2, 1]}),
    ("1d", (2, 3, 9), (3, 5, 4), {"strides": [3], "pads": [1, 2]}),
    ("output-shape", (1, 2, 3, 3), (2, 2, 3, 3), {"strides": [3, 2], "output_shape": [10, 8]}),
    ("same-upper", (1, 2, 4, 4), (2, 2, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
]
for _cid, _xs, _ws, _attrs in CONVT:
    add("ConvTranspose", _cid, single("ConvTranspose", {"x": rand(*_xs)},
                                      {"w": rand(*_ws), "b": rand(_ws[1] * _attrs.get("group", 1))},
                                      **_attrs))
add("ConvTranspose", "nobias", single("ConvTranspose", {"x": rand(1, 3, 4, 4)},
                                      {"w": rand(3, 2, 2, 2)}, strides=[2, 2]))

# -- pooling ------------------------------------------------------------------------------------------
POOL = [
    ("2x2-s2", (1, 3, 8, 8), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ("3x3-s1-pad", (2, 3, 9, 17), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    ("3x3-s2-pad", (1, 4, 11, 11), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("ceil", (1, 2, 10, 10), {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ("ceil-pads", (1, 2, 9, 12), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                                      "ceil_mode": 1}),
    ("asym-pads", (1, 2, 7, 8), {"kernel_shape": [3, 2], "pads": [0, 1, 2, 0]}),
    ("same-upper", (1, 2, 7, 9), {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ("same-lower", (1, 2, 8, 8), {"kernel_shape": [2, 2], "auto_pad": "SAME_LOWER"}),
    ("1d", (2, 3, 33), {"kernel_shape": [4], "strides": [3], "pads": [1, 2]}),
    ("3d", (1, 2, 5, 6, 7), {"kernel_shape": [2, 3, 2], "strides": [1, 2, 2]}),
    ("global-like", (1, 3, 5, 7), {"kernel_shape": [5, 7]}),
]
for _cid, _xs, _attrs in POOL:
    add("MaxPool", _cid, single("MaxPool", {"x": rand(*_xs)}, **_attrs))
    add("AveragePool", _cid, single("AveragePool", {"x": rand(*_xs)}, **_attrs))
    if "pads" in _attrs:
        add("AveragePool", _cid + "-count-include-pad",
            single("AveragePool", {"x": rand(*_xs)}, count_include_pad=1, **_attrs))
add("MaxPool", "dilated", single("MaxPool", {"x": rand(1, 2, 12, 12)}, kernel_shape=[3, 3],
                                 dilations=[2, 2], pads=[1, 1, 1, 1]))
add("MaxPool", "dilated-ceil", single("MaxPool", {"x": rand(1, 2, 11, 11)}, kernel_shape=[2, 2],
                                      dilations=[2, 2], strides=[2, 2], ceil_mode=1))
add("MaxPool", "uint8", single("MaxPool", {"x": ints(1, 2, 6, 6, low=0, high=255, dtype="uint8")},
                               kernel_shape=[2, 2], pads=[1, 1, 1, 1]))
add("MaxPool", "int8", single("MaxPool", {"x": ints(1, 2, 6, 6, low=-128, high=127,
                                                    dtype="int8")}, kernel_shape=[3, 3]))
add("AveragePool", "opset7", single("AveragePool", {"x": rand(1, 2, 7, 7)}, opset=7,
                                    kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
for _op in ("GlobalAveragePool", "GlobalMaxPool"):
    for _xs in [(1, 3, 7, 9), (2, 17, 5, 5), (1, 4, 33), (1, 2, 3, 4, 5), (1, 8, 1, 1)]:
        add(_op, "x".join(map(str, _xs)), single(_op, {"x": rand(*_xs)}))

# -- normalization ------------------------------------------------------------------------------------
def _bn_params(c):
    return {"s": rand(c, low=0.5, high=2), "b": rand(c), "m": rand(c),
            "v": rand(c, low=0.2, high=2)}


for _xs in [(2, 3, 5, 7), (1, 17, 9), (4, 6), (1, 3, 2, 3, 4)]:
    add("BatchNormalization", "x".join(map(str, _xs)),
        single("BatchNormalization", {"x": rand(*_xs)}, _bn_params(_xs[1]), epsilon=1e-3))
add("BatchNormalization", "dynamic-params",
    single("BatchNormalization", {"x": rand(2, 5, 4, 9), **_bn_params(5)}))
add("BatchNormalization", "opset9", single("BatchNormalization", {"x": rand(1, 3, 4, 4)},
                                           _bn_params(3), opset=9))
for _xs in [(2, 3, 5, 7), (1, 4, 33), (2, 2, 3, 4, 5)]:
    add("InstanceNormalization", "x".join(map(str, _xs)), single(
        "InstanceNormalization", {"x": rand(*_xs)}, {"s": rand(_xs[1]), "b": rand(_xs[1])},
        epsilon=1e-4))
for _xs, _axis in [((2, 3, 17), -1), ((2, 3, 17), 1), ((4, 33), -1), ((2, 3, 4, 5), -2),
                   ((3, 7), 0)]:
    _norm_shape = _xs[_axis:]
    add("LayerNormalization", f"{'x'.join(map(str, _xs))}-axis{_axis}", single(
        "LayerNormalization", {"x": rand(*_xs)}, {"s": rand(*_norm_shape), "b": rand(*_norm_shape)},
        axis=_axis, epsilon=1e-5))
add("LayerNormalization", "no-bias", single("LayerNormalization", {"x": rand(3, 17)},
                                            {"s": rand(17)}))

# -- resize -------------------------------------------------------------------------------------------
def _resize(x, *, scales=None, sizes=None, opset=19, **attrs):
    inits = {"roi": np.zeros(0, np.float32)}
    ins = ["x", "roi"]
    if scales is not None:
        inits["scales"] = f32(*scales)
        ins.append("scales")
    else:
        inits["scales"] = np.zeros(0, np.float32)
        inits["sizes"] = i64(*sizes)
        ins += ["scales", "sizes"]
    return single("Resize", {"x": x}, inits, ins=ins, opset=opset, **attrs)


_X4 = rand(1, 2, 5, 7)
RESIZE = [
    ("nearest-up2", {"scales": (1, 1, 2, 2), "mode": "nearest"}),
    ("nearest-asym-floor", {"scales": (1, 1, 1.5, 2.5), "mode": "nearest",
                                "coordinate_transformation_mode": "asymmetric",
                                "nearest_mode": "floor"}),
    ("nearest-ceil-half", {"sizes": (1, 2, 8, 11), "mode": "nearest", "nearest_mode": "ceil"}),
    ("nearest-prefer-ceil", {"sizes": (1, 2, 9, 13), "mode": "nearest",
                                 "nearest_mode": "round_prefer_ceil"}),
    ("nearest-align", {"sizes": (1, 2, 9, 13), "mode": "nearest",
                           "coordinate_transformation_mode": "align_corners"}),
    ("nearest-down", {"scales": (1, 1, 0.6, 0.5), "mode": "nearest"}),
    ("linear-up", {"scales": (1, 1, 2, 2), "mode": "linear"}),
    ("linear-align", {"sizes": (1, 2, 9, 12), "mode": "linear",
                          "coordinate_transformation_mode": "align_corners"}),
    ("linear-asym", {"scales": (1, 1, 1.5, 1.3), "mode": "linear",
                         "coordinate_transformation_mode": "asymmetric"}),
    ("linear-pytorch", {"sizes": (1, 2, 1, 11), "mode": "linear",
                            "coordinate_transformation_mode": "pytorch_half_pixel"}),
    ("linear-down", {"scales": (1, 1, 0.6, 0.6), "mode": "linear"}),
    ("cubic-up", {"scales": (1, 1, 2, 1.5), "mode": "cubic"}),
    ("cubic-align", {"sizes": (1, 2, 8, 8), "mode": "cubic",
                         "coordinate_transformation_mode": "align_corners"}),
    ("cubic-exclude", {"scales": (1, 1, 1.7, 1.7), "mode": "cubic", "exclude_outside": 1,
                           "cubic_coeff_a": -0.5}),
    ("linear-half-symmetric", {"scales": (1, 1, 1.6, 2.2), "mode": "linear",
                                   "coordinate_transformation_mode": "half_pixel_symmetric"}),
    ("keep-aspect-not-larger", {"sizes": (9, 9), "mode": "nearest", "axes": [2, 3],
                                    "keep_aspect_ratio_policy": "not_larger"}),
    ("axes", {"scales": (2.0,), "mode": "linear", "axes": [-1]}),
]
for _rid, _kw in RESIZE:
    add("Resize", _rid, _resize(_X4, **_kw))
add("Resize", "opset11-nearest", _resize(_X4, scales=(1, 1, 2, 3), opset=11, mode="nearest"))
add("Resize", "opset10", single("Resize", {"x": _X4}, {"scales": f32(1, 1, 2, 2)}, opset=10,
                                mode="nearest"))
add("Resize", "linear-3d-input", _resize(rand(2, 3, 9), scales=(1, 1, 2.5), mode="linear"))
add("Resize", "crop-and-resize", single(
    "Resize", {"x": _X4}, {"roi": f32(0, 0, 0.2, 0.1, 1, 1, 0.9, 1.1), "scales": f32(1, 1, 1.4, 1.2)},
    ins=["x", "roi", "scales"], opset=13, mode="linear",
    coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=-3.0))
# Integer resize: onnxruntime truncates, the ONNX reference rounds half to even and saturates
# (cubic overshoots the input range); Neo follows the reference.
_U8 = ints(1, 1, 4, 5, low=0, high=256, dtype="uint8")
_U8[0, 0, 1, 1:3] = (0, 255)  # a hard edge: cubic overshoot below 0 and above 255
add("Resize", "uint8-nearest", _resize(_U8, scales=(1, 1, 2, 2), mode="nearest"))
add("Resize", "uint8-linear", _resize(_U8, scales=(1, 1, 2, 2), mode="linear",
                                      oracle="reference"))
add("Resize", "uint8-cubic", _resize(_U8, scales=(1, 1, 2.5, 2.5), mode="cubic",
                                     oracle="reference"))
# multiples of 16 and weights k/4: every interpolated value is exact, so no rounding ties that
# depend on the order of the sums (the reference interpolates one axis at a time)
add("Resize", "int32-linear", _resize(ints(1, 1, 4, 5, low=-10**5, high=10**5, dtype="int32") * 16,
                                      scales=(1, 1, 2, 2), mode="linear", oracle="reference"))
add("Upsample", "opset9-nearest", single("Upsample", {"x": _X4}, {"scales": f32(1, 1, 2, 3)},
                                         opset=9, mode="nearest"))
add("Upsample", "opset9-linear", single("Upsample", {"x": _X4}, {"scales": f32(1, 1, 2, 2)},
                                        opset=9, mode="linear"))
add("Upsample", "opset7", single("Upsample", {"x": _X4}, opset=7, scales=[1.0, 1.0, 2.0, 1.5]))

# -- data movement ------------------------------------------------------------------------------------
for _xs, _shape in [((2, 3, 4), (6, 4)), ((2, 3, 4), (0, -1)), ((24,), (2, 3, 4)),
                    ((2, 3, 4), (-1,)), ((1, 6, 1, 4), (3, 2, 4))]:
    add("Reshape", f"{'x'.join(map(str, _xs))}-to-{'x'.join(map(str, _shape))}", Case(
        [node("Reshape", ["x", "shape"], ["r"]), node("Abs", ["r"], ["y"])],
        {"x": rand(*_xs)}, {"shape": i64(*_shape)}))
add("Reshape", "output-is-reshape-of-input", single("Reshape", {"x": rand(2, 3, 4)},
                                                    {"shape": i64(4, 6)}))
add("Reshape", "int64", single("Reshape", {"x": ints(2, 6)}, {"shape": i64(3, 4)}))
for _axis in (0, 1, 2, -1):
    add("Flatten", f"axis{_axis}", single("Flatten", {"x": rand(2, 3, 4, 5)}, axis=_axis))
for _perm in [(1, 0), (0, 2, 1), (2, 0, 1), (0, 3, 1, 2), (3, 2, 1, 0), None]:
    _r = 2 if _perm is None else len(_perm)
    _xs = {2: (7, 17), 3: (3, 5, 9), 4: (2, 3, 5, 7)}[_r]
    _attrs = {} if _perm is None else {"perm": list(_perm)}
    add("Transpose", f"perm{'' if _perm is None else ''.join(map(str, _perm))}",
        single("Transpose", {"x": rand(*_xs)}, **_attrs))
add("Transpose", "bool", single("Transpose", {"x": rand(3, 17) > 0}, perm=[1, 0]))
add("Squeeze", "axes", single("Squeeze", {"x": rand(1, 3, 1, 7)}, {"axes": i64(0, -2)}))
add("Squeeze", "all", single("Squeeze", {"x": rand(1, 3, 1, 7)}))
add("Squeeze", "opset11", single("Squeeze", {"x": rand(3, 1, 7)}, opset=11, axes=[1]))
add("Unsqueeze", "axes", single("Unsqueeze", {"x": rand(3, 7)}, {"axes": i64(0, -1)}))
add("Unsqueeze", "opset11", single("Unsqueeze", {"x": rand(3, 7)}, opset=11, axes=[1, 3]))
for _axis, _shapes in [(0, [(2, 7), (3, 7), (1, 7)]), (1, [(2, 3, 4), (2, 5, 4)]),
                       (-1, [(2, 3, 1), (2, 3, 17), (2, 3, 7)]), (2, [(1, 2, 3, 4), (1, 2, 5, 4)])]:
    _feeds = {f"x{i}": rand(*s) for i, s in enumerate(_shapes)}
    add("Concat", f"axis{_axis}-{len(_shapes)}", single("Concat", _feeds, axis=_axis))
add("Concat", "with-constant", single("Concat", {"x": rand(3, 5)}, {"c": rand(3, 2)}, axis=1))
add("Concat", "int64", single("Concat", {"a": ints(2, 3), "b": ints(2, 4)}, axis=1))
add("Split", "equal-opset13", single("Split", {"x": rand(2, 12)}, opset=13, axis=1, n_out=3))
add("Split", "sizes-opset13", single("Split", {"x": rand(2, 12)}, {"split": i64(5, 7)},
                                     opset=13, axis=-1, n_out=2))
add("Split", "uneven-opset18", single("Split", {"x": rand(7, 3)}, opset=18, axis=0, n_out=3,
                                      num_outputs=3))
add("Split", "opset11-attr", single("Split", {"x": rand(6, 4)}, opset=11, split=[2, 4], n_out=2))
SLICES = [
    ("basic", (20, 10), (0, 0), (3, 10), None, None),
    ("axes-steps", (20, 10, 5), (0, 1), (20, 10), (0, 1), (2, 3)),
    ("negative", (20, 10, 5), (-3,), (-1,), (1,), None),
    ("negative-step", (20, 10, 5), (-1,), (-1000,), (1,), (-2,)),
    ("clamped", (20, 10), (1, -100), (1000, 1000), None, None),
    ("inner-tail", (3, 40), (5,), (38,), (-1,), None),
    ("reverse-inner", (3, 17), (16,), (-18,), (1,), (-1,)),
]
for _sid, _xs, _st, _en, _ax, _sp in SLICES:
    _inits = {"starts": i64(*_st), "ends": i64(*_en)}
    if _ax is not None:
        _inits["axes"] = i64(*_ax)
    if _sp is not None:
        if _ax is None:
            _inits["axes"] = i64(*range(len(_st)))
        _inits["steps"] = i64(*_sp)
    add("Slice", _sid, single("Slice", {"x": rand(*_xs)}, _inits))
add("Slice", "opset9", single("Slice", {"x": rand(6, 9)}, opset=9, starts=[1, 2], ends=[5, -1],
                              axes=[0, 1]))
for _mode in ("constant", "reflect", "edge", "wrap"):
    add("Pad", _mode, single("Pad", {"x": rand(2, 3, 5, 7)},
                             {"pads": i64(0, 0, 1, 2, 0, 0, 2, 1)}, opset=19, mode=_mode))
add("Pad", "constant-value", single("Pad", {"x": rand(3, 17)}, {"pads": i64(1, 3, 2, 0),
                                                                "v": f32(1.5)}, opset=18))
add("Pad", "negative-crop", single("Pad", {"x": rand(4, 9)}, {"pads": i64(-1, 2, 0, -3)},
                                   opset=18))
add("Pad", "axes", single("Pad", {"x": rand(2, 3, 6)}, {"pads": i64(2, 3), "v": f32(0),
                                                        "axes": i64(-1)}, opset=18))
add("Pad", "opset7", single("Pad", {"x": rand(3, 4)}, opset=7, pads=[1, 0, 0, 2], value=2.0))
add("Pad", "int64-reflect", single("Pad", {"x": ints(3, 5)}, {"pads": i64(1, 2, 1, 2)},
                                   opset=18, mode="reflect"))
GATHERS = [
    ("axis0", (5, 4), (2, 3), 0, None),
    ("axis1", (3, 7, 2), (4,), 1, None),
    ("axis-last", (3, 33), (2, 5), -1, None),
    ("negative-indices", (6, 5), (4,), 0, "negative"),
    ("scalar-index", (4, 17), (), 0, None),
]
for _gid, _xs, _is, _axis, _kind in GATHERS:
    _n = _xs[_axis]
    _idx = RNG.integers(-_n if _kind else 0, _n, _is).astype(np.int64)
    add("Gather", _gid + "-const-indices", single("Gather", {"x": rand(*_xs)}, {"i": _idx},
                                                  axis=_axis))
    add("Gather", _gid + "-dynamic-indices", single("Gather", {"x": rand(*_xs), "i": _idx},
                                                    axis=_axis))
add("Gather", "int32-indices", single("Gather", {"x": rand(5, 7),
                                                 "i": np.array([4, 0, 2], np.int32)}, axis=0))
add("Gather", "embedding-int64-data", single("Gather", {"i": i64(3, 1, 1)}, {"x": ints(5, 9)},
                                              ins=["x", "i"]))
for _xs, _shape in [((3, 1), (2, 3, 17)), ((1,), (4, 7)), ((2, 1, 7), (2, 5, 7)),
                    ((3, 1), (1, 1))]:
    add("Expand", f"{'x'.join(map(str, _xs))}-to-{'x'.join(map(str, _shape))}",
        single("Expand", {"x": rand(*_xs)}, {"shape": i64(*_shape)}))
for _reps in [(2, 3), (1, 4), (3, 1)]:
    add("Tile", "x".join(map(str, _reps)), single("Tile", {"x": rand(3, 7)},
                                                  {"r": i64(*_reps)}))
for _mode in ("DCR", "CRD"):
    add("DepthToSpace", _mode, single("DepthToSpace", {"x": rand(2, 8, 3, 5)}, blocksize=2,
                                      mode=_mode))
add("SpaceToDepth", "b2", single("SpaceToDepth", {"x": rand(2, 3, 4, 6)}, blocksize=2))
add("Dropout", "opset12", single("Dropout", {"x": rand(3, 17)}, opset=12))
add("Dropout", "opset7", single("Dropout", {"x": rand(3, 17)}, opset=7))

# -- shape arithmetic that folds to constants ---------------------------------------------------------
add("Shape", "as-reshape-target", Case(
    [node("Shape", ["t"], ["s"]), node("Reshape", ["x", "s"], ["r"]), node("Neg", ["r"], ["y"])],
    {"x": rand(6, 4), "t": rand(3, 8)}))
add("Shape", "output", single("Shape", {"x": rand(3, 8, 2)}))
add("Shape", "start-end", single("Shape", {"x": rand(3, 8, 2)}, opset=15, start=1, end=-1))
add("Size", "output", single("Size", {"x": rand(3, 8)}))
add("Constant", "add", Case([node("Constant", [], ["c"], value=helper.make_tensor(
    "c", onnx.TensorProto.FLOAT, [3, 1], [1.0, 2.0, 3.0])), node("Add", ["x", "c"], ["y"])],
    {"x": rand(3, 5)}))
add("Constant", "value-float", Case([node("Constant", [], ["c"], value_float=2.5),
                                     node("Mul", ["x", "c"], ["y"])], {"x": rand(4, 9)}))
add("ConstantOfShape", "add", Case(
    [node("ConstantOfShape", ["s"], ["c"], value=helper.make_tensor(
        "v", onnx.TensorProto.FLOAT, [1], [0.5])), node("Add", ["x", "c"], ["y"])],
    {"x": rand(2, 9)}, {"s": i64(2, 9)}))
add("Range", "add", Case([node("Range", ["a", "b", "d"], ["r"]), node("Add", ["x", "r"], ["y"])],
                         {"x": rand(3, 7)}, {"a": np.array(1, np.float32),
                                             "b": np.array(4.5, np.float32),
                                             "d": np.array(0.5, np.float32)}))

# -- quantization -------------------------------------------------------------------------------------
add("QuantizeLinear", "uint8", single("QuantizeLinear", {"x": rand(3, 17, low=-3, high=3)},
                                      {"s": f32(0.02), "z": np.array(128, np.uint8)}))
add("QuantizeLinear", "int8-halves", single(
    "QuantizeLinear", {"x": (ints(4, 9, low=-300, high=300) / 2).astype(np.float32)},
    {"s": f32(1.0), "z": np.array(-3, np.int8)}))
add("QuantizeLinear", "per-axis", single("QuantizeLinear", {"x": rand(2, 3, 5)},
                                         {"s": f32(0.01, 0.02, 0.05),
                                          "z": np.array([0, 10, -5], np.int8)}, axis=1))
add("QuantizeLinear", "no-zero-point", single("QuantizeLinear", {"x": rand(33)}, {"s": f32(0.05)}))
add("DequantizeLinear", "uint8", single(
    "DequantizeLinear", {"x": ints(3, 17, low=0, high=255, dtype="uint8")},
    {"s": f32(0.02), "z": np.array(128, np.uint8)}))
add("DequantizeLinear", "int8-per-axis", single(
    "DequantizeLinear", {"x": ints(2, 3, 5, low=-128, high=127, dtype="int8")},
    {"s": f32(0.01, 0.02, 0.05), "z": np.array([0, 10, -5], np.int8)}, axis=1))
add("DequantizeLinear", "int32", single("DequantizeLinear", {"x": ints(17, dtype="int32")},
                                        {"s": f32(0.5)}))


# -- fused chains: producers inlined into consumers, epilogues, views, shared values -----------------
def chain(case_id, nodes, feeds, inits=None, outputs=None, **kw):
    add("Fusion", case_id, Case(nodes, feeds, inits, outputs=outputs, **kw))


chain("transpose-add-relu", [node("Transpose", ["x"], ["t"], perm=[0, 2, 1]),
                             node("Add", ["t", "b"], ["s"]), node("Relu", ["s"], ["y"])],
      {"x": rand(2, 17, 9)}, {"b": rand(9, 1)})
chain("slice-mul-sigmoid", [node("Slice", ["x", "st", "en"], ["s"]),
                            node("Mul", ["s", "s"], ["m"]), node("Sigmoid", ["m"], ["y"])],
      {"x": rand(4, 40)}, {"st": i64(3), "en": i64(36), "ax": i64(1)})
chain("reduce-then-scale", [node("ReduceSum", ["x", "ax"], ["r"], keepdims=1),
                            node("Mul", ["r", "k"], ["y"])],
      {"x": rand(3, 5, 33)}, {"ax": i64(-1), "k": f32(0.5)}, opset=18)
chain("softmax-of-gemm", [node("Gemm", ["a", "b", "c"], ["g"], transB=1),
                          node("Softmax", ["g"], ["y"], axis=-1)],
      {"a": rand(3, 20)}, {"b": rand(17, 20), "c": rand(17)})
chain("normalize-by-max", [node("ReduceMax", ["x", "ax"], ["m"], keepdims=1),
                           node("Sub", ["x", "m"], ["d"]), node("Exp", ["d"], ["y"])],
      {"x": rand(4, 7, 9)}, {"ax": i64(1)}, opset=18)
chain("concat-of-computed", [node("Relu", ["a"], ["ra"]), node("Neg", ["b"], ["nb"]),
                             node("Concat", ["ra", "nb", "c"], ["k"], axis=1),
                             node("Tanh", ["k"], ["y"])],
      {"a": rand(2, 3, 5), "b": rand(2, 4, 5)}, {"c": rand(2, 1, 5)})
chain("pad-conv", [node("Pad", ["x", "p"], ["xp"], mode="reflect"),
                   node("Conv", ["xp", "w", "b"], ["y"])],
      {"x": rand(1, 4, 9, 9)}, {"p": i64(0, 0, 1, 1, 0, 0, 1, 1), "w": rand(8, 4, 3, 3),
                                "b": rand(8)})
chain("conv-bias-mul-sigmoid", [node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                                node("Add", ["c", "b"], ["a"]), node("Mul", ["a", "s"], ["m"]),
                                node("Sigmoid", ["m"], ["y"])],
      {"x": rand(1, 8, 10, 10)}, {"w": rand(16, 8, 3, 3), "b": rand(16, 1, 1), "s": f32(1.7)})
chain("two-convs-residual", [node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
                             node("Relu", ["c1"], ["r1"]),
                             node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
                             node("Add", ["c2", "x"], ["s"]), node("Relu", ["s"], ["y"])],
      {"x": rand(1, 8, 12, 12)}, {"w1": rand(8, 8, 3, 3, low=-.3, high=.3),
                                  "w2": rand(8, 8, 3, 3, low=-.3, high=.3)})
chain("conv-flatten-gemm", [node("Conv", ["x", "w"], ["c"]), node("Relu", ["c"], ["r"]),
                            node("Flatten", ["r"], ["f"]),
                            node("Gemm", ["f", "fw", "fb"], ["y"], transB=1)],
      {"x": rand(2, 3, 6, 6)}, {"w": rand(4, 3, 3, 3), "fw": rand(10, 64, low=-.2, high=.2),
                                "fb": rand(10)})
chain("reshape-transpose-reshape", [node("Reshape", ["x", "s1"], ["r"]),
                                    node("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3]),
                                    node("Reshape", ["t", "s2"], ["u"]),
                                    node("Add", ["u", "u"], ["y"])],
      {"x": rand(2, 6, 20)}, {"s1": i64(2, 6, 4, 5), "s2": i64(2, 4, 30)})
chain("shared-intermediate-and-output", [node("Exp", ["x"], ["e"]), node("Neg", ["e"], ["n"]),
                                         node("Add", ["e", "n"], ["z"]),
                                         node("Mul", ["e", "x"], ["y"])],
      {"x": rand(3, 17)}, outputs=["e", "z", "y"])
chain("input-as-output", [node("Identity", ["x"], ["i"]), node("Relu", ["x"], ["y"])],
      {"x": rand(5, 7)}, outputs=["i", "y"])
chain("constant-output", [node("Constant", [], ["c"], value_floats=[1.0, 2.0]),
                          node("Relu", ["x"], ["y"])], {"x": rand(5, 7)}, outputs=["c", "y"])
chain("same-value-twice", [node("Sigmoid", ["x"], ["s"]), node("Identity", ["s"], ["t"])],
      {"x": rand(4, 9)}, outputs=["s", "t"])
chain("reshape-of-input-output", [node("Reshape", ["x", "s"], ["r"]), node("Neg", ["x"], ["y"])],
      {"x": rand(4, 9)}, {"s": i64(36)}, outputs=["r", "y"])
chain("layernorm-matmul", [node("LayerNormalization", ["x", "g", "b"], ["n"]),
                           node("MatMul", ["n", "w"], ["y"])],
      {"x": rand(2, 5, 32)}, {"g": rand(32), "b": rand(32), "w": rand(32, 24)})
chain("gather-matmul", [node("Gather", ["e", "i"], ["g"]), node("MatMul", ["g", "w"], ["y"])],
      {"i": i64(0, 4, 2, 2)}, {"e": rand(6, 9), "w": rand(9, 5)})
chain("long-vector", [node("Mul", ["x", "x"], ["m"]), node("Add", ["m", "x"], ["y"])],
      {"x": rand(10007)})
chain("long-vector-reduce", [node("ReduceSum", ["x"], ["y"], keepdims=0)],
      {"x": rand(4099, low=0, high=1)}, opset=13, rtol=1e-4, atol=1e-3)
chain("many-rows-few-cols", [node("Sqrt", ["x"], ["y"])], {"x": rand(513, 3, low=0, high=4)})
chain("where-from-compare", [node("Greater", ["x", "t"], ["c"]),
                             node("Where", ["c", "x", "z"], ["y"])],
      {"x": rand(3, 33)}, {"t": f32(0.3), "z": f32(0)})
chain("cast-chain", [node("Cast", ["x"], ["i"], to=onnx.TensorProto.INT32),
                     node("Mul", ["i", "k"], ["m"]),
                     node("Cast", ["m"], ["y"], to=onnx.TensorProto.FLOAT)],
      {"x": rand(3, 17, low=-50, high=50)}, {"k": np.array(3, np.int32)})
chain("maxpool-conv", [node("MaxPool", ["x"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
                       node("Conv", ["p", "w"], ["c"], pads=[1, 1, 1, 1]),
                       node("Relu", ["c"], ["y"])],
      {"x": rand(1, 4, 12, 12)}, {"w": rand(8, 4, 3, 3)})
chain("avgpool-add", [node("AveragePool", ["x"], ["p"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                      node("Add", ["p", "x"], ["y"])], {"x": rand(1, 3, 7, 9)})

# -- trigonometric, hyperbolic and decomposed activations --------------------------------------------
for _op, _gen in {
    "Tan": lambda s: rand(*s, low=-1.4, high=1.4), "Asin": lambda s: rand(*s, low=-1, high=1),
    "Acos": lambda s: rand(*s, low=-1, high=1), "Atan": lambda s: rand(*s, low=-9, high=9),
    "Sinh": lambda s: rand(*s, low=-5, high=5), "Cosh": lambda s: rand(*s, low=-5, high=5),
    "Asinh": lambda s: rand(*s, low=-9, high=9), "Acosh": lambda s: rand(*s, low=1, high=9),
    "Atanh": lambda s: rand(*s, low=-0.99, high=0.99), "Softsign": _any,
}.items():
    add(_op, "tails", per_shape(_op, _gen, opset=18))
for _op, _attrs in [("Celu", {}), ("Celu", {"alpha": 2.0}), ("ThresholdedRelu", {}),
                    ("ThresholdedRelu", {"alpha": 0.5}), ("Shrink", {}),
                    ("Shrink", {"bias": 1.5, "lambd": 1.0})]:
    add(_op, "-".join(f"{k}{v}" for k, v in _attrs.items()) or "default",
        per_shape(_op, lambda s: rand(*s, low=-4, high=4), opset=18, **_attrs))
add("Shrink", "int32", single("Shrink", {"x": ints(3, 17, dtype="int32")}, bias=2.0, lambd=3.0))
add("IsNaN", "special-values", single("IsNaN", {"x": SPECIAL}, opset=20))
for _attrs in ({}, {"detect_negative": 0}, {"detect_positive": 0},
               {"detect_negative": 0, "detect_positive": 0}):
    add("IsInf", "-".join(f"{k}{v}" for k, v in _attrs.items()) or "default",
        single("IsInf", {"x": SPECIAL}, opset=20, **_attrs))

# -- index ops: ArgMax/ArgMin, Trilu, CumSum, GatherElements, GatherND ---------------------------------
_ties = ints(3, 5, 17, low=-3, high=4).astype(np.float32)  # many ties: first/last index matters
for _op in ("ArgMax", "ArgMin"):
    for _attrs in ({"axis": 1}, {"axis": -1, "keepdims": 0}, {"axis": 0, "select_last_index": 1},
                   {"axis": 2, "keepdims": 0, "select_last_index": 1}):
        add(_op, "-".join(f"{k}{v}" for k, v in _attrs.items()),
            single(_op, {"x": _ties}, opset=13, **_attrs))
    add(_op, "int32", single(_op, {"x": ints(4, 9, dtype="int32")}, opset=13, axis=1))
for _upper in (0, 1):
    for _k in (-2, 0, 3):
        add("Trilu", f"upper{_upper}-k{_k}",
            single("Trilu", {"x": rand(2, 5, 17)}, {"k": i64(_k)}, opset=14, upper=_upper))
    add("Trilu", f"upper{_upper}-int", single("Trilu", {"x": ints(6, 4)}, opset=14, upper=_upper))
for _ex in (0, 1):
    for _rev in (0, 1):
        add("CumSum", f"exclusive{_ex}-reverse{_rev}",
            single("CumSum", {"x": rand(3, 13, 7)}, {"axis": i64(-2)}, opset=14, exclusive=_ex,
                   reverse=_rev))
add("CumSum", "int32", single("CumSum", {"x": ints(5, 9, dtype="int32")},
                              {"axis": np.array(1, np.int32)}, opset=14))
add("GatherElements", "axis0", single("GatherElements", {"x": rand(4, 17)},
                                      {"i": ints(6, 17, low=-4, high=4)}, opset=13, axis=0))
add("GatherElements", "axis-1", single("GatherElements", {"x": rand(3, 5, 9)},
                                       {"i": ints(3, 5, 4, low=-9, high=9, dtype="int32")},
                                       opset=13, axis=-1))
add("GatherND", "k2", single("GatherND", {"x": rand(4, 5, 17)},
                             {"i": ints(3, 2, low=-4, high=4)}, opset=13))
add("GatherND", "batch1", single("GatherND", {"x": rand(2, 5, 6, 3)},
                                 {"i": ints(2, 4, 2, low=0, high=5)}, opset=13, batch_dims=1))

# -- bitwise ops ---------------------------------------------------------------------------------------
for _dt in ("int8", "uint8", "int32", "uint64"):
    _lo = 0 if _dt.startswith("u") else -100
    for _op in ("BitwiseAnd", "BitwiseOr", "BitwiseXor"):
        add(_op, _dt, single(_op, {"a": ints(3, 17, low=_lo, high=100, dtype=_dt),
                                   "b": ints(17, low=_lo, high=100, dtype=_dt)}, opset=18))
    add("BitwiseNot", _dt, per_shape("BitwiseNot", lambda s, d=_dt, lo=_lo: ints(
        *s, low=lo, high=100, dtype=d), opset=18))
for _dt in ("uint8", "uint32", "uint64"):
    for _dir in ("LEFT", "RIGHT"):
        add("BitShift", f"{_dt}-{_dir}", single(
            "BitShift", {"a": ints(3, 17, low=0, high=200, dtype=_dt),
                         "b": ints(3, 1, low=0, high=7, dtype=_dt)}, opset=18, direction=_dir))

# -- normalizations and hardmax ------------------------------------------------------------------------
add("LayerNormalization", "mean-invstd", Case(
    [node("LayerNormalization", ["x", "s", "b"], ["y", "mean", "inv"], axis=-2)],
    {"x": rand(2, 5, 17)}, {"s": rand(5, 17), "b": rand(5, 17)}, outputs=["y", "mean", "inv"]))
for _axis in (-1, 1):
    add("RMSNormalization", f"axis{_axis}", single(
        "RMSNormalization", {"x": rand(2, 5, 17)}, {"s": rand(17) if _axis == -1 else rand(5, 17)},
        opset=23, axis=_axis, oracle="reference"))
for _p in (1, 2):
    for _axis in (1, -1):
        add("LpNormalization", f"p{_p}-axis{_axis}", single(
            "LpNormalization", {"x": rand(3, 5, 17)}, opset=13, p=_p, axis=_axis))
add("GroupNormalization", "groups2", single(
    "GroupNormalization", {"x": rand(2, 6, 5, 7)}, {"s": rand(6), "b": rand(6)}, opset=21,
    num_groups=2, epsilon=1e-3, oracle="reference"))
for _axis in (-1, 1):
    add("Hardmax", f"axis{_axis}", single("Hardmax", {"x": _ties}, opset=13, axis=_axis))
add("Hardmax", "opset11-axis1", single("Hardmax", {"x": _ties}, opset=11, axis=1))

# -- losses ----------------------------------------------------------------------------------------------
_labels = ints(3, 5, low=0, high=4)
_labels[0, 1] = -1  # an ignored label
for _red in ("none", "sum", "mean"):
    add("NegativeLogLikelihoodLoss", f"{_red}-weight-ignore", single(
        "NegativeLogLikelihoodLoss", {"x": rand(3, 4, 5), "t": _labels}, {"w": rand(4, low=0.1)},
        opset=13, reduction=_red, ignore_index=-1))
    add("NegativeLogLikelihoodLoss", f"{_red}-2d", single(
        "NegativeLogLikelihoodLoss", {"x": rand(6, 9), "t": ints(6, low=0, high=9)}, opset=13,
        reduction=_red))
    add("SoftmaxCrossEntropyLoss", f"{_red}-log-prob", single(
        "SoftmaxCrossEntropyLoss", {"x": rand(3, 4, 5), "t": _labels}, {"w": rand(4, low=0.1)},
        opset=13, n_out=2, reduction=_red, ignore_index=-1))
add("SoftmaxCrossEntropyLoss", "mean-2d", single(
    "SoftmaxCrossEntropyLoss", {"x": rand(6, 9), "t": ints(6, low=0, high=9)}, opset=13))

# -- constant generators and index decompositions (size/depth/condition given at run time: the
# backend specializes the model to those values) -------------------------------------------------------
for _op in ("HannWindow", "HammingWindow", "BlackmanWindow"):
    for _periodic in (0, 1):
        add(_op, f"periodic{_periodic}", single(_op, {"n": np.array(10, np.int64)}, opset=17, periodic=_periodic))
add("EyeLike", "k1", single("EyeLike", {"x": rand(4, 6)}, opset=9, k=1))
add("EyeLike", "int-k-2", single("EyeLike", {"x": ints(5, 3)}, opset=9, k=-2,
                                 dtype=onnx.TensorProto.INT32))
for _ex in (0, 1):
    for _rev in (0, 1):
        add("CumProd", f"exclusive{_ex}-reverse{_rev}", single(
            "CumProd", {"x": rand(3, 9, 5, low=0.5, high=1.5), "a": np.array(1, np.int64)}, opset=26,
            exclusive=_ex, reverse=_rev, oracle="reference"))
add("OneHot", "axis1", single("OneHot", {"i": ints(3, 4, low=-5, high=5), "d": i64(5)},
                              {"v": f32(-1, 2)}, opset=11, axis=1))
add("OneHot", "float-indices", single("OneHot", {"i": f32(0, 2.0, 7.0, -1)},
                                      {"d": np.array(6.0, np.float32), "v": f32(0, 1)}, opset=11))
add("Compress", "axis1", single("Compress", {"x": rand(3, 5, 7),
                                             "c": np.array([1, 0, 1, 1], bool)}, opset=11, axis=1))
add("Compress", "flat", single("Compress", {"x": rand(3, 5), "c": rand(15) > 0}, opset=11))
add("CenterCropPad", "crop-pad", single("CenterCropPad", {"x": rand(5, 8, 3), "s": i64(3, 11)},
                                        opset=18, axes=[0, 1]))
add("Swish", "alpha", single("Swish", {"x": rand(3, 17, low=-6, high=6)}, opset=24, alpha=0.7,
                             oracle="reference"))
add("MeanVarianceNormalization", "default", single("MeanVarianceNormalization",
                                                   {"x": rand(2, 3, 5, 7)}, opset=13))
add("MeanVarianceNormalization", "axes", single("MeanVarianceNormalization",
                                                {"x": rand(2, 3, 5, 7)}, opset=13, axes=[1, -1]))

# -- attention ------------------------------------------------------------------------------------------
add("Attention", "4d-causal-mask", single(
    "Attention", {"q": rand(2, 3, 4, 8), "k": rand(2, 3, 6, 8), "v": rand(2, 3, 6, 5),
                  "m": rand(4, 6)}, opset=23, is_causal=1, oracle="reference"))
add("Attention", "3d-gqa-past-softcap", Case(
    [node("Attention", ["q", "k", "v", "m", "pk", "pv"], ["y", "ck", "cv", "qk"], q_num_heads=4,
          kv_num_heads=2, softcap=2.0, scale=0.3, qk_matmul_output_mode=2)],
    {"q": rand(2, 3, 16), "k": rand(2, 3, 8), "v": rand(2, 3, 6),
     "m": rand(3, 5) > -1.5, "pk": rand(2, 2, 2, 4), "pv": rand(2, 2, 2, 3)},
    outputs=["y", "ck", "cv", "qk"], opset=23, oracle="reference"))

# -- scatter ------------------------------------------------------------------------------------------
_dup = np.array([[1, 0, 2], [0, 2, 1], [1, 1, -1]], np.int64)  # repeated targets: order matters
for _red in ("none", "add", "mul", "max", "min"):
    add("ScatterElements", f"axis1-{_red}", single(
        "ScatterElements", {"x": rand(4, 3), "u": rand(3, 3)}, {"i": _dup}, ins=["x", "i", "u"],
        opset=18, axis=1, reduction=_red, oracle="reference"))
    add("ScatterND", _red, single(
        "ScatterND", {"x": rand(4, 5, 6), "u": rand(3, 6)},
        {"i": np.array([[1, 2], [3, -1], [1, 2]], np.int64)}, ins=["x", "i", "u"], opset=18,
        reduction=_red))
add("ScatterElements", "axis0-partial", single(
    "ScatterElements", {"x": rand(5, 17), "u": rand(2, 9)},
    {"i": ints(2, 9, low=-5, high=5)}, ins=["x", "i", "u"], opset=13, axis=0,
    oracle="reference"))
add("Scatter", "opset10", single("Scatter", {"x": rand(4, 3), "u": rand(2, 3)},
                                 {"i": np.array([[1, 0, 2], [3, 1, 0]], np.int64)},
                                 ins=["x", "i", "u"], opset=10, axis=0))

# -- integer matmul / conv ----------------------------------------------------------------------------
def _u8(*s):
    return ints(*s, low=0, high=256, dtype="uint8")


def _i8(*s):
    return ints(*s, low=-128, high=128, dtype="int8")


add("MatMulInteger", "zero-points", single(
    "MatMulInteger", {"a": _u8(3, 17), "b": _u8(17, 9)},
    {"az": np.array(12, np.uint8), "bz": _u8(9)}, opset=10))
add("MatMulInteger", "int8-batched", single("MatMulInteger", {"a": _i8(2, 3, 17), "b": _i8(17, 5)},
                                            opset=10))
for _name, _gen in (("uint8", _u8), ("int8", _i8)):
    _dt = np.uint8 if _name == "uint8" else np.int8
    add("QLinearMatMul", _name, single(
        "QLinearMatMul", {"a": _gen(2, 4, 17), "b": _gen(17, 9)},
        {"as": f32(0.02), "az": np.array(3, _dt), "bs": f32(0.03), "bz": np.array(-2 if _dt ==
         np.int8 else 7, _dt), "ys": f32(0.4), "yz": np.array(5, _dt)},
        ins=["a", "as", "az", "b", "bs", "bz", "ys", "yz"], opset=10))
add("ConvInteger", "pads", single(
    "ConvInteger", {"x": _u8(1, 3, 7, 9), "w": _u8(4, 3, 3, 3)}, {"xz": np.array(100, np.uint8)},
    ins=["x", "w", "xz"], opset=10, pads=[1, 1, 1, 1]))
add("QLinearConv", "bias-per-channel", single(
    "QLinearConv", {"x": _u8(1, 3, 7, 9)},
    {"xs": f32(0.05), "xz": np.array(120, np.uint8), "w": _i8(4, 3, 3, 3),
     "ws": f32(0.01, 0.02, 0.015, 0.03), "wz": np.zeros(4, np.int8), "ys": f32(0.3),
     "yz": np.array(128, np.uint8), "b": ints(4, low=-500, high=500, dtype="int32")},
    ins=["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], opset=10, strides=[2, 1],
    oracle="reference"))

# -- onnxruntime's contrib quantized ops (com.microsoft): within one quantization step -------------
_MS = "com.microsoft."


def _qz(v, dt):
    return np.array(v, dt)


def _fs(v):  # a scalar scale (the contrib ops' type inference wants 0-d scales)
    return np.array(v, np.float32)


def _qlinear_unary(op, dt, **attrs):
    """A com.microsoft QLinear op of (X, X_scale, X_zero_point, Y_scale, Y_zero_point)."""
    gen = _u8 if dt == np.uint8 else _i8
    zx, zy = (110, 20) if dt == np.uint8 else (-9, -100)
    return single(_MS + op, {"x": gen(2, 5, 17)},
                  {"xs": _fs(0.04), "xz": _qz(zx, dt), "ys": _fs(0.005), "yz": _qz(zy, dt)},
                  opset=13, steps=1, **attrs)


for _name, _dt in (("uint8", np.uint8), ("int8", np.int8)):
    _gen = _u8 if _dt == np.uint8 else _i8
    for _op in ("QLinearAdd", "QLinearMul"):
        add(_MS + _op, f"{_name}-broadcast", single(
            _MS + _op, {"a": _gen(2, 3, 17), "b": _gen(3, 1)},
            {"as": _fs(0.03), "az": _qz(7, _dt), "bs": _fs(0.02), "bz": _qz(-3 if _dt == np.int8
             else 140, _dt), "cs": _fs(0.05 if _op == "QLinearAdd" else 0.2), "cz": _qz(11, _dt)},
            ins=["a", "as", "az", "b", "bs", "bz", "cs", "cz"], opset=13, steps=1))
    add(_MS + "QLinearSigmoid", _name, _qlinear_unary("QLinearSigmoid", _dt))
    add(_MS + "QLinearLeakyRelu", _name, _qlinear_unary("QLinearLeakyRelu", _dt, alpha=0.1))
    add(_MS + "QLinearGlobalAveragePool", _name, single(
        _MS + "QLinearGlobalAveragePool", {"x": _gen(1, 6, 7, 9)},
        {"xs": _fs(0.05), "xz": _qz(5, _dt), "ys": _fs(0.02), "yz": _qz(-4 if _dt == np.int8
         else 60, _dt)}, opset=13, steps=1))


def _qlinear_softmax(x, zx, zy, axis, softmax_opset):
    """QLinearSoftmax's own `opset` attribute (the Softmax semantics it follows) is not the
    model's opset, hence a node built here rather than by single()."""
    dt = x.dtype
    n = node("QLinearSoftmax", ["x", "xs", "xz", "ys", "yz"], ["y0"], axis=axis,
             opset=softmax_opset)
    n.domain = "com.microsoft"
    return Case([n], {"x": x}, {"xs": _fs(0.05), "xz": _qz(zx, dt), "ys": _fs(1 / 256),
                                "yz": _qz(zy, dt)}, opset=13, steps=1)


add(_MS + "QLinearSoftmax", "uint8-last-axis", _qlinear_softmax(_u8(3, 17), 128, 0, -1, 13))
add(_MS + "QLinearSoftmax", "int8-axis1", _qlinear_softmax(_i8(2, 9, 4), 0, -128, 1, 13))
add(_MS + "QLinearSoftmax", "uint8-opset12-flattened",
    _qlinear_softmax(_u8(2, 3, 5), 100, 0, 1, 12))
add(_MS + "QLinearAveragePool", "pads-count-include", single(
    _MS + "QLinearAveragePool", {"x": _u8(1, 3, 9, 11)},
    {"xs": _fs(0.05), "xz": _qz(100, np.uint8), "ys": _fs(0.04), "yz": _qz(90, np.uint8)},
    opset=13, steps=1, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
    count_include_pad=1))
add(_MS + "QLinearAveragePool", "int8-ceil", single(
    _MS + "QLinearAveragePool", {"x": _i8(1, 4, 8, 7)},
    {"xs": _fs(0.05), "xz": _qz(3, np.int8), "ys": _fs(0.05), "yz": _qz(-2, np.int8)},
    opset=13, steps=1, kernel_shape=[2, 3], strides=[2, 2], ceil_mode=1))
add(_MS + "QLinearConcat", "uint8-three", single(
    _MS + "QLinearConcat", {"a": _u8(2, 3, 5), "b": _u8(2, 4, 5), "c": _u8(2, 1, 5)},
    {"ys": _fs(0.06), "yz": _qz(100, np.uint8), "as": _fs(0.06), "az": _qz(100, np.uint8),
     "bs": _fs(0.03), "bz": _qz(128, np.uint8), "cs": _fs(0.1), "cz": _qz(40, np.uint8)},
    ins=["ys", "yz", "a", "as", "az", "b", "bs", "bz", "c", "cs", "cz"], opset=13, steps=1,
    axis=1))
add(_MS + "QLinearConcat", "int8-last-axis", single(
    _MS + "QLinearConcat", {"a": _i8(3, 7), "b": _i8(3, 17)},
    {"ys": _fs(0.05), "yz": _qz(-5, np.int8), "as": _fs(0.02), "az": _qz(0, np.int8),
     "bs": _fs(0.07), "bz": _qz(10, np.int8)},
    ins=["ys", "yz", "a", "as", "az", "b", "bs", "bz"], opset=13, steps=1, axis=-1))
add(_MS + "QGemm", "uint8-transB-per-channel-bias", single(
    _MS + "QGemm", {"a": _u8(4, 17)},
    {"as": _fs(0.02), "az": _qz(120, np.uint8), "b": _i8(9, 17),
     "bs": rand(9, low=0.005, high=0.02), "bz": np.zeros(9, np.int8),
     "c": ints(9, low=-800, high=800, dtype="int32"), "ys": _fs(0.3), "yz": _qz(128, np.uint8)},
    ins=["a", "as", "az", "b", "bs", "bz", "c", "ys", "yz"], opset=13, steps=1, transB=1,
    alpha=1.0))
add(_MS + "QGemm", "int8-float-output", single(
    _MS + "QGemm", {"a": _i8(3, 33)},
    {"as": _fs(0.01), "az": _qz(4, np.int8), "b": _i8(33, 7), "bs": _fs(0.015),
     "bz": _qz(0, np.int8)},
    ins=["a", "as", "az", "b", "bs", "bz"], opset=13, rtol=1e-5, atol=1e-5, alpha=0.5))

# -- LpPool ----------------------------------------------------------------------------------------
for _p in (1, 2, 3):
    add("LpPool", f"p{_p}", single("LpPool", {"x": rand(1, 3, 9, 11)}, opset=18, p=_p,
                                   kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 1, 1]))

# -- TopK (ties resolve to the lower index) -----------------------------------------------------------
for _largest in (0, 1):
    add("TopK", f"axis1-largest{_largest}", single(
        "TopK", {"x": _ties[:, :, :6], "k": i64(3)}, opset=11, n_out=2, axis=1,
        largest=_largest))
add("TopK", "last-axis-int", single("TopK", {"x": ints(4, 9, dtype="int32"), "k": i64(9)},
                                    opset=11, n_out=2))

# -- recurrent ops (unrolled) -------------------------------------------------------------------------
_S, _B, _I, _H = 4, 3, 5, 6
for _op, _g in (("RNN", 1), ("GRU", 3), ("LSTM", 4)):
    for _dir in ("forward", "reverse", "bidirectional"):
        _d = 2 if _dir == "bidirectional" else 1
        _inits = {"w": rand(_d, _g * _H, _I, low=-0.5, high=0.5),
                  "r": rand(_d, _g * _H, _H, low=-0.5, high=0.5),
                  "b": rand(_d, 2 * _g * _H, low=-0.5, high=0.5)}
        _extra = {"linear_before_reset": 1} if _op == "GRU" and _dir == "reverse" else {}
        _n_out = 3 if _op == "LSTM" else 2
        add(_op, _dir, single(_op, {"x": rand(_S, _B, _I), "h0": rand(_d, _B, _H)}, _inits,
                              ins=["x", "w", "r", "b", "", "h0"], opset=14, n_out=_n_out,
                              hidden_size=_H, direction=_dir, **_extra))
add("LSTM", "peepholes", single(
    "LSTM", {"x": rand(_S, _B, _I)},
    {"w": rand(1, 4 * _H, _I, low=-0.5, high=0.5), "r": rand(1, 4 * _H, _H, low=-0.5, high=0.5),
     "b": rand(1, 8 * _H, low=-0.5, high=0.5), "p": rand(1, 3 * _H)},
    ins=["x", "w", "r", "b", "", "", "", "p"], opset=14, n_out=3, hidden_size=_H))

# -- LRN, ReverseSequence, DynamicQuantizeLinear --------------------------------------------------------
for _size in (3, 5):
    add("LRN", f"size{_size}", single("LRN", {"x": rand(2, 7, 5, 9)}, size=_size, alpha=0.01,
                                      beta=0.6, bias=1.5))
add("ReverseSequence", "batch0", single("ReverseSequence", {"x": rand(3, 5, 17), "l": i64(5, 1, 3)},
                                        opset=10, batch_axis=0, time_axis=1))
add("DynamicQuantizeLinear", "mixed", single("DynamicQuantizeLinear", {"x": rand(3, 17)},
                                             opset=11, n_out=3))
add("DynamicQuantizeLinear", "positive", single("DynamicQuantizeLinear",
                                                {"x": rand(2, 9, low=0.5, high=3)}, opset=11,
                                                n_out=3))

# -- If on a condition known at compile time: the taken branch is compiled in place -----------
def _if_case(rate: int) -> Case:
    from onnx import TensorProto

    branches = []
    for name, op in (("then", "Sigmoid"), ("else", "Softplus")):
        branches.append(helper.make_graph(
            [helper.make_node(op, ["x"], [f"{name}_t"], name=f"{name}_op"),
             helper.make_node("Mul", [f"{name}_t", "x"], [f"{name}_y"], name=f"{name}_mul")],
            name, [], [helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT, [3, 17])]))
    nodes = [helper.make_node("Equal", ["rate", "k"], ["c"], name="cond"),
             helper.make_node("If", ["c"], ["y"], name="branch", then_branch=branches[0],
                              else_branch=branches[1])]
    return Case(nodes, {"x": rand(3, 17)},
                {"rate": np.array(rate, np.int64), "k": np.array(16000, np.int64)}, opset=13)


add("If", "then", _if_case(16000))
add("If", "else", _if_case(8000))

# The same graphs through the other pipelines (opt-level 0 compiles every op on its own, 1 folds
# but does not fuse).
OPT_LEVEL_CASES = [p for p in CASES["Fusion"]] + [
    p for op in ("Conv", "MatMul", "Softmax", "BatchNormalization") for p in CASES[op][:3]]


# -- the tests ------------------------------------------------------------------------------------------
ALL_CASES = [p for cases in CASES.values() for p in cases]


@pytest.mark.parametrize("width", VECTOR_WIDTHS)
@pytest.mark.parametrize("case", ALL_CASES)
def test_op_compiled_matches_onnxruntime(case: Case, width: str):
    run_case(case, 3, width)


def test_every_supported_op_has_cases():
    missing = sorted(set(supported_ops()) - set(CASES))
    assert not missing, f"ops the frontend converts but this file does not test: {missing}"



@pytest.mark.parametrize("width", ["w128", "w512"])
@pytest.mark.parametrize("opt_level", [0, 1])
@pytest.mark.parametrize("case", OPT_LEVEL_CASES)
def test_op_compiled_at_low_opt_level(case: Case, opt_level: int, width: str):
    run_case(case, opt_level, width)
