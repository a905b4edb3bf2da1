"""Neo's input-shape rules (`--shape`, Neo's `DataInputConfig`) for all seven frameworks.

Two steps, because the first can run before the model is loaded and the second needs the model:

- `parse_shapes` checks the JSON itself: its form (object, or list for PyTorch), its names and its
  dims, in the order the user wrote them.
- `bind_shapes` matches the parsed shapes to the inputs the model declares, fills in static inputs
  the user left out, converts Keras's NCHW shapes to the model's NHWC, and explains mistakes in
  names, ranks and layouts.

Every error is one line that says what the framework expects and shows an example, because wrong
names, order and layout are the mistakes Neo users make most and its messages explain least.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from neo.errors import ModelLoadError, UsageError
from neo.frameworks import Framework, parse_framework

MAX_RANK = 8
MAX_DIM = 2**31 - 1  # dims are int32 in the artifact's metadata and the runtime's C API
MAX_ELEMENTS = 2**33  # per input; far beyond any real model input, so only typos hit it

Shape = tuple[int, ...]
ModelShape = tuple[int | None, ...]


@dataclass(frozen=True)
class ModelInput:
    """An input as the model file declares it: None dims are dynamic, shape None is unknown rank.

    dim_names: the name of each dynamic dim where the model gives one (ONNX dim_param), else None;
    inputs that share a name must be given the same size there.
    """

    name: str
    shape: ModelShape | None
    dtype: str
    dim_names: tuple[str | None, ...] | None = None

    def normalized(self) -> ModelInput:
        """Non-positive declared dims are dynamic too (exporters write -1 or 0 for them)."""
        if self.shape is None or all(d is None or d > 0 for d in self.shape):
            return self
        shape = tuple(None if d is None or d <= 0 else d for d in self.shape)
        return ModelInput(self.name, shape, self.dtype, self.dim_names)


@dataclass(frozen=True)
class ShapeSpec:
    """The shapes the user gave, in the order given; `form` is "absent" without --shape."""

    framework: str
    entries: tuple[tuple[str, Shape], ...] = ()
    form: Literal["dict", "list", "absent"] = "absent"
    notes: tuple[str, ...] = ()

    @property
    def given(self) -> bool:
        return bool(self.entries)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.entries]

    @property
    def shapes(self) -> dict[str, Shape]:
        return dict(self.entries)


class BoundShapes(dict[str, Shape]):
    """Input name -> static shape in the model's own layout and input order, plus notes to show."""

    def __init__(self, items: Sequence[tuple[str, Shape]] = (), notes: Sequence[str] = ()) -> None:
        super().__init__(items)
        self.notes: list[str] = list(notes)


# --- formatting -------------------------------------------------------------------------------


def _fmt_shape(shape: Sequence[int | None] | None) -> str:
    if shape is None:
        return "unknown"
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


