"""An XGBoost `Booster` as IR: one `tree_ensemble` (gbtree, dart) or `linear_booster` (gblinear)
node with the objective's base margin and post-transform.

`OBJECTIVES` is the one table of what each objective means at prediction time: how XGBoost turns
the saved `base_score` into a margin (`ProbToMargin`) and how it turns margins into outputs
(`PredTransform`), from XGBoost's `src/objective/`.
"""
from __future__ import annotations

import math

import numpy as np

from neo import ir
from neo.ir.errors import ModelLoadError, UnsupportedModelError, UnsupportedOp
from neo.ir.ops_ml import MAX_CATEGORY, LinearBooster, TreeEnsemble

from .model import Booster

INPUT_NAME = "data"

# objective -> (link applied to base_score, post-transform)
OBJECTIVES: dict[str, tuple[str, str]] = {
    "reg:squarederror": ("identity", "identity"),
    "reg:linear": ("identity", "identity"),  # the pre-1.0 name of reg:squarederror
    "reg:squaredlogerror": ("identity", "identity"),
    "reg:pseudohubererror": ("identity", "identity"),
    "reg:absoluteerror": ("identity", "identity"),
    "reg:quantileerror": ("identity", "identity"),
    "reg:logistic": ("logit", "sigmoid"),
    "binary:logistic": ("logit", "sigmoid"),
    "binary:logitraw": ("identity", "identity"),
    "binary:hinge": ("identity", "hinge"),
    "multi:softprob": ("identity", "softmax"),
    "multi:softmax": ("identity", "argmax"),
    "rank:pairwise": ("identity", "identity"),
    "rank:ndcg": ("identity", "identity"),
    "rank:map": ("identity", "identity"),
    "count:poisson": ("log", "exp"),
    "reg:tweedie": ("log", "exp"),
    "reg:gamma": ("log", "exp"),
    "survival:cox": ("log", "exp"),
    "survival:aft": ("log", "exp"),
}

_RT_EPS = np.float32(1e-6)  # XGBoost's kRtEps, the bound of a logistic base_score


def _logf(x: np.float32) -> np.float32:
    # logf: log in double rounded to float (glibc's logf is correctly rounded in practice)
    return np.float32(math.log(float(x))) if x > 0 else np.float32(-np.inf if x == 0 else np.nan)


def _link(kind: str, p: np.float32) -> np.float32:
    """XGBoost's ProbToMargin in its float32 arithmetic."""
    p = np.float32(p)
    if kind == "identity":
        return p
    if kind == "log":
        return _logf(p)
    # LogisticRegression::ProbToMargin: clamp to [eps, 1 - eps], then -logf(1/x - 1)
    p = min(max(p, _RT_EPS), np.float32(1) - _RT_EPS)
    return np.float32(-_logf(np.float32(np.float32(1) / p) - np.float32(1)))


def _sigmoid(x: np.float32) -> np.float32:
    e = np.float32(math.exp(float(min(-x, np.float32(88.7)))))
    return np.float32(1) / (e + np.float32(1) + np.float32(1e-16))


def base_margin(b: Booster, link: str) -> np.ndarray:
    """The margin every row starts from, per output group."""
    scores = b.base_score
    if scores.size == 1:
        scores = np.repeat(scores, b.num_groups)
    if scores.size != b.num_groups:
        raise ModelLoadError(f"{b.path.name}: base_score has {scores.size} values for "
                             f"{b.num_groups} outputs")
    if b.base_score_is_margin:
        # XGBoost < 1.0 saved the transformed base_score; XGBoost applies the transform and then
        # the link again on load (learner.cc)
        scores = np.array([_sigmoid(s) if link == "logit" else
                           np.float32(math.exp(float(s))) if link == "log" else s
                           for s in scores], np.float32)
    return np.array([_link(link, s) for s in scores], np.float32)


def unsupported(b: Booster) -> list[UnsupportedOp]:
    """Everything in the model the compiler does not implement, all at once."""
    found: list[UnsupportedOp] = []
    if b.objective not in OBJECTIVES:
        found.append(UnsupportedOp(f"objective {b.objective}", 1, [], reason=(
            f"supported objectives: {', '.join(sorted(OBJECTIVES))}")))
    if b.booster not in ("gbtree", "dart", "gblinear"):
        found.append(UnsupportedOp(f"booster {b.booster}", 1, [],
                                   reason="supported boosters: gbtree, dart, gblinear"))
    vector = [i for i, t in enumerate(b.trees) if t.size_leaf_vector > 1]
    if vector:
        found.append(UnsupportedOp(
            "vector-leaf tree", len(vector), [f"tree {i}" for i in vector[:3]],
            reason="multi_strategy='multi_output_tree' is not implemented; train with the "
                   "default one_output_per_tree"))
    return found


def check_supported(b: Booster) -> None:
    found = unsupported(b)
    if found:
        raise UnsupportedModelError(found, what=f"features of {b.path.name}")


def to_graph(b: Booster, batch: int, model_name: str = "") -> ir.Graph:
    check_supported(b)
    link, transform = OBJECTIVES[b.objective]
    margin = base_margin(b, link)
    g = ir.Graph(model_name or b.path.stem or "xgboost", row_batch=True)  # rows independent
    x = g.input(INPUT_NAME, (batch, b.num_feature), "float32")
    if b.booster == "gblinear":
        model = linear_model(b, margin)
        out = g.op("linear_booster", x, name="gblinear", origin=b.booster, model=model,
                   transform=transform)
    else:
        model = tree_ensemble(b, margin)
        out = g.op("tree_ensemble", x, name=b.booster, origin=b.booster, model=model,
                   transform=transform)
    g.outputs = [out]
    g.output_names = ["output"]
    return g


