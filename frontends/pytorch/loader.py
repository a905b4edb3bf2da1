"""Opening PyTorch model files without running pickled Python code.

Two formats are read. TorchScript archives (`torch.jit.trace(model, x).save("model.pth")`) are
read by `torch.jit.load` with TorchScript's own unpickler, which builds TorchScript types only and
imports no Python. `.pt2` exported programs (`torch.export.save`) keep their graph as JSON, but may
also hold pickles (weights of unusual tensor types, sample inputs, custom objects): every one of
them is first checked with `torch.load(weights_only=True)`, custom and opaque objects and compiled
AOTInductor code are refused, and only then does `torch.export.load` read the same bytes.
Anything else, in particular `torch.save` checkpoints (plain pickles), is refused.
"""
from __future__ import annotations

import io
import json
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neo.ir.errors import ModelLoadError

INSTALL_HINT = "pip install 'neo-compiler[pytorch]'"
TRACE_HINT = ("save the model as TorchScript: torch.jit.trace(model.eval(), example)"
              ".save('model.pth'), or as an exported program: "
              "torch.export.save(torch.export.export(model, (example,)), 'model.pt2')")

# Parts of a .pt2 archive that hold native code or arbitrary Python objects.
_PT2_REFUSED_DIRS = ("data/aotinductor/", "data/executorch/", "data/mtia", "xl_model_weights/")


def require_torch():
    """The torch module, or a ModelLoadError that says how to install it."""
    try:
        import torch
    except ImportError as e:
        raise ModelLoadError(
            f"reading PyTorch models needs the torch package, which is not installed ({e})",
            hint=INSTALL_HINT) from None
    return torch


@dataclass
class LoadedModel:
    """A model file opened by torch: `kind` is "torchscript" (a ScriptModule) or "exported"
    (an ExportedProgram)."""

    kind: str
    obj: Any
    path: Path


def archive_kind(path: Path) -> str:
    """"torchscript", "pt2", "checkpoint" (a torch.save pickle in a zip) or "other"."""
    if not zipfile.is_zipfile(path):
        return "other"
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return "other"
    rel = {n.split("/", 1)[1] if "/" in n else n for n in names}
    if "archive_format" in rel or any(n.startswith("models/") and n.endswith(".json") for n in rel):
        return "pt2"
    if "serialized_exported_program.json" in rel:
        return "pt2-legacy"
    if "data.pkl" in rel and any(n.startswith("code/") for n in rel):
        return "torchscript"
    if "data.pkl" in rel:
        return "checkpoint"
    return "other"


def load_model(path: str | Path) -> LoadedModel:
    """Open a TorchScript or .pt2 file; refuse anything that would need unpickling Python code."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"PyTorch model file {path} does not exist or is not a file")
    torch = require_torch()
    kind = archive_kind(path)
    if kind == "torchscript":
        return LoadedModel("torchscript", _load_torchscript(torch, path), path)
    if kind == "pt2":
        return LoadedModel("exported", _load_pt2(torch, path), path)
    if kind == "pt2-legacy":
        raise ModelLoadError(f"{path} is a .pt2 archive in the format of torch 2.7 or older, whose "
                             "weights are plain pickles; Neo does not unpickle them",
                             hint="re-save it with torch.export.save from torch 2.8 or newer")
    if kind == "checkpoint":
        raise ModelLoadError(
            f"{path} is a torch.save checkpoint (a pickle: a state_dict or a whole nn.Module), not "
            "TorchScript; Neo never unpickles Python objects, and a state_dict has no graph",
            hint=TRACE_HINT)
    raise ModelLoadError(f"{path} is not a TorchScript archive or a .pt2 exported program",
                         hint=TRACE_HINT)


def _load_torchscript(torch, path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as e:  # noqa: BLE001 - torch raises RuntimeError, ValueError, ...
            raise ModelLoadError(f"torch.jit.load cannot read {path}: {type(e).__name__}: "
                                 f"{_first_line(e)}", hint=TRACE_HINT) from None
    return module


def _load_pt2(torch, path: Path):
    data = path.read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        _check_pt2_archive(torch, z, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return torch.export.load(io.BytesIO(data))
        except Exception as e:  # noqa: BLE001
            raise ModelLoadError(f"torch.export.load cannot read {path}: {type(e).__name__}: "
                                 f"{_first_line(e)}", hint=TRACE_HINT) from None


def _check_pt2_archive(torch, z: zipfile.ZipFile, path: Path) -> None:
    """Refuse native code and Python objects; check every pickle with the weights-only unpickler."""
    names = z.namelist()
    root = names[0].split("/", 1)[0] + "/" if names and "/" in names[0] else ""
    rel = {n[len(root):]: n for n in names if n.startswith(root)}
    for r in rel:
        if r.startswith(_PT2_REFUSED_DIRS):
            raise ModelLoadError(f"{path} holds compiled code ({r}); Neo reads only the exported "
                                 "graph and its weights", hint=TRACE_HINT)
    pickles: list[str] = []
    for r, full in rel.items():
        if r.startswith("data/sample_inputs/"):
            pickles.append(full)
        elif r.startswith(("data/weights/", "data/constants/")) and r.endswith("_config.json"):
            base = r.rsplit("/", 1)[0] + "/"
            try:
                config = json.loads(z.read(full)).get("config", {})
            except (ValueError, AttributeError):
                raise ModelLoadError(f"{path}: {r} is not valid JSON") from None
            for fqn, meta in config.items():
                file = str(meta.get("path_name", ""))
                if file.startswith(("custom_obj_", "opaque_obj_")):
                    raise ModelLoadError(
                        f"{path}: constant {fqn!r} is a pickled Python object ({file}); Neo does "
                        "not unpickle Python objects", hint=TRACE_HINT)
                if meta.get("use_pickle"):
                    pickles.append(root + base + file)
        elif r.startswith("data/weights/") and r.endswith(".pt"):
            pickles.append(full)  # the legacy single-file weights
    for name in pickles:
        if name not in z.namelist():
            continue
        try:
            torch.load(io.BytesIO(z.read(name)), weights_only=True, map_location="cpu")
        except Exception as e:  # noqa: BLE001 - the weights-only unpickler refused something
            raise ModelLoadError(
                f"{path}: {name} is a pickle that torch's weights-only loader refuses "
                f"({_first_line(e)}); Neo does not unpickle arbitrary Python objects",
                hint=TRACE_HINT) from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
