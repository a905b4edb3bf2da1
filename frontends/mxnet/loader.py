"""Loading a Gluon export (`NAME-symbol.json` + `NAME-NNNN.params`) into an `ir.Graph`.

The symbol's "null" nodes are of three kinds: weights and auxiliary states (their values are in
the .params file, as `arg:NAME` / `aux:NAME`), data inputs (no value: the model's inputs, in the
order of the symbol's arguments), and the labels of loss layers (`softmax_label`), which
inference does not read and which are not inputs. Every other node becomes a `FrameworkNode`
for the kit's driver (frontends/common/driver.py).
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neo import ir
from neo.ir.errors import ModelLoadError, UnsupportedOp, UsageError

from ..common.context import make_const
from ..common.driver import Driver, FrameworkNode, check_supported
from ..common.errors import MAX_NAMES
from . import registry
from .context import Deferred, MxContext
from .params import DTYPE_CODES, read_params, split_params
from .symbol import Symbol, SymNode, load_symbol, parse_value

SYMBOL_SUFFIX = "-symbol.json"
_PARAMS_RE = re.compile(r"^(?P<prefix>.+)-(?P<epoch>\d{4})\.params$", re.IGNORECASE)

# Loss layers: at inference their label input is not read (and not a model input).
LABEL_INPUT = {"SoftmaxOutput": 1, "LinearRegressionOutput": 1, "LogisticRegressionOutput": 1,
               "MAERegressionOutput": 1, "SVMOutput": 1}
# Annotations that only Gluon's parameters carry (a data input has none of them, or __shape__ and
# __dtype__; an UpSampling input may get an __init__): a null node with one of these but no value
# in the .params file lost its weights.
_PARAM_MARKS = ("__lr_mult__", "__wd_mult__", "__storage_type__")

HINT = "`neo inspect --framework mxnet NAME-symbol.json` lists the ops of a model"


@dataclass
class MxModel:
    symbol: Symbol
    params_path: Path
    params: dict[str, np.ndarray]

    @property
    def name(self) -> str:
        return self.symbol.path.name[: -len(SYMBOL_SUFFIX)] or self.symbol.path.stem


# -- files -----------------------------------------------------------------------------------------
def model_files(path: str | Path) -> tuple[Path, Path]:
    """(symbol file, params file) for MODEL: the symbol (its one NAME-NNNN.params beside it) or
    one .params file (its NAME-symbol.json beside it)."""
    path = Path(path)
    m = _PARAMS_RE.match(path.name)
    if m:
        symbol = path.with_name(m.group("prefix") + SYMBOL_SUFFIX)
        if not symbol.is_file():
            raise ModelLoadError(f"MXNet weights {path} need their graph {symbol.name} beside "
                                 "them; not found")
        return symbol, path
    if not path.name.lower().endswith(SYMBOL_SUFFIX):
        raise ModelLoadError(f"{path} is not an MXNet model: expected NAME-symbol.json with "
                             "NAME-0000.params beside it")
    if not path.is_file():
        raise ModelLoadError(f"MXNet symbol {path} does not exist or is not a file")
    prefix = path.name[: -len(SYMBOL_SUFFIX)].lower()
    found = sorted(p for p in path.parent.iterdir()
                   if p.is_file() and (mm := _PARAMS_RE.match(p.name))
                   and mm.group("prefix").lower() == prefix)
    if not found:
        raise ModelLoadError(f"MXNet model {path} needs its weights "
                             f"{path.name[: -len(SYMBOL_SUFFIX)]}-0000.params beside it; none "
                             "found")
    if len(found) > 1:
        raise UsageError(f"MXNet model {path} has several weight files: "
                         f"{', '.join(p.name for p in found)}; pass the .params file of the "
                         "epoch to compile as MODEL")
    return path, found[0]


_CACHE: dict[tuple, MxModel] = {}  # `neo compile` reads the inputs, then loads the same files


def read_model(path: str | Path) -> MxModel:
    symbol_path, params_path = model_files(path)
    try:
        key = tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns)
                    for p in (symbol_path, params_path))
    except OSError:
        key = None
    if key is not None and key in _CACHE:
        return _CACHE[key]
    model = MxModel(load_symbol(symbol_path), params_path,
                    split_params(read_params(params_path)))
    _CACHE.clear()
    if key is not None:
        _CACHE[key] = model
    return model


# -- the model's arguments -------------------------------------------------------------------------
def _label_only(sym: Symbol) -> set[int]:
    """Null nodes read only as the labels of loss layers."""
    uses: dict[int, list[bool]] = {}
    for n in sym.nodes:
        for pos, (src, _) in enumerate(n.inputs):
            uses.setdefault(src, []).append(LABEL_INPUT.get(n.op) == pos)
    return {i for i, u in uses.items() if u and all(u) and sym.nodes[i].op == "null"}


def _declared_shape(node: SymNode) -> tuple[int | None, ...] | None:
    shape = parse_value(node.hidden.get("__shape__"))
    if shape is None:
        return None
    shape = shape if isinstance(shape, tuple) else (shape,)
    if not all(isinstance(d, int) for d in shape):
        return None
    return tuple(d if d > 0 else None for d in shape)


def _declared_dtype(node: SymNode) -> str:
    code = parse_value(node.hidden.get("__dtype__"))
    if isinstance(code, int) and code in DTYPE_CODES:
        return ir.dtype_name(DTYPE_CODES[code])
    return "float32"


def data_inputs(model: MxModel) -> list[SymNode]:
    """The null nodes the user feeds, in the symbol's argument order; a weight missing from the
    params file is a load error here, not an input the user is asked a shape for."""
    labels = _label_only(model.symbol)
    used = {src for n in model.symbol.nodes for src, _ in n.inputs}
    used |= {src for src, _ in model.symbol.heads}
    out = []
    for n in model.symbol.nodes:
        if n.op != "null" or n.name in model.params or n.index in labels or n.index not in used:
            continue
        if any(k in n.hidden for k in _PARAM_MARKS):
            raise ModelLoadError(f"MXNet model {model.symbol.path.name}: the parameter {n.name} "
                                 f"has no value in {model.params_path.name}",
                                 hint="export the model again (HybridBlock.export) so that the "
                                      "symbol and the weights match")
        out.append(n)
    return out


def model_inputs(path: str | Path) -> list[tuple[str, tuple[int | None, ...] | None, str]]:
    model = read_model(path)
    return [(n.name, _declared_shape(n), _declared_dtype(n)) for n in data_inputs(model)]


# -- framework nodes -------------------------------------------------------------------------------
def _key(index: int, output: int) -> str:
    return f"{index}:{output}"


def framework_nodes(model: MxModel) -> list[FrameworkNode]:
    sym = model.symbol
    labels = _label_only(sym)
    used: dict[int, set[int]] = {}
    for n in sym.nodes:
        for src, k in n.inputs:
            used.setdefault(src, set()).add(k)
    for src, k in sym.heads:
        used.setdefault(src, set()).add(k)
    out = []
    for n in sym.nodes:
        if n.op == "null":
            continue
        ks = used.get(n.index, set())
        outputs = [_key(n.index, k) if k in ks else "" for k in range(max(ks, default=0) + 1)]
        inputs = [None if src in labels else _key(src, k) for src, k in n.inputs]
        out.append(FrameworkNode(n.op, n.name, inputs, outputs, dict(n.attrs), None, n))
    return out


def unsupported(model: MxModel) -> list[UnsupportedOp]:
    """Every op of the symbol without a converter, with its count and first node names."""
    counts: Counter[str] = Counter()
    names: dict[str, list[str]] = {}
    for n in model.symbol.nodes:
        if n.op != "null" and registry.lookup(n.op) is None:
            counts[n.op] += 1
            if len(names.setdefault(n.op, [])) < MAX_NAMES:
                names[n.op].append(n.name)
    return [UnsupportedOp(op, c, names[op]) for op, c in counts.most_common()]


def output_names(sym: Symbol) -> list[str]:
    """MXNet's names of the heads: `NAME_output`, `NAME_outputK` for a multi-output node."""
    multi = Counter(src for src, _ in sym.heads)
    names = []
    for src, k in sym.heads:
        node = sym.nodes[src]
        if node.op == "null":
            names.append(node.name)
        elif multi[src] > 1 or k > 0:
            names.append(f"{node.name}_output{k}")
        else:
            names.append(f"{node.name}_output")
    return names


