"""Checking a PyTorch model for unsupported ops, and the conversion driver.

Nodes whose arguments are all known when the file is read (weights, literals, and the static shapes
of inputs) are evaluated by torch itself, with its own semantics, views and in-place writes
included: a Swin attention mask built with `new_zeros` and slice assignments ends up one constant.
Every other node goes through its converter. So only ops that touch run-time values need
converters, and only those are reported as unsupported.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np

from neo import ir
from neo.ir.errors import ModelLoadError, UnsupportedModelError, UnsupportedOp, UsageError

from ..common.errors import ConversionProblem, OperatorNotImplemented, Problems
from . import registry
from .context import AttributeNotImplemented, Missing, NodeContext, dtype_name, make_const
from .walker import ModelGraph, Ref, TorchNode

MAX_NAMES = 3  # node names shown per unsupported op

# Ops whose result depends only on the static shape and dtype of their tensor arguments.
SHAPE_ONLY = frozenset({
    "aten::size", "aten::sym_size", "aten::numel", "aten::sym_numel", "aten::dim",
    "aten::new_zeros", "aten::new_ones", "aten::new_full", "aten::new_empty", "aten::zeros_like",
    "aten::ones_like", "aten::full_like", "aten::empty_like", "aten::is_floating_point",
    "prim::device", "prim::dtype", "prim::layout",
})

# Ops that only pack and unpack values: a Missing result may pass through them unused.
STRUCTURAL = frozenset({
    "prim::ListConstruct", "prim::TupleConstruct", "prim::DictConstruct", "prim::ListUnpack",
    "prim::TupleUnpack", "prim::TupleIndex", "operator::getitem", "aten::__getitem__",
})

# Ops whose result may share storage with their first argument (for the in-place check).
VIEW_OPS = frozenset({
    "aten::view", "aten::reshape", "aten::_reshape_alias", "aten::slice", "aten::select",
    "aten::transpose", "aten::permute", "aten::unsqueeze", "aten::squeeze", "aten::expand",
    "aten::expand_as", "aten::flatten", "aten::unflatten", "aten::narrow", "aten::t",
    "aten::as_strided", "aten::view_as", "aten::reshape_as", "aten::detach", "aten::alias",
    "aten::diagonal", "aten::chunk", "aten::split", "aten::split_with_sizes", "aten::unbind",
    "aten::swapaxes", "aten::swapdims", "aten::movedim", "aten::contiguous", "aten::to",
    "aten::type_as", "aten::unfold", "prim::ListUnpack", "prim::TupleUnpack", "operator::getitem",
    "aten::__getitem__",
})

IN_PLACE_CONSTANT = ("an in-place write of run-time values into a parameter or buffer (a state "
                     "kept between calls) is not implemented")
IN_PLACE_VIEW = ("an in-place write into a tensor that shares storage with another one used "
                 "afterwards (a view, x[...] = y) is not implemented")


# -- walking arguments -----------------------------------------------------------------------------
def iter_refs(arg) -> Iterator[Ref]:
    if isinstance(arg, Ref):
        yield arg
    elif isinstance(arg, (list, tuple)):
        for a in arg:
            yield from iter_refs(a)
    elif isinstance(arg, dict):
        for a in arg.values():
            yield from iter_refs(a)


def _map(arg, fn):
    if isinstance(arg, list):
        return [_map(a, fn) for a in arg]
    if isinstance(arg, tuple):
        return tuple(_map(a, fn) for a in arg)
    if isinstance(arg, dict):
        return {k: _map(v, fn) for k, v in arg.items()}
    return fn(arg)


def _any(arg, pred) -> bool:
    if isinstance(arg, (list, tuple)):
        return any(_any(a, pred) for a in arg)
    if isinstance(arg, dict):
        return any(_any(a, pred) for a in arg.values())
    return pred(arg)


def _find_missing(arg) -> Missing | None:
    found: list[Missing] = []
    _any(arg, lambda a: isinstance(a, Missing) and not found.append(a))
    return found[0] if found else None


def _is_runtime(x) -> bool:
    return isinstance(x, ir.Value) and not x.is_const


def torch_target(node: TorchNode):
    """The torch callable of an aten node (None for prim ops and unknown ops)."""
    if node.target is not None or node.schema is None:
        return node.target
    ns, _, name = node.kind.partition("::")
    if ns != "aten":
        return None
    import torch

    try:
        packet = getattr(torch.ops.aten, name)
        node.target = getattr(packet, node.overload or "default")
    except (AttributeError, RuntimeError):
        return None
    return node.target


# -- checking --------------------------------------------------------------------------------------
def runtime_keys(model: ModelGraph) -> set[str]:
    """Keys of the values that depend on the model's input data (not only on its shapes)."""
    rt = {i.key for i in model.inputs}
    for node in model.nodes:
        if node.kind in SHAPE_ONLY:
            continue
        if any(r.key in rt for r in iter_refs(node.args)):
            rt.update(node.outputs)
            if node.inplace and node.args and isinstance(node.args[0], Ref):
                rt.add(node.args[0].key)
    return rt


