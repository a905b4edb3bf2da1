"""Fully-integer TFLite side by side: neo's compile of an int8 MobileNetV2 against LiteRT running
the same .tflite file (XNNPACK, its default), batch 1, at 1 and 2 threads.

    make bench            # runs this after scripts/bench.py
    python3 scripts/bench_tflite.py [--quick] [--rounds N] [--size 224]

The model is keras.applications.MobileNetV2(weights=None, calibrated BatchNorm: the test suite's
tests/tflite_models.py) converted by TensorFlow's converter with a representative dataset of 16
image-like inputs: int8 activations, per-channel int8 weights, int8 input and output. neo compiles
it with `neo compile --framework tflite --target host`. LiteRT gets the same thread count
(`Interpreter(num_threads=N)`, the XNNPACK delegate applied by default). Engines run in rotated
order every round (scripts/bench.py's `time_interleaved`); medians.

Agreement, on 8 other inputs: neo's int8 outputs against LiteRT's reference kernels (the
arithmetic the frontend follows: expected equal), its optimized builtin kernels and XNNPACK (both
round differently; the differences compound over MobileNetV2's 53 requantizations).
The model and neo's artifact are cached in build/bench_tflite/. Writes the section between the
bench_tflite markers in docs/BENCHMARKS.md (scripts/bench.py keeps it).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "build" / "bench_tflite"
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests"))

from bench import Engine, Settings, cpu_info, markers, time_interleaved, vnni_info, write_section

BEGIN, END = markers("tflite")  # this machine kind's section

N_EVAL = 8


def prepare(size: int, log) -> Path:
    """The int8 MobileNetV2 .tflite at `size` x `size` (made once)."""
    import tflite_models as tm

    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"mobilenet_v2-{size}-int8.tflite"
    if not path.exists():
        log(f"converting MobileNetV2 {size}x{size} to int8 (representative dataset of 16)")
        tm.APPLICATIONS["MobileNetV2"] = size
        model = tm.application("MobileNetV2")
        path.write_bytes(tm.convert(model, "int8", tm.nhwc_images(2000, 16, size)))
    return path


def input_name(path: Path) -> tuple[str, tuple[int, ...]]:
    from ai_edge_litert.interpreter import Interpreter

    d = Interpreter(model_path=str(path)).get_input_details()[0]
    return d["name"], (1,) + tuple(int(s) for s in d["shape"][1:])


def compile_neo(path: Path, name: str, shape, log) -> tuple[Path, float]:
    from neo.compiler import CompileOptions, compile_model

    art = WORK / f"neo-{path.stem}"
    stamp = art / "source.json"
    from neo.artifact_cache import source_digest

    # the compiler's sources too: an artifact from older kernels must not be timed as new
    key = {"model": path.name, "mtime": path.stat().st_mtime, "neo": source_digest()}
    if stamp.exists() and json.loads(stamp.read_text()).get("key") == key:
        return art, json.loads(stamp.read_text())["seconds"]
    t0 = time.perf_counter()
    compile_model(CompileOptions(framework="tflite", model=str(path), target="host",
                                 shape=json.dumps({name: list(shape)}), output=art,
                                 use_cache=False))
    seconds = time.perf_counter() - t0
    stamp.write_text(json.dumps({"key": key, "seconds": seconds}))
    log(f"neo: compiled in {seconds:.0f} s")
    return art, seconds


class Litert:
    def __init__(self, path: Path, name: str, shape, threads: int, kernels: str = "default"):
        import tflite_models as tm
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.it = Interpreter(model_path=str(path), num_threads=threads,
                              experimental_op_resolver_type=getattr(OpResolverType,
                                                                    tm.KERNELS[kernels]))
        d = self.it.get_input_details()[0]
        self.it.resize_tensor_input(d["index"], shape)
        self.it.allocate_tensors()
        self.inp = self.it.get_input_details()[0]["index"]
        self.out = self.it.get_output_details()[0]["index"]

    def run(self, x: np.ndarray) -> np.ndarray:
        self.it.set_tensor(self.inp, x)
        self.it.invoke()
        return self.it.get_tensor(self.out)


def agreement(path: Path, name: str, shape, neo_run) -> dict[str, dict]:
    import tflite_models as tm

    xs = [tm.quantize_input(path, tm.nhwc_images(700 + i, 1, shape[1])) for i in range(N_EVAL)]
    ours = np.concatenate([neo_run(x) for x in xs]).astype(np.int64)
    out = {}
    for kernels in ("reference", "builtin", "default"):
        lite = Litert(path, name, shape, 1, kernels)
        ref = np.concatenate([lite.run(x) for x in xs]).astype(np.int64)
        d = np.abs(ours - ref)
        out[kernels] = {"max_steps": int(d.max()), "differ": float((d > 0).mean()),
                        "within1": float((d <= 1).mean()),
                        "top1": float((ours.argmax(1) == ref.argmax(1)).mean())}
    return out



def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few seconds of timing per engine")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--size", type=int, default=224, help="input height and width")
    args = ap.parse_args(argv)
    settings = Settings.make(args.quick, args.rounds)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    from neo.runtime import Model

    load0 = os.getloadavg()
    started = time.perf_counter()
    path = prepare(args.size, log)
    name, shape = input_name(path)
    art, compile_s = compile_neo(path, name, shape, log)
    import tflite_models as tm

    x = tm.quantize_input(path, tm.nhwc_images(0, 1, shape[1]))
    rows, agree = {}, None
    for threads in (1, 2):
        model = Model(art, num_threads=threads)
        lite = Litert(path, name, shape, threads)
        engines = [Engine("neo", lambda m=model: m.run(x)),
                   Engine("litert", lambda lt=lite: lt.run(x))]
        rows[threads] = time_interleaved(engines, settings)
        log(f"{threads} thread(s): " + ", ".join(f"{k} {v['median_ms']:.2f} ms"
                                                 for k, v in rows[threads].items()))
        if agree is None:
            agree = agreement(path, name, shape, lambda a, m=model: m.run(a)[0])
        model.close()
    write(rows, agree, compile_s, shape, load0, time.perf_counter() - started, settings, args)
    return 0


def write(rows, agree, compile_s, shape, load0, seconds, settings, args) -> None:
    from importlib import metadata

    cpu = cpu_info()
    has_vnni, dot = vnni_info()
    cmd = "python3 scripts/bench_tflite.py" + (" --quick" if args.quick else "") + (
        f" --rounds {args.rounds}" if args.rounds else "") + (
        f" --size {args.size}" if args.size != 224 else "")
    e = next(iter(rows[1].values()))
    lines = [
        BEGIN, f"## TFLite int8 (MobileNetV2, {shape[1]}x{shape[2]}), {cpu['model']}", "",
        f"- Date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}",
        (f"- CPU: {cpu['model']} ({cpu['machine']}, {', '.join(cpu['isa'])}), {cpu['cores']} "
         f"cores; **VNNI: {'yes' if has_vnni else 'no'}** (neo's host target uses `{dot}` int8 "
         "dot products)"),
        (f"- Load average at the start: {' '.join(f'{v:.2f}' for v in load0)}, at the end: "
         f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} (other engineers' jobs share the 2 "
         "cores: absolute times are noisy, ratios within a row less so)"),
        f"- Versions: ai-edge-litert {metadata.version('ai-edge-litert')}",
        (f"- Command: `make bench  # {cmd}` ({seconds / 60:.1f} min; neo's compile "
         f"{compile_s:.0f} s, cached in build/bench_tflite/)"), "",
        ("keras.applications.MobileNetV2(weights=None, calibrated BatchNorm) converted by "
         "TensorFlow's converter with 16 representative inputs: int8 activations, per-channel "
         "int8 weights, int8 input and output. neo: `neo compile --framework tflite --target "
         "host`; LiteRT: `Interpreter(num_threads=N)` (XNNPACK delegate, its default). Batch 1. "
         f"Median / p90 ms, {len(e['round_medians_ms'])} rounds of {e['iters_per_round']}+ runs, "
         "engines interleaved in rotated order."), "",
        "| threads | neo ms | LiteRT (XNNPACK) ms | neo / LiteRT |", "|---|---|---|---|"]
    for threads, r in rows.items():
        n, lt = r["neo"], r["litert"]
        lines.append(f"| {threads} | {n['median_ms']:.2f} / {n['p90_ms']:.2f} | "
                     f"{lt['median_ms']:.2f} / {lt['p90_ms']:.2f} | "
                     f"**{n['median_ms'] / lt['median_ms']:.2f}** |")
    names = {"reference": "reference kernels (`BUILTIN_REF`)",
             "builtin": "optimized builtin kernels (no delegate)", "default": "XNNPACK (default)"}
    lines += ["", (f"neo's int8 outputs against LiteRT's, on {N_EVAL} other inputs (1000 logits "
                   "each), in quantization steps:"), "",
              ("| LiteRT kernels | max steps apart | elements differing | within 1 step | "
               "same top-1 |"), "|---|---|---|---|---|"]
    for k, a in agree.items():
        lines.append(f"| {names[k]} | {a['max_steps']} | {100 * a['differ']:.1f}% | "
                     f"{100 * a['within1']:.1f}% | {100 * a['top1']:.0f}% |")
    lines.append(END)
    section = "\n".join(lines)
    write_section(REPO / "docs" / "BENCHMARKS.md", section, BEGIN, END)
    print(section)


if __name__ == "__main__":
    sys.exit(main())
