"""The XGBoost frontend and the tree kernel, against xgboost's Booster.predict and Treelite's GTIL.

Models are trained here once per session on scikit-learn's real data (breast_cancer, digits,
diabetes, wine, iris), covering every objective of issue 15, gbtree / dart / gblinear, depths 1 to
12, up to 1,000 trees, random forests, NaN-heavy inputs and categorical splits (one-hot and
partition). Compiled outputs must equal xgboost's to the bit on x86_64 (same float32 summation
order, the C library's expf); arm64 runs under qemu within 1e-6 relative.
"""
from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import in_ci

xgb = pytest.importorskip("xgboost") if not in_ci() else __import__("xgboost")
from sklearn import datasets

from neo.errors import ModelLoadError, UnsupportedModelError, UsageError

DATA = Path(__file__).parent / "data" / "xgboost"


@dataclass
class Case:
    name: str
    path: Path
    x: np.ndarray  # float32 rows to predict
    booster: object

    def expected(self, x=None) -> np.ndarray:
        x = self.x if x is None else x
        return self.booster.predict(xgb.DMatrix(x, missing=np.nan,
                                                feature_types=self.booster.feature_types,
                                                enable_categorical=True))


def _holes(x: np.ndarray, frac: float, seed: int) -> np.ndarray:
    """x with a fraction of its entries missing (NaN)."""
    x = x.astype(np.float32).copy()
    x[np.random.default_rng(seed).random(x.shape) < frac] = np.nan
    return x


def _train(params, x, y, rounds, **dm):
    params = {"nthread": 1, "seed": 0, **params}
    return xgb.train(params, xgb.DMatrix(x, y, **dm), rounds)


