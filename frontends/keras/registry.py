"""The Keras converters: one `ConverterRegistry` (frontends/common) keyed by layer class name.

A converter is a function named after the Keras layer class. It takes a `LayerContext`, then the
call's tensor arguments as positional parameters under Keras's call-argument names (`inputs`;
`query, value, key, attention_mask` for MultiHeadAttention; `*inputs` for merge layers), then the
layer's config entries as keyword-only parameters under their config names, with Keras's
defaults. A config entry the converter does not take is reported as not implemented (entries that
cannot change inference results, such as initializers, regularizers and constraints, are dropped
before that by `importer.layer_attributes`), so no converter ignores one silently.

Keys: layer classes (`Conv2D`), Keras 3 operations recorded in functional models
(`keras.ops.Add`), and Keras 2 `TFOpLambda` functions (`tf.math.add`, `tf.__operators__.getitem`).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable

from ..common.registry import Converter, ConverterRegistry


def _load_converters() -> None:
    from . import activations, attention, nn, ops, rnn, tensor  # noqa: F401  (they register)


CONVERTERS = ConverterRegistry("keras", load=_load_converters)


def converter(*keys: str, ignore: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Register `fn` as the converter of each of `keys` (layer class names)."""
    return CONVERTERS.register(*keys, ignore=ignore)


def lookup(key: str, major: int | None = None) -> Converter | None:
    return CONVERTERS.lookup(key, major)


def defaults(conv: Converter) -> dict:
    """The keyword-only parameters' defaults: Keras's defaults for config entries a file leaves
    out (older versions write fewer of them)."""
    params = inspect.signature(conv.fn).parameters
    return {n: p.default for n, p in params.items()
            if p.kind is p.KEYWORD_ONLY and p.default is not p.empty}


def supported_layers() -> list[str]:
    return CONVERTERS.ops()
