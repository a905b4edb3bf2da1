"""The C API as a C user meets it: a program that includes only the artifact's neort.h and links only
its libneort.so, built with zig for each target, run natively or under qemu-user.

The program loads the artifact, prints its inputs and outputs, runs the model on a raw float32 input
file and writes the raw output, and checks the error paths of the API on the way.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from neo.codegen.toolchain import ZIG_TARGETS, zig_cc
from neo.targets import get_target

PROGRAM = r"""
/* capi_test ARTIFACT_DIR INPUT.raw OUTPUT.raw: prints the model's inputs and outputs, runs it on
 * INPUT.raw (the only input, C order, its dtype) and writes every output's bytes to OUTPUT.raw. */
#include "neort.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, ...)                                                            \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "FAIL line %d: ", __LINE__);                            \
            fprintf(stderr, __VA_ARGS__);                                           \
            fprintf(stderr, " [neo_last_error: %s]\n", neo_last_error());           \
            exit(1);                                                                \
        }                                                                           \
    } while (0)

static size_t nbytes_of(const char *dtype, int ndim, const int64_t *shape) {
    CHECK(strcmp(dtype, "float32") == 0, "dtype %s: this test handles float32 only", dtype);
    size_t n = 4;
    for (int d = 0; d < ndim; d++) n *= (size_t)shape[d];
    return n;
}

static void print_io(const char *kind, const char *name, const char *dtype, int ndim,
                     const int64_t *shape) {
    printf("%s %s %s", kind, name, dtype);
    for (int d = 0; d < ndim; d++) printf(" %lld", (long long)shape[d]);
    printf("\n");
}

static void *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(n > 0 ? (size_t)n : 1);
    CHECK(buf != NULL && fread(buf, 1, (size_t)n, f) == (size_t)n, "cannot read %s", path);
    fclose(f);
    *size = (size_t)n;
    return buf;
}

