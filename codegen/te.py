"""A small tensor-expression language: what one output element of a fused kernel is.

Ops describe their computation as `compute(attrs, out_shape, inputs)(index) -> Expr`, where `inputs`
are accessors that either load from a buffer or inline a producer's expression. Index arithmetic is
int64; `affine()` recognizes loads whose address is affine in a loop variable so the renderer can
emit vector loads instead of gathers.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from neo.ir.types import FLOAT_DTYPES

INDEX = "index"  # dtype of index arithmetic (i64)


class Expr:
    dtype: str

    # Operator sugar keeps op computes readable: a + b, a * 3, ...
    def __add__(self, o):
        return binop("add", self, _lift(o, self))

    def __radd__(self, o):
        return binop("add", _lift(o, self), self)

    def __sub__(self, o):
        return binop("sub", self, _lift(o, self))

    def __rsub__(self, o):
        return binop("sub", _lift(o, self), self)

    def __mul__(self, o):
        return binop("mul", self, _lift(o, self))

    def __rmul__(self, o):
        return binop("mul", _lift(o, self), self)

    def __floordiv__(self, o):
        return binop("floordiv", self, _lift(o, self))

    def __mod__(self, o):
        return binop("mod", self, _lift(o, self))


@dataclass(frozen=True, eq=True)
class Const(Expr):
    dtype: str
    value: float | int | bool


@dataclass(frozen=True, eq=True)
class Var(Expr):
    name: str
    dtype: str = INDEX


@dataclass(frozen=True, eq=True)
class Bin(Expr):
    op: str
    a: Expr
    b: Expr
    dtype: str


@dataclass(frozen=True, eq=True)
class Cmp(Expr):
    op: str  # eq ne lt le gt ge
    a: Expr
    b: Expr
    dtype: str = "bool"


@dataclass(frozen=True, eq=True)
class Un(Expr):
    op: str  # a name in codegen.math_table.UNARY
    a: Expr
    attrs: tuple
    dtype: str


@dataclass(frozen=True, eq=True)
class Select(Expr):
    cond: Expr
    a: Expr
    b: Expr
    dtype: str


@dataclass(frozen=True, eq=True)
class Cast(Expr):
    a: Expr
    dtype: str


@dataclass(frozen=True, eq=True)
class Load(Expr):
    """buf[index]; where `guard` is false the value is `fill` and memory is not touched."""

    buf: int
    index: Expr
    dtype: str
    guard: Expr | None = None
    fill: float | int | bool = 0


@dataclass(frozen=True, eq=True)
class Reduce(Expr):
    """reduce(op) over vars in ranges of `body` (sum, max, min, prod)."""

    op: str
    vars: tuple[str, ...]
    extents: tuple[int, ...]
    body: Expr
    dtype: str


def _remember_hash(cls: type) -> None:
    """Expressions are trees shared by many parents and used as keys (the renderer's CSE): the
    dataclass hash walks the whole tree on every call, which made rendering a deep integer conv
    epilogue quadratic (minutes for one kernel). Each node keeps its hash once computed."""
    tree_hash = cls.__hash__

    def __hash__(self) -> int:
        h = self.__dict__.get("_hash")
        if h is None:
            h = tree_hash(self)
            object.__setattr__(self, "_hash", h)
        return h

    cls.__hash__ = __hash__


for _cls in (Const, Var, Bin, Cmp, Un, Select, Cast, Load, Reduce):
    _remember_hash(_cls)


def _lift(o, like: Expr) -> Expr:
    if isinstance(o, Expr):
        return o
    return Const(like.dtype, o)


def const(v, dtype: str = INDEX) -> Const:
    return Const(dtype, v)


def binop(op: str, a: Expr, b: Expr) -> Expr:
    """Build a binary op, folding constants and identities (index math gets simple fast)."""
    if isinstance(a, Const) and isinstance(b, Const) and a.dtype == INDEX:
        x, y = a.value, b.value
        r = {"add": lambda: x + y, "sub": lambda: x - y, "mul": lambda: x * y,
             "floordiv": lambda: x // y, "mod": lambda: x % y, "min": lambda: min(x, y),
             "max": lambda: max(x, y)}.get(op)
        if r is not None:
            return Const(INDEX, r())
    if a.dtype == INDEX:
        if op == "add":
            if isinstance(a, Const) and a.value == 0:
                return b
            if isinstance(b, Const) and b.value == 0:
                return a
        elif op == "sub" and isinstance(b, Const) and b.value == 0:
            return a
        elif op == "mul":
            if isinstance(a, Const) and a.value == 1:
                return b
            if isinstance(b, Const) and b.value == 1:
                return a
            if (isinstance(a, Const) and a.value == 0) or (isinstance(b, Const) and b.value == 0):
                return Const(INDEX, 0)
        elif op in ("floordiv",) and isinstance(b, Const) and b.value == 1:
            return a
        elif op == "mod" and isinstance(b, Const) and b.value == 1:
            return Const(INDEX, 0)
    return Bin(op, a, b, a.dtype)


def cmp(op: str, a: Expr, b) -> Expr:
    b = _lift(b, a)
    if isinstance(a, Const) and isinstance(b, Const):
        import operator

        f = {"eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le,
             "gt": operator.gt, "ge": operator.ge}[op]
        return Const("bool", bool(f(a.value, b.value)))
    return Cmp(op, a, b)


def and_(a: Expr | None, b: Expr | None) -> Expr | None:
    if a is None or (isinstance(a, Const) and a.value is True):
        return b
    if b is None or (isinstance(b, Const) and b.value is True):
        return a
    return Bin("and", a, b, "bool")


def select(c: Expr, a: Expr, b: Expr) -> Expr:
    if isinstance(c, Const):
        return a if c.value else b
    return Select(c, a, b, a.dtype)


def unary(op: str, a: Expr, **attrs) -> Expr:
    return Un(op, a, tuple(sorted(attrs.items())), a.dtype)


def cast(a: Expr, dtype: str) -> Expr:
    return a if a.dtype == dtype else Cast(a, dtype)


def affine(e: Expr) -> tuple[dict[str, int], int] | None:
    """`e` as sum(coef*var) + const, or None when it is not affine."""
    if isinstance(e, Const):
        return {}, int(e.value)
    if isinstance(e, Var):
        return {e.name: 1}, 0
    if isinstance(e, Bin) and e.op in ("add", "sub"):
        fa, fb = affine(e.a), affine(e.b)
        if fa is None or fb is None:
            return None
        s = 1 if e.op == "add" else -1
        coefs = dict(fa[0])
        for k, v in fb[0].items():
            coefs[k] = coefs.get(k, 0) + s * v
        return {k: v for k, v in coefs.items() if v}, fa[1] + s * fb[1]
    if isinstance(e, Bin) and e.op == "mul":
        fa, fb = affine(e.a), affine(e.b)
        if fa is None or fb is None:
            return None
        if not fa[0]:
            return {k: v * fa[1] for k, v in fb[0].items() if v * fa[1]}, fa[1] * fb[1]
        if not fb[0]:
            return {k: v * fb[1] for k, v in fa[0].items() if v * fb[1]}, fa[1] * fb[1]
    return None


def free_vars_walker():
    """A function giving an expression's free variables, memoized by id across calls: fused
    producers share subexpressions (a DAG), walked once."""
    memo: dict[int, frozenset[str]] = {}

    def go(x):
        r = memo.get(id(x))
        if r is None:
            if isinstance(x, Var):
                r = frozenset((x.name,))
            elif isinstance(x, Reduce):
                r = go(x.body) - frozenset(x.vars)
            else:
                r = frozenset()
                for c in children(x):
                    r = r | go(c)
            memo[id(x)] = r
        return r

    return go


def free_vars(e: Expr) -> frozenset[str]:
    return free_vars_walker()(e)


def conjuncts(g: Expr) -> tuple[Expr, ...]:
    if isinstance(g, Bin) and g.op == "and" and g.dtype == "bool":
        return conjuncts(g.a) + conjuncts(g.b)
    return (g,)


def map_children(e: Expr, f: Callable[[Expr], Expr]) -> Expr:
    """e with f applied to each direct child (no folding)."""
    if isinstance(e, Bin):
        return Bin(e.op, f(e.a), f(e.b), e.dtype)
    if isinstance(e, Cmp):
        return Cmp(e.op, f(e.a), f(e.b))
    if isinstance(e, Un):
        return Un(e.op, f(e.a), e.attrs, e.dtype)
    if isinstance(e, Select):
        return Select(f(e.cond), f(e.a), f(e.b), e.dtype)
    if isinstance(e, Cast):
        return Cast(f(e.a), e.dtype)
    if isinstance(e, Load):
        return Load(e.buf, f(e.index), e.dtype, f(e.guard) if e.guard is not None else None,
                    e.fill)
    if isinstance(e, Reduce):
        return Reduce(e.op, e.vars, e.extents, f(e.body), e.dtype)
    return e


def guard_loads(e: Expr, guard: Expr) -> Expr:
    """`e` evaluated only where `guard` holds: each load (index tables and gathers included)
    takes the conjuncts of `guard` that share a variable with its address, the conditions that
    keep that address inside its buffer. Loads whose address depends on none (a per-channel
    operand under a spatial pad) stay unguarded: they are inside wherever e is evaluated."""
    parts = [(c, free_vars(c)) for c in conjuncts(guard)]
    done: dict[int, tuple[Expr, Expr]] = {}  # by id: producers share subexpressions

    def go(x):
        if id(x) not in done:
            y = map_children(x, go)
            if isinstance(y, Load):
                used = free_vars(y.index)
                g = None
                for c, vs in parts:
                    if vs & used:
                        g = and_(g, c)
                if g is not None:
                    # Where g fails the enclosing select discards the value, so the fill of a
                    # load that had no guard of its own is free: 1 rather than 0 for floats.
                    # With 0, a division of two such loads is 0/0 in those lanes, and LLVM 22's
                    # x86 backend takes 0/0 for a known zero and drops the select's mask
                    # (NaN in a padded normalization, e.g. MVN + pad).
                    fill = 1.0 if y.guard is None and y.dtype in FLOAT_DTYPES else y.fill
                    y = Load(y.buf, y.index, y.dtype, and_(g, y.guard), fill)
            done[id(x)] = (x, y)
        return done[id(x)][1]

    return go(e)


def uses_var(e: Expr, name: str) -> bool:
    return uses_any(e, frozenset((name,)))


def uses_any(e: Expr, names: frozenset[str]) -> bool:
    """Whether e depends on any of the variables `names` (a Reduce binds its own)."""
    memo: dict[int, bool] = {}  # by id, so a DAG is walked once, not once per path

    def go(x):
        r = memo.get(id(x))
        if r is None:
            if isinstance(x, Var):
                r = x.name in names
            elif isinstance(x, Const):
                r = False
            elif isinstance(x, Reduce):
                r = go(x.body) if not names & frozenset(x.vars) else uses_any(
                    x.body, names - frozenset(x.vars))
            else:
                r = False
                for c in children(x):
                    if go(c):
                        r = True
                        break
            memo[id(x)] = r
        return r

    return go(e)


def invariants(e: Expr, names: frozenset[str]) -> list[Expr]:
    """The largest subexpressions of e that depend on none of `names` (loop variables) and are
    worth computing once before that loop: not constants, variables or index arithmetic. Inside
    a Reduce its own variables count as loop variables too."""
    free = free_vars_walker()  # one walk of the DAG

    found: list[Expr] = []
    seen: set[int] = set()

    def go(x, vs):
        if id(x) in seen or isinstance(x, (Const, Var)):
            return
        seen.add(id(x))
        if not free(x) & vs and x.dtype != INDEX:
            found.append(x)
            return
        if isinstance(x, Reduce):
            go(x.body, vs | frozenset(x.vars))
            return
        for c in children(x):
            go(c, vs)

    go(e, names)
    return found


def children(e: Expr) -> tuple[Expr, ...]:
    if isinstance(e, (Bin, Cmp)):
        return (e.a, e.b)
    if isinstance(e, (Un, Cast)):
        return (e.a,)
    if isinstance(e, Select):
        return (e.cond, e.a, e.b)
    if isinstance(e, Load):
        return (e.index,) + ((e.guard,) if e.guard is not None else ())
    if isinstance(e, Reduce):
        return (e.body,)
    return ()


# -- tensor accessors ---------------------------------------------------------------------------
def row_major_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    st, acc = [], 1
    for d in reversed(shape):
        st.append(acc)
        acc *= d
    return tuple(reversed(st))


@dataclass
class Tensor:
    """An accessor: `t(idx)` gives the element expression at a multi-index."""

    shape: tuple[int, ...]
    dtype: str
    fn: Callable[[tuple[Expr, ...]], Expr]

    def __call__(self, idx) -> Expr:
        idx = tuple(i if isinstance(i, Expr) else const(i) for i in idx)
        return self.fn(idx)

    def guarded(self, idx, guard: Expr | None, fill) -> Expr:
        """Element at idx where guard holds, `fill` elsewhere (padding), never reading outside.

        idx may leave the tensor where guard is false, so every load of an inlined producer
        takes the guard (guard_loads): the Select alone would not stop its loads."""
        e = self(idx)
        if guard is None:
            return e
        if isinstance(e, Load) and e.guard is None:
            return Load(e.buf, guard_loads(e.index, guard), e.dtype, guard, fill)
        return select(guard, guard_loads(e, guard), Const(self.dtype, fill))


def buffer_tensor(buf: int, shape: tuple[int, ...], dtype: str) -> Tensor:
    strides = row_major_strides(shape)

    def fn(idx):
        flat = const(0)
        for i, s, d in zip(idx, strides, shape):
            if d != 1:
                flat = flat + i * s
        return Load(buf, flat, dtype)

    return Tensor(tuple(shape), dtype, fn)


def broadcast_index(idx: tuple[Expr, ...], in_shape: tuple[int, ...], out_shape: tuple[int, ...]
                    ) -> tuple[Expr, ...]:
    off = len(out_shape) - len(in_shape)
    return tuple(const(0) if d == 1 else idx[off + i] for i, d in enumerate(in_shape))


def substitute(e: Expr, env: dict[str, Expr]) -> Expr:
    """e with variables replaced (index math re-folded)."""
    memo: dict[tuple[int, int], Expr] = {}  # by id: shared subexpressions stay shared
    envs = [env]  # the environments the memo's keys refer to, kept alive

    def go(x, env):  # one frame per level: fused expressions can be hundreds of levels deep
        k = (id(x), id(env))
        r = memo.get(k)
        if r is not None:
            return r
        if isinstance(x, Var):
            r = env.get(x.name, x)
        elif isinstance(x, Const):
            r = x
        elif isinstance(x, Bin):
            a, b = go(x.a, env), go(x.b, env)
            r = binop(x.op, a, b) if x.dtype == INDEX else Bin(x.op, a, b, x.dtype)
        elif isinstance(x, Cmp):
            r = cmp(x.op, go(x.a, env), go(x.b, env))
        elif isinstance(x, Un):
            r = Un(x.op, go(x.a, env), x.attrs, x.dtype)
        elif isinstance(x, Select):
            r = select(go(x.cond, env), go(x.a, env), go(x.b, env))
        elif isinstance(x, Cast):
            r = Cast(go(x.a, env), x.dtype)
        elif isinstance(x, Load):
            r = Load(x.buf, go(x.index, env), x.dtype,
                     go(x.guard, env) if x.guard is not None else None, x.fill)
        elif isinstance(x, Reduce):
            inner = {k: v for k, v in env.items() if k not in x.vars}
            envs.append(inner)
            r = Reduce(x.op, x.vars, x.extents, go(x.body, inner), x.dtype)
        else:
            raise TypeError(type(x).__name__)
        memo[k] = r
        return r

    return go(e, env)


def merge_trailing(e: Expr, names: list[str], extents: list[int]
                   ) -> tuple[Expr, list[str], list[int]]:
    """Merge the last two loop variables into one (named as the outer, extent their product)
    while every load reads them as one contiguous run (`mergeable`): the H and W of a plane
    become one loop of H*W."""
    names, extents = list(names), list(extents)
    while len(names) > 1 and mergeable(e, names[-2], names[-1], extents[-1]):
        e = substitute(e, {names[-2]: const(0), names[-1]: Var(names[-2])})
        extents[-2:] = [extents[-2] * extents[-1]]
        names.pop()
    return e, names, extents


def unit_stride(e: Expr, var: str) -> bool:
    """True when `var` appears only in unguarded affine load addresses with coefficient 1 (it
    walks consecutive elements of every buffer it reads), and nowhere else."""
    memo: dict[int, bool] = {}

    def go(x):
        r = memo.get(id(x))
        if r is None:
            if isinstance(x, Load):
                if not uses_var(x.index, var):
                    r = x.guard is None or not uses_var(x.guard, var)
                else:
                    aff = affine(x.index)
                    r = (aff is not None and aff[0].get(var, 0) == 1
                         and (x.guard is None or not uses_var(x.guard, var)))
            elif isinstance(x, Var):
                r = x.name != var
            else:
                r = all(go(c) for c in children(x))
            memo[id(x)] = r
        return r

    return go(e)


def mergeable(e: Expr, outer: str, inner: str, inner_extent: int) -> bool:
    """True when (outer, inner) appear only in affine load addresses as c*(outer*extent + inner),
    so the two loops can run as one of outer_extent*inner_extent iterations."""
    memo: dict[int, bool] = {}  # by id: a DAG is walked once
    both = frozenset((outer, inner))

    def go(x):  # one frame per level: fused expressions can be hundreds of levels deep
        r = memo.get(id(x))
        if r is None:
            if isinstance(x, Load):
                if x.guard is not None and uses_any(x.guard, both):
                    r = False
                elif not uses_any(x.index, both):
                    r = True
                else:
                    aff = affine(x.index)
                    r = aff is not None and (
                        aff[0].get(outer, 0) == aff[0].get(inner, 0) * inner_extent)
            elif isinstance(x, Var):
                r = x.name not in both
            else:
                r = True
                for c in children(x):
                    if not go(c):
                        r = False
                        break
            memo[id(x)] = r
        return r

    return go(e)
