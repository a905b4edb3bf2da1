"""Memory planning: one workspace arena; tensors whose lifetimes do not overlap share storage.

Storage tokens as in TVM's graph planner: a tensor takes the free token whose size fits best (or
grows one), and gives it back after its last use. Each token is a storage id at a fixed offset.
Reshape outputs are views of their input's storage.
"""
from __future__ import annotations

from dataclasses import dataclass, field

ALIGN = 64


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class Plan:
    storage_of: dict[int, int] = field(default_factory=dict)  # tensor key -> storage id
    sizes: list[int] = field(default_factory=list)  # per storage id
    offsets: list[int] = field(default_factory=list)

    @property
    def workspace_nbytes(self) -> int:
        return sum(self.sizes)


def plan_memory(steps: list[tuple[list[int], list[int]]], nbytes: dict[int, int],
                alias: dict[int, int], pinned: set[int]) -> Plan:
    """steps: per kernel (input keys, output keys) in run order; alias: view key -> base key;
    pinned: keys that live outside the workspace (graph inputs, outputs, params)."""

    def root(k):
        while k in alias:
            k = alias[k]
        return k

    last_use: dict[int, int] = {}
    for i, (ins, outs) in enumerate(steps):
        for k in ins + outs:
            last_use[root(k)] = i
    plan = Plan()
    free: list[int] = []
    for i, (ins, outs) in enumerate(steps):
        for k in outs:
            r = root(k)
            if r in pinned or r in plan.storage_of:
                continue
            need = _align(nbytes[r])
            best = None
            for sid in free:  # smallest token that fits; else the largest, grown
                if plan.sizes[sid] >= need and (best is None or plan.sizes[sid] < plan.sizes[best]):
                    best = sid
            if best is None and free:
                best = max(free, key=lambda s: plan.sizes[s])
                plan.sizes[best] = need
            if best is None:
                best = len(plan.sizes)
                plan.sizes.append(need)
            else:
                free.remove(best)
            plan.storage_of[r] = best
        for k in {root(k) for k in ins + outs}:
            if k in plan.storage_of and last_use.get(k) == i and k not in pinned:
                free.append(plan.storage_of[k])
    off = 0
    for s in plan.sizes:
        plan.offsets.append(off)
        off += s
    for k, base in alias.items():
        r = root(base)
        if r in plan.storage_of:
            plan.storage_of[k] = plan.storage_of[r]
    return plan
