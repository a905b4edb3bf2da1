"""Whole-artifact cache: recompiling an unchanged model for the same target and options copies the
previous artifact instead of compiling again.

The key covers everything the artifact depends on: the model's bytes, the bound input shapes, the
target (triple, CPU, features), the options, the compiler version and a digest of the compiler's
own sources (so editing a pass or a kernel invalidates it). The newest MAX_ENTRIES artifacts are kept.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

from . import __version__

MAX_ENTRIES = 8
_SOURCES = ("neo.ir", "neo.passes", "neo.codegen", "neo.frontends", "neo.runtime", "neo")


@lru_cache(maxsize=1)
def source_digest() -> str:
    """A digest of the compiler's sources, wherever the layers are (repository folders or the
    installed package)."""
    h = hashlib.sha256(__version__.encode())
    for pkg in _SOURCES:
        spec = importlib.util.find_spec(pkg)
        for loc in spec.submodule_search_locations or ():
            root = Path(loc)
            for p in sorted(root.rglob("*")):
                if p.suffix in (".py", ".c", ".h") and p.is_file():
                    h.update(f"{pkg}/{p.relative_to(root)}".encode())
                    h.update(p.read_bytes())
    return h.hexdigest()


def cache_key(model_files: list[Path], fields: dict) -> str:
    h = hashlib.sha256(source_digest().encode())
    h.update(json.dumps(fields, sort_keys=True, default=str).encode())
    for f in sorted(set(model_files)):
        if f.is_dir():
            continue
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


def _root() -> Path:
    from neo.codegen.toolchain import cache_dir

    return cache_dir() / "artifacts"


def lookup(key: str) -> tuple[Path, dict] | None:
    entry = _root() / key
    try:
        result = json.loads((entry / "result.json").read_text())
    except (OSError, ValueError):
        return None
    files = result.get("files", [])
    if not files or not all((entry / f).is_file() for f in files):
        return None
    os.utime(entry)  # most recently used
    return entry, result


def restore(entry: Path, files: list[str], out_dir: Path) -> None:
    """Copy the cached files into out_dir through a staging directory (all or nothing)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".neo-cache-", dir=out_dir.parent))
    try:
        for f in files:
            shutil.copy2(entry / f, stage / f)
        out_dir.mkdir(parents=True, exist_ok=True)
        for f in files:
            os.replace(stage / f, out_dir / f)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def store(key: str, out_dir: Path, result: dict) -> None:
    root = _root()
    root.mkdir(parents=True, exist_ok=True)
    files = sorted(p.name for p in out_dir.iterdir() if p.is_file())
    stage = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        for f in files:
            shutil.copy2(out_dir / f, stage / f)
        (stage / "result.json").write_text(json.dumps({**result, "files": files}))
        target = root / key
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        os.replace(stage, target)
    except OSError:
        shutil.rmtree(stage, ignore_errors=True)
        return  # a cache that cannot be written is not an error
    entries = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[MAX_ENTRIES:]:
        shutil.rmtree(old, ignore_errors=True)
