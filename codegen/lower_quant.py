"""Lowering of the integer anchors (`conv_integer`, `matmul_integer` and their fused epilogues)
onto the kernels of kernel_qconv.py, and of depthwise ones onto the plane kernel of
kernel_dwconv.py (integer slots, "int8-depthwise"); registered in `lower.KERNELS`. A node these
kernels do not take (no dot-product instructions on the target, weights with a zero point, a
plane too large for the stack) returns None and goes to the tensor-expression kernel, which
computes the same integers.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from neo.ir import Node
from neo.ir.ops_nn import _spatial

from . import isa, te
from .kernel_qconv import (
    AMX_TILE,
    Dot,
    QConvSpec,
    QMatmulSpec,
    conv_weight_groups,
    dot_for,
    emit_qconv_kernel,
    emit_qmatmul_kernel,
    flip,
    matmul_weight_groups,
    offset,
    pack_conv_weights,
    pack_conv_weights_amx,
    pack_matmul_weights,
    unit_costs,
)
from .kernel_te import KernelContext, _mask_loads
from .llvm_util import I64, makespan
from .render import Renderer
from .te_ops import COMPUTES
from .tuning import Tuning

# stack bytes a conv unit may pack its input rows into (a share of L2)
PACK_BUDGET = 192 * 1024


def _describe(node: Node) -> str:
    return "+".join(n.op for n in node.attrs["body"].nodes)


def _te_dtype(arr: np.ndarray) -> str:
    from neo.ir.types import dtype_name

    return dtype_name(arr.dtype)


def _body_expr(node: Node, ext: list, anchor_value, ntables: int):
    """The fused body after its anchor as one expression over the output index (e0, e1, ...),
    the anchor's value given by anchor_value(idx) (the accumulator Var "acc", plus a bias or
    not); ntables buffers follow the inputs before the body's own tables. Returns (expr, the
    body's tables)."""
    body = node.attrs["body"]
    ctx = KernelContext(len(ext) + ntables)
    tensors = [te.buffer_tensor(i, v.shape, v.dtype) for i, v in enumerate(ext)]
    env = {id(v): t for v, t in zip(body.inputs, tensors)}
    out = body.nodes[0].outputs[0]
    env[id(out)] = te.Tensor(out.shape, "int32", anchor_value)
    for n in body.nodes[1:]:
        ins = [env[id(v)] for v in n.inputs]
        fn = COMPUTES[n.op](n.attrs, n.outputs[0].type, ins, ctx)
        env[id(n.outputs[0])] = te.Tensor(n.outputs[0].shape, n.outputs[0].dtype, fn)
    rank = len(node.outputs[0].shape)
    expr = env[id(body.outputs[0])](tuple(te.Var(f"e{d}") for d in range(rank)))
    return expr, list(ctx.tables)


