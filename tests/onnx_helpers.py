"""Building small ONNX models in tests and running them with onnxruntime (the oracle)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

# An input or output: a ValueInfoProto, a bare name (output type left to onnxruntime), or
# (name, dtype, shape) with a numpy dtype spelling and None / str for dynamic dims.
ValueSpec = onnx.ValueInfoProto | str | tuple


def value_info(spec: ValueSpec) -> onnx.ValueInfoProto:
    if isinstance(spec, onnx.ValueInfoProto):
        return spec
    if isinstance(spec, str):
        return helper.make_empty_tensor_value_info(spec)
    name, dtype, shape = spec
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    return helper.make_tensor_value_info(name, elem, None if shape is None else list(shape))


def make_model(nodes: Sequence[onnx.NodeProto], inputs: Iterable[ValueSpec],
               outputs: Iterable[ValueSpec], initializers: dict | Sequence | None = None,
               opset: int = 17, *, name: str = "test") -> onnx.ModelProto:
    """A model of one graph at the default-domain `opset`, with an IR version onnxruntime reads."""
    if isinstance(initializers, dict):
        inits = [numpy_helper.from_array(np.asarray(a), n) for n, a in initializers.items()]
    else:
        inits = list(initializers or [])
    graph = helper.make_graph(list(nodes), name, [value_info(v) for v in inputs],
                              [value_info(v) for v in outputs], inits)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="neo-tests")
    model.ir_version = helper.find_min_ir_version_for(opsets, ignore_unknown=True)
    model.ir_version = max(model.ir_version, 7 if opset < 15 else 8)
    return model


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Outputs of `model` under onnxruntime's CPU provider, graph optimizations off."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)
