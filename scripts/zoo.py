"""Compile every torchvision classification model with the PyTorch frontend and check it.

Each model is built with weights=None, its BatchNorm statistics calibrated on random data (so that
the logits are informative, not near-constants), traced to TorchScript, compiled with
`neo compile --framework pytorch --target x86_64`, run, and compared with PyTorch: the maximum
absolute error must be at most 1e-4 * max|reference| and the top-1 class must agree.

    python scripts/zoo.py                      # every model, writes docs/ZOO.md
    python scripts/zoo.py resnet18 vgg11       # some models, prints the table
    python scripts/zoo.py --jobs 2             # models in parallel processes

Also imported by tests/test_pytorch_frontend.py for its representative subset.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-4  # relative to max|reference|
INPUT_SIZE = {"inception_v3": 299}
# Models too large for a sweep on a small machine are listed with the reason, not skipped silently.
SKIP: dict[str, str] = {}


@dataclass
class Result:
    model: str
    status: str  # "pass", "mismatch", "unsupported", "error"
    error: float | None = None  # max abs error / max |reference|
    top1: bool | None = None
    detail: str = ""
    seconds: float = 0.0
    compile_seconds: float = 0.0
    nodes: int = 0


def classification_models() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def calibrated_model(name: str, batches: int = 3, seed: int = 0):
    """torchvision `name` with weights=None and BatchNorm statistics from random data, in eval
    (and random weights in a zero-initialized head, so that the logits say something)."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.get_model(name, weights=None)
    size = INPUT_SIZE.get(name, 224)
    for m in model.modules():
        # ViT zero-initializes its classification head: every logit would be 0.
        if isinstance(m, torch.nn.Linear) and not m.weight.any():
            torch.nn.init.normal_(m.weight, std=m.in_features ** -0.5)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if bns:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the calibration batches
        model.train()
        with torch.no_grad():
            for _ in range(batches):
                model(torch.randn(4, 3, size, size))
    return model.eval(), size


def trace_to(model, example, path: Path) -> None:
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.jit.trace(model, example, check_trace=False).save(str(path))


def compile_and_run(path: Path, shapes: str, feeds: dict, workdir: Path, target: str = "x86_64",
                    compiler_options: str | None = None) -> tuple[list, dict]:
    """`neo compile --framework pytorch` then run the artifact; returns (outputs, compile info)."""
    from neo.compiler import CompileOptions, compile_model
    from neo.run import run_artifact

    out = workdir / "artifact"
    info = compile_model(CompileOptions(framework="pytorch", shape=shapes, target=target,
                                        compiler_options=compiler_options, model=str(path),
                                        output=out, workdir=workdir))
    _, outs, _ = run_artifact(out, feeds)
    return outs, info


def compare(got, want) -> tuple[float, bool]:
    """(max abs error / max |reference|, same top-1)."""
    import numpy as np

    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    scale = float(np.abs(want).max()) or 1.0
    err = float(np.abs(got - want).max()) / scale
    top1 = bool((got.reshape(got.shape[0], -1).argmax(1)
                 == want.reshape(want.shape[0], -1).argmax(1)).all())
    return err, top1


