"""Neo as an ONNX backend (`onnx.backend.base.Backend`), so `onnx.backend.test.BackendTest` can run
the ONNX conformance suite through the real compile path.

`NeoBackend.prepare` compiles for the host exactly as `neo compile` does: the ONNX frontend, the
pass pipeline, codegen and linking into an artifact directory, which `runtime.Model` then loads.
Nothing is interpreted in Python at run time.

Input specialization. Neo compiles static shapes, so operands that decide shapes or attributes
(Reshape's shape, Reduce*'s axes, Resize's scales, Slice's starts, Clip's bounds, ...) must be
compile-time constants. When a model computes such an operand from its graph inputs, the frontend
raises `ConstantInputsNeeded` naming those inputs. `prepare` then keeps the model, and
`NeoBackendRep.run` compiles on first use with those inputs turned into constant initializers
holding the values given at run time; the other inputs stay inputs. The compiled models are cached
per specialized values, so running again with the same values does not recompile.
"""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep

from neo.runtime import Model

from .errors import ConstantInputsNeeded


def _static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """The declared shapes of the model's real inputs, zero-sized dims included (the frontend
    takes a dim_value of 0 for a dynamic one, as exporters write them, but the conformance
    cases mean empty tensors); inputs with other dims left open are left to the frontend."""
    from neo.frontends.onnx.importer import real_inputs

    out = {}
    for v in real_inputs(model):
        t = v.type
        if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else None
                for d in t.tensor_type.shape.dim]
        if all(d is not None for d in dims):
            out[v.name] = tuple(dims)
    return out


def compile_onnx(model: onnx.ModelProto, out_dir: Path, *, opt_level: int = 3,
                 input_shapes: Mapping[str, Sequence[int]] | None = None,
                 target: Any = None) -> None:
    """Compile `model` into the artifact directory `out_dir`, for `target` (a Target that runs
    here; the host's by default)."""
    from neo.codegen.build import build_artifact
    from neo.codegen.tuning import tuning_for
    from neo.frontends.onnx import import_onnx
    from neo.passes import run_pipeline

    from .compiler import artifact_meta
    from .targets import get_target

    shapes = dict(_static_shapes(model))
    shapes.update({k: tuple(v) for k, v in (input_shapes or {}).items()})
    graph = import_onnx(model, shapes, model_name=model.graph.name)
    target = target or get_target("host")
    graph = run_pipeline(graph, opt_level, tuning=tuning_for(target))
    meta = artifact_meta(graph, "onnx", model.graph.name or "model.onnx", opt_level)
    build_artifact(graph, target, out_dir, meta, opt_level)


