"""Write the legacy-binary XGBoost fixtures of tests/test_xgboost.py (tests/data/xgboost/).

XGBoost 3.1+ neither writes nor reads its old binary format, so this runs in its own venv with an
older XGBoost:

    python3 -m venv /tmp/xgb21 && /tmp/xgb21/bin/pip install xgboost-cpu==2.1.4 'numpy<2'
    python3 -c "import numpy as np; from sklearn.datasets import load_breast_cancer as l; \
        np.save('/tmp/bc.npy', np.c_[l().data, l().target])"
    /tmp/xgb21/bin/python scripts/xgboost_legacy_fixtures.py /tmp/bc.npy

It trains small models on breast_cancer (with missing values), saves each with the `.deprecated`
extension (2.1's way to ask for the legacy binary format) as NAME.model, and saves the inputs and
2.1's predictions next to them.
"""
import sys
from pathlib import Path

import numpy as np
import xgboost as xgb

out = Path(__file__).resolve().parent.parent / "tests" / "data" / "xgboost"
out.mkdir(parents=True, exist_ok=True)
data = np.load(sys.argv[1])
x, y = data[:, :-1].astype(np.float32), data[:, -1]
x[np.random.default_rng(0).random(x.shape) < 0.2] = np.nan
inputs = x[::5]
np.save(out / "inputs.npy", inputs)
models = {
    "binary_legacy": ({"objective": "binary:logistic", "max_depth": 3}, 20),
    "dart_legacy": ({"objective": "binary:logistic", "booster": "dart", "max_depth": 2,
                     "rate_drop": 0.3, "skip_drop": 0.0}, 10),
    "multi_legacy": ({"objective": "multi:softprob", "num_class": 2, "max_depth": 2}, 10),
    "linear_legacy": ({"objective": "reg:squarederror", "booster": "gblinear"}, 10),
}
for name, (params, rounds) in models.items():
    bst = xgb.train({"nthread": 1, "seed": 0, **params}, xgb.DMatrix(x, y), rounds)
    bst.save_model(str(out / f"{name}.deprecated"))
    (out / f"{name}.deprecated").rename(out / f"{name}.model")
    np.save(out / f"{name}.expected.npy", bst.predict(xgb.DMatrix(inputs)))
    print(name, (out / f"{name}.model").stat().st_size, "bytes", xgb.__version__)
