"""Cross-layer equalization (CLE) before int8 quantization: Nagel et al. 2019, "Data-Free
Quantization Through Weight Equalization and Bias Correction", section 4.1.

For two convolutions with a positively homogeneous activation between them,

  conv2(act(conv1(x; W1, b1)); W2) = conv2(act(conv1(x; W1 / s, b1 / s)); W2 * s)

for any positive per-channel s (conv1's output channel c, conv2's input channel c), because
act(y / s) = act(y) / s for relu (and for no activation). With s_c = sqrt(r1_c / r2_c), r1_c the
largest |weight| of conv1's output channel c and r2_c that of conv2's input channel c, both
become sqrt(r1_c r2_c): the channels' weight ranges are equal, so per-tensor weight scales (and
conv2's per-output-channel ones, which span its input channels) lose less to the smallest ones.
Chains (conv -> act -> depthwise -> act -> conv) share convs between pairs; the scaling is
repeated until it settles.

ReLU6 (clip to [0, M]) is not positively homogeneous: clip(y / s, 0, M) = clip(y, 0, M s) / s,
so with one M for the tensor the identity holds in channel c only where y_c stays below
min(M, M s_c). This pass crosses a clip with the calibration data's per-channel maxima Y_c of
conv1's output (`channel_max`): a channel that comes near the bound (HEADROOM * Y_c > M) is not
scaled, and the others are only scaled down (s_c >= 1), where the identity holds for every
y_c <= M: an input would have to push such a channel from at most M / HEADROOM on all the
calibration data past M to see a difference. (Scaling up, s_c < 1, would break it at
y_c > M s_c, as close as HEADROOM times the calibrated maximum.) Without `channel_max`, clip
pairs are left alone (relu pairs need no data). Clips whose minimum is not 0 (not homogeneous
at all) are never crossed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from neo.ir import Graph, Node, Value

MAX_ITERATIONS = 20
# A channel crossing a clip is scaled (down) only if its calibrated maximum is at most 1/HEADROOM
# of the clip's bound.
HEADROOM = 2.0


@dataclass(eq=False)
class Pair:
    first: Node  # conv1
    act: Node | None  # relu, clip(0, M) or nothing
    second: Node  # conv2

    @property
    def clip_max(self) -> float:
        """The activation's upper bound (inf for relu and none)."""
        if self.act is None or self.act.op == "relu" or self.act.attrs.get("max") is None:
            return math.inf
        return float(self.act.attrs["max"])


def _conv_ok(n: Node) -> bool:
    return (n.op == "conv" and n.attrs.get("layout", "NCHW") == "NCHW"
            and n.inputs[1].is_const and n.inputs[1].type.rank == 4
            and n.inputs[1].dtype == "float32"
            and all(v.is_const for v in n.inputs[2:]))


def _homogeneous(n: Node) -> bool:
    if n.op == "relu":
        return True
    if n.op == "clip":
        lo, hi = n.attrs.get("min"), n.attrs.get("max")
        return lo is not None and float(lo) == 0.0 and (hi is None or float(hi) > 0)
    return False


def equalization_pairs(g: Graph) -> list[Pair]:
    """conv -> (relu | clip(0, M))? -> conv, each intermediate value used only by the next node
    (and not a graph output)."""
    users = g.consumers()
    outputs = {id(v) for v in g.outputs}

    def only_user(v: Value) -> Node | None:
        us = users.get(v, [])
        if len(us) != 1 or id(v) in outputs:
            return None
        return us[0]

    pairs = []
    for n in g.nodes:
        if not _conv_ok(n):
            continue
        nxt = only_user(n.outputs[0])
        act = None
        if nxt is not None and _homogeneous(nxt):
            act, nxt = nxt, only_user(nxt.outputs[0])
        if nxt is None or not _conv_ok(nxt) or nxt.inputs[0] is not (act or n).outputs[0]:
            continue
        if nxt.inputs[1].shape[1] * nxt.attrs["groups"] != n.inputs[1].shape[0]:
            continue
        pairs.append(Pair(n, act, nxt))
    return pairs


