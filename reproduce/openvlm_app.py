"""How the OpenVLM leaderboard app reads its data file, written from its rules so that a record is
checked before it is sent.

The app is VLMEvalKit's `leaderboard` branch (`app.py`, `gen_table.py`, `meta_data.py`; head
1e1b41d6, 2025-01-20), the code behind the leaderboard's Hugging Face Space. What it does with
the file, and what therefore breaks it:

- `time` is printed by cutting the last six digits off as the clock (HHMMSS) and the rest as the
  date: 12 digits (YYMMDD...) and 14 (YYYYMMDD...) both read.
- Every model's `META` gives `Method` as a (name, link) pair, `Parameters` as a number followed by
  "B" or "" (parsed with float), and `Language Model`, `Vision Model`, `OpenSource`, `Verified`.
  Among closed models `Verified` tells API models ("Yes") from proprietary ones ("No"); for an
  open-source model the app does not read it.
- The main table averages MMBench v1.1 from `MMBench_TEST_EN_V11` and `MMBench_TEST_CN_V11`, and
  asserts that every model has both ("Every Model should have MMBench_V11 results"); every other
  benchmark a model has must carry `Overall` (OCRBench: `Final Score`).
- One tab per benchmark of the reference model (the app names LLaVA-v1.5-7B): its columns are the
  keys of the first model in the file that has the benchmark, and every other model with that
  benchmark is indexed by all of them (a missing sub-score is a KeyError); the tab is sorted by
  `Overall` (OCRBench: `Final Score`; COCO_VAL: `CIDEr`).
"""

from __future__ import annotations

import math

META_FIELDS = ("Method", "Param (B)", "Language Model", "Vision Model", "OpenSource", "Verified")
MAIN_FIELDS = ("MMBench_V11", "MMStar", "MME", "MMMU_VAL", "MathVista", "OCRBench", "AI2D", "HallusionBench",
               "SEEDBench_IMG", "MMVet", "LLaVABench", "CCBench", "RealWorldQA", "POPE", "ScienceQA_TEST",
               "SEEDBench2_Plus", "MMT-Bench_VAL", "BLINK")
DEFAULT_BENCH = ("MMBench_V11", "MMStar", "MMMU_VAL", "MathVista", "OCRBench", "AI2D", "HallusionBench", "MMVet")
MMBENCH_V11 = ("MMBench_TEST_EN_V11", "MMBench_TEST_CN_V11")
SORT_KEY = {"OCRBench": "Final Score", "COCO_VAL": "CIDEr"}


class AppError(ValueError):
    """The app would fail on this file; the message names the model and the key."""


def format_timestamp(stamp: str) -> str:
    """`time` as the app prints it: the last six digits are the clock, the rest the date."""
    if not isinstance(stamp, str) or not stamp.isdigit() or len(stamp) not in (12, 14):
        raise AppError(f"time {stamp!r}: 12 or 14 digits (YYMMDDHHMMSS or YYYYMMDDHHMMSS)")
    date, clock = stamp[:-6], stamp[-6:]
    return f"{date[:-4]}.{date[-4:-2]}.{date[-2:]} {clock[:2]}:{clock[2:4]}:{clock[4:]}"


def meta_row(model: str, item: dict) -> dict:
    """The META columns of one model, as the app derives them."""
    meta = item.get("META")
    if not isinstance(meta, dict):
        raise AppError(f"{model}: no META object")
    row = {}
    for field in META_FIELDS:
        if field == "Param (B)":
            params = _key(meta, "Parameters", model)
            try:
                row[field] = float(params.replace("B", "")) if params != "" else None
            except (AttributeError, ValueError):
                raise AppError(f"{model}: META Parameters {params!r} is not a number followed by B") from None
        elif field == "Method":
            method = _key(meta, "Method", model)
            if not isinstance(method, (list, tuple)) or len(method) != 2:
                raise AppError(f"{model}: META Method must be a [name, link] pair, got {method!r}")
            row[field] = tuple(method)
        else:
            row[field] = _key(meta, field, model)
    return row


def _key(mapping: dict, key: str, where: str):
    if key not in mapping:
        raise AppError(f"{where}: no {key!r} (the app reads it)")
    return mapping[key]


def _score(model: str, item: dict, dataset: str, key: str) -> float:
    block = item[dataset]
    if not isinstance(block, dict) or key not in block:
        raise AppError(f"{model}: {dataset} has no {key!r} score (the app reads it)")
    value = block[key]
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise AppError(f"{model}: {dataset} {key} = {value!r} is not a number")
    return float(value)


