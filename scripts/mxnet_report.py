"""Compile every MXNet fixture (tests/data/mxnet, written by scripts/mxnet_fixtures.py) and print
a markdown table of its error against MXNet 1.9.1's outputs, per target.

    python scripts/mxnet_report.py [--target x86_64 --target arm64] [NAME ...]

The error is max|neo - mxnet| / max|mxnet| over every output; top-1 is checked for classifiers.
arm64 artifacts run under qemu-aarch64-static.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "mxnet"


def measure(name: str, entry: dict, target: str, workdir: Path) -> dict:
    from neo.compiler import CompileOptions, compile_model
    from neo.run import run_artifact

    io = np.load(DATA / name / f"{name}-io.npz")
    feeds = {k: io[f"input.{k}"] for k in entry["inputs"]}
    want = [io[f"output.{i}"] for i in range(sum(k.startswith("output.") for k in io))]
    out = workdir / f"{name}-{target}"
    t = time.perf_counter()
    compile_model(CompileOptions(framework="mxnet", shape=json.dumps(entry["inputs"]),
                                 target=target, output=out, model=str(DATA / name),
                                 use_cache=False))
    seconds = time.perf_counter() - t
    _, got, _ = run_artifact(out, feeds)
    err = max(float(np.abs(np.asarray(g, np.float64) - w).max() / (np.abs(w).max() or 1.0))
              for g, w in zip(got, want))
    top1 = ""
    if entry["kind"] == "classifier":
        ref = want[0].reshape(want[0].shape[0], -1)
        top1 = "same" if (np.asarray(got[0]).reshape(ref.shape).argmax(1)
                          == ref.argmax(1)).all() else "DIFFERENT"
    return {"error": err, "top1": top1, "compile_s": seconds}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*")
    ap.add_argument("--target", action="append", dest="targets")
    args = ap.parse_args(argv)
    manifest = json.loads((DATA / "manifest.json").read_text())
    targets = args.targets or ["x86_64"]
    print("| model | what | inputs | " + " | ".join(
        f"{t}: max error / top-1 / compile" for t in targets) + " |")
    print("|---|---|---|" + "---|" * len(targets))
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.names or manifest:
            entry = manifest[name]
            what = entry.get("width") or entry.get("description") or \
                f"{len(entry.get('cases', []))} op cases"
            shapes = ", ".join(f"{k} {v}" for k, v in entry["inputs"].items())
            if len(entry["inputs"]) > 3:
                shapes = f"{len(entry['inputs'])} inputs"
            cells = []
            for t in targets:
                r = measure(name, entry, t, Path(tmp))
                cells.append(f"{r['error']:.1e} / {r['top1'] or '-'} / {r['compile_s']:.0f} s")
            print(f"| {name} | {what} | {shapes} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
