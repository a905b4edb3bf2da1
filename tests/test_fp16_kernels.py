"""fp16 arithmetic (`--precision fp16` on a target with fp16 FMAs): the kernels and their code.

| target | fp16 arithmetic | instruction | runs here |
|---|---|---|---|
| ml_c6g (Neoverse-N1: fullfp16) | yes | `fmla v.8h` | under qemu-aarch64 |
| x86_64 with mcpu sapphirerapids (AVX512-FP16) | yes | `vfmadd231ph` on zmm | natively where the CPU has AVX512-FP16 (`host`: a Xeon with it ran them), else compiled and disassembled only |
| arm64 (generic ARMv8.0), x86_64 znver4 | no: fp32 on fp16 weights | `fmla v.4s`, `vfmadd...ps` | |

The kernels (GEMM: 1x1 contiguous, im2col with padding and strides, grouped, matmul with a
folded batch; channel-vector conv, with reduction chunks) are compared with the IR interpreter's
fp16 graph (float64 sums of the half operands, rounded to half once): they differ only by the
fp16 accumulation. On this machine LLVM computes each half operation in float32 and rounds it,
which is the target's arithmetic; the same model then runs on arm64 under qemu in checked mode
(guard bytes around every buffer: half outputs are half the size of float32 ones) and must agree.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from test_arm_codegen import function_body, innermost_fma_loops

from neo.codegen.build import build_artifact, emit_assembly, generate_kernels
from neo.codegen.isa import native_fp16
from neo.codegen.tuning import tuning_for
from neo.ir import Graph
from neo.ir.interpreter import interpret
from neo.passes import run_pipeline
from neo.passes.precision import Fp16
from neo.targets import get_target, host_target, resolve_target

RNG = np.random.default_rng(7)
EPS16 = 2.0 ** -11  # half's unit roundoff


def _weights(shape) -> np.ndarray:
    fan_in = int(np.prod(shape[1:]))
    return (RNG.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)


def kernel_model() -> tuple[Graph, dict, dict[str, int]]:
    """Convs and matmuls that reach every fp16 kernel path, each its own output, with the
    reduction length K of each (what the fp16 accumulation error grows with)."""
    g = Graph("fp16_kernels")
    x = g.input("x", (2, 24, 9, 11))
    outs, ks = [], {}

    def conv(name, inp, oc, k, groups=1, pads=(0, 0, 0, 0), strides=(1, 1), relu=True):
        c = inp.shape[1]
        w = g.const(_weights((oc, c // groups, k, k)), f"{name}.w")
        b = g.const(RNG.standard_normal(oc).astype(np.float32), f"{name}.b")
        y = g.op("conv", inp, w, b, pads=pads, strides=strides, groups=groups, name=name)
        y = g.op("relu", y) if relu else y
        outs.append((name, y))
        ks[name] = c // groups * k * k
        return y

    conv("c1x1", x, 20, 1)  # GEMM on contiguous columns, a partial channel block
    conv("c3x3_s2", x, 36, 3, pads=(1, 1, 1, 1), strides=(2, 2))  # im2col with padding
    wide = conv("c3x3", x, 72, 3, pads=(1, 1, 1, 1))  # channel-vector (padding made explicit)
    conv("grouped", wide, 48, 3, groups=2, relu=False)
    deep = conv("deep", g.op("concat", *[wide] * 4, axis=1), 64, 3)  # K 2592: reduction chunks
    flat = g.op("reshape", deep, shape=(2, 64 * 7 * 9))
    w = g.const(_weights((64 * 7 * 9, 10)), "fc.w")
    outs.append(("fc", g.op("matmul", flat, w, name="fc")))
    ks["fc"] = 64 * 7 * 9
    seq = g.op("reshape", wide, shape=(2, 72, 99))  # [2, 72, 99] @ [99, 30]: batch folded
    outs.append(("folded", g.op("matmul", seq, g.const(_weights((99, 30)), "fold.w"),
                                name="folded")))
    ks["folded"] = 99
    g.outputs = [v for _, v in outs]
    g.output_names = [n for n, _ in outs]
    feeds = {"x": RNG.standard_normal(x.shape).astype(np.float32)}
    return g, feeds, ks


@pytest.fixture(scope="module")
def fp16_model():
    g, feeds, ks = kernel_model()
    h = run_pipeline(g, 3, precision=Fp16(arithmetic="float16"))
    # the unfused fp16 graph, interpreted: the half operands summed exactly, rounded once
    from neo.passes.precision import weights_to_fp16

    ref = dict(zip(g.output_names, interpret(weights_to_fp16(g, "float16"), feeds)))
    return h, feeds, ks, ref


def _check(outs: dict, ref: dict, ks: dict[str, int], where: str) -> None:
    for name, r in ref.items():
        r = r.astype(np.float64)
        scale = np.abs(r).max()
        assert scale > 0.5, f"{name}: a degenerate reference (max |y| {scale})"
        err = np.abs(outs[name].astype(np.float64) - r).max() / scale
        # fp16 accumulation: a rounding of at most EPS16 of the running sum per step, whose
        # errors add up like a random walk
        assert err <= 2 * EPS16 * np.sqrt(ks[name]), (where, name, ks[name], err)


def test_fp16_kernels_on_this_machine(fp16_model):
    from neo.runtime import Model

    h, feeds, ks, ref = fp16_model
    target = host_target()
    module, kernels = generate_kernels(h, target)
    families = {info.op: info.kernel for _, info in kernels if info is not None}
    anchors = [k for op, k in families.items() if op.startswith(("conv", "matmul"))]
    assert anchors and "te" not in anchors, families  # every conv and matmul on a half kernel
    # the arithmetic that runs is the one the target has: half FMAs (vfmadd231ph) with
    # AVX512-FP16 (Sapphire Rapids and later), fp32 FMAs on fp16 storage elsewhere
    asm = emit_assembly(module, target)
    half = len(HALF_FMA["x86_64"].findall(asm))
    single = len(FLOAT_FMA["x86_64"].findall(asm))
    if native_fp16(tuning_for(target)):
        assert half > 0 and single == 0, (target.cpu, half, single)
    else:
        assert half == 0 and single > 0, (target.cpu, half, single)
    with tempfile.TemporaryDirectory() as tmp:
        build_artifact(h, target, Path(tmp) / "a", _meta(h))
        with Model(Path(tmp) / "a", check=True) as m:
            outs = dict(zip(h.output_names, m.run(feeds)))
    _check(outs, ref, ks, "host")


def test_fp16_kernels_on_arm64_under_qemu(fp16_model, require_qemu, tmp_path):
    from neo.run import run_artifact

    require_qemu("aarch64")
    h, feeds, ks, ref = fp16_model
    target = get_target("ml_c6g")
    _, kernels = generate_kernels(h, target)
    assert {"channel", "gemm"} <= {i.kernel for _, i in kernels if i is not None}
    build_artifact(h, target, tmp_path / "a", _meta(h))
    names, outs, _ = run_artifact(tmp_path / "a", feeds, threads=2, check=True)
    _check(dict(zip(names, outs)), ref, ks, "ml_c6g")


def _meta(g: Graph) -> dict:
    return {"inputs": [{"name": v.name, "dtype": v.dtype, "shape": list(v.shape)}
                       for v in g.inputs],
            "outputs": [{"name": n, "dtype": v.dtype, "shape": list(v.shape)}
                        for n, v in zip(g.out_names(), g.outputs)]}


# -- machine code ---------------------------------------------------------------------------------
HALF_FMA = {"aarch64": re.compile(r"\bfmla\s+v\d+\.8h,\s*v\d+\.8h,\s*v\d+\.(?:8h|h\[\d\])"),
            "x86_64": re.compile(r"\bvfmadd\d+ph\s+.*%zmm")}
FLOAT_FMA = {"aarch64": re.compile(r"\bfmla\s+v\d+\.4s"),
             "x86_64": re.compile(r"\bvfmadd\d+ps\s+.*%[yz]mm")}
SPILL = {"aarch64": re.compile(r"^\s*(?:ldr|str|ldp|stp|ldur|stur|ld1\w*|st1\w*)\s+\{?\s*[qdsv]\d+"
                               r"[^\[]*\[sp\b"),
         "x86_64": re.compile(r"%[xyz]mm\d+.*\(%rsp\)|\(%rsp\).*%[xyz]mm\d+")}
TARGETS = {  # name: (--target, --compiler-options, fp16 arithmetic)
    "ml_c6g": ("ml_c6g", None, True),
    "sapphirerapids": ("x86_64", '{"mcpu": "sapphirerapids"}', True),
    "arm64": ("arm64", None, False),
    "znver4": ("x86_64", '{"mcpu": "znver4"}', False),
}


def _conv_matmul_model() -> Graph:
    """The models of test_arm_codegen in one graph: a 3x3 conv 32 -> 64 on 28x28 and a
    1x256 @ 256x128 matmul."""
    g = Graph("gemms")
    x = g.input("x", (1, 32, 28, 28))
    v = g.input("v", (1, 256))
    y = g.op("conv", x, g.const(_weights((64, 32, 3, 3)), "w"), pads=(1, 1, 1, 1))
    z = g.op("matmul", v, g.const(_weights((256, 128)), "m"))
    g.outputs, g.output_names = [y, z], ["y", "z"]
    return g


@pytest.mark.parametrize("name", list(TARGETS))
def test_fp16_fmas_in_the_machine_code(name):
    tname, copts, native = TARGETS[name]
    target, _ = resolve_target(tname, None, copts)
    assert native_fp16(tuning_for(target)) == native
    arithmetic = "float16" if native else "float32"
    g = run_pipeline(_conv_matmul_model(), 3, precision=Fp16(arithmetic=arithmetic))
    module, kernels = generate_kernels(g, target)
    asm = emit_assembly(module, target)
    gemms = [i for _, i in kernels if i is not None and i.op.startswith(("conv", "matmul"))]
    assert len(gemms) == 2, [i.op for _, i in kernels if i]
    arch = target.arch
    for info in gemms:
        body = function_body(asm, info.func)
        half = sum(bool(HALF_FMA[arch].search(ln)) for ln in body)
        single = sum(bool(FLOAT_FMA[arch].search(ln)) for ln in body)
        if not native:  # fp32 arithmetic on fp16 weights
            assert half == 0 and single > 0, (name, info.func, half, single)
            continue
        assert half > 0 and single == 0, (name, info.func, half, single)
        # a register-blocked micro-kernel of half vectors, without spills
        rows, vectors = info.tile
        inner = innermost_fma_loops(body, HALF_FMA[arch])
        counts = [sum(bool(HALF_FMA[arch].search(ln)) for ln in lp.lines) for lp in inner]
        assert counts and max(counts) >= rows * vectors, (name, info.func, counts, info.tile)
        for lp in inner:
            spills = [ln.strip() for ln in lp.lines if SPILL[arch].search(ln)]
            assert not spills, (name, info.func, spills)
