"""Generation engines behind one interface: `generate(model, prompts, params)` returns n responses
per prompt, prompt-major, each cut after its first end-of-turn token (kept) or at max_new_tokens.

`hf` (default): a lean sampling loop over the training model's own modules (for a seed, the tokens
of transformers `generate`), batched, temperature/top-p/top-k sampling, image tokens suppressed.
`vllm` (GPU only): a colocated engine, imported lazily; see `VLLMRollout`.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor
from torch.nn import functional as F
from transformers.cache_utils import DynamicLayer

from bench.registry import Registry

from .decode import DecodeStep
from .encoding import Prompts, left_padded, model_device, prompt_embeds
from .launcher import launcher_env_defaults
from .sampling import SamplingConfig, race_sample


@runtime_checkable
class RolloutEngine(Protocol):
    """The contract of a generation engine (worker.rollout.name; `ROLLOUT_ENGINES`)."""

    eos_id: int
    """The end-of-turn id every response stops at (kept as its last token)."""
    suppress: list[int]
    """Vision ids no response may contain."""

    def generate(self, model, prompts: Prompts, params: SamplingParams) -> list[Tensor]:
        """`params.n` responses per prompt from the training model's current weights, prompt-major
        ([j, k] order), each cut after its first end-of-turn token (kept) or at max_new_tokens."""
        ...


@dataclass
class SamplingParams(SamplingConfig):
    """The sampling settings (`train.sampling.SamplingConfig`, defined once) and the response length."""

    max_new_tokens: int = field(kw_only=True)

    @classmethod
    def of(cls, sampling: SamplingConfig, max_new_tokens: int) -> SamplingParams:
        """A config's sampling settings (e.g. worker.rollout), copied by name, with a length."""
        return cls(**{f.name: getattr(sampling, f.name) for f in fields(SamplingConfig)}, max_new_tokens=max_new_tokens)


