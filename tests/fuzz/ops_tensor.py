"""Fuzzer op families: data movement (Resize, Pad, Slice, Concat, Transpose, Reshape, Expand,
Gather, Split, DepthToSpace), reductions, scans and indexing (CumSum, Trilu, GatherElements,
ArgMax, TopK, Hardmax)."""
from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto

from .graphgen import (
    INT64_MAX,
    Invalid,
    Op,
    Val,
    _check_size,
    broadcast,
    op,
)

# -- data movement -----------------------------------------------------------------------------
RESIZE_SCALES = (2.0, 2.0, 0.5, 1.5, 3.0, 0.75, 1.0, 1.25, 0.6, 1.7)


@op
class Resize(Op):
    name, weight = "resize", 6

    def propose(self, s):
        x = s.pick(lambda v: v.rank in (3, 4))
        if x is None:
            return None
        # onnxruntime's cubic resize takes 2-D or 4-D inputs only
        mode = s.choice(["nearest", "linear", "cubic"], [5, 4, 1.5 if s.vals[x].rank == 4 else 0])
        coords = ["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel",
                  "tf_crop_and_resize"]
        cw = [4, 3, 2, 2, 0.5]
        if s.spec.opset >= 19:
            coords.append("half_pixel_symmetric")
            cw.append(1)
        p = {"mode": mode, "coord": s.choice(coords, cw),
             "nearest_mode": s.choice(["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]),
             "cubic_a": s.choice([-0.75, -0.5]), "exclude_outside": int(s.coin(0.25)),
             "by": s.choice(["scales", "sizes"], [6, 4]),
             "scales": [s.choice(RESIZE_SCALES) for _ in range(2)],
             "axes": s.spec.opset >= 18 and s.coin(0.3), "extrapolation": 0.5,
             "roi": [s.choice([0.0, 0.1, -0.1]), s.choice([1.0, 0.8, 1.1])]}
        if p["mode"] == "nearest" and p["coord"] == "asymmetric" and s.coin(0.5):
            p["scales"] = [2.0, 2.0]
        return [x], p

    def emit(self, e, ins, p):
        (x,) = ins
        r = x.rank
        nsp = r - 2
        sc = p["scales"][-nsp:] if nsp == 1 else p["scales"]
        if p["by"] == "sizes":
            sp_sizes = [max(1, round(n * f)) for n, f in zip(x.shape[2:], sc)]
            full = list(x.shape[:2]) + sp_sizes
        else:
            full = list(x.shape[:2]) + [int(np.floor(np.float32(n) * np.float32(f)))
                                        for n, f in zip(x.shape[2:], sc)]
        shape = _check_size(full)
        use_axes = p["axes"] and e.opset >= 18
        attrs = {"mode": p["mode"], "coordinate_transformation_mode": p["coord"]}
        if p["mode"] == "nearest":
            attrs["nearest_mode"] = p["nearest_mode"]
        if p["mode"] == "cubic":
            attrs.update(cubic_coeff_a=p["cubic_a"], exclude_outside=p["exclude_outside"])
        roi = "" if e.opset >= 13 else e.floats([])  # Resize-11 takes a roi tensor
        lo, hi = x.lo, x.hi
        if p["coord"] == "tf_crop_and_resize":
            b, en = p["roi"]
            rv = ([b] * nsp + [en] * nsp if use_axes else
                  [0.0] * 2 + [b] * nsp + [1.0] * 2 + [en] * nsp)
            roi = e.floats(rv)
            attrs["extrapolation_value"] = p["extrapolation"]
            if any(o == n for o, n in zip(shape[2:], x.shape[2:])):
                e.ambiguous.append("tf_crop_and_resize: onnxruntime does not crop an axis of "
                                   "scale 1")
            for i in range(nsp):
                n, o = x.shape[2 + i], shape[2 + i]
                c = resize_coords(n, o, o / n if p["by"] == "sizes" else float(np.float32(sc[i])),
                                  p["coord"], (p["roi"][0], p["roi"][1]))
                if _near(c, np.zeros_like(c)) or _near(c, np.full_like(c, n - 1)):
                    # inside or extrapolated: decided by rounding where the spec is exact
                    e.ambiguous.append("tf_crop_and_resize: a sample on the edge of the input")
                    break
            lo, hi = min(lo, p["extrapolation"]), max(hi, p["extrapolation"])
        if p["mode"] == "cubic":
            m = 1.6 * x.mag
            lo, hi = min(lo, -m), max(hi, m)
        if use_axes:
            attrs["axes"] = list(range(2, r))
        if p["coord"] == "align_corners" and p["by"] == "scales" and any(
                float(np.float32(n) * np.float32(f)) != full[2 + i]
                for i, (n, f) in enumerate(zip(x.shape[2:], sc))):
            # the ONNX reference (and neo) map by the unrounded length scale * n, onnxruntime
            # and PyTorch by the output size floor(scale * n)
            e.ambiguous.append("align_corners resize with a fractional scaled length")
        if p["mode"] == "nearest":
            for i in range(nsp):
                n, o = x.shape[2 + i], shape[2 + i]
                scale = o / n if p["by"] == "sizes" else float(np.float32(sc[i]))
                roi_ax = (p["roi"][0], p["roi"][1]) if p["coord"] == "tf_crop_and_resize" else None
                if nearest_near_boundary(n, o, scale, p["coord"], p["nearest_mode"], roi_ax):
                    # The spec computes the source coordinate exactly; onnxruntime computes it
                    # in float32 and rounds a coordinate this close to the boundary either way.
                    e.ambiguous.append(f"nearest resize, {p['coord']}: a source coordinate "
                                       "on a rounding boundary")
                    break
        if p["by"] == "sizes":
            vals = shape[2:] if use_axes else shape
            ins_ = [x.name, roi, "" if e.opset >= 13 else e.floats([]), e.ints(vals)]
        else:
            vals = list(sc) if use_axes else [1.0, 1.0] + list(sc)
            ins_ = [x.name, roi, e.floats(vals)]
        out = e.one("Resize", ins_, **attrs)
        return [Val(out, shape, lo, hi, p["mode"] == "nearest" and x.exact)]


def resize_coords(n: int, o: int, scale: float, coord: str,
                  roi: tuple[float, float] | None) -> np.ndarray:
    """The source coordinate of each output position, as ONNX Resize defines it (exactly)."""
    x = np.arange(o, dtype=np.float64)
    if coord == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if coord == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if o > 1 else np.zeros(o)
    if coord == "asymmetric":
        return x / scale
    if coord == "align_corners":
        return x * (n - 1) / (scale * n - 1) if scale * n != 1 else np.zeros(o)
    if coord == "half_pixel_symmetric":
        adj = o / (scale * n)
        return n / 2 * (1 - adj) + (x + 0.5) / scale - 0.5
    b, e_ = roi  # tf_crop_and_resize
    return (b * (n - 1) + x * (e_ - b) * (n - 1) / (o - 1) if o > 1
            else np.full(o, 0.5 * (b + e_) * (n - 1)))


def _near(c: np.ndarray, marks: np.ndarray) -> bool:
    return bool((np.abs(c - marks) < 1e-5 * np.maximum(1.0, np.abs(c))).any())


def nearest_near_boundary(n: int, o: int, scale: float, coord: str, mode: str,
                          roi: tuple[float, float] | None) -> bool:
    """Whether a nearest-neighbour source coordinate lies within float32 rounding of where its
    rounding mode flips (an integer for floor/ceil, a half for round)."""
    c = resize_coords(n, o, scale, coord, roi)
    marks = np.round(c) if mode in ("floor", "ceil") else np.floor(c) + 0.5
    return _near(c, marks)


@op
class Pad(Op):
    name, weight = "pad", 5

    def propose(self, s):
        x = s.pick(lambda v: v.rank >= 1)
        v = s.vals[x]
        modes = ["constant", "reflect", "edge"] + (["wrap"] if s.spec.opset >= 19 else [])
        mode = s.choice(modes, [6, 1.5, 1.5, 1][:len(modes)])
        r = v.rank
        axes = list(range(max(0, r - 2), r)) if s.coin(0.75) else [int(s.rng.integers(0, r))]
        amounts = {}
        for a in axes:
            amounts[a] = [int(s.rng.integers(0, 4)), int(s.rng.integers(0, 4))]
            if mode == "constant" and s.coin(0.1):
                amounts[a][int(s.rng.integers(0, 2))] *= -1
        return [x], {"mode": mode, "amounts": {str(a): pp for a, pp in amounts.items()},
                     "value": s.choice([0.0, 0.0, 0.5, -1.0, 1.5]),
                     "axes_input": s.spec.opset >= 18 and s.coin(0.3)}

    def emit(self, e, ins, p):
        (x,) = ins
        r = x.rank
        pads = [0] * (2 * r)
        for a, (b, en) in p["amounts"].items():
            a = int(a)
            if a >= r:
                raise Invalid("axis")
            pads[a], pads[r + a] = b, en
            if p["mode"] == "reflect" and max(b, en) > x.shape[a] - 1:
                raise Invalid("reflect pad larger than the dim")
            if p["mode"] in ("edge", "wrap") and max(b, en) > x.shape[a]:
                raise Invalid("pad larger than the dim")
            if x.shape[a] + min(b, 0) + min(en, 0) < 1:
                raise Invalid("crop")
        if not any(pads):
            raise Invalid("no pad")
        shape = _check_size([x.shape[i] + pads[i] + pads[r + i] for i in range(r)])
        lo, hi = x.lo, x.hi
        ins_ = [x.name]
        if p["axes_input"] and e.opset >= 18:
            axes = sorted(int(a) for a in p["amounts"])
            ins_.append(e.ints([pads[a] for a in axes] + [pads[r + a] for a in axes]))
        else:
            axes = None
            ins_.append(e.ints(pads))
        if p["mode"] == "constant":
            ins_.append(e.const(np.float32(p["value"]), "v"))
            lo, hi = min(lo, p["value"]), max(hi, p["value"])
        elif axes is not None:
            ins_.append("")
        if axes is not None:
            ins_.append(e.ints(axes))
        out = e.one("Pad", ins_, mode=p["mode"])
        return [Val(out, shape, lo, hi, x.exact)]


@op
class Slice(Op):
    name, weight = "slice", 4

    def propose(self, s):
        x = s.pick(lambda v: max(v.shape, default=0) > 1)
        if x is None:
            return None
        v = s.vals[x]
        big = [a for a, d in enumerate(v.shape) if d > 1]
        axes = sorted({s.choice(big) for _ in range(s.choice([1, 1, 2]))})
        specs = []
        for a in axes:
            d = v.shape[a]
            b = int(s.rng.integers(0, max(1, d // 2)))
            en = int(s.rng.integers(0, max(1, d // 3)))
            specs.append({"axis": a, "b": b, "e": en,
                          "step": s.choice([1, 1, 1, 2, 3, -1, -2]),
                          "form": s.choice(["plain", "negative", "overflow"]),
                          "neg_axis": s.coin(0.2)})
        return [x], {"axes": specs}

    def emit(self, e, ins, p):
        (x,) = ins
        starts, ends, axes, steps = [], [], [], []
        shape = list(x.shape)
        for sp in p["axes"]:
            a = sp["axis"]
            if a >= x.rank:
                raise Invalid("axis")
            d = x.shape[a]
            b, en, step = sp["b"], d - sp["e"], sp["step"]
            if b >= en:
                raise Invalid("empty slice")
            if step > 0:
                st, nd = b, en
                if sp["form"] == "negative":
                    st, nd = b - d, en - d if en < d else INT64_MAX
                elif sp["form"] == "overflow" and en == d:
                    nd = INT64_MAX
                n = -(-(en - b) // step)
            else:
                st, nd = en - 1, b - 1
                if sp["form"] == "negative":
                    st = en - 1 - d
                    nd = b - 1 - d if b > 0 else -d - 1
                elif nd < 0:
                    nd = -INT64_MAX
                if sp["form"] == "overflow" and en == d:
                    st = INT64_MAX
                n = -(-(en - b) // -step)
            shape[a] = n
            starts.append(st)
            ends.append(nd)
            axes.append(a - x.rank if sp["neg_axis"] else a)
            steps.append(step)
        shape = _check_size(shape)
        out = e.one("Slice", [x.name, e.ints(starts), e.ints(ends), e.ints(axes), e.ints(steps)])
        return [Val(out, shape, x.lo, x.hi, x.exact)]


@op
class Concat(Op):
    name, weight = "concat", 5

    def propose(self, s):
        x = s.pick()
        v = s.vals[x]
        if v.rank == 0:
            return None
        axis = s.choice(range(v.rank), [3 if a == 1 else 1 for a in range(v.rank)])
        ins, parts = [x], []
        for _ in range(s.choice([1, 1, 2])):
            kind = s.choice(["value", "same", "input", "const"], [4, 1, 2, 2])
            if kind == "value":
                y = s.pick(lambda u: u.rank == v.rank and all(
                    a == b for i, (a, b) in enumerate(zip(u.shape, v.shape)) if i != axis)
                    and u.name != v.name, recent=0.8)
                if y is None:
                    kind = "const"
                else:
                    ins.append(y)
                    parts.append({"kind": "value"})
                    continue
            if kind == "same":
                ins.append(x)
                parts.append({"kind": "value"})
                continue
            size = s.choice([1, 2, 3, 4, 5, 7, 8, 16, 17])
            if kind == "input":
                shape = list(v.shape)
                shape[axis] = size
                ins.append(s.new_input(shape))
                parts.append({"kind": "value"})
            else:
                parts.append({"kind": "const", "size": size})
        return ins, {"axis": axis, "parts": parts, "neg": s.coin(0.2),
                     "seed": int(s.rng.integers(1 << 30))}

    def emit(self, e, ins, p):
        x, rest = ins[0], list(ins[1:])
        a = p["axis"]
        if a >= x.rank:
            raise Invalid("axis")
        operands = [x]
        for part in p["parts"]:
            if part["kind"] == "value":
                if not rest:
                    raise Invalid("operands")
                operands.append(rest.pop(0))
            else:
                shape = list(x.shape)
                shape[a] = part["size"]
                c = e.rng.uniform(-1, 1, shape).astype(np.float32)
                operands.append(Val(e.const(c, "c"), tuple(shape), -1.0, 1.0, True))
        for o in operands:
            if o.rank != x.rank or any(u != w for i, (u, w) in enumerate(zip(o.shape, x.shape))
                                       if i != a):
                raise Invalid("concat shapes")
        shape = list(x.shape)
        shape[a] = sum(o.shape[a] for o in operands)
        shape = _check_size(shape)
        out = e.one("Concat", [o.name for o in operands], axis=a - x.rank if p["neg"] else a)
        return [Val(out, shape, min(o.lo for o in operands), max(o.hi for o in operands),
                    all(o.exact for o in operands))]


@op
class Transpose(Op):
    name, weight = "transpose", 3

    def propose(self, s):
        x = s.pick(lambda v: v.rank >= 2)
        if x is None:
            return None
        r = s.vals[x].rank
        common = {4: [[0, 2, 3, 1], [0, 3, 1, 2], [0, 1, 3, 2], [1, 0, 2, 3]], 3: [[0, 2, 1]],
                  2: [[1, 0]]}.get(r, [])
        perm = s.choice(common) if common and s.coin(0.6) else list(s.rng.permutation(r))
        if perm == list(range(r)):
            perm = perm[::-1]
        return [x], {"perm": [int(q) for q in perm]}

    def emit(self, e, ins, p):
        (x,) = ins
        perm = p["perm"]
        if sorted(perm) != list(range(x.rank)):
            raise Invalid("perm")
        out = e.one("Transpose", [x.name], perm=perm)
        return [Val(out, tuple(x.shape[q] for q in perm), x.lo, x.hi, x.exact)]


@op
class Reshape(Op):
    name, weight = "reshape", 4

    def propose(self, s):
        x = s.pick(lambda v: v.rank >= 1)
        v = s.vals[x]
        forms = ["merge", "split", "flatten", "unsqueeze", "to2d"]
        if 1 in v.shape:
            forms.append("squeeze")
        form = s.choice(forms)
        return [x], {"form": form, "axis": int(s.rng.integers(0, v.rank + 1)),
                     "factor": s.choice([2, 3, 4, 8]), "zero": s.coin(0.3)}

    def emit(self, e, ins, p):
        (x,) = ins
        r, a, form = x.rank, p["axis"], p["form"]
        sh = list(x.shape)
        if form == "merge":
            if r < 2:
                raise Invalid("rank")
            a = min(a, r - 2)
            shape = sh[:a] + [sh[a] * sh[a + 1]] + sh[a + 2:]
            spec = list(shape)
            spec[a] = -1
            if p["zero"] and a > 0:
                spec[0] = 0
            out = e.one("Reshape", [x.name, e.ints(spec)])
        elif form == "split":
            a = min(a, r - 1)
            f = p["factor"]
            if sh[a] % f or sh[a] == f:
                raise Invalid("split factor")
            shape = sh[:a] + [f, sh[a] // f] + sh[a + 1:]
            spec = list(shape)
            if p["zero"]:
                spec[a + 1] = -1
            out = e.one("Reshape", [x.name, e.ints(spec)])
        elif form == "flatten":
            a = min(a, r)
            shape = [math.prod(sh[:a]), math.prod(sh[a:])]
            out = e.one("Flatten", [x.name], axis=a)
        elif form == "to2d":
            shape = [sh[0], math.prod(sh[1:])] if r >= 2 else [1, sh[0]]
            out = e.one("Reshape", [x.name, e.ints([shape[0], -1] if r >= 2 else [1, -1])])
        elif form == "unsqueeze":
            a = min(a, r)
            shape = sh[:a] + [1] + sh[a:]
            out = (e.one("Unsqueeze", [x.name, e.ints([a])]) if e.opset >= 13 else
                   e.one("Unsqueeze", [x.name], axes=[a]))
        else:  # squeeze
            ones = [i for i, d in enumerate(sh) if d == 1]
            if not ones:
                raise Invalid("no 1-dim")
            q = ones[a % len(ones)]
            shape = sh[:q] + sh[q + 1:]
            out = (e.one("Squeeze", [x.name, e.ints([q])]) if e.opset >= 13 else
                   e.one("Squeeze", [x.name], axes=[q]))
        shape = _check_size(shape)
        return [Val(out, shape, x.lo, x.hi, x.exact)]


REDUCE_OPS = {"ReduceSum": 3, "ReduceMean": 4, "ReduceMax": 3, "ReduceMin": 1.5, "ReduceL2": 1,
              "ReduceL1": 0.5, "ReduceSumSquare": 0.5, "ReduceLogSumExp": 0.7, "ReduceProd": 0.5,
              "ReduceLogSum": 0.3}


@op
class Reduce(Op):
    name, weight = "reduce", 4.5

    def propose(self, s):
        x = s.pick(lambda v: v.rank >= 1)
        v = s.vals[x]
        k = s.choice(list(REDUCE_OPS), list(REDUCE_OPS.values()))
        r = v.rank
        if s.coin(0.5) and r >= 3:
            axes = list(range(2, r))
        else:
            axes = sorted({int(s.rng.integers(0, r)) for _ in range(s.choice([1, 1, 2]))})
        return [x], {"op": k, "axes": axes, "keepdims": int(s.coin(0.5)),
                     "all": s.coin(0.08), "neg": s.coin(0.2)}

    def emit(self, e, ins, p):
        (x,) = ins
        k = p["op"]
        axes = list(range(x.rank)) if p["all"] else p["axes"]
        if any(a >= x.rank for a in axes):
            raise Invalid("axis")
        n = math.prod(x.shape[a] for a in axes)
        m = x.mag
        lo, hi, exact = -n * m, n * m, False
        if k == "ReduceMean":
            lo, hi = x.lo, x.hi
        elif k in ("ReduceMax", "ReduceMin"):
            lo, hi, exact = x.lo, x.hi, x.exact
        elif k == "ReduceL2":
            lo, hi = 0.0, math.sqrt(n) * m
        elif k == "ReduceL1":
            lo, hi = 0.0, n * m
        elif k == "ReduceSumSquare":
            lo, hi = 0.0, n * m * m
        elif k == "ReduceLogSumExp":
            if m > 30:
                raise Invalid("logsumexp range")
            lo, hi = x.lo, x.hi + math.log(n)
        elif k == "ReduceProd":
            if n > 6 or m > 2:
                raise Invalid("prod range")
            lo, hi = -(m ** n), m ** n
        elif k == "ReduceLogSum":
            if x.lo <= 1e-3:
                raise Invalid("log domain")
            lo, hi = math.log(n * x.lo), math.log(n * x.hi)
        keep = p["keepdims"]
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape)) if keep else tuple(
            d for i, d in enumerate(x.shape) if i not in axes)
        written = [a - x.rank if p["neg"] else a for a in axes]
        axes_input = e.opset >= 18 or (k == "ReduceSum" and e.opset >= 13)
        if p["all"]:
            out = e.one(k, [x.name], keepdims=keep)
        elif axes_input:
            out = e.one(k, [x.name, e.ints(written)], keepdims=keep)
        else:
            out = e.one(k, [x.name], axes=written, keepdims=keep)
        return [Val(out, shape, lo, hi, exact)]


@op
class Expand(Op):
    name, weight = "expand", 1.5

    def propose(self, s):
        x = s.pick(lambda v: 1 in v.shape or v.rank < 4)
        if x is None:
            return None
        return [x], {"sizes": [s.choice([2, 3, 4, 5, 8]) for _ in range(6)],
                     "lead": s.choice([0, 0, 1]), "tile": s.coin(0.3)}

    def emit(self, e, ins, p):
        (x,) = ins
        if p["tile"]:
            reps = [p["sizes"][i] if i % 2 == 0 and p["sizes"][i] < 4 else 1
                    for i in range(x.rank)]
            shape = _check_size([d * t for d, t in zip(x.shape, reps)])
            out = e.one("Tile", [x.name, e.ints(reps)])
            return [Val(out, shape, x.lo, x.hi, x.exact)]
        target = [p["sizes"][i] if d == 1 else d for i, d in enumerate(x.shape)]
        target = [1] * p["lead"] + target if p["lead"] else target
        if p["lead"]:
            target[0] = 2
        shape = _check_size(broadcast(x.shape, target))
        if shape == x.shape:
            raise Invalid("no expansion")
        out = e.one("Expand", [x.name, e.ints(target)])
        return [Val(out, shape, x.lo, x.hi, x.exact)]


@op
class Gather(Op):
    name, weight = "gather", 1.5

    def propose(self, s):
        x = s.pick(lambda v: v.rank >= 1)
        v = s.vals[x]
        a = int(s.rng.integers(0, v.rank))
        p = {"axis": a, "n": s.choice([1, 2, 3, 5, 8]), "scalar": s.coin(0.15),
             "seed": int(s.rng.integers(1 << 30))}
        if s.coin(0.3):  # indices known only at run time, negative ones too
            shape = [] if p["scalar"] else [p["n"]] if s.coin(0.7) else [2, p["n"]]
            return [x, s.new_input(shape, f"index:{v.shape[a]}")], p
        return [x], p

    def emit(self, e, ins, p):
        x = ins[0]
        a = p["axis"]
        if a >= x.rank:
            raise Invalid("axis")
        d = x.shape[a]
        if len(ins) == 2:
            ind = ins[1]
            if not ind.index or x.shape[a] < -ind.lo:
                raise Invalid("indices out of range")
            shape = _check_size(x.shape[:a] + ind.shape + x.shape[a + 1:])
            out = e.one("Gather", [x.name, ind.name], axis=a)
            return [Val(out, shape, x.lo, x.hi, x.exact)]
        if p["scalar"]:
            idx = np.int64(e.rng.integers(-d, d))
            ishape: tuple = ()
        else:
            idx = e.rng.integers(-d, d, p["n"]).astype(np.int64)
            ishape = (p["n"],)
        shape = _check_size(x.shape[:a] + ishape + x.shape[a + 1:]) if x.rank > 1 or ishape \
            else ()
        if shape == () or (x.rank == 1 and p["scalar"]):
            raise Invalid("scalar result")
        out = e.one("Gather", [x.name, e.const(idx, "ind")], axis=a)
        return [Val(out, shape, x.lo, x.hi, x.exact)]


@op
class Split(Op):
    name, weight = "split", 1.5

    def propose(self, s):
        x = s.pick(lambda v: max(v.shape, default=0) >= 2)
        if x is None:
            return None
        v = s.vals[x]
        axes = [a for a, d in enumerate(v.shape) if d >= 2]
        return [x], {"axis": s.choice(axes), "parts": s.choice([2, 2, 3]),
                     "equal": s.coin(0.4), "cut": float(s.rng.uniform(0.2, 0.8))}

    def emit(self, e, ins, p):
        (x,) = ins
        a, n = p["axis"], p["parts"]
        if a >= x.rank:
            raise Invalid("axis")
        d = x.shape[a]
        if d < n:
            raise Invalid("too few")
        if p["equal"] and e.opset >= 18:
            size = -(-d // n)
            sizes = [size] * (d // size) + ([d % size] if d % size else [])
            if len(sizes) != n:
                raise Invalid("num_outputs split")
            outs = e.node("Split", [x.name], n, axis=a, num_outputs=n)
        else:
            first = max(1, min(d - (n - 1), round(d * p["cut"])))
            rest = d - first
            sizes = [first] + ([rest] if n == 2 else [rest // 2 or 1, rest - (rest // 2 or 1)])
            if any(z < 1 for z in sizes):
                raise Invalid("split sizes")
            outs = (e.node("Split", [x.name, e.ints(sizes)], n, axis=a) if e.opset >= 13 else
                    e.node("Split", [x.name], n, axis=a, split=sizes))
        vals = []
        for o, z in zip(outs, sizes):
            shape = list(x.shape)
            shape[a] = z
            vals.append(Val(o, tuple(shape), x.lo, x.hi, x.exact))
        return vals


@op
class DepthSpace(Op):
    name, weight = "depth_space", 1

    def propose(self, s):
        x = s.pick(lambda v: v.rank == 4)
        if x is None:
            return None
        return [x], {"kind": s.choice(["DepthToSpace", "SpaceToDepth"]),
                     "mode": s.choice(["DCR", "CRD"]), "b": 2}

    def emit(self, e, ins, p):
        (x,) = ins
        if x.rank != 4:
            raise Invalid("rank")
        n, c, h, w = x.shape
        b = p["b"]
        if p["kind"] == "DepthToSpace":
            if c % (b * b):
                raise Invalid("channels")
            shape = (n, c // (b * b), h * b, w * b)
            out = e.one("DepthToSpace", [x.name], blocksize=b, mode=p["mode"])
        else:
            if h % b or w % b:
                raise Invalid("spatial")
            shape = (n, c * b * b, h // b, w // b)
            out = e.one("SpaceToDepth", [x.name], blocksize=b)
        return [Val(out, _check_size(shape), x.lo, x.hi, x.exact)]


# -- indexing, scans, normalizations of their own -------------------------------------------------
@op
class CumSum(Op):
    name, weight = "cumsum", 1.2

    def propose(self, s):
        x = s.pick(lambda v: v.rank >= 1)
        r = s.vals[x].rank
        return [x], {"axis": int(s.rng.integers(-r, r)), "exclusive": int(s.coin(0.3)),
                     "reverse": int(s.coin(0.3)), "scalar_axis": s.coin(0.5)}

    def emit(self, e, ins, p):
        (x,) = ins
        a = p["axis"]
        if not -x.rank <= a < x.rank:
            raise Invalid("axis")
        n = x.shape[a]
        axis = e.const(np.int64(a) if p["scalar_axis"] else np.array([a], np.int64), "ax")
        out = e.one("CumSum", [x.name, axis], exclusive=p["exclusive"], reverse=p["reverse"])
        return [Val(out, x.shape, -n * x.mag, n * x.mag)]


@op
class Trilu(Op):
    name, weight = "trilu", 0.8

    def propose(self, s):
        x = s.pick(lambda v: v.rank >= 2)
        if x is None or s.spec.opset < 14:  # Trilu is opset 14
            return None
        return [x], {"upper": int(s.coin(0.5)), "k": s.choice([None, 0, 1, -1, 2, -3])}

    def emit(self, e, ins, p):
        (x,) = ins
        if x.rank < 2:
            raise Invalid("rank")
        names = [x.name] + ([] if p["k"] is None else [e.const(np.int64(p["k"]), "k")])
        out = e.one("Trilu", names, upper=p["upper"])
        return [Val(out, x.shape, min(x.lo, 0.0), max(x.hi, 0.0), x.exact)]


@op
class GatherElements(Op):
    name, weight = "gather_elements", 1

    def propose(self, s):
        x = s.pick(lambda v: v.rank >= 1)
        r = s.vals[x].rank
        return [x], {"axis": int(s.rng.integers(0, r)), "len": s.choice([1, 2, 3, 5, 9]),
                     "seed": int(s.rng.integers(1 << 30))}

    def emit(self, e, ins, p):
        (x,) = ins
        a = p["axis"]
        if a >= x.rank:
            raise Invalid("axis")
        shape = list(x.shape)
        shape[a] = p["len"]
        shape = _check_size(shape)
        d = x.shape[a]
        idx = e.rng.integers(-d, d, shape).astype(np.int64)
        out = e.one("GatherElements", [x.name, e.const(idx, "ind")], axis=a)
        return [Val(out, shape, x.lo, x.hi, x.exact)]


@op
class ArgExtreme(Op):
    """ArgMax/ArgMin of an exact value (ties are exact), cast back to float."""

    name, weight = "arg", 1

    def propose(self, s):
        x = s.pick(lambda v: v.rank >= 1 and v.exact)
        if x is None:
            return None
        r = s.vals[x].rank
        return [x], {"op": s.choice(["ArgMax", "ArgMin"]), "axis": int(s.rng.integers(-r, r)),
                     "keepdims": int(s.coin(0.5)), "last": int(s.coin(0.3))}

    def emit(self, e, ins, p):
        (x,) = ins
        a = p["axis"]
        if not x.exact or not -x.rank <= a < x.rank:
            raise Invalid("axis or inexact input")
        aa = a % x.rank
        shape = tuple(1 if i == aa else d for i, d in enumerate(x.shape)) if p["keepdims"] else \
            tuple(d for i, d in enumerate(x.shape) if i != aa)
        attrs = {"axis": a, "keepdims": p["keepdims"]}
        if p["last"] and e.opset >= 12:
            attrs["select_last_index"] = 1
        idx = e.one(p["op"], [x.name], **attrs)
        out = e.one("Cast", [idx], to=TensorProto.FLOAT)
        return [Val(out, shape, 0.0, float(x.shape[aa] - 1), True)]


@op
class TopK(Op):
    name, weight = "topk", 1

    def propose(self, s):
        x = s.pick(lambda v: v.rank >= 1 and max(v.shape, default=0) >= 2)
        if x is None:
            return None
        v = s.vals[x]
        axes = [a for a, d in enumerate(v.shape) if d >= 2]
        return [x], {"axis": s.choice(axes), "k": s.choice([1, 2, 3, 5]),
                     "largest": int(s.coin(0.7)), "neg": s.coin(0.3)}

    def emit(self, e, ins, p):
        (x,) = ins
        a = p["axis"]
        if a >= x.rank or x.shape[a] < p["k"]:
            raise Invalid("k")
        shape = list(x.shape)
        shape[a] = p["k"]
        # the values are continuous in the input (the indices are not, and stay unused)
        vals, _ = e.node("TopK", [x.name, e.const(np.array([p["k"]], np.int64), "k")], 2,
                         axis=a - x.rank if p["neg"] else a, largest=p["largest"])
        return [Val(vals, _check_size(shape), x.lo, x.hi, x.exact)]


@op
class Hardmax(Op):
    name, weight = "hardmax", 0.5

    def propose(self, s):
        x = s.pick(lambda v: v.rank >= 1 and v.exact)
        if x is None:
            return None
        return [x], {"axis": s.choice([-1, 0, 1])}

    def emit(self, e, ins, p):
        (x,) = ins
        if not x.exact or not -x.rank <= p["axis"] < x.rank:
            raise Invalid("axis or inexact input")
        out = e.one("Hardmax", [x.name], axis=p["axis"])
        return [Val(out, x.shape, 0.0, 1.0, True)]
