"""Prompt encoding, row collation and the shared-image forward against the plain reference."""

import os
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import DynamicCache, Qwen2_5_VLForConditionalGeneration

from bench.processing import load_processor
from train.data import build_messages
from train.decode import DecodeStep
from train.encoding import collate, encode_prompts
from train.logprobs import FORWARD_MODES, response_log_probs
from train.rollout import FixedShapeDecoder, HFRollout, SamplingParams, reserve
from train.tiny import build_tiny


def test_forward_modes_match_the_plain_reference(tmp_path):
    """Log-probs, entropies and gradients of the shared-prefix and shared-image forwards equal
    those of the model's own forward, for rows that share prompts, a prompt without an image,
    and responses of different lengths."""
    path = build_tiny(tmp_path / "m", seed=0)
    proc = load_processor(path)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path)
    with torch.no_grad():
        for layer in model.model.language_model.layers:  # sharp attention: positions matter
            layer.self_attn.q_proj.weight *= 6
            layer.self_attn.k_proj.weight *= 6
    images = [[Image.new("RGB", (56, 56), (200, 30, 30))], [Image.new("RGB", (56, 56), (30, 30, 200))], []]
    texts = [proc.apply_chat_template(build_messages(q, len(im)), add_generation_prompt=True, tokenize=False)
             for q, im in zip(["How many?", "Which colour is the big shape?", "No image here?"], images, strict=True)]
    prompts = encode_prompts(proc, texts, images)
    assert [len(p) for p in prompts.pixel_values] == [16, 16, 0]
    torch.manual_seed(0)
    responses = HFRollout(proc).generate(model, prompts, SamplingParams(n=2, max_new_tokens=6))
    responses[1] = responses[1][:3]  # responses of different lengths
    assert len(responses) == 6 and all(1 <= len(r) <= 6 for r in responses)
    index = [0, 1, 0, 1, 2, 0]  # rows share prompts, one prompt has no image
    batch = collate(prompts, index, responses, proc.tokenizer.pad_token_id)
    results = {}
    for mode in FORWARD_MODES:
        model.zero_grad()
        lp, mask, ent = response_log_probs(model, prompts, batch, width=8, with_entropy=True, mode=mode)
        (lp * mask).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results[mode] = (lp.detach(), mask, ent, grads)
    lp_r, mask_r, ent_r, g_r = results["plain"]
    assert mask_r.sum() == sum(len(r) for r in responses) and not lp_r[~mask_r].any()
    assert any("visual" in k for k in g_r)
    for mode in ("shared_prefix", "rows", "auto"):
        lp, mask, ent, g = results[mode]
        assert torch.equal(mask, mask_r)
        torch.testing.assert_close(lp, lp_r, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ent, ent_r, atol=1e-5, rtol=1e-5)
        assert g.keys() == g_r.keys()
        for k in g:
            torch.testing.assert_close(g[k], g_r[k], atol=1e-5, rtol=1e-4)


