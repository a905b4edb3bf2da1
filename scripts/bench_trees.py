"""Tree ensembles side by side: neo, xgboost's inplace_predict and TL2cgen's export_lib.

    make bench-trees      # python3 scripts/bench_trees.py (~5 min, most of it TL2cgen's gcc)

Two models, as issue 15 asks: a 500-tree depth-8 binary classifier (make_classification, 20,000
rows, 32 features; scikit-learn, offline) and a 100-round multi-class model (digits, 10 classes,
depth 6: 1,000 trees). Each engine predicts batch 1 (cycling over 200 different rows, so no
branch predictor learns one path) and batch 10,000, at 1 and 2 threads, through its Python API,
in rotated order per round; medians. Outputs are checked against Booster.predict. Trained models
and TL2cgen libraries are cached in build/bench_trees/. Writes the section between the markers in
docs/BENCHMARKS.md (scripts/bench.py keeps it).
"""
from __future__ import annotations

import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "build" / "bench_trees"
sys.path.insert(0, str(REPO / "scripts"))
from bench import markers, write_section

BEGIN, END = markers("trees")  # this machine kind's section



def models():
    import xgboost as xgb
    from sklearn.datasets import load_digits, make_classification

    WORK.mkdir(parents=True, exist_ok=True)
    x, y = make_classification(n_samples=20000, n_features=32, n_informative=20, random_state=0)
    x = x.astype(np.float32)
    d = load_digits()
    dx = d.data.astype(np.float32)
    specs = {
        "binary: 500 trees, depth 8": ("binary500.json", x, y,
                                         {"objective": "binary:logistic", "max_depth": 8,
                                          "eta": 0.1}, 500),
        "multi-class: 100 rounds x 10 classes, depth 6": (
            "multi100.json", dx, d.target, {"objective": "multi:softprob", "num_class": 10,
                                            "max_depth": 6, "eta": 0.1}, 100),
    }
    out = {}
    for title, (name, xs, ys, params, rounds) in specs.items():
        path = WORK / name
        if not path.exists():
            xgb.train({"nthread": 2, "seed": 0, **params}, xgb.DMatrix(xs, ys),
                      rounds).save_model(str(path))
        out[title] = (path, np.resize(xs, (10000, xs.shape[1])))
    return out


def timeit(fn, args, budget=0.5, least=3):
    fn(args[0])
    ts, i, t_end = [], 0, time.perf_counter() + budget
    while len(ts) < least or time.perf_counter() < t_end:
        a = args[i % len(args)]
        t0 = time.perf_counter()
        fn(a)
        ts.append(time.perf_counter() - t0)
        i += 1
    return ts


