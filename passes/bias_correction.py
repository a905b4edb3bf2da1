"""Bias correction of int8 weights: Nagel et al. 2019, "Data-Free Quantization Through Weight
Equalization and Bias Correction", section 4.2, with the input's expectation measured on the
calibration samples instead of read from BatchNorm statistics.

Rounding the weights to int8 changes a layer's output by (W_q - W) x, whose expectation
(W_q - W) E[x] is not zero: it is the same for every input, a shift of each output channel. For
a conv, E[conv(x, dW)] at an output position away from the zero padding is
sum_{i,kh,kw} dW[o, i, kh, kw] E[x_i] (E[x_i]: the mean of input channel i); for a matmul x W,
sum_k E[x_k] dW[k, n]. Subtracting it from the layer's bias removes the shift, in fp32 before
quantization, so the corrected bias is quantized with the rest (an int32 of scale s_x s_w).
"""
from __future__ import annotations

import numpy as np

from neo.ir import Graph, Node, Value
from neo.ir.rewrite import Rewriter

from .quantize import QuantizeConfig, quantizable_layers, quantize_weights


def weight_quantization_shift(n: Node, mean: np.ndarray, per_channel: bool) -> np.ndarray:
    """The expected output shift per output channel that int8 weights cause in conv or matmul
    `n`, given its input's per-channel means (channels-first conv input; a matmul's last axis)."""
    w = n.inputs[1].data.astype(np.float64)
    axis = 0 if n.op == "conv" else 1
    ints, q = quantize_weights(w, per_channel, axis)
    dw = ints.astype(np.float64) * q.scales(w.ndim) - w
    mean = np.asarray(mean, np.float64)
    if n.op == "matmul":
        return mean @ dw
    groups = n.attrs["groups"]
    o, cg = w.shape[:2]
    per_in = dw.sum(axis=(2, 3))  # [O, C/g]
    m = mean.reshape(groups, cg)  # input channels of each group
    return np.einsum("goc,gc->go", per_in.reshape(groups, o // groups, cg), m).reshape(o)


def bias_correction_inputs(g: Graph, cfg: QuantizeConfig) -> list[Value]:
    """The values whose per-channel means correct_bias needs: the quantized layers' inputs."""
    seen, out = set(), []
    for n in quantizable_layers(g, cfg):
        v = n.inputs[0]
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


def correct_bias(g: Graph, cfg: QuantizeConfig, means: dict[str, np.ndarray]) -> tuple[Graph, int]:
    """g with each quantized conv's bias (and each quantized matmul's, an add after it) moved
    by minus its weight-quantization shift; `means` by input value name. Also the number of
    layers corrected."""
    todo = {id(n): n for n in quantizable_layers(g, cfg) if n.inputs[0].name in means}
    if not todo:
        return g, 0
    rw = Rewriter(g)
    for n in g.nodes:
        ins = [rw.get(v) for v in n.inputs]
        if id(n) not in todo:
            outs = rw.copy(n, ins)
        else:
            shift = weight_quantization_shift(n, means[n.inputs[0].name], cfg.per_channel)
            dt = n.inputs[1].data.dtype
            if n.op == "conv":
                b = n.inputs[2].data.astype(np.float64) if len(n.inputs) > 2 else 0.0
                ins = ins[:2] + [rw.new.const((b - shift).astype(dt), f"{n.name}.b")]
                outs = rw.copy(n, ins)
            else:
                # DQ(acc) + c folds into the accumulator (passes/qdq.py), another add or not
                y = rw.new.op("matmul", *ins, name=f"{n.name}.uncorrected", origin=n.origin,
                              **n.attrs)
                c = rw.new.const((-shift).astype(dt), f"{n.name}.bias_correction")
                outs = list(rw.new.add("add", [y, c], {}, n.name, n.origin,
                                       out_names=[n.outputs[0].name]).outputs)
        for o, no in zip(n.outputs, outs):
            rw.map[id(o)] = no
    rw.new.outputs = [rw.get(v) for v in g.outputs]
    rw.new.output_names = g.out_names()
    rw.new.row_batch = g.row_batch
    return rw.new, len(todo)
