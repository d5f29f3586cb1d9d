"""Code deps in dvc.yaml are complete: every project module a stage imports, transitively, is a dep of that stage.

Imports are read with ast (module level and inside functions, absolute and relative), so a new import of a
project module without the matching dvc.yaml line fails here rather than leaving results stale.
"""
import ast
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

PACKAGES = ("norsparse", "stages")
# project files a module reads (copies into models) rather than imports
READS = {"norsparse/model_io.py": ["norsparse/sparsity_filter.py"]}


def module_file(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return found


def project_closure(entry: Path) -> set[Path]:
    """Every project file that running ``entry`` imports: the modules, their packages' __init__ files, transitively."""
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(ROOT / extra for extra in READS.get(path.relative_to(ROOT).as_posix(), []))
        names = imports_of(path)
        names |= {module_name(path).rsplit(".", i)[0] for i in range(1, module_name(path).count(".") + 1)}
        for name in names:
            # importing a.b.c runs a/__init__.py and a/b/__init__.py too
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                found = module_file(".".join(parts[:i]))
                if found and found not in seen:
                    todo.append(found)
    return seen


def stages():
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return {name: stage for name, stage in pipeline.items()}


def covered(path: Path, deps: list[str]) -> bool:
    relative = path.relative_to(ROOT)
    return any(relative == Path(dep) or Path(dep) in relative.parents for dep in deps)


@pytest.mark.parametrize("name", sorted(stages()))
def test_every_imported_project_module_is_a_dep(name):
    stage = stages()[name]
    module = stage["cmd"].split("python -m ", 1)[1].split()[0]
    entry = module_file(module)
    assert entry is not None, stage["cmd"]
    deps = [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps", [])]
    missing = sorted(str(p.relative_to(ROOT)) for p in project_closure(entry) if not covered(p, deps))
    assert not missing, f"stage {name} imports {missing} but dvc.yaml does not list them as deps"


def test_the_closure_follows_relative_and_function_level_imports():
    closure = {str(p.relative_to(ROOT)) for p in project_closure(ROOT / "stages" / "patch.py")}
    assert "norsparse/base_model/builtin.py" in closure  # relative, from patching.py
    assert "norsparse/stage.py" in closure and "norsparse/__init__.py" in closure and "stages/__init__.py" in closure
    train = {str(p.relative_to(ROOT)) for p in project_closure(ROOT / "stages" / "train.py")}
    assert "norsparse/beir.py" in train and "norsparse/params.py" in train


def test_every_stage_after_validate_depends_on_it():
    for name, stage in stages().items():
        if name != "validate":
            assert "data/checks/validated" in stage["deps"], name
