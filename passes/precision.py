"""--precision fp16: weights stored at half precision; fp16 arithmetic where the target has it.

The weights of every conv, conv_transpose and matmul (their constant second operand) become
float16 constants: half the params file. Elsewhere the ops take float16 weights beside float32
data (`ops_nn.half_weights`), and the kernels widen them to float32 as they load them
(`llvm_util.load_float`): fp32 arithmetic on fp16 storage. Activations, biases and the other
constants stay float32.

Where the target computes in fp16 natively (`codegen.isa.native_fp16`: AArch64 fullfp16, x86
AVX512-FP16), convs (except depthwise ones, whose kernel is float32) and matmuls on 2-D weights
compute in fp16 instead, which the IR says with dtypes:

    conv(x, w, b)  ->  add(cast(conv(cast(x, float16), w16), float32), b)

Fusion keeps the cast to float16 of a value in the epilogue of the fp16 conv that made it, so
activations travel as halves from one fp16 kernel to the next, and codegen runs these convs on
half vectors (`codegen/lower.py: half_arithmetic`): fp16 FMAs with fp16 accumulation. The bias,
activation and everything else stays float32. The report (`Fp16.report` after the pass, with
samples) compares the fp16 model with fp32 as the int8 one does; it runs on the machine
compiling, where LLVM computes each half operation in float32 and rounds it to half, so it
measures the target's fp16 arithmetic.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from neo.ir import Graph, Node
from neo.ir.rewrite import Rewriter

WEIGHT_OPS = frozenset({"conv", "conv_transpose", "matmul"})
ARITHMETIC = {"float32": "float32 on float16 weights",
              "float16": "float16 in convs and matmuls (fp16 FMAs, fp16 accumulation), "
                         "float32 elsewhere"}


def _half_weight(n: Node) -> bool:
    if n.op not in WEIGHT_OPS or len(n.inputs) < 2:
        return False
    x, w = n.inputs[0], n.inputs[1]
    return x.dtype == "float32" and w.is_const and w.dtype == "float32" and w.type.rank >= 2


def _half_arithmetic(n: Node) -> bool:
    """Whether n computes in fp16 on a target with fp16 arithmetic: a conv with a constant bias
    (or none) that is not depthwise, or a matmul on 2-D weights (the kernels that run in fp16)."""
    if not _half_weight(n):
        return False
    w = n.inputs[1]
    if n.op == "matmul":
        return w.type.rank == 2 and n.inputs[0].type.rank >= 2
    if n.op != "conv" or n.attrs.get("layout", "NCHW") != "NCHW" or w.type.rank not in (3, 4):
        return False
    if len(n.inputs) > 2 and not n.inputs[2].is_const:
        return False
    return not (w.shape[1] == 1 and n.attrs["groups"] > 1)


def weights_to_fp16(g: Graph, arithmetic: str = "float32") -> Graph:
    """g with the weights of its convs and matmuls as float16 constants; with `arithmetic`
    "float16", the convs and matmuls that can compute in fp16 on float16 activations."""
    rw = Rewriter(g)
    half: dict[int, object] = {}  # one float16 copy per shared weight
    cast16: dict[int, object] = {}  # one float16 copy per activation

    for n in g.nodes:
        ins = [rw.get(v) for v in n.inputs]
        if _half_weight(n):
            w = n.inputs[1]
            if id(w) not in half:
                half[id(w)] = rw.new.const(np.asarray(w.data, np.float32).astype(np.float16),
                                           f"{w.name}.fp16")
            ins[1] = half[id(w)]
        if arithmetic == "float16" and _half_arithmetic(n):
            x = n.inputs[0]
            if id(x) not in cast16:
                cast16[id(x)] = rw.new.op("cast", ins[0], to="float16", name=f"{x.name}.fp16",
                                          origin=n.origin)
            y16 = rw.new.add(n.op, [cast16[id(x)], ins[1]], n.attrs, f"{n.name}.fp16",
                             n.origin).outputs[0]
            y = rw.new.op("cast", y16, to="float32", name=f"{n.name}.fp32", origin=n.origin)
            if len(n.inputs) > 2:  # the bias, added in float32
                b = n.inputs[2].data.astype(np.float32)
                bias = rw.new.const(b.reshape((-1,) + (1,) * (x.type.rank - 2)),
                                    f"{n.inputs[2].name}.bias")
                y = rw.new.op("add", y, bias, name=f"{n.name}.bias_add", origin=n.origin)
            rw.map[id(n.outputs[0])] = y
            continue
        outs = rw.copy(n, ins)
        for o, no in zip(n.outputs, outs):
            rw.map[id(o)] = no
    rw.new.outputs = [rw.get(v) for v in g.outputs]
    rw.new.output_names = g.out_names()
    return rw.new


class Fp16:
    """The fp16 pass of `neo compile --precision fp16`; with report samples, `report` holds the
    comparison with fp32 afterwards."""

    __name__ = "weights_to_fp16"

    def __init__(self, host=None, samples=None, log=lambda s: None, workdir: Path | None = None,
                 arithmetic: str = "float32"):
        """`arithmetic` "float16" where the target computes in fp16 (codegen.isa.native_fp16)."""
        self.host, self.samples, self.log, self.workdir = host, samples, log, workdir
        self.arithmetic = arithmetic
        self.report: dict | None = None

    def __call__(self, g: Graph) -> Graph:
        h = weights_to_fp16(g, self.arithmetic)
        halved = sum(n.inputs[1].type.nbytes for n in g.nodes if _half_weight(n))
        self.report = {"mode": "fp16", "weights": "float16",
                       "arithmetic": ARITHMETIC[self.arithmetic],
                       "weight_bytes_saved": halved // 2}
        if self.arithmetic == "float16":
            self.report["fp16_layers"] = sum(
                n.op in ("conv", "matmul") and n.outputs[0].dtype == "float16" for n in h.nodes)
        if self.samples is not None and self.host is not None:
            self.report.update(self._compare(g, h))
        return h

    def _compare(self, g: Graph, h: Graph) -> dict:
        from .calibrate import compile_for_host, evaluate

        tmp = Path(tempfile.mkdtemp(prefix="neo-fp16-", dir=self.workdir))
        try:
            fp32 = compile_for_host(g, [], self.host, tmp, "fp32")
            fp16 = compile_for_host(h, [], self.host, tmp, "fp16")
            report = evaluate(fp32, fp16, g, [], self.samples, {})
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        report.pop("_layer_sqnr", None)
        report.pop("worst_layers", None)
        report["report_on"] = "validation"
        return report
