"""Calibration, int8 quantization end to end, and the accuracy report.

`quantize_int8` runs the optimized fp32 graph, compiled for the machine doing the compile (not
the numpy interpreter: a resnet50 sample takes milliseconds), on the calibration samples as they
stream in, with every tensor to quantize as an extra output; collects per-tensor statistics
(min/max, then a histogram where the method needs one); turns them into parameters
(passes/quantize.py); builds the QDQ graph and lowers it to integer ops (passes/qdq.py). Then
it compiles that too and compares it with fp32 on the report samples (the calibration samples,
or the validation ones): per output the SQNR, the largest absolute error and the top-1
agreement, per quantized tensor the SQNR, worst first. With an accuracy budget (top-1 points
lost against fp32), the layers that lose the most are kept in fp32 until the budget holds.

The integer kernels give the same integers on every target, so the report measured on this
machine holds for the artifact built for another.
"""
from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from neo.ir import Graph, QuantParams, Value

from .bias_correction import bias_correction_inputs, correct_bias
from .equalize import equalization_pairs, equalize_cross_layer
from .quantize import (
    METHODS,
    QuantizeConfig,
    activation_params,
    insert_qdq,
    quantizable_layers,
    tensors_to_quantize,
)

Samples = Callable[[], Iterable[dict[str, np.ndarray]]]
HIST_BINS = 2048


@dataclass
class TensorStats:
    lo: float = math.inf
    hi: float = -math.inf
    hist: np.ndarray | None = None  # of |x| over [0, amax] (HIST_BINS bins)
    mean: np.ndarray | None = None  # per channel, when asked for (bias correction)

    @property
    def amax(self) -> float:
        return max(abs(self.lo), abs(self.hi))


@dataclass
class Model:
    """A graph compiled for the machine compiling (calibration and the report run it)."""

    path: Path
    names: list[str]
    runtime: object = None

    def run(self, feeds: dict) -> dict[str, np.ndarray]:
        return dict(zip(self.names, self.runtime.run(feeds)))


def compile_for_host(g: Graph, extra: list[Value], host, workdir: Path, tag: str,
                     opt_level: int = 3) -> Model:
    """g with `extra` values as additional outputs, fused and built for `host`; loaded."""
    from neo.codegen.build import build_artifact
    from neo.runtime import Model as Runtime

    from .conv_padding import make_conv_padding_explicit
    from .fusion import fuse_operators

    outs, names, seen = [], [], set()
    for v, n in list(zip(g.outputs, g.out_names())) + [(v, f"{v.name}") for v in extra]:
        if n in seen:
            continue
        seen.add(n)
        outs.append(v)
        names.append(n)
    view = Graph(g.name, list(g.inputs), outs, list(g.nodes), names)
    view = fuse_operators(make_conv_padding_explicit(view))
    meta = {"inputs": [{"name": v.name, "dtype": v.dtype, "shape": list(v.shape)}
                       for v in g.inputs],
            "outputs": [{"name": n, "dtype": v.dtype, "shape": list(v.shape)}
                        for n, v in zip(names, outs)]}
    path = workdir / tag
    build_artifact(view, host, path, meta, opt_level)
    return Model(path, names, Runtime(str(path)))


def layer_of(v: Value) -> str:
    """How the report names the layer that made a tensor: its node's origin in the model."""
    p = v.producer
    if p is None:
        return f"input {v.name}"
    return p.origin or p.name


