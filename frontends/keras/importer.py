"""Checking a Keras model for unsupported layers and converting it with the kit's driver.

Neo's Keras rule: image inputs (rank 4 and up) are given and taken NCHW although the model is
NHWC, so each such graph input is NCHW and transposed to NHWC once, at the start; the layout
pass cancels that transpose against the first convolution. Outputs keep Keras's layout.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np

from neo import ir
from neo.ir.errors import ModelLoadError, UnsupportedModelError, UnsupportedOp, UsageError
from neo.ir.ops_nn import to_channels_first, to_channels_last

from ..common.context import make_const, named_output
from ..common.driver import Driver, FrameworkNode
from ..common.errors import MAX_NAMES, OperatorAttributeRequired
from . import registry
from .activations import activation_name
from .context import LayerContext
from .graph import Call, ModelGraph, TensorRef
from .reader import KerasFile

# Config entries that cannot change an inference result.
_DROPPED = frozenset({"name", "trainable", "dtype", "batch_input_shape", "batch_shape",
                      "input_shape", "build_config", "activity_regularizer", "seed", "autocast",
                      "function", "module", "function_type", "output_shape_type"})
_DROPPED_SUFFIXES = ("_initializer", "_regularizer", "_constraint")
# dtype policies whose variables are float32: computed in float32
_FLOAT32_POLICIES = frozenset({"float32", "mixed_float16", "mixed_bfloat16"})
# call arguments that never change an inference result
_CALL_DROPPED = frozenset({"training", "name"})
HINT = "`neo inspect MODEL` lists a model's layers; custom layers and Lambda layers have no " \
       "converter"


def image_rank(rank: int) -> bool:
    """Whether Neo's NCHW convention applies to an input of this rank (images: rank >= 4)."""
    return rank >= 4


# -- configs -------------------------------------------------------------------------------------
def _policy_name(dtype: Any) -> str | None:
    if dtype is None:
        return None
    if isinstance(dtype, str):
        return dtype
    if isinstance(dtype, dict):
        cfg = dtype.get("config")
        if isinstance(cfg, dict) and "name" in cfg:
            return str(cfg["name"])
        if isinstance(cfg, str):
            return cfg
    return str(dtype)


def layer_attributes(call: Call) -> dict[str, Any]:
    """The layer's config entries a converter must see (operations keep all but their name)."""
    layer = call.layer
    cfg = layer.config
    if not layer.is_layer:
        return {k: v for k, v in cfg.items() if k != "name"}
    attrs = {k: v for k, v in cfg.items()
             if k not in _DROPPED and not k.endswith(_DROPPED_SUFFIXES)}
    policy = _policy_name(cfg.get("dtype"))
    if policy is not None and policy not in _FLOAT32_POLICIES:
        attrs["dtype"] = policy  # reported: only float32 computation is implemented
    return attrs


def _custom_objects(call: Call, attrs: dict) -> Iterator[tuple[str, str]]:
    """(name, what) of each custom object a layer's config uses (activations, sublayers)."""

    def walk(x: Any, key: str | None) -> Iterator[tuple[str, str]]:
        if key in ("activation", "recurrent_activation") and activation_name(x) is None:
            name = x if isinstance(x, str) else (x or {}).get("registered_name") or (
                x or {}).get("config") or (x or {}).get("class_name")
            yield str(name), f"custom activation in layer {call.origin}"
            return
        if isinstance(x, dict):
            for k, v in x.items():
                if k.endswith(_DROPPED_SUFFIXES):
                    continue
                yield from walk(v, k)
        elif isinstance(x, list):
            for v in x:
                yield from walk(v, None)

    yield from walk(attrs, None)


def unsupported_ops(graph: ModelGraph) -> list[UnsupportedOp]:
    """Every layer class without a converter and every custom object, with counts and layer
    names."""
    counts: Counter[str] = Counter()
    names: dict[str, list[str]] = {}
    reasons: dict[str, str] = {}
    for call in graph.calls:
        found = []
        if registry.lookup(call.layer.key, graph.major) is None:
            found.append((call.layer.key, "Lambda layer (Python code)" if call.layer.key ==
                          "Lambda" else None))
        found += [(name, what) for name, what in _custom_objects(call, layer_attributes(call))]
        for key, why in found:
            counts[key] += 1
            if len(names.setdefault(key, [])) < MAX_NAMES:
                names[key].append(call.origin)
            if why and key not in reasons:
                reasons[key] = why
    return [UnsupportedOp(op, n, names[op], reason=reasons.get(op)) for op, n in
            counts.most_common()]


