"""The XGBoost frontend: saved boosters (JSON, UBJSON, legacy binary) to one IR node.

XGBoost itself is not needed: `model.py` reads the files (`ubjson.py` is a small reader of the
UBJSON that XGBoost writes), `convert.py` turns a booster into a `tree_ensemble` or
`linear_booster` node (ir/ops_ml.py) with the objective's base margin and post-transform, and
codegen compiles it with the tree kernel (codegen/kernel_trees.py).

The model's one input is `data`, float32 [batch, features]; NaN is a missing value. Its output
is what `xgboost.Booster.predict` returns: [batch] for one output (or multi:softmax's class
index), [batch, outputs] otherwise.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from neo import ir

from ..common.filecache import keep_last_read
from .convert import INPUT_NAME, OBJECTIVES, to_graph, unsupported
from .model import load_booster

__all__ = ["XgboostFrontend", "import_xgboost", "inspect_xgboost", "read_booster"]

read_booster = keep_last_read(load_booster)


def import_xgboost(path: str | Path, shapes: dict[str, tuple[int, ...]] | None = None, *,
                   model_name: str = "") -> ir.Graph:
    """The booster at `path` as an IR graph for a batch of `shapes['data'][0]` rows (1 without)."""
    b = read_booster(path)
    batch = 1
    if shapes:
        shape = shapes.get(INPUT_NAME) or next(iter(shapes.values()))
        batch = int(shape[0])
    return to_graph(b, batch, model_name)


def _depth(tree) -> int:
    deepest, frontier, level = 0, [0], 0
    while frontier:
        deepest = level
        frontier = [c for i in frontier if tree.left[i] >= 0
                    for c in (int(tree.left[i]), int(tree.right[i]))]
        level += 1
    return deepest


def inspect_xgboost(path: str | Path) -> dict[str, Any]:
    """Trees, depth, features, objective and what is not supported, for `neo inspect`."""
    b = read_booster(path)
    groups = b.num_groups
    transform = OBJECTIVES.get(b.objective, ("", ""))[1]
    out_shape = ["N"] if groups == 1 or transform == "argmax" else ["N", groups]
    details: dict[str, Any] = {
        "format": {"json": "JSON", "ubjson": "UBJSON", "binary": "legacy binary"}[b.format],
        "xgboost_version": ".".join(map(str, b.version)) if b.version else "unknown",
        "booster": b.booster,
        "objective": b.objective,
        "features": b.num_feature,
        "outputs": groups,
        "base_score": [float(v) for v in b.base_score],
    }
    hist: dict[str, int] = {}
    if b.booster in ("gbtree", "dart"):
        depths = [_depth(t) for t in b.trees]
        leaves = sum(int((t.left < 0).sum()) for t in b.trees)
        rounds = len(b.trees) // max(1, groups * b.num_parallel_tree)
        details.update(trees=len(b.trees), boosting_rounds=rounds,
                       parallel_trees=b.num_parallel_tree,
                       max_depth=max(depths, default=0),
                       nodes=sum(t.num_nodes for t in b.trees), leaves=leaves,
                       categorical_splits=sum(len(t.categories) for t in b.trees))
        hist = {"tree": len(b.trees)}
    else:
        hist = {"linear": 1}
    if any(t == "c" for t in b.feature_types):
        details["categorical_features"] = [i for i, t in enumerate(b.feature_types) if t == "c"]
    return {
        "inputs": [{"name": INPUT_NAME, "shape": ["N", b.num_feature], "dtype": "float32"}],
        "outputs": [{"name": "output", "shape": out_shape, "dtype": "float32"}],
        "ops": hist,
        "details": details,
        "unsupported": [{"op_type": u.op_type, "count": u.count, "nodes": list(u.first_node_names),
                         "reason": u.reason} for u in unsupported(b)],
    }


class XgboostFrontend:
    name = "xgboost"

    def inputs(self, path):
        b = read_booster(path)
        return [(INPUT_NAME, (None, b.num_feature), "float32")]

    def load(self, path, shapes=None, *, options=None, model_name: str = ""):
        del options  # the input is float32 rows; no compiler option applies
        return import_xgboost(path, shapes, model_name=model_name)

    def inspect(self, path):
        return inspect_xgboost(path)
