"""A narrow shim that lets VLMEvalKit import on machines without torchvision.

VLMEvalKit imports torchvision at import time (for dataset and model classes this project never
uses), and the registry has no CPU build of torchvision. `import_vlmeval()` imports VLMEvalKit;
only when torchvision cannot be imported does it first install a placeholder `torchvision`
package whose every attribute is an object that raises a clear error when it is called. Nothing
that this project runs calls torchvision, so a call means a code path that needs the real one.

transformers checks for torchvision too; its availability is computed (and cached as False)
before the placeholder goes in, so transformers keeps using its PIL image processors.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

MESSAGE = "torchvision is not installed (no CPU build exists); this VLMEvalKit code path needs it: {}"


class _Missing:
    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Missing(f"{self._name}.{attr}")

    def __call__(self, *args, **kwargs):
        raise RuntimeError(MESSAGE.format(self._name))

    def __mro_entries__(self, bases):  # `class X(torchvision.Something)` at import time
        return (object,)


class _PlaceholderModule(types.ModuleType):
    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Missing(f"{self.__name__}.{attr}")


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return _PlaceholderModule(spec.name)

    def exec_module(self, module):
        module.__path__ = []
        module.__version__ = "0.0.0+placeholder"


def install_placeholder() -> bool:
    """Install the placeholder if torchvision is missing; True when it is (now) in place."""
    if any(isinstance(f, _Finder) for f in sys.meta_path):
        return True
    if importlib.util.find_spec("torchvision") is not None:
        return False
    from transformers.utils import import_utils

    import_utils.is_torchvision_available()  # cache False before the placeholder exists
    import_utils.is_torchvision_greater_or_equal("0.0")
    sys.meta_path.insert(0, _Finder())
    return True


def import_vlmeval():
    """`vlmeval` with its model registry (`vlmeval.config.supported_VLM`) loaded.

    `vlmeval.vlm` switches autograd off for the whole process at import time
    (`torch.set_grad_enabled(False)`); the caller's grad mode is restored, so importing the
    evaluation side never breaks training in the same process."""
    import torch

    install_placeholder()
    grad_enabled = torch.is_grad_enabled()
    try:
        import vlmeval
        import vlmeval.config  # noqa: F401
    finally:
        torch.set_grad_enabled(grad_enabled)
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
