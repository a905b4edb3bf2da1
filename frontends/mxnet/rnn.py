"""The fused RNN op (LSTM, GRU, vanilla RNN; layers and directions in one node), unrolled by the
kit's recurrence (frontends/common/decompose.py).

Its `parameters` input is one flat vector (Gluon concatenates its layers' weights into it with
`_rnn_param_concat`, folded at compile time here), laid out as cuDNN's and MXNet's CPU kernels
read it: first every weight, layer by layer and within a layer direction by direction, each
`W_x [G*H, input]` then `W_h [G*H, H]`; then every bias in the same order, `b_x [G*H]` then
`b_h [G*H]`. The gate blocks are LSTM i, f, g, o ("ifco") and GRU r, z, n ("rzh", with the
reset gate applied after the recurrent matmul: linear_before_reset). Layer l's input is the
data (l = 0) or the previous layer's output, both directions concatenated. `state` (and for
LSTM `state_cell`) is [layers * directions, batch, H], indexed layer * directions + direction.
"""
from __future__ import annotations

import numpy as np

from neo.ir import Value

from ..common.decompose import Recurrence, stack_steps, unroll
from .context import MxContext
from .registry import converter

MODES = {"lstm": ("lstm", "ifco"), "gru": ("gru", "rzh"), "rnn_tanh": ("rnn", "h"),
         "rnn_relu": ("rnn", "h")}


def param_layout(mode: str, layers: int, dirs: int, inputs: int, hidden: int
                 ) -> tuple[list[dict[str, tuple[int, tuple[int, ...]]]], int]:
    """For each (layer, direction), in order, {"wx"|"wh"|"bx"|"bh": (offset, shape)}; and the
    total size."""
    g = len(MODES[mode][1])
    out = []
    offset = 0
    for layer in range(layers):
        width = inputs if layer == 0 else hidden * dirs
        for _ in range(dirs):
            out.append({"wx": (offset, (g * hidden, width))})
            offset += g * hidden * width
            out[-1]["wh"] = (offset, (g * hidden, hidden))
            offset += g * hidden * hidden
    for entry in out:
        entry["bx"] = (offset, (g * hidden,))
        offset += g * hidden
        entry["bh"] = (offset, (g * hidden,))
        offset += g * hidden
    return out, offset


@converter("RNN", ignore=("p", "lstm_state_clip_nan"))
def RNN(cx: MxContext, data: Value, parameters: Value, state: Value,
        state_cell: Value | None = None, sequence_length: Value | None = None, *,
        state_size=None, num_layers=None, mode=None, bidirectional=False, state_outputs=False,
        projection_size=None, lstm_state_clip_min=None, lstm_state_clip_max=None,
        use_sequence_length=False) -> list[Value]:
    if mode is None or state_size is None or num_layers is None:
        cx.required("mode, state_size and num_layers")
    if mode not in MODES:
        cx.unsupported_attribute("mode", mode, ", ".join(MODES))
    if projection_size is not None:
        cx.unsupported_attribute("projection_size", projection_size, "None (no LSTMP)")
    if lstm_state_clip_min is not None or lstm_state_clip_max is not None:
        cx.unsupported("lstm_state_clip_min/max (cell state clipping) is not implemented")
    if use_sequence_length:
        cx.unsupported_attribute("use_sequence_length", True, "False (full sequences)")
    kind, gates = MODES[mode]
    hidden, layers, dirs = int(state_size), int(num_layers), 2 if bidirectional else 1
    _steps, batch, width = data.shape
    layout, total = param_layout(mode, layers, dirs, width, hidden)
    flat = np.asarray(cx.constant(parameters, "parameters")).reshape(-1)
    if flat.size != total:
        raise ValueError(f"RNN parameters hold {flat.size} values; mode={mode}, "
                         f"{layers} layer(s), {dirs} direction(s), input {width}, hidden {hidden} "
                         f"need {total}")

    def part(entry, key):
        offset, shape = entry[key]
        return flat[offset:offset + int(np.prod(shape))].reshape(shape)

    h0 = cx.resolve(state, (layers * dirs, batch, hidden), "the initial state")
    c0 = None
    if kind == "lstm":
        if state_cell is None:
            cx.required("state_cell (the LSTM's initial cell state)")
        c0 = cx.resolve(state_cell, (layers * dirs, batch, hidden), "the initial cell state")
    act = None
    if mode == "rnn_relu":
        act = (lambda v: cx.op("relu", v),)
    x = data
    finals_h, finals_c = [], []
    for layer in range(layers):
        outs = []
        for d in range(dirs):
            entry = layout[layer * dirs + d]
            rec = Recurrence(kind, gates, cx.const(part(entry, "wx").T.copy()),
                             cx.const(part(entry, "wh").T.copy()), cx.const(part(entry, "bx")),
                             cx.const(part(entry, "bh")), acts=act,
                             linear_before_reset=kind == "gru")
            i = layer * dirs + d
            init = (cx.reshape(cx.slice(h0, 0, i, i + 1), (batch, hidden)),)
            if c0 is not None:
                init += (cx.reshape(cx.slice(c0, 0, i, i + 1), (batch, hidden)),)
            steps_out, final = unroll(cx, rec, x, init, reverse=d == 1)
            outs.append(stack_steps(cx, steps_out))
            finals_h.append(final[0])
            if kind == "lstm":
                finals_c.append(final[1])
        x = cx.concat(outs, 2)
    result = [x]
    if state_outputs:
        result.append(stack_steps(cx, finals_h))
        if kind == "lstm":
            result.append(stack_steps(cx, finals_c))
    return result