def test_decode_step_matches_the_models_forward(tmp_path):
    """DecodeStep's hidden states and cache writes equal the language model's own forward for two
    decoding steps of left-padded rows with multimodal (3-axis) positions and grouped KV heads."""
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(build_tiny(tmp_path / "m", seed=0)).eval()
    lm = model.model.language_model
    assert lm.config.num_key_value_heads < lm.config.num_attention_heads
    torch.manual_seed(0)
    rows, width, hidden = 3, 7, lm.config.hidden_size
    attn = torch.ones(rows, width, dtype=torch.long)
    attn[0, :2] = attn[2, :1] = 0
    positions = (attn.cumsum(-1) - 1).clamp(min=0)[None].repeat(3, 1, 1)
    positions[1:, :, 3:5] += torch.tensor([[[1, 0]], [[0, 2]]])  # axes differ, as on image tokens
    prompt = torch.randn(rows, width, hidden)
    caches = []
    for _ in range(2):
        caches.append(DynamicCache(config=model.config))
        lm(inputs_embeds=prompt, attention_mask=attn, position_ids=positions, past_key_values=caches[-1], use_cache=True)
    theirs, ours = caches
    reserve(ours, 2)
    step = DecodeStep(lm, ours)
    mask = torch.cat([attn, torch.ones(rows, 2, dtype=torch.long)], dim=1)
    with torch.no_grad():
        for t in range(2):
            x = torch.randn(rows, hidden)
            at = (positions.amax(dim=(0, 2)) + 1 + t).view(1, rows, 1).expand(3, -1, -1)
            expected = lm(inputs_embeds=x[:, None], attention_mask=mask[:, : width + t + 1], position_ids=at,
                          past_key_values=theirs, use_cache=True).last_hidden_state[:, 0]
            got = step(x, mask[:, None, None, : width + t + 1].bool(), at)
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    for a, b in zip(ours.layers, theirs.layers, strict=True):
        torch.testing.assert_close(a.keys, b.keys, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(a.values, b.values, atol=1e-6, rtol=1e-6)


def _generate_reference(model, rollout, prompts, params):
    """transformers `generate` with the settings HFRollout stands for (the pre-speed-up engine)."""
    width = max(len(x) for x in prompts.input_ids)
    ids = torch.full((len(prompts.input_ids), width), rollout.pad_id)
    attn = torch.zeros_like(ids)
    for r, x in enumerate(prompts.input_ids):
        ids[r, width - len(x) :], attn[r, width - len(x) :] = x, 1
    kwargs = {"input_ids": ids, "attention_mask": attn, "mm_token_type_ids": prompts.mm_token_type_ids(ids)}
    if any(len(p) for p in prompts.pixel_values):
        kwargs |= {"pixel_values": torch.cat(prompts.pixel_values), "image_grid_thw": torch.cat(prompts.image_grid_thw)}
    out = model.generate(**kwargs, do_sample=True, temperature=params.temperature, top_p=params.top_p,
                         top_k=params.top_k if params.top_k > 0 else None, max_new_tokens=params.max_new_tokens,
                         min_new_tokens=params.min_tokens, num_return_sequences=params.n,
                         eos_token_id=rollout.eos_id, pad_token_id=rollout.pad_id, suppress_tokens=rollout.suppress)
    result = []
    for seq in out[:, width:]:
        ends = (seq == rollout.eos_id).nonzero()
        result.append(seq[: int(ends[0]) + 1] if len(ends) else seq)
    return result


@pytest.mark.parametrize("params", [
    SamplingParams(n=3, max_new_tokens=24),
    SamplingParams(n=2, max_new_tokens=20, temperature=0.7, top_p=0.9, top_k=40, min_tokens=5),
], ids=["plain", "warped"])
@pytest.mark.parametrize("fixed_shape", [False, True], ids=["growing-cache", "fixed-shape"])
def test_sampler_gives_the_tokens_of_transformers_generate(tmp_path, params, fixed_shape, monkeypatch):
    """The lean sampling loop is a speed-up only: same seed, same tokens as `generate`, for image
    and text-only prompts in one batch, with early end-of-turn stops and min_tokens; both for the
    growing cache (CPU) and for the fixed-shape step that a GPU replays as a CUDA graph (here
    eager: attention over the whole reserved width, grouped heads as queries)."""
    path = build_tiny(tmp_path / "m", seed=0)
    proc = load_processor(path)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path).eval()
    rollout = HFRollout(proc, fixed_shape=fixed_shape)
    images = [[Image.new("RGB", (56, 56), (200, 30, 30))], [], [Image.new("RGB", (56, 56), (30, 30, 200))]]
    texts = [proc.apply_chat_template(build_messages(q, len(im)), add_generation_prompt=True, tokenize=False)
             for q, im in zip(["How many?", "What is 2+2? Think first.", "Which colour?"], images, strict=True)]
    prompts = encode_prompts(proc, texts, images)
    with torch.no_grad():
        for layer in model.model.language_model.layers:  # sharp attention: tokens depend on every position
            layer.self_attn.q_proj.weight *= 6
            layer.self_attn.k_proj.weight *= 6
        # make end-of-turn likely (logit about 4), so that rows stop at different lengths
        h = model.model.language_model(input_ids=prompts.input_ids[1][None]).last_hidden_state.mean(dim=(0, 1))
        model.lm_head.weight[rollout.eos_id] = 4 * h / h.square().sum()
    steps = []
    forward = FixedShapeDecoder._forward
    monkeypatch.setattr(FixedShapeDecoder, "_forward", lambda self: steps.append(1) or forward(self))
    torch.manual_seed(7)
    ours = rollout.generate(model, prompts, params)
    assert (len(steps) > 0) == fixed_shape
    torch.manual_seed(7)
    reference = _generate_reference(model, rollout, prompts, params)
    assert [r.tolist() for r in ours] == [r.tolist() for r in reference]
    lengths = {len(r) for r in ours}
    assert len(lengths) > 1 and min(lengths) >= max(params.min_tokens, 1)
    assert all(int(r[-1]) == rollout.eos_id for r in ours if len(r) < params.max_new_tokens)


