"""Reading a `.tflite` flatbuffer with the `tflite` package (pure-Python bindings of TFLite's
schema; no TensorFlow): tensors with their data and quantization, operators with their options
as `{field: value}` under the schema's own (snake_case) field names.

An operator's key is its builtin name (`CONV_2D`; the opcode is max(builtin_code,
deprecated_builtin_code), the schema's rule since builtin codes outgrew an int8) or, for a
custom op, its custom code (`TFLite_Detection_PostProcess`).
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from neo.ir.errors import ModelLoadError

# TFLite TensorType -> IR dtype (None: no IR dtype; such a tensor makes its op unsupported)
_DTYPES = {
    "FLOAT32": "float32", "FLOAT16": "float16", "FLOAT64": "float64", "INT8": "int8",
    "UINT8": "uint8", "INT16": "int16", "UINT16": "uint16", "INT32": "int32", "UINT32": "uint32",
    "INT64": "int64", "UINT64": "uint64", "BOOL": "bool",
}
_NUMPY = {"bool": np.bool_}


def _tflite():
    try:
        import tflite
    except ImportError as e:  # a dependency of neo; only a broken install lacks it
        raise ModelLoadError("reading .tflite models needs the tflite package",
                             hint="pip install tflite") from e
    return tflite


def _enum_names(cls) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


@cache
def _enums() -> dict[str, dict[int, str]]:
    t = _tflite()
    return {"op": _enum_names(t.BuiltinOperator), "options": _enum_names(t.BuiltinOptions),
            "type": _enum_names(t.TensorType)}


@cache
def _field_enums() -> dict[str, dict[int, str]]:
    """Option fields whose values are schema enums: they are given by name ("SAME", "RELU6")."""
    t = _tflite()
    tensor_type = _enum_names(t.TensorType)
    return {"padding": _enum_names(t.Padding),
            "fused_activation_function": _enum_names(t.ActivationFunctionType),
            "weights_format": _enum_names(t.FullyConnectedOptionsWeightsFormat),
            "MirrorPadOptions.mode": _enum_names(t.MirrorPadMode),
            "LSTMOptions.kernel_type": _enum_names(t.LSTMKernelType),
            "in_data_type": tensor_type, "out_data_type": tensor_type, "output_type": tensor_type,
            "out_type": tensor_type, "idx_out_type": tensor_type,
            "quantized_bias_type": tensor_type}


def snake(name: str) -> str:
    """A getter's name as the schema field: StrideW -> stride_w, DilationHFactor ->
    dilation_h_factor, NewShape -> new_shape."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


_NOT_FIELDS = ("Init", "GetRootAs")


@cache
def _fields(cls) -> tuple[tuple[str, str, bool], ...]:
    """(getter, field name, is a vector) of an options class."""
    members = set(dir(cls))
    out = []
    for m in sorted(members):
        if (m.startswith("_") or m.startswith(_NOT_FIELDS) or m.endswith(("BufferHasIdentifier",
                                                                            "AsNumpy", "IsNone",
                                                                            "Length"))):
            continue
        vector = f"{m}AsNumpy" in members
        if not vector and f"{m}Length" in members:  # a vector of tables or strings: not used
            continue
        out.append((m, snake(m), vector))
    return tuple(out)


def _read_options(obj, cls_name: str) -> dict:
    enums = _field_enums()
    attrs = {}
    for getter, name, vector in _fields(type(obj)):
        if vector:
            arr = getattr(obj, f"{getter}AsNumpy")()
            value = tuple(np.asarray(arr).tolist()) if isinstance(arr, np.ndarray) else ()
        else:
            value = getattr(obj, getter)()
            if isinstance(value, float):
                value = float(np.float32(value))
        table = enums.get(f"{cls_name}.{name}") or enums.get(name)
        if table is not None and isinstance(value, int) and not isinstance(value, bool):
            value = table.get(value, value)
        attrs[name] = value
    return attrs


