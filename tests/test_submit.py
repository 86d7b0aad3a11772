"""`reproduce submit`'s pieces against hand-written expectations: the pull-request text, the
`supported_VLM` entry run as Python, the score blocks and their checks, and what `submit` writes
and refuses."""

from __future__ import annotations

import json
from functools import partial
from types import SimpleNamespace

import pytest

from bench.prompts import R1_PROMPT
from reproduce.submit import (
    CONFIG_MARKER,
    SubmissionError,
    benchmark_block,
    check_scores,
    mmbench_blocks,
    pull_request_text,
    submit,
    supported_vlm_entry,
)
from tests.helpers.scores import mmbench_server_tables, scored_work_dir, update_record


def test_pull_request_text_by_hand():
    run = {"datasets": ["A", "B"], "prompt_placement": "last_text", "model": "/ckpt", "argv": ["vlmeval", "--data", "A"],
           "versions": {"vlmeval": "1", "torch": "2"}}
    text = pull_request_text("My-Model", "org/my-model", run, {"B": 50.04, "A": 60.0}, ["default", "paper"])
    assert text == "\n".join([
        "## Add My-Model (R1-ShareVL: Qwen2.5-VL with the R1 thinking prompt)",
        "",
        "Adds `Qwen2VLChatR1`, `Qwen2VLChat` with R1-ShareVL's thinking prompt after the question, and the "
        "`My-Model` entry (weights: `org/my-model`).",
        "",
        "Scores we measured (0-100, judge-free: the last \\boxed{} answer against the gold; verifier mode default, paper):",
        "",
        "| dataset | score |",
        "|---|---|",
        "| A | 60.0 |",
        "| B | 50.0 |",
        "",
        "Commands (r1-sharevl harness):",
        "",
        "```bash",
        "python -m bench.run --model /ckpt --data A B --prompt-placement last_text",
        "python -m bench.score --work-dir WORK_DIR",
        "```",
        "",
        "VLMEvalKit command line run by bench.run: `vlmeval --data A`",
        "",
        "Versions: torch 2, vlmeval 1",
    ]) + "\n"
    bare = pull_request_text("M", "p", {}, {"B": 1.0, "A": 2.0}, ["default"])
    assert "python -m bench.run --model M --data A B\n" in bare and "command line run by bench.run: ``" in bare
    assert bare.endswith("Versions: \n")


@pytest.mark.parametrize("placement, prompted", [("every_text", [True, True]), ("last_text", [False, True])])
def test_the_supported_vlm_entry_runs_and_places_the_prompt(placement, prompted):
    """The generated code, run with a stand-in Qwen2VLChat, appends the R1 prompt where the
    evaluation did; names with quotes stay one string literal."""

    class Qwen2VLChat:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

        def generate_inner(self, message, dataset=None):
            return message

    code = supported_vlm_entry('My "R1" model', "org/it's", placement)
    classes, entry = code.split(CONFIG_MARKER)
    namespace = {"Qwen2VLChat": Qwen2VLChat, "partial": partial}
    exec(classes, namespace)  # noqa: S102 - the generated code itself is under test
    namespace["vlm"] = SimpleNamespace(Qwen2VLChatR1=namespace["Qwen2VLChatR1"])  # config.py's `import vlmeval.vlm as vlm`
    config = eval("{" + entry.rstrip().rstrip(",") + "}", namespace)  # noqa: S307
    (name, factory), = config.items()
    assert name == 'My "R1" model'
    model = factory()
    assert model.kwargs == {"model_path": "org/it's", "min_pixels": 1280 * 28 * 28, "max_pixels": 16384 * 28 * 28,
                            "use_custom_prompt": False}
    message = [{"type": "text", "value": "Q1"}, {"type": "image", "value": "x.png"}, {"type": "text", "value": "Q2"}]
    out = model.generate_inner(message)
    texts = [m["value"] for m in out if m["type"] == "text"]
    assert [t.endswith(" " + R1_PROMPT) for t in texts] == prompted
    assert message[0]["value"] == "Q1"  # the caller's message is not changed
    assert ("every text item" in code) == (placement == "every_text")


