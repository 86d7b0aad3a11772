"""Each choice is named once: registries fail with the valid names, every advantage estimator has
the one signature, and a newly registered variant is accepted by the config and used by the loop
without touching either."""

from __future__ import annotations

import pytest
import torch

from bench.registry import Registry
from train import algos
from train.config import load_config
from train.trainer import advantages


def test_registry_lookup_info_and_errors():
    reg: Registry = Registry("colour")

    @reg.register("red", warm=True)
    def red():
        return "r"

    reg.add("blue", "b", warm=False)
    assert reg["red"] is red and reg["blue"] == "b" and list(reg) == ["red", "blue"]
    assert reg.info("red") == {"warm": True} and "blue" in reg and "green" not in reg
    with pytest.raises(ValueError, match="unknown colour 'green'; valid names: red, blue"):
        reg["green"]
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("red", None)


@pytest.mark.parametrize("name", list(algos.ADVANTAGE_ESTIMATORS))
def test_every_advantage_estimator_maps_rewards_to_shared_rows(name):
    q = 1 if algos.ADVANTAGE_ESTIMATORS.info(name)["variants"] == "one" else 3
    rewards = torch.rand(4, q, 5)
    adv = algos.ADVANTAGE_ESTIMATORS[name](rewards, eps=1e-6, global_std_over="responses", terms="both")
    assert adv.shape == (4, q, q, 5) and torch.isfinite(adv).all()
    if q == 1:
        with pytest.raises(ValueError, match="one variant per question"):
            algos.ADVANTAGE_ESTIMATORS[name](torch.rand(4, 2, 5))


def test_a_registered_estimator_is_accepted_by_the_config_and_used_by_the_loop():
    @algos.ADVANTAGE_ESTIMATORS.register("sign_test", variants="many")
    def sign(rewards, eps=algos.EPS, global_std_over="responses", terms="both"):
        B, Q, n = rewards.shape
        return torch.sign(rewards - 0.5)[:, None].expand(B, Q, Q, n)

    try:
        cfg = load_config(None, ["algorithm.adv_estimator=sign_test", "algorithm.num_variants=2"])
        out = advantages(torch.tensor([[[0.0, 1.0], [1.0, 1.0]]]), cfg.algorithm)
        assert out.shape == (1, 2, 2, 2) and out[0, 0, 1].tolist() == [1.0, 1.0] and out[0, 1, 0].tolist() == [-1.0, 1.0]
    finally:
        algos.ADVANTAGE_ESTIMATORS._items.pop("sign_test")
        algos.ADVANTAGE_ESTIMATORS._info.pop("sign_test")
    with pytest.raises(ValueError, match="algorithm.adv_estimator: unknown advantage estimator 'sign_test'"):
        load_config(None, ["algorithm.adv_estimator=sign_test"])


def test_single_variant_estimators_need_one_variant():
    with pytest.raises(ValueError, match="adv_estimator=grpo needs algorithm.num_variants=1"):
        load_config(None, ["algorithm.adv_estimator=grpo", "algorithm.num_variants=2"])
    cfg = load_config(None, ["algorithm.adv_estimator=dr_grpo", "algorithm.num_variants=1"])
    assert advantages(torch.tensor([[[0.0, 1.0, 1.0, 0.0]]]), cfg.algorithm).reshape(-1).tolist() == [-0.5, 0.5, 0.5, -0.5]
