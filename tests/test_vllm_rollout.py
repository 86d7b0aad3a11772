"""The vLLM engine: what can be checked without a GPU (inputs, sampling settings, the message when
vLLM or CUDA is missing), and, on a GPU machine, that its samples follow the training model's
current weights."""

import inspect
from pathlib import Path

import pytest
import torch
from PIL import Image

from bench.processing import load_processor
from train.config import load_config
from train.data import build_messages
from train.encoding import encode_prompts
from train.rollout import (
    SUPPRESSED_TOKENS,
    VLLM_API,
    VLLM_VERSION,
    SamplingParams,
    make_rollout,
    refresh_engine_weights,
    vllm_inputs,
    vllm_sampling_kwargs,
)
from train.tiny import build_tiny

TINY_CONFIG = Path(__file__).resolve().parents[1] / "reproduce" / "configs" / "tiny_cpu.yaml"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = build_tiny(tmp_path_factory.mktemp("vllm") / "m", seed=0)
    return path, load_processor(path)


def _prompts(proc):
    images = [[Image.new("RGB", (56, 56), (200, 30, 30))], [],
              [Image.new("RGB", (56, 56), (0, 0, 200)), Image.new("RGB", (56, 56), (0, 200, 0))]]
    texts = [proc.apply_chat_template(build_messages(q, len(im)), add_generation_prompt=True, tokenize=False)
             for q, im in zip(["How many?", "What is 2+2?", "Which differs?"], images, strict=True)]
    return encode_prompts(proc, texts, images), images


def test_vllm_inputs_carry_the_same_tokens_and_the_images(tiny):
    _, proc = tiny
    prompts, images = _prompts(proc)
    inputs = vllm_inputs(prompts)
    assert [x["prompt_token_ids"] for x in inputs] == [ids.tolist() for ids in prompts.input_ids]
    assert inputs[0]["multi_modal_data"]["image"] is images[0][0]
    assert "multi_modal_data" not in inputs[1]
    assert inputs[2]["multi_modal_data"]["image"] == images[2]
    # the image placeholders are already expanded: one pad token per merged patch
    image_pad = proc.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert inputs[0]["prompt_token_ids"].count(image_pad) == 4 and inputs[2]["prompt_token_ids"].count(image_pad) == 8


def test_vllm_sampling_settings_mirror_the_hf_engine():
    kw = vllm_sampling_kwargs(SamplingParams(n=4, max_new_tokens=64, temperature=0.7, top_p=0.9, top_k=-1,
                                             min_tokens=3), eos_id=7, suppress=[1, 2])
    assert kw["n"] == 4 and kw["max_tokens"] == 64 and kw["min_tokens"] == 3
    assert kw["temperature"] == 0.7 and kw["top_p"] == 0.9 and kw["top_k"] == 0  # 0: off
    assert kw["stop_token_ids"] == [7] and kw["logit_bias"] == {1: -100.0, 2: -100.0}
    assert vllm_sampling_kwargs(SamplingParams(n=1, max_new_tokens=8, top_k=20), 7, [])["top_k"] == 20
    assert len(SUPPRESSED_TOKENS) == 4


def test_vllm_engine_without_vllm_or_cuda_says_what_to_use(tiny):
    path, proc = tiny
    if torch.cuda.is_available():
        pytest.skip("a CUDA machine: the engine may start here")
    cfg = load_config(TINY_CONFIG, [f"worker.actor.model.model_path={path}", "worker.rollout.name=vllm"])
    with pytest.raises((ImportError, RuntimeError), match="worker.rollout.name=hf"):
        make_rollout("vllm", proc, cfg)
    with pytest.raises(ValueError, match="valid names: hf, vllm"):
        make_rollout("sglang", proc, cfg)


class _StrictEngine:
    """LLM.llm_engine: only VLLM_API's engine methods."""

    def __init__(self, calls):
        self.calls = calls

    def reset_encoder_cache(self):
        self.calls.append("reset_encoder_cache")

    def __getattr__(self, name):
        raise AssertionError(f"the engine used vllm LLMEngine.{name}, outside VLLM_API")


