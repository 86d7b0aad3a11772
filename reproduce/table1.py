"""Table 1 from scored VLMEvalKit work dirs, side by side with the paper's numbers.

    python -m reproduce table1 --work-dir DIR [DIR ...] [--out results/table1] [--allow-partial]
                               [--allow-unverified]

Rows are models, columns the six benchmarks and their average; beside every measured cell the
paper's value and the difference, or "not recovered". Inputs come from `python -m bench.score`
(`{work_dir}/{model}/r1_scores.json`). Incomplete rows, or scores taken under different protocols
(verifier modes), are refused with a message unless --allow-partial. Every score is re-checked
against the predictions bench.run recorded (`bench.score.checked_scores`); a score of a file with no
record is refused unless --allow-unverified, and then its row is labelled "(unverified)". Writes
Markdown, CSV and LaTeX, atomically, with the provenance (work dirs, protocol) in the caption.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from bench.adapter import PAPER_MODELS
from bench.fileio import output_stem, write_text_atomic
from bench.score import ResultsError, checked_scores

from .paper import PaperCell, load_paper_table, paper_cell


class TableError(ValueError):
    """Inputs that would make a misleading table."""


@dataclass
class Row:
    label: str
    cells: dict[str, list[float]]  # column -> measured values (one per seed/run)
    paper: dict[str, PaperCell] = field(default_factory=dict)
    items: int | None = None
    """Items per benchmark: given, each cell shows mean ± standard error (see `standard_error`)
    instead of mean ± std over runs."""


def standard_error(values: list[float], items: int, columns: int = 1) -> float:
    """Standard error (0-100 scale) of the mean of `values`, accuracies of k runs on the same
    `items` items of each of `columns` benchmarks (their average, for columns > 1): the binomial
    error of the pooled accuracy, sqrt(p (1 - p) / (items * columns * k)), combined with the
    run-to-run error, std / sqrt(k)."""
    k, p = len(values), statistics.fmean(values) / 100
    binomial = 100 * math.sqrt(p * (1 - p) / (items * columns * k))
    runs = statistics.stdev(values) / math.sqrt(k) if k > 1 else 0.0
    return math.sqrt(binomial**2 + runs**2)


def collect_scores(work_dirs: list[Path], allow_unverified: bool = False) -> tuple[dict[str, dict[str, dict]], set[str]]:
    """{model: {dataset: metrics}} from r1_scores.json files, each re-checked against the
    predictions bench.run recorded (`bench.score.checked_scores`), and the protocols seen."""
    scores: dict[str, dict[str, dict]] = {}
    origin: dict[str, Path] = {}
    protocols = set()
    for wd in work_dirs:
        files = sorted(Path(wd).glob("*/r1_scores.json"))
        if not files:
            raise TableError(f"{wd}: no */r1_scores.json (run `python -m bench.score --work-dir {wd}` first)")
        for f in files:
            try:
                datasets, _ = checked_scores(f.parent, allow_unverified)
            except ResultsError as exc:
                raise TableError(str(exc)) from None
            model = f.parent.name
            if model in origin:
                raise TableError(f"model {model} is scored in both {origin[model]} and {f}; pass one of them")
            origin[model] = f
            for dataset, metrics in datasets.items():
                value = metrics.get("accuracy")
                if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value <= 100:
                    raise TableError(f"{f}: {dataset} accuracy {value!r} is not a number on the 0-100 scale")
                protocols.add(str(metrics.get("verifier_mode", "unknown")))
            scores[model] = datasets
    return scores, protocols


def row_label(model: str, datasets: dict[str, dict]) -> str:
    """The model's row label, marked where any of its scores is of predictions bench.run did not record."""
    return model + (" (unverified)" if any(m.get("verified") is not True for m in datasets.values()) else "")


def fmt_cell(values: list[float] | None, paper: PaperCell | None, se: float | None = None) -> tuple[str, str]:
    """(measured text, paper text) for one cell; `se` given: mean ± se."""
    if not values:
        measured = "missing"
    elif se is not None:
        measured = f"{statistics.fmean(values):.1f} ± {se:.1f}"
    elif len(values) == 1:
        measured = f"{values[0]:.1f}"
    else:
        measured = f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}"
    if paper is None:
        return measured, ""
    if paper.value is None:
        return measured, "not recovered"
    if not values:
        return measured, f"{paper.value:.1f}"
    return measured, f"{paper.value:.1f} (Δ {statistics.fmean(values) - paper.value:+.1f})"


def average(row: Row, columns: list[str]) -> list[float] | None:
    """Per-run mean over the columns, when every column has the same number of runs."""
    runs = {len(row.cells.get(c, [])) for c in columns}
    if len(runs) != 1 or 0 in runs:
        return None
    n = runs.pop()
    return [statistics.fmean(row.cells[c][i] for c in columns) for i in range(n)]


