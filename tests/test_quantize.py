"""`neo compile --quantize int8` and `--precision fp16` on a real accuracy check: a small CNN trained
here on scikit-learn's digits (real 8x8 handwritten digits, ~97% test accuracy), quantized with
100 training digits as calibration samples, evaluated on the 540 held-out digits, on x86_64
natively and on arm64 (Neoverse-N1: sdot, and fp16 FMAs for fp16) under qemu. int8 may lose at
most 1 point of test accuracy, fp16 at most 0.2. Also: the accuracy report (stderr and compiled.meta), the accuracy
budget keeping layers in fp32, and one-line errors for bad calibration data (exit 2).

The model is compiled for a batch of 100 digits: the calibration file is one sample, the test set
six runs (the last padded), which keeps the qemu runs few.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from neo.frontends import FRONTENDS
from neo.ir import QuantParams

BATCH = 100


@dataclass(frozen=True)
class Digits:
    model: Path
    calib: Path  # .npz: input [100, 1, 8, 8] (one sample of the batch-100 model)
    calib_dir: Path  # 200 training digits as DIR/*.npy: two samples
    x_test: np.ndarray
    y_test: np.ndarray
    fp32_accuracy: float


@pytest.fixture(scope="session")
def digits(tmp_path_factory) -> Digits:
    from conftest import require_module

    return train_digits(require_module("torch"), tmp_path_factory.mktemp("digits"))


def train_digits(torch, out: Path) -> Digits:
    """The digits CNN trained and exported to out/digits.onnx, with its calibration samples
    (also used by scripts/quant_methods.py)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    nn = torch.nn
    torch.set_num_threads(1)
    d = load_digits()
    X = (d.images / 16.0).astype(np.float32)[:, None]
    Xtr, Xte, ytr, yte = train_test_split(X, d.target, test_size=0.3, random_state=0,
                                          stratify=d.target)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(512, 10))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    xt, yt = torch.from_numpy(Xtr), torch.from_numpy(ytr)
    for _ in range(15):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 32):
            idx = perm[i:i + 32]
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(torch.from_numpy(Xte)).argmax(1).numpy() == yte).mean())
    assert acc > 0.95, f"the digits CNN trained to only {acc:.3f}"
    path = out / "digits.onnx"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.from_numpy(Xte[:BATCH]), str(path), input_names=["input"],
                          output_names=["logits"], dynamo=False, opset_version=17)
    np.savez(out / "calib.npz", input=Xtr[:BATCH])
    (out / "calib").mkdir()  # two samples of the batch-100 model, one per file
    for i in range(2):
        np.save(out / "calib" / f"{i:03d}.npy", Xtr[i * BATCH:(i + 1) * BATCH])
    return Digits(path, out / "calib.npz", out / "calib", Xte, yte, acc)


def _compile(digits: Digits, out: Path, target: str, batch: int = BATCH, **kw) -> dict:
    from neo.compiler import CompileOptions, compile_model

    opts = CompileOptions(framework="onnx", shape=json.dumps({"input": [batch, 1, 8, 8]}),
                          target=target, output=out, model=str(digits.model), use_cache=False,
                          **kw)
    return compile_model(opts)


def _batches(x: np.ndarray):
    for i in range(0, len(x), BATCH):
        part = x[i:i + BATCH]
        n = len(part)
        if n < BATCH:
            part = np.concatenate([part, np.zeros((BATCH - n,) + part.shape[1:], part.dtype)])
        yield part, n


def _accuracy(run, digits: Digits) -> float:
    preds = []
    for xb, n in _batches(digits.x_test):
        preds.append(run(xb)[:n].argmax(axis=1))
    return float((np.concatenate(preds) == digits.y_test).mean())


