"""The package's structure: layers import downward only, and the installed wheel is one package.

Layers, top to bottom (docs/ARCHITECTURE.md): neo (neo_cli/) -> neo.frontends -> neo.passes ->
neo.codegen -> neo.ir. neo.runtime stands alone: it imports nothing from the compiler (a
deployment needs only it and the artifact), and any layer may use it (codegen writes the params
file in its format).
"""
from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# package -> (folder, rank); a module may import packages of its own rank or lower
LAYERS = {
    "neo.ir": ("ir", 0),
    "neo.codegen": ("codegen", 1),
    "neo.passes": ("passes", 2),
    "neo.frontends": ("frontends", 3),
    "neo": ("neo_cli", 4),
}
RUNTIME = ("neo.runtime", "runtime")


def _package_of(module: str) -> str | None:
    """The layer package a module name belongs to (neo.runtime separately)."""
    if module == RUNTIME[0] or module.startswith(RUNTIME[0] + "."):
        return RUNTIME[0]
    for pkg in sorted(LAYERS, key=len, reverse=True):
        if module == pkg or module.startswith(pkg + "."):
            return pkg
    return None


def _imports(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.append((node.lineno, mod))
            # `from neo import ir` imports the layer neo.ir
            found += [(node.lineno, f"{mod}.{a.name}") for a in node.names
                      if mod == "neo" and f"{mod}.{a.name}" in {*LAYERS, RUNTIME[0]}]
    return found


def _modules():
    for pkg, (folder, _) in [*LAYERS.items(), (RUNTIME[0], (RUNTIME[1], None))]:
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            module = ".".join([pkg, *parts])
            package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
            yield pkg, path, package


def test_layers_import_downward_only():
    bad = []
    for pkg, path, package in _modules():
        for line, mod in _imports(path, package):
            target = _package_of(mod)
            # `from neo import ir` names the namespace root, whose __init__ only re-exports
            if target is None or target == pkg or mod == "neo":
                continue
            where = f"{path.relative_to(REPO)}:{line} imports {mod}"
            if pkg == RUNTIME[0]:
                bad.append(f"{where} (the runtime imports nothing from the compiler)")
            elif target == RUNTIME[0]:
                continue
            elif LAYERS[target][1] > LAYERS[pkg][1]:
                bad.append(f"{where} (upward: {pkg} is below {target})")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_every_subpackage_is_installed():
    """pyproject's explicit package list covers every folder with an __init__.py."""
    conf = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = conf["package-dir"]
    listed = set(conf["packages"])
    want = set()
    for pkg, folder in dirs.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            want.add(".".join([pkg, *rel.parts]))
    # a subfolder mapped on its own (neo.ir under neo) is not also a subpackage of neo_cli/
    assert want == listed, f"missing: {sorted(want - listed)}; stale: {sorted(listed - want)}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(REPO)], check=True, timeout=300)
    (whl,) = out.glob("*.whl")
    return whl


def test_wheel_installs_one_top_level_package(wheel, tmp_path):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"neo"}
    for f in ("neo/runtime/neort.c", "neo/runtime/neort.h", "neo/runtime/neo_run.c",
              "neo/ir/graph.py", "neo/codegen/lower.py", "neo/main.py"):
        assert f in names, f
    # installed into a fresh venv: nothing else lands at the top level of site-packages
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c",
                                "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    before = {p.name for p in site.iterdir()}
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps",
                    "-q", str(wheel)], check=True, timeout=300)
    added = {p.name for p in site.iterdir()} - before
    assert {a for a in added if not a.endswith(".dist-info")} == {"neo"}, added
    # the runtime alone imports in it (numpy from the outer environment, nothing of neo's deps)
    code = ("import sys; sys.path.append(sys.argv[1]); import neo.runtime, neo; "
            "assert neo.Model is neo.runtime.Model; print(neo.runtime.__file__)")
    numpy_dir = str(Path(__import__("numpy").__file__).parent.parent)
    r = subprocess.run([str(py), "-c", code, numpy_dir], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith(str(site))
