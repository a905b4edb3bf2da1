"""Converters for elementwise math, activations, comparisons, reductions, softmax and the matrix
products (matmul, mm, bmm, addmm, linear, einsum)."""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from neo.ir import Value

from .context import NodeContext, dtype_name
from .registry import converter

# aten op -> IR op, for ops that are one IR op on a float tensor (ints are made float32 first, as
# PyTorch's own promotion does for these).
UNARY_FLOAT = {
    "aten::sigmoid": "sigmoid", "aten::tanh": "tanh", "aten::exp": "exp", "aten::log": "log",
    "aten::sqrt": "sqrt", "aten::erf": "erf", "aten::reciprocal": "reciprocal",
    "aten::sin": "sin", "aten::cos": "cos", "aten::silu": "silu", "aten::hardswish": "hard_swish",
}
# aten op -> IR op, dtype kept.
UNARY_SAME = {
    "aten::relu": "relu", "aten::neg": "neg", "aten::abs": "abs", "aten::floor": "floor",
    "aten::ceil": "ceil", "aten::round": "round", "aten::sign": "sign",
    "aten::logical_not": "not",
}


def _unary_float(ir_op: str) -> Callable:
    def convert(cx: NodeContext, self: Value) -> Value:
        return cx.op(ir_op, cx.float(self))

    return convert


def _unary_same(ir_op: str) -> Callable:
    def convert(cx: NodeContext, self: Value) -> Value:
        if ir_op == "not" and self.dtype != "bool":
            return cx.op("equal", self, cx.scalar(0, self.dtype))
        if ir_op in ("floor", "ceil", "round") and self.dtype not in ("float32", "float64",
                                                                       "float16", "bfloat16"):
            return self
        return cx.op(ir_op, self)

    return convert


for _aten, _ir in UNARY_FLOAT.items():
    converter(_aten)(_unary_float(_ir))
for _aten, _ir in UNARY_SAME.items():
    converter(_aten)(_unary_same(_ir))


@converter("aten::rsqrt")
def rsqrt(cx: NodeContext, self: Value) -> Value:
    return cx.op("reciprocal", cx.op("sqrt", cx.float(self)))


@converter("aten::gelu")
def gelu(cx: NodeContext, self: Value, approximate: str = "none") -> Value:
    if approximate not in ("none", "tanh"):
        cx.unsupported_argument("approximate", approximate, "'none', 'tanh'")
    return cx.op("gelu", self, approximate=approximate)


@converter("aten::hardsigmoid")
def hardsigmoid(cx: NodeContext, self: Value) -> Value:
    # relu6(x + 3) / 6
    return cx.op("hard_sigmoid", self, alpha=1.0 / 6.0, beta=0.5)


@converter("aten::hardtanh")
def hardtanh(cx: NodeContext, self: Value, min_val, max_val) -> Value:
    return cx.op("clip", self, min=float(min_val), max=float(max_val))


@converter("aten::relu6")
def relu6(cx: NodeContext, self: Value) -> Value:
    return cx.op("clip", self, min=0.0, max=6.0)


@converter("aten::leaky_relu")
def leaky_relu(cx: NodeContext, self: Value, negative_slope=0.01) -> Value:
    return cx.op("leaky_relu", self, alpha=float(negative_slope))


@converter("aten::elu")
def elu(cx: NodeContext, self: Value, alpha=1, scale=1, input_scale=1) -> Value:
    x = self if input_scale == 1 else cx.op("mul", self, cx.scalar(input_scale, self.dtype))
    y = cx.op("elu", x, alpha=float(alpha))
    return y if scale == 1 else cx.op("mul", y, cx.scalar(scale, y.dtype))


@converter("aten::selu")
def selu(cx: NodeContext, self: Value) -> Value:
    # scale * elu(x, alpha) with SELU's fixed constants
    return elu(cx, self, alpha=1.6732632423543772, scale=1.0507009873554805)


@converter("aten::celu")
def celu(cx: NodeContext, self: Value, alpha=1.0) -> Value:
    # max(0, x) + min(0, alpha * (exp(x / alpha) - 1)) = elu(x / alpha) * alpha
    return elu(cx, self, alpha=alpha, scale=alpha, input_scale=1.0 / alpha)


