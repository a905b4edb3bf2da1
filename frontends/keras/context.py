"""What a Keras converter sees: `LayerContext` (the kit's ConversionContext plus the layer's
weights, its Keras version and the channels-last helpers).

Keras computes channels last (NHWC, NWC); the IR's convs and pools take `layout="NHWC"` and
weights OIHW, so kernels are transposed here, at conversion time, as constants. Padding follows
TensorFlow: "same" pads `max((ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)` in total, the
smaller half first.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from neo.ir import Graph, Value

from ..common.context import ConversionContext, normalize_axis
from ..common.errors import OperatorAttributeValueNotValid


class LayerContext(ConversionContext):
    """One call of one Keras layer being converted."""

    def __init__(self, g: Graph, name: str, origin: str, op_type: str, major: int,
                 load_weights: Callable[[], list[np.ndarray]], call: Any = None):
        super().__init__(g, name, origin, op_type)
        self.major = major  # Keras major version of the file: 2 or 3
        self._load_weights = load_weights
        self._weights: list[np.ndarray] | None = None
        self.call = call  # the graph.Call, for converters that need the raw arguments

    # -- weights -----------------------------------------------------------------------------------
    @property
    def weights(self) -> list[np.ndarray]:
        if self._weights is None:
            self._weights = self._load_weights()
        return self._weights

    def expect_weights(self, names: Sequence[str]) -> list[np.ndarray]:
        """The layer's weights, which must be exactly `names` (in Keras's order)."""
        ws = self.weights
        if len(ws) != len(names):
            raise OperatorAttributeValueNotValid(
                f"the file holds {len(ws)} weights for this layer; its config needs "
                f"{len(names)} ({', '.join(names) or 'none'})")
        return [np.asarray(w, dtype=np.float32) if w.dtype.kind == "f" else w for w in ws]

    def weight(self, w: np.ndarray, shape: Sequence[int] | None = None,
               what: str = "weight") -> Value:
        arr = np.asarray(w)
        if shape is not None and tuple(arr.shape) != tuple(shape):
            raise OperatorAttributeValueNotValid(
                f"{what} has shape {list(arr.shape)}; the layer needs {list(shape)}")
        return self.const(arr.astype(np.float32) if arr.dtype.kind == "f" else arr)

    # -- values ------------------------------------------------------------------------------------
    def tensor(self, x: Any, like: Value | None = None) -> Value:
        """`x` as a Value: constants (Python numbers, arrays) take `like`'s dtype."""
        if isinstance(x, Value):
            return x
        arr = np.asarray(x)
        if like is not None:
            return self.const(arr.astype(np.dtype(like.dtype)))
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        elif arr.dtype == np.int64 and arr.ndim == 0:
            arr = arr.astype(np.int32)
        return self.const(arr)

    def binary(self, op: str, a: Any, b: Any) -> Value:
        """A broadcast binary op; Python numbers take the tensor operand's dtype."""
        if isinstance(a, Value) and isinstance(b, Value) and a.dtype != b.dtype:
            b = self.cast(b, a.dtype)
        like = a if isinstance(a, Value) else b if isinstance(b, Value) else None
        return self.op(op, self.tensor(a, like), self.tensor(b, like))

    def axis(self, axis: int, rank: int) -> int:
        try:
            return normalize_axis(int(axis), rank)
        except ValueError as e:
            self.invalid("axis", axis, f"an axis of a rank-{rank} tensor ({e})")

    def activation(self, x: Value, spec: Any) -> Value:
        from .activations import apply_activation

        return apply_activation(self, x, spec)

    # -- channels-last convolutions ------------------------------------------------------------------
    def check_channels_last(self, data_format: str | None) -> None:
        if data_format not in (None, "channels_last"):
            self.unsupported_attribute("data_format", data_format,
                                       "channels_last (Neo's Keras convention: NHWC models, "
                                       "NCHW shapes)")

    def spatial_pads(self, padding: str, sizes: Sequence[int], kernel: Sequence[int],
                     strides: Sequence[int], dilations: Sequence[int]) -> tuple[int, ...]:
        """IR pads (all begins, then all ends) for Keras's "valid", "same" or "causal"."""
        padding = str(padding).lower()
        begins, ends = [], []
        for n, k, s, d in zip(sizes, kernel, strides, dilations):
            span = (k - 1) * d + 1
            if padding == "valid":
                b = e = 0
            elif padding == "same":
                total = max((math.ceil(n / s) - 1) * s + span - n, 0)
                b, e = total // 2, total - total // 2
            elif padding == "causal":
                b, e = span - 1, 0
            else:
                self.invalid("padding", padding, '"valid", "same" (or "causal" for Conv1D)')
            begins.append(b)
            ends.append(e)
        return tuple(begins + ends)


def ntuple(v: Any, n: int, what: str = "value") -> tuple[int, ...]:
    """An int or a list of n ints (Keras stores kernel sizes, strides, ... either way)."""
    if isinstance(v, (list, tuple)):
        vals = [int(x) for x in v]
        if len(vals) == 1 and n > 1:
            vals *= n
        if len(vals) != n:
            raise OperatorAttributeValueNotValid(f"{what}={list(v)} should have {n} values")
        return tuple(vals)
    return (int(v),) * n


def axes_list(axis: Any) -> list[int]:
    """Keras writes an axis as an int or a list of ints."""
    return [int(a) for a in axis] if isinstance(axis, (list, tuple)) else [int(axis)]
