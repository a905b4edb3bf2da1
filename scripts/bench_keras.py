#!/usr/bin/env python3
"""A Keras model side by side: neo, TensorFlow's own `model(x)` in a `tf.function`, and
onnxruntime (when tf2onnx is installed to convert the model; otherwise the report says so).

    python3 scripts/bench_keras.py            # make bench runs it after scripts/bench.py
    python3 scripts/bench_keras.py --quick

keras.applications.MobileNetV2(weights=None) at 224x224 with calibrated BatchNorm statistics
(tests/keras_models.py), saved as `.keras` and compiled with `neo compile --framework keras
--shape '{"input_layer":[1,3,224,224]}'` (NCHW, Neo's Keras convention). TensorFlow takes its
thread count only before it runs anything, so each thread count is measured in a process of its
own (`--child`), every engine timed in every round in rotated order (scripts/bench.py's
`time_interleaved`). Writes the section between the markers in docs/BENCHMARKS.md (scripts/bench.py
keeps it).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "scripts"), str(REPO / "tests")]
from bench import markers, write_section

BEGIN, END = markers("keras")  # this machine kind's section

ARCH, SIZE = "MobileNetV2", 224


def build(work: Path) -> tuple[Path, Path, dict]:
    """Save the model and compile it; (model, artifact, compile info)."""
    import keras
    from keras_models import application

    from neo.compiler import CompileOptions, compile_model

    keras.utils.set_random_seed(0)
    model = application(keras, ARCH, SIZE)
    path = work / f"{ARCH}.keras"
    model.save(path)
    art = work / "artifact"
    t = time.perf_counter()
    res = compile_model(CompileOptions(
        framework="keras", model=str(path), target="host", output=art, use_cache=False,
        shape=json.dumps({model.layers[0].name: [1, 3, SIZE, SIZE]})))
    return path, art, {"compile_s": time.perf_counter() - t, "timings": res["timings"]}


def onnx_export(model, path: Path) -> str | None:
    """The model as ONNX through tf2onnx, or why not."""
    try:
        import tensorflow as tf
        import tf2onnx
    except ImportError as e:
        return f"tf2onnx is not installed ({e.name}); pip install tf2onnx to add onnxruntime"
    try:
        spec = [tf.TensorSpec((1, SIZE, SIZE, 3), tf.float32, name="input")]
        tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=str(path))
    except Exception as e:  # noqa: BLE001 - a converter limitation is a result
        return f"tf2onnx could not convert the model: {type(e).__name__}: {e}"
    return None


def child(model_path: Path, art: Path, threads: int, quick: bool) -> dict:
    """Time the engines at one thread count (TensorFlow configured before anything runs)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras
    from bench import Engine, Settings, time_interleaved
    from keras_models import image_batch, nhwc

    from neo.runtime import Model

    model = keras.models.load_model(model_path, compile=False)
    xs = [image_batch(seed, 1, SIZE, "smooth") for seed in (0, 1, 2)]
    fn = tf.function(lambda t: model(t, training=False))
    ours = Model(str(art), num_threads=threads)
    x, xt = xs[0], tf.constant(nhwc(xs[0]))
    engines = [Engine("ours", lambda: ours.run(x)), Engine("tensorflow", lambda: fn(xt).numpy())]
    onnx_note = None
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        onnx_note = onnx_export(model, onnx_path)
        if onnx_note is None:
            from bench import ort_session

            sess = ort_session(onnx_path, threads)
            feed = {sess.get_inputs()[0].name: nhwc(x)}
            engines.append(Engine("onnxruntime", lambda: sess.run(None, feed)))
        res = time_interleaved(engines, Settings.make(quick, None))
    errs, top1 = [], True
    for xi in xs:
        ref = fn(tf.constant(nhwc(xi))).numpy()
        got = ours.run(xi)[0]
        errs.append(float(np.abs(got - ref).max() / np.abs(ref).max()))
        top1 &= bool(np.array_equal(got.argmax(-1), ref.argmax(-1)))
    ours.close()
    return {"threads": threads, "timing": res, "max_rel_err": max(errs), "top1_ok": top1,
            "onnx_note": onnx_note, "versions": {"tensorflow": tf.__version__,
                                                 "keras": keras.__version__, **onnx_versions()}}


