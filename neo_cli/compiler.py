"""The compile driver: validated options in, artifact out. The CLI and the tests call `compile_model`."""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import __version__
from .errors import (
    CompileError,
    NotSupportedError,
    UsageError,
)
from .frameworks import parse_framework
from .modelfile import resolve_model
from .shapes import ModelInput, bind_shapes, parse_shapes
from .targets import resolve_target


@dataclass
class CompileOptions:
    """Everything `neo compile` was asked for; filled by the CLI, nothing read from the environment."""

    framework: str
    shape: str | None
    target: str | None = None
    target_platform: str | None = None
    compiler_options: str | None = None
    output: Path = Path("out")
    model: str | None = None
    opt_level: int = 3
    debug: bool = False
    dump_ir: Path | None = None
    use_cache: bool = True  # reuse the artifact of an unchanged model (neo_cli/artifact_cache.py)
    const_inputs: dict[str, Path] = field(default_factory=dict)  # --const-input NAME=FILE.npy
    signature: str | None = None  # --signature: a TensorFlow SavedModel's signature to compile
    # precision (README "Precision"): --quantize int8 with --calibration samples, or fp16
    quantize: str | None = None
    calibration: Path | None = None
    calibration_method: str | None = None  # minmax, percentile, entropy (None: the default)
    validation: Path | None = None
    accuracy_budget: float | None = None  # top-1 points the int8 model may lose against fp32
    per_channel: bool = True
    equalize: bool | None = None  # cross-layer equalization before int8 (None: the default)
    bias_correction: bool | None = None  # of int8 weights' output shift (None: the default)
    precision: str = "fp32"  # fp32 or fp16
    workdir: Path = field(default_factory=Path.cwd)


def _frontend(name: str):
    from neo.frontends import FRONTENDS

    fe = FRONTENDS.get(name)
    if fe is None:
        supported = ", ".join(sorted(FRONTENDS))
        raise NotSupportedError(
            f"--framework {name}: not supported yet (its frontend is not written); the input "
            "shapes were valid", hint=f"frameworks supported now: {supported}")
    return fe


def _signature_option(framework: str, signature: str | None) -> dict:
    """--signature NAME as the frontend's keyword argument; only SavedModels have signatures."""
    if signature is None:
        return {}
    if framework != "tensorflow":
        raise UsageError(f"--signature applies to TensorFlow SavedModels, not --framework "
                         f"{framework}")
    return {"signature": signature}


