"""Compiling models whose shape-like operands or If conditions are graph inputs: `neo compile
--const-input NAME=FILE.npy` fixes such an input to an array's values, the operands fold, an If
whose condition folds is inlined (its taken branch converted in place), and the artifact no longer
takes that input. A voice-activity model of the kind this is for keys many Ifs on one scalar
sample-rate input; the test model does the same.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx_helpers import make_model, run_ort
from test_cli import assert_error, assert_ok, neo

from neo.runtime import Model

RATES = (16000, 8000)


def _branch(name: str, factor: float, extra: str) -> object:
    """y = x * factor (then a reshape round trip, or a sigmoid: the branches differ in structure)."""
    nodes = [helper.make_node("Mul", ["x", f"{name}_k"], [f"{name}_y0"], name=f"{name}_mul")]
    inits = [helper.make_tensor(f"{name}_k", TensorProto.FLOAT, [], [factor])]
    if extra == "reshape":
        nodes += [helper.make_node("Reshape", [f"{name}_y0", f"{name}_s"], [f"{name}_y1"],
                                   name=f"{name}_r1"),
                  helper.make_node("Reshape", [f"{name}_y1", f"{name}_back"], [f"{name}_y"],
                                   name=f"{name}_r2")]
        inits += [helper.make_tensor(f"{name}_s", TensorProto.INT64, [2], [4, 8]),
                  helper.make_tensor(f"{name}_back", TensorProto.INT64, [2], [1, 32])]
    else:
        nodes.append(helper.make_node("Sigmoid", [f"{name}_y0"], [f"{name}_y"],
                                      name=f"{name}_sigmoid"))
    out = helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT, [1, 32])
    return helper.make_graph(nodes, name, [], [out], inits)


def vad_like_model(ifs: int = 3):
    """x [1, 32] float, sr int64 scalar; `ifs` Ifs on sr == 16000, chained; then a Reshape whose
    shape is computed from sr (sr // 1000 = 16 or 8 rows)."""
    nodes = [helper.make_node("Equal", ["sr", "k16000"], ["is16k"], name="is16k")]
    cur = "x"
    for i in range(ifs):
        then = _branch(f"then{i}", 2.0 + i, "reshape")
        other = _branch(f"else{i}", -1.0 - i, "relu")
        # each If reads the running value through its branches' outer-scope "x"
        then = _rename_input(then, cur)
        other = _rename_input(other, cur)
        nodes.append(helper.make_node("If", ["is16k"], [f"h{i}"], name=f"if{i}",
                                      then_branch=then, else_branch=other))
        cur = f"h{i}"
    nodes += [helper.make_node("Div", ["sr", "k1000"], ["rows"], name="rows"),
              helper.make_node("Div", ["k32000", "sr"], ["cols"], name="cols"),
              helper.make_node("Concat", ["rows", "cols"], ["shape"], name="shape", axis=0),
              helper.make_node("Reshape", [cur, "shape"], ["y"], name="reshape")]
    inits = {"k16000": np.array(16000, np.int64), "k1000": np.array([1000], np.int64),
             "k32000": np.array([32000], np.int64)}
    # sr/1000 * 32000/sr = 32 elements for both rates: [16, 2] or [8, 4]
    return make_model(nodes, [("x", np.float32, [1, 32]), ("sr", np.int64, [])],
                      [("y", np.float32, ["rows", "cols"])], inits, opset=17,
                      name="vad_like")


def _rename_input(graph, outer: str):
    for n in graph.node:
        n.input[:] = [outer if i == "x" else i for i in n.input]
    return graph


@pytest.fixture(scope="module")
def vad(tmp_path_factory):
    d = tmp_path_factory.mktemp("vad")
    import onnx

    model = vad_like_model()
    onnx.checker.check_model(model)
    onnx.save(model, d / "vad.onnx")
    for rate in RATES:
        np.save(d / f"sr{rate}.npy", np.array(rate, np.int64))
    return d, model


def test_without_const_input_names_the_input_to_fix(vad):
    d, _ = vad
    r = neo("compile", d / "vad.onnx", "--framework", "onnx", "--target", "x86_64",
            "--shape", '{"x": [1, 32], "sr": []}', "--output", d / "out-none")
    msg = assert_error(r, 4, "if", "run time", "sr", "--const-input")
    assert "OperatorAttributeNotImplemented" in msg
    assert not (d / "out-none").exists()


@pytest.mark.parametrize("rate", RATES)
def test_const_input_inlines_the_taken_branches(vad, rate):
    d, model = vad
    out = d / f"out{rate}"
    r = neo("compile", d / "vad.onnx", "--framework", "onnx", "--target", "x86_64",
            "--shape", '{"x": [1, 32]}', "--const-input", f"sr={d / f'sr{rate}.npy'}",
            "--output", out, "--json")
    assert_ok(r)
    meta = json.loads((out / "compiled.meta").read_text())
    assert [i["name"] for i in meta["inputs"]] == ["x"]  # sr is compiled in
    assert meta["options"]["const_inputs"]["sr"]["shape"] == []
    x = np.random.default_rng(rate).standard_normal((1, 32)).astype(np.float32)
    (ref,) = run_ort(model, {"x": x, "sr": np.array(rate, np.int64)})
    with Model(out, check=True) as m:
        (y,) = m.run({"x": x})
    assert y.shape == ref.shape == ((16, 2) if rate == 16000 else (8, 4))
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)
    assert np.ptp(ref) > 0.05  # informative: outputs vary with x


def test_if_on_run_time_data_is_refused(tmp_path):
    then = _branch("then0", 2.0, "relu")
    other = _branch("else0", 3.0, "relu")
    nodes = [helper.make_node("ReduceSum", ["x"], ["s"], name="sum", keepdims=0),
             helper.make_node("Greater", ["s", "zero"], ["pos"], name="pos"),
             helper.make_node("If", ["pos"], ["y"], name="branchy", then_branch=then,
                              else_branch=other)]
    model = make_model(nodes, [("x", np.float32, [1, 32])], [("y", np.float32, [1, 32])],
                       {"zero": np.array(0, np.float32)})
    import onnx

    onnx.save(model, tmp_path / "m.onnx")
    r = neo("compile", tmp_path / "m.onnx", "--framework", "onnx", "--target", "x86_64",
            "--output", tmp_path / "out")
    assert_error(r, 4, "If (1 node: branchy", "run time")


def test_const_input_errors(vad, tmp_path):
    d, _ = vad
    base = ["compile", d / "vad.onnx", "--framework", "onnx", "--target", "x86_64",
            "--shape", '{"x": [1, 32]}', "--output", tmp_path / "out"]
    assert_error(neo(*base, "--const-input", f"rate={d / 'sr16000.npy'}"), 2,
                 "no input of that name", "x, sr")
    assert_error(neo(*base, "--const-input", f"sr={tmp_path / 'missing.npy'}"), 2,
                 "cannot read")
    assert_error(neo(*base, "--const-input", "sr"), 2, "NAME=FILE.npy")
    np.save(tmp_path / "vec.npy", np.array([16000], np.int64))
    assert_error(neo(*base, "--const-input", f"sr={tmp_path / 'vec.npy'}"), 2,
                 "shape [1]", "declares []")
    np.save(tmp_path / "f.npy", np.array(1.5, np.float64))
    assert_error(neo(*base, "--const-input", f"sr={tmp_path / 'f.npy'}"), 2, "float64",
                 "int64")
    assert not (tmp_path / "out").exists()
