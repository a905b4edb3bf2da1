"""The conversion driver for frameworks whose models are lists of dataflow nodes (ONNX, TensorFlow
GraphDefs, TFLite subgraphs, MXNet symbols, Keras functional graphs).

A frontend turns its model into `FrameworkNode`s (op, origin, input and output names, attributes
as Python values) and gives the driver its registry and a way to make a context. Then:

1. `check_supported(nodes)` looks every op up first and raises one `UnsupportedModelError`
   naming all the ops without a converter (OperatorNotImplemented), before any work;
2. `Driver.run(nodes)` converts them in order; a node whose converter raises a
   `ConversionProblem` is recorded, the values it would make are marked failed, and the nodes
   that depend on them are skipped (they cannot be judged on missing inputs);
3. `Driver.finish()` raises every recorded problem at once.

A converter is called as `fn(cx, *inputs, **attributes)`: inputs as IR values (None for an omitted
optional input), attributes by the converter's keyword-only parameter names. An attribute the node
sets but the converter does not take is a problem unless it equals the op's default
(`defaults(node)`), so no converter drops one silently.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neo import ir
from neo.ir.errors import ModelLoadError, UnsupportedModelError, UnsupportedOp

from .context import ConversionContext
from .errors import MAX_NAMES, ConversionProblem, OperatorAttributeNotImplemented, Problems
from .registry import Converter, ConverterRegistry


@dataclass
class FrameworkNode:
    op: str  # the registry key
    origin: str  # how messages name the node
    inputs: Sequence[str | None]  # value names; None or "" for an omitted optional input
    outputs: Sequence[str]  # value names; "" for an output the model does not use
    attrs: dict[str, Any] = field(default_factory=dict)
    version: int | None = None  # the op's framework version (opset), for the registry lookup
    raw: Any = None  # the framework's own node object, for converters that need more


class SubgraphFailed(ConversionProblem):
    """A nested graph had problems, already recorded against its own nodes."""


def check_supported(nodes: Iterable[FrameworkNode], registry: ConverterRegistry, *,
                    hint: str | None = None, what: str = "operators") -> None:
    """Raise one UnsupportedModelError listing every op without a converter, with its count and
    the first node names."""
    counts: Counter[str] = Counter()
    names: dict[str, list[str]] = {}
    for n in nodes:
        if registry.lookup(n.op, n.version) is None:
            counts[n.op] += 1
            if len(names.setdefault(n.op, [])) < MAX_NAMES:
                names[n.op].append(n.origin)
    if counts:
        raise UnsupportedModelError([UnsupportedOp(op, c, names[op])
                                     for op, c in counts.most_common()], hint=hint, what=what)


def same_value(a: Any, b: Any) -> bool:
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    except (TypeError, ValueError):  # graphs and other objects
        return a is b


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Driver:
    """Converts framework nodes in order into `g`, collecting the problems of all of them."""

    def __init__(self, g: ir.Graph, registry: ConverterRegistry,
                 make_context: Callable[[FrameworkNode], ConversionContext], *,
                 defaults: Callable[[FrameworkNode], dict[str, Any]] | None = None,
                 model: str = "the model"):
        self.g = g
        self.registry = registry
        self.make_context = make_context
        self.defaults = defaults or (lambda node: {})
        self.model = model  # the model file, for messages
        self.env: dict[str, ir.Value] = {}
        self.failed: set[str] = set()
        self.problems = Problems()

    def run(self, nodes: Iterable[FrameworkNode]) -> None:
        for node in nodes:
            if any(name and name in self.failed for name in node.inputs):
                self.failed.update(o for o in node.outputs if o)
                continue
            try:
                outs = self.convert(node)
            except ConversionProblem as e:
                if not isinstance(e, SubgraphFailed):  # those problems are recorded already
                    self.problems.add(node.op, node.origin, e)
                self.failed.update(o for o in node.outputs if o)
                continue
            except (ir.IRError, ValueError) as e:  # an inconsistent model or wrong input shapes
                raise ModelLoadError(
                    f"{self.model}: cannot convert node {node.origin} ({node.op}): {e}",
                    hint="check that the input shapes match the model") from e
            for name, value in zip(node.outputs, outs):
                if name:
                    self.env[name] = value

    def convert(self, node: FrameworkNode) -> list[ir.Value | None]:
        conv = self.registry.lookup(node.op, node.version)
        assert conv is not None, "check_supported runs first"
        cx = self.make_context(node)
        missing = [n for n in node.inputs if n and n not in self.env]
        if missing:
            raise ValueError(f"input {missing[0]!r} is not produced by any earlier node")
        inputs = [self.env[n] if n else None for n in node.inputs]
        if len(inputs) > conv.num_inputs and not conv.variadic:
            if any(v is not None for v in inputs[conv.num_inputs:]):
                raise OperatorAttributeNotImplemented(
                    f"input #{conv.num_inputs + 1} is not implemented")
            inputs = inputs[:conv.num_inputs]
        result = conv.fn(cx, *inputs, **self.attributes(node, conv))
        outs = [result] if isinstance(result, ir.Value) else list(result)
        for i, name in enumerate(node.outputs):
            if name and (i >= len(outs) or outs[i] is None):
                raise OperatorAttributeNotImplemented(
                    f"output #{i + 1} ({name!r}) is not implemented")
        return outs

    def attributes(self, node: FrameworkNode, conv: Converter) -> dict[str, Any]:
        """The converter's keyword arguments: the node's attributes, else the op's defaults (None
        where neither has one)."""
        defaults = self.defaults(node)
        for name, value in node.attrs.items():
            if name in conv.attributes or name in conv.ignore:
                continue
            if name not in defaults or not same_value(defaults[name], value):
                raise OperatorAttributeNotImplemented(
                    f"attribute {name}={short(value)} is not implemented")
        return {name: node.attrs.get(name, defaults.get(name)) for name in conv.attributes}

    def run_subgraph(self, nodes: Iterable[FrameworkNode], outputs: Sequence[str],
                     values: dict[str, ir.Value] | None = None) -> list[ir.Value]:
        """Convert a nested graph (a taken If branch) inline: its nodes see the enclosing
        values and its own `values` (initializers); its problems join the model's. Returns the
        values of `outputs`; raises SubgraphFailed if one could not be converted."""
        saved_env = self.env
        self.env = {**saved_env, **(values or {})}
        try:
            self.run(nodes)
            if any(o in self.failed for o in outputs):
                raise SubgraphFailed("a node of the nested graph could not be converted")
            missing = [o for o in outputs if o not in self.env]
            if missing:
                raise ValueError(f"nested graph output {missing[0]!r} is not produced")
            return [self.env[o] for o in outputs]
        finally:
            self.env = saved_env

    def finish(self, *, hint: str | None = None) -> None:
        self.problems.raise_if_any(what="operator attributes", hint=hint)
