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
from onnx import helper

OPSETS = (11, 12, 13, 17, 18, 21)
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
    opset = int(rng.choice(OPSETS, p=[0.12, 0.08, 0.2, 0.3, 0.15, 0.15]))
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


# the op families register themselves in OPS on import (in this order: the weights pick among them)
from . import ops_math, ops_nn, ops_tensor  # noqa: F401
