"""A readable text dump of a graph (used by --dump-ir and in test failure messages)."""
from __future__ import annotations

import numpy as np


def _attr(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_attr(x) for x in v) + "]"
    if isinstance(v, np.ndarray):
        return f"array{tuple(v.shape)}"
    return repr(v) if isinstance(v, str) else str(v)


def format_graph(g) -> str:
    lines = [f"graph {g.name}(" + ", ".join(f"%{v.name}: {v.type}" for v in g.inputs) + ") {"]
    consts = g.constants()
    if consts:
        lines.append(f"  # {len(consts)} params, {sum(v.type.nbytes for v in consts)} bytes")
    for n in g.nodes:
        outs = ", ".join(f"%{v.name}: {v.type}" for v in n.outputs)
        ins = ", ".join(f"${v.name}" if v.is_const else f"%{v.name}" for v in n.inputs)
        attrs = ", ".join(f"{k}={_attr(v)}" for k, v in n.attrs.items() if v is not None)
        lines.append(f"  {outs} = {n.op}({ins}{'; ' + attrs if attrs else ''})")
    lines.append("  return " + ", ".join(f"%{v.name}" for v in g.outputs))
    lines.append("}")
    return "\n".join(lines)
