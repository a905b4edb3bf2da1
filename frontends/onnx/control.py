"""Control flow: an `If` whose condition is known at compile time is inlined.

Exporters emit `If` for choices that depend only on configuration: a sample rate, a flag, a
shape. Once that input is a constant (an initializer, or `neo compile --const-input`), the
condition folds and the taken branch is converted in place; the other one is dropped. A
condition computed from run-time data stays unsupported, naming the inputs that decide it.
"""
from __future__ import annotations

import numpy as np

from neo.ir import Value

from ..common.errors import OperatorAttributeNotImplemented
from .context import NodeContext
from .registry import converter


@converter("If", since=1)
def If(cx: NodeContext, cond: Value, *, else_branch, then_branch) -> list[Value]:
    if not cond.is_const:
        raise OperatorAttributeNotImplemented(
            "the condition is computed at run time; Neo inlines an If only when its condition "
            "is known at compile time", cx.graph_inputs_of(cond))
    flag = np.asarray(cond.data).reshape(-1)
    if flag.size != 1:
        cx.invalid("cond", f"a tensor of {flag.size} elements", "one boolean")
    branch, name = (then_branch, "then_branch") if bool(flag[0]) else (else_branch, "else_branch")
    return cx.subgraph(branch, f"{cx.origin}/{name}/")