def test_the_sync_free_sampler_keeps_the_engines_contract(tmp_path):
    """The GPU's sampler (`race_sample`, forced here on the CPU): responses end at their first
    end-of-turn or at max_new_tokens, respect min_tokens, never hold a suppressed vision id, and are
    the same for the same seed; its distribution is checked in tests/test_sampling.py."""
    path = build_tiny(tmp_path / "m", seed=0)
    proc = load_processor(path)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path).eval()
    rollout = HFRollout(proc, fixed_shape=True, sync_free=True)
    texts = [proc.apply_chat_template(build_messages(q, 0), add_generation_prompt=True, tokenize=False)
             for q in ["How many?", "What is 2+2?"]]
    prompts = encode_prompts(proc, texts, [[], []])
    with torch.no_grad():
        h = model.model.language_model(input_ids=prompts.input_ids[1][None]).last_hidden_state.mean(dim=(0, 1))
        model.lm_head.weight[rollout.eos_id] = 4 * h / h.square().sum()
    params = SamplingParams(n=4, max_new_tokens=16, top_p=0.9, min_tokens=2)
    runs = []
    for _ in range(2):
        torch.manual_seed(5)
        runs.append([r.tolist() for r in rollout.generate(model, prompts, params)])
    assert runs[0] == runs[1] and len(runs[0]) == 8
    for r in runs[0]:
        assert 2 <= len(r) <= 16 and not set(r) & set(rollout.suppress)
        assert rollout.eos_id not in r[:-1] and (r[-1] == rollout.eos_id or len(r) == 16)
    assert any(r[-1] == rollout.eos_id for r in runs[0])


def test_the_token_choice_is_inside_the_step_a_gpu_captures(tmp_path, monkeypatch):
    """Every token after the first is sampled inside `FixedShapeDecoder._forward`, the call a GPU
    captures as one CUDA graph (with the sampler's random draw, suppression, min_tokens and the
    write into the output), and that fused step gives the growing cache's tokens for the same
    sampler and seed (`race_sample` forced on the CPU)."""
    import train.rollout as rollout_module

    path = build_tiny(tmp_path / "m", seed=0)
    proc = load_processor(path)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path).eval()
    texts = [proc.apply_chat_template(build_messages(q, 0), add_generation_prompt=True, tokenize=False)
             for q in ["How many?", "What is 2+2?"]]
    prompts = encode_prompts(proc, texts, [[], []])
    params = SamplingParams(n=3, max_new_tokens=12, top_p=0.9, min_tokens=3)
    inside, where = [], []
    forward, race = FixedShapeDecoder._forward, rollout_module.race_sample

    def traced_forward(self):
        inside.append(True)
        try:
            return forward(self)
        finally:
            inside.pop()

    monkeypatch.setattr(FixedShapeDecoder, "_forward", traced_forward)
    monkeypatch.setattr(rollout_module, "race_sample", lambda *a, **k: where.append(bool(inside)) or race(*a, **k))
    runs = {}
    for fixed in (True, False):
        where.clear()
        torch.manual_seed(3)
        runs[fixed] = [r.tolist() for r in HFRollout(proc, fixed_shape=fixed, sync_free=True).generate(model, prompts,
                                                                                                       params)]
        if fixed:
            assert where[0] is False and all(where[1:]) and len(where) == max(len(r) for r in runs[True])
    assert not any(where)
    assert runs[True] == runs[False]


