"""Resolving the MODEL argument to the model file(s) of a framework.

MODEL may be absent (the one model in the current directory), a model file, a directory holding one
model, or a tar archive like the `model.tar.gz` Neo takes from S3. Archives come from other people,
so they are checked member by member before anything is written: no absolute paths, no `..`, no
links, no devices, bounded member count and size. Extraction then also uses Python's own `data`
filter as a second line of defence.
"""

from __future__ import annotations

import fnmatch
import os
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from tempfile import TemporaryDirectory
from typing import Literal, Self

from neo.errors import ModelLoadError, UsageError
from neo.frameworks import Framework, all_frameworks, parse_framework

MAX_TAR_MEMBERS = 10_000
MAX_TAR_BYTES = 8 * 2**30  # total uncompressed size of the regular files in an archive
# Walking a directory the user named stops after this many entries (someone passing ~ or /).
MAX_WALK_ENTRIES = 100_000

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")

_PARAMS_RE = re.compile(r"^(?P<prefix>.+)-(?P<epoch>\d{4})\.params$", re.IGNORECASE)
_SYMBOL_SUFFIX = "-symbol.json"
_SAVED_MODEL_NAMES = ("saved_model.pb", "saved_model.pbtxt")


@dataclass(frozen=True)
class TarLimits:
    max_members: int = MAX_TAR_MEMBERS
    max_total_bytes: int = MAX_TAR_BYTES


@dataclass
class ModelSource:
    """The model to load: `path` is the file (or SavedModel directory) a frontend opens; `files` is
    everything that belongs to it; `tempdir` owns the extracted archive, if any."""

    path: Path
    files: list[Path]
    tempdir: TemporaryDirectory[str] | None = field(default=None, repr=False)

    def cleanup(self) -> None:
        if self.tempdir is not None:
            self.tempdir.cleanup()
            self.tempdir = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


# --- matching names ---------------------------------------------------------------------------


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    lower = name.lower()
    return any(fnmatch.fnmatchcase(lower, pattern.lower()) for pattern in patterns)


def _is_junk(name: str) -> bool:
    # macOS tar adds AppleDouble "._model.onnx" files next to the real ones.
    return name.startswith("._") or name in (".DS_Store",)


def _is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _looks_like_other(fw: Framework, name: str) -> Framework | None:
    """Another framework whose distinctive file pattern `name` matches (XGBoost has none)."""
    for other in all_frameworks():
        if other.name in (fw.name, "xgboost"):
            continue
        if _matches(name, other.model_patterns + other.companion_patterns):
            return other
    return None


