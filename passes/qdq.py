"""QDQ graphs onto integer ops: `dequantize -> float op -> quantize` becomes the integer op.

A QDQ graph (an ONNX model from `quantize_static(quant_format=QDQ)`, or a graph `--quantize`
annotated, passes/quantize.py) computes in float on values that went through
quantize/dequantize pairs. This pass rewrites it, node by node, with identities that hold for the
integers exactly, or up to onnxruntime's rounding (it runs these models the same way):

  op(DQ(x)) = DQ(op(x))             # op moves or selects integers (ir/quant.py: KEEPS_QUANT)
  relu(DQ(x; zp)) = DQ(clip(x, min=zp))
  conv(DQ(x; sx), DQ(w; sw[c]), b) = DQ(conv_integer(x, w, round(b / (sx sw[c]))); sx sw[c])
  matmul(DQ(a; sa), DQ(b; sb[n])) = DQ(matmul_integer(a, b); sa sb[n])
  DQ(acc; s) + c = DQ(acc + round(c / s); s)              # a bias on an int32 accumulator
  Q(DQ(x; s1); s2) = x if s1 == s2, else requantize(x; s1 / s2)
  Q(clip(DQ(acc), a, b)) = requantize(acc, min=Q(a), max=Q(b))   # Q is monotone
  Q(DQ(a) + DQ(b)) = qadd(a, b)
  Q(concat(DQ(x_i))) = concat(requantize(x_i))

Float nodes left without users disappear in the dead-code pass after it, and the dequantize of
weights that no integer op took folds into float constants. Ops with no integer form keep
computing in float between their DQ and Q (fp32 islands).
"""
from __future__ import annotations

import numpy as np

from neo.ir import Graph, Node, QuantParams, TensorType, Value
from neo.ir.quant import KEEPS_QUANT, propagate_quant
from neo.ir.rewrite import Rewriter, rewrite

EIGHT_BIT = ("int8", "uint8")
# ops that move or select integers and need nothing else to do it on them (no float operand)
_MOVERS = frozenset(KEEPS_QUANT) - {"clip", "maximum", "minimum", "where"}


def _dq(v: Value) -> tuple[Value, QuantParams] | None:
    """(integers, parameters) when v is a dequantize output of the new graph."""
    p = v.producer
    if p is not None and p.op == "dequantize" and p.attrs["dtype"] == "float32":
        return p.inputs[0], p.attrs["quant"]
    return None


def _dequantize(rw: Rewriter, x: Value, q: QuantParams, name: str) -> Value:
    return rw.new.op("dequantize", x, quant=q, dtype="float32", name=name)


def _retyped(v: Value, q: QuantParams) -> TensorType:
    return TensorType(v.shape, v.dtype, q)


def _move(rw: Rewriter, n: Node, ins: list[Value]) -> list[Value] | None:
    """op(DQ(x)) = DQ(op(x)) for ops that move integers; relu(DQ(x)) = DQ(clip(x, min=zp))."""
    which = KEEPS_QUANT.get(n.op, ())
    data = list(range(len(ins))) if which is None else [i for i in which if i < len(ins)]
    found = [_dq(ins[i]) for i in data]
    if not data or any(f is None for f in found):
        return None
    qs = {q for _, q in found}
    if len(qs) != 1:
        return None
    q = qs.pop()
    xs = list(ins)
    for i, (x, _) in zip(data, found):
        xs[i] = x
    attrs = dict(n.attrs)
    if n.op == "pad" and attrs.get("mode", "constant") == "constant":
        if not q.is_per_tensor:
            return None
        v = float(attrs.get("value", 0.0)) / q.scale[0]
        if v != round(v):
            return None
        attrs["value"] = float(round(v) + q.zero_point[0])
    out_q = propagate_quant(n.op, attrs, [_retyped(x, q) if i in data else x.type
                                          for i, x in enumerate(xs)],
                            [TensorType(n.outputs[0].shape, xs[data[0]].dtype)])[0].quant
    if out_q is None:
        return None
    y = rw.new.add(n.op, xs, attrs, name=n.name, origin=n.origin).outputs[0]
    return [_dequantize(rw, y, out_q, f"{n.name}.dq")]


def _relu(rw: Rewriter, n: Node, ins: list[Value]) -> list[Value] | None:
    found = _dq(ins[0])
    if found is None or not found[1].is_per_tensor:
        return None
    x, q = found
    y = rw.new.op("clip", x, min=q.zero_point[0], name=n.name, origin=n.origin)
    return [_dequantize(rw, y, q, f"{n.name}.dq")]


def _weights(v: Value) -> tuple[Value, QuantParams] | None:
    found = _dq(v)
    if found is None or found[0].dtype not in EIGHT_BIT:
        return None
    return found