@pytest.fixture(scope="session")
def digits_int8(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("digits_int8")
    res = _compile(digits, out, "host", quantize="int8", calibration=digits.calib)
    return out, res


def test_int8_keeps_accuracy_on_x86(digits, digits_int8):
    from neo.runtime import Model

    out, res = digits_int8
    kinds = [n["op"] for n in json.loads((out / "compiled_model.json").read_text())["nodes"]]
    assert sum(k.startswith("conv_integer") for k in kinds) == 3, kinds
    with Model(out) as m:
        acc = _accuracy(lambda x: m.run(x)[0], digits)
    assert acc >= digits.fp32_accuracy - 0.01, (acc, digits.fp32_accuracy)
    report = res["precision"]
    assert report["activations"].startswith("uint8") and report["quantized_layers"] == 4
    logits = report["outputs"]["logits"]
    assert logits["sqnr_db"] > 25 and logits["top1_agreement"] >= 0.98
    assert len(report["worst_layers"]) == 4 and report["calibration_samples"] == 1
    meta = json.loads((out / "compiled.meta").read_text())
    assert meta["precision"]["outputs"]["logits"] == logits


def test_fp16_keeps_accuracy_and_halves_params(digits, tmp_path):
    from neo.runtime import Model

    f32 = _compile(digits, tmp_path / "f32", "host")
    f16 = _compile(digits, tmp_path / "f16", "host", precision="fp16", validation=digits.calib)
    assert f16["params_nbytes"] < 0.55 * f32["params_nbytes"]
    with Model(tmp_path / "f16") as m:
        acc = _accuracy(lambda x: m.run(x)[0], digits)
    assert acc >= digits.fp32_accuracy - 0.002
    assert f16["precision"]["outputs"]["logits"]["sqnr_db"] > 50


def test_int8_and_fp16_on_arm64(digits, tmp_path, require_qemu):
    """ml_c6g is a Neoverse-N1: sdot, int8 symmetric activations; fullfp16, so --precision fp16
    computes the convs and the matmul in fp16 (fmla v.8h); run under qemu-aarch64."""
    from test_cli import neo

    from neo.run import run_artifact

    require_qemu("aarch64")
    for kind, kw in (("int8", {"quantize": "int8", "calibration": digits.calib_dir}),
                     ("fp16", {"precision": "fp16"})):
        out = tmp_path / kind
        if kind == "int8":
            res = _compile(digits, out, "ml_c6g", batch=BATCH, **kw)
            assert res["precision"]["activations"].startswith("int8")
            assert res["precision"]["calibration_samples"] == 2
        else:  # through the CLI, which prints the report
            p = neo("compile", digits.model, "--framework", "onnx", "--shape",
                    json.dumps({"input": [BATCH, 1, 8, 8]}), "--target", "ml_c6g",
                    "--precision", "fp16", "--validation", digits.calib, "--no-cache",
                    "--output", out)
            assert p.returncode == 0, p.stderr
            assert "precision fp16 (float16 in convs and matmuls" in p.stderr, p.stderr
            assert "output logits: SQNR" in p.stderr and "top-1 agreement" in p.stderr
            report = json.loads((out / "compiled.meta").read_text())["precision"]
            assert report["fp16_layers"] == 4  # three convs and the matmul
            logits = report["outputs"]["logits"]
            assert logits["sqnr_db"] > 45 and logits["top1_agreement"] == 1.0, logits
            kinds = [n["op"] for n in json.loads((out / "compiled_model.json").read_text())[
                "nodes"]]  # fp16 convs and matmul, their results widened in the epilogue
            assert sum(k.startswith("conv+cast") for k in kinds) == 3, kinds
            assert sum(k.startswith("matmul+cast") for k in kinds) == 1, kinds
        acc = _accuracy(lambda x: run_artifact(out, {"input": x}, threads=2)[1][0], digits)
        limit = 0.01 if kind == "int8" else 0.002
        assert acc >= digits.fp32_accuracy - limit, (kind, acc)


def test_report_on_stderr_and_budget(digits, tmp_path):
    from test_cli import neo

    bad = tmp_path / "bad.npz"  # calibration on a narrow slice: the range clips most digits
    np.savez(bad, input=np.full((1, BATCH, 1, 8, 8), 0.02, np.float32))
    p = neo("compile", digits.model, "--framework", "onnx", "--shape",
            json.dumps({"input": [BATCH, 1, 8, 8]}), "--target", "host", "--quantize", "int8",
            "--calibration", bad, "--validation", digits.calib, "--accuracy-budget", "2",
            "--no-cache", "--output", tmp_path / "o")
    assert p.returncode == 0, p.stderr
    assert "quantization int8" in p.stderr and "top-1 agreement" in p.stderr
    report = json.loads((tmp_path / "o" / "compiled.meta").read_text())["precision"]
    assert report["report_on"] == "validation"
    # clipped ranges lose accuracy; the budget keeps layers in fp32 until it holds
    assert report["fp32_layers"] and "kept in fp32" in p.stderr
    top1 = report["outputs"]["logits"]["top1_agreement"]
    assert top1 >= 0.98 or len(report["fp32_layers"]) == 4


@pytest.mark.parametrize("case,expect", [
    ("none", "--quantize int8 needs calibration samples"),
    ("missing", "no such file or directory"),
    ("shape", "expected [100, 1, 8, 8] (one sample)"),
    ("dtype", "is float64; the model takes float32"),
    ("nan", "has NaN in it"),
    ("key", "no array named 'input'"),
    ("stray", "--calibration applies to --quantize int8"),
])
def test_bad_calibration_is_one_line(digits, tmp_path, case, expect):
    from test_cli import neo

    args = ["--quantize", "int8", "--calibration", tmp_path / "c.npz"]
    x = np.zeros((2, BATCH, 1, 8, 8), np.float32)
    if case == "none":
        args = ["--quantize", "int8"]
    elif case == "shape":
        np.savez(tmp_path / "c.npz", input=np.zeros((2, 1, 8, 9), np.float32))
    elif case == "dtype":
        np.savez(tmp_path / "c.npz", input=x.astype(np.float64))
    elif case == "nan":
        x[1, 5, 0, 3, 3] = np.nan
        np.savez(tmp_path / "c.npz", input=x)
    elif case == "key":
        np.savez(tmp_path / "c.npz", data=x)
    elif case == "stray":
        np.savez(tmp_path / "c.npz", input=x)
        args = ["--calibration", tmp_path / "c.npz"]
    p = neo("compile", digits.model, "--framework", "onnx", "--shape",
            json.dumps({"input": [BATCH, 1, 8, 8]}), "--target", "host", *args, "--no-cache",
            "--output", tmp_path / "o")
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("error")]
    assert len(lines) == 1 and expect in lines[0], p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "o").exists()


