"""Checking a frozen TensorFlow graph for unsupported ops, and the conversion driver."""
from __future__ import annotations

from collections import Counter

import numpy as np

from neo import ir
from neo.ir.errors import ModelLoadError, UnsupportedModelError, UnsupportedOp, UsageError

from ..common.context import make_const, named_output
from ..common.driver import Driver, FrameworkNode, check_supported
from ..common.errors import MAX_NAMES
from .context import TFContext
from .graph import FunctionBody, framework_nodes, op_defaults, split_tensor
from .loader import TFModel, require_tf
from .registry import CONVERTERS

# Ops whose attributes name functions of the graph's library that they run.
FUNCTION_ATTRS = {"PartitionedCall": ("f",), "StatefulPartitionedCall": ("f",),
                  "While": ("cond", "body"), "StatelessWhile": ("cond", "body"),
                  "If": ("then_branch", "else_branch"),
                  "StatelessIf": ("then_branch", "else_branch")}
# TF1 control flow: loops as dataflow cycles, which Neo does not unroll.
TF1_CONTROL_FLOW = frozenset({"Enter", "Exit", "Merge", "Switch", "NextIteration", "LoopCond"})


class Functions:
    """The graph's function library: bodies as FrameworkNodes, for the calls and loops that run
    them inline (`call`), and for checking every op of a model before converting it."""

    def __init__(self, tf, graph_def):
        self.tf = tf
        self.library = {f.signature.name: f for f in graph_def.library.function}
        self.driver: Driver | None = None

    def body(self, name: str, prefix: str) -> FunctionBody:
        if name not in self.library:
            raise ModelLoadError(f"function {name!r} is not in the graph's library")
        return FunctionBody(self.tf, self.library[name], prefix)

    def call(self, name: str, args: list, prefix: str) -> list:
        """Convert function `name` inline on `args`; its outputs."""
        body = self.body(name, prefix)
        if len(args) != len(body.inputs):
            raise ValueError(f"function {name} takes {len(body.inputs)} arguments, got {len(args)}")
        return self.driver.run_subgraph(body.nodes, body.outputs, dict(zip(body.inputs, args)))

    def expand(self, nodes: list[FrameworkNode], depth: int = 0) -> list[FrameworkNode]:
        """`nodes` and, after each node that runs functions, those functions' nodes (once per
        function and call site), for checking; recursion in the library is cut at 20 levels."""
        out = []
        for n in nodes:
            out.append(n)
            for attr in FUNCTION_ATTRS.get(n.op, ()):
                fname = n.attrs.get(attr)
                if isinstance(fname, str) and fname in self.library and depth < 20:
                    out += self.expand(self.body(fname, f"{n.origin}/{attr}/").nodes, depth + 1)
        return out


def _nodes(model: TFModel) -> list[FrameworkNode]:
    tf = require_tf()
    inputs = {split_tensor(i.tensor)[0] for i in model.inputs}
    return framework_nodes(tf, model.graph_def, skip=frozenset(inputs),
                           wanted=frozenset(o.tensor for o in model.outputs))


def _all_nodes(model: TFModel) -> list[FrameworkNode]:
    """Every node of the model, those of the functions it calls included."""
    return Functions(require_tf(), model.graph_def).expand(_nodes(model))


def _hint(ops: set[str]) -> str:
    loops = sorted(ops & TF1_CONTROL_FLOW)
    if loops:
        return (f"{', '.join(loops)} are TF1 control flow (loops as graph cycles), which Neo does "
                "not unroll; save the model with TF2 (tf.saved_model.save) or without the loop "
                "(a Keras RNN with unroll=True)")
    return "`neo inspect` lists the ops of a model"


def unsupported_ops(model: TFModel) -> list[UnsupportedOp]:
    counts: Counter[str] = Counter()
    names: dict[str, list[str]] = {}
    for n in _all_nodes(model):
        if CONVERTERS.lookup(n.op) is None:
            counts[n.op] += 1
            if len(names.setdefault(n.op, [])) < MAX_NAMES:
                names[n.op].append(n.origin)
    return [UnsupportedOp(op, c, names[op]) for op, c in counts.most_common()]


