"""VLMEvalKit models with the paper's R1 thinking prompt, registered at run time (no fork).

- `add_r1_prompt(message, placement)`: a space and `R1_PROMPT` after the question text. The
  released patch appended it to every text item (`every_text`, the default, used to reproduce
  Table 1), so an interleaved message (text, image, text; MMMU) carries it twice; `last_text`
  appends it once, to the last text item.
- `R1Qwen2VLChat`: VLMEvalKit's `Qwen2VLChat` with the prompt added in `generate_inner`, so its
  transformers, vLLM and LMDeploy paths all get it (the paper patched only the transformers path).
- `LocalHFChat`: a CPU model on VLMEvalKit's `BaseModel` interface around a local Hugging Face
  Qwen2.5-VL checkpoint (the tiny model, or any small one), using transformers `generate`;
  `Qwen2VLChat` itself asks for a GPU and flash-attention.
- `register(names_or_paths)`: adds entries to `vlmeval.config.supported_VLM` and returns the
  names VLMEvalKit's runner will know them by.

Both classes return {"prediction": response, "extra_records": {"full_response": response}}: with
VLMEvalKit's SPLIT_THINK the prediction column holds the text after </think> (what exact-match
scoring needs) and extra_records keeps the whole response.
"""

from __future__ import annotations

import contextlib
import copy
import re
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from .batching import LookAhead
from .errors import UsageError
from .prompts import with_r1_prompt
from .registry import Registry
from .vlmeval_compat import import_vlmeval


@dataclass(frozen=True)
class PaperModel:
    """A model of the paper's Table 1, under the name VLMEvalKit files its results by."""

    hub_id: str
    paper_row: str
    """Its row in the paper's Table 1."""
    meta: dict = field(default_factory=dict)
    """Leaderboard facts of the released model."""


PAPER_MODELS: Registry[PaperModel] = Registry("paper model")
PAPER_MODELS.add("R1-ShareVL-7B", PaperModel(
    "HuanjinYao/R1-ShareVL-7B", "R1-ShareVL-7B",
    # Qwen2.5-VL-7B: 8.3B parameters, the Qwen2.5-7B language model and its own ViT
    {"Method": ["R1-ShareVL-7B", "https://huggingface.co/HuanjinYao/R1-ShareVL-7B"], "Parameters": "8.3B",
     "Language Model": "Qwen2.5-7B", "Vision Model": "QwenViT", "OpenSource": "Yes"}))
# The paper's base row, evaluated with the same R1 prompt.
PAPER_MODELS.add("Qwen2.5-VL-7B-Instruct-R1", PaperModel("Qwen/Qwen2.5-VL-7B-Instruct", "Qwen2.5-VL-7B-Instruct"))
# The paper evaluated with VLMEvalKit's Qwen2.5-VL settings.
QWEN_KWARGS = {"min_pixels": 1280 * 28 * 28, "max_pixels": 16384 * 28 * 28, "use_custom_prompt": False}


PROMPT_PLACEMENTS: Registry[str] = Registry("prompt placement")
"""Which text items of a VLMEvalKit message get " " + R1_PROMPT after them."""
PROMPT_PLACEMENTS.add("every_text", "after every text item, as the released VLMEvalKit patch does")
PROMPT_PLACEMENTS.add("last_text", "after the last text item only (an interleaved question carries it once)")
DEFAULT_PLACEMENT = "every_text"  # reproducing the paper's Table 1


def add_r1_prompt(message: list[dict], placement: str = DEFAULT_PLACEMENT) -> list[dict]:
    """A copy of a VLMEvalKit message with the R1 prompt added per `placement`."""
    PROMPT_PLACEMENTS[placement]  # noqa: B018 - raises with the valid names
    message = copy.deepcopy(message)
    texts = [i for i, item in enumerate(message) if item.get("type") == "text"]
    if not texts:
        return message + [{"type": "text", "value": with_r1_prompt("").lstrip()}]
    for i in texts if placement == "every_text" else texts[-1:]:
        message[i]["value"] = with_r1_prompt(message[i]["value"])
    return message


