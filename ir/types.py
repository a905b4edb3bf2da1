"""Tensor types: a static shape, a numpy dtype name and, for quantized integers, their parameters."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# dtype names the IR knows, numpy spelling; bfloat16 comes from ml_dtypes when present.
DTYPES = (
    "float32", "float64", "float16", "bfloat16",
    "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "bool",
)
FLOAT_DTYPES = frozenset({"float32", "float64", "float16", "bfloat16"})
INT_DTYPES = frozenset({"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"})
SIGNED_DTYPES = frozenset({"int8", "int16", "int32", "int64"})


def np_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def dtype_name(dt) -> str:
    name = np.dtype(dt).name
    if name not in DTYPES:
        raise TypeError(f"unsupported dtype {name}; the IR supports {', '.join(DTYPES)}")
    return name


def itemsize(name: str) -> int:
    return 2 if name == "bfloat16" else np.dtype(name).itemsize


def accumulator_dtype(dtype: str) -> str:
    """The type arithmetic on `dtype` accumulates in: float32 for the half-precision floats
    (where a target has no native fp16 arithmetic, also what it computes in), int32 for 8- and
    16-bit integers (products of two 8-bit values summed), the type itself otherwise."""
    if dtype in ("float16", "bfloat16"):
        return "float32"
    if dtype in ("int8", "uint8", "int16", "uint16"):
        return "int32"
    return dtype


def dtype_bits(dtype: str) -> int:
    """Bits of one element in registers of its own type (bool: 8, as stored)."""
    return 8 * itemsize(dtype)


@dataclass(frozen=True)
class QuantParams:
    """What the integers of a quantized tensor mean: real = scale * (q - zero_point).

    Per tensor (`axis` None: one scale and one zero point) or per axis (one of each per index
    along `axis`, e.g. the output channels of conv weights). Scales are kept as Python floats:
    float32 values for ONNX and TFLite, whose arithmetic (docs/ARCHITECTURE.md, "Quantized and
    half-precision types") says where they are rounded.
    """

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int | None = None

    def __post_init__(self):
        scale = tuple(float(s) for s in np.atleast_1d(np.asarray(self.scale, np.float64)))
        zp = tuple(int(z) for z in np.atleast_1d(np.asarray(self.zero_point)))
        if len(zp) == 1 and len(scale) > 1:
            zp = zp * len(scale)
        if len(scale) != len(zp) or not scale:
            raise ValueError(f"quantization has {len(scale)} scales and {len(zp)} zero points")
        if not all(np.isfinite(s) and s > 0 for s in scale):
            raise ValueError(f"quantization scales must be positive and finite, got {scale[:4]}")
        axis = self.axis
        if len(scale) == 1:
            axis = None  # one scale along an axis of length 1 is per tensor
        elif axis is None or axis < 0:
            raise ValueError(f"{len(scale)} scales need a non-negative axis, got {axis}")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "zero_point", zp)
        object.__setattr__(self, "axis", axis)

    @classmethod
    def per_tensor(cls, scale: float, zero_point: int = 0) -> QuantParams:
        return cls((float(scale),), (int(zero_point),))

    @property
    def is_per_tensor(self) -> bool:
        return self.axis is None

    def scales(self, rank: int | None = None) -> np.ndarray:
        """The scales as float32, shaped to broadcast against a tensor of `rank` (flat if
        None)."""
        return self._shaped(np.asarray(self.scale, np.float32), rank)

    def zero_points(self, rank: int | None = None) -> np.ndarray:
        return self._shaped(np.asarray(self.zero_point, np.int64), rank)

    def _shaped(self, a: np.ndarray, rank: int | None) -> np.ndarray:
        if rank is None:
            return a
        if self.axis is None:
            return a.reshape(())
        shape = [1] * rank
        shape[self.axis] = a.size
        return a.reshape(shape)

    def check(self, t: TensorType) -> None:
        if t.dtype not in INT_DTYPES:
            raise TypeError(f"a quantized tensor must be integer, got {t.dtype}")
        if self.axis is not None:
            if self.axis >= t.rank or t.shape[self.axis] != len(self.scale):
                raise ValueError(f"{len(self.scale)} scales along axis {self.axis} do not fit "
                                 f"shape {t.shape}")
        lo, hi = np.iinfo(t.dtype).min, np.iinfo(t.dtype).max
        if not all(lo <= z <= hi for z in self.zero_point):
            raise ValueError(f"zero point {self.zero_point[:4]} outside {t.dtype}")

    def __str__(self) -> str:
        if self.axis is None:
            return f"q({self.scale[0]:.6g},{self.zero_point[0]})"
        zp = self.zero_point[0] if len(set(self.zero_point)) == 1 else "..."
        return f"q(axis={self.axis},{len(self.scale)} scales,{zp})"


@dataclass(frozen=True)
class TensorType:
    shape: tuple[int, ...]
    dtype: str
    # quantized integers: what they stand for (None: plain numbers)
    quant: QuantParams | None = None

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise TypeError(f"unknown dtype {self.dtype!r}")
        if any((not isinstance(d, int)) or d < 0 for d in self.shape):
            raise TypeError(f"shape {self.shape} must be non-negative ints (static shapes only)")
        if self.quant is not None:
            self.quant.check(self)

    def with_quant(self, quant: QuantParams | None) -> TensorType:
        return TensorType(self.shape, self.dtype, quant)

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.size * itemsize(self.dtype)

    def __str__(self) -> str:
        q = f"{{{self.quant}}}" if self.quant is not None else ""
        return f"{self.dtype}[{','.join(map(str, self.shape))}]{q}"
