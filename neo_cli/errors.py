"""The errors neo reports, with their exit codes: defined in `neo.ir.errors` (the bottom layer, so
frontends, passes and codegen raise them without importing the CLI) and re-exported here as the
public `neo.errors`."""
from neo.ir.errors import (  # noqa: F401
    EXIT_INTERNAL,
    EXIT_OK,
    CompileError,
    ConstantInputsNeeded,
    ModelLoadError,
    NeoError,
    NeoRuntimeError,
    NotSupportedError,
    UnsupportedModelError,
    UnsupportedOp,
    UsageError,
    exit_code_for,
    format_error,
)
