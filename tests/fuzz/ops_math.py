"""Fuzzer op families: elementwise and broadcasting math, comparisons under Where, casts
(through float16, float64 or int32 with integer arithmetic), Mod."""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from onnx import TensorProto

from .graphgen import (
    MAX_ELEMS,
    GenState,
    Invalid,
    Op,
    Val,
    _check_size,
    _span,
    broadcast,
    op,
    pattern_shape,
)


def _np_gelu(x):
    from scipy.special import erf

    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def _np_erf(x):
    from scipy.special import erf

    return erf(x)


UNARY: dict[str, tuple[Callable, bool, Callable[[Val, int], bool]]] = {
    "Relu": (lambda x: np.maximum(x, 0), True, lambda v, o: True),
    "Abs": (np.abs, True, lambda v, o: True),
    "Neg": (np.negative, True, lambda v, o: True),
    "Sigmoid": (lambda x: 1 / (1 + np.exp(-x)), False, lambda v, o: True),
    "Tanh": (np.tanh, False, lambda v, o: True),
    "Softsign": (lambda x: x / (1 + np.abs(x)), False, lambda v, o: True),
    "HardSigmoid": (lambda x: np.clip(0.2 * x + 0.5, 0, 1), False, lambda v, o: True),
    "HardSwish": (lambda x: x * np.clip(x / 6 + 0.5, 0, 1), False, lambda v, o: o >= 14),
    "LeakyRelu": (lambda x: np.where(x >= 0, x, 0.1 * x), False, lambda v, o: True),
    "Elu": (lambda x: np.where(x >= 0, x, np.expm1(np.minimum(x, 0))), False,
            lambda v, o: True),
    "Selu": (lambda x: 1.0507 * np.where(x >= 0, x, 1.6733 * np.expm1(np.minimum(x, 0))), False,
             lambda v, o: True),
    "Celu": (lambda x: np.where(x >= 0, x, np.expm1(np.minimum(x, 0))), False,
             lambda v, o: o >= 12),
    "Clip": (lambda x: np.clip(x, -1, 1), True, lambda v, o: True),
    "Erf": (_np_erf, False, lambda v, o: True),
    "ThresholdedRelu": (lambda x: np.where(x > 1, x, 0), False, lambda v, o: v.exact),
    "Shrink": (lambda x: np.where(np.abs(x) > 0.5, x, 0), False, lambda v, o: v.exact),
    "Softplus": (lambda x: np.log1p(np.exp(np.minimum(x, 30))), False, lambda v, o: v.hi < 30),
    "Mish": (lambda x: x * np.tanh(np.log1p(np.exp(np.minimum(x, 30)))), False,
             lambda v, o: v.hi < 30 and o >= 18),
    "Gelu": (_np_gelu, False, lambda v, o: o >= 20),
    "Sin": (np.sin, False, lambda v, o: v.mag < 20),
    "Cos": (np.cos, False, lambda v, o: v.mag < 20),
    "Atan": (np.arctan, False, lambda v, o: True),
    "Sinh": (np.sinh, False, lambda v, o: v.mag < 8),
    "Cosh": (np.cosh, False, lambda v, o: v.mag < 8),
    "Exp": (np.exp, False, lambda v, o: v.hi < 10 and v.lo > -60),
    "Log": (np.log, False, lambda v, o: v.lo > 1e-3),
    "Sqrt": (np.sqrt, False, lambda v, o: v.lo >= 0),
    "Reciprocal": (lambda x: 1 / x, False, lambda v, o: v.lo > 0.1 or v.hi < -0.1),
    "Floor": (np.floor, True, lambda v, o: v.exact),
    "Ceil": (np.ceil, True, lambda v, o: v.exact),
    "Round": (np.round, True, lambda v, o: v.exact),
    "Sign": (np.sign, True, lambda v, o: v.exact),
}
UNARY_WEIGHT = {"Relu": 6, "Sigmoid": 3, "Tanh": 2, "LeakyRelu": 2, "Clip": 3, "HardSwish": 2,
                "Exp": 2, "Abs": 1.5, "Neg": 1, "Gelu": 1.5, "Erf": 1, "Softplus": 1.5,
                "Log": 1.5, "Sqrt": 1.5, "Reciprocal": 1}


def _range_of(fn, lo: float, hi: float) -> tuple[float, float]:
    grid = np.concatenate([np.linspace(lo, hi, 2001), [lo, hi, 0.0] if lo < 0 < hi else [lo, hi]])
    with np.errstate(all="ignore"):
        y = fn(grid.astype(np.float64))
    y = y[np.isfinite(y)]
    return (float(y.min()), float(y.max())) if y.size else (lo, hi)


