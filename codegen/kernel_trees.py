"""Tree ensembles (`tree_ensemble`) and linear boosters (`linear_booster`) as native kernels.

The forest is data, not code: compiling 500 trees of 255 nodes as branches (what TL2cgen does)
takes LLVM minutes and mispredicts a branch at every other node. Instead the nodes are packed into
one table of 16-byte records, and a small branch-free loop walks them:

    record = {x offset, threshold, left child offset, leaf value}     (offsets in bytes)

- Each tree is renumbered breadth-first so that the right child sits right after the left one:
  `next = left + 16 * (x >= threshold)`. A leaf points to itself (`left = self - 16`, threshold
  -inf), so a walk runs a fixed number of steps, the tree's depth, with no test for having
  arrived; the leaf value is in the record the walk ends on.
- Missing values cost nothing per step: a block of rows is first copied to the stack twice, NaN
  as +inf in the first copy and as -inf in the second, and a node that sends missing values left
  reads the second (its x offset includes it): -inf < threshold goes left, +inf goes right, and
  real infinities are unchanged. Categorical splits read a third, raw copy and test the category
  `int(x)` (0 <= x < 32 * words) in the node's bitset, whose offset rides in the threshold slot.
  Only the features the splits use are copied.
- Walks run in lockstep, K at a time (independent load chains the CPU overlaps): K rows through
  one tree (batch mode: blocks of rows, trees outer, so a tree's nodes stay in L1 while every row
  of the block walks it), or, for a batch smaller than K, K trees for one row.
- Trees are reordered so that packed tree j adds to group j % G, keeping each group's trees in
  their original order (missing ones are zero trees); every group sums its leaves in float32 in
  that order, starting from its base margin, as xgboost's CPU predictor does, so the margins
  agree to the bit. DART trees multiply their leaf by the tree weight first.
- The post-transform is XGBoost's: sigmoid as common::Sigmoid, softmax with a double sum, expf
  from the C library (the one xgboost calls), so outputs agree to the bit too.
- Row blocks (or rows) are split statically across the runtime's tasks.

Hardware gathers (AVX2 vpgatherdd, 8 walks per vector) measured no faster than the scalar
lockstep on AMD Zen 4, so the kernel is the same scalar code on every target.

The linear booster is XGBoost's GBLinear::Pred: per row and group, bias + base margin, then
x[f] * w[f, g] added feature by feature, skipping NaN; rows are spread across tasks.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from neo.ir.ops_ml import LinearBooster, TreeEnsemble

from .llvm_util import (
    F32,
    F64,
    I1,
    I8,
    I32,
    I64,
    declare,
    for_range,
    gep,
    intrinsic,
    kernel_function,
    stack_buffer,
    task_range,
)

LOCKSTEP = 8  # walks in flight per step: enough independent load chains to hide L1/L2 latency
BLOCK_ROWS = 64  # rows per block in batch mode: their copies stay in L1 while all trees pass
STACK_BUDGET = 256 * 1024  # bytes of row copies per task
_DEFAULT_LEFT = 1 << 31  # categorical records only
_CATEGORICAL = 1 << 30
_OFFSET_MASK = _CATEGORICAL - 1
_REC = 16  # bytes per node record


class LoweringLimit(NotImplementedError):
    """A forest this kernel cannot take (codegen reports it as unsupported)."""


@dataclass
class PackedForest:
    nodes: np.ndarray  # int32 [n, 4]: x offset|flags, threshold bits, left offset, value bits
    roots: np.ndarray  # int32 [Tp]: byte offsets of the roots
    depths: np.ndarray  # int32 [Tp]
    weights: np.ndarray | None  # float32 [Tp]
    category_bits: np.ndarray | None  # int32 [*] (uint32 bit patterns)
    category_words: int
    columns: np.ndarray  # int32 [C]: the input features the splits read, in copy order
    copies: int  # 2 (NaN as +inf, NaN as -inf), 3 with the raw copy for categorical splits
    num_trees: int  # Tp: packed, with padding trees

    @property
    def row_floats(self) -> int:
        return self.copies * len(self.columns)

    def contiguous(self, num_features: int) -> bool:
        """Whether the splits read every feature, so the copy needs no column table."""
        return len(self.columns) == num_features and bool(
            (self.columns == np.arange(num_features)).all())


def pack_forest(e: TreeEnsemble, multiple: int = 1) -> PackedForest:
    """The kernel's tables: trees in group-interleaved order (tree j adds to group j % G), padded
    with zero trees to a multiple of `multiple`, nodes breadth-first with siblings adjacent."""
    G = e.num_groups
    per_group: list[list[int]] = [[] for _ in range(G)]
    for t in range(e.num_trees):
        per_group[int(e.tree_group[t])].append(t)
    slots = max((len(p) for p in per_group), default=0)
    order = [per_group[g][k] if k < len(per_group[g]) else -1
             for k in range(slots) for g in range(G)]
    while len(order) % multiple or not order:
        order.append(-1)
    inner = e.left >= 0
    columns = np.unique(e.feature[inner]) if inner.any() else np.zeros(1, np.int32)
    col_of = {int(f): i for i, f in enumerate(columns.tolist())}
    C = len(columns)
    has_cat = e.has_categorical
    copies = 3 if has_cat else 2
    words = 0 if e.category_bits is None else e.category_bits.shape[1]
    neg_inf = int(np.float32(-np.inf).view(np.int32))
    thr_bits = e.threshold.astype(np.float32).view(np.int32).tolist()
    val_bits = e.value.astype(np.float32).view(np.int32).tolist()
    left, right = e.left.tolist(), e.right.tolist()
    feature, dleft = e.feature.tolist(), e.default_left.tolist()
    cat_node = e.category_node.tolist() if has_cat else None
    recs: list[list[int]] = []
    roots, depths, weights = [], [], []
    for t in order:
        base = len(recs)
        roots.append(base * _REC)
        weights.append(1.0 if t < 0 or e.tree_weight is None else float(e.tree_weight[t]))
        if t < 0:  # a padding tree: one leaf adding 0
            recs.append([0, neg_inf, (base - 1) * _REC, 0])
            depths.append(0)
            continue
        recs.append([])
        queue = deque([(int(e.tree_root[t]), base, 0)])
        depth = 0
        while queue:
            n, idx, d = queue.popleft()
            depth = max(depth, d)
            if left[n] < 0:  # a leaf walks to itself: left + 16 = self
                recs[idx] = [0, neg_inf, (idx - 1) * _REC, val_bits[n]]
                continue
            kids = len(recs)
            recs.extend([[], []])
            col = col_of[feature[n]]
            if cat_node is not None and cat_node[n] >= 0:
                word = 4 * (2 * C + col) | _CATEGORICAL | (_DEFAULT_LEFT if dleft[n] else 0)
                thr = cat_node[n] * words  # the bitset's offset rides in the threshold slot
            else:
                word, thr = 4 * ((C if dleft[n] else 0) + col), thr_bits[n]
            recs[idx] = [word, thr, kids * _REC, 0]
            queue.append((left[n], kids, d + 1))
            queue.append((right[n], kids + 1, d + 1))
        depths.append(depth)
    if len(recs) * _REC >= 1 << 31:
        raise LoweringLimit(f"{len(recs)} tree nodes; at most {(1 << 31) // _REC} are supported")
    table = np.array(recs, dtype=np.int64)
    table = (table & 0xFFFFFFFF).astype(np.uint32).view(np.int32).reshape(-1, 4)
    return PackedForest(
        nodes=np.ascontiguousarray(table), roots=np.array(roots, np.int32),
        depths=np.array(depths, np.int32),
        weights=np.array(weights, np.float32) if e.tree_weight is not None else None,
        category_bits=e.category_bits.reshape(-1).view(np.int32).copy() if has_cat else None,
        category_words=words, columns=columns.astype(np.int32), copies=copies,
        num_trees=len(order))


# -- kernel emission ---------------------------------------------------------------------------


@dataclass
class _Tables:
    nodes: ir.Value
    weights: ir.Value | None
    cats: ir.Value | None
    words: int


def _const_f32(v: float) -> ir.Constant:
    return ir.Constant(F32, float(np.float32(v)))


def _byte(b: ir.IRBuilder, ptr: ir.Value, offset: ir.Value) -> ir.Value:
    return gep(b, ptr, offset, I8)


def _step(b: ir.IRBuilder, t: _Tables, node: ir.Value, xrow: ir.Value) -> ir.Value:
    """One level of one walk: the next record's byte offset (i32)."""
    rec = _byte(b, t.nodes, b.zext(node, I64))
    w0 = b.load(rec, typ=I32)
    thr_i = b.load(_byte(b, rec, I64(4)), typ=I32)
    left = b.load(_byte(b, rec, I64(8)), typ=I32)
    off = b.and_(w0, I32(_OFFSET_MASK)) if t.cats is not None else w0
    x = b.load(_byte(b, xrow, b.zext(off, I64)), typ=F32)
    right = b.fcmp_ordered(">=", x, b.bitcast(thr_i, F32))  # no NaN in the copies
    if t.cats is not None:
        is_cat = b.icmp_unsigned("!=", b.and_(w0, I32(_CATEGORICAL)), I32(0))
        valid = b.and_(b.fcmp_ordered(">=", x, _const_f32(0.0)),
                       b.fcmp_ordered("<", x, _const_f32(32.0 * t.words)))
        take = b.and_(is_cat, valid)
        c = b.fptosi(b.select(take, x, _const_f32(0.0)), I32)
        idx = b.select(take, b.add(thr_i, b.ashr(c, I32(5))), I32(0))
        word = b.load(gep(b, t.cats, b.zext(idx, I64), I32), typ=I32)
        in_set = b.and_(take, b.trunc(b.lshr(word, b.and_(c, I32(31))), I1))
        nan = b.fcmp_unordered("uno", x, x)
        default_right = b.icmp_signed(">=", w0, I32(0))
        right = b.select(is_cat, b.select(nan, default_right, in_set), right)
    return b.add(left, b.shl(b.zext(right, I32), I32(4)))