# -- statistics -------------------------------------------------------------------------------------
def collect(model: Model, tensors: list[Value], samples: Samples, need_hist: bool,
            means_of: list[Value] = ()) -> tuple[dict[str, TensorStats], int]:
    """Per-tensor statistics of `tensors` over the samples; with `means_of`, also the
    per-channel means of those values (channels-first rank 4; else the last axis) in
    `stats[name].mean`."""
    stats = {v.name: TensorStats() for v in tensors}
    sums: dict[str, np.ndarray] = {}
    count = 0
    for feeds in samples():
        out = model.run(feeds)
        count += 1
        for name, st in stats.items():
            a = out[name]
            st.lo = min(st.lo, float(a.min()))
            st.hi = max(st.hi, float(a.max()))
        for v in means_of:
            a = out[v.name].astype(np.float64)
            axis = 1 if a.ndim == 4 else a.ndim - 1
            m = a.mean(axis=tuple(i for i in range(a.ndim) if i != axis))
            sums[v.name] = sums.get(v.name, 0.0) + m
    for name, total in sums.items():
        stats.setdefault(name, TensorStats()).mean = total / max(count, 1)
    if need_hist:
        for feeds in samples():
            out = model.run(feeds)
            for name, st in stats.items():
                amax = st.amax
                if amax <= 0 or not math.isfinite(amax):
                    continue
                h, _ = np.histogram(np.abs(out[name]), bins=HIST_BINS, range=(0.0, amax))
                st.hist = h if st.hist is None else st.hist + h
    return stats, count


def channel_maxima(model: Model, tensors: list[Value], samples: Samples
                   ) -> dict[str, np.ndarray]:
    """Per-channel (axis 1) maxima of channels-first tensors over the samples."""
    out: dict[str, np.ndarray] = {}
    for feeds in samples():
        res = model.run(feeds)
        for v in tensors:
            a = res[v.name]
            m = a.max(axis=tuple(i for i in range(a.ndim) if i != 1))
            out[v.name] = m if v.name not in out else np.maximum(out[v.name], m)
    return out


def _percentile_range(st: TensorStats, pct: float) -> float:
    c = np.cumsum(st.hist)
    i = int(np.searchsorted(c, c[-1] * pct / 100.0))
    return (i + 1) * st.amax / HIST_BINS


def _entropy_range(st: TensorStats, levels: int) -> float:
    """The |x| threshold whose clipped, `levels`-level quantized histogram is closest to the
    original in KL divergence (the TensorRT calibrator's criterion).

    For a candidate threshold (bin i): p is the histogram up to i with the clipped mass added
    to its last bin; q is the histogram up to i *without* the clipped mass, merged into `levels`
    bins, each spread evenly over its non-empty source bins. (Building q from p would make
    q == p at i == levels, where KL is 0, so the smallest threshold would always win.)
    The first bin's count is replaced by its neighbour's, as NVIDIA's pytorch-quantization does:
    zero is exact at every threshold, and the spike of a ReLU's zeros (half the values), smeared
    over the first quantized bin's source bins, would otherwise push the threshold down to where
    that bin is narrowest (a ReLU output's ~2.4 sigma, clipping 1% of its values)."""
    hist = st.hist.astype(np.float64)
    hist[0] = hist[1]
    best, best_i = math.inf, HIST_BINS
    for i in range(levels, HIST_BINS + 1, 8):
        kept = hist[:i]
        p = kept.copy()
        p[-1] += hist[i:].sum()
        if p.sum() == 0:
            continue
        nz = p > 0
        starts = np.linspace(0, i, levels + 1).astype(int)  # strictly increasing: i >= levels
        sums = np.add.reduceat(kept, starts[:-1])
        count = np.add.reduceat(nz.astype(np.float64), starts[:-1])
        q = np.repeat(sums / np.maximum(count, 1.0), np.diff(starts)) * nz
        if np.any(q[nz] == 0) or q.sum() == 0:
            continue  # clipped mass where q has none: infinite divergence
        ps, qs = p[nz] / p.sum(), q[nz] / q.sum()
        kl = float(np.sum(ps * np.log(ps / qs)))
        if kl < best:
            best, best_i = kl, i
    return (best_i + 0.5) * st.amax / HIST_BINS


