"""`neo`: compile models to native code for CPUs, run and inspect them.

Exit codes: 0 ok, 1 internal error (a bug), 2 usage or bad input, 3 model load error,
4 unsupported operator/framework/target feature, 5 compile or toolchain failure, 6 runtime failure.
"""
from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import click

from . import __version__
from .errors import NeoError, UsageError, exit_code_for, format_error


class Ctx:
    def __init__(self, json_out: bool, verbose: bool, debug: bool):
        self.json = json_out
        self.verbose = verbose
        self.debug = debug

    def log(self, msg: str) -> None:
        if self.verbose or self.debug:
            click.echo(msg, err=True)


def _emit(ctx: Ctx, result: dict, human: str) -> None:
    if ctx.json:
        click.echo(json.dumps(result, indent=1))
    elif human:
        click.echo(human)


def _guard(fn):
    """Run a command body: NeoErrors become one line on stderr and their exit code."""

    def wrapper(*args, **kwargs):
        ctx = _setup(kwargs.get("json_out", False), kwargs.get("verbose", False),
                     kwargs.get("debug", False))
        try:
            return fn(*args, **kwargs)
        except NeoError as e:
            _fail(ctx, e)
        except click.exceptions.Exit:
            raise
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            sys.exit(130)
        except Exception as e:  # noqa: BLE001  (a bug: say so; the traceback only with --debug)
            if ctx.debug:
                traceback.print_exc()
            _fail(ctx, e)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def _fail(ctx: Ctx, e: BaseException):
    code = exit_code_for(e)
    msg = format_error(e)
    if ctx.json:
        click.echo(json.dumps({"status": "error", "exit_code": code, "error": msg.splitlines()[0],
                               "hint": getattr(e, "hint", None)}, indent=1))
    click.echo(msg, err=True)
    sys.exit(code)


def _common(f):
    f = click.option("--json", "json_out", is_flag=True, help="Print the result as JSON on stdout.")(f)
    f = click.option("--verbose", "-v", is_flag=True, help="Print each phase and its time on stderr.")(f)
    f = click.option("--debug", is_flag=True, help="Verify the IR after every pass; tracebacks.")(f)
    return f


def _setup(json_out, verbose, debug) -> Ctx:
    c = click.get_current_context()
    c.obj = Ctx(json_out, verbose, debug)
    return c.obj


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="neo")
def cli():
    """neo: compile trained models into native shared objects for CPUs (x86_64, arm64, armv7)."""


@cli.command("compile")
@click.argument("model_arg", required=False, metavar="MODEL")
@click.option("--model", "model_opt", help="The model file, directory or .tar.gz (or the argument).")
@click.option("--framework", "-f", required=True,
              help="tensorflow, keras, mxnet, onnx, pytorch, xgboost or tflite (any case).")
@click.option("--shape", "--input-shape", "shape", help="Input shapes as JSON, Neo's DataInputConfig.")
@click.option("--target", "-t", help="x86_64, host, arm64, armv7 or a Neo device (neo targets).")
@click.option("--target-platform", help="Neo's TargetPlatform, e.g. os=LINUX,arch=ARM64.")
@click.option("--compiler-options", help='JSON, e.g. {"mcpu": "cortex-a72", "mattr": ["+neon"]}.')
@click.option("--output", "-o", default="out", show_default=True, type=click.Path(path_type=Path),
              help="Directory to write the artifact into.")
@click.option("--opt-level", "-O", default=3, show_default=True, type=int, help="0..3")
@click.option("--dump-ir", type=click.Path(path_type=Path), help="Write the graph after each pass here.")
@click.option("--no-cache", is_flag=True,
              help="Compile even if this model was compiled before with the same options.")
@click.option("--const-input", "const_inputs", multiple=True, metavar="NAME=FILE.npy",
              help="Compile with this input fixed to the array's values (shape-like operands, "
                   "If conditions, a sample rate); the artifact no longer takes it.")
@click.option("--signature", help="A TensorFlow SavedModel's signature (default serving_default).")
@click.option("--quantize", type=click.Choice(["int8"]),
              help="Quantize to int8 with calibration samples (--calibration).")
@click.option("--calibration", type=click.Path(path_type=Path),
              help="Calibration samples: a directory of .npy files or an .npz keyed by input.")
@click.option("--calibration-method", type=click.Choice(["minmax", "percentile", "entropy"]),
              help="How activation ranges are chosen (default: minmax).")
@click.option("--validation", type=click.Path(path_type=Path),
              help="Samples the accuracy report uses (default: the calibration samples).")
@click.option("--accuracy-budget", type=float, metavar="TOP1_DROP",
              help="Top-1 points the int8 model may lose against fp32; layers past it stay fp32.")
@click.option("--per-channel/--per-tensor", "per_channel", default=True, show_default=True,
              help="int8 weight scales per output channel or one per tensor.")
