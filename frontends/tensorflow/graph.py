"""A frozen GraphDef as the kit's `FrameworkNode` list: topological order, value names, attributes
as Python values, and the attribute defaults of TensorFlow's op registry.

Value names are TensorFlow's tensor names, `node:index` (a bare `node` input means `node:0`);
control inputs (`^node`) order side effects only and are dropped. A node gets one output name per
result that something reads, up to the last one read (unread ones are ""), so the driver asks a
converter only for results the model uses.
"""
from __future__ import annotations

from collections import defaultdict, deque
from typing import Any

from ..common.driver import FrameworkNode
from .loader import dtype_name


def tensor_name(name: str) -> str:
    return name if ":" in name else name + ":0"


def split_tensor(name: str) -> tuple[str, int]:
    node, _, index = tensor_name(name).rpartition(":")
    return node, int(index)


def attr_value(tf, value) -> Any:
    """A Python value for a TensorFlow AttrValue: str, int, float, bool, dtype name, shape tuple
    (None dims; None for unknown rank), numpy array, or a tuple of them."""
    kind = value.WhichOneof("value")
    if kind == "s":
        return value.s.decode("utf-8", "replace")
    if kind in ("i", "f", "b"):
        return getattr(value, kind)
    if kind == "type":
        return dtype_name(tf, value.type)
    if kind == "shape":
        return _shape(value.shape)
    if kind == "tensor":
        return tf.make_ndarray(value.tensor)
    if kind == "func":
        return value.func.name
    if kind == "placeholder":
        return value.placeholder
    if kind == "list":
        lst = value.list
        for field in ("s", "i", "f", "b", "type", "shape", "tensor", "func"):
            items = getattr(lst, field)
            if len(items):
                if field == "s":
                    return tuple(s.decode("utf-8", "replace") for s in items)
                if field == "type":
                    return tuple(dtype_name(tf, t) for t in items)
                if field == "shape":
                    return tuple(_shape(s) for s in items)
                if field == "tensor":
                    return tuple(tf.make_ndarray(t) for t in items)
                if field == "func":
                    return tuple(f.name for f in items)
                return tuple(items)
        return ()
    return None


def _shape(proto) -> tuple[int | None, ...] | None:
    if proto.unknown_rank:
        return None
    return tuple(d.size if d.size >= 0 else None for d in proto.dim)


def topological(nodes: list, producer) -> list:
    """`nodes` with every producer before its consumers (their order where it already is);
    nodes on a cycle (TF1 loops: NextIteration) follow the rest in their order. `producer(input)`
    names the node an input string comes from."""
    index = {n.name: i for i, n in enumerate(nodes)}
    users: dict[int, list[int]] = defaultdict(list)
    remaining = []
    for i, n in enumerate(nodes):
        deps = {index[p] for p in map(producer, n.input) if p in index} - {i}
        remaining.append(len(deps))
        for j in deps:
            users[j].append(i)
    ready = deque(i for i in range(len(nodes)) if remaining[i] == 0)
    order: list[int] = []
    while ready:
        i = ready.popleft()
        order.append(i)
        for u in users[i]:
            remaining[u] -= 1
            if remaining[u] == 0:
                ready.append(u)
    if len(order) < len(nodes):
        done = set(order)
        order += [i for i in range(len(nodes)) if i not in done]
    return [nodes[i] for i in order]


def _to_framework_nodes(tf, nodes: list, resolve, producer, wanted: set[str], prefix: str,
                        skip: frozenset[str]) -> list[FrameworkNode]:
    """FrameworkNodes for NodeDefs whose data inputs `resolve` turns into value names
    ("prefix" + "node:index"); `wanted` are value names read from outside the nodes."""
    read = {resolve(i) for n in nodes for i in n.input if not i.startswith("^")} | wanted
    last: dict[str, int] = defaultdict(lambda: -1)  # value-name prefix -> highest index read
    for t in read:
        node, idx = split_tensor(t)
        last[node] = max(last[node], idx)
    out = []
    for n in topological(nodes, producer):
        if n.name in skip:
            continue
        base = prefix + n.name
        outputs = [t if (t := f"{base}:{k}") in read else "" for k in range(last[base] + 1)]
        inputs = [resolve(i) for i in n.input if not i.startswith("^")]
        attrs = {k: attr_value(tf, v) for k, v in n.attr.items()}
        out.append(FrameworkNode(n.op, base, inputs, outputs, attrs, None, n))
    return out


