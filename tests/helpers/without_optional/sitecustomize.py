"""Put on PYTHONPATH, this hides decord and jieba from every process that starts with it, as on a
GPU image that lacks them (tests/test_paper_smoke.py): the path finder no longer finds them, so
`importlib.util.find_spec` returns None and `import` raises ModuleNotFoundError, as for a package
that is not installed. (torchvision is never installed here.)"""

import importlib.machinery
import sys

HIDDEN = {"decord", "jieba"}


class _PathFinderWithout(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            return None
        return super().find_spec(name, path, target)


sys.meta_path[:] = [_PathFinderWithout if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
