"""Smoke tests of `neo bench` and of the benchmark harness scripts/bench.py.

They check what the tools report and how they fail, never how fast anything is.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require_module
from onnx import helper
from onnx_helpers import make_model

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_SCRIPT = REPO_ROOT / "scripts" / "bench.py"


def neo(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "neo", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO_ROOT, check=False)


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory, compile_cached) -> Path:
    """Conv(3->4, 3x3, pad 1) + Relu + Flatten + Gemm(256->5), compiled for the host."""
    import onnx

    r = np.random.default_rng(3)
    weights = {
        "conv.weight": (r.standard_normal((4, 3, 3, 3)) * 0.5).astype(np.float32),
        "conv.bias": (r.standard_normal(4) * 0.1).astype(np.float32),
        "fc.weight": (r.standard_normal((5, 4 * 8 * 8)) * 0.1).astype(np.float32),
        "fc.bias": (r.standard_normal(5) * 0.1).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["input", "conv.weight", "conv.bias"], ["conv"], name="conv",
                         pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("Flatten", ["relu"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc",
                         transB=1),
    ]
    model = make_model(nodes, [("input", np.float32, [1, 3, 8, 8])],
                       [("logits", np.float32, [1, 5])], weights, name="tiny_conv_gemm")
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("bench") / "tiny.onnx"
    onnx.save(model, str(path))
    return compile_cached(path, "host")


def test_bench_json_reports_latency_and_per_kernel_profile(tiny_artifact):
    r = neo("bench", str(tiny_artifact), "--json", "--repeat", "5", "--warmup", "1",
            "--threads", "1", "--per-op")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["status"] == "ok" and res["threads"] == 1 and res["runs"] == 5
    assert 0 < res["min_ms"] <= res["median_ms"] <= res["p90_ms"]
    assert res["throughput_per_s"] == pytest.approx(1000.0 / res["median_ms"])  # batch 1

    graph = json.loads((tiny_artifact / "compiled_model.json").read_text())
    kernels = {n["name"]: n for n in graph["nodes"]}
    rows = res["per_op"]
    # one row per kernel call, named and labelled as the artifact's graph names them
    assert sorted(row["node"] for row in rows) == sorted(kernels)
    for row in rows:
        node = kernels[row["node"]]
        assert row["op"] == node["op"]
        assert node["func"].endswith(row["op"].replace("+", "_")), (row, node["func"])
        assert row["ms"] >= 0 and row["output_shape"] == graph["tensors"][node["args"][-1]]["shape"]
    assert sum(row["percent"] for row in rows) == pytest.approx(100.0)
    assert [row["ms"] for row in rows] == sorted((row["ms"] for row in rows), reverse=True)
    ops = " ".join(row["op"] for row in rows)
    assert "conv" in ops and "relu" in ops and ("matmul" in ops or "gemm" in ops), ops


def test_bench_refuses_an_arm64_artifact_with_exit_2(tiny_artifact, tmp_path):
    # An arm64 artifact as `neo bench` sees it: the same files with the arm64 target recorded.
    # (Building a real one costs 15-50 s the first time zig makes its aarch64 libc stubs.)
    art = tmp_path / "arm64"
    shutil.copytree(tiny_artifact, art)
    meta = json.loads((art / "compiled.meta").read_text())
    meta["target"].update(name="arm64", arch="aarch64", triple="aarch64-unknown-linux-gnu")
    (art / "compiled.meta").write_text(json.dumps(meta))
    graph = json.loads((art / "compiled_model.json").read_text())
    graph["arch"] = "aarch64"
    (art / "compiled_model.json").write_text(json.dumps(graph))

    r = neo("bench", str(art), "--json")
    assert r.returncode == 2, (r.stdout, r.stderr)
    err = json.loads(r.stdout)
    assert err["status"] == "error" and err["exit_code"] == 2
    assert "aarch64" in err["error"]


def _load_bench_script():
    spec = importlib.util.spec_from_file_location("neo_bench_script", BENCH_SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def test_bench_script_reads_the_ops_from_neos_unsupported_error():
    from neo.errors import UnsupportedModelError, UnsupportedOp

    bench = _load_bench_script()
    err = UnsupportedModelError([UnsupportedOp("Einsum", 2, ["e1", "e2"]),
                                 UnsupportedOp("Resize", 1, ["r"], reason="mode='cubic'; nope")])
    assert bench.unsupported_ops(str(err)) == "Einsum, Resize"
    assert bench.unsupported_ops("linking failed") is None


def test_bench_script_quick_mlp_writes_report(tmp_path):
    require_module("torch")
    require_module("onnxruntime")
    out = tmp_path / "report" / "BENCH.md"
    r = subprocess.run([sys.executable, str(BENCH_SCRIPT), "--quick", "--models", "mlp",
                        "--rounds", "1", "--out", str(out)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    text = out.read_text()
    assert "| model | ours ms (median / p90) | onnxruntime ms |" in text
    assert "## 1 thread" in text and "## 2 threads" in text and "Where we stand" in text
    assert "--quick --models mlp" in text  # the exact command
    rows = [line for line in text.splitlines() if line.startswith("| mlp |")]
    assert len(rows) == 2, text
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert len(cells) == 11 and cells[10] == "yes" and "FLAG" not in cells[9]

    report = json.loads((out.parent / "benchmarks.json").read_text())
    row = report["results"][0]
    assert row["model"] == "mlp" and row["status"] == "ok"
    assert row["compile_cold"]["neo"]["object_cached"] is False
    # the warm compile is a cache hit: the whole artifact is reused
    assert row["compile_warm"]["neo"]["artifact_cached"] is True
    assert row["compile_cold"]["peak_rss_mb"] > 0 and row["artifact_bytes"] > 0
    assert row["accuracy"]["max_rel_err"] <= 1e-4 and not row["accuracy"]["flag"]
    for n in ("1", "2"):
        res = row["threads"][n]
        assert {"ours", "onnxruntime", "pytorch"} <= res.keys()
        assert res["ours_over_ort"] > 0 and set(res["rss_mb"]) == {"ours", "onnxruntime"}


def test_bench_script_keeps_one_section_per_machine_kind_and_target():
    bench = _load_bench_script()
    report = {"cpu": {"model": "AMD EPYC 9R14", "isa": ["avx2", "avx512f"], "machine": "x86_64"},
              "target": "host"}
    key = bench.section_key(report)
    assert key == "cnn_amd_epyc_9r14_avx512f_host"
    avx2 = bench.section_key({**report, "cpu": {**report["cpu"], "isa": ["avx2"]}})
    portable = bench.section_key({**report, "target": "x86_64"})
    assert len({key, avx2, portable}) == 3
    trees = "<!-- bench_trees:begin -->\n## Trees\nT\n<!-- bench_trees:end -->"
    text = bench.merge_sections(trees, avx2, "## AVX2 run 1\n")
    text = bench.merge_sections(text, key, "## AVX-512 run 1\n")
    text = bench.merge_sections(text, avx2, "## AVX2 run 2\n")  # replaces its own section only
    assert text.startswith("# Benchmarks\n")
    assert "AVX2 run 1" not in text
    order = [text.index(s) for s in ("## AVX2 run 2", "## AVX-512 run 1", "## Trees")]
    assert order == sorted(order), text
    assert text.count("<!-- bench_") == 6  # three sections, each with its two markers


def test_bench_sections_tell_zen4_from_zen5(monkeypatch):
    """Both say "AMD EPYC" in /proc/cpuinfo; their 512-bit units differ (Zen 4 splits a zmm FMA
    in two), so the other benchmark scripts key their sections by LLVM's CPU name too."""
    bench = _load_bench_script()
    seen = set()
    for cpu in ("znver4", "znver5"):
        monkeypatch.setattr(bench, "host_cpu", lambda cpu=cpu: cpu)
        begin, end = bench.markers("quant")
        assert cpu in begin and begin.replace("begin", "end") == end
        assert bench.cpu_info()["model"].endswith(f"({cpu})")
        seen.add(begin)
    assert len(seen) == 2


