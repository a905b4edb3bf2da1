"""Graph -> Graph passes and the pipeline, a visible list per optimization level."""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from neo.ir import Graph
from neo.ir.verify import verify

from .basic import eliminate_dead_code, fold_constants, simplify
from .batchnorm import decompose_batchnorm, fold_batchnorm_into_conv
from .conv_padding import make_conv_padding_explicit, subsample_pays, subsample_strided_1x1
from .decompose import decompose_softmax
from .fusion import fuse_operators
from .layout import convert_layout
from .qdq import lower_qdq
from .winograd import winograd_convs

Pass = Callable[[Graph], Graph]


def pipeline(opt_level: int, precision: Pass | None = None, tuning=None) -> list[Pass]:
    """The passes `neo compile --opt-level N` runs, in order. `precision` (--quantize int8,
    --precision fp16: passes/calibrate.py, passes/precision.py) runs on the optimized float
    graph, before the kernel-shaping passes. `tuning` (the target's `codegen.tuning.Tuning`;
    None: any CPU) is for the kernel-shaping choices that depend on the CPU (Winograd)."""
    extra = [precision] if precision is not None else []
    if opt_level <= 0:
        # No optimization: only what codegen requires (channels-first convs and pools, no
        # BN/softmax kernels of their own; every op its own kernel).
        return [convert_layout, decompose_batchnorm, decompose_softmax, eliminate_dead_code,
                *extra, fuse_nothing]
    # lower_qdq before fold_constants: quantized weights are still dequantize nodes
    passes: list[Pass] = [convert_layout, lower_qdq, fold_constants, simplify, eliminate_dead_code]
    if opt_level >= 1:
        passes += [fold_batchnorm_into_conv, eliminate_dead_code, decompose_batchnorm,
                   decompose_softmax, fold_constants, simplify, eliminate_dead_code]
    passes += extra
    if opt_level >= 3:
        passes += [_winograd_for(tuning)]
    if opt_level >= 2:
        if subsample_pays(tuning):
            passes += [_subsample_for(tuning)]
        passes += [make_conv_padding_explicit, fuse_operators]
    else:
        passes += [fuse_nothing]
    return passes


def _winograd_for(tuning) -> Pass:
    from .winograd import max_transformed_bytes, min_channels, min_tiles

    tiles, channels = min_tiles(tuning), min_channels(tuning)
    max_bytes = max_transformed_bytes(tuning)

    def winograd_convs_for_target(g: Graph) -> Graph:
        return winograd_convs(g, tiles, channels, max_bytes)

    winograd_convs_for_target.__name__ = "winograd_convs"  # the pass log and --dump-ir names
    return winograd_convs_for_target


def _subsample_for(tuning) -> Pass:
    def subsample_strided_1x1_for_target(g: Graph) -> Graph:
        return subsample_strided_1x1(g, tuning)

    subsample_strided_1x1_for_target.__name__ = "subsample_strided_1x1"
    return subsample_strided_1x1_for_target


def fuse_nothing(g: Graph) -> Graph:
    """Each node its own kernel (opt-level 0/1): fusion with every merge disabled."""
    from . import fusion

    return fusion._build(g, {id(n): i for i, n in enumerate(g.nodes)},
                         {i: [n] for i, n in enumerate(g.nodes)}, {
                             i: (n if fusion._kind(n) == fusion.K.OUT_ELEMWISE_FUSABLE else None)
                             for i, n in enumerate(g.nodes)})


def run_pipeline(g: Graph, opt_level: int = 3, *, debug: bool = False,
                 dump_dir: Path | None = None,
                 log: Callable[[str, float, Graph], None] | None = None,
                 precision: Pass | None = None, tuning=None) -> Graph:
    if debug:
        verify(g)
    if dump_dir is not None:
        dump_dir.mkdir(parents=True, exist_ok=True)
        (dump_dir / "00_input.txt").write_text(str(g) + "\n")
    for i, p in enumerate(pipeline(opt_level, precision, tuning), 1):
        t = time.perf_counter()
        g = p(g)
        dt = time.perf_counter() - t
        if debug:
            verify(g)
        if dump_dir is not None:
            (dump_dir / f"{i:02d}_{p.__name__}.txt").write_text(str(g) + "\n")
        if log is not None:
            log(p.__name__, dt, g)
    return g


__all__ = [
    "convert_layout",
    "decompose_batchnorm",
    "decompose_softmax",
    "eliminate_dead_code",
    "fold_batchnorm_into_conv",
    "fold_constants",
    "fuse_nothing",
    "fuse_operators",
    "lower_qdq",
    "make_conv_padding_explicit",
    "pipeline",
    "run_pipeline",
    "simplify",
    "winograd_convs",
]
