"""Post-training int8 quantization as a pass on the IR: which tensors to quantize, their
parameters from calibration statistics, and the QDQ graph that passes/qdq.py puts on integer
kernels. The calibration itself (running the compiled fp32 graph on streamed samples) and the
accuracy report are in passes/calibrate.py.

What is quantized (as onnxruntime's static quantizer does):
- the weights of every conv and matmul with constant weights: symmetric int8, per output channel
  (per tensor with `per_channel=False`), [-127, 127] so that no dot product form overflows;
- the activations that flow into those ops and into adds, concats and the ops between them
  that only move integers (max pool, reshape, ...): per tensor, asymmetric uint8 where the
  target's dot product takes unsigned activations (x86 vpdpbusd), symmetric int8 where it takes
  signed ones (AArch64 sdot, NEON smull);
- biases become int32 of scale s_x * s_w in lower_qdq.
Everything else (softmax, global pooling, normalizations, the layers `exclude` keeps) computes
in float32 on dequantized values: fp32 islands.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from neo.ir import Graph, Node, QuantParams, Value
from neo.ir.quant import KEEPS_QUANT
from neo.ir.rewrite import Rewriter

# ops whose inputs are quantized (their outputs too, where the consumers are quantized)
QUANTIZED_OPS = frozenset({"conv", "matmul", "add", "concat"})
# ops that move integers: a quantized input makes a quantized output with the same parameters
MOVERS = frozenset(KEEPS_QUANT) - {"clip", "maximum", "minimum", "where", "pad", "resize",
                                   "reduce_max", "reduce_min"}
METHODS = ("minmax", "percentile", "entropy")


@dataclass
class QuantizeConfig:
    activations: str = "uint8"  # uint8 (asymmetric) or int8 (symmetric)
    method: str = "minmax"
    per_channel: bool = True
    percentile: float = 99.999
    exclude: frozenset[str] = field(default_factory=frozenset)  # node names kept in fp32


def activation_dtype_for(dot_kind: str) -> str:
    """The activation type the target's int8 dot product takes without conversion."""
    return "int8" if dot_kind in ("sdot", "smull") else "uint8"


def _is_activation(v: Value) -> bool:
    return not v.is_const and v.dtype == "float32"


def _weight_ok(n: Node) -> bool:
    if n.op == "conv":
        w = n.inputs[1]
        return (w.is_const and w.dtype == "float32" and w.type.rank == 4
                and n.attrs.get("layout", "NCHW") == "NCHW")
    if n.op == "matmul":
        b = n.inputs[1]
        return b.is_const and b.dtype == "float32" and b.type.rank == 2
    return True


def quantized_nodes(g: Graph, cfg: QuantizeConfig) -> list[Node]:
    """The nodes whose inputs are quantized."""
    out = []
    for n in g.nodes:
        if n.op not in QUANTIZED_OPS or n.name in cfg.exclude or not _weight_ok(n):
            continue
        if n.op in ("add", "concat") and not all(_is_activation(v) for v in n.inputs):
            continue  # a bias add stays on the accumulator (lower_qdq folds it there)
        if n.op == "add" and n.inputs[0].shape != n.inputs[1].shape:
            continue
        if not _is_activation(n.inputs[0]):
            continue
        out.append(n)
    return out


def tensors_to_quantize(g: Graph, cfg: QuantizeConfig) -> list[Value]:
    """The activations that get a quantize/dequantize pair: the inputs of the quantized nodes,
    moved up through movers (a max pool's input instead of its output, which then inherits the
    parameters and needs no requantization)."""
    marked: dict[int, Value] = {}
    for n in quantized_nodes(g, cfg):
        acts = [n.inputs[0]] if n.op in ("conv", "matmul") else list(n.inputs)
        for v in acts:
            if _is_activation(v):
                marked[id(v)] = v
    outputs = {id(v) for v in g.outputs}
    for n in reversed(g.nodes):  # a mover's quantized output: quantize its input instead
        if n.op not in MOVERS or len(n.outputs) != 1 or id(n.outputs[0]) not in marked:
            continue
        which = KEEPS_QUANT[n.op]
        data = list(n.inputs) if which is None else [n.inputs[i] for i in which]
        if not all(_is_activation(v) and v.producer is not None for v in data):
            continue
        if id(n.outputs[0]) in outputs:
            continue
        del marked[id(n.outputs[0])]
        for v in data:
            marked[id(v)] = v
    order = {id(v): i for i, v in enumerate(v for n in g.nodes for v in n.outputs)}
    order.update({id(v): -1 - i for i, v in enumerate(g.inputs)})
    return sorted(marked.values(), key=lambda v: order.get(id(v), 0))


