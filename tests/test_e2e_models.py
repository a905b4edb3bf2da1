"""End to end: torchvision classifiers -> ONNX -> neo -> native code on x86_64, arm64 and armv7.

Each compiled model must match onnxruntime on two ImageNet-like inputs to within 1e-4 of the largest
reference logit and give the same top-1. The networks are random (weights=None) but calibrated
(conftest), and the reference is checked to be informative first: logits that vary and two inputs
with different top-1s, each with a margin well above the tolerance, so the comparison can tell a
wrong kernel from a right one.

x86_64 (also `host` and, on an AVX-512 CPU, `ml_c5`) runs in-process through `runtime.Model`; arm64 through `neo_cli.run.run_artifact` (neo-run
under qemu-aarch64-static); armv7 through the `neo run` command (qemu-arm-static).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import cpu_has_avx512

RTOL = 1e-4  # of max |reference|
# The two inputs are picked from these, in order: the first with a clear top-1, then the first
# after it with a different clear top-1.
CANDIDATES = [("noise", 1), ("smooth", 1), ("noise", 2), ("smooth", 2), ("noise", 3),
              ("smooth", 3), ("smooth", 4), ("smooth", 5)]
CLEAR_MARGIN = 20  # top-1 minus top-2, in units of the tolerance

CASES = [
    ("resnet18", "x86_64"),
    ("mobilenet_v2", "x86_64"),
    ("squeezenet1_1", "x86_64"),
    ("resnet18", "arm64"),
    ("mobilenet_v2", "arm64"),
    ("squeezenet1_1", "arm64"),
    ("squeezenet1_1", "armv7"),
    # this machine's own vector width and ISA (AVX-512 where it has it), and ml_c5's AVX-512
    ("resnet18", "host"),
    ("mobilenet_v2", "host"),
    ("squeezenet1_1", "host"),
    ("resnet18", "ml_c5"),
    ("mobilenet_v2", "ml_c5"),
    ("squeezenet1_1", "ml_c5"),
]
ARCH = {"x86_64": "x86_64", "host": "x86_64", "ml_c5": "x86_64", "arm64": "aarch64",
        "armv7": "armv7"}


def _margin(logits: np.ndarray) -> float:
    top2 = np.sort(logits.ravel())[-2:]
    return float(top2[1] - top2[0])


@pytest.fixture(scope="module")
def references(torchvision_onnx, imagenet_input, ort_reference):
    """name -> (onnx path, [(input, reference logits)] for two informative inputs)."""
    cache: dict[str, tuple[Path, list[tuple[np.ndarray, np.ndarray]]]] = {}

    def get(name: str):
        if name in cache:
            return cache[name]
        path = torchvision_onnx(name)
        seen = []
        chosen: list[tuple[np.ndarray, np.ndarray]] = []
        for kind, seed in CANDIDATES:
            x = imagenet_input(seed, kind)
            ref = ort_reference(path, {"input": x})["output"]
            tol = RTOL * float(np.abs(ref).max())
            seen.append(f"{kind}{seed}: top-1 {int(ref.argmax())} margin {_margin(ref):.2g} "
                        f"std {float(ref.std()):.2g}")
            if ref.std() <= 1e-2 or _margin(ref) <= CLEAR_MARGIN * tol:
                continue
            if not chosen or int(ref.argmax()) != int(chosen[0][1].argmax()):
                chosen.append((x, ref))
            if len(chosen) == 2:
                break
        # the reference must be informative, or any wrong kernel could match it
        assert len(chosen) == 2, (
            f"{name}: degenerate reference: no two inputs with different, clear top-1s and logit "
            f"std > 1e-2 among {'; '.join(seen)}")
        cache[name] = (path, chosen)
        return cache[name]

    return get


def _run_native(art: Path, x: np.ndarray) -> np.ndarray:
    from neo.runtime import Model

    with Model(art, check=True) as m:  # checked mode: an out-of-bounds write fails the run
        assert m.input_names == ["input"] and m.output_names == ["output"]
        (out,) = m.run(x)
    return out


def _run_artifact(art: Path, x: np.ndarray) -> np.ndarray:
    from neo.run import run_artifact

    names, outs, info = run_artifact(art, {"input": x}, check=True)
    assert names == ["output"]
    assert info["arch"] == "aarch64"
    return outs[0]


def _run_cli(art: Path, x: np.ndarray, tmp: Path) -> np.ndarray:
    np.save(tmp / "x.npy", x)
    proc = subprocess.run(
        [sys.executable, "-m", "neo", "run", str(art), "--input", f"input={tmp / 'x.npy'}",
         "--output", str(tmp / "out.npz"), "--json", "--check"],
        capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"neo run failed ({proc.returncode}): {proc.stderr}"
    res = json.loads(proc.stdout)
    assert res["status"] == "ok" and res["emulated"] is True, res
    with np.load(tmp / "out.npz") as z:
        assert list(z.keys()) == ["output"]
        return z["output"]


def assert_matches_reference(out: np.ndarray, ref: np.ndarray, what: str) -> None:
    assert out.shape == ref.shape and out.dtype == ref.dtype, (
        f"{what}: got {out.dtype}{out.shape}, expected {ref.dtype}{ref.shape}")
    assert np.isfinite(out).all(), f"{what}: {int((~np.isfinite(out)).sum())} non-finite outputs"
    err = np.abs(out.astype(np.float64) - ref)
    tol = RTOL * float(np.abs(ref).max())
    worst = int(err.argmax())
    assert err.max() <= tol, (
        f"{what}: max abs error {err.max():.3g} > {tol:.3g} (1e-4 * max|ref|) at class {worst}: "
        f"got {out.ravel()[worst]:.6g}, onnxruntime {ref.ravel()[worst]:.6g}; "
        f"{int((err > tol).sum())} of {err.size} logits off; mean abs error {err.mean():.3g}")
    assert int(out.argmax()) == int(ref.argmax()), (
        f"{what}: top-1 {int(out.argmax())}, onnxruntime {int(ref.argmax())}")


# one pytest-xdist worker per torchvision model: its export and reference run once
@pytest.mark.parametrize(("name", "target"), [
    pytest.param(n, t, id=f"{n}-{t}", marks=pytest.mark.xdist_group(f"torchvision-{n}"))
    for n, t in CASES])
def test_torchvision_model_matches_onnxruntime(name, target, references, compile_cached,
                                               require_qemu, tmp_path):
    require_qemu(ARCH[target])  # before compiling: a skip (locally) should cost nothing
    if target == "ml_c5" and not cpu_has_avx512():
        pytest.skip("ml_c5 code is AVX-512: this CPU cannot run it")
    path, inputs = references(name)
    art = compile_cached(path, target, shape={"input": [1, 3, 224, 224]})
    meta = json.loads((art / "compiled.meta").read_text())
    assert meta["target"]["arch"] == ARCH[target]
    assert meta["inputs"] == [{"name": "input", "dtype": "float32", "shape": [1, 3, 224, 224]}]
    assert meta["outputs"] == [{"name": "output", "dtype": "float32", "shape": [1, 1000]}]
    for i, (x, ref) in enumerate(inputs):
        if ARCH[target] == "x86_64":
            out = _run_native(art, x)
        elif target == "arm64":
            out = _run_artifact(art, x)
        else:
            out = _run_cli(art, x, tmp_path)
        assert_matches_reference(out, ref, f"{name} on {target}, input {i}")
