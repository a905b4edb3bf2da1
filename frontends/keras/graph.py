"""A Keras model config as one flat list of layer calls, every dialect read.

Keras records a model as layers, each with the calls ("inbound nodes") that connect it; a tensor
is named by (layer, node index, tensor index). This module reads:

- Functional models: Keras 2 inbound nodes (`[[["conv1", 0, 0, {kwargs}], ...]]`, or the bare
  structure of the first argument for `TFOpLambda`), Keras 2.0's three-element references, and
  Keras 3's `{"args": [...], "kwargs": {...}}` with `__keras_tensor__` entries;
- Sequential models: a list of layers (Keras 2.0-2.2: the config itself is the list), the input
  from an InputLayer or the first layer's `batch_input_shape` / `batch_shape`;
- nested models (a model used as a layer): their layers are inlined under a scope, once per call,
  sharing weights; Keras 2 numbers the calls of a nested graph network from 1 (its own first node
  is not saved);
- shared layers: one call per inbound node, all with the layer's weights;
- Keras 3 operations (`keras.ops.add(x, 3.0)` in a functional model, module `keras.src.ops.*`)
  and Keras 2 `TFOpLambda` / `SlicingOpLambda` layers (`tf.math.add`, `x[:, 1:]`).

`read_graph(keras_file)` returns a `ModelGraph`: inputs, calls in topological order, outputs.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from neo.ir.errors import ModelLoadError

from .reader import MODEL_CLASSES, KerasFile, LayerRef, ModelRef

# Layers whose Keras 2 inbound node is the structure of their first argument, not a list of
# inputs (`_preserve_input_structure_in_config`).
_PRESERVE_STRUCTURE = frozenset({"TFOpLambda", "SlicingOpLambda"})
_CONSTANT_VALUE = "_CONSTANT_VALUE"


@dataclass(frozen=True)
class TensorRef:
    """A tensor of the graph, by its value key."""

    key: str


@dataclass(frozen=True)
class SliceSpec:
    """One `start:stop:step` of an indexing expression."""

    start: int | None
    stop: int | None
    step: int | None


@dataclass
class Layer:
    name: str
    class_name: str
    key: str  # the converter registry key
    config: dict
    ref: LayerRef  # where its weights are
    is_layer: bool = True  # False for Keras 3 operations (keras.ops.*), which have no weights
    module: str | None = None
    registered_name: str | None = None


@dataclass
class Call:
    """One call of a layer: its arguments (nested lists/dicts of TensorRef and constants)."""

    layer: Layer
    origin: str
    args: list
    kwargs: dict
    output_prefix: str  # the call's outputs are f"{output_prefix}{tensor_index}"

    def output(self, index: int) -> str:
        return f"{self.output_prefix}{index}"

    def tensor_refs(self) -> Iterator[TensorRef]:
        yield from _refs(self.args)
        yield from _refs(self.kwargs)


@dataclass
class ModelInput:
    name: str
    shape: tuple[int | None, ...] | None
    dtype: str
    key: str


@dataclass
class ModelGraph:
    name: str
    class_name: str
    major: int
    inputs: list[ModelInput] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (name, value key)


def _refs(x: Any) -> Iterator[TensorRef]:
    if isinstance(x, TensorRef):
        yield x
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _refs(v)
    elif isinstance(x, dict):
        for v in x.values():
            yield from _refs(v)


def _layer_name(entry: dict) -> str:
    cfg = entry.get("config")
    name = entry.get("name") or (cfg.get("name") if isinstance(cfg, dict) else None)
    if not name:
        raise ModelLoadError(f"a {entry.get('class_name', 'layer')} in the model config has no name")
    return str(name)


def _ref_triples(value: Any) -> list[list]:
    """input_layers / output_layers: one [name, node, tensor] or a list (or dict) of them."""
    if value is None:
        return []
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list) and value and isinstance(value[0], str):
        return [value]
    return [list(v) for v in value]


def is_model(entry: dict) -> bool:
    return entry.get("class_name") in MODEL_CLASSES and isinstance(entry.get("config"), (dict, list))


def _is_operation(entry: dict, major: int) -> bool:
    """A Keras 3 operation (keras.ops.*) recorded in a functional model, not a layer."""
    module = entry.get("module")
    if module is not None:
        return str(module).startswith("keras.src.ops")
    cfg = entry.get("config")
    # Keras 3 .h5 files drop the module; layers always have `trainable` in their config
    return (major >= 3 and isinstance(cfg, dict) and "trainable" not in cfg
            and entry.get("class_name") != "InputLayer")


def registry_key(entry: dict, major: int) -> str:
    cls = str(entry.get("class_name"))
    cfg = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    if _is_operation(entry, major):
        return f"keras.ops.{cls}"
    if cls in _PRESERVE_STRUCTURE:
        return f"tf.{cfg.get('function')}"
    module = entry.get("module")
    registered = entry.get("registered_name")
    if module and not str(module).startswith(("keras", "tf_keras", "tensorflow")):
        return str(registered or f"{module}.{cls}")
    if registered and ">" in str(registered):  # a custom object registered under a package
        return str(registered)
    return cls


class _Builder:
    def __init__(self, kf: KerasFile):
        self.kf = kf
        self.major = kf.major
        self.calls: list[Call] = []
        self.aliases: dict[str, str] = {}

    # -- references ------------------------------------------------------------------------------
    def key(self, scope: str, layer: str, node: int, tensor: int) -> str:
        return f"{self.prefix(scope, layer, node)}{tensor}"

    def prefix(self, scope: str, layer: str, node: int) -> str:
        """The value keys of one call's outputs are this prefix + the tensor index."""
        return f"{scope}{layer}:{node}:"

    def parse_k3(self, x: Any, scope: str) -> Any:
        if isinstance(x, dict):
            cls = x.get("class_name")
            cfg = x.get("config") if isinstance(x.get("config"), dict) else {}
            if cls == "__keras_tensor__":
                name, node, tensor = cfg["keras_history"]
                return TensorRef(self.key(scope, name, int(node), int(tensor)))
            if cls == "__slice__":
                return SliceSpec(cfg.get("start"), cfg.get("stop"), cfg.get("step"))
            if cls == "__ellipsis__":
                return Ellipsis
            if cls in ("__tuple__", "__list__"):
                return [self.parse_k3(v, scope) for v in cfg.get("value", [])]
            if cls == "__numpy__":
                import numpy as np

                return np.asarray(cfg.get("value"), dtype=cfg.get("dtype"))
            return {k: self.parse_k3(v, scope) for k, v in x.items()}
        if isinstance(x, list):
            return [self.parse_k3(v, scope) for v in x]
        return x

    def parse_k2_value(self, x: Any, scope: str, names: set[str]) -> Any:
        """A kwargs value: [layer, node, tensor] of a known layer is a tensor."""
        if (isinstance(x, list) and len(x) == 3 and isinstance(x[0], str) and x[0] in names
                and isinstance(x[1], int) and isinstance(x[2], int)):
            return TensorRef(self.key(scope, x[0], x[1], x[2]))
        if isinstance(x, list):
            return [self.parse_k2_value(v, scope, names) for v in x]
        if isinstance(x, dict):
            if set(x) == {"start", "stop", "step"}:  # a SlicingOpLambda slice_spec entry
                return SliceSpec(x["start"], x["stop"], x["step"])
            return {k: self.parse_k2_value(v, scope, names) for k, v in x.items()}
        return x

    def parse_k2_node(self, data: Any, class_name: str, scope: str, names: set[str]
                      ) -> tuple[list, dict]:
        kwargs: dict = {}

        def is_spec(x: Any) -> bool:
            return (isinstance(x, list) and len(x) in (3, 4) and isinstance(x[0], str)
                    and isinstance(x[1], int) and (x[0] == _CONSTANT_VALUE or isinstance(x[2], int)))

        def spec(x: list) -> Any:
            if len(x) == 4 and isinstance(x[3], dict):
                kwargs.update(x[3])
            if x[0] == _CONSTANT_VALUE:
                return x[2]
            return TensorRef(self.key(scope, x[0], x[1], x[2]))

        def walk(x: Any) -> Any:
            if is_spec(x):
                return spec(x)
            if isinstance(x, list):
                return [walk(v) for v in x]
            if isinstance(x, dict):
                return {k: walk(v) for k, v in x.items()}
            return x

        if class_name in _PRESERVE_STRUCTURE:
            first = walk(data)
        else:
            items = [walk(v) for v in data]
            first = items[0] if len(items) == 1 else items
        return [first], {k: self.parse_k2_value(v, scope, names) for k, v in kwargs.items()}

    def node_args(self, node: Any, class_name: str, scope: str, names: set[str]
                  ) -> tuple[list, dict]:
        if isinstance(node, dict) and ("args" in node or "kwargs" in node):
            return (self.parse_k3(list(node.get("args", [])), scope),
                    self.parse_k3(dict(node.get("kwargs", {})), scope))
        return self.parse_k2_node(node, class_name, scope, names)

    # -- layers ----------------------------------------------------------------------------------
    def make_layer(self, entry: dict, models: tuple[ModelRef, ...]) -> Layer:
        name = _layer_name(entry)
        cfg = entry.get("config") if isinstance(entry.get("config"), dict) else {}
        op = _is_operation(entry, self.major)
        return Layer(name, str(entry.get("class_name")), registry_key(entry, self.major), cfg,
                     LayerRef(name, str(entry.get("class_name")), models), not op,
                     entry.get("module"), entry.get("registered_name"))

    def model_ref(self, name: str, class_name: str, layers: list[dict]) -> ModelRef:
        return ModelRef(name, class_name,
                        [(_layer_name(e), str(e.get("class_name")),
                          not _is_operation(e, self.major)) for e in layers],
                        frozenset(_leaf_names(layers)))

    def skips_first_node(self, entry: dict) -> bool:
        """Keras 2 leaves out a nested graph network's own first node, so its saved calls are
        numbered from 1."""
        if self.major >= 3 or not is_model(entry):
            return False
        if entry["class_name"] != "Sequential":
            return True
        layers = _sequential_layers(entry["config"])
        return bool(layers) and (layers[0].get("class_name") == "InputLayer"
                                 or _declared_input_shape(layers[0].get("config", {})) is not None)

    def functional(self, cfg: dict, name: str, class_name: str, scope: str,
                   models: tuple[ModelRef, ...], bound: list[str] | None) -> tuple[
                       list[ModelInput], list[str]]:
        """Add the calls of a functional model under `scope`; its inputs are `bound` (value keys)
        when nested, else new model inputs. Returns (model inputs, output keys)."""
        layers = list(cfg.get("layers") or [])
        names = {_layer_name(e) for e in layers}
        here = models + (self.model_ref(name, class_name, layers),)
        input_refs = _ref_triples(cfg.get("input_layers"))
        model_inputs: list[ModelInput] = []
        input_keys = {}
        for i, (lname, node, tensor) in enumerate(input_refs[:len(input_refs)]):
            key = self.key(scope, lname, node, tensor)
            input_keys[lname] = key
            if bound is not None:
                if i >= len(bound):
                    raise ModelLoadError(f"nested model {name!r} takes {len(input_refs)} inputs "
                                         f"but is called with {len(bound)}")
                self.aliases[key] = bound[i]
        for entry in layers:
            lname = _layer_name(entry)
            if entry.get("class_name") == "InputLayer":
                if lname not in input_keys:
                    continue
                if bound is None:
                    shape, dtype = _input_spec(entry.get("config", {}))
                    model_inputs.append(ModelInput(lname, shape, dtype, input_keys[lname]))
                continue
            inbound = entry.get("inbound_nodes") or []
            offset = 1 if self.skips_first_node(entry) else 0
            for k, node in enumerate(inbound):
                args, kwargs = self.node_args(node, str(entry.get("class_name")), scope, names)
                index = k + offset
                origin = f"{scope}{lname}" + (f" (call {k + 1})" if len(inbound) > 1 else "")
                if is_model(entry):
                    self.nested(entry, f"{scope}{lname}#{index}/", here, args, kwargs,
                                self.prefix(scope, lname, index), origin)
                else:
                    layer = self.make_layer(entry, here)
                    self.calls.append(Call(layer, origin, args, kwargs,
                                           self.prefix(scope, lname, index)))
        if bound is None and len(model_inputs) != len(input_refs):
            missing = sorted(set(input_keys) - {m.name for m in model_inputs})
            raise ModelLoadError(f"model inputs {missing} have no InputLayer in the config")
        outs = [self.key(scope, n, node, t) for n, node, t in _ref_triples(cfg.get("output_layers"))]
        if not outs:
            raise ModelLoadError(f"model {name!r} has no outputs in its config")
        return model_inputs, outs

    def sequential(self, cfg: dict | list, name: str, scope: str, models: tuple[ModelRef, ...],
                   bound: list[str] | None) -> tuple[list[ModelInput], list[str]]:
        layers = _sequential_layers(cfg)
        if not layers:
            raise ModelLoadError(f"Sequential model {name!r} has no layers")
        here = models + (self.model_ref(name, "Sequential", layers),)
        model_inputs: list[ModelInput] = []
        first = layers[0]
        if first.get("class_name") == "InputLayer":
            in_name = _layer_name(first)
            layers = layers[1:]
            spec = _input_spec(first.get("config", {}))
        else:
            in_name = f"{_layer_name(first)}_input"
            declared = _declared_input_shape(first.get("config", {}))
            if declared is None and isinstance(cfg, dict):
                declared = cfg.get("build_input_shape")
            if declared is None and bound is None:
                raise ModelLoadError(f"Sequential model {name!r} was never built: its config "
                                     "declares no input shape", hint="give its first layer an "
                                     "input shape (keras.Input) before saving")
            dtype = first.get("config", {}).get("dtype")
            spec = (None if declared is None else tuple(declared),
                    dtype if isinstance(dtype, str) and dtype in _INPUT_DTYPES else "float32")
        key = self.key(scope, in_name, 0, 0)
        if bound is None:
            model_inputs.append(ModelInput(in_name, spec[0], spec[1], key))
        else:
            self.aliases[key] = bound[0]
        prev = key
        for entry in layers:
            lname = _layer_name(entry)
            origin = f"{scope}{lname}"
            out_prefix = self.prefix(scope, lname, 0)
            if is_model(entry):
                self.nested(entry, f"{scope}{lname}#0/", here, [TensorRef(prev)], {}, out_prefix,
                            origin)
            else:
                self.calls.append(Call(self.make_layer(entry, here), origin, [TensorRef(prev)],
                                       {}, out_prefix))
            prev = out_prefix + "0"
        return model_inputs, [prev]

    def nested(self, entry: dict, scope: str, models: tuple[ModelRef, ...], args: list,
               kwargs: dict, out_prefix: str, origin: str) -> None:
        """Inline one call of a nested model: its outputs alias `out_prefix` + index."""
        bound = [r.key for r in _refs(args[:1])]
        if not bound:
            raise ModelLoadError(f"nested model {origin} is called without tensor inputs")
        name = _layer_name(entry)
        if entry["class_name"] == "Sequential":
            _, outs = self.sequential(entry["config"], name, scope, models, bound)
        else:
            _, outs = self.functional(entry["config"], name, entry["class_name"], scope, models,
                                      bound)
        for i, o in enumerate(outs):
            self.aliases[f"{out_prefix}{i}"] = o

    def resolve(self, key: str) -> str:
        seen = set()
        while key in self.aliases and key not in seen:
            seen.add(key)
            key = self.aliases[key]
        return key


