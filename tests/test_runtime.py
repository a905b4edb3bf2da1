"""Runtime tests on a hand-made artifact: no frontend, passes or codegen, just the format contract.

A tiny C file implements two kernels with the kernel ABI; we compile it with zig for each arch, write
compiled_model.json / compiled.params / compiled.meta by hand, add the runtime with build_runtime,
and run it natively through the Python Model and under qemu through neo-run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import require_module

from neo.codegen.toolchain import (
    ToolchainError,
    build_runtime,
    compile_c,
    host_arch,
    link_shared,
    qemu_command,
)
from neo.ir.target import ARCHES as ARCH_FACTS
from neo.runtime import RUNTIME_ABI_VERSION, ArtifactError, Model, __version__
from neo.runtime.params import DTYPE_CODES, checksum, read_params, write_params

# every arch of the table: the runtime sources have no arch list, so each must build and run
ARCHES = tuple(ARCH_FACTS)
ROWS, COLS = 4, 33  # 132 elements: not a multiple of the task counts we use

KERNELS = r"""
#include <stdint.h>
#define ROWS 4
#define COLS 33
#define N (ROWS * COLS)

/* ws = x * scale + 1, each task takes its static share; x[0] == -12345 makes it fail */
int32_t k_scale_add(void **args, int32_t task, int32_t ntasks) {
    const float *x = args[0], *scale = args[1];
    float *ws = args[2];
    if (task == 0 && x[0] == -12345.0f) return 7;
    int64_t lo = (int64_t)N * task / ntasks, hi = (int64_t)N * (task + 1) / ntasks;
    for (int64_t i = lo; i < hi; i++) ws[i] = x[i] * scale[i] + 1.0f;
    return 0;
}

