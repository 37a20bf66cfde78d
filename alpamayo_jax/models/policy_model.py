"""The composed Alpamayo-R1 policy: the VLM backbone plus the flow-matching action expert.

`PolicyModel` is an NNX module holding `backbone` (ViT + LLM, models/backbone.py) and `expert`
(models/expert.py). Its methods are the three ways the policy runs, each a pure function of the
module's weights and its arguments (jit them from outside, e.g. `nnx.jit` or split/merge):

- `forward` (training): the whole chat at once, causal; returns the LLM's final hidden states, its
  per-layer K/V (what the expert reads) and the M-RoPE positions.
- `prefill` + `decode_step` (reasoning): fill a fixed-size KV cache with the prompt, then append
  one token at a time. `decode_step(cache, token, pos)` is the callable `inference/sampler.py`
  drives: it writes `token`'s K/V at slot `pos[b]`.
- `denoise_step` / `sample_actions` (trajectory): the expert's velocity for noisy actions given the
  cached prefix; one prefill serves every Euler step and every sample.

The cache is the LLM's `KVCache` plus `rope_delta`: with images in the prompt, M-RoPE positions run
behind slot indices (an image of h x w merged tokens advances the position by max(h, w)), so the
text token in slot s has position `s + rope_delta` on all three axes. Decoding and the expert use
it to continue positions after the prefix exactly as the full forward does.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import ml_collections
from flax import nnx
from jaxtyping import Array, Bool, Float, Int, UInt8

from alpamayo_jax.models.backbone import Backbone, count_params
from alpamayo_jax.models.expert import ActionExpert, ExpertPrefix, prefix_key_mask
from alpamayo_jax.models.language import dtype_of
from alpamayo_jax.nn.kv_cache import KVCache
from alpamayo_jax.nn.rope import text_positions
from alpamayo_jax.trajectory.flow import euler_sample


class PolicyCache(NamedTuple):
    """The LLM's fixed-size KV cache plus the M-RoPE offset of each sequence's text slots."""

    kv: KVCache
    rope_delta: Int[Array, " b"]

    @staticmethod
    def batch_axes() -> PolicyCache:
        """The batch axis of every leaf (for `sampler.repeat_batch` and vmaps): K/V are layer-major."""
        return PolicyCache(KVCache(1, 1, 0), 0)


class PolicyModel(nnx.Module):
    """Backbone (vision + LLM) and action expert, built from the config's `model` section."""

    def __init__(
        self,
        model_cfg: ml_collections.ConfigDict,
        *,
        action_dim: int = 2,
        rngs: nnx.Rngs,
        param_dtype=jnp.float32,
    ):
        # Frozen (hashable, references resolved): the config sits in the graphdef, which jit hashes.
        model_cfg = ml_collections.FrozenConfigDict(model_cfg)
        self.cfg = model_cfg
        self.backbone = Backbone(model_cfg, rngs=rngs, param_dtype=param_dtype)
        self.expert = ActionExpert(
            model_cfg.llm,
            model_cfg.expert,
            action_dim=action_dim,
            rngs=rngs,
            dtype=dtype_of(model_cfg.get("dtype", "float32")),
            param_dtype=param_dtype,
            remat_policy=model_cfg.get("remat", "none"),
            unroll_layers=bool(model_cfg.get("unroll_layers", False)),
        )

    @property
    def llm(self):
        return self.backbone.llm

    def forward(
        self,
        tokens: Int[Array, "b l"],
        valid: Bool[Array, "b l"],
        images: UInt8[Array, "b n h w 3"] | None = None,
    ) -> tuple[
        Float[Array, "b l d"],
        tuple[Float[Array, "layers b l g hd"], Float[Array, "layers b l g hd"]],
        Int[Array, "3 b l"],
        Int[Array, " b"],
    ]:
        """Causal pass over the whole sequence: (hidden, (K, V), M-RoPE positions, next position)."""
        x, positions, next_position, deepstack = self.backbone.embed(tokens, valid, images)
        hidden, kv = self.llm(x, positions, valid, deepstack=deepstack)
        return hidden, kv, positions, next_position

    def logits(self, hidden: Float[Array, "b l d"]) -> Float[Array, "b l v"]:
        return self.llm.logits(hidden)

    def prefill(
        self,
        tokens: Int[Array, "b l"],
        images: UInt8[Array, "b n h w 3"] | None,
        valid: Bool[Array, "b l"],
        *,
        cache_len: int | None = None,
    ) -> tuple[Float[Array, "b v"], PolicyCache]:
        """Run the (right-padded) prompt; return the next-token logits and a cache of `cache_len`
        slots (default: the prompt length, i.e. no room to decode)."""
        hidden, (k, v), _, next_position = self.forward(tokens, valid, images)
        # Counted with a select, not `valid.astype(int32)`: IREE 3.13 (llvm-cpu) folds the sum of a
        # converted constant all-true mask (the planner's unpadded prompt) to a wrong count (9 for
        # 140 tokens), so the exported planner read the wrong row and RoPE offset. The select folds
        # correctly; both are the same count everywhere else.
        lengths = jnp.sum(jnp.where(valid, 1, 0).astype(jnp.int32), axis=-1)
        last = jnp.take_along_axis(hidden, jnp.maximum(lengths - 1, 0)[:, None, None], axis=1)
        logits = self.logits(last)[:, 0]
        kv = KVCache.from_prefill(k, v, valid, cache_len or tokens.shape[1])
        return logits, PolicyCache(kv, next_position - lengths)

    def decode_step(
        self, cache: PolicyCache, token: Int[Array, " b"], pos: Int[Array, " b"]
    ) -> tuple[Float[Array, "b v"], PolicyCache]:
        """Feed one token per sequence at slot `pos[b]`; return the next-token logits."""
        b = token.shape[0]
        x = self.llm.embed(token[:, None])
        positions = text_positions(1, b, pos + cache.rope_delta)
        kv = KVCache(cache.kv.k, cache.kv.v, pos.astype(jnp.int32))
        hidden, kv = self.llm.decode(x, positions, kv)
        return self.logits(hidden)[:, 0], PolicyCache(kv, cache.rope_delta)

    def denoise_step(
        self,
        cache: PolicyCache,
        prefix_len: Int[Array, " b"],
        x_t: Float[Array, "b t a"],
        t: Float[Array, "*b"],
    ) -> Float[Array, "b t a"]:
        """The expert's velocity at (x_t, t), reading cache slots [0, prefix_len)."""
        return self.expert.velocity(self.expert_prefix(cache, prefix_len, x_t.shape[1]), x_t, t)

    def expert_prefix(self, cache: PolicyCache, prefix_len: Int[Array, " b"], steps: int) -> ExpertPrefix:
        """What every Euler step of a plan reads: cache slots [0, prefix_len) laid out once."""
        kv = cache.kv
        prefix_len = prefix_len.astype(jnp.int32)
        mask = prefix_key_mask(jnp.ones(kv.k.shape[1:3], bool), prefix_len)
        return self.expert.prepare(kv.k, kv.v, mask, prefix_len + cache.rope_delta, steps)

    def sample_actions(
        self,
        cache: PolicyCache,
        prefix_len: Int[Array, " b"],
        noise: Float[Array, "b t a"],
        num_steps: int,
    ) -> Float[Array, "b t a"]:
        """Normalised actions by Euler integration of the expert from noise (t=0) to data (t=1)."""
        # The prefix is laid out once per plan, outside the Euler loop (models/expert.py).
        prefix = self.expert_prefix(cache, prefix_len, noise.shape[1])
        start = self.expert.flow_noise(noise)
        return euler_sample(lambda x, t: self.expert.velocity(prefix, x, t), start, num_steps)


def build_policy(config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> PolicyModel:
    """The policy of a full config (model section + action dimension)."""
    return PolicyModel(config.model, rngs=rngs)


def param_counts(model_cfg: ml_collections.ConfigDict) -> dict[str, int]:
    """Parameter counts by component (vision, llm, expert, total) from shapes only: nothing is
    allocated, so this works for the full-size presets on a laptop."""
    model = nnx.eval_shape(lambda: PolicyModel(model_cfg, rngs=nnx.Rngs(0)))
    counts = {
        "vision": count_params(nnx.state(model.backbone.vision, nnx.Param)),
        "llm": count_params(nnx.state(model.backbone.llm, nnx.Param)),
        "expert": count_params(nnx.state(model.expert, nnx.Param)),
    }
    counts["total"] = sum(counts.values())
    return counts