@converter("aten::softplus")
def softplus(cx: NodeContext, self: Value, beta=1, threshold=20) -> Value:
    # (1/beta) * log(1 + exp(beta * x)), and x itself where beta * x > threshold
    bx = self if beta == 1 else cx.op("mul", self, cx.scalar(beta, self.dtype))
    y = cx.op("softplus", bx)
    if beta != 1:
        y = cx.op("div", y, cx.scalar(beta, y.dtype))
    return cx.op("where", cx.op("greater", bx, cx.scalar(threshold, bx.dtype)), self, y)


@converter("aten::mish")
def mish(cx: NodeContext, self: Value) -> Value:
    # x * tanh(softplus(x))
    return cx.op("mul", self, cx.op("tanh", softplus(cx, self)))


@converter("aten::clamp", "aten::clip")
def clamp(cx: NodeContext, self: Value, min=None, max=None) -> Value:
    if not isinstance(min, Value) and not isinstance(max, Value):
        if self.dtype.startswith(("int", "uint")) and any(
                isinstance(b, float) for b in (min, max)):
            self = cx.cast(self, "float32")
        return cx.op("clip", self, min=min, max=max)
    out = self
    if min is not None:
        out = cx.op("maximum", *cx.promote(out, min))
    if max is not None:
        out = cx.op("minimum", *cx.promote(out, max))
    return out


@converter("aten::clamp_min")
def clamp_min(cx: NodeContext, self: Value, min) -> Value:
    return clamp(cx, self, min=min)


@converter("aten::clamp_max")
def clamp_max(cx: NodeContext, self: Value, max) -> Value:
    return clamp(cx, self, max=max)


# -- binary arithmetic -----------------------------------------------------------------------------
def _with_alpha(cx: NodeContext, op: str, self, other, alpha) -> Value:
    """self op alpha * other, as aten::add and aten::sub define it."""
    a, b = cx.promote(self, other)
    if alpha != 1:
        b = cx.op("mul", b, cx.scalar(alpha, b.dtype))
    return cx.op(op, a, b)


@converter("aten::add")
def add(cx: NodeContext, self, other, alpha=1) -> Value:
    return _with_alpha(cx, "add", self, other, alpha)


@converter("aten::sub")
def sub(cx: NodeContext, self, other, alpha=1) -> Value:
    return _with_alpha(cx, "sub", self, other, alpha)


@converter("aten::rsub")
def rsub(cx: NodeContext, self, other, alpha=1) -> Value:
    return sub(cx, other, self, alpha)


@converter("aten::mul")
def mul(cx: NodeContext, self, other) -> Value:
    a, b = cx.promote(self, other)
    if a.dtype == "bool":
        return cx.op("and", a, b)
    return cx.op("mul", a, b)


def _trunc(cx: NodeContext, q: Value) -> Value:
    return cx.op("where", cx.op("less", q, cx.scalar(0, q.dtype)), cx.op("ceil", q),
                 cx.op("floor", q))


@converter("aten::div")
def div(cx: NodeContext, self, other, rounding_mode=None) -> Value:
    a, b = cx.promote(self, other)
    if rounding_mode is None:
        a, b = cx.float(a), cx.float(b)
        return cx.op("div", a, b)
    if rounding_mode not in ("trunc", "floor"):
        cx.unsupported_argument("rounding_mode", rounding_mode, "None, 'trunc', 'floor'")
    if a.dtype.startswith(("int", "uint")):
        if rounding_mode == "trunc":
            return cx.op("div", a, b)
        q = cx.op("floor", cx.op("div", cx.cast(a, "float64"), cx.cast(b, "float64")))
        return cx.cast(q, a.dtype)
    q = cx.op("div", a, b)
    return cx.op("floor", q) if rounding_mode == "floor" else _trunc(cx, q)


@converter("aten::floor_divide")
def floor_divide(cx: NodeContext, self, other) -> Value:
    return div(cx, self, other, rounding_mode="floor")


@converter("aten::remainder")
def remainder(cx: NodeContext, self, other) -> Value:
    # Python's modulo: a - floor(a / b) * b
    a, b = cx.promote(self, other)
    q = floor_divide(cx, a, b)
    return cx.op("sub", a, cx.op("mul", q, b))


@converter("aten::fmod")
def fmod(cx: NodeContext, self, other) -> Value:
    a, b = cx.promote(self, other)
    q = div(cx, a, b, rounding_mode="trunc")
    return cx.op("sub", a, cx.op("mul", q, b))


