"""Opening TensorFlow models: SavedModel directories and frozen GraphDefs (`.pb`, `.pbtxt`).

Both end as one frozen `GraphDef` (variables turned into constants) with named inputs and outputs:

- a SavedModel (written by `tf.saved_model.save`, Keras `model.export`, or TF1 exporters) is
  loaded with `tf.saved_model.load`; the signature (`serving_default` unless `--signature` names
  another) is frozen with `convert_variables_to_constants_v2`, which inlines the function calls.
  Control flow stays functional (`While`, `If`), so a loop is reported by its own name. Inputs and
  outputs are named by the signature's keys.
- a frozen GraphDef is parsed as it is: its inputs are its `Placeholder` nodes, its outputs the
  nodes whose results nothing else reads.

TensorFlow is an optional dependency (`pip install 'neo-compiler[tensorflow]'`), imported only
when a model is opened: reading the protobufs and freezing variables needs it.
"""
from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neo.ir.errors import ModelLoadError, UsageError

from ..common.filecache import keep_last_read

INSTALL_HINT = "pip install 'neo-compiler[tensorflow]'"
DEFAULT_SIGNATURE = "serving_default"
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
# Ops that produce no model output even when nothing reads them.
_NOT_OUTPUTS = frozenset({"Const", "NoOp", "Placeholder", "PlaceholderWithDefault", "Assert",
                          "SaveV2", "RestoreV2", "VarHandleOp", "VariableV2", "Variable"})


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Drop what TensorFlow's C++ side writes to file descriptor 2 meanwhile (start-up and
    loading chatter that TF_CPP_MIN_LOG_LEVEL no longer silences); errors still arrive as
    exceptions."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no stderr to redirect
        yield
        return
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def require_tf():
    """The tensorflow module, or a ModelLoadError that says how to install it."""
    if sys.modules.get("tensorflow") is not None:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with quiet_native_stderr():
            import tensorflow as tf
    except ImportError as e:
        raise ModelLoadError(
            f"reading TensorFlow models needs the tensorflow package, which is not installed ({e})",
            hint=INSTALL_HINT) from None
    return tf


@dataclass
class TensorInfo:
    """A model input or output: `name` as users see it (signature key or node name), `tensor`
    the GraphDef tensor ("node:index"), its declared shape (None dims dynamic; None: unknown
    rank) and dtype name."""

    name: str
    tensor: str
    shape: tuple[int | None, ...] | None
    dtype: str


@dataclass
class TFModel:
    """A frozen GraphDef with its named inputs and outputs."""

    graph_def: Any  # tensorflow GraphDef
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    format: str  # "saved_model" or "frozen_graph"
    path: Path
    signature: str | None = None
    signatures: list[str] = field(default_factory=list)


def dtype_name(tf, enum: int) -> str:
    """The numpy-style name of a TensorFlow DataType enum ("float32", "resource", ...)."""
    try:
        return tf.dtypes.as_dtype(enum).name
    except TypeError:
        return f"DataType {enum}"


def _shape(proto) -> tuple[int | None, ...] | None:
    if proto.unknown_rank:
        return None
    return tuple(d.size if d.size >= 0 else None for d in proto.dim)


# -- SavedModel -------------------------------------------------------------------------------
def is_saved_model(path: Path) -> bool:
    return path.is_dir() and any((path / n).is_file() for n in SAVED_MODEL_FILES)


def _read_saved_model_proto(tf, directory: Path):
    from google.protobuf import text_format
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    for name in SAVED_MODEL_FILES:
        f = directory / name
        if not f.is_file():
            continue
        try:
            if name.endswith(".pbtxt"):
                text_format.Parse(f.read_text(), proto)
            else:
                proto.ParseFromString(f.read_bytes())
        except (DecodeError, text_format.ParseError, UnicodeDecodeError) as e:
            raise ModelLoadError(f"cannot read {f} as a SavedModel: {e}") from None
        break
    if not proto.meta_graphs:
        raise ModelLoadError(f"{directory} is not a SavedModel: its {name} holds no MetaGraph")
    return proto


def _signature_defs(proto) -> dict[str, Any]:
    """The signatures users can pick (TensorFlow's internal `__...` entries left out)."""
    mg = next((m for m in proto.meta_graphs if "serve" in m.meta_info_def.tags),
              proto.meta_graphs[0])
    return {k: v for k, v in mg.signature_def.items() if not k.startswith("__")}


