"""The tiny Qwen2.5-VL builder: deterministic, loadable with the usual calls, tokenizer as specified."""

import filecmp
import subprocess
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoImageProcessor, AutoTokenizer, Qwen2_5_VLForConditionalGeneration

from bench.processing import load_processor
from bench.prompts import R1_PROMPT
from train.tiny import SIZES, build_tiny


def test_build_is_deterministic_and_loadable(tmp_path):
    a = build_tiny(tmp_path / "a", seed=3)
    subprocess.run([sys.executable, "-m", "train.tiny", "--out", str(tmp_path / "b"), "--seed", "3"], check=True,
                   capture_output=True, timeout=300)
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert filecmp.cmp(a / "tokenizer.json", tmp_path / "b" / "tokenizer.json", shallow=False)
    other = load_file(str(build_tiny(tmp_path / "c", seed=4) / "model.safetensors"))
    assert any(not torch.equal(wa[k], other[k]) for k in wa)

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(a)
    cfg = model.config
    head_dim = cfg.text_config.hidden_size // cfg.text_config.num_attention_heads
    assert sum(cfg.text_config.rope_parameters["mrope_section"]) == head_dim // 2
    tok = AutoTokenizer.from_pretrained(a)
    assert type(AutoImageProcessor.from_pretrained(a)).__name__ == "Qwen2VLImageProcessorPil"
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>")}
    assert all(0 <= i < cfg.text_config.vocab_size for i in ids.values())
    assert cfg.image_token_id == ids["<|image_pad|>"] and cfg.text_config.eos_token_id == ids["<|im_end|>"]
    assert tok.tokenize("<think>12</think>")[:3] == ["<think>", "1", "2"]  # digits are single tokens
    assert tok.decode(tok.encode(R1_PROMPT)) == R1_PROMPT


def test_processor_and_generation(tmp_path):
    from PIL import Image

    path = build_tiny(tmp_path / "m", seed=0)
    proc = load_processor(path)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many?"}]}]
    text = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>assistant\n") and "<|vision_start|><|image_pad|><|vision_end|>" in text
    side = SIZES["tiny"].image_side
    enc = proc(text=[text], images=[Image.new("RGB", (side, side))], return_tensors="pt")
    n_image_tokens = int((enc["input_ids"] == model.config.image_token_id).sum())
    assert n_image_tokens == int(enc["image_grid_thw"].prod()) // 4
    out = model.generate(**enc, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > enc["input_ids"].shape[1]