def test_benchmark_blocks_round_rename_and_refuse_what_the_leaderboard_does_not_hold():
    from reproduce.openvlm_keys import MATHVISTA, SUBSCORES

    full = {name: 50.04 for name in MATHVISTA.values()}
    block = benchmark_block({"accuracy": 61.26, "categories": full}, "MathVista_MINI")
    assert list(block) == list(SUBSCORES["MathVista"]) and block["Overall"] == 61.3 and block["FQA"] == 50.0
    assert block == benchmark_block({"accuracy": 61.26, "categories": {**full, "Overall": 1.0}}, "MathVista_MINI")
    with pytest.raises(SubmissionError, match=r"MathVista_MINI -> MathVista: 1 of its 13 sub-scores missing \(STA\); "
                                              "scores of part of the benchmark .*--limit"):
        benchmark_block({"accuracy": 61.0, "categories": {k: v for k, v in full.items() if k != "statistical reasoning"}},
                        "MathVista_MINI")
    with pytest.raises(SubmissionError, match="sub-scores the leaderboard does not have \\(counting\\); MathVista_MINI "
                                              "is not the benchmark"):
        benchmark_block({"accuracy": 61.0, "categories": {**full, "counting": 1.0}}, "MathVista_MINI")
    with pytest.raises(SubmissionError, match="MMStar: 'categories' is not an object of scores"):
        benchmark_block({"accuracy": 61.0, "categories": [1]}, "MMStar")
    with pytest.raises(SubmissionError, match="non-numeric scores"):
        benchmark_block({"accuracy": 61.0, "categories": {"math": "x"}}, "MMStar")


def test_mmbench_scores_from_the_servers_result_files(tmp_path):
    """The server's per-category table is read as it comes (0-1 becomes 0-100, as bench.score does
    with VLMEvalKit's metrics); an overall score alone, or a table lacking a dimension, is refused
    with how to get the rest."""
    assert mmbench_blocks(None) == {}
    blocks = mmbench_blocks(mmbench_server_tables(tmp_path / "a"))
    assert blocks["MMBench_TEST_EN_V11"]["Overall"] == 82.1 and blocks["MMBench_TEST_CN_V11"]["FP-C"] == 75.0
    assert blocks["MMBench_TEST_EN_V11"]["ocr"] == 50.0 and len(blocks["MMBench_TEST_EN_V11"]) == 27
    assert mmbench_blocks(mmbench_server_tables(tmp_path / "b", scale=100)) == blocks
    with pytest.raises(SubmissionError, match="MMBench_TEST_EN_V11: 26 of its 27 sub-scores missing .*pass the server's "
                                              "per-category result file"):
        mmbench_blocks({"MMBench_TEST_EN_V11": 82.14})
    with pytest.raises(SubmissionError, match=r"1 of its 27 sub-scores missing \(ocr\)"):
        mmbench_blocks(mmbench_server_tables(tmp_path / "c", drop=("ocr",)))
    with pytest.raises(SubmissionError, match="--mmbench-scores: give a JSON object"):
        mmbench_blocks([82.0])
    with pytest.raises(SubmissionError, match="--mmbench-scores: MMBench_X, MMBench_Y \\(expected "):
        mmbench_blocks({"MMBench_Y": 1.0, "MMBench_X": 1.0})
    (tmp_path / "two.csv").write_text("Overall\n0.5\n0.6\n")
    (tmp_path / "mixed.csv").write_text("Overall,AR\n0.5,60\n")
    (tmp_path / "text.csv").write_text("Overall,AR\n0.5,high\n")
    for name, message in (("two.csv", "has 2 rows"), ("mixed.csv", "mixed scales"),
                          ("text.csv", "column 'AR' = 'high' is not a number"), ("none.csv", "cannot be read"),
                          ("en.txt", "as .xlsx, .csv or .json")):
        with pytest.raises(SubmissionError, match=f"--mmbench-scores MMBench_TEST_EN_V11: .*{message}"):
            mmbench_blocks({"MMBench_TEST_EN_V11": str(tmp_path / name)})


@pytest.mark.parametrize("scores, ok", [
    ({"a": 1.0, "b": 0.0}, False),  # all within 0-1: the 0-1 scale
    ({"a": 0.0, "b": 0.0}, True),  # zeros are zeros on either scale
    ({"a": 1.0, "b": 50.0}, True),  # 1.0 next to 50: a 1-point score
    ({"a": 0.5, "b": 50.0}, False),  # 0.5 next to 50: mixed scales
    ({"a": True}, False),
    ({"a": float("inf")}, False),
    ({"a": 100}, True),
])
def test_score_scale_checks(scores, ok):
    if ok:
        assert check_scores(scores) == {k: float(v) for k, v in scores.items()}
    else:
        with pytest.raises(SubmissionError):
            check_scores(scores)
    assert check_scores({"a": 0.5, "b": 50.0}, scale_check=False) == {"a": 0.5, "b": 50.0}


