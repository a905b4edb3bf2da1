"""UNIDIRECTIONAL_SEQUENCE_LSTM (what the TFLite converter makes of a Keras 2 LSTM), unrolled
over its static sequence.

TFLite's cell: i, f, o = sigmoid(W x + R h (+ peephole * c) + b) (the output gate's peephole
sees the new cell state), g = act(W_c x + R_c h + b_c), c = f * c + i * g clipped to
[-cell_clip, cell_clip] when cell_clip > 0 (the converter sets 10 for Keras LSTMs), h = o *
act(c); with coupled gates (CIFG, no input-gate weights) i = 1 - f. The kit's `Recurrence` clips
gate inputs the ONNX way, not the cell state, hence this loop of its own.

Its state tensors are TFLite variables: LiteRT starts them at zero and carries them from one
invocation to the next; a compiled model starts every run from the zero state, as a fresh
interpreter does (feed sequences whole).
"""
from __future__ import annotations

import numpy as np

from neo.ir import Value

from .context import TfliteContext
from .registry import converter


@converter("UNIDIRECTIONAL_SEQUENCE_LSTM")
def UNIDIRECTIONAL_SEQUENCE_LSTM(
        cx: TfliteContext, input: Value, w_i: Value | None, w_f: Value, w_c: Value, w_o: Value,
        r_i: Value | None, r_f: Value, r_c: Value, r_o: Value, p_i: Value | None = None,
        p_f: Value | None = None, p_o: Value | None = None, b_i: Value | None = None,
        b_f: Value | None = None, b_c: Value | None = None, b_o: Value | None = None,
        projection: Value | None = None, projection_bias: Value | None = None,
        h0: Value | None = None, c0: Value | None = None, ln_i: Value | None = None,
        ln_f: Value | None = None, ln_c: Value | None = None, ln_o: Value | None = None, *,
        fused_activation_function, cell_clip, proj_clip, time_major, asymmetric_quantize_inputs,
        diagonal_recurrent_tensors) -> Value:
    del asymmetric_quantize_inputs, proj_clip  # hybrid kernels only; projection is refused
    if projection is not None or projection_bias is not None:
        cx.unsupported("a projection layer is not implemented")
    if any(v is not None for v in (ln_i, ln_f, ln_c, ln_o)):
        cx.unsupported("layer-normalized LSTM is not implemented")
    if diagonal_recurrent_tensors:
        cx.unsupported_attribute("diagonal_recurrent_tensors", True, "false")
    if fused_activation_function not in ("TANH", "RELU", "RELU6", "NONE"):
        cx.unsupported_attribute("fused_activation_function", fused_activation_function,
                                 "TANH, RELU, RELU6, NONE")
    if h0 is None or c0 is None:
        cx.required("output_state and cell_state inputs")
    ops = [cx.dequantized(v, i) for i, v in enumerate(
        (input, w_i, w_f, w_c, w_o, r_i, r_f, r_c, r_o, p_i, p_f, p_o, b_i, b_f, b_c, b_o))]
    x, ws, rs, (pi, pf, po), bs = ops[0], ops[1:5], ops[5:9], ops[9:12], ops[12:16]
    cifg = ws[0] is None
    gates = [g for g, w in zip("ifco", ws) if w is not None]
    hidden = ws[1].shape[0]
    # per-gate [H, in] and [H, H] -> one [in, G*H] and one [H, G*H] matmul per step
    w = cx.concat([cx.transpose(v, (1, 0)) for v in ws if v is not None], 1)
    r = cx.concat([cx.transpose(v, (1, 0)) for v in rs if v is not None], 1)
    zero = cx.const(np.zeros(hidden, np.float32))
    b = cx.concat([v if v is not None else zero for g, v in zip("ifco", bs) if g in gates], 0)

    def act(v: Value) -> Value:
        return cx.activation(v, fused_activation_function)

    def gate(v: Value, letter: str) -> Value:
        k = gates.index(letter)
        return cx.slice(v, 1, k * hidden, (k + 1) * hidden)

    seq = x if time_major else cx.transpose(x, (1, 0, 2))  # -> [time, batch, in]
    steps, batch = seq.shape[:2]
    xw = cx.op("add", cx.op("matmul", seq, w), b)  # the input projection of every step at once
    h = cx.reshape(cx.dequantized(h0, 18), (batch, hidden))
    c = cx.reshape(cx.dequantized(c0, 19), (batch, hidden))
    outs = []
    for t in range(steps):
        pre = cx.op("add", cx.reshape(cx.slice(xw, 0, t, t + 1), (batch, len(gates) * hidden)),
                    cx.op("matmul", h, r))
        f = cx.op("sigmoid", cx.add_all(gate(pre, "f"), pf and cx.op("mul", pf, c)))
        if cifg:
            i = cx.op("sub", cx.scalar(1.0, "float32"), f)
        else:
            i = cx.op("sigmoid", cx.add_all(gate(pre, "i"), pi and cx.op("mul", pi, c)))
        c = cx.op("add", cx.op("mul", f, c), cx.op("mul", i, act(gate(pre, "c"))))
        if cell_clip and cell_clip > 0:
            c = cx.op("clip", c, min=-float(cell_clip), max=float(cell_clip))
        o = cx.op("sigmoid", cx.add_all(gate(pre, "o"), po and cx.op("mul", po, c)))
        h = cx.op("mul", o, act(c))
        outs.append(cx.reshape(h, (1, batch, hidden)))
    y = cx.concat(outs, 0)
    return y if time_major else cx.transpose(y, (1, 0, 2))
