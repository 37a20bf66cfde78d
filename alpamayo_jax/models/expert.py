"""The flow-matching action expert: a transformer over the future-step tokens (docs/model.md).

Why it looks like this:
- Expert layer i attends to the VLM's layer-i keys/values of the prefix (prompt + reasoning, up to
  and including `<|traj_future_start|>`) plus its own action tokens. Reading the prefix through the
  KV cache, rather than through cross-attention over final hidden states, means the expert reuses
  the cache the reasoning decode already built, and one prefill serves all denoising steps.
- Hence it has the VLM's layer count, KV heads and head_dim (the cached K/V must fit its attention),
  but its own width, query heads and MLP width, which keeps it cheap (10 Euler steps per plan).
- Its layers are the LLM's decoder layers (`models/language.py`) built at the expert's sizes, so the
  parameter layout mirrors the release's expert (a Qwen text decoder) and the converter maps both
  the same way; only the attention pattern differs, and that lives here.
- Action tokens see each other bidirectionally and see the prefix only where it is valid and
  before `prefix_len`; the prefix never sees them. Their positions continue after the prefix with
  the same value on the three M-RoPE axes (equal to plain 1D RoPE).
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx
from jaxtyping import Array, Bool, Float, Int

from alpamayo_jax.models.action_projection import ActionInProjection, ActionOutProjection
from alpamayo_jax.models.language import DecoderLayer
from alpamayo_jax.nn.attention import attention_over_parts, heads_first_kv
from alpamayo_jax.nn.layers import RMSNorm, remat
from alpamayo_jax.nn.rope import mrope_angles, text_positions
from alpamayo_jax.parallel.sharding import constrain
from alpamayo_jax.trajectory import smooth_basis
from alpamayo_jax.trajectory.flow import target_velocity

ACT = ("batch", "length", "act_embed")


def expert_layer_config(
    llm_cfg: ml_collections.ConfigDict, expert_cfg: ml_collections.ConfigDict
) -> ml_collections.ConfigDict:
    """A decoder-layer config at the expert's width: KV heads, head_dim and attention flavour
    (bias, q/k norm) from the LLM, hidden / heads / mlp from the expert section."""
    if expert_cfg.heads % llm_cfg.kv_heads:
        raise ValueError(
            f"model.expert.heads ({expert_cfg.heads}) must be a multiple of the LLM's kv_heads "
            f"({llm_cfg.kv_heads}): the expert's queries share the VLM's cached K/V heads"
        )
    c = ml_collections.ConfigDict(llm_cfg.to_dict())
    c.hidden, c.heads, c.mlp = expert_cfg.hidden, expert_cfg.heads, expert_cfg.mlp
    return c


@flax.struct.dataclass
class ExpertPrefix:
    """The step-invariant inputs of the expert for one plan (`ActionExpert.prepare`)."""

    keys: Float[Array, "layers b g s hd"]
    values: Float[Array, "layers b g s hd"]
    mask: Bool[Array, "b s"]
    angles: Float[Array, "b t d2"]


def prefix_key_mask(valid: Bool[Array, "b s"], prefix_len: Int[Array, " b"]) -> Bool[Array, "b s"]:
    """The prefix slots an action token may read: valid and before `prefix_len`."""
    slots = jnp.arange(valid.shape[1], dtype=jnp.int32)[None, :]
    return valid & (slots < prefix_len[:, None])


PREDICTIONS = ("velocity", "data")
# Data prediction divides by the flow time left, 1 - t; sampling never comes closer to 1 than its
# last Euler step (0.1 for 10), training's time_scale stops at 1e-3.
MIN_REMAINING_TIME = 1e-3


class ActionExpert(nnx.Module):
    """(noisy actions, t, VLM prefix K/V) -> flow velocity (or clean actions), one token per step."""

    def __init__(
        self,
        llm_cfg: ml_collections.ConfigDict,
        expert_cfg: ml_collections.ConfigDict,
        *,
        action_dim: int,
        rngs: nnx.Rngs,
        dtype=None,
        param_dtype=jnp.float32,
        remat_policy: str = "none",
        unroll_layers: bool = False,
    ):
        self.llm_cfg = ml_collections.FrozenConfigDict(llm_cfg)  # hashable: it sits in the graphdef
        self.remat_policy = remat_policy
        self.unroll_layers = unroll_layers  # model.unroll_layers (config/models.py)
        layer_cfg = expert_layer_config(llm_cfg, expert_cfg)
        self.num_layers = llm_cfg.layers
        # 0: one free value per step (the release); K: the flow lives in the span of K smooth
        # cosines over the horizon (trajectory/smooth_basis.py).
        self.action_basis = int(expert_cfg.get("action_basis", 0))
        # "velocity": the network predicts the flow's velocity x - eps (the release); "data": it
        # predicts the clean actions x, and the velocity follows from them (`velocity`).
        prediction = str(expert_cfg.get("prediction", "velocity"))
        if prediction not in PREDICTIONS:
            raise ValueError(f"model.expert.prediction: expected one of {PREDICTIONS}, got {prediction!r}")
        self.predicts_data = prediction == "data"
        self.in_proj = ActionInProjection(
            action_dim=action_dim,
            out_dim=expert_cfg.hidden,
            mlp_width=expert_cfg.action_mlp_width,
            num_layers=expert_cfg.action_mlp_layers,
            num_frequencies=expert_cfg.fourier_frequencies,
            min_frequency=expert_cfg.fourier_min,
            max_frequency=expert_cfg.fourier_max,
            # Older run configs lack the three fields below: they trained with these defaults.
            norm_eps=float(expert_cfg.get("action_norm_eps", llm_cfg.norm_eps)),
            fourier_scale=float(expert_cfg.get("fourier_scale", 1.0)),
            mlp_order=str(expert_cfg.get("action_mlp_order", "norm_silu")),
            rngs=rngs,
            dtype=dtype,
            param_dtype=param_dtype,
        )

        @nnx.vmap(in_axes=0, out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
        def make_layers(r):
            return DecoderLayer(layer_cfg, rngs=r, dtype=dtype, param_dtype=param_dtype)

        self.layers = make_layers(rngs.split(llm_cfg.layers))
        self.final_norm = RMSNorm(expert_cfg.hidden, eps=llm_cfg.norm_eps, rngs=rngs, param_dtype=param_dtype)
        self.out_proj = ActionOutProjection(
            in_dim=expert_cfg.hidden, action_dim=action_dim, rngs=rngs, param_dtype=param_dtype
        )

    def prepare(
        self,
        prefix_k: Float[Array, "layers b s g hd"],
        prefix_v: Float[Array, "layers b s g hd"],
        prefix_mask: Bool[Array, "b s"],
        start_pos: Int[Array, " b"],
        steps: int,
    ) -> ExpertPrefix:
        """What every Euler step of one plan shares: the prefix K/V laid out heads-first, and the
        action tokens' RoPE angles. `prefix_k/v`: the VLM's per-layer keys (RoPE applied) and
        values; `prefix_mask`: the slots the actions may read (see `prefix_key_mask`);
        `start_pos`: the M-RoPE position of the first action token (the prefix's next position)."""
        c = self.llm_cfg
        if prefix_k.shape[0] != self.num_layers:
            raise ValueError(
                f"prefix K/V has {prefix_k.shape[0]} layers but the expert has {self.num_layers}"
            )
        positions = text_positions(steps, prefix_k.shape[1], start_pos)
        angles = mrope_angles(positions, c.head_dim, c.rope_theta, c.mrope_sections, c.mrope_interleaved)
        to_heads_first = jax.vmap(heads_first_kv)  # over the layers axis
        return ExpertPrefix(to_heads_first(prefix_k), to_heads_first(prefix_v), prefix_mask, angles)

    def velocity(
        self, prefix: ExpertPrefix, x_t: Float[Array, "b t a"], t: Float[Array, "*b"]
    ) -> Float[Array, "b t a"]:
        """Velocity of the flow for every action token at (x_t, t), reading a prepared prefix (t:
        one per example, or one for all). With data prediction it follows from the predicted clean
        actions: the straight path from x_t at t to them, (x - x_t) / (1 - t)."""
        out = self.predict(prefix, x_t, t)
        if not self.predicts_data:
            return out
        remaining = 1.0 - jnp.broadcast_to(jnp.asarray(t, jnp.float32), (x_t.shape[0],))
        return (out - x_t) / jnp.maximum(remaining, MIN_REMAINING_TIME)[:, None, None]

    def predict(
        self, prefix: ExpertPrefix, x_t: Float[Array, "b t a"], t: Float[Array, "*b"]
    ) -> Float[Array, "b t a"]:
        """What the network outputs at (x_t, t): the velocity, or the clean actions
        (`model.expert.prediction`), in the smooth span when there is one."""
        b, steps = x_t.shape[:2]
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (b,))
        h = constrain(self.in_proj(x_t, t), ACT)
        # Action tokens read the valid prefix slots and every action token (bidirectional).
        prefix_mask = jnp.broadcast_to(prefix.mask[:, None, :], (b, steps, prefix.mask.shape[1]))
        action_mask = jnp.ones((b, steps, steps), bool)
        angles = prefix.angles
        graphdef, state = nnx.split(self.layers)

        def body(h, xs):
            layer_state, pk, pv = xs
            layer = nnx.merge(graphdef, layer_state)
            q, k, v = layer.attn.qkv(layer.attn_norm(h), angles)
            parts = [
                (pk.astype(k.dtype), pv.astype(v.dtype), prefix_mask),
                (heads_first_kv(k), heads_first_kv(v), action_mask),
            ]
            h = h + layer.attn.out(attention_over_parts(q, parts))
            h = h + layer.mlp(layer.mlp_norm(h))
            return constrain(h, ACT), None

        h, _ = jax.lax.scan(
            remat(body, self.remat_policy),
            h,
            (state, prefix.keys, prefix.values),
            unroll=self.unroll_layers,
        )
        return smooth_basis.project(self.out_proj(self.final_norm(h)), self.action_basis)

    def flow_target(
        self, actions: Float[Array, "b t a"], eps: Float[Array, "b t a"]
    ) -> Float[Array, "b t a"]:
        """What `predict` is trained towards on the path from `eps` to `actions`."""
        return actions if self.predicts_data else target_velocity(actions, eps)

    def flow_noise(self, eps: Float[Array, "b t a"]) -> Float[Array, "b t a"]:
        """The starting noise of the flow from i.i.d. N(0, 1) draws: as drawn, or in the smooth span."""
        return smooth_basis.smooth_noise(eps, self.action_basis)

    def flow_data(self, actions: Float[Array, "b t a"]) -> Float[Array, "b t a"]:
        """The training target of the flow: the normalised actions, projected onto the smooth span."""
        return smooth_basis.project(actions, self.action_basis)

    def __call__(
        self,
        x_t: Float[Array, "b t a"],
        t: Float[Array, " b"],
        prefix_k: Float[Array, "layers b s g hd"],
        prefix_v: Float[Array, "layers b s g hd"],
        prefix_mask: Bool[Array, "b s"],
        start_pos: Int[Array, " b"],
    ) -> Float[Array, "b t a"]:
        """The network's output for every action token (one step: `prepare` then `predict`): what the
        flow loss regresses onto `flow_target`."""
        return self.predict(self.prepare(prefix_k, prefix_v, prefix_mask, start_pos, x_t.shape[1]), x_t, t)
