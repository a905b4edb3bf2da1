"""Reading a saved XGBoost booster without xgboost: JSON, UBJSON and the legacy binary format.

The format is told by content, never by extension (XGBoost 3 writes UBJSON under any name):
`{"` starts JSON, `{` and a UBJSON type marker starts UBJSON, and anything else is the legacy
binary format (optionally behind a `binf` header), which XGBoost read up to 3.0 (3.1 refuses it).
Every format becomes one `Booster`; the layouts are those of XGBoost's `src/learner.cc`,
`src/gbm/gbtree_model.cc`, `src/gbm/gblinear_model.cc` and `src/tree/tree_model.cc`.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neo.ir.errors import ModelLoadError

from . import ubjson


@dataclass
class Tree:
    """One regression tree as XGBoost stores it: leaves have left == -1 and their value in
    `split_conditions`; `categories[node]` are the categories that go right at a categorical
    split."""

    left: np.ndarray  # int32
    right: np.ndarray  # int32
    split_indices: np.ndarray  # int64
    split_conditions: np.ndarray  # float32
    default_left: np.ndarray  # bool
    categories: dict[int, np.ndarray] = field(default_factory=dict)
    size_leaf_vector: int = 1

    @property
    def num_nodes(self) -> int:
        return len(self.left)


@dataclass
class Booster:
    """A saved booster in one normalized form, whatever file format it came from."""

    path: Path
    format: str  # json, ubjson, binary
    version: tuple[int, ...] | None
    objective: str
    booster: str  # gbtree, dart, gblinear
    num_feature: int
    num_class: int
    num_target: int
    base_score: np.ndarray  # float32, as saved (the user-facing value; see margin())
    trees: list[Tree] = field(default_factory=list)
    tree_info: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    weight_drop: np.ndarray | None = None
    linear_weights: np.ndarray | None = None
    num_parallel_tree: int = 1
    feature_names: list[str] = field(default_factory=list)
    feature_types: list[str] = field(default_factory=list)
    # legacy binary models from XGBoost < 1.0 saved base_score already through the link
    base_score_is_margin: bool = False

    @property
    def num_groups(self) -> int:
        return max(self.num_class, self.num_target, 1)


def load_booster(path: str | Path) -> Booster:
    """Read `path` (JSON, UBJSON or legacy binary) into a `Booster`; ModelLoadError if it is not
    an XGBoost model or is damaged."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelLoadError(f"cannot read {path}: {e.strerror or e}") from None
    kind = sniff(data)
    try:
        if kind == "json":
            try:
                doc = json.loads(data)
            except (ValueError, UnicodeDecodeError) as e:
                raise ModelLoadError(f"{path.name}: invalid JSON ({e})") from None
            return _from_document(path, "json", doc)
        if kind == "ubjson":
            try:
                doc = ubjson.loads(data)
            except ubjson.UbjsonError as e:
                raise ModelLoadError(f"{path.name}: invalid UBJSON ({e})") from None
            return _from_document(path, "ubjson", doc)
        return _from_binary(path, data)
    except ModelLoadError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        what = f"missing field {e}" if isinstance(e, KeyError) else str(e)
        raise ModelLoadError(
            f"{path.name}: not a readable XGBoost {kind} model ({what})",
            hint="save it with xgboost's Booster.save_model('model.json') or '.ubj'") from None


def sniff(data: bytes) -> str:
    """json, ubjson or binary, from the first bytes."""
    if data[:1] == b"{":
        rest = data[1:64].lstrip()
        if rest[:1] in (b'"', b"}"):
            return "json"
        return "ubjson"
    return "binary"


# -- JSON and UBJSON ---------------------------------------------------------------------------


def _ints(x, dtype=np.int64) -> np.ndarray:
    return np.asarray(x if len(x) else [], dtype=dtype)


def _floats(x) -> np.ndarray:
    # JSON numbers are the float32 values printed in shortest round-trip form: float() then
    # float32 gives them back exactly
    return np.asarray(x if len(x) else [], dtype=np.float64).astype(np.float32)


