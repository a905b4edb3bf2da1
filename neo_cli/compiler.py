"""The compile driver: validated options in, artifact out. The CLI and the tests call `compile_model`."""
from __future__ import annotations

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


def _digest(arr) -> str:
    import hashlib

    return hashlib.sha256(f"{arr.dtype}{arr.shape}".encode() + arr.tobytes()).hexdigest()


def compile_model(opts: CompileOptions, log: Callable[[str], None] | None = None) -> dict:
    say = log or (lambda s: None)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    fw = parse_framework(opts.framework)
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
                 "const_inputs": {k: _digest(v) for k, v in consts.items()}, **fe_opts})
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
    from neo.ir.graph import IRError
    from neo.passes import run_pipeline

    t = time.perf_counter()

    def pass_log(name, dt, g):
        say(f"pass {name}: {len(g.nodes)} nodes, {dt * 1000:.1f} ms")

    try:
        graph = run_pipeline(graph, opts.opt_level, debug=opts.debug, dump_dir=opts.dump_ir,
                             log=pass_log)
    except IRError as e:
        raise CompileError(f"{model_path.name}: optimization produced an invalid graph: {e}") from e
    timings["passes"] = time.perf_counter() - t
    from neo.codegen.build import CodegenError, build_artifact
    from neo.codegen.toolchain import ToolchainError

    meta = artifact_meta(graph, fw.name, model_path.name, opts.opt_level,
                         _jsonable(asdict(copts)) if copts else {}, consts)
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
    if use_cache:
        artifact_cache.store(key, Path(opts.output), result)
    return result


def _jsonable(d):
    return {k: (v if isinstance(v, (str, int, float, bool, type(None), dict, list)) else list(v)
                if isinstance(v, tuple) else str(v)) for k, v in d.items()}
