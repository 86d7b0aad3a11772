"""The packages point one way: bench <- train <- reproduce. Every import statement of the three
packages is read (function-level imports included), so a wrong-way import fails here, not in a
user's environment that lacks the other package."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ALLOWED = {"bench": set(), "train": {"bench"}, "reproduce": {"bench", "train"}}


def imported_packages(path: Path, package: str) -> set[str]:
    """Top-level names of our packages that the file imports (relative imports resolve to its own)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add(package if node.level else (node.module or "").split(".")[0])
    return found & set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package):
    wrong = []
    for path in sorted((REPO / package).rglob("*.py")):
        for other in imported_packages(path, package) - ALLOWED[package] - {package}:
            wrong.append(f"{path.relative_to(REPO)} imports {other}")
    assert not wrong, "imports against bench <- train <- reproduce:\n" + "\n".join(wrong)


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("from . import x\n\ndef f():\n    import train.algos\n    from reproduce.mini import run_mini\n")
    assert imported_packages(source, "bench") == {"bench", "train", "reproduce"}


def test_nothing_users_get_cites_the_design_notes():
    """Users get the repository only: code, README and results cite the paper or the released code."""
    files = [p for p in REPO.rglob("*") if p.is_file() and p.suffix in {".py", ".md", ".json", ".yaml", ".csv"}
             and not {".git", ".venv", ".venv-peer", "runs", "tests"} & set(p.relative_to(REPO).parts)
             and ".egg-info" not in str(p)]
    citing = [str(p.relative_to(REPO)) for p in files if "DESIGN" in p.read_text(encoding="utf-8", errors="replace")]
    assert not citing, citing


def module_imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """Our modules that the file `path` (module `name`) imports, function-level and relative
    imports included; `from package import module` counts the module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            base = ".".join([*parts, *([node.module] if node.module else [])])
            found |= {base, *(f"{base}.{alias.name}" for alias in node.names)}
    return (found & modules) - {name}


def import_cycles() -> list[set[str]]:
    """The sets of our modules that import each other, directly or round a circle (the strongly
    connected components of the import graph with more than one module)."""
    paths = {}
    for package in ALLOWED:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {name: module_imports(path, name, set(paths)) for name, path in paths.items()}
    reach = {}
    for start in graph:  # every module each one reaches (a few hundred edges: a plain search is enough)
        seen, todo = set(), list(graph[start])
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo.extend(graph[node])
        reach[start] = seen
    cycles = {frozenset({a} | {b for b in reach[a] if a in reach[b]}) for a in graph if a in reach[a]}
    return sorted((set(c) for c in cycles), key=sorted)


def test_no_module_imports_itself_round_a_circle():
    assert import_cycles() == []


def test_the_cycle_finder_sees_a_circle_through_a_function_level_import(tmp_path, monkeypatch):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "a.py").write_text("from . import b\n")
    (tmp_path / "bench" / "b.py").write_text("def f():\n    from bench.c import x\n")
    (tmp_path / "bench" / "c.py").write_text("from .a import y\n")
    (tmp_path / "bench" / "d.py").write_text("from .a import y\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    for package in ("train", "reproduce"):
        (tmp_path / package).mkdir()
    assert import_cycles() == [{"bench.a", "bench.b", "bench.c"}]