@op
class Unary(Op):
    name, weight = "unary", 12

    def propose(self, s):
        x = s.pick()
        v = s.vals[x]
        ok = [k for k, (_, _, app) in UNARY.items() if app(v, s.spec.opset)]
        k = s.choice(ok, [UNARY_WEIGHT.get(o, 0.5) for o in ok])
        p = {"op": k}
        if k == "LeakyRelu":
            p["alpha"] = s.choice([0.01, 0.1, 0.2])
        elif k in ("Elu", "Celu"):
            p["alpha"] = s.choice([1.0, 0.5])
        elif k == "Clip":
            lo, hi = s.choice([(0.0, 6.0), (-1.0, 1.0), (None, 0.5), (-0.5, None), (0.0, None)])
            p.update(min=lo, max=hi)
        elif k == "HardSigmoid":
            p.update(alpha=s.choice([0.2, 1 / 6]), beta=0.5)
        elif k == "Gelu":
            p["approximate"] = s.choice(["none", "tanh"])
        return [x], p

    def emit(self, e, ins, p):
        (x,), k = ins, p["op"]
        fn, exact, app = UNARY[k]
        if not app(x, e.opset):
            raise Invalid(f"{k} does not apply to [{x.lo}, {x.hi}]")
        attrs, extra = {}, []
        if k == "LeakyRelu":
            attrs["alpha"] = p["alpha"]
            fn = lambda t: np.where(t >= 0, t, p["alpha"] * t)
        elif k in ("Elu", "Celu"):
            attrs["alpha"] = p["alpha"]
        elif k == "HardSigmoid":
            attrs.update(alpha=p["alpha"], beta=p["beta"])
            fn = lambda t: np.clip(p["alpha"] * t + p["beta"], 0, 1)
        elif k == "Gelu":
            attrs["approximate"] = p["approximate"]
        elif k == "Clip":
            lo = -np.inf if p["min"] is None else p["min"]
            hi = np.inf if p["max"] is None else p["max"]
            extra = [e.const(np.float32(p["min"]), "min") if p["min"] is not None else "",
                     e.const(np.float32(p["max"]), "max") if p["max"] is not None else ""]
            while extra and extra[-1] == "":
                extra.pop()
            fn = lambda t: np.clip(t, lo, hi)
        elif k == "Shrink":
            attrs.update(lambd=0.5, bias=0.0)
        out = e.one(k, [x.name, *extra], **attrs)
        lo, hi = _range_of(fn, x.lo, x.hi)
        return [Val(out, x.shape, lo, hi, exact and x.exact)]


def _broadcast_operand(s: GenState, x: Val, allow_value: bool = True) -> tuple[str, dict]:
    """The other operand of a broadcasting op: ('value', {}) with an existing value picked later,
    ('input', {pat}) a new graph input, or ('const', {pat})."""
    r = x.rank
    pats = ["k" * r, "k" * r, "1k11" if r == 4 else "k" * r, "k", "", "k" * max(r - 1, 0) + "1",
            "".join(s.choice("k1") for _ in range(r))]
    if r >= 3:
        pats += ["k11", "k" + "1" * (r - 2)]
    if 1 in x.shape:  # outer broadcasts: [1,C,1,1] + [1,1,H,W]
        pats += ["".join("b" if d == 1 else s.choice("k1") for d in x.shape)] * 2
    pat = s.choice(pats)
    kind = s.choice(["const", "value", "input"], [4, 3.5 if allow_value else 0, 2.5])
    return kind, {"pat": pat, "size": s.choice([2, 3, 5, 8, 16, 17])}


def _value_partner(s: GenState, x: Val) -> str | None:
    def fits(v: Val):
        try:
            out = broadcast(x.shape, v.shape)
            return v.name != x.name and len(out) == x.rank and math.prod(out) <= MAX_ELEMS
        except Invalid:
            return False

    return s.pick(fits, recent=0.8)


BINARY_OPS = {"Add": 6, "Sub": 3, "Mul": 6, "Div": 2, "Max": 1.5, "Min": 1.5, "Pow": 1,
              "PRelu": 1, "Sum": 1, "Mean": 0.5}