def _strict_llm(engine_model, calls):
    """A stand-in for vllm.LLM with VLLM_API's methods alone, their parameters as in the pinned
    release; any other attribute fails the test."""

    class StrictLLM:
        def __init__(self):
            self.llm_engine = _StrictEngine(calls)

        def apply_model(self, func):
            calls.append("apply_model")
            return [func(engine_model)]

        def reset_prefix_cache(self, reset_running_requests=False, reset_connector=False):
            calls.append("reset_prefix_cache")
            return True

        def sleep(self, level=1, mode="abort"):
            calls.append(f"sleep({level})")

        def wake_up(self, tags=None):
            calls.append(f"wake_up({','.join(tags)})")

        def __getattr__(self, name):
            raise AssertionError(f"the engine used vllm.LLM.{name}, outside VLLM_API")

    owners = {"LLM": StrictLLM, "LLMEngine": _StrictEngine}
    assert {key: tuple(inspect.signature(getattr(owners[key.split(".")[0]], key.split(".")[1])).parameters)
            for key in VLLM_API} == VLLM_API
    return StrictLLM()


class _EngineModel:
    def load_weights(self, weights):
        self.weights, self.whole = {}, []
        for name, tensor in weights:  # as vLLM's loader: each copied before the next is asked for
            self.weights[name] = tensor
            self.whole.append(tensor.numel())
        return set(self.weights)


def test_weight_refresh_uses_only_the_pinned_public_api(tiny):
    """The refresh reaches vLLM only through VLLM_API, with the pinned release's parameters; it
    hands the engine's loader every parameter under its Hugging Face name, as the training tensors
    themselves (no copy), then drops the prefix and encoder caches. The extra pins that release."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    calls, engine_model = [], _EngineModel()
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny[0])
    refresh_engine_weights(_strict_llm(engine_model, calls), model, zero3=False)
    assert calls == ["apply_model", "reset_prefix_cache", "reset_encoder_cache"]
    params = dict(model.named_parameters())
    assert engine_model.weights.keys() == params.keys()
    assert all(engine_model.weights[k].data_ptr() == p.data_ptr() for k, p in params.items())
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert f'vllm = ["vllm=={VLLM_VERSION}"]' in pyproject


def test_the_engine_sleeps_outside_rollouts_and_wakes_weights_before_the_cache(tiny, monkeypatch):
    """Around every generation: the weights wake, the refresh, then the KV cache wakes (the gathered
    parameters and the cache never together); after it (even a failed one), the engine sleeps."""
    from train.rollout import VLLMRollout

    calls, engine_model = [], _EngineModel()
    engine = object.__new__(VLLMRollout)
    engine.llm, engine.zero3 = _strict_llm(engine_model, calls), False
    engine.eos_id, engine.suppress = 7, []

    class Completion:
        token_ids, finish_reason = [3, 4], "stop"

    class Output:
        outputs = [Completion()]

    class FakeVllm:
        SamplingParams = dict

    def generate(inputs, sampling, use_tqdm):
        calls.append("generate")
        return [Output()]

    engine.llm.generate = generate
    engine._vllm = FakeVllm
    monkeypatch.setattr("train.rollout.vllm_inputs", lambda prompts: [])
    model = torch.nn.Linear(2, 2)
    out = engine.generate(model, None, SamplingParams(n=1, max_new_tokens=4))
    assert [t.tolist() for t in out] == [[3, 4, 7]]
    assert calls == ["wake_up(weights)", "apply_model", "reset_prefix_cache", "reset_encoder_cache",
                     "wake_up(kv_cache)", "generate", "sleep(1)"]
    calls.clear()
    engine.llm.generate = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("out of memory"))
    with pytest.raises(RuntimeError):
        engine.generate(model, None, SamplingParams(n=1, max_new_tokens=4))
    assert calls[-1] == "sleep(1)"


def test_the_engine_gets_the_launcher_variables_vllm_reads(monkeypatch):
    """vLLM's external launcher reads RANK and LOCAL_RANK with os.environ[...]: a process started
    alone gets rank 0 of 1 (and a free port), a launcher's values are kept."""
    from train.launcher import launcher_env_defaults

    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("LOCAL_RANK", "3")
    launcher_env_defaults()
    import os

    assert (os.environ["RANK"], os.environ["LOCAL_RANK"], os.environ["WORLD_SIZE"]) == ("0", "3", "1")
    assert int(os.environ["MASTER_PORT"]) > 0 and os.environ["MASTER_ADDR"] == "127.0.0.1"


