"""Test-only reward functions (worker.reward.function): a random model never writes a correct
boxed answer, so trainer tests need rewards with variance to move the parameters."""


def length_parity(responses: list[str], golds: list[str]) -> list[float]:
    return [float(len(r) % 2) for r in responses]