def parse_base_score(text: Any) -> np.ndarray:
    """'5E-1' (XGBoost < 3.1), '[5E-1]' or '[a,b,c]' (3.1+, one per output) as float32."""
    if isinstance(text, (int, float)):
        return np.array([text], np.float32)
    s = str(text).strip()
    if s.startswith("[") and s.endswith("]"):
        s = s[1:-1]
    parts = [p for p in s.split(",") if p.strip()]
    if not parts:
        raise ValueError(f"empty base_score {text!r}")
    return np.array([float(p) for p in parts], dtype=np.float64).astype(np.float32)


def _tree_from_json(j: dict) -> Tree:
    param = j["tree_param"]
    n = int(param["num_nodes"])
    leaf_vector = int(param.get("size_leaf_vector", 1) or 1)
    left = _ints(j["left_children"], np.int32)
    right = _ints(j["right_children"], np.int32)
    tree = Tree(left=left, right=right, split_indices=_ints(j["split_indices"]),
                split_conditions=_floats(j["split_conditions"]),
                default_left=_ints(j["default_left"], np.int64).astype(bool),
                size_leaf_vector=leaf_vector)
    if leaf_vector <= 1 and not (len(left) == len(right) == len(tree.split_indices)
                                 == len(tree.split_conditions) == len(tree.default_left) == n):
        raise ValueError(f"tree arrays do not all have num_nodes={n} entries")
    if "split_type" in j and len(j.get("categories_nodes", [])):
        nodes = _ints(j["categories_nodes"])
        segs = _ints(j["categories_segments"])
        sizes = _ints(j["categories_sizes"])
        cats = _ints(j["categories"])
        for node, beg, size in zip(nodes.tolist(), segs.tolist(), sizes.tolist()):
            tree.categories[int(node)] = cats[beg:beg + size]
    return tree


def _from_document(path: Path, fmt: str, doc: dict) -> Booster:
    if not isinstance(doc, dict) or "learner" not in doc:
        raise ModelLoadError(
            f"{path.name}: {fmt.upper()} but not an XGBoost model (no 'learner' object)",
            hint="pass a model saved with Booster.save_model; an MXNet symbol or other JSON "
                 "file is not one")
    version = tuple(int(v) for v in doc.get("version", [])) or None
    learner = doc["learner"]
    lp = learner["learner_model_param"]
    gb = learner["gradient_booster"]
    b = Booster(
        path=path, format=fmt, version=version,
        objective=str(learner["objective"]["name"]), booster=str(gb["name"]),
        num_feature=int(lp["num_feature"]), num_class=int(lp.get("num_class", 0)),
        num_target=int(lp.get("num_target", 1) or 1),
        base_score=parse_base_score(lp["base_score"]),
        feature_names=[str(s) for s in learner.get("feature_names", []) or []],
        feature_types=[str(s) for s in learner.get("feature_types", []) or []],
    )
    if b.booster in ("gbtree", "dart"):
        model = gb["model"] if b.booster == "gbtree" else gb["gbtree"]["model"]
        b.trees = [_tree_from_json(t) for t in model["trees"]]
        b.tree_info = _ints(model.get("tree_info", []), np.int32)
        param = model.get("gbtree_model_param", {})
        b.num_parallel_tree = int(param.get("num_parallel_tree", 1) or 1)
        if b.booster == "dart":
            b.weight_drop = _floats(gb["weight_drop"])
    elif b.booster == "gblinear":
        b.linear_weights = _floats(gb["model"]["weights"])
    return b


# -- the legacy binary format (XGBoost 0.x - 3.0) ----------------------------------------------


class _Stream:
    def __init__(self, data: bytes, name: str) -> None:
        self.data, self.pos, self.name = data, 0, name

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ModelLoadError(f"{self.name}: truncated legacy binary model (needed {n} bytes "
                                 f"at offset {self.pos}, the file has {len(self.data)})")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> tuple:
        st = struct.Struct("<" + fmt)
        return st.unpack(self.take(st.size))

    def string(self, limit: int = 1 << 20) -> str:
        (n,) = self.unpack("Q")
        if n > limit:
            raise ModelLoadError(f"{self.name}: not an XGBoost model (a {n}-byte name string)")
        return self.take(n).decode("utf-8", "replace")

    def floats(self) -> np.ndarray:
        (n,) = self.unpack("Q")
        return np.frombuffer(self.take(4 * n), dtype="<f4").astype(np.float32)


