"""The MXNet frontend: Gluon exports compiled without MXNet, against MXNet 1.9.1's own outputs.

The fixtures in tests/data/mxnet/ were written by scripts/mxnet_fixtures.py in a venv with
mxnet==1.9.1 and numpy==1.23.5 (MXNet cannot be installed next to current numpy, and is not
needed here): eight Gluon model-zoo architectures at reduced width with calibrated BatchNorm and
real photos as inputs, an LSTM model, an LSTM fed its states, a transformer block, and one model
of 165 small op cases (ops_native: the two whose MXNet reference needs its own CPU kernels, see
the script). Each is compiled here for x86_64 (three also for arm64, run under qemu) and compared
with MXNet's outputs within 1e-4 of max|reference|, classifiers also on their top-1; the op
cases are also checked one by one through the IR's numpy references.
"""
from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import require_qemu_for

from neo.errors import ModelLoadError, UnsupportedModelError, UsageError
from neo.frontends import FRONTENDS
from neo.frontends.mxnet import import_mxnet, inspect_mxnet
from neo.frontends.mxnet.params import read_params, split_params, write_params
from neo.frontends.mxnet.symbol import parse_value
from neo.frontends.mxnet.tensor import reshape_shape

DATA = Path(__file__).parent / "data" / "mxnet"
MANIFEST = json.loads((DATA / "manifest.json").read_text())
MODELS = [name for name, e in MANIFEST.items() if e["kind"] != "op_cases"]
ZOO = [name for name, e in MANIFEST.items() if "architecture" in e]
OP_MODELS = [name for name, e in MANIFEST.items() if e["kind"] == "op_cases"]
ARM64_MODELS = ["resnet18_v1", "squeezenet1.1", "transformer"]
TOLERANCE = 1e-4  # of max|reference|


def symbol_of(name: str) -> Path:
    return DATA / name / f"{name}-symbol.json"


def io_of(name: str) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """(inputs by name in the model's order, MXNet's outputs)."""
    data = np.load(DATA / name / f"{name}-io.npz")
    inputs = {k: data[f"input.{k}"] for k in MANIFEST[name]["inputs"]}
    outputs = [data[f"output.{i}"] for i in range(sum(k.startswith("output.") for k in data))]
    return inputs, outputs


def shapes_of(name: str) -> dict[str, list[int]]:
    return MANIFEST[name]["inputs"]


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    assert got.shape == want.shape, f"shape {got.shape}, MXNet's {want.shape}"
    scale = float(np.abs(want).max()) or 1.0
    return float(np.abs(got.astype(np.float64) - want).max()) / scale


def check_outputs(name: str, outs: list[np.ndarray], want: list[np.ndarray]) -> float:
    """Every output within TOLERANCE (each op case named when it fails); classifiers also on
    their top-1. Returns the largest error."""
    entry = MANIFEST[name]
    assert len(outs) == len(want)
    labels = entry.get("cases") or [f"output {i}" for i in range(len(want))]
    errors = {label: relative_error(np.asarray(o), w) for label, o, w in zip(labels, outs, want)}
    bad = {k: v for k, v in errors.items() if not v <= TOLERANCE}
    assert not bad, f"{name}: outputs beyond {TOLERANCE} x max|ref|: {bad}"
    if entry["kind"] == "classifier":
        ref = want[0].reshape(want[0].shape[0], -1)
        top = np.sort(ref, axis=1)
        # the fixture's top-1 is clear by more than the tolerance (else it would be a coin toss)
        assert ((top[:, -1] - top[:, -2]) > 10 * TOLERANCE * np.abs(ref).max()).all()
        got = np.asarray(outs[0]).reshape(ref.shape)
        assert (got.argmax(1) == ref.argmax(1)).all(), f"{name}: top-1 differs"
    return max(errors.values())


# -- the fixtures themselves ---------------------------------------------------------------------
def test_fixtures_are_informative_and_small():
    total = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file())
    assert total < 30e6, f"the MXNet fixtures take {total / 1e6:.1f} MB"
    assert len(ZOO) >= 8
    for name in MODELS:
        _, outs = io_of(name)
        ref = outs[0].reshape(outs[0].shape[0], -1)
        assert ref.std() > 1e-2, f"{name}: near-constant reference outputs"
        if name == "resnet50_v2":  # fix_gamma BatchNorms hold gammas MXNet must ignore
            params = split_params(read_params(DATA / name / f"{name}-0000.params"))
            assert any(k.endswith("gamma") and np.all(v == np.float32(1.7))
                       for k, v in params.items())


