"""Run under torch.distributed.run: trains, then each rank writes a hash of its parameters (and
of the questions it drew) so the test can compare ranks."""

import hashlib
import json
import sys
from pathlib import Path

import torch

from train import setup, trainer
from train.config import load_config


def digest(model) -> str:
    state = model.state_dict()
    return hashlib.sha256(b"".join(state[k].detach().float().numpy().tobytes() for k in sorted(state))).hexdigest()


def main() -> None:
    cfg = load_config(sys.argv[1], sys.argv[2:])
    seen = {}
    original_build, original_take = setup.build_engine, setup.DataOrder.take

    def build(model, cfg, world):
        seen["before"] = digest(model)
        engine, scheduler = original_build(model, cfg, world)
        seen["engine"] = engine
        return engine, scheduler

    def take(self, k):
        picked = original_take(self, k)
        seen.setdefault("questions", []).extend(picked)
        return picked

    setup.build_engine, setup.DataOrder.take = build, take
    trainer.train(cfg)
    rank = torch.distributed.get_rank()
    out = Path(cfg.trainer.output_dir) / f"params_rank{rank}.json"
    out.write_text(json.dumps({"before": seen["before"], "after": digest(seen["engine"].module),
                               "questions": seen["questions"]}))


if __name__ == "__main__":
    main()
