"""The TensorFlow frontend: SavedModels and frozen GraphDefs to `ir.Graph`.

`loader.py` opens a SavedModel directory (its `serving_default` signature, or `--signature NAME`)
and freezes it, or parses a frozen `.pb`/`.pbtxt`; `graph.py` turns the GraphDef into the kit's
`FrameworkNode`s; `importer.py` checks for unsupported ops and drives the conversion; converters
live by op family in `nn.py`, `math.py` and `tensor.py`.

Models are NHWC, and so are the `--shape` dims (Neo's rule for TensorFlow); convs and pools keep
that layout in the IR and `passes/layout.py` makes them channels first.

TensorFlow is an optional dependency (`pip install 'neo-compiler[tensorflow]'`): nothing here
imports it until a model is opened.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from neo import ir

__all__ = [
    "TensorflowFrontend",
    "import_tensorflow",
    "inspect_tensorflow",
    "supported_ops",
    "tensorflow_model_inputs",
]


def _signature(options: Any) -> str | None:
    if options is None:
        return None
    if isinstance(options, dict):
        return options.get("signature")
    return getattr(options, "signature", None)


def import_tensorflow(path: str | Path, input_shapes: dict[str, tuple[int, ...]] | None = None,
                      *, signature: str | None = None, model_name: str = "",
                      const_inputs: dict | None = None) -> ir.Graph:
    """Convert a SavedModel directory (its `signature`, by default `serving_default`) or a frozen
    GraphDef to an IR graph with static input shapes (NHWC, by input name).

    Raises `ModelLoadError` for what is not a TensorFlow model (or when tensorflow is missing),
    `UnsupportedModelError` listing every unsupported op at once, and `UsageError` for unknown
    signatures and missing or mismatched input shapes.
    """
    from .importer import convert_model
    from .loader import read_model

    model = read_model(path, signature)
    name = model_name or Path(path).stem or "main"
    return convert_model(model, input_shapes, name, const_inputs)


def tensorflow_model_inputs(path: str | Path, signature: str | None = None
                            ) -> list[tuple[str, tuple[int | None, ...] | None, str]]:
    from .loader import model_inputs

    return [(t.name, t.shape, t.dtype) for t in model_inputs(path, signature)]


def inspect_tensorflow(path: str | Path, signature: str | None = None) -> dict:
    """Format, signature, inputs, outputs, op histogram and unsupported ops, for `neo inspect`."""
    from .importer import inspect_model
    from .loader import read_model

    return inspect_model(read_model(path, signature))


def supported_ops() -> list[str]:
    from .registry import supported_ops as ops

    return ops()


class TensorflowFrontend:
    name = "tensorflow"

    def inputs(self, path, *, signature: str | None = None):
        return tensorflow_model_inputs(path, signature)

    def load(self, path, shapes=None, *, options=None, model_name: str = "", const_inputs=None,
             signature: str | None = None):
        return import_tensorflow(path, shapes, signature=signature or _signature(options),
                                 model_name=model_name, const_inputs=const_inputs)

    def inspect(self, path, *, signature: str | None = None):
        return inspect_tensorflow(path, signature)
