"""--precision fp16: weights stored at half precision, computed on in float32.

The weights of every conv, conv_transpose and matmul (their constant second operand) become
float16 constants: half the params file. The ops take float16 weights beside float32 data
(`ops_nn.half_weights`), and the kernels widen them to float32 as they load them
(`llvm_util.load_float`): fp32 arithmetic on fp16 storage, on every target. Activations, biases
and the other constants stay float32. The report (`Fp16.report` after the pass, with samples)
compares the fp16 model with fp32 as the int8 one does.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from neo.ir import Graph, Node
from neo.ir.rewrite import Rewriter

WEIGHT_OPS = frozenset({"conv", "conv_transpose", "matmul"})


def _half_weight(n: Node) -> bool:
    if n.op not in WEIGHT_OPS or len(n.inputs) < 2:
        return False
    x, w = n.inputs[0], n.inputs[1]
    return x.dtype == "float32" and w.is_const and w.dtype == "float32" and w.type.rank >= 2


def weights_to_fp16(g: Graph) -> Graph:
    """g with the weights of its convs and matmuls as float16 constants."""
    rw = Rewriter(g)
    half: dict[int, object] = {}  # one float16 copy per shared weight

    for n in g.nodes:
        ins = [rw.get(v) for v in n.inputs]
        if _half_weight(n):
            w = n.inputs[1]
            if id(w) not in half:
                half[id(w)] = rw.new.const(np.asarray(w.data, np.float32).astype(np.float16),
                                           f"{w.name}.fp16")
            ins[1] = half[id(w)]
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

    def __init__(self, host=None, samples=None, log=lambda s: None, workdir: Path | None = None):
        self.host, self.samples, self.log, self.workdir = host, samples, log, workdir
        self.report: dict | None = None

    def __call__(self, g: Graph) -> Graph:
        h = weights_to_fp16(g)
        halved = sum(n.inputs[1].type.nbytes for n in g.nodes if _half_weight(n))
        self.report = {"mode": "fp16", "weights": "float16",
                       "arithmetic": "float32 on float16 weights",
                       "weight_bytes_saved": halved // 2}
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
