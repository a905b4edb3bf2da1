"""BatchNorm: folded into the convolution that feeds it, or decomposed into a per-channel affine."""
from __future__ import annotations

import numpy as np

from neo.ir import Graph, Node
from neo.ir.rewrite import Rewriter, rewrite


def _bn_scale_shift(n: Node, params):
    scale, bias, mean, var = (p.astype(np.float64) for p in params)
    s = scale / np.sqrt(var + n.attrs["epsilon"])
    return s, bias - mean * s


def fold_batchnorm_into_conv(g: Graph) -> Graph:
    """batch_norm(conv(x, w, b)) -> conv(x, w * s, (b - mean) * s + beta), s = gamma/sqrt(var+eps)."""
    users = g.consumers()

    def emit(rw: Rewriter, n: Node):
        if n.op != "batch_norm" or not all(v.is_const for v in n.inputs[1:]):
            return None
        x = n.inputs[0]
        conv = x.producer
        if (conv is None or conv.op != "conv" or len(users.get(x, [])) != 1 or x in g.outputs
                or not all(v.is_const for v in conv.inputs[1:])):
            return None
        s, shift = _bn_scale_shift(n, [v.data for v in n.inputs[1:]])
        w = conv.inputs[1].data
        dt = w.dtype
        w2 = (w.astype(np.float64) * s.reshape((-1,) + (1,) * (w.ndim - 1))).astype(dt)
        b = conv.inputs[2].data.astype(np.float64) if len(conv.inputs) > 2 else 0.0
        b2 = (b * s + shift).astype(dt)
        new_x = rw.get(conv.inputs[0])
        nn = rw.new.add("conv", [new_x, rw.new.const(w2, f"{conv.name}.w"),
                                 rw.new.const(b2, f"{conv.name}.b")], conv.attrs, conv.name,
                        conv.origin, out_names=[n.outputs[0].name])
        return list(nn.outputs)

    # The conv whose output was folded is now dead; dead-code elimination removes it.
    return rewrite(g, emit)


def decompose_batchnorm(g: Graph) -> Graph:
    """batch_norm(x) -> x * s + t with per-channel constants (what is left after folding)."""

    def emit(rw: Rewriter, n: Node):
        if n.op != "batch_norm":
            return None
        x = rw.get(n.inputs[0])
        shape = (-1,) + (1,) * (x.type.rank - 2)
        dt = x.dtype
        params = [rw.get(v) for v in n.inputs[1:]]
        if not all(v.is_const for v in params):
            return _decompose_runtime_params(rw, n, x, params, shape)
        s, t = _bn_scale_shift(n, [v.data for v in params])
        sv = rw.new.const(s.reshape(shape).astype(dt), f"{n.name}.scale")
        tv = rw.new.const(t.reshape(shape).astype(dt), f"{n.name}.shift")
        y = rw.new.op("mul", x, sv, name=f"{n.name}.mul", origin=n.origin)
        out = rw.new.add("add", [y, tv], {}, f"{n.name}.add", n.origin, out_names=[n.outputs[0].name])
        return list(out.outputs)

    return rewrite(g, emit)


def _decompose_runtime_params(rw: Rewriter, n: Node, x, params, shape):
    """batch_norm(x, gamma, beta, mean, var) -> (x - mean) * (gamma / sqrt(var + eps)) + beta,
    for parameters computed at run time (reshaped to broadcast per channel)."""
    G = rw.new
    channels = x.shape[1] if x.type.rank > 1 else x.shape[0]
    cshape = (channels,) + tuple(shape[1:])

    def per_channel(v, what):
        return G.op("reshape", v, shape=cshape, name=f"{n.name}.{what}", origin=n.origin)

    gamma, beta, mean, var = (per_channel(v, w) for v, w in
                              zip(params, ("scale", "bias", "mean", "var")))
    eps = G.const(np.asarray(n.attrs["epsilon"], dtype=x.dtype).reshape(()), f"{n.name}.eps")
    std = G.op("sqrt", G.op("add", var, eps, name=f"{n.name}.var_eps", origin=n.origin),
               name=f"{n.name}.std", origin=n.origin)
    s = G.op("div", gamma, std, name=f"{n.name}.inv_std", origin=n.origin)
    d = G.op("sub", x, mean, name=f"{n.name}.centered", origin=n.origin)
    y = G.op("mul", d, s, name=f"{n.name}.mul", origin=n.origin)
    out = G.add("add", [y, beta], {}, f"{n.name}.add", n.origin, out_names=[n.outputs[0].name])
    return list(out.outputs)