def _load_compiled(model: onnx.ModelProto, opt_level: int,
                   input_shapes: Mapping[str, Sequence[int]] | None, target: Any = None,
                   check: bool = False) -> Model:
    work = Path(tempfile.mkdtemp(prefix="neo-onnx-backend-"))
    try:
        out = work / "artifact"
        compile_onnx(model, out, opt_level=opt_level, input_shapes=input_shapes, target=target)
        # The runtime maps the params and dlopens the kernels at load time, so the files can go
        # as soon as the model is loaded.
        return Model(out, check=True) if check else Model(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def specialize(model: onnx.ModelProto, values: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """`model` with the graph inputs named in `values` turned into initializers of those values."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    kept = [v for v in out.graph.input if v.name not in values]
    del out.graph.input[:]
    out.graph.input.extend(kept)
    for name, value in values.items():
        out.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(value), name))
    return out


class NeoBackendRep(BackendRep):
    """A model compiled for the host; `run` feeds inputs in the model's input order (or by name).

    Models that need some graph inputs as constants are compiled in `run`, specialized to the
    values given (see the module docstring); one compiled model per distinct set of values.
    """

    # how many models were compiled specialized to input values, process-wide (the conformance
    # counts tell the cases that pass only that way from those that pass as plain compiles)
    specialized_compiles = 0

    def __init__(self, model: onnx.ModelProto, *, opt_level: int = 3,
                 input_shapes: Mapping[str, Sequence[int]] | None = None,
                 compiled: Model | None = None, constant_inputs: Sequence[str] = (),
                 target: Any = None, check: bool = False):
        self.onnx_model = model
        self.opt_level = opt_level
        self.target, self.check = target, check
        self.input_shapes = dict(input_shapes or {})
        self.input_names = [name for name, _, _ in _model_inputs(model)]
        self.constant_inputs = tuple(constant_inputs)
        self.model = compiled  # the unspecialized model, when it compiles as it is
        self._specialized: dict[tuple, Model] = {}

    def _compiled_for(self, arrays: dict[str, np.ndarray]) -> Model:
        if self.model is not None:
            return self.model
        # Folding some inputs can make further inputs necessary as constants (a shape that is
        # computed from another input through them), so repeat until the model compiles.
        needed = list(self.constant_inputs)
        while True:
            key = tuple((n, arrays[n].dtype.str, arrays[n].shape, arrays[n].tobytes())
                        for n in needed)
            if key in self._specialized:
                return self._specialized[key]
            model = specialize(self.onnx_model, {n: arrays[n] for n in needed})
            shapes = {k: v for k, v in self.input_shapes.items() if k not in needed}
            try:
                compiled = _load_compiled(model, self.opt_level, shapes, self.target, self.check)
            except ConstantInputsNeeded as e:
                more = [n for n in e.inputs if n not in needed and n in arrays]
                if not more:
                    raise
                needed += more
                self.constant_inputs = tuple(needed)
                continue
            self._specialized[key] = compiled
            NeoBackendRep.specialized_compiles += 1
            return compiled

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        if isinstance(inputs, Mapping):
            arrays = {k: np.asarray(v) for k, v in inputs.items()}
        else:
            arrays = {n: np.asarray(v) for n, v in zip(self.input_names, inputs)}
        model = self._compiled_for(arrays)
        return tuple(model.run({n: arrays[n] for n in model.input_names}))

    def close(self) -> None:
        for model in [self.model, *self._specialized.values()]:
            if model is not None:
                model.close()
        self._specialized.clear()


def _model_inputs(model: onnx.ModelProto):
    from neo.frontends.onnx import onnx_model_inputs

    return onnx_model_inputs(model)


class NeoBackend(Backend):
    """ONNX backend API over the Neo compiler (CPU of this machine only)."""

    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> bool:
        return cls.supports_device(device)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper().startswith("CPU")

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any
                ) -> NeoBackendRep:
        if not cls.supports_device(device):
            raise RuntimeError(f"Neo's ONNX backend runs on CPU only, not {device!r}")
        super().prepare(model, device, **kwargs)
        # opt_level (3), input_shapes, target (a Target that runs here; the host's), check (the
        # runtime's checked mode)
        opt_level = int(kwargs.get("opt_level", 3))
        input_shapes = kwargs.get("input_shapes")
        build = {"target": kwargs.get("target"), "check": bool(kwargs.get("check", False))}
        try:
            compiled = _load_compiled(model, opt_level, input_shapes, **build)
        except ConstantInputsNeeded as e:
            # Compiled in run(), specialized to the values of e.inputs.
            return NeoBackendRep(model, opt_level=opt_level, input_shapes=input_shapes,
                                 constant_inputs=e.inputs, **build)
        return NeoBackendRep(model, opt_level=opt_level, input_shapes=input_shapes,
                             compiled=compiled, **build)

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU",
                  **kwargs: Any) -> tuple[np.ndarray, ...]:
        rep = cls.prepare(model, device, **kwargs)
        try:
            return rep.run(inputs, **kwargs)
        finally:
            rep.close()

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Any, device: str = "CPU",
                 outputs_info: Sequence[tuple[Any, Any]] | None = None,
                 **kwargs: Any) -> tuple[np.ndarray, ...]:
        """Run one node: wrapped in a model whose inputs have the given arrays' types."""
        arrays = [np.asarray(x) for x in inputs]
        names = [n for n in node.input]
        graph_inputs = [onnx.helper.make_tensor_value_info(
            name, onnx.helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape))
            for name, a in zip(names, arrays) if name]
        graph_outputs = [onnx.helper.make_empty_tensor_value_info(o) for o in node.output if o]
        graph = onnx.helper.make_graph([node], f"run_node_{node.op_type}", graph_inputs,
                                       graph_outputs)
        opset = kwargs.pop("opset_version", None) or onnx.defs.onnx_opset_version()
        model = onnx.helper.make_model(
            graph, opset_imports=[onnx.helper.make_opsetid(node.domain or "", opset)])
        feeds = [a for name, a in zip(names, arrays) if name]
        return cls.run_model(model, feeds, device, **kwargs)


prepare = NeoBackend.prepare
run_model = NeoBackend.run_model
run_node = NeoBackend.run_node
supports_device = NeoBackend.supports_device