def check_supported(graph: ModelGraph) -> None:
    missing = unsupported_ops(graph)
    if missing:
        raise UnsupportedModelError(missing, hint=HINT, what="layers")


# -- conversion ----------------------------------------------------------------------------------
class _Nodes:
    """Calls -> FrameworkNodes: tensor arguments aligned with the converter's parameters,
    constant arguments as IR constants, call options as attributes."""

    def __init__(self, g: ir.Graph, graph: ModelGraph, env: dict[str, ir.Value]):
        self.g = g
        self.graph = graph
        self.env = env
        self.used = self._used_outputs()

    def _used_outputs(self) -> dict[str, int]:
        """Call output prefix -> number of outputs the model uses (last used index + 1)."""
        used: dict[str, int] = {}
        refs = [r.key for c in self.graph.calls for r in c.tensor_refs()]
        refs += [key for _, key in self.graph.outputs]
        for key in refs:
            prefix, _, index = key.rpartition(":")
            used[prefix + ":"] = max(used.get(prefix + ":", 0), int(index) + 1)
        return used

    def value(self, x: Any, call: Call, slot: str) -> str | None:
        if x is None:
            return None
        if isinstance(x, TensorRef):
            return x.key
        key = f"{call.output_prefix}const:{slot}"
        arr = np.asarray(x)
        if arr.dtype == object or arr.dtype.kind not in "biuf":
            raise ModelLoadError(f"layer {call.origin}: argument {slot} is {x!r}, not a tensor")
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        elif arr.dtype == np.int64:
            arr = arr.astype(np.int32)
        self.env[key] = make_const(self.g, arr, f"{call.layer.name}_{slot}")
        return key

    def node(self, call: Call) -> FrameworkNode:
        attrs = layer_attributes(call)
        n_out = self.used.get(call.output_prefix, 0)
        outputs = [call.output(i) for i in range(n_out)]
        conv = registry.lookup(call.layer.key, self.graph.major)
        assert conv is not None, "check_supported runs first"
        slots: dict[str, Any] = dict.fromkeys(conv.inputs)
        extra: list[Any] = []
        for i, a in enumerate(call.args):
            if i < len(conv.inputs):
                slots[conv.inputs[i]] = a
            elif conv.variadic and i <= len(conv.inputs):
                extra += a if isinstance(a, list) else [a]
            elif i - len(conv.inputs) < len(conv.attributes):
                attrs[conv.attributes[i - len(conv.inputs)]] = a
            else:
                attrs[f"argument {i + 1}"] = a
        for k, v in call.kwargs.items():
            if k in slots:
                slots[k] = v
            elif k in conv.attributes:
                attrs[k] = v
            elif conv.variadic and isinstance(v, list) and any(isinstance(t, TensorRef)
                                                               for t in v):
                extra += v  # initial_state=[h, c]
            elif k in _CALL_DROPPED or v is None:
                continue
            else:
                attrs[k] = v
        # Keras 2 passes an RNN's initial states with its input as one list: spread a list over
        # the following parameters
        names = list(slots)
        for i, name in enumerate(names):
            a = slots[name]
            if isinstance(a, list) and a and all(isinstance(t, TensorRef) for t in a) and (
                    i + 1 < len(names) or conv.variadic):
                free = [n for n in names[i + 1:] if slots[n] is None]
                slots[name] = a[0]
                for n, t in zip(free, a[1:]):
                    slots[n] = t
                extra = list(a[1 + len(free):]) + extra
                break
        inputs = []
        for name, a in list(slots.items()) + [(f"in{i}", a) for i, a in enumerate(extra)]:
            if isinstance(a, list):
                raise ModelLoadError(f"layer {call.origin}: argument {name} is a list; "
                                     f"{call.layer.class_name} takes one tensor there")
            inputs.append(self.value(a, call, name))
        while inputs and inputs[-1] is None:
            inputs.pop()
        return FrameworkNode(call.layer.key, call.origin, inputs, outputs, attrs,
                             self.graph.major, call)