def needs_converter(node: TorchNode, rt: set[str]) -> bool:
    if node.kind in SHAPE_ONLY:
        return torch_target(node) is None
    return torch_target(node) is None or any(r.key in rt for r in iter_refs(node.args))


def _inplace_view_problems(model: ModelGraph, rt: set[str]) -> list[tuple[TorchNode, str]]:
    """In-place writes into a tensor that shares storage with another one used afterwards: the
    write would have to show through the other one, which a dataflow graph cannot express."""
    root: dict[str, str] = {}
    born: dict[str, int] = {}
    last_use: dict[str, int] = {}
    for i, node in enumerate(model.nodes):
        for r in iter_refs(node.args):
            last_use[r.key] = i
        for k in node.outputs:
            born[k] = i
    problems = []
    for i, node in enumerate(model.nodes):
        first = node.args[0] if node.args else None
        if node.kind in VIEW_OPS and isinstance(first, Ref):
            for k in node.outputs:
                root[k] = root.get(first.key, first.key)
        if node.inplace and not isinstance(first, Ref) and any(
                r.key in rt for r in iter_refs(node.args)):
            problems.append((node, IN_PLACE_CONSTANT))
            continue
        if not (node.inplace and isinstance(first, Ref) and first.key in rt):
            continue
        base = root.get(first.key, first.key)
        group = [k for k, r in root.items() if r == base and born.get(k, -1) < i]
        group.append(base)
        if any(k != first.key and last_use.get(k, -1) > i for k in group):
            problems.append((node, IN_PLACE_VIEW))
    return problems


def unsupported_ops(model: ModelGraph) -> list[UnsupportedOp]:
    """Every op that touches run-time values and has no converter, with counts and places."""
    rt = runtime_keys(model)
    counts: Counter[str] = Counter()
    names: dict[str, list[str]] = {}
    sources: dict[str, str | None] = {}
    reasons: dict[str, str | None] = {}

    def note(node, reason: str | None, first_reason_wins: bool) -> None:
        key = node.kind
        counts[key] += 1
        names.setdefault(key, [])
        if len(names[key]) < MAX_NAMES:
            names[key].append(node.name)
        sources.setdefault(key, node.source)
        if first_reason_wins:
            reasons.setdefault(key, reason)
        else:
            reasons[key] = reason

    for node in model.nodes:
        if needs_converter(node, rt) and registry.lookup(node.kind, node.overload) is None:
            note(node, _reason(node), True)
    for node, reason in _inplace_view_problems(model, rt):
        note(node, reason, False)
    return [UnsupportedOp(op, n, names[op], sources[op], reasons[op])
            for op, n in counts.most_common()]


def _reason(node: TorchNode) -> str | None:
    if node.kind in ("prim::If", "prim::Loop"):
        return ("control flow from torch.jit.script; trace the model with torch.jit.trace so that "
                "the graph is straight-line")
    if node.kind.startswith("higher_order::"):
        return "control flow or a higher-order op in the exported program"
    return None


def check_supported(model: ModelGraph) -> None:
    missing = unsupported_ops(model)
    if missing:
        raise UnsupportedModelError(
            missing, hint="`neo inspect model.pth` lists the ops of a model; "
                          "please report the ops you need")


# -- conversion ------------------------------------------------------------------------------------
def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, ir.Value) or isinstance(b, ir.Value):
        return False
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b))) or (
            np.ndim(a) != np.ndim(b) and bool(np.all(np.asarray(a) == np.asarray(b))))
    except (TypeError, ValueError):
        return False


def _short(value) -> str:
    text = repr(value) if not isinstance(value, ir.Value) else f"a tensor {value.type}"
    return text if len(text) <= 40 else text[:37] + "..."


