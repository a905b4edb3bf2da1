"""UNIDIRECTIONAL_SEQUENCE_LSTM (what the TFLite converter makes of a Keras LSTM), unrolled
over its static sequence with the kit's `Recurrence`.

Its state tensors are TFLite variables: LiteRT starts them at zero and carries them from one
invocation to the next; a compiled model starts every run from the zero state, as a fresh
interpreter does (feed sequences whole).
"""
from __future__ import annotations

from neo.ir import Value

from ..common.decompose import Recurrence, unroll
from .context import TfliteContext
from .registry import converter

_GATES = "ifco"  # TFLite's per-gate tensors, in the order the kit's "ifco" blocks take them


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
    if w_i is None or r_i is None:
        cx.unsupported("coupled input and forget gates (CIFG) are not implemented")
    if projection is not None or projection_bias is not None:
        cx.unsupported("a projection layer is not implemented")
    if any(v is not None for v in (ln_i, ln_f, ln_c, ln_o)):
        cx.unsupported("layer-normalized LSTM is not implemented")
    if cell_clip:
        cx.unsupported_attribute("cell_clip", cell_clip, "0 (no clipping)")
    if diagonal_recurrent_tensors:
        cx.unsupported_attribute("diagonal_recurrent_tensors", True, "false")
    if fused_activation_function not in ("TANH", "RELU", "RELU6", "NONE"):
        cx.unsupported_attribute("fused_activation_function", fused_activation_function,
                                 "TANH, RELU, RELU6, NONE")
    x = cx.dequantized(input, 0)
    f32 = [cx.dequantized(v, i) for i, v in enumerate(
        (input, w_i, w_f, w_c, w_o, r_i, r_f, r_c, r_o, p_i, p_f, p_o, b_i, b_f, b_c, b_o))]
    ws, rs, ps, bs = f32[1:5], f32[5:9], f32[9:12], f32[12:16]
    hidden = ws[1].shape[0]
    # per-gate [H, in] and [H, H] -> [in, 4H] and [H, 4H] in "ifco" blocks
    w = cx.concat([cx.transpose(v, (1, 0)) for v in ws], 1)
    r = cx.concat([cx.transpose(v, (1, 0)) for v in rs], 1)
    zero = cx.scalar(0, "float32")
    b = cx.concat([v if v is not None else cx.op("expand", zero, shape=(hidden,)) for v in bs], 0)
    peep = None
    if any(v is not None for v in ps):
        p = [v if v is not None else cx.op("expand", zero, shape=(hidden,)) for v in ps]
        peep = (p[0], p[2], p[1])  # the kit's order: i, o, f

    def act(v: Value) -> Value:
        return cx.activation(v, fused_activation_function)

    rec = Recurrence("lstm", _GATES, w, r, wb=b, peepholes=peep,
                     acts=(lambda v: cx.op("sigmoid", v), act, act))
    seq = x if time_major else cx.transpose(x, (1, 0, 2))  # -> [time, batch, in]
    batch = seq.shape[1]
    state = tuple(cx.reshape(cx.dequantized(v, i), (batch, hidden)) for v, i in ((h0, 18),
                                                                                 (c0, 19)))
    outs, _ = unroll(cx, rec, seq, state)
    y = cx.concat([cx.reshape(o, (1, batch, hidden)) for o in outs], 0)
    return y if time_major else cx.transpose(y, (1, 0, 2))
