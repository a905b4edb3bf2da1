"""The ONNX frontend: ONNX models (opset 7 and newer) to `ir.Graph`.

Converters live by op family in `nn.py`, `math.py`, `tensor.py`, `resize.py` and `quant.py`;
`registry.py` holds the `{op_type: [(since, fn)]}` table and `importer.py` the loading, checking
and the driver loop.
"""
from __future__ import annotations

from pathlib import Path

import onnx

from neo import ir

from .importer import (
    check_supported,
    convert_model,
    inspect_model,
    load_model,
    model_dim_params,
    model_inputs,
)
from .registry import converter_table, supported_ops

__all__ = ["check_supported", "converter_table", "import_onnx", "inspect_onnx", "onnx_dim_params",
           "onnx_model_inputs", "supported_ops"]


def import_onnx(model: str | Path | onnx.ModelProto,
                input_shapes: dict[str, tuple[int, ...]] | None = None, *,
                model_name: str = "", const_inputs: dict | None = None) -> ir.Graph:
    """Convert an ONNX model to an IR graph with static shapes.

    Inputs with dynamic dims need a shape in `input_shapes`; inputs in `const_inputs` (name ->
    array) become constants of those values (specialization: shape-like operands, If
    conditions). Raises `ModelLoadError` for files that are not ONNX, `UnsupportedModelError`
    listing every unsupported op (or attribute) at once, and `UsageError` for missing or
    mismatched input shapes.
    """
    return convert_model(load_model(model), input_shapes, model_name, const_inputs)


def onnx_model_inputs(model: str | Path | onnx.ModelProto
                      ) -> list[tuple[str, tuple[int | None, ...] | None, str]]:
    """The model's real inputs (initializers excluded): (name, shape with None dims, dtype)."""
    return model_inputs(model)


def onnx_dim_params(model: str | Path | onnx.ModelProto) -> dict[str, tuple[str | None, ...]]:
    """For inputs with named dynamic dims: the dim_param name of each dim (None elsewhere)."""
    return model_dim_params(model)


def inspect_onnx(model: str | Path | onnx.ModelProto) -> dict:
    """Inputs, outputs, opset, op histogram and unsupported ops of a model, for `neo inspect`."""
    return inspect_model(model)