def _fmt_json(value: Any, limit: int = 60) -> str:
    try:
        text = json.dumps(value, separators=(",", ":"), allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "an empty object" if not value else "an object"
    if isinstance(value, list):
        return "an empty list" if not value else "a list"
    if isinstance(value, str):
        return f"a string {_fmt_json(value)}"
    if isinstance(value, bool):
        return f"{'true' if value else 'false'}"
    if value is None:
        return "null"
    return f"a number {_fmt_json(value)}"


def _examples(fw: Framework) -> str:
    if fw.shape_form == "dict-or-list":
        list_form = json.dumps(list(json.loads(fw.shape_example).values()), separators=(",", ":"))
        return f"{fw.shape_example} or {list_form}"
    return fw.shape_example


def _syntax_error(fw: Framework, got: str) -> UsageError:
    if fw.shape_form == "none":
        return UsageError(
            f"--shape for {fw.name} must be absent: {fw.display_name} needs no input shapes (the "
            f"number of features comes from the model); got {got}; drop --shape"
        )
    return UsageError(
        f"--shape for {fw.name} must be {fw.shape_expectation}, e.g. {_examples(fw)}; got {got}"
    )


# --- parsing ----------------------------------------------------------------------------------


class _DuplicateName(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _pairs_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys; a repeated input name is always a mistake.
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateName(key)
        seen[key] = value
    return seen


def _check_dims(fw: Framework, label: str, dims: Any) -> Shape:
    """A validated static shape, or a UsageError saying what is wrong with `dims`."""
    shown = f"{label}: {_fmt_json(dims)}"
    if not isinstance(dims, list):
        raise _syntax_error(fw, f"{shown} (a shape is a list of dims)")
    if len(dims) > MAX_RANK:
        raise _syntax_error(
            fw, f"{shown} (rank {len(dims)}; ranks 0 (a scalar, []) to {MAX_RANK} are supported)"
        )
    for dim in dims:
        # bool is an int subclass in Python, but `true` is never a dim.
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise _syntax_error(fw, f"{shown} ({_fmt_json(dim)} is not an integer dim)")
        if dim == -1:
            raise _syntax_error(
                fw, f"{shown} (-1 means a dynamic dim; shapes must be static, give the actual size)"
            )
        if dim <= 0:
            raise _syntax_error(fw, f"{shown} (dims must be positive integers)")
        if dim > MAX_DIM:
            raise _syntax_error(fw, f"{shown} (dim {dim} is larger than {MAX_DIM})")
    elements = math.prod(dims)
    if elements > MAX_ELEMENTS:
        raise _syntax_error(
            fw, f"{shown} ({elements} elements; at most {MAX_ELEMENTS} per input are supported)"
        )
    return tuple(dims)


def parse_shapes(framework: Framework | str, text: str | None) -> ShapeSpec:
    """Check the --shape JSON for `framework` without the model; names keep the user's order."""
    fw = parse_framework(framework)
    if text is None or not text.strip():
        return ShapeSpec(fw.name)
    try:
        value = json.loads(text, object_pairs_hook=_pairs_without_duplicates)
    except _DuplicateName as dup:
        raise _syntax_error(fw, f"input {dup.name!r} twice") from None
    except json.JSONDecodeError as exc:
        why = f"invalid JSON ({exc.msg} at column {exc.colno})"
        if "'" in text and '"' not in text:
            # Neo's own documentation writes Python dicts with single quotes; JSON needs double.
            why += "; JSON needs double quotes around names"
        raise _syntax_error(fw, why) from None

    if fw.shape_form == "none":
        if value in ({}, [], None):
            return ShapeSpec(fw.name)
        raise _syntax_error(fw, _describe(value))
    if fw.shape_form == "optional-dict" and value in ({}, [], None):
        return ShapeSpec(fw.name)

    if isinstance(value, list) and fw.shape_form == "dict-or-list":
        return _parse_list_form(fw, value)
    if not isinstance(value, dict):
        return _raise_wrong_top(fw, value)
    if not value:
        raise _syntax_error(fw, "an empty object")

    entries: list[tuple[str, Shape]] = []
    for name, dims in value.items():
        if not name.strip():
            raise _syntax_error(fw, "an empty input name")
        entries.append((name, _check_dims(fw, json.dumps(name), dims)))

    if fw.shape_form == "dict-or-list":
        # PyTorch inputs have no names of their own in TorchScript; Neo names them by position.
        expected = [f"input{i}" for i in range(len(entries))]
        names = [name for name, _ in entries]
        if names != expected:
            raise _syntax_error(
                fw,
                f"names {', '.join(names)}; PyTorch inputs are named by position, "
                f"{', '.join(expected)} in that order",
            )
    return ShapeSpec(fw.name, tuple(entries), "dict")


def _raise_wrong_top(fw: Framework, value: Any) -> ShapeSpec:
    got = _describe(value)
    if isinstance(value, list) and value and all(isinstance(d, list) for d in value):
        got += " of shapes (only PyTorch takes a list; name each input)"
    raise _syntax_error(fw, got)


def _parse_list_form(fw: Framework, value: list[Any]) -> ShapeSpec:
    if not value:
        raise _syntax_error(fw, "an empty list")
    if all(isinstance(d, int) and not isinstance(d, bool) for d in value):
        raise _syntax_error(fw, f"a flat list {_fmt_json(value)}; wrap it: [{_fmt_json(value)}]")
    entries = tuple(
        (f"input{i}", _check_dims(fw, f"shape {i}", dims)) for i, dims in enumerate(value)
    )
    return ShapeSpec(fw.name, entries, "list")


# --- binding ----------------------------------------------------------------------------------


def _to_channels_last(shape: Sequence[Any]) -> tuple[Any, ...]:
    # NCHW -> NHWC (and NCW -> NWC, NCDHW -> NDHWC): move axis 1 to the end.
    return (shape[0], *shape[2:], shape[1])


def _to_channels_first(shape: Sequence[Any]) -> tuple[Any, ...]:
    # NHWC -> NCHW: move the last axis to position 1.
    return (shape[0], shape[-1], *shape[1:-1])


def _converts_layout(fw: Framework, rank: int) -> bool:
    """Whether the user's --shape is in a different layout from the model (Keras image inputs)."""
    # Neo's Keras convention is about images; rank-2/3 inputs (dense, sequences) are taken as given.
    return fw.layout != fw.model_layout and rank >= 4


def _model_to_user(fw: Framework, shape: ModelShape) -> ModelShape:
    return _to_channels_first(shape) if _converts_layout(fw, len(shape)) else shape


def _user_to_model(fw: Framework, shape: Shape) -> Shape:
    return _to_channels_last(shape) if _converts_layout(fw, len(shape)) else shape


def _to_other_layout(fw: Framework, shape: Sequence[Any]) -> tuple[Any, ...]:
    """`shape` read in the layout the user did not use, expressed in the layout they should use."""
    return _to_channels_first(shape) if fw.layout == "NCHW" else _to_channels_last(shape)


def _fits(given: Sequence[int], model: Sequence[int | None]) -> bool:
    return len(given) == len(model) and all(
        m is None or g == m for g, m in zip(given, model, strict=True)
    )


def _example_shape(fw: Framework, user_shape: ModelShape | None) -> list[int]:
    """A concrete shape in the user's layout for an example, filling dynamic dims plausibly."""
    template = json.loads(fw.shape_example or "{}")
    template_dims = next(iter(template.values()), [1])
    if user_shape is None:
        return list(template_dims)
    filled = []
    for axis, dim in enumerate(user_shape):
        if dim is not None and dim > 0:
            filled.append(dim)
        elif axis > 0 and len(template_dims) == len(user_shape):
            filled.append(template_dims[axis])
        else:
            filled.append(1)  # batch
    return filled


def _model_example(fw: Framework, inputs: Sequence[ModelInput]) -> str:
    if not inputs:
        return _examples(fw)
    parts = []
    for i, mi in enumerate(inputs):
        user_shape = None if mi.shape is None else _model_to_user(fw, mi.shape)
        name = f"input{i}" if fw.shape_form == "dict-or-list" else mi.name
        dims = ",".join(str(d) for d in _example_shape(fw, user_shape))
        parts.append(f"{json.dumps(name)}:[{dims}]")
    return "{" + ",".join(parts) + "}"


def _model_inputs_text(fw: Framework, inputs: Sequence[ModelInput]) -> str:
    if not inputs:
        return "(none)"
    return ", ".join(
        f"{mi.name} {_fmt_shape(None if mi.shape is None else _model_to_user(fw, mi.shape))}"
        for mi in inputs
    )


def _bind_one(fw: Framework, mi: ModelInput, given: Shape) -> tuple[Shape | None, str | None]:
    """The model-layout shape for input `mi` given `given` (user layout), or a problem sentence."""
    label = f"input {mi.name!r}"
    if mi.shape is None:
        return _user_to_model(fw, given), None
    model_user = _model_to_user(fw, mi.shape)
    if len(given) != len(mi.shape):
        problem = (
            f"{label} is {_fmt_shape(given)} (rank {len(given)}) but the model's is "
            f"{_fmt_shape(model_user)} (rank {len(mi.shape)})"
        )
        if len(given) + 1 == len(mi.shape) and _fits((1, *given), model_user):
            problem += f"; add the batch dimension: {_fmt_shape((1, *given))}"
        return None, problem
    if _fits(given, model_user):
        return _user_to_model(fw, given), None
    if fw.layout and len(given) >= 3:
        other = _to_other_layout(fw, given)
        if _fits(other, model_user):
            wrong = "NHWC" if fw.layout == "NCHW" else "NCHW"
            return None, (
                f"{label} is {_fmt_shape(given)}, which looks like {wrong}; "
                f"{fw.name} expects {fw.layout}: {_fmt_shape(other)}"
            )
    axes = [
        i
        for i, (g, m) in enumerate(zip(given, model_user, strict=True))
        if m is not None and g != m
    ]
    fixed = ", ".join(
        f"dim {i} is {given[i]} but the model fixes it at {model_user[i]}" for i in axes
    )
    return None, f"{label} is {_fmt_shape(given)}: {fixed} (model shape {_fmt_shape(model_user)})"


def bind_shapes(
    framework: Framework | str, spec: ShapeSpec | None, model_inputs: Sequence[ModelInput]
) -> BoundShapes:
    """Static shapes for every model input, keyed by the model's names in its order.

    Shapes are in the model's layout (NHWC for a Keras image input given as NCHW). Inputs the user
    left out are taken from the model when it declares them fully static.
    """
    fw = parse_framework(framework)
    spec = spec or ShapeSpec(fw.name)
    inputs = [mi.normalized() for mi in model_inputs]
    if fw.shape_form == "none" or (fw.shape_form == "optional-dict" and not spec.given):
        return _bind_without_shapes(fw, inputs)

    example = _model_example(fw, inputs)
    prefix = f"--shape for {fw.name}"
    notes: list[str] = list(spec.notes)
    given = _match_names(fw, spec, inputs, prefix, example, notes)

    problems: list[str] = []
    missing: list[str] = []
    bound: list[tuple[str, Shape]] = []
    for mi in inputs:
        if mi.name in given:
            shape, problem = _bind_one(fw, mi, given[mi.name])
            if problem:
                problems.append(problem)
                continue
            assert shape is not None
            if shape != given[mi.name]:
                notes.append(
                    f"{fw.name}: --shape {_fmt_shape(given[mi.name])} for {mi.name!r} is "
                    f"{fw.layout} (Neo's convention); the model is {fw.model_layout} "
                    f"({_fmt_shape(shape)}): the compiled model takes {fw.layout} input and "
                    f"transposes it once"
                )
            bound.append((mi.name, shape))
        elif mi.shape is not None and all(d is not None for d in mi.shape):
            bound.append((mi.name, tuple(int(d) for d in mi.shape if d is not None)))
        elif (filled := _from_shared_dims(mi, inputs, given, fw)) is not None:
            bound.append((mi.name, filled))
            notes.append(f"{fw.name}: input {mi.name!r} compiled with {_fmt_shape(filled)}: its "
                         "named dynamic dims take the sizes given for the other inputs")
        else:
            if mi.shape is None:
                missing.append(f"{mi.name!r} has no declared shape")
            else:
                missing.append(f"{mi.name!r} is {_fmt_shape(_model_to_user(fw, mi.shape))}")

    if missing:
        which = ", ".join(missing)
        if spec.given:
            problems.append(f"no shape given for model input {which}")
        else:
            raise UsageError(
                f"{prefix} is needed: model input {which}; give static {fw.layout} shapes, "
                f"e.g. --shape '{example}'"
            )
    if not problems:
        problems += _shared_dim_conflicts(inputs, dict(bound))
    if problems:
        raise UsageError(f"{prefix} does not fit the model: {'; '.join(problems)}; e.g. {example}")
    return BoundShapes(bound, notes)


def _named_dims(inputs: Sequence[ModelInput]) -> dict[str, list[tuple[str, int]]]:
    """dim_param name -> the (input, axis) pairs of dynamic dims that carry it."""
    named: dict[str, list[tuple[str, int]]] = {}
    for mi in inputs:
        if mi.shape is None or not mi.dim_names or len(mi.dim_names) != len(mi.shape):
            continue
        for axis, (dim, name) in enumerate(zip(mi.shape, mi.dim_names, strict=True)):
            if dim is None and name:
                named.setdefault(name, []).append((mi.name, axis))
    return named


def _shared_dim_conflicts(inputs: Sequence[ModelInput], bound: dict[str, Shape]) -> list[str]:
    """A sentence for every dim_param that the bound shapes give different sizes."""
    problems = []
    for name, places in _named_dims(inputs).items():
        sizes = [(inp, axis, bound[inp][axis]) for inp, axis in places
                 if inp in bound and axis < len(bound[inp])]
        if len({size for _, _, size in sizes}) > 1:
            listed = ", ".join(f"{inp!r} dim {axis} is {size}" for inp, axis, size in sizes)
            problems.append(f"inputs share the dynamic dim {name!r} but the shapes differ there "
                            f"({listed}); give them the same size")
    return problems


def _from_shared_dims(mi: ModelInput, inputs: Sequence[ModelInput], given: dict[str, Shape],
                      fw: Framework) -> Shape | None:
    """The shape of an input left out whose every dynamic dim is named and sized by a given
    input, else None."""
    if mi.shape is None or not mi.dim_names or len(mi.dim_names) != len(mi.shape):
        return None
    sizes: dict[str, int] = {}
    for other in inputs:
        if other.name not in given or other.shape is None or not other.dim_names:
            continue
        shape = _user_to_model(fw, given[other.name])
        if len(shape) != len(other.shape) or len(other.dim_names) != len(shape):
            continue
        for dim, name, size in zip(other.shape, other.dim_names, shape, strict=True):
            if dim is None and name:
                sizes.setdefault(name, size)
    filled = []
    for dim, name in zip(mi.shape, mi.dim_names, strict=True):
        if dim is not None:
            filled.append(dim)
        elif name in sizes:
            filled.append(sizes[name])
        else:
            return None
    return tuple(filled)


def _match_names(
    fw: Framework,
    spec: ShapeSpec,
    inputs: list[ModelInput],
    prefix: str,
    example: str,
    notes: list[str],
) -> dict[str, Shape]:
    """The user's shapes keyed by model input name; unknown names are an error."""
    if not spec.given:
        return {}
    if fw.shape_form == "dict-or-list":
        # PyTorch shapes are positional (input0, input1, ...); the model's own names may differ.
        if len(spec.entries) != len(inputs):
            raise UsageError(
                f"{prefix} gives {len(spec.entries)} shape(s) but the model takes {len(inputs)} "
                f"input(s): {_model_inputs_text(fw, inputs)}; e.g. {example}"
            )
        return {mi.name: shape for mi, (_, shape) in zip(inputs, spec.entries, strict=True)}

    model_names = [mi.name for mi in inputs]
    unknown = [name for name in spec.names if name not in model_names]
    if unknown:
        guesses = []
        for name in unknown:
            close = difflib.get_close_matches(name, model_names, n=1)
            guesses.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise UsageError(
            f"{prefix} names input(s) the model does not have: {', '.join(guesses)}; the model's "
            f"inputs are: {_model_inputs_text(fw, inputs)}; e.g. {example}"
        )
    in_model_order = [name for name in model_names if name in spec.names]
    if fw.shapes_in_order and spec.names != in_model_order:
        notes.append(
            f"{fw.name}: --shape lists the inputs in a different order from the model; matched by "
            f"name (model order: {', '.join(model_names)})"
        )
    return spec.shapes


def _bind_without_shapes(fw: Framework, inputs: list[ModelInput]) -> BoundShapes:
    # XGBoost: the feature count comes from the model; only the batch may be left open.
    notes: list[str] = []
    bound: list[tuple[str, Shape]] = []
    for mi in inputs:
        if mi.shape is None or any(d is None for d in mi.shape[1:]):
            raise ModelLoadError(
                f"{fw.display_name} model input {mi.name!r} has shape {_fmt_shape(mi.shape)}; "
                "the number of features could not be read from the model"
            )
        if mi.shape and mi.shape[0] is None:
            notes.append(f"{fw.name}: input {mi.name!r} compiled with batch size 1")
        bound.append((mi.name, tuple(1 if d is None else d for d in mi.shape)))
    return BoundShapes(bound, notes)


__all__ = [
    "MAX_DIM",
    "MAX_ELEMENTS",
    "MAX_RANK",
    "BoundShapes",
    "ModelInput",
    "ShapeSpec",
    "bind_shapes",
    "parse_shapes",
]
