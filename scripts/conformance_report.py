"""Write docs/CONFORMANCE.md from build/conformance_counts.json (which a run of
tests/test_onnx_conformance.py writes)."""
from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "python -m pytest tests/test_onnx_conformance.py -q -n 2"


def render(report: dict) -> str:
    t = report["totals"]
    plain, special = t.get("passed", 0), t.get("passed_specialized", 0)
    lines = [
        "# ONNX node conformance",
        "",
        (f"onnx {report['onnx_version']} node suite: {report['cases']} cases, "
         f"**{plain + special} pass**: **{plain} as a plain `neo compile`** compiles them, and "
         f"{special} only with input specialization (some graph inputs folded to the values "
         f"the case gives, as `neo compile --const-input` does); {t.get('failed', 0)} fail, "
         f"{t.get('excluded', 0)} excluded (each exclusion has a reason in "
         "`tests/test_onnx_conformance.py:EXCLUDED`)."),
        "",
        "Produced by",
        "",
        "```",
        COMMAND,
        "python scripts/conformance_report.py",
        "```",
        "",
        "The first writes `build/conformance_counts.json`, the second this file. Every case is",
        "compiled for the host through the real path (frontend, passes, LLVM, zig link, runtime) by",
        "`neo_cli/onnx_backend.py`. Operands that decide shapes or attributes and arrive as graph",
        "inputs (Reshape's shape, Reduce*'s axes, Resize's scales, ...) are handled by the",
        "backend's input specialization: the model is compiled on first run with those inputs",
        "folded to the values given (see the module docstring). The quantized ops' cases",
        "(QuantizeLinear, DequantizeLinear, QLinearConv, QLinearMatMul, ConvInteger, MatMulInteger)",
        "give their scales and zero points as graph inputs; neo compiles them onto integer kernels,",
        "whose requantization constants are fixed at compile time, so they pass specialized (23",
        "cases that passed plain, as float64 arithmetic, before the integer kernels).",
        "",
        "## Exclusions by reason",
        "",
        "| cases | reason |",
        "|---:|---|",
    ]
    for reason, n in report["excluded_by_reason"].items():
        lines.append(f"| {n} | {reason} |")
    lines += ["", "## By op type", "",
              "| op | passed (plain) | passed (specialized) | failed | excluded |",
              "|---|---:|---:|---:|---:|"]
    for op, c in report["per_op_type"].items():
        lines.append(f"| {op} | {c.get('passed', 0)} | {c.get('passed_specialized', 0)} | "
                     f"{c.get('failed', 0)} | {c.get('excluded', 0)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    report = json.loads((ROOT / "build" / "conformance_counts.json").read_text())
    (ROOT / "docs" / "CONFORMANCE.md").write_text(render(report))


if __name__ == "__main__":
    main()
