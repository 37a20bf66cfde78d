"""The planning function: camera frames + ego history -> reasoning tokens, actions and poses.

One pure function of (model, raw arrays) so the same code runs in-process under `jax.jit` and is
exported whole to StableHLO (export/stablehlo.py): the prompt is assembled inside the program
(its text is constant for a camera setup; only the 48 history tokens change), then

    prefill (ViT + LLM over the prompt)                       once per scene
    -> broadcast the cache to K samples                       (samples share the prefill)
    -> reasoning decode until <|traj_future_start|>           (optional: the no-reasoning fast
                                                               path ends the prompt with
                                                               <|cot_end|><|traj_future_start|>)
    -> trajectory: 10 Euler steps of the expert over the read-only prefix cache   ('flow')
                   or 128 decoded future-bin tokens                               ('tokens')
    -> denormalise, unicycle integration to poses.

Randomness: scene b's key is `key(seed[b])`; its sample k uses `fold_in(that, k)`, so a plan depends
only on its own scene and seed, not on the batch around it. The numbers are jax.random's Threefry,
computed by `inference/noise.py` in plain integer ops so that the exported module compiles with
IREE too (jax.random's own lowering with per-row keys does not).
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jaxtyping import Array, Bool, Float, Int, UInt8, UInt32

from alpamayo_jax.config.scene import SceneSpec
from alpamayo_jax.inference import noise
from alpamayo_jax.inference.sampler import SamplingParams, decode_loop, repeat_batch
from alpamayo_jax.models.policy_model import PolicyCache, PolicyModel
from alpamayo_jax.trajectory.flow import euler_sample
from alpamayo_jax.trajectory.stitch import current_acceleration, stitch_acceleration
from alpamayo_jax.trajectory.tokenize import decode_future, encode_history
from alpamayo_jax.trajectory.unicycle import actions_to_poses, clip_actions, denormalize_actions

TRAJECTORY_HEADS = ("flow", "tokens")
_NOISE_STREAM = 0x7FFFFFFF  # fold_in tag of the flow noise (decode steps use 0, 1, 2, ...)
_TOKENS_STREAM = 0x7FFFFFFE  # fold_in tag of the discrete-trajectory decode


@dataclasses.dataclass(frozen=True, eq=False)
class PlannerSpec:
    """Everything static about planning: prompt template, token ids, sizes, sampling choices."""

    prompt_before: np.ndarray  # ids up to and including <|traj_history_start|>
    prompt_after: np.ndarray  # ids from <|traj_history_end|> to <|cot_start|>
    history_token_offset: int
    future_token_offset: int
    future_bins: int
    cot_end_id: int
    traj_future_start_id: int
    pad_id: int
    text_allowed: np.ndarray  # bool [vocab]: ids the reasoning may produce
    tokens_cfg: dict
    action_mean: tuple[float, float]
    action_std: tuple[float, float]
    accel_bound: float
    curvature_bound: float
    dt: float
    future_steps: int
    history_steps: int
    num_images: int
    image_size: tuple[int, int]
    samples: int = 1
    reasoning: bool = True
    max_reasoning_tokens: int = 64
    trajectory: str = "flow"
    flow_steps: int = 10
    sampling: SamplingParams = SamplingParams()
    stitch_steps: int = 0  # plans start at the current acceleration, blended back over these steps
    # Navigation (Alpamayo 1.5): up to `route_tokens` ids of a per-scene instruction, written as
    # <|route_start|> text <|route_end|> after the history (0: no navigation input). `guidance`:
    # also plan without it and mix the expert's velocities, (1 - w) v_unguided + w v_guided.
    route_tokens: int = 0
    route_start_id: int = -1
    route_end_id: int = -1
    guidance: bool = False

    def __post_init__(self):
        if self.trajectory not in TRAJECTORY_HEADS:
            raise ValueError(f"trajectory must be one of {TRAJECTORY_HEADS}, got {self.trajectory!r}")
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if self.route_tokens and min(self.route_start_id, self.route_end_id) < 0:
            raise ValueError("navigation needs the vocabulary's <|route_start|> / <|route_end|> ids")
        if self.guidance and (not self.route_tokens or self.trajectory != "flow"):
            raise ValueError(
                "guidance mixes the flow expert's velocities with and without navigation: it needs route_tokens > 0 and the flow head"
            )
        if self.reasoning and self.max_reasoning_tokens < 2:
            raise ValueError(
                f"max_reasoning_tokens must be >= 2 (room for <|cot_end|><|traj_future_start|>), "
                f"got {self.max_reasoning_tokens}"
            )

    def replace(self, **changes: Any) -> PlannerSpec:
        return dataclasses.replace(self, **changes)

    @property
    def prompt_length(self) -> int:
        n = len(self.prompt_before) + 3 * self.history_steps + len(self.prompt_after)
        n += self.route_tokens + 2 if self.route_tokens else 0  # the longest navigation span
        return n if self.reasoning else n + 2

    @property
    def cache_length(self) -> int:
        """Prompt, reasoning, and (discrete head) one re-fed stop token plus 2T future tokens."""
        extra = self.max_reasoning_tokens if self.reasoning else 0
        if self.trajectory == "tokens":
            extra += 2 * self.future_steps
        return self.prompt_length + extra

    @classmethod
    def from_config(
        cls, config: ml_collections.ConfigDict, tokenizer: Any, scene: SceneSpec, **options: Any
    ) -> PlannerSpec:
        """The spec of a config + tokenizer + scene geometry (cameras, frames, pixels, steps:
        usually `SceneSpec.from_config(config)`); `options` set the sampling choices."""
        from alpamayo_jax.models.vision_reducer import llm_tokens_per_image
        from alpamayo_jax.text.prompt import PromptBuilder, prompt_options

        vision = config.model.vision
        h_steps, t_steps = int(scene.history_steps), int(scene.future_steps)
        builder = PromptBuilder(
            tokenizer,
            camera_names=scene.camera_names,
            frames_per_camera=scene.frames_per_camera,
            tokens_per_image=llm_tokens_per_image(vision, *scene.image_hw, scene.num_images),
            history_tokens=3 * h_steps,
            future_tokens=2 * t_steps,
            system_prompt=config.text.system_prompt,
            instruction=config.text.instruction,
            **prompt_options(config.text),
        )
        layout = tokenizer.layout
        template = builder.prompt(np.zeros(3 * h_steps, np.int32))
        split = int(np.flatnonzero(template == layout.traj_history_start_id)[0]) + 1
        allowed = np.asarray(tokenizer.text_decode_mask(), bool)
        vocab = int(config.model.llm.vocab)
        if allowed.shape[0] < vocab:  # embedding rows beyond the tokenizer: never sampled
            allowed = np.concatenate([allowed, np.zeros(vocab - allowed.shape[0], bool)])
        if options.get("route_tokens"):  # an error naming the token for a vocabulary without them
            options["route_start_id"] = tokenizer.token_id("<|route_start|>")
            options["route_end_id"] = tokenizer.token_id("<|route_end|>")
        return cls(
            prompt_before=template[:split].astype(np.int32),
            prompt_after=template[split + 3 * h_steps :].astype(np.int32),
            history_token_offset=int(layout.history_token_offset),
            future_token_offset=int(layout.future_token_offset),
            future_bins=int(config.tokens.future_bins),
            cot_end_id=int(layout.cot_end_id),
            traj_future_start_id=int(layout.traj_future_start_id),
            pad_id=int(layout.pad_id),
            text_allowed=allowed[:vocab],
            tokens_cfg=dict(config.tokens.to_dict()),
            action_mean=tuple(float(x) for x in config.action.mean),
            action_std=tuple(float(x) for x in config.action.std),
            accel_bound=float(config.action.accel_bound),
            curvature_bound=float(config.action.curvature_bound),
            dt=float(scene.dt),
            stitch_steps=int(round(float(config.action.get("stitch_s", 0.0)) / float(scene.dt))),
            future_steps=t_steps,
            history_steps=h_steps,
            num_images=scene.num_images,
            image_size=(int(scene.image_hw[0]), int(scene.image_hw[1])),
            **options,
        )


def build_prompt(spec: PlannerSpec, history_xyz: Float[Array, "b h 3"]) -> Int[Array, "b p"]:
    """The prompt of every scene: constant template around its 3H history tokens."""
    b = history_xyz.shape[0]
    bins = encode_history(history_xyz, types.SimpleNamespace(**spec.tokens_cfg))
    parts = [
        jnp.broadcast_to(jnp.asarray(spec.prompt_before), (b, len(spec.prompt_before))),
        (bins + spec.history_token_offset).astype(jnp.int32),
        jnp.broadcast_to(jnp.asarray(spec.prompt_after), (b, len(spec.prompt_after))),
    ]
    if not spec.reasoning:
        parts.append(
            jnp.broadcast_to(jnp.array([spec.cot_end_id, spec.traj_future_start_id], jnp.int32), (b, 2))
        )
    return jnp.concatenate(parts, axis=1)


def build_route_prompt(
    spec: PlannerSpec,
    history_xyz: Float[Array, "b h 3"],
    route: Int[Array, "b r"],
    route_len: Int[Array, " b"],
) -> tuple[Int[Array, "b p"], Bool[Array, "b p"]]:
    """(prompt, valid) with each scene's navigation span <|route_start|> route <|route_end|> right
    after <|traj_history_end|> (none where `route_len` is 0), the prompt's tokens moved left over
    the unused route slots so every prompt is a contiguous, right-padded sequence."""
    plain = build_prompt(spec, history_xyz)
    b, r = route.shape
    split = len(spec.prompt_before) + 3 * spec.history_steps + 1  # after <|traj_history_end|>
    used = route_len > 0
    span = jnp.concatenate(
        [jnp.full((b, 1), spec.route_start_id, jnp.int32), route.astype(jnp.int32),
         jnp.full((b, 1), spec.route_end_id, jnp.int32)], axis=1
    )  # fmt: skip
    span_valid = jnp.concatenate(
        [used[:, None], jnp.arange(r)[None, :] < route_len[:, None], used[:, None]], axis=1
    )
    tokens = jnp.concatenate([plain[:, :split], span, plain[:, split:]], axis=1)
    valid = jnp.concatenate(
        [jnp.ones((b, split), bool), span_valid, jnp.ones((b, plain.shape[1] - split), bool)], axis=1
    )
    order = jnp.argsort(~valid, axis=1, stable=True)  # the valid tokens first, in their order
    tokens = jnp.take_along_axis(tokens, order, axis=1)
    valid = jnp.take_along_axis(valid, order, axis=1)
    return jnp.where(valid, tokens, spec.pad_id), valid


def sample_keys(seed: Int[Array, " b"], samples: int) -> UInt32[Array, "bk 2"]:
    """Key words of row (scene b, sample k) = fold_in(key(seed[b]), k), scene-major like
    `repeat_batch` (raw uint32 words: `jax.random.key_data` of those keys)."""
    scene = noise.seed_keys(seed)  # [B, 2]
    rows = noise.fold_in(scene[:, None], jnp.arange(samples)[None, :])  # [B, K, 2]
    return rows.reshape(-1, 2)


def future_banned(spec: PlannerSpec, vocab: int) -> np.ndarray:
    """bool [vocab]: every id but the future-trajectory bins (what the discrete head may not say)."""
    ids = np.arange(vocab)
    lo = spec.future_token_offset
    return (ids < lo) | (ids >= lo + spec.future_bins)


@dataclasses.dataclass(frozen=True)
class Reasoned:
    """What `reason` leaves for the trajectory head: the prompt, the cache holding prompt and
    reasoning, the prefix length the expert reads, the sampled reasoning, and each row's key."""

    prompt: Int[Array, "bk p"]
    cache: PolicyCache
    prefix_len: Int[Array, " bk"]
    reasoning: Int[Array, "bk r"]
    reasoning_len: Int[Array, " bk"]
    keys: UInt32[Array, "bk 2"]


