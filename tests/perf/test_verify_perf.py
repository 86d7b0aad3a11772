"""grade_many throughput on a realistic reward mix (benchmark; `make bench-perf` prints it).

The mix imitates one training step: 512 questions x 4 samples; answers are mostly short integers,
decimals and option letters, 10% LaTeX (fractions, radicals, expressions); samples of a question
often repeat. The cache is cleared before every round, so each round pays for its own judging."""

import random

from bench.verify import clear_cache, grade, grade_many

LATEX_GOLDS = ["\\frac{3}{4}", "2\\sqrt{3}", "(x+1)^2", "\\frac{\\pi}{3}", "[1,3)", "3\\sqrt{2}"]
LATEX_ANSWERS = ["0.75", "\\sqrt{12}", "x^2+2x+1", "60^\\circ", "[1,3)", "\\sqrt{18}", "\\frac{6}{8}", "4\\sqrt{3}"]


def reward_mix(questions: int = 512, samples: int = 4, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    responses, golds = [], []
    for _ in range(questions):
        kind = rng.random()
        if kind < 0.1:
            gold, pool = rng.choice(LATEX_GOLDS), LATEX_ANSWERS
        elif kind < 0.4:
            gold, pool = rng.choice("ABCD"), ["A", "B", "C", "D", "(B)", "\\text{C}"]
        elif kind < 0.55:
            value = rng.randint(1, 999) / 10
            gold, pool = f"{value}", [f"{value}", f"{value + 0.1:.1f}", f"{value}0"]
        else:
            value = rng.randint(0, 2000)
            gold, pool = str(value), [str(value), str(value + 1), f"{value}.0", f"x={value}"]
        for _ in range(samples):
            answer = rng.choice(pool)
            body = "Let me count the shapes carefully. " * rng.randint(1, 8)
            responses.append(f"<think>{body}</think> The answer is \\boxed{{{answer}}}.")
            golds.append(gold)
    return responses, golds


def test_grade_many_throughput(benchmark):
    responses, golds = reward_mix()
    grade("<think>w</think>\\boxed{\\sqrt{2}}", "\\sqrt{2}")  # start the worker pool outside the timing

    def fresh_round():
        clear_cache()
        return (responses, golds), {}

    grades = benchmark.pedantic(grade_many, setup=fresh_round, rounds=5, iterations=1)
    assert len(grades) == len(responses)
    assert 0.2 < sum(g.accuracy for g in grades) / len(grades) < 0.9
    if benchmark.stats:
        per_s = len(responses) / benchmark.stats.stats.median
        print(f"\ngrade_many: {per_s:,.0f} grades/s ({len(responses)} responses, median of 5 rounds)")
        benchmark.extra_info["grades_per_s"] = per_s
