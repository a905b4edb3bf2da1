"""Neo as an ONNX backend (`onnx.backend.base.Backend`), so `onnx.backend.test.BackendTest` can run
the ONNX conformance suite through the real compile path.

`NeoBackend.prepare` compiles for the host exactly as `neo compile` does: the ONNX frontend, the
pass pipeline, codegen and linking into an artifact directory, which `runtime.Model` then loads.
Nothing is interpreted in Python at run time.
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

from runtime import Model


def _static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """The declared shapes of the model's real inputs; dims without a value are left to the
    frontend, which then asks for them."""
    from frontends.onnx import onnx_model_inputs

    return {name: tuple(dims) for name, dims, _ in onnx_model_inputs(model)
            if dims is not None and all(d is not None for d in dims)}


def compile_onnx(model: onnx.ModelProto, out_dir: Path, *, opt_level: int = 3,
                 input_shapes: Mapping[str, Sequence[int]] | None = None) -> None:
    """Compile `model` for the host into the artifact directory `out_dir`."""
    from codegen.build import build_artifact
    from frontends.onnx import import_onnx
    from passes import run_pipeline

    from .targets import get_target

    shapes = dict(_static_shapes(model))
    shapes.update({k: tuple(v) for k, v in (input_shapes or {}).items()})
    graph = import_onnx(model, shapes, model_name=model.graph.name)
    graph = run_pipeline(graph, opt_level)
    target = get_target("host")
    meta = {
        "compiler": "neo onnx backend",
        "framework": "onnx",
        "target": {"name": target.name, "arch": target.arch, "triple": target.triple},
        "inputs": [{"name": v.name, "dtype": v.dtype, "shape": list(v.shape)}
                   for v in graph.inputs],
        "outputs": [{"name": n, "dtype": v.dtype, "shape": list(v.shape)}
                    for n, v in zip(graph.out_names(), graph.outputs)],
    }
    build_artifact(graph, target, out_dir, meta, opt_level)


class NeoBackendRep(BackendRep):
    """A compiled model; `run` feeds inputs in the model's input order."""

    def __init__(self, model: Model):
        self.model = model

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        if isinstance(inputs, Mapping):
            arrays: Any = {k: np.asarray(v) for k, v in inputs.items()}
        else:
            arrays = [np.asarray(v) for v in inputs]
        return tuple(self.model.run(arrays))

    def close(self) -> None:
        self.model.close()


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
        work = Path(tempfile.mkdtemp(prefix="neo-onnx-backend-"))
        try:
            out = work / "artifact"
            compile_onnx(model, out, opt_level=int(kwargs.get("opt_level", 3)),
                         input_shapes=kwargs.get("input_shapes"))
            # The runtime maps the params and dlopens the kernels at load time, so the files
            # can go as soon as the model is loaded.
            loaded = Model(out)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return NeoBackendRep(loaded)

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
