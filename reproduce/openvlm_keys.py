"""The sub-scores an OpenVLM leaderboard record carries for each benchmark: every category of the
full benchmark, under the name the leaderboard shows, stated as facts with their sources.

Why exact: the leaderboard app builds a benchmark's tab from the keys of the first model in its
data file that has the benchmark, and indexes every other model by all of them
(VLMEvalKit `leaderboard` branch at 1e1b41d6, gen_table.py:83-117, `res[d].append(item[dataset][d])`).
A record missing one takes the whole leaderboard down at start-up; a record with a key the others
lack, placed first, does the same to every other model.

How the sets were learnt. The data file itself (OpenVLM.json, meta_data.py:2) could not be read
here. Its records are VLMEvalKit result tables, so each set is what VLMEvalKit writes for the full
benchmark: for multiple choice, `report_acc` (ms-vlmeval 0.0.20,
vlmeval/dataset/utils/multiple_choice.py:77-100) writes `Overall`, then every `l2-category`
(MMBench's under the short names of lines 17-24), then every `category`, each sorted; the
categories each benchmark has come from its own publication, cited per set below. Where
VLMEvalKit published the table itself (its results/*.md, removed from the repository in commit
1d4cd2be, 2024-02-27), that table decides: MMMU shows its disciplines, not its subjects. Names the
app shows differently are renamed (`APP_NAMES`: MathVista's, from the app's own tab description,
meta_data.py:95). OCRBench, HallusionBench and MMVet carry VLMEvalKit's own metrics
(`reproduce.openvlm_metrics`).
"""

from __future__ import annotations

MMBENCH_ABILITIES = ("AR", "CP", "FP-C", "FP-S", "LR", "RR")
"""MMBench's six L2 abilities under VLMEvalKit's short names (multiple_choice.py:17-24)."""
MMBENCH_DIMENSIONS = (
    "action_recognition", "attribute_comparison", "attribute_recognition", "celebrity_recognition",
    "function_reasoning", "future_prediction", "identity_reasoning", "image_emotion", "image_quality", "image_scene",
    "image_style", "image_topic", "nature_relation", "object_localization", "ocr", "physical_property_reasoning",
    "physical_relation", "social_relation", "spatial_relationship", "structuralized_imagetext_understanding",
)
"""MMBench's 20 ability dimensions (Liu et al., MMBench, arXiv:2307.06281), as its TSVs'
`category` values; the same 20 are analysed from VLMEvalKit's published results in Zhang et al.,
Redundancy Principles for MLLMs Benchmarks, arXiv:2501.13953 (its MMBench dimension-redundancy figures)."""

MMSTAR_CATEGORIES = ("coarse perception", "fine-grained perception", "instance reasoning", "logical reasoning",
                     "math", "science & technology")
MMSTAR_L2 = (
    "biology & chemistry & physics", "code & sequence reasoning", "common reasoning", "cross-instance attribute reasoning",
    "cross-instance relation reasoning", "diagram reasoning", "electronics & energy & mechanical eng.",
    "geography & earth science & agriculture", "geometry", "image emotion", "image scene and topic",
    "image style & quality", "localization", "numeric commonsense and calculation", "object counting", "recognition",
    "single-instance reasoning", "statistical reasoning",
)
"""MMStar's 6 core capabilities and 18 axes (Chen et al., MMStar, arXiv:2403.20330), its
TSV's `category` and `l2-category`."""

MMMU_DISCIPLINES = ("Art & Design", "Business", "Health & Medicine", "Humanities & Social Science", "Science",
                    "Tech & Engineering")
"""MMMU's 6 disciplines (Yue et al., MMMU, arXiv:2311.16502), its TSV's `l2-category`. The
leaderboard shows these and not the 30 subjects (`category`): VLMEvalKit's own MMMU results table,
results/MMMU.md before commit 1d4cd2be (2024-02-27), has Overall and the six disciplines only."""
MMMU_SUBJECTS = (
    "Accounting", "Agriculture", "Architecture_and_Engineering", "Art", "Art_Theory", "Basic_Medical_Science", "Biology",
    "Chemistry", "Clinical_Medicine", "Computer_Science", "Design", "Diagnostics_and_Laboratory_Medicine", "Economics",
    "Electronics", "Energy_and_Power", "Finance", "Geography", "History", "Literature", "Manage", "Marketing",
    "Materials", "Math", "Mechanical_Engineering", "Music", "Pharmacy", "Physics", "Psychology", "Public_Health",
    "Sociology",
)
"""MMMU's 30 subjects as the dataset's configurations name them (MMMU/MMMU on the Hugging Face
hub), its TSV's `category`: scored, and left out of the record."""

OCRBENCH = ("Text Recognition", "Scene Text-centric VQA", "Doc-oriented VQA", "Key Information Extraction",
            "Handwritten Mathematical Expression Recognition", "Final Score", "Final Score Norm")
"""OCRBench's result as VLMEvalKit's scorer writes it (`OCRBench.evaluate`,
vlmeval/dataset/image_vqa.py:551-566): items right per task (the six text recognition tasks
summed), their total of 1000 and a tenth of it. The app sorts and averages by `Final Score`."""
HALLUSIONBENCH = ("Overall", "aAcc", "fAcc", "qAcc")
"""HallusionBench's three accuracies (VLMEvalKit's `Hallusion_rating`, vlmeval/dataset/utils/yorn.py:97-126;
its results/HallusionBench.md before 1d4cd2be shows these three) and the Overall the app reads."""
MMVET = ("Overall", "rec", "ocr", "know", "gen", "spat", "math")
"""MM-Vet's six capabilities and Overall, the judge's mean score (VLMEvalKit's `MMVet_acc`,
vlmeval/dataset/utils/mmvet.py:73-110; results/MMVet.md before 1d4cd2be)."""