def int_epilogue(node: Node, ext: list, M: int, plane: int, lanes: int, holder: list,
                 extra_tables: list, bias_in_acc: bool = False):
    """The fused epilogue of an integer conv as a callback (b, acc, m, col0, img, grp, mask):
    the body after the anchor, on the int32 accumulator plus the per-channel int32 table
    extra_tables[0] (the buffer after the inputs; `bias_in_acc`: the kernel starts its
    accumulators from it instead), indexed (n, oc, 0, col) over the flat output plane;
    returns (callback, the epilogue's own tables, the kernel's buffer dtypes: inputs, extra
    tables, own tables, output)."""
    bias_buf = len(ext)
    acc = te.Var("acc", "int32")
    expr, tables = _body_expr(node, ext, (lambda idx: acc) if bias_in_acc else (
        lambda idx: acc + te.Load(bias_buf, idx[1], "int32")), len(extra_tables))
    rank = len(node.outputs[0].shape)
    dtypes = ([v.dtype for v in ext] + [_te_dtype(t) for t in extra_tables]
              + [_te_dtype(t) for t in tables] + [node.outputs[0].dtype])
    pinned, col = {"e2": I64(0)}, "e3"
    if rank == 4 and node.outputs[0].shape[3] == 1:
        pinned, col = {"e3": I64(0)}, "e2"
    masked = _mask_loads(expr, col)
    out_dtype = node.outputs[0].dtype
    invariant = _invariant_parts(expr, {"e0", "e1", *pinned})
    seed: dict = {}

    def cb(b, accv, m, col0, img, grp, mask):
        env_ = {"e0": img, "e1": b.add(b.mul(grp, I64(M)), m), **pinned, "acc": accv,
                col + "#base": col0, col: col0, col + "#end": I64(plane)}
        r = Renderer(b, holder[0], dtypes, lanes, col, b.function.entry_basic_block)
        if seed:
            r.scopes = [seed, {}]
        return r.to_storage(r.vec(r.render(masked if mask is not None else expr, env_)),
                            out_dtype)

    def prepare(b, m, img, grp):
        """Render what depends only on the image and channel (the bias, the requantize's
        per-channel multiplier and shifts) here, once, for every later call: the output's
        stores keep LLVM from hoisting table loads out of the kernel's loops itself."""
        env_ = {"e0": img, "e1": b.add(b.mul(grp, I64(M)), m), **pinned}
        r = Renderer(b, holder[0], dtypes, lanes, col, b.function.entry_basic_block)
        seed.clear()
        for e in invariant:
            seed[e] = r.render(e, env_)

    cb.prepare = prepare
    return cb, tables, dtypes


def _invariant_parts(expr: te.Expr, names: set) -> list[te.Expr]:
    """The largest subexpressions of expr that read memory and depend on no variable but
    `names`."""
    out: list[te.Expr] = []

    def go(e: te.Expr) -> bool:  # whether e is invariant
        kids = te.children(e)
        flags = [go(k) for k in kids]
        inv = not isinstance(e, te.Var | te.Reduce) and all(flags)
        if isinstance(e, te.Var):
            inv = e.name in names
        if not inv:
            out.extend(k for k, f in zip(kids, flags) if f and _reads(k))
        return inv

    if go(expr) and _reads(expr):
        out.append(expr)
    return out


def _reads(e: te.Expr) -> bool:
    return isinstance(e, te.Load) or any(_reads(k) for k in te.children(e))


