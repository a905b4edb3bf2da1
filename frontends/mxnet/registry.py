"""The MXNet converters: one `ConverterRegistry` (frontends/common) keyed by the symbol's op name.

A converter is a function named after the MXNet op. It takes an `MxContext`, then the node's
inputs as IR values (None for an omitted optional one), then the op's parameters as keyword-only
arguments under MXNet's names, **with MXNet's defaults as their Python defaults**: a symbol file
writes only the parameters a user set, so the signature is where the defaults live
(`Converter.defaults`). A parameter the node sets that the converter does not take is reported
as not implemented, unless it is in `IGNORED` (it cannot change an inference result).

`@converter("Convolution")` registers; aliases share a converter (`@converter("Concat",
"concat")`).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..common.registry import Converter, ConverterRegistry

# Parameters of training, memory or GPU tuning, which inference on a CPU does not depend on.
IGNORED = ("workspace", "cudnn_tune", "cudnn_off", "momentum", "use_global_stats", "grad_scale",
           "normalization", "out_grad", "use_ignore", "ignore_label", "smooth_alpha",
           "sparse_grad", "forward_stype", "min_calib_range", "max_calib_range", "lr_mult",
           "wd_mult", "ctx", "name", "attr")


def _load_converters() -> None:
    from . import math, nn, rnn, tensor  # noqa: F401  (they register on import)


CONVERTERS = ConverterRegistry("mxnet", load=_load_converters)


def converter(*ops: str, ignore: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Register `fn` as the converter of each of `ops`."""
    return CONVERTERS.register(*ops, ignore=IGNORED + tuple(ignore))


def lookup(op: str) -> Converter | None:
    return CONVERTERS.lookup(op)


def defaults(op: str) -> dict[str, Any]:
    """MXNet's defaults of `op`'s parameters (from its converter's signature)."""
    conv = CONVERTERS.lookup(op)
    return {} if conv is None else conv.defaults


def supported_ops() -> list[str]:
    return CONVERTERS.ops()