def test_qdq_graph_of_the_pass_lowers_to_integer_ops(digits):
    """The pass on the IR: every conv and the matmul on integer ops, activations uint8 for x86
    (vpdpbusd) and int8 for sdot targets, weights per output channel."""
    from neo.passes import pipeline
    from neo.passes.calibrate import Int8Quantization
    from neo.passes.quantize import QuantizeConfig, insert_qdq, tensors_to_quantize

    g = FRONTENDS["onnx"].load(digits.model, {"input": (BATCH, 1, 8, 8)})
    for p in pipeline(1)[:-1]:
        g = p(g)
    cfg = QuantizeConfig(activations="int8")
    tensors = tensors_to_quantize(g, cfg)
    # the max pool's and the flatten's inputs are quantized in place of their outputs (they
    # move integers): the relus
    assert [t.producer.op if t.producer else "input" for t in tensors] == [
        "input", "relu", "relu", "relu"]
    params = {t.name: QuantParams.per_tensor(0.05, 0) for t in tensors}
    low = Int8Quantization._lower(insert_qdq(g, params, cfg))
    ops = [n.op for n in low.nodes]
    assert ops.count("conv_integer") == 3 and "matmul_integer" in ops and "conv" not in ops
    assert {n.attrs["dtype"] for n in low.nodes if n.op == "quantize"} == {"int8"}
    w = next(n.inputs[1] for n in low.nodes if n.op == "conv_integer")
    assert w.dtype == "int8" and w.type.quant.axis == 0 and np.abs(w.data).max() == 127