def _input_channel_view(w: np.ndarray, groups: int) -> np.ndarray:
    """conv2's weight [O, C/g, kh, kw] as [g, O/g, C/g, kh, kw]: input channel c is
    [c // (C/g), :, c % (C/g)]."""
    o, cg = w.shape[:2]
    return w.reshape(groups, o // groups, cg, *w.shape[2:])


def _input_channel_range(w: np.ndarray, groups: int) -> np.ndarray:
    v = np.abs(_input_channel_view(w, groups))
    return v.max(axis=(1, 3, 4)).reshape(-1)  # [g, C/g] -> [C]


def _scale_input_channels(w: np.ndarray, groups: int, s: np.ndarray) -> np.ndarray:
    v = _input_channel_view(w, groups)
    sv = s.reshape(groups, 1, -1, 1, 1)
    return (v * sv).reshape(w.shape)


def equalize_cross_layer(g: Graph, channel_max: dict[str, np.ndarray] | None = None
                         ) -> tuple[Graph, int]:
    """g with the weights of every equalization pair rescaled (the fp32 function unchanged);
    also the number of pairs equalized. `channel_max`: by conv1 output name, the per-channel
    maxima of that output on the calibration data (needed to cross a clip)."""
    pairs = equalization_pairs(g)
    if channel_max is None:
        channel_max = {}
    pairs = [p for p in pairs
             if math.isinf(p.clip_max) or p.first.outputs[0].name in channel_max]
    if not pairs:
        return g, 0
    w = {}  # weights and biases being rescaled, by id of the const value
    for p in pairs:
        for n in (p.first, p.second):
            for v in n.inputs[1:]:
                w.setdefault(id(v), v.data.astype(np.float64))
    # the calibrated maxima of the original outputs: scaling down (s >= 1) keeps y / s <= y, so
    # a channel's distance from the clip only grows
    ymax = {id(p): np.asarray(channel_max[p.first.outputs[0].name], np.float64)
            for p in pairs if not math.isinf(p.clip_max)}
    for _ in range(MAX_ITERATIONS):
        change = 0.0
        for p in pairs:
            w1 = w[id(p.first.inputs[1])]
            w2 = w[id(p.second.inputs[1])]
            groups = p.second.attrs["groups"]
            r1 = np.abs(w1).reshape(w1.shape[0], -1).max(axis=1)
            r2 = _input_channel_range(w2, groups)
            ok = (r1 > 0) & (r2 > 0)
            s = np.where(ok, np.sqrt(r1 / np.where(ok, r2, 1.0)), 1.0)
            if id(p) in ymax:
                m, y = p.clip_max, ymax[id(p)]
                # channels near the bound stay; the others are only scaled down
                s = np.where(HEADROOM * y > m, 1.0, np.maximum(s, 1.0))
            change = max(change, float(np.max(np.abs(np.log(s)))))
            w[id(p.first.inputs[1])] = w1 / s.reshape(-1, 1, 1, 1)
            if len(p.first.inputs) > 2:
                w[id(p.first.inputs[2])] = w[id(p.first.inputs[2])] / s
            w[id(p.second.inputs[1])] = _scale_input_channels(w2, groups, s)
        if change < 1e-3:
            break
    return _with_weights(g, w), len(pairs)


def _with_weights(g: Graph, w: dict[int, np.ndarray]) -> Graph:
    """g with the constants in `w` (by id of the old value) replaced."""
    from neo.ir.rewrite import Rewriter

    rw = Rewriter(g)
    new_const: dict[int, Value] = {}

    def get(v: Value) -> Value:
        if v.is_const and id(v) in w:
            if id(v) not in new_const:
                new_const[id(v)] = rw.new.const(w[id(v)].astype(v.data.dtype), v.name)
            return new_const[id(v)]
        return rw.get(v)

    for n in g.nodes:
        outs = rw.copy(n, [get(v) for v in n.inputs])
        for o, no in zip(n.outputs, outs):
            rw.map[id(o)] = no
    rw.new.outputs = [get(v) for v in g.outputs]
    rw.new.output_names = g.out_names()
    rw.new.row_batch = g.row_batch
    return rw.new
