"""llvmlite helpers: types per dtype, loops, vectors, intrinsics. Kernels are built from these."""
from __future__ import annotations

import contextlib

from llvmlite import ir

I1, I8, I16, I32, I64 = (ir.IntType(n) for n in (1, 8, 16, 32, 64))
F16, F32, F64 = ir.HalfType(), ir.FloatType(), ir.DoubleType()
PTR = ir.PointerType()

# In memory: each dtype's storage type. In registers: floats narrower than 32 bits compute in f32.
STORAGE = {
    "float32": F32, "float64": F64, "float16": F16, "bfloat16": I16,
    "int8": I8, "uint8": I8, "int16": I16, "uint16": I16, "int32": I32, "uint32": I32,
    "int64": I64, "uint64": I64, "bool": I8, "index": I64,
}
REGISTER = {**STORAGE, "float16": F32, "bfloat16": F32, "bool": I1}
FLOATS = {"float32", "float64", "float16", "bfloat16"}
UNSIGNED = {"uint8", "uint16", "uint32", "uint64", "bool"}


def reg_type(dtype: str, lanes: int = 1) -> ir.Type:
    t = REGISTER[dtype]
    return t if lanes == 1 else ir.VectorType(t, lanes)


def is_float(dtype: str) -> bool:
    return dtype in FLOATS


def const(dtype: str, value, lanes: int = 1) -> ir.Constant:
    t = REGISTER[dtype]
    if dtype in FLOATS:
        v = float(value)
    elif dtype == "bool":
        v = int(bool(value))
    else:
        v = int(value)
        bits = t.width
        v &= (1 << bits) - 1  # two's complement for negative values and unsigned wraparound
    c = ir.Constant(t, v)
    return c if lanes == 1 else ir.Constant(ir.VectorType(t, lanes), [v] * lanes)


def splat(b: ir.IRBuilder, v: ir.Value, lanes: int) -> ir.Value:
    if lanes == 1 or isinstance(v.type, ir.VectorType):
        return v
    if isinstance(v, ir.Constant):
        return ir.Constant(ir.VectorType(v.type, lanes), [v.constant] * lanes)
    vt = ir.VectorType(v.type, lanes)
    tmp = b.insert_element(ir.Constant(vt, ir.Undefined), v, I32(0))
    return b.shuffle_vector(tmp, ir.Constant(vt, ir.Undefined), ir.Constant(ir.VectorType(I32, lanes),
                                                                             [0] * lanes))


def iota(lanes: int, ty=I64) -> ir.Constant:
    return ir.Constant(ir.VectorType(ty, lanes), list(range(lanes)))


def declare(module: ir.Module, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ret, args), name)
    return fn


def suffix(t: ir.Type) -> str:
    """LLVM intrinsic type suffix: f32, v8f32, i64, v4i32 ..."""
    if isinstance(t, ir.VectorType):
        return f"v{t.count}{suffix(t.element)}"
    if isinstance(t, ir.FloatType):
        return "f32"
    if isinstance(t, ir.DoubleType):
        return "f64"
    if isinstance(t, ir.HalfType):
        return "f16"
    if isinstance(t, ir.IntType):
        return f"i{t.width}"
    if isinstance(t, ir.PointerType):
        return "p0"
    raise TypeError(t)


def intrinsic(b: ir.IRBuilder, name: str, args: list[ir.Value], ret: ir.Type | None = None,
              overload: list[ir.Type] | None = None) -> ir.Value:
    ret = ret or args[0].type
    over = overload if overload is not None else [ret]
    full = name + "".join("." + suffix(t) for t in over)
    fn = declare(b.module, full, ret, [a.type for a in args])
    return b.call(fn, args)


