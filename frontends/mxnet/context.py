"""What an MXNet converter sees: `MxContext`, the kit's context plus MXNet's conventions.

MXNet 1.x writes an unknown dimension as 0 and leaves it to shape inference, which runs both ways
through the graph: Gluon's recurrent layers start from `_zeros(shape=(layers, 0, hidden))`, whose
batch comes from the data the RNN op reads. Such a value is built here with size 1 in place of
each unknown dim (so elementwise ops broadcast it correctly) and remembered as *deferred*; a
converter that knows the full shape it needs (the RNN op's states) calls `cx.resolve`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from neo import ir
from neo.ir import Graph, Value

from ..common.context import ConversionContext, normalize_axis


@dataclass(frozen=True)
class Deferred:
    """A constant of unknown dims (None) filled with one value."""

    shape: tuple[int | None, ...]
    fill: float


def as_tuple(value: Any) -> tuple:
    """MXNet writes a one-element tuple as its element ("-1") and an empty one as "()"."""
    if value is None:
        return ()
    if isinstance(value, (tuple, list)):
        return tuple(value)
    return (value,)


class MxContext(ConversionContext):
    def __init__(self, g: Graph, name: str, origin: str, op_type: str,
                 deferred: dict[int, Deferred]):
        super().__init__(g, name, origin, op_type)
        self.deferred = deferred

    def defer(self, shape: Sequence[int], fill: float, dtype: str) -> Value:
        """`fill` in `shape`, whose 0 dims are unknown (see the module docstring)."""
        known = tuple(int(d) if d else 1 for d in shape)
        v = self.const(np.full(known, fill, ir.np_dtype(dtype)))
        if any(d == 0 for d in shape):
            self.deferred[id(v)] = Deferred(tuple(int(d) if d else None for d in shape), fill)
        return v

    def resolve(self, v: Value, shape: Sequence[int], what: str) -> Value:
        """`v` at the full `shape` a consumer needs: a deferred value gets its unknown dims."""
        shape = tuple(int(d) for d in shape)
        d = self.deferred.get(id(v))
        if d is not None:
            if len(d.shape) != len(shape) or any(a is not None and a != b
                                                 for a, b in zip(d.shape, shape)):
                raise ValueError(f"{what} has the shape {list(d.shape)}, but {list(shape)} is "
                                 f"needed")
            return self.const(np.full(shape, d.fill, ir.np_dtype(v.dtype)))
        if v.shape != shape:
            raise ValueError(f"{what} has the shape {list(v.shape)}, but {list(shape)} is needed")
        return v

    def axis(self, axis: int, rank: int) -> int:
        return normalize_axis(int(axis), rank)
