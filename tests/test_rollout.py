"""Prompt encoding, row collation and the shared-image forward against the plain reference."""

import torch
from PIL import Image
from transformers import Qwen2_5_VLForConditionalGeneration

from train.data import build_messages
from train.processing import load_processor
from train.rollout import HFRollout, SamplingParams, collate, encode_prompts, response_log_probs
from train.tiny import build_tiny


def test_shared_image_forward_matches_reference(tmp_path):
    path = build_tiny(tmp_path / "m", seed=0)
    proc = load_processor(path)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path)
    images = [[Image.new("RGB", (56, 56), (200, 30, 30))], [Image.new("RGB", (56, 56), (30, 30, 200))], []]
    texts = [proc.apply_chat_template(build_messages(q, len(im)), add_generation_prompt=True, tokenize=False)
             for q, im in zip(["How many?", "Which colour?", "No image here?"], images, strict=True)]
    prompts = encode_prompts(proc, texts, images)
    assert [len(p) for p in prompts.pixel_values] == [16, 16, 0]
    torch.manual_seed(0)
    responses = HFRollout(proc).generate(model, prompts, SamplingParams(n=2, max_new_tokens=6))
    assert len(responses) == 6 and all(1 <= len(r) <= 6 for r in responses)
    index = [0, 1, 0, 1, 2, 0]  # rows share prompts, one prompt has no image
    batch = collate(prompts, index, responses, proc.tokenizer.pad_token_id)
    results = []
    for share in (True, False):
        model.zero_grad()
        lp, mask, _ = response_log_probs(model, prompts, batch, width=8, share_images=share)
        (lp * mask).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((lp.detach(), mask, grads))
    (lp_s, mask_s, g_s), (lp_r, mask_r, g_r) = results
    assert torch.equal(mask_s, mask_r) and mask_s.sum() == sum(len(r) for r in responses)
    torch.testing.assert_close(lp_s, lp_r, atol=1e-5, rtol=1e-5)
    assert g_s.keys() == g_r.keys() and any("visual" in k for k in g_s)
    for k in g_s:
        torch.testing.assert_close(g_s[k], g_r[k], atol=1e-5, rtol=1e-4)