def reason(
    model: PolicyModel,
    spec: PlannerSpec,
    images: UInt8[Array, "b n h w 3"],
    history_xyz: Float[Array, "b hist 3"],
    seed: Int[Array, " b"],
    route: Int[Array, "b r"] | None = None,
    route_len: Int[Array, " b"] | None = None,
) -> Reasoned:
    """Prefill every scene once, broadcast to `spec.samples` rows per scene (scene-major), and
    decode the reasoning of every row (or end the prompt with the delimiters: no reasoning).
    With navigation (`spec.route_tokens`), each scene's `route` ids (`route_len` of them) go into
    its prompt."""
    b, k = images.shape[0], spec.samples
    if spec.route_tokens:
        prompt, valid = build_route_prompt(spec, history_xyz, route, route_len)
    else:
        prompt = build_prompt(spec, history_xyz)
        valid = jnp.ones(prompt.shape, bool)
    logits, cache = model.prefill(prompt, images, valid, cache_len=spec.cache_length)
    logits, cache = repeat_batch((logits, cache), k, batch_axis=(0, PolicyCache.batch_axes()))
    keys = sample_keys(seed, k)
    start = jnp.repeat(jnp.sum(jnp.where(valid, 1, 0), axis=1).astype(jnp.int32), k)
    if not spec.reasoning:
        empty = jnp.zeros((b * k, 0), jnp.int32)
        return Reasoned(repeat_batch(prompt, k), cache, start, empty, jnp.zeros((b * k,), jnp.int32), keys)
    result = decode_loop(
        model.decode_step, cache, logits, start, keys,
        max_new_tokens=spec.max_reasoning_tokens,
        stop_token_id=spec.traj_future_start_id,
        pad_id=spec.pad_id,
        params=spec.sampling,
        banned=~jnp.asarray(spec.text_allowed),
        forced_suffix=(spec.cot_end_id, spec.traj_future_start_id),
    )  # fmt: skip
    return Reasoned(
        repeat_batch(prompt, k), result.cache, result.next_pos, result.tokens, result.num_tokens, keys
    )


