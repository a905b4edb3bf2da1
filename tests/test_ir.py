"""The IR: types inferred at build time, the verifier, the printer, the interpreter, the registry."""
from __future__ import annotations

import numpy as np
import pytest

from neo import ir
from neo.ir import FusionKind, Graph, IRError, all_ops, op_def
from neo.ir.interpreter import interpret
from neo.ir.ops_elementwise import broadcast_shapes
from neo.ir.verify import verify


def test_types_are_inferred_when_a_node_is_built():
    g = Graph()
    x = g.input("x", (1, 3, 32, 32))
    w = g.const(np.zeros((8, 3, 3, 3), np.float32), "w")
    y = g.op("conv", x, w, strides=(2, 2), pads=(1, 1, 1, 1))
    assert y.type == ir.TensorType((1, 8, 16, 16), "float32")
    z = g.op("max_pool", y, kernel=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1), ceil_mode=0)
    assert z.shape == (1, 8, 8, 8)
    m = g.op("matmul", g.op("reshape", z, shape=(1, 512)), g.const(np.zeros((512, 10), np.float32)))
    assert m.shape == (1, 10)


def test_a_bad_node_fails_where_it_is_built_naming_it():
    g = Graph()
    a = g.input("a", (2, 3))
    b = g.input("b", (4, 3))
    with pytest.raises(IRError, match=r"node add.*\(add\).*do not broadcast"):
        g.op("add", a, b)
    with pytest.raises(IRError, match="inner dimensions"):
        g.op("matmul", a, b, name="mm")
    with pytest.raises(IRError, match="takes 1..1 inputs"):
        g.add("relu", [a, b])


def test_broadcast_shapes():
    assert broadcast_shapes((1, 3, 1), (5, 1, 4)) == (5, 3, 4)
    assert broadcast_shapes((), (2, 2)) == (2, 2)
    with pytest.raises(ValueError):
        broadcast_shapes((2,), (3,))


def test_verifier_catches_use_before_definition():
    g = Graph()
    x = g.input("x", (4,))
    y = g.op("relu", x)
    z = g.op("exp", y)
    g.nodes.reverse()  # break topological order
    g.outputs = [z]
    with pytest.raises(IRError, match="used before it is defined"):
        verify(g)


def test_printer_is_readable():
    g = Graph("tiny")
    x = g.input("x", (2, 2))
    y = g.op("leaky_relu", x, alpha=0.1, name="act")
    g.outputs = [y]
    text = str(g)
    assert text.splitlines()[0] == "graph tiny(%x: float32[2,2]) {"
    assert "%act: float32[2,2] = leaky_relu(%x; alpha=0.1)" in text
    assert text.splitlines()[-2] == "  return %act"


def test_interpreter_runs_references():
    g = Graph()
    x = g.input("x", (2, 5))
    y = g.op("softmax", g.op("mul", x, g.const(np.float32(2.0))), axis=1)
    g.outputs = [y]
    xv = np.random.default_rng(0).normal(size=(2, 5)).astype(np.float32)
    (out,) = interpret(g, {"x": xv})
    e = np.exp(2 * xv - (2 * xv).max(1, keepdims=True))
    np.testing.assert_allclose(out, e / e.sum(1, keepdims=True), rtol=1e-6)


def test_every_op_declares_kind_inference_and_reference():
    ops = all_ops()
    assert len(ops) > 50
    for name, d in ops.items():
        assert isinstance(d.kind, FusionKind), name
        assert callable(d.infer) and callable(d.reference), name
    assert op_def("conv").kind == FusionKind.OUT_ELEMWISE_FUSABLE
    assert op_def("relu").kind == FusionKind.ELEMWISE
    assert op_def("add").kind == FusionKind.BROADCAST
    assert op_def("transpose").kind == FusionKind.INJECTIVE
    assert op_def("reduce_sum").kind == FusionKind.REDUCTION


def test_every_te_lowered_op_has_a_compute():
    from neo.codegen.registry import has_lowering

    missing = [n for n in all_ops() if not has_lowering(n)
               and n not in ("softmax", "log_softmax", "fused")]
    assert missing == [], f"ops without a lowering: {missing}"


def test_registering_a_compute_twice_is_an_error():
    from neo.codegen.te_ops import COMPUTES, register

    with pytest.raises(ValueError, match="registered twice"):
        register("relu")(COMPUTES["relu"])
    with pytest.raises(KeyError, match="unknown IR op"):
        register("no_such_op")(COMPUTES["relu"])


def test_fusion_does_not_depend_on_import_order():
    """A fresh interpreter that imports only the passes fuses as the compiler does."""
    import subprocess
    import sys

    code = ("from neo import ir; from neo.passes import run_pipeline\n"
            "g = ir.Graph(); x = g.input('x', (1, 4, 8, 8))\n"
            "w = g.const(__import__('numpy').ones((4, 4, 3, 3), 'float32'), 'w')\n"
            "g.outputs = [g.op('conv_transpose', x, w, strides=(2, 2))]\n"
            "print(*sorted(n.op for n in run_pipeline(g, 2).nodes))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["fused"]  # an opaque op with a compute becomes a kernel
