"""The converter registry every frontend uses: `{op: [Converter, ...]}` with version ranges.

A converter is a small function named after the framework's op, taking the conversion context,
then the op's inputs (positional parameters), then its attributes as keyword-only parameters under
the framework's own names:

    ONNX = ConverterRegistry("onnx", load=_import_converter_modules)

    @ONNX.register("Softmax", since=13)
    def Softmax(cx, input, *, axis): ...

`since`/`until` bound the framework versions (ONNX opsets, TFLite op versions, Keras major
versions) a converter covers; `lookup(op, version)` picks, among those covering the model's
version, the one with the largest `since`. The signature is
read once, so a driver knows which attributes a converter takes (a node setting any other one to a
non-default value is reported, never silently ignored) and how many inputs it accepts.
Registering the same op and `since` twice is an error.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Converter:
    op: str
    fn: Callable
    since: int
    until: int | None  # last version covered, None: all later ones
    inputs: tuple[str, ...]  # positional parameter names after the context
    attributes: tuple[str, ...]  # keyword-only parameter names (the framework's attributes)
    variadic: bool  # takes *inputs
    required: frozenset[str]  # parameters without a default
    ignore: frozenset[str]  # attributes that cannot change an inference result (cudnn flags)
    # keyword-only parameters' own defaults: a frontend whose format states no attribute
    # defaults elsewhere (an MXNet symbol) declares them here, under the framework's names
    defaults: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def params(self) -> tuple[str, ...]:
        """Every named parameter: inputs, then attributes."""
        return self.inputs + self.attributes

    def covers(self, version: int | None) -> bool:
        if version is None:
            return True
        return self.since <= version and (self.until is None or version <= self.until)


class ConverterRegistry:
    """The converters of one framework. `load` imports the modules that register them, so that a
    lookup never depends on what the caller happened to import first."""

    def __init__(self, framework: str, load: Callable[[], object] | None = None):
        self.framework = framework
        self._load = load
        self._loaded = load is None
        self._table: dict[str, list[Converter]] = {}

    def register(self, *ops: str, since: int = 1, until: int | None = None,
                 ignore: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
        """Register the decorated function as the converter of each of `ops`."""

        def deco(fn: Callable) -> Callable:
            params = list(inspect.signature(fn).parameters.values())[1:]  # drop the context
            inputs = tuple(p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD)
            attrs = tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY)
            variadic = any(p.kind is p.VAR_POSITIONAL for p in params)
            required = frozenset(p.name for p in params
                                 if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                                 and p.default is p.empty)
            defaults = {p.name: p.default for p in params
                        if p.kind is p.KEYWORD_ONLY and p.default is not p.empty}
            for op in ops:
                entries = self._table.setdefault(op, [])
                if any(c.since == since for c in entries):
                    raise ValueError(f"{self.framework} converter {op} since={since} registered "
                                     f"twice")
                entries.append(Converter(op, fn, since, until, inputs, attrs, variadic, required,
                                         frozenset(ignore), defaults))
                # a later `since` supersedes an open-ended earlier one from its version on
                entries.sort(key=lambda c: c.since)
            return fn

        return deco

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self._loaded = True
            self._load()

    def lookup(self, op: str, version: int | None = None) -> Converter | None:
        """The converter of `op` for `version` (the newest `since` not above it); None if none."""
        self._ensure_loaded()
        found = None
        for c in self._table.get(op, ()):  # by since: a later one supersedes from its version on
            if c.covers(version):
                found = c
        return found

    def versions(self, op: str) -> list[int]:
        self._ensure_loaded()
        return [c.since for c in self._table.get(op, ())]

    def ops(self) -> list[str]:
        self._ensure_loaded()
        return sorted(self._table)

    def table(self) -> dict[str, list[Converter]]:
        self._ensure_loaded()
        return {op: list(entries) for op, entries in sorted(self._table.items())}
