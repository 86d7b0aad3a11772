"""The install recipe's known traps (see pyproject.toml and the Makefile), each proven here."""

import importlib.machinery
import importlib.metadata as md
import importlib.util

import pytest


def test_torch_is_the_pinned_cpu_build():
    import torch

    assert torch.__version__.startswith("2.13.0")


def test_no_torchvision_installed():
    # ms-vlmeval asks for it; the registry's wheel is CUDA-linked and breaks transformers' image code.
    # on the path, not through the finders: bench.vlmeval_compat's placeholder answers find_spec in a
    # process that has imported VLMEvalKit
    assert importlib.machinery.PathFinder.find_spec("torchvision") is None
    with pytest.raises(md.PackageNotFoundError):
        md.version("torchvision")


def test_antlr_runtime_parses_percent():
    # ms-vlmeval pins antlr4 4.11.1, under which math-verify cannot parse 50\%.
    assert md.version("antlr4-python3-runtime").startswith("4.13.")
    from math_verify import parse, verify

    assert verify(parse("$50$"), parse("$50\\%$"))


def test_mathruler_has_its_undeclared_dependencies():
    from mathruler.grader import grade_answer  # imports sympy and pylatexenc

    assert grade_answer("\\frac{1}{2}", "1/2")


def test_vlmeval_is_installed_without_its_dependency_traps():
    assert md.version("ms-vlmeval") == "0.0.20"
    assert importlib.util.find_spec("vlmeval") is not None