# -- parameters ---------------------------------------------------------------------------------
def activation_params(lo: float, hi: float, dtype: str) -> QuantParams:
    """Per-tensor parameters of the range [lo, hi] (widened to hold 0, so zero is exact)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if dtype == "int8":  # symmetric
        amax = max(-lo, hi)
        return QuantParams.per_tensor(amax / 127.0 if amax > 0 else 1.0, 0)
    if hi - lo <= 0:
        return QuantParams.per_tensor(1.0, 0)
    scale = (hi - lo) / 255.0
    zp = int(np.clip(np.rint(-lo / scale), 0, 255))
    return QuantParams.per_tensor(scale, zp)


def quantize_weights(w: np.ndarray, per_channel: bool, axis: int
                     ) -> tuple[np.ndarray, QuantParams]:
    """Symmetric int8 in [-127, 127], one scale per index along `axis` (or one)."""
    w = np.asarray(w, np.float32)
    if per_channel:
        other = tuple(i for i in range(w.ndim) if i != axis)
        amax = np.abs(w).max(axis=other)
    else:
        amax = np.array([np.abs(w).max()])
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = QuantParams(scale, 0, axis) if scale.size > 1 else QuantParams.per_tensor(float(scale[0]))
    s = q.scales(w.ndim)
    ints = np.clip(np.rint(w / s), -127, 127).astype(np.int8)
    return ints, q


# -- the QDQ graph --------------------------------------------------------------------------------
def insert_qdq(g: Graph, params: dict[str, QuantParams], cfg: QuantizeConfig) -> Graph:
    """g with quantize/dequantize pairs on the activations in `params` (by value name) and
    quantized weights on the quantized nodes; quantized consumers read the dequantized values,
    the others the float ones."""
    qnodes = {id(n) for n in quantized_nodes(g, cfg)}
    rw = Rewriter(g)
    dq: dict[int, Value] = {}  # old value -> its dequantized value in the new graph

    def qdq(old: Value, new: Value) -> None:
        q = params.get(old.name)
        if q is None:
            return
        ints = rw.new.op("quantize", new, quant=q, dtype=cfg.activations,
                         rounding="half_to_even", name=f"{old.name}.q")
        dq[id(old)] = rw.new.op("dequantize", ints, quant=q, dtype="float32",
                                name=f"{old.name}.dq")

    for v in g.inputs:
        qdq(v, rw.map[id(v)])
    for n in g.nodes:
        if id(n) in qnodes or n.op in MOVERS:
            ins = [dq.get(id(v), rw.get(v)) for v in n.inputs]
        else:
            ins = [rw.get(v) for v in n.inputs]
        if id(n) in qnodes and n.op in ("conv", "matmul"):
            axis = 0 if n.op == "conv" else 1
            ints, wq = quantize_weights(n.inputs[1].data, cfg.per_channel, axis)
            wc = rw.new.const(ints, f"{n.inputs[1].name}.int8", quant=wq)
            ins[1] = rw.new.op("dequantize", wc, quant=wq, dtype="float32",
                               name=f"{n.name}.w.dq")
        outs = rw.copy(n, ins)
        for o, no in zip(n.outputs, outs):
            rw.map[id(o)] = no
            if n.op in MOVERS and any(id(v) in dq for v in n.inputs):
                # a mover of dequantized values: its consumers read this output as it is
                dq[id(o)] = no
            qdq(o, no)
    rw.new.outputs = [rw.get(v) for v in g.outputs]
    rw.new.output_names = g.out_names()
    return rw.new


def quantizable_layers(g: Graph, cfg: QuantizeConfig) -> list[Node]:
    """The conv and matmul nodes that would run on integer kernels (for the report and the
    accuracy budget)."""
    return [n for n in quantized_nodes(g, cfg) if n.op in ("conv", "matmul")]