def flow_noise(spec: PlannerSpec, keys: UInt32[Array, "bk 2"]) -> Float[Array, "bk t 2"]:
    """The i.i.d. N(0, 1) starting draws of every row's flow (before the expert shapes them)."""
    return noise.normal(noise.fold_in(keys, _NOISE_STREAM), (spec.future_steps, 2))


def to_trajectory(
    spec: PlannerSpec,
    norm_actions: Float[Array, "bk t 2"],
    history_xyz: Float[Array, "b hist 3"],
    v0: Float[Array, " b"],
) -> tuple[Float[Array, "bk t 2"], Float[Array, "bk t 3"]]:
    """Normalised actions of every row -> (raw actions, poses): denormalise, stitch onto the
    current acceleration (when on), clip to the action bounds, integrate the unicycle."""
    k = norm_actions.shape[0] // history_xyz.shape[0]
    actions = denormalize_actions(norm_actions.astype(jnp.float32), spec.action_mean, spec.action_std)
    if spec.stitch_steps:  # trajectory/stitch.py: no jump of acceleration at a re-plan
        now = jnp.repeat(current_acceleration(history_xyz.astype(jnp.float32), spec.dt), k)
        actions = stitch_acceleration(actions, now, spec.stitch_steps)
    actions = clip_actions(actions, spec.accel_bound, spec.curvature_bound)
    return actions, actions_to_poses(actions, jnp.repeat(v0.astype(jnp.float32), k), spec.dt)