def main() -> None:
    import tl2cgen
    import treelite
    import xgboost as xgb

    from neo.compiler import CompileOptions, compile_model
    from neo.runtime import Model

    load0 = os.getloadavg()
    t_start = time.time()
    rows_out = []
    for title, (path, x) in models().items():
        bst = xgb.Booster(model_file=str(path))
        ref = bst.predict(xgb.DMatrix(x))
        F = x.shape[1]
        arts, compile_s = {}, {}
        for batch in (1, 10000):
            out = WORK / f"{path.stem}-b{batch}"
            t0 = time.perf_counter()
            compile_model(CompileOptions(framework="xgboost", model=str(path), target="host",
                                         shape=json.dumps({"data": [batch, F]}), output=out,
                                         use_cache=False))
            compile_s[batch] = time.perf_counter() - t0
            arts[batch] = out
        lib = WORK / f"{path.stem}.so"
        t0 = time.perf_counter()
        if not lib.exists():
            tl2cgen.export_lib(treelite.frontend.load_xgboost_model(str(path)), toolchain="gcc",
                               libpath=str(lib), params={"parallel_comp": 8}, nthread=2,
                               verbose=False)
            tl_compile = time.perf_counter() - t0
        else:
            tl_compile = float("nan")
        singles = [x[i:i + 1].copy() for i in range(200)]
        for threads in (1, 2):
            bst.set_param({"nthread": threads})
            tl = tl2cgen.Predictor(str(lib), nthread=threads, verbose=False)
            neo1 = Model(arts[1], num_threads=threads)
            neoN = Model(arts[10000], num_threads=threads)
            got = neoN.run(x)[0]
            err = float(np.abs(got - ref).max() / np.abs(ref).max())
            exact = bool(np.array_equal(got, ref))
            tl_rows = [tl2cgen.DMatrix(r) for r in singles]
            tl_all = tl2cgen.DMatrix(x)
            engines = {
                "neo": (neo1.run, neoN.run),
                "xgboost": (bst.inplace_predict, bst.inplace_predict),
                "tl2cgen": (tl.predict, tl.predict),
            }
            feeds = {"neo": (singles, [x]), "xgboost": (singles, [x]),
                     "tl2cgen": (tl_rows, [tl_all])}
            times = {e: ([], []) for e in engines}
            for rnd in range(3):
                order = list(engines)[rnd % 3:] + list(engines)[:rnd % 3]
                for e in order:
                    for k in (0, 1):
                        times[e][k].extend(timeit(engines[e][k], feeds[e][k],
                                                  budget=0.3 if k == 0 else 1.0))
            med = {e: [float(np.median(times[e][k])) * 1e3 for k in (0, 1)] for e in engines}
            tl_err = float(np.abs(np.asarray(tl.predict(tl_all)).reshape(ref.shape) - ref).max()
                           / np.abs(ref).max())
            rows_out.append((title, threads, med, compile_s, tl_compile, exact, err, tl_err))
            print(title, threads, {e: [round(v, 4) for v in m] for e, m in med.items()},
                  flush=True)
    write(rows_out, load0, time.time() - t_start)


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        name = next(line.split(":", 1)[1].strip() for line in out.splitlines()
                    if line.startswith("Model name"))
        flags = next(line for line in out.splitlines() if line.startswith("Flags"))
        isa = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "sse"
        return f"{name} ({platform.machine()}), {isa}, {os.cpu_count()} cores"
    except (OSError, StopIteration):
        return platform.machine()


def write(rows, load0, seconds) -> None:
    import tl2cgen
    import xgboost as xgb

    lines = [BEGIN, "## Tree ensembles (XGBoost)", "",
             f"- Date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}",
             f"- CPU: {cpu_name()}; neo target `host`",
             (f"- Load average at the start: {' '.join(f'{v:.2f}' for v in load0)}, at the end: "
              f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}"),
             f"- Versions: xgboost {xgb.__version__}, tl2cgen {tl2cgen.__version__}",
             (f"- Command: `make bench-trees  # python3 scripts/bench_trees.py` "
              f"({seconds / 60:.1f} min)"), "",
             ("Median ms per call through each Python API (neo: `neo.runtime.Model.run`; "
              "xgboost: `Booster.inplace_predict`; TL2cgen: `Predictor.predict` on a prepared "
              "DMatrix), 3 rounds in rotated order. Batch 1 cycles over 200 different rows. neo "
              "compiles one artifact per batch size; compile s is `compile_model` without the "
              "cache (batch 1 / 10,000); TL2cgen's is `export_lib` with gcc (8 units, 2 jobs). "
              "exact: neo's batch-10,000 output equals `Booster.predict` bit for bit."), "",
             ("| model | threads | batch | neo ms | xgboost ms | TL2cgen ms | neo/xgboost | "
              "neo/TL2cgen |"), "|---|---|---|---|---|---|---|---|"]
    for title, threads, med, *_ in rows:
        for k, batch in ((0, "1"), (1, "10,000")):
            n, x, t = med["neo"][k], med["xgboost"][k], med["tl2cgen"][k]
            lines.append(f"| {title} | {threads} | {batch} | {n:.4g} | {x:.4g} | {t:.4g} | "
                         f"**{n / x:.2f}** | **{n / t:.2f}** |")
    lines += ["", ("| model | neo compile s (batch 1 / 10,000) | TL2cgen compile s | exact | "
                   "max rel err neo / TL2cgen |"), "|---|---|---|---|---|"]
    for title, threads, _, comp, tlc, exact, err, tl_err in rows:
        if threads == 1:
            lines.append(f"| {title} | {comp[1]:.2f} / {comp[10000]:.2f} | "
                         f"{'cached' if math.isnan(tlc) else f'{tlc:.1f}'} | {'yes' if exact else 'no'} "
                         f"| {err:.1e} / {tl_err:.1e} |")
    lines.append(END)
    section = "\n".join(lines)
    write_section(REPO / "docs" / "BENCHMARKS.md", section, BEGIN, END)
    print(section)


if __name__ == "__main__":
    sys.exit(main())
