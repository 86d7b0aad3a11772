"""One decoding step of a Qwen2.5-VL language model, written out on the model's own weights.

In decoding, every row adds one token, so each layer's work is a few small matrix products; on a
small model, or a large one on a CPU, transformers' per-layer module calls, mask preparation and
output bookkeeping cost as much again. `DecodeStep` runs the same arithmetic as
`Qwen2_5_VLTextModel.forward` for one token per row on a filled KV cache, with the query, key and
value projections of a layer as one matrix product and rotary embeddings applied to queries and
keys together. What it reads from the model: every layer's projections, norms and activation, the
model's rotary embedding module (cos and sin are computed once per step, by the model's own code)
and its final norm. No module is called, so no hook runs inside a captured step (DeepSpeed ZeRO-3
hooks every module). tests/test_rollout.py checks its hidden states against the model's forward,
the sampler's tokens against transformers' `generate`, and that a step calls no module.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import rotate_half


def _unhooked(module, *args) -> Tensor:
    """module's forward without `Module.__call__`, so no hook runs: under ZeRO-3, DeepSpeed hooks
    every submodule, and its hook waits on another stream (deepspeed/runtime/zero/
    partitioned_param_coordinator.py:415 in 0.19.8), which would invalidate a CUDA-graph capture
    of the step. The parameters the step reads are gathered before it (`HFRollout._gathered`)."""
    return type(module).forward(module, *args)


def _rms_norm(norm, x: Tensor) -> Tensor:
    """Qwen2RMSNorm's arithmetic, in its order: in float32, then back to the input's dtype. Not a
    call of the module: under ZeRO-3, DeepSpeed's hooks would partition its weight again after it."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    return norm.weight * h.to(x.dtype)


class DecodeStep:
    """`step(embeds (R, h), mask (R, 1, 1, T) bool, positions (3, R, 1))` -> hidden (R, h) after
    the final norm, writing each layer's new key and value into `cache` (a DynamicCache whose
    layers have room for them, see `train.rollout.reserve`). Built once per generation: the fused
    query/key/value weights are copies of the current ones (a sixth of the language model's
    weights or less; on a tiny model the fusion makes a step 16% faster, on larger ones no
    slower)."""

    def __init__(self, language_model, cache) -> None:
        config = language_model.config
        if "sliding_attention" in getattr(config, "layer_types", ()):
            raise ValueError("the hf rollout engine does not implement sliding-window attention layers: "
                             "use a config with use_sliding_window=false (as Qwen2.5-VL's releases) or "
                             "worker.rollout.name=vllm")
        self.model, self.cache = language_model, cache
        self.layers = []
        for layer in language_model.layers:
            a = layer.self_attn
            weight = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]).detach()
            bias = torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]).detach()
            self.layers.append((layer, weight.t(), bias))
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = config.hidden_size // config.num_attention_heads

    @torch.no_grad()
    def __call__(self, embeds: Tensor, mask: Tensor, positions: Tensor, column: Tensor | None = None) -> Tensor:
        """`column` None: the cache grows by one token (`mask` covers its filled width). `column` a
        (1,) long tensor on the device: the fixed-shape step (`FixedShapeDecoder`), which writes the
        new key and value at that column of the reserved width and attends over all of it, `mask`
        hiding the columns not yet written; every shape is the same at every token."""
        rows, H, K, d = embeds.shape[0], self.heads, self.kv_heads, self.head_dim
        cos, sin = _unhooked(self.model.rotary_emb, embeds, positions)  # (R, 1, d), multimodal sections merged
        x = embeds
        for (layer, qkv_weight, qkv_bias), kv in zip(self.layers, self.cache.layers, strict=True):
            a, mlp = layer.self_attn, layer.mlp
            qkv = torch.addmm(qkv_bias, _rms_norm(layer.input_layernorm, x), qkv_weight).view(rows, H + 2 * K, d)
            qk = qkv[:, : H + K]
            qk = qk * cos + rotate_half(qk) * sin
            if column is None:
                keys, values = kv.update(qk[:, H:, None], qkv[:, H + K :, None])
                out = F.scaled_dot_product_attention(qk[:, :H, None], keys, values, attn_mask=mask, scale=a.scaling,
                                                     enable_gqa=H != K)
            else:
                keys, values = kv.write_at(column, qk[:, H:, None], qkv[:, H + K :, None])
                # The H // K query heads that share a key head as that head's H // K queries: the
                # same arithmetic as grouped-query attention, with no copy of the keys and values
                # per query head (what enable_gqa's fallback kernels make).
                out = F.scaled_dot_product_attention(qk[:, :H].view(rows, K, H // K, d), keys, values, attn_mask=mask,
                                                     scale=a.scaling)
            x = x + F.linear(out.reshape(rows, H * d), a.o_proj.weight)
            y = _rms_norm(layer.post_attention_layernorm, x)
            x = x + F.linear(_unhooked(mlp.act_fn, F.linear(y, mlp.gate_proj.weight)) * F.linear(y, mlp.up_proj.weight),
                             mlp.down_proj.weight)
        return _rms_norm(self.model.norm, x)
