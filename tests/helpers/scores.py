"""Work dirs as bench.run and bench.score leave them, for scoring, table and submission tests:
`record_predictions` writes the bench_run.json record of finished prediction files, and
`scores_dir` a model folder of r1_scores.json whose every score is of recorded predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def recorded_entry(path: Path) -> dict:
    """bench.run's record of a finished predictions file (of a TSV VLMEvalKit fetched: no md5)."""
    from bench.provenance import prediction_entry
    from bench.score import prediction_keys

    return prediction_entry(path, prediction_keys(path), None)


def record_predictions(model_dir: Path, files: dict[str, Path], status: str = "finished", **extra) -> dict:
    """bench_run.json recording `files` ({dataset: predictions file}) as bench.run does; returns it."""
    record = {"status": status, **extra, "predictions": {d: recorded_entry(p) for d, p in files.items()}}
    (model_dir / "bench_run.json").write_text(json.dumps(record))
    return record


def scores_dir(tmp_path: Path, model: str, datasets: dict[str, float], mode: str = "default",
               categories: dict[str, dict[str, float]] | None = None, record: dict | None = None) -> Path:
    """{tmp_path}/work/{model} as `write_scores` makes it; returns {tmp_path}/work."""
    write_scores(tmp_path / "work" / model, datasets, mode, categories, record)
    return tmp_path / "work"


def write_scores(d: Path, datasets: dict[str, float], mode: str = "default",
                 categories: dict[str, dict[str, float]] | None = None, record: dict | None = None) -> None:
    """Model folder `d`: a one-row predictions file per dataset, recorded (`record`: more
    bench_run.json fields; "model" is the folder's name unless given), and r1_scores.json with
    the given accuracies, verified."""
    model = d.name
    d.mkdir(parents=True, exist_ok=True)
    files = {}
    for dataset in datasets:
        files[dataset] = d / f"{model}_{dataset}.csv"
        pd.DataFrame([{"index": 0, "question": "q", "answer": "A", "prediction": "A"}]).to_csv(files[dataset], index=False)
    recorded = record_predictions(d, files, **{"model": model, **(record or {})})["predictions"]
    (d / "r1_scores.json").write_text(json.dumps({"model": model, "scale": "0-100", "datasets": {
        k: {"accuracy": v, "verifier_mode": mode, "categories": (categories or {}).get(k, {}), "verified": True,
            "predictions": recorded[k]}
        for k, v in datasets.items()}}))


def update_record(model_dir: Path, **fields) -> None:
    """Set fields of a model folder's bench_run.json, keeping its predictions record."""
    path = model_dir / "bench_run.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


# Each benchmark's full category columns as VLMEvalKit's TSVs hold them (raw names: MMBench's L2
# abilities unabbreviated, MathVista's tasks and skills in full), typed here from the benchmarks'
# publications, not from reproduce.openvlm_keys, so that a user's path is what the tests take:
# prediction files -> bench.score -> submit.
MMSTAR_AXES = {
    "coarse perception": ["image scene and topic", "image style & quality", "image emotion"],
    "fine-grained perception": ["object counting", "recognition", "localization"],
    "instance reasoning": ["single-instance reasoning", "cross-instance attribute reasoning",
                           "cross-instance relation reasoning"],
    "logical reasoning": ["code & sequence reasoning", "diagram reasoning", "common reasoning"],
    "science & technology": ["biology & chemistry & physics", "electronics & energy & mechanical eng.",
                             "geography & earth science & agriculture"],
    "math": ["geometry", "numeric commonsense and calculation", "statistical reasoning"],
}
MMMU_SUBJECTS = {
    "Art & Design": ["Art", "Art_Theory", "Design", "Music"],
    "Business": ["Accounting", "Economics", "Finance", "Manage", "Marketing"],
    "Science": ["Biology", "Chemistry", "Geography", "Math", "Physics"],
    "Health & Medicine": ["Basic_Medical_Science", "Clinical_Medicine", "Diagnostics_and_Laboratory_Medicine",
                          "Pharmacy", "Public_Health"],
    "Humanities & Social Science": ["History", "Literature", "Sociology", "Psychology"],
    "Tech & Engineering": ["Agriculture", "Architecture_and_Engineering", "Computer_Science", "Electronics",
                           "Energy_and_Power", "Materials", "Mechanical_Engineering"],
}
MATHVISTA_TASKS = ["figure question answering", "geometry problem solving", "math word problem",
                   "textbook question answering", "visual question answering"]
