"""OCRBench, HallusionBench and MMVet as the OpenVLM leaderboard scores them: VLMEvalKit's own
metrics, not `bench.score`'s boxed-answer accuracy. Each is computed from the prediction file
bench.run recorded (`bench.score.checked_scores` has checked that it is that file, unchanged) and,
where VLMEvalKit asks a judge model, from VLMEvalKit's judged file beside it, whose rows must be
those predictions (same indices, same predictions), or the score is refused.

- OCRBench, no judge: VLMEvalKit's rule (`OCRBench.evaluate`, vlmeval/dataset/image_vqa.py:510-569
  in ms-vlmeval 0.0.20). An item is right when one of its answers occurs in the prediction, both
  lower-cased and stripped, newlines as spaces (handwritten mathematical expressions: case kept,
  all spaces removed); the six text recognition tasks are summed; Final Score is the total (of
  1000) and Final Score Norm a tenth of it. Written here rather than called, because VLMEvalKit's
  runs `eval` on every answer cell; here the answer list is parsed as a literal. A test checks the
  two agree.
- HallusionBench: VLMEvalKit's yes/no extraction (`YOrN_Extraction`, called) of each prediction;
  where VLMEvalKit's judge ran (`bench.run --judge`), its extractions come from the
  `{predictions}_auxmatch.xlsx` VLMEvalKit wrote, in which the judge filled the unknowns. An item
  is right when the extraction equals the answer; aAcc, fAcc and qAcc by VLMEvalKit's own
  `Hallusion_rating` (called). Overall is their mean: the definition the leaderboard's main
  table uses could not be confirmed from a public source.
- MMVet: the judge's score of each item from VLMEvalKit's `{predictions}_{judge}.xlsx`, the six
  capabilities and Overall by VLMEvalKit's own `MMVet_acc` (called). Without a judge there is no
  MMVet score.
"""

from __future__ import annotations

import ast
import tempfile
from pathlib import Path

import pandas as pd

from bench.score import ResultsError, read_predictions, read_recorded

RECOGNITION = ("Regular Text Recognition", "Irregular Text Recognition", "Artistic Text Recognition",
               "Handwriting Recognition", "Digit String Recognition", "Non-Semantic Text Recognition")
OCR_TASKS = (*RECOGNITION, "Scene Text-centric VQA", "Doc-oriented VQA", "Key Information Extraction",
             "Handwritten Mathematical Expression Recognition")
EXPRESSIONS = "Handwritten Mathematical Expression Recognition"
LEADERBOARD_KEYS = {"OCRBench": "OCRBench", "HallusionBench": "HallusionBench", "MMVet": "MMVet"}
"""VLMEvalKit dataset scored here -> its key in the leaderboard's data file."""


class MetricError(ValueError):
    """A prediction or judged file these metrics cannot be computed from; the message names it."""


def _predictions(path: Path, entry: dict | None, columns: tuple[str, ...]) -> pd.DataFrame:
    """The prediction file as text, with `columns` besides answer and prediction; with bench.run's
    `entry`, read once and checked against it (`bench.score.read_recorded`), so that what is scored
    is what was checked."""
    require = ("answer", "prediction", *columns)
    try:
        return read_recorded(path, entry, require) if entry is not None else read_predictions(path, True, require)
    except ResultsError as exc:
        raise MetricError(str(exc)) from None


def ocrbench(predictions: Path, entry: dict | None = None) -> dict[str, float]:
    """VLMEvalKit's OCRBench result of one prediction file (`entry`: bench.run's record of it)."""
    frame = _predictions(predictions, entry, ("category",))
    right = dict.fromkeys(OCR_TASKS, 0)
    for k, (_, row) in enumerate(frame.iterrows()):
        where = f"{predictions}: row {k + 2}"
        if row["category"] not in right:
            raise MetricError(f"{where}: category {row['category']!r} is not one of OCRBench's ten tasks")
        try:
            answers = ast.literal_eval(row["answer"])  # parsed, never run
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            answers = None
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise MetricError(f"{where}: answer {row['answer'][:60]!r} is not a list of strings")
        if row["category"] == EXPRESSIONS:
            norm = lambda text: text.strip().replace("\n", " ").replace(" ", "")  # noqa: E731
        else:
            norm = lambda text: text.lower().strip().replace("\n", " ")  # noqa: E731
        if any(norm(a) in norm(str(row["prediction"])) for a in answers):
            right[row["category"]] += 1
    block = {"Text Recognition": sum(right[t] for t in RECOGNITION),
             **{t: right[t] for t in OCR_TASKS if t not in RECOGNITION}}
    block["Final Score"] = sum(block.values())
    block["Final Score Norm"] = block["Final Score"] / 10
    return block


