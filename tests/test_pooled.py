"""`python -m reproduce pool`: random-effects pooling worked by hand, the 2-SE rule at its edge, the
committed runs under three numeric settings, and every refusal in one line."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from bench.errors import UsageError
from reproduce.__main__ import main
from reproduce.mini.pooled import pool, random_effects, read_run, render, seeds_for_agreement

REPO = Path(__file__).resolve().parents[1]
SEEDS5 = REPO / "results" / "mini" / "numerics" / "seeds5"
SETTINGS = ("avx2_mkl_unpinned", "native", "pinned")


def test_random_effects_by_hand_with_spread_between_runs():
    """(0, 1) and (3, 2): w = 1, 1/4; fixed mean 0.75/1.25 = 0.6; Q = 0.36 + 1.44 = 1.8 on 1 df;
    sum(w) - sum(w^2)/sum(w) = 1.25 - 1.0625/1.25 = 0.4, so tau2 = (1.8 - 1)/0.4 = 2; weights 1/3 and
    1/6 give mean (0 + 3/6)/(1/2) = 1 and se 1/sqrt(1/2) = 1.414; p = P(chi2_1 > 1.8) = 2 (1 - Phi(sqrt 1.8))."""
    got = random_effects([(0.0, 1.0), (3.0, 2.0)])
    phi = 0.5 * (1 + math.erf(math.sqrt(1.8) / math.sqrt(2)))
    assert got == pytest.approx({"mean": 1.0, "se": math.sqrt(2), "q": 1.8, "df": 1, "p_heterogeneity": 2 * (1 - phi),
                                 "tau2": 2.0})


def test_random_effects_without_spread_is_the_inverse_variance_mean():
    """(1, 1) and (1.5, 1): Q = 0.125 < 1 df, so tau2 = 0: mean 1.25, se 1/sqrt(2)."""
    got = random_effects([(1.0, 1.0), (1.5, 1.0)])
    assert got["tau2"] == 0.0 and got["mean"] == pytest.approx(1.25) and got["se"] == pytest.approx(1 / math.sqrt(2))
    assert got["q"] == pytest.approx(0.125)
    assert random_effects([(1.5, 1.0), (1.0, 1.0)]) == pytest.approx(got)  # the order of the runs is no matter


@pytest.mark.parametrize("estimates", [[(1.0, 1.0)], [(1.0, 1.0), (2.0, 0.0)], [(1.0, 1.0), (2.0, float("nan"))]])
def test_random_effects_needs_two_estimates_with_errors(estimates):
    with pytest.raises(ValueError, match="two or more estimates with positive errors"):
        random_effects(estimates)


def test_seeds_for_agreement_by_hand():
    """One run, se 1 at 4 seeds, true difference 3: se(k) = 2/sqrt(k), and Phi(1.5 sqrt(k) - 2) first
    reaches 0.95 at k = 6 (Phi(1.67) = 0.953; k = 5: Phi(1.35) = 0.912). Two such runs need
    Phi(.)^2 >= 0.95: k = 7 (0.976^2 = 0.952; k = 6: 0.953^2 = 0.908)."""
    assert seeds_for_agreement(3.0, [(1.0, 4)]) == 6
    assert seeds_for_agreement(-3.0, [(1.0, 4)]) == 6  # either side
    assert seeds_for_agreement(3.0, [(1.0, 4), (1.0, 4)]) == 7
    assert seeds_for_agreement(3.0, [(1.0, 4)], target=0.9) == 5
    assert seeds_for_agreement(3.0, [(2.0, 4)]) == 24  # twice the error: four times the seeds (5.9 x 4 = 23.6)
    assert seeds_for_agreement(0.0, [(1.0, 4)]) is None  # no difference: no k makes every run find one
    assert seeds_for_agreement(3.0, [(1.0, 4)], most=5) is None
    assert seeds_for_agreement(3.0, [(1.0, 4)], most=6) == 6  # the last k tried is `most`
    assert seeds_for_agreement(1.0, [(1.0, 4)]) == 54  # Phi(sqrt(k)/2 - 2) >= 0.95 from sqrt(k) >= 7.29
    assert seeds_for_agreement(5.0, [(1.0, 1)]) == 1  # Phi(3) = 0.9987 at one seed already


def test_the_committed_runs_under_three_numeric_settings():
    """The equal-cost verdicts differ (pinned: GRPO ahead by 8.4 ± 3.4; the others within 2 SE), yet
    the three estimates agree within their errors (Q = 2.0 on 2 df) and pool to GRPO ahead."""
    rows = {r["comparison"]: r for r in pool({s: read_run(SEEDS5 / s) for s in SETTINGS})}
    cost = rows["Share-GRPO (half) − GRPO, equal cost"]
    assert [r["verdict"] for r in cost["runs"]] == ["none detectable", "none detectable", "GRPO ahead"]
    assert not cost["agree"] and cost["pooled_verdict"] == "GRPO ahead"
    assert cost["pooled"]["mean"] == pytest.approx(-4.60, abs=0.01) and cost["pooled"]["se"] == pytest.approx(2.08, abs=0.01)
    assert cost["pooled"]["q"] == pytest.approx(2.00, abs=0.01) and cost["pooled"]["tau2"] == 0.0
    assert cost["seeds_for_agreement"] == 53  # 5 seeds each now: -4.6 at 3.8, 3.7, 3.4
    assert all(r["seeds_for_agreement"] is None for r in rows.values() if r is not cost)  # they agree
    assert {k: (r["agree"], r["pooled_verdict"]) for k, r in rows.items() if k != cost["comparison"]} == {
        "RL's gain (GRPO − Base)": (True, "learns"),
        "Share-GRPO − GRPO, equal responses": (True, "none detectable"),
        "areas under the held-out curves, Share-GRPO − GRPO": (True, "neither faster")}


def test_the_command_prints_and_writes_the_same_table(tmp_path, capsys):
    out = tmp_path / "pooled.md"
    assert main(["pool", *(str(SEEDS5 / s) for s in SETTINGS), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed == out.read_text() == (SEEDS5 / "pooled.md").read_text()  # the committed table, byte for byte
    assert "| Share-GRPO (half) − GRPO, equal cost | -2.4 ± 3.8: none detectable | -2.2 ± 3.7: none detectable | " \
           "-8.4 ± 3.4: GRPO ahead | **no** | -4.6 ± 2.1: **GRPO ahead** | Q = 2.00 on 2 df, p = 0.37 |" in printed
    assert "- Share-GRPO (half) − GRPO, equal cost: the verdicts differ; the runs agree within their errors " \
           "(p = 0.37); pooled, GRPO ahead (-4.6 ± 2.1). For every run to reach it as well, 95% of the time (if -4.6 " \
           "is the true difference), each would need about 53 seeds per method." in printed


def copy_run(tmp_path: Path, setting: str, name: str | None = None) -> Path:
    folder = tmp_path / (name or setting)
    folder.mkdir()
    shutil.copy(SEEDS5 / setting / "run.json", folder / "run.json")
    return folder


def edit(folder: Path, change) -> Path:
    run = json.loads((folder / "run.json").read_text())
    change(run)
    (folder / "run.json").write_text(json.dumps(run))
    return folder


def test_no_seed_count_is_given_where_the_pooled_verdict_is_no_difference(tmp_path):
    """+2.5 ± 1 (ahead) and -1.0 ± 1 (none) differ; pooled they are +0.75 ± 1.75 (Q = 6.1, tau2 =
    5.1): no difference, which no number of seeds makes every run find."""
    def responses(diff):
        return lambda r: r["held_out"]["equal_responses"].update(diff=diff, se=1.0)

    runs = {f.name: read_run(f) for f in (edit(copy_run(tmp_path, "pinned"), responses(2.5)),
                                          edit(copy_run(tmp_path, "native"), responses(-1.0)))}
    row = next(r for r in pool(runs) if r["comparison"] == "Share-GRPO − GRPO, equal responses")
    assert not row["agree"] and row["pooled_verdict"] == "none detectable"
    assert row["pooled"]["mean"] == pytest.approx(0.75) and row["pooled"]["tau2"] == pytest.approx(5.125)
    assert row["seeds_for_agreement"] is None
    text = render(list(runs), [row])
    assert text.splitlines()[-1] == ("- Share-GRPO − GRPO, equal responses: the verdicts differ; the runs differ by more "
                                     "than their errors allow (p = 0.01); pooled, none detectable (+0.8 ± 1.8).")
    assert text.splitlines()[1] == "|---|---|---|---|---|---|"


def test_every_refusal_is_one_line_naming_the_file(tmp_path, capsys):
    a, b = copy_run(tmp_path, "pinned"), copy_run(tmp_path, "native")
    same = copy_run(tmp_path, "pinned", "pinned_again")
    other = edit(copy_run(tmp_path, "native", "sparse"), lambda r: r["spec"].update(tasks=["SynthCount"], warmup_steps=75))
    reseeded = edit(copy_run(tmp_path, "native", "more_seeds"), lambda r: r["spec"].update(seeds=[1, 2, 3, 4, 5, 6]))
    old = edit(copy_run(tmp_path, "native", "old"), lambda r: r["learning_curves"].pop("auc_diff"))
    extra = edit(copy_run(tmp_path, "native", "extra"), lambda r: r["spec"].update(regime="sparse"))  # one side only
    unlike = edit(copy_run(tmp_path, "native", "unlike"), lambda r: r.update(held_out=[1]))
    listed = tmp_path / "listed"
    listed.mkdir()
    (listed / "run.json").write_text("[]")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run.json").write_text("{")
    cases = [
        ([a], "pool needs two or more results folders"),
        ([a, tmp_path / "none"], f"{tmp_path / 'none' / 'run.json'}: not found (pool results folders of make "
                                 "reproduce-table1)"),
        ([a, broken], f"{broken / 'run.json'}: not readable JSON (JSONDecodeError)"),
        ([a, old], f"{old / 'run.json'}: no learning_curves.auc_diff with a diff and an se (a run.json of another "
                   "version?)"),
        ([a, same], f"{same} and {a} start from one warm start (sha256 e12a1030…), so they are not independent: "
                    "pool one of them"),
        ([a, other], f"{other}: another design than {a} (tasks, warmup_steps differ); pool runs of one design"),
        ([a, extra], f"{extra}: another design than {a} (regime differ); pool runs of one design"),
        ([a, listed], f"{listed / 'run.json'}: no held_out.grpo_vs_base with a diff and an se (a run.json of another "
                      "version?)"),
        ([a, unlike], f"{unlike / 'run.json'}: no held_out.grpo_vs_base with a diff and an se (a run.json of another "
                      "version?)"),
    ]
    for folders, message in cases:
        assert main(["pool", *map(str, folders)]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [f"error: {message}"]
    assert main(["pool", str(a), str(b), str(reseeded)]) == 2  # b and reseeded share native's warm start
    assert main(["pool", str(a), str(reseeded)]) == 0  # another seed count is the same design
    capsys.readouterr()
    with pytest.raises(UsageError, match="no spec object"):
        read_run(edit(copy_run(tmp_path, "native", "nospec"), lambda r: r.pop("spec")))
    for seeds in ([], None, 5):
        with pytest.raises(UsageError, match="no list of seeds in its spec"):
            read_run(edit(copy_run(tmp_path, "native", f"seeds_{seeds}"), lambda r, s=seeds: r["spec"].update(seeds=s)))
