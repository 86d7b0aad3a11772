"""The miniature's conclusions over several independent runs (other numeric settings, other
machines): each run's verdict, whether they all agree, and the estimate pooled over them.

    python -m reproduce pool results/mini/numerics/seeds5/*

A verdict at 2 SE can differ between two runs whose estimates agree within their errors: one just
beyond 2 SE, the other just within. So each comparison carries Cochran's Q, the test of whether the
runs' estimates differ by more than their errors allow, and a random-effects estimate over the runs
(DerSimonian and Laird, 1986), whose error grows by the spread between runs that Q finds. Where the
runs' verdicts differ and the pooled one is a difference, it also gives the seeds per method at
which every run would reach that verdict (`seeds_for_agreement`). The runs' own tables stand
unchanged; this reads their run.json.

The runs must be independent: each from its own warm start (two runs from one warm start share it
and, with the same seeds, whole runs), and of one design (the same spec but for the seeds)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from bench.errors import UsageError
from bench.fileio import read_text_regular, write_text_atomic

from .analysis import two_se_rule

COMPARISONS = (
    # label, where its {"diff", "se"} is in run.json, and the verdict when above +2 SE, below -2 SE, within
    ("RL's gain (GRPO − Base)", ("held_out", "grpo_vs_base"), "learns", "loses ground", "no gain detectable"),
    ("Share-GRPO − GRPO, equal responses", ("held_out", "equal_responses"),
     "Share-GRPO ahead", "GRPO ahead", "none detectable"),
    ("Share-GRPO (half) − GRPO, equal cost", ("held_out", "equal_cost"),
     "Share-GRPO ahead", "GRPO ahead", "none detectable"),
    ("areas under the held-out curves, Share-GRPO − GRPO", ("learning_curves", "auc_diff"),
     "Share-GRPO faster", "GRPO faster", "neither faster"),
)


def random_effects(estimates: Sequence[tuple[float, float]]) -> dict[str, float]:
    """DerSimonian-Laird random-effects pooling of k independent estimates (value, standard error).

    With weights w_i = 1/se_i^2: the fixed-effect mean m = sum(w x)/sum(w); Cochran's
    Q = sum(w (x - m)^2) on k - 1 degrees of freedom, and its p-value P(chi2_{k-1} > Q); the
    between-run variance tau2 = max(0, (Q - (k - 1)) / (sum(w) - sum(w^2)/sum(w))); then weights
    1/(se_i^2 + tau2) give the pooled `mean` and its `se` = 1/sqrt(sum of those weights).
    With tau2 = 0 this is the inverse-variance (fixed-effect) mean. Needs k >= 2 and every se > 0."""
    from scipy.stats import chi2

    if len(estimates) < 2 or any(not se > 0 for _, se in estimates):
        raise ValueError(f"random_effects needs two or more estimates with positive errors, got {list(estimates)}")
    w = [1 / se**2 for _, se in estimates]
    total = sum(w)
    fixed = sum(wi * x for wi, (x, _) in zip(w, estimates, strict=True)) / total
    q = sum(wi * (x - fixed) ** 2 for wi, (x, _) in zip(w, estimates, strict=True))
    df = len(estimates) - 1
    tau2 = max(0.0, (q - df) / (total - sum(wi**2 for wi in w) / total))
    w_star = [1 / (se**2 + tau2) for _, se in estimates]
    mean = sum(wi * x for wi, (x, _) in zip(w_star, estimates, strict=True)) / sum(w_star)
    return {"mean": mean, "se": 1 / math.sqrt(sum(w_star)), "q": q, "df": df, "p_heterogeneity": float(chi2.sf(q, df)),
            "tau2": tau2}


def seeds_for_agreement(effect: float, runs: Sequence[tuple[float, int]], target: float = 0.95,
                        most: int = 10_000) -> int | None:
    """Seeds per method at which every run would find a true difference `effect` beyond 2 SE on its
    side, all at once, with probability `target`: the smallest k with
    prod_i Phi(|effect| / se_i(k) - 2) >= target, where run i measured its difference with standard
    error se_i at n_i seeds, so se_i(k) = se_i sqrt(n_i / k) (`analysis.power`'s scaling, normal
    errors, independent runs). `runs`: (se_i, n_i). None for no effect (every run then stays within
    2 SE only 95.4% of the time, whatever k) or beyond `most` seeds."""
    from scipy.stats import norm

    if effect == 0:
        return None
    for k in range(1, most + 1):
        if math.prod(norm.cdf(abs(effect) / (se * math.sqrt(n / k)) - 2) for se, n in runs) >= target:
            return k
    return None


def read_run(folder: Path) -> dict:
    """A results folder's run.json, with every estimate the comparisons need; one line naming the
    file and what is missing otherwise."""
    path = folder / "run.json"
    try:
        run = json.loads(read_text_regular(path))
    except FileNotFoundError:
        raise UsageError(f"{path}: not found (pool results folders of make reproduce-table1)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise UsageError(f"{path}: not readable JSON ({type(exc).__name__})") from None
    for _, (part, key), *_ in COMPARISONS:
        found = run.get(part, {}).get(key) if isinstance(run, dict) and isinstance(run.get(part), dict) else None
        if not (isinstance(found, dict) and all(isinstance(found.get(f), (int, float)) for f in ("diff", "se"))):
            raise UsageError(f"{path}: no {part}.{key} with a diff and an se (a run.json of another version?)")
    for key in ("spec", "warm_start"):
        if not isinstance(run.get(key), dict):
            raise UsageError(f"{path}: no {key} object")
    if not (isinstance(run["spec"].get("seeds"), list) and run["spec"]["seeds"]):
        raise UsageError(f"{path}: no list of seeds in its spec")
    return run


def check_independent(runs: dict[str, dict]) -> None:
    """Refuses runs of different designs, or two runs from one warm start."""
    if len(runs) < 2:
        raise UsageError("pool needs two or more results folders")
    first, design = next(iter(runs.items()))
    keys = {k: v for k, v in design["spec"].items() if k != "seeds"}
    digests: dict[str, str] = {}
    for name, run in runs.items():
        other = {k: v for k, v in run["spec"].items() if k != "seeds"}
        if other != keys:
            differ = sorted(k for k in keys.keys() | other.keys() if keys.get(k) != other.get(k))
            raise UsageError(f"{name}: another design than {first} ({', '.join(differ)} differ); pool runs of one design")
        digest = str(run["warm_start"].get("weights_sha256"))
        if digest in digests:
            raise UsageError(f"{name} and {digests[digest]} start from one warm start (sha256 {digest[:8]}…), so they "
                             "are not independent: pool one of them")
        digests[digest] = name


def pool(runs: dict[str, dict]) -> list[dict]:
    """Per comparison: each run's (diff, se, verdict), whether the verdicts agree, and the pooled
    estimate with its verdict (`random_effects`)."""
    check_independent(runs)
    rows = []
    for label, (part, key), *words in COMPARISONS:
        estimates = [(run[part][key]["diff"], run[part][key]["se"]) for run in runs.values()]
        pooled = random_effects(estimates)
        verdicts = [two_se_rule(d, s, *words) for d, s in estimates]
        pooled_verdict = two_se_rule(pooled["mean"], pooled["se"], *words)
        agree = len(set(verdicts)) == 1
        rows.append({"comparison": label, "runs": [{"diff": d, "se": s, "verdict": v}
                                                   for (d, s), v in zip(estimates, verdicts, strict=True)],
                     "agree": agree, "pooled": pooled, "pooled_verdict": pooled_verdict,
                     # how many seeds each run would need to reach the pooled verdict together, when
                     # they do not and it is a difference (taken as the true one)
                     "seeds_for_agreement": None if agree or pooled_verdict == words[2] else seeds_for_agreement(
                         pooled["mean"], [(s, len(run["spec"]["seeds"])) for (_, s), run in
                                          zip(estimates, runs.values(), strict=True)])})
    return rows


def render(names: Sequence[str], rows: list[dict]) -> str:
    """The pooled comparisons as a markdown table, and one computed sentence per comparison."""
    head = f"| | {' | '.join(names)} | same verdict in every run | pooled (random effects) | runs differ (Cochran's Q) |\n"
    lines = [head, "|---" * (len(names) + 4) + "|\n"]
    for row in rows:
        p = row["pooled"]
        cells = [f"{r['diff']:+.1f} ± {r['se']:.1f}: {r['verdict']}" for r in row["runs"]]
        lines.append(f"| {row['comparison']} | {' | '.join(cells)} | {'yes' if row['agree'] else '**no**'} | "
                     f"{p['mean']:+.1f} ± {p['se']:.1f}: **{row['pooled_verdict']}** | "
                     f"Q = {p['q']:.2f} on {p['df']} df, p = {p['p_heterogeneity']:.2f} |\n")
    sentences = []
    for row in rows:
        p = row["pooled"]
        spread = ("the runs differ by more than their errors allow" if p["p_heterogeneity"] < 0.05
                  else "the runs agree within their errors")
        needed = row["seeds_for_agreement"]
        power = "" if needed is None else (
            f" For every run to reach it as well, 95% of the time (if {p['mean']:+.1f} is the true difference), "
            f"each would need about {needed} seeds per method.")
        sentences.append(f"{row['comparison']}: {'one verdict in every run' if row['agree'] else 'the verdicts differ'}; "
                         f"{spread} (p = {p['p_heterogeneity']:.2f}); pooled, {row['pooled_verdict']} "
                         f"({p['mean']:+.1f} ± {p['se']:.1f}).{power}")
    return "".join(lines) + "\n" + "\n".join(f"- {s}" for s in sentences) + "\n"


def main(folders: list[Path], out: Path | None = None) -> int:
    runs = {str(f): read_run(f) for f in folders}
    text = render([Path(n).name for n in runs], pool(runs))
    print(text, end="")
    if out is not None:
        write_text_atomic(out, text)
    return 0