@pytest.fixture(scope="session")
def cases(tmp_path_factory) -> dict[str, Case]:
    root = tmp_path_factory.mktemp("xgb")
    bc = datasets.load_breast_cancer()
    dia = datasets.load_diabetes()
    digits = datasets.load_digits()
    wine = datasets.load_wine()
    iris = datasets.load_iris()
    bx = _holes(bc.data, 0.3, 1)  # NaN-heavy: training learns default directions
    dx = dia.data.astype(np.float32)
    dy = dia.target.astype(np.float32)
    qid = np.arange(len(dy)) // 20
    out: dict[str, Case] = {}

    def add(name, booster, x, ext=".json"):
        path = root / f"{name}{ext}"
        booster.save_model(str(path) if ext in (".json", ".ubj") else str(path) + ".ubj")
        if ext not in (".json", ".ubj"):
            shutil.move(str(path) + ".ubj", path)  # UBJSON under another name: told by content
        out[name] = Case(name, path, x, booster)

    add("binary_logistic", _train({"objective": "binary:logistic", "max_depth": 4}, bx, bc.target,
                                  60), _holes(bc.data, 0.3, 2), ".ubj")
    add("logitraw_stumps", _train({"objective": "binary:logitraw", "max_depth": 1}, bx,
                                  bc.target, 200), _holes(bc.data, 0.5, 3), ".model")
    add("reg_logistic", _train({"objective": "reg:logistic", "max_depth": 3},
                               dx, (dy - dy.min()) / np.ptp(dy), 40), dx)
    add("squarederror_1000", _train({"objective": "reg:squarederror", "max_depth": 5,
                                     "eta": 0.02}, dx, dy, 1000), _holes(dia.data, 0.1, 4))
    add("depth12", _train({"objective": "reg:squarederror", "max_depth": 12, "min_child_weight": 0,
                           "lambda": 0}, dx, dy, 30), dx)
    add("softprob_digits", _train({"objective": "multi:softprob", "num_class": 10,
                                   "max_depth": 4}, digits.data, digits.target, 30),
        _holes(digits.data, 0.2, 5))
    add("softmax_iris", _train({"objective": "multi:softmax", "num_class": 3, "max_depth": 3},
                               iris.data, iris.target, 20), iris.data.astype(np.float32))
    add("rank_pairwise", _train({"objective": "rank:pairwise", "max_depth": 3}, dx,
                                (dy // 60).astype(int), 30, qid=qid), dx)
    add("rank_ndcg", _train({"objective": "rank:ndcg", "max_depth": 3}, dx,
                            (dy // 60).astype(int), 30, qid=qid), dx)
    add("poisson", _train({"objective": "count:poisson", "max_depth": 4}, dx, dy // 10, 40), dx)
    add("tweedie", _train({"objective": "reg:tweedie", "max_depth": 4}, dx, dy, 40), dx)
    add("gamma", _train({"objective": "reg:gamma", "max_depth": 4, "base_score": 120.0}, dx, dy,
                        40), dx)
    add("cox", _train({"objective": "survival:cox", "max_depth": 3}, dx,
                      np.where(np.arange(len(dy)) % 3, dy, -dy), 30), dx)
    add("dart", _train({"objective": "binary:logistic", "booster": "dart", "max_depth": 3,
                        "rate_drop": 0.2, "skip_drop": 0.0}, bx, bc.target, 40),
        _holes(bc.data, 0.3, 6))
    add("gblinear_multi", _train({"objective": "multi:softprob", "num_class": 3,
                                  "booster": "gblinear"}, wine.data, wine.target, 30),
        _holes(wine.data, 0.2, 7))
    add("gblinear_reg", _train({"objective": "reg:squarederror", "booster": "gblinear"}, dx, dy,
                               50), dx)
    add("forest", _train({"objective": "multi:softprob", "num_class": 3, "num_parallel_tree": 4,
                          "subsample": 0.7, "colsample_bynode": 0.6, "max_depth": 4},
                         wine.data, wine.target, 5), wine.data.astype(np.float32))
    # categorical: wine with three features binned into categories
    cx = wine.data.astype(np.float32).copy()
    for j, k in ((0, 5), (6, 12), (9, 40)):
        edges = np.quantile(cx[:, j], np.linspace(0, 1, k + 1)[1:-1])
        cx[:, j] = np.digitize(cx[:, j], edges)
    types = ["c" if j in (0, 6, 9) else "q" for j in range(cx.shape[1])]
    tx = cx.copy()
    tx[::7, 6] = np.nan
    tx[::11, 9] = 45  # a category no split has seen
    tx[::13, 0] = -1  # an invalid category
    for name, onehot in (("categorical_partition", 1), ("categorical_onehot", 64)):
        add(name, _train({"objective": "multi:softprob", "num_class": 3, "max_depth": 4,
                          "max_cat_to_onehot": onehot}, cx, wine.target, 20,
                         feature_types=types, enable_categorical=True), tx)
    return out


ALL = ["binary_logistic", "logitraw_stumps", "reg_logistic", "squarederror_1000", "depth12",
       "softprob_digits", "softmax_iris", "rank_pairwise", "rank_ndcg", "poisson", "tweedie",
       "gamma", "cox", "dart", "gblinear_multi", "gblinear_reg", "forest",
       "categorical_partition", "categorical_onehot"]


def _compile(case: Case, batch: int, out: Path, target: str = "x86_64") -> Path:
    from neo.compiler import CompileOptions, compile_model

    compile_model(CompileOptions(
        framework="xgboost", shape=json.dumps({"data": [batch, case.x.shape[1]]}), target=target,
        output=out, model=str(case.path), workdir=case.path.parent))
    return out


def _informative(ref: np.ndarray) -> None:
    # STYLE.md 13: the reference must not be near-constant
    assert np.unique(np.round(ref, 4)).size > 2, ref


@pytest.mark.parametrize("name", ALL)
def test_compiled_equals_xgboost_to_the_bit(cases, name, tmp_path):
    from neo.runtime import Model

    case = cases[name]
    ref = case.expected()
    _informative(ref)
    art = _compile(case, len(case.x), tmp_path / "art")
    for threads in (1, 2):
        got, = Model(art, num_threads=threads).run(case.x)
        assert got.shape == ref.shape and got.dtype == np.float32
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("name", ALL)
def test_ir_reference_matches_xgboost(cases, name):
    from neo.frontends.xgboost import import_xgboost
    from neo.ir.interpreter import interpret

    case = cases[name]
    g = import_xgboost(case.path, {"data": case.x.shape})
    got = interpret(g, {"data": case.x})[0]
    ref = case.expected()
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())


@pytest.mark.parametrize("batch", [1, 5, 8, 77, 130])
def test_every_batch_shape(cases, batch, tmp_path):
    """Per-row tree walks (batch < 8), lockstep tails and partial row blocks."""
    from neo.runtime import Model

    for name in ("softprob_digits", "categorical_partition", "dart"):
        case = cases[name]
        x = np.resize(case.x, (batch, case.x.shape[1]))
        art = _compile(case, batch, tmp_path / name)
        got, = Model(art).run(x)
        np.testing.assert_array_equal(got, case.expected(x))


@pytest.mark.parametrize("name", ["binary_logistic", "softprob_digits", "squarederror_1000",
                                  "categorical_onehot"])
def test_matches_treelite_gtil(cases, name, tmp_path):
    treelite = pytest.importorskip("treelite") if not in_ci() else __import__("treelite")
    from neo.runtime import Model

    case = cases[name]
    tm = treelite.frontend.from_xgboost(case.booster)
    ref = np.asarray(treelite.gtil.predict(tm, case.x), np.float32).reshape(case.expected().shape)
    got, = Model(_compile(case, len(case.x), tmp_path / "art")).run(case.x)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())


@pytest.mark.parametrize("name", ["binary_logistic", "softprob_digits", "gblinear_multi",
                                  "categorical_partition"])
def test_arm64_under_qemu(cases, name, tmp_path, require_qemu):
    from neo.run import run_artifact

    require_qemu("arm64")
    case = cases[name]
    art = _compile(case, len(case.x), tmp_path / "art", target="arm64")
    _, (got,), info = run_artifact(art, {"data": case.x}, threads=2)
    assert info["emulated"]
    ref = case.expected()
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7 * np.abs(ref).max())


# -- formats ---------------------------------------------------------------------------------


def test_json_ubjson_and_older_json_read_alike(cases, tmp_path):
    from neo.frontends.xgboost.model import load_booster

    case = cases["softprob_digits"]
    case.booster.save_model(str(tmp_path / "m.ubj"))
    a, b = load_booster(case.path), load_booster(tmp_path / "m.ubj")
    assert (a.format, b.format) == ("json", "ubjson")
    assert a.num_feature == b.num_feature == 64 and len(a.trees) == len(b.trees) == 300
    for ta, tb in zip(a.trees, b.trees):
        np.testing.assert_array_equal(ta.split_conditions, tb.split_conditions)
        np.testing.assert_array_equal(ta.left, tb.left)
    np.testing.assert_array_equal(a.base_score, b.base_score)


def test_xgboost_2_scalar_base_score(cases, tmp_path):
    """Before 3.1 base_score was one scalar string ('5E-1'), shared by every class."""
    from neo.runtime import Model

    case = cases["binary_logistic"]
    case.booster.save_model(str(tmp_path / "m.json"))
    doc = json.loads((tmp_path / "m.json").read_text())
    lp = doc["learner"]["learner_model_param"]
    lp["base_score"] = lp["base_score"].strip("[]")
    doc["version"] = [2, 1, 4]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(doc))
    old_case = Case("old", old, case.x, case.booster)
    got, = Model(_compile(old_case, len(case.x), tmp_path / "art")).run(case.x)
    np.testing.assert_array_equal(got, case.expected())


@pytest.mark.parametrize("fixture", sorted(p.name for p in DATA.glob("*.model")) or ["none"])
def test_legacy_binary_models(fixture, tmp_path):
    """Models saved by XGBoost 2.1 in the legacy binary format (scripts/xgboost_legacy_fixtures.py)
    and the predictions 2.1 made."""
    from neo.runtime import Model

    if fixture == "none":
        pytest.fail(f"no legacy binary fixtures in {DATA}")
    path = DATA / fixture
    x = np.load(DATA / "inputs.npy")
    ref = np.load(DATA / f"{path.stem}.expected.npy")
    case = Case(path.stem, path, x, None)
    got, = Model(_compile(case, len(x), tmp_path / "art")).run(x)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7 * np.abs(ref).max())


# -- errors and inspect ----------------------------------------------------------------------


def test_unsupported_objective_and_vector_leaves_are_listed_at_once(cases, tmp_path):
    from neo.frontends.xgboost import import_xgboost

    doc = json.loads(_as_json(cases["binary_logistic"], tmp_path))
    doc["learner"]["objective"]["name"] = "reg:mystery"
    doc["learner"]["gradient_booster"]["model"]["trees"][0]["tree_param"]["size_leaf_vector"] = "3"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(UnsupportedModelError) as info:
        import_xgboost(bad, {"data": (1, 30)})
    assert info.value.exit_code == 4
    assert "objective reg:mystery" in info.value.message
    assert "vector-leaf tree" in info.value.message


def _as_json(case: Case, tmp_path: Path) -> str:
    p = tmp_path / "as.json"
    case.booster.save_model(str(p))
    return p.read_text()


@pytest.mark.parametrize("content, fact", [
    (b"\x00\x01garbage", "not an XGBoost model"),
    (b'{"nodes": [], "heads": []}', "not an XGBoost model"),
    (b'{"learner": ', "invalid JSON"),
    (b"{L\x00\x00\x00\x00\x00\x00\x00\x07learner{", "invalid UBJSON"),
])
def test_damaged_files_are_load_errors(content, fact, tmp_path):
    from neo.frontends.xgboost.model import load_booster

    p = tmp_path / "m.bin"
    p.write_bytes(content)
    with pytest.raises(ModelLoadError) as info:
        load_booster(p)
    assert fact in info.value.message and info.value.exit_code == 3


def test_shape_is_checked_against_the_features(cases, tmp_path):
    case = cases["binary_logistic"]
    with pytest.raises(UsageError) as info:
        _compile(Case("x", case.path, np.zeros((4, 12), np.float32), None), 4, tmp_path / "a")
    assert "dim 1 is 12 but the model fixes it at 30" in info.value.message


def test_cli_compile_run_and_inspect(cases, tmp_path):
    import subprocess

    case = cases["softprob_digits"]
    x = case.x[:16]
    np.save(tmp_path / "x.npy", x)
    neo = [sys.executable, "-m", "neo"]
    r = subprocess.run([*neo, "inspect", str(case.path), "--framework", "xgboost", "--json"],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    d = info["details"]
    assert (d["trees"], d["max_depth"], d["features"], d["objective"]) == (
        300, 4, 64, "multi:softprob")
    r = subprocess.run([*neo, "compile", str(case.path), "--framework", "xgboost", "--shape",
                        '{"data":[16,64]}', "--target", "x86_64", "--output", str(tmp_path / "o")],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*neo, "run", str(tmp_path / "o"), "--input", f"data={tmp_path / 'x.npy'}",
                        "--output", str(tmp_path / "y.npz")], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    got = np.load(tmp_path / "y.npz")["output"]
    np.testing.assert_array_equal(got, case.expected(x))


@pytest.mark.parametrize("rows", [0, 1, 15, 16, 17, 40])
def test_any_number_of_rows_runs_in_chunks(cases, rows, tmp_path):
    """Compiled for 16 rows: fewer run as one padded chunk, more as several (Python Model, and
    neo run through the artifact's neo-run); outputs equal xgboost's row for row."""
    from neo.run import run_artifact
    from neo.runtime import Model

    case = cases["softprob_digits"]
    art = _compile(case, 16, tmp_path / "art")
    x = np.resize(case.x, (max(rows, 1), case.x.shape[1]))[:rows]
    ref = case.expected(x) if rows else np.zeros((0, 10), np.float32)
    with Model(art, check=True) as m:
        assert m.row_batch == 16
        got, = m.run(x)
        assert got.shape == ref.shape
        np.testing.assert_array_equal(got, ref)
        with pytest.raises(ValueError, match="any number of rows"):
            m.run(np.zeros((rows + 1, case.x.shape[1] + 1), np.float32))
    if rows:
        _, outs, _ = run_artifact(art, {"data": x}, check=True)
        np.testing.assert_array_equal(outs[0], ref)
    # a run of exactly 16 rows reads its array in place; chunked runs copy into the model's own
    # buffer, never into that array
    exact = np.resize(case.x, (16, case.x.shape[1]))
    keep = exact.copy()
    with Model(art) as m:
        m.run(exact)
        got, = m.run(x)
        np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(exact, keep)


def test_other_models_keep_exact_shapes(small_cnn, compile_cached):
    from neo.runtime import Model

    art = compile_cached(small_cnn.path, "x86_64")
    with Model(art) as m:
        assert m.row_batch == 0
        with pytest.raises(ValueError, match=r"expected \(1, 3, 32, 32\)$"):
            m.run(np.zeros((2, 3, 32, 32), np.float32))
