"""References, compiled runs and the verdict for one fuzzed graph.

References: the IR's numpy interpreter on the imported graph in float32 (`i32`) and the same graph
rebuilt in float64 (`f64`, the reference), and onnxruntime (graph optimizations off). neo is
compiled per `Config` (opt-level x vector width: w128/w256/w512 are the AVX2 target with 4-, 8- or
16-lane float vectors, 512 legalized into ymm pairs; avx512 is native AVX-512 code, ml_c5's CPU;
arm64 runs under qemu) and run by the artifact's own neo-run in a subprocess in checked mode, so a
crash or an out-of-bounds write is a verdict, not the end of the fuzzer.

Tolerance, per element, against the float64 reference r of one output:
    |got - r| <= ATOL * max|r| + RTOL * |r| + COND * c
c is how much float32 rounding can move that element: the largest of |i32 - r| and, over two
runs of the float64 graph with the output of every rounding op (arithmetic, not data movement
or max/min) perturbed by a random +-1 float32 ulp, |perturbed - r|. Where a chain cancels (a
difference of nearly equal values, a normalization of a near-constant row) every float32
implementation loses accuracy, and c measures by how much. Far from such spots the first two
terms decide: 2e-5 of the output's magnitude (small outputs near zero are judged against the
scale of the whole tensor, not their own) and 1e-4 relative.

onnxruntime is compared to the float64 reference with the same rule. It is itself inexact in
places (its vectorized sigmoid/tanh/exp lose relative accuracy far from 0), so a disagreement of
onnxruntime alone is arbitrated by the ONNX reference evaluator: if that one agrees with neo's
float64 reference, onnxruntime was inexact (counted, not a failure); if it agrees with
onnxruntime, neo's frontend or IR reference is wrong (`reference` failure).
"""
from __future__ import annotations

import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from neo import ir
from neo.ir.interpreter import interpret
from neo.ir.registry import run_reference
from neo.ir.types import np_dtype

from .graphgen import ORT_AMBIGUOUS, GraphSpec, Invalid, realize

ATOL, RTOL, COND = 2e-5, 1e-4, 16.0
LEVELS = (0, 1, 2, 3)
WIDTHS = ("w128", "w256", "w512", "avx512")
RUN_TIMEOUT = 120.0  # seconds per neo-run; qemu is slow
BUILD_TIMEOUT = 600.0  # seconds per compile


@dataclass(frozen=True)
class Config:
    level: int
    width: str  # w128, w256, w512, avx512, arm64
    threads: int = 2  # the runtime's threads = tasks per kernel (the static row split)

    def __str__(self) -> str:
        return f"O{self.level}-{self.width}" + (f"-t{self.threads}" if self.threads != 2 else "")

    @staticmethod
    def parse(text: str) -> Config:
        m = re.fullmatch(r"O([0-3])-(w128|w256|w512|avx512|arm64)(?:-t([1-9]))?", text.strip())
        if not m:
            raise ValueError(f"config {text!r}: expected O<level>-<width>[-t<threads>], e.g. "
                             "O2-w512 or O3-avx512-t3")
        return Config(int(m.group(1)), m.group(2), int(m.group(3) or 2))


THREADS = (2, 1, 3, 5)


def all_configs() -> list[Config]:
    """Every (opt-level, width), each at a thread count that cycles so that every level and
    every width runs at each of THREADS."""
    return [Config(lv, w, THREADS[(lv + i) % len(THREADS)])
            for lv in LEVELS for i, w in enumerate(WIDTHS)]