_BOOSTERS = ("gbtree", "dart", "gblinear")


def _from_binary(path: Path, data: bytes) -> Booster:
    s = _Stream(data, path.name)
    if data[:4] == b"binf":
        s.take(4)
    if len(data) - s.pos < 136 + 16:  # the learner's parameters and two names
        raise ModelLoadError(
            f"{path.name}: not an XGBoost model (neither JSON, UBJSON nor XGBoost's legacy binary "
            f"format; {len(data)} bytes)", hint="save it with xgboost's Booster.save_model("
            "'model.json')")
    # LearnerModelParamLegacy: 136 bytes
    (base_score, num_feature, num_class, extra_attrs, _metrics, major, minor, num_target,
     _bfa) = s.unpack("fIiiiIIIi")
    s.take(25 * 4)
    objective = s.string(256)
    booster = s.string(256)
    if booster not in _BOOSTERS or not objective or not objective.isprintable():
        raise ModelLoadError(
            f"{path.name}: not an XGBoost model (neither JSON, UBJSON nor XGBoost's legacy binary "
            "format)", hint="save it with xgboost's Booster.save_model('model.json')")
    b = Booster(path=path, format="binary", version=(major, minor, 0) if major else None,
                objective=objective, booster=booster, num_feature=num_feature,
                num_class=num_class, num_target=max(num_target, 1),
                base_score=np.array([base_score], np.float32),
                base_score_is_margin=major < 1 and not objective.startswith("multi:"))
    if booster in ("gbtree", "dart"):
        (num_trees, second) = s.unpack("ii")
        s.take(160 - 8)  # GBTreeModelParam
        if not 0 <= num_trees <= 10_000_000:
            raise ModelLoadError(f"{path.name}: damaged legacy binary model ({num_trees} trees)")
        # XGBoost >= 1.x keeps num_parallel_tree there; older versions a deprecated 1
        b.num_parallel_tree = max(second, 1) if major >= 1 else 1
        for _ in range(num_trees):
            b.trees.append(_binary_tree(s, major))
        b.tree_info = np.frombuffer(s.take(4 * num_trees), "<i4").astype(np.int32)
        if booster == "dart" and num_trees:
            b.weight_drop = s.floats()
    else:
        s.take(34 * 4)  # DeprecatedGBLinearModelParam
        b.linear_weights = s.floats()
    if extra_attrs:
        (n,) = s.unpack("Q")
        attrs = {s.string(): s.string(1 << 30) for _ in range(min(n, 1 << 16))}
        obj = attrs.get("objective")
        if obj:
            try:
                b.objective = str(json.loads(obj)["name"])
            except (ValueError, KeyError, TypeError):
                pass
    return b


def _binary_tree(s: _Stream, major: int) -> Tree:
    (_roots, num_nodes, _deleted, _depth, _nfeat, size_leaf_vector) = s.unpack("iiiiii")
    s.take(31 * 4)  # TreeParam: 148 bytes
    if not 0 < num_nodes <= 1 << 28:
        raise ModelLoadError(f"{s.name}: damaged legacy binary model (a tree of {num_nodes} "
                             "nodes)")
    # Node: parent, cleft, cright (int32), sindex (uint32, top bit: default left), float info
    nodes = np.frombuffer(s.take(20 * num_nodes), dtype=np.dtype(
        [("parent", "<i4"), ("left", "<i4"), ("right", "<i4"), ("sindex", "<u4"),
         ("info", "<f4")]))
    s.take(16 * num_nodes)  # RTreeNodeStat
    if major < 1 and size_leaf_vector > 0:
        s.floats()  # leaf vectors of XGBoost < 1.0 (never used for prediction)
    sindex = nodes["sindex"].astype(np.int64)
    return Tree(left=nodes["left"].astype(np.int32), right=nodes["right"].astype(np.int32),
                split_indices=sindex & 0x7FFFFFFF,
                split_conditions=nodes["info"].astype(np.float32),
                default_left=(sindex >> 31).astype(bool))
