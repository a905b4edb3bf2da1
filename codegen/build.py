"""From an optimized, fused graph to the artifact: kernels through llvmlite, a linked shared object,
the execution graph, the params file and the metadata (docs/ARTIFACT_FORMAT.md)."""
from __future__ import annotations

import hashlib
import math
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import llvmlite
import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir as lir

from neo.ir import Graph, Node, Value
from neo.ir.target import Target
from neo.ir.types import itemsize

from . import toolchain
from .lower import KernelInfo, LoweringError, describe, lower_node
from .memory import plan_memory
from .tuning import tuning_for

FORMAT_VERSION = 1
_llvm_ready = False


def _init_llvm():
    global _llvm_ready
    if not _llvm_ready:
        llvm.initialize_all_targets()
        llvm.initialize_all_asmprinters()
        _llvm_ready = True


@dataclass
class BuildResult:
    kernels: int
    workspace_nbytes: int
    params_nbytes: int
    timings: dict[str, float] = field(default_factory=dict)
    cached_object: bool = False


class CodegenError(RuntimeError):
    """A node that codegen cannot lower; names the node and op."""


def materialize_outputs(g: Graph) -> Graph:
    """Every graph output is written by a kernel into its own buffer (copy where it is not)."""
    from neo.ir.rewrite import Rewriter

    seen: set[int] = set()
    outs = []
    rw = Rewriter(g)
    rw.run(lambda rw_, n: None)
    for v, name in zip(rw.new.outputs, g.out_names()):
        p = v.producer
        if v.is_const or p is None or p.op != "fused" or id(v) in seen:
            body = Graph("copy")
            x = body.input("in0", v.shape, v.dtype, v.type.quant)
            body.outputs = [body.op("copy", x, name="copy")]
            v = rw.new.add("fused", [v], {"body": body, "anchor": None}, name=f"{name}.copy",
                           out_names=[f"{name}.copy"]).outputs[0]
        seen.add(id(v))
        outs.append(v)
    rw.new.outputs = outs
    rw.new.output_names = g.out_names()
    return rw.new


def _sanitize(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)[:48]


def generate_kernels(g: Graph, target: Target, progress: Callable[[str], None] | None = None):
    """LLVM module with one function per fused node; returns (module, kernels)."""
    module = lir.Module(name="neo_model")
    module.triple = target.triple
    tun = tuning_for(target)
    # AVX-512 (masked stores are cheap only there): llvm_util.masked_store works around an LLVM
    # miscompile of AVX-512 truncating masked stores
    module.neo_avx512 = tun.arch == "x86_64" and tun.masked_stores_fast
    kernels: list[tuple[Node, KernelInfo | None]] = []
    graph_io = {id(v) for v in [*g.inputs, *g.outputs]}
    pieces: set[int] = set()  # values already written in place into a concat's output
    for i, n in enumerate(g.nodes):
        if n.op == "reshape" and id(n.inputs[0]) not in graph_io:
            kernels.append((n, None))
            continue
        if concat_in_place(n, graph_io, pieces) is not None:
            kernels.append((n, None))
            continue
        if n.op == "reshape":
            # The runtime binds each graph input and output to exactly one tensor, so a view of
            # one cannot be expressed in the artifact: copy it instead.
            n = _reshape_copy_kernel(n)
        if n.op != "fused":
            raise CodegenError(f"node {n.origin or n.name} (op {n.op}): no kernel lowering for "
                               f"{n.op}; it is not supported by codegen yet")
        func = f"neo_k{i}_{_sanitize(describe(n))}"
        for m in n.attrs["body"].nodes:  # kernels compute channels-first data (passes/layout.py)
            if m.attrs.get("layout", "NCHW") != "NCHW":
                raise CodegenError(f"node {m.origin or m.name} ({m.op}) is {m.attrs['layout']}; "
                                   "the convert_layout pass must run before codegen")
        try:
            info = lower_node(module, n, func, tuning_for(target))
        except (NotImplementedError, LoweringError) as e:
            raise CodegenError(f"node {n.origin or n.name} ({describe(n)}): {e}") from None
        kernels.append((n, info))
    return module, kernels


