"""Convolution padding as its own `pad` node for convs the direct kernels run (every 2-D kernel
larger than 1x1 but depthwise ones, which pad in cache): the conv then reads a padded buffer without bounds checks, so its loads are
plain (or strided) vector loads and scalar broadcasts."""
from __future__ import annotations

from neo.ir import Graph, Node
from neo.ir.rewrite import Rewriter, rewrite


def make_conv_padding_explicit(g: Graph) -> Graph:
    """conv(x; pads=p) -> conv(pad(x, p); pads=0) for 2-D float32 (and float16) convs with a
    kernel larger than 1x1, except depthwise ones."""

    def emit(rw: Rewriter, n: Node):
        if n.op != "conv" or n.inputs[0].type.rank != 4 or n.inputs[0].dtype not in (
                "float32", "float16"):  # float16: fp16 arithmetic (passes/precision.py)
            return None
        pads = tuple(n.attrs["pads"] or (0, 0, 0, 0))
        kh, kw = n.inputs[1].shape[2:]
        # depthwise kernels pad each plane in cache themselves
        depthwise = n.inputs[1].shape[1] == 1 and n.attrs["groups"] > 1
        if not any(pads) or kh * kw == 1 or depthwise:
            return None
        x = rw.get(n.inputs[0])
        padded = rw.new.op("pad", x, pads=(0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]),
                           mode="constant", value=0.0, name=f"{n.name}.pad", origin=n.origin)
        ins = [padded] + [rw.get(v) for v in n.inputs[1:]]
        return rw.copy(n, ins, {**n.attrs, "pads": (0, 0, 0, 0)})

    return rewrite(g, emit)