def inspect_model(model: TFModel) -> dict:
    hist = Counter(n.op for n in model.graph_def.node)

    def info(t):
        return {"name": t.name, "tensor": t.tensor, "shape": t.shape, "dtype": t.dtype or "?"}

    details = {"format": model.format.replace("_", " "),
               "layout": "NHWC (--shape gives images as [batch, height, width, channels])"}
    if model.format == "saved_model":
        details.update(signature=model.signature, signatures=", ".join(model.signatures))
    out = {
        "format": model.format,
        "details": details,
        "inputs": [info(t) for t in model.inputs],
        "outputs": [info(t) for t in model.outputs],
        "ops": dict(hist.most_common()),
        "unsupported": [{"op_type": u.op_type, "count": u.count, "nodes": list(u.first_node_names)}
                        for u in unsupported_ops(model)],
    }
    return out


def _input_shape(t, given: dict) -> tuple[int, ...]:
    if t.name in given:
        shape = tuple(int(d) for d in given[t.name])
        if t.shape is not None and len(t.shape) != len(shape):
            raise UsageError(f"input {t.name!r} has rank {len(t.shape)} in the model, but the "
                             f"given shape {list(shape)} has rank {len(shape)}")
        return shape
    if t.shape is None or any(d is None for d in t.shape):
        shown = "unknown rank" if t.shape is None else "[" + ", ".join(
            "?" if d is None else str(d) for d in t.shape) + "]"
        raise UsageError(f"input {t.name!r} has a dynamic shape ({shown}); give its static shape",
                         hint='e.g. --shape \'{"' + t.name + '": [1, 224, 224, 3]}\'')
    return tuple(t.shape)


def convert_model(model: TFModel, input_shapes: dict | None, model_name: str,
                  const_inputs: dict | None = None) -> ir.Graph:
    tf = require_tf()
    nodes = _nodes(model)
    functions = Functions(tf, model.graph_def)
    every = functions.expand(nodes)
    ops = {n.op for n in every}
    check_supported(every, CONVERTERS, hint=_hint(ops))
    g = ir.Graph(name=model_name or model.path.stem or "main")
    given = dict(input_shapes or {})
    const_inputs = dict(const_inputs or {})
    names = [t.name for t in model.inputs]
    unknown = sorted((set(given) | set(const_inputs)) - set(names))
    if unknown:
        raise UsageError(f"input shapes name {', '.join(map(repr, unknown))}, which the model does "
                         f"not have; its inputs: {', '.join(names)}")
    for o in model.outputs:  # output names are kept for the outputs themselves
        if o.name not in names:
            g.unique(o.name)
    driver = Driver(g, CONVERTERS,
                    lambda node: TFContext(g, node.origin, node.origin, node.op, functions),
                    defaults=lambda node: op_defaults(tf, node),
                    model=f"TensorFlow model {model.path.name}")
    functions.driver = driver
    for t in model.inputs:
        try:
            dtype = ir.dtype_name(t.dtype)
        except TypeError as e:
            raise UnsupportedModelError([UnsupportedOp(f"input {t.name}", 1, [], reason=str(e))],
                                        what="input types") from None
        if t.name in const_inputs:
            arr = np.asarray(const_inputs[t.name]).astype(ir.np_dtype(dtype))
            driver.env[t.tensor] = make_const(g, arr, t.name)
        else:
            driver.env[t.tensor] = g.input(t.name, _input_shape(t, given), dtype)
    driver.run(nodes)
    driver.finish(hint=_hint(ops))
    for o in model.outputs:
        if o.tensor not in driver.env:
            raise ModelLoadError(f"output {o.name!r} ({o.tensor}) is not produced by any node")
        g.outputs.append(named_output(g, driver.env[o.tensor], o.name))
    return g