def params_from_stats(stats: dict[str, TensorStats], cfg: QuantizeConfig
                      ) -> dict[str, QuantParams]:
    out = {}
    for name, st in stats.items():
        if not math.isfinite(st.lo) or not math.isfinite(st.hi):  # (or means only)
            continue  # a tensor with NaN or inf in it stays float
        lo, hi = st.lo, st.hi
        if cfg.method != "minmax" and st.hist is not None:
            nonneg = lo >= 0 and cfg.activations == "uint8"
            t = (_percentile_range(st, cfg.percentile) if cfg.method == "percentile"
                 else _entropy_range(st, 256 if nonneg else 128))
            lo, hi = max(lo, -t), min(hi, t)
        out[name] = activation_params(lo, hi, cfg.activations)
    return out


# -- the report ----------------------------------------------------------------------------------------
def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    ref = np.asarray(ref, np.float64)
    noise = float(np.sum((ref - np.asarray(got, np.float64)) ** 2))
    signal = float(np.sum(ref ** 2))
    if noise == 0:
        return math.inf
    return 10 * math.log10(max(signal, 1e-300) / noise)


@dataclass
class _Acc:
    signal: float = 0.0
    noise: float = 0.0
    max_abs: float = 0.0
    agree: int = 0
    total: int = 0

    def add(self, ref: np.ndarray, got: np.ndarray, classify: bool) -> None:
        r, q = np.asarray(ref, np.float64), np.asarray(got, np.float64)
        self.signal += float(np.sum(r * r))
        self.noise += float(np.sum((r - q) ** 2))
        self.max_abs = max(self.max_abs, float(np.max(np.abs(r - q), initial=0.0)))
        if classify:
            a = r.reshape(-1, r.shape[-1]).argmax(axis=1)
            b = q.reshape(-1, q.shape[-1]).argmax(axis=1)
            self.agree += int((a == b).sum())
            self.total += a.size

    @property
    def sqnr(self) -> float:
        if self.noise == 0:
            return math.inf
        return 10 * math.log10(max(self.signal, 1e-300) / self.noise)


def _classifies(v: Value) -> bool:
    return v.type.rank >= 1 and v.shape[-1] > 1 and v.dtype.startswith("float")


def evaluate(fp32: Model, quant: Model, graph: Graph, tensors: list[Value], samples: Samples,
             layer_names: dict[str, str], reference: Model | None = None) -> dict:
    """The report: `quant`'s outputs against `reference`'s (default `fp32`'s), its quantized
    tensors against `fp32`'s (the graph that was quantized)."""
    outs = {n: _Acc() for n in graph.out_names()}
    per = {v.name: _Acc() for v in tensors}
    count = 0
    for feeds in samples():
        ref, got = fp32.run(feeds), quant.run(feeds)
        final = ref if reference is None else reference.run(feeds)
        count += 1
        for n, v in zip(graph.out_names(), graph.outputs):
            outs[n].add(final[n], got[n], _classifies(v))
        for v in tensors:
            if f"{v.name}.dq" in got:
                per[v.name].add(ref[v.name], got[f"{v.name}.dq"], False)
    report = {"samples": count, "outputs": {}, "worst_layers": []}
    for n, a in outs.items():
        entry = {"sqnr_db": _rounded(a.sqnr), "max_abs_error": float(f"{a.max_abs:.4g}")}
        if a.total:
            entry["top1_agreement"] = round(a.agree / a.total, 4)
        report["outputs"][n] = entry
    layers = sorted(((a.sqnr, name) for name, a in per.items() if a.signal > 0),
                    key=lambda t: t[0])
    report["worst_layers"] = [{"layer": layer_names.get(name, name), "tensor": name,
                               "sqnr_db": _rounded(s)} for s, name in layers[:5]]
    report["_layer_sqnr"] = {name: a.sqnr for name, a in per.items()}
    return report


def _rounded(x: float):
    return "inf" if math.isinf(x) else round(x, 2)


def top1_drop(report: dict) -> float | None:
    """Top-1 points lost against fp32: 100 * (1 - agreement), the worst output's."""
    drops = [100 * (1 - o["top1_agreement"]) for o in report["outputs"].values()
             if "top1_agreement" in o]
    return max(drops) if drops else None


