"""How a conv reads its input. Convolution padding as its own `pad` node for convs the direct
kernels run (every 2-D kernel larger than 1x1 but depthwise ones, which pad in cache): the conv
then reads a padded buffer without bounds checks, so its loads are plain (or strided) vector
loads and scalar broadcasts. And, on x86, a strided 1x1 conv reading a subsampled copy
(`subsample_strided_1x1`)."""
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


def subsample_pays(tun) -> bool:
    """Whether strided 1x1 convs may read a subsampled copy on a CPU (a `codegen.tuning.Tuning`):
    x86 with 8 lanes or more, measured there. The pass takes the convs whose plain (stride-1)
    form runs on channel-vector tiles (`codegen.lower.channel_tiles_pay`), which read a strided
    plane badly: a tile of 8 positions read 8 floats of 16 in each input channel's row (half
    of every line it pulled in), and the whole plane (4x the copy) streamed through L2 per
    panel of output channels. On the Xeon: resnet50's 512 -> 1024 downsample from 28x28 with
    AVX-512 (an im2col GEMM: its plane is too large for channel tiles) 1.26 -> 1.15 ms at 1
    thread, 0.81 -> 0.64 at 2; its 1024 -> 2048 from 14x14 (channel tiles, strided) 1.28 ->
    1.13 and 0.63 -> 0.60, copy included; with AVX2 (the portable x86_64 target) the latter,
    an im2col GEMM, 2.75 -> 1.99 and 1.43 -> 1.02. Where the plain conv is a GEMM too (28x28
    outputs; 14x14 with AVX2) the copy gained nothing."""
    return tun is not None and tun.arch == "x86_64" and tun.lanes >= 8


def subsample_strided_1x1(g: Graph, tun) -> Graph:
    """conv1x1(x; strides=s) -> conv1x1(slice(x, steps=s)) for unpadded, ungrouped float32 2-D
    convs whose stride-1 form runs on channel-vector tiles for `tun`."""
    from neo.codegen.lower import channel_tiles_pay

    def emit(rw: Rewriter, n: Node):
        if n.op != "conv" or n.inputs[0].type.rank != 4 or n.inputs[0].dtype != "float32":
            return None
        strides = tuple(n.attrs["strides"] or (1, 1))
        if (n.inputs[1].shape[2:] != (1, 1) or strides == (1, 1) or n.attrs["groups"] != 1
                or any(n.attrs["pads"] or (0,)) or len(strides) != 2):
            return None
        oh, ow = n.outputs[0].shape[2:]
        m, k = n.inputs[1].shape[:2]
        if not channel_tiles_pay(tun, m, k, (oh, ow), (oh, ow), (1, 1), (1, 1), (0,) * 4, 1)[0]:
            return None
        x = rw.get(n.inputs[0])
        sub = rw.new.op("slice", x, starts=(0, 0, 0, 0), ends=tuple(x.shape),
                        steps=(1, 1) + strides, name=f"{n.name}.subsample", origin=n.origin)
        ins = [sub] + [rw.get(v) for v in n.inputs[1:]]
        return rw.copy(n, ins, {**n.attrs, "strides": (1, 1)})

    return rewrite(g, emit)
