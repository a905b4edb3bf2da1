"""Flattening a TorchScript module or an ExportedProgram into one list of `TorchNode`s.

Both formats end up the same shape: aten (and a few prim) nodes in execution order, each with its
arguments in schema order. An argument is a `Ref` to an earlier result or a graph input, or a value
known when the file is read (a Python literal, a parameter or buffer tensor, a list of those).

TorchScript modules are walked method by method (`prim::CallMethod` into the submodule's graph),
which gives every node the path of the module it belongs to (`layer1.0.conv1`); `prim::Constant`
and `prim::GetAttr` are resolved here. Nodes record the Python line that made them: the first frame
of the traced stack outside torch itself.
"""
from __future__ import annotations

import itertools
import operator
import os
import re
from dataclasses import dataclass, field
from typing import Any

from neo.ir.errors import NotSupportedError


@dataclass(frozen=True)
class Ref:
    """A value computed by the model: a graph input or a node's result."""

    key: str


@dataclass
class TorchNode:
    kind: str  # "aten::conv2d", "prim::ListConstruct", "operator::getitem"
    overload: str  # the schema's overload name ("Tensor", "int"; "" for the default one)
    args: list  # in schema order (positional parameters of prim ops)
    schema: Any  # torch._C.FunctionSchema, or None for ops without one
    outputs: list[str]  # keys of the results
    name: str  # module path and op, for messages
    source: str | None = None  # "file.py:123", where the model's code created it
    target: Any = None  # the torch callable (an OpOverload), for evaluating it on constants

    @property
    def arg_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.schema.arguments) if self.schema is not None else ()

    @property
    def inplace(self) -> bool:
        """Whether the op writes its first argument (`relu_`, `add_`, `fill_`)."""
        if self.schema is None or not self.schema.arguments:
            return False
        info = self.schema.arguments[0].alias_info
        return bool(info is not None and info.is_write) and not self.kind.endswith("__")

    @property
    def where(self) -> str:
        return f"{self.name} ({self.source})" if self.source else self.name


@dataclass
class InputInfo:
    key: str
    name: str  # input0, input1, ... (PyTorch inputs have no names of their own)
    shape: tuple[int | None, ...] | None  # None when the file does not say (TorchScript)
    dtype: str | None  # None when the file does not say


@dataclass
class ModelGraph:
    format: str  # "torchscript" or "exported"
    nodes: list[TorchNode]
    inputs: list[InputInfo]
    output: Any  # a Ref, literal, or a nested tuple/list/dict of them
    notes: list[str] = field(default_factory=list)


# -- source locations ----------------------------------------------------------------------------
_TRACE_FRAME = re.compile(r"^(?P<file>.+?)\((?P<line>\d+)\): ")
_PY_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+)')


def _torch_dir() -> str:
    import torch

    return os.path.dirname(os.path.abspath(torch.__file__)) + os.sep


def _pick_frame(frames: list[tuple[str, str]]) -> str | None:
    """The first frame outside torch's own code (the user's or torchvision's line)."""
    if not frames:
        return None
    torch_dir = _torch_dir()
    for file, line in frames:
        if not os.path.abspath(file).startswith(torch_dir) and not file.startswith("<"):
            return f"{file}:{line}"
    file, line = frames[0]
    return f"{file}:{line}"


def script_source(node) -> str | None:
    """The Python line of a TorchScript node, innermost frame first in its recorded stack."""
    try:
        text = node.sourceRange()
    except RuntimeError:
        return None
    if not text:
        return None
    frames = [(m["file"], m["line"]) for m in map(_TRACE_FRAME.match, text.splitlines()) if m]
    if frames:
        return _pick_frame(frames)
    m = _PY_FRAME.search(text)  # scripted code or a serialized range
    return f"{m['file']}:{m['line']}" if m else None


def fx_source(node) -> str | None:
    """The Python line of an exported-program node (its stack trace lists the innermost last)."""
    text = node.meta.get("stack_trace") or ""
    frames = [(m["file"], m["line"]) for m in _PY_FRAME.finditer(text)]
    return _pick_frame(frames[::-1])


# -- TorchScript ---------------------------------------------------------------------------------
_SCHEMAS: dict[str, Any] = {}


def _parse_schema(text: str):
    import torch

    if text not in _SCHEMAS:
        _SCHEMAS[text] = torch._C.parse_schema(text)
    return _SCHEMAS[text]