def choose_signature(directory: Path, available: list[str], wanted: str | None) -> str:
    if wanted is not None:
        if wanted not in available:
            shown = ", ".join(available) or "none"
            raise UsageError(f"SavedModel {directory} has no signature {wanted!r}; its "
                             f"signatures: {shown}", hint="pass one of them with --signature")
        return wanted
    if DEFAULT_SIGNATURE in available:
        return DEFAULT_SIGNATURE
    if len(available) == 1:
        return available[0]
    if not available:
        raise ModelLoadError(f"SavedModel {directory} has no signatures to compile",
                             hint="save it with tf.saved_model.save(model, dir, signatures=...) or "
                                  "Keras model.export(dir)")
    raise UsageError(f"SavedModel {directory} has no {DEFAULT_SIGNATURE!r} signature but several "
                     f"others: {', '.join(available)}", hint="pick one with --signature NAME")


def saved_model_signature_io(directory: Path, signature: str | None
                             ) -> tuple[str, list[str], list[TensorInfo], list[TensorInfo]]:
    """(chosen signature, all signatures, inputs, outputs) from saved_model.pb alone, without
    loading the model (names are the signature's keys, sorted as TensorFlow flattens them)."""
    tf = require_tf()
    proto = _read_saved_model_proto(tf, directory)
    sigs = _signature_defs(proto)
    chosen = choose_signature(directory, sorted(sigs), signature)
    sig = sigs[chosen]

    def infos(m) -> list[TensorInfo]:
        return [TensorInfo(k, m[k].name, _shape(m[k].tensor_shape)
                           if m[k].HasField("tensor_shape") else None,
                           dtype_name(tf, m[k].dtype)) for k in sorted(m)]

    return chosen, sorted(sigs), infos(sig.inputs), infos(sig.outputs)


def freeze(tf, fn):
    """The GraphDef of concrete function `fn` with its variables as constants and its function
    calls inlined (Grappler's function inlining). Functional control flow (While, If) stays as it
    is, so that a loop is reported as the While it is rather than TF1's Enter/Merge/Switch/Exit.

    `convert_variables_to_constants_v2` does this and then builds a new concrete function from
    the result, which takes several times longer than the freezing and is not needed here; its
    two steps are called directly where this TensorFlow has them."""
    from tensorflow.python.framework import convert_to_constants as c2c

    steps = (getattr(c2c, "_FunctionConverterDataInEager", None),
             getattr(c2c, "_replace_variables_by_constants", None))
    if all(steps):
        data = steps[0](func=fn, lower_control_flow=False, aggressive_inlining=False)
        return steps[1](converter_data=data)[0]
    frozen = c2c.convert_variables_to_constants_v2(fn, lower_control_flow=False)
    return frozen.graph.as_graph_def()


def load_saved_model(directory: Path, signature: str | None) -> TFModel:
    tf = require_tf()
    chosen, available, sig_inputs, sig_outputs = saved_model_signature_io(directory, signature)
    try:
        with quiet_native_stderr():
            loaded = tf.saved_model.load(str(directory))
        fn = loaded.signatures[chosen]
    except Exception as e:  # noqa: BLE001  (TensorFlow raises many kinds for a broken model)
        raise ModelLoadError(f"TensorFlow cannot load the SavedModel {directory}: "
                             f"{type(e).__name__}: {_first_line(e)}") from None
    try:
        with quiet_native_stderr():
            graph_def = freeze(tf, fn)
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"cannot freeze signature {chosen!r} of {directory}: "
                             f"{type(e).__name__}: {_first_line(e)}") from None
    # The function's placeholders come in the order of its flattened input signature (keyword
    # arguments by sorted key), its outputs in that of its flattened structured outputs.
    arg_specs = tf.nest.flatten(fn.structured_input_signature, expand_composites=True)
    kwargs = fn.structured_input_signature[1]
    keys = sorted(kwargs) if isinstance(kwargs, dict) and kwargs else [s.name for s in arg_specs]
    placeholders = [t for t in fn.inputs if t.dtype != tf.resource][:len(arg_specs)]
    by_key = {i.name: i for i in sig_inputs}
    inputs = []
    for key, spec, ph in zip(keys, arg_specs, placeholders):
        declared = by_key.get(key)
        shape = declared.shape if declared else (
            None if spec.shape.rank is None else tuple(spec.shape.as_list()))
        inputs.append(TensorInfo(key, _tensor_name(ph.name), shape, spec.dtype.name))
    out_struct = fn.structured_outputs
    out_keys = (sorted(out_struct) if isinstance(out_struct, dict)
                else [f"output_{i}" for i in range(len(fn.outputs))])
    declared_out = {o.name: o for o in sig_outputs}
    outputs = []
    for key, t in zip(out_keys, fn.outputs):
        d = declared_out.get(key)
        outputs.append(TensorInfo(key, _tensor_name(t.name), d.shape if d else None,
                                  t.dtype.name))
    return TFModel(graph_def, inputs, outputs, "saved_model", directory, chosen, available)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else ""


