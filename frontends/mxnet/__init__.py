"""The MXNet frontend: Gluon exports (`NAME-symbol.json` + `NAME-NNNN.params`) to `ir.Graph`,
without MXNet.

`symbol.py` reads the JSON graph, `params.py` the binary weights (numpy only), `loader.py` turns
the symbol into the kit's framework nodes and drives the conversion; converters live by family in
`nn.py`, `math.py`, `tensor.py` and `rnn.py`, registered in `registry.py` with MXNet's parameter
names and defaults. Inputs are NCHW, given as a dict in the order of the symbol's arguments
(`{"data": [1, 3, 224, 224]}`).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from neo import ir

from .loader import (
    convert,
    data_inputs,
    model_inputs,
    output_names,
    read_model,
    unsupported,
)

__all__ = ["MxnetFrontend", "import_mxnet", "inspect_mxnet"]


def import_mxnet(path: str | Path, shapes: dict[str, tuple[int, ...]] | None = None, *,
                 model_name: str = "") -> ir.Graph:
    """The model at `path` (its symbol file, or one of its .params files) as an IR graph."""
    return convert(read_model(path), shapes, model_name)


def inspect_mxnet(path: str | Path) -> dict[str, Any]:
    """Inputs, outputs, op histogram, parameters and unsupported ops, for `neo inspect`."""
    from .loader import _declared_dtype, _declared_shape

    model = read_model(path)
    sym = model.symbol
    hist = Counter(n.op for n in sym.nodes if n.op != "null")
    n_values = sum(int(a.size) for a in model.params.values())
    return {
        "inputs": [{"name": n.name, "shape": _declared_shape(n), "dtype": _declared_dtype(n)}
                   for n in data_inputs(model)],
        "outputs": [{"name": name, "shape": None, "dtype": None} for name in output_names(sym)],
        "ops": dict(hist.most_common()),
        "details": {"mxnet_version": sym.version_text, "weights": model.params_path.name,
                    "parameters": len(model.params), "parameter_values": n_values},
        "unsupported": [{"op_type": u.op_type, "count": u.count, "nodes": list(u.first_node_names)}
                        for u in unsupported(model)],
    }


class MxnetFrontend:
    name = "mxnet"

    def inputs(self, path):
        return model_inputs(path)

    def load(self, path, shapes=None, *, options=None, model_name: str = ""):
        del options  # MXNet symbols declare their input dtypes (float32 unless __dtype__)
        return import_mxnet(path, shapes, model_name=model_name)

    def inspect(self, path):
        return inspect_mxnet(path)