@contextlib.contextmanager
def for_range(b: ir.IRBuilder, start, stop, step=1, name: str = "i"):
    """`for i in range(start, stop, step)` with an i64 induction variable; yields i."""
    start = start if isinstance(start, ir.Value) else I64(start)
    stop = stop if isinstance(stop, ir.Value) else I64(stop)
    step_v = step if isinstance(step, ir.Value) else I64(step)
    pre = b.block
    head = b.append_basic_block(f"{name}.head")
    body = b.append_basic_block(f"{name}.body")
    end = b.append_basic_block(f"{name}.end")
    b.branch(head)
    b.position_at_end(head)
    phi = b.phi(I64, name=name)
    phi.add_incoming(start, pre)
    b.cbranch(b.icmp_signed("<", phi, stop), body, end)
    b.position_at_end(body)
    yield phi
    nxt = b.add(phi, step_v, name=f"{name}.next")
    phi.add_incoming(nxt, b.block)
    b.branch(head)
    b.position_at_end(end)


def gep(b: ir.IRBuilder, ptr: ir.Value, index: ir.Value, elem: ir.Type) -> ir.Value:
    return b.gep(ptr, [index], inbounds=True, source_etype=elem)


def load_vec(b, ptr, elem: ir.Type, lanes: int, align: int = 4) -> ir.Value:
    if lanes == 1:
        return b.load(ptr, typ=elem, align=align)
    return b.load(ptr, typ=ir.VectorType(elem, lanes), align=align)


def store_vec(b, value, ptr, align: int = 4) -> None:
    b.store(value, ptr, align=align)