def test_hide_avx512_shows_a_command_an_avx2_cpu():
    """scripts/hide-avx512 runs a command with AVX-512, AVX-VNNI and AMX hidden from CPUID (as
    LLVM, onnxruntime and bench.py's cpu_info read it), or refuses with a one-line reason and exit
    2 where the CPU or hypervisor has no CPUID faulting."""
    flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("flags")), "").split()
    probe = ("import json, sys; sys.path.insert(0, 'scripts'); import bench, llvmlite.binding as b;"
             "f = b.get_host_cpu_features();"
             "print(json.dumps([f.get('avx2', False), f.get('avx512f', False),"
             " f.get('avxvnni', False), f.get('amx-tile', False), bench.cpu_info()['isa']]))")
    r = subprocess.run([str(REPO_ROOT / "scripts" / "hide-avx512"), sys.executable, "-c", probe],
                       capture_output=True, text=True, cwd=REPO_ROOT, timeout=300, check=False)
    if "cpuid_fault" not in flags:
        assert r.returncode == 2 and "no CPUID faulting" in r.stderr, (r.returncode, r.stderr)
        return
    assert r.returncode == 0, r.stderr
    avx2, avx512f, avxvnni, amx, isa = json.loads(r.stdout)
    assert avx2 == ("avx2" in flags)
    assert not (avx512f or avxvnni or amx), r.stdout
    assert "avx512f" not in isa and "amx" not in isa