/* y = ws * 2 + bias (broadcast over rows), mask = y > 0; reads the workspace tensor */
int32_t k_finish(void **args, int32_t task, int32_t ntasks) {
    const float *ws = args[0];
    const int64_t *bias = args[1];
    float *y = args[2];
    uint8_t *mask = args[3];
    if (task != 0 || ntasks != 1) return 9; /* a non-parallel node runs once, on the caller */
    for (int i = 0; i < N; i++) {
        y[i] = ws[i] * 2.0f + (float)bias[i % COLS];
        mask[i] = y[i] > 0.0f;
    }
    return 0;
}
"""


# Where the parameters and the workspace span huge pages the runtime reads and maps them
# differently (map_huge in neort.c): the "big" artifact puts its tensors past the first 2 MiB.
BIG_NBYTES = 3 << 20


def graph_json(arch: str, big: bool = False) -> dict:
    f32 = 4 * ROWS * COLS
    at = BIG_NBYTES if big else 64
    return {
        "format": "neo-graph",
        "format_version": 1,
        "arch": arch,
        "triple": ARCH_FACTS[arch].triple(),
        "library": "compiled.so",
        "params": "compiled.params",
        "workspace_nbytes": at + (f32 + 63) // 64 * 64,
        "tensors": [
            {"id": 0, "name": "x", "shape": [ROWS, COLS], "dtype": "float32", "nbytes": f32,
             "storage": "input", "index": 0},
            {"id": 1, "name": "bias", "shape": [COLS], "dtype": "int64", "nbytes": 8 * COLS,
             "storage": "input", "index": 1},
            {"id": 2, "name": "scale", "shape": [ROWS, COLS], "dtype": "float32", "nbytes": f32,
             "storage": "param", "param": "scale"},
            {"id": 3, "name": "scale_add:0", "shape": [ROWS, COLS], "dtype": "float32",
             "nbytes": f32, "storage": "workspace", "storage_id": 0, "offset": at},
            {"id": 4, "name": "y", "shape": [ROWS, COLS], "dtype": "float32", "nbytes": f32,
             "storage": "output", "index": 0},
            {"id": 5, "name": "mask", "shape": [ROWS, COLS], "dtype": "bool",
             "nbytes": ROWS * COLS, "storage": "output", "index": 1},
        ],
        "inputs": [0, 1],
        "outputs": [4, 5],
        "nodes": [
            {"name": "scale_add", "op": "mul+add", "func": "k_scale_add", "args": [0, 2, 3],
             "num_inputs": 2, "num_outputs": 1, "parallel": True},
            {"name": "finish", "op": "mul+add+greater", "func": "k_finish", "args": [3, 1, 4, 5],
             "num_inputs": 2, "num_outputs": 2, "parallel": False},
        ],
    }


def params_entries(big: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    entries = {
        "scale": rng.uniform(-2, 2, (ROWS, COLS)).astype(np.float32),
        "unused.zz": np.arange(5, dtype=np.int64),  # entries the graph does not use are fine
    }
    if big:  # sorts first: "scale" lands past it (the checksum covers every byte read)
        entries["bulk"] = rng.integers(0, 256, BIG_NBYTES, dtype=np.uint8)
    return entries


def reference(x: np.ndarray, bias: np.ndarray) -> list[np.ndarray]:
    ws = x * params_entries()["scale"] + np.float32(1)
    y = ws * np.float32(2) + bias.astype(np.float32)
    return [y, y > 0]


def make_inputs(seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x": rng.standard_normal((ROWS, COLS)).astype(np.float32),
        "bias": rng.integers(-3, 4, COLS).astype(np.int64),
    }


def write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")


def make_artifact(arch: str, out: Path, big: bool = False) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    # no fp contraction: the numpy reference rounds after the multiply too
    obj = compile_c(KERNELS, arch, flags=["-ffp-contract=off"])
    link_shared([obj], arch, out / "compiled.so")
    graph = graph_json(arch, big)
    write_json(out / "compiled_model.json", graph)
    write_params(out / "compiled.params", params_entries(big))
    write_json(out / "compiled.meta", {
        "format_version": 1, "compiler": "hand-made", "framework": "none", "model": "test",
        "target": {"name": arch, "arch": arch, "triple": graph["triple"]},
        "inputs": [{"name": "x", "dtype": "float32", "shape": [ROWS, COLS]},
                   {"name": "bias", "dtype": "int64", "shape": [COLS]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [ROWS, COLS]},
                    {"name": "mask", "dtype": "bool", "shape": [ROWS, COLS]}],
        "options": {}, "files": {},
    })
    build_runtime(arch, out)
    return out


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("artifacts")
    # the zig invocations are independent subprocesses: build the arches side by side
    with ThreadPoolExecutor(len(ARCHES)) as pool:
        futures = {a: pool.submit(make_artifact, a, root / a) for a in ARCHES}
        return {a: f.result() for a, f in futures.items()}


@pytest.fixture(scope="module")
def big_artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("big")
    with ThreadPoolExecutor(len(ARCHES)) as pool:
        futures = {a: pool.submit(make_artifact, a, root / a, True) for a in ARCHES}
        return {a: f.result() for a, f in futures.items()}


@pytest.fixture
def native(artifacts: dict[str, Path]) -> Path:
    return artifacts[host_arch()]


@pytest.fixture
def broken(native: Path, tmp_path: Path) -> Path:
    """A private copy of the native artifact for a test to damage."""
    return Path(shutil.copytree(native, tmp_path / "art"))


def emulator(arch: str) -> list[str]:
    cmd = qemu_command(arch)
    if cmd is None:
        if os.environ.get("CI"):
            pytest.fail(f"qemu for {arch} is required in CI")
        pytest.skip(f"no qemu-user for {arch} on this machine")
    return cmd


def neo_run(art: Path, arch: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [*emulator(arch), str(art / "neo-run"), str(art), *args]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)


def save_inputs(tmp: Path, inputs: dict[str, np.ndarray]) -> list[str]:
    args = []
    for name, arr in inputs.items():
        np.save(tmp / f"{name}.npy", arr)
        args += ["--input", f"{name}={tmp / f'{name}.npy'}"]
    return args


# -- the Python runtime ---------------------------------------------------------------------------


def test_python_model_runs_and_describes(native: Path) -> None:
    inputs = make_inputs()
    expected = reference(inputs["x"], inputs["bias"])
    assert np.abs(expected[0]).max() > 1 and 0 < expected[1].mean() < 1  # not degenerate
    with Model(native) as m:
        assert m.input_names == m.get_input_names() == ["x", "bias"]
        assert m.output_names == m.get_output_names() == ["y", "mask"]
        assert m.input_shapes == [(ROWS, COLS), (COLS,)]
        assert m.output_shapes == [(ROWS, COLS), (ROWS, COLS)]
        assert m.input_dtypes == m.get_input_dtypes() == ["float32", "int64"]
        assert m.output_dtypes == m.get_output_dtypes() == ["float32", "bool"]
        assert m.get_version() == __version__ and RUNTIME_ABI_VERSION == 1
        assert m.has_metadata() and m.metadata["target"]["arch"] == host_arch()
        assert m.runtime_arch == host_arch()  # from the build's -DNEO_ARCH
        for data in (inputs, [inputs["x"], inputs["bias"]]):
            y, mask = m.run(data)
            np.testing.assert_array_equal(y, expected[0])
            np.testing.assert_array_equal(mask, expected[1])
            assert y.dtype == np.float32 and mask.dtype == np.bool_
        # non-contiguous inputs are accepted (copied), results are fresh arrays
        xt = np.asfortranarray(inputs["x"])
        y2, _ = m.run({"x": xt, "bias": inputs["bias"]})
        np.testing.assert_array_equal(y2, expected[0])
        assert y2 is not y
    with pytest.raises(RuntimeError, match="closed"):
        m.run(inputs)


def huge_advised_mappings() -> dict[str, str]:
    """start address -> permissions of this process's mappings advised MADV_HUGEPAGE"""
    found, head = {}, None
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if "-" in line.split(" ", 1)[0]:
            head = line.split()
        elif line.startswith("VmFlags:") and " hg" in line:
            found[head[0].split("-")[0]] = head[1]
    return found


