"""The error model of neo (public as `neo.errors`).

Every failure a user can cause or meet is a `NeoError` subclass with a one-line message, an optional
hint, and a documented process exit code, so scripts can tell a bad flag from a bad model from a
compiler failure without parsing text. Anything else that escapes is a bug in neo.

| exit | exception               | meaning                                                         |
|------|-------------------------|-----------------------------------------------------------------|
| 0    | -                       | success                                                         |
| 1    | any other exception     | internal error: a bug in neo (please report it)                 |
| 2    | `UsageError`            | bad flags, shape JSON, target or options; bad input data files  |
| 3    | `ModelLoadError`        | model missing or corrupt, unsafe archive, not that framework    |
| 4    | `UnsupportedModelError` | operators or attributes the compiler does not implement         |
| 5    | `CompileError`          | code generation or the toolchain failed                         |
| 6    | `NeoRuntimeError`       | compiled artifact invalid, execution failed, qemu missing       |
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

EXIT_OK = 0
EXIT_INTERNAL = 1


def _one_line(text: str) -> str:
    # Messages are printed as one `error:` line; a stray newline from a wrapped exception text would
    # break that promise and the log parsers that rely on it.
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


class NeoError(Exception):
    """Base of all errors neo reports to users; `exit_code` is the process exit status."""

    exit_code: int = EXIT_INTERNAL

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = _one_line(message)
        self.hint = _one_line(hint) if hint else None
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class UsageError(NeoError):
    """Bad flags, bad input-shape JSON, unknown or unsupported target, bad input data files."""

    exit_code = 2


class ModelLoadError(NeoError):
    """The model file is missing, corrupt, an unsafe archive, or not a model of that framework."""

    exit_code = 3


class UnsupportedOp(NamedTuple):
    """One operator type the compiler cannot handle, with where it occurs."""

    op_type: str
    count: int
    first_node_names: Sequence[str]
    source_location: str | None = None
    # Why, when the op type exists but one of its attributes or attribute values does not,
    # e.g. "mode='cubic' not implemented".
    reason: str | None = None

    def describe(self) -> str:
        nodes = "node" if self.count == 1 else "nodes"
        shown = ", ".join(self.first_node_names)
        more = ", ..." if 0 < len(self.first_node_names) < self.count else ""
        text = f"{self.op_type} ({self.count} {nodes}"
        if shown:
            text += f": {shown}{more}"
        if self.source_location:
            text += f" at {self.source_location}"
        if self.reason:
            text += f"; {self.reason}"
        return text + ")"


class UnsupportedModelError(NeoError):
    """Operators or attributes not implemented; lists all of them at once, never one at a time."""

    exit_code = 4

    def __init__(
        self,
        ops: Iterable[UnsupportedOp | tuple],
        hint: str | None = None,
        *,
        what: str = "operators",
    ) -> None:
        self.ops: list[UnsupportedOp] = [
            op if isinstance(op, UnsupportedOp) else UnsupportedOp(*op) for op in ops
        ]
        listed = "; ".join(op.describe() for op in self.ops) or "(none listed)"
        super().__init__(f"The following {what} are not implemented: {listed}", hint)


class ConstantInputsNeeded(UnsupportedModelError):
    """Unsupported because some inputs that must be compile-time constants are computed from the
    graph inputs `inputs`; with their values known, the model can be specialized to them."""

    def __init__(self, ops: Iterable[UnsupportedOp | tuple], inputs: Iterable[str],
                 hint: str | None = None, *, what: str = "operators") -> None:
        super().__init__(ops, hint, what=what)
        self.inputs: tuple[str, ...] = tuple(sorted(inputs))


class NotSupportedError(NeoError):
    """A framework, target or construct neo does not support yet (exit 4, like unsupported ops)."""

    exit_code = 4


class CompileError(NeoError):
    """Code generation or the native toolchain failed."""

    exit_code = 5


class NeoRuntimeError(NeoError):
    """The compiled artifact is invalid, execution failed, or a needed emulator is missing."""

    exit_code = 6


def exit_code_for(error: BaseException) -> int:
    """The process exit code for an exception: its documented code, or 1 for a bug in neo."""
    if isinstance(error, NeoError):
        return error.exit_code
    return EXIT_INTERNAL


def format_error(error: BaseException) -> str:
    """`error: ...` on one line, plus `  hint: ...` on a second line only when there is a hint."""
    if isinstance(error, NeoError):
        text = f"error: {error.message}"
        if error.hint:
            text += f"\n  hint: {error.hint}"
        return text
    detail = _one_line(str(error))
    name = type(error).__name__
    return (
        f"error: internal error: {name}: {detail}" if detail else f"error: internal error: {name}"
    ) + "\n  hint: this is a bug in neo; please report it with the command you ran"