def onnx_versions() -> dict:
    from importlib import metadata

    out = {}
    for name in ("tf2onnx", "onnxruntime"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def render(rows: list[dict], info: dict, load0, seconds: float, quick: bool) -> str:
    from bench import cpu_info

    cpu = cpu_info()
    v = rows[0]["versions"]
    note = rows[0]["onnx_note"]
    lines = [BEGIN, f"## Keras (MobileNetV2), {cpu['model']}", "",
             f"- Date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}",
             (f"- CPU: {cpu['model']} ({cpu['machine']}), vector ISA: "
              f"{', '.join(cpu['isa']) or 'none of avx2, avx512f, amx'}, {cpu['cores']} cores"),
             (f"- Load average at the start: {' '.join(f'{x:.2f}' for x in load0)}, at the end: "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"),
             "- Versions: " + ", ".join(f"{k} {x}" for k, x in v.items()),
             (f"- Command: `make bench  # python3 scripts/bench_keras.py"
              f"{' --quick' if quick else ''}` ({seconds / 60:.1f} min)"), "",
             (f"keras.applications.{ARCH}(weights=None), {SIZE}x{SIZE}, batch 1, float32, "
              "calibrated BatchNorm statistics, saved as `.keras` and compiled with `neo compile "
              "--framework keras --target host` (NCHW input). TensorFlow: the Keras model called "
              "in a `tf.function` (graph mode, no XLA), intra-op threads = N, inter-op 1. "
              "Median / p90 ms over every timed run; engines timed in every round in rotated "
              f"order. Compile: {info['compile_s']:.1f} s without the cache. Max rel err: "
              "max |ours - TensorFlow| / max |TensorFlow| over 3 inputs."
              + ("" if note else " onnxruntime: the Keras model converted by tf2onnx (opset 17, "
                 "NHWC input).")), ""]
    if note:
        lines += [f"onnxruntime: not measured: {note}.", ""]
    engines = [e for e in ("ours", "tensorflow", "onnxruntime") if e in rows[0]["timing"]]
    head = ("| threads | " + " | ".join(f"{e} ms" for e in engines)
            + " | ours/TensorFlow | max rel err | top-1 ok |")
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        t = r["timing"]
        cells = [str(r["threads"])] + [f"{t[e]['median_ms']:.2f} / {t[e]['p90_ms']:.2f}"
                                       for e in engines]
        cells += [f"**{t['ours']['median_ms'] / t['tensorflow']['median_ms']:.2f}**",
                  f"{r['max_rel_err']:.1e}", "yes" if r["top1_ok"] else "**NO**"]
        lines.append("| " + " | ".join(cells) + " |")
    busy = max(load0[0], os.getloadavg()[0])  # 1-minute load averages, before and after
    if busy > cpu["cores"] - 1:
        lines += ["", (f"Other work shared the machine (1-minute load average up to {busy:.1f} on "
                       f"{cpu['cores']} cores): the times are longer than on a quiet machine, "
                       "and the rows with more threads than idle cores time the engines under "
                       "contention more than their parallel speed; rerun `make bench` on a "
                       "quiet machine.")]
    lines.append(END)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", default="1,2")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "BENCHMARKS.md")
    p.add_argument("--child", nargs=3, metavar=("MODEL", "ARTIFACT", "THREADS"),
                   help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(Path(a.child[0]), Path(a.child[1]), int(a.child[2]), a.quick)))
        return 0
    load0, t0 = os.getloadavg(), time.time()
    with tempfile.TemporaryDirectory(prefix="neo-bench-keras-") as tmp:
        model, art, info = build(Path(tmp))
        print(f"compiled in {info['compile_s']:.1f} s", file=sys.stderr)
        rows = []
        for n in (int(t) for t in a.threads.split(",")):
            cmd = [sys.executable, __file__, "--child", str(model), str(art), str(n)]
            proc = subprocess.run(cmd + (["--quick"] if a.quick else []), capture_output=True,
                                  text=True, check=False)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                return 1
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            t = rows[-1]["timing"]
            print(f"{n} thread(s): " + ", ".join(f"{e} {v['median_ms']:.2f} ms"
                                                 for e, v in t.items()), file=sys.stderr)
    section = render(rows, info, load0, time.time() - t0, a.quick)
    write_section(a.out, section, BEGIN, END)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
