"""The graph verifier: run after every pass in debug mode (and in tests)."""
from __future__ import annotations

from .graph import Graph, IRError
from .registry import infer_types, op_def


def verify(g: Graph) -> Graph:
    """Check topological order, single definition, and that stored types match re-inference."""
    defined = {id(v) for v in g.inputs}
    names: set[str] = set()
    for v in g.inputs:
        if v.name in names:
            raise IRError(f"value name {v.name} defined twice")
        names.add(v.name)
    for n in g.nodes:
        for i, v in enumerate(n.inputs):
            if not v.is_const and id(v) not in defined:
                raise IRError(f"node {n.name} ({n.op}): input {i} %{v.name} is used before it is "
                              "defined or is not in the graph")
        types = infer_types(op_def(n.op), n.attrs, [v.type for v in n.inputs])
        if [o.type for o in n.outputs] != list(types):
            raise IRError(f"node {n.name} ({n.op}): stored output types "
                          f"{[str(o.type) for o in n.outputs]} differ from inferred "
                          f"{[str(t) for t in types]}")
        for o in n.outputs:
            if o.producer is not n:
                raise IRError(f"node {n.name}: output %{o.name} does not point back to its node")
            if o.name in names:
                raise IRError(f"value name {o.name} defined twice")
            names.add(o.name)
            defined.add(id(o))
    for v in g.outputs:
        if not v.is_const and id(v) not in defined:
            raise IRError(f"graph output %{v.name} is not defined")
    return g