def decode_token_plan(
    model: PolicyModel, spec: PlannerSpec, r: Reasoned
) -> tuple[Int[Array, "bk t2"], Float[Array, "bk t 2"]]:
    """The discrete trajectory head's plan of every row: 2T future-bin tokens sampled after
    `<|traj_future_start|>` (at `spec.sampling`, every other id banned) and the normalised actions
    they decode to. The cache must have room for them (`spec.trajectory == "tokens"`)."""
    rows = r.prefix_len.shape[0]
    # Logits after <|traj_future_start|>: re-feed it into its own slot (same K/V rewritten).
    stop = jnp.full((rows,), spec.traj_future_start_id, jnp.int32)
    logits, cache = model.decode_step(r.cache, stop, r.prefix_len - 1)
    result = decode_loop(
        model.decode_step, cache, logits, r.prefix_len, noise.fold_in(r.keys, _TOKENS_STREAM),
        max_new_tokens=2 * spec.future_steps, stop_token_id=-1, pad_id=spec.pad_id, params=spec.sampling,
        banned=future_banned(spec, logits.shape[-1]),
    )  # fmt: skip
    bins = jnp.clip(result.tokens - spec.future_token_offset, 0, spec.future_bins - 1)
    return result.tokens, decode_future(bins, types.SimpleNamespace(**spec.tokens_cfg))