@cache
def option_defaults(cls_name: str) -> dict:
    """The schema defaults of an options table: its getters read on a table with no fields."""
    import flatbuffers

    cls = getattr(_tflite(), cls_name)
    b = flatbuffers.Builder(0)
    b.StartObject(0)
    b.Finish(b.EndObject())
    obj = cls()
    buf = b.Output()
    obj.Init(buf, flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0))
    return _read_options(obj, cls_name)


@dataclass(frozen=True)
class Quantization:
    """Affine quantization real = scale * (q - zero_point), per tensor or along `axis`."""

    scale: np.ndarray  # float32 [1] or [channels]
    zero_point: np.ndarray  # int64, same length
    axis: int

    @property
    def per_tensor(self) -> bool:
        return self.scale.size == 1

    def describe(self) -> dict:
        if self.per_tensor:
            return {"scale": float(self.scale[0]), "zero_point": int(self.zero_point[0])}
        return {"scale": [float(s) for s in self.scale],
                "zero_point": [int(z) for z in self.zero_point], "axis": self.axis}


@dataclass
class TensorInfo:
    index: int
    name: str
    shape: tuple[int, ...]
    signature: tuple[int | None, ...]  # shape_signature: None where the dim is dynamic
    tflite_type: str  # FLOAT32, INT8, ...
    dtype: str | None  # the IR dtype, None when the IR has none (STRING, COMPLEX64, ...)
    data: np.ndarray | None  # constant data (None for activations and variables)
    quant: Quantization | None
    is_variable: bool = False
    sparse: bool = False

    @property
    def is_const(self) -> bool:
        return self.data is not None


@dataclass
class OpInfo:
    index: int
    op: str  # builtin name, or the custom code of a custom op
    builtin: str  # builtin name ("CUSTOM" for custom ops)
    version: int
    inputs: list[int]  # tensor indices, -1 for an omitted optional input
    outputs: list[int]
    options: str | None  # the options table's class name
    attrs: dict = field(default_factory=dict)

    @property
    def custom(self) -> bool:
        return self.builtin == "CUSTOM"


@dataclass
class Subgraph:
    index: int
    name: str
    tensors: list[TensorInfo]
    inputs: list[int]
    outputs: list[int]
    ops: list[OpInfo]

    def origin(self, op: OpInfo) -> str:
        """How messages name an operator: its first output tensor (operators have no names)."""
        for i in op.outputs:
            if i >= 0 and self.tensors[i].name:
                return self.tensors[i].name
        return f"{op.op}#{op.index}"


@dataclass
class TfliteModel:
    path: str
    version: int
    description: str
    subgraphs: list[Subgraph]

    @property
    def main(self) -> Subgraph:
        return self.subgraphs[0]


def _vector(getter_numpy) -> list[int]:
    arr = getter_numpy()
    return [int(v) for v in arr] if isinstance(arr, np.ndarray) else []


def _buffer_data(buf: bytes, model, index: int) -> bytes | None:
    if index <= 0 or index >= model.BuffersLength():  # buffer 0 is the empty sentinel
        return None
    b = model.Buffers(index)
    offset, size = b.Offset(), b.Size()
    if offset > 1:  # a model over 2 GB keeps its buffers after the flatbuffer
        if offset + size > len(buf):
            raise ModelLoadError(f"buffer {index} lies beyond the end of the file")
        return bytes(buf[offset:offset + size]) if size else None
    data = b.DataAsNumpy()
    return data.tobytes() if isinstance(data, np.ndarray) and data.size else None


def _quantization(q, rank: int) -> Quantization | None:
    if q is None or q.ScaleLength() == 0:
        return None
    scale = np.asarray(q.ScaleAsNumpy(), np.float32).reshape(-1)
    zp = q.ZeroPointAsNumpy()
    zp = (np.asarray(zp, np.int64).reshape(-1) if isinstance(zp, np.ndarray)
          else np.zeros(scale.shape, np.int64))
    if zp.size == 1 and scale.size > 1:
        zp = np.repeat(zp, scale.size)
    axis = int(q.QuantizedDimension())
    return Quantization(scale, zp, axis if rank else 0)


