"""One decoding case shared by the single-process and the ZeRO-3 runs of tests/test_rollout.py."""

from PIL import Image

from train.data import build_messages
from train.encoding import encode_prompts
from train.rollout import SamplingParams


def prompts_and_params(proc):
    images = [[Image.new("RGB", (56, 56), (200, 30, 30))], []]
    texts = [proc.apply_chat_template(build_messages(q, len(im)), add_generation_prompt=True, tokenize=False)
             for q, im in zip(["How many?", "What is 2+2?"], images, strict=True)]
    return encode_prompts(proc, texts, images), SamplingParams(n=2, max_new_tokens=12, top_p=0.9)