META = {"OpenSource": "Yes", "Parameters": "8.3B", "Language Model": "l", "Vision Model": "v"}


def test_submit_writes_the_record_the_entry_and_the_pull_request(tmp_path):
    work = scored_work_dir(tmp_path / "work", "mine", model="/ckpts/mine", prompt_placement="last_text")
    server = mmbench_server_tables(tmp_path / "server")
    with pytest.raises(SubmissionError, match="the evaluated weights are /ckpts/mine, not a hub id; pass --model-path"):
        submit(work, "mine", tmp_path / "sub.json", meta_overrides=META, mmbench=server)
    assert not list(tmp_path.glob("sub.*"))
    paths = submit(work, "mine", tmp_path / "sub.json", meta_overrides=META, model_path="org/mine", mmbench=server)
    assert [p.name for p in paths] == ["sub.openvlm.json", "sub.supported_vlm.py", "sub.pull_request.md"]
    record = json.loads(paths[0].read_text())
    meta = record["results"]["mine"]["META"]
    assert meta["Verified"] == "Yes" and meta["Method"] == ["mine", "https://huggingface.co/org/mine"]
    assert record["results"]["mine"]["AI2D"]["Overall"] == 66.7 and len(record["time"]) == 14
    assert 'model_path="org/mine"' in paths[1].read_text() and "texts[-1:]" in paths[1].read_text()
    assert "--model /ckpts/mine" in paths[2].read_text()


def test_the_submissions_model_id_is_the_evaluated_weights_not_a_folders_name(tmp_path):
    """A local folder named R1-ShareVL-7B is not the published model: its record may not name
    HuanjinYao/R1-ShareVL-7B nor take that model's facts. The paper model, evaluated by its
    registered name, maps to its hub id; a hub id bench.run loaded is itself."""
    work = scored_work_dir(tmp_path / "work", "R1-ShareVL-7B")
    server = mmbench_server_tables(tmp_path / "server")
    folder = work / "R1-ShareVL-7B"
    update_record(folder, model="ckpts/R1-ShareVL-7B", settings={"model": "/abs/ckpts/R1-ShareVL-7B"})
    with pytest.raises(SubmissionError, match="the evaluated weights are /abs/ckpts/R1-ShareVL-7B, not a hub id"):
        submit(work, "R1-ShareVL-7B", tmp_path / "s.json", mmbench=server)
    update_record(folder, model="R1-ShareVL-7B", settings={"model": "R1-ShareVL-7B"})
    paths = submit(work, "R1-ShareVL-7B", tmp_path / "s.json", mmbench=server)
    assert 'model_path="HuanjinYao/R1-ShareVL-7B"' in paths[1].read_text()
    assert json.loads(paths[0].read_text())["results"]["R1-ShareVL-7B"]["META"]["Parameters"] == "8.3B"
    update_record(folder, model="org/other", settings={"model": "org/other"})
    paths = submit(work, "R1-ShareVL-7B", tmp_path / "t.json", meta_overrides=META, mmbench=server)
    assert 'model_path="org/other"' in paths[1].read_text()
    assert json.loads(paths[0].read_text())["results"]["R1-ShareVL-7B"]["META"]["Method"][1] == "https://huggingface.co/org/other"


