"""Measure `neo compile --quantize int8` settings (calibration method, cross-layer equalization,
bias correction) on the models of the quantization tests, against their fp32 outputs
(onnxruntime): top-1 agreement and output SQNR. The table in docs/QUANTIZATION.md comes from

    python3 scripts/quant_methods.py [--models digits,resnet18,...] [--configs minmax,...]

The models are built as tests/test_quantize.py (the digits CNN: 540 held-out digits) and
tests/test_quantize_torchvision.py (random-weight torchvision CNNs with BatchNorm statistics of
photo crops and a trained head: 64 test crops, 32 calibration crops) build them, once, in
--workdir.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

CONFIGS = {
    "minmax": {"calibration_method": "minmax"},
    "percentile": {"calibration_method": "percentile"},
    "entropy": {"calibration_method": "entropy"},
    "minmax+equalize": {"calibration_method": "minmax", "equalize": True},
    "minmax+bias_correction": {"calibration_method": "minmax", "bias_correction": True},
    "per-tensor minmax": {"calibration_method": "minmax", "per_channel": False},
    "per-tensor minmax+equalize": {"calibration_method": "minmax", "per_channel": False,
                                   "equalize": True},
}
MODELS = ["digits", "resnet18", "mobilenet_v2", "squeezenet1_1"]


def _model(name: str, work: Path):
    """(onnx path, input shape, calibration file, test batches [k, batch, ...], rows kept)."""
    import torch

    work.mkdir(parents=True, exist_ok=True)
    if name == "digits":
        import test_quantize as D

        d = D.train_digits(torch, work)
        batches, rows = zip(*D._batches(d.x_test))
        return d.model, [D.BATCH, 1, 8, 8], d.calib, np.stack(batches), list(rows)
    import test_quantize_torchvision as T

    path = work / f"{name}.onnx"
    if not path.exists():
        T._export(name, path)
    calib = work / "calib.npz"
    np.savez(calib, input=T._photo_crops(2 * T.BATCH, 1).reshape(2, T.BATCH, 3, T.SIZE, T.SIZE))
    x = T._photo_crops(T.BATCH * T.RUNS, 7).reshape(T.RUNS, T.BATCH, 3, T.SIZE, T.SIZE)
    return path, [T.BATCH, 3, T.SIZE, T.SIZE], calib, x, [T.BATCH] * T.RUNS


def _measure(model: Path, shape, calib: Path, x: np.ndarray, rows, out: Path, cfg: dict
             ) -> dict:
    import onnxruntime as ort

    from neo.compiler import CompileOptions, compile_model
    from neo.runtime import Model

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    ref = np.concatenate([sess.run(None, {name: xb})[0][:n] for xb, n in zip(x, rows)])
    t = time.perf_counter()
    compile_model(CompileOptions(framework="onnx", shape=json.dumps({name: shape}),
                                 target="host", output=out, model=str(model), use_cache=False,
                                 quantize="int8", calibration=calib, **cfg))
    dt = time.perf_counter() - t
    with Model(out) as m:
        got = np.concatenate([m.run(xb)[0][:n] for xb, n in zip(x, rows)])
    r, g = ref.astype(np.float64), got.astype(np.float64)
    return {"top1": float((ref.argmax(1) == got.argmax(1)).mean()),
            "sqnr": float(10 * np.log10(np.sum(r * r) / np.sum((r - g) ** 2))),
            "compile_s": dt}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/neo-quant-methods"))
    a = ap.parse_args()
    configs = a.configs.split(",")
    results: dict[str, dict[str, dict]] = {}
    for name in a.models.split(","):
        model, shape, calib, x, rows = _model(name, a.workdir / name)
        results[name] = {}
        for c in configs:
            r = _measure(model, shape, calib, x, rows, a.workdir / name / f"out-{c}",
                         CONFIGS[c])
            results[name][c] = r
            print(f"{name} {c}: top-1 agreement {100 * r['top1']:.1f}%, SQNR {r['sqnr']:.1f} dB "
                  f"(compile {r['compile_s']:.0f} s)", file=sys.stderr, flush=True)
    print("| model | " + " | ".join(configs) + " |")
    print("|---|" + "---|" * len(configs))
    for name, row in results.items():
        print(f"| {name} | " + " | ".join(
            f"{100 * row[c]['top1']:.1f}%, {row[c]['sqnr']:.1f} dB" for c in configs) + " |")
    (a.workdir / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
