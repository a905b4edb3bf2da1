"""Where models come from and artifacts go: Neo's `S3Uri` and `S3OutputLocation`, locally.

A location is a local path, a `file://` URL, or any other URL fsspec understands (`s3://` with
s3fs installed, `gcs://`, `local://`, ...). Local paths and `file://` need nothing beyond the
standard library; fsspec is imported only for the other schemes.

Artifacts are published all at once: written under a hidden partial name in the output location,
then renamed to the final name, so the output location never holds half an artifact; the
partial name is known in advance, so whoever cleans up after a killed job can remove it.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from neo.errors import UsageError


def is_url(location: str) -> bool:
    return "://" in location


def _local_path(location: str) -> Path | None:
    """The local path of a plain path or a file:// URL; None for other URLs."""
    if not is_url(location):
        return Path(location).expanduser()
    parsed = urlparse(location)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise UsageError(f"{location}: file:// URLs name a local path (file:///abs/path)")
        return Path(unquote(parsed.path))
    return None


def _fs(location: str):
    """(fsspec filesystem, path inside it) for a URL that is not file://."""
    try:
        import fsspec
    except ImportError:
        scheme = urlparse(location).scheme
        raise UsageError(f"{location}: {scheme}:// locations need fsspec",
                         hint=f"pip install fsspec (and its {scheme} driver, e.g. s3fs for "
                              "s3://); local paths and file:// work without it") from None
    try:
        fs, path = fsspec.core.url_to_fs(location)
    except (ImportError, ValueError) as e:
        raise UsageError(f"{location}: fsspec cannot open this URL ({e})") from None
    return fs, path


def resolve(location: str, base: Path) -> str:
    """`location` with a relative local path made absolute against `base` (URLs unchanged)."""
    local = _local_path(location)
    if local is None:
        return location
    if is_url(location):
        return location  # file:// URLs are absolute already
    return str(local if local.is_absolute() else (base / local).absolute())


def exists(location: str) -> bool:
    local = _local_path(location)
    if local is not None:
        return local.exists()
    fs, path = _fs(location)
    return bool(fs.exists(path))


def is_dir(location: str) -> bool:
    local = _local_path(location)
    if local is not None:
        return local.is_dir()
    fs, path = _fs(location)
    return bool(fs.isdir(path))


def local_path(location: str) -> Path | None:
    """The path on this machine for a local location (path or file://), else None."""
    return _local_path(location)


def join(location: str, name: str) -> str:
    local = _local_path(location)
    if local is not None and not is_url(location):
        return str(local / name)
    return location.rstrip("/") + "/" + name


def check_output_location(location: str) -> None:
    """Refuse an output location that cannot hold files (an existing file, an unwritable dir)."""
    local = _local_path(location)
    if local is None:
        _fs(location)  # fsspec and the scheme's driver are there
        return
    if local.exists() and not local.is_dir():
        raise UsageError(f"OutputConfig.S3OutputLocation {location} is a file; give a directory")
    probe = local
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"OutputConfig.S3OutputLocation {location}: cannot create files in "
                         f"{probe}")


def fetch(location: str, dest: Path) -> Path:
    """The model at `location` as a local path: itself when local, else downloaded into dest."""
    local = _local_path(location)
    if local is not None:
        return local
    fs, path = _fs(location)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / (Path(path.rstrip("/")).name or "model")
    if fs.isdir(path):
        fs.get(path.rstrip("/") + "/", str(target), recursive=True)
    else:
        fs.get_file(path, str(target))
    return target


def read_payload(location: str) -> dict:
    """The model as data for a remote worker: {"name", "data"} (a directory becomes a .tar),
    or {"url"} for a remote location the workers read themselves."""
    local = _local_path(location)
    if local is None:
        return {"url": location}
    if local.is_dir():
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(local.rglob("*")):
                if path.is_file():
                    info = tar.gettarinfo(str(path), arcname=str(path.relative_to(local)))
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    info.mtime = 0
                    with open(path, "rb") as fh:
                        tar.addfile(info, fh)
        return {"name": f"{local.name}.tar", "data": buf.getvalue()}
    return {"name": local.name, "data": local.read_bytes()}


def materialize(payload: dict, dest: Path) -> Path:
    """Write a payload from read_payload under dest (or fetch its URL); returns the model path."""
    if "url" in payload:
        return fetch(payload["url"], dest)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / Path(payload["name"]).name
    target.write_bytes(payload["data"])
    return target


def read_bytes(location: str) -> bytes:
    local = _local_path(location)
    if local is not None:
        return local.read_bytes()
    fs, path = _fs(location)
    return bytes(fs.cat_file(path))


def partial_name(final_name: str, job_id: int) -> str:
    """The hidden name an artifact is written under before it is renamed into place."""
    return f".{final_name}.neo-partial-{job_id}"


def publish(source: Path, output_location: str, final_name: str, job_id: int) -> str:
    """Copy the local file `source` to output_location/final_name through a partial name and a
    rename (atomic on a local file system); returns the final location."""
    partial = join(output_location, partial_name(final_name, job_id))
    final = join(output_location, final_name)
    local = _local_path(output_location)
    if local is not None:
        local.mkdir(parents=True, exist_ok=True)
        ppath, fpath = local / partial_name(final_name, job_id), local / final_name
        try:
            with open(source, "rb") as src, open(ppath, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(ppath, fpath)
        except BaseException:
            ppath.unlink(missing_ok=True)
            raise
        return final if is_url(output_location) else str(fpath)
    fs, out = _fs(output_location)
    fs.makedirs(out, exist_ok=True)
    _, ppath = _fs(partial)
    _, fpath = _fs(final)
    try:
        fs.put_file(str(source), ppath)
        fs.mv(ppath, fpath)
    except BaseException:
        remove(partial)
        raise
    return final


def remove(location: str) -> None:
    """Delete a file if it is there (cleanup: errors are ignored)."""
    try:
        local = _local_path(location)
        if local is not None:
            local.unlink(missing_ok=True)
            return
        fs, path = _fs(location)
        if fs.exists(path):
            fs.rm_file(path)
    except (OSError, UsageError):
        pass


__all__ = [
    "check_output_location",
    "exists",
    "fetch",
    "is_dir",
    "is_url",
    "join",
    "local_path",
    "materialize",
    "partial_name",
    "publish",
    "read_bytes",
    "read_payload",
    "remove",
    "resolve",
]