MATHVISTA_SKILLS = ["algebraic reasoning", "arithmetic reasoning", "geometry reasoning", "logical reasoning",
                    "numeric commonsense", "scientific reasoning", "statistical reasoning"]
AI2D_TOPICS = ["atomStructure", "eclipses", "faultsEarthquakes", "foodChainsWebs", "lifeCycles", "moonPhaseEquinox",
               "partsOfA", "partsOfTheEarth", "photosynthesisRespiration", "rockCycle", "rockStrata", "solarSystem",
               "typesOf", "volcano", "waterCNPCycle"]
MMBENCH_L2 = {
    "attribute_reasoning": ["function_reasoning", "identity_reasoning", "physical_property_reasoning"],
    "coarse_perception": ["image_emotion", "image_quality", "image_scene", "image_style", "image_topic"],
    "finegrained_perception (cross-instance)": ["action_recognition", "attribute_comparison", "spatial_relationship"],
    "finegrained_perception (instance-level)": ["attribute_recognition", "celebrity_recognition", "object_localization",
                                                "ocr"],
    "logic_reasoning": ["future_prediction", "structuralized_imagetext_understanding"],
    "relation_reasoning": ["nature_relation", "physical_relation", "social_relation"],
}


def _mcq(k: int, right: bool) -> dict:
    return {"question": "q", "A": "1", "B": "2", "answer": "A",
            "prediction": f"<think>t</think>\\boxed{{{'A' if right else 'B'}}}"}


OCRBENCH_TASKS = ["Regular Text Recognition", "Irregular Text Recognition", "Artistic Text Recognition",
                  "Handwriting Recognition", "Digit String Recognition", "Non-Semantic Text Recognition",
                  "Scene Text-centric VQA", "Doc-oriented VQA", "Key Information Extraction",
                  "Handwritten Mathematical Expression Recognition"]
MMVET_CATEGORIES = ["rec", "ocr,know", "gen,rec", "spat,ocr", "math,ocr", "know,rec,gen"]
JUDGE = "judge-7b"
"""The judge model the work dirs' bench.run record names (its judged files carry the name)."""


def vlmeval_scored_rows() -> dict[str, list[dict]]:
    """Prediction rows of OCRBench, HallusionBench and MMVet in VLMEvalKit's layouts, every task or
    capability present, every third item wrong."""
    ocr = [{"category": task, "answer": repr(["x^2"] if "Expression" in task else ["cat", "Cat"]),
            "prediction": ("x ^ 2" if "Expression" in task else "It says CAT.") if k % 3 != 2 else "dog"}
           for k, task in enumerate(OCRBENCH_TASKS)]
    hallu = [{"index": f"{l2}_chart_{s}_{f}_{q}_0", "l2-category": l2, "category": "chart", "question": "q",
              "answer": answer, "prediction": f"<think>t</think> {'No' if k % 3 == 2 else answer}, it is."}
             for k, (l2, s, f, q, answer) in enumerate([("VD", 0, 0, 0, "Yes"), ("VD", 0, 1, 0, "No"),
                                                         ("VD", 1, 0, 0, "Yes"), ("VS", 0, 0, 0, "Yes"),
                                                         ("VS", 0, 0, 1, "No"), ("VS", 0, 1, 1, "Yes")])]
    vet = [{"category": c, "question": "q", "answer": "a", "prediction": f"answer {k}"}
           for k, c in enumerate(MMVET_CATEGORIES)]
    return {"OCRBench": [{"index": k, **r} for k, r in enumerate(ocr)], "HallusionBench": hallu,
            "MMVet": [{"index": k, **r} for k, r in enumerate(vet)]}


