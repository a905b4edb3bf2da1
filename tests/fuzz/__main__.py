"""`python3 tests/fuzz COMMAND`: run the graph fuzzer, check one seed, replay or minimize a case.

    python3 tests/fuzz run --seconds 600            # fresh seeds; failures minimized into build/fuzz/
    python3 tests/fuzz one 1234                      # one seed at every config
    python3 tests/fuzz replay build/fuzz/<case>/     # re-run a saved case at its config
    python3 tests/fuzz minimize 1234 --config O3-w512
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python3 tests/fuzz`: import as the package `fuzz`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "fuzz"

import argparse
import json
import os
import platform
import time
import warnings
from collections import Counter
from dataclasses import replace

import numpy as np

from fuzz.graphgen import GraphSpec, generate, realize
from fuzz.minimize import minimize
from fuzz.oracle import (
    LEVELS,
    THREADS,
    Config,
    Failure,
    all_configs,
    can_run,
    check_model,
    check_spec,
    numerically_sound,
)

ARM_LEVELS = LEVELS


def configs_for(seed: int, mode: str, arm_every: int) -> list[Config]:
    """The configs a graph runs at: all 16 x86 ones ("all") or one chosen by the seed ("one",
    cycling so that consecutive seeds cover them all); every `arm_every`-th seed adds arm64."""
    cfgs = all_configs()
    # thread counts rotate with the seed: every (level, width) runs at each of THREADS
    cfgs = [replace(c, threads=THREADS[(THREADS.index(c.threads) + seed // len(cfgs))
                                       % len(THREADS)]) for c in cfgs]
    chosen = cfgs if mode == "all" else [cfgs[seed % len(cfgs)]]
    if arm_every and seed % arm_every == arm_every // 2:
        chosen = chosen + [Config(ARM_LEVELS[(seed // arm_every) % len(ARM_LEVELS)], "arm64")]
    return chosen


def graph_text(model) -> str:
    """The model's nodes, one a line (initializers by shape only)."""
    from onnx import helper

    inits = {t.name: list(t.dims) for t in model.graph.initializer}
    lines = [f"opset {model.opset_import[0].version}"]
    for i in model.graph.input:
        dims = [d.dim_value for d in i.type.tensor_type.shape.dim]
        lines.append(f"input {i.name} {dims}")
    for n in model.graph.node:
        ins = ", ".join(f"{x}{inits[x]}" if x in inits else x for x in n.input)
        attrs = ", ".join(f"{a.name}={helper.get_attribute_value(a)!r}" for a in n.attribute)
        lines.append(f"{', '.join(n.output)} = {n.op_type}({ins}{'; ' + attrs if attrs else ''})")
    lines.append("outputs " + ", ".join(o.name for o in model.graph.output))
    return "\n".join(lines)


def save_case(root: Path, spec: GraphSpec, failure: Failure, failing: list[Failure],
              tag: str) -> Path:
    import onnx

    d = root / tag
    d.mkdir(parents=True, exist_ok=True)
    r = realize(spec)
    onnx.save(r.model, str(d / "model.onnx"))
    np.savez(d / "inputs.npz", **r.feeds)
    (d / "spec.json").write_text(spec.to_json() + "\n")
    data = {i.name: i.data for i in spec.inputs if i.data is not None}
    if data:
        np.savez(d / "spec_data.npz", **data)
    cfg = f" --config {failure.config}" if failure.config else ""
    cmd = f"python3 tests/fuzz replay {d}{cfg}"
    text = [f"failure: {failure.line()}", "", "reproduce (from the repository root):", f"  {cmd}",
            "", "all failures of the minimized graph:"]
    text += [f"  {f.line()}" for f in failing] or ["  (not re-checked)"]
    text += ["", "graph:", graph_text(r.model)]
    (d / "README.txt").write_text("\n".join(text) + "\n")
    (d / "failure.json").write_text(json.dumps(
        {"kind": failure.kind, "config": str(failure.config) if failure.config else None,
         "message": failure.message, "seed": spec.seed, "command": cmd}, indent=1) + "\n")
    return d