def check_model(name: str, workdir: Path) -> Result:
    import torch

    from neo.errors import NeoError, UnsupportedModelError

    t0 = time.perf_counter()
    try:
        model, size = calibrated_model(name)
        torch.manual_seed(1)
        x = torch.randn(1, 3, size, size)
        with torch.no_grad():
            ref = model(x).numpy()
        spread = float(ref.std())
        path = workdir / f"{name}.pth"
        trace_to(model, x, path)
        t1 = time.perf_counter()
        outs, info = compile_and_run(path, json.dumps([[1, 3, size, size]]),
                                     {"input0": x.numpy()}, workdir)
        compile_s = info["timings"].get("total", time.perf_counter() - t1)
    except UnsupportedModelError as e:
        ops = ", ".join(f"{op.op_type} x{op.count}" + (f" ({op.reason})" if op.reason else "")
                        for op in e.ops)
        return Result(name, "unsupported", detail=ops, seconds=time.perf_counter() - t0)
    except NeoError as e:
        return Result(name, "error", detail=f"{type(e).__name__}: {e}"[:300],
                      seconds=time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001 - a sweep reports every failure and goes on
        return Result(name, "error", detail=f"{type(e).__name__}: {e}"[:300],
                      seconds=time.perf_counter() - t0)
    err, top1 = compare(outs[0], ref)
    ok = err <= TOLERANCE and top1 and spread > 1e-3
    detail = "" if spread > 1e-3 else f"degenerate reference (std {spread:.2g})"
    if not ok and spread > 1e-3:
        detail = float64_diagnosis(model, x, outs[0], ref)
    return Result(name, "pass" if ok else "mismatch", err, top1, detail,
                  time.perf_counter() - t0, compile_s)


def float64_diagnosis(model, x, got, ref) -> str:
    """How far neo and PyTorch (both float32) each are from PyTorch in float64: when they are
    equally far, the difference is float32 rounding in a badly conditioned network, not a bug."""
    import torch

    with torch.no_grad():
        exact = model.double()(x.double()).numpy()
    neo_err, _ = compare(got, exact)
    torch_err, _ = compare(ref, exact)
    return (f"float32 rounding? vs float64 PyTorch: neo {neo_err:.1e}, "
            f"PyTorch float32 {torch_err:.1e}")


def _run_one(name: str) -> Result:
    with tempfile.TemporaryDirectory(prefix=f"neo-zoo-{name}-") as tmp:
        return check_model(name, Path(tmp))


def _run_in_subprocess(name: str, timeout: float) -> Result:
    """One model per process: a crash or a leak in one model does not take the sweep down."""
    cmd = [sys.executable, __file__, "--one", name]
    try:
        r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout,
                           cwd=ROOT)
    except subprocess.TimeoutExpired:
        return Result(name, "error", detail=f"timed out after {timeout:.0f} s")
    for line in reversed(r.stdout.splitlines()):
        if line.startswith("{"):
            return Result(**json.loads(line))
    tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or [f"exit {r.returncode}"]
    return Result(name, "error", detail=f"process failed: {tail[0]}"[:300])


def format_table(results: list[Result]) -> str:
    passed = sum(r.status == "pass" for r in results)
    lines = [
        "# PyTorch model zoo",
        "",
        ("Every torchvision classification model (`torchvision.models.list_models`), built with "
         "`weights=None`, BatchNorm statistics calibrated on random data, traced with "
         "`torch.jit.trace`, compiled by `neo compile --framework pytorch --target x86_64` and "
         "compared with PyTorch on one random input. A model passes when the maximum absolute "
         f"error is at most {TOLERANCE:g} x max|reference| and the top-1 class agrees."),
        "",
        ("For a mismatch, the details compare both neo and PyTorch float32 with PyTorch run in "
         "float64: when neo is as close to float64 as PyTorch itself, the difference is float32 "
         "rounding in a deep randomly initialized network, not a wrong kernel."),
        "",
        ("`compile s` is the wall time of `neo compile` (object code is cached by content hash, "
         "so a rerun compiles faster). Regenerate with `make zoo` (about an hour on 2 cores)."),
        "",
        f"**{passed} of {len(results)} models pass.**",
        "",
        "| model | status | error / max\\|ref\\| | top-1 | compile s | details |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        err = f"{r.error:.1e}" if r.error is not None else ""
        top1 = "" if r.top1 is None else ("same" if r.top1 else "differs")
        comp = f"{r.compile_seconds:.1f}" if r.compile_seconds else ""
        detail = r.detail.replace("|", "\\|")
        lines.append(f"| {r.model} | {r.status} | {err} | {top1} | {comp} | {detail} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", help="model names (default: all)")
    ap.add_argument("--jobs", type=int, default=1, help="models compiled in parallel")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per model")
    ap.add_argument("--out", type=Path, default=None, help="table file (default: docs/ZOO.md "
                    "when sweeping every model)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if args.one:
        print(json.dumps(asdict(_run_one(args.one))))
        return 0
    names = args.models or classification_models()
    out = args.out or (ROOT / "docs" / "ZOO.md" if not args.models else None)
    from concurrent.futures import ThreadPoolExecutor

    results: dict[str, Result] = {}
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        futures = {n: pool.submit(_run_in_subprocess, n, args.timeout) for n in names
                   if n not in SKIP}
        for n in names:
            if n in SKIP:
                results[n] = Result(n, "skipped", detail=SKIP[n])
                continue
            r = futures[n].result()
            results[n] = r
            err = f"{r.error:.1e}" if r.error is not None else "-"
            print(f"{n:<22} {r.status:<12} err {err:<8} {r.seconds:6.1f}s {r.detail}",
                  flush=True)
    table = format_table([results[n] for n in names])
    if out is not None:
        out.write_text(table)
        print(f"wrote {out}")
    else:
        print(table)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
