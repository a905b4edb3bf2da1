"""The TensorFlow converters: one `ConverterRegistry` (frontends/common) keyed by op type.

A converter is a function named after the TensorFlow op, taking the `TFContext`, the node's
inputs as IR values (positional; `*values` for the variadic ones), then the attributes it reads
as keyword-only parameters under TensorFlow's names. An attribute a node sets to anything but
TensorFlow's default (from its op registry) that the converter does not take is reported; type
attributes (`T`, `Tidx`, ...) are not, since the inputs' dtypes say the same.
"""
from __future__ import annotations

from collections.abc import Callable

from ..common.registry import ConverterRegistry


def _load_converters() -> None:
    from . import control, math, nn, tensor  # noqa: F401  (they register on import)


CONVERTERS = ConverterRegistry("tensorflow", load=_load_converters)


def converter(*ops: str) -> Callable[[Callable], Callable]:
    """Register the decorated function as the converter of each of `ops`."""
    return CONVERTERS.register(*ops)


def supported_ops() -> list[str]:
    return CONVERTERS.ops()
