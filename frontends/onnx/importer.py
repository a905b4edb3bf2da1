"""Loading ONNX files, checking them for unsupported ops, and the conversion driver."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import onnx
import onnx.checker
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from neo import ir
from neo.ir.errors import ModelLoadError, UnsupportedModelError, UnsupportedOp, UsageError

from ..common.context import named_output
from ..common.driver import Driver, FrameworkNode
from ..common.errors import MAX_NAMES
from . import registry
from .context import NodeContext, attribute_value, make_const, onnx_dtype

ModelLike = str | Path | onnx.ModelProto


# -- loading ---------------------------------------------------------------------------------------
def load_model(model: ModelLike, *, external_data: bool = True) -> onnx.ModelProto:
    """The ModelProto of `model` (a path or a proto); `ModelLoadError` if it is not usable ONNX."""
    if isinstance(model, onnx.ModelProto):
        proto = model
        where = "the given ModelProto"
    else:
        path = Path(model)
        where = str(path)
        if not path.is_file():
            raise ModelLoadError(f"ONNX model file {path} does not exist or is not a file")
        try:
            proto = onnx.load(str(path), load_external_data=external_data)
        except (DecodeError, OSError, ValueError, RuntimeError, onnx.checker.ValidationError) as e:
            # not protobuf, unreadable, missing or unsafe external data files
            raise ModelLoadError(f"cannot read {path} as an ONNX model: {type(e).__name__}: {e}",
                                 hint="the file must be an ONNX ModelProto (.onnx); external "
                                      "data files must sit beside it") from None
    # Protobuf parses many non-ONNX byte strings (an empty file, say) into an empty message.
    if proto.ir_version <= 0 or not proto.HasField("graph") or not proto.graph.output:
        raise ModelLoadError(f"{where} is not an ONNX model (no IR version or no graph outputs)")
    if proto.functions:
        from onnx import inliner

        proto = inliner.inline_local_functions(proto)
    return proto


def default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in registry.DEFAULT_DOMAINS:
            return int(imp.version)
    return 1 if not model.opset_import else registry.MIN_OPSET  # only other domains imported


def _check_opset(opset: int) -> None:
    if opset < registry.MIN_OPSET:
        raise UnsupportedModelError(
            [UnsupportedOp(f"ai.onnx opset {opset}", 1, [],
                           reason=f"Neo converts opset {registry.MIN_OPSET} and newer")],
            hint="upgrade the model with onnx.version_converter.convert_version(model, 13)",
            what="opset versions")


# -- model queries ---------------------------------------------------------------------------------
def _dims(value_info: onnx.ValueInfoProto) -> tuple[int | None, ...] | None:
    """The declared dims, None where dynamic: a dim_param, no value, or a non-positive dim_value
    (paddle2onnx and other exporters write a dynamic dim as -1)."""
    t = value_info.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                 for d in t.tensor_type.shape.dim)


def _dim_params(value_info: onnx.ValueInfoProto) -> tuple[str | None, ...] | None:
    t = value_info.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_param or None if d.HasField("dim_param") else None
                 for d in t.tensor_type.shape.dim)


def _dtype_text(value_info: onnx.ValueInfoProto) -> str:
    t = value_info.type
    if not t.HasField("tensor_type"):
        return t.WhichOneof("value") or "unknown"
    try:
        return onnx_dtype(t.tensor_type.elem_type)
    except TypeError:
        return onnx.TensorProto.DataType.Name(t.tensor_type.elem_type).lower()


def real_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that are not initializers (old models list their weights as inputs too)."""
    inits = {t.name for t in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in inits]


def model_inputs(model: ModelLike) -> list[tuple[str, tuple[int | None, ...] | None, str]]:
    proto = load_model(model, external_data=False)
    return [(v.name, _dims(v), _dtype_text(v)) for v in real_inputs(proto)]


def model_dim_params(model: ModelLike) -> dict[str, tuple[str | None, ...]]:
    """The dim_param name of each dynamic dim of each input that has one (None elsewhere): inputs
    that share a name must get the same size."""
    proto = load_model(model, external_data=False)
    out = {}
    for v in real_inputs(proto):
        names = _dim_params(v)
        if names and any(names):
            out[v.name] = names
    return out


