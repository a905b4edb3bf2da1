"""Data layout: every conv and pool into the layout the kernels compute (channels first), with
as few transposes left as the graph allows.

TensorFlow, Keras and TFLite models are channels-last (NHWC). Converting each NHWC conv or pool
alone would wrap it in two transposes; this pass instead carries each transpose *lazily* down the
graph: a value is known as `transpose(z, perm)` of a value `z` of the new graph, and the ops that
can compute on `z` directly (elementwise and broadcast ops, concat, pad, slice, reductions,
softmax, resize, the converted convs and pools themselves) do so with their attributes permuted.
A transpose is materialized only where a value reaches an op that cannot absorb it (a reshape, a
matmul, a graph output). Between two NHWC convs joined by bias adds, activations, residual adds
and pools, the transpose out of the first and the one into the second compose to the identity
and vanish.

Identities used, with T(x, p) = transpose(x, perm=p) and p∘q the composed perm:
  T(T(z, p), q) = T(z, p∘q)                       # p∘q[k] = p[q[k]]
  f(T(z, p)) = T(f(z), p)                         # f elementwise
  T(z, p) + c = T(z + T(c', p⁻¹), p)              # c' = c broadcast to the full rank
  concat(T(z_i, p), axis=a) = T(concat(z_i, axis=p[a]), p)
  reduce(T(z, p), axes) = T(reduce(z, p[axes]), p) with keepdims (else the remaining dims' order)
  conv_NHWC(T(z, p)) = T(conv_NCHW(T(z, p∘to_channels_last)), to_channels_last)
"""
from __future__ import annotations

import numpy as np

from neo.ir import FusionKind, Graph, Node, Value, op_def
from neo.ir.ops_nn import to_channels_first, to_channels_last

Perm = tuple[int, ...]
LAYOUT_OPS = frozenset({"conv", "conv_transpose", "max_pool", "avg_pool", "conv_integer"})
# ops whose attributes name axes or per-axis values, which a permutation renames
_AXIS_OPS = frozenset({"concat", "softmax", "log_softmax"})
_PER_AXIS_OPS = frozenset({"pad", "slice", "resize"})


def compose(p: Perm, q: Perm) -> Perm:
    """T(T(z, p), q) = T(z, compose(p, q))."""
    return tuple(p[k] for k in q)


def inverse(p: Perm) -> Perm:
    return tuple(int(i) for i in np.argsort(p))


def _identity(p: Perm) -> bool:
    return p == tuple(range(len(p)))


def _per_axis_quant(n: Node, p: Perm) -> dict:
    """n's attributes for computing on z (the old axis a is z's p[a]): the axis of per-channel
    quantization parameters and requantize multipliers."""
    from neo.ir import QuantParams

    attrs = dict(n.attrs)
    if n.op == "requantize" and attrs.get("axis") is not None:
        attrs["axis"] = p[attrs["axis"]]
    for key in ("quant", "a_quant", "b_quant"):
        q = attrs.get(key)
        if isinstance(q, QuantParams) and not q.is_per_tensor:
            attrs[key] = QuantParams(q.scale, q.zero_point, p[q.axis])
    return attrs


def _transposed_quant(q, p: Perm):
    """Quantization parameters of T(z, p) given z's: a per-axis axis follows its dim."""
    if q is None or q.is_per_tensor:
        return q
    from neo.ir import QuantParams

    return QuantParams(q.scale, q.zero_point, list(p).index(q.axis))


