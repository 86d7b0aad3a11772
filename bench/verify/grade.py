"""`grade` and `grade_many`: the reward the trainer uses and the scorer evaluation uses.

reward = 0.9 * accuracy + 0.1 * format (the released weights). Both checks see the response after
the released tag-spacing normalisation. Modes:
- "default": our judge: cheap exact rules for numbers, letters and short text, then math-verify
  (gold first) for everything symbolic.
- "paper": the released grader's decisions (mathruler's extraction and `grade_answer`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from ..registry import Registry
from .canonical import decide
from .extract import extract_boxed, format_matches, normalize_tag_spacing
from .judge import MAX_JUDGE_LEN, get_judge

ACCURACY_WEIGHT, FORMAT_WEIGHT = 0.9, 0.1
DEFAULT_TIMEOUT_S = 2.0
MODES: Registry[str] = Registry("verifier mode")
"""Verifier mode -> the symbolic judge (in `judge.JUDGES`) that decides what the cheap checks cannot."""
MODES.add("default", "math_verify")  # ours: exact numeric/letter/text checks, then math-verify
MODES.add("paper", "mathruler")  # the released grader: mathruler's extraction and grade_answer
CACHE_SIZE = 200_000


@dataclass(frozen=True)
class Grade:
    """accuracy, format in {0, 1}; overall = 0.9 accuracy + 0.1 format; extracted is the content
    of the last complete \\boxed{} (None without one). status is "ok" or why accuracy is 0 for a
    reason other than a wrong answer: no_box, empty_gold, gold_unparseable, too_long, timeout,
    judge_error:<exception>."""

    accuracy: float
    format: float
    overall: float
    extracted: str | None
    status: str = "ok"

    def to_dict(self) -> dict:
        return asdict(self)


def _make(accuracy: bool, status: str, fmt: bool, extracted: str | None) -> Grade:
    a, f = float(accuracy), float(fmt)
    return Grade(a, f, ACCURACY_WEIGHT * a + FORMAT_WEIGHT * f, extracted, status)


def _check_mode(mode: str) -> None:
    MODES[mode]  # noqa: B018 - raises with the valid names


class _LRU:
    def __init__(self, size: int) -> None:
        self.size, self.data, self.lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self.lock:
            value = self.data.get(key)
            if value is not None:
                self.data.move_to_end(key)
            return value

    def put(self, key, value) -> None:
        with self.lock:
            self.data[key] = value
            if len(self.data) > self.size:
                self.data.popitem(last=False)


_cache = _LRU(CACHE_SIZE)


def clear_cache() -> None:
    """Forget every cached (answer, gold) decision (benchmarks; after changing a judge)."""
    with _cache.lock:
        _cache.data.clear()


def _extract(normalized: str, mode: str) -> str | None:
    """The answer each mode judges: ours (last complete box) or the released grader's own
    extraction (the last `\\boxed{`, which returns the string "None" when that box is unfinished)."""
    if mode == "paper":
        from mathruler.grader import extract_boxed_content

        paper = extract_boxed_content(normalized)
        return paper if paper != "None" or "\\boxed{None}" in normalized else None
    return extract_boxed(normalized)


def _pre_judge(pred: str | None, gold: str, mode: str) -> tuple[bool, str] | None:
    """Decide without the symbolic judge when possible; None means it must run."""
    if not gold:
        return False, "empty_gold"
    if pred is None:
        return False, "no_box"
    if len(pred) > MAX_JUDGE_LEN or len(gold) > MAX_JUDGE_LEN:
        return False, "too_long"
    if mode == "paper":
        return None  # the released grader decides everything else, in the bounded pool
    decided = decide(pred, gold)
    return None if decided is None else (decided, "ok")


def grade_many(
    responses: Sequence[str],
    golds: Sequence[str],
    mode: str = "default",
    workers: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[Grade]:
    """Grades in input order. Cheap decisions and cache hits are taken here; the rest run in
    parallel in the bounded worker pool, each within `timeout_s`."""
    _check_mode(mode)
    if len(responses) != len(golds):
        raise ValueError(f"{len(responses)} responses but {len(golds)} gold answers")
    rows = []
    for response, gold in zip(responses, golds, strict=True):
        normalized = normalize_tag_spacing(str(response))
        rows.append((_extract(normalized, mode), str(gold).strip(), format_matches(normalized)))

    decisions = _decide([(pred, gold) for pred, gold, _ in rows], mode, workers, timeout_s)
    return [_make(*decisions[(pred, gold)], fmt=fmt, extracted=pred) for pred, gold, fmt in rows]


def _decide(keys: list[tuple[str | None, str]], mode: str, workers: int | None,
            timeout_s: float) -> dict[tuple[str | None, str], tuple[bool, str]]:
    """(match, status) per distinct (answer, gold): cache, then cheap rules, then the bounded
    symbolic judge for what is left; settled decisions go into the cache."""
    decisions: dict[tuple[str | None, str], tuple[bool, str] | None] = {}
    pending: list[tuple[str, str]] = []
    for key in keys:
        if key in decisions:
            continue
        decision = _cache.get((mode, *key)) or _pre_judge(*key, mode)
        decisions[key] = decision  # None: the symbolic judge decides, below
        if decision is None:
            pending.append(key)
    if pending:
        judged = get_judge(workers).run(MODES[mode], pending, timeout_s)
        decisions.update(zip(pending, judged, strict=True))
    for key, decision in decisions.items():
        if decision[1] in ("ok", "gold_unparseable"):  # a timeout or crash is never cached
            _cache.put((mode, *key), decision)
    return decisions


def grade(response: str, gold: str, mode: str = "default", timeout_s: float = DEFAULT_TIMEOUT_S) -> Grade:
    """Grade one response against its gold answer (see `grade_many`)."""
    return grade_many([response], [gold], mode=mode, timeout_s=timeout_s)[0]


def answers_match(pred: str, gold: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Is the extracted answer `pred` the same answer as `gold` (default mode)?"""
    key = (pred, str(gold).strip())
    return _decide([key], "default", None, timeout_s)[key][0]