def _rel(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


# --- single files -----------------------------------------------------------------------------


def _mxnet_source(path: Path) -> ModelSource:
    name = path.name
    params_match = _PARAMS_RE.match(name)
    if params_match:
        # The user picked one checkpoint epoch; its symbol file sits beside it.
        prefix = params_match.group("prefix")
        symbol = path.with_name(prefix + _SYMBOL_SUFFIX)
        if not symbol.is_file():
            raise ModelLoadError(
                f"MXNet weights {path} need their graph {symbol.name} beside them; not found"
            )
        epochs = [p for p in path.parent.iterdir()
                  if (m := _PARAMS_RE.match(p.name)) and m.group("prefix") == prefix]
        # With several epochs beside the symbol, the frontend opens the chosen weights (it
        # finds the symbol beside them); with one, the symbol.
        return ModelSource(path if len(epochs) > 1 else symbol, [symbol, path])
    if not name.lower().endswith(_SYMBOL_SUFFIX):
        raise ModelLoadError(
            f"{path} is not an MXNet model: expected NAME-symbol.json with NAME-0000.params "
            "beside it"
        )
    prefix = name[: -len(_SYMBOL_SUFFIX)]
    params = sorted(
        p
        for p in path.parent.iterdir()
        if p.is_file()
        and (m := _PARAMS_RE.match(p.name))
        and m.group("prefix").lower() == prefix.lower()
    )
    if not params:
        raise ModelLoadError(
            f"MXNet model {path} needs its weights {prefix}-0000.params beside it; none found"
        )
    if len(params) > 1:
        raise UsageError(
            f"MXNet model {path} has several weight files: {', '.join(p.name for p in params)}; "
            "pass the .params file of the epoch to compile as MODEL"
        )
    return ModelSource(path, [path, params[0]])


def _saved_model_source(directory: Path) -> ModelSource:
    graph = next(directory / n for n in _SAVED_MODEL_NAMES if (directory / n).is_file())
    variables = directory / "variables"
    extra = sorted(p for p in variables.rglob("*") if p.is_file()) if variables.is_dir() else []
    return ModelSource(directory, [graph, *extra])


def _file_source(path: Path, fw: Framework) -> ModelSource:
    other = _looks_like_other(fw, path.name)
    own = _matches(path.name, fw.model_patterns + fw.companion_patterns)
    if other is not None and not own:
        raise ModelLoadError(
            f"{path} looks like a model for {other.display_name}, not {fw.display_name} "
            f"({fw.display_name} models are {fw.patterns_text})",
            hint=f"use --framework {other.name}",
        )
    if fw.name == "mxnet":
        return _mxnet_source(path)
    if fw.name == "tensorflow" and path.name.lower() in _SAVED_MODEL_NAMES:
        return _saved_model_source(path.parent)
    # Any other name is left to the frontend, which reads the content (XGBoost's UBJSON, for
    # instance, may have any extension).
    return ModelSource(path, [path])


# --- directories ------------------------------------------------------------------------------


def _list_files(directory: Path, recursive: bool) -> list[Path]:
    if not recursive:
        return sorted(p for p in directory.iterdir() if p.is_file() and not _is_junk(p.name))
    found: list[Path] = []
    seen = 0
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__MACOSX")
        seen += len(dirs) + len(files)
        if seen > MAX_WALK_ENTRIES:
            raise UsageError(
                f"{directory} holds more than {MAX_WALK_ENTRIES} files; pass the model file itself"
            )
        found.extend(Path(root) / f for f in sorted(files) if not _is_junk(f))
    return found


def _candidates(files: list[Path], fw: Framework) -> list[Path]:
    """The model entry points among `files`: SavedModel dirs, symbol files, or model files."""
    if fw.name == "tensorflow":
        saved = sorted({p.parent for p in files if p.name.lower() in _SAVED_MODEL_NAMES})
        # fingerprint.pb, keras_metadata.pb and the like inside a SavedModel are part of it.
        frozen = [
            p
            for p in files
            if _matches(p.name, ("*.pb", "*.pbtxt"))
            and not any(d == p.parent or d in p.parents for d in saved)
        ]
        return sorted([*saved, *frozen])
    return [p for p in files if _matches(p.name, fw.model_patterns)]


def _source_for(candidate: Path, fw: Framework) -> ModelSource:
    if candidate.is_dir():
        return _saved_model_source(candidate)
    return _file_source(candidate, fw)


def _find_in_dir(
    directory: Path,
    fw: Framework,
    where: str,
    depth: Literal["top", "all", "top-then-all"],
    in_archive: bool = False,
) -> ModelSource:
    files = _list_files(directory, recursive=depth == "all")
    found = _candidates(files, fw)
    if not found and depth == "top-then-all":
        # Not at the top: look deeper (an exported SavedModel sits in export/<version>/).
        files = _list_files(directory, recursive=True)
        found = _candidates(files, fw)
    if len(found) == 1:
        return _source_for(found[0], fw)
    if found:
        shown = ", ".join(_rel(p, directory) for p in found[:20])
        more = f" and {len(found) - 20} more" if len(found) > 20 else ""
        message = f"several {fw.display_name} models in {where}: {shown}{more}"
        if in_archive:
            # The user cannot pick a file inside an archive, so an ambiguous one is a bad model.
            raise ModelLoadError(f"{message}; the archive must hold exactly one")
        raise UsageError(f"{message}; pass one of them as MODEL")
    hint = None
    others = [(p, o) for p in files if (o := _looks_like_other(fw, p.name)) is not None]
    archives = [p for p in files if _is_archive(p)]
    if others:
        path, other = others[0]
        hint = (
            f"found {_rel(path, directory)}, which looks like a model for {other.display_name}; "
            f"use --framework {other.name}"
        )
    elif fw.name == "mxnet" and any(_PARAMS_RE.match(p.name) for p in files):
        hint = "found .params weights but no NAME-symbol.json graph beside them"
    elif archives:
        hint = f"found the archive {_rel(archives[0], directory)}; pass it as MODEL"
    raise ModelLoadError(
        f"no {fw.display_name} model in {where}: looked for {fw.patterns_text}", hint=hint
    )


# --- archives ---------------------------------------------------------------------------------


def _check_member(archive: Path, member: tarfile.TarInfo) -> None:
    name = member.name
    posix = name.replace("\\", "/")

    def refuse(why: str) -> ModelLoadError:
        return ModelLoadError(f"refusing to extract {archive.name}: member {name!r} {why}")

    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        raise refuse("has an absolute path")
    if ".." in PurePosixPath(posix).parts:
        raise refuse("points outside the archive ('..' in its path)")
    if member.issym() or member.islnk():
        raise refuse(f"is a {'symbolic' if member.issym() else 'hard'} link to {member.linkname!r}")
    if member.ischr() or member.isblk() or member.isfifo():
        raise refuse("is a device or FIFO")
    if not (member.isfile() or member.isdir()):
        raise refuse("is not a regular file or directory")


def extract_archive(archive: Path, dest: Path, limits: TarLimits | None = None) -> None:
    """Extract the tar `archive` into `dest` after checking every member; refuses unsafe ones."""
    limits = limits or TarLimits()
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            members: list[tarfile.TarInfo] = []
            total = 0
            for member in tar:  # reads headers only, so a bomb is refused before it is written
                if len(members) >= limits.max_members:
                    raise ModelLoadError(
                        f"refusing to extract {archive.name}: "
                        f"more than {limits.max_members} members"
                    )
                _check_member(archive, member)
                total += member.size if member.isfile() else 0
                if total > limits.max_total_bytes:
                    raise ModelLoadError(
                        f"refusing to extract {archive.name}: more than {limits.max_total_bytes} "
                        "bytes uncompressed"
                    )
                members.append(member)
            if not members:
                raise ModelLoadError(f"{archive} is an empty archive")
            tar.extractall(dest, members=members, filter="data")
    except ModelLoadError:
        raise
    except tarfile.FilterError as exc:
        raise ModelLoadError(f"refusing to extract {archive.name}: {exc}") from None
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise ModelLoadError(f"{archive} is not a readable tar archive ({exc})") from None
    except OSError as exc:
        raise ModelLoadError(f"could not extract {archive}: {exc.strerror or exc}") from None


def _archive_source(
    archive: Path, fw: Framework, limits: TarLimits, temp_parent: Path | None
) -> ModelSource:
    tempdir = TemporaryDirectory(prefix="neo-model-", dir=temp_parent)
    try:
        root = Path(tempdir.name)
        extract_archive(archive, root, limits)
        source = _find_in_dir(root, fw, f"archive {archive.name}", "all", in_archive=True)
    except BaseException:
        tempdir.cleanup()
        raise
    source.tempdir = tempdir
    return source


# --- entry point ------------------------------------------------------------------------------


def resolve_model(
    path: str | os.PathLike[str] | None,
    framework: Framework | str,
    workdir: Path | None = None,
    *,
    limits: TarLimits | None = None,
    temp_parent: Path | None = None,
) -> ModelSource:
    """The model named by MODEL: a file, a directory, a tar archive, or (None) the one in `workdir`.

    `workdir` is the current directory: relative paths start there and a missing MODEL is looked
    for there (top level only). Archives are extracted into a temporary directory under
    `temp_parent` (the system's by default) that the returned source owns; call `cleanup()`.
    """
    fw = parse_framework(framework)
    base = Path(workdir) if workdir is not None else Path.cwd()
    limits = limits or TarLimits()
    if path is None or str(path) == "":
        return _find_in_dir(base, fw, f"the current directory ({base})", "top")

    given = Path(path).expanduser()
    target = given if given.is_absolute() else base / given
    if not target.exists():
        raise ModelLoadError(f"model not found: {given}")
    if target.is_dir():
        return _find_in_dir(target, fw, str(given), "top-then-all")
    if not target.is_file():
        raise ModelLoadError(f"model {given} is not a regular file or directory")
    if _is_archive(target):
        return _archive_source(target, fw, limits, temp_parent)
    return _file_source(target, fw)


__all__ = [
    "ARCHIVE_SUFFIXES",
    "MAX_TAR_BYTES",
    "MAX_TAR_MEMBERS",
    "ModelSource",
    "TarLimits",
    "extract_archive",
    "resolve_model",
]