def _leaf(b: ir.IRBuilder, t: _Tables, node: ir.Value, tree: ir.Value) -> ir.Value:
    v = b.load(_byte(b, _byte(b, t.nodes, b.zext(node, I64)), I64(12)), typ=F32)
    if t.weights is not None:
        v = b.fmul(v, b.load(gep(b, t.weights, tree, F32), typ=F32))
    return v


def _walk(b, t: _Tables, starts: list[ir.Value], xrows: list[ir.Value], steps: ir.Value,
          slots: list[ir.Value]) -> list[ir.Value]:
    """Walk len(starts) trees/rows in lockstep for `steps` levels; returns the end records."""
    for s, v in zip(slots, starts):
        b.store(v, s)
    with for_range(b, 0, b.sext(steps, I64), 1, "level"):
        cur = [b.load(s, typ=I32) for s in slots]
        nxt = [_step(b, t, n, x) for n, x in zip(cur, xrows)]
        for s, v in zip(slots, nxt):
            b.store(v, s)
    return [b.load(s, typ=I32) for s in slots]


def _copy_rows(b: ir.IRBuilder, X: ir.Value, cols: ir.Value | None, F: int, C: int, copies: int,
               r0: ir.Value, rows: int, xs: ir.Value) -> None:
    """xs[r][copy][c] = X[r0 + r][columns[c]]: NaN as +inf (copy 0), as -inf (copy 1), raw (2)."""
    pinf, ninf = _const_f32(np.inf), _const_f32(-np.inf)
    with for_range(b, 0, rows, 1, "copy") as r:
        src = gep(b, X, b.mul(b.add(r0, r), I64(F)), F32)
        dst = gep(b, xs, b.mul(r, I64(copies * C)), F32)
        with for_range(b, 0, C, 1, "col") as c:
            f = c if cols is None else b.zext(b.load(gep(b, cols, c, I32), typ=I32), I64)
            x = b.load(gep(b, src, f, F32), typ=F32)
            nan = b.fcmp_unordered("uno", x, x)
            b.store(b.select(nan, pinf, x), gep(b, dst, c, F32))
            b.store(b.select(nan, ninf, x), gep(b, dst, b.add(c, I64(C)), F32))
            if copies == 3:
                b.store(x, gep(b, dst, b.add(c, I64(2 * C)), F32))