int main(int argc, char **argv) {
    CHECK(argc == 4, "usage: capi_test ARTIFACT_DIR INPUT.raw OUTPUT.raw");
    const char *version = neo_runtime_version();
    CHECK(version != NULL && version[0] != '\0', "empty runtime version");
    printf("version %s\n", version);

    /* a directory that does not exist: non-zero, a message, no model */
    NeoModel *missing = NULL;
    CHECK(neo_model_load("/nonexistent/neo-artifact", 1, &missing) != 0,
          "loading a missing directory succeeded");
    const char *err = neo_last_error();
    CHECK(err != NULL && err[0] != '\0', "no message after a failed load");
    CHECK(strchr(err, '\n') == NULL, "multi-line message: %s", err);
    printf("load_error %s\n", err);

    NeoModel *m = NULL;
    CHECK(neo_model_load(argv[1], 2, &m) == 0 && m != NULL, "neo_model_load(%s)", argv[1]);
    int ni = neo_model_num_inputs(m), no = neo_model_num_outputs(m);
    CHECK(ni == 1 && no >= 1, "%d inputs, %d outputs", ni, no);

    const char *in_name, *in_dtype;
    int in_ndim;
    const int64_t *in_shape;
    CHECK(neo_model_input_info(m, 0, &in_name, &in_dtype, &in_ndim, &in_shape) == 0, "input_info");
    print_io("input", in_name, in_dtype, in_ndim, in_shape);
    CHECK(neo_model_input_info(m, ni, NULL, NULL, NULL, NULL) != 0, "input_info out of range");
    size_t in_nbytes = nbytes_of(in_dtype, in_ndim, in_shape);

    size_t out_total = 0;
    for (int i = 0; i < no; i++) {
        const char *name, *dtype;
        int ndim;
        const int64_t *shape;
        CHECK(neo_model_output_info(m, i, &name, &dtype, &ndim, &shape) == 0, "output_info %d", i);
        print_io("output", name, dtype, ndim, shape);
        out_total += nbytes_of(dtype, ndim, shape);
    }

    /* running before the input is set fails */
    CHECK(neo_model_run(m) != 0, "run without inputs succeeded");
    CHECK(neo_last_error()[0] != '\0', "no message after a run without inputs");
    printf("run_error %s\n", neo_last_error());

    size_t size;
    void *input = read_file(argv[2], &size);
    CHECK(size == in_nbytes, "input file has %zu bytes, the model takes %zu", size, in_nbytes);
    CHECK(neo_model_set_input(m, in_name, input, in_nbytes - 4) != 0, "short input accepted");
    CHECK(neo_model_set_input(m, "no_such_input", input, in_nbytes) != 0, "unknown name accepted");
    printf("set_input_error %s\n", neo_last_error());
    CHECK(neo_model_set_input(m, in_name, input, in_nbytes) == 0, "set_input");
    CHECK(neo_model_run(m) == 0, "run");

    unsigned char *out = malloc(out_total), *p = out;
    for (int i = 0; i < no; i++) {
        const char *dtype;
        int ndim;
        const int64_t *shape;
        neo_model_output_info(m, i, NULL, &dtype, &ndim, &shape);
        size_t n = nbytes_of(dtype, ndim, shape);
        CHECK(neo_model_get_output(m, i, p, n + 4) != 0, "wrong output size accepted");
        CHECK(neo_model_get_output(m, i, p, n) == 0, "get_output %d", i);
        const void *own = neo_model_output_ptr(m, i);
        CHECK(own != NULL && ((uintptr_t)own % 64) == 0, "output_ptr %d not 64-byte aligned", i);
        CHECK(memcmp(own, p, n) == 0, "output_ptr %d differs from get_output", i);
        p += n;
    }
    CHECK(neo_model_get_output(m, no, out, 4) != 0, "output index out of range accepted");
    CHECK(neo_model_output_ptr(m, -1) == NULL, "output_ptr(-1) is not NULL");

    FILE *f = fopen(argv[3], "wb");
    CHECK(f != NULL && fwrite(out, 1, out_total, f) == out_total, "cannot write %s", argv[3]);
    fclose(f);
    free(out);
    free(input);
    neo_model_free(m);
    neo_model_free(NULL);
    printf("ok\n");
    return 0;
}
"""

# compile target -> zig -target of its arch (neo.ir.target.ARCHES: linux-gnu, the arch's glibc)
ARCHES = {name: ZIG_TARGETS[get_target(name).arch]
          for name in ("x86_64", "arm64", "armv7", "riscv64", "rv64gcv")}


def build_program(art: Path, zig_target: str, out: Path) -> None:
    """Compile the program against the artifact's header and library only."""
    src = out.parent / "capi_test.c"
    src.write_text(PROGRAM)
    cmd = [*zig_cc(), "-target", zig_target, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror",
           f"-I{art}", str(src), "-o", str(out), f"-L{art}", "-lneort", "-Wl,-rpath,$ORIGIN"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"building the C program failed:\n{proc.stderr}"


@pytest.mark.parametrize("target", list(ARCHES))
def test_c_program_runs_the_artifact(target, small_cnn, compile_cached, require_qemu, tmp_path):
    zig_target = ARCHES[target]
    prefix = require_qemu(target)  # qemu's CPU for that target's code (RISC-V: vectors or not)
    # a private copy of the artifact (the compile cache is shared): the program sits beside
    # libneort.so and finds it through its $ORIGIN rpath
    art = tmp_path / "artifact"
    shutil.copytree(compile_cached(small_cnn.path, target), art)
    exe = art / "capi_test"
    build_program(art, zig_target, exe)

    x = small_cnn.sample(3)
    ref = small_cnn.reference(x)
    assert ref.std() > 1e-2, f"degenerate reference {ref}"
    x.tofile(tmp_path / "input.raw")
    proc = subprocess.run([*prefix, str(exe), str(art), str(tmp_path / "input.raw"),
                           str(tmp_path / "output.raw")],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"

    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    assert proc.stdout.splitlines()[-1] == "ok"
    meta = json.loads((art / "compiled.meta").read_text())
    for kind, (io,) in (("input", meta["inputs"]), ("output", meta["outputs"])):
        assert lines[kind].split() == [io["name"], io["dtype"], *map(str, io["shape"])]
    assert lines["version"].strip(), "empty version"
    for key in ("load_error", "run_error", "set_input_error"):
        assert lines.get(key, "").strip(), f"{key}: empty neo_last_error(); {proc.stdout}"
    assert "/nonexistent/neo-artifact" in lines["load_error"], lines["load_error"]
    assert "no_such_input" in lines["set_input_error"], lines["set_input_error"]

    out = np.fromfile(tmp_path / "output.raw", dtype=np.float32).reshape(ref.shape)
    err = float(np.abs(out - ref).max())
    tol = 1e-4 * float(np.abs(ref).max())
    assert err <= tol, f"{target}: max abs error {err:.3g} > {tol:.3g}\ngot {out}\nref {ref}"
    assert out.argmax() == ref.argmax()