# -- readers -------------------------------------------------------------------------------------
def test_params_reader_reads_gluon_export_and_round_trips(tmp_path):
    stored = read_params(DATA / "vgg11_bn" / "vgg11_bn-0000.params")
    assert stored and all(k.startswith(("arg:", "aux:")) for k in stored)
    assert any(k.startswith("aux:") and k.endswith("running_var") for k in stored)
    arrays = split_params(stored)
    first = next(iter(arrays.values()))
    assert first.dtype == np.float32 and first.ndim == 4  # the first conv's OIHW weight
    mixed = {"w": np.arange(6, dtype=np.float16).reshape(2, 3), "i": np.array([1, -2], np.int64),
             "b": np.array([True, False]), **{k: v for k, v in list(arrays.items())[:3]}}
    write_params(tmp_path / "x-0000.params", mixed)
    back = read_params(tmp_path / "x-0000.params")
    assert list(back) == list(mixed)
    for k, v in mixed.items():
        assert back[k].dtype == v.dtype and np.array_equal(back[k], v)


@pytest.mark.parametrize(("damage", "needle"), [
    (lambda b: b[:-3], "truncated"),
    (lambda b: b"\x13" + b[1:], "list magic"),
    (lambda b: b + b"x", "after the last name"),
    (lambda b: b[:24] + (0x1234).to_bytes(4, "little") + b[28:], "no array magic"),
    (lambda b: b[:60] + (99).to_bytes(4, "little") + b[64:], "dtype code 99"),  # 2-D first
    (lambda b: b"", "only 0 bytes"),
])
def test_params_reader_refuses_damaged_files(tmp_path, damage, needle):
    good = (DATA / "lstm_states" / "lstm_states-0000.params").read_bytes()
    path = tmp_path / "bad-0000.params"
    path.write_bytes(damage(good))
    with pytest.raises(ModelLoadError, match=needle):
        read_params(path)


def test_params_reader_refuses_sparse_arrays(tmp_path):
    good = bytearray((DATA / "lstm_states" / "lstm_states-0000.params").read_bytes())
    good[28:32] = (1).to_bytes(4, "little", signed=True)  # the first array's storage type
    path = tmp_path / "sparse-0000.params"
    path.write_bytes(bytes(good))
    with pytest.raises(UnsupportedModelError, match="row_sparse"):
        read_params(path)


@pytest.mark.parametrize(("text", "value"), [
    ("(3, 3)", (3, 3)), ("()", ()), ("(None, 1, -1)", (None, 1, -1)), ("True", True),
    ("False", False), ("None", None), ("-1", -1), ("1e-05", 1e-05), ("relu", "relu"),
    ("[2, (1, 2)]", (2, (1, 2))), ("float32", "float32"),
])
def test_attribute_values(text, value):
    assert parse_value(text) == value


@pytest.mark.parametrize(("src", "spec", "reverse", "out"), [
    # the examples of MXNet's Reshape documentation
    ((2, 3, 4), (4, 0, 2), False, (4, 3, 2)),
    ((2, 3, 4), (2, 0, 0), False, (2, 3, 4)),
    ((2, 3, 4), (6, 1, -1), False, (6, 1, 4)),
    ((2, 3, 4), (3, -1, 8), False, (3, 1, 8)),
    ((2, 3, 4), (-1,), False, (24,)),
    ((2, 3, 4), (-2,), False, (2, 3, 4)),
    ((2, 3, 4), (2, -2), False, (2, 3, 4)),
    ((2, 3, 4), (-2, 1, 1), False, (2, 3, 4, 1, 1)),
    ((2, 3, 4), (-3, 4), False, (6, 4)),
    ((2, 3, 4, 5), (-3, -3), False, (6, 20)),
    ((2, 3, 4), (0, -3), False, (2, 12)),
    ((2, 3, 4), (-3, -2), False, (6, 4)),
    ((2, 3, 4), (-4, 1, 2, -2), False, (1, 2, 3, 4)),
    ((2, 3, 4), (2, -4, -1, 3, -2), False, (2, 1, 3, 4)),
    ((10, 5, 4), (-1, 0), False, (40, 5)),
    ((10, 5, 4), (-1, 0), True, (50, 4)),
])
def test_reshape_special_codes(src, spec, reverse, out):
    assert reshape_shape(src, spec, reverse) == out


# -- every op case, through the IR's numpy references ---------------------------------------------
@pytest.fixture(scope="module")
def interpreted() -> dict[str, tuple[list[np.ndarray], list[np.ndarray]]]:
    from neo.ir.interpreter import interpret

    out = {}
    for name in OP_MODELS:
        feeds, want = io_of(name)
        graph = import_mxnet(symbol_of(name), {k: tuple(v) for k, v in shapes_of(name).items()})
        out[name] = (interpret(graph, feeds), want)
    return out


