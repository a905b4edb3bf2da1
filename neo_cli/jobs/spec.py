"""The job request: Neo's CreateCompilationJob fields from a YAML/JSON file and/or flags, checked.

Everything that can be checked before compiling is checked here, at `neo jobs create`, with the
validators `neo compile` uses (framework, input-shape JSON, target, compiler options, model file,
and the shapes against the inputs the model declares), so a bad job never reaches a worker. What
only compiling can tell (unsupported operators, a model that does not load) fails the job, with
Neo's error kinds in its FailureReason.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neo.errors import ModelLoadError, UsageError

from . import locations

NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
MAX_NAME = 63
DEFAULT_MAX_RUNTIME_S = 900  # Neo's usual StoppingCondition
BACKENDS = ("local", "dask")

# The fields a job file may have, per section. RoleArn is accepted (AWS job files always have
# one) and ignored: there is no role to assume locally.
SECTIONS: dict[str, tuple[str, ...] | None] = {
    "CompilationJobName": None,
    "RoleArn": None,
    "InputConfig": ("S3Uri", "DataInputConfig", "Framework", "FrameworkVersion"),
    "OutputConfig": ("S3OutputLocation", "TargetDevice", "TargetPlatform", "CompilerOptions"),
    "StoppingCondition": ("MaxRuntimeInSeconds",),
    "Tags": None,
    "Execution": ("Backend", "Scheduler", "MaxParallel", "UseCache"),
}
PLATFORM_FIELDS = ("Os", "Arch", "Accelerator")
# Neo fields with no local meaning: refused with the reason rather than silently ignored.
REFUSED = {
    "VpcConfig": "there is no VPC locally",
    "ModelPackageVersionArn": "give the model as InputConfig.S3Uri",
    "OutputConfig.KmsKeyId": "artifacts are written as they are; encrypt the output location "
                             "itself",
    "StoppingCondition.MaxWaitTimeInSeconds": "compilation jobs use MaxRuntimeInSeconds only",
    "StoppingCondition.MaxPendingTimeInSeconds": "compilation jobs use MaxRuntimeInSeconds only",
}


@dataclass
class JobSpec:
    """A checked job: Neo's request fields (normalized), our execution settings, notes to show."""

    name: str
    request: dict[str, Any]
    execution: dict[str, Any]
    notes: list[str] = field(default_factory=list)


@dataclass
class Overrides:
    """The `neo jobs create` flags; each given one replaces the job file's field."""

    name: str | None = None
    model: str | None = None
    framework: str | None = None
    framework_version: str | None = None
    shape: str | None = None
    target: str | None = None
    target_platform: str | None = None
    compiler_options: str | None = None
    output: str | None = None
    max_runtime: int | None = None
    tags: tuple[str, ...] = ()
    backend: str | None = None
    scheduler: str | None = None
    max_parallel: int | None = None
    use_cache: bool | None = None


def load_job_file(path: Path) -> dict[str, Any]:
    """A job file (YAML or JSON: JSON is YAML) as a mapping."""
    import yaml

    try:
        text = path.read_text()
    except OSError as e:
        raise UsageError(f"--config {path}: {e.strerror or e}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "invalid syntax"
        raise UsageError(f"--config {path}: not valid YAML or JSON{where}: {problem}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise UsageError(f"--config {path}: must be a mapping of CreateCompilationJob fields "
                         "(CompilationJobName, InputConfig, OutputConfig, ...)")
    return doc


def _unknown(where: str, key: str, known: tuple[str, ...], source: str) -> UsageError:
    full = f"{where}.{key}" if where else key
    if full in REFUSED:
        return UsageError(f"{source}: {full} is not supported locally: {REFUSED[full]}; "
                          "remove it")
    close = difflib.get_close_matches(key, known, n=1)
    guess = f" (did you mean {close[0]}?)" if close else ""
    return UsageError(f"{source}: unknown field {full!r}{guess}; the fields of "
                      f"{where or 'a job'} are: {', '.join(known)}")


def _check_fields(doc: dict[str, Any], source: str) -> None:
    for key, value in doc.items():
        if key not in SECTIONS:
            raise _unknown("", str(key), tuple(SECTIONS), source)
        sub = SECTIONS[key]
        if sub is None:
            continue
        if not isinstance(value, dict):
            raise UsageError(f"{source}: {key} must be a mapping of {', '.join(sub)}")
        for k in value:
            if k not in sub:
                raise _unknown(key, str(k), sub, source)
        platform = value.get("TargetPlatform") if key == "OutputConfig" else None
        if isinstance(platform, dict):
            for k in platform:
                if k not in PLATFORM_FIELDS:
                    raise _unknown("OutputConfig.TargetPlatform", str(k), PLATFORM_FIELDS, source)


def _json_text(value: Any, label: str) -> str | None:
    """Neo's JSON-string fields (DataInputConfig, CompilerOptions); a YAML mapping or list is
    taken as the JSON it spells."""
    if value is None or value == "":
        return None
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, str):
        return value
    raise UsageError(f"{label} must be a JSON string, got {json.dumps(value)}")