@click.option("--equalize/--no-equalize", default=None,
              help="Cross-layer equalization of conv pairs before int8 (default: off).")
@click.option("--bias-correction/--no-bias-correction", "bias_correction", default=None,
              help="Correct the output shift int8 weights cause (default: off).")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32",
              show_default=True, help="fp16: half-precision weights (and arithmetic where the "
                                      "target has it).")
@_common
@_guard
def compile_cmd(model_arg, model_opt, framework, shape, target, target_platform, compiler_options,
                output, opt_level, dump_ir, no_cache, const_inputs, signature, quantize,
                calibration, calibration_method, validation, accuracy_budget, per_channel,
                equalize, bias_correction, precision, json_out, verbose, debug):
    """Compile MODEL for a target into OUTPUT (compiled.so, compiled_model.json, compiled.params,
    compiled.meta and the target's runtime)."""
    ctx = _setup(json_out, verbose, debug)
    from .compiler import CompileOptions, compile_model

    if model_arg and model_opt and model_arg != model_opt:
        raise UsageError(f"two models given: {model_arg} and --model {model_opt}; give one")
    if target is None and target_platform is None:
        raise UsageError("--target is required (or --target-platform); e.g. --target x86_64, "
                         "--target arm64 or --target rasp4b; `neo targets` lists them")
    opts = CompileOptions(framework=framework, shape=shape, target=target,
                          target_platform=target_platform, compiler_options=compiler_options,
                          output=output, model=model_arg or model_opt, opt_level=opt_level,
                          debug=debug, dump_ir=dump_ir, use_cache=not no_cache,
                          const_inputs=_const_inputs(const_inputs), signature=signature,
                          quantize=quantize, calibration=calibration,
                          calibration_method=calibration_method, validation=validation,
                          accuracy_budget=accuracy_budget, per_channel=per_channel,
                          equalize=equalize, bias_correction=bias_correction,
                          precision=precision)
    res = compile_model(opts, ctx.log)
    if res.get("precision") and not json_out:
        from .compiler import format_report

        for line in format_report(res["precision"]):
            click.echo(line, err=True)
    t = res["timings"]
    ctx.log("timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in t.items()))
    ctx.log(f"wrote {res['output']} ({res['kernels']} kernels, {res['params_nbytes']} bytes of "
            f"params, workspace {res['workspace_nbytes']} bytes) in {t['total']:.1f}s")
    _emit(ctx, res, "")  # quiet by default: the artifact is the result


def _const_inputs(specs: tuple[str, ...]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--const-input {spec!r}: expected NAME=FILE.npy")
        if name in out:
            raise UsageError(f"--const-input {name} given twice")
        out[name] = Path(path)
    return out


@cli.command("run")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--input", "-i", "inputs", multiple=True, help="NAME=FILE.npy (or FILE.npy for one input).")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write outputs to this .npz.")
@click.option("--threads", type=int, help="Threads for the kernels (default: all cores).")
@click.option("--check", is_flag=True,
              help="Checked mode: guard bytes around every buffer, verified after every kernel "
                   "(finds out-of-bounds writes; slower).")
@_common
@_guard
def run_cmd(artifact, inputs, output, threads, check, json_out, verbose, debug):
    """Run a compiled ARTIFACT directory on .npy inputs; outputs go to an .npz keyed by name."""
    ctx = _setup(json_out, verbose, debug)
    import numpy as np

    from .run import parse_inputs, read_meta, run_artifact

    meta = read_meta(artifact)
    feeds = parse_inputs(inputs, meta)
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    names, outs, info = run_artifact(artifact, feeds, threads, check=check)
    if info.get("emulated"):
        ctx.log(f"running the {info['arch']} artifact under {info.get('emulator')}")
    if output is not None:
        if output.suffix != ".npz":
            raise UsageError(f"--output {output}: must end in .npz")
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(output.name + ".tmp.npz")
        np.savez(tmp, **dict(zip(names, outs)))
        tmp.replace(output)
    res = {"status": "ok", "artifact": str(artifact), **info,
           "outputs": [{"name": n, "dtype": o.dtype.name, "shape": list(o.shape)}
                       for n, o in zip(names, outs)]}
    if output is not None:
        res["written"] = str(output)
    human = "\n".join(f"{n}: {o.dtype.name}{list(o.shape)} argmax={int(o.argmax()) if o.size else '-'}"
                      for n, o in zip(names, outs)) if output is None or verbose else ""
    _emit(ctx, res, human)


@cli.command("bench")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--threads", type=int, help="Threads (default: all cores).")
@click.option("--repeat", default=50, show_default=True, type=int, help="Timed runs.")
@click.option("--warmup", default=5, show_default=True, type=int, help="Untimed runs first.")
@click.option("--per-op", is_flag=True, help="Time per graph node (kernel): where the time goes.")
@_common
@_guard
def bench_cmd(artifact, threads, repeat, warmup, per_op, json_out, verbose, debug):
    """Latency (median, p90), throughput and an optional per-kernel profile of ARTIFACT."""
    ctx = _setup(json_out, verbose, debug)
    from .bench import bench_artifact, format_bench

    if repeat < 1 or warmup < 0 or (threads is not None and threads < 1):
        raise UsageError("--repeat must be >= 1, --warmup >= 0 and --threads >= 1")
    res = bench_artifact(artifact, threads, repeat, warmup, per_op)
    _emit(ctx, {"status": "ok", **res}, format_bench(res))


@cli.command("inspect")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--framework", "-f", help="The model's framework (default: from the file name).")
@click.option("--signature", help="A TensorFlow SavedModel's signature (default serving_default).")
@_common
@_guard
def inspect_cmd(model, framework, signature, json_out, verbose, debug):
    """Show a model's inputs, outputs, op histogram and the ops neo does not support."""
    ctx = _setup(json_out, verbose, debug)
    from .frameworks import parse_framework
    from .modelfile import resolve_model

    if framework is None:
        framework = {".onnx": "onnx", ".pt": "pytorch", ".pth": "pytorch", ".pt2": "pytorch",
                     ".tflite": "tflite", ".h5": "keras", ".keras": "keras",
                     ".ubj": "xgboost", ".pb": "tensorflow",
                     ".pbtxt": "tensorflow"}.get(model.suffix.lower())
        if framework is None and (model / "saved_model.pb").is_file():
            framework = "tensorflow"
        if framework is None:
            raise UsageError(f"{model}: cannot tell the framework from the name; pass --framework")
    fw = parse_framework(framework)
    from .compiler import _frontend, _signature_option

    fe = _frontend(fw.name)
    fe_opts = _signature_option(fw.name, signature)
    with resolve_model(str(model), fw.name, Path.cwd()) as src:
        info = fe.inspect(src.path, **fe_opts)
    info = {"status": "ok", "model": str(model), "framework": fw.name, **info}
    _emit(ctx, info, _format_inspect(info))


def _format_inspect(info: dict) -> str:
    lines = [f"model: {info['model']} ({info['framework']})"]
    for key in ("inputs", "outputs"):
        lines.append(f"{key}:")
        for i in info.get(key, []):
            shape = i.get("shape")
            q = i.get("quantization")
            q = "" if not q else " (" + ", ".join(f"{k} {v}" for k, v in q.items()) + ")"
            lines.append(f"  {i.get('name')}: {i.get('dtype')} {shape}{q}")
    for key, value in (info.get("details") or {}).items():  # e.g. an XGBoost model's trees
        lines.append(f"{key.replace('_', ' ')}: {value}")
    hist = info.get("op_histogram") or info.get("ops") or {}
    lines.append(f"ops ({sum(hist.values())} nodes, {len(hist)} types):")
    for op, n in hist.items():
        lines.append(f"  {op:<28} {n}")
    uns = info.get("unsupported") or []
    if uns:
        lines.append("not supported:")
        for u in uns:
            if isinstance(u, dict):
                lines.append(f"  {u.get('op_type')} x{u.get('count')}: "
                             f"{', '.join(u.get('first_nodes', u.get('nodes', [])))}")
            else:
                lines.append(f"  {u}")
    else:
        lines.append("every op is supported")
    return "\n".join(lines)


@cli.command("targets")
@_common
@_guard
def targets_cmd(json_out, verbose, debug):
    """List every target and Neo device neo can compile for."""
    ctx = _setup(json_out, verbose, debug)
    from .targets import UNSUPPORTED_TARGETS, all_targets

    ts = all_targets()
    res = {"status": "ok", "targets": [{**t.meta(), "description": t.description} for t in ts],
           "refused": sorted(UNSUPPORTED_TARGETS)}
    human = "\n".join(f"{t.name:<15} {t.triple:<30} {t.cpu:<15} {t.vector_bits:>3}-bit  "
                      f"{t.description}" for t in ts)
    human += f"\nrefused (neo compile --target NAME says why): {', '.join(res['refused'])}"
    _emit(ctx, res, human)


from .jobs.cli import build_jobs_group

cli.add_command(build_jobs_group(_common, _guard))


def main(argv=None):
    try:
        cli.main(args=argv, prog_name="neo", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(130)
    except click.exceptions.ClickException as e:
        # usage errors from click itself: one line, exit 2
        click.echo(f"error: {e.format_message()}", err=True)
        if "--json" in (argv if argv is not None else sys.argv):
            click.echo(json.dumps({"status": "error", "exit_code": 2, "error": e.format_message()}))
        sys.exit(2)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    sys.exit(0)


if __name__ == "__main__":
    main()
