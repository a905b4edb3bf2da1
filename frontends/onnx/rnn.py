"""RNN, GRU and LSTM: ONNX's conventions (gate order, direction, layout, per-direction
activations) mapped onto the shared recurrence of frontends/common/decompose.py, which unrolls
the (static) sequence into matmuls and elementwise ops."""
from __future__ import annotations

from collections.abc import Callable

from neo.ir import Value

from ..common.decompose import Recurrence, stack_steps, unroll, zeros_state
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


class _Layer:
    """What the three ops share: direction, weights per direction, activations, layout; the
    recurrence itself is frontends/common/decompose.py's."""

    def __init__(self, cx: NodeContext, kind: str, gates: str, defaults: tuple[str, ...],
                 X: Value, W: Value, R: Value, B: Value | None, sequence_lens: Value | None,
                 attrs: dict):
        self.cx = cx
        if attrs["direction"] not in DIRECTIONS:
            cx.unsupported_attribute("direction", attrs["direction"], ", ".join(DIRECTIONS))
        self.kind, self.gates = kind, gates
        self.dirs = DIRECTIONS[attrs["direction"]]
        self.reverse = attrs["direction"] == "reverse"
        self.layout = attrs.get("layout") or 0
        self.hidden = W.shape[1] // len(gates)
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
        self.acts = [tuple(acts[d * per:(d + 1) * per]) for d in range(self.dirs)]
        self.W, self.R, self.B = W, R, B

    def part(self, v: Value, d: int) -> Value:
        """`v[d]` of a per-direction tensor."""
        return self.cx.reshape(slice_onnx(self.cx, v, [d], [d + 1], [0], [1]), v.shape[1:])

    def recurrence(self, d: int, **extra) -> Recurrence:
        cx = self.cx
        wb = rb = None
        if self.B is not None:
            b = self.part(self.B, d)
            n = len(self.gates) * self.hidden
            wb, rb = cx.slice(b, 0, 0, n), cx.slice(b, 0, n, 2 * n)
        return Recurrence(self.kind, self.gates, cx.transpose(self.part(self.W, d), (1, 0)),
                          cx.transpose(self.part(self.R, d), (1, 0)), wb, rb, self.acts[d],
                          self.clip, **extra)

    def initial(self, v: Value | None, d: int) -> Value:
        if v is None:
            return zeros_state(self.cx, self.batch, self.hidden, self.x.dtype)
        if self.layout:
            v = self.cx.op("transpose", v, perm=(1, 0, 2))
        return self.part(v, d)

    def run(self, d: int, rec: Recurrence, state: tuple[Value, ...]):
        return unroll(self.cx, rec, self.x, state, reverse=self.reverse or d == 1)

    def outputs(self, ys: list[list[Value]], finals: list[list[Value]]) -> list[Value]:
        """Y [steps, dirs, batch, hidden] (layout 1: [batch, steps, dirs, hidden]) and the final
        states [dirs, batch, hidden] (layout 1: [batch, dirs, hidden])."""
        cx = self.cx
        per_dir = [cx.reshape(stack_steps(cx, steps), (self.steps, 1, self.batch, self.hidden))
                   for steps in ys]
        y = cx.concat(per_dir, 1)
        if self.layout:
            y = cx.op("transpose", y, perm=(2, 0, 1, 3))
        out = [y]
        for states in finals:
            s = stack_steps(cx, states)
            out.append(cx.op("transpose", s, perm=(1, 0, 2)) if self.layout else s)
        return out


def _attrs(**kw) -> dict:
    return kw


@converter("RNN", since=7)
def RNN(cx: NodeContext, X: Value, W: Value, R: Value, B: Value | None = None,
        sequence_lens: Value | None = None, initial_h: Value | None = None, *, activation_alpha,
        activation_beta, activations, clip, direction, hidden_size, layout=0) -> list[Value]:
    # H = f(X W^T + H R^T + Wb + Rb)
    layer = _Layer(cx, "rnn", "h", ("Tanh",), X, W, R, B, sequence_lens, _attrs(
        activation_alpha=activation_alpha, activation_beta=activation_beta,
        activations=activations, clip=clip, direction=direction, layout=layout))
    ys, finals = [], []
    for d in range(layer.dirs):
        out, (h,) = layer.run(d, layer.recurrence(d), (layer.initial(initial_h, d),))
        ys.append(out)
        finals.append(h)
    return layer.outputs(ys, [finals])


@converter("GRU", since=7)
def GRU(cx: NodeContext, X: Value, W: Value, R: Value, B: Value | None = None,
        sequence_lens: Value | None = None, initial_h: Value | None = None, *, activation_alpha,
        activation_beta, activations, clip, direction, hidden_size, linear_before_reset,
        layout=0) -> list[Value]:
    # gates z, r, h: z = f(..), r = f(..), h~ = g(X Wh^T + (r * H) Rh^T + Rbh + Wbh) (or, with
    # linear_before_reset, g(X Wh^T + r * (H Rh^T + Rbh) + Wbh)); H = (1 - z) * h~ + z * H
    layer = _Layer(cx, "gru", "zrh", ("Sigmoid", "Tanh"), X, W, R, B, sequence_lens, _attrs(
        activation_alpha=activation_alpha, activation_beta=activation_beta,
        activations=activations, clip=clip, direction=direction, layout=layout))
    ys, finals = [], []
    for d in range(layer.dirs):
        rec = layer.recurrence(d, linear_before_reset=bool(linear_before_reset))
        out, (h,) = layer.run(d, rec, (layer.initial(initial_h, d),))
        ys.append(out)
        finals.append(h)
    return layer.outputs(ys, [finals])


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
    layer = _Layer(cx, "lstm", "iofc", ("Sigmoid", "Tanh", "Tanh"), X, W, R, B, sequence_lens,
                   _attrs(activation_alpha=activation_alpha, activation_beta=activation_beta,
                          activations=activations, clip=clip, direction=direction,
                          layout=layout))
    ys, finals_h, finals_c = [], [], []
    for d in range(layer.dirs):
        peep = None
        if P is not None:
            p, h = layer.part(P, d), layer.hidden
            peep = tuple(cx.slice(p, 0, k * h, (k + 1) * h) for k in range(3))  # i, o, f
        rec = layer.recurrence(d, peepholes=peep)
        out, (h, c) = layer.run(d, rec, (layer.initial(initial_h, d),
                                         layer.initial(initial_c, d)))
        ys.append(out)
        finals_h.append(h)
        finals_c.append(c)
    return layer.outputs(ys, [finals_h, finals_c])