# -- conversion ------------------------------------------------------------------------------------
def convert(model: MxModel, shapes: dict[str, tuple[int, ...]] | None,
            model_name: str = "") -> ir.Graph:
    sym = model.symbol
    nodes = framework_nodes(model)
    check_supported(nodes, registry.CONVERTERS, hint=HINT)
    inputs = data_inputs(model)
    given = dict(shapes or {})
    unknown = sorted(set(given) - {n.name for n in inputs})
    if unknown:
        raise UsageError(f"input shapes name {', '.join(map(repr, unknown))}, which the model "
                         f"does not have; its inputs: {', '.join(n.name for n in inputs)}")
    g = ir.Graph(name=model_name or model.name)
    deferred: dict[int, Deferred] = {}

    def context(node: FrameworkNode) -> MxContext:
        return MxContext(g, node.raw.name, node.origin, node.op, deferred)

    driver = Driver(g, registry.CONVERTERS, context,
                    defaults=lambda node: registry.defaults(node.op),
                    model=f"MXNet model {sym.path.name}")
    for n in inputs:
        if n.name not in given:
            raise UsageError(f"input {n.name!r} needs a shape",
                             hint='e.g. --shape \'{"' + n.name + '": [1, 3, 224, 224]}\'')
        declared = _declared_shape(n)
        shape = tuple(int(d) for d in given[n.name])
        if declared is not None and (len(declared) != len(shape) or any(
                d is not None and d != s for d, s in zip(declared, shape))):
            shown = [d if d is not None else "?" for d in declared]
            raise UsageError(f"input {n.name!r} is declared {shown} in the symbol, but the given "
                             f"shape is {list(shape)}")
        driver.env[_key(n.index, 0)] = g.input(n.name, shape, _declared_dtype(n))
    for n in sym.nodes:
        if n.op == "null" and n.name in model.params:
            driver.env[_key(n.index, 0)] = make_const(g, model.params[n.name], n.name)
    driver.run(nodes)
    driver.finish(hint=HINT)
    names = output_names(sym)
    outs = []
    for (src, k), name in zip(sym.heads, names):
        v = driver.env.get(_key(src, k))
        if v is None:
            raise ModelLoadError(f"{sym.path.name}: output {name} is not produced by any node")
        if id(v) in deferred:
            raise ModelLoadError(f"{sym.path.name}: output {name} has unknown dims "
                                 f"{list(deferred[id(v)].shape)}")
        if v.is_const or any(v is i for i in g.inputs) or any(v is o for o in outs):
            v = g.add("copy", [v], name=name, origin=f"output {name}").outputs[0]
        outs.append(v)
    g.outputs = outs
    g.output_names = names
    return g