def render(rows: list[Row], columns: list[str], caption: str, with_paper: bool) -> dict[str, str]:
    header = ["Model", *columns, "Average"]
    md_rows, csv_rows, tex_rows = [], [], []
    csv_rows.append(["model", "column", "measured_mean", "measured_std", "runs", "paper", "paper_source", "diff",
                     "measured_se"])
    for row in rows:
        cells_md, cells_tex = [], []
        for col in [*columns, "Average"]:
            values = average(row, columns) if col == "Average" else row.cells.get(col)
            paper = row.paper.get(col) if with_paper else None
            se = (standard_error(values, row.items, len(columns) if col == "Average" else 1)
                  if values and row.items else None)
            measured, paper_text = fmt_cell(values, paper, se)
            cells_md.append(measured + (f" [paper {paper_text}]" if paper_text else ""))
            paper_tex = paper_text.replace("Δ", r"$\Delta$")
            cells_tex.append(measured.replace("±", r"$\pm$") + (f" ({paper_tex})" if paper_text else ""))
            mean = statistics.fmean(values) if values else None
            std = statistics.stdev(values) if values and len(values) > 1 else None
            pv = paper.value if paper else None
            csv_rows.append([row.label, col, mean, std, len(values or []), pv, paper.source if paper else "",
                             (mean - pv) if mean is not None and pv is not None else None, se])
        md_rows.append(f"| {row.label} | " + " | ".join(cells_md) + " |")
        tex_rows.append(" & ".join([row.label, *cells_tex]) + r" \\")
    md = "\n".join([f"**{caption}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header), *md_rows]) + "\n"
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf).writerows(csv_rows)
    tex = "\n".join([
        r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{l" + "c" * (len(columns) + 1) + "}",
        r"\toprule", " & ".join(header) + r" \\", r"\midrule", *tex_rows, r"\bottomrule", r"\end{tabular}",
        r"\caption{" + caption.replace("%", r"\%").replace("_", r"\_") + "}", r"\end{table}",
    ]) + "\n"
    return {"md": md, "csv": buf.getvalue(), "tex": tex}


def write_outputs(outputs: dict[str, str], out: str | Path) -> list[Path]:
    """`{out}.md`, `.csv`, ... (`out` a folder: `{out}/table1.md`, ...; `bench.fileio.output_stem`)."""
    stem = output_stem(out, "table1")
    return [write_text_atomic(stem.with_name(f"{stem.name}.{ext}"), text) for ext, text in outputs.items()]


def build_dataset_table(work_dirs: list[Path], out: Path, columns: list[str], allow_partial: bool = False,
                        caption: str | None = None, allow_unverified: bool = False) -> list[Path]:
    """A Table-1-shaped table over any datasets (no paper values), e.g. the synthetic benchmarks."""
    scores, protocols = collect_scores(work_dirs, allow_unverified)
    if len(protocols) > 1 and not allow_partial:
        raise TableError(f"scores come from different protocols ({', '.join(sorted(protocols))}); "
                         "re-score with one --mode, or pass --allow-partial")
    rows, problems = [], []
    for model, datasets in sorted(scores.items()):
        missing = [c for c in columns if c not in datasets]
        if missing:
            problems.append(f"{model}: no score for {', '.join(missing)}")
        rows.append(Row(row_label(model, datasets), {c: [datasets[c]["accuracy"]] for c in columns if c in datasets}))
    if problems and not allow_partial:
        raise TableError("incomplete inputs (pass --allow-partial to build the table anyway):\n  " + "\n  ".join(problems))
    caption = caption or (f"Accuracy 0-100 on {', '.join(columns)}, scored by bench.score (verifier mode: "
                          f"{', '.join(sorted(protocols))}) from {', '.join(str(w) for w in work_dirs)}.")
    return write_outputs(render(rows, columns, caption, with_paper=False), out)


def build_paper_table1(work_dirs: list[Path], out: Path, allow_partial: bool = False,
                       allow_unverified: bool = False) -> list[Path]:
    paper = load_paper_table()
    scores, protocols = collect_scores(work_dirs, allow_unverified)
    if len(protocols) > 1 and not allow_partial:
        raise TableError(f"scores come from different protocols ({', '.join(sorted(protocols))}); "
                         "re-score with one --mode, or pass --allow-partial")
    columns = paper["benchmarks"]
    rows, problems = [], []
    for model, datasets in sorted(scores.items()):
        cells = {b: [datasets[d]["accuracy"]] for b, d in paper["vlmeval_datasets"].items() if d in datasets}
        missing = [b for b in columns if b not in cells]
        if missing:
            problems.append(f"{model}: no score for {', '.join(missing)} "
                            f"(VLMEvalKit datasets {', '.join(paper['vlmeval_datasets'][b] for b in missing)})")
        paper_row = PAPER_MODELS[model].paper_row if model in PAPER_MODELS else model
        in_paper = paper_row in paper["rows"]  # a CKPT row has no paper value, rather than an unrecovered one
        rows.append(Row(row_label(model, datasets), cells,
                        {b: paper_cell(paper, paper_row, b) for b in [*columns, "Average"]} if in_paper else {}))
    if problems and not allow_partial:
        raise TableError("incomplete inputs (pass --allow-partial to build the table anyway):\n  " + "\n  ".join(problems))
    exact = [f"{model} " + ", ".join(f"{b} {datasets[d]['exact_match']:.1f}" for b, d in paper["vlmeval_datasets"].items()
                                    if isinstance(datasets.get(d, {}).get("exact_match"), (int, float)))
             for model, datasets in sorted(scores.items())]
    exact = [e for e in exact if any(ch.isdigit() for ch in e.split(" ", 1)[-1])]
    caption = (f"Table 1 (paper scale), accuracy 0-100, scored by bench.score (verifier mode: "
               f"{', '.join(sorted(protocols))}) from {', '.join(str(w) for w in work_dirs)}: the boxed answer "
               "against the gold, so an answer without a box scores 0. "
               + (f"VLMEvalKit's own exact matching of multiple-choice answers (judge-free, no box needed): "
                  f"{'; '.join(exact)}. " if exact else "")
               + "Paper values with their sources are in results/paper/table1.json; 'not recovered' means unknown.")
    return write_outputs(render(rows, columns, caption, with_paper=True), out)