def test_forward_flops_prefer_sharing_for_short_responses_and_rows_for_long_ones():
    from train.logprobs import forward_flops

    def costs(prompt, response, rows_per_prompt, units=2):
        index = torch.arange(units).repeat_interleave(rows_per_prompt)
        return forward_flops(torch.full((len(index),), prompt), torch.full((len(index),), response), index,
                             hidden=512, intermediate=1536, kv_hidden=128)

    short = costs(prompt=300, response=16, rows_per_prompt=16)
    assert short["shared_prefix"] < short["rows"]
    long = costs(prompt=70, response=1024, rows_per_prompt=16)
    assert long["rows"] < long["shared_prefix"]
    # one row per prompt: nothing to share, and whole causal rows are never dearer
    single = costs(prompt=70, response=64, rows_per_prompt=1)
    assert single["rows"] <= single["shared_prefix"]
    # hand-worked: one prompt of 2 tokens, one row with 1 response token, h = I = kv = 1
    one = forward_flops(torch.tensor([2]), torch.tensor([1]), torch.tensor([0]), 1, 1, 1)
    assert one == {"shared_prefix": (2 + 1) * 14 + (4 + 3) * 4, "rows": 3 * 14 + 4.5 * 4}


@pytest.mark.gpu
def test_cuda_graph_replay_matches_the_eager_fixed_shape_step(tmp_path):
    """On a GPU: the decoding step replayed as a CUDA graph gives the eager step's logits (bf16
    tolerance) for the same tokens, token after token, and the graph is really replayed."""
    device = torch.device("cuda")
    path = build_tiny(tmp_path / "m", seed=0, size="small")
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=torch.bfloat16).to(device).eval()
    lm, rows, width, new = model.model.language_model, 6, 9, 24
    torch.manual_seed(0)
    ids = torch.randint(10, 400, (rows, width), device=device)
    attn = torch.ones(rows, width, dtype=torch.long, device=device)
    attn[0, :3] = 0
    tokens = torch.randint(10, 400, (new, rows), device=device)
    results = []
    for graph in (False, True):
        cache = DynamicCache(config=model.config)
        with torch.no_grad():
            h = lm(input_ids=ids, attention_mask=attn, past_key_values=cache, use_cache=True).last_hidden_state
        reserve(cache, new)
        mask = torch.zeros(rows, 1, 1, width + new, dtype=torch.bool, device=device)
        mask[:, 0, 0, :width] = attn.bool()
        advance = FixedShapeDecoder(DecodeStep(lm, cache), lm.embed_tokens.weight, model.lm_head.weight, mask,
                                    torch.full((rows,), width, device=device), width, graph=graph)
        logits = [model.lm_head(h[:, -1])]
        for t in range(new):
            logits.append(advance(tokens[t], t).clone())
        assert (advance.graph is not None) == graph
        results.append(torch.stack(logits).float())
    torch.testing.assert_close(results[1], results[0], atol=2e-2, rtol=2e-2)
    # and the model's own forward, token by token, with transformers' math attention (not the
    # kernels the fixed-shape step shares with its graph)
    model.config._attn_implementation = "eager"
    model.config.text_config._attn_implementation = "eager"
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        h = lm(input_ids=ids, attention_mask=attn, past_key_values=cache, use_cache=True).last_hidden_state
        reference = [model.lm_head(h[:, -1])]
        mask = attn
        for t in range(new):
            mask = torch.cat([mask, torch.ones(rows, 1, dtype=mask.dtype, device=device)], dim=1)
            positions = (width + t) * torch.ones(3, rows, 1, dtype=torch.long, device=device)
            h = lm(input_ids=tokens[t][:, None], attention_mask=mask, position_ids=positions, past_key_values=cache,
                   use_cache=True).last_hidden_state
            reference.append(model.lm_head(h[:, -1]))
    torch.testing.assert_close(results[1], torch.stack(reference).float(), atol=5e-2, rtol=5e-2)