def kv_bytes_per_token(text) -> int:
    """KV cache bytes per token: a key and a value of every KV head in every layer, in bf16
    (57,344 at 7B: 28 layers x 2 x 4 heads x 128); `train.plan` budgets the rollout with it."""
    return text.num_hidden_layers * 2 * text.num_key_value_heads * (text.hidden_size // text.num_attention_heads) * 2


class HFRollout:
    """Sampling on the training model itself (under ZeRO-3, its parameters are gathered for the
    decoding loop)."""

    def __init__(self, processor, micro_batch_size: int = 64, zero3: bool = False, cuda_graph: bool = True,
                 fixed_shape: bool | None = None, sync_free: bool | None = None) -> None:
        self.pad_id = processor.tokenizer.pad_token_id
        self.eos_id, self.suppress = stop_and_suppressed_ids(processor.tokenizer)
        self.micro_batch_size = micro_batch_size
        self.zero3 = zero3
        self.cuda_graph = cuda_graph
        self.fixed_shape = fixed_shape
        """None: the fixed-shape step (`FixedShapeDecoder`) on a GPU, the growing cache on a CPU, where
        attending over the whole reserved width only costs, and where results must replay as before."""
        self.graph_captures = {"captured": 0, "failed": 0}
        """CUDA-graph captures of the decoding step since the engine was made, and those that failed
        (decoding then went on eagerly); the trainer logs them as rollout/graph_* on a GPU."""
        self.sync_free = sync_free
        """None: `race_sample` on a GPU, transformers' warpers and multinomial on a CPU (`_sampler`)."""

    @torch.no_grad()
    def generate(self, model, prompts: Prompts, params: SamplingParams) -> list[Tensor]:
        """n responses per prompt, prompt-major ([j, k] order), each cut after its first
        end-of-turn token (kept) or at max_new_tokens."""
        responses: list[Tensor] = []
        was_training = model.training
        model.eval()
        chunk = self._prompts_per_chunk(model, prompts, params)
        for start in range(0, len(prompts.input_ids), chunk):
            idx = list(range(start, min(start + chunk, len(prompts.input_ids))))
            responses += self._generate_chunk(model, prompts, idx, params)
        model.train(was_training)
        return responses

    def _prompts_per_chunk(self, model, prompts: Prompts, params: SamplingParams) -> int:
        """worker.rollout.micro_batch_size prompts at a time, fewer on a GPU where their reserved KV
        cache (n rows each, of the longest prompt plus max_new_tokens) would take more than
        KV_SHARE_OF_FREE of the memory free now (`train.plan` counts the same bytes per token)."""
        if model_device(model).type != "cuda":
            return self.micro_batch_size
        text = model.config.text_config
        width = max(len(x) for x in prompts.input_ids) + params.max_new_tokens
        row = width * kv_bytes_per_token(text) * model.dtype.itemsize // 2
        free, _ = torch.cuda.mem_get_info()
        return max(1, min(self.micro_batch_size, int(KV_SHARE_OF_FREE * free) // (row * params.n)))

    def _generate_chunk(self, model, prompts: Prompts, idx: list[int], params: SamplingParams) -> list[Tensor]:
        """A lean sampling loop: the prefill through the model's forward, then one `DecodeStep`
        per token. Why not `generate`: on small models its per-token bookkeeping (logits
        processors, stopping criteria, input preparation) costs as much as the forward itself.
        Same distribution and same tokens for a seed as `generate` with these settings
        (tests/test_rollout.py checks token equality): the prefill runs once per prompt and its
        cache and logits are repeated n times; positions follow Qwen2.5-VL's 3D rope (text-only
        prompts: plain positions over the padded width, as in `generate`)."""
        from transformers import DynamicCache

        inner = model.model
        dev = model_device(model)
        ids, attn = left_padded(prompts, idx, self.pad_id, dev)
        embeds, grid = prompt_embeds(inner, prompts, ids, idx)
        width, rows = attn.shape[1], attn.shape[0] * params.n
        position_ids, next_position = None, torch.full((rows,), width, device=dev)
        if grid is not None:
            position_ids, _ = inner.get_rope_index(ids, prompts.mm_token_type_ids(ids), image_grid_thw=grid,
                                                   attention_mask=attn)
            next_position = position_ids.amax(dim=(0, 2)).repeat_interleave(params.n) + 1
        cache = DynamicCache(config=model.config)
        hidden = inner.language_model(inputs_embeds=embeds, attention_mask=attn, position_ids=position_ids,
                                      past_key_values=cache, use_cache=True).last_hidden_state
        logits = model.lm_head(hidden[:, -1]).repeat_interleave(params.n, dim=0)  # (rows, V)
        cache.batch_repeat_interleave(params.n)
        reserve(cache, params.max_new_tokens)
        with self._gathered(model):
            return self._decode(model, cache, logits, attn, next_position, params)

    def _gathered(self, model):
        """Under ZeRO-3, every parameter whole for the decoding loop, which reads weights directly
        and so never triggers DeepSpeed's per-module gathering (the prefill does, through forward)."""
        if not self.zero3:
            return contextlib.nullcontext()
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(model.parameters()))

    def _decode(self, model, cache, logits: Tensor, attn: Tensor, next_position: Tensor,
                params: SamplingParams) -> list[Tensor]:
        """Sample token by token from the prefill's last logits (rows, V) on its filled cache."""
        dev, (rows, width) = logits.device, (logits.shape[0], attn.shape[1])
        step = DecodeStep(model.model.language_model, cache)
        embed, head = model.model.get_input_embeddings().weight, model.lm_head.weight
        fixed = self.fixed_shape if self.fixed_shape is not None else dev.type == "cuda"
        # The decode mask: prompt padding, then the new positions. The growing cache makes every new
        # position visible at once, and step t passes a view of its first width + t + 1 columns;
        # the fixed-shape step opens one column per token.
        mask = torch.full((rows, 1, 1, width + params.max_new_tokens), not fixed, dtype=torch.bool, device=dev)
        mask[:, 0, 0, :width] = attn.repeat_interleave(params.n, dim=0).bool()
        choose = TokenChoice(self._sampler(params, dev), rows, logits.shape[-1], params, self.eos_id, self.pad_id,
                             self.suppress, dev)
        if fixed:  # the choice of the next token is part of the step, and so of its CUDA graph
            advance = FixedShapeDecoder(step, embed, head, mask, next_position, width,
                                        graph=self.cuda_graph and dev.type == "cuda", then=choose)
        else:
            def advance(token: Tensor, t: int) -> Tensor:
                positions = (next_position + t).view(1, rows, 1).expand(3, -1, -1)
                return choose(F.linear(step(F.embedding(token, embed), mask[..., : width + t + 1], positions), head))
        # On a GPU, whether every row has ended is asked every STOP_CHECK_EVERY tokens: the answer
        # waits for the GPU to finish (a host synchronisation per check), and the tokens after a
        # row's end are padding anyway. On a CPU the check is free and keeps `generate`'s tokens.
        check_every = STOP_CHECK_EVERY if dev.type == "cuda" else 1
        token, length = choose(logits), 1
        while length < params.max_new_tokens and (length % check_every or choose.unfinished.any()):
            token = advance(token, length - 1)
            length += 1
        if fixed and advance.attempted:
            self.graph_captures["captured" if advance.graph is not None else "failed"] += 1
        result = []
        for seq in choose.out[:, :length].cpu():
            ends = (seq == self.eos_id).nonzero()
            result.append(seq[: int(ends[0]) + 1] if len(ends) else seq)
        return result

    def _sampler(self, params: SamplingParams, dev: torch.device) -> Callable[[Tensor], Tensor]:
        """scores (rows, V) -> tokens (rows,). On a GPU, `race_sample`: no sort, no host
        synchronisation per token. On a CPU, transformers' own temperature / top-k / top-p warpers
        in `generate`'s order, then `multinomial`: the tokens of `generate` for a seed, which the
        CPU reproduction's results were made with (tests/test_rollout.py checks token equality)."""
        if self.sync_free if self.sync_free is not None else dev.type == "cuda":
            return lambda scores: race_sample(scores / params.temperature if params.temperature != 1.0 else scores,
                                              params.top_k, params.top_p)
        from transformers import (
            LogitsProcessorList,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        warp = LogitsProcessorList()
        if params.temperature != 1.0:
            warp.append(TemperatureLogitsWarper(params.temperature))
        if params.top_k > 0:
            warp.append(TopKLogitsWarper(params.top_k))
        if params.top_p < 1.0:
            warp.append(TopPLogitsWarper(params.top_p))
        return lambda scores: torch.multinomial(torch.softmax(warp(None, scores), dim=-1), num_samples=1).squeeze(1)


KV_SHARE_OF_FREE = 0.6
"""The hf engine's reserved KV cache takes at most this share of the GPU memory free when it starts
(the rest: the prefill's activations, the logits and the decoding step's buffers)."""

STOP_CHECK_EVERY = 16
"""Tokens between two checks (on a GPU) of whether every row has ended."""


class TokenChoice:
    """`choose(logits (R, V)) -> token (R,)`: the next token of every row, written into `out` at the
    step's column. Its state lives on the device (the step counter included, for min_tokens and
    the column), so that on a GPU the choice is captured with the decoding step in one CUDA graph.

    The suppressed vision ids are -inf; end-of-turn is too before min_tokens; a row that has ended
    gets padding."""

    def __init__(self, sample: Callable[[Tensor], Tensor], rows: int, vocab: int, params: SamplingParams,
                 eos_id: int, pad_id: int, suppress: Sequence[int], dev: torch.device) -> None:
        self.sample, self.eos_id, self.pad_id, self.min_tokens = sample, eos_id, pad_id, params.min_tokens
        self.bias = torch.zeros(vocab, device=dev)  # added once per token
        self.bias[list(suppress)] = -math.inf
        self.unfinished = torch.ones(rows, dtype=torch.bool, device=dev)
        self.out = torch.full((rows, params.max_new_tokens), pad_id, dtype=torch.long, device=dev)
        self.step = torch.zeros(1, dtype=torch.long, device=dev)

    def __call__(self, logits: Tensor) -> Tensor:
        scores = logits.float() + self.bias
        if self.min_tokens > 0:
            scores[:, self.eos_id].masked_fill_(self.step < self.min_tokens, -math.inf)
        token = torch.where(self.unfinished, self.sample(scores), self.pad_id)
        self.out.index_copy_(1, self.step, token[:, None])
        self.unfinished &= token != self.eos_id
        self.step.add_(1)
        return token


class FixedShapeDecoder:
    """`advance(token (R,), t) -> then(logits (R, V))`: one decoding step in which every shape is the
    same at every token, as the fast engines decode, so that on a GPU it is captured once as a CUDA
    graph and replayed (one launch per token instead of one per kernel).

    Its inputs and outputs live in fixed buffers: the token, the 3-axis positions and the cache
    column are advanced on the device. The KV cache is the whole reserved width (zeros where
    nothing is written yet), and the attention covers all of it, `mask` opening one column per
    token. The first step runs eagerly (its kernels warm up), the graph is captured from the
    second. tests/test_rollout.py checks the eager step's tokens against `generate` on a CPU;
    the `gpu` test checks the replayed graph against the eager step."""

    def __init__(self, step: DecodeStep, embed: Tensor, head: Tensor, mask: Tensor, next_position: Tensor,
                 width: int, graph: bool, then: Callable[[Tensor], Tensor] | None = None) -> None:
        rows = mask.shape[0]
        self.step, self.embed, self.head, self.mask, self.then = step, embed, head, mask, then
        self.token = torch.zeros(rows, dtype=torch.long, device=mask.device)
        # advanced by one before every step: the first step is at next_position, column `width`
        self.positions = (next_position - 1).view(1, rows, 1).expand(3, -1, -1).clone()
        self.column = torch.tensor([width - 1], device=mask.device)
        self.use_graph, self.graph, self.output = graph, None, None
        self.attempted = False
        """Whether a capture was tried (`graph` is None after a failed one)."""

    def _forward(self) -> Tensor:
        self.positions.add_(1)
        self.column.add_(1)
        self.mask.index_fill_(-1, self.column, True)
        logits = F.linear(self.step(F.embedding(self.token, self.embed), self.mask, self.positions, self.column),
                          self.head)
        return logits if self.then is None else self.then(logits)

    def __call__(self, token: Tensor, t: int) -> Tensor:
        self.token.copy_(token)
        if self.graph is not None:
            self.graph.replay()
            return self.output
        if not self.use_graph:
            return self._forward()
        # The first step runs for real on a side stream, which also warms up the kernels and
        # library handles that the capture needs (as torch.cuda.graph's documentation asks).
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            output = self._forward()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        self.attempted = True
        try:
            with torch.cuda.graph(graph):
                self.output = self._forward()  # recorded, not run: the next call replays it
        except RuntimeError as exc:  # a kernel that cannot be captured: the same step, eagerly
            print(f"hf rollout: CUDA graph capture failed ({' '.join(str(exc).split())[:160]}); decoding eagerly",
                  file=sys.stderr)
            self.use_graph = False
            return output
        self.graph = graph
        return output


class _ReservedLayer(DynamicLayer):
    """A DynamicLayer with room for the tokens still to come: `update` writes them in place, where
    DynamicLayer concatenates (a copy of the whole cache at every token, in every layer)."""

    def __init__(self, keys: Tensor, values: Tensor, extra: int) -> None:
        super().__init__()
        b, h, t, d = keys.shape
        # zeros, not empty: the fixed-shape step attends over unwritten columns (masked), and a NaN
        # left in memory would survive the mask
        self._keys, self._values = keys.new_zeros(b, h, t + extra, d), values.new_zeros(b, h, t + extra, d)
        self._keys[:, :, :t], self._values[:, :, :t] = keys, values
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
        self._set_length(t)

    def _set_length(self, t: int) -> None:
        self.length = t
        self.keys, self.values = self._keys[:, :, :t], self._values[:, :, :t]

    def update(self, key_states: Tensor, value_states: Tensor, *args, **kwargs) -> tuple[Tensor, Tensor]:
        end = self.length + key_states.shape[-2]
        if end > self._keys.shape[2]:
            raise RuntimeError(f"KV cache reserved for {self._keys.shape[2]} tokens, asked for {end}")
        self._keys[:, :, self.length : end], self._values[:, :, self.length : end] = key_states, value_states
        self._set_length(end)
        return self.keys, self.values

    def write_at(self, column: Tensor, key_states: Tensor, value_states: Tensor) -> tuple[Tensor, Tensor]:
        """The fixed-shape step's write: one token's key and value at `column` (a (1,) device
        tensor, so that a captured graph reads it when replayed); returns the whole reserved width."""
        self._keys.index_copy_(2, column, key_states)
        self._values.index_copy_(2, column, value_states)
        return self._keys, self._values

    def get_seq_length(self) -> int:
        return self.length


def reserve(cache, extra: int) -> None:
    """Give every layer of a filled DynamicCache room for `extra` more tokens, one layer at a time:
    each old layer is dropped as soon as its reserved copy exists, so the peak is the cache plus one
    layer (building every new layer first held both caches whole, +14 GiB at 7B's released batch)."""
    for i in range(len(cache.layers)):
        old = cache.layers[i]
        cache.layers[i] = _ReservedLayer(old.keys, old.values, extra)
        del old


VLLM_VERSION = "0.28.0"
"""The vLLM release the `vllm` extra pins: the newest whose own requirements (torch==2.13.0,
transformers>=5.5.3, in its wheel's METADATA) agree with requirements/lock.txt, which
tests/test_pins.py checks against the metadata recorded in requirements/vllm-requires.txt."""

VLLM_API = {
    "LLM.apply_model": ("self", "func"),
    "LLM.reset_prefix_cache": ("self", "reset_running_requests", "reset_connector"),
    "LLM.sleep": ("self", "level", "mode"),
    "LLM.wake_up": ("self", "tags"),
    "LLMEngine.reset_encoder_cache": ("self",),
}
"""What the engine calls in vLLM, with the parameters each has in VLLM_VERSION, read from that
release's wheel (vllm/entrypoints/llm.py: `apply_model` line 599, `reset_prefix_cache` 796, `sleep`
803, `wake_up` 828; vllm/v1/engine/llm_engine.py: `reset_encoder_cache` 355, reached as
`LLM.llm_engine`):
- `apply_model(func)` runs func(model) on the model in each worker (the weight refresh);
- `sleep(level=1)` offloads the weights to host memory and frees the KV cache (the training step
  gets the card); `wake_up(tags)` brings back the "weights", then the "kv_cache" (partial wakes
  keep the rest asleep, vllm/v1/engine/core.py:905-921);
- `reset_prefix_cache()` drops cached prefixes and `reset_encoder_cache()` cached vision
  embeddings, both computed with the old weights (the vision tower is trained: an image seen again
  would otherwise be encoded by the old tower).
tests/test_vllm_rollout.py holds the engine to these alone, and on a machine with vLLM, checks them
against the installed release."""

class VLLMRollout:
    """vLLM on the training GPU (colocated, GPU only, imported lazily). Before every generation
    the engine wakes, the training model's current weights are copied into it tensor by tensor
    (ZeRO-3 shards gathered one parameter at a time), so rollouts are always on-policy; after it,
    the engine sleeps (weights to host memory, KV cache freed) so the training step has the card.
    The engine runs in bf16. Prompts go in as the same token ids (image placeholders already
    expanded) plus their images.

    Not yet run by this project: vLLM's wheel is too large for the GPU machines it is tested on."""

    def __init__(self, processor, cfg) -> None:
        # The engine core in this process (vLLM's V1 engine otherwise runs it in a child process):
        # `apply_model` then hands the weight loader the training tensors themselves, not a pickle;
        # the external launcher asserts it (uniproc_executor.py:179-182).
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        launcher_env_defaults()
        try:
            import vllm
        except ImportError as e:
            raise ImportError("worker.rollout.name=vllm needs vLLM on a CUDA machine: pip install -e '.[vllm]' "
                              "(or use worker.rollout.name=hf)") from e
        if not torch.cuda.is_available():
            raise RuntimeError("worker.rollout.name=vllm needs a CUDA GPU; use worker.rollout.name=hf on CPU")
        ro, d = cfg.worker.rollout, cfg.data
        self.eos_id, self.suppress = stop_and_suppressed_ids(processor.tokenizer)
        self.zero3 = cfg.worker.actor.zero_stage == 3
        self.llm = vllm.LLM(
            model=cfg.worker.actor.model.model_path, dtype="bfloat16", seed=cfg.trainer.seed + int(os.environ["RANK"]),
            gpu_memory_utilization=ro.gpu_memory_utilization, max_model_len=d.max_prompt_length + d.max_response_length,
            enable_prefix_caching=True, enable_sleep_mode=True, distributed_executor_backend="external_launcher",
        )
        self.llm.sleep(level=1)  # the engine's share of the card is free until the first rollout
        self._vllm = vllm

    def refresh_weights(self, model) -> None:
        """Wake the engine's weights, copy the training model's parameters into them (Hugging Face
        names; vLLM's Qwen2.5-VL loader maps them), drop what the old weights computed, then wake
        the KV cache: the gathered parameters and the cache are never on the card together."""
        self.llm.wake_up(tags=["weights"])
        refresh_engine_weights(self.llm, getattr(model, "module", model), self.zero3)
        self.llm.wake_up(tags=["kv_cache"])

    def generate(self, model, prompts: Prompts, params: SamplingParams) -> list[Tensor]:
        """Same contract as HFRollout.generate: n responses per prompt, prompt-major, each cut after
        its first end-of-turn token (kept) or at max_new_tokens."""
        self.refresh_weights(model)
        try:
            outputs = self.llm.generate(vllm_inputs(prompts), self._vllm.SamplingParams(**vllm_sampling_kwargs(
                params, self.eos_id, self.suppress)), use_tqdm=False)
        finally:
            self.llm.sleep(level=1)
        responses = []
        for out in outputs:
            for completion in out.outputs:
                ids = list(completion.token_ids)
                if completion.finish_reason == "stop" and (not ids or ids[-1] != self.eos_id):
                    ids.append(self.eos_id)
                responses.append(torch.tensor(ids, dtype=torch.long))
        return responses


def engine_weights(module, zero3: bool):
    """(Hugging Face name, tensor) for every parameter, one at a time: under ZeRO-3 each is gathered
    only while the engine's loader copies it (the loader consumes each before asking for the next),
    so the refresh's peak is one whole parameter, not the whole model. Elsewhere the training
    tensors themselves, no copy."""
    if not zero3:
        for name, p in module.named_parameters():
            yield name, p.detach()
        return
    import deepspeed

    for name, p in module.named_parameters():
        with deepspeed.zero.GatheredParameters([p]):
            yield name, p.detach()


def refresh_engine_weights(llm, module, zero3: bool) -> None:
    """The training module's parameters into a vLLM `LLM`, through VLLM_API only; then the prefix
    and encoder caches, computed with the old weights, are dropped."""
    with torch.no_grad():
        llm.apply_model(lambda engine_model: engine_model.load_weights(engine_weights(module, zero3)))
    llm.reset_prefix_cache()
    llm.llm_engine.reset_encoder_cache()


SUPPRESSED_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")


def stop_and_suppressed_ids(tokenizer) -> tuple[int, list[int]]:
    """The end-of-turn id every response stops at, and the vision ids no response may contain."""
    return tokenizer.convert_tokens_to_ids("<|im_end|>"), [tokenizer.convert_tokens_to_ids(t) for t in SUPPRESSED_TOKENS]


def vllm_inputs(prompts: Prompts) -> list[dict]:
    """One vLLM prompt per entry: the encoded token ids and, where there are any, the images."""
    inputs = []
    for j, ids in enumerate(prompts.input_ids):
        item: dict = {"prompt_token_ids": ids.tolist()}
        images = prompts.images[j] if prompts.images else []
        if images:
            item["multi_modal_data"] = {"image": images if len(images) > 1 else images[0]}
        inputs.append(item)
    return inputs


def vllm_sampling_kwargs(params: SamplingParams, eos_id: int, suppress: Sequence[int]) -> dict:
    """Keyword arguments of vllm.SamplingParams for HFRollout's sampling, with one difference: the
    suppressed vision ids get a logit bias of -100, the most vLLM allows, where HFRollout sets
    them to -inf (a suppressed id stays possible there, at a probability about e^-100 times its own)."""
    return {
        "n": params.n, "temperature": params.temperature, "top_p": params.top_p,
        "top_k": params.top_k if params.top_k > 0 else 0, "max_tokens": params.max_new_tokens,
        "min_tokens": params.min_tokens, "stop_token_ids": [eos_id], "ignore_eos": False,
        "logit_bias": {t: -100.0 for t in suppress}, "detokenize": False,
    }


ROLLOUT_ENGINES: Registry[Callable[..., RolloutEngine]] = Registry("rollout engine")
"""worker.rollout.name -> a factory (processor, cfg) -> a RolloutEngine."""
ROLLOUT_ENGINES.add("hf", lambda processor, cfg: HFRollout(processor, cfg.worker.rollout.micro_batch_size,
                                                           cfg.worker.actor.zero_stage == 3,
                                                           cfg.worker.rollout.cuda_graph))
ROLLOUT_ENGINES.add("vllm", VLLMRollout)


def make_rollout(name: str, processor, cfg) -> RolloutEngine:
    """The rollout engine `name` (worker.rollout.name) for this config."""
    return ROLLOUT_ENGINES[name](processor, cfg)