def _tensor(buf: bytes, model, sg, index: int) -> TensorInfo:
    t = sg.Tensors(index)
    names = _enums()["type"]
    ttype = names.get(t.Type(), f"type {t.Type()}")
    dtype = _DTYPES.get(ttype)
    shape = tuple(_vector(t.ShapeAsNumpy))
    sig = tuple(_vector(t.ShapeSignatureAsNumpy)) if t.ShapeSignatureLength() else shape
    signature = tuple(None if d < 0 else d for d in sig) if len(sig) == len(shape) else shape
    name = (t.Name() or b"").decode("utf-8", "replace")
    raw = _buffer_data(buf, model, t.Buffer())
    data = None
    sparsity = t.Sparsity()
    if raw is not None and dtype is not None:
        np_type = _NUMPY.get(dtype, np.dtype(dtype).newbyteorder("<"))
        count = int(np.prod(shape)) if shape else 1
        arr = np.frombuffer(raw, np_type)
        arr = arr.astype(arr.dtype.newbyteorder("="), copy=True)
        if sparsity is not None:
            data = densify(arr, shape, sparsity, name)
        elif arr.size != count:
            raise ModelLoadError(f"tensor {name!r}: its buffer holds {arr.size} {ttype} values, "
                                 f"its shape {list(shape)} needs {count}")
        else:
            data = arr.reshape(shape)
    return TensorInfo(index, name, shape, signature, ttype, dtype, data,
                      _quantization(t.Quantization(), len(shape)), bool(t.IsVariable()),
                      sparsity is not None)


def _index_vector(meta, kind: str) -> np.ndarray:
    """A DimensionMetadata's array_segments or array_indices (a union of int vectors)."""
    t = _tflite()
    union_type = getattr(meta, f"Array{kind}Type")()
    table = getattr(meta, f"Array{kind}")()
    cls = {1: t.Int32Vector, 2: t.Uint16Vector, 3: t.Uint8Vector}.get(union_type)
    if cls is None or table is None:
        raise ModelLoadError(f"a sparse dimension has no array_{kind.lower()}")
    vec = cls()
    vec.Init(table.Bytes, table.Pos)
    values = vec.ValuesAsNumpy()
    return np.asarray(values if isinstance(values, np.ndarray) else [], np.int64)


def densify(values: np.ndarray, shape: tuple[int, ...], sparsity, name: str) -> np.ndarray:
    """The dense array of a sparse constant (TFLite's format: the tensor, blocked along
    `block_map`, walked in `traversal_order`, each level dense or CSR), as DENSIFY computes it."""
    order = [int(v) for v in np.asarray(sparsity.TraversalOrderAsNumpy()).reshape(-1)] \
        if sparsity.TraversalOrderLength() else list(range(len(shape)))
    block_map = [int(v) for v in np.asarray(sparsity.BlockMapAsNumpy()).reshape(-1)] \
        if sparsity.BlockMapLength() else []
    rank = len(shape)
    if sparsity.DimMetadataLength() != len(order) or len(order) != rank + len(block_map):
        raise ModelLoadError(f"tensor {name!r}: sparsity metadata does not match its shape")
    # walk the levels, keeping for each stored element its position in the level and its index
    # along every expanded dim visited so far
    pos = np.zeros(1, np.int64)
    idx = np.zeros((1, len(order)), np.int64)
    for level, dim in enumerate(order):
        meta = sparsity.DimMetadata(level)
        if meta.Format() == 0:  # DENSE
            size = int(meta.DenseSize())
            within = np.tile(np.arange(size, dtype=np.int64), pos.size)
            pos = np.repeat(pos, size) * size + within
            idx = np.repeat(idx, size, axis=0)
            idx[:, dim] = within
        else:  # SPARSE_CSR
            segments, indices = _index_vector(meta, "Segments"), _index_vector(meta, "Indices")
            if pos.size and (pos.max() + 1 >= segments.size):
                raise ModelLoadError(f"tensor {name!r}: sparse segments are too short")
            counts = segments[pos + 1] - segments[pos]
            starts = np.repeat(segments[pos], counts)
            offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
            pos = starts + offsets
            idx = np.repeat(idx, counts, axis=0)
            idx[:, dim] = indices[pos]
    if pos.size != values.size:
        raise ModelLoadError(f"tensor {name!r}: {values.size} stored values, its sparsity "
                             f"metadata describes {pos.size}")
    # expanded dims -> the tensor's: a blocked dim d is outer * block + inner (dim rank + j)
    block = {d: int(sparsity.DimMetadata(order.index(rank + j)).DenseSize())
             for j, d in enumerate(block_map)}
    dense = np.zeros(shape, values.dtype)
    coords = []
    for d in range(rank):
        c = idx[:, d]
        if d in block:
            c = c * block[d] + idx[:, rank + block_map.index(d)]
        coords.append(c)
    dense[tuple(coords)] = values
    return dense