@converter("aten::pow")
def pow_(cx: NodeContext, self, exponent) -> Value:
    if isinstance(self, Value) and not isinstance(exponent, Value):
        x = cx.float(self) if isinstance(exponent, float) else self
        if exponent == 1:
            return x
        if exponent == 2:
            return cx.op("mul", x, x)
        if exponent == 0.5:
            return cx.op("sqrt", x)
        if exponent == -1 and x.dtype.startswith(("float", "bfloat")):
            return cx.op("reciprocal", x)
    a, b = cx.promote(self, exponent)
    return cx.op("pow", a, b)


@converter("aten::maximum", "aten::max.other")
def maximum(cx: NodeContext, self, other) -> Value:
    return cx.op("maximum", *cx.promote(self, other))


@converter("aten::minimum", "aten::min.other")
def minimum(cx: NodeContext, self, other) -> Value:
    return cx.op("minimum", *cx.promote(self, other))


# -- comparison and logic --------------------------------------------------------------------------
COMPARE = {"aten::eq": "equal", "aten::lt": "less", "aten::le": "less_equal",
           "aten::gt": "greater", "aten::ge": "greater_equal"}


def _compare(ir_op: str) -> Callable:
    def convert(cx: NodeContext, self, other) -> Value:
        return cx.op(ir_op, *cx.promote(self, other))

    return convert


for _aten, _ir in COMPARE.items():
    converter(_aten)(_compare(_ir))


@converter("aten::ne")
def ne(cx: NodeContext, self, other) -> Value:
    return cx.op("not", cx.op("equal", *cx.promote(self, other)))


LOGIC = {"aten::logical_and": "and", "aten::logical_or": "or", "aten::logical_xor": "xor",
         "aten::__and__": "and", "aten::__or__": "or", "aten::__xor__": "xor",
         "aten::bitwise_and": "and", "aten::bitwise_or": "or", "aten::bitwise_xor": "xor"}


def _logic(ir_op: str) -> Callable:
    def convert(cx: NodeContext, self, other) -> Value:
        a, b = cx.promote(self, other)
        if a.dtype != "bool" and not cx.kind.startswith("aten::logical_"):
            cx.unsupported(f"bitwise {ir_op} of {a.dtype} tensors is not implemented")
        return cx.op(ir_op, cx.cast(a, "bool"), cx.cast(b, "bool"))

    return convert


for _aten, _ir in LOGIC.items():
    converter(_aten)(_logic(_ir))


@converter("aten::bitwise_not")
def bitwise_not(cx: NodeContext, self: Value) -> Value:
    if self.dtype != "bool":
        cx.unsupported(f"bitwise not of a {self.dtype} tensor is not implemented")
    return cx.op("not", self)


@converter("aten::where")
def where(cx: NodeContext, condition: Value, self, other) -> Value:
    a, b = cx.promote(self, other)
    return cx.op("where", cx.cast(condition, "bool"), a, b)


@converter("aten::masked_fill")
def masked_fill(cx: NodeContext, self: Value, mask: Value, value) -> Value:
    v = cx.tensor(value, self.dtype)
    return cx.op("where", cx.cast(mask, "bool"), v, self)


# -- reductions ------------------------------------------------------------------------------------
def _reduce(cx: NodeContext, op: str, x: Value, dim, keepdim, dtype=None) -> Value:
    if dtype is not None:
        x = cx.cast(x, dtype_name(dtype))
    axes = cx.dims(dim if dim not in ([], ()) else None, x.type.rank)
    if x.type.rank == 0:
        return x
    return cx.op(op, x, axes=tuple(axes), keepdims=int(bool(keepdim)))


@converter("aten::mean")
def mean(cx: NodeContext, self: Value, dim=None, keepdim=False, dtype=None) -> Value:
    return _reduce(cx, "reduce_mean", self if dtype else cx.float(self), dim, keepdim, dtype)


@converter("aten::sum")
def sum_(cx: NodeContext, self: Value, dim=None, keepdim=False, dtype=None) -> Value:
    if dtype is None and self.dtype in ("bool", "int8", "uint8", "int16", "int32"):
        dtype = "int64"  # PyTorch sums integers in int64
    return _reduce(cx, "reduce_sum", self, dim, keepdim, dtype)


@converter("aten::prod")
def prod(cx: NodeContext, self: Value, dim=None, keepdim=False, dtype=None) -> Value:
    return _reduce(cx, "reduce_prod", self, dim, keepdim, dtype)


@converter("aten::amax")
def amax(cx: NodeContext, self: Value, dim=(), keepdim=False) -> Value:
    return _reduce(cx, "reduce_max", self, dim, keepdim)


