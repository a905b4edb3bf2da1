"""A fixed-seed sample of the graph fuzzer (tests/fuzz; docs/FUZZING.md): 300 random valid graphs
of 2-30 nodes, each compiled at one (opt-level, vector width) config chosen by its seed so that
the sample covers all 16 (O0-O3 x w128/w256/w512/avx512), six of them also for arm64 under qemu,
run in the runtime's checked mode and compared with the float64 reference, the IR interpreter and
onnxruntime. `make fuzz SECONDS=N` runs fresh seeds at every config for longer.

A failure names the seed and the command that reproduces and minimizes it.
"""
from __future__ import annotations

import numpy as np
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


# -- the fuzzer's own machinery: it must catch what it is for -------------------------------------
def test_oracle_flags_a_small_error_and_not_rounding():
    from fuzz.oracle import Config, check_spec

    spec = generate(7, 2, 12, accept=numerically_sound)
    ok = check_spec(spec, [Config(3, "w256")])
    assert ok.configs and not ok.failures and ok.worst < 0.5

    from fuzz import oracle

    real = oracle.run_config

    def off_by_1e3(model, feeds, cfg, work):  # one element of the first output 0.1% off
        outs, fail = real(model, feeds, cfg, work)
        outs[0].flat[outs[0].size // 2] *= 1.001
        return outs, fail

    oracle.run_config = off_by_1e3
    try:
        bad = check_spec(spec, [Config(3, "w256")])
    finally:
        oracle.run_config = real
    assert [f.kind for f in bad.failures] == ["wrong"], bad.failures
    assert "1 of" in bad.failures[0].message


def test_minimizer_keeps_the_failure_and_drops_the_rest(monkeypatch):
    # A stand-in bug: "any graph with a strided conv fails". The minimizer must cut a large
    # graph down to the strided conv alone, on a smaller input.
    from fuzz import minimize, oracle
    from fuzz.graphgen import realize

    def fake_run(model, feeds, cfg, work):
        strided = any(n.op_type == "Conv" and any(a.name == "strides" and max(a.ints) > 1
                                                  for a in n.attribute) for n in model.graph.node)
        if strided:
            return None, oracle.Failure("crash", cfg, "kernel neo_k0_conv2d crashed")
        return [np.zeros(0)], None

    monkeypatch.setattr(oracle, "run_config", fake_run)
    monkeypatch.setattr(oracle, "check_references", lambda *a: ([], []))
    def big_with_a_strided_conv(sp):
        return len(sp.nodes) >= 12 and any(
            n.op == "conv" and max(n.params["s"]) > 1 and n.params["auto_pad"] == "NOTSET"
            for n in sp.nodes)

    spec = next(sp for sp in (generate(s, 2, 30, accept=numerically_sound) for s in range(200))
                if big_with_a_strided_conv(sp))
    failure = oracle.Failure("crash", oracle.Config(3, "w256"), "kernel crashed")
    small, tries = minimize.minimize(spec, failure, budget=120)
    ops = [n.op_type for n in realize(small).model.graph.node]
    assert ops == ["Conv"], (ops, tries)
    assert sum(np.prod(i.shape) for i in small.inputs) < sum(np.prod(i.shape) for i in spec.inputs)
