"""The op registry: for every op, in one place, its type inference, fusion kind and numpy reference.

How an op is lowered lives in codegen's own registry (`codegen/registry.py`), so `ir/` depends on
nothing above it. Passes ask `op_def(name).kind`; they keep no private lists of op names.
"""
from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .types import TensorType


class FusionKind(enum.IntEnum):
    """How an op may be fused (ordered as TVM's OpPatternKind: a lower kind fuses more freely)."""

    ELEMWISE = 0  # out[i] = f(in[i])
    BROADCAST = 1  # out[i] = f(in[broadcast(i)])
    INJECTIVE = 2  # each output element reads a computable set of input elements (transpose, slice)
    REDUCTION = 3  # out[i] = reduce(in[window(i)])
    OUT_ELEMWISE_FUSABLE = 4  # conv, matmul: elementwise epilogues fuse into them
    OPAQUE = 8  # nothing fuses across


InferFn = Callable[[dict, list[TensorType]], list[TensorType]]
RefFn = Callable[..., Any]


@dataclass
class OpDef:
    name: str
    kind: FusionKind
    infer: InferFn
    reference: RefFn
    num_inputs: tuple[int, int] = (1, 1)  # (min, max); max -1 = unbounded
    attrs: dict[str, Any] = field(default_factory=dict)  # attribute defaults

    def __repr__(self) -> str:
        return f"OpDef({self.name}, {self.kind.name})"


_REGISTRY: dict[str, OpDef] = {}


def register_op(name: str, kind: FusionKind, *, inputs: tuple[int, int] | int = 1,
                attrs: dict[str, Any] | None = None):
    """Decorator form: `@register_op("relu", ELEMWISE)` over a class with `infer` and `reference`."""

    def deco(cls):
        n = (inputs, inputs) if isinstance(inputs, int) else inputs
        _REGISTRY[name] = OpDef(name, kind, cls.infer, cls.reference, n, dict(attrs or {}))
        return cls

    return deco


def define_op(name: str, kind: FusionKind, infer: InferFn, reference: RefFn, *,
              inputs: tuple[int, int] | int = 1, attrs: dict[str, Any] | None = None) -> OpDef:
    n = (inputs, inputs) if isinstance(inputs, int) else inputs
    if name in _REGISTRY:
        raise ValueError(f"op {name} registered twice")
    d = OpDef(name, kind, infer, reference, n, dict(attrs or {}))
    _REGISTRY[name] = d
    return d


def infer_types(d: OpDef, attrs: dict, types: list[TensorType]) -> list[TensorType]:
    """The op's output types: its own inference, plus the quantization parameters that ops
    moving or selecting integers carry from their inputs to their outputs (ir/quant.py)."""
    out = d.infer(attrs, types)
    if any(t.quant is not None for t in types):
        from .quant import propagate_quant

        out = propagate_quant(d.name, attrs, types, out)
    return out


def op_def(name: str) -> OpDef:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown IR op {name!r}") from None


def has_op(name: str) -> bool:
    return name in _REGISTRY


def all_ops() -> dict[str, OpDef]:
    return dict(_REGISTRY)


def run_reference(name: str, attrs: dict, inputs: list[np.ndarray]) -> list[np.ndarray]:
    out = op_def(name).reference(attrs, *inputs)
    return list(out) if isinstance(out, (list, tuple)) else [out]
