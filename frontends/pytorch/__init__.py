"""The PyTorch frontend: TorchScript (`.pt`/`.pth`) and exported programs (`.pt2`) to `ir.Graph`.

The aten graph is converted directly, without a detour through ONNX. `loader.py` opens files
without unpickling Python code, `walker.py` flattens TorchScript modules and exported programs into
one node list, `importer.py` checks for unsupported ops and drives the conversion, and converters
live by op family in `prim.py`, `math.py`, `nn.py`, `tensor.py`, `rnn.py` and `attention.py`.

torch is an optional dependency (`pip install 'neo-compiler[pytorch]'`): nothing here imports it
until a model is opened.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from neo import ir

from ..common.filecache import keep_last_read

__all__ = ["PytorchFrontend", "import_pytorch", "inspect_pytorch", "pytorch_model_inputs",
           "read_model", "supported_ops"]


@keep_last_read
def read_model(path: Path):
    """The model file as a `walker.ModelGraph` (TorchScript or exported program)."""
    from .loader import load_model
    from .walker import walk_exported, walk_torchscript

    loaded = load_model(path)
    if loaded.kind == "torchscript":
        return walk_torchscript(loaded.obj)
    return walk_exported(loaded.obj)


def _dtype_option(options: Any):
    if options is None:
        return None
    if isinstance(options, dict):
        return options.get("dtype")
    return getattr(options, "dtype", None)


def import_pytorch(path: str | Path, input_shapes: dict[str, tuple[int, ...]] | None = None, *,
                   options: Any = None, model_name: str = "",
                   const_inputs: dict | None = None) -> ir.Graph:
    """Convert a TorchScript or `.pt2` model to an IR graph with static input shapes.

    Inputs are named input0, input1, ... in order. `options` is the compiler options object (or
    a dict) whose `dtype` is one dtype for all inputs or `{input name: dtype}`; float32 by
    default. Raises `ModelLoadError` for files that are not TorchScript or `.pt2` (or when torch
    is missing), `UnsupportedModelError` listing every unsupported op at once, `UsageError` for
    missing or mismatched input shapes.
    """
    from .importer import convert_model

    model = read_model(path)
    return convert_model(model, input_shapes, _dtype_option(options),
                         model_name or Path(path).stem or "main", const_inputs)


def pytorch_model_inputs(path: str | Path) -> list[tuple[str, tuple[int | None, ...] | None, str]]:
    """(name, shape or None, dtype) of each input; TorchScript records neither shape nor dtype, so
    those are None and float32."""
    model = read_model(path)
    return [(i.name, i.shape, i.dtype or "float32") for i in model.inputs]


def inspect_pytorch(path: str | Path) -> dict:
    """Inputs, op histogram and unsupported ops of a model, for `neo inspect`."""
    from .importer import unsupported_ops

    model = read_model(path)
    hist = Counter(n.kind for n in model.nodes)
    return {
        "format": model.format,
        "inputs": [{"name": i.name, "shape": i.shape, "dtype": i.dtype or "float32 (default)"}
                   for i in model.inputs],
        "outputs": [],
        "ops": dict(hist.most_common()),
        "unsupported": [{"op_type": u.op_type, "count": u.count, "nodes": list(u.first_node_names),
                         "source": u.source_location, "reason": u.reason}
                        for u in unsupported_ops(model)],
    }


def supported_ops() -> list[str]:
    from .registry import supported_ops as ops

    return ops()


class PytorchFrontend:
    name = "pytorch"

    def inputs(self, path):
        return pytorch_model_inputs(path)

    def load(self, path, shapes=None, *, options=None, model_name: str = "", const_inputs=None):
        return import_pytorch(path, shapes, options=options, model_name=model_name,
                              const_inputs=const_inputs)

    def inspect(self, path):
        return inspect_pytorch(path)
