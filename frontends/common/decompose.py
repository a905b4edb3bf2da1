"""Decompositions every frontend shares, written once: normalizations, scaled dot-product
attention, and recurrent layers (LSTM, GRU, simple RNN) unrolled over a static sequence.

Each frontend maps its own conventions onto these (gate order in the weight matrices, mask
polarity, where the scale is applied) and calls them through its conversion context `cx`.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from neo import ir
from neo.ir import Value

from .context import ConversionContext

Act = Callable[[Value], Value]


# -- normalization ---------------------------------------------------------------------------------
def normalize(cx: ConversionContext, x: Value, axes: Sequence[int], eps: float) -> Value:
    """(x - mean) / sqrt(var + eps) over `axes`, var the mean of squared deviations."""
    axes = tuple(axes)
    mean = cx.op("reduce_mean", x, axes=axes, keepdims=1)
    d = cx.op("sub", x, mean)
    var = cx.op("reduce_mean", cx.op("mul", d, d), axes=axes, keepdims=1)
    return cx.op("div", d, cx.op("sqrt", cx.op("add", var, cx.scalar(eps, x.dtype))))


def layer_norm(cx: ConversionContext, x: Value, axes: Sequence[int], weight: Value | None,
               bias: Value | None, eps: float) -> Value:
    """normalize over `axes` (the trailing ones), then * weight + bias (broadcast over them)."""
    y = normalize(cx, x, axes, eps)
    if weight is not None:
        y = cx.op("mul", y, weight)
    return y if bias is None else cx.op("add", y, bias)


def group_norm(cx: ConversionContext, x: Value, groups: int, weight: Value | None,
               bias: Value | None, eps: float, channel_axis: int = 1) -> Value:
    """Statistics per (image, group of channels); weight and bias per channel ([C])."""
    if channel_axis != 1:  # NHWC: normalize as NCHW
        perm = (0, x.type.rank - 1) + tuple(range(1, x.type.rank - 1))
        inv = tuple(int(i) for i in np.argsort(perm))
        return cx.transpose(group_norm(cx, cx.transpose(x, perm), groups, weight, bias, eps), inv)
    n, c = x.shape[:2]
    rest = x.shape[2:]
    y = cx.reshape(x, (n, groups, c // groups * math.prod(rest)))
    y = cx.reshape(normalize(cx, y, (2,), eps), x.shape)
    per_channel = (c,) + (1,) * len(rest)
    if weight is not None:
        y = cx.op("mul", y, cx.reshape(weight, per_channel))
    return y if bias is None else cx.op("add", y, cx.reshape(bias, per_channel))


def instance_norm(cx: ConversionContext, x: Value, weight: Value | None, bias: Value | None,
                  eps: float, channel_axis: int = 1) -> Value:
    return group_norm(cx, x, x.shape[channel_axis], weight, bias, eps, channel_axis)


# -- attention -------------------------------------------------------------------------------------
def mask_bias(cx: ConversionContext, mask: Value, dtype: str, *, attend: bool = True) -> Value:
    """An additive attention bias from a mask: a boolean mask whose True means `attend` becomes
    0 (attend) / -inf (masked); a float mask is already additive."""
    if mask.dtype != "bool":
        return cx.cast(mask, dtype)
    zero, inf = cx.scalar(0, dtype), cx.scalar(-np.inf, dtype)
    return cx.op("where", mask, zero, inf) if attend else cx.op("where", mask, inf, zero)


def causal_bias(cx: ConversionContext, q_len: int, kv_len: int, dtype: str,
                past: int = 0) -> Value:
    """Query i sees keys j <= past + i."""
    j = np.arange(kv_len)[None, :]
    i = np.arange(q_len)[:, None]
    return cx.const(np.where(j > past + i, -np.inf, 0).astype(ir.np_dtype(dtype)))


def split_heads(cx: ConversionContext, x: Value, heads: int) -> Value:
    """(B, S, E) -> (B, heads, S, E / heads)."""
    b, s, e = x.shape
    return cx.transpose(cx.reshape(x, (b, s, heads, e // heads)), (0, 2, 1, 3))


def merge_heads(cx: ConversionContext, x: Value) -> Value:
    """(B, heads, S, D) -> (B, S, heads * D)."""
    b, h, s, d = x.shape
    return cx.reshape(cx.transpose(x, (0, 2, 1, 3)), (b, s, h * d))


def attention(cx: ConversionContext, q: Value, k: Value, v: Value, *, bias: Value | None = None,
              scale: float | None = None, scale_both: bool = False, softcap: float | None = None,
              softmax_dtype: str | None = None) -> tuple[Value, Value, Value, Value]:
    """softmax(q k^T * scale + bias) v over the last two axes.

    scale defaults to 1/sqrt(head size). `scale_both` multiplies q and k by sqrt(scale) each
    instead of the scores by scale (ONNX's reference does; it keeps large heads in range).
    Returns (output, probabilities, raw scores, scores with bias).
    """
    dt = q.dtype
    s = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    r = k.type.rank
    kt = cx.transpose(k, tuple(range(r - 2)) + (r - 1, r - 2))
    if scale_both:
        root = cx.scalar(math.sqrt(s), dt)
        scores = cx.op("matmul", cx.op("mul", q, root), cx.op("mul", kt, root))
    else:
        scores = cx.op("mul", cx.op("matmul", q, kt), cx.scalar(s, dt))
    if softcap and softcap > 0:
        cap = cx.scalar(softcap, dt)
        scores = cx.op("mul", cx.op("tanh", cx.op("div", scores, cap)), cap)
    biased = scores if bias is None else cx.op("add", scores, bias)
    sm_in = biased if softmax_dtype is None else cx.cast(biased, softmax_dtype)
    probs = cx.cast(cx.op("softmax", sm_in, axis=sm_in.type.rank - 1), dt)
    return cx.op("matmul", probs, v), probs, scores, biased


# -- recurrent layers ------------------------------------------------------------------------------
@dataclass
class Recurrence:
    """One direction of a recurrent layer in a canonical form.

    kind: "lstm" (gates i, f, c, o), "gru" (z, r, h) or "rnn" (h).
    gates: the order of the gate blocks in the weights' last axis, by those letters: ONNX LSTM
      "iofc", PyTorch/Keras LSTM "ifco" (their i|f|g|o), ONNX GRU "zrh", PyTorch GRU "rzh",
      Keras GRU "zrh".
    w: [input, G*H], r: [H, G*H] (so x @ w and h @ r); wb, rb: [G*H] input and recurrent biases.
    acts: LSTM (f, g, h) = (sigmoid, tanh, tanh) by default; GRU (f, g); RNN (f,).
    linear_before_reset (GRU): h~ = g(x_h + r * (h @ R_h + rb_h) + wb_h) as PyTorch, cuDNN and
      Keras's reset_after do, instead of g(x_h + (r * h) @ R_h + rb_h + wb_h).
    peepholes (LSTM): ([H] each) for the i, o and f gates.
    """

    kind: str
    gates: str
    w: Value
    r: Value
    wb: Value | None = None
    rb: Value | None = None
    acts: tuple[Act, ...] | None = None
    clip: float | None = None
    linear_before_reset: bool = False
    peepholes: tuple[Value, Value, Value] | None = None

    @property
    def hidden(self) -> int:
        return self.r.shape[0]


_DEFAULT_ACTS = {"lstm": ("sigmoid", "tanh", "tanh"), "gru": ("sigmoid", "tanh"), "rnn": ("tanh",)}


def _ir_act(cx: ConversionContext, name: str) -> Act:
    return lambda v: cx.op(name, v)


def _gate(cx: ConversionContext, v: Value, rec: Recurrence, letter: str) -> Value:
    h = rec.hidden
    i = rec.gates.index(letter)
    return cx.slice(v, v.type.rank - 1, i * h, (i + 1) * h)


def unroll(cx: ConversionContext, rec: Recurrence, x: Value, state: tuple[Value, ...],
           reverse: bool = False) -> tuple[list[Value], tuple[Value, ...]]:
    """Run one direction over x [steps, batch, input] from `state` ((h,) or (h, c), each
    [batch, H]). Returns the per-step outputs in time order ([batch, H] each) and the final state.

    The input projection of all steps is one matmul; each step adds the recurrent matmul."""
    acts = rec.acts or tuple(_ir_act(cx, n) for n in _DEFAULT_ACTS[rec.kind])
    steps = x.shape[0]

    def clip(v: Value) -> Value:
        if rec.clip is None:
            return v
        return cx.op("clip", v, min=-float(rec.clip), max=float(rec.clip))

    xw = cx.op("matmul", x, rec.w)
    both = None if rec.wb is None else cx.op("add", rec.wb, rec.rb) if rec.rb is not None \
        else rec.wb
    if rec.kind != "gru" and both is not None:
        xw = cx.op("add", xw, both)
    outs: list[Value | None] = [None] * steps
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in order:
        x_t = cx.reshape(cx.slice(xw, 0, t, t + 1), xw.shape[1:])
        if rec.kind == "rnn":
            (h,) = state
            (f,) = acts
            h = f(clip(cx.op("add", x_t, cx.op("matmul", h, rec.r))))
            state = (h,)
        elif rec.kind == "lstm":
            h, c = state
            f, g, hact = acts
            pre = cx.op("add", x_t, cx.op("matmul", h, rec.r))
            pi = po = pf = None
            if rec.peepholes is not None:
                pi, po, pf = rec.peepholes
            i = f(clip(cx.add_all(_gate(cx, pre, rec, "i"),
                                  None if pi is None else cx.op("mul", pi, c))))
            fg = f(clip(cx.add_all(_gate(cx, pre, rec, "f"),
                                   None if pf is None else cx.op("mul", pf, c))))
            cc = g(clip(_gate(cx, pre, rec, "c")))
            c = cx.op("add", cx.op("mul", fg, c), cx.op("mul", i, cc))
            o = f(clip(cx.add_all(_gate(cx, pre, rec, "o"),
                                  None if po is None else cx.op("mul", po, c))))
            h = cx.op("mul", o, hact(c))
            state = (h, c)
        else:  # gru
            (h,) = state
            f, g = acts
            hr = cx.op("matmul", h, rec.r)

            def b(bias: Value | None, letter: str) -> Value | None:
                return None if bias is None else _gate(cx, bias, rec, letter)

            z = f(clip(cx.add_all(_gate(cx, x_t, rec, "z"), _gate(cx, hr, rec, "z"),
                                  b(rec.wb, "z"), b(rec.rb, "z"))))
            r = f(clip(cx.add_all(_gate(cx, x_t, rec, "r"), _gate(cx, hr, rec, "r"),
                                  b(rec.wb, "r"), b(rec.rb, "r"))))
            if rec.linear_before_reset:
                rec_h = cx.add_all(_gate(cx, hr, rec, "h"), b(rec.rb, "h"))
                pre = cx.add_all(_gate(cx, x_t, rec, "h"), cx.op("mul", r, rec_h),
                                 b(rec.wb, "h"))
            else:
                r_h = _gate(cx, rec.r, rec, "h")
                pre = cx.add_all(_gate(cx, x_t, rec, "h"),
                                 cx.op("matmul", cx.op("mul", r, h), r_h),
                                 b(rec.rb, "h"), b(rec.wb, "h"))
            hh = g(clip(pre))
            # (1 - z) * h~ + z * h
            one = cx.scalar(1, h.dtype)
            h = cx.op("add", cx.op("mul", cx.op("sub", one, z), hh), cx.op("mul", z, h))
            state = (h,)
        outs[t] = state[0]
    return [o for o in outs if o is not None], state


def zeros_state(cx: ConversionContext, batch: int, hidden: int, dtype: str) -> Value:
    return cx.const(np.zeros((batch, hidden), ir.np_dtype(dtype)))


def stack_steps(cx: ConversionContext, outs: Sequence[Value], axis: int = 0) -> Value:
    """Per-step [batch, H] outputs stacked along a new `axis` ([steps, batch, H] for 0)."""
    parts = [cx.reshape(o, o.shape[:axis] + (1,) + o.shape[axis:]) for o in outs]
    return cx.concat(parts, axis)
