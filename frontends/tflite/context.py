"""What a TFLite converter builds with: the kit's `ConversionContext` plus TFLite's conventions
(fused activations, SAME/VALID padding, channels-last data, quantized constants)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from neo.ir import Graph, Value

from ..common.context import ConversionContext, normalize_axis
from .reader import OpInfo, Quantization, Subgraph, TensorInfo

# fused_activation_function -> (IR op, attributes)
ACTIVATIONS = {
    "RELU": ("relu", {}),
    "RELU6": ("clip", {"min": 0.0, "max": 6.0}),
    "RELU_N1_TO_1": ("clip", {"min": -1.0, "max": 1.0}),
    "TANH": ("tanh", {}),
}


def value_name(tensor_name: str, fallback: str) -> str:
    """An IR value name from a TFLite tensor name: the converter joins the names of every op it
    fused into one tensor with ';', the first is enough."""
    return tensor_name.split(";")[0] or fallback


class TfliteContext(ConversionContext):
    """One TFLite operator being converted."""

    def __init__(self, g: Graph, sg: Subgraph, op: OpInfo, origin: str):
        first = next((sg.tensors[i].name for i in op.outputs if i >= 0), "")
        super().__init__(g, value_name(first, op.op.lower()), origin, op.op)
        self.sg = sg
        self.info = op

    # -- the operator's tensors ------------------------------------------------------------------
    def tensor(self, position: int) -> TensorInfo | None:
        """The TFLite tensor of input `position` (None when omitted)."""
        if position >= len(self.info.inputs) or self.info.inputs[position] < 0:
            return None
        return self.sg.tensors[self.info.inputs[position]]

    def output(self, position: int = 0) -> TensorInfo:
        return self.sg.tensors[self.info.outputs[position]]

    # -- TFLite conventions ------------------------------------------------------------------------
    def activation(self, y: Value, fused: str | None) -> Value:
        """`y` through the op's fused activation function."""
        if fused in (None, "NONE"):
            return y
        if fused not in ACTIVATIONS:
            self.unsupported_attribute("fused_activation_function", fused,
                                       "NONE, " + ", ".join(ACTIVATIONS))
        op, attrs = ACTIVATIONS[fused]
        return self.op(op, y, **attrs)

    def pads(self, padding: str, in_sp: Sequence[int], kernel: Sequence[int],
             strides: Sequence[int], dilations: Sequence[int] = (1, 1)) -> tuple[int, ...]:
        """(begin..., end...) pads of a window op: VALID none; SAME an output of ceil(in /
        stride), the odd pixel at the end."""
        if padding == "VALID":
            return (0,) * (2 * len(in_sp))
        if padding != "SAME":
            self.unsupported_attribute("padding", padding, "SAME, VALID")
        begin, end = [], []
        for n, k, s, d in zip(in_sp, kernel, strides, dilations):
            out = -(-n // s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - n)
            begin.append(total // 2)
            end.append(total - total // 2)
        return tuple(begin + end)

    def axis(self, v: Value | int, rank: int, what: str = "axis") -> int:
        a = v if isinstance(v, int) else self.ints(v, what)[0]
        try:
            return normalize_axis(int(a), rank)
        except ValueError:
            self.invalid(what, a, f"an axis in [-{rank}, {rank})")

    def axes(self, v: Value | Sequence[int], rank: int, what: str = "axis") -> list[int]:
        raw = self.ints(v, what) if isinstance(v, Value) else list(v)
        return sorted({self.axis(int(a), rank, what) for a in raw})

    # -- quantized constants -----------------------------------------------------------------------
    def dequantized(self, v: Value | None, position: int) -> Value | None:
        """Input `position` as float32: a quantized constant (the int8 weights of a
        dynamic-range model) is dequantized at compile time, a float16 one widened."""
        if v is None:
            return None
        t = self.tensor(position)
        if v.dtype == "float32":
            return v
        if v.dtype in ("float16", "float64"):
            return self.cast(v, "float32")
        if t is not None and t.quant is not None and v.is_const:
            return self.const(dequantize(v.data, t.quant))
        if t is not None and t.quant is not None:
            self.unsupported(f"input {t.name!r} is quantized {t.tflite_type} (a fully-integer "
                             f"model) and {self.op_type} has no integer implementation yet; "
                             "docs/TFLITE.md lists the quantized operators")
        self.unsupported(f"input {t.name if t else position!r} is {v.dtype}; a float tensor is "
                         "expected")


def dequantize(data: np.ndarray, q: Quantization) -> np.ndarray:
    """scale * (q - zero_point) in float32, per tensor or along the quantized dimension."""
    scale, zp = q.scale.astype(np.float32), q.zero_point
    if not q.per_tensor:
        shape = [1] * data.ndim
        shape[q.axis] = scale.size
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    else:
        scale, zp = scale.reshape(()), zp.reshape(())
    return ((data.astype(np.int64) - zp).astype(np.float32) * scale).astype(np.float32)

