"""Checking a TFLite model for unsupported operators, `neo inspect`'s summary, and the conversion
driver over the main subgraph."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from neo import ir
from neo.ir.errors import ModelLoadError, UnsupportedModelError, UnsupportedOp, UsageError

from ..common.context import make_const
from ..common.driver import Driver, FrameworkNode
from ..common.errors import MAX_NAMES, OperatorAttributeNotImplemented
from . import quantized
from .context import TfliteContext, value_name
from .reader import OpInfo, Subgraph, TensorInfo, TfliteModel, option_defaults
from .registry import CONVERTERS

# Operators that run other subgraphs; Neo compiles dataflow graphs only.
CONTROL_FLOW = frozenset({"WHILE", "IF", "CALL", "CALL_ONCE", "STABLEHLO_WHILE",
                          "STABLEHLO_CASE"})


def _reason(op: OpInfo) -> str | None:
    if op.custom:
        return "a custom operator (its kernel is the application's, not a TFLite builtin)"
    if op.op in CONTROL_FLOW:
        return "control flow (runs another subgraph); Neo compiles dataflow graphs only"
    if CONVERTERS.lookup(op.op) is not None:
        return f"op version {op.version} is not implemented"
    return None


def unsupported_ops(sg: Subgraph) -> list[UnsupportedOp]:
    """Every operator of the subgraph without a converter: op name, count, first tensors."""
    counts: Counter[str] = Counter()
    names: dict[str, list[str]] = {}
    reasons: dict[str, str | None] = {}
    for op in sg.ops:
        if CONVERTERS.lookup(op.op, op.version) is None:
            counts[op.op] += 1
            reasons.setdefault(op.op, _reason(op))
            if len(names.setdefault(op.op, [])) < MAX_NAMES:
                names[op.op].append(sg.origin(op))
    return [UnsupportedOp(op, c, names[op], reason=reasons[op]) for op, c in counts.most_common()]


def _hint(sg: Subgraph) -> str:
    ops = {op.op for op in sg.ops}
    if any(op.custom for op in sg.ops):
        return ("custom operators are the application's own code (e.g. a detector's "
                "TFLite_Detection_PostProcess): convert the model without them (the "
                "post-processing runs after Neo's output), or run it in LiteRT")
    if ops & CONTROL_FLOW:
        return ("control flow: convert the model with static loops unrolled (a Keras RNN "
                "with unroll=True)")
    return "`neo inspect MODEL.tflite` lists the operators of a model"


def check_supported(model: TfliteModel) -> None:
    missing = unsupported_ops(model.main)
    if missing:
        raise UnsupportedModelError(missing, hint=_hint(model.main))


# -- inputs, outputs, inspect ----------------------------------------------------------------------
def _io(t: TensorInfo) -> dict:
    info = {"name": t.name, "shape": list(t.signature), "dtype": t.dtype or t.tflite_type.lower()}
    if t.quant is not None:
        info["quantization"] = t.quant.describe()
    return info


def model_inputs(model: TfliteModel) -> list[tuple[str, tuple[int | None, ...], str]]:
    sg = model.main
    return [(sg.tensors[i].name, sg.tensors[i].signature,
             sg.tensors[i].dtype or sg.tensors[i].tflite_type.lower()) for i in sg.inputs]


def inspect_model(model: TfliteModel) -> dict:
    sg = model.main
    hist = Counter(op.op for op in sg.ops)
    quantized = any(t.quant is not None and not t.is_const and t.dtype in ("int8", "uint8",
                                                                              "int16")
                    for t in sg.tensors)
    kinds = Counter(t.tflite_type for t in sg.tensors if t.is_const)
    details = {"schema_version": model.version, "description": model.description,
               "subgraphs": len(model.subgraphs),
               "layout": "NHWC (--shape gives images as [batch, height, width, channels])",
               "constants": ", ".join(f"{n} {k}" for k, n in kinds.most_common()) or "none",
               "quantized activations": "yes (a fully-integer model)" if quantized else "no"}
    return {
        "details": details,
        "inputs": [_io(sg.tensors[i]) for i in sg.inputs],
        "outputs": [_io(sg.tensors[i]) for i in sg.outputs],
        "ops": dict(hist.most_common()),
        "unsupported": [{"op_type": u.op_type, "count": u.count, "nodes": list(u.first_node_names),
                         **({"reason": u.reason} if u.reason else {})}
                        for u in unsupported_ops(sg) + conversion_problems(model)],
    }


# -- conversion ------------------------------------------------------------------------------------
def _key(index: int) -> str:
    return f"#{index}"


def _framework_nodes(sg: Subgraph) -> list[FrameworkNode]:
    return [FrameworkNode(op.op, sg.origin(op), [_key(i) if i >= 0 else None for i in op.inputs],
                          [_key(i) for i in op.outputs], dict(op.attrs), op.version, op)
            for op in sg.ops]


def _input_shape(t: TensorInfo, given: dict) -> tuple[int, ...]:
    if t.name in given:
        shape = tuple(int(d) for d in given[t.name])
        if len(shape) != len(t.signature):
            raise UsageError(f"input {t.name!r} has rank {len(t.signature)} in the model, but the "
                             f"given shape {list(shape)} has rank {len(shape)}")
        fixed = [(i, d) for i, d in enumerate(t.signature) if d is not None and d != shape[i]]
        if fixed:
            i, d = fixed[0]
            raise UsageError(f"input {t.name!r}: dim {i} is {d} in the model, the given shape "
                             f"{list(shape)} says {shape[i]}")
        return shape
    if any(d is None for d in t.signature):
        shown = "[" + ", ".join("?" if d is None else str(d) for d in t.signature) + "]"
        raise UsageError(f"input {t.name!r} has a dynamic shape ({shown}); give its static shape",
                         hint='e.g. --shape \'{"' + t.name + '": [1, 224, 224, 3]}\'')
    return tuple(t.shape)


class _Driver(Driver):
    """The kit's driver, checking that every quantized output carries the parameters of its
    TFLite tensor: integers that mean something else would be a wrong result."""

    sg: Subgraph

    def convert(self, node: FrameworkNode) -> list[ir.Value | None]:
        outs = super().convert(node)
        op: OpInfo = node.raw
        for i, v in zip(op.outputs, outs):
            t = self.sg.tensors[i]
            if v is None or t.quant is None or t.dtype not in ("int8", "uint8", "int16"):
                continue
            want = quantized.params(t)
            if v.dtype != t.dtype or v.type.quant != want:
                raise OperatorAttributeNotImplemented(
                    f"output {t.name!r} is {t.tflite_type} quantized as {want}; the conversion "
                    f"gives {v.dtype} {v.type.quant}")
        return outs


def _defaults(node: FrameworkNode) -> dict:
    op: OpInfo = node.raw
    return option_defaults(op.options) if op.options else {}


def _start(model: TfliteModel, given: dict, const_inputs: dict, model_name: str
           ) -> tuple[ir.Graph, _Driver]:
    """The graph with the model's inputs and constants, and the driver to convert its ops."""
    sg = model.main
    g = ir.Graph(name=model_name or Path(model.path).stem or "main")
    names = [sg.tensors[i].name for i in sg.inputs]
    unknown = sorted((set(given) | set(const_inputs)) - set(names))
    if unknown:
        raise UsageError(f"input shapes name {', '.join(map(repr, unknown))}, which the model does "
                         f"not have; its inputs: {', '.join(names)}")
    driver = _Driver(g, CONVERTERS, lambda node: TfliteContext(g, sg, node.raw, node.origin),
                     defaults=_defaults, model=f"TFLite model {Path(model.path).name}")
    driver.sg = sg
    for i in sg.inputs:
        t = sg.tensors[i]
        if t.dtype is None:
            raise UnsupportedModelError([UnsupportedOp(f"input {t.name}", 1, [],
                                                       reason=f"{t.tflite_type} inputs")],
                                        what="input types")
        quant = quantized.params(t) if t.quant is not None and t.dtype in (
            "int8", "uint8", "int16") else None
        if t.name in const_inputs:
            arr = np.asarray(const_inputs[t.name]).astype(ir.np_dtype(t.dtype))
            driver.env[_key(i)] = g.const(arr, value_name(t.name, "input"), quant=quant)
        else:
            driver.env[_key(i)] = g.input(t.name, _input_shape(t, given), t.dtype, quant)
    inputs = set(sg.inputs)
    for t in sg.tensors:
        if t.index in inputs:
            continue
        if t.is_const:
            driver.env[_key(t.index)] = make_const(g, t.data, value_name(t.name, "const"))
        elif t.is_variable and t.dtype is not None:
            # a variable (recurrent state) starts at zero, as in a fresh interpreter
            driver.env[_key(t.index)] = make_const(
                g, np.zeros(t.shape, ir.np_dtype(t.dtype)), value_name(t.name, "state"))
    return g, driver