class _ScriptWalker:
    def __init__(self):
        self.nodes: list[TorchNode] = []
        self.paths: dict[int, str] = {}
        self.frames = itertools.count()
        self.names: dict[str, int] = {}
        self.keep: list[Any] = []  # module objects whose ids are in `paths`

    def path_of(self, obj) -> str:
        return self.paths.get(id(obj), "")

    def node_name(self, path: str, kind: str) -> str:
        base = f"{path}/{kind.split('::')[-1]}" if path else kind.split("::")[-1]
        n = self.names.get(base, 0)
        self.names[base] = n + 1
        return base if n == 0 else f"{base}#{n}"

    def walk(self, graph, args: list[Any], path: str) -> list[Any]:
        """Flatten one method's graph called with `args` (self first); returns its results."""
        import torch

        if any(n.kind() == "prim::CallFunction" for n in graph.nodes()):
            # Scripted code calls TorchScript functions; inline them (and methods) in a copy.
            graph = graph.copy()
            torch._C._jit_pass_inline(graph)
        env = {v.unique(): a for v, a in zip(graph.inputs(), args)}
        self.walk_nodes(graph.nodes(), env, next(self.frames), path)
        return [env[v.unique()] for v in graph.outputs()]

    def walk_nodes(self, nodes, env: dict[int, Any], frame: int, path: str) -> None:
        import torch

        for n in nodes:
            kind = n.kind()
            outs = list(n.outputs())
            if kind == "prim::Constant":
                env[outs[0].unique()] = _constant(n)
            elif kind == "prim::GetAttr":
                obj = env[next(n.inputs()).unique()]
                val = getattr(obj, n.s("name"))
                if isinstance(val, torch.jit.ScriptModule):
                    self.paths[id(val)] = _join(self.path_of(obj), n.s("name"))
                    self.keep.append(val)
                elif isinstance(val, torch.Tensor):
                    val = val.detach()
                env[outs[0].unique()] = val
            elif kind == "prim::CallMethod":
                args = [env[v.unique()] for v in n.inputs()]
                method = getattr(args[0], n.s("name"))
                results = self.walk(method.graph, args, self.path_of(args[0]))
                for o, r in zip(outs, results):
                    env[o.unique()] = r
            elif kind == "prim::If" and not isinstance(env[n.inputsAt(0).unique()], Ref):
                # A condition known now (scripted `if inplace:`): only the branch taken.
                block = list(n.blocks())[0 if env[n.inputsAt(0).unique()] else 1]
                self.walk_nodes(block.nodes(), env, frame, path)
                for o, r in zip(outs, block.outputs()):
                    env[o.unique()] = env[r.unique()]
            else:
                args = [env[v.unique()] for v in n.inputs()]
                keys = [f"{frame}:{o.unique()}:{o.debugName()}" for o in outs]
                schema_text = n.schema()
                schema = None if schema_text == "(no schema)" else _parse_schema(schema_text)
                self.nodes.append(TorchNode(
                    kind, schema.overload_name if schema is not None else "", args, schema, keys,
                    self.node_name(path, kind), script_source(n)))
                for o, k in zip(outs, keys):
                    env[o.unique()] = Ref(k)


def _join(a: str, b: str) -> str:
    return f"{a}.{b}" if a else b


def _constant(node) -> Any:
    import torch

    value = node.output().toIValue()
    if isinstance(value, torch.Tensor):
        value = value.detach()
    return value


def walk_torchscript(module) -> ModelGraph:
    graph = module.graph
    walker = _ScriptWalker()
    walker.paths[id(module)] = ""
    params = list(graph.inputs())
    args: list[Any] = [module]
    inputs = []
    for i, v in enumerate(params[1:]):
        kind = v.type().kind()
        if kind not in ("TensorType",):
            raise NotSupportedError(
                f"TorchScript input {i} ({v.debugName()}) is a {v.type()}; Neo compiles models "
                "whose inputs are tensors", hint="trace a wrapper module that takes the tensors "
                "one by one and builds the structure inside forward")
        inputs.append(InputInfo(f"input{i}", f"input{i}", None, None))
        args.append(Ref(f"input{i}"))
    outs = walker.walk(graph, args, "")
    output = outs[0] if len(outs) == 1 else tuple(outs)
    return ModelGraph("torchscript", walker.nodes, inputs, output)


