"""Converters for the structural ops: lists, tuples, dicts, Python scalars, and tensor <-> number.

These move Python values around; they build IR nodes only when a number becomes a tensor.
"""
from __future__ import annotations

import numpy as np

from neo.ir import Value

from .context import NodeContext
from .registry import converter


@converter("prim::ListConstruct")
def ListConstruct(cx: NodeContext, *items):
    return list(items)


@converter("prim::TupleConstruct")
def TupleConstruct(cx: NodeContext, *items):
    return tuple(items)


@converter("prim::DictConstruct")
def DictConstruct(cx: NodeContext, *items):
    return {items[i]: items[i + 1] for i in range(0, len(items), 2)}


@converter("prim::ListUnpack", "prim::TupleUnpack")
def ListUnpack(cx: NodeContext, seq):
    if len(seq) != cx.num_outputs:
        raise ValueError(f"unpacking {len(seq)} values into {cx.num_outputs}")
    return seq[0] if cx.num_outputs == 1 else tuple(seq)


@converter("prim::TupleIndex", "operator::getitem")
def getitem(cx: NodeContext, seq, index):
    if isinstance(seq, dict):
        return seq[index]
    return seq[int(index)]


@converter("aten::__getitem__")
def __getitem__(cx: NodeContext, list, idx):
    return list[idx] if isinstance(list, dict) else list[int(idx)]


@converter("prim::NumToTensor")
def NumToTensor(cx: NodeContext, a):
    if isinstance(a, Value):
        return a
    return cx.tensor(a)


@converter("aten::Int", "aten::Float", "aten::Bool", "aten::ScalarImplicit")
def Int(cx: NodeContext, a):
    if isinstance(a, Value) and a.is_const:
        value = a.data.reshape(-1)[0].item()
        return {"aten::Int": int, "aten::Float": float, "aten::Bool": bool}.get(
            cx.kind, lambda v: v)(value)
    if not isinstance(a, Value):
        return a
    cx.unsupported("turns a run-time tensor value into a Python number (data-dependent shapes "
                   "or control flow); Neo needs static shapes")


@converter("aten::item")
def item(cx: NodeContext, self):
    return Int(cx, self)


@converter("prim::dtype")
def dtype(cx: NodeContext, a: Value):
    import torch

    return getattr(torch, a.dtype)


@converter("prim::device")
def device(cx: NodeContext, a):
    return "cpu"


@converter("aten::len")
def len_(cx: NodeContext, a):
    return len(a)


@converter("aten::detach", "aten::alias", "aten::lift_fresh", "aten::lift_fresh_copy",
           "prim::data")
def detach(cx: NodeContext, self):
    return self


@converter("aten::dropout", "aten::feature_dropout", "aten::alpha_dropout",
           "aten::feature_alpha_dropout")
def dropout(cx: NodeContext, input, p, train):
    if train:
        cx.unsupported("dropout in training mode; call model.eval() before tracing")
    return input


@converter("aten::dropout_", "aten::feature_dropout_", "aten::alpha_dropout_",
           "aten::feature_alpha_dropout_")
def dropout_(cx: NodeContext, self, p, train):
    return dropout(cx, self, p, train)


@converter("aten::native_dropout")
def native_dropout(cx: NodeContext, input, p, train):
    if train:
        cx.unsupported("dropout in training mode; call model.eval() before exporting")
    return input, cx.const(np.ones(input.shape, bool))
