"""What a TensorFlow converter builds with: the kit's `ConversionContext` plus TensorFlow's
conventions (data_format, negative axes, SAME padding)."""
from __future__ import annotations

from collections.abc import Sequence

from neo.ir import Value

from ..common.context import ConversionContext, normalize_axis


class TFContext(ConversionContext):
    """One GraphDef node being converted; `functions` runs functions of the graph's library
    inline (importer.Functions)."""

    def __init__(self, g, name: str, origin: str, op_type: str, functions=None):
        super().__init__(g, name, origin, op_type)
        self.functions = functions

    def call(self, function: str, args: Sequence, part: str = "f") -> list:
        """The outputs of library function `function` on `args`, converted inline (its nodes
        named under this node's name and `part`)."""
        if self.functions is None:
            self.unsupported("functions are not converted here")
        return self.functions.call(function, list(args), f"{self.origin}/{part}/")

    def axis(self, v: Value | int, rank: int, what: str = "axis") -> int:
        """A constant axis operand (or attribute), made non-negative."""
        a = v if isinstance(v, int) else self.ints(v, what)[0]
        try:
            return normalize_axis(int(a), rank)
        except ValueError:
            self.invalid(what, a, f"an axis in [-{rank}, {rank})")

    def axes(self, v: Value | Sequence[int], rank: int, what: str = "axis") -> list[int]:
        raw = list(v) if not isinstance(v, Value) else self.ints(v, what)
        out = []
        for a in raw:
            try:
                out.append(normalize_axis(int(a), rank))
            except ValueError:
                self.invalid(what, a, f"axes in [-{rank}, {rank})")
        return sorted(set(out))

    def channels_last(self, data_format: str | None, rank: int) -> bool:
        """Whether `data_format` ("NHWC", "NCHW", "NDHWC", "NWC", ...) puts channels last."""
        fmt = data_format or "NHWC"
        if len(fmt) != rank or fmt[0] != "N" or "C" not in (fmt[1], fmt[-1]):
            self.unsupported_attribute("data_format", fmt, "NHWC, NCHW (and their 1-D/3-D forms) "
                                       f"matching the rank-{rank} input")
        return fmt[-1] == "C"

    def spatial(self, values: Sequence[int] | None, channels_last: bool, rank: int,
                what: str) -> tuple[int, ...]:
        """The spatial part of a per-dimension attribute (strides, ksize, dilations)."""
        if not values:
            return (1,) * (rank - 2)
        vals = tuple(int(v) for v in values)
        if len(vals) != rank:
            self.invalid(what, vals, f"{rank} values, one per input dimension")
        batch, chan = (vals[0], vals[-1]) if channels_last else (vals[0], vals[1])
        if batch != 1 or chan != 1:
            self.unsupported_attribute(what, vals, "1 for the batch and channel dimensions")
        return vals[1:-1] if channels_last else vals[2:]

    def layout(self, channels_last: bool) -> str:
        return "NHWC" if channels_last else "NCHW"


def same_pads(in_sp: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
              dilations: Sequence[int]) -> tuple[int, ...]:
    """TensorFlow's SAME padding as (begin..., end...): output ceil(in / stride), the odd pixel
    at the end."""
    begin, end = [], []
    for n, k, s, d in zip(in_sp, kernel, strides, dilations):
        out = -(-n // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - n)
        begin.append(total // 2)
        end.append(total - total // 2)
    return tuple(begin + end)