def _load_const_inputs(opts: CompileOptions, names: list[str]) -> dict:
    """--const-input NAME=FILE.npy: the arrays, by input name (checked against the model)."""
    import numpy as np

    out = {}
    for name, path in opts.const_inputs.items():
        if name not in names:
            raise UsageError(f"--const-input {name}: the model has no input of that name; its "
                             f"inputs: {', '.join(names)}")
        path = Path(opts.workdir, path)
        try:
            out[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise UsageError(f"--const-input {name}: cannot read {path} as a .npy array: "
                             f"{e}") from None
    if out and len(out) == len(names):
        raise UsageError("--const-input fixes every input of the model; leave at least one")
    return out


def _check_precision(opts: CompileOptions) -> None:
    if opts.quantize not in (None, "int8"):
        raise UsageError(f"--quantize {opts.quantize}: expected int8")
    if opts.precision not in ("fp32", "fp16"):
        raise UsageError(f"--precision {opts.precision}: expected fp32 or fp16")
    if opts.quantize and opts.precision != "fp32":
        raise UsageError("--quantize int8 and --precision fp16 exclude each other; give one")
    if opts.quantize and opts.calibration is None:
        raise UsageError("--quantize int8 needs calibration samples: --calibration DIR (.npy "
                         "files) or FILE.npz (keyed by input name)")
    if not opts.quantize:
        for flag, value in (("--calibration", opts.calibration),
                            ("--calibration-method", opts.calibration_method),
                            ("--accuracy-budget", opts.accuracy_budget),
                            ("--equalize/--no-equalize", opts.equalize),
                            ("--bias-correction/--no-bias-correction", opts.bias_correction)):
            if value is not None:
                raise UsageError(f"{flag} applies to --quantize int8")
        if opts.validation is not None and opts.precision == "fp32":
            raise UsageError("--validation applies to --quantize int8 and --precision fp16")
    if opts.accuracy_budget is not None and not 0 <= opts.accuracy_budget <= 100:
        raise UsageError(f"--accuracy-budget {opts.accuracy_budget}: expected the top-1 points "
                         "the int8 model may lose against fp32, between 0 and 100")


def _precision_pass(opts: CompileOptions, graph, target, say):
    """The pass of --quantize int8 / --precision fp16 (None for fp32), and its samples."""
    specs = [(v.name, tuple(v.shape), v.dtype) for v in graph.inputs]
    if opts.precision == "fp16":
        from neo.codegen.isa import native_fp16
        from neo.codegen.tuning import tuning_for
        from neo.passes.precision import Fp16

        from .calibration import Samples
        from .targets import host_target

        valid = (Samples(Path(opts.workdir, opts.validation), specs, "--validation")
                 if opts.validation is not None else None)
        arithmetic = "float16" if native_fp16(tuning_for(target)) else "float32"
        return Fp16(host_target(), valid, say, arithmetic=arithmetic), (None, valid)
    if not opts.quantize:
        return None, None
    from neo.codegen.isa import int8_dot
    from neo.codegen.tuning import tuning_for
    from neo.passes.calibrate import Int8Options, Int8Quantization
    from neo.passes.quantize import activation_dtype_for

    from .calibration import Samples
    from .targets import host_target

    calib = Samples(Path(opts.workdir, opts.calibration), specs, "--calibration")
    valid = (Samples(Path(opts.workdir, opts.validation), specs, "--validation")
             if opts.validation is not None else None)
    options = Int8Options(activations=activation_dtype_for(int8_dot(tuning_for(target))),
                          samples=calib, validation=valid, method=opts.calibration_method,
                          per_channel=opts.per_channel, budget=opts.accuracy_budget, log=say,
                          **{k: v for k, v in (("equalize", opts.equalize),
                                               ("bias_correction", opts.bias_correction))
                             if v is not None})
    return Int8Quantization(options, host_target()), (calib, valid)


def format_report(report: dict) -> list[str]:
    """The accuracy report as lines for stderr."""
    if report.get("mode") == "fp16":
        head = (f"precision fp16 ({report['arithmetic']}; {report['weight_bytes_saved']} bytes of "
                "weights saved)")
        if "samples" not in report:
            return [head, "  (no --validation samples: no comparison with fp32)"]
    else:
        head = (f"quantization int8 ({report['activations']} activations, "
                f"{report['weights']} weights, {report['method']} calibration over "
                f"{report['calibration_samples']} samples; {report['quantized_layers']} layers "
                "on integer kernels"
                + (f"; {report['equalized_pairs']} conv pairs equalized"
                   if report.get("equalized_pairs") else "")
                + (f"; {report['bias_corrected_layers']} biases corrected"
                   if report.get("bias_corrected_layers") else "") + ")")
    lines = [head, f"  compared with fp32 on {report['samples']} "
             f"{report.get('report_on', 'calibration')} samples:"]
    for name, o in report.get("outputs", {}).items():
        top1 = (f", top-1 agreement {100 * o['top1_agreement']:.1f}%"
                if "top1_agreement" in o else "")
        lines.append(f"  output {name}: SQNR {o['sqnr_db']} dB, max abs error "
                     f"{o['max_abs_error']}{top1}")
    if report.get("worst_layers"):
        lines.append("  worst layers (SQNR dB): " + ", ".join(
            f"{w['layer']} {w['sqnr_db']}" for w in report["worst_layers"]))
    if report.get("fp32_layers"):
        lines.append(f"  kept in fp32 (accuracy budget {report.get('accuracy_budget_top1_points')}"
                     f" top-1 points): " + ", ".join(report["fp32_layers"]))
    return lines


def artifact_meta(graph, framework: str, model: str, opt_level: int,
                  compiler_options: dict | None = None, const_inputs: dict | None = None) -> dict:
    """The compiled.meta fields the compile knows (codegen adds the target's and the files');
    one place for `neo compile` and the ONNX test backend."""
    meta = {
        "compiler": f"neo {__version__}",
        "framework": framework,
        "model": model,
        "inputs": [{"name": v.name, "dtype": v.dtype, "shape": list(v.shape)}
                   for v in graph.inputs],
        "outputs": [{"name": n, "dtype": v.dtype, "shape": list(v.shape)}
                    for n, v in zip(graph.out_names(), graph.outputs)],
        "options": {"opt_level": opt_level, "compiler_options": compiler_options or {}},
    }
    if const_inputs:  # the inputs compiled in (--const-input), with their values' digests
        meta["options"]["const_inputs"] = {
            k: {"dtype": str(v.dtype), "shape": list(v.shape), "sha256": _digest(v)}
            for k, v in const_inputs.items()}
    return meta


def _precision_key(opts: CompileOptions) -> dict:
    """The precision options in the artifact cache key, the samples by their bytes."""
    if opts.precision == "fp32" and not opts.quantize:
        return {}
    key = {"precision": opts.precision, "quantize": opts.quantize,
           "method": opts.calibration_method, "budget": opts.accuracy_budget,
           "per_channel": opts.per_channel, "equalize": opts.equalize,
           "bias_correction": opts.bias_correction}
    for name, path in (("calibration", opts.calibration), ("validation", opts.validation)):
        if path is not None:
            p = Path(opts.workdir, path)
            h = hashlib.sha256()
            files = [p] if p.is_file() else sorted(p.rglob("*.npy")) if p.is_dir() else []
            for f in files:
                h.update(str(f.relative_to(p.parent)).encode())
                h.update(f.read_bytes())
            key[name] = h.hexdigest()
    return key


def _digest(arr) -> str:
    import hashlib

    return hashlib.sha256(f"{arr.dtype}{arr.shape}".encode() + arr.tobytes()).hexdigest()


def compile_model(opts: CompileOptions, log: Callable[[str], None] | None = None) -> dict:
    say = log or (lambda s: None)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    fw = parse_framework(opts.framework)
    _check_precision(opts)
    if not 0 <= opts.opt_level <= 3:
        raise UsageError(f"--opt-level must be 0, 1, 2 or 3, got {opts.opt_level}")
    target, copts = resolve_target(opts.target, opts.target_platform, opts.compiler_options)
    spec = parse_shapes(fw, opts.shape)
    fe = _frontend(fw.name)
    fe_opts = _signature_option(fw.name, opts.signature)
    t = time.perf_counter()
    with resolve_model(opts.model, fw, opts.workdir) as src:
        model_path = src.path
        # frontends that know named dynamic dims (ONNX dim_param) say so: shared names must agree
        dim_names = fe.dim_names(model_path) if hasattr(fe, "dim_names") else {}
        inputs = fe.inputs(model_path, **fe_opts)
        consts = _load_const_inputs(opts, [n for n, _, _ in inputs])
        declared = [ModelInput(n, s, d, dim_names.get(n)) for n, s, d in inputs
                    if n not in consts]
        shapes = bind_shapes(fw, spec, declared)
        for note in getattr(shapes, "notes", []):
            say(f"note: {note}")
        use_cache = opts.use_cache and not (opts.debug or opts.dump_ir)
        if use_cache:
            from . import artifact_cache

            key = artifact_cache.cache_key(
                [src.path, *src.files],
                {"framework": fw.name, "shapes": {k: list(v) for k, v in shapes.items()},
                 "target": [target.name, target.triple, target.cpu, target.features],
                 "compiler_options": opts.compiler_options, "opt_level": opts.opt_level,
                 "const_inputs": {k: _digest(v) for k, v in consts.items()}, **fe_opts,
                 **_precision_key(opts)})
            hit = artifact_cache.lookup(key)
            if hit is not None:
                entry, cached = hit
                artifact_cache.restore(entry, cached["files"], Path(opts.output))
                say(f"unchanged model: artifact copied from the cache ({entry})")
                res = {k: v for k, v in cached.items() if k != "files"}
                res.update(output=str(Path(opts.output)), model=str(model_path),
                           artifact_cached=True,
                           timings={"total": round(time.perf_counter() - t_all, 4)})
                return res
        say(f"loading {model_path.name} ({fw.name})")
        graph = fe.load(model_path, dict(shapes), options=copts, **fe_opts,
                        **({"const_inputs": consts} if consts else {}))
        timings["frontend"] = time.perf_counter() - t
    say(f"frontend: {len(graph.nodes)} nodes, {timings['frontend']:.2f}s")
    row_batch = graph.row_batch  # the passes build new graphs; the artifact needs to know
    from neo.codegen.tuning import tuning_for
    from neo.ir.graph import IRError
    from neo.passes import run_pipeline

    t = time.perf_counter()

    def pass_log(name, dt, g):
        say(f"pass {name}: {len(g.nodes)} nodes, {dt * 1000:.1f} ms")

    precision, _ = _precision_pass(opts, graph, target, say)
    try:
        graph = run_pipeline(graph, opts.opt_level, debug=opts.debug, dump_dir=opts.dump_ir,
                             log=pass_log, precision=precision, tuning=tuning_for(target))
    except IRError as e:
        raise CompileError(f"{model_path.name}: optimization produced an invalid graph: {e}") from e
    timings["passes"] = time.perf_counter() - t
    report = getattr(precision, "report", None)
    from neo.codegen.build import CodegenError, build_artifact
    from neo.codegen.toolchain import ToolchainError

    meta = artifact_meta(graph, fw.name, model_path.name, opts.opt_level,
                         _jsonable(asdict(copts)) if copts else {}, consts)
    if report is not None:
        meta["precision"] = report
    if row_batch:
        meta["row_batch"] = True
    t = time.perf_counter()
    try:
        res = build_artifact(graph, target, Path(opts.output), meta, opts.opt_level, progress=say)
    except CodegenError as e:
        raise NotSupportedError(f"{model_path.name}: {e}") from e
    except ToolchainError as e:
        raise CompileError(f"linking for {target.name} failed: {e}",
                           hint="is the ziglang package installed? pip install ziglang") from e
    timings["codegen"] = time.perf_counter() - t
    for k, v in res.timings.items():
        timings[f"codegen.{k}"] = v
    timings["total"] = time.perf_counter() - t_all
    result = {
        "status": "ok",
        "output": str(Path(opts.output)),
        "model": str(model_path),
        "framework": fw.name,
        "target": target.meta(),
        "inputs": meta["inputs"],
        "outputs": meta["outputs"],
        "kernels": res.kernels,
        "workspace_nbytes": res.workspace_nbytes,
        "params_nbytes": res.params_nbytes,
        "object_cached": res.cached_object,
        "timings": {k: round(v, 4) for k, v in timings.items()},
        "artifact_cached": False,
    }
    if report is not None:
        result["precision"] = report
    if use_cache:
        artifact_cache.store(key, Path(opts.output), result)
    return result


def _jsonable(d):
    return {k: (v if isinstance(v, (str, int, float, bool, type(None), dict, list)) else list(v)
                if isinstance(v, tuple) else str(v)) for k, v in d.items()}
