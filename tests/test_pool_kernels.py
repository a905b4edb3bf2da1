"""Pooling kernels compiled and run against the reference: padding, ceil mode, strides, dilation."""
from __future__ import annotations

import numpy as np
import pytest

import ir
from codegen.build import build_artifact
from ir.interpreter import interpret
from neo_cli.targets import get_target
from passes import run_pipeline
from runtime import Model

# (op, H, W, kernel, stride, pads, ceil_mode, count_include_pad, dilation)
CASES = [
    ("max_pool", 111, 111, 3, 2, 0, 1, 0, 1),  # squeezenet: in bounds, strided loads
    ("max_pool", 112, 112, 3, 2, 1, 0, 0, 1),  # resnet stem pool: padded
    ("max_pool", 20, 21, 2, 2, 0, 1, 0, 1),  # ceil mode leaves the input
    ("avg_pool", 17, 19, 3, 1, 1, 0, 1, 1),
    ("avg_pool", 17, 19, 3, 2, 1, 1, 0, 1),
    ("avg_pool", 16, 16, 3, 2, 1, 1, 1, 1),
    ("max_pool", 19, 23, 3, 1, 2, 0, 0, 2),  # dilated
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_pool_kernel_matches_reference(case, tmp_path):
    op, h, w, k, s, p, ceil, cip, d = case
    g = ir.Graph()
    x = g.input("x", (1, 5, h, w))
    g.outputs = [g.op(op, x, kernel=(k, k), strides=(s, s), pads=(p, p, p, p), ceil_mode=ceil,
                      count_include_pad=cip, dilations=(d, d))]
    feeds = {"x": np.random.default_rng(0).normal(size=(1, 5, h, w)).astype(np.float32)}
    ref = interpret(g, feeds)[0]
    build_artifact(run_pipeline(g, 3), get_target("host"), tmp_path, {"inputs": []})
    with Model(str(tmp_path)) as m:
        out = m.run(feeds)[0]
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
