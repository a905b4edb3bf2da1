"""Converters for recurrent layers (aten::lstm, gru, rnn_tanh, rnn_relu), unrolled over the fixed
sequence length into matmuls and elementwise gates.

The input projection of all time steps is one matmul; each step adds the recurrent matmul of the
previous hidden state. Weights come in PyTorch's order: per layer, per direction, w_ih, w_hh and,
with biases, b_ih, b_hh; gates are stacked i|f|g|o (LSTM) and r|z|n (GRU).
"""
from __future__ import annotations

from collections.abc import Callable

from neo.ir import Value

from .context import NodeContext
from .math import linear_
from .registry import converter


def _gates(cx: NodeContext, g: Value, n: int) -> list[Value]:
    h = g.shape[-1] // n
    return [cx.slice(g, g.type.rank - 1, i * h, (i + 1) * h) for i in range(n)]


def _step_input(cx: NodeContext, xw: Value, t: int) -> Value:
    return cx.reshape(cx.slice(xw, 0, t, t + 1), xw.shape[1:])


def _lstm_cell(cx: NodeContext, xw_t: Value, state, w_hh: Value, b_hh):
    h, c = state
    g = cx.op("add", xw_t, linear_(cx, h, w_hh, b_hh))
    i, f, gg, o = _gates(cx, g, 4)
    i, f, o = (cx.op("sigmoid", v) for v in (i, f, o))
    c = cx.op("add", cx.op("mul", f, c), cx.op("mul", i, cx.op("tanh", gg)))
    h = cx.op("mul", o, cx.op("tanh", c))
    return h, (h, c)


def _gru_cell(cx: NodeContext, xw_t: Value, state, w_hh: Value, b_hh):
    (h,) = state
    xr, xz, xn = _gates(cx, xw_t, 3)
    hr, hz, hn = _gates(cx, linear_(cx, h, w_hh, b_hh), 3)
    r = cx.op("sigmoid", cx.op("add", xr, hr))
    z = cx.op("sigmoid", cx.op("add", xz, hz))
    n = cx.op("tanh", cx.op("add", xn, cx.op("mul", r, hn)))
    # (1 - z) * n + z * h = n + z * (h - n)
    h = cx.op("add", n, cx.op("mul", z, cx.op("sub", h, n)))
    return h, (h,)


def _simple_cell(act: str) -> Callable:
    def cell(cx: NodeContext, xw_t: Value, state, w_hh: Value, b_hh):
        (h,) = state
        h = cx.op(act, cx.op("add", xw_t, linear_(cx, h, w_hh, b_hh)))
        return h, (h,)

    return cell


def _run(cx: NodeContext, cell: Callable, x: Value, states: list[Value], params: list,
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
    dirs = 2 if bidirectional else 1
    per = 4 if has_biases else 2
    if len(params) != num_layers * dirs * per:
        cx.unsupported("LSTM with proj_size (projected hidden state) is not implemented")
    steps = x.shape[0]
    finals: list[list[Value]] = [[] for _ in states]
    layer_in = cx.float(x)
    for layer in range(num_layers):
        outs = []
        for d in range(dirs):
            k = layer * dirs + d
            w = params[k * per:(k + 1) * per]
            w_ih, w_hh = w[0], w[1]
            b_ih, b_hh = (w[2], w[3]) if has_biases else (None, None)
            state = tuple(cx.reshape(cx.slice(s, 0, k, k + 1), s.shape[1:]) for s in states)
            xw = linear_(cx, layer_in, w_ih, b_ih)  # every step's input projection at once
            seq: list[Value | None] = [None] * steps
            order = range(steps - 1, -1, -1) if d == 1 else range(steps)
            for t in order:
                h, state = cell(cx, _step_input(cx, xw, t), state, w_hh, b_hh)
                seq[t] = cx.reshape(h, (1,) + h.shape)
            outs.append(cx.concat(seq, 0))
            for i, s in enumerate(state):
                finals[i].append(cx.reshape(s, (1,) + s.shape))
        layer_in = cx.concat(outs, 2)
    out = cx.transpose(layer_in, (1, 0, 2)) if batch_first else layer_in
    return out, [cx.concat(f, 0) for f in finals]


@converter("aten::lstm")
def lstm(cx: NodeContext, input: Value, hx: list, params: list, has_biases, num_layers,
         dropout, train, bidirectional, batch_first):
    out, (h, c) = _run(cx, _lstm_cell, input, list(hx), list(params), has_biases, num_layers,
                       bidirectional, batch_first, train, dropout)
    return out, h, c


@converter("aten::gru")
def gru(cx: NodeContext, input: Value, hx: Value, params: list, has_biases, num_layers,
        dropout, train, bidirectional, batch_first):
    out, (h,) = _run(cx, _gru_cell, input, [hx], list(params), has_biases, num_layers,
                     bidirectional, batch_first, train, dropout)
    return out, h


@converter("aten::rnn_tanh", "aten::rnn_relu")
def rnn_tanh(cx: NodeContext, input: Value, hx: Value, params: list, has_biases,
             num_layers, dropout, train, bidirectional, batch_first):
    act = "tanh" if cx.kind == "aten::rnn_tanh" else "relu"
    out, (h,) = _run(cx, _simple_cell(act), input, [hx], list(params), has_biases, num_layers,
                     bidirectional, batch_first, train, dropout)
    return out, h
