"""The static partition of a kernel's units among its tasks (llvm_util.weighted_task_range),
run through LLVM's JIT: every unit exactly once, in order, and no task much over its share."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest
from llvmlite import binding as llvm
from llvmlite import ir

from neo.codegen.llvm_util import I32, I64, partition_bounds, weighted_task_range


def _partition_fn(costs):
    module = ir.Module("partition")
    module.triple = llvm.get_process_triple()
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [I32, I32, ir.PointerType(I64)]),
                     "part")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    lo, hi = weighted_task_range(b, costs, fn.args[0], fn.args[1], "k")
    b.store(lo, b.gep(fn.args[2], [I64(0)]))
    b.store(hi, b.gep(fn.args[2], [I64(1)]))
    b.ret_void()
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    mod = llvm.parse_assembly(str(module))
    machine = llvm.Target.from_default_triple().create_target_machine()
    engine = llvm.create_mcjit_compiler(mod, machine)
    engine.finalize_object()
    cfn = ctypes.CFUNCTYPE(None, ctypes.c_int32, ctypes.c_int32,
                           ctypes.POINTER(ctypes.c_int64))(engine.get_function_address("part"))

    def ranges(n):
        out = (ctypes.c_int64 * 2)()
        got = []
        for t in range(n):
            cfn(t, n, out)
            got.append((out[0], out[1]))
        return got

    return engine, ranges


@pytest.mark.parametrize("seed", range(6))
def test_partition_covers_every_unit_once_and_balances(seed):
    rng = np.random.default_rng(seed)
    units = int(rng.integers(1, 60))
    # panels of unequal width and a short last block: the costs kernels give
    costs = [int(c) for c in rng.choice([3, 7, 16, 50], size=units)]
    engine, ranges = _partition_fn(costs)
    prefix = np.concatenate([[0], np.cumsum(costs)])
    for n in range(1, 9):
        got = ranges(n)
        assert got[0][0] == 0 and got[-1][1] == units
        assert all(a[1] == b[0] for a, b in zip(got, got[1:])), got
        assert all(lo <= hi for lo, hi in got), got
        bounds = partition_bounds(costs, n)  # the planners' model of the split is the split
        assert [lo for lo, _ in got] + [units] == bounds
        worst = max(prefix[hi] - prefix[lo] for lo, hi in got)
        # each boundary lands on the unit nearest its target: off by at most one unit's cost
        assert worst <= prefix[-1] / n + max(costs), (n, got, costs)
    del engine


def test_uneven_panels_split_by_cost_not_count():
    # three panels of 48 channels and one of 16 (M = 160): by count, two threads get 96 and 64
    costs = [3] * 7 + [3] * 7 + [3] * 7 + [1] * 7
    engine, ranges = _partition_fn(costs)
    (a0, a1), (b0, b1) = ranges(2)
    prefix = np.concatenate([[0], np.cumsum(costs)])
    assert abs((prefix[a1] - prefix[a0]) - (prefix[b1] - prefix[b0])) <= 3
    del engine
