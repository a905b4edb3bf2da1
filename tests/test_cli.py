"""The `neo` command line, run as a user runs it: in a subprocess, checking exit codes, stdout/stderr
and the files it writes. Exit codes (neo_cli/errors.py): 0 ok, 1 internal error, 2 usage or bad
input, 3 model load, 4 unsupported, 5 compile, 6 runtime.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx_helpers import make_model

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACT_FILES = ("compiled.so", "compiled_model.json", "compiled.params", "compiled.meta",
                  "libneort.so", "neort.h", "neo-run")
GRAPH_FILES = ("compiled.so", "compiled_model.json", "compiled.params", "compiled.meta")
ELF_MACHINE = {"x86_64": 62, "aarch64": 183, "armv7": 40}


def neo(*args: str, cwd: Path | None = None, env: dict | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `neo ARGS` in a fresh interpreter (the console script's entry point)."""
    full_env = {**os.environ, **(env or {})}
    # importable from any cwd, installed or not
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), full_env.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, "-m", "neo", *map(str, args)], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def describe(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n--- stdout:\n{proc.stdout}\n--- stderr:\n{proc.stderr}"


def assert_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, describe(proc)


def assert_error(proc: subprocess.CompletedProcess, code: int, *needles: str,
                 verbose: bool = False) -> str:
    """Exit `code` with one `error: ...` line (plus an optional `  hint: ...` line; with `verbose`
    also log lines before them), no traceback, every needle in the message (case-insensitive);
    returns the error line."""
    assert proc.returncode == code, f"expected exit {code}; {describe(proc)}"
    assert "Traceback" not in proc.stderr, describe(proc)
    lines = proc.stderr.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, f"expected one error line; {describe(proc)}"
    others = [ln for ln in lines if not ln.startswith(("error:", "  hint:"))]
    if verbose:
        others = [ln for ln in lines[lines.index(errors[0]):] if ln not in errors
                  and not ln.startswith("  hint:")]
    assert not others, f"unexpected stderr lines {others}; {describe(proc)}"
    message = proc.stderr.lower()
    for needle in needles:
        assert needle.lower() in message, f"{needle!r} not in the message; {describe(proc)}"
    return errors[0]


def compile_args(model, out: Path, *, shape: str, target: str = "x86_64", extra=()) -> list:
    args = ["compile"] + ([str(model)] if model is not None else [])
    return args + ["--framework", "onnx", "--shape", shape, "--target", target, "--output",
                   str(out), *extra]


def read_meta(art: Path) -> dict:
    return json.loads((art / "compiled.meta").read_text())


def elf_machine(path: Path) -> int:
    head = path.read_bytes()[:20]
    assert head[:4] == b"\x7fELF", f"{path} is not an ELF file"
    return int.from_bytes(head[18:20], "little")


def assert_close(out: np.ndarray, ref: np.ndarray, what: str) -> None:
    assert out.shape == ref.shape and out.dtype == ref.dtype, (out.dtype, out.shape, ref.dtype,
                                                               ref.shape)
    err = float(np.abs(out - ref).max())
    tol = 1e-4 * float(np.abs(ref).max())
    assert err <= tol, f"{what}: max abs error {err:.3g} > {tol:.3g}\ngot {out}\nref {ref}"
    assert out.argmax() == ref.argmax(), f"{what}: top-1 {out.argmax()} != {ref.argmax()}"


# -- models and artifacts ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unsupported_onnx(tmp_path_factory) -> Path:
    """Two NonZero nodes and one Det among supported ops."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Det", ["r"], ["d"], name="det0"),
        helper.make_node("NonZero", ["r"], ["nz1"], name="nz_a"),
        helper.make_node("NonZero", ["x"], ["nz2"], name="nz_b"),
    ]
    model = make_model(nodes, [("x", np.float32, [2, 3, 3])],
                       [("d", np.float32, [2]), ("nz1", np.int64, [3, None]),
                        ("nz2", np.int64, [3, None])], name="unsupported")
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("unsupported") / "unsupported.onnx"
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def compiled(small_cnn, tmp_path_factory):
    """`neo compile --json` of the small CNN for x86_64: (artifact dir, parsed stdout)."""
    out = tmp_path_factory.mktemp("cli") / "small-x86"
    proc = neo(*compile_args(small_cnn.path, out, shape=small_cnn.shape_json, extra=["--json"]))
    assert_ok(proc)
    return out, json.loads(proc.stdout)


@pytest.fixture(scope="module")
def two_inputs(small_cnn):
    """Two inputs with informative, different references: [(x, reference)]."""
    pairs = [(x, small_cnn.reference(x)) for x in (small_cnn.sample(0), small_cnn.sample(1))]
    for _, ref in pairs:
        assert ref.std() > 1e-2, f"degenerate reference {ref}"
    assert pairs[0][1].argmax() != pairs[1][1].argmax(), "both inputs give the same top-1"
    return pairs


def run_npz(art: Path, x: np.ndarray, tmp: Path, *, bare: bool = False, extra=()) -> dict:
    np.save(tmp / "x.npy", x)
    spec = str(tmp / "x.npy") if bare else f"input={tmp / 'x.npy'}"
    proc = neo("run", art, "--input", spec, "--output", tmp / "out.npz", *extra)
    assert_ok(proc)
    with np.load(tmp / "out.npz") as z:
        return {k: z[k] for k in z.files}


# -- success paths -------------------------------------------------------------------------------


def test_compile_json_reports_ok_and_the_files_exist(compiled, small_cnn):
    out, res = compiled
    assert res["status"] == "ok"
    assert Path(res["output"]) == out
    assert res["inputs"] == [{"name": "input", "dtype": "float32", "shape": [1, 3, 32, 32]}]
    assert res["outputs"] == [{"name": "probs", "dtype": "float32", "shape": [1, 10]}]
    assert res["target"]["arch"] == "x86_64"
    for name in ARTIFACT_FILES:
        assert (out / name).is_file(), f"{name} missing from {sorted(os.listdir(out))}"
    meta = read_meta(out)
    assert meta["target"]["name"] == "x86_64" and meta["framework"] == "onnx"
    import hashlib

    for name, digest in meta["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, name
    assert elf_machine(out / "compiled.so") == ELF_MACHINE["x86_64"]


def test_run_writes_npz_keyed_by_output_name(compiled, two_inputs, tmp_path):
    out, _ = compiled
    for i, (x, ref) in enumerate(two_inputs):
        got = run_npz(out, x, tmp_path)
        assert list(got) == ["probs"]
        assert_close(got["probs"], ref, f"input {i}")


def test_run_takes_a_bare_npy_for_a_single_input_model(compiled, two_inputs, tmp_path):
    out, _ = compiled
    x, ref = two_inputs[1]
    got = run_npz(out, x, tmp_path, bare=True, extra=["--threads", "1"])
    assert_close(got["probs"], ref, "bare FILE.npy")


def test_run_json(compiled, two_inputs, tmp_path):
    out, _ = compiled
    np.save(tmp_path / "x.npy", two_inputs[0][0])
    proc = neo("run", out, "--input", f"input={tmp_path / 'x.npy'}", "--json")
    assert_ok(proc)
    res = json.loads(proc.stdout)
    assert res["status"] == "ok"
    assert res["outputs"] == [{"name": "probs", "dtype": "float32", "shape": [1, 10]}]


def test_inspect_json_lists_inputs_outputs_and_op_histogram(small_cnn):
    proc = neo("inspect", small_cnn.path, "--json")
    assert_ok(proc)
    info = json.loads(proc.stdout)
    assert info["status"] == "ok"
    assert [(i["name"], i["shape"], i["dtype"]) for i in info["inputs"]] == [
        ("input", [1, 3, 32, 32], "float32")]
    assert [(o["name"], o["shape"], o["dtype"]) for o in info["outputs"]] == [
        ("probs", [1, 10], "float32")]
    hist = info.get("op_histogram", info.get("ops"))
    assert hist == {"Conv": 1, "Relu": 1, "GlobalAveragePool": 1, "Flatten": 1, "Gemm": 1,
                    "Softmax": 1}
    assert info["unsupported"] == []


def test_inspect_lists_unsupported_ops(unsupported_onnx):
    proc = neo("inspect", unsupported_onnx, "--json")
    assert_ok(proc)
    info = json.loads(proc.stdout)
    counts = {u["op_type"]: u["count"] for u in info["unsupported"]}
    assert counts == {"NonZero": 2, "Det": 1}


def test_targets_json():
    proc = neo("targets", "--json")
    assert_ok(proc)
    targets = {t["name"]: t for t in json.loads(proc.stdout)["targets"]}
    assert targets["rasp4b"]["triple"].startswith("aarch64")
    assert targets["rasp4b"]["arch"] == "aarch64"
    assert targets["ml_c5"]["cpu"] == "skylake-avx512"
    assert {"x86_64", "arm64", "armv7"} <= set(targets)


def test_verbose_prints_pass_timings_on_stderr_only(small_cnn, tmp_path):
    # --no-cache: this model was compiled before in the session; a cache hit runs no passes
    proc = neo(*compile_args(small_cnn.path, tmp_path / "out", shape=small_cnn.shape_json,
                             extra=["--verbose", "--no-cache"]))
    assert_ok(proc)
    assert re.search(r"^pass fuse_operators: .*\d+(\.\d+)? ms", proc.stderr, re.MULTILINE), proc.stderr
    assert re.search(r"timings: .*total \d", proc.stderr), proc.stderr
    # README: logs go to stderr; stdout carries only the --json result
    assert proc.stdout == "", f"stdout without --json: {proc.stdout!r}"


def test_compile_is_deterministic(compiled, small_cnn, tmp_path):
    """Same model, shapes, target, options: byte-identical files, even from another directory
    and with a cold neo cache (so the LLVM object and the runtime are built again)."""
    first, _ = compiled
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(small_cnn.path, elsewhere / small_cnn.path.name)
    second = tmp_path / "second-output-dir"
    proc = neo(*compile_args(small_cnn.path.name, second, shape=small_cnn.shape_json),
               cwd=elsewhere, env={"XDG_CACHE_HOME": str(tmp_path / "cold-cache")})
    assert_ok(proc)
    assert sorted(os.listdir(first)) == sorted(os.listdir(second))
    differ = [f for f in sorted(os.listdir(first))
              if (first / f).read_bytes() != (second / f).read_bytes()]
    assert not differ, f"files differ between two compiles: {differ}"
    assert set(GRAPH_FILES) <= set(os.listdir(first))


def test_failed_compile_leaves_existing_artifact_untouched(compiled, unsupported_onnx, tmp_path):
    out = tmp_path / "art"
    shutil.copytree(compiled[0], out)
    before = {f: (out / f).read_bytes() for f in os.listdir(out)}
    proc = neo(*compile_args(unsupported_onnx, out, shape='{"x":[2,3,3]}'))
    assert_error(proc, 4, "NonZero", "Det")
    after = {f: (out / f).read_bytes() for f in os.listdir(out)}
    assert sorted(after) == sorted(before), "files were added or removed"
    assert [f for f in before if before[f] != after[f]] == []
    assert [p.name for p in tmp_path.iterdir()] == ["art"], "temporary files left behind"


def test_model_omitted_uses_the_one_model_in_cwd(small_cnn, two_inputs, tmp_path):
    cwd = tmp_path / "project"
    cwd.mkdir()
    shutil.copy(small_cnn.path, cwd / "model.onnx")
    proc = neo(*compile_args(None, Path("out"), shape=small_cnn.shape_json), cwd=cwd)
    assert_ok(proc)
    assert read_meta(cwd / "out")["model"] == "model.onnx"
    x, ref = two_inputs[0]
    assert_close(run_npz(cwd / "out", x, tmp_path)["probs"], ref, "compiled from cwd")


def test_model_in_a_tar_gz(small_cnn, two_inputs, tmp_path):
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(small_cnn.path, arcname="model/small_cnn.onnx")
    proc = neo(*compile_args(archive, tmp_path / "out", shape=small_cnn.shape_json))
    assert_ok(proc)
    x, ref = two_inputs[1]
    assert_close(run_npz(tmp_path / "out", x, tmp_path)["probs"], ref, "compiled from .tar.gz")


def test_target_platform_arm64_gives_an_aarch64_artifact(small_cnn, tmp_path):
    out = tmp_path / "out"
    proc = neo("compile", small_cnn.path, "--framework", "onnx", "--shape", small_cnn.shape_json,
               "--target-platform", "os=LINUX,arch=ARM64", "--output", out)
    assert_ok(proc)
    meta = read_meta(out)
    assert meta["target"]["arch"] == "aarch64"
    assert meta["target"]["triple"].startswith("aarch64")
    for name in ("compiled.so", "libneort.so", "neo-run"):
        assert elf_machine(out / name) == ELF_MACHINE["aarch64"], name


def test_opt_level_0_is_correct(small_cnn, two_inputs, tmp_path):
    out = tmp_path / "out"
    proc = neo(*compile_args(small_cnn.path, out, shape=small_cnn.shape_json,
                             extra=["--opt-level", "0"]))
    assert_ok(proc)
    assert read_meta(out)["options"]["opt_level"] == 0
    for i, (x, ref) in enumerate(two_inputs):
        assert_close(run_npz(out, x, tmp_path)["probs"], ref, f"-O0 input {i}")


# -- errors --------------------------------------------------------------------------------------


def test_unsupported_ops_are_all_listed_before_any_work(unsupported_onnx, tmp_path):
    out = tmp_path / "out"
    proc = neo(*compile_args(unsupported_onnx, out, shape='{"x":[2,3,3]}', extra=["-v"]))
    line = assert_error(proc, 4, verbose=True)
    assert re.search(r"NonZero\D{0,12}\b2\b", line), line  # "NonZero (2 nodes: ...)"
    assert re.search(r"Det\D{0,12}\b1\b", line), line
    assert "Relu" not in line
    # refused by the frontend: no pass ran, nothing was written
    assert not re.search(r"^pass ", proc.stderr, re.MULTILINE), proc.stderr
    assert not out.exists()


def test_unsupported_ops_json_error(unsupported_onnx, tmp_path):
    proc = neo(*compile_args(unsupported_onnx, tmp_path / "o", shape='{"x":[2,3,3]}',
                             extra=["--json"]))
    assert proc.returncode == 4, describe(proc)
    res = json.loads(proc.stdout)
    assert res["status"] == "error" and res["exit_code"] == 4
    assert "NonZero" in res["error"] and "Det" in res["error"]


@pytest.mark.parametrize("shape", ['{"input":[1,3,32,32]', '{"input":"1,3,32,32"}',
                                   '{"input":[1,3,-32,32]}', "not json"])
def test_bad_shape_json(small_cnn, tmp_path, shape):
    proc = neo(*compile_args(small_cnn.path, tmp_path / "o", shape=shape))
    assert_error(proc, 2, "--shape")
    assert proc.stdout == ""


def test_list_shape_for_onnx(small_cnn, tmp_path):
    proc = neo(*compile_args(small_cnn.path, tmp_path / "o", shape="[[1,3,32,32]]"))
    assert_error(proc, 2, "--shape")


def test_unknown_input_name_names_the_model_inputs(small_cnn, tmp_path):
    proc = neo(*compile_args(small_cnn.path, tmp_path / "o", shape='{"image":[1,3,32,32]}'))
    line = assert_error(proc, 2, "image")
    assert "input" in line.replace("inputs", "").replace("input(s)", ""), line


def test_missing_model_file(tmp_path):
    proc = neo(*compile_args(tmp_path / "nope.onnx", tmp_path / "o", shape='{"input":[1,3,8,8]}'))
    assert_error(proc, 3, "nope.onnx")


def test_an_onnx_model_given_as_xgboost_is_refused(small_cnn, tmp_path):
    proc = neo("compile", small_cnn.path, "--framework", "XGBoost", "--target", "x86_64",
               "--output", tmp_path / "o")
    assert_error(proc, 3, "looks like a model for ONNX, not XGBoost")
    assert not (tmp_path / "o").exists()


def test_an_onnx_model_given_as_tensorflow_is_refused(small_cnn, tmp_path):
    # every framework has a frontend now; the model file's kind is checked before it is loaded
    proc = neo("compile", small_cnn.path, "--framework", "tensorflow", "--shape",
               '{"input":[1,32,32,3]}', "--target", "x86_64", "--output", tmp_path / "o")
    assert_error(proc, 3, "looks like a model for ONNX, not TensorFlow")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("framework", "shape"), [
    ("pytorch", "[[1,3,32,32]"),  # invalid JSON
    ("pytorch", '{"input":[1,3,32,32]}'),  # PyTorch inputs are input0, input1, ...
    ("tflite", "[[1,32,32,3]]"),  # only PyTorch takes a list
])
def test_framework_shape_is_validated_before_not_supported(small_cnn, tmp_path, framework, shape):
    proc = neo("compile", small_cnn.path, "--framework", framework, "--shape", shape, "--target",
               "x86_64", "--output", tmp_path / "o")
    assert_error(proc, 2, "--shape")


def test_unknown_target(small_cnn, tmp_path):
    proc = neo(*compile_args(small_cnn.path, tmp_path / "o", shape=small_cnn.shape_json,
                             target="x86_65"))
    assert_error(proc, 2, "x86_65", "x86_64")


def test_refused_target_says_what_to_use_instead(small_cnn, tmp_path):
    # neo_cli/targets.py refuses GPU devices as a usage error naming the CPU targets to use
    proc = neo(*compile_args(small_cnn.path, tmp_path / "o", shape=small_cnn.shape_json,
                             target="ml_p3"))
    assert_error(proc, 2, "ml_p3", "gpu", "use --target", "ml_c5")


def test_run_wrong_input_shape(compiled, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 16, 16), np.float32))
    proc = neo("run", compiled[0], "--input", f"input={tmp_path / 'x.npy'}")
    assert_error(proc, 2, "[1, 3, 16, 16]", "[1, 3, 32, 32]")


def test_run_wrong_input_name(compiled, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 32, 32), np.float32))
    proc = neo("run", compiled[0], "--input", f"image={tmp_path / 'x.npy'}")
    assert_error(proc, 2, "image", "input")


def test_run_with_params_missing(compiled, small_cnn, tmp_path):
    art = tmp_path / "art"
    shutil.copytree(compiled[0], art)
    (art / "compiled.params").unlink()
    np.save(tmp_path / "x.npy", small_cnn.sample(0))
    proc = neo("run", art, "--input", f"input={tmp_path / 'x.npy'}", "--output",
               tmp_path / "o.npz")
    assert_error(proc, 6, "compiled.params")
    assert not (tmp_path / "o.npz").exists()


def test_recompiling_an_unchanged_model_reuses_the_artifact(small_cnn, tmp_path):
    first = neo(*compile_args(small_cnn.path, tmp_path / "a", shape=small_cnn.shape_json,
                              extra=["--json"]))
    assert_ok(first)
    second = neo(*compile_args(small_cnn.path, tmp_path / "b", shape=small_cnn.shape_json,
                               extra=["--json"]))
    assert_ok(second)
    assert json.loads(second.stdout)["artifact_cached"] is True
    for f in ("compiled.so", "compiled_model.json", "compiled.params", "compiled.meta"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    third = neo(*compile_args(small_cnn.path, tmp_path / "c", shape=small_cnn.shape_json,
                              extra=["--json", "--no-cache", "--opt-level", "1"]))
    assert_ok(third)
    assert json.loads(third.stdout)["artifact_cached"] is False


# -- real exported models: -1 dims, shared dim_params, scalar inputs (issue 10) ----------------


def test_minus_one_dims_and_a_scalar_input_compile_and_run(tmp_path):
    # paddle2onnx writes dynamic dims as dim_value -1; a scalar input (a sample rate, a
    # threshold) is given as [] in the shape JSON and as a 0-d .npy
    nodes = [helper.make_node("Mul", ["x", "rate"], ["m"]),
             helper.make_node("Sigmoid", ["m"], ["y"])]
    model = make_model(nodes, [("x", np.float32, [-1, 3, -1, -1]), ("rate", np.float32, [])],
                       [("y", np.float32, [-1, 3, -1, -1])])
    onnx.save(model, str(tmp_path / "m.onnx"))
    out = tmp_path / "out"
    assert_ok(neo(*compile_args(tmp_path / "m.onnx", out, shape='{"x":[1,3,48,19],"rate":[]}')))
    assert [i["shape"] for i in read_meta(out)["inputs"]] == [[1, 3, 48, 19], []]
    x = np.random.default_rng(3).standard_normal((1, 3, 48, 19)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "rate.npy", np.array(0.75, np.float32))
    assert_ok(neo("run", out, "--input", f"x={tmp_path / 'x.npy'}", "--input",
                  f"rate={tmp_path / 'rate.npy'}", "--output", tmp_path / "y.npz", "--check"))
    y = np.load(tmp_path / "y.npz")["y"]
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-0.75 * x)), rtol=1e-5, atol=1e-6)


def test_inputs_sharing_a_dim_param_must_agree(tmp_path):
    model = make_model([helper.make_node("Add", ["a", "b"], ["y"])],
                       [("a", np.float32, ["batch", 4]), ("b", np.float32, ["batch", 4])], ["y"])
    onnx.save(model, str(tmp_path / "m.onnx"))
    assert_error(neo(*compile_args(tmp_path / "m.onnx", tmp_path / "bad",
                                   shape='{"a":[2,4],"b":[3,4]}')),
                 2, "share the dynamic dim 'batch'", "'a' dim 0 is 2, 'b' dim 0 is 3")
    assert not (tmp_path / "bad").exists()
    # b left out: its batch comes from a
    out = tmp_path / "out"
    assert_ok(neo(*compile_args(tmp_path / "m.onnx", out, shape='{"a":[5,4]}')))
    assert [i["shape"] for i in read_meta(out)["inputs"]] == [[5, 4], [5, 4]]
