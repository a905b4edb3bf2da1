"""The ONNX frontend: every converter against onnxruntime, plus loading and error reporting."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from onnx_helpers import make_model, run_ort

from neo import ir
from neo.errors import ModelLoadError, UnsupportedModelError, UsageError
from neo.frontends import FRONTENDS
from neo.frontends.onnx import import_onnx, inspect_onnx, onnx_model_inputs, supported_ops
from neo.ir.interpreter import interpret
from neo.ir.verify import verify

RNG = np.random.default_rng(0)


def rand(*shape, dtype="float32", low=-2.0, high=2.0):
    return RNG.uniform(low, high, shape).astype(dtype)


def ints(*shape, low=-5, high=6, dtype="int64"):
    return RNG.integers(low, high, shape).astype(dtype)


def i64(*values):
    return np.array(values, np.int64)


def f32(*values):
    return np.array(values, np.float32)


def single(op, feeds, inits=None, *, ins=None, n_out=1, opset=17, **attrs):
    """A one-node model: `feeds` become graph inputs, `inits` initializers; `ins` orders the node's
    inputs (use "" for an omitted optional one)."""
    inits = inits or {}
    ins = ins if ins is not None else [*feeds, *inits]
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, ins, outs, name=f"{op.lower()}_node", **attrs)
    inputs = [(n, a.dtype, a.shape) for n, a in feeds.items()]
    return make_model([node], inputs, outs, inits, opset), feeds


def check(model, feeds, *, rtol=1e-4, atol=1e-5):
    g = import_onnx(model)
    verify(g)
    assert [v.name for v in g.outputs] == [o.name for o in model.graph.output]
    got = interpret(g, feeds)
    want = run_ort(model, feeds)
    assert len(got) == len(want)
    for name, a, b in zip([o.name for o in model.graph.output], got, want):
        b = np.asarray(b)
        assert a.shape == b.shape, f"{name}: shape {a.shape} != onnxruntime {b.shape}"
        assert a.dtype == b.dtype, f"{name}: dtype {a.dtype} != onnxruntime {b.dtype}"
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=name)
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)
    return g


# -- cases: (id, (model, feeds)) -------------------------------------------------------------------
X4 = rand(2, 4, 7, 8)
W = rand(6, 4, 3, 3)

CONV = {
    "conv_bias_pad": single("Conv", {"x": X4}, {"w": W, "b": rand(6)}, pads=[1, 1, 1, 1]),
    "conv_stride2": single("Conv", {"x": X4}, {"w": W}, strides=[2, 2]),
    "conv_asym_pads": single("Conv", {"x": X4}, {"w": W}, pads=[0, 1, 2, 1], strides=[2, 1]),
    "conv_grouped": single("Conv", {"x": X4}, {"w": rand(6, 2, 3, 3)}, group=2),
    "conv_depthwise": single("Conv", {"x": X4}, {"w": rand(4, 1, 3, 3), "b": rand(4)}, group=4,
                             pads=[1, 1, 1, 1]),
    "conv_dilated": single("Conv", {"x": X4}, {"w": W}, dilations=[2, 2], pads=[2, 2, 2, 2]),
    "conv_same_upper": single("Conv", {"x": X4}, {"w": rand(6, 4, 4, 4)}, auto_pad="SAME_UPPER",
                              strides=[2, 2]),
    "conv_same_lower": single("Conv", {"x": X4}, {"w": rand(6, 4, 4, 4)}, auto_pad="SAME_LOWER",
                              strides=[2, 2]),
    "conv_valid": single("Conv", {"x": X4}, {"w": W}, auto_pad="VALID"),
    "conv_1d": single("Conv", {"x": rand(1, 3, 10)}, {"w": rand(5, 3, 3), "b": rand(5)},
                      pads=[1, 2], strides=[2]),
    "conv_3d": single("Conv", {"x": rand(1, 2, 5, 6, 4)}, {"w": rand(3, 2, 3, 3, 2)},
                      pads=[1, 1, 0, 1, 1, 1]),
    "conv_opset7_runtime_weight": single("Conv", {"x": X4, "w": W}, opset=7, kernel_shape=[3, 3]),
    "convt_stride_pad_outpad": single("ConvTranspose", {"x": rand(1, 4, 5, 5)},
                                      {"w": rand(4, 3, 3, 3), "b": rand(3)}, strides=[2, 2],
                                      pads=[1, 1, 1, 1], output_padding=[1, 1]),
    "convt_grouped": single("ConvTranspose", {"x": rand(1, 4, 5, 5)}, {"w": rand(4, 2, 3, 3)},
                            group=2, strides=[2, 1]),
    "convt_dilated": single("ConvTranspose", {"x": rand(1, 2, 4, 4)}, {"w": rand(2, 3, 3, 3)},
                            dilations=[2, 2]),
    "convt_output_shape": single("ConvTranspose", {"x": rand(1, 2, 4, 5)}, {"w": rand(2, 3, 3, 3)},
                                 strides=[2, 2], output_shape=[8, 10]),
    "convt_same_upper": single("ConvTranspose", {"x": rand(1, 2, 4, 5)}, {"w": rand(2, 3, 4, 4)},
                               strides=[2, 2], auto_pad="SAME_UPPER"),
    "convt_same_lower": single("ConvTranspose", {"x": rand(1, 2, 4, 5)}, {"w": rand(2, 3, 4, 4)},
                               strides=[2, 2], auto_pad="SAME_LOWER"),
    "convt_1d": single("ConvTranspose", {"x": rand(2, 3, 6)}, {"w": rand(3, 2, 3)}, strides=[3]),
}

MATMUL = {
    "gemm_plain": single("Gemm", {"a": rand(3, 5)}, {"b": rand(5, 4), "c": rand(4)}),
    "gemm_transA_transB": single("Gemm", {"a": rand(5, 3)}, {"b": rand(4, 5), "c": rand(3, 4)},
                                 transA=1, transB=1),
    "gemm_alpha_beta": single("Gemm", {"a": rand(3, 5)}, {"b": rand(5, 4), "c": rand(1, 4)},
                              alpha=0.5, beta=2.0),
    "gemm_scalar_c": single("Gemm", {"a": rand(3, 5)}, {"b": rand(5, 4), "c": f32(1.5)},
                            transB=0),
    "gemm_no_c_opset11": single("Gemm", {"a": rand(3, 5)}, {"b": rand(4, 5)}, transB=1,
                                alpha=3.0, opset=11),
    "gemm_runtime_b_opset7": single("Gemm", {"a": rand(3, 5), "b": rand(5, 4)}, {"c": rand(3, 4)},
                                    alpha=2.0, beta=0.5, opset=7),
    "matmul_2d": single("MatMul", {"a": rand(3, 5), "b": rand(5, 4)}),
    "matmul_batched_const": single("MatMul", {"a": rand(2, 3, 5)}, {"b": rand(5, 4)}),
    "matmul_broadcast": single("MatMul", {"a": rand(2, 1, 3, 5), "b": rand(3, 5, 2)}),
    "matmul_vec": single("MatMul", {"a": rand(5), "b": rand(2, 5, 3)}),
}


def _bn(x, opset, **attrs):
    c = x.shape[1]
    params = {"s": rand(c), "bias": rand(c), "mean": rand(c), "var": rand(c, low=0.5, high=2)}
    return single("BatchNormalization", {"x": x}, params, opset=opset, **attrs)


NORM = {
    "bn_opset7": _bn(rand(2, 3, 4, 4), 7),
    "bn_opset9_eps": _bn(rand(2, 3, 5), 9, epsilon=1e-2),
    "bn_opset15_2d": _bn(rand(4, 3), 15, momentum=0.7),
    "instancenorm": single("InstanceNormalization", {"x": rand(2, 3, 4, 5)},
                           {"s": rand(3), "b": rand(3)}, epsilon=1e-3),
    "layernorm": single("LayerNormalization", {"x": rand(2, 3, 8)}, {"s": rand(8), "b": rand(8)}),
    "layernorm_axis1_nobias": single("LayerNormalization", {"x": rand(2, 3, 4)},
                                     {"s": rand(3, 4)}, axis=1),
    "softmax_opset11_axis1": single("Softmax", {"x": rand(2, 3, 4)}, opset=11, axis=1),
    "softmax_opset11_default": single("Softmax", {"x": rand(2, 3, 4)}, opset=11),
    "softmax_opset11_last": single("Softmax", {"x": rand(2, 3, 4)}, opset=11, axis=-1),
    "softmax_opset13_axis1": single("Softmax", {"x": rand(2, 3, 4)}, opset=13, axis=1),
    "softmax_opset13_default": single("Softmax", {"x": rand(2, 3, 4)}, opset=13),
    "logsoftmax_opset9_axis1": single("LogSoftmax", {"x": rand(2, 3, 4)}, opset=9, axis=1),
    "logsoftmax_opset13_axis0": single("LogSoftmax", {"x": rand(2, 3, 4)}, opset=13, axis=0),
}

XP = rand(1, 3, 7, 9)
POOL = {
    "maxpool_2x2": single("MaxPool", {"x": XP}, kernel_shape=[2, 2], strides=[2, 2]),
    "maxpool_pads": single("MaxPool", {"x": XP}, kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                           strides=[2, 2]),
    "maxpool_ceil": single("MaxPool", {"x": XP}, kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
    "maxpool_ceil_pads": single("MaxPool", {"x": XP}, kernel_shape=[3, 3], strides=[2, 2],
                                pads=[1, 0, 1, 1], ceil_mode=1),
    "maxpool_dilated": single("MaxPool", {"x": XP}, kernel_shape=[2, 2], dilations=[2, 2]),
    "maxpool_same_upper": single("MaxPool", {"x": XP}, kernel_shape=[3, 3], strides=[2, 2],
                                 auto_pad="SAME_UPPER"),
    "maxpool_same_kernel_below_stride": single("MaxPool", {"x": rand(1, 2, 7, 7)},
                                               kernel_shape=[1, 1], strides=[3, 3],
                                               auto_pad="SAME_LOWER"),
    "maxpool_1d": single("MaxPool", {"x": rand(2, 3, 9)}, kernel_shape=[3], strides=[2]),
    "maxpool_3d": single("MaxPool", {"x": rand(1, 2, 4, 5, 6)}, kernel_shape=[2, 2, 2]),
    "maxpool_opset7": single("MaxPool", {"x": XP}, opset=7, kernel_shape=[3, 3]),
    "maxpool_storage_order1": single("MaxPool", {"x": XP}, kernel_shape=[2, 2], storage_order=1),
    "maxpool_int8": single("MaxPool", {"x": ints(1, 2, 5, 5, dtype="int8")}, kernel_shape=[2, 2]),
    "avgpool_exclude_pad": single("AveragePool", {"x": XP}, kernel_shape=[3, 3],
                                  pads=[1, 1, 1, 1]),
    "avgpool_include_pad": single("AveragePool", {"x": XP}, kernel_shape=[3, 3],
                                  pads=[1, 1, 1, 1], count_include_pad=1),
    "avgpool_ceil": single("AveragePool", {"x": XP}, kernel_shape=[2, 2], strides=[2, 2],
                           ceil_mode=1),
    "avgpool_ceil_include_pad": single("AveragePool", {"x": XP}, kernel_shape=[3, 3],
                                       strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1,
                                       count_include_pad=1),
    "avgpool_same_lower": single("AveragePool", {"x": XP}, kernel_shape=[2, 2],
                                 auto_pad="SAME_LOWER"),
    "avgpool_opset7": single("AveragePool", {"x": XP}, opset=7, kernel_shape=[2, 3],
                             strides=[1, 2]),
    "avgpool_dilated_opset19": single("AveragePool", {"x": XP}, opset=19, kernel_shape=[2, 2],
                                      dilations=[2, 1]),
    "avgpool_1d": single("AveragePool", {"x": rand(2, 3, 9)}, kernel_shape=[4], strides=[2]),
    "global_avgpool": single("GlobalAveragePool", {"x": XP}),
    "global_maxpool": single("GlobalMaxPool", {"x": rand(2, 3, 4, 5, 2)}),
}

XE = rand(2, 3, 4)
XPOS = rand(2, 3, 4, low=0.1, high=3.0)
ACT = {
    "relu": single("Relu", {"x": XE}),
    "relu_opset7": single("Relu", {"x": XE}, opset=7),
    "sigmoid": single("Sigmoid", {"x": XE}),
    "tanh": single("Tanh", {"x": XE}),
    "leakyrelu_default": single("LeakyRelu", {"x": XE}),
    "leakyrelu_alpha": single("LeakyRelu", {"x": XE}, alpha=0.3),
    "hardsigmoid": single("HardSigmoid", {"x": XE}),
    "hardsigmoid_alpha_beta": single("HardSigmoid", {"x": rand(10, low=-6, high=6)}, alpha=0.3,
                                     beta=0.6),
    "hardswish": single("HardSwish", {"x": rand(10, low=-6, high=6)}, opset=14),
    "gelu": single("Gelu", {"x": XE}, opset=20),
    "gelu_tanh": single("Gelu", {"x": XE}, opset=20, approximate="tanh"),
    "elu": single("Elu", {"x": XE}, alpha=0.5),
    "selu": single("Selu", {"x": XE}),
    "prelu_channel": single("PRelu", {"x": rand(2, 3, 4, 4)}, {"slope": rand(3, 1, 1)}),
    "softplus": single("Softplus", {"x": XE}),
    "mish": single("Mish", {"x": XE}, opset=18),
    "clip_opset7_attrs": single("Clip", {"x": XE}, opset=7, min=-0.5, max=0.7),
    "clip_opset7_default_max": single("Clip", {"x": XE}, opset=7, min=0.0),
    "clip_opset11_both": single("Clip", {"x": XE}, {"lo": f32(-1.0), "hi": f32(0.5)}),
    "clip_opset11_min_only": single("Clip", {"x": XE}, {"lo": f32(0.2)}),
    "clip_opset13_max_only": single("Clip", {"x": XE}, {"hi": f32(0.2)}, ins=["x", "", "hi"],
                                    opset=13),
    "clip_int32": single("Clip", {"x": ints(10, dtype="int32")},
                         {"lo": np.array(-2, np.int32), "hi": np.array(3, np.int32)}, opset=13),
}

UNARY_CASES = {
    "Sqrt": XPOS, "Exp": XE, "Log": XPOS, "Neg": XE, "Abs": XE, "Erf": XE, "Floor": XE * 2,
    "Ceil": XE * 2, "Round": f32(-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.4, 0.6), "Sign": XE,
    "Sin": XE, "Cos": XE, "Reciprocal": XPOS,
}
MATH = {f"{op.lower()}": single(op, {"x": x}) for op, x in UNARY_CASES.items()}
MATH.update({
    "neg_int32": single("Neg", {"x": ints(5, dtype="int32")}),
    "abs_int64": single("Abs", {"x": ints(5)}),
    "add_broadcast": single("Add", {"a": rand(2, 3, 4), "b": rand(4)}),
    "add_opset7": single("Add", {"a": rand(2, 3, 4), "b": rand(3, 1)}, opset=7),
    "sub_const_left": single("Sub", {"b": rand(2, 3)}, {"a": f32(1.0)}, ins=["a", "b"]),
    "mul_broadcast_both": single("Mul", {"a": rand(2, 1, 4), "b": rand(3, 1)}),
    "div": single("Div", {"a": rand(2, 3)}, {"b": rand(2, 3, low=0.5)}),
    "div_int32": single("Div", {"a": ints(6, dtype="int32")},
                        {"b": np.array([2, -3, 4, 5, -2, 3], np.int32)}),
    "pow_float": single("Pow", {"a": XPOS, "b": rand(4)}),
    "pow_int_exponent": single("Pow", {"a": XE}, {"b": np.array(3, np.int64)}, opset=15),
    "mod_int": single("Mod", {"a": ints(12, low=-9, high=10)},
                      {"b": np.array([3, -3, 4, -4, 5, 7, -2, 2, 3, -5, 6, 1], np.int64)}),
    "mod_int_fmod": single("Mod", {"a": ints(6, low=-9, high=10, dtype="int32"),
                                   "b": np.array([3, -3, 4, -4, 5, 7], np.int32)}, fmod=1),
    "mod_float_fmod": single("Mod", {"a": rand(8, low=-5, high=5)}, {"b": f32(1.5)}, fmod=1),
    "mod_const_folds": single("Mod", {}, {"a": i64(-7, 7, 5), "b": i64(3, -3, 5)}),
    "max_variadic": single("Max", {"a": rand(2, 3), "b": rand(3), "c": rand(2, 1)}),
    "min_variadic": single("Min", {"a": rand(2, 3), "b": rand(3), "c": rand(2, 1)}),
    "max_single": single("Max", {"a": rand(2, 3)}),
    "sum_variadic": single("Sum", {"a": rand(2, 3), "b": rand(3), "c": rand(2, 3)}),
    "mean_variadic": single("Mean", {"a": rand(2, 3), "b": rand(3), "c": rand(2, 3)}),
    "equal_int": single("Equal", {"a": ints(10, low=0, high=3), "b": ints(10, low=0, high=3)}),
    "less": single("Less", {"a": rand(3, 4), "b": rand(4)}),
    "greater": single("Greater", {"a": rand(3, 4), "b": rand(4)}),
    "less_or_equal": single("LessOrEqual", {"a": ints(10, low=0, high=3)},
                            {"b": np.array(1, np.int64)}),
    "greater_or_equal": single("GreaterOrEqual", {"a": rand(3, 4), "b": rand(3, 1)}),
    "not": single("Not", {"a": ints(6, low=0, high=2).astype(bool)}),
    "and": single("And", {"a": ints(6, low=0, high=2).astype(bool),
                          "b": ints(6, low=0, high=2).astype(bool)}),
    "or": single("Or", {"a": ints(2, 3, low=0, high=2).astype(bool),
                        "b": ints(3, low=0, high=2).astype(bool)}),
    "xor": single("Xor", {"a": ints(6, low=0, high=2).astype(bool),
                          "b": ints(6, low=0, high=2).astype(bool)}),
    "where": single("Where", {"c": ints(3, 4, low=0, high=2).astype(bool), "a": rand(3, 4),
                              "b": rand(4)}),
})

XR = rand(2, 3, 4, 5)
REDUCE = {
    "reducemean_attr_keepdims": single("ReduceMean", {"x": XR}, axes=[1, -1], opset=13),
    "reducemean_attr_nokeep": single("ReduceMean", {"x": XR}, axes=[2], keepdims=0, opset=13),
    "reducemean_all": single("ReduceMean", {"x": XR}, opset=11),
    "reducemean_input_axes": single("ReduceMean", {"x": XR}, {"axes": i64(0, 2)}, opset=18),
    "reducesum_input_axes": single("ReduceSum", {"x": XR}, {"axes": i64(-1)}, keepdims=0,
                                   opset=13),
    "reducesum_no_axes_all": single("ReduceSum", {"x": XR}, opset=13),
    "reducesum_noop_empty": single("ReduceSum", {"x": XR}, noop_with_empty_axes=1, opset=13),
    "reducesum_opset11_attr": single("ReduceSum", {"x": XR}, axes=[1], opset=11),
    "reducemax_attr": single("ReduceMax", {"x": XR}, axes=[1, 2], opset=13),
    "reducemax_input": single("ReduceMax", {"x": XR}, {"axes": i64(3)}, opset=18, keepdims=0),
    "reducemin_attr": single("ReduceMin", {"x": XR}, axes=[0], opset=11),
    "reducemin_int": single("ReduceMin", {"x": ints(3, 4)}, axes=[1], opset=13),
    "reduceprod": single("ReduceProd", {"x": rand(2, 3, 4, low=0.5, high=1.5)}, axes=[2],
                         opset=13),
    "reduceprod_input": single("ReduceProd", {"x": rand(2, 3, 4, low=0.5, high=1.5)},
                               {"axes": i64(1)}, opset=18),
    "reducel1": single("ReduceL1", {"x": XR}, axes=[1], opset=13),
    "reducel2": single("ReduceL2", {"x": XR}, {"axes": i64(1, 3)}, opset=18),
    "reducesumsquare": single("ReduceSumSquare", {"x": XR}, axes=[2], opset=13),
    "reducelogsum": single("ReduceLogSum", {"x": rand(3, 4, low=0.1)}, axes=[1], opset=13),
    "reducelogsumexp": single("ReduceLogSumExp", {"x": XR}, axes=[3], opset=13),
}

XT = rand(2, 3, 4, 5)
TENSOR = {
    "concat_neg_axis": single("Concat", {"a": rand(2, 3), "b": rand(2, 1), "c": rand(2, 4)},
                              axis=-1),
    "concat_const_and_input": single("Concat", {"a": rand(2, 3)}, {"b": rand(1, 3)}, axis=0),
    "concat_opset7": single("Concat", {"a": rand(2, 3), "b": rand(2, 3)}, axis=1, opset=7),
    "split_attr_sizes": single("Split", {"x": XT}, axis=1, split=[1, 2], n_out=2, opset=11),
    "split_equal_opset7": single("Split", {"x": XT}, axis=2, n_out=2, opset=7),
    "split_input_sizes": single("Split", {"x": XT}, {"s": i64(2, 3)}, axis=-1, n_out=2,
                                opset=13),
    "split_equal_opset13": single("Split", {"x": XT}, n_out=2, opset=13),
    "split_num_outputs_uneven": single("Split", {"x": XT}, axis=3, num_outputs=2, n_out=2,
                                       opset=18),
    "slice_opset9_attrs": single("Slice", {"x": XT}, opset=9, starts=[1, -3], ends=[1000, -1],
                                 axes=[1, 3]),
    "slice_opset9_no_axes": single("Slice", {"x": XT}, opset=9, starts=[0, 1], ends=[1, 3]),
    "slice_steps": single("Slice", {"x": XT}, {"s": i64(0, 1), "e": i64(4, 5), "a": i64(2, 3),
                                               "st": i64(2, 3)}),
    "slice_negative_steps": single("Slice", {"x": XT}, {"s": i64(-1, 100), "e": i64(-1000, 0),
                                                        "a": i64(1, 3), "st": i64(-1, -2)},
                                   opset=13),
    "slice_huge_ends": single("Slice", {"x": XT}, {"s": i64(1), "e": i64(2**63 - 1)}, opset=10),
    "slice_neg_step_mid": single("Slice", {"x": XT}, {"s": i64(3), "e": i64(0), "a": i64(-2),
                                                      "st": i64(-1)}, opset=11),
    "reshape_zero_minus1": single("Reshape", {"x": XT}, {"s": i64(0, -1, 5)}),
    "reshape_flat": single("Reshape", {"x": XT}, {"s": i64(-1)}, opset=7),
    "reshape_allowzero_no_zeros": single("Reshape", {"x": XT}, {"s": i64(6, 20)}, allowzero=1,
                                         opset=14),
    "flatten_default": single("Flatten", {"x": XT}),
    "flatten_axis0": single("Flatten", {"x": XT}, axis=0),
    "flatten_axis_neg": single("Flatten", {"x": XT}, axis=-1, opset=11),
    "transpose_default": single("Transpose", {"x": XT}),
    "transpose_perm": single("Transpose", {"x": XT}, perm=[0, 2, 3, 1]),
    "squeeze_opset11_attr": single("Squeeze", {"x": rand(1, 3, 1, 4)}, axes=[0, -2], opset=11),
    "squeeze_all_ones": single("Squeeze", {"x": rand(1, 3, 1, 4)}, opset=13),
    "squeeze_input_axes": single("Squeeze", {"x": rand(1, 3, 1, 4)}, {"a": i64(2)}, opset=13),
    "unsqueeze_opset11_attr": single("Unsqueeze", {"x": rand(3, 4)}, axes=[0, 3], opset=11),
    "unsqueeze_input_neg": single("Unsqueeze", {"x": rand(3, 4)}, {"a": i64(-1, 1)}, opset=13),
    "pad_opset10_constant": single("Pad", {"x": rand(2, 3)}, opset=10, pads=[1, 0, 2, 1],
                                   value=1.5),
    "pad_opset10_reflect": single("Pad", {"x": rand(1, 2, 4, 5)}, opset=10, mode="reflect",
                                  pads=[0, 0, 1, 2, 0, 0, 2, 1]),
    "pad_constant_value": single("Pad", {"x": rand(2, 3)}, {"p": i64(0, 1, 2, 3),
                                                            "v": f32(-1.0)}, opset=13),
    "pad_edge": single("Pad", {"x": rand(1, 2, 4, 5)}, {"p": i64(0, 0, 2, 1, 0, 0, 1, 3)},
                       mode="edge", opset=11),
    "pad_reflect": single("Pad", {"x": rand(1, 2, 4, 5)}, {"p": i64(0, 0, 3, 1, 0, 0, 1, 4)},
                          mode="reflect", opset=13),
    "pad_negative_crop": single("Pad", {"x": rand(4, 5)}, {"p": i64(-1, 2, 1, -2)}, opset=13),
    "pad_axes_opset18": single("Pad", {"x": rand(2, 3, 4)}, {"p": i64(1, 2, 3, 0), "v": f32(2.0),
                                                             "a": i64(2, 0)}, opset=18),
    "pad_wrap_opset19": single("Pad", {"x": rand(1, 2, 3, 4)}, {"p": i64(0, 0, 1, 2, 0, 0, 2, 1)},
                               mode="wrap", opset=19),
    "pad_int_constant": single("Pad", {"x": ints(2, 3)}, {"p": i64(1, 1, 1, 1),
                                                          "v": np.array(7, np.int64)}, opset=13),
    "gather_const_indices": single("Gather", {"x": XT}, {"i": i64(2, 0, -1)}, axis=1),
    "gather_runtime_indices": single("Gather", {"x": XT, "i": ints(2, 2, low=-4, high=4)},
                                     axis=2),
    "gather_int32_scalar": single("Gather", {"x": rand(5, 3)}, {"i": np.array(-2, np.int32)}),
    "gather_from_const_data": single("Gather", {"i": ints(3, low=0, high=4)},
                                     {"x": rand(4, 6)}, ins=["x", "i"]),
    "expand": single("Expand", {"x": rand(3, 1)}, {"s": i64(2, 1, 4)}),
    "expand_noop": single("Expand", {"x": rand(3, 4)}, {"s": i64(1, 1)}),
    "tile": single("Tile", {"x": rand(2, 3)}, {"r": i64(2, 3)}),
    "depth_to_space_dcr": single("DepthToSpace", {"x": rand(1, 8, 2, 3)}, blocksize=2),
    "depth_to_space_crd": single("DepthToSpace", {"x": rand(1, 8, 2, 3)}, blocksize=2,
                                 mode="CRD"),
    "space_to_depth": single("SpaceToDepth", {"x": rand(1, 2, 4, 6)}, blocksize=2),
    "cast_float_to_int": single("Cast", {"x": XE * 3}, to=onnx.TensorProto.INT32),
    "cast_int_to_float": single("Cast", {"x": ints(2, 3)}, to=onnx.TensorProto.FLOAT),
    "cast_float_to_bool": single("Cast", {"x": np.array([0.0, 1.5, -2.0], np.float32)},
                                 to=onnx.TensorProto.BOOL, opset=9),
    "cast_to_double": single("Cast", {"x": XE}, to=onnx.TensorProto.DOUBLE, opset=19),
    "castlike": single("CastLike", {"x": ints(3)}, {"t": f32(0)}, opset=15),
    "identity": single("Identity", {"x": XE}),
    "dropout_opset7": single("Dropout", {"x": XE}, opset=7, ratio=0.3),
    "dropout_opset13": single("Dropout", {"x": XE}, {"r": np.array(0.5, np.float32)}, opset=13),
    "shape": single("Shape", {"x": XT}),
    "shape_start_end": single("Shape", {"x": XT}, opset=15, start=1, end=-1),
    "size": single("Size", {"x": XT}),
    "constant_of_shape": single("ConstantOfShape", {}, {"s": i64(2, 3)},
                                value=numpy_helper.from_array(np.array([7], np.int32))),
    "constant_of_shape_default": single("ConstantOfShape", {}, {"s": i64(4)}),
    "range_int": single("Range", {}, {"a": np.array(1, np.int64), "b": np.array(10, np.int64),
                                      "c": np.array(3, np.int64)}),
    "range_float": single("Range", {}, {"a": f32(1.0)[0], "b": f32(-2.0)[0], "c": f32(-0.7)[0]}),
}

CONSTANTS = {
    "constant_tensor": single("Constant", {}, value=numpy_helper.from_array(rand(2, 3))),
    "constant_value_float": single("Constant", {}, value_float=2.5, opset=13),
    "constant_value_floats": single("Constant", {}, value_floats=[1.0, 2.0], opset=13),
    "constant_value_int": single("Constant", {}, value_int=3, opset=13),
    "constant_value_ints": single("Constant", {}, value_ints=[3, 4, 5], opset=13),
}

XS = rand(1, 2, 4, 6)


def _resize(opset, x=XS, *, scales=None, sizes=None, roi=None, **attrs):
    inits, ins = {}, ["x"]
    if opset == 10:
        return single("Resize", {"x": x}, {"sc": f32(*scales)}, opset=10, **attrs)
    if opset == 11:  # roi and scales are required inputs, possibly empty
        roi = roi or ()
        scales = scales or ()
    for name, value, make in (("roi", roi, f32), ("sc", scales, f32), ("sz", sizes, i64)):
        if value is not None:
            inits[name] = make(*value)
            ins.append(name)
        elif name != "sz":
            ins.append("")
    return single("Resize", {"x": x}, inits, ins=ins, opset=opset, **attrs)


UP = (1, 1, 2, 2)
DOWN = (1, 1, 0.5, 0.5)
RESIZE = {
    "resize10_nearest_up": _resize(10, scales=(1, 1, 2, 3)),
    "resize10_nearest_down": _resize(10, scales=(1, 1, 0.5, 0.5)),
    "resize10_nearest_mixed": _resize(10, scales=(1, 1, 2.0, 0.5)),
    "resize10_linear": _resize(10, scales=(1, 1, 2, 1.5), mode="linear"),
    "upsample7_nearest": single("Upsample", {"x": XS}, opset=7, scales=[1.0, 1.0, 2.0, 3.0]),
    "upsample7_linear": single("Upsample", {"x": XS}, opset=7, scales=[1.0, 1.0, 2.0, 2.0],
                               mode="linear"),
    "upsample9_nearest": single("Upsample", {"x": XS}, {"sc": f32(1, 1, 3, 2)}, opset=9),
    "resize11_nearest_default": _resize(11, scales=UP),
    "resize11_linear_sizes": _resize(11, sizes=(1, 2, 3, 9), mode="linear"),
    "resize13_nearest_asym_floor": _resize(13, scales=(1, 1, 1.5, 2.5),
                                           coordinate_transformation_mode="asymmetric",
                                           nearest_mode="floor"),
    "resize13_nearest_ceil_down": _resize(13, scales=(1, 1, 0.6, 0.7), nearest_mode="ceil"),
    "resize13_nearest_prefer_ceil": _resize(13, scales=DOWN, nearest_mode="round_prefer_ceil"),
    "resize13_nearest_align_corners": _resize(13, sizes=(1, 2, 7, 9),
                                              coordinate_transformation_mode="align_corners"),
    "resize13_linear_half_pixel": _resize(13, scales=UP, mode="linear"),
    "resize13_linear_down": _resize(13, scales=(1, 1, 0.75, 0.5), mode="linear"),
    "resize13_linear_sizes_pytorch": _resize(13, sizes=(1, 2, 1, 11), mode="linear",
                                             coordinate_transformation_mode="pytorch_half_pixel"),
    "resize13_linear_align_corners": _resize(13, sizes=(1, 2, 7, 5), mode="linear",
                                             coordinate_transformation_mode="align_corners"),
    "resize13_linear_asymmetric": _resize(13, scales=(1, 1, 1.7, 2.2), mode="linear",
                                          coordinate_transformation_mode="asymmetric"),
    "resize13_cubic": _resize(13, scales=UP, mode="cubic"),
    "resize13_cubic_a_exclude": _resize(13, sizes=(1, 2, 9, 5), mode="cubic",
                                        cubic_coeff_a=-0.5, exclude_outside=1),
    "resize13_cubic_asym": _resize(13, scales=(1, 1, 1.5, 0.5), mode="cubic",
                                   coordinate_transformation_mode="asymmetric"),
    "resize13_tf_crop": _resize(13, sizes=(1, 2, 5, 5), roi=(0, 0, 0.2, 0.1, 1, 1, 0.9, 1.2),
                                mode="linear", extrapolation_value=-3.0,
                                coordinate_transformation_mode="tf_crop_and_resize"),
    "resize18_axes_sizes": _resize(18, sizes=(8, 3), axes=[2, 3], mode="linear"),
    "resize18_axes_scales_neg": _resize(18, scales=(3.0,), axes=[-1]),
    "resize18_not_larger": _resize(18, sizes=(8, 9), axes=[2, 3], mode="linear",
                                   keep_aspect_ratio_policy="not_larger"),
    "resize18_not_smaller": _resize(18, sizes=(8, 9), axes=[2, 3],
                                    keep_aspect_ratio_policy="not_smaller"),
    "resize19_half_pixel_symmetric": _resize(19, scales=(1, 1, 1.5, 0.75), mode="linear",
                                             coordinate_transformation_mode="half_pixel_symmetric"),
    "resize13_3d_linear": _resize(13, rand(1, 1, 3, 4, 2), scales=(1, 1, 2, 1.5, 2),
                                  mode="linear"),
}

XQ = rand(2, 3, 4, low=-3, high=3)
QUANT = {
    "quantize_uint8_default": single("QuantizeLinear", {"x": XQ}, {"s": f32(0.02)[0]}, opset=10),
    "quantize_int8_zp": single("QuantizeLinear", {"x": XQ}, {"s": np.float32(0.03),
                                                            "z": np.int8(-5)}, opset=13),
    "quantize_per_axis": single("QuantizeLinear", {"x": XQ}, {"s": f32(0.01, 0.02, 0.05),
                                                             "z": np.array([0, 10, 250], np.uint8)},
                                opset=13),
    "quantize_axis0_int16": single("QuantizeLinear", {"x": XQ}, {"s": f32(0.001, 0.002),
                                                                "z": np.array([3, -3], np.int16)},
                                   axis=0, opset=21),
    "dequantize_uint8": single("DequantizeLinear", {"x": ints(2, 3, low=0, high=256,
                                                             dtype="uint8")},
                               {"s": np.float32(0.1), "z": np.uint8(128)}, opset=10),
    "dequantize_int8_per_axis": single("DequantizeLinear", {"x": ints(2, 3, 4, low=-128, high=128,
                                                                     dtype="int8")},
                                       {"s": f32(0.1, 0.2, 0.3), "z": np.array([1, 0, -1],
                                                                               np.int8)},
                                       opset=13),
    "dequantize_int32_no_zp": single("DequantizeLinear", {"x": ints(5, low=-1000, high=1000,
                                                                   dtype="int32")},
                                     {"s": np.float32(0.5)}, opset=13),
}

# Ops added for ONNX conformance (the compiled tests cover their attributes in depth).
_TIES = ints(3, 4, 6, low=-2, high=3).astype(np.float32)
_U8 = ints(2, 3, 5, 5, low=0, high=256, dtype="uint8")
_RNN = {"x": rand(3, 2, 4)}


def _rnn(op, gates, n_out, **attrs):
    inits = {"w": rand(1, gates * 5, 4, low=-0.5, high=0.5),
             "r": rand(1, gates * 5, 5, low=-0.5, high=0.5),
             "b": rand(1, 10 * gates, low=-0.5, high=0.5)}
    return single(op, _RNN, inits, n_out=n_out, opset=14, hidden_size=5, **attrs)


EXTRA = {f"{op.lower()}": single(op, {"x": x}, opset=18) for op, x in {
    "Tan": rand(7, low=-1.4, high=1.4), "Asin": rand(7, low=-1, high=1),
    "Acos": rand(7, low=-1, high=1), "Atan": rand(7), "Sinh": rand(7), "Cosh": rand(7),
    "Asinh": rand(7), "Acosh": rand(7, low=1, high=5), "Atanh": rand(7, low=-0.9, high=0.9),
    "Softsign": rand(7), "Celu": rand(7), "ThresholdedRelu": rand(7), "Shrink": rand(7),
    "IsNaN": f32(np.nan, 1, np.inf), "IsInf": f32(np.nan, -np.inf, np.inf, 2),
    "BitwiseNot": ints(7, dtype="int32"), "Hardmax": _TIES,
    "MeanVarianceNormalization": rand(2, 3, 4, 5), "EyeLike": rand(3, 5),
    "DynamicQuantizeLinear": rand(3, 7),
}.items()}
EXTRA.update({
    "dynamicquantizelinear": single("DynamicQuantizeLinear", {"x": rand(3, 7)}, n_out=3,
                                    opset=18),
    **{f"{op.lower()}": single(op, {"a": ints(3, 4, dtype="int32"), "b": ints(4, dtype="int32")},
                               opset=18) for op in ("BitwiseAnd", "BitwiseOr", "BitwiseXor")},
    "bitshift": single("BitShift", {"a": ints(5, low=0, high=100, dtype="uint8"),
                                    "b": ints(5, low=0, high=4, dtype="uint8")}, opset=18,
                       direction="RIGHT"),
    "argmax": single("ArgMax", {"x": _TIES}, opset=13, axis=1, select_last_index=1),
    "argmin": single("ArgMin", {"x": _TIES}, opset=13, axis=-1, keepdims=0),
    "trilu": single("Trilu", {"x": rand(2, 4, 5)}, {"k": i64(1)}, opset=14, upper=0),
    "cumsum": single("CumSum", {"x": rand(3, 5)}, {"a": i64(1)}, opset=14, exclusive=1),
    "gatherelements": single("GatherElements", {"x": rand(3, 4)},
                             {"i": ints(3, 2, low=-4, high=4)}, opset=13, axis=1),
    "gathernd": single("GatherND", {"x": rand(3, 4, 5)}, {"i": ints(2, 2, low=0, high=3)},
                       opset=13),
    "scatterelements": single("ScatterElements", {"x": rand(3, 4), "u": rand(3, 2)},
                              {"i": ints(3, 2, low=-4, high=4)}, ins=["x", "i", "u"], opset=18,
                              axis=1, reduction="add"),
    "scatter": single("Scatter", {"x": rand(3, 4), "u": rand(1, 4)},
                      {"i": ints(1, 4, low=0, high=3)}, ins=["x", "i", "u"], opset=10),
    "scatternd": single("ScatterND", {"x": rand(3, 4), "u": rand(2, 4)},
                        {"i": np.array([[2], [0]], np.int64)}, ins=["x", "i", "u"], opset=13),
    "lrn": single("LRN", {"x": rand(1, 5, 3, 4)}, size=3, alpha=0.001, beta=0.75, bias=1.0),
    "lppool": single("LpPool", {"x": rand(1, 2, 5, 6)}, opset=18, kernel_shape=[2, 3], p=2),
    "lpnormalization": single("LpNormalization", {"x": rand(3, 5)}, axis=-1, p=1),
    "groupnormalization": single("GroupNormalization", {"x": rand(2, 4, 3, 3)},
                                 {"s": rand(4), "b": rand(4)}, opset=21, num_groups=2),
    "hannwindow": single("HannWindow", {}, {"n": np.array(8, np.int64)}, opset=17),
    "hammingwindow": single("HammingWindow", {}, {"n": np.array(8, np.int64)}, opset=17, periodic=0),
    "blackmanwindow": single("BlackmanWindow", {}, {"n": np.array(8, np.int64)}, opset=17),
    "onehot": single("OneHot", {"i": ints(2, 3, low=-4, high=4)},
                     {"d": i64(4), "v": f32(0, 3)}, opset=11, axis=0),
    "compress": single("Compress", {"x": rand(3, 4)}, {"c": np.array([1, 0, 1], bool)},
                       opset=11, axis=0),
    "centercroppad": single("CenterCropPad", {"x": rand(4, 5)}, {"s": i64(2, 7)}, opset=18),
    "topk": single("TopK", {"x": _TIES}, {"k": i64(2)}, n_out=2, opset=11, axis=1),
    "reversesequence": single("ReverseSequence", {"x": rand(4, 3, 2)}, {"l": i64(4, 2, 1)},
                              opset=10, batch_axis=1, time_axis=0),
    "nll": single("NegativeLogLikelihoodLoss", {"x": rand(3, 4)},
                  {"t": ints(3, low=0, high=4)}, opset=13),
    "sce": single("SoftmaxCrossEntropyLoss", {"x": rand(3, 4)}, {"t": ints(3, low=0, high=4)},
                  n_out=2, opset=13, reduction="sum"),
    "matmulinteger": single("MatMulInteger", {"a": _U8[0, 0]},
                            {"b": ints(5, 3, low=0, high=256, dtype="uint8")}, opset=10),
    "qlinearmatmul": single("QLinearMatMul", {"a": _U8[0, 0]},
                            {"as": f32(0.05), "az": np.array(3, np.uint8),
                             "b": ints(5, 3, low=0, high=256, dtype="uint8"),
                             "bs": f32(0.02), "bz": np.array(100, np.uint8), "ys": f32(8.0),
                             "yz": np.array(10, np.uint8)}, opset=10),
    "convinteger": single("ConvInteger", {"x": _U8}, {"w": ints(2, 3, 2, 2, low=0, high=256,
                                                                 dtype="uint8")}, opset=10),
    "qlinearconv": single("QLinearConv", {"x": _U8},
                          {"xs": f32(0.05), "xz": np.array(3, np.uint8),
                           "w": ints(2, 3, 2, 2, low=0, high=256, dtype="uint8"),
                           "ws": f32(0.02), "wz": np.array(100, np.uint8), "ys": f32(8.0),
                           "yz": np.array(10, np.uint8)}, opset=10),
    "rnn": _rnn("RNN", 1, 2),
    "gru": _rnn("GRU", 3, 2, linear_before_reset=1),
    "lstm": _rnn("LSTM", 4, 3, direction="reverse"),
})

def _if_case(flag: bool):
    """An If whose condition folds at compile time (an initializer compared with a constant)."""
    branches = []
    for name, op in (("then", "Sigmoid"), ("else", "Tanh")):
        branches.append(helper.make_graph(
            [helper.make_node(op, ["x"], [f"{name}_y"], name=f"{name}_op")], name, [],
            [helper.make_tensor_value_info(f"{name}_y", onnx.TensorProto.FLOAT, [2, 5])]))
    nodes = [helper.make_node("Greater", ["rate", "k"], ["c"], name="cond"),
             helper.make_node("If", ["c"], ["y"], name="branch", then_branch=branches[0],
                              else_branch=branches[1])]
    inits = {"rate": np.array(16000 if flag else 8000, np.int64), "k": np.array(10000, np.int64)}
    model = make_model(nodes, [("x", "float32", (2, 5))], [("y", "float32", (2, 5))], inits, 13)
    return model, {"x": rand(2, 5)}


CONTROL = {"If-then": _if_case(True), "If-else": _if_case(False)}
CASES = {**CONV, **MATMUL, **NORM, **POOL, **ACT, **MATH, **REDUCE, **TENSOR, **CONSTANTS, **RESIZE,
         **QUANT, **EXTRA, **CONTROL}


@pytest.mark.parametrize("model,feeds", [pytest.param(*c, id=k) for k, c in CASES.items()])
def test_op_matches_onnxruntime(model, feeds):
    check(model, feeds)


def test_every_supported_op_has_a_case():
    covered = {n.op_type for model, _ in CASES.values() for n in model.graph.node}
    assert set(supported_ops(22)) - covered == set()


@pytest.mark.parametrize("opset,mask_dtype,extra", [(7, "float32", {}), (10, "bool", {}),
                                                   (13, "bool", {"r": np.array(0.5, np.float32),
                                                                 "t": np.array(False)})])
def test_dropout_mask_is_all_true(opset, mask_dtype, extra):
    # The spec (and onnx.reference) make the inference mask all ones; onnxruntime returns all
    # zeros, so only the data output is compared with it.
    model, feeds = single("Dropout", {"x": XE}, extra, n_out=2, opset=opset)
    g = import_onnx(model)
    out, mask = interpret(g, feeds)
    np.testing.assert_array_equal(out, run_ort(model, feeds)[0])
    assert mask.dtype == mask_dtype and mask.shape == XE.shape and mask.all()


# -- graphs of several nodes -----------------------------------------------------------------------
def test_shape_subgraph_folds_to_a_constant_reshape():
    # Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])): the PyTorch flatten pattern.
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
        helper.make_node("Unsqueeze", ["batch", "axes0"], ["batch1"]),
        helper.make_node("Concat", ["batch1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
        helper.make_node("Relu", ["y"], ["z"]),
    ]
    inits = {"zero": np.array(0, np.int64), "axes0": i64(0), "minus1": i64(-1)}
    model = make_model(nodes, [("x", "float32", ("N", 3, 4))], ["z"], inits, 13)
    x = rand(2, 3, 4)
    g = import_onnx(model, {"x": (2, 3, 4)})
    assert [n.op for n in g.nodes] == ["reshape", "relu"]
    assert g.nodes[0].attrs["shape"] == (2, 12)
    np.testing.assert_allclose(interpret(g, {"x": x})[0], run_ort(model, {"x": x})[0])


def test_small_cnn_matches_onnxruntime():
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("BatchNormalization", ["c1", "s", "bb", "m", "v"], ["bn"]),
        helper.make_node("Relu", ["bn"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p1"], ["f"]),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    inits = {"w1": rand(8, 3, 3, 3), "b1": rand(8), "s": rand(8), "bb": rand(8), "m": rand(8),
             "v": rand(8, low=0.5), "w2": rand(10, 8 * 4 * 4) * 0.3, "b2": rand(10)}
    model = make_model(nodes, [("x", "float32", (2, 3, 8, 8))], ["probs", "logits"], inits, 11)
    x = rand(2, 3, 8, 8)
    want = run_ort(model, {"x": x})[0]
    assert want.std() > 1e-3  # the test would be meaningless on near-uniform probabilities
    g = check(model, {"x": x})
    assert {n.origin for n in g.nodes} >= {"conv1", "Relu#2"}


def test_output_aliasing_an_input_or_constant():
    nodes = [helper.make_node("Identity", ["x"], ["same"]),
             helper.make_node("Identity", ["c"], ["const_out"]),
             helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Identity", ["r"], ["r_again"])]
    model = make_model(nodes, [("x", "float32", (3,))], ["same", "const_out", "r", "r_again"],
                       {"c": f32(1, 2)}, 13)
    check(model, {"x": rand(3)})


# -- errors ----------------------------------------------------------------------------------------
def test_all_unsupported_ops_reported_at_once():
    nodes = [helper.make_node("Unique", ["x"], ["v"], name="unique_a"),
             helper.make_node("NonZero", ["x"], ["nz"], name="nz_a"),
             helper.make_node("Unique", ["x"], ["v2"], name="unique_b"),
             helper.make_node("Einsum", ["x", "x"], ["e"], equation="ij,ij->i"),
             helper.make_node("Relu", ["x"], ["r"])]
    model = make_model(nodes, [("x", "float32", (2, 3))], ["v", "nz", "v2", "e", "r"],
                       {"k": i64(1)}, 13)
    with pytest.raises(UnsupportedModelError) as info:
        import_onnx(model)
    ops = {op.op_type: op for op in info.value.ops}
    assert set(ops) == {"Unique", "NonZero", "Einsum"}
    assert ops["Unique"].count == 2 and list(ops["Unique"].first_node_names) == ["unique_a", "unique_b"]
    assert ops["Einsum"].first_node_names == ["Einsum#3"]
    for name in ("Unique (2 nodes: unique_a, unique_b)", "NonZero (1 node: nz_a)", "Einsum"):
        assert name in str(info.value)
    report = inspect_onnx(model)
    assert {u["op_type"]: u["count"] for u in report["unsupported"]} == {
        "Unique": 2, "NonZero": 1, "Einsum": 1}
    assert report["ops"]["Unique"] == 2 and report["opset"] == 13


def test_op_newer_than_model_opset_and_other_domains_are_unsupported():
    nodes = [helper.make_node("Gelu", ["x"], ["g"]),  # Gelu exists from opset 20
             helper.make_node("Normalizer", ["x"], ["n"], domain="ai.onnx.ml")]
    model = make_model(nodes, [("x", "float32", (2, 3))], ["g", "n"], None, 17)
    model.opset_import.append(helper.make_opsetid("ai.onnx.ml", 3))
    with pytest.raises(UnsupportedModelError) as info:
        import_onnx(model)
    assert {op.op_type for op in info.value.ops} == {"Gelu", "ai.onnx.ml.Normalizer"}


def test_ops_inside_subgraphs_are_checked():
    then_graph = helper.make_graph([helper.make_node("NonZero", ["x"], ["t"], name="inner_nz")],
                                   "then", [], [helper.make_empty_tensor_value_info("t")])
    else_graph = helper.make_graph([helper.make_node("Relu", ["x"], ["e"])], "else", [],
                                   [helper.make_empty_tensor_value_info("e")])
    node = helper.make_node("If", ["c"], ["y"], name="branch", then_branch=then_graph,
                            else_branch=else_graph)
    model = make_model([node], [("c", "bool", ()), ("x", "float32", (3,))], ["y"], None, 13)
    with pytest.raises(UnsupportedModelError) as info:
        import_onnx(model)
    # If itself converts (when its condition is known); the op inside its branch does not
    assert {(op.op_type, tuple(op.first_node_names)) for op in info.value.ops} == {
        ("NonZero", ("inner_nz",))}


def test_unsupported_attributes_reported_together():
    nodes = [
        helper.make_node("Resize", ["x", "", "sc"], ["r"], name="resize_aa", antialias=1),
        helper.make_node("Clip", ["x", "x"], ["c"], name="clip_dyn"),  # min computed at run time
        helper.make_node("MaxPool", ["x"], ["p", "idx"], name="pool_idx", kernel_shape=[2, 2]),
        helper.make_node("Relu", ["c"], ["rc"], name="after_clip"),
        helper.make_node("Conv", ["x", "w"], ["cv"], name="conv_pad", auto_pad="BOGUS"),
    ]
    model = make_model(nodes, [("x", "float32", (1, 1, 4, 4))], ["r", "rc", "p", "idx", "cv"],
                       {"sc": f32(1, 1, 2, 2), "w": rand(1, 1, 3, 3)}, 19)
    with pytest.raises(UnsupportedModelError) as info:
        import_onnx(model)
    by_op = {op.op_type: op for op in info.value.ops}
    assert set(by_op) == {"Resize", "Clip", "MaxPool", "Conv"}
    assert "antialias=1" in by_op["Resize"].reason and "supported: 0" in by_op["Resize"].reason
    assert "min" in by_op["Clip"].reason and by_op["Clip"].first_node_names == ["clip_dyn"]
    assert "output #2" in by_op["MaxPool"].reason
    assert "auto_pad='BOGUS'" in by_op["Conv"].reason
    assert "resize_aa" in str(info.value)


def test_undeclared_attribute_with_non_default_value_is_reported():
    # Reshape has no attributes before opset 14; a stray one set to a value is flagged.
    node = helper.make_node("LeakyRelu", ["x"], ["y"], alpha=0.1)
    node.attribute.append(helper.make_attribute("bogus", 3))
    model = make_model([node], [("x", "float32", (3,))], ["y"], None, 13)
    with pytest.raises(UnsupportedModelError, match="bogus=3"):
        import_onnx(model)


def test_old_opset_is_rejected():
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", "float32", (3,))], ["y"],
                       None, 6)
    with pytest.raises(UnsupportedModelError, match="opset 6"):
        import_onnx(model)


def test_non_onnx_file_gives_model_load_error(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_text("this is not a protobuf, just some text\n" * 3)
    with pytest.raises(ModelLoadError):
        import_onnx(bad)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="not an ONNX model"):
        import_onnx(empty)
    with pytest.raises(ModelLoadError, match="does not exist"):
        import_onnx(tmp_path / "missing.onnx")
    with pytest.raises(ModelLoadError):
        onnx_model_inputs(bad)


# -- loading ---------------------------------------------------------------------------------------
def test_external_data_model_loads(tmp_path):
    w = rand(64, 32)
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", "float32", (2, 64))],
                       ["y"], {"w": w}, 13)
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.data", size_threshold=0)
    assert (tmp_path / "ext.data").exists()
    g = import_onnx(path, model_name="ext")
    assert g.name == "ext"
    x = rand(2, 64)
    np.testing.assert_allclose(interpret(g, {"x": x})[0], x @ w, rtol=1e-4, atol=1e-5)
    assert onnx_model_inputs(path) == [("x", (2, 64), "float32")]


def test_initializer_listed_as_input_is_a_constant():
    # IR version 3 models list every weight among the graph inputs as well.
    w = rand(3, 4)
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["y"])],
                       [("x", "float32", (2, 3)), ("w", "float32", (3, 4))], ["y"], {"w": w}, 8)
    model.ir_version = 3
    g = import_onnx(model)
    assert [v.name for v in g.inputs] == ["x"]
    assert g.nodes[0].inputs[1].is_const
    assert onnx_model_inputs(model) == [("x", (2, 3), "float32")]
    x = rand(2, 3)
    np.testing.assert_allclose(interpret(g, {"x": x})[0], x @ w, rtol=1e-5)


def test_non_positive_dim_values_are_dynamic():
    # exporters (paddle2onnx) write a dynamic dim as dim_value -1; 0 is no static size either
    model = make_model([helper.make_node("Add", ["x", "y"], ["z"])],
                       [("x", "float32", (-1, 3, 0, "w")), ("y", "float32", ("n", 3, 1, "w"))],
                       ["z"], None, 13)
    assert onnx_model_inputs(model) == [("x", (None, 3, None, None), "float32"),
                                        ("y", (None, 3, 1, None), "float32")]
    from neo.frontends.onnx import onnx_dim_params

    assert onnx_dim_params(model) == {"x": (None, None, None, "w"), "y": ("n", None, None, "w")}
    with pytest.raises(UsageError, match="dynamic"):
        import_onnx(model)
    g = import_onnx(model, {"x": (2, 3, 4, 5), "y": (2, 3, 1, 5)})
    assert g.outputs[0].shape == (2, 3, 4, 5)


def test_dynamic_input_needs_a_shape():
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", "float32", ("N", 3))],
                       ["y"], None, 13)
    assert onnx_model_inputs(model) == [("x", (None, 3), "float32")]
    with pytest.raises(UsageError, match="dynamic"):
        import_onnx(model)
    with pytest.raises(UsageError, match="rank"):
        import_onnx(model, {"x": (2, 3, 1)})
    with pytest.raises(UsageError, match="'nope'"):
        import_onnx(model, {"x": (2, 3), "nope": (1,)})
    g = import_onnx(model, {"x": (5, 3)})
    assert g.inputs[0].shape == (5, 3) and g.inputs[0].dtype == "float32"


def test_frontend_registry_and_inspect(tmp_path):
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", "float32", ("N", 3))],
                       [("y", "float32", ("N", 3))], None, 13)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    fe = FRONTENDS["onnx"]
    assert fe.inputs(path) == [("x", (None, 3), "float32")]
    g = fe.load(path, {"x": (4, 3)})
    assert isinstance(g, ir.Graph) and g.outputs[0].shape == (4, 3)
    info = fe.inspect(path)
    assert info["inputs"] == [{"name": "x", "shape": (None, 3), "dtype": "float32"}]
    assert info["outputs"][0]["name"] == "y"
    assert info["ops"] == {"Relu": 1} and info["unsupported"] == []