def iter_nodes(graph: onnx.GraphProto, prefix: str = ""
               ) -> Iterator[tuple[str, onnx.NodeProto]]:
    """(origin, node) for every node of `graph`, including those in subgraphs (If branches, Loop
    bodies); unnamed nested nodes are named by their path, e.g. `If#3/then_branch/Relu#0`."""
    for index, node in enumerate(graph.node):
        origin = node.name or prefix + origin_of(node, index)
        yield origin, node
        for attr in node.attribute:
            subgraphs = ([attr.g] if attr.type == onnx.AttributeProto.GRAPH
                         else attr.graphs if attr.type == onnx.AttributeProto.GRAPHS else [])
            for sub in subgraphs:
                yield from iter_nodes(sub, f"{origin}/{attr.name}/")


def origin_of(node: onnx.NodeProto, index: int) -> str:
    """How messages name a node: its name, or `OpType#index` in its graph when it has none."""
    return node.name or f"{node.op_type}#{index}"


def _op_key(node: onnx.NodeProto) -> str:
    if node.domain in registry.DEFAULT_DOMAINS:
        return node.op_type
    return f"{node.domain}.{node.op_type}"


def unsupported_ops(model: onnx.ModelProto) -> list[UnsupportedOp]:
    """Every op type of the model without a converter at its opset, with counts and node names."""
    opset = default_opset(model)
    counts: Counter[str] = Counter()
    names: dict[str, list[str]] = {}
    for origin, node in iter_nodes(model.graph):
        if registry.lookup(node.op_type, opset, node.domain) is None:
            key = _op_key(node)
            counts[key] += 1
            if len(names.setdefault(key, [])) < MAX_NAMES:
                names[key].append(origin)
    return [UnsupportedOp(op, n, names[op]) for op, n in counts.most_common()]


def check_supported(model: onnx.ModelProto) -> None:
    _check_opset(default_opset(model))
    missing = unsupported_ops(model)
    if missing:
        raise UnsupportedModelError(missing, hint=f"opset {default_opset(model)}; "
                                    "`neo inspect` lists the ops of a model")


def inspect_model(model: ModelLike) -> dict:
    proto = load_model(model, external_data=False)
    hist = Counter(_op_key(n) for _, n in iter_nodes(proto.graph))

    def info(v):
        return {"name": v.name, "shape": _dims(v), "dtype": _dtype_text(v)}

    return {
        "inputs": [info(v) for v in real_inputs(proto)],
        "outputs": [info(v) for v in proto.graph.output],
        "opset": default_opset(proto),
        "ir_version": proto.ir_version,
        "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
        "num_initializers": len(proto.graph.initializer),
        "ops": dict(hist.most_common()),
        "unsupported": [{"op_type": u.op_type, "count": u.count, "nodes": list(u.first_node_names)}
                        for u in unsupported_ops(proto)],
    }


# -- conversion ------------------------------------------------------------------------------------
def _input_shape(v: onnx.ValueInfoProto, given: dict) -> tuple[int, ...]:
    dims = _dims(v)
    if v.name in given:
        shape = tuple(int(d) for d in given[v.name])
        if dims is not None and len(dims) != len(shape):
            raise UsageError(f"input {v.name!r} has rank {len(dims)} in the model, but the given "
                             f"shape {list(shape)} has rank {len(shape)}")
        return shape
    if dims is None or any(d is None for d in dims):
        shown = "unknown rank" if dims is None else "[" + ", ".join(
            "?" if d is None else str(d) for d in dims) + "]"
        raise UsageError(f"input {v.name!r} has a dynamic shape ({shown}); give its static shape",
                         hint='e.g. --shape \'{"' + v.name + '": [1, 3, 224, 224]}\'')
    return tuple(dims)


def _framework_nodes(nodes, opset: int, prefix: str = "") -> list[FrameworkNode]:
    # nested nodes are named by their path, as iter_nodes does
    return [FrameworkNode(_op_key(node), node.name or prefix + origin_of(node, index),
                          list(node.input), list(node.output),
                          {a.name: attribute_value(a) for a in node.attribute}, opset, node)
            for index, node in enumerate(nodes)]