def _judged(predictions: Path, judged: Path, frame: pd.DataFrame, needed: tuple[str, ...]) -> pd.DataFrame:
    """VLMEvalKit's judged file of `predictions`, as text, checked to hold exactly its rows."""
    if not judged.is_file():
        raise MetricError(f"{judged}: not found; VLMEvalKit writes it when its judge scores {predictions.name} "
                          "(python -m bench.run ... --judge MODEL)")
    try:
        table = read_predictions(judged, text=True, require=("index", "prediction", *needed))
    except ResultsError as exc:
        raise MetricError(str(exc)) from None
    ours = dict(zip(frame["index"], frame["prediction"], strict=True))
    theirs = dict(zip(table["index"], table["prediction"], strict=True))
    if len(table) != len(frame) or ours != theirs:
        differ = sorted(set(ours) ^ set(theirs)) or [i for i in ours if ours[i] != theirs.get(i)]
        raise MetricError(f"{judged}: its rows are not the predictions of {predictions.name} (first difference: index "
                          f"{differ[0] if differ else '?'}); judge the recorded predictions again")
    return table


def _rated(table: pd.DataFrame, rate) -> pd.DataFrame:
    """VLMEvalKit's rating function `rate` (which takes a file) on `table`."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rated.xlsx"
        table.to_excel(path, index=False)
        return rate(str(path))


def hallusionbench(predictions: Path, judge: str | None, entry: dict | None = None) -> dict[str, float]:
    """aAcc, fAcc, qAcc and their mean, as VLMEvalKit rates HallusionBench."""
    from bench.vlmeval_compat import import_vlmeval

    import_vlmeval()
    from vlmeval.dataset.utils.yorn import Hallusion_rating, YOrN_Extraction

    frame = _predictions(predictions, entry, ("index", "l2-category"))
    if judge:
        extracted = list(_judged(predictions, predictions.with_name(predictions.stem + "_auxmatch.xlsx"), frame,
                                 ("extracted",))["extracted"])
    else:
        extracted = [YOrN_Extraction(p) for p in frame["prediction"]]
    if any(len(str(i).split("_")) < 6 for i in frame["index"]):
        raise MetricError(f"{predictions}: HallusionBench indices name the set, figure and question "
                          "(VLMEvalKit's layout, e.g. VD_figure_0_0_1_0)")
    table = frame.assign(extracted=extracted, score=[a == e for a, e in zip(frame["answer"], extracted, strict=True)])
    rating = _rated(table, Hallusion_rating)
    overall = rating[rating["split"] == "Overall"].iloc[0]
    block = {k: float(overall[k]) for k in ("aAcc", "fAcc", "qAcc")}
    return {"Overall": sum(block.values()) / 3, **block}


def mmvet(predictions: Path, judge: str | None, entry: dict | None = None) -> dict[str, float]:
    """The six capabilities and Overall, as VLMEvalKit rates MMVet from its judge's scores."""
    if not judge:
        raise MetricError(f"{predictions}: MMVet is scored by a judge model and bench.run ran without one; run it "
                          "with --judge (JUDGE= for make reproduce-table1)")
    from bench.vlmeval_compat import import_vlmeval

    import_vlmeval()
    from vlmeval.dataset.utils.mmvet import MMVet_acc

    frame = _predictions(predictions, entry, ("index", "category"))
    table = _judged(predictions, predictions.with_name(f"{predictions.stem}_{judge}.xlsx"), frame, ("score",))
    try:
        table["score"] = table["score"].astype(float)
        rating, _ = _rated(table, MMVet_acc)
    except (ValueError, ZeroDivisionError) as exc:
        raise MetricError(f"{predictions.with_name(f'{predictions.stem}_{judge}.xlsx')}: cannot be rated "
                          f"({type(exc).__name__}: {exc}); every item needs a numeric score and every capability an item") from None
    return {str(c): float(a) for c, a in zip(rating["Category"], rating["acc"], strict=True)}


def leaderboard_scores(dataset: str, predictions: Path, judge: str | None, entry: dict | None) -> dict[str, float]:
    """The block's scores of a dataset VLMEvalKit scores with its own metric (`LEADERBOARD_KEYS`),
    from its predictions file, checked against bench.run's `entry` as it is read."""
    if dataset == "OCRBench":
        return ocrbench(predictions, entry)
    if dataset == "HallusionBench":
        return hallusionbench(predictions, judge, entry)
    return mmvet(predictions, judge, entry)
