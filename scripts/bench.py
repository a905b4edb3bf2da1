#!/usr/bin/env python3
"""neo against onnxruntime and PyTorch eager, on a fixed set of models, in one run.

For each model: export ONNX, compile it with `neo compile` twice (cold cache, then warm), time ours,
onnxruntime and PyTorch eager interleaved at each thread count, measure peak RSS of compiling and of
inference, artifact size and accuracy against onnxruntime. Writes a markdown report and the raw
results as JSON.

    python scripts/bench.py                              # everything (make bench)
    python scripts/bench.py --quick --models mlp --out /tmp/b.md

Timings on a shared machine drift 20-30% between runs, so every engine is timed in every round,
in a rotating order, and only ratios measured side by side in the same run are compared.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # `runtime` from this checkout, however the script is run

CNNS = ("resnet18", "resnet50", "mobilenet_v2", "squeezenet1_1")
ALL_MODELS = (*CNNS, "mlp", "transformer")
ENGINES = ("ours", "onnxruntime", "pytorch")
REL_ERR_LIMIT = 1e-4
MiB = 1 << 20


@dataclass(frozen=True)
class Settings:
    """How hard to measure; --quick trades precision for a run of seconds."""

    rounds: int
    batch_seconds: float  # wall time each engine gets per round
    min_iters: int
    max_iters: int
    warmup: int
    rss_runs: int

    @classmethod
    def make(cls, quick: bool, rounds: int | None) -> Settings:
        if quick:
            return cls(rounds or 2, 0.05, 2, 50, 1, 5)
        return cls(rounds or 5, 0.5, 3, 500, 3, 20)


# -- the models -----------------------------------------------------------------------------------


def image_like(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """ImageNet-normalized-looking input: 8x8 blocks of one value per channel plus a little noise
    (white noise alone makes a random network's top-1 nearly the same for every input)."""
    r = np.random.default_rng(seed)
    n, c, h, w = shape
    cells = r.standard_normal((n, c, -(-h // 8), -(-w // 8)), dtype=np.float32)
    img = np.repeat(np.repeat(cells, 8, axis=2), 8, axis=3)[:, :, :h, :w]
    return (0.95 * img + 0.3 * r.standard_normal(shape, dtype=np.float32)).astype(np.float32)


def calibrate_batchnorm(torch, model, rounds: int = 3, batch: int = 4) -> None:
    """BatchNorm statistics of random data (exact average: momentum None), so activations of a
    random-weight network neither explode nor vanish and the outputs stay informative."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.momentum = None
        bn.reset_running_stats()
    model.train()
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for _ in range(rounds):
            model(torch.randn(batch, 3, 224, 224, generator=g))
    model.eval()


def center_classifier(torch, model) -> None:
    """squeezenet's last conv reads non-negative features whose common mode picks the same class
    for every input; zero-mean class weights make its top-1 depend on the input."""
    conv = model.classifier[1]
    with torch.no_grad():
        conv.weight -= conv.weight.mean(dim=1, keepdim=True)


def build_model(torch, name: str):
    """(eval-mode module, input shape, input maker seed -> array)."""
    torch.manual_seed(0)
    if name in CNNS:
        import torchvision

        model = getattr(torchvision.models, name)(weights=None)
        calibrate_batchnorm(torch, model)
        if name.startswith("squeezenet"):
            center_classifier(torch, model)
        shape = (1, 3, 224, 224)
        return model.eval(), shape, lambda seed: image_like(seed, shape)
    if name == "mlp":
        nn = torch.nn
        model = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                              nn.Linear(1024, 10))
        shape = (1, 784)
    elif name == "transformer":
        layer = torch.nn.TransformerEncoderLayer(d_model=256, nhead=4, batch_first=True)
        model = torch.nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        shape = (1, 64, 256)
    else:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(ALL_MODELS)}")
    return (model.eval(), shape,
            lambda seed: np.random.default_rng(seed).standard_normal(shape, dtype=np.float32))


def export_onnx(torch, model, x: np.ndarray, path: Path) -> None:
    # The fused attention fast path traces to aten::_transformer_encoder_layer_fwd, which has no
    # ONNX export; the exporter needs the composite ops. PyTorch eager keeps its fast path.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(model, torch.from_numpy(x), str(path), input_names=["input"],
                              output_names=["output"], dynamo=False, opset_version=17)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


# -- subprocesses: wall time and peak RSS ---------------------------------------------------------


@dataclass
class Measured:
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    peak_rss_mb: float  # the largest RSS of the process or any descendant it waited for


# Runs argv[2:] and writes "exit_code max_rss_kb wall_s" to argv[1]. Linux carries a process's RSS
# high-water mark across fork and exec into the child's ru_maxrss, so a child of this (large, torch
# holding) process would report at least our own peak; a child of this small launcher reports its
# own (or the launcher's ~10 MB, whichever is larger).
_LAUNCHER = """
import os, sys, time
t = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - t
with open(sys.argv[1], "w") as f:
    f.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss} {wall}")
"""


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> Measured:
    """Run cmd; its wall time and peak RSS (Linux folds in the children it reaped: zig, clang)."""
    with tempfile.TemporaryDirectory(prefix="neo-bench-run-") as tmp:
        stats = Path(tmp) / "rusage"
        proc = subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, str(stats), *cmd], env=env,
                              cwd=REPO_ROOT, capture_output=True, check=False)
        if not stats.is_file():
            raise RuntimeError(f"could not run {cmd[0]}: {proc.stderr.decode(errors='replace')}")
        code, maxrss_kb, wall = stats.read_text().split()
    return Measured(int(code), proc.stdout.decode(errors="replace"),
                    proc.stderr.decode(errors="replace"), float(wall), int(maxrss_kb) / 1024)


def neo_command() -> list[str]:
    exe = Path(sys.executable).parent / "neo"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "neo"]


def zig_cache_dir() -> str:
    """zig's global cache as it is now: a fresh XDG_CACHE_HOME would move it too, and rebuilding
    zig's libc stubs is a once-per-machine cost, not part of compiling a model."""
    if os.environ.get("ZIG_GLOBAL_CACHE_DIR"):
        return os.environ["ZIG_GLOBAL_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "zig")


def unsupported_ops(error: str) -> str | None:
    """The op types listed in neo's 'The following operators are not implemented: ...' line."""
    m = re.search(r"not implemented: (.*)", error)
    if not m:
        return None
    ops = re.findall(r"(?:^|; )([^;()]+?) \(\d+ nodes?", m.group(1))
    return ", ".join(ops) if ops else m.group(1)


def compile_neo(onnx_path: Path, shape: tuple[int, ...], out: Path, cache_home: Path,
                target: str = "host") -> dict:
    env = dict(os.environ, XDG_CACHE_HOME=str(cache_home), ZIG_GLOBAL_CACHE_DIR=zig_cache_dir())
    cmd = [*neo_command(), "compile", str(onnx_path), "--framework", "onnx",
           "--shape", json.dumps({"input": list(shape)}), "--target", target,
           "--output", str(out), "--json"]
    r = run_measured(cmd, env)
    res: dict = {"exit_code": r.returncode, "wall_s": r.wall_s, "peak_rss_mb": r.peak_rss_mb}
    try:
        payload = json.loads(r.stdout)
    except ValueError:
        payload = {}
    if r.returncode == 0:
        res["neo"] = payload
        return res
    error = payload.get("error") or (r.stderr.strip().splitlines() or ["(no output)"])[-1]
    res["error"] = error
    ops = unsupported_ops(error) if r.returncode == 4 else None
    res["status"] = (f"unsupported: {ops}" if ops else
                     f"unsupported: {error}" if r.returncode == 4 else
                     f"compile failed (exit {r.returncode}): {error}")
    return res


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def rss_child(argv: list[str]) -> None:
    """`--rss-child ENGINE MODEL INPUT.npy THREADS RUNS`: load and run, nothing else imported."""
    engine, model, input_path, threads, runs = argv
    x = np.load(input_path)
    if engine == "ours":
        from neo.runtime import Model

        m = Model(model, num_threads=int(threads))
        for _ in range(int(runs)):
            m.run(x)
    elif engine == "onnxruntime":
        sess = ort_session(model, int(threads))
        name = sess.get_inputs()[0].name
        for _ in range(int(runs)):
            sess.run(None, {name: x})
    # else "baseline": the interpreter, numpy and the input alone, the floor under both
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def inference_rss(engine: str, model: Path, input_path: Path, threads: int, runs: int) -> float:
    r = run_measured([sys.executable, str(Path(__file__).resolve()), "--rss-child", engine,
                      str(model), str(input_path), str(threads), str(runs)])
    if r.returncode != 0:
        raise RuntimeError(f"{engine} inference child failed: {r.stderr.strip()[-500:]}")
    return r.peak_rss_mb


# -- latency --------------------------------------------------------------------------------------


def ort_session(path: Path | str, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


@dataclass
class Engine:
    name: str
    run: Callable[[], object]
    before: Callable[[], None] = lambda: None  # put process-wide settings in place for this engine
    iters: int = 1


def time_interleaved(engines: list[Engine], s: Settings) -> dict[str, dict]:
    """Each round, every engine runs one batch (one untimed run, then `iters` timed ones), in an
    order rotated every round, so load on the shared machine hits all engines alike."""
    for e in engines:
        e.before()
        for _ in range(s.warmup):
            e.run()
        t = time.perf_counter()
        e.run()
        one = max(time.perf_counter() - t, 1e-6)
        e.iters = int(min(s.max_iters, max(s.min_iters, round(s.batch_seconds / one))))
    samples: dict[str, list[float]] = {e.name: [] for e in engines}
    round_medians: dict[str, list[float]] = {e.name: [] for e in engines}
    for rnd in range(s.rounds):
        k = rnd % len(engines)
        for e in engines[k:] + engines[:k]:
            e.before()
            e.run()
            gc.collect()
            gc.disable()
            times = []
            try:
                for _ in range(e.iters):
                    t = time.perf_counter()
                    e.run()
                    times.append(time.perf_counter() - t)
            finally:
                gc.enable()
            samples[e.name] += times
            round_medians[e.name].append(float(np.median(times)) * 1000)
            time.sleep(0.03)  # let the engine's idle worker threads stop spinning
    out = {}
    for e in engines:
        ms = np.asarray(samples[e.name]) * 1000
        out[e.name] = {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
                       "min_ms": float(ms.min()), "runs": int(ms.size), "iters_per_round": e.iters,
                       "round_medians_ms": round_medians[e.name]}
    return out


def bench_latency(torch, model, x: np.ndarray, onnx_path: Path, art: Path | None, threads: int,
                  s: Settings) -> dict:
    engines, closers = [], []
    if art is not None:
        from neo.runtime import Model

        m = Model(art, num_threads=threads)
        closers.append(m.close)
        engines.append(Engine("ours", lambda: m.run(x)))
    sess = ort_session(onnx_path, threads)
    name = sess.get_inputs()[0].name
    engines.append(Engine("onnxruntime", lambda: sess.run(None, {name: x})))
    try:
        res = time_interleaved(engines, s)
    finally:
        for c in closers:
            c()
    if torch is not None:
        # PyTorch in a pass of its own, after: its OpenMP threads spin when idle and took a
        # core from whichever engine ran next in the same process (2 threads, mobilenet_v2:
        # ours/ORT per round 0.92-1.64 interleaved with it, 0.65-1.04 with its threads passive)
        xt = torch.from_numpy(x)

        def torch_run():
            with torch.inference_mode():
                return model(xt)

        res.update(time_interleaved(
            [Engine("pytorch", torch_run, lambda: torch.set_num_threads(threads))], s))
    if "ours" in res:
        per_round = [a / b for a, b in zip(res["ours"]["round_medians_ms"],
                                           res["onnxruntime"]["round_medians_ms"])]
        res["ours_over_ort"] = res["ours"]["median_ms"] / res["onnxruntime"]["median_ms"]
        res["ours_over_ort_per_round"] = per_round
    return res


# -- accuracy -------------------------------------------------------------------------------------


def accuracy(art: Path, onnx_path: Path, inputs: list[np.ndarray]) -> dict:
    from neo.runtime import Model

    sess = ort_session(onnx_path, 1)
    name = sess.get_inputs()[0].name
    worst, top1_ok, spread = 0.0, True, []
    with Model(art, num_threads=1) as m:
        for x in inputs:
            ref = sess.run(None, {name: x})[0]
            got = m.run(x)[0]
            worst = max(worst, float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30)))
            top1_ok &= bool(np.array_equal(got.argmax(axis=-1), ref.argmax(axis=-1)))
            spread.append(float(ref.std()))
    top1_differs = len({int(np.argmax(sess.run(None, {name: x})[0])) for x in inputs}) > 1
    return {"max_rel_err": worst, "top1_ok": top1_ok, "flag": worst > REL_ERR_LIMIT or not top1_ok,
            "reference_std": spread, "inputs": len(inputs), "reference_top1_varies": top1_differs}


# -- one model ------------------------------------------------------------------------------------


def bench_model(torch, name: str, work: Path, threads: list[int], s: Settings,
                log: Callable[[str], None], target: str = "host") -> dict:
    row: dict = {"model": name}
    model, shape, make_input = build_model(torch, name)
    x = make_input(0)
    inputs = [x, make_input(1), make_input(2)]
    row["input_shape"] = list(shape)
    mdir = work / name
    mdir.mkdir(parents=True, exist_ok=True)
    onnx_path = mdir / f"{name}.onnx"
    input_path = mdir / "input.npy"
    np.save(input_path, x)
    t = time.perf_counter()
    try:
        export_onnx(torch, model, x, onnx_path)
    except Exception as e:  # noqa: BLE001 - an exporter limitation is a result, not a crash of the run
        row["status"] = f"export failed: {type(e).__name__}: {str(e).splitlines()[0]}"
        log(f"  {row['status']}")
        return row
    row["export_s"] = time.perf_counter() - t
    row["onnx_bytes"] = onnx_path.stat().st_size

    cache = mdir / "xdg-cache"
    cold = compile_neo(onnx_path, shape, mdir / "artifact", cache, target)
    row["compile_cold"] = cold
    art: Path | None = None
    if cold["exit_code"] == 0:
        warm = compile_neo(onnx_path, shape, mdir / "artifact-warm", cache, target)
        row["compile_warm"] = warm
        art = mdir / "artifact"
        row["artifact_bytes"] = dir_bytes(art)
        row["status"] = "ok"
        log(f"  compile {cold['wall_s']:.1f} s cold, {warm['wall_s']:.2f} s warm, "
            f"peak RSS {cold['peak_rss_mb']:.0f} MB")
        row["accuracy"] = accuracy(art, onnx_path, inputs)
    else:
        row["status"] = cold["status"]
        log(f"  {row['status']}")

    row["threads"] = {}
    for n in threads:
        res = bench_latency(torch, model, x, onnx_path, art, n, s)
        res["rss_mb"] = {"onnxruntime": inference_rss("onnxruntime", onnx_path, input_path, n,
                                                      s.rss_runs)}
        if art is not None:
            res["rss_mb"]["ours"] = inference_rss("ours", art, input_path, n, s.rss_runs)
        row["threads"][str(n)] = res
        summary = ", ".join(f"{e} {res[e]['median_ms']:.2f} ms" for e in ENGINES if e in res)
        ratio = f", ours/ORT {res['ours_over_ort']:.2f}" if "ours_over_ort" in res else ""
        log(f"  {n} thread(s): {summary}{ratio}")
    return row


# -- the report -----------------------------------------------------------------------------------


def write_section(doc: Path, section: str, begin: str, end: str) -> None:
    """Put `section` (which starts with `begin` and ends with `end`) into the markdown file `doc`:
    in place of the one between those markers, else at the end. Each benchmark script keeps its
    own section of docs/BENCHMARKS.md this way."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    doc.write_text(text)


def vnni_info() -> tuple[bool, str]:
    """(whether the CPU has AVX-512 VNNI or AVX-VNNI, the int8 dot products neo's host target
    uses: "vnni + AMX tiles" where its int8 convs may take AMX)."""
    from neo.codegen.isa import has_amx_int8, int8_dot
    from neo.codegen.tuning import tuning_for
    from neo.targets import get_target

    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = set((re.search(r"^flags\s*:\s*(.*)$", text, re.MULTILINE) or ["", ""])[1].split())
    tun = tuning_for(get_target("host"))
    dots = int8_dot(tun) + (" + AMX tiles" if has_amx_int8(tun) else "")
    return bool({"avx512_vnni", "avx_vnni"} & flags), dots


def host_cpu() -> str:
    """LLVM's name for this CPU's microarchitecture (znver4, znver5, sapphirerapids): "AMD EPYC"
    names both a Zen 4 and a Zen 5, whose 512-bit units differ."""
    import llvmlite.binding as llvm

    return llvm.get_host_cpu_name()


def machine_kind() -> str:
    """This machine's kind (CPU model and microarchitecture, widest vector ISA) as a word:
    each kind keeps its own sections of docs/BENCHMARKS.md."""
    cpu = cpu_info()
    isa = cpu["isa"][-1] if cpu["isa"] else cpu["machine"]
    return re.sub(r"[^a-z0-9]+", "_", f"{cpu['model']} {isa}".lower()).strip("_")


def markers(name: str) -> tuple[str, str]:
    """The begin and end markers of benchmark `name`'s section for this machine kind."""
    key = f"{name}_{machine_kind()}"
    return f"<!-- bench_{key}:begin -->", f"<!-- bench_{key}:end -->"


def _cpuid_features() -> dict[str, bool]:
    import llvmlite.binding as llvm

    try:
        return dict(llvm.get_host_cpu_features())
    except RuntimeError:
        return {}


def cpu_info() -> dict:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.*)$", text, re.MULTILINE)
    flags_m = re.search(r"^flags\s*:\s*(.*)$", text, re.MULTILINE)
    flags = set(flags_m.group(1).split()) if flags_m else set()
    # what the processes see (CPUID, through LLVM): scripts/hide-avx512 hides AVX-512 and AMX
    # from onnxruntime and neo alike while /proc/cpuinfo still lists them
    seen = _cpuid_features()
    isa = [f for f in ("avx2", "avx512f", "amx_tile") if f in flags and seen.get(
        f.replace("_", "-"), True)]
    hidden = [f for f in ("avx512f", "amx_tile") if f in flags and f not in isa]
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    name = model.group(1).strip() if model else platform.processor() or "unknown"
    if hidden:
        name += " with " + "/".join(("amx" if f == "amx_tile" else f) for f in hidden) + " hidden"
    return {"model": f"{name} ({host_cpu()})", "uarch": host_cpu(),
            "isa": [("amx" if f == "amx_tile" else f) for f in isa], "cores": os.cpu_count(),
            "usable_cores": usable, "machine": platform.machine()}


def versions(torch) -> dict:
    import onnxruntime

    from neo import __version__

    v = {"python": platform.python_version(), "neo": __version__,
         "onnxruntime": onnxruntime.__version__, "numpy": np.__version__}
    if torch is not None:
        v["torch"] = torch.__version__
    return v


def _ms(res: dict, engine: str) -> str:
    if engine not in res:
        return "—"
    return f"{res[engine]['median_ms']:.2f} / {res[engine]['p90_ms']:.2f}"


def table_row(row: dict, n: int) -> str:
    res = row.get("threads", {}).get(str(n), {})
    ok = row.get("status") == "ok"
    cells = [row["model"], _ms(res, "ours") if ok else row.get("status", "—"),
             _ms(res, "onnxruntime"), _ms(res, "pytorch")]
    if ok:
        acc, cold, warm = row["accuracy"], row["compile_cold"], row["compile_warm"]
        rss = res.get("rss_mb", {})
        err = f"{acc['max_rel_err']:.1e}"
        cells += [f"**{res['ours_over_ort']:.2f}**",
                  f"{cold['wall_s']:.1f} / {warm['wall_s']:.2f}",
                  f"{cold['peak_rss_mb']:.0f}",
                  f"{rss.get('ours', 0):.0f} / {rss.get('onnxruntime', 0):.0f}",
                  f"{row['artifact_bytes'] / MiB:.1f}",
                  f"**{err} FLAG**" if acc["max_rel_err"] > REL_ERR_LIMIT else err,
                  "yes" if acc["top1_ok"] else "**NO**"]
    else:
        rss = res.get("rss_mb", {})
        ort_rss = f"— / {rss['onnxruntime']:.0f}" if "onnxruntime" in rss else "—"
        cells += ["—", "—", "—", ort_rss, "—", "—", "—"]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def compile_phases(c: dict) -> str:
    t = c["neo"]["timings"]
    parts = ", ".join(f"{k.removeprefix('codegen.')} {t[k]:.2f}"
                      for k in ("frontend", "passes", "codegen.kernels", "codegen.llvm",
                                "codegen.link") if k in t)
    if c["neo"].get("artifact_cached"):
        return f"{c['wall_s']:.2f} wall (the whole artifact from the cache)"
    hit = " (object cache hit)" if c["neo"].get("object_cached") else ""
    return f"{c['wall_s']:.2f} wall{hit}: {parts}"


def contended(rows: list[dict], threads: list[int]) -> list[str]:
    """Models whose onnxruntime median got >10% worse with more threads: a busy machine."""
    lo, hi = str(min(threads)), str(max(threads))
    out = []
    for r in rows:
        t = r.get("threads", {})
        slower = (lo != hi and lo in t and hi in t
                  and t[hi]["onnxruntime"]["median_ms"] > 1.1 * t[lo]["onnxruntime"]["median_ms"])
        if slower:
            out.append(r["model"])
    return out


def where_we_stand(rows: list[dict], threads: list[int]) -> str:
    cnns = [r for r in rows if r["model"] in CNNS]
    parts = []
    for n in threads:
        ratios = [r["threads"][str(n)]["ours_over_ort"] for r in cnns
                  if r.get("status") == "ok" and "ours_over_ort" in r["threads"].get(str(n), {})]
        within = sum(x <= 1.25 for x in ratios)
        ahead = sum(x <= 1.0 for x in ratios)
        parts.append(f"at {n} thread{'s' if n > 1 else ''}, {within} of {len(cnns)} within 1.25x "
                     f"of onnxruntime and {ahead} of {len(cnns)} at or below 1.0x")
    return f"**Where we stand** (the {len(cnns)} CNNs measured): " + "; ".join(parts) + "."


def section_key(report: dict) -> str:
    """The machine kind (CPU model and its widest vector ISA) and the neo target of a run: each
    has its own section of BENCHMARKS.md, so a run on another machine adds a table rather than
    replacing one."""
    cpu = report["cpu"]
    isa = cpu["isa"][-1] if cpu["isa"] else cpu["machine"]
    words = re.sub(r"[^a-z0-9]+", "_", f"{cpu['model']} {isa} {report['target']}".lower())
    return "cnn_" + words.strip("_")


def render(report: dict) -> str:
    cpu, s, threads = report["cpu"], report["settings"], report["thread_counts"]
    v = report["versions"]
    isa = ", ".join(cpu["isa"]) or "none of avx2, avx512f, amx"
    target = report["target"]
    lines = [
        (f"## {cpu['model']}, {cpu['isa'][-1] if cpu['isa'] else cpu['machine']}: "
         f"`neo compile --target {target}`"),
        "",
        f"- Date: {report['date']}",
        (f"- CPU: {cpu['model']} ({cpu['machine']}), vector ISA: {isa}, "
         f"{cpu['cores']} cores ({cpu['usable_cores']} usable by this process)"),
        (f"- Load average (1, 5, 15 min) at the start: {report['loadavg']}, at the end: "
         f"{report.get('loadavg_end', '?')}"),
        f"- neo target: {report['target_info']}",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- Command: `{report['command']}` ({report['duration_s'] / 60:.1f} min)",
        "",
        (f"Batch 1, float32. Latency: every engine timed in each of {s['rounds']} rounds (engine "
         f"order rotated per round; one untimed run, then ~{s['batch_seconds']} s, at least "
         f"{s['min_iters']} runs, timed per engine per round); median / p90 over all timed runs, in ms. ours/ORT is the ratio of "
         "the medians (below 1 means neo is faster). onnxruntime: intra-op threads = N, inter-op 1, "
         "sequential, all graph optimizations. PyTorch: eager, `torch.set_num_threads(N)`, "
         "`inference_mode`, timed in its own rounds after neo and onnxruntime (its idle OpenMP "
         "threads spin and took a core from the engine timed next). Compile: wall time of `neo compile --target {target}` in a subprocess, "
         "cold (fresh neo cache: LLVM objects and the runtime library built from scratch; zig's "
         "libc stubs kept) / warm (the same cache, another output directory); peak RSS is the "
         "largest process of that compile (neo or the linker). Inference RSS: peak RSS of a fresh "
         f"process loading the model and running it {s['rss_runs']} times (a Python process with "
         f"numpy and the input alone: {report['baseline_rss_mb']:.0f} MB). Max rel err: max "
         "|ours - onnxruntime| / max |onnxruntime| over 3 inputs, FLAG above 1e-4. MB = 2^20 bytes."),
        "",
        ("Timings drift 20-30% between runs on a shared machine; compare the ratios, which are "
         "measured side by side."),
    ]
    header = ("| model | ours ms (median / p90) | onnxruntime ms | PyTorch ms | ours/ORT | "
              "compile s (cold / warm) | compile peak RSS MB | inference RSS MB ours / ORT | "
              "artifact MB | max rel err | top-1 ok |")
    for n in threads:
        lines += ["", f"### {n} thread{'s' if n > 1 else ''}", "", header,
                  "|" + "---|" * header.count(" | ") + "---|"]
        lines += [table_row(r, n) for r in report["results"]]
        spread = [f"{r['model']} {min(q):.2f}-{max(q):.2f}" for r in report["results"]
                  if (q := r.get("threads", {}).get(str(n), {}).get("ours_over_ort_per_round"))]
        if spread:
            lines += ["", "ours/ORT per round (min-max): " + ", ".join(spread) + "."]
    lines += ["", where_we_stand(report["results"], threads)]
    busy = contended(report["results"], threads)
    if busy:
        note = (f"**Contention:** onnxruntime ran >10% slower with more threads than with "
                f"{min(threads)} on {', '.join(busy)}: other work held the extra cores, so those "
                "rows compare behaviour under contention rather than scaling.")
        lines += ["", note]
    compiled = [r for r in report["results"] if r.get("status") == "ok"]
    if compiled:
        lines += ["", "Compile phases in seconds (neo's own `--json` timings):", ""]
        lines += [f"- {r['model']}: {compile_phases(r['compile_cold'])}; warm "
                  f"{compile_phases(r['compile_warm'])}" for r in compiled]
    notes = [f"- {r['model']}: {r['status']}" + (f" (exit {r['compile_cold']['exit_code']}: "
                                                  f"{r['compile_cold']['error']})"
                                                  if "compile_cold" in r and "error" in
                                                  r["compile_cold"] else "")
             for r in report["results"] if r.get("status") != "ok"]
    if notes:
        lines += ["", "Not compiled:", "", *notes]
    return "\n".join(lines) + "\n"


# -- driver ---------------------------------------------------------------------------------------


def merge_sections(old: str, key: str, text: str) -> str:
    """BENCHMARKS.md with this run's section in place of the one with its key (or before the
    other scripts' sections when new). Every section lies between <!-- bench_NAME:begin --> and
    <!-- bench_NAME:end -->: this script's one per machine kind and target (cnn_...), the other
    benchmark scripts' (bench_trees.py, bench_keras.py, ...) one each."""
    pattern = r"<!-- bench_(\w+):begin -->.*?<!-- bench_\1:end -->"
    sections = {m.group(1): m.group(0) for m in re.finditer(pattern, old, re.DOTALL)}
    mine = f"<!-- bench_{key}:begin -->\n{text.rstrip()}\n<!-- bench_{key}:end -->"
    if key in sections:
        sections[key] = mine
    else:
        cnn = [k for k in sections if k.startswith("cnn_")]
        at = list(sections).index(cnn[-1]) + 1 if cnn else 0
        items = list(sections.items())
        sections = dict([*items[:at], (key, mine), *items[at:]])
    head = ("# Benchmarks\n\nOne section per machine kind (CPU, widest vector ISA) and neo target "
            "(`python3 scripts/bench.py --target T`; `make bench`: `--target host`), and one per "
            "other benchmark script. A run replaces only its own section.\n")
    return head + "".join(f"\n{sec}\n" for sec in sections.values())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(ALL_MODELS),
                   help=f"comma-separated subset of {','.join(ALL_MODELS)}")
    p.add_argument("--rounds", type=int, help="interleaved timing rounds (default 5, quick 2)")
    p.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    p.add_argument("--quick", action="store_true", help="few iterations: a smoke test")
    p.add_argument("--target", default="host", help="neo target to compile for (default host: "
                   "the fastest code for this CPU; x86_64: portable AVX2)")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "BENCHMARKS.md",
                   help="markdown report")
    p.add_argument("--json-out", type=Path,
                   help="raw results (default: benchmarks.json beside --out)")
    p.add_argument("--workdir", type=Path, help="keep exports and artifacts here (default: a "
                   "temporary directory, removed afterwards)")
    a = p.parse_args(argv)
    a.models = [m.strip() for m in a.models.split(",") if m.strip()]
    unknown = [m for m in a.models if m not in ALL_MODELS]
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(ALL_MODELS)}")
    try:
        a.threads = [int(t) for t in a.threads.split(",")]
    except ValueError:
        p.error(f"--threads {a.threads!r}: expected integers like 1,2")
    if a.rounds is not None and a.rounds < 1:
        p.error("--rounds must be at least 1")
    return a


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--rss-child"]:
        rss_child(argv[1:])
        return 0
    args = parse_args(argv)
    settings = Settings.make(args.quick, args.rounds)
    try:
        import torch
    except ImportError:
        print("error: the benchmark models are built with PyTorch: pip install torch torchvision",
              file=sys.stderr)
        return 2
    command = shlex.join(["python3", "scripts/bench.py", *argv])
    if os.environ.get("MAKELEVEL"):
        command = f"make bench  # {command}"

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.perf_counter()
    report = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "command": command, "cpu": cpu_info(), "versions": versions(torch),
              "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
              "settings": settings.__dict__, "thread_counts": args.threads, "results": [],
              "target": args.target}
    from neo.targets import get_target

    t = get_target(args.target)
    report["target_info"] = f"{t.name} ({t.triple}, CPU {t.cpu}, {t.vector_bits}-bit vectors)"
    tmp = None
    work = args.workdir
    if work is None:
        tmp = tempfile.TemporaryDirectory(prefix="neo-bench-")
        work = Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    try:
        np.save(work / "baseline.npy", np.zeros((1, 3, 224, 224), np.float32))
        report["baseline_rss_mb"] = inference_rss("baseline", work, work / "baseline.npy", 1, 1)
        for name in args.models:
            log(f"{name}:")
            try:
                row = bench_model(torch, name, work, args.threads, settings, log, args.target)
            except Exception as e:  # noqa: BLE001 - keep the other rows; say what broke
                row = {"model": name, "status": f"benchmark failed: {type(e).__name__}: {e}"}
                log(f"  {row['status']}")
            report["results"].append(row)
    finally:
        if tmp is not None:
            tmp.cleanup()
    report["duration_s"] = time.perf_counter() - started
    report["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(merge_sections(args.out.read_text() if args.out.exists() else "",
                                       section_key(report), render(report)))
    json_out = args.json_out or args.out.parent / "benchmarks.json"
    json_out.write_text(json.dumps(report, indent=1) + "\n")
    log(f"wrote {args.out} and {json_out} in {report['duration_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
