"""Loading a Qwen2.5-VL processor with or without torchvision.

`AutoProcessor` builds Qwen2.5-VL's processor with a video processor, and transformers' video
processors need torchvision, which has no CPU build on the registry. Where torchvision is missing
we assemble the same processor from its image half (the PIL image processor) and the tokenizer.
Checkpoints are saved in the standard layout, so `AutoProcessor` loads them where torchvision
exists (GPU machines, VLMEvalKit, vLLM)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer, Qwen2_5_VLProcessor


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """Qwen2_5_VLProcessor without the video half (images and text only)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    def save_pretrained(self, save_directory, **kwargs):
        """The standard files (image processor config, tokenizer, chat template)."""
        self.image_processor.save_pretrained(save_directory)
        self.tokenizer.save_pretrained(save_directory)
        return [str(Path(save_directory))]


def load_processor(path: str | Path):
    """The processor of a checkpoint: `AutoProcessor` when torchvision is usable, else the
    image-only assembly of the same parts."""
    if importlib.util.find_spec("torchvision") is not None:
        try:
            return AutoProcessor.from_pretrained(path)
        except ImportError:  # a placeholder torchvision (bench.vlmeval_compat) or a broken one
            pass
    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    return ImageOnlyQwen2_5_VLProcessor(
        AutoImageProcessor.from_pretrained(path), tokenizer, chat_template=tokenizer.chat_template
    )
