"""Random valid ONNX graphs, NNSmith-style, biased toward what fusion and kernel choice combine.

A graph is a `GraphSpec`: graph inputs (shapes), then nodes, each an op family of `OPS` with its
input value ids and *shape-relative* parameters (a broadcast pattern, a split factor, offsets from
a dim's end, a per-node weight seed), so that `realize` rebuilds a valid graph after the minimizer
removed nodes or shrank input shapes, or raises `Invalid` when the parameters no longer fit.

Generation grows the graph forward from its inputs. Every value carries an interval [lo, hi]
that bounds it (from the weights and the ops) and whether it is `exact` (a graph input moved
around or compared, never rounded), so that domain-sensitive ops are only applied where they are
defined and well conditioned: log/sqrt/reciprocal/div on values bounded away from zero, exp on
bounded values, floor/round/comparisons only on exact values (a rounding difference between two
correct float32 implementations would flip them).
"""
from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper

OPSETS = (13, 17, 18, 21)
MAX_ELEMS = 1 << 15  # per tensor: keeps the numpy references and the run fast
MAX_MACS = 12_000_000  # per conv / matmul
SPATIAL = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 19, 20, 23, 24, 25, 28, 31,
           32, 33, 36, 40, 47, 64)
CHANNELS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15, 16, 17, 24, 31, 32, 33, 48)
OUT_CHANNELS = (1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 24, 31, 32, 33, 48, 64)
INT64_MAX = 2**63 - 1
# model metadata: why onnxruntime's result may rightly differ from the exact one (no ORT check)
ORT_AMBIGUOUS = "neo_fuzz_onnxruntime_ambiguous"


class Invalid(Exception):
    """The parameters do not fit the input shapes (after shrinking), or the op is too big."""


# -- values and specs ----------------------------------------------------------------------------
@dataclass
class Val:
    """A float32 tensor while building: its ONNX name, shape, bounds, and exactness."""

    name: str
    shape: tuple[int, ...]
    lo: float
    hi: float
    exact: bool = False
    index: bool = False  # an int64 index input (only its Gather reads it)

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def mag(self) -> float:
        return max(abs(self.lo), abs(self.hi))


@dataclass
class InputSpec:
    name: str
    shape: list[int]
    # normal: N(0,1) clipped to 4; positive: U(0.2, 3); index:D: int64 indices in [-D, D)
    domain: str = "normal"
    data: np.ndarray | None = field(default=None, repr=False)  # values saved by a cut

    @property
    def dtype(self) -> str:
        return "int64" if self.domain.startswith("index:") else "float32"


@dataclass
class NodeSpec:
    op: str
    inputs: list[str]
    params: dict
    outputs: list[str]


@dataclass
class GraphSpec:
    seed: int
    opset: int
    inputs: list[InputSpec]
    nodes: list[NodeSpec]
    outputs: list[str]

    def to_json(self) -> str:
        d = asdict(self)
        for i in d["inputs"]:
            i.pop("data")
        return json.dumps(d, indent=1)

    @staticmethod
    def from_json(text: str, data: dict[str, np.ndarray] | None = None) -> GraphSpec:
        d = json.loads(text)
        ins = [InputSpec(**i) for i in d["inputs"]]
        for i in ins:
            if data and i.name in data and list(data[i.name].shape) == list(i.shape):
                i.data = data[i.name]
        return GraphSpec(d["seed"], d["opset"], ins, [NodeSpec(**n) for n in d["nodes"]],
                         d["outputs"])

    def copy(self) -> GraphSpec:
        return GraphSpec(self.seed, self.opset,
                         [InputSpec(i.name, list(i.shape), i.domain, i.data) for i in self.inputs],
                         [NodeSpec(n.op, list(n.inputs), json.loads(json.dumps(n.params)),
                                   list(n.outputs)) for n in self.nodes], list(self.outputs))

    def op_types(self) -> list[str]:
        return [n.op for n in self.nodes]


DOMAINS = {"normal": (-4.0, 4.0), "positive": (0.2, 3.0)}


def input_val(inp: InputSpec) -> Val:
    if inp.dtype == "int64":
        d = int(inp.domain.split(":")[1])
        return Val(inp.name, tuple(inp.shape), -d, d - 1, True, index=True)
    lo, hi = DOMAINS[inp.domain]
    return Val(inp.name, tuple(inp.shape), lo, hi, True)


def input_data(spec: GraphSpec, inp: InputSpec) -> np.ndarray:
    if inp.data is not None and list(inp.data.shape) == list(inp.shape):
        return inp.data.astype(inp.dtype)
    r = np.random.default_rng([spec.seed, zlib.crc32(inp.name.encode()), *inp.shape])
    if inp.dtype == "int64":
        d = int(inp.domain.split(":")[1])
        return np.asarray(r.integers(-d, d, inp.shape), np.int64)
    if inp.domain == "positive":
        return np.asarray(r.uniform(0.2, 3.0, inp.shape), np.float32)
    return np.asarray(np.clip(r.standard_normal(inp.shape), -4, 4), np.float32)


# -- emitting ONNX ---------------------------------------------------------------------------------
class Emitter:
    """Collects the ONNX nodes and initializers of one fuzzer node."""

    def __init__(self, opset: int, tag: str, seed: int):
        self.opset, self.tag = opset, tag
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, np.ndarray] = {}
        self.ambiguous: list[str] = []  # why onnxruntime may rightly differ (see realize)
        self.rng = np.random.default_rng(seed)
        self._k = 0

    def fresh(self, base: str) -> str:
        self._k += 1
        return f"{self.tag}_{base}{self._k}"

    def const(self, arr, base: str = "w") -> str:
        name = self.fresh(base)
        self.inits[name] = np.asarray(arr)
        return name

    def ints(self, vals) -> str:
        return self.const(np.asarray(vals, np.int64), "i")

    def floats(self, vals) -> str:
        return self.const(np.asarray(vals, np.float32), "f")

    def node(self, op: str, ins: list[str], n_out: int = 1, **attrs) -> list[str]:
        outs = [self.fresh(op.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, ins, outs, name=self.fresh(op), **attrs))
        return outs

    def one(self, op: str, ins: list[str], **attrs) -> str:
        return self.node(op, ins, 1, **attrs)[0]


def _check_size(shape) -> tuple[int, ...]:
    shape = tuple(int(d) for d in shape)
    if any(d < 1 for d in shape) or math.prod(shape) > MAX_ELEMS or len(shape) > 6:
        raise Invalid(f"shape {shape}")
    return shape


def broadcast(a, b) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(tuple(a), tuple(b)))
    except ValueError:
        raise Invalid(f"{a} and {b} do not broadcast") from None


def pattern_shape(x: tuple[int, ...], pat: str, size: int = 3) -> tuple[int, ...]:
    """A broadcast operand for x: `pat` aligned right, 'k' keeps x's dim, '1' makes it 1, 'b'
    is `size` where x's dim is 1 (an outer broadcast: the result is larger than x)."""
    if len(pat) > len(x):
        raise Invalid("pattern longer than the rank")
    tail = x[len(x) - len(pat):]
    return tuple(d if p == "k" else size if p == "b" and d == 1 else 1 for d, p in zip(tail, pat))


def _span(vals) -> tuple[float, float]:
    vals = [float(v) for v in vals]
    return min(vals), max(vals)


# -- the op families -----------------------------------------------------------------------------
class GenState:
    """The graph being grown: values by id, most recent last."""

    def __init__(self, rng: np.random.Generator, spec: GraphSpec):
        self.rng, self.spec = rng, spec
        self.vals: dict[str, Val] = {}
        self.order: list[str] = []

    def add(self, vid: str, v: Val) -> None:
        self.vals[vid] = v
        self.order.append(vid)

    def pick(self, pred: Callable[[Val], bool] = lambda v: True, recent: float = 0.6) -> str | None:
        """A float value satisfying pred, recent ones more likely (chains over branches)."""
        ids = [i for i in self.order if not self.vals[i].index and pred(self.vals[i])]
        if not ids:
            return None
        w = np.array([recent ** (len(ids) - 1 - k) + 0.04 for k in range(len(ids))])
        return ids[int(self.rng.choice(len(ids), p=w / w.sum()))]

    def new_input(self, shape, domain: str = "normal") -> str:
        name = f"x{len(self.spec.inputs)}"
        while name in self.vals:
            name += "_"
        self.spec.inputs.append(InputSpec(name, list(shape), domain))
        self.add(name, input_val(self.spec.inputs[-1]))
        return name

    def choice(self, seq, p=None):
        seq = list(seq)
        if p is not None:
            p = np.asarray(p, float)
            p = p / p.sum()
        return seq[int(self.rng.choice(len(seq), p=p))]

    def coin(self, p: float) -> bool:
        return bool(self.rng.random() < p)


Proposal = tuple[list[str], dict]


class Op:
    name = ""
    weight = 1.0

    def propose(self, s: GenState) -> Proposal | None:
        raise NotImplementedError

    def emit(self, e: Emitter, ins: list[Val], p: dict) -> list[Val]:
        raise NotImplementedError


OPS: dict[str, Op] = {}


def op(cls):
    OPS[cls.name] = cls()
    return cls


