"""Lowering of the integer anchors (`conv_integer`, `matmul_integer` and their fused epilogues)
onto the kernels of kernel_qconv.py; registered in `lower.KERNELS`. A node these kernels do not
take (no dot-product instructions on the target, weights with a zero point, a depthwise conv)
returns None and goes to the tensor-expression kernel, which computes the same integers.
"""
from __future__ import annotations

import numpy as np

from neo.ir import Node
from neo.ir.ops_nn import _spatial

from . import te
from .kernel_qconv import (
    QConvSpec,
    conv_weight_groups,
    dot_for,
    emit_qconv_kernel,
    flip,
    offset,
    pack_conv_weights,
)
from .kernel_te import KernelContext, _mask_loads
from .llvm_util import I64
from .render import Renderer
from .te_ops import COMPUTES
from .tuning import Tuning

# stack bytes a conv unit may pack its input rows into
PACK_BUDGET = 64 * 1024


def _describe(node: Node) -> str:
    return "+".join(n.op for n in node.attrs["body"].nodes)


def _te_dtype(arr: np.ndarray) -> str:
    from neo.ir.types import dtype_name

    return dtype_name(arr.dtype)


def int_epilogue(node: Node, ext: list, M: int, plane: int, lanes: int, holder: list,
                 extra_tables: list):
    """The fused epilogue of an integer conv as a callback (b, acc, m, col0, img, grp, mask):
    the body after the anchor, on the int32 accumulator plus the per-channel int32 table
    extra_tables[0] (the buffer after the inputs), indexed (n, oc, 0, col) over the flat output
    plane; returns (callback, the epilogue's own tables, the kernel's buffer dtypes: inputs,
    extra tables, own tables, output)."""
    body = node.attrs["body"]
    anchor = body.nodes[0]
    bias_buf = len(ext)
    ctx = KernelContext(len(ext) + len(extra_tables))
    tensors = [te.buffer_tensor(i, v.shape, v.dtype) for i, v in enumerate(ext)]
    env = {id(v): t for v, t in zip(body.inputs, tensors)}
    acc = te.Var("acc", "int32")
    out = anchor.outputs[0]
    env[id(out)] = te.Tensor(out.shape, "int32",
                             lambda idx: acc + te.Load(bias_buf, idx[1], "int32"))
    for n in body.nodes[1:]:
        ins = [env[id(v)] for v in n.inputs]
        fn = COMPUTES[n.op](n.attrs, n.outputs[0].type, ins, ctx)
        env[id(n.outputs[0])] = te.Tensor(n.outputs[0].shape, n.outputs[0].dtype, fn)
    final = env[id(body.outputs[0])]
    rank = len(node.outputs[0].shape)
    vars_ = tuple(te.Var(f"e{d}") for d in range(rank))
    expr = final(vars_)
    tables = list(ctx.tables)
    dtypes = ([v.dtype for v in ext] + [_te_dtype(t) for t in extra_tables]
              + [_te_dtype(t) for t in tables] + [node.outputs[0].dtype])
    pinned, col = {"e2": I64(0)}, "e3"
    if rank == 4 and node.outputs[0].shape[3] == 1:
        pinned, col = {"e3": I64(0)}, "e2"
    masked = _mask_loads(expr, col)
    out_dtype = node.outputs[0].dtype

    def cb(b, accv, m, col0, img, grp, mask):
        env_ = {"e0": img, "e1": b.add(b.mul(grp, I64(M)), m), **pinned, "acc": accv,
                col + "#base": col0, col: col0, col + "#end": I64(plane)}
        r = Renderer(b, holder[0], dtypes, lanes, col, b.function.entry_basic_block)
        return r.to_storage(r.vec(r.render(masked if mask is not None else expr, env_)),
                            out_dtype)

    return cb, tables, dtypes


def _pick_tile(tun: Tuning, lanes: int, M: int, positions: int) -> tuple[int, int]:
    """(MR, NV) for the conv tile: register budget, then the fewest padded positions."""
    regs = tun.registers if tun.vector_bits // 32 == lanes else 16
    best = None
    for nv in (4, 3, 2, 1):
        mr = min(M, (regs - 1 - nv) // nv, 8)
        if mr < 1:
            continue
        nr = nv * lanes
        waste = (-(-positions // nr) * nr) / max(positions, 1)
        key = (round(waste, 2), -nv * mr)
        if best is None or key < best[0]:
            best = (key, mr, nv)
    return best[1], best[2]


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
    if (x_b.type.rank != 4 or not w.is_const or w.dtype != "int8"
            or (bi is not None and not ext[bi].is_const)):
        return None
    wz = np.atleast_1d(np.asarray(conv.attrs["w_zero_point"]))
    if np.any(wz != 0):
        return None
    g = conv.attrs["groups"]
    OC, Cg, KH, KW = w.shape
    if Cg == 1 and g > 1:
        return None  # depthwise: the TE kernel (no K to take in groups)
    strides, dil, pads = _spatial(conv.attrs, 2)
    if strides[1] > 4:
        return None
    N, C, H, W = x_b.shape
    OH, OW = conv.outputs[0].shape[2:]
    M = OC // g
    wdata = np.asarray(w.data, np.int8)
    dot = dot_for(tun, conv_weight_groups(wdata, 4))
    if dot is None:
        return None
    kg, L = dot.kg, dot.lanes
    wp = W + pads[1] + pads[3]
    cgk = -(-Cg // kg)
    # output rows per unit: the packed rows within the budget, and enough units for the threads
    per_row = cgk * kg * wp
    halo = (KH - 1) * dil[0] + 1
    rows = max(1, min(OH, (PACK_BUDGET // per_row - halo) // strides[0] + 1))
    if cgk * kg * ((rows - 1) * strides[0] + halo) * wp > 4 * PACK_BUDGET:
        return None
    flat_len = (rows - 1) * wp + OW if strides[1] == 1 else OW
    mr, nv = _pick_tile(tun, L, M, flat_len)
    row_units = -(-OH // rows)
    mchunk = M
    base_units = N * g * row_units
    if base_units < 8 and M > mr:
        want = min(-(-M // mr), -(-8 // base_units))
        mchunk = -(-(-(-M // want)) // mr) * mr
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
    packed = pack_conv_weights(wdata, g, kg, mr)
    holder: list = [None]
    epi, tables, dtypes = int_epilogue(node, ext, M, OH * OW, L, holder, [bias_table])
    spec = QConvSpec(M=M, Cg=Cg, KH=KH, KW=KW, images=N, groups=g, H=H, W=W, OH=OH, OW=OW,
                     strides=tuple(strides), dilations=tuple(dil), pads=tuple(pads), x_buf=xi,
                     w_buf=wi, c_buf=len(dtypes) - 1, dot=dot, mr=mr, nv=nv, rows=rows,
                     mchunk=mchunk, xor=fl, pad_byte=pad_byte, out_dtype=node.outputs[0].dtype,
                     epilogue=epi, bufs_holder=holder)
    emit_qconv_kernel(module, func, spec, len(dtypes))
    args: list = list(ext)
    args[wi] = ("param", f"{node.name}.w_packed", packed)
    args += [("param", f"{node.name}.bias", bias_table)]
    args += [("param", f"{node.name}.table{i}", t) for i, t in enumerate(tables)]
    return KernelInfo(func, _describe(node), args + [node.outputs[0]], kernel=f"int8-{dot.kind}")
