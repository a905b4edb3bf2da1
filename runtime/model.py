"""The Python runtime: run a compiled artifact through its own libneort.so (ctypes), DLR style.

Stands alone on purpose: only the standard library and numpy, so a device needs just this package and
the artifact directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from .params import numpy_dtype

_c_int64_p = ctypes.POINTER(ctypes.c_int64)

NEO_LOAD_CHECKED = 0x1  # neort.h: checked mode (guard bytes around every buffer)


class ArtifactError(RuntimeError):
    """The artifact directory is missing files, corrupt, or built for another machine."""


def _elf_machine(path: str | os.PathLike) -> tuple[int, int, int] | None:
    """(EI_CLASS, EI_DATA, e_machine) of an ELF file: word size, byte order and instruction set;
    None when it is not ELF (or unreadable)."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    return head[4], head[5], int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")


def _process_machine() -> tuple[int, int, int] | None:
    """The ELF machine of this Python process: what a library must be built for to load here."""
    for exe in ("/proc/self/exe", sys.executable):
        if exe and (found := _elf_machine(exe)) is not None:
            return found
    return None


def _bind(lib: ctypes.CDLL) -> None:
    """Declare the C signatures once per library so ctypes converts and checks arguments."""
    i, p, sz, cs = ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p
    info = [p, i, ctypes.POINTER(cs), ctypes.POINTER(cs), ctypes.POINTER(i),
            ctypes.POINTER(_c_int64_p)]
    sigs: dict[str, tuple[Any, list[Any]]] = {
        "neo_runtime_version": (cs, []),
        "neo_last_error": (cs, []),
        "neo_model_load": (i, [cs, i, ctypes.POINTER(p)]),
        "neo_model_free": (None, [p]),
        "neo_model_num_inputs": (i, [p]),
        "neo_model_num_outputs": (i, [p]),
        "neo_model_input_info": (i, info),
        "neo_model_output_info": (i, info),
        "neo_model_set_input_index": (i, [p, i, p, sz]),
        "neo_model_run": (i, [p]),
        "neo_model_get_output": (i, [p, i, p, sz]),
        "neo_model_set_num_threads": (i, [p, i]),
        "neo_model_num_threads": (i, [p]),
        "neo_model_profile": (i, [p, i, ctypes.POINTER(ctypes.c_double)]),
        "neo_model_num_nodes": (i, [p]),
        "neo_model_node_name": (cs, [p, i]),
    }
    # newer entry points: an artifact built with an older runtime still loads without them
    optional: dict[str, tuple[Any, list[Any]]] = {
        "neo_model_load_ex": (i, [cs, i, ctypes.c_uint, ctypes.POINTER(p)]),
        "neo_runtime_arch": (cs, []),
        "neo_model_row_batch": (ctypes.c_int64, [p]),
        "neo_model_run_rows": (i, [p, ctypes.c_int64, ctypes.POINTER(p), ctypes.POINTER(p)]),
        "neo_model_bind_input_index": (i, [p, i, p, sz]),
    }
    for name, (restype, argtypes) in {**sigs, **optional}.items():
        fn = getattr(lib, name, None)
        if fn is None and name in optional:
            continue
        if fn is None:
            raise AttributeError(f"undefined symbol: {name}")
        fn.restype = restype
        fn.argtypes = argtypes