def load_case(d: Path) -> tuple:
    import onnx

    model = onnx.load(str(d / "model.onnx"))
    feeds = dict(np.load(d / "inputs.npz"))
    info = json.loads((d / "failure.json").read_text()) if (d / "failure.json").exists() else {}
    return model, feeds, info


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# -- commands ------------------------------------------------------------------------------------
def private_cache(out: Path) -> Path:
    """neo's object and link caches in out/.cache (thousands of one-off modules would fill the
    user's); zig keeps its global cache (its libc stubs take long to rebuild)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    os.environ.setdefault("ZIG_GLOBAL_CACHE_DIR", str(Path(base) / "zig"))
    cache = (out / ".cache").resolve()
    os.environ["XDG_CACHE_HOME"] = str(cache)
    return cache / "neo"


def trim_cache(neo_cache: Path) -> None:
    import shutil

    for sub in ("objects", "linked", "artifacts"):
        shutil.rmtree(neo_cache / sub, ignore_errors=True)


def cmd_run(a) -> int:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    neo_cache = private_cache(out)
    base = a.seed if a.seed is not None else int(time.time()) % 1_000_000_000
    log_path = out / "log.txt"
    summary_path = out / "summary.json"
    prev = json.loads(summary_path.read_text()) if summary_path.exists() and a.resume else {}
    t_start = time.monotonic()
    kinds: Counter = Counter(prev.get("failures_by_kind", {}))
    sigs: Counter = Counter()
    stats = Counter({k: prev.get(k, 0) for k in ("graphs", "compiles", "nodes", "ort_inexact",
                                                  "unsupported", "cases")})
    seconds_before = prev.get("seconds", 0.0)

    def say(msg: str) -> None:
        print(msg, flush=True)
        with open(log_path, "a") as f:
            f.write(msg + "\n")

    say(f"== fuzz run: seeds from {base}, configs {a.configs}, arm64 every {a.arm_every}, "
        f"{a.min_nodes}-{a.max_nodes} nodes, CPU {cpu_name()}, pid {os.getpid()}")
    i = 0
    while True:
        if a.graphs and i >= a.graphs:
            break
        if a.seconds and time.monotonic() - t_start > a.seconds:
            break
        seed = base + i
        i += 1
        if i % 100 == 0:
            trim_cache(neo_cache)
        try:
            spec = generate(seed, a.min_nodes, a.max_nodes, accept=numerically_sound)
        except RuntimeError as e:
            say(f"seed {seed}: {e}")
            continue
        cfgs = configs_for(seed, a.configs, a.arm_every)
        res = check_spec(spec, cfgs)
        stats["graphs"] += 1
        stats["compiles"] += len(res.configs)
        stats["nodes"] += len(spec.nodes)
        stats["ort_inexact"] += sum("inexact" in n for n in res.notes)
        stats["unsupported"] += sum(n.startswith("unsupported") for n in res.notes)
        status = "ok" if not res.failures else f"{len(res.failures)} FAILURES"
        say(f"seed {seed}: {len(spec.nodes)} nodes [{' '.join(spec.op_types())}] "
            f"{len(res.configs)} configs {res.seconds:.1f}s worst {res.worst:.3g} {status}")
        for n in res.notes:
            if not n.startswith("onnxruntime inexact"):
                say(f"  note: {n[:300]}")
        seen_here = set()
        for f in res.failures:
            say(f"  {f.line()}")
            kinds[f.kind] += 1
            key = f.key()
            if key in seen_here:
                continue
            seen_here.add(key)
            sigs[key] += 1
            if a.no_minimize or sigs[key] > a.max_per_kind:
                continue
            small, tries = minimize(spec, f, a.minimize_seconds, say)
            tag = f"{seed}-{f.kind}-{f.config or 'ref'!s}"
            check = check_spec(small, [f.config] if f.config else [],
                               use_ort=f.kind == "reference")
            d = save_case(out, small, f, check.failures, tag)
            stats["cases"] += 1
            say(f"  minimized to {len(small.nodes)} nodes in {tries} tries: {d}")
            say(f"  reproduce: python3 tests/fuzz replay {d}"
                + (f" --config {f.config}" if f.config else ""))
        elapsed = seconds_before + time.monotonic() - t_start
        summary = {**stats, "seconds": round(elapsed, 1), "hours": round(elapsed / 3600, 2),
                   "failures_by_kind": dict(kinds), "cpu": cpu_name(), "last_seed": seed,
                   "first_seed": prev.get("first_seed", base)}
        summary_path.write_text(json.dumps(summary, indent=1) + "\n")
    say(f"== done: {stats['graphs']} graphs, {stats['compiles']} compiled configs, "
        f"{sum(kinds.values())} failures {dict(kinds)}, {stats['cases']} cases saved in {out}")
    return 1 if kinds and a.fail_exit else 0


def cmd_one(a) -> int:
    spec = generate(a.seed, a.min_nodes, a.max_nodes, accept=numerically_sound)
    cfgs = [Config.parse(c) for c in a.config] if a.config else all_configs()
    if a.arm:
        cfgs += [Config(lv, "arm64") for lv in LEVELS]
    r = realize(spec)
    print(graph_text(r.model))
    res = check_model(r.model, r.feeds, cfgs)
    print(f"{len(res.configs)} configs in {res.seconds:.1f}s, worst {res.worst:.3g} of tolerance")
    for n in res.notes:
        print(f"note: {n}")
    for f in res.failures:
        print(f.line())
    return 1 if res.failures else 0


def cmd_replay(a) -> int:
    d = Path(a.case)
    model, feeds, info = load_case(d)
    if a.all:
        cfgs = [c for c in all_configs()] + [Config(lv, "arm64") for lv in LEVELS]
    elif a.config:
        cfgs = [Config.parse(c) for c in a.config]
    else:
        cfgs = [Config.parse(info["config"])] if info.get("config") else []
    cfgs = [c for c in cfgs if can_run(c)]
    print(graph_text(model))
    res = check_model(model, feeds, cfgs)
    print(f"{len(res.configs)} configs ({', '.join(map(str, res.configs)) or 'references only'})"
          f" in {res.seconds:.1f}s")
    for n in res.notes:
        print(f"note: {n}")
    for f in res.failures:
        print(f.line())
    if not res.failures:
        print("no failure: fixed")
    return 1 if res.failures else 0


def cmd_minimize(a) -> int:
    if Path(a.what).is_dir():
        d = Path(a.what)
        spec_data = dict(np.load(d / "spec_data.npz")) if (d / "spec_data.npz").exists() else None
        spec = GraphSpec.from_json((d / "spec.json").read_text(), spec_data)
    else:
        spec = generate(int(a.what), a.min_nodes, a.max_nodes, accept=numerically_sound)
    cfgs = [Config.parse(c) for c in a.config] if a.config else all_configs()
    res = check_spec(spec, cfgs)
    if not res.failures:
        print("no failure to minimize")
        return 0
    f = res.failures[0]
    print(f"minimizing {f.line()}")
    small, tries = minimize(spec, f, a.minimize_seconds, print)
    check = check_spec(small, [f.config] if f.config else [], use_ort=f.kind == "reference")
    d = save_case(Path(a.out), small, f, check.failures, f"{spec.seed}-{f.kind}-"
                  f"{f.config or 'ref'}")
    print(f"{len(small.nodes)} nodes after {tries} tries: {d}")
    return 1


def main(argv=None) -> int:
    warnings.simplefilter("ignore")
    p = argparse.ArgumentParser(prog="python3 tests/fuzz", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def gen_args(q):
        q.add_argument("--min-nodes", type=int, default=2)
        q.add_argument("--max-nodes", type=int, default=30)

    r = sub.add_parser("run", help="fuzz: random graphs, every config, failures minimized")
    r.add_argument("--seconds", type=float, default=0, help="stop after this long (0: no limit)")
    r.add_argument("--graphs", type=int, default=0, help="stop after this many graphs")
    r.add_argument("--seed", type=int, default=None, help="first seed (default: from the clock)")
    r.add_argument("--out", default="build/fuzz", help="where failures are saved")
    r.add_argument("--configs", choices=("all", "one"), default="all",
                   help="all 16 x86 (opt-level, width) configs per graph, or one by the seed")
    r.add_argument("--arm-every", type=int, default=10, help="add arm64 (qemu) every N seeds")
    r.add_argument("--no-minimize", action="store_true")
    r.add_argument("--minimize-seconds", type=float, default=600)
    r.add_argument("--max-per-kind", type=int, default=2,
                   help="minimize at most this many failures of one kind and message")
    r.add_argument("--resume", action="store_true", help="add to the summary in --out")
    r.add_argument("--fail-exit", action="store_true", help="exit 1 when anything failed")
    gen_args(r)
    o = sub.add_parser("one", help="check one seed (all configs unless --config)")
    o.add_argument("seed", type=int)
    o.add_argument("--config", action="append", help="e.g. O2-w512 (repeatable)")
    o.add_argument("--arm", action="store_true", help="also arm64 at every level")
    gen_args(o)
    rp = sub.add_parser("replay", help="re-run a saved case")
    rp.add_argument("case")
    rp.add_argument("--config", action="append")
    rp.add_argument("--all", action="store_true", help="every config, arm64 included")
    m = sub.add_parser("minimize", help="minimize a seed's (or a saved case's) first failure")
    m.add_argument("what", help="a seed or a case directory")
    m.add_argument("--config", action="append")
    m.add_argument("--out", default="build/fuzz")
    m.add_argument("--minimize-seconds", type=float, default=600)
    gen_args(m)
    a = p.parse_args(argv)
    return {"run": cmd_run, "one": cmd_one, "replay": cmd_replay, "minimize": cmd_minimize}[
        a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