def mmbench_v11(model: str, item: dict) -> float:
    missing = [k for k in MMBENCH_V11 if k not in item]
    if missing:
        raise AppError(f"{model}: no {' or '.join(missing)} (the app asserts that every model has MMBench v1.1, "
                       "English and Chinese test splits)")
    return round(sum(_score(model, item, k, "Overall") for k in MMBENCH_V11) / 2, 1)


def main_table(results: dict, fields: tuple[str, ...] = MAIN_FIELDS) -> dict[str, dict]:
    """Per model: META columns, each field's score (None where the model lacks it), the average
    score and the average rank (1 + the number of models with a higher score, per field), both
    None when any field is missing."""
    table = {}
    for model, item in results.items():
        row = meta_row(model, item)
        for field in fields:
            if field == "MMBench_V11":
                row[field] = mmbench_v11(model, item)
            elif field in item:
                row[field] = _score(model, item, field, "Final Score" if field == "OCRBench" else "Overall")
            else:
                row[field] = None
        table[model] = row
    for row in table.values():
        scores = [None if row[f] is None else row[f] / {"MME": 28, "OCRBench": 10}.get(f, 1) for f in fields]
        ranks = [None if row[f] is None else 1 + sum(1 for other in table.values() if other[f] is not None
                                                     and other[f] > row[f]) for f in fields]
        row["Avg Score"] = None if None in scores or not scores else round(sum(scores) / len(scores), 1)
        row["Avg Rank"] = None if None in ranks or not ranks else round(sum(ranks) / len(ranks), 2)
    return table


def row_markdown(loaded: dict, model: str) -> str:
    """`model`'s row of the app's main table as it opens (its default columns: the META essentials,
    Avg Score, Avg Rank and DEFAULT_BENCH), as a markdown table; "-" where the app shows nothing.
    `loaded`: the file as `load` builds it."""
    row = loaded["default"][model]
    columns = ["Method", "Param (B)", "Language Model", "Vision Model", "Avg Score", "Avg Rank", *DEFAULT_BENCH]
    name, link = row["Method"]
    cells = [f"[{name}]({link})", *("-" if row[c] is None else str(row[c]) for c in columns[1:])]
    return "\n".join(["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns), "| " + " | ".join(cells) + " |"])


def dataset_table(results: dict, dataset: str) -> dict[str, dict]:
    """A benchmark's tab: the columns of the first model that has it, for every model that has it."""
    having = [m for m, item in results.items() if dataset in item]
    if not having:
        raise AppError(f"no model has {dataset}")
    first = results[having[0]][dataset]
    if not isinstance(first, dict):
        raise AppError(f"{having[0]}: {dataset} is not an object of scores")
    columns = list(first)
    sort_key = SORT_KEY.get(dataset, "Overall")
    table = {}
    for model in having:
        row = meta_row(model, results[model])
        for column in columns:
            if not isinstance(results[model][dataset], dict) or column not in results[model][dataset]:
                raise AppError(f"{model}: {dataset} has no {column!r}, which the tab takes from {having[0]} "
                               f"(the first model with {dataset}); every model needs all of its columns")
            row[column] = results[model][dataset][column]
        if sort_key not in row:
            raise AppError(f"{dataset}: the tab sorts by {sort_key!r}, which {having[0]} does not have")
        table[model] = row
    return table


def load(data: dict, tab_model: str | None = None, main_fields: tuple[str, ...] = MAIN_FIELDS,
         default_bench: tuple[str, ...] = DEFAULT_BENCH) -> dict:
    """The whole file as the app builds it: the printed time, the main table (`main_fields`, and
    `default_bench`) and one tab per benchmark of `tab_model` (the app's LLaVA-v1.5-7B; here
    default: the first model). AppError on anything the app would fail on. The reasoning
    leaderboard's app is not public: its record is read with the same META, time and tab rules,
    and no main table (main_fields=())."""
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict) or not data["results"]:
        raise AppError("the file needs 'time' and a non-empty 'results' object")
    results = data["results"]
    printed = format_timestamp(data.get("time"))
    tab_model = tab_model or next(iter(results))
    if tab_model not in results:
        raise AppError(f"{tab_model}: not in the file (the app builds its tabs from that model's benchmarks)")
    tabs = [d for d in results[tab_model] if d != "META"]
    return {"time": printed, "main": main_table(results, main_fields), "default": main_table(results, default_bench),
            "tabs": {d: dataset_table(results, d) for d in tabs}}