@contextlib.contextmanager
def _attention(implementation: str | None):
    """While loading: every `from_pretrained` gets `attn_implementation=implementation`.
    Qwen2VLChat asks for flash_attention_2, which needs the flash-attn package; "sdpa" runs
    without it."""
    if implementation is None:
        yield
        return
    from transformers import PreTrainedModel

    original = PreTrainedModel.__dict__["from_pretrained"]

    def from_pretrained(cls, *args, **kwargs):
        kwargs["attn_implementation"] = implementation
        return original.__func__(cls, *args, **kwargs)

    PreTrainedModel.from_pretrained = classmethod(from_pretrained)
    try:
        yield
    finally:
        PreTrainedModel.from_pretrained = original


@dataclass
class GenerationLog:
    """Time spent in our models' `generate_inner`, per registered model name, in this process: what
    a run's items/s and tokens/s are computed from (model loading and data handling excluded)."""

    runs: dict[str, dict[str, float]] = field(default_factory=dict)

    def record(self, name: str, seconds: float, tokens: int) -> None:
        run = self.runs.setdefault(name, {"items": 0, "seconds": 0.0, "new_tokens": 0})
        run["items"] += 1
        run["seconds"] += seconds
        run["new_tokens"] += tokens

    def note_batches(self, name: str, calls: int) -> None:
        """The batched generations (`LookAhead`) that answered this model's items so far."""
        self.runs.setdefault(name, {"items": 0, "seconds": 0.0, "new_tokens": 0})["generate_calls"] = calls

    def summary(self, name: str) -> dict[str, float] | None:
        """items, seconds, new_tokens (generated, counted at `generate`; 0 for engines not counted), items_per_s,
        tokens_per_s; None when the model generated nothing in this process."""
        run = self.runs.get(name)
        if not run:
            return None
        rate = (lambda x: round(x / run["seconds"], 3)) if run["seconds"] > 0 else (lambda x: None)
        return {**run, "seconds": round(run["seconds"], 3), "items_per_s": rate(run["items"]),
                "tokens_per_s": rate(run["new_tokens"]) if run["new_tokens"] else None}


GENERATION = GenerationLog()


def count_new_tokens(model) -> list[int]:
    """Wrap a transformers model's `generate` so that the returned one-element list accumulates the
    tokens it generates (output length less input length, per row). Engines that are not
    transformers models (vLLM, LMDeploy) are left as they are: their tokens go uncounted."""
    counter = [0]
    if not hasattr(model, "generate") or not hasattr(model, "config"):
        return counter
    original = model.generate

    def generate(*args, **kwargs):
        out = original(*args, **kwargs)
        ids = kwargs.get("input_ids", args[0] if args else None)
        sequences = getattr(out, "sequences", out)
        if ids is not None and hasattr(sequences, "shape"):
            counter[0] += (sequences.shape[-1] - ids.shape[-1]) * sequences.shape[0]
        return out

    model.generate = generate
    return counter


@contextlib.contextmanager
def _timed(name: str, counter: list[int] | tuple[int]):
    """Record one `generate_inner` call: its seconds and the tokens `counter` gained meanwhile."""
    start, before = time.perf_counter(), counter[0]
    yield
    GENERATION.record(name, time.perf_counter() - start, counter[0] - before)


def torch_cat_row(input_ids, new_tokens):
    """(1, prompt + new) token ids: what `generate` returns for one unpadded prompt."""
    import torch

    return torch.cat([input_ids, new_tokens.to(input_ids.device)])[None]


def structured(response: str) -> dict:
    return {"prediction": response, "extra_records": {"full_response": response}}


def _classes():
    """VLMEvalKit (imported here, not when bench is) and the two model classes built on its own:
    `R1Qwen2VLChat` (the paper's models) and `LocalHFChat` (a local checkpoint on any device)."""
    vlmeval = import_vlmeval()
    from vlmeval.vlm.base import BaseModel
    from vlmeval.vlm.qwen2_vl import Qwen2VLChat

    return vlmeval, _r1_chat_class(Qwen2VLChat), _local_chat_class(BaseModel)


