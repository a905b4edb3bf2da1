"""Compilation jobs: Neo's create/describe/list/stop semantics, run in the background.

- `spec`: the request (a YAML/JSON job file and/or flags), checked with neo compile's validators.
- `store`: the SQLite job store (WAL; one transaction per state change; safe across processes).
- `service`: create, describe, list, stop, wait, and settling jobs whose supervisor died.
- `supervisor`: the detached process per job (local worker, or a task on a Dask cluster).
- `runner`: one compile (`neo.compiler.compile_model`) packed as Neo's `<model>-<target>.tar.gz`.
- `locations`: local paths, file:// and fsspec URLs for S3Uri and S3OutputLocation.
- `cli`: the `neo jobs` commands.

Importing this package is cheap: nothing of the compiler is loaded until a job needs it.
"""
from __future__ import annotations