def _operator(model, sg, index: int) -> OpInfo:
    tfl = _tflite()
    enums = _enums()
    op = sg.Operators(index)
    code = model.OperatorCodes(op.OpcodeIndex())
    builtin = enums["op"].get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()),
                              f"BUILTIN_{code.BuiltinCode()}")
    key = builtin
    if builtin == "CUSTOM":
        key = (code.CustomCode() or b"").decode("utf-8", "replace") or "CUSTOM"
    info = OpInfo(index, key, builtin, int(code.Version() or 1), _vector(op.InputsAsNumpy),
                  _vector(op.OutputsAsNumpy), None)
    opt_type = op.BuiltinOptionsType()
    if opt_type:
        cls_name = enums["options"].get(opt_type)
        table = op.BuiltinOptions()
        if cls_name is not None and table is not None and hasattr(tfl, cls_name):
            obj = getattr(tfl, cls_name)()
            obj.Init(table.Bytes, table.Pos)
            info.options = cls_name
            info.attrs = _read_options(obj, cls_name)
    return info


def read_model(path: str | Path) -> TfliteModel:
    """The model at `path`; `ModelLoadError` when it is not a readable TFLite flatbuffer."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"TFLite model file {path} does not exist or is not a file")
    buf = path.read_bytes()
    tfl = _tflite()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ModelLoadError(f"{path} is not a TFLite model (no TFL3 flatbuffer identifier)",
                             hint="a .tflite file written by the TFLite converter is expected")
    try:
        model = tfl.Model.GetRootAs(buf, 0)
        subgraphs = []
        for si in range(model.SubgraphsLength()):
            sg = model.Subgraphs(si)
            tensors = [_tensor(buf, model, sg, i) for i in range(sg.TensorsLength())]
            ops = [_operator(model, sg, i) for i in range(sg.OperatorsLength())]
            subgraphs.append(Subgraph(si, (sg.Name() or b"").decode("utf-8", "replace"), tensors,
                                      _vector(sg.InputsAsNumpy), _vector(sg.OutputsAsNumpy), ops))
        version = int(model.Version())
        description = (model.Description() or b"").decode("utf-8", "replace")
    except ModelLoadError as e:
        raise ModelLoadError(f"{path}: {e.message}") from None
    except (IndexError, ValueError, TypeError, AttributeError, UnicodeError, struct.error) as e:
        # flatbuffers reads past the end of a truncated buffer with struct (struct.error)
        raise ModelLoadError(f"cannot read {path} as a TFLite model: {type(e).__name__}: {e}",
                             hint="the file is damaged or truncated") from None
    if not subgraphs:
        raise ModelLoadError(f"{path}: the TFLite model has no subgraph")
    for sg in subgraphs:
        n = len(sg.tensors)
        for i in sg.inputs + sg.outputs + [t for op in sg.ops for t in op.inputs + op.outputs]:
            if not -1 <= i < n:
                raise ModelLoadError(f"{path}: subgraph {sg.index} refers to tensor {i}, but it "
                                     f"has {n} tensors")
    return TfliteModel(str(path), version, description, subgraphs)
