"""INT8 and FP16 side by side: neo's int8 resnet50 against onnxruntime running the same network
quantized by `onnxruntime.quantization.quantize_static`, and against neo's own fp32 and fp16.

    make bench            # runs this after scripts/bench.py
    python3 scripts/bench_quant.py [--quick] [--rounds N]

The network is torchvision's resnet50 with random weights and BatchNorm statistics of random data
(scripts/bench.py's model, 1x3x224x224). Both quantizers get the same 8 calibration images
(image-like inputs, scripts/bench.py's `image_like`): neo with `--quantize int8 --calibration`
(its default: per-channel int8 weights, uint8 activations on x86, min/max ranges), onnxruntime
with `quantize_static` in the QDQ format, uint8 activations, int8 per-channel weights, MinMax
(which onnxruntime's graph optimizer fuses into QLinearConv). Engines run batch 1 at 1 and 2
threads, interleaved in rotated order per round (scripts/bench.py's `time_interleaved`); medians.
Accuracy: top-1 agreement and SQNR of each output against onnxruntime's fp32 on 16 other inputs.
Models and calibration data are cached in build/bench_quant/. Writes the section between the
bench_quant markers in docs/BENCHMARKS.md (scripts/bench.py keeps it).
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "build" / "bench_quant"
sys.path.insert(0, str(REPO / "scripts"))

from bench import (
    Engine,
    Settings,
    build_model,
    cpu_info,
    export_onnx,
    image_like,
    markers,
    ort_session,
    time_interleaved,
    vnni_info,
    write_section,
)

BEGIN, END = markers("quant")  # this machine kind's section

SHAPE = (1, 3, 224, 224)
N_CALIB, N_EVAL = 8, 16


def prepare(log) -> tuple[Path, Path, Path]:
    """resnet50 fp32 ONNX, the calibration .npz (input: [N_CALIB, 1, 3, 224, 224]) and the
    onnxruntime QDQ model."""
    import torch
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    WORK.mkdir(parents=True, exist_ok=True)
    fp32, calib, qdq = WORK / "resnet50.onnx", WORK / "calib.npz", WORK / "resnet50-qdq.onnx"
    samples = [image_like(100 + i, SHAPE) for i in range(N_CALIB)]
    if not fp32.exists():
        log("exporting resnet50 (random weights, calibrated BatchNorm)")
        model, _, _ = build_model(torch, "resnet50")
        export_onnx(torch, model, samples[0], fp32)
    if not calib.exists():
        np.savez(calib, input=np.stack(samples))
    if not qdq.exists():
        log("onnxruntime quantize_static (QDQ, uint8 activations, int8 per-channel weights)")

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.it = iter(samples)

            def get_next(self):
                x = next(self.it, None)
                return None if x is None else {"input": x}

        quantize_static(str(fp32), str(qdq), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=True, calibrate_method=CalibrationMethod.MinMax)
    return fp32, calib, qdq


def compile_neo(fp32: Path, calib: Path, log, reuse: bool) -> dict[str, tuple[Path, float, dict]]:
    """fp32, int8 and fp16 artifacts: (directory, compile seconds, compile result); with `reuse`,
    the artifacts of the last run (compile seconds NaN, the result read from compiled.meta)."""
    from neo.codegen import lower_quant
    from neo.compiler import CompileOptions, compile_model

    out = {}
    int8 = {"quantize": "int8", "calibration": calib}
    kinds = [("fp32", {}), ("int8", int8), ("fp16", {"precision": "fp16"})]
    if host_has_amx():  # and the figure of a CPU with VNNI only
        kinds.append(("int8-vnni", int8))
    for kind, kw in kinds:
        art = WORK / f"neo-{kind}"
        secs = WORK / f"neo-{kind}.compile_s"
        if reuse and (art / "compiled.meta").exists():
            took = float(secs.read_text()) if secs.exists() else math.nan
            out[kind] = (art, took, json.loads((art / "compiled.meta").read_text()))
            continue
        t0 = time.perf_counter()
        policy = lower_quant.AMX_POLICY
        lower_quant.AMX_POLICY = "never" if kind == "int8-vnni" else policy
        try:
            res = compile_model(CompileOptions(framework="onnx", model=str(fp32), target="host",
                                               shape=json.dumps({"input": list(SHAPE)}),
                                               output=art, use_cache=False, **kw))
        finally:
            lower_quant.AMX_POLICY = policy
        out[kind] = (art, time.perf_counter() - t0, res)
        secs.write_text(f"{out[kind][1]:.1f}\n")
        log(f"neo {kind}: compiled in {out[kind][1]:.0f} s")
    return out


def host_has_amx() -> bool:
    from neo.codegen.isa import has_amx_int8
    from neo.codegen.tuning import tuning_for
    from neo.targets import get_target

    return has_amx_int8(tuning_for(get_target("host")))


def _sqnr(ref: np.ndarray, got: np.ndarray) -> float:
    ref, got = ref.astype(np.float64), got.astype(np.float64)
    noise = float(np.sum((ref - got) ** 2))
    return math.inf if noise == 0 else 10 * math.log10(float(np.sum(ref ** 2)) / noise)


def accuracy(runs: dict, ref_sess) -> dict[str, dict]:
    xs = [image_like(500 + i, SHAPE) for i in range(N_EVAL)]
    ref = np.concatenate([ref_sess.run(None, {"input": x})[0] for x in xs])
    out = {}
    for name, run in runs.items():
        got = np.concatenate([run(x) for x in xs])
        out[name] = {"top1": float((got.argmax(1) == ref.argmax(1)).mean()),
                     "sqnr_db": _sqnr(ref, got), "classes": len(set(ref.argmax(1).tolist()))}
    return out


def measure(arts, fp32: Path, qdq: Path, x: np.ndarray, threads: int, settings, first: bool):
    """Median times of the five engines at `threads`; with `first`, their accuracy too."""
    from neo.runtime import Model

    models = {k: Model(arts[k][0], num_threads=threads) for k in arts}
    sessions = {"ort-fp32": ort_session(fp32, threads), "ort-int8": ort_session(qdq, threads)}
    try:
        engines = [Engine("neo-int8", lambda: models["int8"].run(x)),
                   Engine("ort-int8", lambda: sessions["ort-int8"].run(None, {"input": x})),
                   Engine("neo-fp32", lambda: models["fp32"].run(x)),
                   Engine("ort-fp32", lambda: sessions["ort-fp32"].run(None, {"input": x})),
                   Engine("neo-fp16", lambda: models["fp16"].run(x))]
        if "int8-vnni" in models:
            engines.append(Engine("neo-int8-vnni", lambda: models["int8-vnni"].run(x)))
        times = time_interleaved(engines, settings)
        acc = None
        if first:
            acc = accuracy({"neo int8": lambda a: models["int8"].run(a)[0],
                            "onnxruntime int8": lambda a: sessions["ort-int8"].run(
                                None, {"input": a})[0],
                            "neo fp16": lambda a: models["fp16"].run(a)[0],
                            "neo fp32": lambda a: models["fp32"].run(a)[0]},
                           sessions["ort-fp32"])
        return times, acc
    finally:
        for m in models.values():
            m.close()



def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few seconds of timing per engine")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--reuse", action="store_true",
                    help="time the artifacts of the last run instead of compiling again (their "
                         "compile seconds are the last run's)")
    args = ap.parse_args(argv)
    settings = Settings.make(args.quick, args.rounds)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    load0 = os.getloadavg()
    started = time.perf_counter()
    fp32, calib, qdq = prepare(log)
    arts = compile_neo(fp32, calib, log, args.reuse)
    x = image_like(0, SHAPE)
    rows, acc = {}, {}
    for threads in (1, 2):
        rows[threads], got = measure(arts, fp32, qdq, x, threads, settings, first=threads == 1)
        acc = got or acc
        log(f"{threads} thread(s): " + ", ".join(f"{k} {v['median_ms']:.2f} ms"
                                                 for k, v in rows[threads].items()))
    write(rows, acc, arts, load0, time.perf_counter() - started, args)
    return 0


def write(rows, acc, arts, load0, seconds, args) -> None:
    import onnxruntime

    cpu = cpu_info()
    has_vnni, dot = vnni_info()
    sizes = {k: sum(f.stat().st_size for f in a.iterdir() if f.is_file()) / 2 ** 20
             for k, (a, _, _) in arts.items()}
    report = arts["int8"][2].get("precision", {})
    cmd = "python3 scripts/bench_quant.py" + (" --quick" if args.quick else "") + (
        f" --rounds {args.rounds}" if args.rounds else "") + (" --reuse" if args.reuse else "")
    lines = [
        BEGIN, f"## INT8 and FP16 (resnet50), {cpu['model']}", "",
        f"- Date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}",
        (f"- CPU: {cpu['model']} ({cpu['machine']}, {', '.join(cpu['isa'])}), {cpu['cores']} "
         f"cores; **VNNI: {'yes' if has_vnni else 'no'}** (neo's host target uses `{dot}` int8 "
         f"dot products)"),
        (f"- Load average at the start: {' '.join(f'{v:.2f}' for v in load0)}, at the end: "
         f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} (other engineers' jobs share the 2 "
         "cores: absolute times are noisy, ratios within a row less so)"),
        f"- Versions: onnxruntime {onnxruntime.__version__}",
        (f"- Command: `make bench  # {cmd}` ({seconds / 60:.1f} min, "
         + ("timing the artifacts of an earlier run" if args.reuse else "compiles included")
         + ")"), "",
        ("resnet50 (random weights, BatchNorm calibrated on random data), batch 1, 1x3x224x224. "
         "neo int8: `--quantize int8 --calibration` with 8 image-like samples (min/max, "
         "per-channel int8 weights, uint8 activations); onnxruntime int8: the same 8 samples "
         "through `quantize_static` (QDQ, QUInt8 activations, QInt8 per-channel weights, MinMax), "
         "run with all graph optimizations (QDQ fused to QLinearConv). Median ms per run, "
         f"{settings_text(rows)}, engines interleaved in rotated order."), "",
        ("| threads | neo int8 | onnxruntime int8 | neo fp32 | onnxruntime fp32 | neo fp16 | "
         "neo int8 / ORT int8 | neo fp32 / neo int8 |"),
        "|---|---|---|---|---|---|---|---|"]
    for threads, r in rows.items():
        ms = {k: v["median_ms"] for k, v in r.items()}
        lines.append(f"| {threads} | {ms['neo-int8']:.2f} | {ms['ort-int8']:.2f} | "
                     f"{ms['neo-fp32']:.2f} | {ms['ort-fp32']:.2f} | {ms['neo-fp16']:.2f} | "
                     f"**{ms['neo-int8'] / ms['ort-int8']:.2f}** | "
                     f"**{ms['neo-fp32'] / ms['neo-int8']:.2f}x** |")
    vnni = {t: r["neo-int8-vnni"]["median_ms"] for t, r in rows.items() if "neo-int8-vnni" in r}
    if vnni:
        lines += ["", ("neo's int8 convs on AMX tiles where its planner prefers them (most of "
                       "resnet50's); the same int8 model compiled with AMX off, as a CPU with "
                       "AVX-512 VNNI and no AMX runs it: "
                       + ", ".join(f"{ms:.2f} ms at {t} thread{'s' if t > 1 else ''} "
                                   f"({ms / rows[t]['ort-int8']['median_ms']:.2f} of "
                                   "onnxruntime's int8)" for t, ms in vnni.items()) + ".")]
    lines += ["", (f"Accuracy against onnxruntime fp32 on {N_EVAL} other image-like inputs "
                   f"({next(iter(acc.values()))['classes']} different fp32 top-1 classes: a "
                   "random resnet50 gives most inputs one class, so the SQNR is the informative "
                   "figure):"), "",
              "| model | top-1 agreement | output SQNR dB | artifact MB | neo compile s |",
              "|---|---|---|---|---|"]
    for name, a in acc.items():
        kind = name.split()[-1]
        secs = arts[kind][1] if name.startswith("neo") else math.nan
        art = (f"{sizes[kind]:.1f} | {'reused' if math.isnan(secs) else f'{secs:.0f}'}"
               if name.startswith("neo") else "— | —")
        lines.append(f"| {name} | {a['top1']:.3f} | {a['sqnr_db']:.1f} | {art} |")
    if report:
        out = next(iter(report.get("outputs", {}).values()), {})
        lines += ["", (f"neo's own int8 report (on the calibration samples, against neo fp32): "
                       f"SQNR {out.get('sqnr_db')} dB, top-1 agreement "
                       f"{out.get('top1_agreement')}, {report.get('quantized_layers')} quantized "
                       f"layers, method {report.get('method')}.")]
    lines.append(END)
    section = "\n".join(lines)
    write_section(REPO / "docs" / "BENCHMARKS.md", section, BEGIN, END)
    print(section)


def settings_text(rows) -> str:
    r = next(iter(rows.values()))
    e = next(iter(r.values()))
    return f"{len(e['round_medians_ms'])} rounds of {e['iters_per_round']}+ runs"


if __name__ == "__main__":
    sys.exit(main())