def concat_in_place(n: Node, graph_io: set[int], pieces: set[int]) -> list[Value] | None:
    """The inputs of fused node `n` in order, when `n` is a plain concat whose inputs can be
    written straight into its output, so that no kernel copies them (a fire module's two expand
    convs, an inception block's branches, a DenseNet block's growing feature maps): each input
    is a contiguous byte range of the output (nothing varies before the axis), has the output's
    type (no requantization), is written by a kernel of the graph (no graph input, constant or
    reshape view) and is a piece of no other concat. None otherwise. Records the pieces."""
    body = n.attrs["body"] if n.op == "fused" else None
    if body is None or len(body.nodes) != 1 or body.nodes[0].op != "concat":
        return None
    cat = body.nodes[0]
    out = n.outputs[0]
    pos = {id(v): i for i, v in enumerate(body.inputs)}
    ins = [n.inputs[pos[id(x)]] for x in cat.inputs]
    axis = cat.attrs["axis"]
    if (len(n.outputs) != 1 or len(body.outputs) != 1 or body.outputs[0] is not cat.outputs[0]
            or id(out) in graph_io
            or math.prod(out.shape[:axis]) != 1):
        return None
    for x in ins:
        p = x.producer
        if (x.is_const or p is None or p.op != "fused" or id(x) in graph_io
                or id(x) in pieces or x.dtype != out.dtype or x.type.quant != out.type.quant):
            return None
    if len({id(x) for x in ins}) != len(ins):
        return None
    pieces.update(id(x) for x in ins)
    return ins


def _reshape_copy_kernel(n: Node) -> Node:
    """A fused node computing reshape `n` into its own buffer (same input and output values)."""
    body = Graph(n.name)
    x = body.input("in0", n.inputs[0].shape, n.inputs[0].dtype, n.inputs[0].type.quant)
    body.outputs = [body.op("reshape", x, name=n.name, shape=n.attrs["shape"])]
    return Node("fused", n.inputs, {"body": body, "anchor": None}, n.outputs, n.name, n.origin)


def compile_module(module: lir.Module, target: Target, opt_level: int) -> tuple[bytes, bool]:
    """Parse, verify, optimize, emit an object for the target; cached by content hash."""
    _init_llvm()
    text = str(module)
    key = hashlib.sha256("\0".join([text, target.triple, target.cpu, target.features,
                                    str(opt_level), llvmlite.__version__]).encode()).hexdigest()
    cache = toolchain.cache_dir() / "objects" / f"{key}.o"
    if cache.exists():
        return cache.read_bytes(), True
    tm = llvm.Target.from_triple(target.triple).create_target_machine(
        cpu=target.cpu, features=target.features, opt=min(opt_level, 3), reloc="pic",
        codemodel="default")
    mod = llvm.parse_assembly(text)
    mod.triple = target.triple
    mod.data_layout = str(tm.target_data)
    mod.verify()
    if opt_level > 0:
        pto = llvm.PipelineTuningOptions(speed_level=min(opt_level, 3))
        pto.loop_vectorization = True
        pto.slp_vectorization = True
        pb = llvm.create_pass_builder(tm, pto)
        pm = pb.getModulePassManager()
        pm.run(mod, pb)
    obj = tm.emit_object(mod)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(obj)
    os.replace(tmp, cache)
    return obj, False


def emit_assembly(module: lir.Module, target: Target, opt_level: int = 3) -> str:
    _init_llvm()
    tm = llvm.Target.from_triple(target.triple).create_target_machine(
        cpu=target.cpu, features=target.features, opt=3, reloc="pic")
    mod = llvm.parse_assembly(str(module))
    mod.triple = target.triple
    mod.data_layout = str(tm.target_data)
    pto = llvm.PipelineTuningOptions(speed_level=min(opt_level, 3))
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
    return tm.emit_assembly(mod)