def _r1_chat_class(Qwen2VLChat: type) -> type:
    """VLMEvalKit's Qwen2VLChat with the R1 prompt, and batched generation on its transformers path."""

    class R1Qwen2VLChat(Qwen2VLChat):
        """Qwen2VLChat with the R1 prompt added (per `prompt_placement`), for every inference backend.
        With `batch_size` > 1 its transformers path generates `LookAhead` batches: one batched
        `generate` over the prompts Qwen2VLChat builds (its `_prepare_content`, chat template and
        `process_vision_info`, left-padded), then each item's response through Qwen2VLChat's own
        `generate_inner_transformers`, its `generate` answered with that item's tokens (so decoding
        and post-processing stay VLMEvalKit's)."""

        prompt_placement = DEFAULT_PLACEMENT
        run_name = ""
        new_tokens: list[int] | tuple[int] = (0,)  # replaced in __init__ by the counter of this model's generate
        lookahead: LookAhead | None = None

        def __init__(self, *args, prompt_placement: str = DEFAULT_PLACEMENT, attn_implementation: str | None = None,
                     run_name: str = "", batch_size: int = 1, limit: int | None = None, **kwargs) -> None:
            with _attention(attn_implementation):
                super().__init__(*args, **kwargs)
            self.prompt_placement, self.run_name = prompt_placement, run_name
            self.new_tokens = count_new_tokens(getattr(self, "model", None))
            batched = batch_size > 1 and not (self.use_vllm or self.use_lmdeploy or "omni" in self.model_path.lower())
            self.lookahead = LookAhead(batch_size, limit) if batched else None

        def generate_inner(self, message, dataset=None):
            with _timed(self.run_name, self.new_tokens):
                if self.lookahead is None:
                    response = super().generate_inner(add_r1_prompt(message, self.prompt_placement), dataset=dataset)
                else:
                    response = self.lookahead.answer(self, message, dataset, self._generate_many)
                    GENERATION.note_batches(self.run_name, self.lookahead.calls)
            return structured(response)

        def _generate_many(self, messages: list[list[dict]], dataset: str | None) -> list[str]:
            prompted = [add_r1_prompt(m, self.prompt_placement) for m in messages]
            if len(prompted) == 1:
                return [Qwen2VLChat.generate_inner_transformers(self, prompted[0], dataset)]
            batched, responses = self._batched_new_tokens(prompted, dataset), []
            counted = self.model.generate
            try:
                for message, new in zip(prompted, batched, strict=True):
                    self.model.generate = lambda new=new, **inputs: torch_cat_row(inputs["input_ids"][0], new)
                    responses.append(Qwen2VLChat.generate_inner_transformers(self, message, dataset))
            finally:
                self.model.generate = counted
            return responses

        def _batched_new_tokens(self, prompted: list[list[dict]], dataset: str | None) -> list:
            """Each message's new tokens from one left-padded batched `generate` (Qwen2VLChat's inputs)."""
            from qwen_vl_utils import process_vision_info

            system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt is not None else []
            convs = [system + [{"role": "user", "content": self._prepare_content(m, dataset=dataset)}] for m in prompted]
            text = self.processor.apply_chat_template(convs, tokenize=False, add_generation_prompt=True)
            images, videos = process_vision_info(convs)
            tokenizer = self.processor.tokenizer
            side, tokenizer.padding_side = tokenizer.padding_side, "left"
            try:
                inputs = self.processor(text=text, images=images, videos=videos, padding=True, return_tensors="pt")
            finally:
                tokenizer.padding_side = side
            inputs = inputs.to(self.model.device)
            out = self.model.generate(**inputs, **self.generate_kwargs)
            return list(out[:, inputs["input_ids"].shape[1] :])

    return R1Qwen2VLChat


