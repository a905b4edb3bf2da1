"""Converters for data movement: views and reshapes, permutes, concatenation and splitting,
indexing, expansion, dtype conversion and tensors created from shapes."""
from __future__ import annotations

import math

import numpy as np

from neo.ir import Value

from .context import NodeContext, dtype_name
from .registry import converter

_LAYOUT_ARGS = ("memory_format", "non_blocking", "copy", "layout", "device", "pin_memory")


def infer_shape(x: Value, size) -> tuple[int, ...]:
    """A view/reshape size with at most one -1 resolved."""
    size = [int(d) for d in size]
    if size.count(-1) > 1:
        raise ValueError(f"shape {size} has more than one -1")
    if -1 in size:
        known = math.prod(d for d in size if d != -1)
        if known == 0 or x.type.size % known:
            raise ValueError(f"cannot view a {list(x.shape)} tensor as {size}")
        size[size.index(-1)] = x.type.size // known
    return tuple(size)


@converter("aten::view", "aten::reshape", "aten::_reshape_alias", "aten::_unsafe_view",
           ignore=("stride",))
def view(cx: NodeContext, self: Value, size=None, shape=None) -> Value:
    return cx.reshape(self, infer_shape(self, size if size is not None else shape))


@converter("aten::view_as", "aten::reshape_as")
def view_as(cx: NodeContext, self: Value, other: Value) -> Value:
    return cx.reshape(self, other.shape)


@converter("aten::flatten")
def flatten(cx: NodeContext, self: Value, start_dim=0, end_dim=-1) -> Value:
    r = self.type.rank
    if r == 0:
        return cx.reshape(self, (1,))
    a, b = cx.dim(start_dim, r), cx.dim(end_dim, r)
    shape = self.shape[:a] + (math.prod(self.shape[a:b + 1]),) + self.shape[b + 1:]
    return cx.reshape(self, shape)


@converter("aten::unflatten")
def unflatten(cx: NodeContext, self: Value, dim, sizes) -> Value:
    d = cx.dim(dim, self.type.rank)
    inner = infer_shape(cx.const(np.zeros(self.shape[d], np.int8)), sizes)
    return cx.reshape(self, self.shape[:d] + inner + self.shape[d + 1:])


@converter("aten::permute")
def permute(cx: NodeContext, self: Value, dims) -> Value:
    return cx.transpose(self, [cx.dim(d, self.type.rank) for d in dims])


@converter("aten::transpose", "aten::swapaxes", "aten::swapdims")
def transpose(cx: NodeContext, self: Value, dim0=None, dim1=None, axis0=None, axis1=None) -> Value:
    r = self.type.rank
    a = cx.dim(dim0 if dim0 is not None else axis0, r)
    b = cx.dim(dim1 if dim1 is not None else axis1, r)
    perm = list(range(r))
    perm[a], perm[b] = perm[b], perm[a]
    return cx.transpose(self, perm)


@converter("aten::t", "aten::numpy_T")
def t(cx: NodeContext, self: Value) -> Value:
    return cx.transpose(self, list(range(self.type.rank))[::-1])


@converter("aten::movedim")
def movedim(cx: NodeContext, self: Value, source, destination) -> Value:
    r = self.type.rank
    src = [cx.dim(d, r) for d in ([source] if isinstance(source, int) else source)]
    dst = [cx.dim(d, r) for d in ([destination] if isinstance(destination, int) else destination)]
    rest = iter(d for d in range(r) if d not in src)
    perm = [0] * r
    placed = dict(zip(dst, src))
    for i in range(r):
        perm[i] = placed[i] if i in placed else next(rest)
    return cx.transpose(self, perm)


@converter("aten::contiguous", "aten::clone", ignore=_LAYOUT_ARGS)
def contiguous(cx: NodeContext, self: Value) -> Value:
    return self


@converter("aten::to", "aten::_to_copy", "aten::type_as", ignore=_LAYOUT_ARGS)
def to(cx: NodeContext, self: Value, dtype=None, other: Value | None = None) -> Value:
    if other is not None:
        return cx.cast(self, other.dtype)
    if dtype is None:
        return self
    return cx.cast(self, dtype_name(dtype))


