"""RNN, GRU and LSTM, unrolled over the (static) sequence length into matmuls and elementwise ops.

The input projections of all time steps are one matmul per direction; each step adds the
recurrent matmul and applies the gates exactly as the ONNX operator definitions write them.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from neo import ir
from neo.ir import Value

from .context import NodeContext
from .registry import converter
from .tensor import slice_onnx

DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}


def _activation(cx: NodeContext, name: str, alpha: float | None, beta: float | None
                ) -> Callable[[Value], Value]:
    if name == "Sigmoid":
        return lambda v: cx.op("sigmoid", v)
    if name == "Tanh":
        return lambda v: cx.op("tanh", v)
    if name == "Relu":
        return lambda v: cx.op("relu", v)
    if name == "LeakyRelu":
        return lambda v: cx.op("leaky_relu", v, alpha=0.01 if alpha is None else alpha)
    if name == "HardSigmoid":
        return lambda v: cx.op("hard_sigmoid", v, alpha=0.2 if alpha is None else alpha,
                               beta=0.5 if beta is None else beta)
    cx.unsupported(f"activation {name} is not implemented; supported: Sigmoid, Tanh, Relu, "
                   "LeakyRelu, HardSigmoid")


class _Cell:
    """What the three ops share: direction, weights per direction, activations, layout."""

    def __init__(self, cx: NodeContext, gates: int, defaults: tuple[str, ...], X: Value, W: Value,
                 R: Value, B: Value | None, sequence_lens: Value | None, attrs: dict):
        self.cx = cx
        if attrs["direction"] not in DIRECTIONS:
            cx.unsupported_attribute("direction", attrs["direction"], ", ".join(DIRECTIONS))
        self.dirs = DIRECTIONS[attrs["direction"]]
        self.reverse = attrs["direction"] == "reverse"
        self.layout = attrs.get("layout") or 0
        self.hidden = W.shape[1] // gates
        self.gates = gates
        self.x = cx.op("transpose", X, perm=(1, 0, 2)) if self.layout else X
        self.steps, self.batch = self.x.shape[:2]
        if sequence_lens is not None:
            lens = cx.ints(sequence_lens, "sequence_lens")
            if any(n != self.steps for n in lens):
                cx.unsupported("sequence_lens shorter than the sequence are not implemented")
        self.clip = attrs.get("clip")
        names = attrs.get("activations") or defaults * self.dirs
        alphas = list(attrs.get("activation_alpha") or [])
        betas = list(attrs.get("activation_beta") or [])
        acts = []
        for i, name in enumerate(names):
            acts.append(_activation(cx, name, alphas[i] if i < len(alphas) else None,
                                    betas[i] if i < len(betas) else None))
        per = len(defaults)
        self.acts = [acts[d * per:(d + 1) * per] for d in range(self.dirs)]
        self.W, self.R, self.B = W, R, B

    def part(self, v: Value, d: int) -> Value:
        """`v[d]` of a per-direction tensor."""
        return self.cx.reshape(slice_onnx(self.cx, v, [d], [d + 1], [0], [1]), v.shape[1:])

    def gate(self, v: Value, g: int) -> Value:
        """Gate `g` of the last axis (gates stacked in blocks of `hidden`)."""
        h = self.hidden
        return slice_onnx(self.cx, v, [g * h], [(g + 1) * h], [v.type.rank - 1], [1])

    def projections(self, d: int) -> tuple[Value, Value, Value | None, Value | None]:
        """X W^T + Wb for all steps ([steps, batch, gates*hidden]), R^T, and the bias halves."""
        cx = self.cx
        w_t = cx.op("transpose", self.part(self.W, d), perm=(1, 0))
        r_t = cx.op("transpose", self.part(self.R, d), perm=(1, 0))
        xw = cx.op("matmul", self.x, w_t)
        wb = rb = None
        if self.B is not None:
            b = self.part(self.B, d)
            n = self.gates * self.hidden
            wb = slice_onnx(cx, b, [0], [n], [0], [1])
            rb = slice_onnx(cx, b, [n], [2 * n], [0], [1])
        return xw, r_t, wb, rb

    def initial(self, v: Value | None, d: int) -> Value:
        cx = self.cx
        if v is None:
            return cx.const(np.zeros((self.batch, self.hidden), ir.np_dtype(self.x.dtype)))
        if self.layout:
            v = cx.op("transpose", v, perm=(1, 0, 2))
        return self.part(v, d)

    def order(self) -> list[tuple[int, list[int]]]:
        fwd = list(range(self.steps))
        return [(d, fwd[::-1] if (self.reverse or d == 1) else fwd) for d in range(self.dirs)]

    def clipped(self, v: Value) -> Value:
        if self.clip is None:
            return v
        return self.cx.op("clip", v, min=-float(self.clip), max=float(self.clip))

    def outputs(self, ys: list[list[Value]], finals: list[list[Value]]) -> list[Value]:
        """Y [steps, dirs, batch, hidden] (layout 1: [batch, steps, dirs, hidden]) and the final
        states [dirs, batch, hidden] (layout 1: [batch, dirs, hidden])."""
        cx = self.cx
        b, h = self.batch, self.hidden
        per_dir = [cx.op("concat", *[cx.reshape(v, (1, 1, b, h)) for v in steps], axis=0)
                   if len(steps) > 1 else cx.reshape(steps[0], (1, 1, b, h)) for steps in ys]
        y = per_dir[0] if len(per_dir) == 1 else cx.op("concat", *per_dir, axis=1)
        if self.layout:
            y = cx.op("transpose", y, perm=(2, 0, 1, 3))
        out = [y]
        for states in finals:
            parts = [cx.reshape(v, (1, b, h)) for v in states]
            s = parts[0] if len(parts) == 1 else cx.op("concat", *parts, axis=0)
            out.append(cx.op("transpose", s, perm=(1, 0, 2)) if self.layout else s)
        return out


def _step_input(cx: NodeContext, xw: Value, t: int) -> Value:
    b, n = xw.shape[1:]
    return cx.reshape(slice_onnx(cx, xw, [t], [t + 1], [0], [1]), (b, n))


def _add(cx: NodeContext, *vs: Value | None) -> Value:
    out = None
    for v in vs:
        if v is not None:
            out = v if out is None else cx.op("add", out, v)
    return out


@converter("RNN", since=7)
def RNN(cx: NodeContext, X: Value, W: Value, R: Value, B: Value | None = None,
        sequence_lens: Value | None = None, initial_h: Value | None = None, *, activation_alpha,
        activation_beta, activations, clip, direction, hidden_size, layout=0) -> list[Value]:
    # H = f(X W^T + H R^T + Wb + Rb)
    cell = _Cell(cx, 1, ("Tanh",), X, W, R, B, sequence_lens, {
        "activation_alpha": activation_alpha, "activation_beta": activation_beta,
        "activations": activations, "clip": clip, "direction": direction, "layout": layout})
    ys, finals = [], []
    for d, steps in cell.order():
        xw, r_t, wb, rb = cell.projections(d)
        (f,) = cell.acts[d]
        h = cell.initial(initial_h, d)
        out = [None] * cell.steps
        for t in steps:
            h = f(cell.clipped(_add(cx, _step_input(cx, xw, t), cx.op("matmul", h, r_t), wb, rb)))
            out[t] = h
        ys.append(out)
        finals.append(h)
    return cell.outputs(ys, [finals])


@converter("GRU", since=7)
def GRU(cx: NodeContext, X: Value, W: Value, R: Value, B: Value | None = None,
        sequence_lens: Value | None = None, initial_h: Value | None = None, *, activation_alpha,
        activation_beta, activations, clip, direction, hidden_size, linear_before_reset,
        layout=0) -> list[Value]:
    # gates z, r, h: z = f(..), r = f(..), h~ = g(X Wh^T + (r * H) Rh^T + Rbh + Wbh) (or, with
    # linear_before_reset, g(X Wh^T + r * (H Rh^T + Rbh) + Wbh)); H = (1 - z) * h~ + z * H
    cell = _Cell(cx, 3, ("Sigmoid", "Tanh"), X, W, R, B, sequence_lens, {
        "activation_alpha": activation_alpha, "activation_beta": activation_beta,
        "activations": activations, "clip": clip, "direction": direction, "layout": layout})
    ys, finals = [], []
    for d, steps in cell.order():
        xw, r_t, wb, rb = cell.projections(d)
        f, g = cell.acts[d]
        gate_b = [None if wb is None else cx.op("add", cell.gate(wb, i), cell.gate(rb, i))
                  for i in range(3)]
        r_h = cell.gate(r_t, 2)
        r_zr = slice_onnx(cx, r_t, [0], [2 * cell.hidden], [1], [1])
        h = cell.initial(initial_h, d)
        one = cx.scalar(1, h.dtype)
        out = [None] * cell.steps
        for t in steps:
            x_t = _step_input(cx, xw, t)
            hr = cx.op("matmul", h, r_zr)
            z = f(cell.clipped(_add(cx, cell.gate(x_t, 0), cell.gate(hr, 0), gate_b[0])))
            r = f(cell.clipped(_add(cx, cell.gate(x_t, 1), cell.gate(hr, 1), gate_b[1])))
            if linear_before_reset:
                rec = _add(cx, cx.op("matmul", h, r_h), None if rb is None else cell.gate(rb, 2))
                pre = _add(cx, cell.gate(x_t, 2), cx.op("mul", r, rec),
                           None if wb is None else cell.gate(wb, 2))
            else:
                pre = _add(cx, cell.gate(x_t, 2), cx.op("matmul", cx.op("mul", r, h), r_h),
                           gate_b[2])
            hh = g(cell.clipped(pre))
            h = cx.op("add", cx.op("mul", cx.op("sub", one, z), hh), cx.op("mul", z, h))
            out[t] = h
        ys.append(out)
        finals.append(h)
    return cell.outputs(ys, [finals])


@converter("LSTM", since=7)
def LSTM(cx: NodeContext, X: Value, W: Value, R: Value, B: Value | None = None,
         sequence_lens: Value | None = None, initial_h: Value | None = None,
         initial_c: Value | None = None, P: Value | None = None, *, activation_alpha,
         activation_beta, activations, clip, direction, hidden_size, input_forget, layout=0
         ) -> list[Value]:
    # gates i, o, f, c: i = f(.. + Pi * C), f = f(.. + Pf * C), c~ = g(..), C' = f * C + i * c~,
    # o = f(.. + Po * C'), H = o * h(C')
    if input_forget:
        cx.unsupported_attribute("input_forget", input_forget, "0")
    cell = _Cell(cx, 4, ("Sigmoid", "Tanh", "Tanh"), X, W, R, B, sequence_lens, {
        "activation_alpha": activation_alpha, "activation_beta": activation_beta,
        "activations": activations, "clip": clip, "direction": direction, "layout": layout})
    ys, finals_h, finals_c = [], [], []
    for d, steps in cell.order():
        xw, r_t, wb, rb = cell.projections(d)
        f, g, hact = cell.acts[d]
        bias = None if wb is None else cx.op("add", wb, rb)
        peep = [None] * 3
        if P is not None:
            p = cell.part(P, d)
            peep = [cell.gate(p, i) for i in range(3)]  # i, o, f
        h = cell.initial(initial_h, d)
        c = cell.initial(initial_c, d)

        def peephole(k: int, state: Value, peep=peep) -> Value | None:
            return None if peep[k] is None else cx.op("mul", peep[k], state)

        out = [None] * cell.steps
        for t in steps:
            pre = _add(cx, _step_input(cx, xw, t), cx.op("matmul", h, r_t), bias)
            i = f(cell.clipped(_add(cx, cell.gate(pre, 0), peephole(0, c))))
            fg = f(cell.clipped(_add(cx, cell.gate(pre, 2), peephole(2, c))))
            cc = g(cell.clipped(cell.gate(pre, 3)))
            c = cx.op("add", cx.op("mul", fg, c), cx.op("mul", i, cc))
            o = f(cell.clipped(_add(cx, cell.gate(pre, 1), peephole(1, c))))
            h = cx.op("mul", o, hact(c))
            out[t] = h
        ys.append(out)
        finals_h.append(h)
        finals_c.append(c)
    return cell.outputs(ys, [finals_h, finals_c])
