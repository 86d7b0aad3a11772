"""The trainer end to end on the tiny model: GRPO and Share-GRPO under ZeRO-2, sharing layout,
checkpoints and exact resume, export, bad data, and two-process data parallelism."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

from bench.data import training_rows
from train.config import load_config
from train.tiny import build_tiny

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "reproduce" / "configs" / "tiny_cpu.yaml"
REWARD = "tests.helpers.rewards:length_parity"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("trainer")
    model = build_tiny(root / "model", seed=0)
    data = root / "train.parquet"
    pd.DataFrame(training_rows(12, seed=0, tasks=["SynthCount"])).to_parquet(data)
    return root, model, data


def run_train(assets, out: Path, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    _, model, data = assets
    cmd = [
        sys.executable, "-m", "train", "--config", str(TINY_CONFIG),
        f"worker.actor.model.model_path={model}", f"data.train_files={data}", f"trainer.output_dir={out}",
        "trainer.progress_bar=false", f"worker.reward.function={REWARD}", *overrides,
    ]
    env = {k: v for k, v in os.environ.items() if k != "MASTER_PORT"}  # each trainer picks a free port
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


# Every metric a step logs, pinned: dashboards, the miniature and users' scripts read these names.
METRIC_KEYS = {
    "step", "reward/mean", "reward/accuracy", "reward/format", "reward/judge_timeouts", "adv/zero_frac",
    "adv/uniform_global_frac", "adv/uniform_local_frac", "adv/rescued_frac", "adv/all_wrong_frac",
    "adv/all_correct_frac", "adv/abs_mean", "data/dynamic_dropped",
    "data/image_transformed_frac", "data/short_variants", "prompt/length_mean", "response/length_mean",
    "response/truncated_frac",
    "train/rows", "train/rows_per_question", "train/updates", "actor/lr", "actor/grad_norm", "actor/pg_loss",
    "actor/clip_frac", "actor/dual_clip_frac", "actor/approx_kl", "actor/entropy", "perf/step_time",
    "perf/tokens_per_s", "perf/generated_tokens", "perf/trained_tokens", "perf/expand_time", "perf/generate_time", "perf/reward_time", "perf/advantage_time",
    "perf/old_log_prob_time", "perf/update_time",
}


@pytest.mark.parametrize(
    ("algo", "overrides", "rows_per_question"),
    [
        ("share_grpo", ["algorithm.num_variants=2", "worker.rollout.n=2"], 2 * 2 * 2),
        ("grpo", ["algorithm.adv_estimator=grpo", "algorithm.num_variants=1", "worker.rollout.n=4",
                  "worker.actor.global_batch_size=2"], 4),
    ],
)
def test_end_to_end_zero2(assets, tmp_path, algo, overrides, rows_per_question):
    out = tmp_path / algo
    run_train(assets, out, "trainer.max_steps=3", "trainer.save_freq=0", "worker.actor.zero_stage=2", *overrides)
    rows = metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert set(r) == METRIC_KEYS, set(r) ^ METRIC_KEYS
        assert all(isinstance(v, (int, float)) and v == v and abs(v) != float("inf") for v in r.values())
        assert r["train/rows_per_question"] == rows_per_question  # Q*Q*n rows per question
        assert r["train/rows"] == 2 * rows_per_question  # rollout_batch_size = 2 questions
    # the checkpoint exports to a plain HF folder whose weights moved away from the start
    ckpt = out / "checkpoints" / "step_3"
    assert (ckpt / "trainer_state.json").exists() and (out / "checkpoints" / "latest").read_text().strip() == "step_3"
    export = tmp_path / f"{algo}_hf"
    subprocess.run([sys.executable, "-m", "train.export", str(ckpt), str(export)], check=True, cwd=REPO,
                   capture_output=True, timeout=300)
    before, after = weights(assets[1]), weights(export)
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) > len(before) // 2, f"only {len(changed)} of {len(before)} tensors changed"
    from transformers import Qwen2_5_VLForConditionalGeneration

    from bench.processing import load_processor

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(export)
    assert torch.equal(model.state_dict()["lm_head.weight"], after["lm_head.weight"])
    assert load_processor(export).tokenizer.convert_tokens_to_ids("</think>") is not None
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"] == 12 and summary["skipped_rows"] == {}


def test_shared_prefix_keeps_results_identical(assets, tmp_path):
    """The shared-prompt forward is a speed-up only: same seed, same responses, rewards, losses
    and gradient norms as every row running its whole prompt (the path before the change)."""
    common = ["trainer.max_steps=3", "trainer.save_freq=0", "worker.actor.zero_stage=2",
              "algorithm.image_transform_prob=0.5", "worker.actor.micro_batch_size_per_device_for_update=4"]
    run_train(assets, tmp_path / "shared", *common, "worker.actor.share_prompt_prefix=true")
    run_train(assets, tmp_path / "rows", *common, "worker.actor.share_prompt_prefix=false")
    for x, y in zip(metrics(tmp_path / "shared"), metrics(tmp_path / "rows"), strict=True):
        for key in ("reward/mean", "response/length_mean", "data/image_transformed_frac"):
            assert x[key] == y[key], (x["step"], key)
        for key in ("actor/pg_loss", "actor/grad_norm", "actor/entropy", "actor/approx_kl"):
            assert x[key] == pytest.approx(y[key], abs=1e-5, rel=1e-4), (x["step"], key)


def test_grad_norm_is_the_same_true_norm_at_every_zero_stage(assets, tmp_path):
    """The logged gradient norm is the pre-clip norm of the update's gradient whatever the ZeRO
    stage: DeepSpeed keeps none without ZeRO (fp32), so the trainer measures it there. The first
    update starts from the same weights and data, so every stage must report the same norm."""
    norms = {}
    for stage in (0, 1, 2, 3):
        out = tmp_path / f"zero{stage}"
        run_train(assets, out, "trainer.max_steps=1", "trainer.save_freq=0", f"worker.actor.zero_stage={stage}")
        norms[stage] = metrics(out)[0]["actor/grad_norm"]
    out = tmp_path / "zero3_rows"  # whole rows (as under gradient checkpointing): its first update had no gradient
    run_train(assets, out, "trainer.max_steps=1", "trainer.save_freq=0", "worker.actor.zero_stage=3",
              "worker.actor.share_prompt_prefix=false")
    norms["3, rows"] = metrics(out)[0]["actor/grad_norm"]
    assert norms[0] > 0, norms
    for stage in (1, 2, 3, "3, rows"):
        assert norms[stage] == pytest.approx(norms[0], rel=1e-4), norms


def test_resume_is_exact(assets, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    common = ["trainer.save_freq=2", "worker.actor.zero_stage=2", "algorithm.image_transform_prob=0.5"]
    run_train(assets, straight, "trainer.max_steps=4", *common)
    run_train(assets, resumed, "trainer.max_steps=2", *common)
    run_train(assets, resumed, "trainer.max_steps=4", "trainer.resume=auto", *common)
    a, b = metrics(straight), metrics(resumed)
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    for x, y in zip(a, b, strict=True):
        for key in ("actor/pg_loss", "reward/mean", "actor/grad_norm", "adv/abs_mean", "response/length_mean"):
            assert x[key] == pytest.approx(y[key], abs=1e-6), (x["step"], key)
    from train.checkpoint import weights_only_loading

    with weights_only_loading(straight):  # DeepSpeed's state, read as resume reads it: nothing unpickled
        sa = torch.load(straight / "checkpoints/step_4/ds/mp_rank_00_model_states.pt")["module"]
        sb = torch.load(resumed / "checkpoints/step_4/ds/mp_rank_00_model_states.pt")["module"]
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], atol=1e-6, rtol=0)
    # save_limit=2 kept the last two checkpoints only
    assert sorted(p.name for p in (resumed / "checkpoints").glob("step_*")) == ["step_2", "step_4"]


def test_dynamic_sampling_and_kl(assets, tmp_path):
    out = tmp_path / "ds_kl"
    run_train(assets, out, "trainer.max_steps=2", "trainer.save_freq=0", "algorithm.dynamic_sampling=true",
              "algorithm.disable_kl=false", "algorithm.kl_coef=0.1", "worker.actor.zero_stage=0")
    for r in metrics(out):
        assert set(r) == METRIC_KEYS | {"actor/kl_loss"} and r["actor/kl_loss"] >= 0
        kept = r["train/rows"] / 8  # questions that survived the filter
        assert kept + r["data/dynamic_dropped"] == 2


def test_bad_rows_are_named_counted_and_skipped(assets, tmp_path):
    from PIL import Image

    Image.new("RGB", (56, 56), (255, 0, 0)).save(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    good = [{"problem": r["problem"], "answer": r["answer"], "images": ["ok.png"], "new_questions": r["new_questions"]}
            for r in training_rows(3, seed=1, tasks=["SynthCount"])]
    bad = [
        {"problem": "<image>How many?", "answer": None, "images": ["ok.png"], "new_questions": []},
        {"problem": "<image><image>How many?", "answer": "2", "images": ["ok.png"], "new_questions": []},
        {"problem": "<image>How many?", "answer": "2", "images": ["broken.png"], "new_questions": []},
        {"problem": "<image>How many?", "answer": "2", "images": ["ok.png"], "new_questions": "__import__('os')"},
        {"problem": "<image>" + "count the dots " * 200, "answer": "2", "images": ["ok.png"], "new_questions": []},
    ]
    data = tmp_path / "mixed.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in good + bad))
    out = tmp_path / "mixed"
    result = run_train((assets[0], assets[1], data), out, "trainer.max_steps=1", "trainer.save_freq=0")
    for n, reason in [(3, "no 'answer'"), (4, "2 <image> placeholder(s) but 1 image(s)"), (5, "image unreadable"),
                      (6, "new_questions is not a JSON or Python list"), (7, "prompt of")]:
        assert f"{data} row {n}: skipped: {reason}" in result.stderr, reason
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"] == 3
    assert summary["skipped_rows"] == {"missing_answer": 1, "image_count_mismatch": 1, "unreadable_image": 1,
                                       "bad_rewrites": 1, "prompt_too_long": 1}

    all_bad = tmp_path / "bad.jsonl"
    all_bad.write_text("".join(json.dumps(r) + "\n" for r in bad))
    result = run_train((assets[0], assets[1], all_bad), tmp_path / "none", "trainer.max_steps=1", check=False)
    assert result.returncode != 0 and "no usable training row" in result.stderr
    assert not (tmp_path / "none" / "metrics.jsonl").exists()


def test_config_validation_messages(tmp_path):
    with pytest.raises(ValueError, match="needs algorithm.num_variants=1"):
        load_config(TINY_CONFIG, ["algorithm.adv_estimator=grpo"])
    with pytest.raises(ValueError, match=r"must be a multiple of worker.actor.global_batch_size/num_variants=2 "
                                         r"\(the questions per update\)"):
        load_config(TINY_CONFIG, ["data.rollout_batch_size=3"])
    with pytest.raises(ValueError, match="global_batch_size=3 must be a multiple of algorithm.num_variants=2"):
        load_config(TINY_CONFIG, ["worker.actor.global_batch_size=3"])
    with pytest.raises(ValueError, match="at least 2 responses"):
        load_config(TINY_CONFIG, ["algorithm.adv_estimator=grpo", "algorithm.num_variants=1", "worker.rollout.n=1"])
    with pytest.raises(ValueError, match=r"unknown config key\(s\): worker.rollout.nn; valid under worker.rollout."):
        load_config(TINY_CONFIG, ["worker.rollout.nn=3"])
    with pytest.raises(ValueError, match="valid names: share_grpo, grpo, dr_grpo"):
        load_config(TINY_CONFIG, ["algorithm.adv_estimator=ppo"])
    with pytest.raises(ValueError, match="worker.rollout.n must be a whole number"):
        load_config(TINY_CONFIG, ["worker.rollout.n=two"])
    cfg = load_config(TINY_CONFIG, ["worker.actor.optim.lr=3", "trainer.max_steps=7"])
    assert cfg.worker.actor.optim.lr == 3.0 and isinstance(cfg.worker.actor.optim.lr, float)
    assert cfg.trainer.max_steps == 7
    # PyYAML reads 1e-6 (no dot) as a string; a float field takes it as the number it means
    assert load_config(TINY_CONFIG, ["worker.actor.optim.lr=1e-6"]).worker.actor.optim.lr == 1e-6
    with pytest.raises(ValueError, match="offload needs worker.actor.zero_stage 2 or 3"):
        load_config(TINY_CONFIG, ["worker.actor.offload=true", "worker.actor.zero_stage=1"])
    with pytest.raises(ValueError, match="worker.actor.optim.lr must be a finite number"):
        load_config(TINY_CONFIG, ["worker.actor.optim.lr=fast"])
    with pytest.raises(ValueError, match=r"worker.rollout.min_tokens=99 must be in \[0, data.max_response_length=16\]"):
        load_config(TINY_CONFIG, ["worker.rollout.min_tokens=99"])
    for name in ("qwen2_5_vl_7b_sharegrpo.yaml", "qwen2_5_vl_7b_grpo.yaml"):
        cfg = load_config(REPO / "reproduce" / "configs" / name)
        raw = yaml.safe_load((REPO / "reproduce" / "configs" / name).read_text())
        assert cfg.data.rollout_batch_size == 512 and cfg.worker.actor.global_batch_size == 128
        assert raw["trainer"]["save_freq"] and "resume" in raw["trainer"] and "save_limit" in raw["trainer"]


def test_the_reference_model_is_sharded_under_zero3_in_the_policys_dtype(assets, tmp_path):
    """KL against a reference that is a ZeRO-3 inference engine in bf16, like the bf16 ZeRO-3 policy:
    at the first step the two are the same weights, so the KL is zero."""
    from train.config import load_config
    from train.setup import build_reference

    out = tmp_path / "kl_zero3"
    run_train(assets, out, "trainer.max_steps=1", "trainer.save_freq=-1", "algorithm.disable_kl=false",
              "algorithm.kl_coef=0.1", "worker.actor.zero_stage=3", "worker.actor.bf16=true")
    assert metrics(out)[0]["actor/kl_loss"] == pytest.approx(0.0, abs=1e-6)
    assert not (out / "checkpoints").exists()  # save_freq=-1: none, not even at the end (benchmarks)
    cfg = load_config(TINY_CONFIG, [f"worker.actor.model.model_path={assets[1]}", "worker.actor.bf16=true",
                                    "worker.actor.zero_stage=2"])
    ref = build_reference(cfg, 1, torch.device("cpu"))
    assert {p.dtype for p in ref.parameters()} == {torch.bfloat16} and not any(p.requires_grad for p in ref.parameters())


def test_two_processes_hold_identical_parameters(assets, tmp_path):
    _, model, data = assets
    out = tmp_path / "dp"
    script = REPO / "tests" / "helpers" / "dp_worker.py"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={29950 + os.getpid() % 40}", str(script), str(TINY_CONFIG),
           f"worker.actor.model.model_path={model}", f"data.train_files={data}", f"trainer.output_dir={out}",
           "trainer.progress_bar=false", f"worker.reward.function={REWARD}", "trainer.max_steps=2",
           "trainer.save_freq=0", "worker.actor.zero_stage=2", "data.rollout_batch_size=2",
           "worker.actor.global_batch_size=4"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    hashes = [json.loads((out / f"params_rank{r}.json").read_text()) for r in (0, 1)]
    initial = hashlib.sha256(b"".join(t.numpy().tobytes() for _, t in sorted(weights(model).items()))).hexdigest()
    assert hashes[0]["after"] == hashes[1]["after"]  # data parallel: both ranks in step
    assert hashes[0]["before"] == hashes[1]["before"] == initial
    assert hashes[0]["after"] != initial
    assert hashes[0]["questions"] != hashes[1]["questions"]  # each rank trained on its own questions


@pytest.mark.parametrize("stage, offload", [(1, False), (3, False), (2, True)])
def test_other_zero_stages_freeze_checkpointing_offload(assets, tmp_path, stage, offload):
    out = tmp_path / f"zero{stage}"
    run_train(assets, out, "trainer.max_steps=2", "trainer.save_freq=0", f"worker.actor.zero_stage={stage}",
              "worker.actor.model.freeze_vision_tower=true", "worker.actor.model.enable_gradient_checkpointing=true",
              f"worker.actor.offload={str(offload).lower()}")
    export = tmp_path / f"zero{stage}_hf"
    subprocess.run([sys.executable, "-m", "train.export", str(out / "checkpoints" / "step_2"), str(export)],
                   check=True, cwd=REPO, capture_output=True, timeout=300)
    before, after = weights(assets[1]), weights(export)
    visual = [k for k in before if k.startswith("visual.") or ".visual." in k]  # saved under either name
    language = [k for k in before if k not in visual]
    assert visual and all(torch.equal(before[k], after[k]) for k in visual)  # frozen tower untouched
    assert any(not torch.equal(before[k], after[k]) for k in language)


def test_bf16_on_cpu(assets, tmp_path):
    """worker.actor.bf16 trains the model in bfloat16 (DeepSpeed's bf16 mode), here on the CPU."""
    out = tmp_path / "bf16"
    run_train(assets, out, "trainer.max_steps=2", "trainer.save_freq=0", "worker.actor.zero_stage=2",
              "worker.actor.bf16=true")
    rows = metrics(out)
    assert all(v == v and abs(v) != float("inf") for r in rows for v in r.values())
    from train.checkpoint import weights_only_loading

    with weights_only_loading(out):
        state = torch.load(out / "checkpoints/step_2/ds/mp_rank_00_model_states.pt")["module"]
    assert {v.dtype for v in state.values()} == {torch.bfloat16}


@pytest.mark.gpu
@pytest.mark.parametrize("engine", ["hf", "vllm"])
def test_gpu_bf16_end_to_end(assets, tmp_path, engine):
    """On a CUDA machine: two bf16 Share-GRPO steps under ZeRO-2 with either rollout engine, and
    the KL term with its reference model on the GPU too."""
    out = tmp_path / engine
    run_train(assets, out, "trainer.max_steps=2", "trainer.save_freq=0", "worker.actor.zero_stage=2",
              "worker.actor.bf16=true", f"worker.rollout.name={engine}", "algorithm.disable_kl=false",
              "worker.rollout.gpu_memory_utilization=0.3")
    rows = metrics(out)
    assert [r["step"] for r in rows] == [1, 2]
    assert all(v == v and abs(v) != float("inf") for r in rows for v in r.values())
    assert rows[-1]["actor/grad_norm"] > 0


def test_metric_logger_writes_jsonl_tensorboard_and_wandb(tmp_path, monkeypatch):
    """The logger's calls into TensorBoard and W&B (stand-ins record them: neither package is in
    the CPU environment), and JSONL lines that a resumed run trims to the steps it keeps."""
    import types

    from train.metric_log import MetricLogger

    calls = []

    class Writer:
        def __init__(self, log_dir):
            calls.append(("tb_dir", log_dir))

        def add_scalar(self, key, value, step):
            calls.append(("tb", key, value, step))

    class Run:
        def log(self, metrics, step):
            calls.append(("wandb", dict(metrics), step))

    tb = types.ModuleType("torch.utils.tensorboard")
    tb.SummaryWriter = Writer
    wandb = types.ModuleType("wandb")
    wandb.init = lambda **kw: calls.append(("wandb_init", kw["project"], kw["name"], "trainer" in kw["config"])) or Run()
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", tb)
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    cfg = load_config(TINY_CONFIG, [f"trainer.output_dir={tmp_path}", "trainer.logger=[jsonl, tensorboard, wandb]",
                                    "trainer.project_name=p", "trainer.experiment_name=e"])
    logger = MetricLogger(cfg, rank=0, start_step=0)
    for step in (1, 2, 3):
        logger.log(step, {"reward/mean": step / 10, "perf/step_time": 1.0})
    assert calls[0] == ("tb_dir", str(tmp_path / "tensorboard")) and ("wandb_init", "p", "e", True) in calls
    assert ("tb", "reward/mean", 0.2, 2) in calls and ("wandb", {"reward/mean": 0.3, "perf/step_time": 1.0}, 3) in calls
    MetricLogger(cfg, rank=0, start_step=2)  # a run resumed from step 2 redoes step 3
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    MetricLogger(cfg, rank=1, start_step=0).log(9, {"reward/mean": 1.0})  # other ranks write nothing
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2


def test_the_policy_loads_in_the_training_dtype_and_under_zero3_partitioned():
    """bf16 training loads bf16 weights (DeepSpeed would cast to them anyway); ZeRO-3 builds the
    model inside deepspeed.zero.Init (transformers sees ZeRO-3 only inside the context); float32
    training on a CPU loads as before."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    from train.setup import policy_loading

    with policy_loading(load_config(TINY_CONFIG, []), 1) as load:
        assert load == {"dtype": torch.float32} and not is_deepspeed_zero3_enabled()
    with policy_loading(load_config(TINY_CONFIG, ["worker.actor.bf16=true"]), 1) as load:
        assert load["dtype"] == torch.bfloat16
    with policy_loading(load_config(TINY_CONFIG, ["worker.actor.zero_stage=3"]), 1) as load:
        assert is_deepspeed_zero3_enabled()
    assert not is_deepspeed_zero3_enabled()
