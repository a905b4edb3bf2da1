"""Fuzzer op families: convolutions of every kernel family, ConvTranspose, pools, MatMul, Gemm,
softmax, normalizations, and the motifs real models fuse."""
from __future__ import annotations

import math

import numpy as np

from .graphgen import (
    MAX_ELEMS,
    MAX_MACS,
    OUT_CHANNELS,
    Emitter,
    Invalid,
    Op,
    Val,
    _check_size,
    broadcast,
    op,
)


# -- convolutions ----------------------------------------------------------------------------
def conv_out(n: int, k: int, s: int, pb: int, pe: int, d: int) -> int:
    return (n + pb + pe - d * (k - 1) - 1) // s + 1


def same_pads(ins, ks, ss, ds, mode):
    begin, end = [], []
    for n, k, s, d in zip(ins, ks, ss, ds):
        out = -(-n // s)
        total = max(0, (out - 1) * s + d * (k - 1) + 1 - n)
        head = total // 2 if mode == "SAME_UPPER" else total - total // 2
        begin.append(head)
        end.append(total - head)
    return begin + end


CONV_FAMILIES = {"dense": 30, "pointwise": 20, "depthwise": 15, "grouped": 10, "winograd": 22,
                 "strided": 10, "dilated": 6, "narrow": 8}


@op
class Conv(Op):
    name, weight = "conv", 16

    def propose(self, s):
        x = s.pick(lambda v: v.rank in (3, 4) and v.shape[1] <= 64, recent=0.5)
        if x is None:
            return None
        v = s.vals[x]
        nsp = v.rank - 2
        C, sp = v.shape[1], v.shape[2:]
        fam = s.choice(list(CONV_FAMILIES), list(CONV_FAMILIES.values()))
        k, st, dl, g, mult = [3] * nsp, [1] * nsp, [1] * nsp, 1, 1
        oc = s.choice(OUT_CHANNELS)
        pre = 0
        if fam == "winograd":
            # Winograd takes 3x3 stride-1 convs with >= 16 channels in and out and >= 16 output
            # tiles of 2x2; a 1x1 conv first raises the channels where there are fewer
            if nsp != 2 or sp[0] * sp[1] < 36:
                fam = "dense"
            else:
                oc = s.choice([16, 17, 24, 32, 33, 48])
                pre = 0 if C >= 16 and s.coin(0.7) else s.choice([16, 17, 24, 32])
        if fam == "narrow":  # fewer output channels than lanes: the spatial direct kernel
            oc = s.choice([1, 2, 3, 4, 5, 7])
            k = [s.choice([3, 3, 5, 2])] * nsp
        if fam == "pointwise":
            k = [1] * nsp
            st = [s.choice([1, 1, 1, 2])] * nsp
        elif fam == "depthwise":
            g, mult = "dw", s.choice([1, 1, 1, 2])
            k = [s.choice([3, 3, 5, 2, 7])] * nsp
            st = [s.choice([1, 1, 2])] * nsp
            dl = [s.choice([1, 1, 1, 2])] * nsp
        elif fam == "grouped":
            divs = [d for d in range(2, C + 1) if C % d == 0]
            if not divs:
                return None
            g = s.choice(divs)
            oc = g * s.choice([1, 2, 3, 4, 8])
            k = [s.choice([1, 3, 3, 5])] * nsp
        elif fam in ("dense", "strided", "dilated"):
            k = [s.choice([2, 3, 3, 5, 7])] * nsp
            if nsp == 2 and s.coin(0.25):
                k = s.choice([[1, 3], [3, 1], [1, 5], [5, 1], [2, 3]])
            if fam == "strided":
                st = [s.choice([2, 2, 3, 4])] * nsp
                if nsp == 2 and s.coin(0.2):
                    st = [1, 2]
            if fam == "dilated":
                dl = [s.choice([2, 3])] * nsp
        if fam == "winograd":
            pads = [1] * (2 * nsp) if s.coin(0.7) else [int(s.rng.integers(0, 3)) for _ in
                                                         range(2 * nsp)]
        elif s.coin(0.6):
            pads = [kk // 2 * dd for kk, dd in zip(k, dl)] * 2
        else:
            pads = [int(s.rng.integers(0, kk)) for kk in k] + [int(s.rng.integers(0, kk)) for kk
                                                               in k]
        auto = s.choice(["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"], [14, 2, 1, 1])
        if auto.startswith("SAME") and any(d > 1 for d in dl):
            auto = "NOTSET"  # onnxruntime has no SAME padding with dilations
        if any(n < kk for n, kk in zip(sp, k)) and not any(pads):
            pads = [kk // 2 for kk in k] * 2
        return [x], {"family": fam, "oc": int(oc), "pre": pre, "k": k, "s": st, "d": dl,
                     "pads": pads,
                     "g": g, "mult": mult, "bias": s.coin(0.7), "auto_pad": auto,
                     "gain": s.choice([1.0, 1.5]), "seed": int(s.rng.integers(1 << 30))}

    def emit(self, e, ins, p):
        (x,) = ins
        if x.rank not in (3, 4):
            raise Invalid("conv rank")
        nsp, C = x.rank - 2, x.shape[1]
        k, st, dl = p["k"], p["s"], p["d"]
        if len(k) != nsp:
            raise Invalid("conv kernel rank")
        if p.get("pre"):  # a 1x1 conv raising the channels first
            C = p["pre"]
            w = (e.rng.standard_normal((C, x.shape[1], *[1] * nsp)) / math.sqrt(x.shape[1]))
            w = w.astype(np.float32)
            bound = float(np.abs(w).reshape(C, -1).sum(1).max()) * x.mag
            x = Val(e.one("Conv", [x.name, e.const(w, "w")], kernel_shape=[1] * nsp),
                    (x.shape[0], C, *x.shape[2:]), -bound, bound)
            _check_size(x.shape)
        if p["g"] == "dw":
            g, oc = C, C * p["mult"]
        else:
            g, oc = int(p["g"]), int(p["oc"])
            if C % g or oc % g:
                raise Invalid("groups")
        pads = list(p["pads"])
        auto = p["auto_pad"]
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = same_pads(x.shape[2:], k, st, dl, auto)
        elif auto == "VALID":
            pads = [0] * (2 * nsp)
        out_sp = [conv_out(x.shape[2 + i], k[i], st[i], pads[i], pads[nsp + i], dl[i])
                  for i in range(nsp)]
        shape = _check_size((x.shape[0], oc, *out_sp))
        fan_in = C // g * math.prod(k)
        if math.prod(shape) * fan_in > MAX_MACS:
            raise Invalid("conv too big")
        w = (e.rng.standard_normal((oc, C // g, *k)) * p["gain"] / math.sqrt(fan_in))
        w = w.astype(np.float32)
        names = [x.name, e.const(w, "w")]
        bound = float(np.abs(w).reshape(oc, -1).sum(1).max()) * x.mag
        if p["bias"]:
            b = (e.rng.standard_normal(oc) * 0.3).astype(np.float32)
            names.append(e.const(b, "b"))
            bound += float(np.abs(b).max())
        attrs = {"kernel_shape": k, "strides": st, "dilations": dl, "group": g}
        if auto == "NOTSET":
            attrs["pads"] = list(p["pads"])
        else:
            attrs["auto_pad"] = auto
        out = e.one("Conv", names, **attrs)
        return [Val(out, shape, -bound, bound)]


@op
class ConvTranspose(Op):
    name, weight = "conv_transpose", 1.5

    def propose(self, s):
        x = s.pick(lambda v: v.rank == 4 and v.shape[1] <= 48)
        if x is None:
            return None
        C = s.vals[x].shape[1]
        dw = s.coin(0.25) and C > 1
        k = s.choice([2, 3, 4])
        st = s.choice([1, 2, 2])
        return [x], {"g": "dw" if dw else 1, "ocg": 1 if dw else s.choice([1, 2, 4, 8, 16]),
                     "k": k, "s": st, "pads": [int(s.rng.integers(0, k)) for _ in range(4)],
                     "op": int(s.rng.integers(0, st)), "bias": s.coin(0.5),
                     "seed": int(s.rng.integers(1 << 30))}

    def emit(self, e, ins, p):
        (x,) = ins
        if x.rank != 4:
            raise Invalid("rank")
        C = x.shape[1]
        g = C if p["g"] == "dw" else 1
        k, st, pads, opad = p["k"], p["s"], p["pads"], p["op"]
        out_sp = [(x.shape[2 + i] - 1) * st - pads[i] - pads[2 + i] + (k - 1) + opad + 1
                  for i in range(2)]
        shape = _check_size((x.shape[0], g * p["ocg"], *out_sp))
        if math.prod(x.shape) * p["ocg"] * k * k > MAX_MACS:
            raise Invalid("too big")
        w = (e.rng.standard_normal((C, p["ocg"], k, k)) / math.sqrt(k * k * C / g / st / st))
        w = w.astype(np.float32)
        names = [x.name, e.const(w, "w")]
        bound = float(np.abs(w).sum(axis=(0, 2, 3)).max()) * x.mag
        if p["bias"]:
            b = (e.rng.standard_normal(g * p["ocg"]) * 0.3).astype(np.float32)
            names.append(e.const(b, "b"))
            bound += float(np.abs(b).max())
        out = e.one("ConvTranspose", names, kernel_shape=[k, k], strides=[st, st], pads=pads,
                    output_padding=[opad, opad], group=g)
        return [Val(out, shape, -bound, bound)]


@op
class Pool(Op):
    name, weight = "pool", 7

    def propose(self, s):
        x = s.pick(lambda v: v.rank in (3, 4))
        if x is None:
            return None
        nsp = s.vals[x].rank - 2
        kind = s.choice(["MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
                         "LpPool"], [10, 7, 2, 1.5, 0.5])
        k = s.choice([[2, 2], [3, 3], [3, 3], [1, 3], [3, 1], [2, 3], [5, 5], [1, 1], [4, 4]])
        k = k[:nsp] if nsp == 1 else k
        if s.coin(0.6):
            st = list(k) if s.coin(0.4) else [s.choice([1, 2])] * nsp
        else:
            st = [s.choice([1, 2, 3])] * nsp
        st = [max(1, t) for t in st]
        pads = [int(s.rng.integers(0, kk)) if s.coin(0.5) else 0 for kk in k] * 2
        if s.coin(0.3):
            pads = [int(s.rng.integers(0, kk)) for kk in k + k]
        dl = [s.choice([1, 2])] * nsp if kind == "MaxPool" and s.coin(0.15) else [1] * nsp
        return [x], {"kind": kind, "k": k, "s": st, "pads": pads, "d": dl,
                     "ceil": int(s.coin(0.25)), "cip": int(s.coin(0.35)),
                     "auto_pad": s.choice(["NOTSET", "SAME_UPPER", "VALID"], [18, 1, 1])}

    def emit(self, e, ins, p):
        (x,) = ins
        kind = p["kind"]
        if x.rank not in (3, 4):
            raise Invalid("rank")
        nsp = x.rank - 2
        if kind.startswith("Global"):
            out = e.one(kind, [x.name])
            return [Val(out, x.shape[:2] + (1,) * nsp, x.lo, x.hi, kind == "GlobalMaxPool"
                        and x.exact)]
        k, st, dl = p["k"], p["s"], p["d"]
        if len(k) != nsp:
            raise Invalid("kernel rank")
        pads = list(p["pads"])
        if any(pp >= kk for pp, kk in zip(pads, k + k)):
            raise Invalid("pads must be smaller than the kernel")
        auto = p["auto_pad"]
        if auto == "SAME_UPPER":
            # onnxruntime's SAME pools need kernel >= stride and ignore dilations in the size
            if any(kk < t for kk, t in zip(k, st)) or any(d > 1 for d in dl):
                raise Invalid("onnxruntime's SAME pools need kernel >= stride")
            pads = same_pads(x.shape[2:], k, st, dl, auto)
            if any(pp >= kk for pp, kk in zip(pads, k + k)):
                raise Invalid("same pads")
        elif auto == "VALID":
            pads = [0] * (2 * nsp)
        out_sp = []
        for i in range(nsp):
            n, span = x.shape[2 + i], x.shape[2 + i] + pads[i] + pads[nsp + i] - dl[i] * (k[i] - 1) - 1
            if span < 0:
                raise Invalid("window larger than input")
            if p["ceil"] and auto == "NOTSET" and (kind != "LpPool" or e.opset >= 18):
                o = -(-span // st[i]) + 1
                if (o - 1) * st[i] >= n + pads[i]:
                    # neo (as PyTorch and the ONNX spec's note) drops a last window that starts
                    # in the end padding; onnxruntime keeps it
                    o -= 1
                    e.ambiguous.append("ceil-mode pool: a window starting in the end padding")
            else:
                o = span // st[i] + 1
            out_sp.append(o)
        shape = _check_size(x.shape[:2] + tuple(out_sp))
        attrs = {"kernel_shape": k, "strides": st}
        if auto == "NOTSET":
            attrs["pads"] = pads
            if p["ceil"] and (kind != "LpPool" or e.opset >= 18):
                attrs["ceil_mode"] = 1
        else:
            attrs["auto_pad"] = auto
        lo, hi = x.lo, x.hi
        if kind == "MaxPool":
            if any(d != 1 for d in dl):
                attrs["dilations"] = dl
        elif kind == "AveragePool":
            if p["cip"]:
                attrs["count_include_pad"] = 1
                lo, hi = min(lo, 0.0), max(hi, 0.0)
        else:  # LpPool p=2
            attrs["p"] = 2
            lo, hi = 0.0, x.mag * math.sqrt(math.prod(k))
        out = e.one(kind, [x.name], **attrs)
        return [Val(out, shape, lo, hi, kind == "MaxPool" and x.exact)]


@op
class MatMul(Op):
    name, weight = "matmul", 5

    def propose(self, s):
        x = s.pick(lambda v: v.rank >= 1)
        v = s.vals[x]
        K = v.shape[-1]
        kind = s.choice(["const", "value", "input"], [6, 2, 2]) if v.rank >= 2 else "const"
        p = {"kind": kind, "n": s.choice(OUT_CHANNELS), "seed": int(s.rng.integers(1 << 30)),
             "batch": s.coin(0.2), "vec": v.rank >= 2 and kind == "const" and s.coin(0.12)}
        ins = [x]
        if kind == "value":
            y = s.pick(lambda u: u.rank >= 2 and u.shape[-2] == K and u.name != v.name
                       and _bcast_ok(u.shape[:-2], v.shape[:-2]))
            if y is None:
                p["kind"] = "const"
            else:
                ins.append(y)
        elif kind == "input":
            shape = (list(v.shape[:-2]) if p["batch"] else []) + [K, p["n"]]
            ins.append(s.new_input(shape))
        return ins, p

    def emit(self, e, ins, p):
        x = ins[0]
        if x.rank < 1:
            raise Invalid("rank")
        K = x.shape[-1]
        if x.rank == 1 or p.get("vec"):  # a vector operand: [K] @ [K, N] or [.., M, K] @ [K]
            if len(ins) > 1:
                raise Invalid("vector matmul with a value")
            wshape = [K] if p.get("vec") else [K, p["n"]]
            w = (e.rng.standard_normal(wshape) / math.sqrt(K)).astype(np.float32)
            shape = _check_size(x.shape[:-1] if p.get("vec") else (p["n"],)) if x.rank > 1 or \
                not p.get("vec") else None
            if shape is None:
                raise Invalid("scalar result")
            out = e.one("MatMul", [x.name, e.const(w, "w")])
            bound = float(np.abs(w).sum(0).max()) * x.mag
            return [Val(out, shape, -bound, bound)]
        if len(ins) > 1:
            y = ins[1]
            if y.rank < 2 or y.shape[-2] != K:
                raise Invalid("inner dims")
            bound = K * x.mag * y.mag
        else:
            lead = list(x.shape[:-2]) if p["batch"] else []
            w = (e.rng.standard_normal(lead + [K, p["n"]]) / math.sqrt(K)).astype(np.float32)
            y = Val(e.const(w, "w"), w.shape, float(w.min()), float(w.max()))
            bound = float(np.abs(w).sum(-2).max()) * x.mag
        batch = broadcast(x.shape[:-2], y.shape[:-2])
        shape = _check_size(batch + (x.shape[-2], y.shape[-1]))
        if math.prod(shape) * K > MAX_MACS:
            raise Invalid("too big")
        out = e.one("MatMul", [x.name, y.name])
        return [Val(out, shape, -bound, bound)]


def _bcast_ok(a, b) -> bool:
    try:
        np.broadcast_shapes(tuple(a), tuple(b))
        return True
    except ValueError:
        return False


@op
class Gemm(Op):
    name, weight = "gemm", 2.5

    def propose(self, s):
        x = s.pick(lambda v: v.rank == 2)
        if x is None:
            return None
        return [x], {"n": s.choice(OUT_CHANNELS), "transA": int(s.coin(0.2)),
                     "transB": int(s.coin(0.5)), "alpha": s.choice([1.0, 1.0, 0.5, 2.0]),
                     "beta": s.choice([1.0, 1.0, 0.5]),
                     "c": s.choice(["none", "n", "1n", "mn", "scalar"], [2, 4, 1, 1, 1]),
                     "seed": int(s.rng.integers(1 << 30))}

    def emit(self, e, ins, p):
        (x,) = ins
        if x.rank != 2:
            raise Invalid("rank")
        M, K = x.shape[::-1] if p["transA"] else x.shape
        N = p["n"]
        w = (e.rng.standard_normal((K, N)) / math.sqrt(K)).astype(np.float32)
        bound = float(np.abs(w).sum(0).max()) * x.mag * abs(p["alpha"])
        names = [x.name, e.const(np.ascontiguousarray(w.T) if p["transB"] else w, "w")]
        cshape = {"none": None, "n": (N,), "1n": (1, N), "mn": (M, N), "scalar": ()}[p["c"]]
        if cshape is not None:
            c = (e.rng.standard_normal(cshape) * 0.5).astype(np.float32)
            names.append(e.const(c, "c"))
            bound += abs(p["beta"]) * float(np.abs(c).max())
        shape = _check_size((M, N))
        out = e.one("Gemm", names, alpha=p["alpha"], beta=p["beta"], transA=p["transA"],
                    transB=p["transB"])
        return [Val(out, shape, -bound, bound)]


@op
class Softmax(Op):
    name, weight = "softmax", 3

    def propose(self, s):
        x = s.pick(lambda v: v.rank >= 1)
        r = s.vals[x].rank
        return [x], {"kind": s.choice(["Softmax", "LogSoftmax"], [3, 1]),
                     "axis": s.choice([-1, -1, r - 1, 1 if r > 1 else 0, 0])}

    def emit(self, e, ins, p):
        (x,) = ins
        a = p["axis"]
        if not -x.rank <= a < x.rank:
            raise Invalid("axis")
        n = x.shape[a]
        out = e.one(p["kind"], [x.name], axis=a)
        if p["kind"] == "Softmax":
            return [Val(out, x.shape, 0.0, 1.0)]
        return [Val(out, x.shape, -(x.hi - x.lo) - math.log(n), 0.0)]


@op
class Norm(Op):
    name, weight = "norm", 3

    def propose(self, s):
        x = s.pick(lambda v: v.rank >= 2)
        if x is None:
            return None
        kinds = ["BatchNormalization", "InstanceNormalization"]
        if s.spec.opset >= 17:
            kinds.append("LayerNormalization")
        return [x], {"kind": s.choice(kinds), "axis": s.choice([-1, -1, -2, 1]),
                     "eps": s.choice([1e-5, 1e-3]), "seed": int(s.rng.integers(1 << 30))}

    def emit(self, e, ins, p):
        (x,) = ins
        k, r = p["kind"], e.rng
        if k == "BatchNormalization":
            C = x.shape[1]
            scale = r.uniform(0.5, 1.5, C).astype(np.float32)
            bias = (r.standard_normal(C) * 0.3).astype(np.float32)
            mean = (r.standard_normal(C) * 0.3).astype(np.float32)
            var = r.uniform(0.5, 2.0, C).astype(np.float32)
            names = [x.name] + [e.const(a, n) for a, n in ((scale, "s"), (bias, "b"),
                                                           (mean, "m"), (var, "v"))]
            out = e.one(k, names, epsilon=p["eps"])
            b = (x.mag + 0.3 * 4) / math.sqrt(0.5) * 1.5 + 1.2
        elif k == "InstanceNormalization":
            if x.rank < 3:
                raise Invalid("rank")
            C = x.shape[1]
            scale = r.uniform(0.5, 1.5, C).astype(np.float32)
            bias = (r.standard_normal(C) * 0.3).astype(np.float32)
            out = e.one(k, [x.name, e.const(scale, "s"), e.const(bias, "b")], epsilon=p["eps"])
            b = 1.5 * math.sqrt(math.prod(x.shape[2:])) + 1.2
        else:
            a = p["axis"]
            if not -x.rank <= a < x.rank:
                raise Invalid("axis")
            norm_shape = x.shape[a:]
            scale = r.uniform(0.5, 1.5, norm_shape).astype(np.float32)
            bias = (r.standard_normal(norm_shape) * 0.3).astype(np.float32)
            out = e.one(k, [x.name, e.const(scale, "s"), e.const(bias, "b")], axis=a,
                        epsilon=p["eps"])
            b = 1.5 * math.sqrt(math.prod(norm_shape)) + 1.2
        return [Val(out, x.shape, -b, b)]


@op
class ChannelNorm(Op):
    """LRN, LpNormalization, MeanVarianceNormalization."""

    name, weight = "channel_norm", 1.2

    def propose(self, s):
        x = s.pick(lambda v: v.rank == 4)
        if x is None:
            return None
        return [x], {"kind": s.choice(["LRN", "LpNormalization", "MeanVarianceNormalization"]),
                     "size": s.choice([1, 3, 5]), "p": s.choice([1, 2]),
                     "axis": s.choice([1, -1, 2]), "axes": s.choice([[0, 2, 3], [2, 3], [1]])}

    def emit(self, e, ins, p):
        (x,) = ins
        k = p["kind"]
        if x.rank != 4:
            raise Invalid("rank")
        if k == "LRN":
            out = e.one(k, [x.name], size=p["size"], alpha=1e-3, beta=0.75, bias=1.0)
            return [Val(out, x.shape, x.lo, x.hi)]
        if k == "LpNormalization":
            out = e.one(k, [x.name], axis=p["axis"], p=p["p"])
            return [Val(out, x.shape, -1.0, 1.0)]
        out = e.one(k, [x.name], axes=p["axes"])
        # onnxruntime divides by sqrt(var) without the spec's epsilon: NaN on a constant row
        e.ambiguous.append("MeanVarianceNormalization: onnxruntime has no epsilon")
        b = math.sqrt(math.prod(x.shape[a] for a in p["axes"])) + 1
        return [Val(out, x.shape, -b, b)]


# -- motifs: what real models fuse, as one node each -----------------------------------------------
def _conv_w(e: Emitter, oc: int, c: int, k: int, groups: int = 1) -> str:
    w = e.rng.standard_normal((oc, c // groups, k, k)) / math.sqrt(c // groups * k * k)
    return e.const(w.astype(np.float32), "w")


@op
class Motif(Op):
    """A residual block (conv + bias + add + relu), a feature-pyramid merge (nearest upsample x2
    + add, then a 3x3 conv), a squeeze-and-excitation gate, an inception-style concat + pool, or
    a depthwise-separable pair."""

    name, weight = "motif", 6

    def propose(self, s):
        x = s.pick(lambda v: v.rank == 4 and v.shape[1] <= 48 and min(v.shape[2:]) >= 2)
        if x is None:
            return None
        kind = s.choice(["residual", "fpn", "se", "concat_pool", "separable"])
        return [x], {"kind": kind, "act": s.choice(["Relu", "Clip", "Sigmoid", "HardSwish",
                                                     "LeakyRelu"]),
                     "oc": s.choice([8, 16, 17, 24, 32]), "stride": s.choice([1, 1, 2]),
                     "seed": int(s.rng.integers(1 << 30))}

    def emit(self, e, ins, p):
        (x,) = ins
        if x.rank != 4:
            raise Invalid("rank")
        n, c, h, w = x.shape
        k = p["kind"]

        def act(t):
            if p["act"] == "Clip":
                return e.one("Clip", [t, e.const(np.float32(0), "lo"), e.const(np.float32(6), "hi")])
            if p["act"] == "HardSwish" and e.opset < 14:
                return e.one("Relu", [t])
            return e.one(p["act"], [t])

        def bias(oc):
            return e.const((e.rng.standard_normal(oc) * 0.3).astype(np.float32), "b")

        if k == "residual":  # conv3x3 + bias + x + act: the conv epilogue takes the add
            y = e.one("Conv", [x.name, _conv_w(e, c, c, 3), bias(c)], kernel_shape=[3, 3],
                      pads=[1, 1, 1, 1])
            out, shape = act(e.one("Add", [y, x.name])), x.shape
        elif k == "fpn":  # nearest x2 + add of a finer map, then a 3x3 conv (strided or not)
            if 4 * n * c * h * w > MAX_ELEMS:
                raise Invalid("too big")
            fine = e.const(e.rng.standard_normal((1, c, 2 * h, 2 * w)).astype(np.float32), "f")
            up = e.one("Resize", [x.name, "", e.floats([1, 1, 2, 2])], mode="nearest",
                       coordinate_transformation_mode="asymmetric", nearest_mode="floor")
            s_ = p["stride"]
            out = e.one("Conv", [e.one("Add", [up, fine]), _conv_w(e, p["oc"], c, 3),
                                 bias(p["oc"])], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                        strides=[s_, s_])
            shape = (n, p["oc"], (2 * h - 1) // s_ + 1, (2 * w - 1) // s_ + 1)
        elif k == "se":  # x * sigmoid(conv1x1(relu(conv1x1(gap(x)))))
            r = max(1, c // 4)
            g = e.one("GlobalAveragePool", [x.name])
            g = e.one("Relu", [e.one("Conv", [g, _conv_w(e, r, c, 1), bias(r)], kernel_shape=[1, 1])])
            g = e.one("Sigmoid", [e.one("Conv", [g, _conv_w(e, c, r, 1), bias(c)],
                                        kernel_shape=[1, 1])])
            out, shape = e.one("Mul", [x.name, g]), x.shape
        elif k == "concat_pool":  # two branches concatenated on channels, then a max pool
            a = act(e.one("Conv", [x.name, _conv_w(e, p["oc"], c, 1), bias(p["oc"])],
                          kernel_shape=[1, 1]))
            b = e.one("Conv", [x.name, _conv_w(e, 8, c, 3), bias(8)], kernel_shape=[3, 3],
                      pads=[1, 1, 1, 1])
            cat = e.one("Concat", [a, b, x.name], axis=1)
            out = e.one("MaxPool", [cat], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
            shape = (n, p["oc"] + 8 + c, (h - 1) // 2 + 1, (w - 1) // 2 + 1)
        else:  # depthwise 3x3 (+act) then pointwise 1x1
            s_ = p["stride"]
            d = act(e.one("Conv", [x.name, _conv_w(e, c, c, 3, c), bias(c)], kernel_shape=[3, 3],
                          pads=[1, 1, 1, 1], strides=[s_, s_], group=c))
            out = e.one("Conv", [d, _conv_w(e, p["oc"], c, 1), bias(p["oc"])],
                        kernel_shape=[1, 1])
            shape = (n, p["oc"], (h - 1) // s_ + 1, (w - 1) // s_ + 1)
        shape = _check_size(shape)
        if math.prod(shape) * 9 * max(c, p["oc"]) > MAX_MACS:
            raise Invalid("too big")
        b = 8 * x.mag + 10
        return [Val(out, shape, -b, b)]
