"""A narrow shim that lets VLMEvalKit import on machines without torchvision, decord or jieba.

VLMEvalKit imports these at import time, for dataset and model classes this project never uses:
torchvision (many; the registry has no CPU build of it), decord (video datasets, e.g.
vlmeval/dataset/dsrbench.py:5 in ms-vlmeval 0.0.20) and jieba (Chinese text metrics, e.g.
vlmeval/dataset/foxbench.py:7). GPU images often lack the last two, and neither fits in a small
offline transfer (decord's wheel is 13.6 MB and for manylinux2010 only; jieba has no wheel and is
37 MB installed). `import_vlmeval()` imports VLMEvalKit; for each of these modules that cannot be
imported, it first installs a placeholder package whose every attribute is an object that raises a
clear error when it is called. Nothing that this project runs calls them, so a call means a code
path that needs the real one.

transformers checks for torchvision too; its availability is computed (and cached as False)
before the placeholder goes in, so transformers keeps using its PIL image processors.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import logging
import sys
import types

OPTIONAL = {
    "torchvision": "no CPU build exists",
    "decord": "VLMEvalKit's video datasets read with it",
    "jieba": "VLMEvalKit's Chinese text metrics use it",
}
"""Modules VLMEvalKit imports at import time that this project never calls, and why they may be missing."""

MESSAGE = "{top} is not installed ({why}); this VLMEvalKit code path needs it: {name}"


class _Missing:
    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Missing(f"{self._name}.{attr}")

    def __call__(self, *args, **kwargs):
        top = self._name.split(".")[0]
        raise RuntimeError(MESSAGE.format(top=top, why=OPTIONAL[top], name=self._name))

    def __mro_entries__(self, bases):  # `class X(torchvision.Something)` at import time
        return (object,)


class _PlaceholderModule(types.ModuleType):
    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Missing(f"{self.__name__}.{attr}")


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in self.names:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return _PlaceholderModule(spec.name)

    def exec_module(self, module):
        module.__path__ = []
        module.__version__ = "0.0.0+placeholder"


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def install_placeholder() -> frozenset[str]:
    """Install placeholders for the OPTIONAL modules that are missing (once per process); returns
    the names that are placeholders."""
    for finder in sys.meta_path:
        if isinstance(finder, _Finder):
            return finder.names
    missing = frozenset(name for name in OPTIONAL if not _importable(name))
    if missing:
        if "torchvision" in missing:
            from transformers.utils import import_utils

            import_utils.is_torchvision_available()  # cache False before the placeholder exists
            import_utils.is_torchvision_greater_or_equal("0.0")
        sys.meta_path.insert(0, _Finder(missing))
    return missing


def import_vlmeval():
    """`vlmeval` with its model registry (`vlmeval.config.supported_VLM`) loaded.

    `vlmeval.vlm` switches autograd off for the whole process at import time
    (`torch.set_grad_enabled(False)`); the caller's grad mode is restored, so importing the
    evaluation side never breaks training in the same process. Its `.pkl` intermediates are
    written and read as JSON (`bench.no_pickle`)."""
    import torch

    from . import no_pickle

    install_placeholder()
    grad_enabled = torch.is_grad_enabled()
    # Importing logs an ERROR when VLMEvalKit finds no .env file of API keys beside its package
    # (vlmeval/__init__.py:11-20), the normal case (keys come from the environment), and
    # transformers warns that torchvision is absent: lines that would bury a command's one-line error.
    logging.disable(logging.ERROR)
    try:
        import vlmeval
        import vlmeval.config  # noqa: F401
    finally:
        logging.disable(logging.NOTSET)
        torch.set_grad_enabled(grad_enabled)
    no_pickle.install()
    return vlmeval


def _classes_serving(dataset: str) -> list[type]:
    """The VLMEvalKit dataset classes that serve `dataset` with a checksum for its TSV, in the order
    `build_dataset` tries them."""
    vlmeval = import_vlmeval()
    return [cls for cls in vlmeval.dataset.DATASET_CLASSES
            if dataset in getattr(cls, "DATASET_MD5", {}) and dataset in cls.supported_datasets()]


def official_md5(dataset: str) -> str | None:
    """The md5 VLMEvalKit holds for a dataset's TSV (its class's `DATASET_MD5`), or None for a
    dataset it does not know or has no checksum for."""
    serving = _classes_serving(dataset)
    return serving[0].DATASET_MD5[dataset] if serving else None


def accept_local_tsv(dataset: str) -> None:
    """Make VLMEvalKit use `$LMUData/{dataset}.tsv` as it is, in this process.

    `ImageBaseDataset.prepare_tsv` (vlmeval/dataset/image_base.py) re-downloads a local TSV whose
    md5 differs from the class's `DATASET_MD5` entry, over the local file; without an entry it
    takes the file as it is. So the entry is dropped from each class that serves `dataset` (a new
    dict, so no other class sees the change)."""
    for cls in _classes_serving(dataset):
        cls.DATASET_MD5 = {k: v for k, v in cls.DATASET_MD5.items() if k != dataset}