def _defaults(node: FrameworkNode) -> dict:
    conv = registry.lookup(node.op, node.version)
    missing = sorted(n for n in conv.required if n in conv.attributes and n not in node.attrs)
    if missing:
        raise OperatorAttributeRequired(f"config entry {missing[0]} is missing")
    return registry.defaults(conv)


def _value_name(origin: str) -> str:
    return origin.split(" (call")[0].replace("/", "_")


def _input_shape(name: str, declared, given: dict) -> tuple[int, ...]:
    if name in given:
        shape = tuple(int(d) for d in given[name])
        if declared is not None and len(declared) != len(shape):
            raise UsageError(f"input {name!r} has rank {len(declared)} in the model, but the "
                             f"given shape {list(shape)} has rank {len(shape)}")
        return shape
    if declared is None or any(d is None for d in declared):
        shown = "unknown" if declared is None else "[" + ",".join(
            "?" if d is None else str(d) for d in declared) + "]"
        raise UsageError(f"input {name!r} has a dynamic shape ({shown}); give its static shape")
    return tuple(int(d) for d in declared)


def convert_model(kf: KerasFile, graph: ModelGraph, shapes: dict | None, model_name: str = "",
                  const_inputs: dict | None = None) -> ir.Graph:
    """The IR graph; `shapes` are in the model's layout (NHWC), as `neo.shapes.bind_shapes`
    gives them."""
    check_supported(graph)
    given = dict(shapes or {})
    consts = dict(const_inputs or {})
    names = [m.name for m in graph.inputs]
    unknown = sorted((set(given) | set(consts)) - set(names))
    if unknown:
        raise UsageError(f"input shapes name {', '.join(unknown)}, which the model does not have; "
                         f"its inputs: {', '.join(names)}")
    g = ir.Graph(name=model_name or graph.name)
    for out_name, _ in graph.outputs:
        g.unique(out_name)  # reserved for the outputs
    env: dict[str, ir.Value] = {}
    for m in graph.inputs:
        dtype = m.dtype if m.dtype in ir.DTYPES else "float32"
        if m.name in consts:
            arr = np.asarray(consts[m.name])
            if image_rank(arr.ndim):  # given NCHW, as the compiled model would take it
                arr = np.transpose(arr, to_channels_last(arr.ndim))
            env[m.key] = make_const(g, arr.astype(ir.np_dtype(dtype)), m.name)
            continue
        shape = _input_shape(m.name, m.shape, given)
        if image_rank(len(shape)):
            nchw = tuple(shape[i] for i in to_channels_first(len(shape)))
            x = g.input(m.name, nchw, dtype)
            env[m.key] = g.op("transpose", x, perm=to_channels_last(len(shape)),
                              name=f"{m.name}_nhwc", origin=f"input {m.name} (NCHW -> NHWC)")
        else:
            env[m.key] = g.input(m.name, shape, dtype)
    nodes = _Nodes(g, graph, env)
    fw_nodes = [nodes.node(c) for c in graph.calls]

    def make_context(node: FrameworkNode) -> LayerContext:
        call: Call = node.raw
        ref, cls = call.layer.ref, call.layer.class_name
        return LayerContext(g, _value_name(node.origin), node.origin, node.op, graph.major,
                            lambda: kf.weights.layer(ref, cls), call)

    driver = Driver(g, registry.CONVERTERS, make_context, defaults=_defaults,
                    model=f"Keras model {kf.path.name}")
    driver.env.update(env)
    with kf.weights:
        driver.run(fw_nodes)
    driver.finish(hint=HINT)
    outputs = []
    for out_name, key in graph.outputs:
        if key not in driver.env:
            raise ModelLoadError(f"model output {out_name!r} is not produced by any layer")
        outputs.append(named_output(g, driver.env[key], out_name))
    g.outputs = outputs
    g.output_names = [n for n, _ in graph.outputs]
    return g

