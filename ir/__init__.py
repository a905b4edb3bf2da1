"""The shared graph IR: typed values and nodes, the op registry, a verifier, a printer, an interpreter."""
from __future__ import annotations

from . import ops_elementwise, ops_ml, ops_nn, ops_quant, ops_tensor  # noqa: F401  (registers the ops)
from .graph import Graph, IRError, Node, Value
from .registry import FusionKind, OpDef, all_ops, has_op, op_def, run_reference
from .types import DTYPES, QuantParams, TensorType, dtype_name, itemsize, np_dtype

__all__ = [
           "DTYPES",
           "FusionKind",
           "Graph",
           "IRError",
           "Node",
           "OpDef",
           "QuantParams",
           "TensorType",
           "Value",
           "all_ops",
           "dtype_name",
           "has_op",
           "itemsize",
           "np_dtype",
           "op_def",
           "run_reference",
]
