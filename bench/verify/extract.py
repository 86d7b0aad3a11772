"""Text-level rules of the released reward: tag-spacing normalisation, the format rule and
boxed-answer extraction. Every function here is linear in the length of its input, so a 1 MB
response or 10,000 nested braces cannot stall a training step."""

from __future__ import annotations

import re

_WS_RUNS = re.compile(r"(\s+)")
_TAG_CHARS = "<>/"
# A `\boxed{` opener (a space before the brace is tolerated), an escaped brace, or a bare brace.
_BRACE_TOKENS = re.compile(r"\\boxed\s*+\{|\\[{}]|[{}]")


def normalize_tag_spacing(text: str) -> str:
    """Drop whitespace next to `<`, `>` and `/`, as the released reward does before both checks.

    Same result as ``re.sub(r"\\s*(<|>|/)\\s*", r"\\1", text)`` but linear time: that regex
    backtracks quadratically over long whitespace runs."""
    parts = _WS_RUNS.split(text)  # even indices: non-space text (maybe empty), odd: space runs
    for i in range(1, len(parts), 2):
        before, after = parts[i - 1], parts[i + 1]
        if (before and before[-1] in _TAG_CHARS) or (after and after[0] in _TAG_CHARS):
            parts[i] = ""
    return "".join(parts)


def format_matches(normalized: str) -> bool:
    """The released rule ``re.fullmatch(r"<think>.*</think>.*\\\\boxed\\{.*\\}.*", s, re.DOTALL)``
    on an already normalised response, decided with two `partition`s instead of a backtracking
    regex. Taking the earliest `</think>` and then the earliest `\\boxed{` after it is optimal, so
    the answer is the same. (A `</think>` cannot overlap the leading `<think>`, so the text before
    the first `</think>` starts with `<think>` exactly when the response does.)"""
    thought, _, after = normalized.partition("</think>")
    _, _, answer = after.partition("\\boxed{")  # a missing separator leaves `answer` empty
    return thought.startswith("<think>") and "}" in answer


def format_ok(response: str) -> bool:
    """Released format rule: `<think>…</think>…\\boxed{…}…` after tag-spacing normalisation."""
    return format_matches(normalize_tag_spacing(response))


def extract_boxed(text: str) -> str | None:
    """Content of the last complete `\\boxed{...}` (balanced braces; `\\{` and `\\}` are literal
    characters and do not count), tolerating `\\boxed {`. `None` when no box is complete.

    "Last" means the box whose opening comes last, so `\\boxed{\\boxed{5}}` gives `5`, and an
    unfinished box at the end does not hide a complete one before it."""
    open_stack: list[int | None] = []  # per open brace: content start if it opened a \boxed
    boxes: list[tuple[int, int]] = []  # (content start, content end) of each complete \boxed
    for m in _BRACE_TOKENS.finditer(text):
        token = m.group()
        if token == "}":
            if open_stack:
                start = open_stack.pop()
                if start is not None:
                    boxes.append((start, m.start()))
        elif token == "{":
            open_stack.append(None)
        elif token[1] == "b":  # \boxed{
            open_stack.append(m.end())
        # else: an escaped brace, literal text
    if not boxes:
        return None
    start, end = max(boxes)  # the box whose opening comes last
    return text[start:end]