def test_large_params_and_workspace_ask_for_huge_pages(big_artifacts: dict[str, Path]) -> None:
    """Past 2 MiB the parameters are read into, and the workspace carved from, mappings advised
    MADV_HUGEPAGE (whether the kernel grants them is its choice); the parameters stay
    read-only, as the file mapping they replace was."""
    # a kernel built without transparent huge pages refuses the advice (EINVAL): the runtime
    # then runs on the mappings as they are, which the results below check
    thp = Path("/sys/kernel/mm/transparent_hugepage").is_dir()
    before = huge_advised_mappings()
    with Model(big_artifacts[host_arch()], num_threads=2) as m:
        new = {a: perms for a, perms in huge_advised_mappings().items() if a not in before}
        assert sorted(new.values()) == (["r--p", "rw-p"] if thp else []), new
        inputs = make_inputs(5)
        for got, want in zip(m.run(inputs), reference(**inputs)):
            np.testing.assert_array_equal(got, want)
    assert huge_advised_mappings().keys() <= before.keys()  # unmapped on close


def test_inputs_are_read_in_place_not_copied(native: Path) -> None:
    """Model.run binds its arrays (neo_model_bind_input_index): the kernels read the caller's
    memory and never write it; neo_model_set_input_index goes back to a copy in the model's own
    buffer; checked mode keeps copying into its guarded buffers."""
    inputs = make_inputs(3)
    x, bias = inputs["x"], inputs["bias"]
    keep = x.copy()
    with Model(native, num_threads=2) as m:
        lib, h = m._lib, m._live()
        y0 = m.run(inputs)
        np.testing.assert_array_equal(x, keep)  # not written
        out = np.empty_like(y0[0])

        def run_y() -> np.ndarray:
            assert lib.neo_model_run(h) == 0
            assert lib.neo_model_get_output(h, 0, out.ctypes.data, out.nbytes) == 0
            return out.copy()

        x *= 2  # the model reads the bound array itself
        np.testing.assert_array_equal(run_y(), reference(x, bias)[0])
        assert m.profile(2)  # reruns on the bound arrays
        assert lib.neo_model_set_input_index(h, 0, keep.ctypes.data, keep.nbytes) == 0
        x *= 3  # a copy now: the bound array no longer matters
        np.testing.assert_array_equal(run_y(), reference(keep, bias)[0])
        assert lib.neo_model_bind_input_index(h, 0, x.ctypes.data, x.nbytes - 4) != 0  # size
    x[:] = keep
    with Model(native, check=True) as m:  # guarded buffers: copied
        m.run(inputs)
        x *= 2
        assert m._lib.neo_model_run(m._live()) == 0
        out = np.empty_like(y0[0])
        assert m._lib.neo_model_get_output(m._live(), 0, out.ctypes.data, out.nbytes) == 0
        np.testing.assert_array_equal(out, y0[0])


