"""The last model a frontend read, kept: `neo compile` asks a frontend for the model's inputs (to
check the shapes), then loads the same file; parsing a large model twice would double the
frontend's time."""
from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def file_key(path: Path, *args) -> tuple | None:
    """What identifies a model file's contents: its resolved path, size and modification time
    (and the reader's other arguments); None when it cannot be read."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, args)


def keep_last_read(read: Callable[..., T] | None = None, *,
                   key: Callable[..., tuple | None] = file_key):
    """Decorate `read(path, *args)` to remember its result for the last model read until the
    files change (`key(path, *args)`; None: not cached, and the reader reports the problem)."""
    def wrap(read: Callable[..., T]) -> Callable[..., T]:
        last: dict[tuple, Any] = {}

        @functools.wraps(read)
        def cached(path: str | Path, *args) -> T:
            p = Path(path)
            k = key(p, *args)
            if k is None:
                return read(p, *args)
            if k not in last:
                value = read(p, *args)
                last.clear()
                last[k] = value
            return last[k]

        cached.cache_clear = last.clear  # type: ignore[attr-defined]
        return cached

    return wrap(read) if read is not None else wrap
