"""Model-agnostic autoregressive decoding: token sampling and a jit-able decode loop.

The loop is a `jax.lax.while_loop` over a preallocated KV cache (static shapes: one compiled program
for every prompt and every number of generated tokens), driven by any function

    decode_step(cache, token [B] int32, pos [B] int32) -> (logits [B, V], cache)

that writes `token`'s keys/values at cache slot `pos[b]` and returns the logits of the next token.
The model packages (models/policy_model.py) supply it; this file knows nothing about transformers.

Why these choices:
- Per-sequence stop: every sequence stops at its own stop token (`<|traj_future_start|>` during
  reasoning) while the batch runs on until all have stopped or `max_new_tokens` is reached; a
  stopped sequence keeps feeding `pad_id` into slots *after* its stop token, which nothing reads
  (the expert reads the cache only up to `prefix_len`).
- The stop token itself is fed through `decode_step` so its K/V are in the cache: the action expert
  attends to the prefix up to and including `<|traj_future_start|>` (docs/model.md "Prompt").
- Per-sequence randomness: token i of sequence b uses `fold_in(fold_in(key, b), i)`, so sequence b's
  sample depends only on (key, b, i): reproducible per seed, and unchanged when the batch grows.
  The draws come from `inference/noise.py` (jax.random's Threefry generator as plain integer
  ops) so the loop also compiles outside JAX (IREE) when exported; keys are typed threefry keys
  (`jax.random.key`) or their raw uint32 words [..., 2].
- Banned tokens (trajectory-bin ids while writing text) get logit -inf before sampling.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, UInt32

from alpamayo_jax.inference import noise

DecodeStep = Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, Any]]


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """How the next token is chosen. temperature 0 means greedy (argmax, no randomness)."""

    temperature: float = 0.0
    top_p: float = 1.0

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclasses.dataclass(frozen=True)
class DecodeResult:
    """What the loop produced. `tokens[b, :num_tokens[b]]` are sequence b's new tokens; the stop
    token (if reached) is the last of them. Slots after that hold `pad_id`."""

    tokens: Int[Array, "b n"]
    num_tokens: Int[Array, " b"]
    stopped: Bool[Array, " b"]
    next_pos: Int[Array, " b"]  # first cache slot after sequence b's last fed token
    cache: Any


jax.tree_util.register_dataclass(
    DecodeResult,
    data_fields=["tokens", "num_tokens", "stopped", "next_pos", "cache"],
    meta_fields=[],
)


def top_p_filter(logits: Float[Array, "b v"], top_p: float) -> Float[Array, "b v"]:
    """Keep the smallest set of most likely tokens whose probability mass reaches `top_p`
    (nucleus sampling); the others get -inf. The most likely token is always kept."""
    if top_p >= 1.0:
        return logits
    desc = jnp.sort(logits, axis=-1)[..., ::-1]
    probs = jax.nn.softmax(desc, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    keep = mass_before < top_p
    threshold = jnp.min(jnp.where(keep, desc, jnp.inf), axis=-1, keepdims=True)
    return jnp.where(logits >= threshold, logits, -jnp.inf)


def mask_banned(logits: Float[Array, "b v"], banned: Bool[Array, " v"] | None) -> Float[Array, "b v"]:
    """Logit -inf for banned token ids (e.g. trajectory bins while decoding reasoning text)."""
    if banned is None:
        return logits
    if banned.shape != logits.shape[-1:]:
        raise ValueError(f"banned mask must be [vocab] = ({logits.shape[-1]},), got shape {banned.shape}")
    return jnp.where(banned, -jnp.inf, logits)


def sequence_keys(rng: PRNGKeyArray | UInt32[Array, 2], batch: int) -> UInt32[Array, "b 2"]:
    """One independent key per sequence, as raw key words: `fold_in(rng, b)` (not `split`, whose
    i-th key depends on how many keys are split)."""
    return noise.fold_in(noise.key_words(rng)[None], jnp.arange(batch))


def sample_token(
    logits: Float[Array, "b v"],
    keys: PRNGKeyArray | UInt32[Array, "b 2"],
    step: Int[Array, ""] | int,
    params: SamplingParams,
    banned: Bool[Array, " v"] | None = None,
) -> Int[Array, " b"]:
    """Choose one token per sequence: greedy, or temperature + top-p with key `fold_in(keys[b], step)`
    (`keys`: [B] typed threefry keys or [B, 2] raw key words)."""
    logits = mask_banned(logits.astype(jnp.float32), banned)
    if params.greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = top_p_filter(logits / params.temperature, params.top_p)
    return noise.categorical(noise.fold_in(noise.key_words(keys), step), logits)


def decode_loop(
    decode_step: DecodeStep,
    cache: Any,
    first_logits: Float[Array, "b v"],
    start_pos: Int[Array, " b"],
    rng: PRNGKeyArray | UInt32[Array, "*b 2"],
    *,
    max_new_tokens: int,
    stop_token_id: int,
    pad_id: int = 0,
    params: SamplingParams = SamplingParams(),
    banned: Bool[Array, " v"] | None = None,
    forced_suffix: Sequence[int] = (),
) -> DecodeResult:
    """Generate up to `max_new_tokens` tokens per sequence after a prefill.

    `first_logits` are the prefill's logits for the token after the prompt and `start_pos[b]` the
    cache slot that token goes to (the prompt length of sequence b). Each iteration samples one token
    per sequence and feeds it through `decode_step`, so every generated token (the stop token
    included) has its K/V in the returned cache.

    `rng` is one key (sequence b then uses `fold_in(rng, b)`) or one key per sequence ([B] keys,
    used as given: callers that need a sample to depend only on its own scene's seed pass these);
    typed threefry keys or raw uint32 key words ([2] or [B, 2]).

    `forced_suffix`: token ids forced, in order, over the last `len(forced_suffix)` steps for the
    sequences that have not stopped by then (e.g. `(<|cot_end|>, <|traj_future_start|>)` so every
    sequence ends with a prefix the action expert can read). It must end with `stop_token_id`.
    """
    batch = first_logits.shape[0]
    if start_pos.shape != (batch,):
        raise ValueError(f"start_pos must be [batch] = ({batch},), got shape {start_pos.shape}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    suffix = tuple(int(t) for t in forced_suffix)
    if suffix and (suffix[-1] != stop_token_id or len(suffix) > max_new_tokens):
        raise ValueError(
            f"forced_suffix must end with the stop token {stop_token_id} and be at most "
            f"max_new_tokens={max_new_tokens} long, got {suffix}"
        )
    words = noise.key_words(rng)
    if words.shape not in ((2,), (batch, 2)):
        raise ValueError(
            f"rng must be one key or one per sequence ({batch}), got key words of shape {words.shape}"
        )
    keys = words if words.ndim == 2 else sequence_keys(words, batch)
    suffix_arr = jnp.asarray(suffix or (stop_token_id,), jnp.int32)
    suffix_start = max_new_tokens - len(suffix)

    def cond(state):
        i, _, _, stopped, *_ = state
        return (i < max_new_tokens) & ~jnp.all(stopped)

    def body(state):
        i, tokens, num_tokens, stopped, pos, logits, cache = state
        token = sample_token(logits, keys, i, params, banned)
        if suffix:
            forced = suffix_arr[jnp.clip(i - suffix_start, 0, len(suffix) - 1)]
            token = jnp.where(i >= suffix_start, forced, token)
        token = jnp.where(stopped, pad_id, token)
        tokens = tokens.at[:, i].set(token)
        num_tokens = jnp.where(stopped, num_tokens, i + 1)
        logits, cache = decode_step(cache, token, pos)
        stopped = stopped | (token == stop_token_id)
        return i + 1, tokens, num_tokens, stopped, pos + 1, logits, cache

    init = (
        jnp.zeros((), jnp.int32),
        jnp.full((batch, max_new_tokens), pad_id, jnp.int32),
        jnp.zeros((batch,), jnp.int32),
        jnp.zeros((batch,), bool),
        start_pos.astype(jnp.int32),
        first_logits,
        cache,
    )
    _, tokens, num_tokens, stopped, _, _, cache = jax.lax.while_loop(cond, body, init)
    return DecodeResult(
        tokens=tokens,
        num_tokens=num_tokens,
        stopped=stopped,
        next_pos=start_pos.astype(jnp.int32) + num_tokens,
        cache=cache,
    )


def repeat_batch(tree: Any, n: int, batch_axis: int | Any = 0) -> Any:
    """Repeat every array of `tree` n times along its batch axis, scene-major ([b0 x n, b1 x n, ...]).

    This is how N samples per scene share one prefill: prefill B scenes once, then broadcast the
    cache and last logits to B*N rows before decoding. `batch_axis` is an int for every leaf or a
    pytree of ints matching `tree` (e.g. 1 for a `[layers, B, S, kv, d]` cache).
    """
    if n == 1:
        return tree
    if isinstance(batch_axis, int):
        return jax.tree.map(lambda x: jnp.repeat(x, n, axis=batch_axis), tree)
    return jax.tree.map(lambda x, ax: jnp.repeat(x, n, axis=ax), tree, batch_axis)


def bucket_length(length: int, buckets: Sequence[int]) -> int:
    """The smallest bucket >= length: prompts are padded to a few fixed lengths so the prefill
    compiles once per bucket instead of once per prompt length."""
    fitting = [b for b in sorted(buckets) if b >= length]
    if not fitting:
        raise ValueError(f"prompt of {length} tokens exceeds the largest bucket {max(buckets)}")
    return fitting[0]


def make_decode_fn(
    decode_step: DecodeStep,
    *,
    max_new_tokens: int,
    stop_token_id: int,
    pad_id: int = 0,
    params: SamplingParams = SamplingParams(),
    forced_suffix: Sequence[int] = (),
) -> Callable[..., DecodeResult]:
    """`jit(decode_loop)` with the cache donated: XLA updates the preallocated cache in place.

    The returned function takes `(cache, first_logits, start_pos, rng, banned)`; `banned` may be
    None. Do not reuse a cache after passing it in: its buffers now belong to the result.
    """

    def run(cache, first_logits, start_pos, rng, banned=None):
        return decode_loop(
            decode_step,
            cache,
            first_logits,
            start_pos,
            rng,
            max_new_tokens=max_new_tokens,
            stop_token_id=stop_token_id,
            pad_id=pad_id,
            params=params,
            banned=banned,
            forced_suffix=forced_suffix,
        )

    return jax.jit(run, donate_argnums=(0,))
