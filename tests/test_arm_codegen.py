"""The GEMM kernels' machine code: vector FMAs, a register-blocked micro-kernel, no spills in it.

A conv (3x3, 32->64 channels, 28x28) and a matmul (1x256 @ 256x128 constant) go through the ONNX
frontend and the pass pipeline, then `generate_kernels` + `emit_assembly` for arm64 (NEON) and x86
(AVX2, AVX-512). In the innermost loop that holds the FMAs (the code between a label and the
backward branch to it) we expect one vector FMA per accumulator of the MR x NV register tile per k
step and no vector register loaded from or stored to the stack: a spill there would cost a memory
round trip per FMA.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pytest
from onnx import helper
from onnx_helpers import make_model

from neo.codegen.build import emit_assembly, generate_kernels
from neo.frontends.onnx import import_onnx
from neo.passes import run_pipeline
from neo.targets import get_target

GEMM_OPS = ("conv", "matmul", "gemm", "dense")


def conv_model():
    w = np.random.default_rng(0).standard_normal((64, 32, 3, 3)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], kernel_shape=[3, 3])
    model = make_model([node], [("x", np.float32, [1, 32, 28, 28])],
                       [("y", np.float32, [1, 64, 28, 28])], {"w": w})
    return model, 64, 32 * 3 * 3  # M (output channels), K (reduction)


def matmul_model():
    w = np.random.default_rng(1).standard_normal((256, 128)).astype(np.float32)
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    model = make_model([node], [("x", np.float32, [1, 256])], [("y", np.float32, [1, 128])],
                       {"w": w})
    return model, 1, 256


MODELS = {"conv3x3": conv_model, "matmul": matmul_model}


@dataclass
class Loop:
    label: str
    start: int  # index of the label line in the function body
    end: int  # index of the backward branch
    lines: list[str]


def function_body(asm: str, name: str) -> list[str]:
    lines = asm.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith(f"{name}:")), None)
    assert start is not None, f"function {name} not in the assembly"
    body = []
    for ln in lines[start + 1:]:
        if re.match(r"^\.Lfunc_end\d+:", ln) or ln.strip().startswith(f".size\t{name},"):
            break
        body.append(ln)
    return body


# a branch to a local label: aarch64 b / b.cond / cbz / cbnz / tbz / tbnz, x86 jmp / jcc,
# riscv j / bne / bnez / bltu / ...
_BRANCH = re.compile(r"^\s+(?:b[a-z]*|b\.\w+|cbn?z|tbn?z|j[a-z]*)\s+(?:[^,]+,\s*)*(\.L\w+)\s*$")
_LABEL = re.compile(r"^(\.L\w+):")


def loops(body: list[str]) -> list[Loop]:
    """Every span from a label to a backward branch to it."""
    labels = {m.group(1): i for i, ln in enumerate(body) if (m := _LABEL.match(ln))}
    found = []
    for i, ln in enumerate(body):
        m = _BRANCH.match(ln)
        if m and m.group(1) in labels and labels[m.group(1)] <= i:
            a = labels[m.group(1)]
            found.append(Loop(m.group(1), a, i, body[a:i + 1]))
    return found


def innermost_fma_loops(body: list[str], fma: re.Pattern) -> list[Loop]:
    """Loops with FMAs that contain no smaller loop with FMAs."""
    with_fma = [lp for lp in loops(body) if any(fma.search(ln) for ln in lp.lines)]
    return [lp for lp in with_fma
            if not any(o is not lp and lp.start <= o.start and o.end <= lp.end
                       and (o.start, o.end) != (lp.start, lp.end) for o in with_fma)]


@dataclass
class Isa:
    target: str
    fma: re.Pattern  # a vector FMA of the expected width
    spill: re.Pattern  # a vector register to/from the stack
    vector_bits: int


ISAS = {
    "arm64": Isa("arm64",
                 re.compile(r"\bfmla\s+v\d+\.4s,\s*v\d+\.4s,\s*v\d+\.(?:4s|s\[\d\])"),
                 re.compile(r"^\s*(?:ldr|str|ldp|stp|ldur|stur|ld1\w*|st1\w*)\s+\{?\s*[qdsv]\d+"
                            r"[^\[]*\[sp\b"), 128),
    "x86_64": Isa("x86_64", re.compile(r"\bvfmadd\d+ps\s+.*%ymm"),
                  re.compile(r"%[xyz]mm\d+.*\(%rsp\)|\(%rsp\).*%[xyz]mm\d+"), 256),
    "ml_c5": Isa("ml_c5", re.compile(r"\bvfmadd\d+ps\s+.*%zmm"),
                 re.compile(r"%[xyz]mm\d+.*\(%rsp\)|\(%rsp\).*%[xyz]mm\d+"), 512),
    # RVV (VLEN >= 128, LMUL 1): vfmacc of a vector by a scalar or a vector; vector registers
    # are spilled only by whole-register stores/loads (vs1r.v / vl1re32.v) to the stack
    "rv64gcv": Isa("rv64gcv", re.compile(r"\bvfmacc\.v[fv]\s+v\d+,"),
                   re.compile(r"\bvs\dr\.v\b|\bvl\dre\d+\.v\b"), 128),
}


@pytest.fixture(scope="module")
def gemm_assembly():
    """(model, target) -> ({kernel function: its assembly lines}, M, K)."""
    cache = {}

    def get(model_name: str, target_name: str):
        key = (model_name, target_name)
        if key not in cache:
            model, m, k = MODELS[model_name]()
            target = get_target(target_name)
            graph = run_pipeline(import_onnx(model), 3)
            module, kernels = generate_kernels(graph, target)
            asm = emit_assembly(module, target)
            funcs = {info.func: function_body(asm, info.func) for _, info in kernels
                     if info is not None and info.op.startswith(GEMM_OPS)}
            assert funcs, f"no GEMM kernel among {[i.op for _, i in kernels if i]}"
            tiles = {info.func: info.tile for _, info in kernels
                     if info is not None and info.func in funcs}
            cache[key] = (funcs, m, k, tiles)
        return cache[key]

    return get


CASES = [(m, t) for t in ("arm64", "x86_64", "ml_c5", "rv64gcv") for m in MODELS]


@pytest.mark.parametrize(("model", "target"), CASES, ids=[f"{m}-{t}" for m, t in CASES])
def test_gemm_kernel_uses_vector_fma(model, target, gemm_assembly):
    isa = ISAS[target]
    assert get_target(target).vector_bits == isa.vector_bits
    funcs, _, _, _ = gemm_assembly(model, target)
    for name, body in funcs.items():
        n = sum(bool(isa.fma.search(ln)) for ln in body)
        assert n > 0, (f"{target} {name}: no {isa.fma.pattern} in {len(body)} lines; FMA-like: "
                       f"{[ln.strip() for ln in body if 'fm' in ln][:8]}")


@pytest.mark.parametrize(("model", "target"), CASES, ids=[f"{m}-{t}" for m, t in CASES])
def test_gemm_microkernel_is_register_blocked(model, target, gemm_assembly):
    isa = ISAS[target]
    funcs, _, _, tiles = gemm_assembly(model, target)
    for name, body in funcs.items():
        rows, vectors = tiles[name]  # the register tile lowering chose for this kernel
        tile = rows * vectors  # accumulators, one FMA each per k step
        inner = innermost_fma_loops(body, isa.fma)
        assert inner, f"{target} {name}: no loop around the FMAs"
        counts = {lp.label: sum(bool(isa.fma.search(ln)) for ln in lp.lines) for lp in inner}
        assert max(counts.values()) >= tile, (
            f"{target} {name}: innermost FMA loops {counts}, expected one with >= {tile} FMAs "
            f"({rows} x {vectors})")


@pytest.mark.parametrize(("model", "target"), CASES, ids=[f"{m}-{t}" for m, t in CASES])
def test_gemm_microkernel_does_not_spill(model, target, gemm_assembly):
    isa = ISAS[target]
    funcs, _, _, _ = gemm_assembly(model, target)
    for name, body in funcs.items():
        for lp in innermost_fma_loops(body, isa.fma):
            spills = [ln.strip() for ln in lp.lines if isa.spill.search(ln)]
            assert not spills, (f"{target} {name}: vector spills in the innermost loop "
                                f"{lp.label} ({len(lp.lines)} lines): {spills}\n"
                                + "\n".join(lp.lines))


def test_loop_finder_on_a_known_snippet():
    """The helpers themselves: nested loops, innermost chosen, spills seen."""
    asm = """\