def _align(elem: ir.Type) -> ir.Constant:
    """The alignment a masked access may promise: 4, or its element's size when smaller (an int8
    tail at offset 50 is not 4-aligned)."""
    bits = elem.width if isinstance(elem, ir.IntType) else {"half": 16}.get(str(elem), 32)
    return I32(max(1, min(4, bits // 8)))


def masked_load(b, ptr, elem: ir.Type, mask: ir.Value, passthru: ir.Value) -> ir.Value:
    lanes = mask.type.count
    vt = ir.VectorType(elem, lanes)
    return intrinsic(b, "llvm.masked.load", [ptr, _align(elem), mask, passthru], ret=vt,
                     overload=[vt, PTR])


def _opaque_copy(b, value: ir.Value) -> ir.Value:
    """`value` through an empty asm statement, in a vector register (128 to 512 bits) or a general
    one (up to 64 bits): no instruction, but LLVM no longer knows how it was computed."""
    bits = value.type.count * value.type.element.width
    if bits in (128, 256, 512):
        return b.asm(ir.FunctionType(value.type, [value.type]), "", "=v,0", [value],
                     side_effect=False, name="opaque")
    if bits in (8, 16, 32, 64):
        it = ir.IntType(bits)
        word = b.asm(ir.FunctionType(it, [it]), "", "=r,0", [b.bitcast(value, it)],
                     side_effect=False, name="opaque")
        return b.bitcast(word, value.type)
    return value  # wider than a register: LLVM splits it into pieces first


def masked_store(b, value, ptr, mask) -> None:
    elem = value.type.element
    if isinstance(elem, ir.IntType) and elem.width < 32 and getattr(b.module, "neo_avx512",
                                                                     False):
        # LLVM's x86 backend (22) folds trunc + masked store into an AVX-512 truncating masked
        # store (vpmovdb), and when the mask turns out constant with one lane on (a tail of 1)
        # stores that lane as the untruncated i32: 3 bytes past an int8 buffer. An empty asm
        # copy (no instruction) hides the trunc from that fold.
        value = _opaque_copy(b, value)
    intrinsic(b, "llvm.masked.store", [value, ptr, _align(elem), mask],
              ret=ir.VoidType(), overload=[value.type, PTR])


def gather(b, ptrs: ir.Value, elem: ir.Type, mask: ir.Value, passthru: ir.Value) -> ir.Value:
    lanes = mask.type.count
    vt = ir.VectorType(elem, lanes)
    return intrinsic(b, "llvm.masked.gather", [ptrs, I32(4), mask, passthru], ret=vt,
                     overload=[vt, ir.VectorType(PTR, lanes)])


def scatter(b, value, ptrs, mask) -> None:
    intrinsic(b, "llvm.masked.scatter", [value, ptrs, I32(4), mask], ret=ir.VoidType(),
              overload=[value.type, ptrs.type])


def lane_mask(b, valid: ir.Value, lanes: int) -> ir.Value:
    """<lanes x i1>: lane l is on when l < valid (valid is i64)."""
    return b.icmp_signed("<", iota(lanes), splat(b, valid, lanes))


def unravel(b: ir.IRBuilder, index: ir.Value, sizes) -> list:
    """The mixed-radix digits of a unit index, innermost first: [index % s0, index / s0 % s1, ...,
    index / (s0 * s1 * ...)] for sizes [s0, s1, ...] (the last digit is the rest)."""
    digits = []
    for size in sizes:
        digits.append(b.srem(index, I64(size)))
        index = b.sdiv(index, I64(size))
    return digits + [index]


def smin(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    """The smaller of two signed integers."""
    return b.select(b.icmp_signed("<", x, y), x, y)


def smax(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    """The larger of two signed integers."""
    return b.select(b.icmp_signed(">", x, y), x, y)


def clamp(b: ir.IRBuilder, v: ir.Value, lo: ir.Value, hi: ir.Value) -> ir.Value:
    """v limited to [lo, hi] (signed integers, lo <= hi)."""
    return smin(b, smax(b, v, lo), hi)


def task_range(b: ir.IRBuilder, total, task: ir.Value, ntasks: ir.Value, grain: int = 1):
    """Static partition of [0, total) into ntasks contiguous chunks (multiples of grain)."""
    total = total if isinstance(total, ir.Value) else I64(total)
    t = b.sext(task, I64)
    n = b.sext(ntasks, I64)
    units = b.sdiv(b.add(total, I64(grain - 1)), I64(grain))
    per = b.sdiv(b.add(units, b.sub(n, I64(1))), n)
    lo = b.mul(b.mul(t, per), I64(grain))
    hi = b.mul(b.mul(b.add(t, I64(1)), per), I64(grain))
    lo = b.select(b.icmp_signed("<", lo, total), lo, total)
    hi = b.select(b.icmp_signed("<", hi, total), hi, total)
    return lo, hi


def partition_bounds(costs, n: int) -> list[int]:
    """The unit each of n tasks starts at (and len(costs) last) under weighted_task_range:
    the unit whose cost prefix is nearest t/n of the total (equal costs: task_range's split)."""
    costs = [int(c) for c in costs]
    units = len(costs)
    if len(set(costs)) <= 1:
        per = -(-units // n)
        return [min(t * per, units) for t in range(n)] + [units]
    prefix = [0]
    for c in costs:
        prefix.append(prefix[-1] + c)
    total = prefix[-1]
    out = []
    for t in range(n + 1):
        target = t * total
        u = next(i for i, p in enumerate(prefix) if p * n >= target)
        prev = max(u - 1, 0)
        out.append(prev if target - prefix[prev] * n < prefix[u] * n - target else u)
    return out


def makespan(costs, n: int) -> int:
    """The largest cost sum a task gets when n tasks share the units (partition_bounds)."""
    bounds = partition_bounds(costs, n)
    return max(sum(costs[bounds[t]:bounds[t + 1]]) for t in range(n))


def weighted_task_range(b: ir.IRBuilder, costs, task: ir.Value, ntasks: ir.Value, name: str):
    """Static partition of units 0..len(costs)-1 into ntasks contiguous chunks of about equal
    cost (compile-time costs; the thread count is known at run time only). Task t starts at the
    unit whose cost prefix is nearest t/ntasks of the total, found by binary search in a
    constant table. Equal costs: task_range. A unit count alone balances badly when units
    differ: a panel of 16 channels beside panels of 48, or a last block of one row."""
    costs = [int(c) for c in costs]
    if len(set(costs)) <= 1:
        return task_range(b, len(costs), task, ntasks)
    prefix = [0]
    for c in costs:
        prefix.append(prefix[-1] + c)
    units, total = len(costs), prefix[-1]
    table_t = ir.ArrayType(I64, units + 1)
    table = ir.GlobalVariable(b.module, table_t, f"{name}.cost_prefix")
    table.linkage, table.global_constant = "private", True
    table.initializer = ir.Constant(table_t, prefix)
    n = b.sext(ntasks, I64)

    def at(i):
        return b.load(b.gep(table, [I32(0), i], inbounds=True, source_etype=table_t), typ=I64)

    def start(t):  # the unit nearest cost total * t / n, scaled by n to stay in integers
        target = b.mul(b.sext(t, I64), I64(total))
        lo_p, hi_p = b.alloca(I64), b.alloca(I64)
        b.store(I64(0), lo_p)
        b.store(I64(units), hi_p)
        head = b.append_basic_block(f"{name}.search")
        body = b.append_basic_block(f"{name}.step")
        done = b.append_basic_block(f"{name}.found")
        b.branch(head)
        b.position_at_end(head)
        lo, hi = b.load(lo_p), b.load(hi_p)
        b.cbranch(b.icmp_signed("<", lo, hi), body, done)
        b.position_at_end(body)
        mid = b.ashr(b.add(lo, hi), I64(1))
        below = b.icmp_signed("<", b.mul(at(mid), n), target)
        b.store(b.select(below, b.add(mid, I64(1)), lo), lo_p)
        b.store(b.select(below, hi, mid), hi_p)
        b.branch(head)
        b.position_at_end(done)
        u = b.load(lo_p)  # first unit whose prefix reaches the target; step back if nearer
        prev = b.select(b.icmp_signed(">", u, I64(0)), b.sub(u, I64(1)), u)
        over = b.sub(b.mul(at(u), n), target)
        under = b.sub(target, b.mul(at(prev), n))
        return b.select(b.icmp_signed("<", under, over), prev, u)

    t = b.sext(task, I64)
    return start(t), start(b.add(t, I64(1)))


def load_strided(b: ir.IRBuilder, ptr: ir.Value, base: ir.Value, stride: int, lanes: int,
                 elem: ir.Type, overrun_ok: bool = False) -> ir.Value:
    """<ptr[base], ptr[base+stride], ...> as `stride` contiguous vector loads and a shuffle; the
    last load is masked to the elements needed, so nothing past ptr[base+stride*(lanes-1)] is read,
    unless `overrun_ok` (a buffer with slack: plain loads, which are cheaper)."""
    vt = ir.VectorType(elem, lanes)
    parts = []
    for j in range(stride):
        pj = gep(b, ptr, b.add(base, I64(j * lanes)), elem)
        if j == stride - 1 and not overrun_ok:
            need = stride * (lanes - 1) + 1 - j * lanes
            mk = ir.Constant(ir.VectorType(I1, lanes), [1] * need + [0] * (lanes - need))
            parts.append(masked_load(b, pj, elem, mk, ir.Constant(vt, None)))
        else:
            parts.append(b.load(pj, typ=vt, align=max(1, _bits(elem) // 8)))
    wide = parts[0]
    for j in range(1, stride):  # concatenate into one stride*lanes vector
        n = wide.type.count
        part = parts[j]
        if n != lanes:  # widen the new part to n lanes first (shufflevector needs equal types)
            part = b.shuffle_vector(part, ir.Constant(vt, None), ir.Constant(
                ir.VectorType(I32, n), list(range(lanes)) + [lanes] * (n - lanes)))
        wide = b.shuffle_vector(wide, part, ir.Constant(ir.VectorType(I32, n + lanes),
                                                        list(range(n)) + list(range(n, n + lanes))))
    return b.shuffle_vector(wide, ir.Constant(wide.type, None), ir.Constant(
        ir.VectorType(I32, lanes), [stride * i for i in range(lanes)]))


def _bits(t: ir.Type) -> int:
    if isinstance(t, ir.IntType):
        return t.width
    return {ir.HalfType: 16, ir.FloatType: 32, ir.DoubleType: 64}[type(t)]


def convert_float(b: ir.IRBuilder, v: ir.Value, to: ir.Type) -> ir.Value:
    """v (a float or float vector) as elements of float type `to`: widened, rounded or as is."""
    src = v.type.element if isinstance(v.type, ir.VectorType) else v.type
    if src == to:
        return v
    t = ir.VectorType(to, v.type.count) if isinstance(v.type, ir.VectorType) else to
    return b.fpext(v, t) if _bits(src) < _bits(to) else b.fptrunc(v, t)


def load_float(b: ir.IRBuilder, ptr: ir.Value, index: ir.Value, dtype: str, lanes: int = 1,
               align: int = 4, reg: ir.Type = F32) -> ir.Value:
    """ptr[index] (`lanes` elements from there) of a float buffer of `dtype`, widened to
    float32 registers: weights stored at half precision (--precision fp16) load as halves.
    With `reg` F16 (fp16 arithmetic) float16 stays half and float32 is rounded to it."""
    st = STORAGE[dtype]
    vt = st if lanes == 1 else ir.VectorType(st, lanes)
    v = b.load(gep(b, ptr, index, st), typ=vt, align=min(align, max(1, _bits(st) // 8)))
    if reg != F32 and dtype in ("float16", "float32"):
        return convert_float(b, v, reg)
    if dtype == "float32":
        return v
    ft = F32 if lanes == 1 else ir.VectorType(F32, lanes)
    if dtype == "float16":
        return b.fpext(v, ft)
    if dtype == "bfloat16":
        it = I32 if lanes == 1 else ir.VectorType(I32, lanes)
        sh = ir.Constant(it, 16) if lanes == 1 else ir.Constant(it, [16] * lanes)
        return b.bitcast(b.shl(b.zext(v, it), sh), ft)
    raise TypeError(f"load_float of {dtype}")


def prefetch_lines(b: ir.IRBuilder, ptr: ir.Value, nbytes: int, write: bool = False) -> None:
    """Prefetch the 64-byte lines of nbytes from ptr into L2 (prefetcht1 on x86, prfm pldl2keep
    on AArch64; to write: prefetchw, prfm pstl2keep); a prefetch never faults, past a buffer's
    end too."""
    fn = declare(b.module, "llvm.prefetch.p0", ir.VoidType(), [PTR, I32, I32, I32])
    for off in range(0, nbytes, 64):
        b.call(fn, [gep(b, ptr, I64(off), I8), I32(int(write)), I32(2), I32(1)])


def kernel_function(module: ir.Module, name: str, nbufs: int):
    """A kernel with the runtime's ABI, `int32 kernel(void **args, int32 task, int32 ntasks)`:
    (function, a builder in its entry block, the nbufs buffer pointers loaded there)."""
    fn = ir.Function(module, ir.FunctionType(I32, [PTR, I32, I32]), name)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    bufs = [b.load(gep(b, fn.args[0], I64(i), PTR), typ=PTR) for i in range(nbufs)]
    return fn, b, bufs


def stack_buffer(b: ir.IRBuilder, floats: int, name: str) -> ir.Value:
    """A 64-byte aligned float32 stack buffer (build it in the entry block), as an opaque
    pointer: kernels store vectors and scalars into it."""
    raw = b.alloca(F32, size=floats, name=name)
    raw.align = 64
    ptr = b.bitcast(raw, PTR)
    ptr.type = PTR  # (llvmlite keeps the typed pointer through a bitcast otherwise)
    return ptr


def split_last(b: ir.IRBuilder, index: ir.Value, count: int, whole: int, last: int, emit) -> None:
    """emit(whole) for index < count - 1 and emit(last) for the last one: code specialized for
    a static partial block (tile rows, channel panels, columns)."""
    if last == whole:
        emit(whole)
        return
    with b.if_else(b.icmp_signed("<", index, I64(count - 1))) as (then, other):
        with then:
            emit(whole)
        with other:
            emit(last)