# -- the driver --------------------------------------------------------------------------------------
@dataclass
class Int8Options:
    activations: str  # uint8 | int8, what the target's dot products take
    samples: Samples
    validation: Samples | None = None
    method: str | None = None  # None: the default
    per_channel: bool = True
    budget: float | None = None  # top-1 points
    equalize: bool = False  # cross-layer equalization first (passes/equalize.py)
    bias_correction: bool = False  # of the int8 weights' output shift (passes/bias_correction.py)
    log: Callable[[str], None] = field(default=lambda s: None)


DEFAULT_METHOD = "minmax"


class Int8Quantization:
    """The int8 pass (Graph -> Graph) of `neo compile --quantize int8`; `report` holds the
    accuracy report afterwards."""

    __name__ = "quantize_int8"

    def __init__(self, options: Int8Options, host, workdir: Path | None = None):
        self.options = options
        self.host = host
        self.workdir = workdir
        self.report: dict | None = None
        self.equalized = 0
        self.bias_corrected = 0

    def __call__(self, g: Graph) -> Graph:
        tmp = Path(tempfile.mkdtemp(prefix="neo-quant-", dir=self.workdir))
        try:
            return self._run(g, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _run(self, g: Graph, tmp: Path) -> Graph:
        o = self.options
        say = o.log
        method = o.method or DEFAULT_METHOD
        if method not in METHODS:
            raise ValueError(f"calibration method {method!r}: expected {', '.join(METHODS)}")
        cfg = QuantizeConfig(activations=o.activations, method=method, per_channel=o.per_channel)
        tensors = tensors_to_quantize(g, cfg)
        if not tensors:
            say("quantize: no conv or matmul with constant weights; the model stays fp32")
            self.report = {"quantized_layers": 0}
            return g
        reference = None  # the unequalized fp32 model, for the report's outputs
        if o.equalize:
            g, reference = self._equalize(g, tmp)
            tensors = tensors_to_quantize(g, cfg)
        names_to_quantize = {v.name for v in tensors}
        means_of = ([v for v in bias_correction_inputs(g, cfg) if v.name not in names_to_quantize]
                    if o.bias_correction else [])
        t = time.perf_counter()
        fp32 = compile_for_host(g, tensors + means_of, self.host, tmp, "fp32")
        say(f"quantize: fp32 graph with {len(tensors)} calibration outputs compiled in "
            f"{time.perf_counter() - t:.1f}s")
        t = time.perf_counter()
        means_of = bias_correction_inputs(g, cfg) if o.bias_correction else []
        stats, count = collect(fp32, tensors, o.samples, need_hist=method != "minmax",
                               means_of=means_of)
        say(f"quantize: {method} statistics of {len(tensors)} tensors over {count} samples in "
            f"{time.perf_counter() - t:.1f}s")
        params = params_from_stats({v.name: stats[v.name] for v in tensors}, cfg)
        if o.bias_correction:
            g, self.bias_corrected = correct_bias(
                g, cfg, {v.name: stats[v.name].mean for v in means_of})
            say(f"quantize: bias correction of {self.bias_corrected} layers")
        names = {v.name: layer_of(v) for v in tensors}
        report_samples = o.validation or o.samples
        kept: list[str] = []
        while True:
            cfg = replace(cfg, exclude=frozenset(kept))
            qg = self._lower(insert_qdq(g, params, cfg))
            layers = quantizable_layers(g, cfg)
            live = [v for v in tensors_to_quantize(g, cfg) if v.name in params]
            t = time.perf_counter()
            qmodel = compile_for_host(self._with_report_outputs(insert_qdq(g, params, cfg), live),
                                      [], self.host, tmp, f"int8-{len(kept)}")
            report = evaluate(fp32, qmodel, g, live, report_samples, names, reference)
            say(f"quantize: report over {report['samples']} samples in "
                f"{time.perf_counter() - t:.1f}s")
            drop = top1_drop(report)
            if o.budget is None or drop is None or drop <= o.budget or not layers:
                break
            worst = self._worst_layers(g, cfg, report["_layer_sqnr"], len(kept))
            if not worst:
                break
            kept += worst
            say(f"quantize: top-1 drop {drop:.2f} points > budget {o.budget}: keeping "
                f"{', '.join(worst)} in fp32")
        report.pop("_layer_sqnr", None)
        report.update({
            "mode": "int8", "activations": f"{cfg.activations} per tensor "
            + ("asymmetric" if cfg.activations == "uint8" else "symmetric"),
            "weights": "int8 symmetric " + ("per channel" if cfg.per_channel else "per tensor"),
            "method": method, "calibration_samples": count,
            "report_on": "validation" if o.validation else "calibration",
            "quantized_layers": len(layers), "fp32_layers": kept,
            "equalized_pairs": self.equalized, "bias_corrected_layers": self.bias_corrected,
        })
        if o.budget is not None:
            report["accuracy_budget_top1_points"] = o.budget
        self.report = report
        return qg

    def _equalize(self, g: Graph, tmp: Path) -> tuple[Graph, Model | None]:
        """Cross-layer equalization; the pairs through a clip need their first conv's
        per-channel maxima on the calibration samples (one fp32 run, which also serves as the
        report's reference: the equalized graph equals it only up to float rounding)."""
        say = self.options.log
        pairs = equalization_pairs(g)
        clipped = [p.first.outputs[0] for p in pairs if not math.isinf(p.clip_max)]
        reference, maxima = None, {}
        if clipped:
            t = time.perf_counter()
            reference = compile_for_host(g, clipped, self.host, tmp, "fp32-unequalized")
            maxima = channel_maxima(reference, clipped, self.options.samples)
            say(f"quantize: per-channel maxima of {len(clipped)} tensors for equalization in "
                f"{time.perf_counter() - t:.1f}s")
        g, self.equalized = equalize_cross_layer(g, maxima)
        say(f"quantize: cross-layer equalization of {self.equalized} conv pairs")
        return g, reference

    @staticmethod
    def _lower(g: Graph) -> Graph:
        from .basic import eliminate_dead_code, fold_constants, simplify
        from .qdq import lower_qdq

        return eliminate_dead_code(simplify(fold_constants(lower_qdq(g))))

    def _with_report_outputs(self, qdq: Graph, live: list[Value]) -> Graph:
        """The QDQ graph, lowered, with the dequantized tensors as extra outputs."""
        extra = []
        by_name = {v.name: v for n in qdq.nodes for v in n.outputs}
        for v in live:
            d = by_name.get(f"{v.name}.dq")
            if d is not None:
                extra.append(d)
        view = Graph(qdq.name, list(qdq.inputs), list(qdq.outputs) + extra, list(qdq.nodes),
                     qdq.out_names() + [d.name for d in extra])
        return self._lower(view)

    @staticmethod
    def _worst_layers(g: Graph, cfg: QuantizeConfig, sqnr: dict[str, float], kept: int
                      ) -> list[str]:
        """The quantized layers that lose the most SQNR between their input and the next
        quantized tensor (1, 2, 4, ... of them as the search goes on)."""
        marked = {v.name for v in tensors_to_quantize(g, cfg)}
        users = g.consumers()
        loss = []
        for n in quantizable_layers(g, cfg):
            s_in = sqnr.get(n.inputs[0].name, math.inf)
            s_out, frontier, seen = None, [n.outputs[0]], set()
            while frontier and s_out is None:
                v = frontier.pop(0)
                if id(v) in seen:
                    continue
                seen.add(id(v))
                if v.name in marked and v.name in sqnr:
                    s_out = sqnr[v.name]
                    break
                for u in users.get(v, []):
                    frontier.extend(u.outputs)
            if s_out is None:
                s_out = min(sqnr.values(), default=0.0)
            loss.append((min(s_in, 200.0) - min(s_out, 200.0), n.name))
        loss.sort(reverse=True)
        return [name for _, name in loss[:max(1, kept or 1)]]
