"""The neo runtime: load and run compiled artifacts (see docs/ARTIFACT_FORMAT.md).

Imports only the standard library and numpy, never the compiler packages, so it can be deployed alone.
"""

from __future__ import annotations

from .model import ArtifactError, Model

__version__ = "0.1.0"
RUNTIME_ABI_VERSION = 1

__all__ = ["RUNTIME_ABI_VERSION", "ArtifactError", "Model", "__version__"]