def cpu_has_avx512() -> bool:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return False
    return {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= set(flags)


def can_run(cfg: Config) -> bool:
    if cfg.width == "avx512":
        return cpu_has_avx512()
    if cfg.width == "arm64":
        from neo.codegen.toolchain import qemu_command

        return qemu_command("aarch64") is not None
    return True


def target_for(width: str):
    from neo.targets import get_target

    if width == "arm64":
        return get_target("arm64")
    if width == "avx512":
        return replace(get_target("ml_c5"), name="avx512")
    return replace(get_target("x86_64"), vector_bits=int(width[1:]))


# -- verdicts ------------------------------------------------------------------------------------
@dataclass
class Failure:
    # frontend, pass, codegen, compiler-crash, crash, oob-write, runtime, timeout, wrong, nan,
    # reference
    kind: str
    config: Config | None
    message: str

    def line(self) -> str:
        return f"[{self.kind}] {self.config or '-'}: {self.message}"

    def key(self) -> str:
        """What minimization must preserve: the kind, and for errors their message's shape."""
        if self.kind in ("frontend", "pass", "codegen", "runtime"):
            words = [w for w in re.split(r"[\s:,()'\"]+", self.message) if w
                     and not re.search(r"\d", w)]
            return f"{self.kind}:{' '.join(words[:8])}"
        return self.kind


@dataclass
class Outcome:
    failures: list[Failure] = field(default_factory=list)
    configs: list[Config] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    worst: float = 0.0  # largest error / tolerance of a passing comparison
    seconds: float = 0.0


# -- references ----------------------------------------------------------------------------------
def to_float64(g: ir.Graph) -> ir.Graph:
    """The graph with every float32 input, constant and cast target made float64."""
    new = ir.Graph(g.name)
    m: dict[int, ir.Value] = {}

    def get(v: ir.Value) -> ir.Value:
        if id(v) not in m:
            assert v.is_const, v
            data = v.data.astype(np.float64) if v.dtype == "float32" else v.data
            m[id(v)] = new.const(data, v.name)
        return m[id(v)]

    for v in g.inputs:
        m[id(v)] = new.input(v.name, v.shape, "float64" if v.dtype == "float32" else v.dtype)
    for n in g.nodes:
        attrs = dict(n.attrs)
        if n.op == "cast" and attrs.get("to") == "float32":
            attrs["to"] = "float64"
        node = new.add(n.op, [get(v) for v in n.inputs], attrs, n.name,
                       out_names=[o.name for o in n.outputs])
        for o, no in zip(n.outputs, node.outputs):
            m[id(o)] = no
    new.outputs = [get(v) for v in g.outputs]
    new.output_names = g.out_names()
    return new


def interpret_all(g: ir.Graph, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every value of the graph (inputs, node outputs) by name, from the numpy references."""
    env: dict[int, np.ndarray] = {}
    out: dict[str, np.ndarray] = {}
    for v in g.inputs:
        env[id(v)] = np.asarray(feeds[v.name]).astype(np_dtype(v.dtype))
        out[v.name] = env[id(v)]
    for n in g.nodes:
        args = [v.data if v.is_const else env[id(v)] for v in n.inputs]
        for o, a in zip(n.outputs, run_reference(n.op, n.attrs, args)):
            env[id(o)] = np.asarray(a).astype(np_dtype(o.dtype), copy=False)
            out[o.name] = env[id(o)]
    return out


def _feeds64(feeds):
    return {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in feeds.items()}


def import_graph(model):
    from neo.frontends.onnx import import_onnx

    return import_onnx(model)


def numerically_sound(spec: GraphSpec) -> bool:
    """Every value finite and below 1e5 in float64, every output informative (not constant)."""
    try:
        r = realize(spec)
    except Invalid:
        return False
    try:
        g = import_graph(r.model)
    except Exception:  # noqa: BLE001 - the oracle reports frontend failures; keep the graph
        return True
    try:
        with np.errstate(all="ignore"):
            vals = interpret_all(to_float64(g), _feeds64(r.feeds))
    except Exception:  # noqa: BLE001 - a reference that fails on a valid graph is a finding
        return True
    for a in vals.values():
        if a.dtype.kind == "f" and a.size and not (np.isfinite(a).all() and np.abs(a).max() < 1e5):
            return False
    for v in g.outputs:
        a = vals.get(v.name)
        if a is None or a.size <= 1 or a.dtype.kind != "f":
            continue
        scale = float(np.abs(a).max())
        if scale < 1e-6 or float(np.ptp(a)) < 1e-6 * scale:
            return False
    return True


@dataclass
class References:
    names: list[str]
    f64: list[np.ndarray]
    cond: list[np.ndarray]  # how far float32 rounding can move each element (see the top)
    ort: list[np.ndarray] | None


# Ops whose float output is exact (data movement, selections, max/min, sign flips): never
# perturbed, so that the comparisons and roundings the generator applies to exact values stay
# exact in the perturbed runs too.
EXACT_OPS = frozenset({
    "reshape", "transpose", "slice", "pad", "concat", "gather", "gather_elements", "gather_nd",
    "expand", "relu", "abs", "neg", "max_pool", "reduce_max", "reduce_min", "maximum", "minimum",
    "clip", "where", "cast", "copy", "floor", "ceil", "round", "sign", "scatter_elements",
    "scatter_nd"})
ULP32 = 2.0 ** -23


def interpret_perturbed(g: ir.Graph, feeds: dict[str, np.ndarray], seed: int) -> list[np.ndarray]:
    """The graph's outputs with every rounding op's float output moved by a random +-1 float32
    ulp (relative): a float32 implementation's rounding, propagated."""
    rng = np.random.default_rng(seed)
    env: dict[int, np.ndarray] = {id(v): np.asarray(feeds[v.name]) for v in g.inputs}

    def get(v):
        return v.data if v.is_const else env[id(v)]

    for n in g.nodes:
        outs = run_reference(n.op, n.attrs, [get(v) for v in n.inputs])
        for o, a in zip(n.outputs, outs):
            a = np.asarray(a).astype(np_dtype(o.dtype), copy=False)
            if a.dtype.kind == "f" and n.op not in EXACT_OPS and not (
                    n.op == "resize" and n.attrs.get("mode") == "nearest"):
                a = a * (1 + ULP32 * rng.uniform(-1, 1, a.shape))
            env[id(o)] = a
    return [get(v) for v in g.outputs]


def run_onnxruntime(model, feeds) -> list[np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 4
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def run_reference_evaluator(model, feeds) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    return [np.asarray(a) for a in ReferenceEvaluator(model).run(None, feeds)]


# -- comparison ----------------------------------------------------------------------------------
@dataclass
class Diff:
    ok: bool
    ratio: float  # max error / tolerance
    text: str


def compare(got: np.ndarray, f64: np.ndarray, cond: np.ndarray) -> Diff:
    got = np.asarray(got)
    if got.shape != f64.shape:
        return Diff(False, np.inf, f"shape {got.shape}, reference {f64.shape}")
    ref = f64.astype(np.float64)
    g = got.astype(np.float64)
    bad_nan = ~np.isfinite(g) & np.isfinite(ref)
    if bad_nan.any():
        i = tuple(int(t) for t in np.argwhere(bad_nan)[0])
        return Diff(False, np.inf, f"{int(bad_nan.sum())} of {g.size} non-finite, first at {i}: "
                                   f"got {got[i]}, reference {ref[i]:.6g}")
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    tol = ATOL * scale + RTOL * np.abs(ref) + COND * cond + 1e-30
    err = np.abs(g - ref)
    ratio = err / tol
    worst = float(ratio.max()) if ratio.size else 0.0
    if worst <= 1.0:
        return Diff(True, worst, "")
    i = tuple(int(t) for t in np.unravel_index(int(np.argmax(ratio)), ratio.shape))
    nbad = int((ratio > 1).sum())
    return Diff(False, worst, f"{nbad} of {g.size} elements off; max |err| {err.max():.3g} "
                              f"= {err.max() / max(scale, 1e-30):.3g} of max|ref| {scale:.3g}; "
                              f"worst at {i}: got {g[i]:.7g}, reference {ref[i]:.7g} "
                              f"(float32 rounding moves it by {float(cond[i]):.3g})")


# -- compiling and running neo ---------------------------------------------------------------------
def build(model, cfg: Config, out: Path):
    """Compile `model` for cfg into `out`; raises with the stage ("pass"/"codegen") attached."""
    from neo.codegen.build import build_artifact
    from neo.passes import run_pipeline

    g = import_graph(model)
    try:
        g = run_pipeline(g, cfg.level, debug=True)
    except Exception as e:
        raise StageError("pass", e) from e
    target = target_for(cfg.width)
    meta = {"compiler": "neo fuzz", "framework": "onnx",
            "target": {"name": target.name, "arch": target.arch, "triple": target.triple},
            "inputs": [{"name": v.name, "dtype": v.dtype, "shape": list(v.shape)}
                       for v in g.inputs],
            "outputs": [{"name": n, "dtype": v.dtype, "shape": list(v.shape)}
                        for n, v in zip(g.out_names(), g.outputs)]}
    try:
        build_artifact(g, target, out, meta, cfg.level)
    except Exception as e:
        raise StageError("codegen", e) from e


class StageError(Exception):
    def __init__(self, stage: str, error: Exception):
        super().__init__(f"{type(error).__name__}: {error}")
        self.stage = stage


class Builder:
    """The compiler in a process of its own (fuzz/builder.py: started once, started again after
    it dies), so that an LLVM assertion (llvmlite is built with them) or a crash in codegen is a
    `compiler-crash` verdict instead of the end of the fuzzer."""

    def __init__(self):
        self.proc = None

    def _start(self) -> None:
        import os
        import subprocess
        import sys

        tests = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (tests, os.environ.get("PYTHONPATH", "")) if p)}
        self.proc = subprocess.Popen([sys.executable, "-m", "fuzz.builder"], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def _stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            f.close()
        self.proc = None
        return code

    def build(self, model, cfg: Config, out: Path) -> Failure | None:
        import pickle
        import select
        import signal

        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                self._stop()
            self._start()
        try:
            pickle.dump((model.SerializeToString(), cfg.level, cfg.width, str(out)),
                        self.proc.stdin)
            self.proc.stdin.flush()
            ready, _, _ = select.select([self.proc.stdout], [], [], BUILD_TIMEOUT)
            if not ready:
                self._stop()
                return Failure("compiler-crash", cfg, f"the compiler ran over {BUILD_TIMEOUT:g} s")
            stage, msg = pickle.load(self.proc.stdout)
        except (EOFError, BrokenPipeError, pickle.UnpicklingError):
            code = self._stop()
            how = (f"died of {signal.Signals(-code).name}" if code is not None and code < 0
                   else f"exited with {code}")
            return Failure("compiler-crash", cfg, f"the compiler {how} (an LLVM assertion or a "
                                                  "crash in codegen)")
        return None if stage == "ok" else Failure(stage, cfg, msg)


_BUILDER = Builder()


def build_isolated(model, cfg: Config, out: Path) -> Failure | None:
    return _BUILDER.build(model, cfg, out)


def run_config(model, feeds, cfg: Config, work: Path) -> tuple[list[np.ndarray] | None,
                                                                Failure | None]:
    from neo.errors import NeoRuntimeError
    from neo.run import run_artifact

    out = work / str(cfg)
    fail = build_isolated(model, cfg, out)
    if fail is not None:
        return None, fail
    try:
        _, outs, _ = run_artifact(out, feeds, threads=cfg.threads, check=True,
                                  timeout=RUN_TIMEOUT)
    except NeoRuntimeError as e:
        msg = _one_line(str(e))
        kind = ("crash" if "crashed with SIG" in msg or "died of SIG" in msg else
                "oob-write" if "checked mode" in msg else
                "timeout" if "did not finish" in msg else "runtime")
        return None, Failure(kind, cfg, msg)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return outs, None


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) < 400 else text[:397] + "..."


def references(model, feeds) -> tuple[References | None, Failure | None, list[str]]:
    notes: list[str] = []
    try:
        g = import_graph(model)
    except Exception as e:  # noqa: BLE001
        from neo.errors import UnsupportedModelError

        if isinstance(e, UnsupportedModelError):
            notes.append(f"unsupported: {_one_line(str(e))}")
            return None, None, notes
        return None, Failure("frontend", None, _one_line(f"{type(e).__name__}: {e}")), notes
    names = g.out_names()
    try:
        with np.errstate(all="ignore"):
            i32 = [np.asarray(a) for a in interpret(g, feeds)]
            g64, feeds64 = to_float64(g), _feeds64(feeds)
            f64 = [np.asarray(a) for a in interpret(g64, feeds64)]
            cond = [np.asarray(np.abs(a.astype(np.float64) - f)) if f.dtype.kind == "f"
                    else np.zeros(f.shape) for a, f in zip(i32, f64)]
            for seed in (1, 2):
                for c, a, f in zip(cond, interpret_perturbed(g64, feeds64, seed), f64):
                    if f.dtype.kind == "f":
                        np.maximum(c, np.abs(np.asarray(a, np.float64) - f), out=c)
    except Exception as e:  # noqa: BLE001
        return None, Failure("reference", None, _one_line(f"interpreter: {type(e).__name__}: "
                                                          f"{e}")), notes
    try:
        ort = run_onnxruntime(model, feeds)
    except Exception as e:  # noqa: BLE001
        notes.append(f"onnxruntime: {_one_line(str(e))[:200]}")
        ort = None
    return References(names, f64, cond, ort), None, notes


def check_references(model, feeds, refs: References) -> tuple[list[Failure], list[str]]:
    """onnxruntime against the float64 reference; the ONNX reference evaluator arbitrates."""
    if refs.ort is None:
        return [], []
    why = {p.key: p.value for p in model.metadata_props}.get(ORT_AMBIGUOUS)
    if why:
        return [], [f"onnxruntime not compared: {why}"]
    fails, notes = [], []
    evaluated = None
    for name, o, f, i in zip(refs.names, refs.ort, refs.f64, refs.cond):
        d = compare(o, f, i)
        if d.ok:
            continue
        if evaluated is None:
            try:
                evaluated = run_reference_evaluator(model, feeds)
            except Exception as e:  # noqa: BLE001
                evaluated = str(e)
        if isinstance(evaluated, str):
            fails.append(Failure("reference", None, f"output {name}: onnxruntime {d.text}; the "
                                 f"ONNX reference evaluator failed: {_one_line(evaluated)[:150]}"))
            continue
        k = refs.names.index(name)
        de = compare(evaluated[k], f, i)
        if de.ok:
            notes.append(f"onnxruntime inexact on {name} ({d.ratio:.3g} x tolerance); the ONNX "
                         "reference evaluator agrees with neo's float64 reference")
        else:
            fails.append(Failure("reference", None, f"output {name}: neo's IR reference differs "
                                 f"from onnxruntime ({d.text}) and from the ONNX reference "
                                 f"evaluator ({de.text})"))
    return fails, notes


def check_model(model, feeds, configs: list[Config], work: Path | None = None,
                use_ort: bool = True, stop_early: bool = False) -> Outcome:
    t0 = time.perf_counter()
    res = Outcome()
    refs, fail, notes = references(model, feeds)
    res.notes += notes
    if fail is not None:
        res.failures.append(fail)
    if refs is None:
        res.seconds = time.perf_counter() - t0
        return res
    if use_ort:
        fails, notes = check_references(model, feeds, refs)
        res.failures += fails
        res.notes += notes
    own = work is None
    work = Path(tempfile.mkdtemp(prefix="neo-fuzz-")) if own else work
    try:
        for cfg in configs:
            if not can_run(cfg):
                continue
            res.configs.append(cfg)
            outs, fail = run_config(model, feeds, cfg, work)
            if fail is not None:
                res.failures.append(fail)
            else:
                for name, o, f, i in zip(refs.names, outs, refs.f64, refs.cond):
                    d = compare(o, f, i)
                    if d.ok:
                        res.worst = max(res.worst, d.ratio)
                    else:
                        kind = "nan" if d.ratio == np.inf and "non-finite" in d.text else "wrong"
                        res.failures.append(Failure(kind, cfg, f"output {name}: {d.text}"))
            if stop_early and res.failures:
                break
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
    res.seconds = time.perf_counter() - t0
    return res


def check_spec(spec: GraphSpec, configs: list[Config], **kw) -> Outcome:
    r = realize(spec)
    return check_model(r.model, r.feeds, configs, **kw)
