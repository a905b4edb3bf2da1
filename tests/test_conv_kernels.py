"""The conv kernels (channel-vector, direct, im2col GEMM, 1x1 GEMM, depthwise, tensor-expression)
with fused residual epilogues, compiled and run, against the IR's numpy reference; opt-level 0
and 3 take different paths. Every case runs at every vector width (conftest.VECTOR_WIDTHS) on
the kernels built for that width; at opt-level 3 it asserts the kernel family lowering chose for
that width (the one that runs), so a change of heuristics shows up here."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import run_artifact_checked, width_target

from neo import ir
from neo.codegen.build import build_artifact, generate_kernels
from neo.ir.interpreter import interpret
from neo.passes import run_pipeline
from neo.targets import get_target

# (in channels, out channels, H, W, kernel, stride, pads, dilation, groups), kernel at opt-level 3
# (a dict: per vector width where the widths choose differently; the key "avx512" is native
# AVX-512 code, whose shapes come from the cycle model, 512 the same width legalized to AVX2)
CASES = [
    ((8, 16, 20, 20, 3, 1, 1, 1, 1), "channel"),  # position tiles wrap rows
    ((8, 16, 9, 33, 3, 1, 1, 1, 1), "channel"),  # odd width
    ((8, 32, 7, 7, 3, 1, 1, 1, 1), "channel"),  # 7x7 plane: 5-row tiles
    # grouped, 6 channels per group; 16 lanes: rows of 17 are too short for column vectors
    ((4, 12, 17, 17, 3, 1, 1, 1, 2), {128: "direct", 256: "direct", 512: "gemm"}),
    ((16, 32, 12, 12, 3, 1, 1, 1, 2), "channel"),  # grouped, 16 channels per group
    ((8, 8, 20, 20, 3, 1, 1, 1, 8), "depthwise"),
    ((8, 8, 21, 37, 3, 2, 1, 1, 8), "depthwise"),  # stride 2: strided vector loads
    ((8, 8, 21, 37, 5, 3, 2, 1, 8), "depthwise"),  # stride 3
    ((8, 16, 14, 14, 3, 1, 1, 1, 8), "depthwise"),  # channel multiplier 2
    ((8, 8, 12, 12, 3, 1, 0, 1, 8), "depthwise"),  # no padding
    ((8, 16, 20, 20, 5, 1, 2, 2, 1), "channel"),  # dilated
    ((3, 16, 32, 32, 7, 2, 3, 1, 1), "channel"),  # stem conv, stride 2
    ((8, 16, 15, 15, 3, 2, 1, 1, 1), "channel"),  # stride 2
    # rows of 51 and 53 outputs: tiles within a row (one input pointer, x86) beside tiles that
    # wrap to the next row, which may also be a channel tail or the short last tile
    ((3, 16, 9, 101, 3, 2, 1, 1, 1), "channel"),
    ((8, 20, 6, 53, 3, 1, 1, 1, 1), "channel"),
    ((12, 20, 16, 40, 1, 1, 0, 1, 1), "gemm"),  # 1x1 on a wide plane: GEMM
    ((160, 24, 7, 7, 1, 1, 0, 1, 1), "channel"),  # 1x1 on a 7x7 plane: two reduction chunks
    ((64, 24, 9, 9, 3, 1, 2, 2, 1), "channel"),  # two reduction chunks, channel tail of 8
    # 1.3 MB of weights: each tile prefetches a share of the next chunk's (past the last one's
    # end on the last), several reduction chunks, a channel tail
    ((512, 72, 5, 5, 3, 1, 1, 1, 1), "channel"),
    # strided 1x1: im2col; native AVX-512 (the cycle model): channel tiles read the strided
    # positions in place
    ((12, 20, 15, 15, 1, 2, 0, 1, 1), {128: "gemm", 256: "gemm", 512: "gemm", "avx512": "channel"}),
    ((8, 16, 16, 40, 3, 1, 0, 1, 1), "channel"),  # no padding
    # asymmetric pads, 13 channels: fewer than 16 lanes (AVX-512: 13 of 16 lanes in channel
    # tiles beat an im2col GEMM)
    ((8, 13, 16, 18, 3, 1, (1, 0, 2, 1), 1, 1),
     {128: "channel", 256: "channel", 512: "gemm", "avx512": "channel"}),
    # fewer channels than lanes: spatial vectors (4 lanes: one channel vector)
    ((8, 4, 12, 40, 3, 1, 1, 1, 1), {128: "channel", 256: "direct", 512: "direct"}),
    ((16, 16, 13, 11, 3, 1, 1, 1, 1), "winograd"),  # odd output: partial 2x2 tiles
    ((16, 24, 20, 20, 3, 1, 1, 1, 1), "winograd"),  # tile rows of 10: a masked tail vector
    ((24, 32, 12, 12, 3, 1, (1, 0, 2, 1), 1, 1), "winograd"),  # asymmetric pads
    ((16, 16, 16, 16, 3, 1, 0, 1, 1), "winograd"),  # no padding
    ((16, 32, 7, 7, 3, 1, 1, 1, 1), "winograd"),  # 7x7: 16 tiles, the fewest it takes
    # one-column output plane (OW == 1): the fused residual is read down the rows (found by
    # test_kernel_properties: its last, size-1 index was dropped, so every row read row 0)
    ((1, 1, 7, 3, 5, 1, (0, 0, 0, 2), 1, 1), "gemm"),
    ((8, 16, 9, 1, 3, 1, 1, 1, 1), "channel"),
]


def _id(case):
    c, kind = case
    kind = kind if isinstance(kind, str) else "-".join(sorted(set(kind.values())))
    return "x".join(map(str, c[:5])) + f"s{c[5]}g{c[8]}-{kind}"


def _graph(c, oc, h, w, k, s, p, d, g, rng):
    gr = ir.Graph()
    x = gr.input("x", (2, c, h, w))
    wt = gr.const(rng.normal(size=(oc, c // g, k, k)).astype("float32"), "w")
    bb = gr.const(rng.normal(size=oc).astype("float32"), "b")
    pads = p if isinstance(p, tuple) else (p, p, p, p)
    y = gr.op("conv", x, wt, bb, strides=(s, s), pads=pads, dilations=(d, d), groups=g)
    r = gr.input("r", y.shape)
    gr.outputs = [gr.op("relu", gr.op("add", y, r))]
    feeds = {"x": rng.normal(size=(2, c, h, w)).astype("float32"),
             "r": rng.normal(size=y.shape).astype("float32")}
    return gr, feeds


@pytest.mark.parametrize("level", [0, 3])
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_conv_kernel_matches_reference(case, level, vtarget, tmp_path):
    shape, kind = case
    rng = np.random.default_rng(0)
    gr, feeds = _graph(*shape, rng)
    ref = interpret(gr, feeds)[0]
    graph = run_pipeline(gr, level)
    if level == 3:
        if not isinstance(kind, str):  # per width; "avx512": native AVX-512 where it differs
            kind = kind.get(vtarget.name, kind[vtarget.vector_bits])
        _, kernels = generate_kernels(graph, vtarget)
        kinds = {info.kernel for _, info in kernels
                 if info is not None and ("conv" in info.op or "winograd" in info.op)}
        # Winograd: its transforms plus the grouped 1x1 conv between them (a GEMM here)
        assert kinds == ({"winograd", "gemm"} if kind == "winograd" else {kind})
    build_artifact(graph, vtarget, tmp_path, {"inputs": []}, level)
    out = run_artifact_checked(tmp_path, feeds)[0]
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()


# Winograd tile rows (TW = ceil(OW / 2) tiles) shorter than, around and longer than 4, 8 and 16
# lanes, with few tile rows: a tail vector's unmasked lanes must stay within the plane.
@pytest.mark.parametrize("hw", [(31, 5), (9, 8), (8, 14), (5, 17), (3, 31), (4, 33), (8, 34),
                                (17, 3)], ids=lambda s: "x".join(map(str, s)))
def test_winograd_tile_rows(hw, vtarget, tmp_path):
    rng = np.random.default_rng(hw[0] * 100 + hw[1])
    gr, feeds = _graph(16, 16, *hw, 3, 1, 1, 1, 1, rng)
    ref = interpret(gr, feeds)[0]
    graph = run_pipeline(gr, 3)
    _, kernels = generate_kernels(graph, vtarget)
    assert "winograd" in {info.kernel for _, info in kernels if info is not None}
    build_artifact(graph, vtarget, tmp_path, {"inputs": []})
    out = run_artifact_checked(tmp_path, feeds)[0]
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()


@pytest.mark.parametrize("case", [CASES[i][0] for i in (0, 2, 6, 14, 15, 19, 20)],
                         ids=["channel", "narrow", "depthwise-s2", "1x1-chunks", "chunks",
                              "direct", "winograd"])
def test_conv_kernel_on_arm64(case, tmp_path, require_qemu):
    from neo.run import run_artifact

    require_qemu("aarch64")
    rng = np.random.default_rng(1)
    gr, feeds = _graph(*case, rng)
    ref = interpret(gr, feeds)[0]
    target = get_target("arm64")
    build_artifact(run_pipeline(gr, 3), target, tmp_path,
                   {"target": {"arch": target.arch}, "inputs": [
                       {"name": k, "dtype": "float32", "shape": list(v.shape)}
                       for k, v in feeds.items()],
                    "outputs": [{"name": "y", "dtype": "float32", "shape": list(ref.shape)}]})
    _, outs, info = run_artifact(tmp_path, feeds)
    assert info["emulated"]
    assert np.abs(outs[0] - ref).max() <= 1e-5 * np.abs(ref).max()


@pytest.mark.parametrize("target_name", ["riscv64", "rv64gcv"])
@pytest.mark.parametrize("case", [CASES[i][0] for i in (0, 2, 6, 14, 15, 19, 20)],
                         ids=["channel", "narrow", "depthwise-s2", "1x1-chunks", "chunks",
                              "direct", "winograd"])
def test_conv_kernel_on_riscv64(case, target_name, tmp_path, require_qemu):
    """The arm64 cases on riscv64: scalar RV64GC (every kernel's one-lane fallback; qemu's CPU
    has no vectors, so a vector instruction would trap) and RVV with 128-bit vectors."""
    from neo.run import run_artifact

    require_qemu(target_name)
    rng = np.random.default_rng(1)
    gr, feeds = _graph(*case, rng)
    ref = interpret(gr, feeds)[0]
    target = get_target(target_name)
    build_artifact(run_pipeline(gr, 3), target, tmp_path,
                   {"inputs": [{"name": k, "dtype": "float32", "shape": list(v.shape)}
                               for k, v in feeds.items()],
                    "outputs": [{"name": "y", "dtype": "float32", "shape": list(ref.shape)}]})
    _, outs, info = run_artifact(tmp_path, feeds, check=True)
    assert info["emulated"] and info["arch"] == "riscv64"
    assert np.abs(outs[0] - ref).max() <= 1e-5 * np.abs(ref).max()


# Channel-vector convs whose weights fit in L2 split the output positions between threads
# (ChannelConvSpec.positions_outer: panels innermost); larger ones split the panels. Both
# partitions, with position chunks that end mid-row and a channel tail, at 1 to 4 threads.
@pytest.mark.parametrize("shape,outer", [
    ((12, 72, 14, 14, 3, 1, 1, 1, 1), True),  # 6 panels of 12
    ((80, 40, 7, 7, 1, 1, 0, 1, 1), True),  # 1x1, a partial last panel
    ((512, 160, 7, 7, 3, 1, 2, 2, 1), False),  # 2.9 MB of weights: panels outermost
], ids=["3x3", "1x1-tail", "big-weights"])
@pytest.mark.parametrize("threads", [1, 2, 3, 4])
def test_channel_conv_thread_partitions(shape, outer, threads, tmp_path, monkeypatch):
    from neo.codegen import kernel_convc

    rng = np.random.default_rng(sum(shape))
    gr, feeds = _graph(*shape, rng)
    seen = _record_specs(monkeypatch, kernel_convc, "emit_channel_conv_kernel",
                         lambda spec: spec.positions_outer)
    # 4 lanes: several panels for every shape
    _check_at_threads(gr, feeds, width_target("w128"), threads, tmp_path)
    assert seen == [outer]


# One image, weights past L2 and 16 position blocks or more: each thread takes a run of the
# positions and every panel over it (ChannelConvSpec.spatial): runs that end mid-row, on a short
# last block, several reduction chunks and a channel tail, at 1 to 4 threads. The runs split
# inside a block, between panels (kernel_convc.spatial_parts): parts of one block, or of
# several where a cap on their number groups them.
@pytest.mark.parametrize("width", ["w128", "w512"])
@pytest.mark.parametrize("threads", [1, 2, 3, 4])
@pytest.mark.parametrize("max_parts", [4096, 9], ids=["block-parts", "grouped-parts"])
def test_channel_conv_spatial_partitions(width, threads, max_parts, tmp_path, monkeypatch):
    from neo.codegen import kernel_convc

    monkeypatch.setattr(kernel_convc, "MAX_SPLIT_PARTS", max_parts)

    rng = np.random.default_rng(5)
    gr = ir.Graph()
    x = gr.input("x", (1, 256, 24, 26))
    w = gr.const(rng.normal(size=(76, 256, 3, 3)).astype("float32"), "w")  # 700 KB
    # stride 2 (not a Winograd conv): 12 x 13 outputs
    y = gr.op("conv", x, w, strides=(2, 2), pads=(1, 1, 1, 1), dilations=(1, 1), groups=1)
    gr.outputs = [gr.op("relu", gr.op("add", y, gr.input("r", y.shape)))]
    feeds = {"x": rng.normal(size=(1, 256, 24, 26)).astype("float32"),
             "r": rng.normal(size=y.shape).astype("float32")}
    seen = _record_specs(monkeypatch, kernel_convc, "emit_channel_conv_kernel",
                         lambda spec: (spec.spatial, -(-spec.M // spec.blocking.nr) > 1,
                                       kernel_convc.chunking(spec)[0] < spec.Cg,
                                       kernel_convc.spatial_parts(spec)[0] > 1))
    _check_at_threads(gr, feeds, width_target(width), threads, tmp_path)
    assert seen == [(True, True, True, max_parts < 4096)]


def _long_row_graph(c, oc, kh, kw, w, d, rng):
    gr = ir.Graph()
    x = gr.input("x", (1, c, kh + 2, w))
    wt = gr.const(rng.normal(size=(oc, c, kh, kw)).astype("float32"), "w")
    bb = gr.const(rng.normal(size=oc).astype("float32"), "b")
    gr.outputs = [gr.op("neg", gr.op("conv", x, wt, bb, strides=(1, 1), pads=(0, 0, 0, 0),
                                     dilations=(1, d), groups=1))]
    return gr, {"x": rng.normal(size=(1, c, kh + 2, w)).astype("float32")}


@pytest.mark.parametrize("shape", [(1, 36, 1, 40, 120, 1), (3, 20, 2, 37, 150, 2),
                                   (1, 17, 1, 16, 60, 1)])
def test_channel_conv_long_kernel_rows(shape, vtarget, tmp_path):
    """Kernel rows longer than ROW_GROUP_TAPS (an audio model's 1x256 constant-Q filters) loop
    over groups of taps, the remainder unrolled after them; one row or several, dilated: equal
    to the reference at every width in checked mode."""
    rng = np.random.default_rng(sum(shape))
    gr, feeds = _long_row_graph(*shape, rng)
    ref = interpret(gr, feeds)[0]
    graph = run_pipeline(gr, 3)
    _, ks = generate_kernels(graph, vtarget)
    assert [i.kernel for _, i in ks if i is not None] == ["channel"]
    build_artifact(graph, vtarget, tmp_path, {"inputs": []})
    out = run_artifact_checked(tmp_path, feeds)[0]
    assert np.abs(out - ref).max() <= 2e-5 * np.abs(ref).max()


def test_channel_conv_code_does_not_grow_with_the_kernel_row():
    """A 1x256 window compiles to about the code of a 1x32 one: its taps loop in groups."""
    from neo.codegen import kernel_convc

    rng = np.random.default_rng(0)
    sizes = {}
    for kw in (2 * kernel_convc.ROW_GROUP_TAPS, 256):
        gr, _ = _long_row_graph(1, 36, 1, kw, 600, 1, rng)
        module, ks = generate_kernels(run_pipeline(gr, 3), get_target("x86_64"))
        assert [i.kernel for _, i in ks if i is not None] == ["channel"]
        sizes[kw] = len(str(module))
    assert sizes[256] < 1.2 * sizes[2 * kernel_convc.ROW_GROUP_TAPS], sizes


@pytest.mark.parametrize("target", ["x86_64", "arm64"])
def test_channel_conv_prefetches_the_next_weights(target, monkeypatch):
    """Channel-vector convs: past PREFETCH_BYTES of weights every tile prefetches a share of the
    next chunk's weights (prefetcht1 / prfm pldl2keep); below, the weights stay in cache and
    nothing is prefetched (the input's prefetch, x86, off here: the next test)."""
    import re

    from neo.codegen import kernel_convc
    from neo.codegen.build import emit_assembly

    monkeypatch.setattr(kernel_convc, "INPUT_PREFETCH_BLOCKS", 0)
    t = get_target(target)
    want = r"\bprefetcht1\b" if target == "x86_64" else r"\bprfm\s+pldl2keep\b"
    rng = np.random.default_rng(0)
    for shape, expect in (((512, 160, 7, 7, 3, 1, 2, 2, 1), True),
                          ((80, 40, 7, 7, 1, 1, 0, 1, 1), False)):
        gr, _ = _graph(*shape, rng)
        module, ks = generate_kernels(run_pipeline(gr, 3), t)
        assert [i.kernel for _, i in ks if i is not None][-1] == "channel"  # (a pad before)
        assert bool(re.search(want, emit_assembly(module, t))) == expect, shape


@pytest.mark.parametrize("target", ["x86_64", "ml_c5", "arm64"])
def test_channel_conv_prefetches_the_input_ahead(target):
    """x86 channel-vector convs prefetch, per reduction step, the input line of each kernel row
    that the tile INPUT_PREFETCH_BLOCKS position blocks on will read (read, into L2): one call
    per kernel row in every copy of the step; arm64 none. Small weights: no weight prefetch."""
    import re

    t = get_target(target)
    rng = np.random.default_rng(0)
    counts = {}
    for shape in ((80, 40, 7, 7, 1, 1, 0, 1, 1), (80, 40, 9, 9, 3, 2, 1, 1, 1)):
        gr, _ = _graph(*shape, rng)
        module, ks = generate_kernels(run_pipeline(gr, 3), t)
        assert [i.kernel for _, i in ks if i is not None][-1] == "channel", shape
        calls = re.findall(r'call void @"?llvm\.prefetch[.\w]*"?\(ptr [^,]+, i32 (\d), i32 (\d)',
                           str(module))
        assert set(calls) <= {("0", "2")}, calls
        counts[shape[4]] = len(calls)
    if target == "arm64":
        assert counts == {1: 0, 3: 0}
    else:  # three kernel rows: three lines per step, in as many copies of the step as a 1x1
        assert counts[1] > 0 and counts[3] % 3 == 0 and counts[3] > 0, counts


def test_gemm_prefetches_the_next_panels_input_rows():
    """A 1x1 conv on the GEMM reads its input in place, rows a plane apart: with 16-lane tiles
    and 512 KB of input or more, each step prefetches the next panel's part of its row, and of
    one row of the output and of a residual (AVX2's tiles, with no load slot to spare, split
    the next panel's rows between them); small inputs nothing."""
    import re

    from neo.codegen.build import emit_assembly

    rng = np.random.default_rng(0)
    for target, shape, rows, out in (("ml_c5", (256, 64, 28, 28, 1, 1, 0, 1, 1), True, True),
                                     ("ml_c5", (32, 64, 28, 28, 1, 1, 0, 1, 1), False, False),
                                     ("x86_64", (256, 64, 28, 28, 1, 1, 0, 1, 1), True, True)):
        t = get_target(target)
        gr, _ = _graph(*shape, rng)
        module, ks = generate_kernels(run_pipeline(gr, 3), t)
        assert [i.kernel for _, i in ks if i is not None] == ["gemm"], (target, shape)
        asm = emit_assembly(module, t)
        # per reduction step, in the IR: the input's rows (read, locality 2: prefetcht1), the
        # output's (write) and the residual's (read, locality 2), NR floats each
        calls = re.findall(r'call void @"?llvm\.prefetch[.\w]*"?\(ptr [^,]+, i32 (\d), i32 (\d)',
                           str(module))
        writes, reads = calls.count(("1", "2")), calls.count(("0", "2"))
        assert len(calls) == writes + reads and (writes > 0) == out, (target, calls)
        assert reads == (2 if rows else 1) * writes, (target, calls)  # (one copy per tile kind)
        assert bool(re.search(r"\bprefetch(t1|w)\b", asm)) == out
    # a residual the epilogue adds is prefetched as the output is
    t = get_target("ml_c5")
    counts = []
    for residual in (False, True):
        g2 = ir.Graph()
        x = g2.input("x", (1, 256, 28, 28), "float32")
        w = g2.const(rng.standard_normal((64, 256, 1, 1)).astype(np.float32), "w")
        y = g2.op("conv", x, w, strides=(1, 1), pads=(0,) * 4, dilations=(1, 1), groups=1)
        if residual:
            y = g2.op("add", y, g2.input("r", y.shape, "float32"))
        g2.outputs = [g2.op("relu", y)]
        module, ks = generate_kernels(run_pipeline(g2, 3), t)
        assert [i.kernel for _, i in ks if i is not None] == ["gemm"]
        counts.append(len(re.findall(r"\bprefetcht1\b", emit_assembly(module, t))))
    assert counts[1] > counts[0], counts


@pytest.mark.parametrize("width", ["w128", "w256", "w512"])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("oc", [64, 70, 3])
def test_gemm_with_shared_input_prefetch_at_every_width(width, threads, oc, tmp_path):
    """1x1 convs on the GEMM whose input (512 KB or more) gets the next panel's rows prefetched:
    at 8 lanes the row tiles split those rows (whole MR blocks by index, a short last block or a
    lone one takes them all), on 1-3 threads: the numbers, in checked mode."""
    rng = np.random.default_rng(oc)
    gr, feeds = _graph(256, oc, 28, 28, 1, 1, 0, 1, 1, rng)
    _check_at_threads(gr, feeds, width_target(width), threads, tmp_path)


def _record_specs(monkeypatch, module, emitter: str, what) -> list:
    """what(spec) of every kernel `module.emitter` emits from now on in this test."""
    seen, emit = [], getattr(module, emitter)

    def spy(mod, name, spec, nbufs):
        seen.append(what(spec))
        return emit(mod, name, spec, nbufs)

    monkeypatch.setattr(module, emitter, spy)
    return seen


def _check_at_threads(gr, feeds, target, threads: int, tmp_path) -> None:
    """Compile at opt-level 3 for `target`, run on `threads` threads in checked mode, compare."""
    from neo.runtime import Model

    ref = interpret(gr, feeds)[0]
    build_artifact(run_pipeline(gr, 3), target, tmp_path, {"inputs": []}, 3)
    with Model(str(tmp_path), num_threads=threads, check=True) as m:
        out = m.run(feeds)[0]
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()


def test_intel_runs_wide_plane_1x1_convs_on_the_gemm():
    """On Intel AVX-512 CPUs (`Tuning.core_bandwidth_low`) a 1x1 conv with 128+ input channels on
    a 28x28 or larger plane goes to the GEMM, whatever the cycle model says; smaller planes and
    short reductions keep the model's choice, and AMD CPUs keep it everywhere."""
    from neo.codegen.tuning import tuning_for
    from neo.targets import resolve_target

    def family(target, c, h):
        rng = np.random.default_rng(c + h)
        gr, _ = _graph(c, 64, h, h, 1, 1, 0, 1, 1, rng)
        _, kernels = generate_kernels(run_pipeline(gr, 3), target)
        return {i.kernel for _, i in kernels if i is not None and "conv" in i.op}

    intel = [get_target("ml_c5"), resolve_target("x86_64", None, '{"mcpu": "sapphirerapids"}')[0]]
    amd = resolve_target("x86_64", None, '{"mcpu": "znver5"}')[0]
    assert all(tuning_for(t).core_bandwidth_low for t in intel)
    assert not tuning_for(amd).core_bandwidth_low
    for t in intel:
        assert family(t, 256, 28) == {"gemm"}, t.name
    # what the rule leaves to the model (channel tiles here): the same conv on AMD, and on
    # Intel a 14x14 plane
    assert family(amd, 256, 28) == {"channel"}
    assert family(intel[0], 256, 14) == {"channel"}


# Float depthwise convs and max pools on planes whose scratch exceeds 32 KB split each plane
# into bands of output rows (DepthwiseSpec.bands, lower.plane_bands): a band copies only the
# padded rows its windows cover, refilling the padding rows among them, and stores the tail of
# its last row masked (the next band's first row may be another thread's). Bands that start in
# the top padding, end in the bottom padding, stride 2 (even/odd column scratch rows), dilation,
# a last band shorter than the others, at 1 to 4 threads in checked mode.
@pytest.mark.parametrize("case", [
    ("dw", (8, 8, 95, 93, 3, 1, 1, 1, 8)),
    ("dw-s2", (8, 8, 125, 131, 3, 2, 1, 1, 8)),
    ("dw-5x5-dil2", (4, 4, 96, 90, 5, 1, 4, 2, 4)),
    ("dw-x2", (4, 8, 92, 92, 3, 1, 1, 1, 4)),  # channel multiplier 2
    ("pool-ceil", (6, 111, 111, 3, 2)),  # squeezenet's 55x55 max pool
    ("pool-pad", (6, 99, 101, 3, 1)),
], ids=lambda c: c[0])
@pytest.mark.parametrize("threads", [1, 2, 3, 4])
def test_plane_kernel_bands(case, threads, tmp_path, monkeypatch):
    from neo.codegen import kernel_dwconv

    kind, shape = case
    rng = np.random.default_rng(sum(shape))
    if kind.startswith("dw"):
        gr, feeds = _graph(*shape, rng)
    else:
        c, h, w, k, s = shape
        gr = ir.Graph()
        x = gr.input("x", (2, c, h, w))
        pads = (0, 0, 0, 0) if kind == "pool-ceil" else (1, 1, 1, 1)
        gr.outputs = [gr.op("max_pool", x, kernel=(k, k), strides=(s, s), pads=pads,
                            ceil_mode=kind == "pool-ceil")]
        feeds = {"x": rng.normal(size=(2, c, h, w)).astype("float32")}
    bands = _record_specs(monkeypatch, kernel_dwconv, "emit_depthwise_kernel",
                          lambda spec: spec.nbands)
    _check_at_threads(gr, feeds, width_target("w256"), threads, tmp_path)
    assert len(bands) == 1 and bands[0] > 1, bands