def _units_cost(geom: QConvSpec, tun: Tuning) -> float:
    """Estimated cycles of a conv shaped as `geom` (rows, mr, nv, mchunk set): the dot
    products over every computed position (the dropped ones and a unit's last partial tile
    included), slowed where a tile's loads outnumber its dot products, plus packing."""
    L, mr, nv = geom.dot.lanes, geom.mr, geom.nv
    nr = nv * L
    computed = 0
    steps = geom.groups_k * geom.KH * geom.KW
    block_weights = steps * mr * geom.dot.kg  # bytes a channel block's tiles broadcast from
    rereads = 0  # its weight bytes read again from L2 by a band's later tiles
    for oh0 in range(0, geom.OH, geom.rows):
        nrows = min(geom.rows, geom.OH - oh0)
        vlen = (nrows - 1) * geom.wp_p + geom.OW
        computed += -(-vlen // nr) * nr
        if block_weights > tun.l1_bytes // 2 and len(geom.phases_h) * len(geom.phases_w) > 1:
            rereads += (-(-vlen // nr) - 1) * block_weights
    mtiles = -(-geom.M // mr)
    if geom.dot.kind == "amx":
        dots = computed / nr * _amx_tile_cost(geom)
    else:
        per_dot = max(1.0, (nv * -(-geom.dot.lanes * 32 // tun.pipe_bits) + mr / 2 + 1)
                      / (mr * nv))
        dots = computed / L * mtiles * mr * steps * per_dot
    # a tile written straight out (no dropped positions: _write_direct) renders a channel's
    # epilogue values (multiplier, shifts) once for its vectors: with few dot products per
    # output (1x1 convs of 16-32 channels) one vector per channel and tile spends a third of
    # its time on them
    epilogue = 0.0
    if geom.wp_p == geom.OW:
        epilogue = computed / nr * mtiles * mr * EPILOGUE_PER_CHANNEL
    row_units = -(-geom.OH // geom.rows)
    units = row_units * -(-geom.M // geom.mchunk)
    pack = units * geom.packed_words() / L * (4 + 2 * geom.dot.kg)
    # every band of rows reads all of its group's weights: where they do not stay in L2
    # between bands (resnet50's last stage: 1-2.4 MB per conv), each band streams them from
    # L3 again (2 MB four times over took a 1x1 stride-2 conv to 150 GMAC/s)
    weights = geom.M * geom.groups_k * geom.dot.kg * geom.KH * geom.KW
    stream = 0.0
    if weights * geom.groups > tun.l2_bytes // 2:
        stream = row_units * weights * WEIGHT_STREAM_COST
    # a channel block's weights past L1 come from L2 again for each further tile of a band
    # (32 bytes per cycle), which costs where the taps read several phase planes (strided
    # convs): resnet50's 3x3 stride-2 conv on 512 channels (74 KB of weights per block of 16)
    # ran 0.63 ms with four tiles of 16 positions per block, 0.53 ms with one of 4 vectors of 6
    # channels; its stride-1 3x3 convs ran the other way round (0.49 ms and 0.56-0.60 ms), so
    # they are left to the dot-product count (Xeon, in the network: isolated, with cold caches,
    # both took 0.50-0.55 ms either way)
    l2 = rereads * -(-geom.M // mr) / 16
    return (dots + epilogue + pack + stream + l2 + units * 200) * geom.images * geom.groups


def _amx_tile_cost(geom: QConvSpec) -> float:
    """An AMX kernel's dot products for one column of tiles (every channel block at one block
    of positions): per K chunk and tap a TDPBSUD per accumulator tile (or the wait on the last
    one, where a channel block has too few to hide it) or the tile loads, whichever is longer;
    then the accumulators stored and read back as vectors."""
    nv, steps = geom.nv, geom.chunks * geom.KH * geom.KW

    def block(m: int) -> float:
        nmt = -(-m // 16)
        step = max(nmt * nv * AMX_DP, AMX_CHAIN, (nmt + nv) * AMX_MOVE)
        return steps * step + nmt * nv * AMX_MOVE + m * nv

    full, tail = divmod(geom.M, geom.mr)
    return full * block(geom.mr) + (block(tail) if tail else 0)


# AMX in the planner's units (a vector dot product, about half a cycle): a TDPBSUD keeps the
# tile unit 16 cycles, the next one into the same accumulators waits for it about 52, a tile
# load or store takes about 8
AMX_DP, AMX_CHAIN, AMX_MOVE = 32, 104, 16
# whether int8 convs use AMX where the target has it: "auto" where the planner's estimate says
# so, "always" or "never" (tests)
AMX_POLICY = "auto"

# instructions (as dot products) per channel and tile to set up the epilogue
EPILOGUE_PER_CHANNEL = 5
# dot products' time per weight byte streamed from L3 (about 8 bytes per cycle, two dot
# products per cycle)
WEIGHT_STREAM_COST = 0.25


# thread counts a plan is weighed at (the runtime's thread count is known only when it runs)
PLAN_THREADS = (1, 2, 4)


def _idle_factor(geom: QConvSpec) -> float:
    """Work plus idle time over work, averaged over PLAN_THREADS: n times the largest share
    n threads get of the units (split by cost as the kernel splits them) over the total. Units
    of unequal size (a short last band of rows) leave threads waiting at the node's end."""
    costs = unit_costs(geom)
    total = sum(costs)
    return sum(n * makespan(costs, n) for n in PLAN_THREADS) / (len(PLAN_THREADS) * total)


def _registers(tun: Tuning, lanes: int) -> int:
    """Vector registers for int32 vectors of `lanes`: the tuning's where that is its width,
    else 32 on AArch64 and, conservatively, 16 elsewhere."""
    if tun.vector_bits // 32 == lanes:
        return tun.registers
    return 32 if tun.arch == "aarch64" else 16


def _tile_shapes(spec: QConvSpec, tun: Tuning) -> list[tuple[int, int]]:
    """(mr, nv) a kernel may take: AMX's one or two blocks of 16 channels by one or two of 16
    positions; the vector kernel's as many channels as the registers hold beside nv vectors."""
    if spec.dot.kind == "amx":
        return [(mr, nv) for nv in (2, 1) for mr in ((32, 16) if spec.M > 16 else (16,))]
    regs = _registers(tun, spec.dot.lanes)
    return [(min(spec.M, max(1, (regs - 2 - nv) // nv), 16), nv) for nv in (4, 3, 2, 1)]


def _plan(spec: QConvSpec, tun: Tuning, min_units: int = 8) -> tuple[float, QConvSpec] | None:
    """Rows per unit, tile shape and channel chunks: the cheapest estimate among the shapes
    whose packed input fits the stack budget; units split further by output channels where
    there are fewer than `min_units` (the threads need some each). Returns (estimate, spec)."""
    best = None
    for rows in range(1, spec.OH + 1):
        for mr, nv in _tile_shapes(spec, tun):
            geom = replace(spec, rows=rows, mr=mr, nv=nv, mchunk=spec.M)
            if geom.packed_bytes() > PACK_BUDGET and rows > 1:
                continue
            row_units = -(-spec.OH // rows)
            base = spec.images * spec.groups * row_units
            chunkings = {1}
            if base < min_units and spec.M > mr:
                want = min(-(-spec.M // mr), -(-min_units // base))
                chunkings = {want, min(-(-spec.M // mr), 2 * want)}
            for want in chunkings:
                per = -(-spec.M // want)  # channels per chunk, rounded up to whole tiles
                g = replace(geom, mchunk=-(-per // mr) * mr)
                cost = _units_cost(g, tun) * _idle_factor(g)
                if best is None or cost < best[0]:
                    best = (cost, g)
    if best is None or best[1].packed_bytes() > 4 * PACK_BUDGET:
        return None
    return best


def lower_conv_integer(module, node: Node, func: str, tun: Tuning):
    from .lower import KernelInfo

    body = node.attrs["body"]
    conv = body.nodes[0]
    if conv.op != "conv_integer":
        return None
    x_b, w_b = conv.inputs[0], conv.inputs[1]
    ext = list(node.inputs)
    pos = {id(v): i for i, v in enumerate(body.inputs)}
    xi, wi = pos[id(x_b)], pos[id(w_b)]
    bi = pos[id(conv.inputs[2])] if len(conv.inputs) > 2 else None
    w = ext[wi]
    if (x_b.type.rank != 4 or not w.is_const or (bi is not None and not ext[bi].is_const)):
        return None
    g = conv.attrs["groups"]
    OC, Cg, KH, KW = w.shape
    if Cg == 1 and g > 1:  # depthwise: no K to take in groups; the plane kernel
        return lower_depthwise_integer(module, node, func, tun, (xi, wi, bi))
    if w.dtype != "int8":
        return None
    wz = np.atleast_1d(np.asarray(conv.attrs["w_zero_point"]))
    if np.any(wz != 0):
        return None
    strides, dil, pads = _spatial(conv.attrs, 2)
    N, C, H, W = x_b.shape
    OH, OW = conv.outputs[0].shape[2:]
    M = OC // g
    wdata = np.asarray(w.data, np.int8)
    dot = dot_for(tun, conv_weight_groups(wdata, 4))
    if dot is None:
        return None
    kg, L = dot.kg, dot.lanes
    stored_signed = x_b.dtype == "int8"
    xz = int(np.atleast_1d(conv.attrs["x_zero_point"])[0])
    fl = flip(dot, stored_signed)
    pad_byte = (xz & 0xFF) ^ fl
    # bias + (off - zx) * sum_k w: the accumulator of the instruction's values, made exact
    rowsum = wdata.reshape(OC, -1).astype(np.int64).sum(axis=1)
    bias = np.zeros(OC, np.int64) if bi is None else np.asarray(ext[bi].data, np.int64)
    total = bias + (offset(dot, stored_signed) - xz) * rowsum
    if np.abs(total).max(initial=0) >= 1 << 31:
        return None
    bias_table = total.astype(np.int32)
    spec = QConvSpec(M=M, Cg=Cg, KH=KH, KW=KW, images=N, groups=g, H=H, W=W, OH=OH, OW=OW,
                     strides=tuple(strides), dilations=tuple(dil), pads=tuple(pads), x_buf=xi,
                     w_buf=wi, c_buf=0, dot=dot, mr=1, nv=1, rows=1, mchunk=M, xor=fl,
                     pad_byte=pad_byte, out_dtype=node.outputs[0].dtype)
    plan = _plan(spec, tun)
    if isa.has_amx_int8(tun) and AMX_POLICY != "never":
        chunks = -(-spec.groups_k // AMX_TILE)  # K in equal chunks of at most 16 quads
        amx = _plan(replace(spec, dot=Dot("amx", 16, 4, False),
                            kq=-(-spec.groups_k // chunks)), tun)
        if amx is not None and (plan is None or AMX_POLICY == "always" or amx[0] < plan[0]):
            plan = amx
    if plan is None:
        return None
    spec = plan[1]
    amx = spec.dot.kind == "amx"
    if amx:
        packed = pack_conv_weights_amx(wdata, g, spec.mr, spec.kq)
    else:
        packed = pack_conv_weights(wdata, g, kg, spec.mr)
    holder: list = [None]
    # AMX starts its accumulators from zero: the epilogue adds the bias
    epi, tables, dtypes = int_epilogue(node, ext, M, OH * OW, L, holder, [bias_table],
                                       bias_in_acc=not amx)
    spec.c_buf, spec.epilogue, spec.bufs_holder = len(dtypes) - 1, epi, holder
    spec.bias_buf = None if amx else len(ext)
    emit_qconv_kernel(module, func, spec, len(dtypes))
    args: list = list(ext)
    args[wi] = ("param", f"{node.name}.w_packed", packed)
    args += [("param", f"{node.name}.bias", bias_table)]
    args += [("param", f"{node.name}.table{i}", t) for i, t in enumerate(tables)]
    return KernelInfo(func, _describe(node), args + [node.outputs[0]],
                      kernel=f"int8-{spec.dot.kind}")


def lower_depthwise_integer(module, node: Node, func: str, tun: Tuning, slots) -> object | None:
    """A depthwise conv_integer (one input channel per group, any multiplier) and its epilogue
    on kernel_dwconv's plane kernel with integer slots: the input minus its zero point (so the
    padding is 0), the weights minus theirs, int32 sums; vpmaddwd pairs of rows of taps on
    x86, int32 multiply-adds elsewhere. The bias joins the int32 table the epilogue adds."""
    from .kernel_dwconv import SCRATCH_LIMIT, DepthwiseSpec, emit_depthwise_kernel
    from .lower import KernelInfo, _plane_rows, _row_tuning

    body = node.attrs["body"]
    conv = body.nodes[0]
    xi, wi, bi = slots
    ext = list(node.inputs)
    x_b, w = conv.inputs[0], ext[wi]
    if (x_b.dtype not in ("int8", "uint8") or w.dtype not in ("int8", "uint8")
            or conv.attrs.get("layout", "NCHW") != "NCHW" or tun.vector_bits < 128):
        return None
    strides, dil, pads = _spatial(conv.attrs, 2)
    N, _, H, W = x_b.shape
    OC, _, KH, KW = w.shape
    OH, OW = conv.outputs[0].shape[2:]
    g = conv.attrs["groups"]
    tun = _row_tuning(tun, OW)
    pairs = tun.arch == "x86_64"
    arith = "pairs" if pairs else "int32"
    xz = int(np.atleast_1d(conv.attrs["x_zero_point"])[0])
    wz = np.broadcast_to(np.atleast_1d(np.asarray(conv.attrs["w_zero_point"], np.int64)),
                         (OC,))
    # exact in int16 (x86 pairs) and int32: both centered operands are within +-255
    wc = np.asarray(w.data, np.int64).reshape(OC, KH, KW) - wz[:, None, None]
    if pairs:
        wp = np.zeros((OC, -(-KH // 2), KW, 2), np.int16)
        for kh in range(KH):
            wp[:, kh // 2, :, kh % 2] = wc[:, kh, :]
        words = wp.view(np.int32).reshape(OC, -1)
    else:
        words = wc.reshape(OC, KH * KW).astype(np.int32)
    madd_bits = 512 if tun.widest >= 512 and tun.masked_stores_fast else (
        256 if tun.widest >= 256 else 128)
    spec = DepthwiseSpec(channels=OC, multiplier=OC // g, images=N, H=H, W=W, OH=OH, OW=OW,
                         KH=KH, KW=KW, strides=tuple(strides), dilations=tuple(dil),
                         pads=tuple(pads), x_buf=xi, w_buf=wi, c_buf=0, lanes=tun.lanes,
                         rows=_plane_rows(tun, words.shape[1]),
                         masked_stores_fast=tun.masked_stores_fast, arith=arith,
                         x_dtype=x_b.dtype, x_zero_point=xz, out_dtype=node.outputs[0].dtype,
                         madd_bits=madd_bits,
                         dpwssd=pairs and isa.int8_dot(
                             replace(tun, vector_bits=madd_bits)) == "vnni")
    if spec.scratch_floats() > SCRATCH_LIMIT or strides[1] > 4:
        return None
    bias = (np.zeros(OC, np.int32) if bi is None
            else np.ascontiguousarray(np.asarray(ext[bi].data, np.int32).reshape(OC)))
    holder: list = [None]
    epi, tables, dtypes = int_epilogue(node, ext, 1, OH * OW, tun.lanes, holder, [bias])
    spec.c_buf, spec.epilogue, spec.bufs_holder = len(dtypes) - 1, epi, holder
    emit_depthwise_kernel(module, func, spec, len(dtypes))
    args: list = list(ext)
    args[wi] = ("param", f"{node.name}.w_words", np.ascontiguousarray(words))
    args += [("param", f"{node.name}.bias", bias)]
    args += [("param", f"{node.name}.table{i}", t) for i, t in enumerate(tables)]
    return KernelInfo(func, _describe(node), args + [node.outputs[0]], kernel="int8-depthwise")


def lower_matmul_integer(module, node: Node, func: str, tun: Tuning):
    """A matmul_integer of activations A [..., M, K] by constant int8 weights B [K, N] (zero
    point 0) and its fused epilogue on kernel_qconv's matmul kernel: vectors over N, A's rows
    (the batch folded in) in blocks of mr, the kg activations of a step broadcast as one word.
    The activations' flip and zero point are a per-column constant in the bias, as for conv."""
    from .lower import KernelInfo

    body = node.attrs["body"]
    mm = body.nodes[0]
    if mm.op != "matmul_integer":
        return None
    ext = list(node.inputs)
    pos = {id(v): i for i, v in enumerate(body.inputs)}
    a_b, b_b = mm.inputs
    ai, wi = pos[id(a_b)], pos[id(b_b)]
    w = ext[wi]
    if (not w.is_const or w.dtype != "int8" or w.type.rank != 2 or a_b.type.rank < 2
            or np.any(np.atleast_1d(np.asarray(mm.attrs["b_zero_point"])) != 0)):
        return None
    K, N = w.shape
    rows = int(np.prod(a_b.shape[:-1]))
    wdata = np.asarray(w.data, np.int8)
    dot = dot_for(tun, matmul_weight_groups(wdata, 4))
    if dot is None:
        return None
    L = dot.lanes
    stored_signed = a_b.dtype == "int8"
    za = int(np.atleast_1d(mm.attrs["a_zero_point"])[0])
    colsum = wdata.astype(np.int64).sum(axis=0)
    total = (offset(dot, stored_signed) - za) * colsum
    if np.abs(total).max(initial=0) >= 1 << 31:
        return None
    bias = total.astype(np.int32)
    nvec = -(-N // L)
    regs = _registers(tun, L)
    if rows == 1:  # one row: as many independent accumulator chains as the registers allow
        nv, mr = min(nvec, max(1, min(8, (regs - 2) // 2))), 1
    else:
        nv = min(nvec, 4)
        mr = min(rows, max(1, (regs - 2 - nv) // nv), 8)
    out = node.outputs[0]
    holder: list = [None]
    epi, tables, dtypes = _matmul_int_epilogue(node, ext, N, L, holder)
    spec = QMatmulSpec(rows=rows, N=N, K=K, a_buf=ai, w_buf=wi, bias_buf=len(ext),
                       c_buf=len(dtypes) - 1,
                       dot=dot, mr=mr, nv=nv, xor=flip(dot, stored_signed),
                       out_dtype=out.dtype, epilogue=epi, bufs_holder=holder)
    emit_qmatmul_kernel(module, func, spec, len(dtypes))
    args: list = list(ext)
    args[wi] = ("param", f"{node.name}.w_packed", pack_matmul_weights(wdata, dot.kg, spec.nr))
    padded = np.zeros(spec.panels * spec.nr, np.int32)  # whole vectors for every panel
    padded[:N] = bias
    args += [("param", f"{node.name}.bias", padded)]
    args += [("param", f"{node.name}.table{i}", t) for i, t in enumerate(tables)]
    return KernelInfo(func, _describe(node), args + [out], kernel=f"int8-{dot.kind}",
                      tile=(mr, nv))


def _matmul_int_epilogue(node: Node, ext: list, N: int, lanes: int, holder: list):
    """The fused epilogue of an integer matmul as a callback (b, acc, row, col0, mask) on the
    int32 accumulator, which the kernel starts from the per-column bias (the buffer after the
    inputs): vectors along the last axis, `row` the flat row of the output (its batch indices
    derived from it); returns (callback, the epilogue's own tables, the kernel's buffer
    dtypes)."""
    acc = te.Var("acc", "int32")
    expr, tables = _body_expr(node, ext, lambda idx: acc, 1)
    shape = node.outputs[0].shape
    rank = len(shape)
    out_dtype = node.outputs[0].dtype
    dtypes = ([v.dtype for v in ext] + ["int32"] + [_te_dtype(t) for t in tables] + [out_dtype])
    col = f"e{rank - 1}"
    masked = _mask_loads(expr, col)

    def cb(b, accv, row, col0, mask):
        env_ = {"acc": accv, col + "#base": col0, col: col0, col + "#end": I64(N)}
        rem = row
        for d in reversed(range(rank - 1)):
            env_[f"e{d}"] = b.srem(rem, I64(shape[d])) if d > 0 else rem
            rem = b.sdiv(rem, I64(shape[d]))
        r = Renderer(b, holder[0], dtypes, lanes, col, b.function.entry_basic_block)
        return r.to_storage(r.vec(r.render(masked if mask is not None else expr, env_)),
                            out_dtype)

    return cb, tables, dtypes