def full_benchmark_rows(limit: int | None = None) -> dict[str, list[dict]]:
    """Prediction rows of the OpenVLM record's four benchmarks bench.score scores, covering every
    category (the first `limit` rows of each: a --limit run), every third answer wrong."""
    rows = {
        "MMStar": [{"category": c, "l2-category": a} for c, axes in MMSTAR_AXES.items() for a in axes],
        "MMMU_DEV_VAL": [{"l2-category": d, "category": s, "split": "validation"}
                         for d, subjects in MMMU_SUBJECTS.items() for s in subjects],
        "MathVista_MINI": [{"task": MATHVISTA_TASKS[i % 5], "skills": repr([skill])}
                           for i, skill in enumerate(MATHVISTA_SKILLS)],
        "AI2D_TEST": [{"category": t} for t in AI2D_TOPICS],
    }
    return {d: [{"index": k, **_mcq(k, k % 3 != 2), **r} for k, r in enumerate(rs[:limit])] for d, rs in rows.items()}


def scored_work_dir(work: Path, folder: str, limit: int | None = None, **record) -> Path:
    """{work}/{folder} as a user's run leaves it: prediction files with every category
    (`full_benchmark_rows`, `vlmeval_scored_rows`), MMVet's judged file, recorded by bench.run's record (`record`: more of its fields; "model" is the folder's name unless given), scored by bench.score's own command.
    Returns `work`."""
    from bench.score import main as score

    d = work / folder
    d.mkdir(parents=True, exist_ok=True)
    files = {}
    for dataset, rows in {**full_benchmark_rows(limit), **vlmeval_scored_rows()}.items():
        files[dataset] = d / f"{folder}_{dataset}.csv"
        pd.DataFrame(rows).to_csv(files[dataset], index=False)
    vet = pd.DataFrame(vlmeval_scored_rows()["MMVet"])  # VLMEvalKit's judged file: the judge's 0-1 score per item
    vet.assign(score=[1.0, 0.5, 0.0, 1.0, 0.8, 0.2]).to_excel(d / f"{folder}_MMVet_{JUDGE}.xlsx", index=False)
    hallu = pd.DataFrame(vlmeval_scored_rows()["HallusionBench"])  # VLMEvalKit's yes/no extractions, the judge's
    hallu.assign(extracted=[("No" if k % 3 == 2 else a) for k, a in enumerate(hallu["answer"])]).to_excel(
        d / f"{folder}_HallusionBench_auxmatch.xlsx", index=False)
    record_predictions(d, files, **{"model": folder, "judge": JUDGE, **record})
    assert score(["--work-dir", str(work)]) == 0
    return work


def mmbench_server_tables(folder: Path, scale: float = 1.0, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """The MMBench server's per-category result of each v1.1 test split, as a one-row table in the
    layout of VLMEvalKit's report_acc (split, Overall, L2 abilities abbreviated, dimensions), on
    0-1 (`scale` 1) or 0-100 (`scale` 100); `drop`: columns left out. Returns --mmbench-scores."""
    abbreviations = {"attribute_reasoning": "AR", "coarse_perception": "CP",
                     "finegrained_perception (cross-instance)": "FP-C",
                     "finegrained_perception (instance-level)": "FP-S", "logic_reasoning": "LR",
                     "relation_reasoning": "RR"}
    given = {}
    for split, overall in (("MMBench_TEST_EN_V11", 0.821), ("MMBench_TEST_CN_V11", 0.804)):
        row = {"split": "test", "Overall": overall}
        row |= {abbreviations[a]: 0.75 for a in sorted(MMBENCH_L2)}
        row |= {leaf: 0.5 for leaf in sorted(x for leaves in MMBENCH_L2.values() for x in leaves)}
        row = {k: (v * scale if k != "split" else v) for k, v in row.items() if k not in drop}
        path = folder / f"{split}_acc.xlsx"
        folder.mkdir(parents=True, exist_ok=True)
        pd.DataFrame([row]).to_excel(path, index=False)
        given[split] = str(path)
    return given