@op
class Binary(Op):
    name, weight = "binary", 12

    def propose(self, s):
        x = s.pick()
        v = s.vals[x]
        k = s.choice(list(BINARY_OPS), list(BINARY_OPS.values()))
        if k == "Pow" and not (v.lo > 0.05 and v.hi < 10):
            k = "Mul"
        kind, p = _broadcast_operand(s, v, allow_value=k not in ("Pow", "PRelu"))
        if k in ("Pow", "PRelu"):
            kind = "const"
        p.update(op=k, swap=s.coin(0.3) and k not in ("Pow", "PRelu"), seed=int(s.rng.integers(1 << 30)))
        if k == "Pow":
            p["exp"] = s.choice([2.0, 3.0, 0.5, 1.5, -0.5 if v.lo > 0.2 else 2.0])
            p["pat"] = s.choice(["", "k" if v.rank else ""])
        ins = [x]
        if kind == "value":
            y = _value_partner(s, v)
            if y is None:
                kind = "const"
            else:
                ins.append(y)
        if kind == "input":
            shape = pattern_shape(v.shape, p["pat"], p.get("size", 3))
            dom = "positive" if k == "Div" else "normal"
            ins.append(s.new_input(shape, dom))
        if k == "Div" and len(ins) == 2:
            d = s.vals[ins[1]]
            if not (d.lo > 0.1 or d.hi < -0.1):
                return None
            p["swap"] = False
        if k in ("Sum", "Mean") and s.coin(0.5):
            y = _value_partner(s, v)
            if y is not None:
                ins.append(y)
        return ins, p

    def emit(self, e, ins, p):
        x, k = ins[0], p["op"]
        others = list(ins[1:])
        if not others:
            shape = pattern_shape(x.shape, p["pat"], p.get("size", 3))
            if k == "Pow":
                c = np.full(shape, p["exp"], np.float32)
            elif k == "Div":
                c = e.rng.uniform(0.5, 2.0, shape) * e.rng.choice([-1, 1], shape)
            elif k == "Mul":
                c = e.rng.uniform(0.5, 1.5, shape) * e.rng.choice([-1, 1], shape)
            elif k == "PRelu":
                c = e.rng.uniform(-0.5, 0.5, shape)
            else:
                c = e.rng.uniform(-1.5, 1.5, shape)
            c = c.astype(np.float32)
            cname = e.const(c, "c")
            others = [Val(cname, shape, float(c.min()), float(c.max()), True)]
        y = others[0]
        if k == "Div" and not (y.lo > 0.1 or y.hi < -0.1):
            raise Invalid("divisor not bounded away from 0")
        if k == "Pow" and not (x.lo > 0.05 and x.hi < 10):
            raise Invalid("pow base")
        operands = [x, *others]
        if p.get("swap") and len(operands) == 2 and k != "Div":  # the divisor stays bounded
            operands = operands[::-1]
        shape = operands[0].shape
        for o in operands[1:]:
            shape = broadcast(shape, o.shape)
        if k == "PRelu" and shape != x.shape:
            raise Invalid("prelu slope must broadcast to x")
        _check_size(shape)
        a, b = operands[0], operands[1]
        corners = [a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi]
        exact = False
        if k == "Add":
            lo, hi = a.lo + b.lo, a.hi + b.hi
        elif k == "Sub":
            lo, hi = a.lo - b.hi, a.hi - b.lo
        elif k == "Mul":
            lo, hi = _span(corners)
        elif k == "Div":
            lo, hi = _span([a.lo / b.lo, a.lo / b.hi, a.hi / b.lo, a.hi / b.hi])
        elif k == "Max":
            lo, hi, exact = max(a.lo, b.lo), max(a.hi, b.hi), a.exact and b.exact
        elif k == "Min":
            lo, hi, exact = min(a.lo, b.lo), min(a.hi, b.hi), a.exact and b.exact
        elif k == "Pow":
            lo, hi = _span([a.lo ** b.lo, a.hi ** b.lo, a.lo ** b.hi, a.hi ** b.hi])
        elif k == "PRelu":
            lo, hi = _span([a.lo, a.hi, 0.0] + corners)
        else:  # Sum, Mean
            lo, hi = sum(o.lo for o in operands), sum(o.hi for o in operands)
            if k == "Mean":
                lo, hi = lo / len(operands), hi / len(operands)
        out = e.one(k, [o.name for o in operands])
        return [Val(out, shape, lo, hi, exact)]


