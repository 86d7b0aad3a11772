"""Evaluation: the R1 prompt adapter, the torchvision shim, synthetic TSVs, VLMEvalKit run for real
on CPU with the tiny model, judge-free scoring, Table 1 and the leaderboard submission."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.adapter import add_r1_prompt, model_name_for
from bench.data import benchmark_frame, write
from bench.prompts import R1_PROMPT
from bench.score import ResultsError, full_response, normalise, score_file
from reproduce.submit import SubmissionError, build_record, check_scores, submit
from reproduce.table1 import TableError, build_dataset_table, build_paper_table1
from tests.helpers.scores import mmbench_server_tables, scored_work_dir, scores_dir
from train.tiny import build_tiny

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- the prompt adapter
def test_add_r1_prompt_placements():
    msg = [{"type": "image", "value": "a.png"}, {"type": "text", "value": "How many?"}]
    for placement in ("every_text", "last_text"):  # one text item: the same either way
        out = add_r1_prompt(msg, placement)
        assert out[1]["value"] == "How many? " + R1_PROMPT and msg[1]["value"] == "How many?"  # input untouched
    interleaved = [{"type": "text", "value": "Look:"}, {"type": "image", "value": "a.png"},
                   {"type": "text", "value": "How many?"}]
    once = add_r1_prompt(interleaved, "last_text")
    assert [m["value"] for m in once if m["type"] == "text"] == ["Look:", "How many? " + R1_PROMPT]
    released = add_r1_prompt(interleaved)  # the default: the released patch's placement
    assert [m["value"] for m in released if m["type"] == "text"] == ["Look: " + R1_PROMPT, "How many? " + R1_PROMPT]
    with pytest.raises(ValueError, match="valid names: every_text, last_text"):
        add_r1_prompt(msg, "first_text")


def test_r1_qwen_subclass_prompts_every_backend():
    from bench.adapter import _classes

    _, R1Qwen2VLChat, _ = _classes()
    seen = []
    model = object.__new__(R1Qwen2VLChat)  # no weights: only the dispatch is under test
    model.use_lmdeploy = False
    for use_vllm in (False, True):
        model.use_vllm = use_vllm
        model.generate_inner_vllm = lambda message, dataset=None: seen.append(("vllm", message)) or "v"
        model.generate_inner_transformers = lambda message, dataset=None: seen.append(("hf", message)) or "t"
        out = model.generate_inner([{"type": "text", "value": "Q?"}], dataset="MathVista_MINI")
        assert out == {"prediction": "v" if use_vllm else "t", "extra_records": {"full_response": "v" if use_vllm else "t"}}
    assert [backend for backend, _ in seen] == ["hf", "vllm"]
    assert all(message[-1]["value"] == "Q? " + R1_PROMPT for _, message in seen)


def test_torchvision_placeholder_is_narrow():
    code = (
        "from bench.vlmeval_compat import install_placeholder, import_vlmeval\n"
        "assert install_placeholder()\n"
        "import_vlmeval()\n"
        "import torchvision.transforms as T\n"
        "try:\n    T.Resize(4)\nexcept RuntimeError as e:\n    print('raised:', e)\n"
        "from transformers.utils import is_torchvision_available\n"
        "print('transformers sees torchvision:', is_torchvision_available())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "raised: torchvision is not installed" in out.stdout and "torchvision.transforms.Resize" in out.stdout
    assert "transformers sees torchvision: False" in out.stdout


# ---------------------------------------------------------------- synthetic benchmarks
def test_benchmark_tsvs_are_deterministic_and_well_formed(tmp_path):
    a = write(tmp_path / "a", n=6, seed=3, side=56, n_train=20)
    b = write(tmp_path / "b", n=6, seed=3, side=56, n_train=20)
    for pa, pb in zip(a, b, strict=True):
        assert pa.read_bytes() == pb.read_bytes(), pa.name
    mcq = pd.read_csv(tmp_path / "a" / "SynthCompare.tsv", sep="\t")
    assert list(mcq.columns) == ["index", "image", "question", "answer", "category", "A", "B", "C", "D"]
    assert set(mcq["answer"]) <= set("ABCD")
    vqa = pd.read_csv(tmp_path / "a" / "SynthCount.tsv", sep="\t")
    from PIL import Image

    Image.open(io.BytesIO(base64.b64decode(vqa["image"][0]))).verify()
    bench_hashes = {hashlib.sha256(base64.b64decode(x)).hexdigest()
                    for t in ("SynthCount", "SynthArith", "SynthCompare", "SynthChart")
                    for x in pd.read_csv(tmp_path / "a" / f"{t}.tsv", sep="\t")["image"]}
    train = pd.read_parquet(tmp_path / "a" / "train.parquet")
    assert len(train) == 20 and all(p.startswith("<image>") for p in train["problem"])
    assert not {hashlib.sha256(bytes(im[0])).hexdigest() for im in train["images"]} & bench_hashes
    assert not benchmark_frame("SynthCount", 6, 3, 56).equals(benchmark_frame("SynthCount", 6, 4, 56))


# ---------------------------------------------------------------- VLMEvalKit for real, on CPU
@pytest.fixture(scope="module")
def vlm_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    write(root / "lmu", n=5, seed=0, side=56)
    models = [build_tiny(root / "tiny_a", seed=0), build_tiny(root / "tiny_b", seed=1)]
    work = root / "work"
    cmd = [sys.executable, "-m", "bench.run", "--model", *map(str, models), "--data", "SynthCount", "SynthCompare",
           "--work-dir", str(work), "--lmudata", str(root / "lmu"), "--max-new-tokens", "12"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    return root, work


def test_vlmeval_run_writes_full_responses(vlm_runs):
    root, work = vlm_runs
    for model in ("tiny_a", "tiny_b"):
        for dataset in ("SynthCount", "SynthCompare"):
            pred = pd.read_excel(work / model / f"{model}_{dataset}.xlsx")
            assert len(pred) == 5 and {"prediction", "answer", "extra_records"} <= set(pred.columns)
            responses = [full_response(row) for _, row in pred.iterrows()]
            assert all(isinstance(r, str) and r for r in responses)
        meta = json.loads((work / model / "bench_run.json").read_text())
        assert meta["split_think"] == "1" and meta["versions"]["ms-vlmeval"] == "0.0.20"
    assert model_name_for(str(root / "tiny_a")) == "tiny_a"


def test_rerun_with_reuse_keeps_full_responses(vlm_runs, tmp_path):
    """VLMEvalKit's --reuse (SCALE=paper always passes it) rewrites finished prediction files from
    their prediction column alone; the full responses, and the format score, must survive."""
    root, work = vlm_runs
    copy = tmp_path / "work"
    shutil.copytree(work / "tiny_a", copy / "tiny_a", symlinks=True)
    path = copy / "tiny_a" / "tiny_a_SynthCount.xlsx"
    before = pd.read_excel(path)
    cmd = [sys.executable, "-m", "bench.run", "--model", str(root / "tiny_a"), "--data", "SynthCount", "--work-dir",
           str(copy), "--lmudata", str(root / "lmu"), "--max-new-tokens", "12", "--reuse"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    after = pd.read_excel(path)
    assert after["extra_records"].notna().all()
    assert [full_response(r) for _, r in after.iterrows()] == [full_response(r) for _, r in before.iterrows()]
    assert score_file(path)["format"] == score_file(work / "tiny_a" / "tiny_a_SynthCount.xlsx")["format"]


def test_score_table_and_bad_inputs(vlm_runs, tmp_path):
    _, work = vlm_runs
    out = subprocess.run([sys.executable, "-m", "bench.score", "--work-dir", str(work)], capture_output=True,
                         text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr
    scores = pd.read_csv(work / "scores.csv")
    assert len(scores) == 4 and scores["accuracy"].between(0, 100).all() and (scores["n"] == 5).all()
    per_model = json.loads((work / "tiny_a" / "r1_scores.json").read_text())
    assert set(per_model["datasets"]) == {"SynthCount", "SynthCompare"} and per_model["scale"] == "0-100"
    assert (work / "tiny_a" / "tiny_a_SynthCount_r1_score.csv").exists()

    paths = build_dataset_table([work], tmp_path / "t1", ["SynthCount", "SynthCompare"])
    assert [p.suffix for p in paths] == [".md", ".csv", ".tex"]
    md = paths[0].read_text()
    assert "| tiny_a |" in md and "| tiny_b |" in md and "Average" in md
    assert "\\begin{tabular}" in paths[2].read_text()
    with pytest.raises(TableError, match="tiny_a: no score for SynthChart"):
        build_dataset_table([work], tmp_path / "t2", ["SynthCount", "SynthChart"])
    with pytest.raises(TableError, match="no score for MathVista"):
        build_paper_table1([work], tmp_path / "t3")


def test_broken_results_file_is_named(tmp_path):
    model = tmp_path / "work" / "m"
    model.mkdir(parents=True)
    (model / "m_Bad.xlsx").write_bytes(b"not a spreadsheet")
    pd.DataFrame({"question": ["q"], "prediction": ["x"]}).to_csv(model / "m_NoAnswer.csv", index=False)
    pd.DataFrame({"answer": ["4"], "prediction": ["<think>t</think>\\boxed{4}"]}).to_csv(model / "m_Good.csv", index=False)
    out = subprocess.run([sys.executable, "-m", "bench.score", "--work-dir", str(tmp_path / "work"),
                          "--allow-unverified"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0
    assert f"{model / 'm_Bad.xlsx'}: cannot be read" in out.stderr
    assert f"{model / 'm_NoAnswer.csv'}: missing column(s) answer" in out.stderr
    assert "2 prediction file(s) skipped" in out.stderr
    assert json.loads((model / "r1_scores.json").read_text())["datasets"]["Good"]["accuracy"] == 100.0
    with pytest.raises(ResultsError, match="missing column"):
        score_file(model / "m_NoAnswer.csv")


def test_option_text_counts_as_its_letter(tmp_path):
    f = tmp_path / "m_MCQ.csv"
    pd.DataFrame({"answer": ["B", "B"], "A": ["red", "red"], "B": ["blue", "blue"],
                  "prediction": ["<think>t</think>\\boxed{Blue}", "<think>t</think>\\boxed{red}"]}).to_csv(f, index=False)
    assert score_file(f)["accuracy"] == 50.0


def test_normalise_scales():
    assert normalise(0.754) == pytest.approx(75.4) and normalise(75.4) == 75.4


# ---------------------------------------------------------------- paper table and submission
PAPER_SIX = {"MathVista_MINI": 74.0, "MMStar": 66.0, "MMMU_DEV_VAL": 55.0, "MathVerse_MINI": 50.0,
             "MathVision": 28.0, "AI2D_TEST": 83.0}


def test_paper_table1_compares_with_recovered_cells_only(tmp_path):
    work = scores_dir(tmp_path, "R1-ShareVL-7B", PAPER_SIX)
    scores_dir(tmp_path, "Qwen2.5-VL-7B-Instruct-R1", {k: v - 5 for k, v in PAPER_SIX.items()})
    md, csv_path, _ = build_paper_table1([work], tmp_path / "table1")
    text = md.read_text()
    assert "74.0 [paper 75.4 (Δ -1.4)]" in text and "50.0 [paper 52.8 (Δ -2.8)]" in text
    assert "66.0 [paper not recovered]" in text  # MMStar was not recovered: never filled in
    rows = pd.read_csv(csv_path)
    mmstar = rows[(rows.model == "R1-ShareVL-7B") & (rows.column == "MMStar")].iloc[0]
    assert pd.isna(mmstar.paper) and mmstar.paper_source == "not recovered"
    base = rows[(rows.model == "Qwen2.5-VL-7B-Instruct-R1") & (rows.column == "MathVista")].iloc[0]
    assert pd.isna(base.paper)  # the base row's cells are all unknown
    avg = rows[(rows.model == "R1-ShareVL-7B") & (rows.column == "Average")].iloc[0]
    assert avg.measured_mean == pytest.approx(sum(PAPER_SIX.values()) / 6)


def test_paper_table1_refuses_mixed_protocols(tmp_path):
    work = scores_dir(tmp_path, "A", PAPER_SIX, mode="default")
    scores_dir(tmp_path, "B", PAPER_SIX, mode="paper")
    with pytest.raises(TableError, match="different protocols"):
        build_paper_table1([work], tmp_path / "t")
    assert build_paper_table1([work], tmp_path / "t", allow_partial=True)


def full_scored(accuracy: float = 60.0) -> dict[str, dict]:
    """bench.score's metrics of the record's four benchmarks, every category present."""
    from reproduce.openvlm_keys import MATHVISTA, SUBSCORES
    from reproduce.submit import OPENVLM

    raw = {"MathVista": list(MATHVISTA.values())}
    return {d: {"accuracy": accuracy, "categories": dict.fromkeys(raw.get(k, SUBSCORES[k][1:]), 50.0)}
            for d, k in OPENVLM.items()}


def full_own() -> dict[str, dict]:
    """Blocks of the three benchmarks VLMEvalKit scores with its own metrics."""
    from reproduce.openvlm_keys import reference_model

    return {k: v for k, v in reference_model().items() if k in ("OCRBench", "HallusionBench", "MMVet")}


def test_submission_validates_and_writes_entry(tmp_path):
    work = scored_work_dir(tmp_path / "work", "R1-ShareVL-7B")
    paths = submit(work, "R1-ShareVL-7B", tmp_path / "sub.json", mmbench=mmbench_server_tables(tmp_path / "server"))
    assert [p.name for p in paths] == ["sub.openvlm.json", "sub.supported_vlm.py", "sub.pull_request.md"]
    openvlm = json.loads(paths[0].read_text())["results"]["R1-ShareVL-7B"]
    assert set(openvlm) == {"META", "MMStar", "MMMU_VAL", "MathVista", "AI2D", "MMBench_TEST_EN_V11",
                            "MMBench_TEST_CN_V11", "OCRBench", "HallusionBench", "MMVet"}
    # 18 MMStar rows, every third wrong: 12 right; each axis has one row, each category three
    assert openvlm["MMStar"]["Overall"] == 66.7 and openvlm["MMStar"]["math"] == 66.7
    assert openvlm["MMStar"]["image emotion"] == 0.0 and openvlm["MMStar"]["recognition"] == 100.0
    assert openvlm["MMBench_TEST_EN_V11"]["Overall"] == 82.1 and openvlm["MMBench_TEST_CN_V11"]["Overall"] == 80.4
    assert openvlm["META"] == {"Method": ["R1-ShareVL-7B", "https://huggingface.co/HuanjinYao/R1-ShareVL-7B"],
                               "Parameters": "8.3B", "Language Model": "Qwen2.5-7B", "Vision Model": "QwenViT",
                               "OpenSource": "Yes", "Verified": "Yes"}
    entry = paths[1].read_text()
    assert '"R1-ShareVL-7B": partial(' in entry and 'model_path="HuanjinYao/R1-ShareVL-7B"' in entry
    compile(entry.split("dict:\n")[1].replace("),\n", ")\n").replace('"R1-ShareVL-7B": ', "x = "), "entry", "exec")


def test_submission_errors(tmp_path):
    meta = {"Method": ["m", "https://x"], "Parameters": "8.3B", "Language Model": "l", "Vision Model": "v",
            "OpenSource": "Yes", "Verified": "No"}
    server = mmbench_server_tables(tmp_path)
    with pytest.raises(SubmissionError, match="missing benchmark.*MMMU_DEV_VAL, MathVista_MINI, AI2D_TEST, MMVet"):
        build_record({"MMStar": full_scored()["MMStar"]}, "m", meta, server,
                     {k: v for k, v in full_own().items() if k != "MMVet"})
    with pytest.raises(SubmissionError, match="non-numeric"):
        check_scores({"MMStar": "sixty"})
    with pytest.raises(SubmissionError, match="mixed scales"):
        check_scores({"MMStar": 0.6, "AI2D_TEST": 80.0})
    with pytest.raises(SubmissionError, match="0-1 scale"):
        check_scores({"MMStar": 0.6, "AI2D_TEST": 0.8})
    for field, value in (("OpenSource", "maybe"), ("Parameters", 8.3), ("Verified", True)):
        with pytest.raises(SubmissionError, match=field):
            build_record(full_scored(), "m", {**meta, field: value}, server, full_own())
    with pytest.raises(SubmissionError, match="Verified"):
        build_record(full_scored(), "m", {k: v for k, v in meta.items() if k != "Verified"}, server, full_own())
    with pytest.raises(SubmissionError, match="--mmbench-scores: MMBench_DEV_EN"):
        build_record(full_scored(), "m", meta, {**server, "MMBench_DEV_EN": 80.0}, full_own())
    with pytest.raises(SubmissionError, match="--mmbench-scores MMBench_TEST_CN_V11: 27 of its 27 sub-scores missing"):
        build_record(full_scored(), "m", meta, {**server, "MMBench_TEST_CN_V11": {}}, full_own())


def test_the_openvlm_record_needs_mmbench_v11_and_nothing_is_written_without_it(tmp_path):
    """The app asserts MMBench v1.1 for every model: without the server's scores the record is
    refused, naming both splits, and no file is written."""
    work = scored_work_dir(tmp_path / "work", "R1-ShareVL-7B")
    server = mmbench_server_tables(tmp_path / "server")
    with pytest.raises(SubmissionError, match="MMBench_TEST_EN_V11, MMBench_TEST_CN_V11 are missing.*--mmbench-scores"):
        submit(work, "R1-ShareVL-7B", tmp_path / "sub.json")
    with pytest.raises(SubmissionError, match="MMBench_TEST_CN_V11 is missing"):
        submit(work, "R1-ShareVL-7B", tmp_path / "sub.json", mmbench={"MMBench_TEST_EN_V11": server["MMBench_TEST_EN_V11"]})
    assert not list(tmp_path.glob("sub.*"))


def test_paper_scale_preflight_lists_everything_missing(tmp_path, monkeypatch):
    from reproduce.paper_scale import preflight

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LMUData", str(tmp_path / "lmu"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("JUDGE_BASE_URL", raising=False)
    problems = preflight([str(tmp_path / "nope")], judge="gpt-4o-mini", cuda=False)
    text = "\n".join(problems)
    assert "no CUDA GPU" in text
    assert "HuanjinYao/R1-ShareVL-7B" in text and "Qwen/Qwen2.5-VL-7B-Instruct" in text
    assert "CKPT=" in text and "MathVista_MINI" in text and "AI2D_TEST" in text and "judge gpt-4o-mini" in text
    assert "MMBench_TEST_CN_V11" in text and "LogicVista" in text and "OCRBench" in text  # BENCHMARKS=all
    assert "includes MMVet" not in text  # a judge was given
    reasoning = "\n".join(preflight([], judge=None, cuda=False, benchmarks="reasoning"))
    assert "WeMath" in reasoning and "MMStar" not in reasoning and "MMBench" not in reasoning
    assert "includes MMVet" not in reasoning
    openvlm = "\n".join(preflight([], judge=None, cuda=False, benchmarks="openvlm"))
    assert "BENCHMARKS=openvlm includes MMVet, which VLMEvalKit scores with a judge model only: pass JUDGE=" in openvlm
    assert "HallusionBench" in openvlm and "LogicVista" not in openvlm
    out = subprocess.run([sys.executable, "-m", "reproduce", "run", "--scale", "paper", "--benchmarks", "nope"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2 and "BENCHMARKS='nope': choose from table1, openvlm, reasoning, all" in out.stderr
    out = subprocess.run([sys.executable, "-m", "reproduce", "run", "--scale", "huge"], capture_output=True,
                         text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2 and "valid: mini, paper" in out.stderr


def test_importing_vlmeval_keeps_autograd_on():
    code = ("import torch\nfrom bench.vlmeval_compat import import_vlmeval\nimport_vlmeval()\n"
            "import vlmeval.vlm\nprint(torch.is_grad_enabled())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "True"


def test_standard_errors_of_table_cells():
    from reproduce.table1 import Row, render, standard_error

    # one run, 200 items at 50%: sqrt(0.25 / 200) = 3.54 points
    assert standard_error([50.0], 200) == pytest.approx(100 * (0.25 / 200) ** 0.5)
    # three runs: binomial error of the pooled 600 answers, plus the runs' spread / sqrt(3)
    runs = [40.0, 50.0, 60.0]
    expected = ((100**2 * 0.25 / 600) + (10.0 / 3**0.5) ** 2) ** 0.5
    assert standard_error(runs, 200) == pytest.approx(expected)
    # the average of 4 benchmarks pools 4x the items
    assert standard_error([50.0], 200, columns=4) == pytest.approx(100 * (0.25 / 800) ** 0.5)
    text = render([Row("m", {"A": [50.0], "B": [30.0]}, items=200)], ["A", "B"], "c", with_paper=False)
    se_a = standard_error([50.0], 200)
    assert f"| m | 50.0 ± {se_a:.1f} | 30.0 ± {standard_error([30.0], 200):.1f} | 40.0 ± " in text["md"]
    csv = pd.read_csv(io.StringIO(text["csv"]))
    assert csv.loc[csv["column"] == "A", "measured_se"].item() == pytest.approx(se_a)