f:
.LBB0_1:
\tmov x1, x2
.LBB0_2:
\tfmla v0.4s, v1.4s, v2.s[0]
\tldr q3, [sp, #16]
\tsubs x3, x3, #1
\tb.ne .LBB0_2
\tcbnz x4, .LBB0_1
\tret
.Lfunc_end0:
"""
    body = function_body(asm, "f")
    assert [lp.label for lp in loops(body)] == [".LBB0_2", ".LBB0_1"]
    (inner,) = innermost_fma_loops(body, ISAS["arm64"].fma)
    assert inner.label == ".LBB0_2" and len(inner.lines) == 5
    assert [ln for ln in inner.lines if ISAS["arm64"].spill.search(ln)] == ["\tldr q3, [sp, #16]"]


def test_loop_finder_on_a_riscv_snippet():
    asm = """\
g:
.LBB1_3:
\tvle32.v\tv9, (a0)
\tvfmacc.vf\tv2, fa5, v9
\tvs1r.v\tv2, (a1) # Unknown-size Folded Spill
\taddi\ta0, a0, 16
\tbne\ta0, a4, .LBB1_3
\tj\t.LBB1_3
\tret
.Lfunc_end1:
"""
    body = function_body(asm, "g")
    (inner,) = innermost_fma_loops(body, ISAS["rv64gcv"].fma)
    assert inner.label == ".LBB1_3" and len(inner.lines) == 6
    assert [ln.strip() for ln in inner.lines if ISAS["rv64gcv"].spill.search(ln)] == [
        "vs1r.v\tv2, (a1) # Unknown-size Folded Spill"]
