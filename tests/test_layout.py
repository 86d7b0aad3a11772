"""The packages point one way: bench <- train <- reproduce. Every import statement of the three
packages is read (function-level imports included), so a wrong-way import fails here, not in a
user's environment that lacks the other package."""

from __future__ import annotations

import ast
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