def _bias(b: Value | None, scale: np.ndarray) -> Value | np.ndarray | None:
    """The int32 bias of an integer conv or matmul: DQ(int32) of that scale as it is, a float
    constant rounded to it (as onnxruntime's quantizer does)."""
    if b is None:
        return None
    found = _dq(b)
    if found is not None and found[0].dtype == "int32" and found[0].is_const:
        ints, bq = found
        if not any(bq.zero_point) and np.allclose(np.broadcast_to(bq.scales(), scale.shape),
                                                  scale, rtol=1e-6, atol=0):
            return np.asarray(ints.data, np.int64)
        data = ((ints.data.astype(np.float64) - bq.zero_points(ints.type.rank))
                * bq.scales(ints.type.rank))
    elif b.is_const:
        data = np.asarray(b.data, np.float64)
    else:
        return None
    return np.rint(data / scale.astype(np.float64))


def _conv(rw: Rewriter, n: Node, ins: list[Value]) -> list[Value] | None:
    x, w = _dq(ins[0]), _weights(ins[1])
    if x is None or w is None or x[0].dtype not in EIGHT_BIT or not x[1].is_per_tensor:
        return None
    (xq, qx), (wq, qw) = x, w
    if not (qw.is_per_tensor or qw.axis == 0) or n.attrs.get("layout", "NCHW") != "NCHW":
        return None
    oc = wq.shape[0]
    scale = (np.float32(qx.scale[0]) * np.broadcast_to(qw.scales(), (oc,))).astype(np.float32)
    bias = _bias(ins[2] if len(ins) > 2 else None, scale)
    if bias is None and len(ins) > 2:
        return None
    extra = []
    if bias is not None:
        extra = [rw.new.const(np.clip(bias, -(1 << 31), (1 << 31) - 1).astype(np.int32),
                              f"{n.name}.bias")]
    attrs = {k: n.attrs[k] for k in ("strides", "pads", "dilations", "groups")}
    acc = rw.new.op("conv_integer", xq, wq, *extra, x_zero_point=qx.zero_point[0],
                    w_zero_point=qw.zero_point if not qw.is_per_tensor else qw.zero_point[0],
                    name=n.name, origin=n.origin, **attrs)
    return [_dequantize(rw, acc, _acc_params(scale, 1), f"{n.name}.dq")]


def _acc_params(scale: np.ndarray, axis: int) -> QuantParams:
    if np.all(scale == scale[0]):
        return QuantParams.per_tensor(float(scale[0]))
    return QuantParams(scale, 0, axis)


def _matmul(rw: Rewriter, n: Node, ins: list[Value]) -> list[Value] | None:
    a, b = _dq(ins[0]), _weights(ins[1])
    if a is None or b is None or a[0].dtype not in EIGHT_BIT or not a[1].is_per_tensor:
        return None
    (aq, qa), (bq, qb) = a, b
    if bq.type.rank < 2 or not (qb.is_per_tensor or qb.axis == bq.type.rank - 1):
        return None
    ncol = bq.shape[-1]
    scale = (np.float32(qa.scale[0]) * np.broadcast_to(qb.scales(), (ncol,))).astype(np.float32)
    acc = rw.new.op("matmul_integer", aq, bq, a_zero_point=qa.zero_point[0],
                    b_zero_point=qb.zero_point if not qb.is_per_tensor else qb.zero_point[0],
                    name=n.name, origin=n.origin)
    return [_dequantize(rw, acc, _acc_params(scale, acc.type.rank - 1), f"{n.name}.dq")]


def _bias_add(rw: Rewriter, n: Node, ins: list[Value]) -> list[Value] | None:
    """DQ(acc; s) + c = DQ(acc + round(c / s); s) for an int32 accumulator and a constant c
    that is constant along every axis but the one of s."""
    for k in (0, 1):
        found, c = _dq(ins[k]), ins[1 - k]
        cdata = _const_float(c)
        if found is None or cdata is None or found[0].dtype != "int32":
            continue
        acc, q = found
        if any(z != 0 for z in q.zero_point) or c.type.rank > acc.type.rank:
            continue
        cf = cdata.reshape((1,) * (acc.type.rank - c.type.rank) + c.shape)
        keep = set() if q.is_per_tensor else {q.axis}
        if any(d != 1 for i, d in enumerate(cf.shape) if i not in keep):
            continue
        ci = np.rint(cf / q.scales(acc.type.rank).astype(np.float64))
        y = rw.new.op("add", acc, rw.new.const(ci.astype(np.int32), f"{n.name}.bias"),
                      name=n.name, origin=n.origin)
        return [_dequantize(rw, y, q, f"{n.name}.dq")]
    return None


