"""Classical machine-learning models as IR ops: tree ensembles and linear boosters.

`tree_ensemble(x)` evaluates a forest of binary decision trees on the rows of `x` [N, F] float32:
each tree adds the value of the leaf a row reaches to its output group, starting from a base
margin per group, then a post-transform (sigmoid, exp, softmax, ...) turns margins into outputs.
The semantics are XGBoost's, which Treelite and LightGBM share: a numerical split sends a row left
when `x < threshold`; a categorical split sends it right when the category `int(x)` (0 <= x <
2^24) is in the node's set; a missing value (NaN) goes the node's default direction. Each group
sums its leaves in float32 in tree order, so the reference below and the compiled kernel
(`codegen/kernel_trees.py`) agree with XGBoost to the bit.

`linear_booster(x)` is XGBoost's gblinear: bias + base margin + sum of x[f] * w[f, g] over the
present (non-NaN) features in feature order, in float32, then the same post-transforms.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .registry import FusionKind, define_op
from .types import TensorType

# post-transforms of the margins (XGBoost's objectives' PredTransform)
TRANSFORMS = ("identity", "sigmoid", "exp", "softmax", "argmax", "hinge")
MAX_CATEGORY = 1 << 24  # XGBoost: categories are exact float32 integers below 2^24


@dataclass(eq=False)
class TreeEnsemble:
    """A forest, all trees' nodes concatenated; node indices are global.

    Leaves have `left == right == -1` and their output in `value`. `category_node[i] >= 0` makes
    node i categorical: row `category_node[i]` of `category_bits` is the bitset of the categories
    that go right. Tree t starts at `tree_root[t]` and adds to group `tree_group[t]`, times
    `tree_weight[t]` when given (DART).
    """

    num_features: int
    num_groups: int
    base_margin: np.ndarray  # float32 [G]
    feature: np.ndarray  # int32 [n]
    threshold: np.ndarray  # float32 [n]
    left: np.ndarray  # int32 [n]
    right: np.ndarray  # int32 [n]
    default_left: np.ndarray  # bool [n]
    value: np.ndarray  # float32 [n]
    tree_root: np.ndarray  # int32 [T]
    tree_group: np.ndarray  # int32 [T]
    tree_weight: np.ndarray | None = None  # float32 [T]
    category_node: np.ndarray | None = None  # int32 [n]
    category_bits: np.ndarray | None = None  # uint32 [categorical nodes, words]
    depths: np.ndarray = field(init=False)  # int32 [T]: edges on the longest root-leaf path

    def __post_init__(self) -> None:
        self.depths = np.array([self._depth(int(r)) for r in self.tree_root], dtype=np.int32)

    def _depth(self, root: int) -> int:
        deepest, level, frontier = 0, 0, [root]
        while frontier:
            deepest = level
            frontier = [c for n in frontier if self.left[n] >= 0
                        for c in (int(self.left[n]), int(self.right[n]))]
            level += 1
        return deepest

    @property
    def num_trees(self) -> int:
        return len(self.tree_root)

    @property
    def num_nodes(self) -> int:
        return len(self.feature)

    @property
    def has_categorical(self) -> bool:
        return self.category_node is not None and bool((self.category_node >= 0).any())

    def __repr__(self) -> str:
        depth = int(self.depths.max()) if self.num_trees else 0
        return (f"TreeEnsemble({self.num_trees} trees, {self.num_nodes} nodes, depth {depth}, "
                f"{self.num_features} features, {self.num_groups} groups"
                f"{', weighted' if self.tree_weight is not None else ''}"
                f"{', categorical' if self.has_categorical else ''})")

    __str__ = __repr__


@dataclass(eq=False)
class LinearBooster:
    """XGBoost's gblinear: margin[g] = bias[g] + base_margin[g] + sum_f x[f] * weight[f, g]."""

    weight: np.ndarray  # float32 [F, G]
    bias: np.ndarray  # float32 [G]
    base_margin: np.ndarray  # float32 [G]

    @property
    def num_features(self) -> int:
        return self.weight.shape[0]

    @property
    def num_groups(self) -> int:
        return self.weight.shape[1]

    def __repr__(self) -> str:
        return f"LinearBooster({self.num_features} features, {self.num_groups} groups)"

    __str__ = __repr__


def output_shape(n: int, groups: int, transform: str) -> tuple[int, ...]:
    """XGBoost's `predict` shape: (N,) for one group or a class index, else (N, G)."""
    return (n,) if groups == 1 or transform == "argmax" else (n, groups)