@pytest.mark.parametrize("setup, kwargs, message", [
    (lambda w: None, {"model": "nobody"}, "r1_scores.json: not found (run python -m bench.score --work-dir"),
    (lambda w: (w / "mine" / "r1_scores.json").write_text('{"datasets": [1]}'), {},
     "not a scores file ('datasets' is not an object of per-dataset metrics)"),
    (lambda w: update_record(w / "mine", status="failed", failed={"MMStar": "3 rows"}),
     {}, "that evaluation failed (MMStar: 3 rows)"),
    (lambda w: (w / "mine" / "bench_run.json").write_text("[]"), {},
     "bench_run.json: missing or not a readable JSON object, so what made the scores is unknown"),
    (lambda w: (w / "mine" / "r1_scores.json").write_text(
        (w / "mine" / "r1_scores.json").read_text().replace('"verified": true', '"verified": false')), {},
     "was scored from a file with no bench.run record (unverified)"),
    (lambda w: (w / "mine" / "mine_AI2D_TEST.csv").write_text("index,answer,prediction\n0,A,B\n"), {},
     "mine_AI2D_TEST.csv: changed since bench.run wrote it"),
    (lambda w: None, {"meta_overrides": [1]}, "--meta [1]: give a JSON object of META fields"),
    (lambda w: update_record(w / "mine", model=None), {}, "bench_run.json: no model recorded; pass --model-path"),
    (lambda w: None, {"mmbench": None}, "MMBench_TEST_EN_V11, MMBench_TEST_CN_V11 are missing"),
])
def test_submit_refuses_with_the_reason_and_writes_nothing(tmp_path, setup, kwargs, message):
    work = scored_work_dir(tmp_path / "work", "mine", model="org/mine")
    setup(work)
    kwargs = {"model": "mine", "meta_overrides": META, "mmbench": mmbench_server_tables(tmp_path / "server"), **kwargs}
    with pytest.raises(SubmissionError) as err:
        submit(work, kwargs.pop("model"), tmp_path / "sub.json", **kwargs)
    assert message in str(err.value)
    assert not list(tmp_path.glob("sub.*"))


def test_scores_of_a_limit_run_are_refused_naming_the_missing_sub_scores(tmp_path):
    """A --limit run scores the first items only: its categories are a subset, which the leaderboard
    app cannot index (every model needs the first model's columns)."""
    work = scored_work_dir(tmp_path / "work", "mine", limit=5, model="org/mine")
    with pytest.raises(SubmissionError, match=r"MMStar -> MMStar: 17 of its 25 sub-scores missing \(.*geometry.*\); "
                                              "scores of part of the benchmark"):
        submit(work, "mine", tmp_path / "sub", META, mmbench=mmbench_server_tables(tmp_path / "server"))
    assert not list(tmp_path.glob("sub.*"))


@pytest.mark.parametrize("given", [
    {"MMBench_TEST_EN_V11": 0.821, "MMBench_TEST_CN_V11": 80.4},
    {"MMBench_TEST_EN_V11": {"Overall": 0.821, "AR": 0.79}, "MMBench_TEST_CN_V11": 80.4},
])
def test_mmbench_server_scores_on_the_0_1_scale_are_refused_not_rounded(given):
    """The server's 0.821 was written as 0.8: a score on the 0-1 scale given as a number is refused,
    naming it (its result file is read and converted: test_mmbench_scores_from_the_servers_result_files)."""
    from reproduce.openvlm_keys import SUBSCORES

    with pytest.raises(SubmissionError, match=r"look like the 0-1 scale .*0\.821"):
        mmbench_blocks(given)
    full = dict.fromkeys(SUBSCORES["MMBench_TEST_EN_V11"], 60.0) | {"Overall": 82.14}
    assert mmbench_blocks({"MMBench_TEST_EN_V11": full})["MMBench_TEST_EN_V11"]["Overall"] == 82.1


def test_the_app_check_places_the_record_after_a_complete_first_model(tmp_path, monkeypatch):
    """The second line of defence: were the sub-score check to let a partial block through, the
    app's reader, with the record placed after `reference_model`, refuses it (placed first, as
    `submit` used to check it, it loads)."""
    import reproduce.submit as submit_module
    from reproduce import openvlm_app

    monkeypatch.setattr(submit_module, "leaderboard_block", lambda key, scores: scores)
    work = scored_work_dir(tmp_path / "work", "mine", limit=5, model="org/mine")
    with pytest.raises(SubmissionError, match="mine: the OpenVLM record mine: MMStar has no 'biology & chemistry & "
                                              "physics', which the tab takes from Reference-VLM"):
        submit(work, "mine", tmp_path / "sub", META, mmbench=mmbench_server_tables(tmp_path / "server"))
    assert not list(tmp_path.glob("sub.*"))
    scored = json.loads((work / "mine" / "r1_scores.json").read_text())["datasets"]
    alone = {"time": "20250101000000", "results": {"mine": {
        "META": {**META, "Method": ["mine", "https://x"], "Verified": "Yes"},
        **{key: {"Overall": 1.0, **scored[d]["categories"]} for d, key in submit_module.OPENVLM.items()},
        **mmbench_blocks(mmbench_server_tables(tmp_path / "server"))}}}
    assert openvlm_app.load(alone)["main"]["mine"]["MMStar"] == 1.0
