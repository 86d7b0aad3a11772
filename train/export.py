"""`python -m train.export CHECKPOINT OUT`: a plain Hugging Face checkpoint (weights, config,
tokenizer, image processor) from a training checkpoint, loadable by transformers, VLMEvalKit
and vLLM. Works for every ZeRO stage (partitioned states are consolidated to fp32)."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch
import yaml

from bench.errors import UsageError, exit_on_usage_error

from .checkpoint import DS_TAG, is_complete, weights_only_loading


def consolidated_state_dict(checkpoint: Path) -> dict[str, torch.Tensor]:
    ds_dir = checkpoint / DS_TAG
    with weights_only_loading(checkpoint):
        if any(ds_dir.glob("*optim_states.pt")) and any(ds_dir.glob("zero_pp_rank_*")):
            from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

            return get_fp32_state_dict_from_zero_checkpoint(str(checkpoint), tag=DS_TAG)
        return torch.load(ds_dir / "mp_rank_00_model_states.pt", map_location="cpu")["module"]


def export(checkpoint: str | Path, out: str | Path) -> Path:
    from transformers import Qwen2_5_VLForConditionalGeneration

    from bench.processing import load_processor

    checkpoint, out = Path(checkpoint), Path(out)
    if not is_complete(checkpoint):
        raise UsageError(f"{checkpoint}: not a complete training checkpoint (it needs trainer_state.json and "
                         f"{DS_TAG}/)")
    try:
        cfg = yaml.safe_load((checkpoint / "config.yaml").read_text(encoding="utf-8"))
        base, frozen = cfg["worker"]["actor"]["model"]["model_path"], cfg["worker"]["actor"]["model"]["freeze_vision_tower"]
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise UsageError(f"{checkpoint / 'config.yaml'}: not valid YAML of a training config ({type(exc).__name__})") from None
    out = out.resolve()  # "." or "dir/" name the folder itself
    if out.exists() and not (out.is_dir() and (out / "training_config.yaml").is_file()):
        raise UsageError(f"{out}: exists and is not an earlier export (no training_config.yaml); give a new folder "
                         "(an export replaces only an earlier export)")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)  # an unwritable destination stops here, before the model loads
    try:
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(base, dtype=torch.float32)
        missing, unexpected = model.load_state_dict(consolidated_state_dict(checkpoint), strict=False)
        # ZeRO's consolidation holds only trained parameters; frozen ones keep the base weights
        # they never left.
        if frozen:
            missing = [k for k in missing if not k.startswith("model.visual.")]
        if missing or unexpected:
            raise RuntimeError(f"{checkpoint}: weights do not fit {base}: missing {missing[:5]}, unexpected {unexpected[:5]}")
        model.save_pretrained(tmp)
        load_processor(base).save_pretrained(tmp)
        shutil.copy(checkpoint / "config.yaml", tmp / "training_config.yaml")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a checkpoints/step_N folder")
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    return exit_on_usage_error(lambda: print(f"exported to {export(args.checkpoint, args.out)}"))


if __name__ == "__main__":
    sys.exit(main())
