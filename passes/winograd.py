"""3x3 stride-1 convolutions as Winograd F(2x2, 3x3): input transform, a 16-group 1x1 conv with
weights transformed at compile time, output transform (ir/ops_nn.py has the ops and matrices).

2.25x fewer multiplies; the output transform takes the conv's epilogue (bias, residual add,
activation) when fusion runs. Only where it pays: 16 channels (32 input channels where the FMAs
outpace the streams: `min_channels`), enough 2x2 tiles that the multiplies saved outweigh the
transformed weights, which are 16/9 the size of the direct ones and must stream through the
cache once per image (`min_tiles`), and, with full-rate 512-bit FMAs, transformed planes that
fit in L2 (`max_transformed_bytes`).
"""
from __future__ import annotations

from neo.ir import Graph, Node
from neo.ir.ops_nn import _spatial, winograd_tiles, winograd_weights
from neo.ir.rewrite import Rewriter, rewrite

MIN_TILES = 16
MIN_CHANNELS = 16
MAX_PLANE = 64 * 1024  # floats: the input transform pads one plane at a time on the stack


def _fmas_outpace_streams(tun) -> bool:
    """Whether the FMAs do more than 16 floats per cycle, or the core streams slowly (Intel)."""
    return tun is not None and (tun.fma_per_cycle * tun.lanes > 16 or tun.core_bandwidth_low)


def min_tiles(tun=None) -> int:
    """The fewest 2x2 tiles a Winograd conv needs on a CPU (a `codegen.tuning.Tuning`; None:
    any CPU).

    At 16 tiles (a 7x7 or 8x8 output: resnet's last stage, 512 channels) the GEMM does 4 MACs per
    byte of transformed weights (16.8 MB), the direct conv 12 per byte of its 9.4 MB. Where the
    FMAs do at most 16 floats per cycle (AVX2, Zen 4's half-rate zmm, NEON) and the core streams
    fast, the multiplies dominate and Winograd measured 1.4x faster (an AVX2 EPYC). Two
    full-width 512-bit pipes (Intel Xeon server cores, Zen 5) do 32, and Intel cores stream
    slowly (`Tuning.core_bandwidth_low`): there the weight stream dominates and the direct conv
    won (a Xeon: 1.55 ms against 1.95 ms for the Winograd GEMM alone with AVX-512; 5.24 -> 4.67
    ms per resnet50 last-stage block with AVX-512 hidden). There the next tile count up, 25 (a
    9x9 or 10x10 output), is the least; 14x14 outputs (49 tiles) gain on every CPU."""
    return 25 if _fmas_outpace_streams(tun) else MIN_TILES


def min_channels(tun=None) -> int:
    """The fewest input channels a Winograd conv needs on a CPU. The GEMM between the transforms
    does one MAC per input channel for each transformed output value it writes and the output
    transform reads back (16 per 2x2 tile and output channel): at 16 input channels that
    traffic, not the multiplies, sets its speed where the FMAs outpace the streams. On the
    Xeon with AVX-512, squeezenet's 16 -> 64 3x3 convs on 55x55 took 0.38 ms as Winograd (0.22
    of it the GEMM) and 0.26-0.30 as direct channel-vector convs: the whole network 4-5%
    faster at 1 and 2 threads with them direct; at 32 channels (its 27x27 convs) the two are
    even. AMD's AVX2 cores keep 16."""
    return 32 if _fmas_outpace_streams(tun) else MIN_CHANNELS


# The largest transformed input or output (16 values per 2x2 tile and channel) a Winograd conv may
# stream with full-rate 512-bit FMAs (`max_transformed_bytes`)
MAX_TRANSFORMED_BYTES = 2 << 20


def max_transformed_bytes(tun=None) -> int | None:
    """The most bytes the transformed input, or the GEMM's transformed output, of a Winograd conv
    may take on a CPU (None: no limit). Past L2 the three passes stream them through L3 twice,
    and where the FMAs outpace the streams that costs more than the multiplies saved: on the
    Xeon (2 MB L2) resnet's 64 -> 64 convs on 56x56 (3.2 MB each way) ran direct 5% faster over
    resnet50's layer1 at 1 and 2 threads, resnet18's 9-12%, while its 128-channel convs on 28x28
    (1.6 MB) lost 16% without Winograd. Only with full-rate 512-bit FMAs (32 floats per cycle):
    with AVX-512 hidden the same Xeon ran resnet18's layer1 1.7x slower direct."""
    return MAX_TRANSFORMED_BYTES if tun is not None and tun.fma_per_cycle * tun.lanes > 16 else None


def winograd_applies(n: Node, tiles_at_least: int = MIN_TILES,
                     channels_at_least: int = MIN_CHANNELS, max_bytes: int | None = None) -> bool:
    if n.op != "conv" or n.inputs[0].type.rank != 4 or n.inputs[0].dtype != "float32":
        return False
    w = n.inputs[1]
    if not w.is_const or w.shape[2:] != (3, 3) or n.attrs["groups"] != 1:
        return False
    if len(n.inputs) > 2 and not n.inputs[2].is_const:
        return False
    strides, dil, _ = _spatial(n.attrs, 2)
    if strides != (1, 1) or dil != (1, 1):
        return False
    oc, c = w.shape[:2]
    oh, ow = n.outputs[0].shape[2:]
    th, tw = winograd_tiles(oh, ow)
    streamed = 16 * max(c, oc) * th * tw * 4  # float32
    return (oc >= MIN_CHANNELS and c >= channels_at_least and th * tw >= tiles_at_least
            and (2 * th + 2) * (2 * tw + 2) <= MAX_PLANE
            and (max_bytes is None or streamed <= max_bytes))


def winograd_convs(g: Graph, tiles_at_least: int = MIN_TILES,
                   channels_at_least: int = MIN_CHANNELS, max_bytes: int | None = None) -> Graph:
    """conv3x3(x, w, b) -> winograd_output(conv1x1_g16(winograd_input(x), U)) + b."""

    def emit(rw: Rewriter, n: Node):
        if not winograd_applies(n, tiles_at_least, channels_at_least, max_bytes):
            return None
        x = rw.get(n.inputs[0])
        w = n.inputs[1].data
        oc = w.shape[0]
        oh, ow = n.outputs[0].shape[2:]
        tiles = winograd_tiles(oh, ow)
        pads = tuple(n.attrs["pads"] or (0, 0, 0, 0))
        new = rw.new
        v = new.op("winograd_input", x, pads=pads, tiles=tiles, name=f"{n.name}.wg_in",
                   origin=n.origin)
        u = new.const(winograd_weights(w).astype(w.dtype), f"{n.name}.wg_weight")
        m = new.op("conv", v, u, groups=16, strides=(1, 1), pads=(0, 0, 0, 0),
                   dilations=(1, 1), name=f"{n.name}.wg_gemm", origin=n.origin)
        y = new.op("winograd_output", m, out=(oh, ow), tiles=tiles, name=f"{n.name}.wg_out",
                   origin=n.origin)
        if len(n.inputs) > 2:
            b = new.const(n.inputs[2].data.reshape(oc, 1, 1), f"{n.name}.bias")
            y = new.op("add", y, b, name=f"{n.name}.bias_add", origin=n.origin)
        return [y]

    return rewrite(g, emit)
