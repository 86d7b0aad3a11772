"""Every command block of the README and of docs/ runs as written, in order, from a fresh working
folder that holds only what a clone has. Commands that need a GPU, a network endpoint, or are the
whole test suite or reproduction themselves are listed below with the reason; every other line
runs. The pages' links resolve, and each page opens with what it is for and its command."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOT_RUN = {
    "make reproduce-table1": "the full CPU reproduction (its pipeline is smoke-tested in test_mini.py)",
    "make test": "the test suite itself",
    "torchrun": "paper scale: 8 GPUs and the 7B checkpoints",
    "runs/paper_eval": "paper scale: needs the 7B predictions",
    "OPENAI_API_KEY": "needs an OpenAI-compatible endpoint (its client is tested against a local stub)",
    "make bench-perf": "builds a second environment with TRL (tested in test_perf_harness.py)",
    "reproduce.perf": "side-by-side benchmarks against TRL, half an hour (plumbing tested in test_perf_harness.py)",
    "pytest -m gpu": "needs a GPU",
    "make bench-gpu": "the GPU suite at the 3B shape (its smallest run is tested in test_perf_harness.py)",
    "make test-gpu": "needs a GPU",
    "make rehearse-gpu": "downloads the wheelhouse, minutes (tested in test_rehearsal.py)",
    "make smoke-paper": "needs a GPU (the line after it runs the same path on the CPU)",
    "make wheelhouse": "downloads every locked wheel, hundreds of MB (its plan is tested in test_bad_inputs.py)",
    "make mutation": "mutation testing, minutes to hours (its report is tested in test_wrong_numbers.py)",
    "make setup": "builds .venv, which every test runs in",
    "make reproduce-ablations": "the ablations, 45 minutes (the same pipeline as test_mini.py's smoke runs)",
}
PAGES = ("README.md", "docs/training.md", "docs/evaluation.md", "docs/submission.md", "docs/reproduction.md",
         "docs/verifier.md", "docs/install.md", "docs/performance.md", "docs/reliability.md", "docs/deviations.md")
"""Every page with commands, in the order their blocks run (training makes the tiny model and data
that later blocks use)."""


def readme_commands(page: str = "README.md") -> list[str]:
    """The shell commands of a page's ```bash blocks, continuation lines joined."""
    text = (REPO / page).read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for command in block.replace("\\\n", " ").splitlines():
            command = command.strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def test_the_readme_opens_with_the_two_commands():
    assert [c.split()[:2] for c in readme_commands()[:2]] == [["make", "reproduce-table1"], ["make", "test"]]


def test_every_page_is_run():
    assert sorted(PAGES) == sorted(["README.md", *(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md"))])


@pytest.mark.parametrize("page", PAGES)
def test_sections_appear_once(page):
    text = (REPO / page).read_text(encoding="utf-8")
    headings = re.findall(r"^#{2,3} .+$", re.sub(r"```.*?```", "", text, flags=re.S), flags=re.M)
    assert headings and len(headings) == len(set(headings)), sorted(h for h in headings if headings.count(h) > 1)


def test_the_readme_is_short():
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) <= 200


@pytest.mark.parametrize("page", [p for p in PAGES if p.startswith("docs/")])
def test_a_page_opens_with_what_it_is_for_and_its_command(page):
    text = (REPO / page).read_text(encoding="utf-8")
    title, _, rest = text.partition("\n\n")
    opening = rest.split("\n## ", 1)[0]
    assert title.startswith("# ") and len(opening.split()) >= 20, page
    assert re.search(r"`(make |python -m )|```bash\n", opening), f"{page}: no command in its opening"


def test_relative_links_resolve():
    """Every relative link of the README, docs/ and results/ pages names a file that exists."""
    broken = []
    for page in [*PAGES, *(str(p.relative_to(REPO)) for p in (REPO / "results").rglob("README.md"))]:
        text = re.sub(r"```.*?```", "", (REPO / page).read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            path = target.split("#")[0]
            if path and "://" not in path and not ((REPO / page).parent / path).exists():
                broken.append(f"{page}: {target}")
    assert not broken, broken


@pytest.mark.slow
def test_readme_command_blocks_run_as_written(tmp_path):
    """In a folder with the repository's folders linked in (configs are read from
    reproduce/configs/ as the README says) and the committed results copied (commands that read
    them write beside them), with the environment activated, as the README says."""
    import shutil

    for name in ("bench", "train", "reproduce", "tests"):
        (tmp_path / name).symlink_to(REPO / name)
    shutil.copytree(REPO / "results", tmp_path / "results")
    pooled = Path("results/mini/numerics/seeds5/pooled.md")  # written again by docs/reproduction.md's command
    (tmp_path / pooled).unlink()
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    ran = []
    for command in [c for page in PAGES for c in readme_commands(page)]:
        if any(marker in command for marker in NOT_RUN):
            continue
        result = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=900)
        assert result.returncode == 0, f"README command failed: {command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        ran.append(shlex.split(command.split("#")[0])[:3])
    assert len(ran) >= 14, ran  # the training, evaluation and verifier quick starts all ran
    assert (tmp_path / pooled).read_text() == (REPO / pooled).read_text()  # the committed table is the command's