MATHVISTA = {
    "FQA": "figure question answering", "GPS": "geometry problem solving", "MWP": "math word problem",
    "TQA": "textbook question answering", "VQA": "visual question answering", "ALG": "algebraic reasoning",
    "ARI": "arithmetic reasoning", "GEO": "geometry reasoning", "LOG": "logical reasoning", "NUM": "numeric commonsense",
    "SCI": "scientific reasoning", "STA": "statistical reasoning",
}
"""MathVista's 5 tasks and 7 skills: the app's names (its MathVista tab description,
meta_data.py:95) for VLMEvalKit's (`task`, `skills`; Lu et al., MathVista, arXiv:2310.02255)."""

AI2D_TOPICS = (
    "atomStructure", "eclipses", "faultsEarthquakes", "foodChainsWebs", "lifeCycles", "moonPhaseEquinox", "partsOfA",
    "partsOfTheEarth", "photosynthesisRespiration", "rockCycle", "rockStrata", "solarSystem", "typesOf", "volcano",
    "waterCNPCycle",
)
"""AI2D's 15 topics in its test split (the dataset's category names, Kembhavi et al. 2016), as
analysed from VLMEvalKit's published AI2D results in arXiv:2501.13953, Fig. 9."""

SUBSCORES: dict[str, tuple[str, ...]] = {
    "MMBench_TEST_EN_V11": ("Overall", *MMBENCH_ABILITIES, *MMBENCH_DIMENSIONS),
    "MMBench_TEST_CN_V11": ("Overall", *MMBENCH_ABILITIES, *MMBENCH_DIMENSIONS),
    "MMStar": ("Overall", *MMSTAR_L2, *MMSTAR_CATEGORIES),
    "MMMU_VAL": ("Overall", *MMMU_DISCIPLINES),
    "MathVista": ("Overall", *MATHVISTA),
    "AI2D": ("Overall", *AI2D_TOPICS),
    "OCRBench": OCRBENCH,
    "HallusionBench": HALLUSIONBENCH,
    "MMVet": MMVET,
}
"""Leaderboard key -> every key its block carries, in the order VLMEvalKit's tables write them."""

APP_NAMES: dict[str, dict[str, str]] = {"MathVista": {name: short for short, name in MATHVISTA.items()}}
"""Leaderboard key -> {VLMEvalKit's category name: the name the app shows}."""
NOT_SHOWN: dict[str, frozenset[str]] = {"MMMU_VAL": frozenset(MMMU_SUBJECTS)}
"""Leaderboard key -> VLMEvalKit categories the leaderboard does not show, left out of the record."""


class SubscoreError(ValueError):
    """A block whose keys are not the leaderboard's: `missing` and `unknown` name them."""

    def __init__(self, key: str, missing: list[str], unknown: list[str]):
        self.key, self.missing, self.unknown = key, missing, unknown
        parts = []
        if missing:
            parts.append(f"{len(missing)} of its {len(SUBSCORES[key])} sub-scores missing ({', '.join(missing)})")
        if unknown:
            parts.append(f"sub-scores the leaderboard does not have ({', '.join(unknown)})")
        super().__init__(f"{key}: " + "; ".join(parts))


def leaderboard_block(key: str, scores: dict[str, float]) -> dict[str, float]:
    """`scores` ({"Overall": x, category: y, ...} under VLMEvalKit's names) as the record's block
    for `key`: the app's names, exactly the keys of `SUBSCORES[key]`, in its order (categories the
    leaderboard does not show, `NOT_SHOWN`, left out). SubscoreError when any is missing or any
    other is present."""
    renamed = {APP_NAMES.get(key, {}).get(name, name): value for name, value in scores.items()
               if name not in NOT_SHOWN.get(key, ())}
    wanted = SUBSCORES[key]
    missing = [k for k in wanted if k not in renamed]
    unknown = sorted(k for k in renamed if k not in wanted)
    if missing or unknown:
        raise SubscoreError(key, missing, unknown)
    return {k: renamed[k] for k in wanted}


REFERENCE_MODEL = "Reference-VLM"
"""The name of `reference_model`'s record in the files `submit` checks."""


def reference_model(score: float = 50.0) -> dict:
    """A record in the shape of a real leaderboard model's: META as the app reads it, every default
    benchmark with its full sub-score set, and MME and OCRBench on their own scales. `submit` places its record after
    this one, so that the app's tabs take their columns from a complete first model."""
    record = {"META": {"Method": [REFERENCE_MODEL, "https://example.org/reference-vlm"], "Parameters": "7B",
                       "Language Model": "LLM-7B", "Vision Model": "ViT", "OpenSource": "Yes", "Verified": "Yes",
                       "Org": "Example", "Time": "2025/01/01"}}
    record |= {key: dict.fromkeys(keys, score) for key, keys in SUBSCORES.items()}
    record["OCRBench"] = {"Text Recognition": 200, "Scene Text-centric VQA": 150, "Doc-oriented VQA": 150,
                          "Key Information Extraction": 150, "Handwritten Mathematical Expression Recognition": 50,
                          "Final Score": 700, "Final Score Norm": 70.0}
    record["MME"] = {"Overall": 2000.0, "Perception": 1500.0, "Cognition": 500.0}
    return record
