"""Neo's input-shape rules (--shape, DataInputConfig) for all seven frameworks; the error model."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neo.errors import (
    CompileError,
    ModelLoadError,
    NeoError,
    NeoRuntimeError,
    UnsupportedModelError,
    UnsupportedOp,
    UsageError,
    exit_code_for,
    format_error,
)
from neo.frameworks import FRAMEWORKS, all_frameworks, parse_framework
from neo.shapes import MAX_DIM, MAX_ELEMENTS, ModelInput, ShapeSpec, bind_shapes, parse_shapes

F32 = "float32"


def usage_error(call, *args) -> UsageError:
    """Run `call`, expect a one-line UsageError (exit code 2), return it."""
    with pytest.raises(UsageError) as info:
        call(*args)
    err = info.value
    assert err.exit_code == 2
    assert "\n" not in err.message
    return err


# --- frameworks ---------------------------------------------------------------------------------


def test_seven_frameworks_with_their_conventions():
    assert [fw.name for fw in all_frameworks()] == [
        "tensorflow", "keras", "mxnet", "onnx", "pytorch", "xgboost", "tflite",
    ]  # fmt: skip
    layouts = {fw.name: (fw.shape_form, fw.layout, fw.model_layout) for fw in all_frameworks()}
    assert layouts == {
        "tensorflow": ("dict", "NHWC", "NHWC"),
        "keras": ("dict", "NCHW", "NHWC"),
        "mxnet": ("dict", "NCHW", "NCHW"),
        "onnx": ("dict", "NCHW", "NCHW"),
        "pytorch": ("dict-or-list", "NCHW", "NCHW"),
        "xgboost": ("optional-dict", None, None),
        "tflite": ("dict", "NHWC", "NHWC"),
    }


@pytest.mark.parametrize("fw", [f for f in FRAMEWORKS.values() if f.shape_form != "none"])
def test_every_framework_example_parses(fw):
    spec = parse_shapes(fw, fw.shape_example)
    assert spec.given and spec.form == "dict"


@pytest.mark.parametrize("text", ["onnx", "ONNX", "Onnx", " pytorch ", "TFLite", "XGBOOST"])
def test_parse_framework_any_case(text):
    assert parse_framework(text).name == text.strip().lower()


@pytest.mark.parametrize("text", ["tf", "torch", "caffe", "darknet", "", "onnx2"])
def test_parse_framework_unknown_lists_valid_ones(text):
    err = usage_error(parse_framework, text)
    for name in FRAMEWORKS:
        assert name in err.message


# --- parse_shapes: good ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "framework, text, expected",
    [
        ("tensorflow", '{"input":[1,1024,1024,3]}', {"input": (1, 1024, 1024, 3)}),
        (
            "tensorflow",
            '{"data1": [1,28,28,1], "data2":[1,28,28,1]}',
            {"data1": (1, 28, 28, 1), "data2": (1, 28, 28, 1)},
        ),
        ("keras", '{"input_1":[1,3,224,224]}', {"input_1": (1, 3, 224, 224)}),
        ("mxnet", '{"data":[1,3,1024,1024]}', {"data": (1, 3, 1024, 1024)}),
        (
            "onnx",
            '{"var1": [1,1,28,28], "var2":[1,1,28,28]}',
            {"var1": (1, 1, 28, 28), "var2": (1, 1, 28, 28)},
        ),
        ("pytorch", '{"input0":[1,3,224,224]}', {"input0": (1, 3, 224, 224)}),
        ("pytorch", "[[1,3,224,224]]", {"input0": (1, 3, 224, 224)}),
        (
            "pytorch",
            "[[1,3,224,224], [1,3,224,224]]",
            {"input0": (1, 3, 224, 224), "input1": (1, 3, 224, 224)},
        ),
        ("tflite", '{"input":[1,224,224,3]}', {"input": (1, 224, 224, 3)}),
        ("onnx", '{"ids":[1,128]}', {"ids": (1, 128)}),
        ("onnx", '{"x":[5]}', {"x": (5,)}),
        ("onnx", '{"x":[1,1,1,1,1,1,1,2]}', {"x": (1, 1, 1, 1, 1, 1, 1, 2)}),
    ],
)
def test_parse_good(framework, text, expected):
    spec = parse_shapes(framework, text)
    assert spec.shapes == expected
    assert spec.framework == framework


def test_parse_keeps_the_users_order():
    spec = parse_shapes("onnx", '{"z":[1],"a":[2],"m":[3]}')
    assert spec.names == ["z", "a", "m"]


def test_pytorch_list_form_is_named_by_position():
    spec = parse_shapes("pytorch", "[[1,3,8,8],[1,10],[4]]")
    assert spec.form == "list"
    assert spec.names == ["input0", "input1", "input2"]


@pytest.mark.parametrize("text", [None, "", "   ", "{}", "[]", "null"])
def test_xgboost_needs_no_shapes(text):
    spec = parse_shapes("xgboost", text)
    assert not spec.given and spec.form == "absent"


@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_absent_shapes_parse_to_an_empty_spec(framework):
    assert parse_shapes(framework, None) == ShapeSpec(framework)


def test_largest_allowed_sizes():
    assert parse_shapes("onnx", f'{{"x":[{MAX_DIM}]}}').shapes == {"x": (MAX_DIM,)}
    # 4 * (2**31 - 1) elements is just under the 2**33 limit.
    assert parse_shapes("onnx", f'{{"x":[4,{MAX_DIM}]}}').shapes["x"] == (4, MAX_DIM)
    with pytest.raises(UsageError):
        parse_shapes("onnx", f'{{"x":[5,{MAX_DIM}]}}')


# --- parse_shapes: bad ----------------------------------------------------------------------


@pytest.mark.parametrize("framework", ["tensorflow", "keras", "mxnet", "onnx", "tflite"])
def test_list_form_is_only_for_pytorch(framework):
    err = usage_error(parse_shapes, framework, "[[1,3,224,224]]")
    fw = FRAMEWORKS[framework]
    assert f"--shape for {framework} must be a JSON object" in err.message
    assert fw.layout in err.message
    assert fw.shape_example in err.message
    assert "got a list" in err.message


def test_onnx_list_message_matches_the_documented_form():
    err = usage_error(parse_shapes, "onnx", "[[1,3,224,224]]")
    assert err.message.startswith(
        "--shape for onnx must be a JSON object mapping input names to NCHW shapes in input "
        'order, e.g. {"input":[1,3,224,224]}; got a list'
    )


def test_keras_message_explains_nchw_for_an_nhwc_model():
    err = usage_error(parse_shapes, "keras", '["x"]')
    assert "NCHW even though Keras models are NHWC" in err.message


@pytest.mark.parametrize(
    "framework, text, fact",
    [
        ("onnx", "{'input':[1,3,224,224]}", "double quotes"),
        ("tensorflow", '{"input":[1,224,224,3]', "invalid JSON"),
        ("mxnet", '{"data":[1,3,2,2],"data":[1,3,2,2]}', "'data' twice"),
        ("onnx", "{}", "empty object"),
        ("tflite", '"input"', "a string"),
        ("onnx", "42", "a number"),
        ("onnx", "true", "true"),
        ("onnx", '{"":[1,2]}', "empty input name"),
        ("onnx", '{"x":5}', "a shape is a list of dims"),
        ("onnx", '{"x":{"a":1}}', "a shape is a list of dims"),
        ("onnx", '{"x":[1,1,1,1,1,1,1,1,1]}', "ranks 0 (a scalar, []) to 8"),
        ("onnx", '{"x":[1,true,3]}', "true is not an integer"),
        ("keras", '{"x":[1,3.0,3]}', "3.0 is not an integer"),
        ("tensorflow", '{"x":[1,"3"]}', "not an integer"),
        ("onnx", '{"x":[1,null]}', "null is not an integer"),
        ("onnx", '{"x":[-1,3,224,224]}', "must be static"),
        ("onnx", '{"x":[0,3]}', "positive"),
        ("onnx", '{"x":[1,-5]}', "positive"),
        ("onnx", f'{{"x":[{MAX_DIM + 1}]}}', "larger than"),
        ("onnx", '{"x":[100000,100000,100000]}', str(MAX_ELEMENTS)),
        ("onnx", '{"x":[1,NaN]}', "not an integer"),
        ("onnx", '{"x":[[1,2]]}', "not an integer"),
        ("pytorch", "[1,3,224,224]", "wrap it: [[1,3,224,224]]"),
        ("pytorch", "[]", "empty list"),
        ("pytorch", "[[1,3],[0]]", "positive"),
        ("pytorch", '{"x":[1,3,224,224]}', "input0"),
        ("pytorch", '{"input1":[1,3],"input0":[1,3]}', "input0, input1 in that order"),
        ("pytorch", '{"input0":[1,3],"input2":[1,3]}', "named by position"),
        ("xgboost", "[[1,10]]", "only PyTorch takes a list"),
        ("xgboost", '{"data":[0,10]}', "positive"),
    ],
)
def test_parse_bad(framework, text, fact):
    err = usage_error(parse_shapes, framework, text)
    assert f"--shape for {framework}" in err.message
    assert fact in err.message
    assert "e.g. " + FRAMEWORKS[framework].shape_example in err.message


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=12).filter(str.strip),
        st.lists(st.integers(1, 16), min_size=1, max_size=8),  # 16**8 < MAX_ELEMENTS
        min_size=1,
        max_size=5,
    )
)
def test_any_valid_dict_round_trips(shapes):
    spec = parse_shapes("onnx", json.dumps(shapes))
    assert spec.shapes == {name: tuple(dims) for name, dims in shapes.items()}
    assert spec.names == list(shapes)


@given(st.lists(st.one_of(st.integers(-3, 0), st.booleans(), st.floats()), min_size=1))
def test_bad_dims_always_refused(dims):
    with pytest.raises(UsageError):
        parse_shapes("onnx", json.dumps({"x": [1, *dims]}))


# --- bind_shapes ------------------------------------------------------------------------------


def mi(name, shape):
    return ModelInput(name, None if shape is None else tuple(shape), F32)


def bind(framework, text, inputs):
    return bind_shapes(framework, parse_shapes(framework, text), inputs)


@pytest.mark.parametrize(
    "framework, text, inputs, expected",
    [
        ("onnx", '{"input":[1,3,224,224]}', [mi("input", [None, 3, 224, 224])], (1, 3, 224, 224)),
        ("onnx", '{"input":[8,3,224,224]}', [mi("input", [None, 3, None, None])], (8, 3, 224, 224)),
        ("mxnet", '{"data":[1,3,32,32]}', [mi("data", None)], (1, 3, 32, 32)),
        ("tensorflow", '{"x":[1,224,224,3]}', [mi("x", [None, 224, 224, 3])], (1, 224, 224, 3)),
        ("tflite", '{"input":[1,224,224,3]}', [mi("input", [1, 224, 224, 3])], (1, 224, 224, 3)),
        ("pytorch", "[[1,3,224,224]]", [mi("x", None)], (1, 3, 224, 224)),
        ("pytorch", '{"input0":[2,3,8,8]}', [mi("input0", [None, 3, 8, 8])], (2, 3, 8, 8)),
        # Neo's Keras shapes are NCHW; the model is NHWC and is compiled in NHWC.
        ("keras", '{"in_1":[1,3,224,224]}', [mi("in_1", [None, 224, 224, 3])], (1, 224, 224, 3)),
        ("keras", '{"dense_in":[4,784]}', [mi("dense_in", [None, 784])], (4, 784)),
    ],
)  # fmt: skip
def test_bind_good(framework, text, inputs, expected):
    bound = bind(framework, text, inputs)
    assert list(bound.values()) == [expected]
    assert list(bound) == [inputs[0].name]


def test_keras_binding_notes_the_layout_change():
    bound = bind("keras", '{"input_1":[1,3,224,224]}', [mi("input_1", [None, 224, 224, 3])])
    assert any("NCHW" in n and "NHWC" in n and "[1,224,224,3]" in n for n in bound.notes)


def test_result_follows_model_order_and_notes_a_different_order():
    inputs = [mi("a", [None, 3]), mi("b", [None, 4])]
    bound = bind("onnx", '{"b":[2,4],"a":[2,3]}', inputs)
    assert list(bound.items()) == [("a", (2, 3)), ("b", (2, 4))]
    assert any("order" in n for n in bound.notes)


def test_static_inputs_may_be_left_out():
    inputs = [mi("image", [None, 3, 32, 32]), mi("scale", [1, 1])]
    bound = bind("onnx", '{"image":[1,3,32,32]}', inputs)
    assert bound == {"image": (1, 3, 32, 32), "scale": (1, 1)}


@pytest.mark.parametrize(
    "framework, inputs, expected",
    [
        ("onnx", [mi("x", [1, 3, 8, 8]), mi("y", [1])], {"x": (1, 3, 8, 8), "y": (1,)}),
        ("tflite", [mi("input", [1, 224, 224, 3])], {"input": (1, 224, 224, 3)}),
        ("keras", [mi("input_1", [1, 28, 28, 1])], {"input_1": (1, 28, 28, 1)}),
        ("tensorflow", [mi("x", [1, 10])], {"x": (1, 10)}),
        ("mxnet", [mi("data", [1, 3, 4, 4])], {"data": (1, 3, 4, 4)}),
        ("pytorch", [mi("input0", [1, 3, 4, 4])], {"input0": (1, 3, 4, 4)}),
    ],
)
def test_no_shapes_needed_when_the_model_is_static(framework, inputs, expected):
    assert bind_shapes(framework, None, inputs) == expected
    assert bind_shapes(framework, parse_shapes(framework, None), inputs) == expected


@pytest.mark.parametrize(
    "framework, inputs, example",
    [
        ("onnx", [mi("input", [None, 3, 224, 224])], '{"input":[1,3,224,224]}'),
        ("mxnet", [mi("data", [None, 3, None, None])], '{"data":[1,3,224,224]}'),
        ("tensorflow", [mi("x", [None, 224, 224, 3])], '{"x":[1,224,224,3]}'),
        ("tflite", [mi("input", [None, None, None, 3])], '{"input":[1,224,224,3]}'),
        # Keras: the example is written NCHW although the model is NHWC.
        ("keras", [mi("input_1", [None, 224, 224, 3])], '{"input_1":[1,3,224,224]}'),
        ("pytorch", [mi("x", None)], '{"input0":[1,3,224,224]}'),
        ("onnx", [mi("ids", [None, 128]), mi("mask", [1, 128])], '{"ids":[1,128],"mask":[1,128]}'),
    ],
)
def test_dynamic_model_without_shapes_names_the_input_and_shows_an_example(
    framework, inputs, example
):
    err = usage_error(bind_shapes, framework, None, inputs)
    assert f"--shape for {framework} is needed" in err.message
    assert repr(inputs[0].name) in err.message
    assert example in err.message


def test_unknown_name_lists_the_models_inputs():
    inputs = [mi("input.1", [None, 3, 224, 224]), mi("mask", [1, 10])]
    err = usage_error(bind, "onnx", '{"input":[1,3,224,224]}', inputs)
    assert "'input'" in err.message
    assert "input.1 [?,3,224,224]" in err.message and "mask [1,10]" in err.message
    assert "did you mean 'input.1'?" in err.message


@pytest.mark.parametrize("framework", ["tensorflow", "keras", "mxnet", "onnx", "tflite"])
def test_unknown_name_for_every_dict_framework(framework):
    err = usage_error(bind, framework, '{"nope":[1,2]}', [mi("real", [None, 2])])
    assert "nope" in err.message and "real" in err.message


def test_missing_dynamic_input_is_reported():
    inputs = [mi("a", [None, 3]), mi("b", [None, None])]
    err = usage_error(bind, "onnx", '{"a":[1,3]}', inputs)
    assert "no shape given for model input 'b'" in err.message


def test_wrong_rank_suggests_the_batch_dimension():
    err = usage_error(bind, "onnx", '{"input":[3,224,224]}', [mi("input", [None, 3, 224, 224])])
    assert "rank 3" in err.message and "rank 4" in err.message
    assert "add the batch dimension: [1,3,224,224]" in err.message


def test_contradicting_a_static_dim_names_the_dim():
    err = usage_error(bind, "onnx", '{"input":[1,3,300,224]}', [mi("input", [None, 3, 224, 224])])
    assert "dim 2 is 300 but the model fixes it at 224" in err.message
    assert "dim 3" not in err.message


@pytest.mark.parametrize(
    "framework, given, model, wrong, right",
    [
        ("onnx", "[1,224,224,3]", [None, 3, 224, 224], "NHWC", "NCHW: [1,3,224,224]"),
        ("mxnet", "[1,224,224,3]", [1, 3, 224, 224], "NHWC", "NCHW: [1,3,224,224]"),
        ("tensorflow", "[1,3,224,224]", [None, 224, 224, 3], "NCHW", "NHWC: [1,224,224,3]"),
        ("tflite", "[1,3,224,224]", [1, 224, 224, 3], "NCHW", "NHWC: [1,224,224,3]"),
        # Keras shapes must be NCHW although the model is NHWC; giving NHWC is the mistake.
        ("keras", "[1,224,224,3]", [None, 224, 224, 3], "NHWC", "NCHW: [1,3,224,224]"),
    ],
)
def test_layout_mix_up_is_recognised(framework, given, model, wrong, right):
    err = usage_error(bind, framework, f'{{"in":{given}}}', [mi("in", model)])
    assert f"looks like {wrong}; {framework} expects {right}" in err.message


def test_pytorch_layout_mix_up_is_recognised():
    err = usage_error(bind, "pytorch", "[[1,224,224,3]]", [mi("x", [None, 3, 224, 224])])
    assert "looks like NHWC; pytorch expects NCHW: [1,3,224,224]" in err.message


def test_pytorch_binds_by_position_and_counts_inputs():
    inputs = [mi("image", [None, 3, 8, 8]), mi("lengths", [None])]
    assert bind("pytorch", "[[2,3,8,8],[2]]", inputs) == {"image": (2, 3, 8, 8), "lengths": (2,)}
    err = usage_error(bind, "pytorch", "[[2,3,8,8]]", inputs)
    assert "1 shape(s)" in err.message and "2 input(s)" in err.message


def test_all_problems_are_reported_at_once():
    inputs = [mi("a", [None, 3]), mi("b", [None, 4, 4])]
    err = usage_error(bind, "onnx", '{"a":[1,5],"b":[1,4]}', inputs)
    assert "'a'" in err.message and "'b'" in err.message


def test_unknown_rank_model_input_takes_the_given_shape():
    assert bind("tflite", '{"x":[1,2,3]}', [mi("x", None)]) == {"x": (1, 2, 3)}


def test_xgboost_takes_shapes_from_the_model():
    bound = bind_shapes("xgboost", None, [mi("data", [None, 12])])
    assert bound == {"data": (1, 12)}
    assert any("batch size 1" in n for n in bound.notes)
    assert bind_shapes("xgboost", parse_shapes("xgboost", "{}"), [mi("d", [4, 3])]) == {"d": (4, 3)}


def test_xgboost_shape_sets_the_batch_and_is_checked_against_the_features():
    model = [mi("data", [None, 12])]
    assert bind("xgboost", '{"data":[500,12]}', model) == {"data": (500, 12)}
    err = usage_error(bind, "xgboost", '{"data":[500,10]}', model)
    assert "dim 1 is 10 but the model fixes it at 12" in err.message
    err = usage_error(bind, "xgboost", '{"x":[500,12]}', model)
    assert "'x'" in err.message and "data [?,12]" in err.message


def test_xgboost_without_a_feature_count_is_a_load_error():
    with pytest.raises(ModelLoadError) as info:
        bind_shapes("xgboost", None, [mi("data", [None, None])])
    assert info.value.exit_code == 3


# --- the error model ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls, code",
    [(UsageError, 2), (ModelLoadError, 3), (CompileError, 5), (NeoRuntimeError, 6)],
)
def test_exit_codes(cls, code):
    err = cls("something failed")
    assert isinstance(err, NeoError) and err.exit_code == code and exit_code_for(err) == code


def test_internal_errors_exit_1():
    assert exit_code_for(ValueError("x")) == 1
    assert format_error(KeyError("k")).startswith("error: internal error: KeyError")


def test_format_error_one_line_and_optional_hint():
    assert format_error(UsageError("bad flag")) == "error: bad flag"
    assert format_error(ModelLoadError("gone", hint="check the path")) == (
        "error: gone\n  hint: check the path"
    )
    assert format_error(UsageError("two\nlines")) == "error: two lines"


def test_unsupported_operators_are_all_listed_at_once():
    err = UnsupportedModelError(
        [
            ("NonMaxSuppression", 2, ["nms_1", "nms_2"]),
            UnsupportedOp("Loop", 5, ["loop_0", "loop_1", "loop_2"], "model.py:12"),
            UnsupportedOp("Resize", 1, ["up"], reason="mode='cubic' not implemented"),
        ]
    )
    assert err.exit_code == 4
    assert err.message.startswith("The following operators are not implemented: ")
    assert "NonMaxSuppression (2 nodes: nms_1, nms_2)" in err.message
    assert "Loop (5 nodes: loop_0, loop_1, loop_2, ... at model.py:12)" in err.message
    assert "Resize (1 node: up; mode='cubic' not implemented)" in err.message
    assert [op.op_type for op in err.ops] == ["NonMaxSuppression", "Loop", "Resize"]
    assert "\n" not in format_error(err)


# --- exported models: dynamic dims written as -1, shared dim_params, scalar inputs -------------


def test_scalar_input_is_an_empty_shape():
    spec = parse_shapes("onnx", '{"x":[1,3,8,8],"rate":[]}')
    assert spec.shapes == {"x": (1, 3, 8, 8), "rate": ()}
    bound = bind_shapes("onnx", spec, [mi("x", [None, 3, 8, 8]), mi("rate", [])])
    assert bound == {"x": (1, 3, 8, 8), "rate": ()}
    # a static scalar input may be left out like any static input
    assert bind("onnx", '{"x":[2,3,8,8]}', [mi("x", [None, 3, 8, 8]), mi("rate", [])]) == {
        "x": (2, 3, 8, 8), "rate": ()}
    err = usage_error(bind, "onnx", '{"x":[1,3,8,8],"rate":[1]}',
                      [mi("x", [None, 3, 8, 8]), mi("rate", [])])
    assert "'rate' is [1] (rank 1) but the model's is [] (rank 0)" in err.message


@pytest.mark.parametrize("dynamic", [-1, 0, -7])
def test_non_positive_model_dims_are_dynamic(dynamic):
    # paddle2onnx writes a dynamic dim as dim_value -1
    inputs = [mi("x", [dynamic, 3, dynamic, dynamic])]
    assert bind("onnx", '{"x":[1,3,48,192]}', inputs) == {"x": (1, 3, 48, 192)}
    err = usage_error(bind, "onnx", '{"x":[1,4,48,192]}', inputs)
    assert "dim 1 is 4 but the model fixes it at 3" in err.message
    assert "model shape [?,3,?,?]" in err.message


@pytest.mark.parametrize("dynamic", [-1, 0, None])
def test_suggested_shapes_are_never_non_positive(dynamic):
    inputs = [mi("x", [dynamic, 3, dynamic, dynamic]), mi("y", [dynamic, 10])]
    err = usage_error(bind, "onnx", None, inputs)
    example = err.message.split("e.g. --shape ")[1]
    dims = [int(d) for d in re.findall(r"-?\d+", example)]
    assert dims and min(dims) > 0, err.message
    err = usage_error(bind, "onnx", '{"x":[1,3,9,9]}', [*inputs, mi("z", [dynamic])])
    dims = [int(d) for d in re.findall(r"-?\d+", err.message.split("e.g. ")[-1])]
    assert dims and min(dims) > 0, err.message


def named(name, shape, dim_names):
    return ModelInput(name, tuple(shape), F32, tuple(dim_names))


SHARED = [named("tokens", [None, None], ["batch", "seq"]),
          named("mask", [None, None], ["batch", "seq"]),
          named("scale", [None, 1], ["batch", None])]


def test_inputs_sharing_a_dim_param_must_agree():
    err = usage_error(bind, "onnx", '{"tokens":[2,16],"mask":[2,12],"scale":[2,1]}', SHARED)
    assert "share the dynamic dim 'seq'" in err.message
    assert "'tokens' dim 1 is 16, 'mask' dim 1 is 12" in err.message
    assert "'batch'" not in err.message  # the dims that agree are not blamed
    err = usage_error(bind, "onnx", '{"tokens":[2,16],"mask":[3,16],"scale":[4,1]}', SHARED)
    assert "'tokens' dim 0 is 2, 'mask' dim 0 is 3, 'scale' dim 0 is 4" in err.message
    assert bind("onnx", '{"tokens":[2,16],"mask":[2,16],"scale":[2,1]}', SHARED) == {
        "tokens": (2, 16), "mask": (2, 16), "scale": (2, 1)}


def test_input_left_out_takes_its_named_dims_from_the_others():
    bound = bind("onnx", '{"tokens":[4,7]}', SHARED)
    assert bound == {"tokens": (4, 7), "mask": (4, 7), "scale": (4, 1)}
    assert any("'mask' compiled with [4,7]" in n for n in bound.notes)
    # a dynamic dim without a name (or a name no given input sizes) still needs a shape
    err = usage_error(bind, "onnx", '{"tokens":[4,7]}',
                      [*SHARED, named("extra", [None, None], ["batch", None])])
    assert "no shape given for model input 'extra'" in err.message
