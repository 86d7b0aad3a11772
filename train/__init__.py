"""Share-GRPO trainer: config, data and question expansion, rollout, pure algorithm functions,
the DeepSpeed loop, checkpoints and the tiny-model builder."""
