"""The TFLite frontend: `.tflite` flatbuffers to `ir.Graph`, without TensorFlow.

`reader.py` reads the flatbuffer with the `tflite` package (tensors, their data and
quantization; operators and their options under the schema's field names); `importer.py` checks
for unsupported operators and drives the conversion of the main subgraph; converters live by
family in `nn.py`, `math.py`, `tensor.py` and `rnn.py`.

Models are NHWC, and so are the `--shape` dims (Neo's rule for TFLite); convs and pools keep
that layout in the IR and `passes/layout.py` makes them channels first. Float models, fp16-weight
models (DEQUANTIZE of float16 constants) and dynamic-range models (int8 weights, dequantized at
compile time; activations stay float) compile; sparse constants are densified at compile time.
"""
from __future__ import annotations

from pathlib import Path

from neo import ir

__all__ = ["TfliteFrontend", "import_tflite", "inspect_tflite", "supported_ops",
           "tflite_model_inputs"]


def import_tflite(path: str | Path, input_shapes: dict[str, tuple[int, ...]] | None = None, *,
                  model_name: str = "", const_inputs: dict | None = None) -> ir.Graph:
    """Convert the main subgraph of a `.tflite` model to an IR graph with static input shapes
    (NHWC, by input tensor name).

    Raises `ModelLoadError` for what is not a TFLite model, `UnsupportedModelError` listing every
    unsupported operator (custom ops, control flow, builtins without a converter) at once, and
    `UsageError` for missing or mismatched input shapes.
    """
    from .importer import convert_model
    from .reader import read_model

    return convert_model(read_model(path), input_shapes, model_name or Path(path).stem,
                         const_inputs)


def tflite_model_inputs(path: str | Path) -> list[tuple[str, tuple[int | None, ...], str]]:
    from .importer import model_inputs
    from .reader import read_model

    return model_inputs(read_model(path))


def inspect_tflite(path: str | Path) -> dict:
    """Inputs and outputs (with quantization parameters), op histogram and unsupported ops."""
    from .importer import inspect_model
    from .reader import read_model

    return inspect_model(read_model(path))


def supported_ops() -> list[str]:
    from .registry import supported_ops as ops

    return ops()


class TfliteFrontend:
    name = "tflite"

    def inputs(self, path):
        return tflite_model_inputs(path)

    def load(self, path, shapes=None, *, options=None, model_name: str = "", const_inputs=None):
        del options  # a TFLite model declares its input dtypes; no compiler option applies
        return import_tflite(path, shapes, model_name=model_name, const_inputs=const_inputs)

    def inspect(self, path):
        return inspect_tflite(path)
