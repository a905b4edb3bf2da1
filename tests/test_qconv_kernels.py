"""The integer conv kernels (codegen/kernel_qconv.py) on every dot-product form, compiled and run,
equal to the numpy references bit for bit; and their machine code uses each target's instruction.

| target | instruction | run |
|---|---|---|
| host (AVX-512 VNNI: Zen 4, Zen 5) | vpdpbusd zmm | natively, skipped on a CPU without VNNI |
| host (AMX-INT8: Sapphire Rapids) | tdpbsud | natively, skipped on a CPU without AMX |
| a Sapphire Rapids target | tdpbsud, ldtilecfg | machine code only, anywhere |
| x86_64 (x86-64-v3: AVX2) | vpmaddubsw + vpmaddwd (weights within 7 bits), vpmaddwd (any) | natively |
| ml_c6g (Neoverse-N1: dotprod) | sdot | qemu-aarch64 |
| rasp4b (Cortex-A72: no dotprod) | smull + sadalp | qemu-aarch64 |
| armv7 | vmull.s8 + vpadal.s16 | qemu-arm |

Cases cover 3x3 and 1x1 convs, stride 2 (phase planes), a stem-like 7x7 with 3 channels, groups,
input channels that are not a multiple of the word, uint8 and int8 activations, and a fused
residual qadd; the epilogue clamps (a fused ReLU) and requantizes per channel.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from neo import ir
from neo.codegen.build import build_artifact, emit_assembly, generate_kernels
from neo.ir import QuantParams
from neo.ir.interpreter import interpret
from neo.passes import run_pipeline
from neo.targets import get_target

# (in channels, out channels, H, W, kernel, stride, pad, groups)
CASES = [
    (16, 32, 14, 14, 3, 1, 1, 1),
    (24, 40, 9, 17, 1, 1, 0, 1),
    (8, 24, 9, 17, 3, 2, 1, 1),
    (3, 16, 23, 23, 7, 2, 3, 1),
    (13, 7, 5, 9, 3, 1, 0, 1),
    (16, 32, 10, 10, 3, 1, 1, 2),
    (32, 64, 12, 12, 1, 2, 0, 1),
]


def _id(c):
    return "x".join(map(str, c[:5])) + f"s{c[5]}p{c[6]}g{c[7]}"


def conv_graph(c, oc, h, w, k, s, p, g, *, xdt="uint8", small_weights=False, residual=False,
               seed=0, batch=1):
    rng = np.random.default_rng(seed)
    gr = ir.Graph()
    xz = 131 if xdt == "uint8" else -3
    x = gr.input("x", (batch, c, h, w), xdt)
    lim = 64 if small_weights else 128
    wt = gr.const(rng.integers(-lim + 1, lim, (oc, c // g, k, k)).astype(np.int8), "w")
    b = gr.const(rng.integers(-4000, 4000, oc).astype(np.int32), "b")
    acc = gr.op("conv_integer", x, wt, b, x_zero_point=xz, w_zero_point=0, strides=(s, s),
                pads=(p,) * 4, groups=g)
    K = c // g * k * k
    m = tuple(rng.uniform(0.5, 1.5, oc) / (K * 20 * lim / 64))
    yq = QuantParams.per_tensor(0.1, 5)
    y = gr.op("requantize", acc, multiplier=m, axis=1, out_zero_point=5, dtype="int8", min=-20,
              quant=yq)
    feeds = {"x": rng.integers(*((0, 256) if xdt == "uint8" else (-128, 128)),
                               (batch, c, h, w)).astype(xdt)}
    if residual:
        rq = QuantParams.per_tensor(0.08, -3)
        r = gr.input("r", y.shape, "int8", rq)
        y = gr.op("qadd", y, r, a_quant=yq, b_quant=rq, quant=QuantParams.per_tensor(0.15, 0),
                  dtype="int8")
        feeds["r"] = rng.integers(-128, 128, y.shape).astype(np.int8)
    gr.outputs = [y]
    return gr, feeds


def kernels_of(g, target) -> list[str]:
    _, ks = generate_kernels(run_pipeline(g, 3), target)
    return [info.kernel for _, info in ks if info is not None]


def _has_vnni() -> bool:
    from conftest import cpu_flags

    return "avx512_vnni" in cpu_flags()


def _has_amx() -> bool:
    """AMX-INT8 on this CPU and the OS willing to give this process the tile state."""
    import ctypes
    import platform

    from conftest import cpu_flags

    if platform.machine() != "x86_64" or not {"amx_int8", "amx_tile"} <= cpu_flags():
        return False
    return ctypes.CDLL(None, use_errno=True).syscall(158, 0x1023, 18) == 0


@pytest.fixture
def amx_policy(monkeypatch):
    """Set lower_quant.AMX_POLICY for one test (the planner decides otherwise)."""
    from neo.codegen import lower_quant

    return lambda policy: monkeypatch.setattr(lower_quant, "AMX_POLICY", policy)


def sapphire_rapids():
    """An AMX-INT8 target (Sapphire Rapids), for machine code and planning on any machine."""
    from dataclasses import replace

    return replace(get_target("ml_c5"), name="spr", cpu="sapphirerapids", features="")


def _check_local(g, feeds, target, tmp_path, expect_kernel):
    from conftest import run_artifact_checked

    assert kernels_of(g, target) == [expect_kernel]
    want = interpret(g, feeds)[0]
    assert len(np.unique(want)) > 8  # informative: not saturated
    build_artifact(run_pipeline(g, 3), target, tmp_path / "a", {}, 3)
    np.testing.assert_array_equal(run_artifact_checked(tmp_path / "a", feeds)[0], want)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_vnni_conv_matches_reference(case, tmp_path, amx_policy):
    if not _has_vnni():
        pytest.skip("vpdpbusd needs an AVX-512 VNNI CPU (the x86 AVX2 forms run everywhere)")
    amx_policy("never")
    g, feeds = conv_graph(*case)
    _check_local(g, feeds, get_target("host"), tmp_path, "int8-vnni")


# beyond CASES: K chunks (100 channels: 2 of 13 quads, the last padded), 7x7 planes (positions
# off the tile), a stride-2 3x3 on 72 channels, 48 output channels (a block of 32 and a tail of
# 16), more than two blocks of 32 output channels with a tail of 8
AMX_CASES = CASES + [(64, 48, 7, 7, 3, 1, 1, 1), (100, 40, 6, 30, 1, 1, 0, 1),
                     (72, 20, 11, 11, 3, 2, 1, 1), (40, 72, 9, 9, 1, 1, 0, 1)]


@pytest.mark.parametrize("xdt", ["uint8", "int8"])
@pytest.mark.parametrize("case", AMX_CASES, ids=_id)
def test_amx_conv_matches_reference(case, xdt, tmp_path, amx_policy):
    if not _has_amx():
        pytest.skip("tdpbsud needs an AMX-INT8 CPU and Linux 5.16+ (its machine code is "
                    "checked everywhere)")
    amx_policy("always")
    g, feeds = conv_graph(*case, xdt=xdt, seed=case[1])
    _check_local(g, feeds, get_target("host"), tmp_path, "int8-amx")


def test_amx_planner_keeps_vnni_where_tiles_waste():
    """AMX for a 3x3 conv on 64 channels; VNNI for a stem's 7x7 on 3 channels (one K quad per
    tap: a tile instruction would do a sixteenth of its work) and for 1x1 convs on 8."""
    t = sapphire_rapids()
    assert kernels_of(conv_graph(64, 64, 28, 28, 3, 1, 1, 1)[0], t) == ["int8-amx"]
    assert kernels_of(conv_graph(64, 256, 28, 28, 1, 1, 0, 1)[0], t) == ["int8-amx"]
    assert kernels_of(conv_graph(3, 64, 112, 112, 7, 2, 3, 1)[0], t) == ["int8-vnni"]
    assert kernels_of(conv_graph(8, 16, 56, 56, 1, 1, 0, 1)[0], t) == ["int8-vnni"]


def test_amx_refused_by_the_os_is_a_clear_error(tmp_path, amx_policy):
    """Where the OS refuses the tile state the kernel stops before any tile instruction and the
    run fails with the runtime's message, on any x86-64 machine: a preloaded syscall() refuses
    arch_prctl here as a kernel older than 5.16 (or a CPU without AMX) would."""
    import platform
    import subprocess

    from neo.codegen.kernel_qconv import AMX_DENIED
    from neo.codegen.toolchain import zig_cc

    if platform.machine() != "x86_64":
        pytest.skip("an x86-64 test")
    header = (Path(__file__).parents[1] / "runtime" / "neort.h").read_text()
    assert f"#define NEO_KERNEL_AMX_DENIED {AMX_DENIED:#X}".replace("0X", "0x") in header
    shim = tmp_path / "refuse.c"
    shim.write_text(
        "#define _GNU_SOURCE\n#include <dlfcn.h>\n#include <errno.h>\n#include <stdarg.h>\n"
        "long syscall(long n, ...) {\n  va_list ap; va_start(ap, n); long a[6];\n"
        "  for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);\n  va_end(ap);\n"
        "  if (n == 158 && a[0] == 0x1023) { errno = EPERM; return -1; }\n"
        "  long (*real)(long, ...) = (long (*)(long, ...))dlsym(RTLD_NEXT, \"syscall\");\n"
        "  return real(n, a[0], a[1], a[2], a[3], a[4], a[5]);\n}\n")
    subprocess.run([*zig_cc(), "-target", "x86_64-linux-gnu", "-shared", "-fPIC", "-o",
                    str(tmp_path / "refuse.so"), str(shim)], check=True, capture_output=True)
    amx_policy("always")
    g, feeds = conv_graph(64, 64, 14, 14, 3, 1, 1, 1)
    art = tmp_path / "a"
    meta = {"inputs": [{"name": "x", "dtype": "uint8", "shape": [1, 64, 14, 14]}],
            "outputs": [{"name": g.out_names()[0], "dtype": "int8", "shape": [1, 64, 14, 14]}]}
    build_artifact(run_pipeline(g, 3), sapphire_rapids(), art, meta, 3)
    np.save(tmp_path / "x.npy", feeds["x"])
    r = subprocess.run([str(art / "neo-run"), str(art), "--input", f"x={tmp_path / 'x.npy'}"],
                       capture_output=True, text=True,
                       env={"LD_PRELOAD": str(tmp_path / "refuse.so"), "PATH": "/usr/bin:/bin"})
    assert r.returncode != 0
    assert "uses AMX, which the operating system refused this process" in r.stderr, r.stderr


@pytest.mark.parametrize("small", [False, True], ids=["exact", "pmaddubsw"])
@pytest.mark.parametrize("case", CASES[:4], ids=_id)
def test_avx2_conv_matches_reference(case, small, tmp_path):
    g, feeds = conv_graph(*case, small_weights=small, xdt="int8" if small else "uint8")
    _check_local(g, feeds, get_target("x86_64"), tmp_path,
                 "int8-avx2" if small else "int8-avx2-exact")


def test_fused_residual_and_batch(tmp_path):
    target = get_target("host" if _has_vnni() else "x86_64")
    g, feeds = conv_graph(16, 32, 14, 14, 3, 1, 1, 1, residual=True, batch=2, xdt="int8")
    _check_local(g, feeds, target, tmp_path, kernels_of(g, target)[0])
    assert kernels_of(g, target)[0].startswith("int8-")


@pytest.mark.parametrize("target,kernel", [("ml_c6g", "int8-sdot"), ("rasp4b", "int8-smull"),
                                           ("armv7", "int8-smull")])
def test_arm_conv_matches_reference(target, kernel, tmp_path, require_qemu):
    from neo.run import run_artifact

    t = get_target(target)
    require_qemu(t.arch)
    for i, case in enumerate((CASES[0], CASES[2], CASES[4])):
        g, feeds = conv_graph(*case, xdt="int8" if i % 2 else "uint8", seed=i)
        assert kernels_of(g, t) == [kernel]
        want = interpret(g, feeds)[0]
        meta = {"inputs": [{"name": "x", "dtype": g.inputs[0].dtype,
                            "shape": list(g.inputs[0].shape)}],
                "outputs": [{"name": g.out_names()[0], "dtype": "int8",
                             "shape": list(want.shape)}]}
        art = tmp_path / f"a{i}"
        build_artifact(run_pipeline(g, 3), t, art, meta, 3)
        _, outs, _ = run_artifact(art, feeds, threads=2, check=True)
        np.testing.assert_array_equal(outs[0], want)


# -- machine code ---------------------------------------------------------------------------------
INSTRUCTIONS = {
    "host": [r"\bvpdpbusd\s+[^\n]*%zmm"],
    "spr": [r"\btdpbsud\s+%tmm", r"\bldtilecfg\b", r"\btilerelease\b"],
    "x86_64": [r"\bvpmaddwd\b"],
    "ml_c6g": [r"\bsdot\s+v\d+\.4s"],
    "rasp4b": [r"\bsmull2?\s+v\d+\.8h", r"\bsadalp\s+v\d+\.4s"],
    "armv7": [r"\bvmull\.s8\b", r"\bvpadal\.s16\b"],
}


@pytest.mark.parametrize("target", list(INSTRUCTIONS))
def test_int8_conv_uses_the_dot_product_instruction(target, amx_policy):
    amx_policy("never" if target == "host" else "auto")
    t = sapphire_rapids() if target == "spr" else get_target(target)
    g, _ = conv_graph(32, 64, 14, 14, 3, 1, 1, 1)
    module, _ = generate_kernels(run_pipeline(g, 3), t)
    asm = emit_assembly(module, t)
    for pattern in INSTRUCTIONS[target]:
        assert re.search(pattern, asm), f"{pattern} not in the {target} int8 conv kernel"
    if target == "x86_64":  # AVX2 without VNNI: no VNNI encodings slip in
        assert not re.search(r"\bvpdpbusd\b", asm)


def test_avx2_uses_pmaddubsw_only_where_exact():
    t = get_target("x86_64")
    safe, _ = conv_graph(32, 64, 14, 14, 3, 1, 1, 1, small_weights=True)
    full, _ = conv_graph(32, 64, 14, 14, 3, 1, 1, 1)
    for g, expect in ((safe, True), (full, False)):
        module, _ = generate_kernels(run_pipeline(g, 3), t)
        assert bool(re.search(r"\bvpmaddubsw\b", emit_assembly(module, t))) == expect


# -- matmul ---------------------------------------------------------------------------------------
# (A's shape without K, K, N): one row (a classifier), a few rows, a batch folded into rows,
# K and N off every word and vector multiple
MM_CASES = [((1,), 130, 37), ((3,), 64, 100), ((2, 37), 5, 17), ((1,), 1, 1), ((5,), 259, 16)]


def _mm_id(c):
    return "x".join(map(str, c[0])) + f"k{c[1]}n{c[2]}"


def matmul_graph(lead, K, N, *, xdt="int8", small_weights=False, epilogue="single", seed=0):
    """A [lead..., K] x B [K, N] int8 (zero point 0), then per-column requantize (TFLite's
    FULLY_CONNECTED single rounding, or the double rounding) with a clamp, or nothing (int32)."""
    rng = np.random.default_rng(seed)
    gr = ir.Graph()
    xz = 131 if xdt == "uint8" else -3
    a = gr.input("a", (*lead, K), xdt)
    lim = 64 if small_weights else 128
    w = gr.const(rng.integers(-lim + 1, lim, (K, N)).astype(np.int8), "w")
    y = gr.op("matmul_integer", a, w, a_zero_point=xz, b_zero_point=0)
    if epilogue != "none":
        m = tuple(rng.uniform(0.5, 1.5, N) / (max(K, 4) * 20 * lim / 64))
        y = gr.op("requantize", y, multiplier=m, axis=len(lead), out_zero_point=5, dtype="int8",
                  min=-20, mode="fixed_point", single_rounding=epilogue == "single",
                  quant=QuantParams.per_tensor(0.1, 5))
    gr.outputs = [y]
    lo, hi = (0, 256) if xdt == "uint8" else (-128, 128)
    return gr, {"a": rng.integers(lo, hi, (*lead, K)).astype(xdt)}


def _check_matmul(g, feeds, target, tmp_path, expect_kernel, threads=None):
    from neo.run import run_artifact

    assert kernels_of(g, target) == [expect_kernel]
    want = interpret(g, feeds)[0]
    assert want.size < 8 or len(np.unique(want)) > min(8, want.size // 2)  # not saturated
    meta = {"inputs": [{"name": "a", "dtype": g.inputs[0].dtype,
                        "shape": list(g.inputs[0].shape)}],
            "outputs": [{"name": g.out_names()[0], "dtype": want.dtype.name,
                         "shape": list(want.shape)}]}
    build_artifact(run_pipeline(g, 3), target, tmp_path, meta, 3)
    _, outs, _ = run_artifact(tmp_path, feeds, threads=threads, check=True)
    np.testing.assert_array_equal(outs[0], want)


@pytest.mark.parametrize("bits", [256, 512])
@pytest.mark.parametrize("epilogue", ["single", "double", "none"])
@pytest.mark.parametrize("case", MM_CASES, ids=_mm_id)
def test_vnni_matmul_matches_reference(case, epilogue, bits, tmp_path):
    import dataclasses

    if not _has_vnni():
        pytest.skip("vpdpbusd needs an AVX-512 VNNI CPU (the x86 AVX2 forms run everywhere)")
    g, feeds = matmul_graph(*case, epilogue=epilogue, xdt="uint8" if bits == 256 else "int8")
    t = dataclasses.replace(get_target("host"), vector_bits=bits)
    _check_matmul(g, feeds, t, tmp_path, "int8-vnni", threads=2)


@pytest.mark.parametrize("small", [False, True], ids=["exact", "pmaddubsw"])
@pytest.mark.parametrize("case", MM_CASES, ids=_mm_id)
def test_avx2_matmul_matches_reference(case, small, tmp_path):
    from neo.codegen.kernel_qconv import matmul_weight_groups, pmaddubsw_exact

    g, feeds = matmul_graph(*case, small_weights=small, xdt="int8" if small else "uint8")
    w = next(n for n in g.nodes if n.op == "matmul_integer").inputs[1].data
    exact = pmaddubsw_exact(matmul_weight_groups(w, 4))
    assert exact == small or w.size < 8  # the full-range weights saturate vpmaddubsw
    _check_matmul(g, feeds, get_target("x86_64"), tmp_path,
                  "int8-avx2" if exact else "int8-avx2-exact", threads=2)


@pytest.mark.parametrize("target,kernel", [("ml_c6g", "int8-sdot"), ("rasp4b", "int8-smull"),
                                           ("armv7", "int8-smull")])
def test_arm_matmul_matches_reference(target, kernel, tmp_path, require_qemu):
    t = get_target(target)
    require_qemu(t.arch)
    for i, case in enumerate(MM_CASES[:3]):
        g, feeds = matmul_graph(*case, xdt="int8" if i % 2 else "uint8", seed=i,
                                epilogue=("single", "double", "none")[i])
        _check_matmul(g, feeds, t, tmp_path / f"a{i}", kernel, threads=2)
