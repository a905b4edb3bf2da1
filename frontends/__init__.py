"""Model frontends: each turns one framework's model files into an `ir.Graph`.

`FRONTENDS` maps a framework name (as in `neo_cli.frameworks`) to its loader. A framework without an
entry is not supported yet. Loaders import their framework packages only when used.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

from neo import ir

from . import keras as _keras  # needs no keras or tensorflow at all (h5py)
from . import mxnet as _mxnet  # needs no mxnet at all
from . import pytorch as _pytorch  # imports no torch until a model is opened
from . import tensorflow as _tensorflow  # imports no tensorflow until a model is opened
from . import tflite as _tflite  # reads flatbuffers with the tflite package, no TensorFlow
from . import xgboost as _xgboost  # needs no xgboost at all

InputSpec = tuple[str, "tuple[int | None, ...] | None", str]


class Frontend(Protocol):
    def inputs(self, path: str | Path) -> list[InputSpec]:
        """The model's inputs: (name, shape with None for dynamic dims, dtype name)."""

    def load(self, path: str | Path, shapes: dict[str, tuple[int, ...]] | None, *,
             options=None, const_inputs=None) -> ir.Graph:
        """The model as an IR graph with the given static input shapes; the inputs named in
        `const_inputs` (name -> numpy array) are constants of those values instead."""

    def inspect(self, path: str | Path) -> dict:
        """A summary for `neo inspect`: inputs, outputs, op histogram, unsupported ops."""


class OnnxFrontend:
    name = "onnx"

    def inputs(self, path):
        from .onnx import onnx_model_inputs

        return onnx_model_inputs(path)

    def dim_names(self, path):
        """{input: the dim_param name of each dim, None where it has none}."""
        from .onnx import onnx_dim_params

        return onnx_dim_params(path)

    def load(self, path, shapes=None, *, model_name: str = "", options=None, const_inputs=None):
        from .onnx import import_onnx

        del options  # ONNX declares its input dtypes; no compiler option applies
        return import_onnx(path, shapes, model_name=model_name, const_inputs=const_inputs)

    def inspect(self, path):
        from .onnx import inspect_onnx

        return inspect_onnx(path)


FRONTENDS: dict[str, Frontend] = {"onnx": OnnxFrontend(), "pytorch": _pytorch.PytorchFrontend(),
                                  "xgboost": _xgboost.XgboostFrontend(),
                                  "keras": _keras.KerasFrontend(),
                                  "mxnet": _mxnet.MxnetFrontend(),
                                  "tensorflow": _tensorflow.TensorflowFrontend(),
                                  "tflite": _tflite.TfliteFrontend()}
