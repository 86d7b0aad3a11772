import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    """`gpu` tests run only where CUDA is available (`make test` deselects them anyway). Under
    `make mutation`, the tests that reach a mutant run fastest first (`fastest_first`)."""
    import pytest
    import torch

    from tests.helpers.mutation_order import fastest_first

    fastest_first(items)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_runtest_setup(item):
    """Each test starts with an empty verifier decision cache, so that a decision cached by an
    earlier test (or by the process a mutation run forks from) cannot stand in for a broken rule."""
    import sys

    grade = sys.modules.get("bench.verify.grade")
    if grade is not None:
        grade.clear_cache()

