"""Shared fixtures: informative test models, a per-session compile cache, qemu gating.

- `torchvision_onnx(name)`: a torchvision classifier (weights=None, fixed seed) with calibrated
  BatchNorm statistics, exported to ONNX once per session.
- `small_cnn`: a small Conv+Relu+GlobalAveragePool+Gemm+Softmax ONNX model built with onnx.helper.
- `compile_cached(model, target, ...)`: `compile_model` once per (model, target, options) per session.
- `require_qemu(arch)`: the command prefix that runs an `arch` binary here; skips locally when the
  emulator is missing, fails in CI (CI=true), where a skip would hide a whole target.
- neo's own cache (objects, runtime builds) lives in a per-session directory, so tests neither read
  stale state from nor write into the user's ~/.cache/neo; zig keeps its usual global cache.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TESTS_DIR = Path(__file__).resolve().parent
# The tests import neo (installed, editable: `pip install -e .`) and onnx_helpers from here,
# however pytest is started (another cwd, no ini file, python -m pytest or plain pytest).
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

# triton (the GPU compiler torch installs beside itself) segfaults when it is imported into a
# process that has loaded TensorFlow (`import tensorflow; import triton`: SIGSEGV in its
# extension's module init), and torch imports it lazily (torch._dynamo, under torch.onnx.export)
# in whichever xdist worker ran a TensorFlow/TFLite test before. Nothing here runs on a GPU:
# torch sees it as not installed.
sys.modules.setdefault("triton", None)

from neo.codegen.toolchain import missing_emulator_hint, qemu_command
from neo.ir.target import ARCHES

# Target arch names as the CLI spells them -> the toolchain's names.
ARCH_ALIASES = {"arm64": "aarch64", **{name: name for name in ARCHES}}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_qemu_for(arch: str) -> list[str]:
    """Command prefix running Linux binaries of `arch` here ([] on the host's arch).

    `arch` is a target name (every arch names one: aarch64, riscv64; also arm64, rv64gcv): qemu
    gets the CPU that target's code needs (RISC-V vectors on for rv64gcv, off for riscv64, so
    vector instructions in scalar code trap).
    Locally a missing emulator skips the test; in CI it fails, because CI installs qemu-user-static
    and a silent skip there would leave a whole target untested.
    """
    from neo.targets import get_target

    target = get_target(arch)
    arch = target.arch
    cmd = qemu_command(arch, target.cpu, target.features)
    if cmd is None:
        msg = (f"cannot run {arch} binaries here: qemu-user-static or the {arch} cross libc is "
               f"missing ({missing_emulator_hint(arch)}; scripts/install-system.sh installs all)")
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    return cmd


def require_module(name: str):
    """Import a test dependency: locally a missing one skips the test; in CI (which installs
    every test dependency) it fails, so that a skip never hides a whole group of tests."""
    if in_ci():
        import importlib

        return importlib.import_module(name)
    return pytest.importorskip(name)


@pytest.fixture(scope="session")
def require_qemu() -> Callable[[str], list[str]]:
    return require_qemu_for


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240521)


# -- neo's cache ---------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def neo_cache_dir(tmp_path_factory: pytest.TempPathFactory):
    """neo's cache (LLVM objects, runtime builds) in one directory for the whole session.

    Repeated compiles of a model within the session hit it; nothing leaks in from earlier runs.
    zig's own cache (libc stubs, ~10 s to rebuild per arch) stays where it was.
    """
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    zig_cache = os.environ.get("ZIG_GLOBAL_CACHE_DIR") or str(Path(base) / "zig")
    cache = tmp_path_factory.mktemp("xdg-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(cache))
        mp.setenv("ZIG_GLOBAL_CACHE_DIR", zig_cache)
        yield cache / "neo"


@pytest.fixture(scope="session")
def compile_cached(tmp_path_factory: pytest.TempPathFactory):
    """compile(model, target, opt_level=3, shape=None) -> artifact dir, compiled once per session.

    Tests must not modify the returned directory (copy it first).
    """
    from neo.compiler import CompileOptions, compile_model

    root = tmp_path_factory.mktemp("artifacts")
    done: dict[tuple, Path] = {}

    def compile_(model: Path, target: str, *, shape: dict | None = None, opt_level: int = 3,
                 framework: str = "onnx") -> Path:
        model = Path(model)
        key = (str(model), target, json.dumps(shape, sort_keys=True), opt_level, framework)
        if key not in done:
            out = root / f"{model.stem}-{target}-O{opt_level}-{len(done)}"
            compile_model(CompileOptions(framework=framework,
                                         shape=None if shape is None else json.dumps(shape),
                                         target=target, output=out, model=str(model),
                                         opt_level=opt_level, workdir=model.parent))
            done[key] = out
        return done[key]

    return compile_


# -- reference outputs ---------------------------------------------------------------------------


def ort_outputs(model_path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every output of the ONNX model under onnxruntime (the oracle), by name."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


@pytest.fixture(scope="session")
def ort_reference() -> Callable[[Path, dict], dict[str, np.ndarray]]:
    return ort_outputs


@pytest.fixture(scope="session")
def imagenet_input() -> Callable[..., np.ndarray]:
    return imagenet_like


def imagenet_like(seed: int, kind: str, shape: tuple[int, ...] = (1, 3, 224, 224)) -> np.ndarray:
    """An input distributed like an ImageNet-normalized image (mean ~0, std ~1 per channel).

    "noise": white noise. "smooth": 8x8-pixel blocks of one value per channel (large uniform
    regions and edges, as in photos) plus a little noise.
    """
    r = np.random.default_rng(seed)
    if kind == "noise":
        return r.standard_normal(shape, dtype=np.float32)
    n, c, h, w = shape
    cells = r.standard_normal((n, c, -(-h // 8), -(-w // 8)), dtype=np.float32)
    img = np.repeat(np.repeat(cells, 8, axis=2), 8, axis=3)[:, :, :h, :w]
    return (0.95 * img + 0.3 * r.standard_normal(shape, dtype=np.float32)).astype(np.float32)


# -- test models ---------------------------------------------------------------------------------


def _calibrate_batchnorm(model, rounds: int = 3, batch: int = 4, size: int = 224) -> int:
    """Give every BatchNorm the batch statistics of random data (an exact average: momentum None).

    With the default running stats (mean 0, var 1) a deep random network's activations blow up or
    vanish layer after layer and the logits come out near-constant, which any wrong kernel matches.
    """
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.momentum = None
        bn.reset_running_stats()
    model.train()
    with torch.no_grad():
        for i in range(rounds):
            model(torch.from_numpy(imagenet_like(1000 + i, "noise", (batch, 3, size, size))))
    model.eval()
    return len(bns)


def _center_classifier(model) -> None:
    """Make each class's weights sum to zero in a classifier that reads non-negative features.

    squeezenet has no BatchNorm; its last 1x1 conv reads post-ReLU features whose large common mode
    (the same for every input) decides the top-1 of a random network: class 930 for any input.
    Subtracting each row's mean leaves the logits driven by how the features differ between inputs.
    """
    import torch

    conv = model.classifier[1]
    with torch.no_grad():
        conv.weight -= conv.weight.mean(dim=1, keepdim=True)


_TORCHVISION_FIXUPS = {"squeezenet1_0": _center_classifier, "squeezenet1_1": _center_classifier}


@pytest.fixture(scope="session")
def torchvision_onnx(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """name -> an ONNX file of torchvision.models.<name>(weights=None), calibrated; one per name.

    Input "input" [1, 3, 224, 224], output "output" [1, 1000], opset 17.
    """
    root = tmp_path_factory.mktemp("torchvision")
    made: dict[str, Path] = {}

    def export(name: str) -> Path:
        if name in made:
            return made[name]
        import warnings

        torch = require_module("torch")
        torchvision = require_module("torchvision")

        torch.manual_seed(0)
        model = getattr(torchvision.models, name)(weights=None)
        _calibrate_batchnorm(model)
        if name in _TORCHVISION_FIXUPS:
            _TORCHVISION_FIXUPS[name](model)
        model.eval()
        path = root / f"{name}.onnx"
        x = torch.from_numpy(imagenet_like(0, "noise"))
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(model, x, str(path), input_names=["input"], output_names=["output"],
                              dynamo=False, opset_version=17)
        made[name] = path
        return path

    return export


@dataclass(frozen=True)
class SmallCnn:
    """The small CNN test model: one input, one output (class probabilities)."""

    path: Path
    input_name: str
    input_shape: tuple[int, ...]
    output_name: str
    output_shape: tuple[int, ...]

    @property
    def shape_json(self) -> str:
        return json.dumps({self.input_name: list(self.input_shape)})

    def sample(self, seed: int) -> np.ndarray:
        """Noise around a per-channel level: global average pooling of plain white noise gives
        nearly the same features (and top-1) for every input; the channel levels differ."""
        r = np.random.default_rng(seed)
        level = r.standard_normal((1, self.input_shape[1], 1, 1))
        return (r.standard_normal(self.input_shape) + level).astype(np.float32)

    def reference(self, x: np.ndarray) -> np.ndarray:
        return ort_outputs(self.path, {self.input_name: x})[self.output_name]


def small_cnn_model():
    """Conv(3->16, 3x3, pad 1) + Relu + GlobalAveragePool + Flatten + Gemm(16->10) + Softmax."""
    from onnx import helper
    from onnx_helpers import make_model

    r = np.random.default_rng(7)
    weights = {
        "conv.weight": (r.standard_normal((16, 3, 3, 3)) * 0.4).astype(np.float32),
        "conv.bias": (r.standard_normal(16) * 0.2).astype(np.float32),
        "fc.weight": (r.standard_normal((10, 16)) * 0.6).astype(np.float32),
        "fc.bias": (r.standard_normal(10) * 0.1).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["input", "conv.weight", "conv.bias"], ["conv"], name="conv",
                         pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc",
                         transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1),
    ]
    return make_model(nodes, [("input", np.float32, [1, 3, 32, 32])],
                      [("probs", np.float32, [1, 10])], weights, name="small_cnn")


@pytest.fixture(scope="session")
def small_cnn(tmp_path_factory: pytest.TempPathFactory) -> SmallCnn:
    import onnx

    model = small_cnn_model()
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("small_cnn") / "small_cnn.onnx"
    onnx.save(model, str(path))
    return SmallCnn(path, "input", (1, 3, 32, 32), "probs", (1, 10))


# Each process running the ONNX conformance module leaves its outcomes here; the main process
# merges them at the end of the run, writes build/conformance_counts.json and prints the counts.
OUTCOMES_DIR = REPO_ROOT / "build" / "conformance"


def pytest_sessionstart(session):
    if not hasattr(session.config, "workerinput"):  # the main process, before any worker
        import shutil

        shutil.rmtree(OUTCOMES_DIR, ignore_errors=True)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    files = sorted(OUTCOMES_DIR.glob("outcomes-*.json"))
    if not files:
        return
    outcomes: dict[str, str] = {}
    for f in files:
        outcomes.update(json.loads(f.read_text()))
    from test_onnx_conformance import summary_line, write_counts

    terminalreporter.write_sep("-", "ONNX node conformance")
    terminalreporter.write_line(summary_line(write_counts(outcomes)))


# -- vector widths -------------------------------------------------------------------------------
# Kernel tests run at every float vector width the targets use, whatever this machine's is: an
# x86-64-v3 (AVX2) target with 128-, 256- or 512-bit vectors (LLVM legalizes 512-bit vectors into
# ymm pairs on it), and, where the CPU has AVX-512, native 512-bit AVX-512 code (ml_c5's CPU).
VECTOR_WIDTHS = ("w128", "w256", "w512", "avx512")


def cpu_flags() -> set[str]:
    """This CPU's feature flags as Linux lists them (/proc/cpuinfo), empty where unknown."""
    try:
        return set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                        if line.startswith("flags")).split())
    except (OSError, StopIteration):
        return set()


def cpu_has_avx512() -> bool:
    """AVX-512 F/BW/DQ/VL on this CPU (skylake-avx512's set, what ml_c5 code uses)."""
    return {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= cpu_flags()


def width_target(width: str):
    """The x86 Target for one of VECTOR_WIDTHS; 'avx512' skips on a CPU without AVX-512."""
    from dataclasses import replace

    from neo.targets import get_target

    if width == "avx512":
        if not cpu_has_avx512():
            pytest.skip("native AVX-512 code needs an AVX-512 CPU (w512 runs the same kernels "
                        "legalized to AVX2)")
        return replace(get_target("ml_c5"), name="avx512")
    return replace(get_target("x86_64"), vector_bits=int(width[1:]))


@pytest.fixture(params=VECTOR_WIDTHS)
def vtarget(request):
    """An x86 Target at each vector width (see VECTOR_WIDTHS)."""
    return width_target(request.param)


def run_artifact_checked(path, feeds) -> list[np.ndarray]:
    """Run an artifact in-process on this machine with the runtime's checked mode."""
    from neo.runtime import Model

    with Model(str(path), check=True) as m:
        return m.run(feeds)
