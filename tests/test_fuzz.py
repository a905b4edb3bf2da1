"""A fixed-seed sample of the graph fuzzer (tests/fuzz; docs/FUZZING.md): 300 random valid graphs
of 2-30 nodes, each compiled at one (opt-level, vector width) config chosen by its seed so that
the sample covers all 16 (O0-O3 x w128/w256/w512/avx512), six of them also for arm64 under qemu,
run in the runtime's checked mode and compared with the float64 reference, the IR interpreter and
onnxruntime. `make fuzz SECONDS=N` runs fresh seeds at every config for longer.

A failure names the seed and the command that reproduces and minimizes it.
"""
from __future__ import annotations

import pytest
from conftest import require_qemu_for
from fuzz.__main__ import configs_for
from fuzz.graphgen import generate
from fuzz.oracle import can_run, check_spec, numerically_sound

SEEDS = 300
CHUNK = 10  # seeds per test: pytest -n 2 spreads the chunks over both workers
ARM_EVERY = 50


def check_seed(seed: int) -> list[str]:
    spec = generate(seed, 2, 30, accept=numerically_sound)
    cfgs = configs_for(seed, "one", ARM_EVERY)
    if any(c.width == "arm64" for c in cfgs):
        require_qemu_for("arm64")  # CI installs qemu: a missing emulator fails there
    cfgs = [c for c in cfgs if can_run(c)]
    res = check_spec(spec, cfgs)
    problems = []
    for f in res.failures:
        cfg = f" --config {f.config}" if f.config else ""
        problems.append(f"seed {seed} {f.line()}\n    reproduce: python3 tests/fuzz one {seed}{cfg}"
                        f"\n    minimize:  python3 tests/fuzz minimize {seed}{cfg}")
    return problems


@pytest.mark.parametrize("chunk", range(SEEDS // CHUNK))
def test_fuzz_sample(chunk):
    problems = []
    for seed in range(chunk * CHUNK, (chunk + 1) * CHUNK):
        problems += check_seed(seed)
    assert not problems, "\n".join(problems)