def _string(value: Any, label: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{label} must be a non-empty string, got {json.dumps(value)}")
    return value.strip()


def _platform_dict(text_or_dict: Any) -> dict[str, str]:
    """TargetPlatform as Neo's {Os, Arch[, Accelerator]} from a mapping, JSON or os=..,arch=.."""
    from neo.targets import _parse_platform_fields

    if isinstance(text_or_dict, dict):
        text = json.dumps(text_or_dict)
    elif isinstance(text_or_dict, str):
        text = text_or_dict
    else:
        raise UsageError("OutputConfig.TargetPlatform must be a mapping like "
                         "{Os: LINUX, Arch: ARM64}")
    fields_ = _parse_platform_fields(text)
    return {k.capitalize(): v for k, v in fields_.items()}


def validate_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise UsageError("CompilationJobName is required (--name NAME, or in the job file)")
    if len(name) > MAX_NAME or not NAME_RE.match(name):
        raise UsageError(
            f"CompilationJobName {name!r} is not valid: 1 to {MAX_NAME} letters, digits and "
            "hyphens, starting and ending with a letter or digit (Neo's pattern "
            f"{NAME_RE.pattern})")
    return name


def _tags(value: Any, flags: tuple[str, ...]) -> list[dict[str, str]]:
    tags: list[dict[str, str]] = []
    if value is not None:
        if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
            raise UsageError("Tags must be a list of {Key: ..., Value: ...}")
        for t in value:
            extra = set(t) - {"Key", "Value"}
            if extra or "Key" not in t:
                raise UsageError(f"Tags: each tag is {{Key, Value}}; got {json.dumps(t)}")
            tags.append({"Key": str(t["Key"]), "Value": str(t.get("Value", ""))})
    for flag in flags:
        key, sep, val = flag.partition("=")
        if not sep or not key:
            raise UsageError(f"--tag {flag!r}: expected KEY=VALUE")
        tags = [t for t in tags if t["Key"] != key] + [{"Key": key, "Value": val}]
    keys = [t["Key"] for t in tags]
    if len(tags) > 50:
        raise UsageError(f"Tags: at most 50 tags, got {len(tags)}")
    for t in tags:
        if not 1 <= len(t["Key"]) <= 128 or len(t["Value"]) > 256:
            raise UsageError(f"Tags: key {t['Key']!r}: keys are 1-128 characters, values up to "
                             "256")
    dups = sorted({k for k in keys if keys.count(k) > 1})
    if dups:
        raise UsageError(f"Tags: key {dups[0]!r} given twice")
    return tags


def _label_errors(label: str):
    """Prefix a validator's UsageError with the job field it was checking."""

    class _Ctx:
        def __enter__(self):
            return self

        def __exit__(self, kind, exc, tb):
            if isinstance(exc, UsageError) and not exc.message.startswith(label):
                raise type(exc)(f"{label}: {exc.message}", exc.hint) from None
            return False

    return _Ctx()


def artifact_name(s3uri: str, target_device: str | None, platform: dict[str, str] | None) -> str:
    """Neo's name for the compiled artifact: the model's name with `-<TargetDevice>.tar.gz`
    (model.tar.gz for rasp4b -> model-rasp4b.tar.gz); for a TargetPlatform, `-<OS>_<ARCH>`."""
    from neo.modelfile import ARCHIVE_SUFFIXES

    base = s3uri.rstrip("/").rsplit("/", 1)[-1] or "model"
    lower = base.lower()
    for suffix in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            base = base[: -len(suffix)]
            break
    else:
        if "." in base[1:]:
            base = base.rsplit(".", 1)[0]
    if target_device:
        suffix = target_device
    else:
        assert platform is not None
        suffix = "_".join(platform[k] for k in PLATFORM_FIELDS if platform.get(k))
    return f"{base or 'model'}-{suffix}.tar.gz"


def build_spec(doc: dict[str, Any], over: Overrides, cwd: Path, source: str = "job",
               *, check_model: bool = True) -> JobSpec:
    """The checked job from a job file's fields (`doc`, may be empty) and the flags."""
    from neo.frameworks import parse_framework
    from neo.shapes import parse_shapes
    from neo.targets import get_target, resolve_target

    _check_fields(doc, source)
    inp = dict(doc.get("InputConfig") or {})
    out = dict(doc.get("OutputConfig") or {})
    stop = dict(doc.get("StoppingCondition") or {})
    exe = dict(doc.get("Execution") or {})
    notes: list[str] = []

    name = validate_name(over.name if over.name is not None else doc.get("CompilationJobName"))
    for value, section, key in ((over.model, inp, "S3Uri"), (over.framework, inp, "Framework"),
                                (over.framework_version, inp, "FrameworkVersion"),
                                (over.shape, inp, "DataInputConfig"),
                                (over.compiler_options, out, "CompilerOptions"),
                                (over.output, out, "S3OutputLocation"),
                                (over.max_runtime, stop, "MaxRuntimeInSeconds"),
                                (over.backend, exe, "Backend"), (over.scheduler, exe, "Scheduler"),
                                (over.max_parallel, exe, "MaxParallel"),
                                (over.use_cache, exe, "UseCache")):
        if value is not None:
            section[key] = value
    if over.target is not None or over.target_platform is not None:
        # A target flag replaces the file's target, whichever of the two fields it used.
        out.pop("TargetDevice", None)
        out.pop("TargetPlatform", None)
        if over.target is not None:
            out["TargetDevice"] = over.target
        if over.target_platform is not None:
            out["TargetPlatform"] = over.target_platform

    # --- input ---
    s3uri = _string(inp.get("S3Uri"), "InputConfig.S3Uri")
    if s3uri is None:
        raise UsageError("InputConfig.S3Uri is required: the model file, directory or .tar.gz "
                         "(--model PATH, or in the job file)")
    s3uri = locations.resolve(s3uri, cwd)
    framework_text = _string(inp.get("Framework"), "InputConfig.Framework")
    if framework_text is None:
        raise UsageError("InputConfig.Framework is required (--framework), e.g. ONNX or PYTORCH")
    with _label_errors("InputConfig.Framework"):
        fw = parse_framework(framework_text)
    shape_text = _json_text(inp.get("DataInputConfig"), "InputConfig.DataInputConfig")
    with _label_errors("InputConfig.DataInputConfig"):
        shape_spec = parse_shapes(fw.name, shape_text)
    version = inp.get("FrameworkVersion")
    if version is not None:
        version = str(version)

    # --- output ---
    device = _string(out.get("TargetDevice"), "OutputConfig.TargetDevice")
    platform = out.get("TargetPlatform")
    if device and platform:
        raise UsageError("OutputConfig: give TargetDevice or TargetPlatform, not both (Neo's "
                         "TargetDevice XOR TargetPlatform)")
    if not device and not platform:
        raise UsageError("OutputConfig: TargetDevice or TargetPlatform is required (--target "
                         "rasp4b, or --target-platform os=LINUX,arch=ARM64); `neo targets` "
                         "lists them")
    copts = _json_text(out.get("CompilerOptions"), "OutputConfig.CompilerOptions")
    platform_dict = None
    if platform:
        with _label_errors("OutputConfig.TargetPlatform"):
            platform_dict = _platform_dict(platform)
    with _label_errors("OutputConfig.TargetDevice" if device else "OutputConfig.TargetPlatform"):
        if device:
            device = get_target(device).name
        _, parsed = resolve_target(device, json.dumps(platform_dict) if platform_dict else None,
                                   copts)
    notes.extend(parsed.notes)
    output = _string(out.get("S3OutputLocation"), "OutputConfig.S3OutputLocation")
    if output is None:
        raise UsageError("OutputConfig.S3OutputLocation is required: the directory or URL the "
                         "compiled .tar.gz goes to (--output DIR, or in the job file)")
    output = locations.resolve(output, cwd)
    locations.check_output_location(output)

    # --- stopping condition, tags ---
    runtime = stop.get("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME_S)
    if isinstance(runtime, bool) or not isinstance(runtime, int) or runtime < 1:
        raise UsageError("StoppingCondition.MaxRuntimeInSeconds must be a whole number of "
                         f"seconds >= 1, got {json.dumps(runtime)}")
    tags = _tags(doc.get("Tags"), over.tags)
    if doc.get("RoleArn"):
        notes.append("RoleArn is ignored: jobs run as the user who creates them")

    # --- execution ---
    execution = _execution(exe)

    # --- the model itself (last: the slowest check) ---
    if not locations.exists(s3uri):
        raise UsageError(f"InputConfig.S3Uri {s3uri}: no such file or directory")
    if check_model:
        _check_model_inputs(fw, shape_spec, s3uri, notes)

    request = {
        "InputConfig": {"S3Uri": s3uri, "DataInputConfig": shape_text,
                        "Framework": fw.name.upper(), "FrameworkVersion": version},
        "OutputConfig": {"S3OutputLocation": output, "TargetDevice": device,
                         "TargetPlatform": platform_dict, "CompilerOptions": copts},
        "StoppingCondition": {"MaxRuntimeInSeconds": runtime},
        "Tags": tags,
        "RoleArn": doc.get("RoleArn"),
    }
    execution["ArtifactName"] = artifact_name(s3uri, device, platform_dict)
    return JobSpec(name, request, execution, notes)


def _execution(exe: dict[str, Any]) -> dict[str, Any]:
    backend = str(exe.get("Backend") or "local").strip().lower()
    if backend not in BACKENDS:
        raise UsageError(f"Execution.Backend (--backend) must be local or dask, got {backend!r}")
    use_cache = exe.get("UseCache", True)
    if not isinstance(use_cache, bool):
        raise UsageError(f"Execution.UseCache must be true or false, got {json.dumps(use_cache)}")
    result: dict[str, Any] = {"Backend": backend, "UseCache": use_cache, "Scheduler": None,
                              "MaxParallel": None}
    scheduler = exe.get("Scheduler")
    max_parallel = exe.get("MaxParallel")
    if backend == "local":
        if scheduler:
            raise UsageError("--scheduler (Execution.Scheduler) is for --backend dask")
        if max_parallel is None:
            max_parallel = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
                else (os.cpu_count() or 1)
        if isinstance(max_parallel, bool) or not isinstance(max_parallel, int) \
                or max_parallel < 1:
            raise UsageError("--max-parallel (Execution.MaxParallel) must be a whole number >= 1, "
                             f"got {json.dumps(max_parallel)}")
        result["MaxParallel"] = max_parallel
        return result
    if max_parallel is not None:
        raise UsageError("--max-parallel (Execution.MaxParallel) is for --backend local; with "
                         "dask, the workers' threads set the parallelism")
    try:
        import dask
        import distributed  # noqa: F401
    except ImportError:
        raise UsageError("--backend dask needs dask.distributed",
                         hint="pip install 'neo-compiler[dask]'") from None
    scheduler = scheduler or dask.config.get("scheduler-address", None)
    if not scheduler:
        raise UsageError("--backend dask needs --scheduler tcp://HOST:8786 (or Execution.Scheduler "
                         "in the job file, or dask's scheduler-address setting)")
    result["Scheduler"] = str(scheduler)
    _check_reachable(str(scheduler))
    return result


def _check_reachable(address: str) -> None:
    """Refuse a tcp:// scheduler nobody listens on (other protocols are left to dask)."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if parsed.scheme != "tcp" or not parsed.hostname:
        return
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 8786), timeout=5):
            pass
    except OSError as e:
        raise UsageError(f"cannot reach the Dask scheduler at {address}: "
                         f"{e.strerror or e}",
                         hint="start one with `dask scheduler` (see docs/JOBS.md)") from None


def _check_model_inputs(fw, shape_spec, s3uri: str, notes: list[str]) -> None:
    """Bind the shapes to the inputs the model declares, when the model is on this machine.

    A model that does not load is left to the job, which reports it as Neo does (a load error in
    FailureReason); everything else wrong here is the request's fault and stops `create`.
    """
    from neo.compiler import _frontend
    from neo.modelfile import resolve_model
    from neo.shapes import ModelInput, bind_shapes

    path = locations.local_path(s3uri)
    fe = _frontend(fw.name)  # a framework whose frontend is not written: refused now (exit 4)
    if path is None:
        return  # remote: the workers read it; the job reports a mismatch
    try:
        with resolve_model(str(path), fw.name, path.parent) as src:
            declared = [ModelInput(n, s, d) for n, s, d in fe.inputs(src.path)]
    except ModelLoadError as e:
        notes.append(f"the model could not be read now ({e.message}); the job will report it")
        return
    with _label_errors("InputConfig.DataInputConfig"):
        bound = bind_shapes(fw.name, shape_spec, declared)
    notes.extend(getattr(bound, "notes", []))


__all__ = [
    "BACKENDS",
    "DEFAULT_MAX_RUNTIME_S",
    "JobSpec",
    "Overrides",
    "artifact_name",
    "build_spec",
    "load_job_file",
    "validate_name",
]