def _schema_defaults(node: FrameworkNode) -> dict:
    schema = registry.schema(node.op, node.version)
    if schema is None:  # a contrib op (com.microsoft): the converter's signature has them
        conv = registry.CONVERTERS.lookup(node.op, node.version)
        return dict(conv.defaults) if conv is not None else {}
    return {name: attribute_value(a.default_value) for name, a in schema.attributes.items()
            if a.default_value.type != onnx.AttributeProto.UNDEFINED}


def _driver(g: ir.Graph, opset: int, model_name: str) -> Driver:
    def subgraph(graph: onnx.GraphProto, prefix: str) -> list[ir.Value]:
        return driver.run_subgraph(_framework_nodes(graph.node, opset, prefix),
                                   [o.name for o in graph.output], _initializers(g, graph))

    driver = Driver(g, registry.CONVERTERS,
                    lambda node: NodeContext(g, node.raw, node.origin, opset, subgraph),
                    defaults=_schema_defaults, model=f"ONNX model {model_name}".rstrip())
    return driver


def _const_input(g: ir.Graph, v: onnx.ValueInfoProto, data, dtype: str) -> ir.Value:
    """An input given at compile time (--const-input): a constant of the model's dtype and, where
    the model declares them, its dims."""
    import numpy as np

    arr = np.asarray(data)
    dims = _dims(v)
    if dims is not None and (len(dims) != arr.ndim or any(
            d is not None and d != s for d, s in zip(dims, arr.shape))):
        shown = "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
        raise UsageError(f"--const-input {v.name}: the array has shape {list(arr.shape)}, but the "
                         f"model declares {shown}")
    if arr.dtype != ir.np_dtype(dtype) and not np.can_cast(arr, ir.np_dtype(dtype),
                                                          casting="same_kind"):
        raise UsageError(f"--const-input {v.name}: the array is {arr.dtype}, but the model's "
                         f"input is {dtype}")
    return make_const(g, arr.astype(ir.np_dtype(dtype)), v.name)


def convert_model(proto: onnx.ModelProto, input_shapes: dict | None, model_name: str,
                  const_inputs: dict | None = None) -> ir.Graph:
    opset = default_opset(proto)
    check_supported(proto)
    graph = proto.graph
    g = ir.Graph(name=model_name or graph.name or "main")
    given = dict(input_shapes or {})
    inputs = real_inputs(proto)
    unknown = sorted((set(given) | set(const_inputs or {})) - {v.name for v in inputs})
    if unknown:
        raise UsageError(f"input shapes name {', '.join(map(repr, unknown))}, which the model does "
                         f"not have; its inputs: {', '.join(v.name for v in inputs)}")
    # Graph output names are kept for the outputs themselves: reserve them before anything else.
    input_names = {v.name for v in inputs}
    for out in graph.output:
        if out.name not in input_names:
            g.unique(out.name)
    driver = _driver(g, opset, model_name or graph.name)
    driver.env.update(_initializers(g, graph))
    for v in inputs:
        try:
            dtype = onnx_dtype(v.type.tensor_type.elem_type)
        except TypeError as e:
            raise UnsupportedModelError([UnsupportedOp(f"input {v.name}", 1, [], reason=str(e))],
                                        what="input types") from None
        if v.name in (const_inputs or {}):
            driver.env[v.name] = _const_input(g, v, const_inputs[v.name], dtype)
        else:
            driver.env[v.name] = g.input(v.name, _input_shape(v, given), dtype)
    driver.run(_framework_nodes(graph.node, opset))
    driver.finish()
    for o in graph.output:
        if o.name not in driver.env:
            raise ModelLoadError(f"graph output {o.name!r} is not produced by any node")
        g.outputs.append(named_output(g, driver.env[o.name], o.name))
    return g


def _initializers(g: ir.Graph, graph: onnx.GraphProto) -> dict[str, ir.Value]:
    consts, bad = {}, []
    for t in graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL and not t.raw_data:
            raise ModelLoadError(f"initializer {t.name!r} keeps its data in an external file that "
                                 "was not loaded", hint="pass the model's path, not a ModelProto "
                                 "loaded without its external data")
        try:
            onnx_dtype(t.data_type)
        except TypeError as e:
            bad.append(UnsupportedOp(f"initializer {t.name}", 1, [], reason=str(e)))
            continue
        consts[t.name] = make_const(g, numpy_helper.to_array(t), t.name)
    if bad:
        raise UnsupportedModelError(bad, what="initializer types")
    return consts

