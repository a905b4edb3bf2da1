"""Reading an MXNet symbol file (`NAME-symbol.json`, what `HybridBlock.export` and
`Symbol.save` write) without MXNet.

The file is nnvm's JSON graph: `nodes` in topological order, each `{op, name, attrs, inputs}`
with `inputs` as `[node index, output index, version]`; `arg_nodes` (the indices of the "null"
nodes: data inputs, weights, auxiliary states); `heads` (the graph outputs, as inputs are);
`attrs.mxnet_version`. Files from MXNet before 0.9 name the attributes `param` (op parameters)
and `attr` (annotations such as `__shape__`); both are read.

Attribute values are strings ("(3, 3)", "True", "relu", "1e-05", "None"); `parse_value` turns
them into Python values: tuples, bools, ints, floats, None, or the string itself.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neo.ir.errors import ModelLoadError


@dataclass
class SymNode:
    index: int
    op: str  # "null" for arguments and auxiliary states
    name: str
    attrs: dict[str, Any]  # op parameters, parsed
    hidden: dict[str, str]  # annotations: __shape__, __dtype__, __init__, ...
    inputs: list[tuple[int, int]]  # (node index, output index)


@dataclass
class Symbol:
    path: Path
    nodes: list[SymNode]
    heads: list[tuple[int, int]]
    version: int | None  # e.g. 10901 for 1.9.1
    arg_nodes: list[int] = field(default_factory=list)

    @property
    def version_text(self) -> str:
        if not self.version:
            return "unknown"
        v = self.version
        return f"{v // 10000}.{v // 100 % 100}.{v % 100}"


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside brackets."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def parse_value(text: Any) -> Any:
    """An MXNet attribute string as a Python value: "(1, 1)" -> (1, 1), "True" -> True,
    "None" -> None, "3" -> 3, "1e-05" -> 1e-05, "relu" -> "relu"."""
    if not isinstance(text, str):
        return text
    s = text.strip()
    if s in ("True", "true"):
        return True
    if s in ("False", "false"):
        return False
    if s == "None":
        return None
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]":
        return tuple(parse_value(p) for p in _split_top(s[1:-1]))
    for kind in (int, float):
        try:
            return kind(s)
        except ValueError:
            pass
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    return s


def _hidden(key: str) -> bool:
    return key.startswith("__") and key.endswith("__")


def _entry(raw: Any, where: str, count: int, path: Path) -> tuple[int, int]:
    if (not isinstance(raw, list) or len(raw) < 2 or not all(isinstance(v, int) for v in raw)
            or not 0 <= raw[0] < count or raw[1] < 0):
        raise ModelLoadError(f"{path}: {where} refers to {raw!r}, not a [node, output, version] "
                             f"entry of an earlier node")
    return int(raw[0]), int(raw[1])


def load_symbol(path: str | Path) -> Symbol:
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ModelLoadError(f"cannot read MXNet symbol {path}: {e.strerror or e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{path} is not an MXNet symbol file: not JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("nodes"), list) \
            or not isinstance(doc.get("heads"), list):
        raise ModelLoadError(f"{path} is not an MXNet symbol file: it has no nodes and heads",
                             hint="pass NAME-symbol.json as written by HybridBlock.export")
    raw_nodes = doc["nodes"]
    nodes: list[SymNode] = []
    for i, raw in enumerate(raw_nodes):
        if not isinstance(raw, dict) or not isinstance(raw.get("op"), str) \
                or not isinstance(raw.get("name"), str):
            raise ModelLoadError(f"{path}: node #{i} has no op or name")
        merged: dict[str, Any] = {}
        for key in ("param", "attr", "attrs"):
            if isinstance(raw.get(key), dict):
                merged.update(raw[key])
        attrs = {k: parse_value(v) for k, v in merged.items() if not _hidden(k)}
        hidden = {k: v for k, v in merged.items() if _hidden(k)}
        ins = raw.get("inputs", [])
        if not isinstance(ins, list):
            raise ModelLoadError(f"{path}: node {raw['name']} has inputs {ins!r}")
        inputs = [_entry(e, f"an input of node {raw['name']}", i, path) for e in ins]
        nodes.append(SymNode(i, raw["op"], raw["name"], attrs, hidden, inputs))
    heads = [_entry(e, "a head (graph output)", len(nodes), path) for e in doc["heads"]]
    if not heads:
        raise ModelLoadError(f"{path}: the symbol has no outputs (heads)")
    version = None
    gattrs = doc.get("attrs")
    if isinstance(gattrs, dict):
        v = gattrs.get("mxnet_version")
        if isinstance(v, list) and len(v) == 2 and isinstance(v[1], int):
            version = v[1]
    arg_nodes = [n.index for n in nodes if n.op == "null"]
    return Symbol(path, nodes, heads, version, arg_nodes)