@pytest.mark.parametrize("case", [(m, c) for m in OP_MODELS for c in MANIFEST[m]["cases"]],
                         ids=lambda mc: mc[1])
def test_op_case_semantics(interpreted, case):
    model, name = case
    got, want = interpreted[model]
    i = MANIFEST[model]["cases"].index(name)
    assert relative_error(np.asarray(got[i]), want[i]) <= TOLERANCE


# -- compiled: x86_64 and arm64 ------------------------------------------------------------------
def compile_and_run(compile_cached, name: str, target: str) -> list[np.ndarray]:
    from neo.run import run_artifact

    art = compile_cached(DATA / name, target, shape=shapes_of(name), framework="mxnet")
    feeds, _ = io_of(name)
    _, outs, _ = run_artifact(art, feeds)
    meta = json.loads((art / "compiled.meta").read_text())
    assert [i["name"] for i in meta["inputs"]] == list(shapes_of(name))  # in the model's order
    assert meta["framework"] == "mxnet"
    return outs


@pytest.mark.parametrize("name", MODELS + OP_MODELS)
def test_compiled_x86_64(compile_cached, name):
    outs = compile_and_run(compile_cached, name, "x86_64")
    check_outputs(name, outs, io_of(name)[1])


@pytest.mark.parametrize("name", ARM64_MODELS)
def test_compiled_arm64_under_qemu(compile_cached, name):
    require_qemu_for("aarch64")
    outs = compile_and_run(compile_cached, name, "arm64")
    check_outputs(name, outs, io_of(name)[1])


# -- inputs, outputs, model files ----------------------------------------------------------------
def test_inputs_in_the_symbols_order_and_labels_are_not_inputs():
    fe = FRONTENDS["mxnet"]
    assert [n for n, _, _ in fe.inputs(symbol_of("lstm_states"))] == ["data0", "data1", "data2"]
    names = [n for n, _, _ in fe.inputs(symbol_of("ops"))]
    assert "softmax_label" not in names and "multi_label" not in names
    assert names == list(shapes_of("ops"))
    assert all(dtype == "float32" for _, _, dtype in fe.inputs(symbol_of("resnet18_v1")))


def test_multiple_outputs_are_named_as_mxnet_names_them():
    g = import_mxnet(symbol_of("lstm_states"), {k: tuple(v) for k, v in
                                                shapes_of("lstm_states").items()})
    names = g.out_names()
    assert len(names) == 3 and len(set(names)) == 3
    assert all(n.endswith(("_output0", "_output1", "_output2")) for n in names)


def test_wrong_input_name_lists_the_inputs():
    with pytest.raises(UsageError, match="data0, data1"):
        import_mxnet(symbol_of("transformer"), {"tokens": (2, 10)})


def test_weights_beside_the_symbol_are_required(tmp_path):
    shutil.copy(symbol_of("vgg11_bn"), tmp_path)
    with pytest.raises(ModelLoadError, match="vgg11_bn-0000.params"):
        FRONTENDS["mxnet"].inputs(tmp_path / "vgg11_bn-symbol.json")


def test_a_parameter_missing_from_the_weights_is_a_load_error(tmp_path):
    params = split_params(read_params(DATA / "vgg11_bn" / "vgg11_bn-0000.params"))
    dropped = next(k for k in params if k.endswith("conv0_weight"))
    write_params(tmp_path / "vgg11_bn-0000.params",
                 {f"arg:{k}": v for k, v in params.items() if k != dropped})
    shutil.copy(symbol_of("vgg11_bn"), tmp_path)
    with pytest.raises(ModelLoadError, match=dropped):
        FRONTENDS["mxnet"].inputs(tmp_path / "vgg11_bn-symbol.json")


def test_a_chosen_epoch_among_several_is_compiled(tmp_path, compile_cached):
    """`neo compile net-0003.params` with other epochs beside it uses that epoch's weights."""
    from neo.compiler import CompileOptions, compile_model
    from neo.run import run_artifact

    name = "lstm_states"
    shutil.copy(symbol_of(name), tmp_path)
    good = DATA / name / f"{name}-0000.params"
    shutil.copy(good, tmp_path / f"{name}-0003.params")
    zeros = {k: np.zeros_like(v) for k, v in read_params(good).items()}
    write_params(tmp_path / f"{name}-0001.params", zeros)
    out = tmp_path / "out"
    compile_model(CompileOptions(framework="mxnet", shape=json.dumps(shapes_of(name)),
                                 target="x86_64", output=out,
                                 model=str(tmp_path / f"{name}-0003.params"), workdir=tmp_path))
    feeds, want = io_of(name)
    check_outputs(name, run_artifact(out, feeds)[1], want)


