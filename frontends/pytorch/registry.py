"""The PyTorch converter table: `{op: Converter}`.

A converter is a function named after the aten op. It takes a `NodeContext`, then the op's schema
arguments as parameters under their schema names (`def max_pool2d(cx, self, kernel_size, stride,
padding, dilation, ceil_mode)`). Tensors arrive as IR values, everything else as Python values.
A schema argument the converter does not take must keep its default, or be listed in `ignore=`
(arguments that cannot change the result of CPU inference, such as `cudnn_enabled`); otherwise the
node is reported as not implemented, so no converter drops an argument silently. Ops without a
schema (`prim::ListConstruct`) take their inputs positionally.

`@converter("aten::add")` covers every overload of `aten::add` whose arguments it takes, and the
in-place form `aten::add_`; `@converter("aten::add.int")` names one overload.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Converter:
    op: str
    fn: Callable
    params: tuple[str, ...]  # parameter names after the context
    variadic: bool  # takes `*inputs` (ops without a schema)
    ignore: frozenset[str]
    required: frozenset[str]  # parameters without a default


_TABLE: dict[str, Converter] = {}


def converter(*ops: str, ignore: tuple[str, ...] = ()):
    """Register `fn` as the converter of each of `ops` (`"aten::conv2d"`, `"aten::add.int"`)."""

    def deco(fn: Callable) -> Callable:
        params = list(inspect.signature(fn).parameters.values())[1:]  # drop the context
        names = tuple(p.name for p in params
                      if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        variadic = any(p.kind is p.VAR_POSITIONAL for p in params)
        required = frozenset(p.name for p in params if p.name in names and p.default is p.empty)
        for op in ops:
            if op in _TABLE:
                raise ValueError(f"converter {op} registered twice")
            _TABLE[op] = Converter(op, fn, names, variadic, frozenset(ignore), required)
        return fn

    return deco


def functional_name(kind: str) -> str:
    """`aten::relu_` -> `aten::relu`: the op an in-place op computes."""
    if kind.endswith("_") and not kind.endswith("__"):
        return kind[:-1]
    return kind


def lookup(kind: str, overload: str = "") -> Converter | None:
    _load_converters()
    for name in (kind, functional_name(kind)):
        if overload and f"{name}.{overload}" in _TABLE:
            return _TABLE[f"{name}.{overload}"]
        if name in _TABLE:
            return _TABLE[name]
    return None


def supported_ops() -> list[str]:
    """The ops Neo converts (in-place forms `op_` are covered by `op`)."""
    _load_converters()
    return sorted(_TABLE)


def _load_converters() -> None:
    from . import attention, math, nn, prim, rnn, tensor  # noqa: F401  (they register on import)