def test_threads_give_identical_results(native: Path) -> None:
    inputs = make_inputs(2)
    results = []
    for n in (1, 2, 3):
        with Model(native, num_threads=n) as m:
            assert m.num_threads == n
            results.append(m.run(inputs))
    m = Model(native)
    assert m.num_threads >= 1
    m.set_num_threads(5)
    assert m.num_threads == 5
    results.append(m.run(inputs))
    for _ in range(50):  # many short runs exercise the pool's spin/sleep hand-off
        again = m.run(inputs)
    m.close()
    m.close()  # closing twice is fine
    for r in results + [again]:
        np.testing.assert_array_equal(r[0], results[0][0])
        np.testing.assert_array_equal(r[1], results[0][1])


def test_profile(native: Path) -> None:
    with Model(native, num_threads=2) as m:
        m.run(make_inputs())
        prof = m.profile(5)
    assert [name for name, _ in prof] == ["scale_add", "finish"]
    assert all(s >= 0 for _, s in prof)


def test_kernel_failure_names_the_node(native: Path) -> None:
    inputs = make_inputs()
    bad = inputs["x"].copy()
    bad[0, 0] = -12345.0
    with Model(native, num_threads=2) as m:
        with pytest.raises(RuntimeError, match=r"node 'scale_add' \(kernel k_scale_add\).*code 7"):
            m.run({"x": bad, "bias": inputs["bias"]})
        np.testing.assert_array_equal(m.run(inputs)[0], reference(**inputs)[0])  # still usable


def test_wrong_inputs_are_rejected_clearly(native: Path) -> None:
    inputs = make_inputs()
    with Model(native) as m:
        with pytest.raises(ValueError, match=r"unknown input\(s\) 'xx'.*'x', 'bias'"):
            m.run({"xx": inputs["x"], "bias": inputs["bias"]})
        with pytest.raises(ValueError, match=r"missing input\(s\) 'bias'"):
            m.run({"x": inputs["x"]})
        with pytest.raises(ValueError, match="takes 2 inputs"):
            m.run(inputs["x"])
        with pytest.raises(ValueError, match="got 1 inputs"):
            m.run([inputs["x"]])
        with pytest.raises(ValueError, match=r"'x' has shape \(4, 32\), expected \(4, 33\)"):
            m.run({"x": inputs["x"][:, :32], "bias": inputs["bias"]})
        with pytest.raises(TypeError, match="'x' has dtype float64, expected float32"):
            m.run({"x": inputs["x"].astype(np.float64), "bias": inputs["bias"]})
        with pytest.raises(TypeError, match="'bias' has dtype int32, expected int64"):
            m.run({"x": inputs["x"], "bias": inputs["bias"].astype(np.int32)})
        with pytest.raises(TypeError, match="expected float32"):
            m.run({"x": inputs["x"].astype(">f4"), "bias": inputs["bias"]})  # no silent byteswap
        with pytest.raises(ValueError, match="repeat must be positive"):
            m.profile(0)
        y, _ = m.run(inputs)  # the model is unharmed
        np.testing.assert_array_equal(y, reference(**inputs)[0])


# -- damaged and foreign artifacts ----------------------------------------------------------------


def test_missing_params(broken: Path) -> None:
    (broken / "compiled.params").unlink()
    with pytest.raises(ArtifactError, match=f"compiled artifact {broken} is missing compiled.params"):
        Model(broken)


