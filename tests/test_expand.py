"""Question-space expansion: text variants, image transforms, and the rewriting CLI against a real
HTTP server on 127.0.0.1 that speaks the chat-completions protocol."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from train.expand import (
    IMAGE_TRANSFORMS,
    draw_image_variant,
    draw_text_variants,
    parse_new_questions,
    resize_to_pixel_budget,
)
from train.rewrite import filter_rewrites, parse_reply


# ---------------------------------------------------------------- text variants
def test_parse_new_questions_forms():
    assert parse_new_questions(["a", " b "]) == ["a", "b"]
    assert parse_new_questions('["a", "b"]') == ["a", "b"]
    assert parse_new_questions("['a', 'b']") == ["a", "b"]  # the released string form of a list
    assert parse_new_questions(np.array(["a", "b"], dtype=object)) == ["a", "b"]
    assert parse_new_questions(None) == [] and parse_new_questions("") == [] and parse_new_questions(float("nan")) == []


def test_parse_new_questions_never_executes(tmp_path):
    marker = tmp_path / "pwned"
    payload = f"__import__('pathlib').Path({str(marker)!r}).write_text('x')"
    with pytest.raises(ValueError, match="data.parquet row 7: new_questions is not a JSON or Python list"):
        parse_new_questions(payload, where="data.parquet row 7")
    assert not marker.exists()
    with pytest.raises(ValueError, match="must be a list of strings"):
        parse_new_questions("[1, 2]", where="r")


def test_draw_text_variants_without_replacement_and_seeded():
    rewrites = ["r1", "r2", "r3"]
    for seed in range(50):
        v = draw_text_variants("orig", rewrites, 3, random.Random(seed))
        assert len(set(v)) == 3 and set(v) <= {"orig", *rewrites}
        assert v == draw_text_variants("orig", rewrites, 3, random.Random(seed))
        kept = draw_text_variants("orig", rewrites, 2, random.Random(seed), keep_original=True)
        assert kept[0] == "orig" and kept[1] in rewrites
    drawn = {tuple(draw_text_variants("orig", rewrites, 2, random.Random(s))) for s in range(200)}
    assert any("orig" not in d for d in drawn)  # the original is not forced unless asked


def test_draw_text_variants_short_policies():
    v = draw_text_variants("orig", [], 2, random.Random(0))
    assert v == ["orig", "orig"]
    v = draw_text_variants("orig", ["r1", "orig"], 3, random.Random(0), keep_original=True)
    assert v[0] == "orig" and len(v) == 3 and "r1" in v
    assert draw_text_variants("orig", [], 2, random.Random(0), on_short="skip") is None
    with pytest.raises(ValueError, match="valid names: repeat, skip"):
        draw_text_variants("orig", [], 2, random.Random(0), on_short="crash")


# ---------------------------------------------------------------- image variants
def asymmetric_image(w: int = 7, h: int = 5) -> Image.Image:
    pixels = np.arange(w * h * 3, dtype=np.uint8).reshape(h, w, 3)
    return Image.fromarray(pixels)


# The operation that undoes each transform (test-only: the trainer never inverts one).
INVERSES = {
    "rotate_90_clockwise": lambda im: im.rotate(90, expand=True),
    "rotate_90_counterclockwise": lambda im: im.rotate(-90, expand=True),
    "rotate_180": lambda im: im.rotate(180, expand=True),
    "flip_vertical": lambda im: im.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
    "flip_horizontal": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "transpose_180": lambda im: im.transpose(Image.Transpose.ROTATE_180),
}

@pytest.mark.parametrize("name", sorted(INVERSES))
def test_geometric_transform_then_inverse_is_identity(name):
    image = asymmetric_image()
    out = IMAGE_TRANSFORMS[name].apply(image, random.Random(0))
    assert np.array_equal(np.asarray(INVERSES[name](out)), np.asarray(image))


def test_rotation_directions_match_their_words():
    # A single marked pixel in the top-left corner.
    pixels = np.zeros((4, 6, 3), dtype=np.uint8)
    pixels[0, 0] = 255
    image = Image.fromarray(pixels)

    def corner(im):  # where the marked pixel went: (row, col)
        a = np.asarray(im)[..., 0]
        r, c = np.argwhere(a == 255)[0]
        return int(r), int(c), a.shape

    # Turning clockwise sends the top-left corner to the top-right.
    r, c, shape = corner(IMAGE_TRANSFORMS["rotate_90_clockwise"].apply(image, random.Random(0)))
    assert shape == (6, 4) and (r, c) == (0, 3)
    assert "rotated 90 degrees clockwise" in IMAGE_TRANSFORMS["rotate_90_clockwise"].instruction
    # Counter-clockwise sends it to the bottom-left.
    r, c, shape = corner(IMAGE_TRANSFORMS["rotate_90_counterclockwise"].apply(image, random.Random(0)))
    assert shape == (6, 4) and (r, c) == (5, 0)
    assert "rotated 90 degrees counterclockwise" in IMAGE_TRANSFORMS["rotate_90_counterclockwise"].instruction
    r, c, _ = corner(IMAGE_TRANSFORMS["flip_horizontal"].apply(image, random.Random(0)))
    assert (r, c) == (0, 5) and "horizontally" in IMAGE_TRANSFORMS["flip_horizontal"].instruction
    r, c, _ = corner(IMAGE_TRANSFORMS["flip_vertical"].apply(image, random.Random(0)))
    assert (r, c) == (3, 0) and "vertically" in IMAGE_TRANSFORMS["flip_vertical"].instruction


@pytest.mark.parametrize("std", [10, 25, 50])
def test_noise_stays_in_range_and_has_its_std(std):
    image = Image.fromarray(np.full((64, 64, 3), 128, dtype=np.uint8))
    t = IMAGE_TRANSFORMS[f"noise_{std}"]
    out = np.asarray(t.apply(image, random.Random(1))).astype(float)
    assert out.min() >= 0 and out.max() <= 255
    assert abs(out.std() - std) < 0.1 * std
    assert t.instruction == "This image has been corrupted with noise. Please solve the question based on this image.\n"
    saturated = np.asarray(t.apply(Image.fromarray(np.full((8, 8, 3), 250, np.uint8)), random.Random(2)))
    assert saturated.max() == 255  # clipped, not wrapped around


def test_image_variant_probability_same_transform_for_all_images_and_replay():
    images = [asymmetric_image(), asymmetric_image(5, 9)]
    drawn = [draw_image_variant(images, random.Random(s), p=0.3) for s in range(2000)]
    rate = sum(v.transform is not None for v in drawn) / len(drawn)
    assert 0.26 < rate < 0.34
    assert {v.transform for v in drawn} - {None} == set(IMAGE_TRANSFORMS)
    for v in drawn:
        if v.transform in INVERSES:  # every image got the same operation
            for before, after in zip(images, v.images, strict=True):
                assert np.array_equal(np.asarray(INVERSES[v.transform](after)), np.asarray(before))
    a = draw_image_variant(images, random.Random(7), p=1.0)
    b = draw_image_variant(images, random.Random(7), p=1.0)
    assert a.transform == b.transform and all(np.array_equal(x, y) for x, y in zip(a.images, b.images, strict=True))
    assert a.instruction == IMAGE_TRANSFORMS[a.transform].instruction
    assert draw_image_variant(images, random.Random(0), p=0.0).instruction == ""
    with pytest.raises(ValueError, match="valid names"):
        draw_image_variant(images, random.Random(0), allowed=["spin"])


def test_resize_to_pixel_budget():
    big = resize_to_pixel_budget(Image.new("L", (4000, 1000)), 262_144, 1_048_576)
    assert big.mode == "RGB" and big.size[0] * big.size[1] <= 1_048_576
    assert big.size[0] / big.size[1] == pytest.approx(4.0, rel=0.01)
    small = resize_to_pixel_budget(Image.new("RGB", (100, 50)), 262_144, 1_048_576)
    assert small.size[0] * small.size[1] >= 262_144


# ---------------------------------------------------------------- rewriting
def test_filter_rewrites():
    original = "How many of the 3 red balls weigh 2.5 kg?\nA. 1\nB. 2"
    kept, dropped = filter_rewrites(
        original,
        [
            "Of the 3 red balls, how many weigh 2.5 kg?\nA. 1\nB. 2",
            "How many of the 4 red balls weigh 2.5 kg?\nA. 1\nB. 2",  # number changed
            "Of the 3 red balls, how many weigh 2.5 kg? A. 1 B. 3",  # option changed (and a number)
            "how many of the 3 red balls weigh 2.5 kg?\nA. 1\nB. 2",  # the original again
            "Of the 3 red balls, how many weigh 2.5 kg?\nA. 1\nB. 2!",  # repeats the first rewrite
        ],
    )
    assert kept == ["Of the 3 red balls, how many weigh 2.5 kg?\nA. 1\nB. 2"]
    assert dropped == {"numbers_changed": 2, "repeat": 2}


def test_parse_reply():
    assert parse_reply('["a", "b"]') == ["a", "b"]
    assert parse_reply('```json\n["a"]\n```') == ["a"]
    assert parse_reply("Sure! Here: [\"a\", 3]") == ["a"]
    assert parse_reply("no list") == [] and parse_reply("[not json]") == []


class ChatServer:
    """A chat-completions endpoint on 127.0.0.1: paraphrases by template, with scripted failures."""

    def __init__(self, key: str):
        self.key, self.calls, self.lock = key, [], threading.Lock()
        self.failures: dict[str, int] = {}  # question -> 500s still to return
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                question = body["messages"][-1]["content"].split("\n", 1)[1]
                with server.lock:
                    server.calls.append((self.headers.get("Authorization"), question))
                    fail = server.failures.get(question, 0)
                    if fail:
                        server.failures[question] = fail - 1
                if self.headers.get("Authorization") != f"Bearer {server.key}":
                    return self.reply(401, {"error": {"message": "bad key"}})
                if fail:
                    return self.reply(500, {"error": {"message": "overloaded"}})
                if "slow" in question:
                    time.sleep(0.4)
                if "garbage" in question:
                    content = "I cannot do that."
                else:
                    content = json.dumps(
                        [f"Please answer: {question}", f"Tell me: {question}", question, "Different 99 question"]
                    )
                self.reply(200, {
                    "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                })

            def reply(self, code, payload):
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def chat_server():
    server = ChatServer("sk-test-secret-123")
    yield server
    server.close()


def run_rewrite(tmp_path, server, inp, out, *extra, env_key="sk-test-secret-123"):
    env = {**os.environ, "OPENAI_API_KEY": env_key}
    cmd = [sys.executable, "-m", "train.expand", "rewrite", "--input", str(inp), "--output", str(out),
           "--endpoint", server.url, "--model", "m", "--k", "2", "--concurrency", "4", "--quiet", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


def test_rewrite_cli_end_to_end_with_retries_and_resume(tmp_path, chat_server):
    questions = ["How many circles are there?", "What is 3 plus 4?", "slow: count the 2 squares",
                 "garbage please", "Which bar is tallest?"]
    inp = tmp_path / "in.parquet"
    pd.DataFrame({"problem": questions, "answer": ["1", "7", "2", "x", "B"]}).to_parquet(inp)
    out = tmp_path / "out.parquet"
    chat_server.failures["What is 3 plus 4?"] = 2  # two 500s, then success: the client retries

    # A partial log from an interrupted run: row 0 is done already, and its last line was cut short.
    partial = tmp_path / "out.parquet.partial.jsonl"
    partial.write_text(json.dumps({"index": 0, "new_questions": ["Count the circles."]}) + '\n{"index": 4, "new_q')

    result = run_rewrite(tmp_path, chat_server, inp, out)
    assert result.returncode == 0, result.stderr
    assert "sk-test-secret-123" not in result.stdout + result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["rows"] == 5 and summary["resumed"] == 1 and summary.get("failed_rows", 0) == 0

    df = pd.read_parquet(out)
    assert list(df["answer"]) == ["1", "7", "2", "x", "B"]
    new = [list(v) for v in df["new_questions"]]
    assert new[0] == ["Count the circles."]  # resumed, not asked again
    assert new[1] == ["Please answer: What is 3 plus 4?", "Tell me: What is 3 plus 4?"]
    assert new[3] == []  # no list in the reply
    asked = [q for _, q in chat_server.calls]
    assert "How many circles are there?" not in asked
    assert asked.count("What is 3 plus 4?") == 3  # two failures + one success
    assert all(auth == "Bearer sk-test-secret-123" for auth, _ in chat_server.calls)
    assert not partial.exists()  # finished cleanly


def test_rewrite_cli_counts_failed_rows_and_keeps_progress(tmp_path, chat_server):
    """Every other cell is written back as the input held it: gold answers "007" and "1e3" stay
    text (pandas' JSON type inference once wrote them back as 7.0 and 1000.0)."""
    inp = tmp_path / "in.jsonl"
    pd.DataFrame({"problem": ["Count 2 dots", "Count 3 dots"], "answer": ["007", "1e3"],
                  "modified": ["2020-01-01", "2020-01-02"]}).to_json(inp, orient="records", lines=True)
    out = tmp_path / "out.jsonl"
    chat_server.failures["Count 3 dots"] = 100  # never recovers
    result = run_rewrite(tmp_path, chat_server, inp, out, "--max-retries", "1")
    assert result.returncode == 0
    assert "row 1: request failed" in result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["failed_rows"] == 1
    assert (tmp_path / "out.jsonl.partial.jsonl").exists()  # a rerun retries only row 1
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["new_questions"] and rows[1]["new_questions"] == []
    assert [(r["answer"], r["modified"]) for r in rows] == [("007", "2020-01-01"), ("1e3", "2020-01-02")]


def test_rewrite_cli_writes_nothing_when_every_request_failed(tmp_path, chat_server):
    inp = tmp_path / "in.jsonl"
    pd.DataFrame({"problem": ["Count 2 dots", "Count 3 dots"]}).to_json(inp, orient="records", lines=True)
    for q in ("Count 2 dots", "Count 3 dots"):
        chat_server.failures[q] = 100
    result = run_rewrite(tmp_path, chat_server, inp, tmp_path / "out.jsonl", "--max-retries", "0")
    assert result.returncode == 2 and not (tmp_path / "out.jsonl").exists()
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: every request to {chat_server.url} failed (2 rows")


@pytest.mark.parametrize("name, content", [("in.jsonl", '{"problem": "a"}\n{"problem": '),
                                           ("in.parquet", "not parquet"), ("in.csv", "problem\na\n")])
def test_an_input_that_cannot_be_read_is_one_line_naming_it(tmp_path, name, content):
    from bench.errors import UsageError
    from train.rewrite import read_table

    inp = tmp_path / name
    inp.write_text(content)
    with pytest.raises(UsageError, match=rf"^{re.escape(str(inp))}: (cannot be read \(|unsupported extension '\.csv')"):
        read_table(inp)


def test_rewrite_cli_missing_column(tmp_path, chat_server):
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"question": "a"}\n')
    result = run_rewrite(tmp_path, chat_server, inp, tmp_path / "o.jsonl")
    assert result.returncode != 0 and "no column 'problem'" in result.stderr


def test_instructions_are_the_released_sentences_with_true_rotations():
    """The released wording, one sentence pair ending in a newline; only the rotation directions
    (swapped in the release) and the missing newline of one of them differ."""
    back = "Please rotate it back and help me solve the question based on the corrected image.\n"
    flip = "Please flip it back to its original orientation and help me solve the question based on the corrected image.\n"
    expected = {
        "rotate_90_clockwise": "The image is rotated 90 degrees clockwise. " + back,
        "rotate_90_counterclockwise": "The image is rotated 90 degrees counterclockwise. " + back,
        "rotate_180": "The image is rotated 180 degrees counterclockwise. " + back,
        "flip_vertical": "The image is vertically flipped. " + flip,
        "flip_horizontal": "The image is horizontally flipped. " + flip,
        "transpose_180": "The image is flipped both horizontally and vertically, which is equivalent to a 180-degree "
                         "rotation. Please restore it to its original orientation and help me solve the question "
                         "based on the corrected image.\n",
    }
    for name, sentence in expected.items():
        assert IMAGE_TRANSFORMS[name].instruction == sentence, name
    assert all(t.instruction.endswith(".\n") for t in IMAGE_TRANSFORMS.values())