def _infer(attrs, types):
    model = attrs["model"]
    x = types[0]
    if model is None:
        raise ValueError("no model attribute")
    if attrs["transform"] not in TRANSFORMS:
        raise ValueError(f"unknown transform {attrs['transform']!r}; one of {TRANSFORMS}")
    if x.dtype != "float32" or x.rank != 2 or x.shape[1] != model.num_features:
        raise ValueError(f"input must be float32 [N, {model.num_features}], got {x}")
    return [TensorType(output_shape(x.shape[0], model.num_groups, attrs["transform"]),
                       "float32")]


# -- the numpy references (test oracles) -----------------------------------------------------


def _expf(x: np.ndarray) -> np.ndarray:
    # exp in double rounded to float: glibc's expf is correctly rounded in practice, numpy's
    # float32 exp (SIMD) is not always
    with np.errstate(over="ignore"):
        return np.exp(x.astype(np.float64)).astype(np.float32)


def apply_transform(margin: np.ndarray, transform: str) -> np.ndarray:
    """XGBoost's PredTransform on float32 margins [N, G], in its float32 arithmetic."""
    m = margin.astype(np.float32)
    one = np.float32(1)
    if transform == "identity":
        out = m
    elif transform == "sigmoid":  # common::Sigmoid: 1 / (expf(min(-x, 88.7)) + 1 + 1e-16)
        e = _expf(np.minimum(-m, np.float32(88.7)))
        out = one / ((e + one) + np.float32(1e-16))
    elif transform == "exp":
        out = _expf(m)
    elif transform == "hinge":
        out = np.where(m > 0, one, np.float32(0))
    elif transform == "softmax":  # common::Softmax: float max, double sum, float divide
        e = _expf(m - m.max(axis=1, keepdims=True))
        wsum = np.zeros(m.shape[0], np.float64)
        for g in range(m.shape[1]):
            wsum += e[:, g].astype(np.float64)
        out = e / wsum.astype(np.float32)[:, None]
    elif transform == "argmax":  # the first maximum, as a float
        return m.argmax(axis=1).astype(np.float32)
    else:
        raise ValueError(f"unknown transform {transform!r}")
    out = out.astype(np.float32)
    return out[:, 0] if out.shape[1] == 1 else out


def tree_margins(e: TreeEnsemble, x: np.ndarray) -> np.ndarray:
    """float32 [N, G]: base margins plus every tree's leaf, summed per group in tree order."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = x.shape[0]
    acc = np.tile(e.base_margin.astype(np.float32), (n, 1))
    rows = np.arange(n)
    cat_node = e.category_node if e.has_categorical else None
    for t in range(e.num_trees):
        node = np.full(n, e.tree_root[t], dtype=np.int64)
        while True:
            inner = e.left[node] >= 0
            if not inner.any():
                break
            nd, r = node[inner], rows[inner]
            xv = x[r, e.feature[nd]]
            go_left = xv < e.threshold[nd]
            if cat_node is not None:
                k = cat_node[nd]
                is_cat = k >= 0
                valid = (xv >= 0) & (xv < MAX_CATEGORY)
                c = np.where(valid & is_cat, xv, 0).astype(np.int64)
                word = c >> 5
                words = e.category_bits.shape[1]
                inside = valid & is_cat & (word < words)
                bits = e.category_bits[np.where(is_cat, k, 0), np.minimum(word, words - 1)]
                in_set = inside & (((bits >> (c & 31).astype(np.uint32)) & 1) == 1)
                go_left = np.where(is_cat, ~in_set, go_left)
            go_left = np.where(np.isnan(xv), e.default_left[nd], go_left)
            node[inner] = np.where(go_left, e.left[nd], e.right[nd])
        leaf = e.value[node].astype(np.float32)
        if e.tree_weight is not None:
            leaf = leaf * np.float32(e.tree_weight[t])
        g = e.tree_group[t]
        acc[:, g] = acc[:, g] + leaf
    return acc


def _tree_reference(attrs, x):
    return apply_transform(tree_margins(attrs["model"], x), attrs["transform"])


def linear_margins(m: LinearBooster, x: np.ndarray) -> np.ndarray:
    """float32 [N, G], summed as XGBoost's GBLinear::Pred: bias + base, then feature by feature."""
    x = np.asarray(x, dtype=np.float32)
    acc = np.tile((m.bias + m.base_margin).astype(np.float32), (x.shape[0], 1))
    for f in range(m.num_features):
        xf = x[:, f:f + 1]
        term = (xf * m.weight[f][None, :]).astype(np.float32)
        acc = np.where(np.isnan(xf), acc, (acc + term).astype(np.float32))
    return acc


def _linear_reference(attrs, x):
    return apply_transform(linear_margins(attrs["model"], x), attrs["transform"])


define_op("tree_ensemble", FusionKind.OPAQUE, _infer, _tree_reference,
          attrs={"model": None, "transform": "identity"})
define_op("linear_booster", FusionKind.OPAQUE, _infer, _linear_reference,
          attrs={"model": None, "transform": "identity"})