@pytest.mark.gpu
def test_vllm_samples_follow_the_refreshed_weights(tiny):
    """After the training model's weights change and are refreshed into the engine, vLLM's
    log-probs of its own samples match the training model's forward (bf16 tolerance)."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from train.encoding import collate
    from train.logprobs import response_log_probs

    path, proc = tiny
    cfg = load_config(TINY_CONFIG, [f"worker.actor.model.model_path={path}", "worker.rollout.name=vllm",
                                    "worker.rollout.gpu_memory_utilization=0.3"])
    engine = make_rollout("vllm", proc, cfg)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path)
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)  # a different policy from the checkpoint vLLM loaded
    prompts, _ = _prompts(proc)
    params = SamplingParams(n=2, max_new_tokens=8)
    engine.refresh_weights(model)
    kw = vllm_sampling_kwargs(params, engine.eos_id, engine.suppress) | {"logprobs": 0}
    outputs = engine.llm.generate(vllm_inputs(prompts), engine._vllm.SamplingParams(**kw), use_tqdm=False)
    responses, sampler_lp = [], []
    for out in outputs:
        for c in out.outputs:
            responses.append(torch.tensor(c.token_ids))
            sampler_lp.append(torch.tensor([lp[t].logprob for lp, t in zip(c.logprobs, c.token_ids, strict=True)]))
    index = [j for j in range(3) for _ in range(2)]
    batch = collate(prompts, index, responses, proc.tokenizer.pad_token_id)
    with torch.no_grad():
        lp, mask, _ = response_log_probs(model, prompts, batch, width=8)
    for r, ref in enumerate(sampler_lp):
        torch.testing.assert_close(lp[r, : len(ref)], ref.float(), atol=0.1, rtol=0.05)


def test_both_engines_keep_the_rollout_engine_contract(tiny):
    """`RolloutEngine` is the written contract: the hf engine satisfies it at run time, and the vllm
    engine's class has the same generate signature and sets the same attributes."""
    from train.rollout import HFRollout, RolloutEngine, VLLMRollout

    _, proc = tiny
    assert isinstance(HFRollout(proc), RolloutEngine)
    contract = inspect.signature(RolloutEngine.generate)
    for engine in (HFRollout, VLLMRollout):
        assert inspect.signature(engine.generate) == contract
    assert "self.eos_id, self.suppress =" in inspect.getsource(VLLMRollout.__init__)


def test_sampling_settings_are_one_type_copied_by_name():
    """worker.rollout's sampling keys and what an engine samples with are one definition
    (train.sampling.SamplingConfig); the trainer copies them by name, never by position."""
    from train.config import RolloutConfig
    from train.sampling import SamplingConfig

    assert issubclass(RolloutConfig, SamplingConfig) and issubclass(SamplingParams, SamplingConfig)
    params = SamplingParams.of(RolloutConfig(n=5, temperature=0.7, top_p=0.8, top_k=12, min_tokens=3), 64)
    assert (params.n, params.temperature, params.top_p, params.top_k, params.min_tokens, params.max_new_tokens) == (
        5, 0.7, 0.8, 12, 3, 64)
    with pytest.raises(TypeError):
        SamplingParams(4, 64)  # the length is keyword-only: no positional copy can shift it