def _tensor_name(name: str) -> str:
    return name if ":" in name else name + ":0"


# -- frozen GraphDef --------------------------------------------------------------------------
def load_frozen_graph(path: Path) -> TFModel:
    tf = require_tf()
    from google.protobuf import text_format
    from google.protobuf.message import DecodeError

    graph_def = tf.compat.v1.GraphDef()
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelLoadError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        if path.suffix.lower() == ".pbtxt":
            text_format.Parse(data.decode("utf-8"), graph_def)
        else:
            graph_def.ParseFromString(data)
    except (DecodeError, text_format.ParseError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"cannot read {path} as a TensorFlow GraphDef: {_first_line(e)}",
                             hint="a frozen graph is a GraphDef written with "
                                  "tf.io.write_graph(graph_def, dir, name, as_text=...)") from None
    if not graph_def.node:
        kind = "SavedModel's saved_model.pb" if path.name in SAVED_MODEL_FILES else "GraphDef"
        raise ModelLoadError(f"{path} is not a frozen TensorFlow graph: it holds no nodes",
                             hint=f"pass the directory of a {kind}" if "Saved" in kind else None)
    consumed = {i.lstrip("^").rsplit(":", 1)[0] for n in graph_def.node for i in n.input}
    inputs = []
    for n in graph_def.node:
        if n.op == "Placeholder":
            shape = _shape(n.attr["shape"].shape) if "shape" in n.attr else None
            inputs.append(TensorInfo(n.name, n.name + ":0", shape,
                                     dtype_name(tf, n.attr["dtype"].type)))
    sinks = [n for n in graph_def.node if n.op not in _NOT_OUTPUTS and n.name not in consumed]
    # A frozen TF2 function marks its outputs: Identity nodes with a control input (^NoOp).
    # Other nodes nothing reads are then leftovers, such as the Identity of a Keras activation's
    # custom gradient; without the marks (TF1 graphs) every such node is an output.
    marked = sorted((n for n in sinks if any(i.startswith("^") for i in n.input)),
                    key=lambda n: _natural(n.name))
    outputs = [TensorInfo(n.name, n.name + ":0", None, "") for n in marked or sinks]
    if not outputs:
        raise ModelLoadError(f"{path}: found no output (every node's result is read by another)")
    return TFModel(graph_def, inputs, outputs, "frozen_graph", path)


def _natural(name: str) -> tuple[str, int]:
    """Identity, Identity_1, Identity_2, ..., Identity_10: the order of the function's outputs."""
    base, _, num = name.rpartition("_")
    return (base, int(num)) if base and num.isdigit() else (name, -1)


# -- entry point ------------------------------------------------------------------------------
def _key(path: Path, signature: str | None = None) -> tuple | None:
    files = [path / n for n in SAVED_MODEL_FILES if (path / n).is_file()] if path.is_dir() else [
        path]
    try:
        stats = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    except OSError:
        return None
    return (str(path.resolve()), tuple(stats), signature)


@keep_last_read(key=_key)
def read_model(p: Path, signature: str | None = None) -> TFModel:
    """The model at `p` (a SavedModel directory or a frozen .pb/.pbtxt), frozen; the last one
    read is kept, since `neo compile` asks for the inputs and then loads the same model."""
    if p.is_dir():
        if not is_saved_model(p):
            raise ModelLoadError(f"{p} is not a SavedModel directory (no saved_model.pb)")
        model = load_saved_model(p, signature)
    elif p.name.lower() in SAVED_MODEL_FILES:
        model = load_saved_model(p.parent, signature)
    elif p.is_file():
        if signature is not None:
            raise UsageError(f"--signature {signature}: {p} is a frozen graph, which has no "
                             "signatures; --signature applies to SavedModels")
        model = load_frozen_graph(p)
    else:
        raise ModelLoadError(f"TensorFlow model {p} does not exist")
    return model


def model_inputs(path: str | Path, signature: str | None = None) -> list[TensorInfo]:
    """The inputs, read cheaply: a SavedModel's from its signature without loading it."""
    p = Path(path)
    if p.is_dir() or p.name.lower() in SAVED_MODEL_FILES:
        d = p if p.is_dir() else p.parent
        if not is_saved_model(d):
            raise ModelLoadError(f"{p} is not a SavedModel directory (no saved_model.pb)")
        return saved_model_signature_io(d, signature)[2]
    return read_model(p, signature).inputs