@converter("aten::amin")
def amin(cx: NodeContext, self: Value, dim=(), keepdim=False) -> Value:
    return _reduce(cx, "reduce_min", self, dim, keepdim)


@converter("aten::max")
def max_(cx: NodeContext, self: Value) -> Value:
    return _reduce(cx, "reduce_max", self, None, False)


@converter("aten::min")
def min_(cx: NodeContext, self: Value) -> Value:
    return _reduce(cx, "reduce_min", self, None, False)


@converter("aten::any")
def any_(cx: NodeContext, self: Value, dim=None, keepdim=False) -> Value:
    # max over 0/1
    x = cx.cast(cx.op("not", cx.op("equal", self, cx.scalar(0, self.dtype))), "float32")
    return cx.op("greater", _reduce(cx, "reduce_max", x, dim, keepdim), cx.scalar(0, "float32"))


@converter("aten::all")
def all_(cx: NodeContext, self: Value, dim=None, keepdim=False) -> Value:
    # min over 0/1
    x = cx.cast(cx.op("not", cx.op("equal", self, cx.scalar(0, self.dtype))), "float32")
    return cx.op("greater", _reduce(cx, "reduce_min", x, dim, keepdim), cx.scalar(0, "float32"))


def _moments(cx: NodeContext, x: Value, dim, correction, keepdim) -> tuple[Value, Value, int]:
    axes = cx.dims(dim if dim not in ([], ()) else None, x.type.rank)
    n = math.prod(x.shape[a] for a in axes)
    mean_ = cx.op("reduce_mean", x, axes=tuple(axes), keepdims=1)
    d = cx.op("sub", x, mean_)
    ss = cx.op("reduce_sum", cx.op("mul", d, d), axes=tuple(axes), keepdims=int(bool(keepdim)))
    c = 1 if correction is None else correction
    var = cx.op("div", ss, cx.scalar(max(n - c, 0), ss.dtype))
    return var, mean_, n


@converter("aten::var")
def var(cx: NodeContext, self: Value, dim=None, unbiased=True, keepdim=False, correction=None):
    c = correction if correction is not None else (1 if unbiased else 0)
    return _moments(cx, cx.float(self), dim, c, keepdim)[0]


@converter("aten::std")
def std(cx: NodeContext, self: Value, dim=None, unbiased=True, keepdim=False, correction=None):
    return cx.op("sqrt", var(cx, self, dim, unbiased, keepdim, correction))


def vector_norm(cx: NodeContext, x: Value, ord, dim, keepdim) -> Value:
    x = cx.float(x)
    k = int(bool(keepdim))
    axes = tuple(cx.dims(dim if dim not in ([], ()) else None, x.type.rank))
    if ord == 2:
        return cx.op("sqrt", cx.op("reduce_sum", cx.op("mul", x, x), axes=axes, keepdims=k))
    if ord == 1:
        return cx.op("reduce_sum", cx.op("abs", x), axes=axes, keepdims=k)
    if ord == float("inf"):
        return cx.op("reduce_max", cx.op("abs", x), axes=axes, keepdims=k)
    if isinstance(ord, (int, float)) and ord > 0:
        p = cx.scalar(ord, x.dtype)
        s = cx.op("reduce_sum", cx.op("pow", cx.op("abs", x), p), axes=axes, keepdims=k)
        return cx.op("pow", s, cx.scalar(1.0 / ord, x.dtype))
    cx.unsupported_argument("ord", ord, "positive numbers and inf")


@converter("aten::linalg_vector_norm")
def linalg_vector_norm(cx: NodeContext, self: Value, ord=2, dim=None, keepdim=False,
                       dtype=None) -> Value:
    x = self if dtype is None else cx.cast(self, dtype_name(dtype))
    return vector_norm(cx, x, ord, dim, keepdim)


@converter("aten::norm")
def norm(cx: NodeContext, self: Value, p=2, dim=None, keepdim=False, dtype=None) -> Value:
    x = self if dtype is None else cx.cast(self, dtype_name(dtype))
    return vector_norm(cx, x, 2 if p is None else p, dim, keepdim)


# -- softmax ---------------------------------------------------------------------------------------
@converter("aten::softmax", "aten::_softmax")
def softmax(cx: NodeContext, self: Value, dim, dtype=None, half_to_float=False) -> Value:
    x = cx.cast(self, dtype_name(dtype)) if dtype is not None else cx.float(self)
    return cx.op("softmax", x, axis=cx.dim(dim, x.type.rank))