def _local_chat_class(BaseModel: type) -> type:
    """A VLMEvalKit model over transformers `generate` for a local checkpoint."""

    class LocalHFChat(BaseModel):
        """A local Qwen2.5-VL checkpoint through transformers `generate` (CPU or GPU)."""

        INTERLEAVE = True

        def __init__(self, model_path: str, max_new_tokens: int = 512, temperature: float = 0.0,
                     append_r1_prompt: bool = True, prompt_placement: str = DEFAULT_PLACEMENT, run_name: str = "",
                     batch_size: int = 1, limit: int | None = None, **kwargs) -> None:
            import torch
            from transformers import Qwen2_5_VLForConditionalGeneration

            from .processing import load_processor

            super().__init__()
            self.processor = load_processor(model_path)
            self.model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_path, dtype=torch.float32).eval()
            self.max_new_tokens, self.temperature, self.append_r1_prompt = max_new_tokens, temperature, append_r1_prompt
            self.prompt_placement, self.run_name = prompt_placement, run_name
            self.new_tokens = count_new_tokens(self.model)
            self.lookahead = LookAhead(batch_size, limit)

        def generate_inner(self, message, dataset=None):
            with _timed(self.run_name, self.new_tokens):
                response = self.lookahead.answer(self, message, dataset, self._generate_many)
            GENERATION.note_batches(self.run_name, self.lookahead.calls)
            return structured(response)

        def _generate_many(self, messages: list[list[dict]], dataset: str | None = None) -> list[str]:
            """One `generate` over the messages, left-padded (a single message is not padded)."""
            import torch
            from PIL import Image

            texts, images = [], []
            for message in messages:
                if self.append_r1_prompt:
                    message = add_r1_prompt(message, self.prompt_placement)
                content = []
                for item in message:
                    if item["type"] == "image":
                        images.append(Image.open(item["value"]).convert("RGB"))
                        content.append({"type": "image"})
                    elif item["type"] == "text":
                        content.append({"type": "text", "text": item["value"]})
                texts.append(self.processor.apply_chat_template([{"role": "user", "content": content}],
                                                                add_generation_prompt=True, tokenize=False))
            tok = self.processor.tokenizer
            side, tok.padding_side = tok.padding_side, "left"
            try:
                enc = self.processor(text=texts, images=images or None, padding=True, return_tensors="pt")
            finally:
                tok.padding_side = side
            sampling = {"do_sample": True, "temperature": self.temperature} if self.temperature > 0 else {"do_sample": False}
            with torch.no_grad():
                out = self.model.generate(**enc, max_new_tokens=self.max_new_tokens,
                                          eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
                                          pad_token_id=tok.pad_token_id, **sampling)
            width = enc["input_ids"].shape[1]
            return [tok.decode(row[width:], skip_special_tokens=True) for row in out]

    return LocalHFChat


def model_name_for(name_or_path: str) -> str:
    """The name VLMEvalKit files results under: registered names as they are, paths by folder."""
    path = Path(name_or_path)
    if path.exists():
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", path.resolve().name)
    return name_or_path


def register(names_or_paths: list[str], use_vllm: bool = False, cpu: bool | None = None,
             max_new_tokens: int | None = None, prompt_placement: str = DEFAULT_PLACEMENT,
             attn_implementation: str | None = None, batch_size: int = 1, limit: int | None = None) -> list[str]:
    """Register the paper's two models and any local checkpoints; returns VLMEvalKit model names.

    `R1-ShareVL-7B` and `Qwen2.5-VL-7B-Instruct-R1` (the paper's base row: the same prompt) resolve
    to hub ids; a local folder is registered under its folder name, with `LocalHFChat` on CPU and
    `R1Qwen2VLChat` on GPU."""
    import torch

    vlmeval, R1Qwen2VLChat, LocalHFChat = _classes()
    supported = vlmeval.config.supported_VLM
    cpu = (not torch.cuda.is_available()) if cpu is None else cpu
    PROMPT_PLACEMENTS[prompt_placement]  # noqa: B018 - raises with the valid names
    tokens = {"max_new_tokens": max_new_tokens} if max_new_tokens else {}
    tokens |= {"batch_size": batch_size, "limit": limit} if batch_size > 1 else {}  # `LookAhead` batches
    gpu_kwargs = {**QWEN_KWARGS, "use_vllm": use_vllm, "prompt_placement": prompt_placement, **tokens,
                  **({"attn_implementation": attn_implementation} if attn_implementation else {})}
    for name, paper_model in PAPER_MODELS.items():
        supported[name] = partial(R1Qwen2VLChat, model_path=paper_model.hub_id, run_name=name, **gpu_kwargs)
    names = []
    for item in names_or_paths:
        name = model_name_for(item)
        if Path(item).exists():
            if cpu:
                supported[name] = partial(LocalHFChat, model_path=str(Path(item).resolve()),
                                          prompt_placement=prompt_placement, run_name=name, **tokens)
            else:
                supported[name] = partial(R1Qwen2VLChat, model_path=str(Path(item).resolve()), run_name=name,
                                          **gpu_kwargs)
        elif name not in supported:
            raise UsageError(f"unknown model {item!r}: not a folder and not a VLMEvalKit model name "
                             f"(e.g. {', '.join(PAPER_MODELS)}, or a checkpoint path)")
        names.append(name)
    return names
