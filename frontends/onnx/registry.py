"""The ONNX converter table: `{op_type: [(since_version, fn), ...]}`.

A converter is a function named after the ONNX op. It takes a `NodeContext`, then the node's inputs
as IR values (None for an omitted optional input), then the ONNX attributes as keyword-only
parameters under their ONNX names. The driver fills every declared attribute from the node or, when
the node leaves it out, from `onnx.defs.get_schema(op, opset)`; attributes the schema does not have
at that opset arrive as None. An attribute that the node sets to a non-default value but the
converter does not declare is reported as not implemented, so no converter ignores one silently.

`@converter("Softmax", since=13)` registers a version: the driver picks, for the model's opset, the
entry with the largest `since` not above it.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import onnx.defs

DEFAULT_DOMAINS = ("", "ai.onnx")
MIN_OPSET = 7


@dataclass(frozen=True)
class Converter:
    op_type: str
    since: int
    fn: Callable
    # Names of the ONNX attributes the function declares (keyword-only parameters).
    attributes: tuple[str, ...]
    # Number of positional input parameters, and whether it takes `*inputs`.
    num_inputs: int
    variadic: bool


_TABLE: dict[str, list[Converter]] = {}


def converter(op_type: str, *, since: int):
    """Register `fn` as the converter of `op_type` for opsets from `since` on."""

    def deco(fn: Callable) -> Callable:
        params = list(inspect.signature(fn).parameters.values())[1:]  # drop the context
        attrs = tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)
        positional = [p for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
        variadic = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
        entries = _TABLE.setdefault(op_type, [])
        if any(c.since == since for c in entries):
            raise ValueError(f"converter {op_type} since={since} registered twice")
        entries.append(Converter(op_type, since, fn, attrs, len(positional), variadic))
        entries.sort(key=lambda c: c.since)
        return fn

    return deco


def lookup(op_type: str, opset: int, domain: str = "") -> Converter | None:
    """The converter for `op_type` at `opset`; None when Neo has none or the op does not exist."""
    if domain not in DEFAULT_DOMAINS:
        return None
    found = None
    for c in _TABLE.get(op_type, ()):
        if c.since <= opset:
            found = c
    if found is None or schema(op_type, opset) is None:
        return None
    return found


def schema(op_type: str, opset: int) -> onnx.defs.OpSchema | None:
    try:
        return onnx.defs.get_schema(op_type, opset, "")
    except onnx.defs.SchemaError:
        return None


def supported_ops(opset: int | None = None) -> dict[str, list[int]]:
    """`{op_type: [since versions]}` of the ops Neo converts (those valid at `opset` if given)."""
    _load_converters()
    out = {}
    for op, entries in sorted(_TABLE.items()):
        if opset is None or lookup(op, opset) is not None:
            out[op] = [c.since for c in entries]
    return out


def converter_table() -> dict[str, list[tuple[int, Callable]]]:
    """`{op_type: [(since_version, fn), ...]}`, oldest version first."""
    _load_converters()
    return {op: [(c.since, c.fn) for c in entries] for op, entries in sorted(_TABLE.items())}


def _load_converters() -> None:
    from . import attention, indexing, loss, math, nn, quant, resize, rnn, tensor  # noqa: F401  (they register on import)