@converter("aten::log_softmax", "aten::_log_softmax")
def log_softmax(cx: NodeContext, self: Value, dim, dtype=None, half_to_float=False) -> Value:
    x = cx.cast(self, dtype_name(dtype)) if dtype is not None else cx.float(self)
    return cx.op("log_softmax", x, axis=cx.dim(dim, x.type.rank))


# -- matrix products -------------------------------------------------------------------------------
@converter("aten::matmul")
def matmul(cx: NodeContext, self: Value, other: Value) -> Value:
    return cx.op("matmul", *cx.promote(self, other))


@converter("aten::mm", "aten::bmm")
def mm(cx: NodeContext, self: Value, mat2: Value) -> Value:
    return cx.op("matmul", *cx.promote(self, mat2))


def linear_(cx: NodeContext, x: Value, weight: Value, bias: Value | None) -> Value:
    """x @ weight.T + bias (the transpose of a constant weight folds at once)."""
    w = cx.transpose(weight, (1, 0)) if weight.type.rank == 2 else weight
    y = cx.op("matmul", x, w)
    return y if bias is None else cx.op("add", y, bias)


@converter("aten::linear")
def linear(cx: NodeContext, input: Value, weight: Value, bias: Value | None = None) -> Value:
    return linear_(cx, input, weight, bias)


@converter("aten::addmm", "aten::baddbmm", "aten::addbmm")
def addmm(cx: NodeContext, self: Value, mat1=None, mat2=None, beta=1, alpha=1,
          batch1=None, batch2=None) -> Value:
    a, b = (mat1, mat2) if mat1 is not None else (batch1, batch2)
    y = cx.op("matmul", a, b)
    if cx.kind == "aten::addbmm":
        y = cx.op("reduce_sum", y, axes=(0,), keepdims=0)
    if alpha != 1:
        y = cx.op("mul", y, cx.scalar(alpha, y.dtype))
    if beta == 0:
        return y
    c = self if beta == 1 else cx.op("mul", self, cx.scalar(beta, self.dtype))
    return cx.op("add", y, c)


@converter("aten::einsum")
def einsum(cx: NodeContext, equation: str, tensors: list, path=None) -> Value:
    """Two-operand contractions: permute and reshape into one batched matmul."""
    eq = equation.replace(" ", "")
    if "->" not in eq or "." in eq or len(tensors) != 2:
        cx.unsupported(f"einsum {equation!r}: only explicit two-operand equations are implemented")
    lhs, out = eq.split("->")
    sa, sb = lhs.split(",")
    a, b = cx.promote(*tensors)
    if len(set(sa)) != len(sa) or len(set(sb)) != len(sb):
        cx.unsupported(f"einsum {equation!r}: repeated indices in one operand")
    size = {**dict(zip(sa, a.shape)), **dict(zip(sb, b.shape))}
    batch = [c for c in out if c in sa and c in sb]
    contract = [c for c in sa if c in sb and c not in out]
    only_a = [c for c in sa if c not in sb]
    only_b = [c for c in sb if c not in sa]
    if any(c not in out for c in only_a + only_b):
        cx.unsupported(f"einsum {equation!r}: summing over an index of one operand")
    pa = cx.transpose(a, [sa.index(c) for c in batch + only_a + contract])
    pb = cx.transpose(b, [sb.index(c) for c in batch + contract + only_b])
    nb = [size[c] for c in batch]
    m, k, n = (math.prod(size[c] for c in g) for g in (only_a, contract, only_b))
    y = cx.op("matmul", cx.reshape(pa, nb + [m, k]), cx.reshape(pb, nb + [k, n]))
    y = cx.reshape(y, nb + [size[c] for c in only_a + only_b])
    have = batch + only_a + only_b
    return cx.transpose(y, [have.index(c) for c in out])


@converter("aten::cumsum")
def cumsum(cx: NodeContext, self: Value, dim, dtype=None) -> Value:
    # a matmul with a triangular matrix of ones
    x = cx.cast(self, dtype_name(dtype)) if dtype is not None else self
    if x.dtype not in ("float32", "float64"):
        cx.unsupported(f"cumsum of a {x.dtype} tensor is not implemented")
    d = cx.dim(dim, x.type.rank)
    n = x.shape[d]
    tri = cx.const(np.triu(np.ones((n, n))).astype(x.dtype))
    perm = [i for i in range(x.type.rank) if i != d] + [d]
    y = cx.op("matmul", cx.transpose(x, perm), tri)
    return cx.transpose(y, [perm.index(i) for i in range(x.type.rank)])
