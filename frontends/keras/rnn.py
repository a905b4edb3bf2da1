"""LSTM, GRU, SimpleRNN and Bidirectional, unrolled over the static sequence by the kit's
`Recurrence` (frontends/common/decompose.py).

Keras stacks the gates of a kernel [input, G * units] as i|f|c|o (LSTM, "ifco") and z|r|h (GRU,
"zrh"); a GRU with `reset_after` (the default since Keras 2.3) keeps separate input and recurrent
biases ([2, 3 * units]) and applies the reset gate after the recurrent matmul, which is
`linear_before_reset`. `go_backwards` reads the sequence from the end and returns the outputs in
that order; Bidirectional reverses its backward half back into time order.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from neo.ir import Value

from ..common.decompose import Recurrence, stack_steps, unroll, zeros_state
from .context import LayerContext
from .registry import converter

_RNN_IGNORE = ("dropout", "recurrent_dropout", "implementation", "unroll", "unit_forget_bias",
               "zero_output_for_mask", "use_cudnn")
_KINDS = {"LSTM": ("lstm", "ifco", 2), "GRU": ("gru", "zrh", 1), "SimpleRNN": ("rnn", "h", 1)}
_DEFAULTS = {"activation": "tanh", "recurrent_activation": "sigmoid", "use_bias": True,
             "return_sequences": False, "return_state": False, "go_backwards": False,
             "stateful": False, "time_major": False, "reset_after": True}


def _recurrent(cx: LayerContext, class_name: str, cfg: dict[str, Any], x: Value,
               init: list[Value], ws: list[np.ndarray]) -> tuple[list[Value], list[Value]]:
    """One recurrent layer on x [batch, steps, features] (or [steps, batch, features] when
    time_major). Returns (per-step outputs in Keras's order, final states)."""
    kind, gates, nstates = _KINDS[class_name]
    c = {**_DEFAULTS, **{k: v for k, v in cfg.items() if v is not None}}
    if c["stateful"]:
        cx.unsupported_attribute("stateful", True, "False (state carried between batches)")
    units = int(c["units"])
    if x.type.rank != 3:
        cx.unsupported(f"a recurrent layer on a rank-{x.type.rank} input (expected [batch, "
                       "steps, features])")
    xt = x if c["time_major"] else cx.transpose(x, (1, 0, 2))  # [steps, batch, features]
    _, batch, features = xt.shape
    g = len(gates)
    use_bias = bool(c["use_bias"])
    names = ["kernel", "recurrent_kernel"] + (["bias"] if use_bias else [])
    if len(ws) != len(names):
        cx.invalid("weights", len(ws), f"{len(names)} ({', '.join(names)})")
    kernel, rec = ws[0].astype(np.float32), ws[1].astype(np.float32)
    if kernel.shape != (features, g * units) or rec.shape != (units, g * units):
        cx.invalid("kernel", [list(kernel.shape), list(rec.shape)],
                   f"[{features}, {g * units}] and [{units}, {g * units}]")
    wb = rb = None
    linear_before_reset = False
    if use_bias:
        bias = ws[2].astype(np.float32)
        if kind == "gru" and bias.ndim == 2:  # reset_after: input and recurrent biases
            wb, rb = cx.weight(bias[0]), cx.weight(bias[1])
            linear_before_reset = True
        else:
            wb = cx.weight(bias.reshape(-1))
    elif kind == "gru":
        linear_before_reset = bool(c["reset_after"])

    def act(name: Any):
        return lambda v: cx.activation(v, name)

    acts = {"lstm": (act(c["recurrent_activation"]), act(c["activation"]), act(c["activation"])),
            "gru": (act(c["recurrent_activation"]), act(c["activation"])),
            "rnn": (act(c["activation"]),)}[kind]
    r = Recurrence(kind, gates, cx.weight(kernel), cx.weight(rec), wb, rb, acts,
                   linear_before_reset=linear_before_reset)
    if init and len(init) != nstates:
        cx.invalid("initial_state", len(init), f"{nstates} tensors")
    state = tuple(init) if init else tuple(zeros_state(cx, batch, units, "float32")
                                           for _ in range(nstates))
    outs, final = unroll(cx, r, cx.cast(xt, "float32"), state, reverse=bool(c["go_backwards"]))
    if c["go_backwards"]:
        outs = outs[::-1]  # Keras returns them in the order it read the sequence
    return outs, list(final)


def _output(cx: LayerContext, outs: list[Value], time_major: bool) -> Value:
    return stack_steps(cx, outs, axis=0 if time_major else 1)


def _rnn_converter(class_name: str):
    def rnn(cx: LayerContext, inputs: Value, *initial_state: Value, units, activation="tanh",
            recurrent_activation="sigmoid", use_bias=True, return_sequences=False,
            return_state=False, go_backwards=False, stateful=False, time_major=False,
            reset_after=True):
        cfg = {"units": units, "activation": activation,
               "recurrent_activation": recurrent_activation, "use_bias": use_bias,
               "go_backwards": go_backwards, "stateful": stateful, "time_major": time_major,
               "reset_after": reset_after}
        outs, states = _recurrent(cx, class_name, cfg, inputs, list(initial_state), cx.weights)
        y = _output(cx, outs, time_major) if return_sequences else outs[-1]
        return [y, *states] if return_state else y

    rnn.__name__ = class_name
    return rnn


LSTM = converter("LSTM", "CuDNNLSTM", ignore=_RNN_IGNORE)(_rnn_converter("LSTM"))
GRU = converter("GRU", "CuDNNGRU", ignore=_RNN_IGNORE)(_rnn_converter("GRU"))
SimpleRNN = converter("SimpleRNN", ignore=_RNN_IGNORE)(_rnn_converter("SimpleRNN"))


def _layer_config(spec: Any) -> tuple[str, dict]:
    if not isinstance(spec, dict) or "class_name" not in spec:
        return "", {}
    cfg = spec.get("config") if isinstance(spec.get("config"), dict) else {}
    return str(spec["class_name"]), cfg


@converter("Bidirectional")
def Bidirectional(cx: LayerContext, inputs: Value, *initial_state: Value, layer, merge_mode="concat",
                  backward_layer=None):
    fcls, fcfg = _layer_config(layer)
    bcls, bcfg = _layer_config(backward_layer) if backward_layer else (fcls, dict(fcfg))
    if fcls not in _KINDS or bcls not in _KINDS:
        cx.unsupported(f"Bidirectional over {fcls or bcls or 'an unknown layer'} (supported: "
                       f"{', '.join(_KINDS)})")
    if not backward_layer:
        bcfg["go_backwards"] = not fcfg.get("go_backwards", False)
    ws = cx.weights
    nw = len(ws) // 2
    init = list(initial_state)
    half = len(init) // 2
    f_outs, f_states = _recurrent(cx, fcls, fcfg, inputs, init[:half], ws[:nw])
    b_outs, b_states = _recurrent(cx, bcls, bcfg, inputs, init[half:], ws[nw:])
    time_major = bool(fcfg.get("time_major", False))
    if fcfg.get("return_sequences", False):
        f_y = _output(cx, f_outs, time_major)
        b_y = _output(cx, b_outs[::-1] if bcfg.get("go_backwards") else b_outs, time_major)
    else:
        f_y, b_y = f_outs[-1], b_outs[-1]
    if merge_mode == "concat":
        y = [cx.concat([f_y, b_y], f_y.type.rank - 1)]
    elif merge_mode == "sum":
        y = [cx.op("add", f_y, b_y)]
    elif merge_mode == "mul":
        y = [cx.op("mul", f_y, b_y)]
    elif merge_mode == "ave":
        y = [cx.binary("mul", cx.op("add", f_y, b_y), 0.5)]
    elif merge_mode is None:
        y = [f_y, b_y]
    else:
        cx.invalid("merge_mode", merge_mode, "concat, sum, mul, ave or None")
    if fcfg.get("return_state", False):
        return [*y, *f_states, *b_states]
    return y if len(y) > 1 else y[0]
