"""End-to-end demo: train a small real model, compile it for x86_64 and arm64, run both.

The model is a 2-layer MLP trained for a few seconds on scikit-learn's handwritten digits (real data,
shipped with scikit-learn), saved as ONNX, compiled by `neo compile` for the host CPU family and for
a Raspberry Pi 4 (arm64), and run by `neo run`: natively, and under qemu-aarch64 for the Pi build.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def train_digits_mlp(seed: int = 0):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x))
    tr, te = idx[:1400], idx[1400:]
    w1 = rng.normal(0, 0.3, (64, 64)).astype(np.float32)
    b1 = np.zeros(64, np.float32)
    w2 = rng.normal(0, 0.3, (64, 10)).astype(np.float32)
    b2 = np.zeros(10, np.float32)
    onehot = np.eye(10, dtype=np.float32)[y[tr]]
    for _ in range(600):  # full-batch gradient descent with momentum-free steps
        h = np.maximum(x[tr] @ w1 + b1, 0)
        z = h @ w2 + b2
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / len(tr)
        gw2, gb2 = h.T @ g, g.sum(0)
        gh = (g @ w2.T) * (h > 0)
        gw1, gb1 = x[tr].T @ gh, gh.sum(0)
        for a, ga in ((w1, gw1), (b1, gb1), (w2, gw2), (b2, gb2)):
            a -= 0.5 * ga
    return (w1, b1, w2, b2), x[te], y[te]


def to_onnx(params, path: Path) -> None:
    w1, b1, w2, b2 = params
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"),
                                                         (b2, "b2"))]
    nodes = [helper.make_node("Gemm", ["input", "w1", "b1"], ["h"]),
             helper.make_node("Relu", ["h"], ["hr"]),
             helper.make_node("Gemm", ["hr", "w2", "b2"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probs"], axis=1)]
    g = helper.make_graph(nodes, "digits_mlp",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 64])],
                          [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])],
                          inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


def neo(*args: str) -> dict:
    r = subprocess.run([sys.executable, "-m", "neo", *args, "--json"],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        sys.exit(f"neo {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return json.loads(r.stdout)


def main() -> None:
    params, x_test, y_test = train_digits_mlp()
    with tempfile.TemporaryDirectory(prefix="neo-demo-") as tmp:
        t = Path(tmp)
        to_onnx(params, t / "digits.onnx")
        batch = x_test[:128]
        np.save(t / "digits.npy", batch)
        shape = json.dumps({"input": list(batch.shape)})
        results = {}
        for target in ("x86_64", "rasp4b"):
            out = t / f"out-{target}"
            res = neo("compile", str(t / "digits.onnx"), "--framework", "onnx", "--shape", shape,
                      "--target", target, "--output", str(out))
            run = neo("run", str(out), "--input", f"input={t / 'digits.npy'}",
                      "--output", str(t / f"{target}.npz"))
            probs = np.load(t / f"{target}.npz")["probs"]
            results[target] = probs
            acc = float((probs.argmax(1) == y_test[:128]).mean())
            how = f"under {run['emulator']}" if run.get("emulated") else "natively"
            print(f"{target:7s} ({res['target']['triple']}, {res['target']['cpu']}): compiled in "
                  f"{res['timings']['total']:.1f}s, ran {how}: accuracy {acc:.3f} on 128 test digits")
        diff = float(np.abs(results["x86_64"] - results["rasp4b"]).max())
        print(f"x86_64 and arm64 agree: max |difference| of probabilities = {diff:.2e}")
        print("first five predictions:", results["x86_64"].argmax(1)[:5].tolist(),
              "labels:", y_test[:5].tolist())


if __name__ == "__main__":
    main()
