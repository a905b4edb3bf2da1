"""Which IR ops codegen can lower, and how: the one lookup that passes and codegen share.

Two explicit tables, each filled only by the module that defines its entries:
- `te_ops.COMPUTES`: op -> tensor-expression compute (the generic kernel path, and how fusion
  inlines producers and epilogues);
- `lower.KERNELS`: op -> a dedicated kernel builder (Winograd transforms, plane kernels).
Conv and matmul anchors are lowered by `lower.lower_node` itself (GEMM / direct / channel /
depthwise kernels) and also have computes, for the paths those kernels do not take.
"""
from __future__ import annotations

from collections.abc import Callable

from .lower import KERNELS
from .te_ops import COMPUTES


def compute_of(op: str) -> Callable | None:
    return COMPUTES.get(op)


def kernel_of(op: str) -> Callable | None:
    return KERNELS.get(op)


def has_lowering(op: str) -> bool:
    """Whether a fused node holding `op` can be turned into a kernel."""
    return op in COMPUTES or op in KERNELS
