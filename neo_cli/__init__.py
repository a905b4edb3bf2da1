"""neo: a local model compiler. Models in, native shared objects out.

The installed package is `neo`; the repository keeps one folder per layer, mapped into it
(pyproject.toml): `neo` (this folder, neo_cli/: the command line and the compile driver),
`neo.frontends`, `neo.passes`, `neo.codegen`, `neo.ir` and `neo.runtime` (which stands alone:
`from neo.runtime import Model` needs only numpy and the artifact).
"""
from __future__ import annotations

__version__ = "0.1.0"


def __getattr__(name: str):
    # neo.Model without importing the compiler: the runtime alone
    if name in ("Model", "ArtifactError"):
        from neo import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'neo' has no attribute {name!r}")