# -- exported programs (torch.export) ------------------------------------------------------------
def _bind_fx_args(schema, args: tuple, kwargs: dict) -> list:
    out = []
    positional = [a for a in schema.arguments if not a.kwarg_only]
    for i, a in enumerate(schema.arguments):
        if not a.kwarg_only and i < len(args) and i < len(positional):
            out.append(args[i])
        elif a.name in kwargs:
            out.append(kwargs[a.name])
        elif a.has_default_value():
            out.append(a.default_value)
        else:
            out.append(None)
    return out


def _fx_module_path(node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    # torch.export spells list indices as attribute accesses: "layer1.0" or "L['self'].layer1[0]"
    return re.sub(r"\[(\d+)\]", r".\1", str(path)).replace("L['self'].", "")


def walk_exported(ep) -> ModelGraph:
    import torch
    from torch.fx.node import map_arg
    from torch.utils import _pytree

    sig = ep.graph_signature
    params = dict(sig.inputs_to_parameters)
    buffers = dict(sig.inputs_to_buffers)
    lifted = dict(sig.inputs_to_lifted_tensor_constants)
    user_inputs = list(sig.user_inputs)
    state = ep.state_dict
    constants = ep.constants
    env: dict[str, Any] = {}
    nodes: list[TorchNode] = []
    inputs: list[InputInfo] = []
    output: Any = None

    def tensor_of(fqn: str):
        t = state[fqn] if fqn in state else constants[fqn]
        return t.detach() if isinstance(t, torch.Tensor) else t

    for node in ep.graph.nodes:
        if node.op == "placeholder":
            if node.name in params:
                env[node.name] = tensor_of(params[node.name])
            elif node.name in buffers:
                env[node.name] = tensor_of(buffers[node.name])
            elif node.name in lifted:
                env[node.name] = tensor_of(lifted[node.name])
            elif node.name in user_inputs:
                i = user_inputs.index(node.name)
                val = node.meta.get("val")
                if not isinstance(val, torch.Tensor):
                    raise NotSupportedError(
                        f"exported program input {i} ({node.name}) is {type(val).__name__}, not a "
                        "tensor; Neo compiles models whose inputs are tensors")
                shape = tuple(int(d) if isinstance(d, int) else None for d in val.shape)
                dtype = str(val.dtype).replace("torch.", "")
                inputs.append(InputInfo(f"input{i}", f"input{i}", shape, dtype))
                env[node.name] = Ref(f"input{i}")
            else:
                raise NotSupportedError(f"exported program input {node.name} is neither a user "
                                        "input, a parameter, a buffer nor a tensor constant")
        elif node.op == "get_attr":
            env[node.name] = getattr(ep.graph_module, str(node.target))
        elif node.op == "call_function":
            target = node.target
            args = map_arg(node.args, lambda n: env[n.name])
            kwargs = map_arg(node.kwargs, lambda n: env[n.name])
            if isinstance(target, torch._ops.OpOverload):
                schema = target._schema
                kind, overload = schema.name, schema.overload_name
                bound = _bind_fx_args(schema, tuple(args), dict(kwargs))
            elif target is operator.getitem:
                schema, kind, overload, bound = None, "operator::getitem", "", list(args)
            else:
                ns = "higher_order" if isinstance(target, torch._ops.HigherOrderOperator) else (
                    "python")
                schema, overload, bound = None, "", list(args)
                kind = f"{ns}::{getattr(target, '__name__', str(target))}"
            path = _fx_module_path(node)
            nodes.append(TorchNode(kind, overload, bound, schema, [node.name],
                                   f"{path}/{node.name}" if path else node.name, fx_source(node),
                                   target if schema is not None else None))
            env[node.name] = Ref(node.name)
        elif node.op == "output":
            flat = list(map_arg(node.args[0], lambda n: env[n.name]))
            from torch.export.graph_signature import OutputKind

            user = [v for v, spec in zip(flat, sig.output_specs)
                    if spec.kind == OutputKind.USER_OUTPUT]
            try:
                output = _pytree.tree_unflatten(user, ep.call_spec.out_spec)
            except (TypeError, ValueError, AttributeError):
                output = tuple(user) if len(user) != 1 else user[0]
        else:
            raise NotSupportedError(f"exported program node {node.name} ({node.op}) is not "
                                    "supported")
    return ModelGraph("exported", nodes, inputs, output)