def test_missing_artifact_files(broken: Path, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        Model(tmp_path / "nowhere")
    (broken / "compiled.so").unlink()
    with pytest.raises(ArtifactError, match="is missing compiled.so"):
        Model(broken)
    (broken / "compiled_model.json").unlink()
    with pytest.raises(ArtifactError, match="is missing compiled_model.json"):
        Model(broken)


def test_truncated_params(broken: Path) -> None:
    path = broken / "compiled.params"
    data = path.read_bytes()
    path.write_bytes(data[:-64])
    with pytest.raises(ArtifactError, match="compiled.params is truncated"):
        Model(broken)
    with pytest.raises(ValueError, match="is truncated"):
        read_params(path)
    path.write_bytes(data[:20])
    with pytest.raises(ArtifactError, match="truncated: 20 bytes"):
        Model(broken)


def test_flipped_byte_fails_checksum(broken: Path) -> None:
    path = broken / "compiled.params"
    data = bytearray(path.read_bytes())
    data[-200] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        Model(broken)
    with pytest.raises(ValueError, match="checksum mismatch"):
        read_params(path)


def test_wrong_format_version(broken: Path) -> None:
    graph = json.loads((broken / "compiled_model.json").read_text())
    graph["format_version"] = 2
    write_json(broken / "compiled_model.json", graph)
    with pytest.raises(ArtifactError, match="format_version 2 is not supported"):
        Model(broken)


def test_invalid_json(broken: Path) -> None:
    text = (broken / "compiled_model.json").read_text()
    (broken / "compiled_model.json").write_text(text.replace('"nodes"', '"nodes",', 1))
    with pytest.raises(ArtifactError, match=r"compiled_model.json: invalid JSON: line \d+"):
        Model(broken)


def test_graph_inconsistencies(broken: Path) -> None:
    good = json.loads((broken / "compiled_model.json").read_text())
    cases = [
        (lambda g: g["tensors"][2].update(nbytes=4), "nbytes 4 does not match"),
        (lambda g: g["tensors"][2].update(param="nope"), "param 'nope' is not in compiled.params"),
        (lambda g: g["tensors"][2].update(dtype="int32"), "param 'scale' .* is float32"),
        (lambda g: g.update(workspace_nbytes=128), "exceeds workspace_nbytes 128"),
        (lambda g: g["nodes"][0].update(args=[0, 2, 1]), "writes to read-only input"),
        (lambda g: g["nodes"].pop(), "output 'y' is not written by any node"),
        (lambda g: g.update(format="onnx"), "format is 'onnx'"),
        (lambda g: g["tensors"][0].pop("dtype"), "string field 'dtype' is missing"),
    ]
    for edit, message in cases:
        graph = json.loads(json.dumps(good))
        edit(graph)
        write_json(broken / "compiled_model.json", graph)
        with pytest.raises(ArtifactError, match=message):
            Model(broken)


def test_missing_kernel_symbol(broken: Path) -> None:
    graph = json.loads((broken / "compiled_model.json").read_text())
    graph["nodes"][1]["func"] = "k_does_not_exist"
    write_json(broken / "compiled_model.json", graph)
    with pytest.raises(ArtifactError, match="kernel 'k_does_not_exist' of node 'finish' is missing"):
        Model(broken)


@pytest.mark.parametrize("foreign", [a for a in ARCHES if a != host_arch()])
def test_foreign_artifact_in_python(artifacts: dict[str, Path], foreign: str) -> None:
    # the check compares the ELF machine of the artifact's libneort.so with this process's
    with pytest.raises(RuntimeError, match=f"built for {foreign}.*neo run") as info:
        Model(artifacts[foreign])
    assert isinstance(info.value, ArtifactError)


@pytest.mark.parametrize("arch", ARCHES)
def test_runtime_binaries_are_built_for_their_arch(artifacts: dict[str, Path], arch: str) -> None:
    from neo.runtime.model import _elf_machine

    facts = ARCH_FACTS[arch]
    for name in ("libneort.so", "neo-run", "compiled.so"):
        elf_class, data, _ = _elf_machine(artifacts[arch] / name)
        assert (elf_class, data) == ({32: 1, 64: 2}[facts.pointer_bits],
                                     {"little": 1, "big": 2}[facts.endian]), (arch, name)
    # the arch the runtime checks against is the build's, baked in as a string
    assert f"\0{arch}\0".encode() in (artifacts[arch] / "libneort.so").read_bytes()


def test_foreign_artifact_in_c(broken: Path) -> None:
    # the native runtime refuses on its own too, when the Python check is bypassed
    graph = json.loads((broken / "compiled_model.json").read_text())
    other = next(a for a in ARCHES if a != host_arch())
    graph["arch"] = other
    write_json(broken / "compiled_model.json", graph)
    proc = neo_run(broken, host_arch())
    assert proc.returncode == 1
    assert f"is built for {other}, this runtime is {host_arch()}" in proc.stderr
    assert proc.stderr.count("\n") == 1


# -- neo-run, natively and under qemu -------------------------------------------------------------


@pytest.mark.parametrize("big", [False, True], ids=["small", "huge-pages"])
@pytest.mark.parametrize("arch", ARCHES)
def test_neo_run(artifacts: dict[str, Path], big_artifacts: dict[str, Path], arch: str, big: bool,
                 tmp_path: Path) -> None:
    inputs = make_inputs(3)
    args = save_inputs(tmp_path, inputs)
    outdir = tmp_path / "out"
    proc = neo_run((big_artifacts if big else artifacts)[arch], arch, "--threads", "2", "--warmup", "1", "--repeat", "3",
                   *args, "--outdir", str(outdir))
    assert proc.returncode == 0, proc.stderr
    timing = json.loads(proc.stdout)
    assert timing["runs"] == 3 and 0 <= timing["min_ms"] <= timing["median_ms"] <= timing["p90_ms"]
    y, mask = np.load(outdir / "output_0.npy"), np.load(outdir / "output_1.npy")
    expected = reference(**inputs)
    assert y.dtype == np.float32 and mask.dtype == np.bool_
    np.testing.assert_array_equal(y, expected[0])
    np.testing.assert_array_equal(mask, expected[1])


def test_neo_run_by_index_and_errors(native: Path, tmp_path: Path) -> None:
    arch = host_arch()
    inputs = make_inputs(4)
    np.save(tmp_path / "x.npy", inputs["x"])
    np.save(tmp_path / "b.npy", inputs["bias"])
    proc = neo_run(native, arch, "--input-index", f"0={tmp_path / 'x.npy'}",
                   "--input-index", f"1={tmp_path / 'b.npy'}", "--outdir", str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "o" / "output_0.npy"), reference(**inputs)[0])

    np.save(tmp_path / "x64.npy", inputs["x"].astype(np.float64))
    np.save(tmp_path / "xs.npy", inputs["x"][:2])
    failures = [
        (["--input", f"x={tmp_path / 'x64.npy'}"], "dtype '<f8' does not match input 'x' (float32)"),
        (["--input", f"x={tmp_path / 'xs.npy'}"], "shape (2, 33) does not match input 'x' (4, 33)"),
        (["--input", f"nope={tmp_path / 'x.npy'}"], "no input 'nope' (inputs: 'x', 'bias')"),
        (["--input", f"x={tmp_path / 'x.npy'}"], "input 'bias' was not set"),
        (["--bogus", "1"], "unknown option '--bogus'"),
    ]
    for args, message in failures:
        proc = neo_run(native, arch, *args)
        assert proc.returncode != 0
        assert message in proc.stderr, proc.stderr