_INPUT_DTYPES = frozenset({"float32", "float16", "float64", "bfloat16", "int8", "int16", "int32",
                           "int64", "uint8", "bool"})


def _declared_input_shape(cfg: dict) -> list | None:
    for k in ("batch_input_shape", "batch_shape"):
        if cfg.get(k) is not None:
            return list(cfg[k])
    if cfg.get("input_shape") is not None:
        return [None, *cfg["input_shape"]]
    return None


def _input_spec(cfg: dict) -> tuple[tuple[int | None, ...] | None, str]:
    shape = _declared_input_shape(cfg)
    dtype = cfg.get("dtype") or "float32"
    if isinstance(dtype, dict):  # a dtype policy
        dtype = (dtype.get("config") or {}).get("name", "float32")
    return (None if shape is None else tuple(None if d is None else int(d) for d in shape),
            str(dtype))


def _sequential_layers(cfg: dict | list) -> list[dict]:
    return list(cfg if isinstance(cfg, list) else cfg.get("layers") or [])


def _leaf_names(layers: list[dict]) -> Iterator[str]:
    for e in layers:
        if is_model(e):
            yield from _leaf_names(_sequential_layers(e["config"]))
        else:
            yield _layer_name(e)


def read_graph(kf: KerasFile) -> ModelGraph:
    """The model's inputs, calls (topologically sorted) and outputs."""
    top = kf.config
    cls = str(top.get("class_name"))
    cfg = top.get("config")
    if cls not in MODEL_CLASSES or cfg is None:
        raise ModelLoadError(f"{kf.path}: the config is a {cls}, not a Sequential or functional "
                             "model", hint="subclassed models have no graph in their config; "
                             "build the model with the functional API or Sequential")
    b = _Builder(kf)
    name = (cfg.get("name") if isinstance(cfg, dict) else None) or "model"
    if cls == "Sequential":
        inputs, outs = b.sequential(cfg, name, "", (), None)
    else:
        if not isinstance(cfg, dict) or "layers" not in cfg:
            raise ModelLoadError(f"{kf.path}: the {cls} config has no layers (a subclassed "
                                 "model?)", hint="build the model with the functional API")
        inputs, outs = b.functional(cfg, name, cls, "", (), None)
    calls = _toposort(b, inputs)
    graph = ModelGraph(name, cls, kf.major, inputs, calls)
    names = _output_names(outs)
    graph.outputs = [(n, b.resolve(o)) for n, o in zip(names, outs)]
    return graph


