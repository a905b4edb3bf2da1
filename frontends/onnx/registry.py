"""The ONNX converters: one `ConverterRegistry` (frontends/common) keyed by op type, versioned by
opset.

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

from collections.abc import Callable

import onnx.defs

from ..common.registry import Converter, ConverterRegistry

DEFAULT_DOMAINS = ("", "ai.onnx")
# onnxruntime's contrib ops that quantization tools emit (QLinearAdd, QGemm, ...): registered as
# "com.microsoft.QLinearAdd" with since=1; their attribute defaults are the converters' own
CONTRIB_DOMAINS = ("com.microsoft",)
MIN_OPSET = 7


def _load_converters() -> None:
    from . import (  # noqa: F401  (they register on import)
        attention,
        control,
        indexing,
        loss,
        math,
        nn,
        quant,
        resize,
        rnn,
        tensor,
    )


CONVERTERS = ConverterRegistry("onnx", load=_load_converters)


def converter(op_type: str, *, since: int) -> Callable[[Callable], Callable]:
    """Register `fn` as the converter of `op_type` for opsets from `since` on."""
    return CONVERTERS.register(op_type, since=since)


def lookup(op_type: str, opset: int, domain: str = "") -> Converter | None:
    """The converter for `op_type` at `opset`; None when Neo has none or the op does not exist."""
    if domain in CONTRIB_DOMAINS:
        return CONVERTERS.lookup(f"{domain}.{op_type}", opset)
    if domain not in DEFAULT_DOMAINS:
        return None
    found = CONVERTERS.lookup(op_type, opset)
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
    return {op: CONVERTERS.versions(op) for op in CONVERTERS.ops()
            if opset is None or lookup(op, opset) is not None}


def converter_table() -> dict[str, list[tuple[int, Callable]]]:
    """`{op_type: [(since_version, fn), ...]}`, oldest version first."""
    return {op: [(c.since, c.fn) for c in entries] for op, entries in CONVERTERS.table().items()}