def framework_nodes(tf, graph_def, skip: frozenset[str] = frozenset(),
                    wanted: frozenset[str] = frozenset()) -> list[FrameworkNode]:
    """The GraphDef's nodes (except those named in `skip`: the graph inputs) as FrameworkNodes,
    in topological order. `wanted`: tensors read from outside the nodes (the graph outputs)."""

    def producer(inp: str) -> str:
        return inp[1:] if inp.startswith("^") else split_tensor(inp)[0]

    return _to_framework_nodes(tf, list(graph_def.node), tensor_name, producer,
                               {tensor_name(t) for t in wanted}, "", skip)


# -- function bodies --------------------------------------------------------------------------
def _output_offsets(node_def) -> dict[str, int]:
    """{output arg name: index of its first tensor} for a NodeDef, from its OpDef (list outputs
    take their length from the node's number or type-list attribute)."""
    from tensorflow.python.framework import op_def_registry

    op_def = op_def_registry.get(node_def.op)
    offsets: dict[str, int] = {}
    k = 0
    for arg in op_def.output_arg if op_def is not None else ():
        offsets[arg.name] = k
        if arg.number_attr:
            k += node_def.attr[arg.number_attr].i
        elif arg.type_list_attr:
            k += len(node_def.attr[arg.type_list_attr].list.type)
        else:
            k += 1
    return offsets


class FunctionBody:
    """A FunctionDef of the graph's library as FrameworkNodes whose value names start with
    `prefix` (the calling node's name and "/"): inputs "prefix/arg:0", outputs the values its
    `ret` names."""

    def __init__(self, tf, fdef, prefix: str):
        self.fdef = fdef
        self.prefix = prefix
        nodes = list(fdef.node_def)
        offsets = {n.name: _output_offsets(n) for n in nodes}
        args = {a.name for a in fdef.signature.input_arg}

        def resolve(inp: str) -> str:
            parts = inp.split(":")
            if len(parts) == 1:  # an argument of the function (or output 0 of a node)
                return f"{prefix}{parts[0]}:0"
            if len(parts) == 2:
                return f"{prefix}{parts[0]}:{parts[1]}"
            node, arg, idx = parts
            if node in args:
                return f"{prefix}{node}:0"
            return f"{prefix}{node}:{offsets.get(node, {}).get(arg, 0) + int(idx)}"

        def producer(inp: str) -> str:
            return inp.lstrip("^").split(":")[0]

        self.inputs = [f"{prefix}{a.name}:0" for a in fdef.signature.input_arg]
        self.outputs = [resolve(fdef.ret[a.name]) for a in fdef.signature.output_arg]
        self.nodes = _to_framework_nodes(tf, nodes, resolve, producer, set(self.outputs),
                                         prefix, frozenset())


# -- attribute defaults ---------------------------------------------------------------------
_DEFAULTS: dict[str, dict[str, Any]] = {}


def op_defaults(tf, node: FrameworkNode) -> dict[str, Any]:
    """The attribute values that need no converter's attention: TensorFlow's defaults from its op
    registry, and the node's own value for attributes that cannot change what the op computes
    (type attributes and list-input lengths, which the inputs already say; `_`-prefixed
    annotations)."""
    if node.op not in _DEFAULTS:
        from tensorflow.python.framework import op_def_registry

        op_def = op_def_registry.get(node.op)
        table: dict[str, Any] = {}
        types: set[str] = set()
        if op_def is not None:
            # the length of a list input (N) is what the node's inputs already say
            types.update(a.number_attr for a in op_def.input_arg if a.number_attr)
            for a in op_def.attr:
                if a.type in ("type", "list(type)"):
                    types.add(a.name)
                elif a.HasField("default_value"):
                    table[a.name] = attr_value(tf, a.default_value)
        table["__types__"] = types
        _DEFAULTS[node.op] = table
    table = _DEFAULTS[node.op]
    out = {k: v for k, v in table.items() if k != "__types__"}
    for name, value in node.attrs.items():
        if name.startswith("_") or name in table["__types__"]:
            out[name] = value
    return out