# -- params file ----------------------------------------------------------------------------------


def test_params_round_trip_and_determinism(tmp_path: Path) -> None:
    entries = {
        "w.f16": np.linspace(-1, 1, 12, dtype=np.float16).reshape(3, 4),
        "w.i64": np.array([-(2**62), 0, 2**62 - 1], dtype=np.int64),
        "w.bool": np.array([[True, False, True]]),
        "a.scalar": np.array(3.5, dtype=np.float64),
        "a.empty": np.zeros((0, 7), dtype=np.uint8),
        "ü.unicode": np.arange(70, dtype=np.int8),
        "b.fortran": np.asfortranarray(np.arange(6, dtype=np.uint32).reshape(2, 3)),
    }
    write_params(tmp_path / "a.params", entries)
    write_params(tmp_path / "b.params", dict(reversed(list(entries.items()))))
    raw = (tmp_path / "a.params").read_bytes()
    assert raw == (tmp_path / "b.params").read_bytes()
    for mmap in (True, False):
        back = read_params(tmp_path / "a.params", mmap=mmap)
        assert list(back) == sorted(entries)
        for name, arr in entries.items():
            assert back[name].dtype == arr.dtype and back[name].shape == arr.shape
            np.testing.assert_array_equal(back[name], arr)
            assert not back[name].flags.writeable
    # the header and the documented checksum, computed the slow way
    assert raw[:8] == b"NEOPARAM"
    version, count, data_offset, data_nbytes, stored, _ = np.frombuffer(
        raw[8:48], dtype="<u4", count=2).tolist() + np.frombuffer(raw[16:48], "<u8").tolist()
    assert (version, count) == (1, len(entries))
    assert data_offset % 64 == 0 and data_nbytes % 64 == 0
    assert len(raw) == data_offset + data_nbytes
    words = np.frombuffer(raw[data_offset:], "<u8").tolist()
    assert stored == sum(w * (2 * i + 1) for i, w in enumerate(words)) % 2**64
    assert checksum(np.frombuffer(raw[data_offset:], np.uint8)) == stored
    assert DTYPE_CODES["bool"] == 12 and DTYPE_CODES["bfloat16"] == 3


