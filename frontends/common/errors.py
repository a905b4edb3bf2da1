"""What can go wrong while converting one node, in Neo's four kinds, and the collector that
reports every problem of a model at once.

A converter raises one of the `ConversionProblem` subclasses; the driver records it against the
node's op type and origin, skips whatever depends on that node, and goes on, so that one
`UnsupportedModelError` (exit code 4) lists every problem of the model, never one at a time.
"""
from __future__ import annotations

from collections.abc import Iterable

from neo.ir.errors import ConstantInputsNeeded, UnsupportedModelError, UnsupportedOp

MAX_NAMES = 3  # node names shown per problem


class ConversionProblem(Exception):
    """A node Neo cannot convert. `kind` is Neo's error kind; `graph_inputs` names the model
    inputs whose values would make a run-time operand that must be constant known (so a caller
    that has them can specialize the model to them: `neo compile --const-input`)."""

    kind = "OperatorAttributeNotImplemented"

    def __init__(self, reason: str, graph_inputs: Iterable[str] = ()):
        super().__init__(reason)
        self.reason = reason
        self.graph_inputs = frozenset(graph_inputs)


class OperatorNotImplemented(ConversionProblem):
    """The op type itself has no converter (at the model's opset/version)."""

    kind = "OperatorNotImplemented"


class OperatorAttributeNotImplemented(ConversionProblem):
    """A valid attribute value (or a run-time operand where Neo needs a constant) that Neo does
    not implement."""

    kind = "OperatorAttributeNotImplemented"


class OperatorAttributeRequired(ConversionProblem):
    """An attribute the op needs is missing from the node."""

    kind = "OperatorAttributeRequired"


class OperatorAttributeValueNotValid(ConversionProblem):
    """An attribute value the framework itself would reject (out of range, wrong type)."""

    kind = "OperatorAttributeValueNotValid"


class Problems:
    """Collects conversion problems over a whole model; `raise_if_any` reports them together."""

    def __init__(self) -> None:
        # (op, kind, reason) -> origins, in the order first met
        self.items: dict[tuple[str, str, str], list[str]] = {}
        self.sources: dict[tuple[str, str, str], str] = {}  # where the first one is in the source
        self.constant_inputs: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.items)

    def add(self, op: str, origin: str, problem: ConversionProblem,
            source: str | None = None) -> None:
        key = (op, problem.kind, problem.reason)
        self.items.setdefault(key, []).append(origin)
        if source and key not in self.sources:
            self.sources[key] = source
        self.constant_inputs.update(problem.graph_inputs)

    def not_implemented(self, op: str, origin: str, reason: str = "") -> None:
        self.add(op, origin, OperatorNotImplemented(reason))

    def ops(self) -> list[UnsupportedOp]:
        out = []
        for key, origins in self.items.items():
            op, kind, reason = key
            # a missing converter needs no more words than the list it is in
            text = f"{kind}: {reason}" if reason else (
                None if kind == OperatorNotImplemented.kind else kind)
            out.append(UnsupportedOp(op, len(origins), origins[:MAX_NAMES],
                                     self.sources.get(key), reason=text))
        return out

    def raise_if_any(self, *, what: str = "operators", hint: str | None = None) -> None:
        if not self.items:
            return
        ops = self.ops()
        if self.constant_inputs:
            names = ", ".join(sorted(self.constant_inputs))
            raise ConstantInputsNeeded(
                ops, self.constant_inputs, what=what,
                hint=hint or f"inputs that must be constants come from the graph inputs {names}; "
                             f"give their values with --const-input NAME=FILE.npy")
        raise UnsupportedModelError(ops, hint=hint, what=what)