def unguided_prefix(
    model: PolicyModel,
    spec: PlannerSpec,
    images: UInt8[Array, "b n h w 3"],
    history_xyz: Float[Array, "b hist 3"],
    r: Reasoned,
) -> tuple[PolicyCache, Int[Array, " bk"]]:
    """The cache and prefix length of every row's prompt *without* its navigation span, holding the
    reasoning sampled with it (fed token by token, not re-sampled), as the release's guidance does:
    the expert's unguided velocity reads this prefix."""
    plain = spec.replace(route_tokens=0, guidance=False)
    prompt = build_prompt(plain, history_xyz)
    _, cache = model.prefill(prompt, images, jnp.ones(prompt.shape, bool), cache_len=plain.cache_length)
    cache = repeat_batch(cache, spec.samples, batch_axis=PolicyCache.batch_axes())
    start = prompt.shape[1]
    rows = r.reasoning.shape[0]

    def feed(cache, i):  # slots past a row's reasoning get pads: beyond its prefix, never read
        _, cache = model.decode_step(cache, r.reasoning[:, i], jnp.full((rows,), start + i, jnp.int32))
        return cache, None

    cache, _ = jax.lax.scan(feed, cache, jnp.arange(r.reasoning.shape[1]))
    return cache, start + r.reasoning_len


def guided_actions(
    model: PolicyModel,
    spec: PlannerSpec,
    guided: tuple[PolicyCache, Int[Array, " bk"]],
    unguided: tuple[PolicyCache, Int[Array, " bk"]],
    noise_draws: Float[Array, "bk t 2"],
    weight: Float[Array, " bk"],
) -> Float[Array, "bk t 2"]:
    """Euler integration of (1 - w) v_unguided + w v_guided (classifier-free guidance over the
    navigation text; w = 1: the guided flow alone, w > 1 pushes further along the instruction)."""
    steps = noise_draws.shape[1]
    pg = model.expert_prefix(*guided, steps)
    pu = model.expert_prefix(*unguided, steps)
    w = weight.astype(jnp.float32)[:, None, None]

    def velocity(x, t):
        return (1.0 - w) * model.expert.velocity(pu, x, t) + w * model.expert.velocity(pg, x, t)

    return euler_sample(velocity, model.expert.flow_noise(noise_draws), spec.flow_steps)


def plan_scenes(
    model: PolicyModel,
    spec: PlannerSpec,
    images: UInt8[Array, "b n h w 3"],
    history_xyz: Float[Array, "b hist 3"],
    v0: Float[Array, " b"],
    seed: Int[Array, " b"],
    route: Int[Array, "b r"] | None = None,
    route_len: Int[Array, " b"] | None = None,
    guidance_weight: Float[Array, " b"] | None = None,
) -> dict[str, jax.Array]:
    """Plan every scene of a batch: poses [B, K, T, 3], actions [B, K, T, 2] (raw units),
    reasoning_tokens [B, K, R] (pad after the stop token) and reasoning_length [B, K].
    Navigation (`spec.route_tokens`): `route` ids and `route_len` per scene; with `spec.guidance`,
    `guidance_weight` per scene."""
    b, k = images.shape[0], spec.samples
    r = reason(model, spec, images, history_xyz, seed, route, route_len)
    cache, prefix_len, keys = r.cache, r.prefix_len, r.keys
    t = spec.future_steps
    if spec.guidance:
        unguided = unguided_prefix(model, spec, images, history_xyz, r)
        weight = jnp.repeat(guidance_weight, k)
        norm_actions = guided_actions(
            model, spec, (cache, prefix_len), unguided, flow_noise(spec, keys), weight
        )
    elif spec.trajectory == "flow":
        norm_actions = model.sample_actions(cache, prefix_len, flow_noise(spec, keys), spec.flow_steps)
    else:
        _, norm_actions = decode_token_plan(model, spec, r)

    actions, poses = to_trajectory(spec, norm_actions, history_xyz, v0)
    return {
        "poses": poses.reshape(b, k, t, 3),
        "actions": actions.reshape(b, k, t, 2),
        "reasoning_tokens": r.reasoning.reshape(b, k, -1),
        "reasoning_length": r.reasoning_len.reshape(b, k),
    }
