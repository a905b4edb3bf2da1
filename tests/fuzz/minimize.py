"""Delta debugging of a failing graph: fewer outputs, fewer nodes, smaller shapes and parameters,
for as long as the same failure (kind, config, and for errors the shape of the message) remains.

Removing a node replaces its outputs by new graph inputs that carry the values the node computed
(from onnxruntime on the original graph), so that the rest of the graph sees the same data; when a
later step changes a shape, such an input gets fresh random data of the same domain.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from .graphgen import GraphSpec, InputSpec, Invalid, prune, realize
from .oracle import Config, Failure, check_model, numerically_sound, run_onnxruntime

SHRINK_PARAMS = {"conv": ("oc", "mult", "bias"), "matmul": ("n",), "gemm": ("n",),
                 "conv_transpose": ("ocg", "bias"), "split": ("parts",)}


class Minimizer:
    def __init__(self, spec: GraphSpec, failure: Failure, budget: float = 600.0,
                 log: Callable[[str], None] = lambda s: None):
        self.spec = prune(spec.copy())
        self.failure = failure
        self.key = failure.key()
        self.configs = [failure.config] if failure.config is not None else []
        self.deadline = time.monotonic() + budget
        self.log = log
        self.tries = 0

    def fails(self, cand: GraphSpec) -> bool:
        if time.monotonic() > self.deadline:
            return False
        self.tries += 1
        cand = prune(cand)
        if not cand.nodes or not numerically_sound(cand):
            return False
        try:
            r = realize(cand)
        except Invalid:
            return False
        out = check_model(r.model, r.feeds, self.configs,
                          use_ort=self.failure.kind == "reference", stop_early=True)
        return any(f.key() == self.key for f in out.failures)

    def accept(self, cand: GraphSpec, what: str) -> bool:
        if self.fails(cand):
            self.spec = prune(cand)
            self.log(f"  minimize: {what}: {len(self.spec.nodes)} nodes")
            return True
        return False

    # -- steps -----------------------------------------------------------------------------------
    def outputs(self) -> None:
        outs = self.spec.outputs
        named = [o for o in outs if f"output {o}:" in self.failure.message]
        for o in named + [o for o in outs if o not in named]:
            if len(self.spec.outputs) > 1:
                c = self.spec.copy()
                c.outputs = [o]
                if self.accept(c, f"output {o} only"):
                    return

    def values_of(self, spec: GraphSpec, ids: list[str]) -> dict[str, np.ndarray]:
        """The float32 values of `ids` in `spec` (onnxruntime, intermediate outputs added)."""
        from onnx import helper

        try:
            r = realize(spec)
            m = r.model
            known = {o.name for o in m.graph.output}
            for i in ids:
                if i not in known and i in r.vals:
                    m.graph.output.append(helper.make_empty_tensor_value_info(i))
            names = [o.name for o in m.graph.output]
            got = dict(zip(names, run_onnxruntime(m, r.feeds)))
            got.update(r.feeds)
            return {i: got[i] for i in ids if i in got}
        except Exception:  # noqa: BLE001 - without values the cut inputs get random data
            return {}

    def cut(self, spec: GraphSpec, drop: set[int]) -> GraphSpec | None:
        """spec without the nodes `drop`; values they made that others read become inputs."""
        keep = [n for k, n in enumerate(spec.nodes) if k not in drop]
        made = {o: k for k, n in enumerate(spec.nodes) if k in drop for o in n.outputs}
        needed = [i for n in keep for i in n.inputs if i in made]
        needed += [o for o in spec.outputs if o in made]
        needed = list(dict.fromkeys(needed))
        try:
            r = realize(spec)
        except Invalid:
            return None
        vals = self.values_of(spec, needed)
        c = spec.copy()
        c.nodes = [n for k, n in enumerate(c.nodes) if k not in drop]
        for vid in needed:
            v = r.vals[vid]
            data = vals.get(vid)
            positive = v.lo > 0 or (data is not None and data.size and float(data.min()) > 0)
            c.inputs.append(InputSpec(vid, list(v.shape), "positive" if positive else "normal",
                                      None if data is None else np.asarray(data, np.float32)))
        return c

    def nodes(self) -> bool:
        changed = False
        # a prefix of the graph replaced by its values, as long as possible (binary search)
        lo, hi = 0, len(self.spec.nodes) - 1
        while lo < hi and time.monotonic() < self.deadline:
            mid = (lo + hi + 1) // 2
            c = self.cut(self.spec, set(range(mid)))
            if c is not None and self.accept(c, f"cut the first {mid} nodes"):
                changed = True
                lo, hi = 0, len(self.spec.nodes) - 1
                continue
            hi = mid - 1
        # then node by node, from the end: drop it as an output, bypass it, or cut it
        k = len(self.spec.nodes) - 1
        while k >= 0 and time.monotonic() < self.deadline:
            if k >= len(self.spec.nodes):
                k = len(self.spec.nodes) - 1
                continue
            n = self.spec.nodes[k]
            done = False
            if any(o in self.spec.outputs for o in n.outputs):
                c = self.spec.copy()
                c.outputs = [o for o in c.outputs if o not in n.outputs] + [
                    i for i in n.inputs if i not in c.outputs and any(
                        i in m.outputs for m in c.nodes)]
                c.outputs = list(dict.fromkeys(c.outputs))
                if c.outputs:
                    done = self.accept(c, f"node {k} ({n.op}) no longer an output")
            if not done and len(n.outputs) == 1:
                try:
                    vals = realize(self.spec).vals
                except Invalid:
                    vals = {}
                for i in n.inputs:
                    if i in vals and vals[i].shape == vals[n.outputs[0]].shape:
                        c = self.spec.copy()
                        old = n.outputs[0]
                        for m in c.nodes:
                            m.inputs = [i if x == old else x for x in m.inputs]
                        c.outputs = [i if x == old else x for x in c.outputs]
                        del c.nodes[k]
                        if self.accept(c, f"bypass node {k} ({n.op})"):
                            done = True
                            break
            if not done and len(self.spec.nodes) > 1:
                c = self.cut(self.spec, {k})
                if c is not None:
                    done = self.accept(c, f"cut node {k} ({n.op})")
            changed = changed or done
            k -= 1
        return changed

    def shapes(self) -> bool:
        changed = False
        for idx in range(len(self.spec.inputs)):
            if idx >= len(self.spec.inputs):
                break
            for d in range(len(self.spec.inputs[idx].shape)):
                size = self.spec.inputs[idx].shape[d]
                for smaller in sorted({1, size // 2, size - 1} - {0, size}):
                    c = self.spec.copy()
                    c.inputs[idx].shape[d] = smaller
                    name = c.inputs[idx].name
                    if self.accept(c, f"input {name} dim {d}: {size} -> {smaller}"):
                        changed = True
                        break
        return changed

    def params(self) -> bool:
        changed = False
        for k in range(len(self.spec.nodes)):
            if k >= len(self.spec.nodes):
                break
            n = self.spec.nodes[k]
            for key in SHRINK_PARAMS.get(n.op, ()):
                v = n.params.get(key)
                if isinstance(v, bool):
                    options = [False] if v else []
                elif isinstance(v, int) and v > 1:
                    options = sorted({1, v // 2} - {v})
                else:
                    options = []
                for o in options:
                    c = self.spec.copy()
                    c.nodes[k].params[key] = o
                    if self.accept(c, f"node {k} ({n.op}) {key}: {v} -> {o}"):
                        changed = True
                        break
        return changed

    def run(self) -> GraphSpec:
        self.outputs()
        for _ in range(4):
            changed = self.nodes()
            changed = self.shapes() or changed
            changed = self.params() or changed
            if not changed or time.monotonic() > self.deadline:
                break
        return self.spec


def minimize(spec: GraphSpec, failure: Failure, budget: float = 600.0,
             log: Callable[[str], None] = lambda s: None) -> tuple[GraphSpec, int]:
    """The smallest spec found that fails the same way, and the number of candidates tried."""
    m = Minimizer(spec, failure, budget, log)
    return m.run(), m.tries


def reproduces(spec: GraphSpec, failure: Failure) -> bool:
    r = realize(spec)
    cfgs: list[Config] = [failure.config] if failure.config is not None else []
    out = check_model(r.model, r.feeds, cfgs, use_ort=failure.kind == "reference")
    return any(f.key() == failure.key() for f in out.failures)
