"""The PyTorch converters: one `ConverterRegistry` (frontends/common) keyed by aten op name.

A converter is a function named after the aten op. It takes a `NodeContext`, then the op's schema
arguments as parameters under their schema names (`def max_pool2d(cx, self, kernel_size, stride,
padding, dilation, ceil_mode)`). Tensors arrive as IR values, everything else as Python values.
A schema argument the converter does not take must keep its default, or be listed in `ignore=`
(arguments that cannot change the result of CPU inference, such as `cudnn_enable`); otherwise the
node is reported as not implemented, so no converter drops an argument silently. Ops without a
schema (`prim::ListConstruct`) take their inputs positionally.

`@converter("aten::add")` covers every overload of `aten::add` whose arguments it takes, and the
in-place form `aten::add_`; `@converter("aten::add.int")` names one overload.
"""
from __future__ import annotations

from collections.abc import Callable

from ..common.registry import Converter, ConverterRegistry


def _load_converters() -> None:
    from . import attention, math, nn, prim, rnn, tensor  # noqa: F401  (they register on import)


CONVERTERS = ConverterRegistry("pytorch", load=_load_converters)


def converter(*ops: str, ignore: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Register `fn` as the converter of each of `ops` (`"aten::conv2d"`, `"aten::add.int"`)."""
    return CONVERTERS.register(*ops, ignore=ignore)


def functional_name(kind: str) -> str:
    """`aten::relu_` -> `aten::relu`: the op an in-place op computes."""
    if kind.endswith("_") and not kind.endswith("__"):
        return kind[:-1]
    return kind


def lookup(kind: str, overload: str = "") -> Converter | None:
    for name in (kind, functional_name(kind)):
        if overload:
            found = CONVERTERS.lookup(f"{name}.{overload}")
            if found is not None:
                return found
        found = CONVERTERS.lookup(name)
        if found is not None:
            return found
    return None


def supported_ops() -> list[str]:
    """The ops Neo converts (in-place forms `op_` are covered by `op`)."""
    return CONVERTERS.ops()