class _Layout:
    def __init__(self, g: Graph):
        self.old = g
        self.new = Graph(g.name)
        # old value -> (new value z, perm p): the old value is T(z, p)
        self.env: dict[int, tuple[Value, Perm]] = {}
        self.materialized: dict[tuple[int, Perm], Value] = {}
        for v in g.inputs:
            nv = self.new.input(v.name, v.shape, v.dtype, v.type.quant)
            self.env[id(v)] = (nv, tuple(range(v.type.rank)))

    # -- values ------------------------------------------------------------------------------
    def lazy(self, v: Value) -> tuple[Value, Perm]:
        if v.is_const:
            return v, tuple(range(v.type.rank))
        return self.env[id(v)]

    def transpose(self, z: Value, p: Perm, name: str) -> Value:
        if _identity(p):
            return z
        if z.is_const:  # fold
            data = np.ascontiguousarray(np.transpose(z.data, p))
            return self.new.const(data, f"{z.name}.t", z.dtype,
                                  _transposed_quant(z.type.quant, p))
        key = (id(z), p)
        if key not in self.materialized:
            self.materialized[key] = self.new.add("transpose", [z], {"perm": p},
                                                  name=name).outputs[0]
        return self.materialized[key]

    def value(self, v: Value) -> Value:
        """The old value itself in the new graph (its transpose materialized)."""
        z, p = self.lazy(v)
        return self.transpose(z, p, f"{v.name}.layout")

    def operand(self, v: Value, p: Perm, rank: int, name: str) -> Value:
        """`w` with T(w, p) equal to `v` broadcast to `rank` (for an op computing in z's order)."""
        z, q = self.lazy(v)
        if q == p:
            return z
        full = self.value(v)
        if full.type.rank < rank:  # align by broadcasting rules: leading ones
            shape = (1,) * (rank - full.type.rank) + full.shape
            if full.is_const:
                full = self.new.const(full.data.reshape(shape), f"{full.name}.r", full.dtype,
                                      full.type.quant if full.type.quant is None
                                      or full.type.quant.is_per_tensor else None)
            else:
                full = self.new.add("reshape", [full], {"shape": shape}, name=name).outputs[0]
        return self.transpose(full, inverse(p), name)

    # -- nodes -------------------------------------------------------------------------------
    def emit(self, n: Node, inputs: list[Value], attrs: dict, perms: list[Perm]) -> None:
        node = self.new.add(n.op, inputs, attrs, n.name, n.origin,
                            out_names=[o.name for o in n.outputs])
        for o, no, p in zip(n.outputs, node.outputs, perms):
            self.env[id(o)] = (no, p)

    def copy(self, n: Node) -> None:
        self.emit(n, [self.value(v) for v in n.inputs], n.attrs,
                  [tuple(range(o.type.rank)) for o in n.outputs])

    def run(self) -> Graph:
        for n in self.old.nodes:
            if not self.node(n):
                self.copy(n)
        self.new.outputs = [self.value(v) for v in self.old.outputs]
        self.new.output_names = self.old.out_names()
        return self.new

    def node(self, n: Node) -> bool:
        """Convert `n` absorbing the transposes of its inputs; False to copy it as it is."""
        if len(n.outputs) != 1 or not n.inputs:
            return False
        rank = n.outputs[0].type.rank
        if n.op in LAYOUT_OPS:
            return self.layout_op(n)
        if n.op == "transpose":
            z, p = self.lazy(n.inputs[0])
            self.env[id(n.outputs[0])] = (z, compose(p, tuple(n.attrs["perm"])))
            return True
        if n.op.startswith("reduce_") and len(n.inputs) == 1:
            q = self.lazy(n.inputs[0])[1]
            return not _identity(q) and self.reduce(n, q)
        # the perm of the first full-rank input that carries one decides
        p = next((q for v in n.inputs for _, q in [self.lazy(v)]
                  if v.type.rank == rank and not _identity(q)), None)
        if p is None:
            return False
        kind = op_def(n.op).kind
        if kind <= FusionKind.BROADCAST and n.op not in ("expand", "batch_norm"):
            ins = [self.operand(v, p, rank, f"{n.name}.in{i}") for i, v in enumerate(n.inputs)]
            self.emit(n, ins, _per_axis_quant(n, p), [p])
            return True
        if n.op in _AXIS_OPS:
            if any(self.lazy(v)[1] != p for v in n.inputs):
                return False
            attrs = dict(n.attrs, axis=p[n.attrs["axis"] % rank])
            self.emit(n, [self.lazy(v)[0] for v in n.inputs], attrs, [p])
            return True
        if n.op in _PER_AXIS_OPS and len(n.inputs) == 1:
            return self.per_axis(n, p)
        return False

    def layout_op(self, n: Node) -> bool:
        x = n.inputs[0]
        r = x.type.rank
        z, p = self.lazy(x)
        layout = n.attrs.get("layout", "NCHW")
        # the channels-first input is T(old x, to_cf) = T(z, p∘to_cf)
        to_cf = to_channels_first(r) if layout == "NHWC" else tuple(range(r))
        xin = self.transpose(z, compose(p, to_cf), f"{n.name}.nchw")
        ins = [xin] + [self.value(v) for v in n.inputs[1:]]
        out_p = to_channels_last(r) if layout == "NHWC" else tuple(range(r))
        self.emit(n, ins, dict(n.attrs, layout="NCHW"), [out_p])
        return True

    def per_axis(self, n: Node, p: Perm) -> bool:
        z, q = self.lazy(n.inputs[0])
        if q != p:
            return False
        r = len(p)
        attrs = dict(n.attrs)
        inv = inverse(p)

        def permute(values):  # per old axis -> per axis of z
            return tuple(values[inv[k]] for k in range(r))

        if n.op == "pad":
            pads = attrs["pads"]
            attrs["pads"] = permute(pads[:r]) + permute(pads[r:])
        elif n.op == "slice":
            for key in ("starts", "ends", "steps"):
                attrs[key] = permute(attrs[key])
        else:  # resize
            for key in ("size", "scales"):
                if attrs.get(key) is not None:
                    attrs[key] = permute(attrs[key])
            if attrs.get("roi"):
                roi = attrs["roi"]
                attrs["roi"] = permute(roi[:r]) + permute(roi[r:])
        self.emit(n, [z], attrs, [p])
        return True

    def reduce(self, n: Node, p: Perm) -> bool:
        z, q = self.lazy(n.inputs[0])
        if q != p:
            return False
        r = len(p)
        axes = tuple(range(r)) if n.attrs.get("axes") is None else tuple(
            a % r for a in n.attrs["axes"])
        new_axes = tuple(sorted(p[a] for a in axes))
        attrs = dict(n.attrs, axes=new_axes)
        if n.attrs.get("keepdims", 1):
            out_p = p
        else:  # the kept dims of z, in z's order; the old output lists them in the old order
            kept_z = [d for d in range(r) if d not in new_axes]
            out_p = tuple(kept_z.index(p[k]) for k in range(r) if k not in axes)
        self.emit(n, [z], attrs, [out_p])
        return True


def convert_layout(g: Graph) -> Graph:
    """Every conv and pool channels-first; transposes carried down and cancelled (see above)."""
    if not any(n.op in LAYOUT_OPS and n.attrs.get("layout", "NCHW") != "NCHW" for n in g.nodes):
        return g  # channels-first graphs keep their transposes where their authors put them
    return _Layout(g).run()