@pytest.mark.gpu
def test_decoding_on_a_gpu_synchronises_with_the_host_only_at_stop_checks(tmp_path):
    """No host synchronisation per token: with 64 new tokens, the syncs torch reports
    (`set_sync_debug_mode("warn")`) are the prefill's few, one stop check per STOP_CHECK_EVERY
    tokens and the final copy; `torch.multinomial` alone made one per token."""
    import warnings

    from train.rollout import STOP_CHECK_EVERY

    device = torch.device("cuda")
    path = build_tiny(tmp_path / "m", seed=0, size="small")
    proc = load_processor(path)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=torch.bfloat16).to(device).eval()
    rollout = HFRollout(proc)
    texts = [proc.apply_chat_template(build_messages(q, 0), add_generation_prompt=True, tokenize=False)
             for q in ["How many?", "What is 2+2?"]]
    prompts = encode_prompts(proc, texts, [[], []])
    params = SamplingParams(n=4, max_new_tokens=64, min_tokens=64)
    rollout.generate(model, prompts, params)  # warm-up: the graph's capture is not what is counted
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            responses = rollout.generate(model, prompts, params)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in seen if "synchroniz" in str(w.message)]
    assert all(len(r) == 64 for r in responses)
    assert rollout.graph_captures == {"captured": 2, "failed": 0}  # replayed as a graph, both times
    assert len(syncs) <= 64 // STOP_CHECK_EVERY + 12, [str(w.message)[:120] for w in syncs]


@pytest.mark.gpu
def test_sampling_inside_the_graph_draws_fresh_random_numbers_at_every_replay(tmp_path):
    """The sampler's random draw is part of the captured graph: replayed, it must advance the
    generator (a frozen draw repeats one token per row). With uniform logits (lm_head zeroed) and
    end-of-turn held off, 64 tokens from a vocabulary of hundreds are nearly all distinct, and
    the same seed gives the same tokens."""
    device = torch.device("cuda")
    path = build_tiny(tmp_path / "m", seed=0, size="small")
    proc = load_processor(path)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=torch.bfloat16).to(device).eval()
    with torch.no_grad():
        model.lm_head.weight.zero_()
    rollout = HFRollout(proc)
    texts = [proc.apply_chat_template(build_messages(q, 0), add_generation_prompt=True, tokenize=False)
             for q in ["How many?", "What is 2+2?"]]
    prompts = encode_prompts(proc, texts, [[], []])
    params = SamplingParams(n=4, max_new_tokens=64, min_tokens=64)
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        runs.append([r.tolist() for r in rollout.generate(model, prompts, params)])
    assert rollout.graph_captures == {"captured": 2, "failed": 0}
    assert runs[0] == runs[1]
    assert all(len(r) == 64 and len(set(r)) >= 48 for r in runs[0]), [len(set(r)) for r in runs[0]]
    assert len({tuple(r) for r in runs[0]}) == len(runs[0])