# -- joining and splitting -------------------------------------------------------------------------
@converter("aten::cat", "aten::concat", "aten::concatenate")
def cat(cx: NodeContext, tensors: list, dim=0) -> Value:
    xs = [x for x in tensors if not (isinstance(x, Value) and x.shape == (0,))]
    xs = cx.promote(*xs)
    return cx.concat(xs, cx.dim(dim, xs[0].type.rank))


@converter("aten::stack")
def stack(cx: NodeContext, tensors: list, dim=0) -> Value:
    xs = cx.promote(*tensors)
    d = cx.dim(dim, xs[0].type.rank + 1)
    return cx.concat([cx.reshape(x, x.shape[:d] + (1,) + x.shape[d:]) for x in xs], d)


def split_by(cx: NodeContext, x: Value, d: int, sizes: list[int]) -> list[Value]:
    out, start = [], 0
    for s in sizes:
        out.append(cx.slice(x, d, start, start + s))
        start += s
    return out


@converter("aten::chunk", "aten::unsafe_chunk")
def chunk(cx: NodeContext, self: Value, chunks, dim=0) -> list[Value]:
    d = cx.dim(dim, self.type.rank)
    n = self.shape[d]
    each = -(-n // int(chunks))
    sizes = [min(each, n - i) for i in range(0, n, each)] if n else [0]
    return split_by(cx, self, d, sizes)


@converter("aten::split", "aten::unsafe_split", "aten::split_with_sizes",
           "aten::unsafe_split_with_sizes")
def split(cx: NodeContext, self: Value, split_size=None, dim=0, split_sizes=None
          ) -> list[Value]:
    d = cx.dim(dim, self.type.rank)
    n = self.shape[d]
    given = split_sizes if split_sizes is not None else split_size
    if isinstance(given, (list, tuple)):
        sizes = [int(s) for s in given]
    else:
        s = int(given)
        sizes = [min(s, n - i) for i in range(0, n, s)]
    return split_by(cx, self, d, sizes)


@converter("aten::unbind")
def unbind(cx: NodeContext, self: Value, dim=0) -> list[Value]:
    d = cx.dim(dim, self.type.rank)
    shape = self.shape[:d] + self.shape[d + 1:]
    return [cx.reshape(cx.slice(self, d, i, i + 1), shape) for i in range(self.shape[d])]


# -- slicing and indexing --------------------------------------------------------------------------
def clamp_slice(n: int, start, end, step: int) -> tuple[int, int]:
    start = 0 if start is None else int(start)
    end = n if end is None else int(end)
    if start < 0:
        start += n
    if end < 0:
        end += n
    start = min(max(start, 0), n)
    end = min(max(end, start), n)
    return start, end


@converter("aten::slice")
def slice_(cx: NodeContext, self: Value, dim=0, start=None, end=None, step=1) -> Value:
    d = cx.dim(dim, self.type.rank)
    if int(step) <= 0:
        cx.unsupported(f"slice step {step}")
    a, b = clamp_slice(self.shape[d], start, end, int(step))
    return cx.slice(self, d, a, b, int(step))


@converter("aten::narrow")
def narrow(cx: NodeContext, self: Value, dim, start, length) -> Value:
    d = cx.dim(dim, self.type.rank)
    s = int(start) % self.shape[d] if int(start) < 0 else int(start)
    return cx.slice(self, d, s, s + int(length))


@converter("aten::select")
def select(cx: NodeContext, self: Value, dim, index) -> Value:
    d = cx.dim(dim, self.type.rank)
    i = int(index)
    n = self.shape[d]
    if not -n <= i < n:
        raise ValueError(f"index {i} is out of range for dim {d} of size {n}")
    i %= n
    return cx.reshape(cx.slice(self, d, i, i + 1), self.shape[:d] + self.shape[d + 1:])


@converter("aten::index_select")
def index_select(cx: NodeContext, self: Value, dim, index: Value) -> Value:
    return cx.op("gather", self, cx.cast(index, "int64") if index.dtype not in (
        "int32", "int64") else index, axis=cx.dim(dim, self.type.rank))


@converter("aten::index", "aten::_unsafe_index")
def index(cx: NodeContext, self: Value, indices: list) -> Value:
    """x[..., idx, ...] with one integer index tensor (the others full slices)."""
    used = [(i, v) for i, v in enumerate(indices) if v is not None]
    if len(used) != 1:
        cx.unsupported("advanced indexing with more than one index tensor on a run-time tensor")
    axis, idx = used[0]
    if idx.dtype == "bool":
        cx.unsupported("boolean-mask indexing (its result shape depends on the data)")
    return cx.op("gather", self, idx, axis=axis)


@converter("aten::roll")
def roll(cx: NodeContext, self: Value, shifts, dims=()) -> Value:
    shifts = [shifts] if isinstance(shifts, int) else list(shifts)
    dims = [dims] if isinstance(dims, int) else list(dims)
    x = self
    if not dims:
        flat = cx.reshape(x, (x.type.size,))
        return cx.reshape(roll(cx, flat, shifts, [0]), x.shape)
    for s, d in zip(shifts, dims):
        d = cx.dim(d, x.type.rank)
        n = x.shape[d]
        s = int(s) % n if n else 0
        if s:
            x = cx.concat([cx.slice(x, d, n - s, n), cx.slice(x, d, 0, n - s)], d)
    return x


@converter("aten::flip")
def flip(cx: NodeContext, self: Value, dims) -> Value:
    r = self.type.rank
    axes = cx.dims(dims, r)
    starts = tuple(self.shape[a] - 1 if a in axes else 0 for a in range(r))
    ends = tuple(-1 if a in axes else self.shape[a] for a in range(r))
    steps = tuple(-1 if a in axes else 1 for a in range(r))
    return cx.op("slice", self, starts=starts, ends=ends, steps=steps)


# -- adding and removing dims, broadcasting --------------------------------------------------------
@converter("aten::unsqueeze")
def unsqueeze(cx: NodeContext, self: Value, dim) -> Value:
    d = cx.dim(dim, self.type.rank + 1)
    return cx.reshape(self, self.shape[:d] + (1,) + self.shape[d:])


@converter("aten::squeeze")
def squeeze(cx: NodeContext, self: Value, dim=None) -> Value:
    r = self.type.rank
    axes = cx.dims(dim, r) if dim is not None else list(range(r))
    return cx.reshape(self, tuple(s for i, s in enumerate(self.shape)
                                  if not (i in axes and s == 1)))


@converter("aten::expand", ignore=("implicit",))
def expand(cx: NodeContext, self: Value, size) -> Value:
    size = [int(s) for s in size]
    lead = len(size) - self.type.rank
    if lead < 0:
        raise ValueError(f"cannot expand a {list(self.shape)} tensor to {size}")
    shape = tuple(self.shape[i - lead] if s == -1 else s for i, s in enumerate(size))
    if shape == self.shape:
        return self
    return cx.op("expand", self, shape=shape)


@converter("aten::expand_as")
def expand_as(cx: NodeContext, self: Value, other: Value) -> Value:
    return expand(cx, self, list(other.shape))


@converter("aten::repeat")
def repeat(cx: NodeContext, self: Value, repeats) -> Value:
    reps = [int(r) for r in repeats]
    lead = len(reps) - self.type.rank
    x = cx.reshape(self, (1,) * lead + self.shape)
    inter = []
    for r, s in zip(reps, x.shape):
        inter += [1, s]
    x = cx.reshape(x, inter)
    target = []
    for r, s in zip(reps, x.shape[1::2]):
        target += [r, s]
    x = cx.op("expand", x, shape=tuple(target))
    return cx.reshape(x, tuple(r * s for r, s in zip(reps, target[1::2])))


# -- tensors written whole -------------------------------------------------------------------------
@converter("aten::zero_")
def zero_(cx: NodeContext, self: Value) -> Value:
    return cx.const(np.zeros(self.shape, self.dtype))


@converter("aten::fill_")
def fill_(cx: NodeContext, self: Value, value) -> Value:
    if isinstance(value, Value):
        return cx.op("expand", cx.cast(value, self.dtype), shape=self.shape)
    return cx.const(np.full(self.shape, value, self.dtype))


@converter("aten::copy_", ignore=("non_blocking",))
def copy_(cx: NodeContext, self: Value, src: Value) -> Value:
    src = cx.cast(src, self.dtype)
    return src if src.shape == self.shape else cx.op("expand", src, shape=self.shape)