def conversion_problems(model: TfliteModel) -> list[UnsupportedOp]:
    """What converting the model would refuse besides ops without a converter (an int8 op with
    no integer form, an option not implemented), found by converting the main subgraph at its
    declared shapes, dynamic dims as 1; ops without a converter and those that depend on them
    are skipped. Empty when the model does not convert that far for other reasons (shapes)."""
    sg = model.main
    given = {sg.tensors[i].name: [1 if d is None else d for d in sg.tensors[i].signature]
             for i in sg.inputs}
    try:
        _, driver = _start(model, given, {}, "inspect")
        nodes = []
        for node in _framework_nodes(sg):
            if CONVERTERS.lookup(node.op, node.version) is None:
                driver.failed.update(o for o in node.outputs if o)
            else:
                nodes.append(node)
        driver.run(nodes)
    except (UsageError, UnsupportedModelError, ModelLoadError):
        return []
    return driver.problems.ops()


def convert_model(model: TfliteModel, input_shapes: dict | None, model_name: str,
                  const_inputs: dict | None = None) -> ir.Graph:
    sg = model.main
    check_supported(model)
    g, driver = _start(model, dict(input_shapes or {}), dict(const_inputs or {}), model_name)
    driver.run(_framework_nodes(sg))
    driver.finish(hint=_hint(sg))
    outs, out_names = [], []
    for i in sg.outputs:
        if _key(i) not in driver.env:
            raise ModelLoadError(f"output {sg.tensors[i].name!r} is not produced by any operator")
        v = driver.env[_key(i)]
        want = sg.tensors[i].dtype
        if want is not None and v.dtype != want:
            raise ModelLoadError(f"output {sg.tensors[i].name!r} converts to {v.dtype}, the model "
                                 f"declares {want}")
        outs.append(v)
        out_names.append(sg.tensors[i].name)
    g.outputs = outs
    g.output_names = out_names
    return g
