"""The TFLite converters: one `ConverterRegistry` (frontends/common) keyed by builtin operator
name (`CONV_2D`) or, for custom ops, custom code, versioned by TFLite op version.

A converter is a function named after the operator. It takes a `TfliteContext`, then the
operator's input tensors as IR values (None for an omitted optional input, index -1), then the
fields of its options table as keyword-only parameters under the schema's names (`stride_w`,
`fused_activation_function`); enum fields arrive by name ("SAME", "RELU6"). A field the model
sets to anything but the schema default that the converter does not take is reported, so none is
dropped silently.
"""
from __future__ import annotations

from collections.abc import Callable

from ..common.registry import ConverterRegistry


def _load_converters() -> None:
    from . import math, nn, rnn, tensor  # noqa: F401  (they register on import)


CONVERTERS = ConverterRegistry("tflite", load=_load_converters)


def converter(*ops: str, since: int = 1, until: int | None = None) -> Callable[[Callable], Callable]:
    """Register the decorated function as the converter of each of `ops` (TFLite op versions
    `since`..`until`)."""
    return CONVERTERS.register(*ops, since=since, until=until)


def supported_ops() -> list[str]:
    return CONVERTERS.ops()