def _const_float(c: Value) -> np.ndarray | None:
    """A float constant's values, or those of DQ(integer constant) (a quantized bias)."""
    if c.is_const and c.dtype == "float32":
        return np.asarray(c.data, np.float64)
    found = _dq(c)
    if found is not None and found[0].is_const:
        ints, q = found
        r = ints.type.rank
        return (ints.data.astype(np.float64) - q.zero_points(r)) * q.scales(r).astype(np.float64)
    return None


def _quantize(rw: Rewriter, n: Node, ins: list[Value]) -> list[Value] | None:
    qy: QuantParams = n.attrs["quant"]
    dtype = n.attrs["dtype"]
    v = ins[0]
    if not qy.is_per_tensor or dtype not in EIGHT_BIT:
        return None
    lo = hi = None
    p = v.producer
    # Q(clip(y, a, b)) = clip(Q(y), Q(a), Q(b)) (Q is monotone): the clamp of the requantize or
    # qadd that makes Q(y); relu is clip(0, inf)
    if p is not None and p.op in ("relu", "clip") and p.inputs[0].producer is not None:
        if p.op == "relu":
            bounds = (0.0, None)
        else:
            bounds = (p.attrs.get("min"), p.attrs.get("max"))
        lo, hi = (_q_scalar(b, qy, dtype) if b is not None else None for b in bounds)
        v = p.inputs[0]
        p = v.producer
    found = _dq(v)
    if found is not None:
        x, qx = found
        if qx == qy and x.dtype == dtype and lo is None and hi is None:
            return [x]
        if x.dtype not in EIGHT_BIT + ("int32",) or (not qx.is_per_tensor and x.type.rank < 2):
            return None
        m = (np.asarray(qx.scale, np.float32) / np.float32(qy.scale[0])).astype(np.float32)
        zi = qx.zero_point[0]
        if not qx.is_per_tensor and len(set(qx.zero_point)) > 1:
            return None
        return [rw.new.op("requantize", x, multiplier=tuple(float(f) for f in m),
                          axis=qx.axis if m.size > 1 else None, in_zero_point=zi,
                          out_zero_point=qy.zero_point[0], dtype=dtype, mode="float",
                          min=lo, max=hi, quant=qy, name=n.name, origin=n.origin)]
    if p is not None and p.op == "add":
        a, b = _dq(p.inputs[0]), _dq(p.inputs[1])
        if a is None or b is None or a[0].dtype not in EIGHT_BIT or b[0].dtype not in EIGHT_BIT:
            return None
        if not (a[1].is_per_tensor and b[1].is_per_tensor):
            return None
        return [rw.new.op("qadd", a[0], b[0], a_quant=a[1], b_quant=b[1], quant=qy, dtype=dtype,
                          mode="float", min=lo, max=hi, name=n.name, origin=n.origin)]
    if p is not None and p.op == "concat" and lo is None and hi is None:
        parts = [_dq(u) for u in p.inputs]
        if any(f is None or f[0].dtype not in EIGHT_BIT or not f[1].is_per_tensor
               for f in parts):
            return None
        xs = []
        for x, qx in parts:
            if qx == qy and x.dtype == dtype:
                xs.append(x)
                continue
            m = float(np.float32(qx.scale[0]) / np.float32(qy.scale[0]))
            xs.append(rw.new.op("requantize", x, multiplier=(m,), in_zero_point=qx.zero_point[0],
                                out_zero_point=qy.zero_point[0], dtype=dtype, mode="float",
                                quant=qy, name=f"{n.name}.in"))
        return [rw.new.op("concat", *xs, axis=p.attrs["axis"], name=n.name, origin=n.origin)]
    return None


def _q_scalar(v: float, q: QuantParams, dtype: str) -> int | None:
    """Q(v) for a clip bound; None when the bound is outside the integers' range anyway."""
    from neo.ir.ops_quant import quantize_reference

    if not np.isfinite(v):
        return None
    return int(quantize_reference({"quant": q, "dtype": dtype, "rounding": "half_to_even"},
                                  np.array([v], np.float32))[0])


RULES = {"conv": _conv, "matmul": _matmul, "add": _bias_add, "quantize": _quantize,
         "relu": _relu}


def lower_qdq(g: Graph) -> Graph:
    """QDQ patterns -> integer ops (see the module docstring); other graphs are unchanged."""
    if not any(n.op == "dequantize" for n in g.nodes):
        return g

    def emit(rw: Rewriter, n: Node):
        ins = [rw.get(v) for v in n.inputs]
        if len(n.outputs) != 1:
            return None
        rule = RULES.get(n.op)
        if rule is not None:
            out = rule(rw, n, ins)
            if out is not None:
                return out
        if n.op in _MOVERS:
            return _move(rw, n, ins)
        return None

    return rewrite(g, emit)