@op
class Where(Op):
    name, weight = "where", 1.5

    def propose(self, s):
        a = s.pick(lambda v: v.exact)
        if a is None:
            return None
        x = s.pick()
        _, p = _broadcast_operand(s, s.vals[x], allow_value=False)
        p.update(cmp=s.choice(["Greater", "Less"] + (["GreaterOrEqual"] if s.spec.opset >= 12
                                                     else [])),
                 thr=s.choice([0.0, 0.5, -0.3]), seed=int(s.rng.integers(1 << 30)),
                 swap=s.coin(0.5))
        return [a, x], p

    def emit(self, e, ins, p):
        a, x = ins
        cond = e.one(p["cmp"], [a.name, e.const(np.float32(p["thr"]), "t")])
        shape = pattern_shape(x.shape, p["pat"])
        c = e.rng.uniform(-1, 1, shape).astype(np.float32)
        y = Val(e.const(c, "c"), shape, float(c.min()), float(c.max()))
        branches = [x, y][::-1] if p["swap"] else [x, y]
        out_shape = _check_size(broadcast(broadcast(a.shape, x.shape), y.shape))
        out = e.one("Where", [cond] + [b.name for b in branches])
        return [Val(out, out_shape, min(x.lo, y.lo), max(x.hi, y.hi), x.exact)]


@op
class Cast(Op):
    """A round trip through another type; through int32, integer arithmetic on the way."""

    name, weight = "cast", 1.5

    def propose(self, s):
        x = s.pick()
        v = s.vals[x]
        # float16 and int32 round: only exact values, or a last-bit difference of two correct
        # float32 results could round to neighbouring float16 values
        kinds = ["double"] + (["float16", "int32", "int32"] if v.exact and v.mag < 1e3 else [])
        ops = [[s.choice(["Mul", "Add", "Sub", "Div", "Max", "Min", "Abs", "Neg"]),
                s.choice([-3, -2, 2, 3, 5, 7])] for _ in range(s.choice([0, 1, 2, 3]))]
        return [x], {"to": s.choice(kinds), "int_ops": ops, "per_channel": s.coin(0.3)}

    def emit(self, e, ins, p):
        (x,) = ins
        to = {"float16": TensorProto.FLOAT16, "double": TensorProto.DOUBLE,
              "int32": TensorProto.INT32}[p["to"]]
        if p["to"] != "double" and not (x.exact and x.mag < 1e3):
            raise Invalid("rounding cast of an inexact value")
        cur, lo, hi = x.name, x.lo, x.hi
        mid = e.one("Cast", [cur], to=to)
        lo, hi = math.trunc(lo) - 1, math.trunc(hi) + 1
        if p["to"] == "int32":
            for k, c in p.get("int_ops", []):
                if k in ("Abs", "Neg"):
                    mid = e.one(k, [mid])
                    lo, hi = (0, max(abs(lo), abs(hi))) if k == "Abs" else (-hi, lo * -1)
                    continue
                shape = (x.shape[1],) + (1,) * (x.rank - 2) if p["per_channel"] and \
                    x.rank >= 2 else ()
                cv = np.full(shape, c, np.int32)
                mid = e.one(k, [mid, e.const(cv, "i")])
                if k == "Mul":
                    lo, hi = _span([lo * c, hi * c])
                elif k in ("Add", "Sub"):
                    lo, hi = (lo + c, hi + c) if k == "Add" else (lo - c, hi - c)
                elif k == "Div":  # truncates toward zero
                    lo, hi = _span([lo / c, hi / c])
                    lo, hi = math.floor(lo), math.ceil(hi)
                elif k == "Max":
                    lo, hi = max(lo, c), max(hi, c)
                else:
                    lo, hi = min(lo, c), min(hi, c)
        out = e.one("Cast", [mid], to=TensorProto.FLOAT)
        if p["to"] == "double":
            lo, hi = x.lo, x.hi
        return [Val(out, x.shape, float(lo), float(hi), x.exact)]


@op
class Mod(Op):
    name, weight = "mod", 0.6

    def propose(self, s):
        x = s.pick(lambda v: v.exact)
        if x is None:
            return None
        return [x], {"c": s.choice([0.7, 1.5, -0.6, 2.0]), "per_channel": s.coin(0.3),
                     "seed": int(s.rng.integers(1 << 30))}

    def emit(self, e, ins, p):
        (x,) = ins
        if not x.exact:
            raise Invalid("fmod of an inexact value")
        shape = (x.shape[1],) + (1,) * (x.rank - 2) if p["per_channel"] and x.rank >= 2 else ()
        c = np.full(shape, p["c"], np.float32)
        if shape:
            c = c * e.rng.uniform(0.5, 1.5, shape).astype(np.float32)
        out = e.one("Mod", [x.name, e.const(c, "c")], fmod=1)
        m = float(np.abs(c).max())
        return [Val(out, x.shape, -m, m)]