def _output_names(outs: list[str]) -> list[str]:
    """The layer name of each output (Keras's `output_names`), made unique."""
    names, used = [], set()
    for o in outs:
        base = o.rsplit(":", 2)[0].rsplit("/", 1)[-1]
        n, k = base, 1
        while n in used:
            n, k = f"{base}_{k}", k + 1
        used.add(n)
        names.append(n)
    return names


def _toposort(b: _Builder, inputs: list[ModelInput]) -> list[Call]:
    """Calls in an order where every tensor is made before it is used (configs list a shared
    layer once, with calls that need layers listed after it)."""
    for c in b.calls:
        c.args = _resolve(b, c.args)
        c.kwargs = _resolve(b, c.kwargs)
    producer = {}
    for i, c in enumerate(b.calls):
        producer[c.output_prefix] = i
    available = {m.key for m in inputs}
    done = [False] * len(b.calls)
    order: list[Call] = []
    progress = True
    while progress:
        progress = False
        for i, c in enumerate(b.calls):
            if done[i]:
                continue
            if all(r.key in available or _made_by(r.key, producer, done) for r in c.tensor_refs()):
                done[i] = True
                order.append(c)
                available.add(c.output_prefix)
                progress = True
    if len(order) != len(b.calls):
        stuck = next(c for i, c in enumerate(b.calls) if not done[i])
        missing = [r.key for r in stuck.tensor_refs()
                   if r.key not in available and not _made_by(r.key, producer, done)]
        raise ModelLoadError(f"layer {stuck.origin} uses tensor {missing[0].rsplit('/', 1)[-1]}, "
                             "which no layer of the model makes")
    return order


def _made_by(key: str, producer: dict[str, int], done: list[bool]) -> bool:
    prefix = key[:key.rfind(":") + 1]
    i = producer.get(prefix)
    return i is not None and done[i]


def _resolve(b: _Builder, x: Any) -> Any:
    if isinstance(x, TensorRef):
        return TensorRef(b.resolve(x.key))
    if isinstance(x, list):
        return [_resolve(b, v) for v in x]
    if isinstance(x, dict):
        return {k: _resolve(b, v) for k, v in x.items()}
    return x
