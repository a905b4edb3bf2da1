"""The Keras frontend: Keras 2 and 3 `.h5` and Keras 3 `.keras` models to `ir.Graph`, read with
h5py, json and zipfile only (neither Keras nor TensorFlow is imported).

`reader.py` opens the files and reads weights, `graph.py` turns every config dialect into one list
of layer calls (nested models inlined, shared layers called once per use), `importer.py` checks
for unsupported layers and custom objects and drives the conversion, and converters live by
family in `nn.py`, `activations.py`, `tensor.py`, `rnn.py`, `attention.py` and `ops.py`.

Neo's Keras rule: `--shape` is NCHW (`{"input_1":[1,3,224,224]}`) although the model is NHWC, and
the compiled model takes NCHW input for image inputs (rank 4 and up); outputs keep Keras's layout.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from neo import ir

from ..common.filecache import keep_last_read

__all__ = ["KerasFrontend", "import_keras", "inspect_keras", "keras_model_inputs", "read_model"]

@keep_last_read
def read_model(path: Path):
    """(KerasFile, ModelGraph) of a model file."""
    from .graph import read_graph
    from .reader import read_keras

    kf = read_keras(path)
    return kf, read_graph(kf)


def import_keras(path: str | Path, input_shapes: dict[str, tuple[int, ...]] | None = None, *,
                 model_name: str = "", const_inputs: dict | None = None) -> ir.Graph:
    """Convert a Keras model file to an IR graph.

    `input_shapes` are in the model's layout (NHWC), as `neo.shapes.bind_shapes` gives them; the
    graph's image inputs are NCHW (Neo's Keras convention). Raises `ModelLoadError` for files that
    are not Keras models, `UnsupportedModelError` listing every unsupported layer and custom
    object at once, `UsageError` for missing or mismatched input shapes.
    """
    from .importer import convert_model

    kf, graph = read_model(path)
    return convert_model(kf, graph, input_shapes, model_name or Path(path).stem, const_inputs)


def keras_model_inputs(path: str | Path) -> list[tuple[str, tuple[int | None, ...] | None, str]]:
    """(name, shape in the model's layout with None for dynamic dims, dtype) of each input."""
    _, graph = read_model(path)
    return [(m.name, m.shape, m.dtype) for m in graph.inputs]


def inspect_keras(path: str | Path) -> dict:
    """Inputs (as --shape takes them: NCHW for images), outputs, layer histogram and unsupported
    layers, for `neo inspect`."""
    from .importer import image_rank, unsupported_ops

    kf, graph = read_model(path)

    def user_shape(shape):
        if shape is None or not image_rank(len(shape)):
            return shape
        return (shape[0], shape[-1], *shape[1:-1])

    hist = Counter(c.layer.key for c in graph.calls)
    images = [m.name for m in graph.inputs if m.shape is not None and image_rank(len(m.shape))]
    details = {"format": kf.format, "keras_version": kf.keras_version,
               "model": f"{graph.class_name} {graph.name}"}
    if images:
        details["layout"] = (f"the model is NHWC; Neo's Keras convention: --shape and the compiled "
                             f"model's input{'s' if len(images) > 1 else ''} "
                             f"{', '.join(images)} are NCHW (shown above), outputs stay as Keras "
                             "computes them")
    return {
        "inputs": [{"name": m.name, "shape": user_shape(m.shape), "dtype": m.dtype,
                    "keras_shape": m.shape} for m in graph.inputs],
        "outputs": [{"name": n, "shape": None, "dtype": None} for n, _ in graph.outputs],
        "details": details,
        "ops": dict(hist.most_common()),
        "unsupported": [{"op_type": u.op_type, "count": u.count, "nodes": list(u.first_node_names),
                         "reason": u.reason} for u in unsupported_ops(graph)],
    }


class KerasFrontend:
    name = "keras"

    def inputs(self, path):
        return keras_model_inputs(path)

    def load(self, path, shapes=None, *, options=None, model_name: str = "", const_inputs=None):
        del options  # Keras models declare their input dtypes
        return import_keras(path, shapes, model_name=model_name, const_inputs=const_inputs)

    def inspect(self, path):
        return inspect_keras(path)
