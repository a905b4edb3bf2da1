"""fp16 arithmetic: accumulate in fp16 (as XNNPACK's f16 GEMMs do) or in fp32? Measured here.

Each model is compiled for this machine three times: fp32; fp16 arithmetic as neo builds it for
a target with fp16 FMAs (half activations and weights, fp16 accumulation: the GEMM and
channel-conv kernels on half vectors; LLVM rounds each operation to half where the CPU has no
fp16 arithmetic, so this is the target's arithmetic); and the same graph with fp32
accumulation (its convs and matmuls on tensor expressions, which sum float16 products in
float32 and round the sum once). Printed: the output's SQNR against fp32 and the top-1
agreement, for the digits CNN of tests/test_quantize.py (500 test digits) and the torchvision
CNNs of tests/test_quantize_torchvision.py (64 photo crops, 96x96, reductions up to 4608 long).

    python3 scripts/fp16_accumulation.py [--models digits resnet18 mobilenet_v2 squeezenet1_1]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def digits_model(root: Path):
    """The digits CNN of tests/test_quantize.py (trained there, exported at its batch of 100) and
    the first 500 test digits in its batches."""
    import torch
    from test_quantize import BATCH, train_digits

    d = train_digits(torch, root)
    n = len(d.x_test) // BATCH * BATCH
    return d.model, [d.x_test[i:i + BATCH] for i in range(0, n, BATCH)], d.y_test[:n]


def torchvision_model(name: str, root: Path):
    from test_quantize_torchvision import BATCH, RUNS, _export, _photo_crops

    path = root / f"{name}.onnx"
    _export(name, path)
    x = _photo_crops(BATCH * RUNS, 7)
    return path, [x[i:i + BATCH] for i in range(0, len(x), BATCH)], None


def measure(path: Path, batches: list, labels, root: Path) -> dict:
    from neo.codegen import lower
    from neo.frontends import FRONTENDS
    from neo.passes import run_pipeline
    from neo.passes.calibrate import compile_for_host
    from neo.passes.precision import Fp16
    from neo.targets import host_target

    g = FRONTENDS["onnx"].load(path, {"input": batches[0].shape})
    f32 = run_pipeline(g, 3)
    f16 = run_pipeline(g, 3, precision=Fp16(arithmetic="float16"))
    runs = {"fp32": compile_for_host(f32, [], host_target(), root, f"{path.stem}-fp32"),
            "fp16 acc": compile_for_host(f16, [], host_target(), root, f"{path.stem}-f16acc")}
    with mock.patch.object(lower, "half_arithmetic", lambda anchor: False):
        runs["fp32 acc"] = compile_for_host(f16, [], host_target(), root, f"{path.stem}-f32acc")
    outs = {k: np.concatenate([next(iter(m.run({"input": x}).values())) for x in batches])
            for k, m in runs.items()}
    ref = outs["fp32"].astype(np.float64)
    res = {}
    for k in ("fp16 acc", "fp32 acc"):
        err = outs[k].astype(np.float64) - ref
        sqnr = 10 * np.log10((ref ** 2).sum() / max((err ** 2).sum(), 1e-30))
        top1 = float((outs[k].argmax(-1) == ref.argmax(-1)).mean())
        res[k] = (sqnr, top1, float((outs[k].argmax(-1) == labels).mean())
                  if labels is not None else None)
    res["fp32 accuracy"] = (float((ref.argmax(-1) == labels).mean())
                            if labels is not None else None)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+",
                    default=["digits", "resnet18", "mobilenet_v2", "squeezenet1_1"])
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="neo-fp16acc-"))
    print("| model | accumulation | output SQNR vs fp32 | top-1 agreement | test accuracy |")
    print("|---|---|---|---|---|")
    for name in args.models:
        path, batches, labels = (digits_model(root) if name == "digits"
                                 else torchvision_model(name, root))
        res = measure(path, batches, labels, root)
        for k in ("fp16 acc", "fp32 acc"):
            sqnr, top1, acc = res[k]
            acc_s = f"{100 * acc:.2f}% (fp32 {100 * res['fp32 accuracy']:.2f}%)" if acc else "-"
            print(f"| {name} | {k[:4]} | {sqnr:.1f} dB | {100 * top1:.1f}% | {acc_s} |",
                  flush=True)


if __name__ == "__main__":
    main()
