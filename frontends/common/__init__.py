"""The frontend kit: what every frontend is built from (docs/ARCHITECTURE.md, "How to add a
frontend").

- `registry.ConverterRegistry`: converters by op name and framework version range;
- `context.ConversionContext`: what a converter builds the IR with (constant folding, helpers,
  errors of Neo's four kinds);
- `driver`: check every op before converting and raise once; convert dataflow node lists;
- `errors`: `OperatorNotImplemented`, `OperatorAttributeNotImplemented`,
  `OperatorAttributeRequired`, `OperatorAttributeValueNotValid`, and the `Problems` collector;
- `decompose`: normalizations, attention and recurrent layers, written once for all frontends.
"""
from __future__ import annotations

from .context import ConversionContext, make_const, normalize_axes, normalize_axis
from .driver import Driver, FrameworkNode, check_supported
from .errors import (
    ConversionProblem,
    OperatorAttributeNotImplemented,
    OperatorAttributeRequired,
    OperatorAttributeValueNotValid,
    OperatorNotImplemented,
    Problems,
)
from .registry import Converter, ConverterRegistry

__all__ = [
    "ConversionContext", "ConversionProblem", "Converter", "ConverterRegistry", "Driver",
    "FrameworkNode", "OperatorAttributeNotImplemented", "OperatorAttributeRequired",
    "OperatorAttributeValueNotValid", "OperatorNotImplemented", "Problems", "check_supported",
    "make_const", "normalize_axes", "normalize_axis",
]
