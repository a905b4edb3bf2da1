"""`neo bench`: latency and throughput of a compiled artifact, and where the time goes per kernel."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .errors import NeoRuntimeError, UsageError
from .run import read_meta


def random_inputs(meta: dict, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in meta["inputs"]:
        dt = np.dtype(i["dtype"]) if i["dtype"] != "bfloat16" else np.dtype("float32")
        if dt.kind == "f":
            a = rng.normal(size=i["shape"]).astype(dt)
        elif dt.kind == "b":
            a = rng.integers(0, 2, size=i["shape"]).astype(bool)
        else:
            a = rng.integers(0, 10, size=i["shape"]).astype(dt)  # small ids: valid for embeddings
        feeds[i["name"]] = a
    return feeds


def summarize(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
            "min_ms": float(ms.min()), "runs": int(ms.size)}


def bench_artifact(art: Path, threads: int | None, repeat: int, warmup: int, per_op: bool) -> dict:
    meta = read_meta(art)
    from neo.codegen.toolchain import host_arch

    host = host_arch()
    if meta["target"]["arch"] != host:
        raise UsageError(f"{art} is built for {meta['target']['arch']}; timing it under emulation "
                         f"on this {host} machine would measure qemu, not the model",
                         hint="copy the artifact to the device and run its neo-run --repeat 50")
    from neo.runtime import ArtifactError, Model

    try:
        m = Model(str(art), num_threads=threads)
    except ArtifactError as e:
        raise NeoRuntimeError(str(e)) from e
    feeds = random_inputs(meta)
    try:
        for _ in range(warmup):
            m.run(feeds)
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            m.run(feeds)
            times.append(time.perf_counter() - t)
        res = {"artifact": str(art), "threads": m.num_threads, **summarize(times)}
        batch = meta["inputs"][0]["shape"][0] if meta["inputs"] and meta["inputs"][0]["shape"] else 1
        res["throughput_per_s"] = batch * 1000.0 / res["median_ms"]
        if per_op:
            graph = json.loads((art / "compiled_model.json").read_text())
            prof = m.profile(max(3, repeat // 5))
            total = sum(s for _, s in prof) or 1.0
            rows = []
            for (name, s), node in zip(prof, graph["nodes"]):
                out = graph["tensors"][node["args"][-1]]
                rows.append({"node": name, "op": node["op"], "ms": s * 1000,
                             "percent": 100 * s / total, "output_shape": out["shape"]})
            res["per_op"] = sorted(rows, key=lambda r: -r["ms"])
    finally:
        m.close()
    return res


def format_bench(res: dict) -> str:
    head = (f"{res['artifact']}: median {res['median_ms']:.3f} ms, p90 {res['p90_ms']:.3f} ms, "
            f"min {res['min_ms']:.3f} ms over {res['runs']} runs, {res['threads']} threads, "
            f"{res['throughput_per_s']:.1f} inferences/s")
    lines = [head]
    for r in res.get("per_op", []):
        lines.append(f"  {r['ms']:8.3f} ms {r['percent']:5.1f}%  {r['op']:<36} {r['node']} "
                     f"-> {r['output_shape']}")
    return "\n".join(lines)