def test_neo_tar_gz_packaging_compiles(tmp_path):
    """Neo's MXNet input: a .tar.gz holding NAME-symbol.json and NAME-0000.params."""
    from neo.compiler import CompileOptions, compile_model
    from neo.run import run_artifact

    name = "transformer"
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for suffix in ("-symbol.json", "-0000.params"):
            tar.add(DATA / name / f"{name}{suffix}", arcname=f"{name}{suffix}")
    out = tmp_path / "out"
    info = compile_model(CompileOptions(framework="MXNET", shape=json.dumps(shapes_of(name)),
                                        target="x86_64", output=out, model=str(archive),
                                        workdir=tmp_path))
    assert [i["name"] for i in info["inputs"]] == ["data0", "data1"]
    feeds, want = io_of(name)
    check_outputs(name, run_artifact(out, feeds)[1], want)


# -- what is not supported: every problem at once -------------------------------------------------
def _edited(tmp_path: Path, name: str, edit) -> Path:
    """A copy of fixture `name` whose symbol nodes went through `edit(node)`."""
    doc = json.loads(symbol_of(name).read_text())
    for node in doc["nodes"]:
        edit(node)
    (tmp_path / f"{name}-symbol.json").write_text(json.dumps(doc))
    shutil.copy(DATA / name / f"{name}-0000.params", tmp_path)
    return tmp_path / f"{name}-symbol.json"


def test_unsupported_ops_are_listed_at_once(tmp_path):
    renames = {"Concat": "_contrib_Correlation", "Dropout": "_contrib_ROIAlign"}
    path = _edited(tmp_path, "squeezenet1.1",
                   lambda n: n.update(op=renames.get(n["op"], n["op"])))
    with pytest.raises(UnsupportedModelError) as e:
        import_mxnet(path, {"data": (1, 3, 224, 224)})
    found = {op.op_type: op.count for op in e.value.ops}
    assert found == {"_contrib_Correlation": 8, "_contrib_ROIAlign": 1}
    assert "The following operators are not implemented" in str(e.value)
    info = inspect_mxnet(path)
    assert {u["op_type"] for u in info["unsupported"]} == set(found)


def test_unsupported_attributes_are_listed_at_once(tmp_path):
    """The op cases are independent branches: each problem is found, all reported together."""
    def edit(node):
        attrs = node.get("attrs", {})
        if node["name"] == "pooling0":  # pool_max_full
            attrs["pooling_convention"] = "same"
        if node["op"] == "Dropout":
            attrs["mode"] = "always"
        if node["op"] == "Convolution":
            attrs["layout"] = "NHWC"
            attrs["cudnn_tune"] = "fastest"  # cannot change a CPU result: not a problem

    path = _edited(tmp_path, "ops", edit)
    with pytest.raises(UnsupportedModelError) as e:
        import_mxnet(path, {k: tuple(v) for k, v in shapes_of("ops").items()})
    problems = {(op.op_type, op.count): op.reason for op in e.value.ops}
    assert set(problems) == {("Pooling", 1), ("Dropout", 1), ("Convolution", 2)}
    assert "pooling_convention='same'" in problems["Pooling", 1]
    assert "OperatorAttributeNotImplemented" in problems["Dropout", 1]
    assert "layout='NHWC'" in problems["Convolution", 2]
    assert "cudnn_tune" not in str(e.value)


def test_an_attribute_no_converter_takes_is_reported(tmp_path):
    path = _edited(tmp_path, "vgg11_bn", lambda n: n.get("attrs", {}).update(
        {"act_type": "relu"}) if n["op"] == "BatchNorm" else None)
    with pytest.raises(UnsupportedModelError, match="act_type='relu'"):
        import_mxnet(path, {"data": (1, 3, 64, 64)})


# -- the command line ----------------------------------------------------------------------------
def test_neo_inspect_and_compile_from_the_command_line(tmp_path):
    from test_cli import assert_error, neo

    proc = neo("inspect", "--framework", "mxnet", symbol_of("densenet121"), "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["inputs"][0]["name"] == "data" and info["unsupported"] == []
    assert info["ops"]["Concat"] == 58 and info["details"]["mxnet_version"] == "1.9.1"

    path = _edited(tmp_path, "vgg11_bn", lambda n: n.update(op="Crop") if n["op"] == "Dropout"
                   else None)
    proc = neo("compile", path, "--framework", "mxnet", "--shape", '{"data":[1,3,64,64]}',
               "--target", "x86_64", "--output", tmp_path / "o")
    assert_error(proc, 4, "not implemented", "Crop")
    assert not (tmp_path / "o").exists()
    proc = neo("compile", DATA / "vgg11_bn", "--framework", "mxnet", "--shape",
               '{"input":[1,3,64,64]}', "--target", "x86_64", "--output", tmp_path / "o")
    assert_error(proc, 2, "input", "data")

