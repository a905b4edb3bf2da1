"""MobileNetV2's depthwise conv shapes (224x224 input) as one-node models, float32 against int8,
on neo's depthwise kernels: per-node times side by side (docs/TFLITE.md, Speed).

    python3 scripts/bench_qdwconv.py [--rounds 25] [--threads 1] [--target host]

float32: conv + ReLU6 (the kernel family "depthwise"); int8: conv_integer + TFLite's fixed-point
requantize per channel + clamp ("int8-depthwise"), as the TFLite frontend builds them. Each round
profiles every model (`Model.profile`, the mean of 20 runs) in turn; the table gives the
lowest and the median round in microseconds. Artifacts are built in a temporary directory.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

# (channels, height = width, stride, how many MobileNetV2 has)
SHAPES = [(32, 112, 1, 1), (96, 112, 2, 1), (144, 56, 1, 1), (144, 56, 2, 1), (192, 28, 1, 2),
          (192, 28, 2, 1), (384, 14, 1, 4), (576, 14, 1, 2), (576, 14, 2, 1), (960, 7, 1, 3)]


def graphs(c: int, h: int, s: int, rng):
    from neo import ir
    from neo.ir import QuantParams

    pads = (1, 1, 1, 1) if s == 1 else (0, 0, 1, 1)  # TFLite's SAME
    g = ir.Graph()
    x = g.input("x", (1, c, h, h))
    y = g.op("conv", x, g.const(rng.normal(size=(c, 1, 3, 3)).astype("float32"), "w"),
             g.const(rng.normal(size=c).astype("float32"), "b"), strides=(s, s), pads=pads,
             groups=c)
    g.outputs = [g.op("clip", y, min=0.0, max=6.0)]
    fx = {"x": rng.normal(size=(1, c, h, h)).astype("float32")}
    q = ir.Graph()
    x = q.input("x", (1, c, h, h), "int8")
    acc = q.op("conv_integer", x, q.const(rng.integers(-127, 128, (c, 1, 3, 3)).astype(np.int8),
                                          "w"),
               q.const(rng.integers(-4000, 4000, c).astype(np.int32), "b"), x_zero_point=-128,
               w_zero_point=0, strides=(s, s), pads=pads, groups=c)
    q.outputs = [q.op("requantize", acc, multiplier=tuple(rng.uniform(0.5, 1.5, c) / 400),
                      axis=1, out_zero_point=-128, dtype="int8", mode="fixed_point", min=-128,
                      max=127, quant=QuantParams.per_tensor(0.0235, -128))]
    fq = {"x": rng.integers(-128, 128, (1, c, h, h)).astype(np.int8)}
    return {"float32": (g, fx), "int8": (q, fq)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--target", default="host")
    args = ap.parse_args(argv)
    from neo.codegen.build import build_artifact, generate_kernels
    from neo.passes import run_pipeline
    from neo.runtime import Model
    from neo.targets import get_target

    target = get_target(args.target)
    rng = np.random.default_rng(0)
    models = []
    with tempfile.TemporaryDirectory() as tmp:
        for c, h, s, n in SHAPES:
            for kind, (g, feeds) in graphs(c, h, s, rng).items():
                graph = run_pipeline(g, 3)
                _, kernels = generate_kernels(graph, target)
                family = next(i.kernel for _, i in kernels if i is not None)
                art = Path(tmp) / f"{kind}-{c}-{h}-{s}"
                build_artifact(graph, target, art, {}, 3)
                m = Model(str(art), num_threads=args.threads)
                m.run(feeds)
                models.append(((c, h, s, n), kind, family, m))
        times: list[list[float]] = [[] for _ in models]
        for _ in range(args.rounds):
            for i, (*_, m) in enumerate(models):
                times[i].append(sum(t for _, t in m.profile(20)) * 1e6)
        for *_, m in models:
            m.close()
    print("| C, H, stride (count) | float32 us: min / median | int8 us: min / median | "
          "int8 / float32 (min) |")
    print("|---|---|---|---|")
    total = {"float32": 0.0, "int8": 0.0}
    for i in range(0, len(models), 2):
        (c, h, s, n), _, ff, _ = models[i]
        _, _, fi, _ = models[i + 1]
        f, q = np.asarray(times[i]), np.asarray(times[i + 1])
        total["float32"] += n * f.min()
        total["int8"] += n * q.min()
        print(f"| {c}, {h}, {s} ({n}) | {f.min():.0f} / {np.median(f):.0f} ({ff}) | "
              f"{q.min():.0f} / {np.median(q):.0f} ({fi}) | {q.min() / f.min():.2f} |")
    print(f"\nMobileNetV2's 17 depthwise convs (min): float32 {total['float32'] / 1e3:.2f} ms, "
          f"int8 {total['int8'] / 1e3:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
