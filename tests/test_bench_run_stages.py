"""bench.run's stages that need no model, in process: the argument checks, the work folder names,
VLMEvalKit's command line and the settings a run is compared by (the reliability tests run the
whole command in subprocesses, where a mutation tool cannot see them)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from bench.errors import UsageError
from bench.provenance import weights_digest
from bench.run import arguments, check_arguments, run_settings, vlmeval_argv, work_folder_names


def parse(*argv: str):
    return arguments().parse_args(["--model", "m", "--data", "D", "--work-dir", "w", *argv])


@pytest.fixture()
def lmu(tmp_path: Path, monkeypatch) -> Path:
    for name in ("LMUData", "HF_HUB_OFFLINE"):  # set first, so that what check_arguments sets is undone after
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    folder = tmp_path / "lmu"
    folder.mkdir()
    (folder / "SynthCount.tsv").write_text("index\timage\n")
    return folder


def test_check_arguments_sets_lmudata_and_finds_the_local_tsvs(lmu: Path):
    (lmu / "a").mkdir()
    (lmu / "a" / "b.tsv").write_text("index\timage\n")
    args = parse("--lmudata", str(lmu))
    args.data = ["SynthCount", "MMStar", "a/b"]
    found, tsvs = check_arguments(args)
    assert found == os.environ["LMUData"] == str(lmu.resolve())
    assert tsvs == {"SynthCount": lmu.resolve() / "SynthCount.tsv"}  # a name with a slash is never a TSV


def test_offline_every_dataset_needs_a_local_tsv(lmu: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = parse("--lmudata", str(lmu))
    args.data = ["SynthCount", "MMStar", "AI2D_TEST"]
    with pytest.raises(UsageError, match=r"offline and no TSV for MMStar, AI2D_TEST under \$LMUData="):
        check_arguments(args)
    args.data = ["SynthCount"]
    assert list(check_arguments(args)[1]) == ["SynthCount"]


@pytest.mark.parametrize(("argv", "message"), [
    (("--limit", "0"), "--limit 0: must be >= 1"),
    (("--batch-size", "0"), "--batch-size 0: must be >= 1"),
    (("--max-new-tokens", "0"), "--max-new-tokens 0: must be >= 1"),
    (("--lmudata", "/no/such/folder"), "--lmudata /no/such/folder: no such folder"),
])
def test_check_arguments_refuses_what_cannot_mean_what_it_says(lmu: Path, argv, message):
    with pytest.raises(UsageError, match=message):
        check_arguments(parse(*argv))


def test_check_arguments_takes_the_smallest_meaningful_values(lmu: Path):
    assert check_arguments(parse("--limit", "1", "--batch-size", "1", "--max-new-tokens", "1")) == (None, {})


def test_a_model_with_a_slash_must_be_a_folder(lmu: Path, tmp_path: Path):
    args = parse()
    args.model = [str(tmp_path / "no_such_checkpoint")]
    with pytest.raises(UsageError, match="unknown model .*no_such_checkpoint.*: no such checkpoint folder"):
        check_arguments(args)
    args.model = [str(tmp_path), "R1-ShareVL-7B"]  # a folder, and a registered name
    check_arguments(args)


def test_two_models_never_share_a_work_folder(tmp_path: Path):
    a, b = tmp_path / "a" / "step_4", tmp_path / "b" / "step_4"
    a.mkdir(parents=True), b.mkdir(parents=True)
    (tmp_path / "c d").mkdir()
    assert work_folder_names([str(a), "R1-ShareVL-7B", str(tmp_path / "c d")]) == ["step_4", "R1-ShareVL-7B", "c-d"]
    with pytest.raises(UsageError) as caught:
        work_folder_names([str(a), str(b)])
    assert caught.value.lines == (f"--model {a} and {b} would share the work folder step_4 (VLMEvalKit files results by "
                                  "folder name): give them distinct folder names",)


def test_vlmeval_argv_by_hand():
    assert vlmeval_argv(parse(), ["m"]) == ["vlmeval", "--data", "D", "--model", "m", "--work-dir", "w",
                                            "--mode", "infer"]
    args = parse("--judge", "gpt-4-turbo", "--judge-base-url", "http://j", "--use-vllm", "--limit", "3", "--reuse")
    args.data = ["D", "E"]
    assert vlmeval_argv(args, ["m", "n"]) == [
        "vlmeval", "--data", "D", "E", "--model", "m", "n", "--work-dir", "w", "--mode", "all",
        "--judge", "gpt-4-turbo", "--judge-base-url", "http://j", "--use-vllm", "--limit", "3", "--reuse"]
    assert vlmeval_argv(parse("--judge", "j"), ["m"])[-3:] == ["all", "--judge", "j"]  # no base URL given


def test_run_settings_name_local_weights_by_content(tmp_path: Path, monkeypatch):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"w")
    args = parse("--max-new-tokens", "64", "--batch-size", "4", "--attn-implementation", "sdpa")
    local = run_settings(args, str(tmp_path))
    assert local == {"model": str(tmp_path.resolve()), "weights_sha256": weights_digest(tmp_path), "max_new_tokens": 64,
                     "prompt_placement": args.prompt_placement, "use_vllm": False, "attn_implementation": "sdpa",
                     "batch_size": 4}
    assert run_settings(args, "R1-ShareVL-7B")["model"] == "R1-ShareVL-7B"
    monkeypatch.chdir(tmp_path.parent)
    assert run_settings(args, tmp_path.name)["model"] == str(tmp_path.resolve())  # a folder by its full path
    assert "weights_sha256" not in run_settings(args, "R1-ShareVL-7B")
    (tmp_path / "model.safetensors").write_bytes(b"v")  # retrained in place: another run
    assert run_settings(args, str(tmp_path))["weights_sha256"] != local["weights_sha256"]
    assert local["weights_sha256"] != hashlib.sha256().hexdigest()


HELP = {  # each option's help as a user reads it in `python -m bench.run --help`
    "--lmudata LMUDATA": "folder of local dataset TSVs (sets $LMUData)",
    "--use-vllm": "VLMEvalKit's vLLM path (GPU)",
    "--judge JUDGE": "judge model name: run VLMEvalKit's own evaluation too",
    "--judge-base-url JUDGE_BASE_URL": "OpenAI-compatible endpoint for the judge",
    "--max-new-tokens MAX_NEW_TOKENS": "generation budget (default: the model class's)",
    "--limit LIMIT": "first N items of each dataset (smoke runs)",
    "--batch-size BATCH_SIZE": "items generated together (bench.batching.LookAhead; the transformers path); 1: "
                               "VLMEvalKit's one at a time",
    "--reuse": "reuse finished predictions in --work-dir",
    "--prompt-placement {every_text,last_text}": "where the R1 prompt goes: after every text item (the released "
                                                 "patch) or the last",
    "--trust-local-tsv": "evaluate $LMUData TSVs whose md5 is not VLMEvalKit's (fixtures, an edited copy) as they are",
    "--attn-implementation {flash_attention_2,sdpa,eager}": "GPU models' attention (VLMEvalKit asks for "
                                                            "flash_attention_2, which needs flash-attn)",
}


def test_the_command_line_as_its_help_shows_it(capsys):
    import bench.run

    with pytest.raises(SystemExit):
        arguments().parse_args(["--help"])
    out = capsys.readouterr().out
    flat = " ".join(out.split())
    assert out.startswith("usage: python -m bench.run [-h] --model MODEL [MODEL ...] --data DATA")
    for option, text in HELP.items():
        assert f"{option} {text}" in flat, option
    description, usage = bench.run.__doc__.split("\n\n")[:2]
    assert flat.count(description) == 2  # the description, then the whole docstring as the epilog
    assert out.count(usage) == 1  # in the epilog alone, which keeps its lines as written
    with pytest.raises(SystemExit) as exit_:
        arguments().parse_args([])
    assert exit_.value.code == 2
    assert "the following arguments are required: --model, --data, --work-dir" in capsys.readouterr().err


def test_each_option_takes_what_it_says():
    args = parse()
    assert (args.model, args.data, args.work_dir) == (["m"], ["D"], Path("w"))
    assert (args.batch_size, args.prompt_placement, args.limit, args.max_new_tokens) == (1, "every_text", None, None)
    assert (args.use_vllm, args.reuse, args.trust_local_tsv, args.judge, args.attn_implementation) == (
        False, False, False, None, None)
    args = parse("--use-vllm", "--reuse", "--trust-local-tsv", "--prompt-placement", "last_text", "--lmudata", "l")
    assert (args.use_vllm, args.reuse, args.trust_local_tsv, args.prompt_placement, args.lmudata) == (
        True, True, True, "last_text", Path("l"))
    assert arguments().parse_args(["--model", "a", "b", "--data", "D", "E", "--work-dir", "w"]).model == ["a", "b"]
    for choice in ("flash_attention_2", "sdpa", "eager"):
        assert parse("--attn-implementation", choice).attn_implementation == choice
    for option, value in (("--attn-implementation", "Eager"), ("--prompt-placement", "first"), ("--limit", "1.5")):
        with pytest.raises(SystemExit):
            parse(option, value)