class Model:
    """A compiled model loaded from an artifact directory.

    `Model(path).run(x)` returns the outputs as a list of new arrays. A Model serializes its own
    calls, so it can be shared between Python threads; the native code runs without the GIL.

    `check=True` loads it in the runtime's checked mode (NEO_LOAD_CHECKED in neort.h): guard bytes
    around every buffer, verified after every kernel; a kernel that wrote out of bounds makes
    run() raise RuntimeError naming the kernel, its node and the buffer. Slower; for debugging.
    """

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None,
                 check: bool = False) -> None:
        self._handle: ctypes.c_void_p | None = None
        self._lock = threading.Lock()
        # the arrays the model reads its inputs from (bound, not copied), kept alive until the
        # next run sets others: profile() reruns on them
        self._bound: list[np.ndarray] = []
        self.path = Path(path)
        graph_path = self.path / "compiled_model.json"
        if not self.path.is_dir():
            raise ArtifactError(f"compiled artifact directory {self.path} does not exist")
        if not graph_path.is_file():
            raise ArtifactError(f"compiled artifact {self.path} is missing compiled_model.json")
        lib_path = self.path / "libneort.so"
        if not lib_path.is_file():
            raise ArtifactError(f"compiled artifact {self.path} is missing libneort.so")
        # The artifact's runtime was built for the artifact's arch (NEO_ARCH); whether this
        # process can load it is a question for the two binaries, not for a table of arch names.
        lib_machine, here = _elf_machine(lib_path), _process_machine()
        if lib_machine is not None and here is not None and lib_machine != here:
            try:
                arch = json.loads(graph_path.read_text()).get("arch")
            except (ValueError, AttributeError):
                arch = None
            raise ArtifactError(
                f"compiled artifact {self.path} is built for {arch or 'another arch'}, this "
                f"machine is {platform.machine()}: use `neo run` (which runs it under qemu) or "
                f"run it on the device"
            )
        try:
            # RTLD_LOCAL: artifacts of different runtime versions can be loaded side by side
            self._lib = ctypes.CDLL(str(lib_path.resolve()), mode=os.RTLD_NOW | os.RTLD_LOCAL)
            _bind(self._lib)
        except (OSError, AttributeError) as e:
            raise ArtifactError(f"cannot load {lib_path}: {e}") from None

        handle = ctypes.c_void_p()
        threads = 0 if num_threads is None else int(num_threads)
        self.checked = bool(check)
        if self.checked:
            if not hasattr(self._lib, "neo_model_load_ex"):
                raise ArtifactError(f"the runtime in {self.path} predates checked mode; "
                                    f"recompile the model to get a current runtime")
            rc = self._lib.neo_model_load_ex(os.fsencode(self.path), threads, NEO_LOAD_CHECKED,
                                             ctypes.byref(handle))
        else:
            rc = self._lib.neo_model_load(os.fsencode(self.path), threads, ctypes.byref(handle))
        if rc != 0:
            raise ArtifactError(self._error())
        self._handle = handle

        self._inputs = [self._io_info(self._lib.neo_model_input_info, i)
                        for i in range(self._lib.neo_model_num_inputs(handle))]
        self._outputs = [self._io_info(self._lib.neo_model_output_info, i)
                         for i in range(self._lib.neo_model_num_outputs(handle))]
        self._node_names = [self._lib.neo_model_node_name(handle, i).decode()
                            for i in range(self._lib.neo_model_num_nodes(handle))]
        # rows per run of a model of independent rows (tree ensembles), which runs any number
        # of them; 0 for the others
        self.row_batch = (int(self._lib.neo_model_row_batch(handle))
                          if hasattr(self._lib, "neo_model_row_batch") else 0)
        meta_path = self.path / "compiled.meta"
        self._metadata: dict[str, Any] | None = None
        if meta_path.is_file():
            try:
                self._metadata = json.loads(meta_path.read_text())
            except ValueError as e:
                raise ArtifactError(f"{meta_path}: invalid JSON: {e}") from None

    # -- internals -----------------------------------------------------------------------------

    def _error(self) -> str:
        return (self._lib.neo_last_error() or b"unknown error").decode(errors="replace")

    def _io_info(self, fn: Any, i: int) -> tuple[str, str, tuple[int, ...], np.dtype]:
        name, dtype = ctypes.c_char_p(), ctypes.c_char_p()
        ndim, shape = ctypes.c_int(), _c_int64_p()
        if fn(self._handle, i, ctypes.byref(name), ctypes.byref(dtype), ctypes.byref(ndim),
              ctypes.byref(shape)) != 0:
            raise ArtifactError(self._error())
        dims = tuple(int(shape[d]) for d in range(ndim.value))
        dname = dtype.value.decode()
        return name.value.decode(), dname, dims, numpy_dtype(dname)

    def _live(self) -> ctypes.c_void_p:
        if self._handle is None:
            raise RuntimeError(f"model {self.path} is closed")
        return self._handle

    def _arrange(self, data: Any) -> list[Any]:
        """Put run()'s argument into input order, checking the names."""
        names = self.input_names
        if isinstance(data, Mapping):
            unknown = [k for k in data if k not in names]
            missing = [n for n in names if n not in data]
            if unknown or missing:
                parts = []
                if unknown:
                    parts.append(f"unknown input(s) {', '.join(map(repr, unknown))}")
                if missing:
                    parts.append(f"missing input(s) {', '.join(map(repr, missing))}")
                raise ValueError(f"{'; '.join(parts)}; the model's inputs are "
                                 f"{', '.join(map(repr, names))}")
            return [data[n] for n in names]
        if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
            if len(data) != len(names):
                raise ValueError(f"got {len(data)} inputs, the model takes {len(names)}: "
                                 f"{', '.join(map(repr, names))}")
            return list(data)
        if len(names) != 1:
            raise ValueError(f"the model takes {len(names)} inputs "
                             f"({', '.join(map(repr, names))}); pass a list or a dict")
        return [data]

    # -- running -------------------------------------------------------------------------------

    def run(self, data: np.ndarray | Sequence[np.ndarray] | Mapping[str, np.ndarray]
            ) -> list[np.ndarray]:
        """Run on one array (single-input models), a list in input order, or a dict by name.
        The kernels read the (C-contiguous) arrays in place, never writing them: do not change
        them from another thread while run() runs. The model keeps them until the next run
        (profile() reruns on them)."""
        arrays = []
        rows = set()
        for value, (name, dname, shape, dtype) in zip(self._arrange(data), self._inputs):
            arr = value if isinstance(value, np.ndarray) else np.asarray(value)
            if arr.dtype != dtype:
                raise TypeError(f"input {name!r} has dtype {arr.dtype}, expected {dname}; "
                                f"convert it explicitly (e.g. x.astype(np.{dname}))")
            if arr.shape != shape and not (self.row_batch and arr.shape[1:] == shape[1:]
                                           and arr.ndim == len(shape)):
                rows_note = (f" (any number of rows of {shape[1:]})" if self.row_batch else "")
                raise ValueError(f"input {name!r} has shape {arr.shape}, expected "
                                 f"{shape}{rows_note}")
            rows.add(arr.shape[0] if arr.ndim else None)
            arrays.append(arr if arr.flags.c_contiguous else np.ascontiguousarray(arr))
        if self.row_batch and rows != {self.row_batch}:
            return self._run_rows(arrays, rows)
        with self._lock:
            handle = self._live()
            # zero copy where the runtime can read the arrays in place (kernels never write an
            # input); runtimes before neo_model_bind_input_index copy
            put = getattr(self._lib, "neo_model_bind_input_index", None)
            put = put or self._lib.neo_model_set_input_index
            for i, arr in enumerate(arrays):
                if put(handle, i, arr.ctypes.data, arr.nbytes):
                    raise ValueError(self._error())
            self._bound = arrays
            if self._lib.neo_model_run(handle) != 0:
                raise RuntimeError(self._error())
            outputs = []
            for i, (_, _, shape, dtype) in enumerate(self._outputs):
                out = np.empty(shape, dtype=dtype)
                if self._lib.neo_model_get_output(handle, i, out.ctypes.data, out.nbytes) != 0:
                    raise RuntimeError(self._error())
                outputs.append(out)
        return outputs

    def _run_rows(self, arrays: list[np.ndarray], rows: set) -> list[np.ndarray]:
        """Any number of rows of a row-batch model, in chunks of the compiled batch (C side)."""
        if len(rows) != 1:
            raise ValueError(f"every input needs the same number of rows, got {sorted(rows)}")
        (n,) = rows
        outs = [np.empty((n,) + shape[1:], dtype=dtype) for _, _, shape, dtype in self._outputs]
        ptr = ctypes.c_void_p
        ins = (ptr * max(1, len(arrays)))(*[a.ctypes.data for a in arrays])
        res = (ptr * max(1, len(outs)))(*[o.ctypes.data for o in outs])
        with self._lock:
            if self._lib.neo_model_run_rows(self._live(), n, ins, res) != 0:
                raise RuntimeError(self._error())
        return outs

    def profile(self, repeat: int = 10) -> list[tuple[str, float]]:
        """Mean seconds per node over `repeat` runs on the current inputs (run() sets them)."""
        if repeat <= 0:
            raise ValueError(f"repeat must be positive, got {repeat}")
        seconds = (ctypes.c_double * max(1, len(self._node_names)))()
        with self._lock:
            if self._lib.neo_model_profile(self._live(), int(repeat), seconds) != 0:
                raise RuntimeError(self._error())
        return [(name, float(seconds[i])) for i, name in enumerate(self._node_names)]

    @property
    def num_threads(self) -> int:
        with self._lock:
            return int(self._lib.neo_model_num_threads(self._live()))

    def set_num_threads(self, n: int | None) -> None:
        """Resize the thread pool; None or n <= 0 uses all CPUs."""
        with self._lock:
            if self._lib.neo_model_set_num_threads(self._live(), 0 if n is None else int(n)):
                raise RuntimeError(self._error())

    def close(self) -> None:
        """Free the native model; further calls raise. Safe to call twice."""
        with self._lock:
            if self._handle is not None:
                self._lib.neo_model_free(self._handle)
                self._handle = None
            self._bound = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_handle", None) is not None:
            # at interpreter shutdown ctypes or our attributes may already be torn down
            with contextlib.suppress(AttributeError, TypeError):
                self.close()

    def __repr__(self) -> str:
        return f"Model({str(self.path)!r}, inputs={self.input_names}, outputs={self.output_names})"

    # -- description ---------------------------------------------------------------------------

    @property
    def input_names(self) -> list[str]:
        return [io[0] for io in self._inputs]

    @property
    def output_names(self) -> list[str]:
        return [io[0] for io in self._outputs]

    @property
    def input_shapes(self) -> list[tuple[int, ...]]:
        return [io[2] for io in self._inputs]

    @property
    def output_shapes(self) -> list[tuple[int, ...]]:
        return [io[2] for io in self._outputs]

    @property
    def input_dtypes(self) -> list[str]:
        return [io[1] for io in self._inputs]

    @property
    def output_dtypes(self) -> list[str]:
        return [io[1] for io in self._outputs]

    @property
    def node_names(self) -> list[str]:
        return list(self._node_names)

    @property
    def metadata(self) -> dict[str, Any] | None:
        """The parsed compiled.meta, or None when the artifact has none."""
        return self._metadata

    # DLR-compatible spellings
    def get_input_names(self) -> list[str]:
        return self.input_names

    def get_output_names(self) -> list[str]:
        return self.output_names

    def get_input_dtypes(self) -> list[str]:
        return self.input_dtypes

    def get_output_dtypes(self) -> list[str]:
        return self.output_dtypes

    def get_version(self) -> str:
        """Version of the native runtime library shipped in the artifact."""
        return self._lib.neo_runtime_version().decode()

    @property
    def runtime_arch(self) -> str | None:
        """The arch the artifact's native runtime was built for (None for runtimes before 0.1.0's
        neo_runtime_arch)."""
        fn = getattr(self._lib, "neo_runtime_arch", None)
        return fn().decode() if fn is not None else None

    def has_metadata(self) -> bool:
        return self._metadata is not None
