"""Converters for TF2's functional control flow and the tensor lists loops carry.

- `PartitionedCall`/`StatefulPartitionedCall`: the called function, converted inline (Grappler
  leaves calls it may not inline, such as Keras's XLA-compiled grouped convolutions).
- `If`/`StatelessIf`: the branch the (constant) condition takes, inline.
- `While`/`StatelessWhile`: unrolled. All shapes are static, so the loop counter and the trip
  count of a Keras RNN or a `tf.range` loop fold to constants: the condition function is
  converted on the current loop values, and while it folds to True the body is converted again
  on them. A condition computed from the input data is reported as not implemented.
- TensorList ops (a TensorArray inside a loop) on a `TensorList` of IR values, one per element,
  which only exists while converting: getting, setting, stacking and building lists are
  bookkeeping at compile time, with constant indices.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neo import ir
from neo.ir import Value

from .context import TFContext
from .registry import converter

MAX_UNROLLED_ITERATIONS = 4096


@converter("PartitionedCall", "StatefulPartitionedCall")
def PartitionedCall(cx: TFContext, *args, f, config="", config_proto="",
                    executor_type="") -> list:
    del config, config_proto, executor_type  # how TensorFlow would run it, not what it computes
    return cx.call(f, args, "f")


@converter("If", "StatelessIf")
def If(cx: TFContext, cond, *input, then_branch, else_branch, output_shapes=()) -> list:
    del output_shapes
    if not isinstance(cond, Value) or not cond.is_const:
        cx.unsupported("an If whose condition is computed from the inputs at run time")
    take = bool(np.asarray(cond.data).reshape(-1)[0]) if cond.data.size else False
    return cx.call(then_branch if take else else_branch, input,
                   "then_branch" if take else "else_branch")


@converter("While", "StatelessWhile")
def While(cx: TFContext, *input, cond, body, output_shapes=(), parallel_iterations=10) -> list:
    del output_shapes, parallel_iterations  # static shapes; unrolled, so no parallel iterations
    values = list(input)
    for k in range(MAX_UNROLLED_ITERATIONS + 1):
        (c,) = cx.call(cond, values, f"cond{k}")[:1]
        if not isinstance(c, Value) or not c.is_const:
            cx.unsupported("a While loop whose condition depends on the inputs at run time; "
                           "Neo unrolls loops with a trip count known at compile time")
        if not bool(np.asarray(c.data).reshape(-1)[0]):
            return values
        if k == MAX_UNROLLED_ITERATIONS:
            break
        values = cx.call(body, values, f"body{k}")
    cx.unsupported(f"a While loop of more than {MAX_UNROLLED_ITERATIONS} iterations")


# -- tensor lists -------------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorList:
    """A TensorFlow TensorList (the variant tensor behind a TensorArray) while converting:
    its elements (None where none was set yet), their shape and dtype."""

    items: tuple[Value | None, ...]
    element_shape: tuple[int, ...] | None
    dtype: str

    def with_item(self, i: int, v: Value) -> TensorList:
        items = list(self.items)
        items[i] = v
        return TensorList(tuple(items), self.element_shape or v.shape, self.dtype)


def _list(cx: TFContext, v) -> TensorList:
    if not isinstance(v, TensorList):
        cx.unsupported("a tensor list that does not come from TensorListReserve or "
                       "TensorListFromTensor in this graph")
    return v


def _shape(cx: TFContext, element_shape) -> tuple[int, ...] | None:
    dims = cx.ints(element_shape, "element_shape") if isinstance(element_shape, Value) else []
    return tuple(dims) if dims and all(d >= 0 for d in dims) else None


def _index(cx: TFContext, lst: TensorList, index: Value) -> int:
    i = cx.ints(index, "index")[0]
    n = len(lst.items)
    if not -n <= i < n:
        raise ValueError(f"tensor list index {i} is outside a list of {n}")
    return i % n


@converter("TensorListReserve")
def TensorListReserve(cx: TFContext, element_shape: Value, num_elements: Value, *,
                      element_dtype) -> list:
    n = cx.ints(num_elements, "num_elements")[0]
    if n < 0:
        cx.unsupported("a tensor list of unknown length")
    return [TensorList((None,) * n, _shape(cx, element_shape), element_dtype)]


@converter("TensorListFromTensor")
def TensorListFromTensor(cx: TFContext, tensor: Value, element_shape: Value, *,
                         element_dtype) -> list:
    rest = tensor.shape[1:]
    items = tuple(cx.reshape(cx.slice(tensor, 0, i, i + 1), rest)
                  for i in range(tensor.shape[0]))
    return [TensorList(items, rest, element_dtype)]


@converter("TensorListGetItem")
def TensorListGetItem(cx: TFContext, input_handle, index: Value, element_shape: Value, *,
                      element_dtype) -> Value:
    lst = _list(cx, input_handle)
    item = lst.items[_index(cx, lst, index)]
    if item is None:  # never set: zeros, as TensorFlow reads an unset element
        shape = lst.element_shape or _shape(cx, element_shape)
        if shape is None:
            cx.unsupported("reading an unset tensor-list element of unknown shape")
        return cx.const(np.zeros(shape, ir.np_dtype(element_dtype)))
    return item


@converter("TensorListSetItem")
def TensorListSetItem(cx: TFContext, input_handle, index: Value, item: Value, *,
                      element_dtype, resize_if_index_out_of_bounds=False) -> list:
    if resize_if_index_out_of_bounds:
        cx.unsupported_attribute("resize_if_index_out_of_bounds", True, "false")
    lst = _list(cx, input_handle)
    return [lst.with_item(_index(cx, lst, index), item)]


@converter("TensorListStack")
def TensorListStack(cx: TFContext, input_handle, element_shape: Value, *, element_dtype,
                    num_elements=-1) -> Value:
    del num_elements  # a hint; the list knows its length
    lst = _list(cx, input_handle)
    shape = lst.element_shape or _shape(cx, element_shape)
    parts = []
    for v in lst.items:
        if v is None:
            if shape is None:
                cx.unsupported("stacking unset tensor-list elements of unknown shape")
            v = cx.const(np.zeros(shape, ir.np_dtype(element_dtype)))
        parts.append(cx.reshape(v, (1,) + v.shape))
    if not parts:
        cx.unsupported("stacking an empty tensor list")
    return cx.concat(parts, 0)


@converter("TensorListLength")
def TensorListLength(cx: TFContext, input_handle) -> Value:
    return cx.const(np.array(len(_list(cx, input_handle).items), np.int32))


@converter("TensorListElementShape")
def TensorListElementShape(cx: TFContext, input_handle, *, shape_type) -> Value:
    lst = _list(cx, input_handle)
    if lst.element_shape is None:
        cx.unsupported("the element shape of a tensor list before any element is set")
    return cx.const(np.array(lst.element_shape, ir.np_dtype(shape_type)))