def linear_model(b: Booster, margin: np.ndarray) -> LinearBooster:
    w = b.linear_weights
    G, F = b.num_groups, b.num_feature
    if w is None or w.size != (F + 1) * G:
        raise ModelLoadError(f"{b.path.name}: gblinear has {0 if w is None else w.size} weights; "
                             f"{F} features and {G} outputs need {(F + 1) * G}")
    w = w.reshape(F + 1, G)
    # GBLinear::PredictBatchInternal starts every group from base_score(0)
    return LinearBooster(weight=np.ascontiguousarray(w[:F]), bias=w[F].copy(),
                         base_margin=np.full(G, margin[0], np.float32))


def tree_ensemble(b: Booster, margin: np.ndarray) -> TreeEnsemble:
    name = b.path.name
    G, F = b.num_groups, b.num_feature
    if len(b.tree_info) != len(b.trees):
        raise ModelLoadError(f"{name}: {len(b.trees)} trees but tree_info has "
                             f"{len(b.tree_info)} entries")
    bad = [i for i, gr in enumerate(b.tree_info.tolist()) if not 0 <= gr < G]
    if bad:
        raise ModelLoadError(f"{name}: tree {bad[0]} adds to output {b.tree_info[bad[0]]}, but "
                             f"the model has {G}")
    if b.weight_drop is not None and len(b.weight_drop) != len(b.trees):
        raise ModelLoadError(f"{name}: dart has {len(b.trees)} trees and "
                             f"{len(b.weight_drop)} weights")
    feature, threshold, left, right, dleft, value, cat_node = [], [], [], [], [], [], []
    cat_sets: list[np.ndarray] = []
    roots = []
    base = 0
    for t, tree in enumerate(b.trees):
        n = tree.num_nodes
        lt, rt = tree.left.astype(np.int64), tree.right.astype(np.int64)
        _check_tree(name, t, tree, F)
        leaf = lt < 0
        feature.append(np.where(leaf, 0, tree.split_indices).astype(np.int32))
        threshold.append(np.where(leaf, np.float32(0), tree.split_conditions).astype(np.float32))
        value.append(np.where(leaf, tree.split_conditions, np.float32(0)).astype(np.float32))
        left.append(np.where(leaf, -1, lt + base).astype(np.int32))
        right.append(np.where(leaf, -1, rt + base).astype(np.int32))
        dleft.append(tree.default_left.astype(bool))
        cn = np.full(n, -1, np.int32)
        for node, cats in sorted(tree.categories.items()):
            if leaf[node]:
                continue
            cn[node] = len(cat_sets)
            cat_sets.append(cats)
        cat_node.append(cn)
        roots.append(base)
        base += n
    category_bits = None
    if cat_sets:
        top = max(int(c.max()) for c in cat_sets if c.size)
        if top >= MAX_CATEGORY:
            raise ModelLoadError(f"{name}: category {top} is out of range (XGBoost's limit is "
                                 f"{MAX_CATEGORY - 1})")
        words = top // 32 + 1
        category_bits = np.zeros((len(cat_sets), words), np.uint32)
        for k, cats in enumerate(cat_sets):
            c = cats.astype(np.int64)
            c = c[c >= 0]
            np.bitwise_or.at(category_bits[k], c >> 5, (np.uint32(1) << (c & 31)).astype(
                np.uint32))
    cat = np.concatenate(cat_node) if cat_node else np.zeros(0, np.int32)
    return TreeEnsemble(
        num_features=F, num_groups=G, base_margin=margin,
        feature=_cat(feature, np.int32), threshold=_cat(threshold, np.float32),
        left=_cat(left, np.int32), right=_cat(right, np.int32),
        default_left=_cat(dleft, bool), value=_cat(value, np.float32),
        tree_root=np.array(roots, np.int32), tree_group=b.tree_info.astype(np.int32),
        tree_weight=None if b.weight_drop is None else b.weight_drop.astype(np.float32),
        category_node=cat if category_bits is not None else None,
        category_bits=category_bits)


def _cat(parts, dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


def _check_tree(name: str, t: int, tree, F: int) -> None:
    """Children in range, every node reached once from the root, features in range."""
    n = tree.num_nodes
    seen = np.zeros(n, bool)
    stack = [0]
    while stack:
        i = stack.pop()
        if seen[i]:
            raise ModelLoadError(f"{name}: tree {t} is not a tree (node {i} is reached twice)")
        seen[i] = True
        lc, rc = int(tree.left[i]), int(tree.right[i])
        if lc < 0:
            continue
        if not (0 < lc < n and 0 < rc < n):
            raise ModelLoadError(f"{name}: tree {t} node {i} has children {lc}, {rc} outside "
                                 f"its {n} nodes")
        f = int(tree.split_indices[i])
        if not 0 <= f < F:
            raise ModelLoadError(f"{name}: tree {t} node {i} splits on feature {f}, but the "
                                 f"model has {F} features")
        stack += [lc, rc]