# Unary ops: numpy function (for bounds), exactness kept, and when the op applies to a value.
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
             lambda v, o: True),
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
        p.update(cmp=s.choice(["Greater", "Less", "GreaterOrEqual"]),
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


# -- convolutions ----------------------------------------------------------------------------
def conv_out(n: int, k: int, s: int, pb: int, pe: int, d: int) -> int:
    return (n + pb + pe - d * (k - 1) - 1) // s + 1


def same_pads(ins, ks, ss, ds, mode):
    begin, end = [], []
    for n, k, s, d in zip(ins, ks, ss, ds):
        out = -(-n // s)
        total = max(0, (out - 1) * s + d * (k - 1) + 1 - n)
        head = total // 2 if mode == "SAME_UPPER" else total - total // 2
        begin.append(head)
        end.append(total - head)
    return begin + end


CONV_FAMILIES = {"dense": 30, "pointwise": 20, "depthwise": 15, "grouped": 10, "winograd": 22,
                 "strided": 10, "dilated": 6, "narrow": 8}


@op
class Conv(Op):
    name, weight = "conv", 16

    def propose(self, s):
        x = s.pick(lambda v: v.rank in (3, 4) and v.shape[1] <= 64, recent=0.5)
        if x is None:
            return None
        v = s.vals[x]
        nsp = v.rank - 2
        C, sp = v.shape[1], v.shape[2:]
        fam = s.choice(list(CONV_FAMILIES), list(CONV_FAMILIES.values()))
        k, st, dl, g, mult = [3] * nsp, [1] * nsp, [1] * nsp, 1, 1
        oc = s.choice(OUT_CHANNELS)
        pre = 0
        if fam == "winograd":
            # Winograd takes 3x3 stride-1 convs with >= 16 channels in and out and >= 16 output
            # tiles of 2x2; a 1x1 conv first raises the channels where there are fewer
            if nsp != 2 or sp[0] * sp[1] < 36:
                fam = "dense"
            else:
                oc = s.choice([16, 17, 24, 32, 33, 48])
                pre = 0 if C >= 16 and s.coin(0.7) else s.choice([16, 17, 24, 32])
        if fam == "narrow":  # fewer output channels than lanes: the spatial direct kernel
            oc = s.choice([1, 2, 3, 4, 5, 7])
            k = [s.choice([3, 3, 5, 2])] * nsp
        if fam == "pointwise":
            k = [1] * nsp
            st = [s.choice([1, 1, 1, 2])] * nsp
        elif fam == "depthwise":
            g, mult = "dw", s.choice([1, 1, 1, 2])
            k = [s.choice([3, 3, 5, 2, 7])] * nsp
            st = [s.choice([1, 1, 2])] * nsp
            dl = [s.choice([1, 1, 1, 2])] * nsp
        elif fam == "grouped":
            divs = [d for d in range(2, C + 1) if C % d == 0]
            if not divs:
                return None
            g = s.choice(divs)
            oc = g * s.choice([1, 2, 3, 4, 8])
            k = [s.choice([1, 3, 3, 5])] * nsp
        elif fam in ("dense", "strided", "dilated"):
            k = [s.choice([2, 3, 3, 5, 7])] * nsp
            if nsp == 2 and s.coin(0.25):
                k = s.choice([[1, 3], [3, 1], [1, 5], [5, 1], [2, 3]])
            if fam == "strided":
                st = [s.choice([2, 2, 3, 4])] * nsp
                if nsp == 2 and s.coin(0.2):
                    st = [1, 2]
            if fam == "dilated":
                dl = [s.choice([2, 3])] * nsp
        if fam == "winograd":
            pads = [1] * (2 * nsp) if s.coin(0.7) else [int(s.rng.integers(0, 3)) for _ in
                                                         range(2 * nsp)]
        elif s.coin(0.6):
            pads = [kk // 2 * dd for kk, dd in zip(k, dl)] * 2
        else:
            pads = [int(s.rng.integers(0, kk)) for kk in k] + [int(s.rng.integers(0, kk)) for kk
                                                               in k]
        auto = s.choice(["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"], [14, 2, 1, 1])
        if auto.startswith("SAME") and any(d > 1 for d in dl):
            auto = "NOTSET"  # onnxruntime has no SAME padding with dilations
        if any(n < kk for n, kk in zip(sp, k)) and not any(pads):
            pads = [kk // 2 for kk in k] * 2
        return [x], {"family": fam, "oc": int(oc), "pre": pre, "k": k, "s": st, "d": dl,
                     "pads": pads,
                     "g": g, "mult": mult, "bias": s.coin(0.7), "auto_pad": auto,
                     "gain": s.choice([1.0, 1.5]), "seed": int(s.rng.integers(1 << 30))}

    def emit(self, e, ins, p):
        (x,) = ins
        if x.rank not in (3, 4):
            raise Invalid("conv rank")
        nsp, C = x.rank - 2, x.shape[1]
        k, st, dl = p["k"], p["s"], p["d"]
        if len(k) != nsp:
            raise Invalid("conv kernel rank")
        if p.get("pre"):  # a 1x1 conv raising the channels first
            C = p["pre"]
            w = (e.rng.standard_normal((C, x.shape[1], *[1] * nsp)) / math.sqrt(x.shape[1]))
            w = w.astype(np.float32)
            bound = float(np.abs(w).reshape(C, -1).sum(1).max()) * x.mag
            x = Val(e.one("Conv", [x.name, e.const(w, "w")], kernel_shape=[1] * nsp),
                    (x.shape[0], C, *x.shape[2:]), -bound, bound)
            _check_size(x.shape)
        if p["g"] == "dw":
            g, oc = C, C * p["mult"]
        else:
            g, oc = int(p["g"]), int(p["oc"])
            if C % g or oc % g:
                raise Invalid("groups")
        pads = list(p["pads"])
        auto = p["auto_pad"]
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = same_pads(x.shape[2:], k, st, dl, auto)
        elif auto == "VALID":
            pads = [0] * (2 * nsp)
        out_sp = [conv_out(x.shape[2 + i], k[i], st[i], pads[i], pads[nsp + i], dl[i])
                  for i in range(nsp)]
        shape = _check_size((x.shape[0], oc, *out_sp))
        fan_in = C // g * math.prod(k)
        if math.prod(shape) * fan_in > MAX_MACS:
            raise Invalid("conv too big")
        w = (e.rng.standard_normal((oc, C // g, *k)) * p["gain"] / math.sqrt(fan_in))
        w = w.astype(np.float32)
        names = [x.name, e.const(w, "w")]
        bound = float(np.abs(w).reshape(oc, -1).sum(1).max()) * x.mag
        if p["bias"]:
            b = (e.rng.standard_normal(oc) * 0.3).astype(np.float32)
            names.append(e.const(b, "b"))
            bound += float(np.abs(b).max())
        attrs = {"kernel_shape": k, "strides": st, "dilations": dl, "group": g}
        if auto == "NOTSET":
            attrs["pads"] = list(p["pads"])
        else:
            attrs["auto_pad"] = auto
        out = e.one("Conv", names, **attrs)
        return [Val(out, shape, -bound, bound)]


@op
class ConvTranspose(Op):
    name, weight = "conv_transpose", 1.5

    def propose(self, s):
        x = s.pick(lambda v: v.rank == 4 and v.shape[1] <= 48)
        if x is None:
            return None
        C = s.vals[x].shape[1]
        dw = s.coin(0.25) and C > 1
        k = s.choice([2, 3, 4])
        st = s.choice([1, 2, 2])
        return [x], {"g": "dw" if dw else 1, "ocg": 1 if dw else s.choice([1, 2, 4, 8, 16]),
                     "k": k, "s": st, "pads": [int(s.rng.integers(0, k)) for _ in range(4)],
                     "op": int(s.rng.integers(0, st)), "bias": s.coin(0.5),
                     "seed": int(s.rng.integers(1 << 30))}

    def emit(self, e, ins, p):
        (x,) = ins
        if x.rank != 4:
            raise Invalid("rank")
        C = x.shape[1]
        g = C if p["g"] == "dw" else 1
        k, st, pads, opad = p["k"], p["s"], p["pads"], p["op"]
        out_sp = [(x.shape[2 + i] - 1) * st - pads[i] - pads[2 + i] + (k - 1) + opad + 1
                  for i in range(2)]
        shape = _check_size((x.shape[0], g * p["ocg"], *out_sp))
        if math.prod(x.shape) * p["ocg"] * k * k > MAX_MACS:
            raise Invalid("too big")
        w = (e.rng.standard_normal((C, p["ocg"], k, k)) / math.sqrt(k * k * C / g / st / st))
        w = w.astype(np.float32)
        names = [x.name, e.const(w, "w")]
        bound = float(np.abs(w).sum(axis=(0, 2, 3)).max()) * x.mag
        if p["bias"]:
            b = (e.rng.standard_normal(g * p["ocg"]) * 0.3).astype(np.float32)
            names.append(e.const(b, "b"))
            bound += float(np.abs(b).max())
        out = e.one("ConvTranspose", names, kernel_shape=[k, k], strides=[st, st], pads=pads,
                    output_padding=[opad, opad], group=g)
        return [Val(out, shape, -bound, bound)]


@op
class Pool(Op):
    name, weight = "pool", 7

    def propose(self, s):
        x = s.pick(lambda v: v.rank in (3, 4))
        if x is None:
            return None
        nsp = s.vals[x].rank - 2
        kind = s.choice(["MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
                         "LpPool"], [10, 7, 2, 1.5, 0.5])
        k = s.choice([[2, 2], [3, 3], [3, 3], [1, 3], [3, 1], [2, 3], [5, 5], [1, 1], [4, 4]])
        k = k[:nsp] if nsp == 1 else k
        if s.coin(0.6):
            st = list(k) if s.coin(0.4) else [s.choice([1, 2])] * nsp
        else:
            st = [s.choice([1, 2, 3])] * nsp
        st = [max(1, t) for t in st]
        pads = [int(s.rng.integers(0, kk)) if s.coin(0.5) else 0 for kk in k] * 2
        if s.coin(0.3):
            pads = [int(s.rng.integers(0, kk)) for kk in k + k]
        dl = [s.choice([1, 2])] * nsp if kind == "MaxPool" and s.coin(0.15) else [1] * nsp
        return [x], {"kind": kind, "k": k, "s": st, "pads": pads, "d": dl,
                     "ceil": int(s.coin(0.25)), "cip": int(s.coin(0.35)),
                     "auto_pad": s.choice(["NOTSET", "SAME_UPPER", "VALID"], [18, 1, 1])}

    def emit(self, e, ins, p):
        (x,) = ins
        kind = p["kind"]
        if x.rank not in (3, 4):
            raise Invalid("rank")
        nsp = x.rank - 2
        if kind.startswith("Global"):
            out = e.one(kind, [x.name])
            return [Val(out, x.shape[:2] + (1,) * nsp, x.lo, x.hi, kind == "GlobalMaxPool"
                        and x.exact)]
        k, st, dl = p["k"], p["s"], p["d"]
        if len(k) != nsp:
            raise Invalid("kernel rank")
        pads = list(p["pads"])
        if any(pp >= kk for pp, kk in zip(pads, k + k)):
            raise Invalid("pads must be smaller than the kernel")
        auto = p["auto_pad"]
        if auto == "SAME_UPPER":
            # onnxruntime's SAME pools need kernel >= stride and ignore dilations in the size
            if any(kk < t for kk, t in zip(k, st)) or any(d > 1 for d in dl):
                raise Invalid("onnxruntime's SAME pools need kernel >= stride")
            pads = same_pads(x.shape[2:], k, st, dl, auto)
            if any(pp >= kk for pp, kk in zip(pads, k + k)):
                raise Invalid("same pads")
        elif auto == "VALID":
            pads = [0] * (2 * nsp)
        out_sp = []
        for i in range(nsp):
            n, span = x.shape[2 + i], x.shape[2 + i] + pads[i] + pads[nsp + i] - dl[i] * (k[i] - 1) - 1
            if span < 0:
                raise Invalid("window larger than input")
            if p["ceil"] and auto == "NOTSET" and (kind != "LpPool" or e.opset >= 18):
                o = -(-span // st[i]) + 1
                if (o - 1) * st[i] >= n + pads[i]:
                    # neo (as PyTorch and the ONNX spec's note) drops a last window that starts
                    # in the end padding; onnxruntime keeps it
                    o -= 1
                    e.ambiguous.append("ceil-mode pool: a window starting in the end padding")
            else:
                o = span // st[i] + 1
            out_sp.append(o)
        shape = _check_size(x.shape[:2] + tuple(out_sp))
        attrs = {"kernel_shape": k, "strides": st}
        if auto == "NOTSET":
            attrs["pads"] = pads
            if p["ceil"] and (kind != "LpPool" or e.opset >= 18):
                attrs["ceil_mode"] = 1
        else:
            attrs["auto_pad"] = auto
        lo, hi = x.lo, x.hi
        if kind == "MaxPool":
            if any(d != 1 for d in dl):
                attrs["dilations"] = dl
        elif kind == "AveragePool":
            if p["cip"]:
                attrs["count_include_pad"] = 1
                lo, hi = min(lo, 0.0), max(hi, 0.0)
        else:  # LpPool p=2
            attrs["p"] = 2
            lo, hi = 0.0, x.mag * math.sqrt(math.prod(k))
        out = e.one(kind, [x.name], **attrs)
        return [Val(out, shape, lo, hi, kind == "MaxPool" and x.exact)]


# -- data movement -----------------------------------------------------------------------------
RESIZE_SCALES = (2.0, 2.0, 0.5, 1.5, 3.0, 0.75, 1.0, 1.25, 0.6, 1.7)


@op
class Resize(Op):
    name, weight = "resize", 6

    def propose(self, s):
        x = s.pick(lambda v: v.rank in (3, 4))
        if x is None:
            return None
        # onnxruntime's cubic resize takes 2-D or 4-D inputs only
        mode = s.choice(["nearest", "linear", "cubic"], [5, 4, 1.5 if s.vals[x].rank == 4 else 0])
        coords = ["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel",
                  "tf_crop_and_resize"]
        cw = [4, 3, 2, 2, 0.5]
        if s.spec.opset >= 19:
            coords.append("half_pixel_symmetric")
            cw.append(1)
        p = {"mode": mode, "coord": s.choice(coords, cw),
             "nearest_mode": s.choice(["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]),
             "cubic_a": s.choice([-0.75, -0.5]), "exclude_outside": int(s.coin(0.25)),
             "by": s.choice(["scales", "sizes"], [6, 4]),
             "scales": [s.choice(RESIZE_SCALES) for _ in range(2)],
             "axes": s.spec.opset >= 18 and s.coin(0.3), "extrapolation": 0.5,
             "roi": [s.choice([0.0, 0.1, -0.1]), s.choice([1.0, 0.8, 1.1])]}
        if p["mode"] == "nearest" and p["coord"] == "asymmetric" and s.coin(0.5):
            p["scales"] = [2.0, 2.0]
        return [x], p

    def emit(self, e, ins, p):
        (x,) = ins
        r = x.rank
        nsp = r - 2
        sc = p["scales"][-nsp:] if nsp == 1 else p["scales"]
        if p["by"] == "sizes":
            sp_sizes = [max(1, round(n * f)) for n, f in zip(x.shape[2:], sc)]
            full = list(x.shape[:2]) + sp_sizes
        else:
            full = list(x.shape[:2]) + [int(np.floor(np.float32(n) * np.float32(f)))
                                        for n, f in zip(x.shape[2:], sc)]
        shape = _check_size(full)
        use_axes = p["axes"] and e.opset >= 18
        attrs = {"mode": p["mode"], "coordinate_transformation_mode": p["coord"]}
        if p["mode"] == "nearest":
            attrs["nearest_mode"] = p["nearest_mode"]
        if p["mode"] == "cubic":
            attrs.update(cubic_coeff_a=p["cubic_a"], exclude_outside=p["exclude_outside"])
        roi = ""
        lo, hi = x.lo, x.hi
        if p["coord"] == "tf_crop_and_resize":
            b, en = p["roi"]
            rv = ([b] * nsp + [en] * nsp if use_axes else
                  [0.0] * 2 + [b] * nsp + [1.0] * 2 + [en] * nsp)
            roi = e.floats(rv)
            attrs["extrapolation_value"] = p["extrapolation"]
            if any(o == n for o, n in zip(shape[2:], x.shape[2:])):
                e.ambiguous.append("tf_crop_and_resize: onnxruntime does not crop an axis of "
                                   "scale 1")
            for i in range(nsp):
                n, o = x.shape[2 + i], shape[2 + i]
                c = resize_coords(n, o, o / n if p["by"] == "sizes" else float(np.float32(sc[i])),
                                  p["coord"], (p["roi"][0], p["roi"][1]))
                if _near(c, np.zeros_like(c)) or _near(c, np.full_like(c, n - 1)):
                    # inside or extrapolated: decided by rounding where the spec is exact
                    e.ambiguous.append("tf_crop_and_resize: a sample on the edge of the input")
                    break
            lo, hi = min(lo, p["extrapolation"]), max(hi, p["extrapolation"])
        if p["mode"] == "cubic":
            m = 1.6 * x.mag
            lo, hi = min(lo, -m), max(hi, m)
        if use_axes:
            attrs["axes"] = list(range(2, r))
        if p["coord"] == "align_corners" and p["by"] == "scales" and any(
                float(np.float32(n) * np.float32(f)) != full[2 + i]
                for i, (n, f) in enumerate(zip(x.shape[2:], sc))):
            # the ONNX reference (and neo) map by the unrounded length scale * n, onnxruntime
            # and PyTorch by the output size floor(scale * n)
            e.ambiguous.append("align_corners resize with a fractional scaled length")
        if p["mode"] == "nearest":
            for i in range(nsp):
                n, o = x.shape[2 + i], shape[2 + i]
                scale = o / n if p["by"] == "sizes" else float(np.float32(sc[i]))
                roi_ax = (p["roi"][0], p["roi"][1]) if p["coord"] == "tf_crop_and_resize" else None
                if nearest_near_boundary(n, o, scale, p["coord"], p["nearest_mode"], roi_ax):
                    # The spec computes the source coordinate exactly; onnxruntime computes it
                    # in float32 and rounds a coordinate this close to the boundary either way.
                    e.ambiguous.append(f"nearest resize, {p['coord']}: a source coordinate "
                                       "on a rounding boundary")
                    break
        if p["by"] == "sizes":
            vals = shape[2:] if use_axes else shape
            ins_ = [x.name, roi, "", e.ints(vals)]
        else:
            vals = list(sc) if use_axes else [1.0, 1.0] + list(sc)
            ins_ = [x.name, roi, e.floats(vals)]
        out = e.one("Resize", ins_, **attrs)
        return [Val(out, shape, lo, hi, p["mode"] == "nearest" and x.exact)]


def resize_coords(n: int, o: int, scale: float, coord: str,
                  roi: tuple[float, float] | None) -> np.ndarray:
    """The source coordinate of each output position, as ONNX Resize defines it (exactly)."""
    x = np.arange(o, dtype=np.float64)
    if coord == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if coord == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if o > 1 else np.zeros(o)
    if coord == "asymmetric":
        return x / scale
    if coord == "align_corners":
        return x * (n - 1) / (scale * n - 1) if scale * n != 1 else np.zeros(o)
    if coord == "half_pixel_symmetric":
        adj = o / (scale * n)
        return n / 2 * (1 - adj) + (x + 0.5) / scale - 0.5
    b, e_ = roi  # tf_crop_and_resize
    return (b * (n - 1) + x * (e_ - b) * (n - 1) / (o - 1) if o > 1
            else np.full(o, 0.5 * (b + e_) * (n - 1)))


def _near(c: np.ndarray, marks: np.ndarray) -> bool:
    return bool((np.abs(c - marks) < 1e-5 * np.maximum(1.0, np.abs(c))).any())


def nearest_near_boundary(n: int, o: int, scale: float, coord: str, mode: str,
                          roi: tuple[float, float] | None) -> bool:
    """Whether a nearest-neighbour source coordinate lies within float32 rounding of where its
    rounding mode flips (an integer for floor/ceil, a half for round)."""
    c = resize_coords(n, o, scale, coord, roi)
    marks = np.round(c) if mode in ("floor", "ceil") else np.floor(c) + 0.5
    return _near(c, marks)


@op
class Pad(Op):
    name, weight = "pad", 5

    def propose(self, s):
        x = s.pick(lambda v: v.rank >= 1)
        v = s.vals[x]
        modes = ["constant", "reflect", "edge"] + (["wrap"] if s.spec.opset >= 19 else [])
        mode = s.choice(modes, [6, 1.5, 1.5, 1][:len(modes)])
        r = v.rank
        axes = list(range(max(0, r - 2), r)) if s.coin(0.75) else [int(s.rng.integers(0, r))]
        amounts = {}
        for a in axes:
            amounts[a] = [int(s.rng.integers(0, 4)), int(s.rng.integers(0, 4))]
            if mode == "constant" and s.coin(0.1):
                amounts[a][int(s.rng.integers(0, 2))] *= -1
        return [x], {"mode": mode, "amounts": {str(a): pp for a, pp in amounts.items()},
                     "value": s.choice([0.0, 0.0, 0.5, -1.0, 1.5]),
                     "axes_input": s.spec.opset >= 18 and s.coin(0.3)}

    def emit(self, e, ins, p):
        (x,) = ins
        r = x.rank
        pads = [0] * (2 * r)
        for a, (b, en) in p["amounts"].items():
            a = int(a)
            if a >= r:
                raise Invalid("axis")
            pads[a], pads[r + a] = b, en
            if p["mode"] == "reflect" and max(b, en) > x.shape[a] - 1:
                raise Invalid("reflect pad larger than the dim")
            if p["mode"] in ("edge", "wrap") and max(b, en) > x.shape[a]:
                raise Invalid("pad larger than the dim")
            if x.shape[a] + min(b, 0) + min(en, 0) < 1:
                raise Invalid("crop")
        if not any(pads):
            raise Invalid("no pad")
        shape = _check_size([x.shape[i] + pads[i] + pads[r + i] for i in range(r)])
        lo, hi = x.lo, x.hi
        ins_ = [x.name]
        if p["axes_input"] and e.opset >= 18:
            axes = sorted(int(a) for a in p["amounts"])
            ins_.append(e.ints([pads[a] for a in axes] + [pads[r + a] for a in axes]))
        else:
            axes = None
            ins_.append(e.ints(pads))
        if p["mode"] == "constant":
            ins_.append(e.const(np.float32(p["value"]), "v"))
            lo, hi = min(lo, p["value"]), max(hi, p["value"])
        elif axes is not None:
            ins_.append("")
        if axes is not None:
            ins_.append(e.ints(axes))
        out = e.one("Pad", ins_, mode=p["mode"])
        return [Val(out, shape, lo, hi, x.exact)]


@op
class Slice(Op):
    name, weight = "slice", 4

    def propose(self, s):
        x = s.pick(lambda v: max(v.shape, default=0) > 1)
        if x is None:
            return None
        v = s.vals[x]
        big = [a for a, d in enumerate(v.shape) if d > 1]
        axes = sorted({s.choice(big) for _ in range(s.choice([1, 1, 2]))})
        specs = []
        for a in axes:
            d = v.shape[a]
            b = int(s.rng.integers(0, max(1, d // 2)))
            en = int(s.rng.integers(0, max(1, d // 3)))
            specs.append({"axis": a, "b": b, "e": en,
                          "step": s.choice([1, 1, 1, 2, 3, -1, -2]),
                          "form": s.choice(["plain", "negative", "overflow"]),
                          "neg_axis": s.coin(0.2)})
        return [x], {"axes": specs}

    def emit(self, e, ins, p):
        (x,) = ins
        starts, ends, axes, steps = [], [], [], []
        shape = list(x.shape)
        for sp in p["axes"]:
            a = sp["axis"]
            if a >= x.rank:
                raise Invalid("axis")
            d = x.shape[a]
            b, en, step = sp["b"], d - sp["e"], sp["step"]
            if b >= en:
                raise Invalid("empty slice")
            if step > 0:
                st, nd = b, en
                if sp["form"] == "negative":
                    st, nd = b - d, en - d if en < d else INT64_MAX
                elif sp["form"] == "overflow" and en == d:
                    nd = INT64_MAX
                n = -(-(en - b) // step)
            else:
                st, nd = en - 1, b - 1
                if sp["form"] == "negative":
                    st = en - 1 - d
                    nd = b - 1 - d if b > 0 else -d - 1
                elif nd < 0:
                    nd = -INT64_MAX
                if sp["form"] == "overflow" and en == d:
                    st = INT64_MAX
                n = -(-(en - b) // -step)
            shape[a] = n
            starts.append(st)
            ends.append(nd)
            axes.append(a - x.rank if sp["neg_axis"] else a)
            steps.append(step)
        shape = _check_size(shape)
        out = e.one("Slice", [x.name, e.ints(starts), e.ints(ends), e.ints(axes), e.ints(steps)])
        return [Val(out, shape, x.lo, x.hi, x.exact)]


@op
class Concat(Op):
    name, weight = "concat", 5

    def propose(self, s):
        x = s.pick()
        v = s.vals[x]
        if v.rank == 0:
            return None
        axis = s.choice(range(v.rank), [3 if a == 1 else 1 for a in range(v.rank)])
        ins, parts = [x], []
        for _ in range(s.choice([1, 1, 2])):
            kind = s.choice(["value", "same", "input", "const"], [4, 1, 2, 2])
            if kind == "value":
                y = s.pick(lambda u: u.rank == v.rank and all(
                    a == b for i, (a, b) in enumerate(zip(u.shape, v.shape)) if i != axis)
                    and u.name != v.name, recent=0.8)
                if y is None:
                    kind = "const"
                else:
                    ins.append(y)
                    parts.append({"kind": "value"})
                    continue
            if kind == "same":
                ins.append(x)
                parts.append({"kind": "value"})
                continue
            size = s.choice([1, 2, 3, 4, 5, 7, 8, 16, 17])
            if kind == "input":
                shape = list(v.shape)
                shape[axis] = size
                ins.append(s.new_input(shape))
                parts.append({"kind": "value"})
            else:
                parts.append({"kind": "const", "size": size})
        return ins, {"axis": axis, "parts": parts, "neg": s.coin(0.2),
                     "seed": int(s.rng.integers(1 << 30))}

    def emit(self, e, ins, p):
        x, rest = ins[0], list(ins[1:])
        a = p["axis"]
        if a >= x.rank:
            raise Invalid("axis")
        operands = [x]
        for part in p["parts"]:
            if part["kind"] == "value":
                if not rest:
                    raise Invalid("operands")
                operands.append(rest.pop(0))
            else:
                shape = list(x.shape)
                shape[a] = part["size"]
                c = e.rng.uniform(-1, 1, shape).astype(np.float32)
                operands.append(Val(e.const(c, "c"), tuple(shape), -1.0, 1.0, True))
        for o in operands:
            if o.rank != x.rank or any(u != w for i, (u, w) in enumerate(zip(o.shape, x.shape))
                                       if i != a):
                raise Invalid("concat shapes")
        shape = list(x.shape)
        shape[a] = sum(o.shape[a] for o in operands)
        shape = _check_size(shape)
        out = e.one("Concat", [o.name for o in operands], axis=a - x.rank if p["neg"] else a)
        return [Val(out, shape, min(o.lo for o in operands), max(o.hi for o in operands),
                    all(o.exact for o in operands))]


@op
class Transpose(Op):
    name, weight = "transpose", 3

    def propose(self, s):
        x = s.pick(lambda v: v.rank >= 2)
        if x is None:
            return None
        r = s.vals[x].rank
        common = {4: [[0, 2, 3, 1], [0, 3, 1, 2], [0, 1, 3, 2], [1, 0, 2, 3]], 3: [[0, 2, 1]],
                  2: [[1, 0]]}.get(r, [])
        perm = s.choice(common) if common and s.coin(0.6) else list(s.rng.permutation(r))
        if perm == list(range(r)):
            perm = perm[::-1]
        return [x], {"perm": [int(q) for q in perm]}

    def emit(self, e, ins, p):
        (x,) = ins
        perm = p["perm"]
        if sorted(perm) != list(range(x.rank)):
            raise Invalid("perm")
        out = e.one("Transpose", [x.name], perm=perm)
        return [Val(out, tuple(x.shape[q] for q in perm), x.lo, x.hi, x.exact)]


@op
class Reshape(Op):
    name, weight = "reshape", 4

    def propose(self, s):
        x = s.pick(lambda v: v.rank >= 1)
        v = s.vals[x]
        forms = ["merge", "split", "flatten", "unsqueeze", "to2d"]
        if 1 in v.shape:
            forms.append("squeeze")
        form = s.choice(forms)
        return [x], {"form": form, "axis": int(s.rng.integers(0, v.rank + 1)),
                     "factor": s.choice([2, 3, 4, 8]), "zero": s.coin(0.3)}

    def emit(self, e, ins, p):
        (x,) = ins
        r, a, form = x.rank, p["axis"], p["form"]
        sh = list(x.shape)
        if form == "merge":
            if r < 2:
                raise Invalid("rank")
            a = min(a, r - 2)
            shape = sh[:a] + [sh[a] * sh[a + 1]] + sh[a + 2:]
            spec = list(shape)
            spec[a] = -1
            if p["zero"] and a > 0:
                spec[0] = 0
            out = e.one("Reshape", [x.name, e.ints(spec)])
        elif form == "split":
            a = min(a, r - 1)
            f = p["factor"]
            if sh[a] % f or sh[a] == f:
                raise Invalid("split factor")
            shape = sh[:a] + [f, sh[a] // f] + sh[a + 1:]
            spec = list(shape)
            if p["zero"]:
                spec[a + 1] = -1
            out = e.one("Reshape", [x.name, e.ints(spec)])
        elif form == "flatten":
            a = min(a, r)
            shape = [math.prod(sh[:a]), math.prod(sh[a:])]
            out = e.one("Flatten", [x.name], axis=a)
        elif form == "to2d":
            shape = [sh[0], math.prod(sh[1:])] if r >= 2 else [1, sh[0]]
            out = e.one("Reshape", [x.name, e.ints([shape[0], -1] if r >= 2 else [1, -1])])
        elif form == "unsqueeze":
            a = min(a, r)
            shape = sh[:a] + [1] + sh[a:]
            out = e.one("Unsqueeze", [x.name, e.ints([a])])
        else:  # squeeze
            ones = [i for i, d in enumerate(sh) if d == 1]
            if not ones:
                raise Invalid("no 1-dim")
            q = ones[a % len(ones)]
            shape = sh[:q] + sh[q + 1:]
            out = e.one("Squeeze", [x.name, e.ints([q])])
        shape = _check_size(shape)
        return [Val(out, shape, x.lo, x.hi, x.exact)]


@op
class MatMul(Op):
    name, weight = "matmul", 5

    def propose(self, s):
        x = s.pick(lambda v: v.rank >= 1)
        v = s.vals[x]
        K = v.shape[-1]
        kind = s.choice(["const", "value", "input"], [6, 2, 2]) if v.rank >= 2 else "const"
        p = {"kind": kind, "n": s.choice(OUT_CHANNELS), "seed": int(s.rng.integers(1 << 30)),
             "batch": s.coin(0.2), "vec": v.rank >= 2 and kind == "const" and s.coin(0.12)}
        ins = [x]
        if kind == "value":
            y = s.pick(lambda u: u.rank >= 2 and u.shape[-2] == K and u.name != v.name
                       and _bcast_ok(u.shape[:-2], v.shape[:-2]))
            if y is None:
                p["kind"] = "const"
            else:
                ins.append(y)
        elif kind == "input":
            shape = (list(v.shape[:-2]) if p["batch"] else []) + [K, p["n"]]
            ins.append(s.new_input(shape))
        return ins, p

    def emit(self, e, ins, p):
        x = ins[0]
        if x.rank < 1:
            raise Invalid("rank")
        K = x.shape[-1]
        if x.rank == 1 or p.get("vec"):  # a vector operand: [K] @ [K, N] or [.., M, K] @ [K]
            if len(ins) > 1:
                raise Invalid("vector matmul with a value")
            wshape = [K] if p.get("vec") else [K, p["n"]]
            w = (e.rng.standard_normal(wshape) / math.sqrt(K)).astype(np.float32)
            shape = _check_size(x.shape[:-1] if p.get("vec") else (p["n"],)) if x.rank > 1 or \
                not p.get("vec") else None
            if shape is None:
                raise Invalid("scalar result")
            out = e.one("MatMul", [x.name, e.const(w, "w")])
            bound = float(np.abs(w).sum(0).max()) * x.mag
            return [Val(out, shape, -bound, bound)]
        if len(ins) > 1:
            y = ins[1]
            if y.rank < 2 or y.shape[-2] != K:
                raise Invalid("inner dims")
            bound = K * x.mag * y.mag
        else:
            lead = list(x.shape[:-2]) if p["batch"] else []
            w = (e.rng.standard_normal(lead + [K, p["n"]]) / math.sqrt(K)).astype(np.float32)
            y = Val(e.const(w, "w"), w.shape, float(w.min()), float(w.max()))
            bound = float(np.abs(w).sum(-2).max()) * x.mag
        batch = broadcast(x.shape[:-2], y.shape[:-2])
        shape = _check_size(batch + (x.shape[-2], y.shape[-1]))
        if math.prod(shape) * K > MAX_MACS:
            raise Invalid("too big")
        out = e.one("MatMul", [x.name, y.name])
        return [Val(out, shape, -bound, bound)]


def _bcast_ok(a, b) -> bool:
    try:
        np.broadcast_shapes(tuple(a), tuple(b))
        return True
    except ValueError:
        return False


@op
class Gemm(Op):
    name, weight = "gemm", 2.5

    def propose(self, s):
        x = s.pick(lambda v: v.rank == 2)
        if x is None:
            return None
        return [x], {"n": s.choice(OUT_CHANNELS), "transA": int(s.coin(0.2)),
                     "transB": int(s.coin(0.5)), "alpha": s.choice([1.0, 1.0, 0.5, 2.0]),
                     "beta": s.choice([1.0, 1.0, 0.5]),
                     "c": s.choice(["none", "n", "1n", "mn", "scalar"], [2, 4, 1, 1, 1]),
                     "seed": int(s.rng.integers(1 << 30))}

    def emit(self, e, ins, p):
        (x,) = ins
        if x.rank != 2:
            raise Invalid("rank")
        M, K = x.shape[::-1] if p["transA"] else x.shape
        N = p["n"]
        w = (e.rng.standard_normal((K, N)) / math.sqrt(K)).astype(np.float32)
        bound = float(np.abs(w).sum(0).max()) * x.mag * abs(p["alpha"])
        names = [x.name, e.const(np.ascontiguousarray(w.T) if p["transB"] else w, "w")]
        cshape = {"none": None, "n": (N,), "1n": (1, N), "mn": (M, N), "scalar": ()}[p["c"]]
        if cshape is not None:
            c = (e.rng.standard_normal(cshape) * 0.5).astype(np.float32)
            names.append(e.const(c, "c"))
            bound += abs(p["beta"]) * float(np.abs(c).max())
        shape = _check_size((M, N))
        out = e.one("Gemm", names, alpha=p["alpha"], beta=p["beta"], transA=p["transA"],
                    transB=p["transB"])
        return [Val(out, shape, -bound, bound)]


REDUCE_OPS = {"ReduceSum": 3, "ReduceMean": 4, "ReduceMax": 3, "ReduceMin": 1.5, "ReduceL2": 1,
              "ReduceL1": 0.5, "ReduceSumSquare": 0.5, "ReduceLogSumExp": 0.7, "ReduceProd": 0.5,
              "ReduceLogSum": 0.3}


@op
class Reduce(Op):
    name, weight = "reduce", 4.5

    def propose(self, s):
        x = s.pick(lambda v: v.rank >= 1)
        v = s.vals[x]
        k = s.choice(list(REDUCE_OPS), list(REDUCE_OPS.values()))
        r = v.rank
        if s.coin(0.5) and r >= 3:
            axes = list(range(2, r))
        else:
            axes = sorted({int(s.rng.integers(0, r)) for _ in range(s.choice([1, 1, 2]))})
        return [x], {"op": k, "axes": axes, "keepdims": int(s.coin(0.5)),
                     "all": s.coin(0.08), "neg": s.coin(0.2)}

    def emit(self, e, ins, p):
        (x,) = ins
        k = p["op"]
        axes = list(range(x.rank)) if p["all"] else p["axes"]
        if any(a >= x.rank for a in axes):
            raise Invalid("axis")
        n = math.prod(x.shape[a] for a in axes)
        m = x.mag
        lo, hi, exact = -n * m, n * m, False
        if k == "ReduceMean":
            lo, hi = x.lo, x.hi
        elif k in ("ReduceMax", "ReduceMin"):
            lo, hi, exact = x.lo, x.hi, x.exact
        elif k == "ReduceL2":
            lo, hi = 0.0, math.sqrt(n) * m
        elif k == "ReduceL1":
            lo, hi = 0.0, n * m
        elif k == "ReduceSumSquare":
            lo, hi = 0.0, n * m * m
        elif k == "ReduceLogSumExp":
            if m > 30:
                raise Invalid("logsumexp range")
            lo, hi = x.lo, x.hi + math.log(n)
        elif k == "ReduceProd":
            if n > 6 or m > 2:
                raise Invalid("prod range")
            lo, hi = -(m ** n), m ** n
        elif k == "ReduceLogSum":
            if x.lo <= 1e-3:
                raise Invalid("log domain")
            lo, hi = math.log(n * x.lo), math.log(n * x.hi)
        keep = p["keepdims"]
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape)) if keep else tuple(
            d for i, d in enumerate(x.shape) if i not in axes)
        written = [a - x.rank if p["neg"] else a for a in axes]
        axes_input = e.opset >= 18 or (k == "ReduceSum" and e.opset >= 13)
        if p["all"]:
            out = e.one(k, [x.name], keepdims=keep)
        elif axes_input:
            out = e.one(k, [x.name, e.ints(written)], keepdims=keep)
        else:
            out = e.one(k, [x.name], axes=written, keepdims=keep)
        return [Val(out, shape, lo, hi, exact)]


@op
class Softmax(Op):
    name, weight = "softmax", 3

    def propose(self, s):
        x = s.pick(lambda v: v.rank >= 1)
        r = s.vals[x].rank
        return [x], {"kind": s.choice(["Softmax", "LogSoftmax"], [3, 1]),
                     "axis": s.choice([-1, -1, r - 1, 1 if r > 1 else 0, 0])}

    def emit(self, e, ins, p):
        (x,) = ins
        a = p["axis"]
        if not -x.rank <= a < x.rank:
            raise Invalid("axis")
        n = x.shape[a]
        out = e.one(p["kind"], [x.name], axis=a)
        if p["kind"] == "Softmax":
            return [Val(out, x.shape, 0.0, 1.0)]
        return [Val(out, x.shape, -(x.hi - x.lo) - math.log(n), 0.0)]


@op
class Norm(Op):
    name, weight = "norm", 3

    def propose(self, s):
        x = s.pick(lambda v: v.rank >= 2)
        if x is None:
            return None
        kinds = ["BatchNormalization", "InstanceNormalization"]
        if s.spec.opset >= 17:
            kinds.append("LayerNormalization")
        return [x], {"kind": s.choice(kinds), "axis": s.choice([-1, -1, -2, 1]),
                     "eps": s.choice([1e-5, 1e-3]), "seed": int(s.rng.integers(1 << 30))}

    def emit(self, e, ins, p):
        (x,) = ins
        k, r = p["kind"], e.rng
        if k == "BatchNormalization":
            C = x.shape[1]
            scale = r.uniform(0.5, 1.5, C).astype(np.float32)
            bias = (r.standard_normal(C) * 0.3).astype(np.float32)
            mean = (r.standard_normal(C) * 0.3).astype(np.float32)
            var = r.uniform(0.5, 2.0, C).astype(np.float32)
            names = [x.name] + [e.const(a, n) for a, n in ((scale, "s"), (bias, "b"),
                                                           (mean, "m"), (var, "v"))]
            out = e.one(k, names, epsilon=p["eps"])
            b = (x.mag + 0.3 * 4) / math.sqrt(0.5) * 1.5 + 1.2
        elif k == "InstanceNormalization":
            if x.rank < 3:
                raise Invalid("rank")
            C = x.shape[1]
            scale = r.uniform(0.5, 1.5, C).astype(np.float32)
            bias = (r.standard_normal(C) * 0.3).astype(np.float32)
            out = e.one(k, [x.name, e.const(scale, "s"), e.const(bias, "b")], epsilon=p["eps"])
            b = 1.5 * math.sqrt(math.prod(x.shape[2:])) + 1.2
        else:
            a = p["axis"]
            if not -x.rank <= a < x.rank:
                raise Invalid("axis")
            norm_shape = x.shape[a:]
            scale = r.uniform(0.5, 1.5, norm_shape).astype(np.float32)
            bias = (r.standard_normal(norm_shape) * 0.3).astype(np.float32)
            out = e.one(k, [x.name, e.const(scale, "s"), e.const(bias, "b")], axis=a,
                        epsilon=p["eps"])
            b = 1.5 * math.sqrt(math.prod(norm_shape)) + 1.2
        return [Val(out, x.shape, -b, b)]


@op
class Expand(Op):
    name, weight = "expand", 1.5

    def propose(self, s):
        x = s.pick(lambda v: 1 in v.shape or v.rank < 4)
        if x is None:
            return None
        return [x], {"sizes": [s.choice([2, 3, 4, 5, 8]) for _ in range(6)],
                     "lead": s.choice([0, 0, 1]), "tile": s.coin(0.3)}

    def emit(self, e, ins, p):
        (x,) = ins
        if p["tile"]:
            reps = [p["sizes"][i] if i % 2 == 0 and p["sizes"][i] < 4 else 1
                    for i in range(x.rank)]
            shape = _check_size([d * t for d, t in zip(x.shape, reps)])
            out = e.one("Tile", [x.name, e.ints(reps)])
            return [Val(out, shape, x.lo, x.hi, x.exact)]
        target = [p["sizes"][i] if d == 1 else d for i, d in enumerate(x.shape)]
        target = [1] * p["lead"] + target if p["lead"] else target
        if p["lead"]:
            target[0] = 2
        shape = _check_size(broadcast(x.shape, target))
        if shape == x.shape:
            raise Invalid("no expansion")
        out = e.one("Expand", [x.name, e.ints(target)])
        return [Val(out, shape, x.lo, x.hi, x.exact)]


@op
class Gather(Op):
    name, weight = "gather", 1.5

    def propose(self, s):
        x = s.pick(lambda v: v.rank >= 1)
        v = s.vals[x]
        a = int(s.rng.integers(0, v.rank))
        p = {"axis": a, "n": s.choice([1, 2, 3, 5, 8]), "scalar": s.coin(0.15),
             "seed": int(s.rng.integers(1 << 30))}
        if s.coin(0.3):  # indices known only at run time, negative ones too
            shape = [] if p["scalar"] else [p["n"]] if s.coin(0.7) else [2, p["n"]]
            return [x, s.new_input(shape, f"index:{v.shape[a]}")], p
        return [x], p

    def emit(self, e, ins, p):
        x = ins[0]
        a = p["axis"]
        if a >= x.rank:
            raise Invalid("axis")
        d = x.shape[a]
        if len(ins) == 2:
            ind = ins[1]
            if not ind.index or x.shape[a] < -ind.lo:
                raise Invalid("indices out of range")
            shape = _check_size(x.shape[:a] + ind.shape + x.shape[a + 1:])
            out = e.one("Gather", [x.name, ind.name], axis=a)
            return [Val(out, shape, x.lo, x.hi, x.exact)]
        if p["scalar"]:
            idx = np.int64(e.rng.integers(-d, d))
            ishape: tuple = ()
        else:
            idx = e.rng.integers(-d, d, p["n"]).astype(np.int64)
            ishape = (p["n"],)
        shape = _check_size(x.shape[:a] + ishape + x.shape[a + 1:]) if x.rank > 1 or ishape \
            else ()
        if shape == () or (x.rank == 1 and p["scalar"]):
            raise Invalid("scalar result")
        out = e.one("Gather", [x.name, e.const(idx, "ind")], axis=a)
        return [Val(out, shape, x.lo, x.hi, x.exact)]


@op
class Split(Op):
    name, weight = "split", 1.5

    def propose(self, s):
        x = s.pick(lambda v: max(v.shape, default=0) >= 2)
        if x is None:
            return None
        v = s.vals[x]
        axes = [a for a, d in enumerate(v.shape) if d >= 2]
        return [x], {"axis": s.choice(axes), "parts": s.choice([2, 2, 3]),
                     "equal": s.coin(0.4), "cut": float(s.rng.uniform(0.2, 0.8))}

    def emit(self, e, ins, p):
        (x,) = ins
        a, n = p["axis"], p["parts"]
        if a >= x.rank:
            raise Invalid("axis")
        d = x.shape[a]
        if d < n:
            raise Invalid("too few")
        if p["equal"] and e.opset >= 18:
            size = -(-d // n)
            sizes = [size] * (d // size) + ([d % size] if d % size else [])
            if len(sizes) != n:
                raise Invalid("num_outputs split")
            outs = e.node("Split", [x.name], n, axis=a, num_outputs=n)
        else:
            first = max(1, min(d - (n - 1), round(d * p["cut"])))
            rest = d - first
            sizes = [first] + ([rest] if n == 2 else [rest // 2 or 1, rest - (rest // 2 or 1)])
            if any(z < 1 for z in sizes):
                raise Invalid("split sizes")
            outs = e.node("Split", [x.name, e.ints(sizes)], n, axis=a)
        vals = []
        for o, z in zip(outs, sizes):
            shape = list(x.shape)
            shape[a] = z
            vals.append(Val(o, tuple(shape), x.lo, x.hi, x.exact))
        return vals


@op
class DepthSpace(Op):
    name, weight = "depth_space", 1

    def propose(self, s):
        x = s.pick(lambda v: v.rank == 4)
        if x is None:
            return None
        return [x], {"kind": s.choice(["DepthToSpace", "SpaceToDepth"]),
                     "mode": s.choice(["DCR", "CRD"]), "b": 2}

    def emit(self, e, ins, p):
        (x,) = ins
        if x.rank != 4:
            raise Invalid("rank")
        n, c, h, w = x.shape
        b = p["b"]
        if p["kind"] == "DepthToSpace":
            if c % (b * b):
                raise Invalid("channels")
            shape = (n, c // (b * b), h * b, w * b)
            out = e.one("DepthToSpace", [x.name], blocksize=b, mode=p["mode"])
        else:
            if h % b or w % b:
                raise Invalid("spatial")
            shape = (n, c * b * b, h // b, w // b)
            out = e.one("SpaceToDepth", [x.name], blocksize=b)
        return [Val(out, _check_size(shape), x.lo, x.hi, x.exact)]


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


# -- indexing, scans, normalizations of their own -------------------------------------------------
@op
class CumSum(Op):
    name, weight = "cumsum", 1.2

    def propose(self, s):
        x = s.pick(lambda v: v.rank >= 1)
        r = s.vals[x].rank
        return [x], {"axis": int(s.rng.integers(-r, r)), "exclusive": int(s.coin(0.3)),
                     "reverse": int(s.coin(0.3)), "scalar_axis": s.coin(0.5)}

    def emit(self, e, ins, p):
        (x,) = ins
        a = p["axis"]
        if not -x.rank <= a < x.rank:
            raise Invalid("axis")
        n = x.shape[a]
        axis = e.const(np.int64(a) if p["scalar_axis"] else np.array([a], np.int64), "ax")
        out = e.one("CumSum", [x.name, axis], exclusive=p["exclusive"], reverse=p["reverse"])
        return [Val(out, x.shape, -n * x.mag, n * x.mag)]


@op
class Trilu(Op):
    name, weight = "trilu", 0.8

    def propose(self, s):
        x = s.pick(lambda v: v.rank >= 2)
        if x is None or s.spec.opset < 14:  # Trilu is opset 14
            return None
        return [x], {"upper": int(s.coin(0.5)), "k": s.choice([None, 0, 1, -1, 2, -3])}

    def emit(self, e, ins, p):
        (x,) = ins
        if x.rank < 2:
            raise Invalid("rank")
        names = [x.name] + ([] if p["k"] is None else [e.const(np.int64(p["k"]), "k")])
        out = e.one("Trilu", names, upper=p["upper"])
        return [Val(out, x.shape, min(x.lo, 0.0), max(x.hi, 0.0), x.exact)]


@op
class GatherElements(Op):
    name, weight = "gather_elements", 1

    def propose(self, s):
        x = s.pick(lambda v: v.rank >= 1)
        r = s.vals[x].rank
        return [x], {"axis": int(s.rng.integers(0, r)), "len": s.choice([1, 2, 3, 5, 9]),
                     "seed": int(s.rng.integers(1 << 30))}

    def emit(self, e, ins, p):
        (x,) = ins
        a = p["axis"]
        if a >= x.rank:
            raise Invalid("axis")
        shape = list(x.shape)
        shape[a] = p["len"]
        shape = _check_size(shape)
        d = x.shape[a]
        idx = e.rng.integers(-d, d, shape).astype(np.int64)
        out = e.one("GatherElements", [x.name, e.const(idx, "ind")], axis=a)
        return [Val(out, shape, x.lo, x.hi, x.exact)]


@op
class ArgExtreme(Op):
    """ArgMax/ArgMin of an exact value (ties are exact), cast back to float."""

    name, weight = "arg", 1

    def propose(self, s):
        x = s.pick(lambda v: v.rank >= 1 and v.exact)
        if x is None:
            return None
        r = s.vals[x].rank
        return [x], {"op": s.choice(["ArgMax", "ArgMin"]), "axis": int(s.rng.integers(-r, r)),
                     "keepdims": int(s.coin(0.5)), "last": int(s.coin(0.3))}

    def emit(self, e, ins, p):
        (x,) = ins
        a = p["axis"]
        if not x.exact or not -x.rank <= a < x.rank:
            raise Invalid("axis or inexact input")
        aa = a % x.rank
        shape = tuple(1 if i == aa else d for i, d in enumerate(x.shape)) if p["keepdims"] else \
            tuple(d for i, d in enumerate(x.shape) if i != aa)
        attrs = {"axis": a, "keepdims": p["keepdims"]}
        if p["last"]:
            attrs["select_last_index"] = 1
        idx = e.one(p["op"], [x.name], **attrs)
        out = e.one("Cast", [idx], to=TensorProto.FLOAT)
        return [Val(out, shape, 0.0, float(x.shape[aa] - 1), True)]


@op
class TopK(Op):
    name, weight = "topk", 1

    def propose(self, s):
        x = s.pick(lambda v: v.rank >= 1 and max(v.shape, default=0) >= 2)
        if x is None:
            return None
        v = s.vals[x]
        axes = [a for a, d in enumerate(v.shape) if d >= 2]
        return [x], {"axis": s.choice(axes), "k": s.choice([1, 2, 3, 5]),
                     "largest": int(s.coin(0.7)), "neg": s.coin(0.3)}

    def emit(self, e, ins, p):
        (x,) = ins
        a = p["axis"]
        if a >= x.rank or x.shape[a] < p["k"]:
            raise Invalid("k")
        shape = list(x.shape)
        shape[a] = p["k"]
        # the values are continuous in the input (the indices are not, and stay unused)
        vals, _ = e.node("TopK", [x.name, e.const(np.array([p["k"]], np.int64), "k")], 2,
                         axis=a - x.rank if p["neg"] else a, largest=p["largest"])
        return [Val(vals, _check_size(shape), x.lo, x.hi, x.exact)]


@op
class Hardmax(Op):
    name, weight = "hardmax", 0.5

    def propose(self, s):
        x = s.pick(lambda v: v.rank >= 1 and v.exact)
        if x is None:
            return None
        return [x], {"axis": s.choice([-1, 0, 1])}

    def emit(self, e, ins, p):
        (x,) = ins
        if not x.exact or not -x.rank <= p["axis"] < x.rank:
            raise Invalid("axis or inexact input")
        out = e.one("Hardmax", [x.name], axis=p["axis"])
        return [Val(out, x.shape, 0.0, 1.0, True)]


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


@op
class ChannelNorm(Op):
    """LRN, LpNormalization, MeanVarianceNormalization."""

    name, weight = "channel_norm", 1.2

    def propose(self, s):
        x = s.pick(lambda v: v.rank == 4)
        if x is None:
            return None
        return [x], {"kind": s.choice(["LRN", "LpNormalization", "MeanVarianceNormalization"]),
                     "size": s.choice([1, 3, 5]), "p": s.choice([1, 2]),
                     "axis": s.choice([1, -1, 2]), "axes": s.choice([[0, 2, 3], [2, 3], [1]])}

    def emit(self, e, ins, p):
        (x,) = ins
        k = p["kind"]
        if x.rank != 4:
            raise Invalid("rank")
        if k == "LRN":
            out = e.one(k, [x.name], size=p["size"], alpha=1e-3, beta=0.75, bias=1.0)
            return [Val(out, x.shape, x.lo, x.hi)]
        if k == "LpNormalization":
            out = e.one(k, [x.name], axis=p["axis"], p=p["p"])
            return [Val(out, x.shape, -1.0, 1.0)]
        out = e.one(k, [x.name], axes=p["axes"])
        # onnxruntime divides by sqrt(var) without the spec's epsilon: NaN on a constant row
        e.ambiguous.append("MeanVarianceNormalization: onnxruntime has no epsilon")
        b = math.sqrt(math.prod(x.shape[a] for a in p["axes"])) + 1
        return [Val(out, x.shape, -b, b)]


# -- motifs: what real models fuse, as one node each -----------------------------------------------
def _conv_w(e: Emitter, oc: int, c: int, k: int, groups: int = 1) -> str:
    w = e.rng.standard_normal((oc, c // groups, k, k)) / math.sqrt(c // groups * k * k)
    return e.const(w.astype(np.float32), "w")


@op
class Motif(Op):
    """A residual block (conv + bias + add + relu), a feature-pyramid merge (nearest upsample x2
    + add, then a 3x3 conv), a squeeze-and-excitation gate, an inception-style concat + pool, or
    a depthwise-separable pair."""

    name, weight = "motif", 6

    def propose(self, s):
        x = s.pick(lambda v: v.rank == 4 and v.shape[1] <= 48 and min(v.shape[2:]) >= 2)
        if x is None:
            return None
        kind = s.choice(["residual", "fpn", "se", "concat_pool", "separable"])
        return [x], {"kind": kind, "act": s.choice(["Relu", "Clip", "Sigmoid", "HardSwish",
                                                     "LeakyRelu"]),
                     "oc": s.choice([8, 16, 17, 24, 32]), "stride": s.choice([1, 1, 2]),
                     "seed": int(s.rng.integers(1 << 30))}

    def emit(self, e, ins, p):
        (x,) = ins
        if x.rank != 4:
            raise Invalid("rank")
        n, c, h, w = x.shape
        k = p["kind"]

        def act(t):
            if p["act"] == "Clip":
                return e.one("Clip", [t, e.const(np.float32(0), "lo"), e.const(np.float32(6), "hi")])
            if p["act"] == "HardSwish" and e.opset < 14:
                return e.one("Relu", [t])
            return e.one(p["act"], [t])

        def bias(oc):
            return e.const((e.rng.standard_normal(oc) * 0.3).astype(np.float32), "b")

        if k == "residual":  # conv3x3 + bias + x + act: the conv epilogue takes the add
            y = e.one("Conv", [x.name, _conv_w(e, c, c, 3), bias(c)], kernel_shape=[3, 3],
                      pads=[1, 1, 1, 1])
            out, shape = act(e.one("Add", [y, x.name])), x.shape
        elif k == "fpn":  # nearest x2 + add of a finer map, then a 3x3 conv (strided or not)
            if 4 * n * c * h * w > MAX_ELEMS:
                raise Invalid("too big")
            fine = e.const(e.rng.standard_normal((1, c, 2 * h, 2 * w)).astype(np.float32), "f")
            up = e.one("Resize", [x.name, "", e.floats([1, 1, 2, 2])], mode="nearest",
                       coordinate_transformation_mode="asymmetric", nearest_mode="floor")
            s_ = p["stride"]
            out = e.one("Conv", [e.one("Add", [up, fine]), _conv_w(e, p["oc"], c, 3),
                                 bias(p["oc"])], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                        strides=[s_, s_])
            shape = (n, p["oc"], (2 * h - 1) // s_ + 1, (2 * w - 1) // s_ + 1)
        elif k == "se":  # x * sigmoid(conv1x1(relu(conv1x1(gap(x)))))
            r = max(1, c // 4)
            g = e.one("GlobalAveragePool", [x.name])
            g = e.one("Relu", [e.one("Conv", [g, _conv_w(e, r, c, 1), bias(r)], kernel_shape=[1, 1])])
            g = e.one("Sigmoid", [e.one("Conv", [g, _conv_w(e, c, r, 1), bias(c)],
                                        kernel_shape=[1, 1])])
            out, shape = e.one("Mul", [x.name, g]), x.shape
        elif k == "concat_pool":  # two branches concatenated on channels, then a max pool
            a = act(e.one("Conv", [x.name, _conv_w(e, p["oc"], c, 1), bias(p["oc"])],
                          kernel_shape=[1, 1]))
            b = e.one("Conv", [x.name, _conv_w(e, 8, c, 3), bias(8)], kernel_shape=[3, 3],
                      pads=[1, 1, 1, 1])
            cat = e.one("Concat", [a, b, x.name], axis=1)
            out = e.one("MaxPool", [cat], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
            shape = (n, p["oc"] + 8 + c, (h - 1) // 2 + 1, (w - 1) // 2 + 1)
        else:  # depthwise 3x3 (+act) then pointwise 1x1
            s_ = p["stride"]
            d = act(e.one("Conv", [x.name, _conv_w(e, c, c, 3, c), bias(c)], kernel_shape=[3, 3],
                          pads=[1, 1, 1, 1], strides=[s_, s_], group=c))
            out = e.one("Conv", [d, _conv_w(e, p["oc"], c, 1), bias(p["oc"])],
                        kernel_shape=[1, 1])
            shape = (n, p["oc"], (h - 1) // s_ + 1, (w - 1) // s_ + 1)
        shape = _check_size(shape)
        if math.prod(shape) * 9 * max(c, p["oc"]) > MAX_MACS:
            raise Invalid("too big")
        b = 8 * x.mag + 10
        return [Val(out, shape, -b, b)]


# -- building the graph ------------------------------------------------------------------------
@dataclass
class Realized:
    model: onnx.ModelProto
    feeds: dict[str, np.ndarray]
    vals: dict[str, Val]


def realize(spec: GraphSpec) -> Realized:
    """The ONNX model and input data of `spec`; `Invalid` if its parameters do not fit."""
    from onnx_helpers import make_model

    vals: dict[str, Val] = {}
    for inp in spec.inputs:
        _check_size(inp.shape)
        vals[inp.name] = input_val(inp)
    nodes, inits, ambiguous = [], {}, []
    for k, n in enumerate(spec.nodes):
        try:
            ins = [vals[i] for i in n.inputs]
        except KeyError as e:
            raise Invalid(f"node {k}: unknown input {e}") from None
        e = Emitter(spec.opset, f"n{k}", n.params.get("seed", k))
        outs = OPS[n.op].emit(e, ins, n.params)
        if len(outs) != len(n.outputs):
            raise Invalid(f"node {k}: {len(outs)} outputs, spec has {len(n.outputs)}")
        rename = {o.name: vid for o, vid in zip(outs, n.outputs)}
        for nd in e.nodes:
            for i, o in enumerate(nd.output):
                nd.output[i] = rename.get(o, o)
            for i, o in enumerate(nd.input):
                nd.input[i] = rename.get(o, o)
        for o, vid in zip(outs, n.outputs):
            _check_size(o.shape)
            o.name = vid
            vals[vid] = o
        nodes += e.nodes
        inits.update(e.inits)
        ambiguous += e.ambiguous
    used = {i for n in nodes for i in n.input} | set(spec.outputs)
    inputs = [(i.name, np.dtype(i.dtype), list(i.shape)) for i in spec.inputs if i.name in used]
    if not spec.outputs or any(o not in vals for o in spec.outputs):
        raise Invalid("outputs")
    outputs = [(o, np.float32, list(vals[o].shape)) for o in spec.outputs]
    model = make_model(nodes, inputs, outputs, inits, opset=spec.opset, name=f"fuzz{spec.seed}")
    if ambiguous:
        helper.set_model_props(model, {ORT_AMBIGUOUS: "; ".join(sorted(set(ambiguous)))})
    feeds = {i.name: input_data(spec, i) for i in spec.inputs if i.name in used}
    return Realized(model, feeds, vals)


def prune(spec: GraphSpec) -> GraphSpec:
    """Drop nodes nothing reads (dead code) and unused inputs; outputs stay."""
    live = set(spec.outputs)
    keep = []
    for n in reversed(spec.nodes):
        if any(o in live for o in n.outputs):
            keep.append(n)
            live.update(n.inputs)
    spec.nodes = keep[::-1]
    spec.inputs = [i for i in spec.inputs if i.name in live]
    return spec


OP_WEIGHTS = {name: o.weight for name, o in OPS.items()}


def generate(seed: int, min_nodes: int = 2, max_nodes: int = 30,
             accept: Callable[[GraphSpec], bool] | None = None, attempts: int = 40) -> GraphSpec:
    """A random valid graph of min_nodes..max_nodes fuzzer nodes, fully determined by `seed`.

    `accept` (the oracle's check that every value is finite, bounded and the outputs are
    informative) can refuse a graph; then the next attempt of the same seed is tried.
    """
    last = None
    for attempt in range(attempts):
        rng = np.random.default_rng([seed, attempt])
        spec = _grow(rng, seed, min_nodes, max_nodes)
        if spec is None:
            continue
        last = spec
        if accept is None or accept(spec):
            return spec
    if last is None:
        raise RuntimeError(f"seed {seed}: no graph could be generated")
    raise RuntimeError(f"seed {seed}: no generated graph was accepted")


def _initial_shape(s: GenState) -> list[int]:
    r = s.choice([4, 3, 2, 1, 5], [14, 3, 3, 0.5, 0.3])
    n = s.choice([1, 1, 1, 1, 2, 3])
    if r == 4:
        c = s.choice(CHANNELS)
        h = s.choice(SPATIAL)
        w = h if s.coin(0.5) else s.choice(SPATIAL)
        shape = [n, c, h, w]
    elif r == 3:
        shape = [n, s.choice(CHANNELS), s.choice(SPATIAL + (48, 64))]
    elif r == 2:
        shape = [s.choice([1, 2, 3, 4, 5, 7, 8, 16, 17, 31, 33]), s.choice(CHANNELS + (64,))]
    elif r == 1:
        shape = [s.choice(SPATIAL + (64, 100))]
    else:
        shape = [1, s.choice([1, 2, 3]), s.choice([2, 4, 5]), s.choice(SPATIAL[:10]),
                 s.choice(SPATIAL[:10])]
    while math.prod(shape) > MAX_ELEMS // 2:
        i = int(np.argmax(shape))
        shape[i] = max(1, shape[i] // 2)
    return shape


def _grow(rng, seed: int, min_nodes: int, max_nodes: int) -> GraphSpec | None:
    opset = int(rng.choice(OPSETS, p=[0.25, 0.35, 0.2, 0.2]))
    spec = GraphSpec(seed, opset, [], [], [])
    s = GenState(rng, spec)
    for _ in range(s.choice([1, 2, 3], [6, 3, 1])):
        s.new_input(_initial_shape(s), s.choice(["normal", "positive"], [9, 1]))
    n_nodes = min_nodes + int((max_nodes - min_nodes + 1) * rng.random() ** 1.6)
    names = list(OPS)
    weights = np.array([OPS[k].weight for k in names])
    tries = 0
    while len(spec.nodes) < n_nodes and tries < 20 * n_nodes + 50:
        tries += 1
        opname = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        n_inputs = len(spec.inputs)
        try:
            prop = OPS[opname].propose(s)
        except Invalid:
            prop = None
        if prop is None:
            _drop_new_inputs(s, n_inputs)
            continue
        ins, params = prop
        k = len(spec.nodes)
        e = Emitter(opset, f"n{k}", params.get("seed", k))
        try:
            outs = OPS[opname].emit(e, [s.vals[i] for i in ins], params)
            for o in outs:
                _check_size(o.shape)
        except Invalid:
            _drop_new_inputs(s, n_inputs)
            continue
        ids = [f"v{k}"] if len(outs) == 1 else [f"v{k}_{j}" for j in range(len(outs))]
        spec.nodes.append(NodeSpec(opname, list(ins), params, ids))
        for vid, o in zip(ids, outs):
            s.add(vid, o)
    if len(spec.nodes) < min_nodes:
        return None
    read = {i for n in spec.nodes for i in n.inputs}
    leaves = [v for n in spec.nodes for v in n.outputs if v not in read]
    outs = leaves[-5:]
    middle = [v for n in spec.nodes[:-1] for v in n.outputs if v not in outs]
    if middle and rng.random() < 0.35:
        outs.insert(0, middle[int(rng.integers(len(middle)))])
    spec.outputs = outs
    return prune(spec)


def _drop_new_inputs(s: GenState, keep: int) -> None:
    for inp in s.spec.inputs[keep:]:
        s.vals.pop(inp.name, None)
        s.order.remove(inp.name)
    del s.spec.inputs[keep:]