def _expf(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    # the C library's expf: the very function xgboost's transforms call
    return b.call(declare(b.module, "expf", F32, [F32]), [x])


def _emit_transform(b: ir.IRBuilder, transform: str, margins: list[ir.Value], out: ir.Value,
                    row: ir.Value) -> None:
    """XGBoost's PredTransform of one row's margins, stored at out[row * width]."""
    G = len(margins)
    if transform == "argmax":
        best, best_i = margins[0], I32(0)
        for g in range(1, G):
            gt = b.fcmp_ordered(">", margins[g], best)
            best = b.select(gt, margins[g], best)
            best_i = b.select(gt, I32(g), best_i)
        b.store(b.sitofp(best_i, F32), gep(b, out, row, F32))
        return
    if transform == "softmax":
        wmax = margins[0]
        for g in range(1, G):
            wmax = intrinsic(b, "llvm.maxnum", [margins[g], wmax])
        es = [_expf(b, b.fsub(m, wmax)) for m in margins]
        wsum = ir.Constant(F64, 0.0)
        for e in es:
            wsum = b.fadd(wsum, b.fpext(e, F64))
        denom = b.fptrunc(wsum, F32)
        vals = [b.fdiv(e, denom) for e in es]
    elif transform == "sigmoid":
        vals = []
        for m in margins:
            neg = b.fneg(m)
            clamp = _const_f32(88.7)
            arg = b.select(b.fcmp_ordered("<", clamp, neg), clamp, neg)  # std::min(-x, 88.7f)
            denom = b.fadd(b.fadd(_expf(b, arg), _const_f32(1.0)), _const_f32(1e-16))
            vals.append(b.fdiv(_const_f32(1.0), denom))
    elif transform == "exp":
        vals = [_expf(b, m) for m in margins]
    elif transform == "hinge":
        vals = [b.select(b.fcmp_ordered(">", m, _const_f32(0.0)), _const_f32(1.0),
                         _const_f32(0.0)) for m in margins]
    else:
        vals = margins
    base = b.mul(row, I64(G))
    for g, v in enumerate(vals):
        b.store(v, gep(b, out, b.add(base, I64(g)), F32))


def emit_tree_kernel(module: ir.Module, name: str, e: TreeEnsemble, transform: str, batch: int,
                     packed: PackedForest) -> None:
    """bufs: x [N, F], nodes, roots, depths, [weights], [category bits], [columns], out."""
    G, F = e.num_groups, e.num_features
    C, copies = len(packed.columns), packed.copies
    contiguous = packed.contiguous(F)
    nbufs = (4 + (packed.weights is not None) + (packed.category_bits is not None)
             + (not contiguous) + 1)
    fn, b, bufs = kernel_function(module, name, nbufs)
    # the walks must stay scalar: the SLP vectorizer turns 8 lockstep walks into AVX-512 gathers
    # where LLVM thinks them fast (znver4), and those are 2-3x slower; noimplicitfloat stops it
    fn.attributes.add("noimplicitfloat")
    X, nodes, roots, depths = bufs[:4]
    k = 4
    weights = cats = cols = None
    if packed.weights is not None:
        weights, k = bufs[k], k + 1
    if packed.category_bits is not None:
        cats, k = bufs[k], k + 1
    if not contiguous:
        cols, k = bufs[k], k + 1
    out = bufs[k]
    t = _Tables(nodes, weights, cats, packed.category_words)
    K = LOCKSTEP
    by_tree = batch < K
    row_bytes = 4 * packed.row_floats
    R = 1 if by_tree else max(K, min(BLOCK_ROWS, STACK_BUDGET // row_bytes // K * K))
    if R * row_bytes > STACK_BUDGET:
        raise LoweringLimit(f"the {C} features the splits use need {R * row_bytes} bytes of row "
                            f"copies per task; at most {STACK_BUDGET} are supported")
    slots = [b.alloca(I32, name=f"walk{i}") for i in range(K)]
    acc = stack_buffer(b, G * R, "acc")
    xs = stack_buffer(b, R * packed.row_floats, "rows")
    body = b.append_basic_block("body")
    b.branch(body)
    b.position_at_end(body)
    base = [_const_f32(v) for v in e.base_margin]
    Tp = packed.num_trees

    def acc_ptr(i):
        return gep(b, acc, i, F32)

    if by_tree:
        lo, hi = task_range(b, batch, fn.args[1], fn.args[2])
        with for_range(b, lo, hi, 1, "row") as row:
            _copy_rows(b, X, cols, F, C, copies, row, 1, xs)
            for g in range(G):
                b.store(base[g], acc_ptr(I64(g)))
            with for_range(b, 0, Tp, K, "tree") as j0:
                steps = I32(0)
                starts = []
                for i in range(K):
                    j = b.add(j0, I64(i))
                    starts.append(b.load(gep(b, roots, j, I32), typ=I32))
                    d = b.load(gep(b, depths, j, I32), typ=I32)
                    steps = b.select(b.icmp_signed(">", d, steps), d, steps)
                ends = _walk(b, t, starts, [xs] * K, steps, slots)
                for i in range(K):  # leaves added in tree order
                    j = b.add(j0, I64(i))
                    g = b.urem(j, I64(G)) if G > 1 else I64(0)
                    p = acc_ptr(g)
                    b.store(b.fadd(b.load(p, typ=F32), _leaf(b, t, ends[i], j)), p)
            _emit_transform(b, transform, [b.load(acc_ptr(I64(g)), typ=F32) for g in range(G)],
                            out, row)
        b.ret(I32(0))
        return

    nblocks = -(-batch // R)
    last_rows = batch - (nblocks - 1) * R
    lo, hi = task_range(b, nblocks, fn.args[1], fn.args[2])

    def block(r0: ir.Value, rows: int) -> None:
        _copy_rows(b, X, cols, F, C, copies, r0, rows, xs)
        for g in range(G):
            with for_range(b, 0, rows, 1, "init") as i:
                b.store(base[g], acc_ptr(b.add(I64(g * R), i)))
        with for_range(b, 0, Tp, 1, "tree") as j:
            root = b.load(gep(b, roots, j, I32), typ=I32)
            steps = b.load(gep(b, depths, j, I32), typ=I32)
            gbase = b.mul(b.urem(j, I64(G)), I64(R)) if G > 1 else I64(0)

            def lockstep(s0: ir.Value, n: int) -> None:
                first = gep(b, xs, b.mul(s0, I64(packed.row_floats)), F32)
                xrows = [gep(b, first, I64(i * packed.row_floats), F32) for i in range(n)]
                ends = _walk(b, t, [root] * n, xrows, steps, slots[:n])
                for i in range(n):
                    p = acc_ptr(b.add(gbase, b.add(s0, I64(i))))
                    b.store(b.fadd(b.load(p, typ=F32), _leaf(b, t, ends[i], j)), p)

            full, tail = divmod(rows, K)
            if full:
                with for_range(b, 0, full * K, K, "sub") as s0:
                    lockstep(s0, K)
            if tail:
                lockstep(I64(full * K), tail)
        with for_range(b, 0, rows, 1, "out") as i:
            margins = [b.load(acc_ptr(b.add(I64(g * R), i)), typ=F32) for g in range(G)]
            _emit_transform(b, transform, margins, out, b.add(r0, i))

    with for_range(b, lo, hi, 1, "block") as blk:
        r0 = b.mul(blk, I64(R))
        if last_rows == R:
            block(r0, R)
        else:
            with b.if_else(b.icmp_signed("<", blk, I64(nblocks - 1))) as (whole, part):
                with whole:
                    block(r0, R)
                with part:
                    block(r0, last_rows)
    b.ret(I32(0))


def emit_linear_kernel(module: ir.Module, name: str, m: LinearBooster, transform: str,
                       batch: int) -> None:
    """bufs: x [N, F], weights [F, G], out. Rows split across tasks."""
    fn, b, (X, W, out) = kernel_function(module, name, 3)
    G, F = m.num_groups, m.num_features
    sums = [b.alloca(F32, name=f"margin{g}") for g in range(G)]
    body = b.append_basic_block("body")
    b.branch(body)
    b.position_at_end(body)
    lo, hi = task_range(b, batch, fn.args[1], fn.args[2])
    start = (m.bias + m.base_margin).astype(np.float32)  # bias + base, in float32 as xgboost
    with for_range(b, lo, hi, 1, "row") as row:
        xrow = gep(b, X, b.mul(row, I64(F)), F32)
        for g in range(G):
            b.store(_const_f32(start[g]), sums[g])
        # feature by feature, every group: each group's sum in xgboost's order
        with for_range(b, 0, F, 1, "feature") as f:
            x = b.load(gep(b, xrow, f, F32), typ=F32)
            present = b.fcmp_ordered("ord", x, x)
            for g in range(G):
                w = b.load(gep(b, W, b.add(b.mul(f, I64(G)), I64(g)), F32), typ=F32)
                acc = b.load(sums[g], typ=F32)
                b.store(b.select(present, b.fadd(acc, b.fmul(x, w)), acc), sums[g])
        _emit_transform(b, transform, [b.load(p, typ=F32) for p in sums], out, row)
    b.ret(I32(0))


# -- lowering (codegen/lower.py: KERNELS) ------------------------------------------------------


def _only_node(fused, op: str):
    body = fused.attrs["body"]
    if len(body.nodes) != 1 or body.nodes[0].op != op:
        return None
    return body.nodes[0]


def lower_tree_ensemble(module: ir.Module, node, func: str, vector_bits: int):
    from .lower import KernelInfo, describe

    te = _only_node(node, "tree_ensemble")
    if te is None:
        return None
    x = node.inputs[0]
    batch = x.shape[0]
    model: TreeEnsemble = te.attrs["model"]
    packed = pack_forest(model, multiple=LOCKSTEP if batch < LOCKSTEP else 1)
    emit_tree_kernel(module, func, model, te.attrs["transform"], batch, packed)
    args: list = [x, ("param", f"{node.name}.nodes", packed.nodes),
                  ("param", f"{node.name}.roots", packed.roots),
                  ("param", f"{node.name}.depths", packed.depths)]
    if packed.weights is not None:
        args.append(("param", f"{node.name}.weights", packed.weights))
    if packed.category_bits is not None:
        args.append(("param", f"{node.name}.categories", packed.category_bits))
    if not packed.contiguous(model.num_features):
        args.append(("param", f"{node.name}.columns", packed.columns))
    units = batch if batch < LOCKSTEP else -(-batch // BLOCK_ROWS)
    return KernelInfo(func, describe(node), args + [node.outputs[0]], parallel=units > 1,
                      kernel="trees")


def lower_linear_booster(module: ir.Module, node, func: str, vector_bits: int):
    from .lower import KernelInfo, describe

    lb = _only_node(node, "linear_booster")
    if lb is None:
        return None
    x = node.inputs[0]
    model: LinearBooster = lb.attrs["model"]
    emit_linear_kernel(module, func, model, lb.attrs["transform"], x.shape[0])
    return KernelInfo(func, describe(node), [x, ("param", f"{node.name}.weights", np.ascontiguousarray(
        model.weight, np.float32)), node.outputs[0]], parallel=x.shape[0] > 1, kernel="linear")