class _Driver:
    def __init__(self, g: ir.Graph, model: ModelGraph):
        self.g = g
        self.model = model
        self.env: dict[str, Any] = {}
        self.failed: set[str] = set()
        self.problems = Problems()
        self._consts: dict[int, tuple[int, Any, ir.Value]] = {}

    # values --------------------------------------------------------------------------------------
    def resolve(self, arg):
        return _map(arg, lambda a: self.env[a.key] if isinstance(a, Ref) else a)

    def to_ir(self, x, name: str):
        """torch tensors (weights, folded constants) as IR constants, once per tensor version."""
        import torch

        if not isinstance(x, torch.Tensor):
            return x
        hit = self._consts.get(id(x))
        if hit is not None and hit[0] == x._version and hit[1] is x:
            return hit[2]
        v = make_const(self.g, tensor_to_numpy(x), name)
        self._consts[id(x)] = (x._version, x, v)
        return v

    def to_torch(self, x, shape_only: bool):
        import torch

        if isinstance(x, ir.Value):
            if x.is_const:
                return numpy_to_tensor(x.data)
            if shape_only:
                return torch.empty(x.shape, dtype=torch_dtype(x.dtype))
            raise AssertionError("a run-time value reached constant evaluation")
        return x

    # the loop ------------------------------------------------------------------------------------
    def run(self) -> None:
        for node in self.model.nodes:
            if any(r.key in self.failed for r in iter_refs(node.args)):
                self.failed.update(node.outputs)
                continue
            args = self.resolve(node.args)
            missing = None if node.kind in STRUCTURAL else _find_missing(args)
            if missing is not None:
                self.problems.add(node.kind, node.name, AttributeNotImplemented(missing.reason),
                                  node.source)
                self.failed.update(node.outputs)
                continue
            try:
                result = self.evaluate(node, args)
            except ConversionProblem as e:
                self.problems.add(node.kind, node.name, e, node.source)
                self.failed.update(node.outputs)
                continue
            except (ir.IRError, ValueError, TypeError, IndexError, KeyError, RuntimeError) as e:
                raise ModelLoadError(
                    f"cannot convert {node.kind} at {node.where}: {type(e).__name__}: {e}",
                    hint="check that the input shapes and dtypes match the model") from e
            self.store(node, result)

    def evaluate(self, node: TorchNode, args: list):
        target = torch_target(node)
        shape_only = node.kind in SHAPE_ONLY
        if target is not None and (shape_only or not _any(args, _is_runtime)):
            return self.fold(node, target, args, shape_only)
        conv = registry.lookup(node.kind, node.overload)
        if conv is None:
            raise OperatorNotImplemented("no converter (the op is not implemented)")
        cx = NodeContext(self.g, node.name, node.where, node.kind, len(node.outputs))
        if node.schema is None or conv.variadic:
            return conv.fn(cx, *args)
        missing = conv.required - set(node.arg_names)
        if missing:
            cx.unsupported(f"overload {node.kind}.{node.overload or 'default'} is not implemented")
        kwargs = {}
        for a, v in zip(node.schema.arguments, args):
            if a.name in conv.params:
                kwargs[a.name] = _map(v, lambda x: self.to_ir(x, node.name))
            elif a.name not in conv.ignore and not (a.has_default_value()
                                                     and _same(a.default_value, v)):
                cx.unsupported(f"argument {a.name}={_short(v)} is not implemented")
        return conv.fn(cx, **kwargs)

    def fold(self, node: TorchNode, target, args: list, shape_only: bool):
        """Evaluate the node with torch itself: its arguments are all known now."""
        import torch

        targs = _map(args, lambda x: self.to_torch(x, shape_only))
        if node.inplace and targs and id(targs[0]) in self._consts:
            # The IR constant made from this tensor views its memory: keep its current value.
            _, _, v = self._consts.pop(id(targs[0]))
            v.data = v.data.copy()
            v.data.setflags(write=False)
        positional, keywords = [], {}
        for a, v in zip(node.schema.arguments, targs):
            if a.name in ("dtype", "layout", "memory_format", "device") and isinstance(v, int):
                v = _enum_value(a.name, v)
            if a.kwarg_only:
                keywords[a.name] = v
            else:
                positional.append(v)
        with torch.no_grad():
            out = target(*positional, **keywords)
        return _map(out, lambda t: t.detach() if isinstance(t, torch.Tensor) else t)

    def store(self, node: TorchNode, result) -> None:
        if len(node.outputs) == 1:
            self.env[node.outputs[0]] = result
        else:
            results = list(result)
            if len(results) != len(node.outputs):
                raise ModelLoadError(f"{node.kind} at {node.where}: {len(results)} results for "
                                     f"{len(node.outputs)} outputs")
            for k, v in zip(node.outputs, results):
                self.env[k] = v
        if node.inplace and node.args and isinstance(node.args[0], Ref):
            first = result if len(node.outputs) == 1 else next(iter(result))
            self.env[node.args[0].key] = first


def _enum_value(name: str, v: int):
    import torch

    if name == "dtype":
        return torch_dtype(dtype_name(v))
    if name == "memory_format":
        return (torch.contiguous_format, torch.preserve_format, torch.channels_last,
                torch.channels_last_3d)[v]
    if name == "layout":
        return torch.strided
    return v


