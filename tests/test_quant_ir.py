"""The quantized IR: parameters on types and through data movement, the fixed-point arithmetic
of TFLite against a plain-integer transcription of its C++, the float rules against the ONNX
reference, and the compiled tensor-expression kernels equal to the numpy references bit for bit.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from neo import ir
from neo.ir import QuantParams
from neo.ir.interpreter import interpret
from neo.ir.quant import (
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)
from neo.ir.verify import verify


# -- parameters on types -----------------------------------------------------------------------
def test_quant_params_validate_and_print():
    q = QuantParams.per_tensor(0.5, 3)
    assert q.is_per_tensor and str(q) == "q(0.5,3)"
    pc = QuantParams([0.1, 0.2, 0.3], 0, axis=0)
    assert pc.zero_point == (0, 0, 0) and pc.scales(4).shape == (3, 1, 1, 1)
    with pytest.raises(ValueError, match="positive"):
        QuantParams.per_tensor(0.0, 0)
    with pytest.raises(ValueError, match="axis"):
        QuantParams([0.1, 0.2], 0)
    with pytest.raises(ValueError, match="do not fit"):
        ir.TensorType((4, 2), "int8", pc)
    with pytest.raises(ValueError, match="outside"):
        ir.TensorType((4,), "int8", QuantParams.per_tensor(1.0, 200))
    with pytest.raises(TypeError, match="integer"):
        ir.TensorType((4,), "float32", q)


def test_parameters_follow_integers_through_data_movement():
    g = ir.Graph()
    q = QuantParams.per_tensor(0.05, 10)
    x = g.input("x", (1, 4, 6, 6), "int8", q)
    assert g.op("reshape", x, shape=(1, 4, 36)).type.quant == q
    assert g.op("max_pool", x, kernel=(2, 2), strides=(2, 2)).type.quant == q
    assert g.op("concat", x, x, axis=1).type.quant == q
    other = g.input("y", (1, 4, 6, 6), "int8", QuantParams.per_tensor(0.05, 11))
    assert g.op("concat", x, other, axis=1).type.quant is None  # different parameters
    # padding with the zero point keeps the meaning, padding with anything else does not
    assert g.op("pad", x, pads=(0, 0, 1, 1, 0, 0, 1, 1), value=10.0).type.quant == q
    assert g.op("pad", x, pads=(0, 0, 1, 1, 0, 0, 1, 1), value=0.0).type.quant is None
    # per-axis parameters follow their axis through a transpose, and vanish where it melts
    pc = QuantParams(np.linspace(0.1, 0.4, 4), 0, axis=1)
    w = g.input("w", (2, 4, 3), "int8", pc)
    t = g.op("transpose", w, perm=(1, 2, 0))
    assert t.type.quant == QuantParams(pc.scale, 0, axis=0)
    assert g.op("reshape", w, shape=(8, 3)).type.quant is None
    assert g.op("cast", x, to="int32").type.quant is None
    g.outputs = [t]
    verify(g)


def test_conflicting_parameters_are_refused():
    g = ir.Graph()
    x = g.input("x", (1, 3, 4, 4), "uint8", QuantParams.per_tensor(0.1, 128))
    w = g.const(np.ones((2, 3, 1, 1), np.int8), "w")
    with pytest.raises(ir.IRError, match="zero point"):
        g.op("conv_integer", x, w, x_zero_point=127)
    with pytest.raises(ir.IRError, match="quantized as"):
        g.op("dequantize", x, quant=QuantParams.per_tensor(0.2, 128))


# -- TFLite's fixed point, transcribed from C++ with Python integers -----------------------------
def _srdhm(a: int, b: int) -> int:
    if a == b == -(1 << 31):
        return (1 << 31) - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    q = abs(ab + nudge) // (1 << 31)
    return q if ab + nudge >= 0 else -q


def _rdbpot(x: int, e: int) -> int:
    mask = (1 << e) - 1
    rem = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if rem > threshold else 0)


def test_fixed_point_matches_a_transcription_of_tflite():
    rng = np.random.default_rng(1)
    xs = np.concatenate([rng.integers(-(1 << 31), 1 << 31, 4000),
                         [0, 1, -1, (1 << 31) - 1, -(1 << 31), 12345, -12345]]).astype(np.int64)
    for real in [0.5, 0.25, 1.0 / 3, 0.0001234, 0.7071067811865476, 1.75, 3e-7]:
        m, shift = quantize_multiplier(real)
        assert 1 << 30 <= m < 1 << 31 and abs(m * 2.0 ** (shift - 31) - real) < real * 2 ** -30
        vals = xs if shift <= 0 else np.clip(xs, -(1 << 29), 1 << 29)
        got = multiply_by_quantized_multiplier(vals, m, shift)
        want = [_rdbpot(_srdhm(int(v) << max(shift, 0), m), max(-shift, 0)) for v in vals]
        np.testing.assert_array_equal(got, want)
    # the roundings in isolation: half away from zero, also for negative ties
    np.testing.assert_array_equal(rounding_divide_by_pot(np.array([5, -5, 6, -6, 7, -7]), 1),
                                  [3, -3, 3, -3, 4, -4])
    assert int(saturating_rounding_doubling_high_mul(-(1 << 31), -(1 << 31))) == (1 << 31) - 1


# -- the float rules against the ONNX reference ------------------------------------------------
def _onnx_run(node, inputs: dict, out_type, out_shape):
    graph = helper.make_graph(
        [node], "t",
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
         for k, v in inputs.items()],
        [helper.make_tensor_value_info(node.output[0], out_type, out_shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    return ReferenceEvaluator(model).run(None, inputs)[0]


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
@pytest.mark.parametrize("per_axis", [False, True])
def test_quantize_and_dequantize_equal_onnx(dtype, per_axis):
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(2, 3, 5, 7)) * 4).astype(np.float32)
    x.flat[:6] = [0.25, -0.25, 0.75, -0.75, 1e4, -1e4]  # ties and saturation
    if per_axis:
        scale = np.array([0.5, 0.02, 0.1], np.float32)
        zp = np.array([3, 0, 9] if dtype == "uint8" else [-3, 0, 9], dtype)
    else:
        scale, zp = np.array(0.05, np.float32), np.array(7, dtype)
    q = QuantParams(scale.ravel(), zp.ravel(), axis=1)
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=1)
    want = _onnx_run(node, {"x": x, "s": scale, "z": zp},
                     helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), x.shape)
    got = ir.run_reference("quantize", {"quant": q, "dtype": dtype,
                                        "rounding": "half_to_even"}, [x])[0]
    np.testing.assert_array_equal(got, want)
    node = helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=1)
    want = _onnx_run(node, {"q": got, "s": scale, "z": zp}, TensorProto.FLOAT, x.shape)
    back = ir.run_reference("dequantize", {"quant": q, "dtype": "float32"}, [got])[0]
    np.testing.assert_array_equal(back, want)


def test_round_half_away_from_zero_is_exact():
    x = np.array([0.5, -0.5, 1.5, -2.5, 0.49999997, -0.49999997, 2.4999998], np.float32)
    got = ir.run_reference("quantize", {"quant": QuantParams.per_tensor(1.0, 0), "dtype": "int8",
                                        "rounding": "half_away_from_zero"}, [x])[0]
    np.testing.assert_array_equal(got, [1, -1, 2, -3, 0, 0, 2])


def test_conv_and_matmul_integer_equal_onnx():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (1, 4, 7, 6)).astype(np.uint8)
    w = rng.integers(-128, 128, (6, 2, 3, 3)).astype(np.int8)
    wz = rng.integers(-3, 4, 6).astype(np.int8)
    node = helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], pads=[1, 0, 1, 2],
                            strides=[2, 1], group=2)
    want = _onnx_run(node, {"x": x, "w": w, "xz": np.array(131, np.uint8), "wz": wz},
                     TensorProto.INT32, None)
    got = ir.run_reference("conv_integer", {"pads": (1, 0, 1, 2), "strides": (2, 1),
                                            "dilations": None, "groups": 2, "layout": "NCHW",
                                            "x_zero_point": 131, "w_zero_point": tuple(wz)},
                           [x, w])[0]
    np.testing.assert_array_equal(got, want)
    a = rng.integers(0, 256, (3, 9, 16)).astype(np.uint8)
    b = rng.integers(-128, 128, (16, 5)).astype(np.int8)
    bz = rng.integers(-2, 3, 5).astype(np.int8)
    node = helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["y"])
    want = _onnx_run(node, {"a": a, "b": b, "az": np.array(200, np.uint8), "bz": bz},
                     TensorProto.INT32, None)
    got = ir.run_reference("matmul_integer", {"a_zero_point": 200, "b_zero_point": tuple(bz)},
                           [a, b])[0]
    np.testing.assert_array_equal(got, want)


def test_requantize_float_is_float32_with_ties_to_even():
    acc = np.array([[5, 15, -5, -15, 25, 1 << 30, -(1 << 30)]], np.int32)
    got = ir.run_reference("requantize", {"multiplier": (0.1,), "axis": None,
                                          "in_zero_point": 0, "out_zero_point": 10,
                                          "dtype": "uint8", "mode": "float", "min": None,
                                          "max": None, "quant": None}, [acc])[0]
    # float32(5) * float32(0.1) = 0.5 exactly: half to even gives 0; saturation both ways
    want = np.clip(np.rint(acc.astype(np.float32) * np.float32(0.1)) + 10, 0, 255)
    np.testing.assert_array_equal(got, want.astype(np.uint8))
    assert got[0, :4].tolist() == [10, 12, 10, 8]


# -- compiled: the tensor-expression kernels equal the references ------------------------------
def _quant_graph(mode: str, rng):
    g = ir.Graph()
    x = g.input("x", (1, 5, 9, 9))
    q = g.op("quantize", x, quant=QuantParams.per_tensor(0.05, 120), dtype="uint8")
    w = g.const(rng.integers(-127, 128, (7, 5, 3, 3)).astype(np.int8), "w")
    b = g.const(rng.integers(-2000, 2000, 7).astype(np.int32), "b")
    c = g.op("conv_integer", q, w, b, x_zero_point=120, w_zero_point=0, pads=(1, 1, 1, 1))
    m = tuple(rng.uniform(0.0005, 0.002, 7).tolist())
    rq = g.op("requantize", c, multiplier=m, axis=1, out_zero_point=-5, dtype="int8",
              mode=mode, min=-5, quant=QuantParams.per_tensor(0.1, -5))
    q2 = g.op("quantize", g.input("y", (1, 7, 9, 9)), dtype="int8",
              quant=QuantParams([0.07] * 3 + [0.05] * 4, 3, axis=1),
              rounding="half_away_from_zero")
    q2 = g.op("requantize", q2, multiplier=(1.0,) * 3 + (0.05 / 0.07,) * 4, axis=1,
              in_zero_point=3, out_zero_point=3, dtype="int8", mode=mode,
              quant=QuantParams.per_tensor(0.07, 3))
    s = g.op("qadd", rq, q2, a_quant=QuantParams.per_tensor(0.1, -5),
             b_quant=QuantParams.per_tensor(0.07, 3), quant=QuantParams.per_tensor(0.12, 1),
             dtype="int8", mode=mode)
    a = g.op("reshape", g.op("max_pool", s, kernel=(3, 3), strides=(2, 2)), shape=(1, 7 * 16))
    mm = g.op("matmul_integer", a, g.const(rng.integers(-127, 128, (112, 6)).astype(np.int8),
                                           "w2"), a_zero_point=1, b_zero_point=0)
    g.outputs = [g.op("dequantize", s, quant=QuantParams.per_tensor(0.12, 1)), mm]
    feeds = {"x": (rng.normal(size=(1, 5, 9, 9)) * 3).astype(np.float32),
             "y": (rng.normal(size=(1, 7, 9, 9)) * 5).astype(np.float32)}
    return g, feeds


@pytest.mark.parametrize("level", [0, 3])
@pytest.mark.parametrize("mode", ["float", "fixed_point"])
def test_compiled_quantized_ops_equal_references(mode, level, tmp_path):
    from conftest import run_artifact_checked

    from neo.codegen.build import build_artifact
    from neo.passes import run_pipeline
    from neo.targets import get_target

    rng = np.random.default_rng(4)
    g, feeds = _quant_graph(mode, rng)
    ref = interpret(g, feeds)
    assert ref[0].std() > 1 and len(np.unique(ref[1])) == ref[1].size  # informative outputs
    build_artifact(run_pipeline(g, level), get_target("x86_64"), tmp_path / "a", {}, level)
    for want, got in zip(ref, run_artifact_checked(tmp_path / "a", feeds)):
        np.testing.assert_array_equal(got, want)



def test_compiled_tflite_rounding_variants_equal_references(tmp_path):
    # TFLite's variants, at their exact ties: requantize with explicit, not normalized Q31 pairs
    # (MEAN), with one rounding half up (per-channel FULLY_CONNECTED), and qadd's subtract (SUB)
    from conftest import run_artifact_checked

    from neo.codegen.build import build_artifact
    from neo.passes import run_pipeline
    from neo.targets import get_target

    g = ir.Graph()
    acc = g.input("acc", (1, 512), "int32")
    m16 = (2.0 ** -4,)  # x / 16: every x = 8 mod 16 is a tie
    single = g.op("requantize", acc, multiplier=m16, q31=((1 << 30, -3),), single_rounding=True,
                  dtype="int8", mode="fixed_point")
    double = g.op("requantize", acc, multiplier=m16, q31=((1 << 30, -3),), dtype="int8",
                  mode="fixed_point")
    # 3 * 2^27 is below 2^30: QuantizeMultiplier would renormalize it to (3 * 2^28, -3)
    loose = g.op("requantize", acc, multiplier=(3 * 2.0 ** -6,), q31=((3 << 27, -2),),
                 dtype="int8", mode="fixed_point")
    qa, qb = QuantParams.per_tensor(0.05, -7), QuantParams.per_tensor(0.08, 120)
    a = g.op("requantize", acc, multiplier=(1 / 4,), dtype="int8", mode="fixed_point",
             quant=qa, out_zero_point=-7)
    b = g.op("requantize", acc, multiplier=(1 / 5,), dtype="int8", mode="fixed_point",
             quant=QuantParams.per_tensor(0.08, 120), out_zero_point=120)
    sub = g.op("qadd", a, b, a_quant=qa, b_quant=qb, quant=QuantParams.per_tensor(0.1, 3),
               dtype="int8", mode="fixed_point", subtract=True)
    g.outputs = [single, double, loose, sub, a, b]
    x = np.arange(-256, 256, dtype=np.int32)[None] * 3
    feeds = {"acc": x}
    ref = interpret(g, feeds)
    xs = x.astype(np.int64)
    assert np.array_equal(ref[0], np.clip(np.floor(xs / 16 + 0.5), -128, 127))  # half up
    assert (ref[0] != ref[1]).any()  # gemmlowp's double rounding differs at some ties
    renormalized = np.clip(multiply_by_quantized_multiplier(xs, 3 << 28, -3), -128, 127)
    assert (ref[2] != renormalized).any()  # the pair matters
    # a - b within one output step (0.1) of the exact difference of their real values
    diff = 0.05 * (ref[4].astype(np.float64) + 7) - 0.08 * (ref[5].astype(np.float64) - 120)
    got = 0.1 * (ref[3].astype(np.float64) - 3)
    inside = np.abs(diff - 0.3) < 12.0
    assert inside.sum() > 100 and np.abs(got - diff)[inside].max() <= 0.1
    build_artifact(run_pipeline(g, 3), get_target("x86_64"), tmp_path / "a", {}, 3)
    for want, got in zip(ref, run_artifact_checked(tmp_path / "a", feeds)):
        np.testing.assert_array_equal(got, want)