def build_artifact(g: Graph, target: Target, out_dir: Path, meta: dict, opt_level: int = 3,
                   progress: Callable[[str], None] | None = None) -> BuildResult:
    """Write the artifact into out_dir atomically: all files appear, or none change."""
    say = progress or (lambda s: None)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    g = materialize_outputs(g)
    module, kernels = generate_kernels(g, target)
    timings["kernels"] = time.perf_counter() - t0

    # -- tensors ----------------------------------------------------------------------------------
    tensors: list[dict] = []
    key_of: dict[int, int] = {}
    params: dict[str, np.ndarray] = {}
    param_keys: dict[str, int] = {}

    def tensor_for_value(v: Value) -> int:
        if id(v) in key_of:
            return key_of[id(v)]
        t = {"id": len(tensors), "name": v.name, "shape": list(v.shape), "dtype": v.dtype,
             "nbytes": v.type.nbytes}
        if v.is_const:
            pname = _param_name(v.name, params)
            params[pname] = v.data
            t.update(storage="param", param=pname)
        tensors.append(t)
        key_of[id(v)] = t["id"]
        return t["id"]

    def tensor_for_param(name: str, arr: np.ndarray) -> int:
        pname = _param_name(name, params)
        params[pname] = np.ascontiguousarray(arr)
        from neo.ir.types import dtype_name

        t = {"id": len(tensors), "name": pname, "shape": list(arr.shape),
             "dtype": dtype_name(arr.dtype), "nbytes": int(arr.nbytes), "storage": "param",
             "param": pname}
        tensors.append(t)
        param_keys[pname] = t["id"]
        return t["id"]

    for i, v in enumerate(g.inputs):
        tid = tensor_for_value(v)
        tensors[tid].update(storage="input", index=i)
    nodes_json = []
    steps: list[tuple[list[int], list[int]]] = []
    alias: dict[int, int] = {}  # view -> the tensor whose bytes it shares
    view_at: dict[int, int] = {}  # view -> its byte offset in that tensor, for concat pieces
    for n, info in kernels:
        if info is None and n.op == "reshape":  # a view of its input
            src = tensor_for_value(n.inputs[0])
            dst = tensor_for_value(n.outputs[0])
            alias[dst] = src
            continue
        if info is None:  # a concat whose inputs were written into their places in its output
            dst = tensor_for_value(n.outputs[0])
            at = 0
            for x in concat_in_place(n, set(), set()):
                src = tensor_for_value(x)
                alias[src], view_at[src] = dst, at
                at += x.type.nbytes
            continue
        args = []
        for a in info.args:
            if isinstance(a, tuple):
                args.append(tensor_for_param(a[1], a[2]))
            else:
                args.append(tensor_for_value(a))
        outs = [tensor_for_value(o) for o in n.outputs]
        nodes_json.append({"name": n.name, "op": info.op, "func": info.func, "args": args,
                           "num_inputs": len(args) - len(outs), "num_outputs": len(outs),
                           "parallel": info.parallel})
        steps.append((args[:-len(outs)], outs))
    out_ids = []
    for i, v in enumerate(g.outputs):
        tid = key_of[id(v)]
        tensors[tid].update(storage="output", index=i, name=g.out_names()[i])
        out_ids.append(tid)
    pinned = {t["id"] for t in tensors if t.get("storage") in ("input", "output", "param")}
    plan = plan_memory(steps, {t["id"]: t["nbytes"] for t in tensors}, alias, pinned)

    def base(k):
        """(the tensor that owns k's bytes, k's offset in it, whether k is a concat piece)"""
        at, piece = 0, False
        while k in alias:
            at, piece = at + view_at.get(k, 0), piece or k in view_at
            k = alias[k]
        return k, at, piece

    for t in tensors:
        if "storage" in t:
            continue
        r, at, piece = base(t["id"])
        rt = tensors[r]
        if rt.get("storage") in ("input", "output", "param"):
            t.update({k: rt[k] for k in ("storage", "index", "param") if k in rt})
            continue
        sid = plan.storage_of[r]
        t.update(storage="workspace", storage_id=sid, offset=plan.offsets[sid] + at)
        if piece:  # checked mode puts it inside its base's guarded buffer
            t["view_of"] = r
    graph_json = {
        "format": "neo-graph", "format_version": FORMAT_VERSION, "arch": target.arch,
        "triple": target.triple, "library": target.model_library, "params": "compiled.params",
        "workspace_nbytes": plan.workspace_nbytes, "tensors": tensors,
        "inputs": [key_of[id(v)] for v in g.inputs], "outputs": out_ids, "nodes": nodes_json,
    }
    if meta.get("row_batch"):  # optional: a format-1 runtime that predates it ignores it
        graph_json["row_batch"] = True
    say(f"{len(nodes_json)} kernels, workspace {plan.workspace_nbytes} bytes")

    # -- compile and link -------------------------------------------------------------------------
    t1 = time.perf_counter()
    obj, cached = compile_module(module, target, opt_level)
    timings["llvm"] = time.perf_counter() - t1
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".neo-build-", dir=out_dir.parent))
    try:
        t2 = time.perf_counter()
        toolchain.link_shared([obj], target.arch, stage / target.model_library, cpu=None)
        toolchain.build_runtime(target.arch, stage)
        timings["link"] = time.perf_counter() - t2
        from neo.runtime.params import write_params

        write_params(stage / "compiled.params", params)
        _write_json(stage / "compiled_model.json", graph_json)
        files = {f: _sha256(stage / f) for f in (target.model_library, "compiled_model.json",
                                                 "compiled.params")}
        # the target as built, whatever the caller described (docs/ARTIFACT_FORMAT.md)
        meta = {**meta, "target": target.meta(), "format_version": FORMAT_VERSION, "files": files,
                "workspace_nbytes": plan.workspace_nbytes}
        _write_json(stage / "compiled.meta", meta)
        out_dir.mkdir(parents=True, exist_ok=True)
        for f in sorted(os.listdir(stage)):
            os.replace(stage / f, out_dir / f)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return BuildResult(len(nodes_json), plan.workspace_nbytes,
                       sum(int(a.nbytes) for a in params.values()), timings, cached)


def _param_name(name: str, taken: dict) -> str:
    base, k = name, 1
    while name in taken:
        name = f"{base}#{k}"
        k += 1
    return name


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=False) + "\n")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_ = itemsize