def test_the_log_prob_forward_keeps_only_the_final_norms_output(tmp_path):
    """The final hidden states come from a hook on the final norm, equal to the model's last hidden
    state, and the forward is not asked to keep every layer's (`output_hidden_states`)."""
    from train.logprobs import _final_hidden

    path = build_tiny(tmp_path / "m", seed=0)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path).eval()
    ids = torch.randint(10, 200, (2, 7))
    expected = model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
    asked = []
    forward = model.forward
    model.forward = lambda **kw: asked.append(kw) or forward(**kw)
    got = _final_hidden(model, input_ids=ids)
    torch.testing.assert_close(got, expected, atol=0, rtol=0)
    assert not asked[0].get("output_hidden_states") and not model.model.language_model.norm._forward_hooks


def test_decoding_under_zero3_on_two_ranks_gives_the_tokens_of_zero0_and_calls_no_module(tmp_path):
    """Under ZeRO-3 (2 ranks, parameters partitioned) the fixed-shape decoding gives the same tokens
    as the whole model in one process, and its steps call no module, so no DeepSpeed hook can run
    inside a captured CUDA graph (the capture would be invalidated and decoding fall back to eager)."""
    import json
    import subprocess
    import sys

    from tests.helpers.decode_case import prompts_and_params

    repo = Path(__file__).resolve().parents[1]
    path = build_tiny(tmp_path / "m", seed=0)
    proc = load_processor(path)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path).eval()
    prompts, params = prompts_and_params(proc)
    torch.manual_seed(11)
    expected = [t.tolist() for t in HFRollout(proc, fixed_shape=True).generate(model, prompts, params)]
    from train.launcher import free_port

    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", str(repo / "tests" / "helpers" / "zero3_decode.py"), str(path), str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    proc_run = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert proc_run.returncode == 0, proc_run.stderr[-3000:]
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["tokens"] == expected, rank
        assert got["steps"] > 0 and got["module_calls_in_steps"] == 0, got


def test_a_failed_graph_capture_is_counted_and_reaches_the_metrics():
    """A capture that fails decodes eagerly, and is counted where the trainer's metrics read it."""
    from train.trainer import _graph_metrics

    class Engine:
        graph_captures = {"captured": 0, "failed": 0}

    assert _graph_metrics(Engine()) == {}  # a CPU run's metrics are as before
    Engine.graph_captures = {"captured": 3, "failed": 1}
    assert _graph_metrics(Engine()) == {"rollout/graph_captured": 3.0, "rollout/graph_failed": 1.0}
    assert _graph_metrics(object()) == {}


def test_decoding_chunks_are_capped_by_the_free_gpu_memory(tmp_path, monkeypatch):
    """On a GPU, as many prompts per chunk as fit KV_SHARE_OF_FREE of the free memory with their
    n rows of reserved KV cache (the plan's bytes per token), never more than micro_batch_size nor
    fewer than one; on a CPU, micro_batch_size."""
    from train.plan import kv_bytes_per_token
    from train.rollout import KV_SHARE_OF_FREE

    path = build_tiny(tmp_path / "m", seed=0)
    proc = load_processor(path)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path)
    texts = [proc.apply_chat_template(build_messages(q, 0), add_generation_prompt=True, tokenize=False)
             for q in ["How many?", "What is 2+2? Think."]]
    prompts = encode_prompts(proc, texts, [[], []])
    params = SamplingParams(n=3, max_new_tokens=10)
    rollout = HFRollout(proc, micro_batch_size=50)
    assert rollout._prompts_per_chunk(model, prompts, params) == 50
    row = (max(len(x) for x in prompts.input_ids) + 10) * kv_bytes_per_token(model.config.text_config) * 2  # float32
    monkeypatch.setattr("train.rollout.model_device", lambda m: torch.device("cuda"))
    for prompts_that_fit in (7, 1, 0, 80):
        free = int((prompts_that_fit * 3 * row + 1) / KV_SHARE_OF_FREE) + 1
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda free=free: (free, 10 * free))
        assert rollout._prompts_per_chunk(model, prompts, params) == min(50, max(1, prompts_that_fit))
