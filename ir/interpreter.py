"""Runs a graph with the ops' numpy references: the oracle for constant folding and tests."""
from __future__ import annotations

import numpy as np

from .graph import Graph, IRError
from .registry import run_reference
from .types import np_dtype


def interpret(g: Graph, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    env: dict[int, np.ndarray] = {}
    for v in g.inputs:
        if v.name not in feeds:
            raise IRError(f"interpret: no value for input {v.name}")
        env[id(v)] = np.asarray(feeds[v.name]).astype(np_dtype(v.dtype), copy=False)

    def get(v):
        return v.data if v.is_const else env[id(v)]

    for n in g.nodes:
        outs = run_reference(n.op, n.attrs, [get(v) for v in n.inputs])
        for o, arr in zip(n.outputs, outs):
            arr = np.asarray(arr)
            if tuple(arr.shape) != o.shape:
                raise IRError(f"interpret: {n.name} ({n.op}) reference gave shape {arr.shape}, "
                              f"type inference said {o.shape}")
            env[id(o)] = arr.astype(np_dtype(o.dtype), copy=False)
    return [get(v) for v in g.outputs]
