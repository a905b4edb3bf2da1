"""Converters for recurrent layers (aten::lstm, gru, rnn_tanh, rnn_relu): PyTorch's stacking of
layers and directions mapped onto the shared recurrence of frontends/common/decompose.py.

Weights come in PyTorch's order: per layer, per direction, w_ih, w_hh and, with biases, b_ih,
b_hh; gates are stacked i|f|g|o (LSTM) and r|z|n (GRU, whose n gate takes r * (h W_hn + b_hn)).
"""
from __future__ import annotations

from neo.ir import Value

from ..common.decompose import Recurrence, stack_steps, unroll
from .context import NodeContext
from .registry import converter

# PyTorch's gate order in the stacked weights (LSTM i|f|g|o, GRU r|z|n), by the letters of
# decompose.Recurrence (g and n are the candidate gates, c and h there)
_KINDS = {"lstm": ("lstm", "ifco"), "gru": ("gru", "rzh"), "rnn_tanh": ("rnn", "h"),
          "rnn_relu": ("rnn", "h")}


def _run(cx: NodeContext, layer: str, x: Value, states: list[Value], params: list,
         has_biases: bool, num_layers: int, bidirectional: bool, batch_first: bool,
         train: bool, dropout: float):
    """The stacked, maybe bidirectional recurrence; returns the output and the final states (one
    list per state kind, stacked as (layers * directions, batch, hidden))."""
    if train and dropout:
        cx.unsupported("recurrent layers with dropout in training mode; call model.eval()")
    if x.type.rank != 3:
        cx.unsupported(f"recurrent input of rank {x.type.rank} (expected (seq, batch, feature))")
    if batch_first:
        x = cx.transpose(x, (1, 0, 2))
    kind, gates = _KINDS[layer]
    acts = None
    if layer == "rnn_relu":
        acts = (lambda v: cx.op("relu", v),)
    dirs = 2 if bidirectional else 1
    per = 4 if has_biases else 2
    if len(params) != num_layers * dirs * per:
        cx.unsupported("LSTM with proj_size (projected hidden state) is not implemented")
    finals: list[list[Value]] = [[] for _ in states]
    layer_in = cx.float(x)
    for lay in range(num_layers):
        outs = []
        for d in range(dirs):
            k = lay * dirs + d
            w = params[k * per:(k + 1) * per]
            rec = Recurrence(kind, gates, cx.transpose(w[0], (1, 0)), cx.transpose(w[1], (1, 0)),
                             w[2] if has_biases else None, w[3] if has_biases else None, acts,
                             linear_before_reset=True)
            state = tuple(cx.reshape(cx.slice(s, 0, k, k + 1), s.shape[1:]) for s in states)
            seq, state = unroll(cx, rec, layer_in, state, reverse=d == 1)
            outs.append(stack_steps(cx, seq))
            for i, s in enumerate(state):
                finals[i].append(cx.reshape(s, (1,) + s.shape))
        layer_in = cx.concat(outs, 2)
    out = cx.transpose(layer_in, (1, 0, 2)) if batch_first else layer_in
    return out, [cx.concat(f, 0) for f in finals]


@converter("aten::lstm")
def lstm(cx: NodeContext, input: Value, hx: list, params: list, has_biases, num_layers,
         dropout, train, bidirectional, batch_first):
    out, (h, c) = _run(cx, "lstm", input, list(hx), list(params), has_biases, num_layers,
                       bidirectional, batch_first, train, dropout)
    return out, h, c


@converter("aten::gru")
def gru(cx: NodeContext, input: Value, hx: Value, params: list, has_biases, num_layers,
        dropout, train, bidirectional, batch_first):
    out, (h,) = _run(cx, "gru", input, [hx], list(params), has_biases, num_layers,
                     bidirectional, batch_first, train, dropout)
    return out, h


@converter("aten::rnn_tanh", "aten::rnn_relu")
def rnn_tanh(cx: NodeContext, input: Value, hx: Value, params: list, has_biases,
             num_layers, dropout, train, bidirectional, batch_first):
    out, (h,) = _run(cx, cx.kind.removeprefix("aten::"), input, [hx], list(params), has_biases, num_layers,
                     bidirectional, batch_first, train, dropout)
    return out, h
