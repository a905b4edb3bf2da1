"""Cross-target figures: torchvision classifiers compiled for each target, run under qemu-user (or
natively), compared with onnxruntime; writes docs/TARGETS.md.

    python scripts/targets_report.py [--targets riscv64 rv64gcv arm64 x86_64]
                                     [--models squeezenet1_1 mobilenet_v2] [--repeat 3]

Needs torch + torchvision (the models: weights=None, BatchNorm calibrated as in scripts/bench.py),
onnxruntime (the reference) and qemu-user-static with the targets' cross libcs
(scripts/install-system.sh). Times under qemu measure the emulator, not the board: they say the
code runs, not how fast a device runs it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from bench import build_model, export_onnx


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", nargs="+", default=["riscv64", "rv64gcv", "arm64", "x86_64"])
    ap.add_argument("--models", nargs="+", default=["squeezenet1_1", "mobilenet_v2"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--output", type=Path, default=ROOT / "docs" / "TARGETS.md")
    args = ap.parse_args()

    import onnxruntime as ort
    import torch

    from neo.compiler import CompileOptions, compile_model
    from neo.run import run_artifact
    from neo.targets import get_target

    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="neo-targets-") as tmp:
        for name in args.models:
            model, shape, make_input = build_model(torch, name)
            path = Path(tmp) / f"{name}.onnx"
            export_onnx(torch, model, make_input(0), path)
            x = make_input(1)
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            ref = sess.run(None, {"input": x})[0]
            for tname in args.targets:
                target = get_target(tname)
                out = Path(tmp) / f"{name}-{tname}"
                t0 = time.perf_counter()
                compile_model(CompileOptions(
                    framework="onnx", shape=json.dumps({"input": list(shape)}), target=tname,
                    output=out, model=str(path), opt_level=3, workdir=Path(tmp), use_cache=False))
                compile_s = time.perf_counter() - t0
                _, outs, info = run_artifact(out, {"input": x}, threads=args.threads,
                                             repeat=args.repeat)
                err = float(np.abs(outs[0].astype(np.float64) - ref).max())
                rows.append({
                    "model": name, "target": tname, "triple": target.triple, "cpu": target.cpu,
                    "vector_bits": target.vector_bits,
                    "runs_on": " ".join(
                        a for a in info.get("emulator_command", ["native"]) if a != "-L"
                        and not a.startswith("/usr/")),
                    "compile_s": compile_s, "median_ms": float(info["median_ms"]),
                    "max_err": err, "rel_err": err / float(np.abs(ref).max()),
                    "top1": int(outs[0].argmax()) == int(ref.argmax()),
                })
                r = rows[-1]
                print(f"{name:14} {tname:8} {r['median_ms']:9.1f} ms  max err {err:.2g} "
                      f"({r['rel_err']:.2g} of max|ref|)  top-1 {'same' if r['top1'] else 'DIFF'}",
                      flush=True)

    lines = [
        "# Targets: the same models on every arch",
        "",
        (f"Measured {datetime.date.today()} on {cpu_name()} ({platform.machine()}), "
         f"{args.threads} threads, median of {args.repeat} runs, batch 1 (load average "
         f"{load:.1f} when it started: a shared machine), by"),
        "",
        "```",
        " ".join(["python scripts/targets_report.py", "--targets", *args.targets, "--models",
                  *args.models, "--repeat", str(args.repeat)]),
        "```",
        "",
        ("torchvision models with weights=None and calibrated BatchNorm (scripts/bench.py), one "
         "ImageNet-like input, against onnxruntime. Foreign arches run under qemu-user on this "
         "x86 machine: their times measure the emulator (RVV and NEON are emulated instruction "
         "by instruction), not a board, and only say that the code runs."),
        "",
        ("| model | target | triple, CPU | vector bits | runs on | time | max abs error "
         "(of max\\|ref\\|) | top-1 |"),
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['target']} | {r['triple']}, {r['cpu']} | {r['vector_bits']} | "
            f"{r['runs_on']} | {r['median_ms']:.1f} ms | {r['max_err']:.2g} ({r['rel_err']:.2g}) "
            f"| {'same' if r['top1'] else 'differs'} |")
    args.output.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