def torch_dtype(name: str):
    import torch

    return getattr(torch, name)


def tensor_to_numpy(t) -> np.ndarray:
    import torch

    # A view of the tensor's memory, not a copy (weights can take gigabytes); the IR constant is
    # read-only, and torch tensors written later by in-place ops get a new constant (see to_ir).
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def numpy_to_tensor(a: np.ndarray):
    import torch

    a = np.array(a)  # writable copy
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


# -- inputs and outputs ----------------------------------------------------------------------------
def input_dtypes(model: ModelGraph, option) -> dict[str, str]:
    """Each input's dtype: from --compiler-options dtype (one, or per input), else the file's,
    else float32 (TorchScript files do not record input dtypes)."""
    names = [i.name for i in model.inputs]
    per: dict[str, str] = {}
    if isinstance(option, dict):
        unknown = [k for k in option if k not in names]
        if unknown:
            raise UsageError(f"--compiler-options dtype names input(s) {', '.join(unknown)}, which "
                             f"the model does not have; its inputs are {', '.join(names)}")
        per = dict(option)
    out = {}
    for i in model.inputs:
        given = per.get(i.name, option if isinstance(option, str) else None)
        if given is not None and i.dtype is not None and given != i.dtype:
            raise UsageError(f"--compiler-options dtype for {i.name} is {given}, but the exported "
                             f"program was made with a {i.dtype} input")
        out[i.name] = given or i.dtype or "float32"
    return out


def _input_shape(info, given: dict) -> tuple[int, ...]:
    if info.name in given:
        shape = tuple(int(d) for d in given[info.name])
        if info.shape is not None and (len(info.shape) != len(shape) or any(
                d is not None and d != s for d, s in zip(info.shape, shape))):
            model = "[" + ",".join("?" if d is None else str(d) for d in info.shape) + "]"
            raise UsageError(f"input {info.name} is {list(shape)}, but the exported program "
                             f"takes {model}")
        return shape
    if info.shape is not None and all(d is not None for d in info.shape):
        return tuple(int(d) for d in info.shape)
    raise UsageError(f"input {info.name} needs a static shape",
                     hint="e.g. --shape '[[1,3,224,224]]' or '{\"input0\":[1,3,224,224]}'")


def flatten_outputs(obj, driver: _Driver) -> list[tuple[str, ir.Value]]:
    """Tuple, list and dict outputs in order; dict entries take their keys as names."""
    leaves: list[tuple[str | None, Any]] = []

    def visit(x, key: str | None):
        if isinstance(x, (list, tuple)):
            for item in x:
                visit(item, key)
        elif isinstance(x, dict):
            for k, item in x.items():
                visit(item, f"{key}.{k}" if key else str(k))
        elif x is not None:
            leaves.append((key, x))

    visit(obj, None)
    out, used = [], set()
    for i, (key, x) in enumerate(leaves):
        name = key or f"output{i}"
        if name in used:
            name = f"{name}_{i}"
        used.add(name)
        v = driver.to_ir(x, name)
        if not isinstance(v, ir.Value):
            v = make_const(driver.g, np.asarray(v), name)
        out.append((name, v))
    return out


def convert_model(model: ModelGraph, shapes: dict | None, dtype_option=None,
                  model_name: str = "main", const_inputs: dict | None = None) -> ir.Graph:
    check_supported(model)
    given = dict(shapes or {})
    consts = dict(const_inputs or {})
    unknown = sorted((set(given) | set(consts)) - {i.name for i in model.inputs})
    if unknown:
        raise UsageError(f"input shapes name {', '.join(unknown)}, which the model does not have; "
                         f"its inputs: {', '.join(i.name for i in model.inputs)}")
    dtypes = input_dtypes(model, dtype_option)
    g = ir.Graph(name=model_name)
    driver = _Driver(g, model)
    for info in model.inputs:
        if info.name in consts:  # --const-input: torch folds what depends only on it
            driver.env[info.key] = make_const(g, np.asarray(consts[info.name]), info.name,
                                              dtypes[info.name])
        else:
            driver.env[info.key] = g.input(info.name, _input_shape(info, given),
                                           dtypes[info.name])
    driver.run()
    driver.problems.raise_if_any(what="operators or operator arguments")
    result = driver.resolve(model.output)
    missing = _find_missing(result)
    if missing is not None:
        raise UnsupportedModelError([UnsupportedOp("model output", 1, [], reason=missing.reason)],
                                    what="outputs")
    outputs = flatten_outputs(result, driver)
    if not outputs:
        raise ModelLoadError("the model returns no tensors")
    g.outputs = [v for _, v in outputs]
    g.output_names = [n for n, _ in outputs]
    return g