def test_params_bfloat16(tmp_path: Path) -> None:
    ml_dtypes = require_module("ml_dtypes")
    arr = np.array([1.5, -2.0, 3.0], dtype=ml_dtypes.bfloat16)
    write_params(tmp_path / "p", {"bf": arr})
    back = read_params(tmp_path / "p")["bf"]
    assert back.dtype == arr.dtype
    np.testing.assert_array_equal(back.astype(np.float32), arr.astype(np.float32))


def test_params_rejects_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "p"
    write_params(path, {"a": np.ones(3, np.float32)})
    raw = bytearray(path.read_bytes())
    bad_magic = bytes(b"XEOPARAM" + raw[8:])
    bad_version = bytes(raw[:8] + (2).to_bytes(4, "little") + raw[12:])
    for data, message in [(bad_magic, "bad magic"), (bad_version, "format version 2"),
                          (bytes(raw) + bytes(64), "longer than declared")]:
        path.write_bytes(data)
        with pytest.raises(ValueError, match=message):
            read_params(path)
    with pytest.raises(ValueError, match="cannot be stored"):
        write_params(path, {"a": np.ones(2, dtype=np.complex64)})


# -- toolchain ------------------------------------------------------------------------------------


def test_link_failure_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "bad.so"
    with pytest.raises(ToolchainError, match="linking bad.so for x86_64 failed"):
        link_shared([b"not an object file"], "x86_64", out)
    assert list(tmp_path.iterdir()) == []


def test_outputs_are_deterministic(artifacts: dict[str, Path], tmp_path: Path) -> None:
    for arch in ARCHES:
        obj = compile_c(KERNELS, arch, flags=["-ffp-contract=off"])
        link_shared([obj], arch, tmp_path / "again.so")
        assert (tmp_path / "again.so").read_bytes() == (artifacts[arch] / "compiled.so").read_bytes()
    start = time.perf_counter()
    build_runtime(host_arch(), tmp_path / "rt")  # cached: no compiler run
    assert time.perf_counter() - start < 2.0
    for name in ("libneort.so", "neo-run", "neort.h"):
        assert (tmp_path / "rt" / name).read_bytes() == (artifacts[host_arch()] / name).read_bytes()
    assert os.access(tmp_path / "rt" / "neo-run", os.X_OK)


def test_qemu_command_shape() -> None:
    assert qemu_command(host_arch()) == []
    for arch in ARCHES:
        cmd = qemu_command(arch)
        assert cmd is None or cmd == [] or cmd[0].startswith("qemu-")
