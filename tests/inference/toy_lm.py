"""A one-layer attention language model small enough to check the decode loop against full forwards.

Its next-token logits depend on the whole context through attention, so a decode loop that writes
the wrong cache slot, reads past the valid length or skips a token gives different tokens than the
full forward. The cached step uses the project's decode-attention switch, like the real model.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from alpamayo_jax.kernels import decode_attention

VOCAB, DIM, HEADS, KV_HEADS, HEAD_DIM = 32, 16, 2, 1, 16


@dataclasses.dataclass
class ToyLM:
    emb: jax.Array
    wq: jax.Array
    wk: jax.Array
    wv: jax.Array
    wo: jax.Array
    head: jax.Array

    @classmethod
    def create(cls, seed: int) -> ToyLM:
        ks = jax.random.split(jax.random.key(seed), 6)
        n = lambda k, s: jax.random.normal(k, s) / jnp.sqrt(s[0])  # noqa: E731
        return cls(
            emb=jax.random.normal(ks[0], (VOCAB, DIM)),
            wq=n(ks[1], (DIM, HEADS * HEAD_DIM)),
            wk=n(ks[2], (DIM, KV_HEADS * HEAD_DIM)),
            wv=n(ks[3], (DIM, KV_HEADS * HEAD_DIM)),
            wo=n(ks[4], (HEADS * HEAD_DIM, DIM)) * 3.0,
            head=n(ks[5], (DIM, VOCAB)) * 2.0,
        )

    def _qkv(self, x):
        lead = x.shape[:-1]
        q = (x @ self.wq).reshape(*lead, HEADS, HEAD_DIM)
        k = (x @ self.wk).reshape(*lead, KV_HEADS, HEAD_DIM)
        v = (x @ self.wv).reshape(*lead, KV_HEADS, HEAD_DIM)
        return q, k, v

    def _logits(self, x, attn):
        h = x + attn.reshape(*attn.shape[:-2], -1) @ self.wo
        return h @ self.head

    def forward(self, tokens):
        """Full causal forward: logits [B, L, V] for every position."""
        x = self.emb[tokens]
        q, k, v = self._qkv(x)
        group = HEADS // KV_HEADS
        k, v = jnp.repeat(k, group, axis=2), jnp.repeat(v, group, axis=2)
        s = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(HEAD_DIM)
        causal = jnp.tril(jnp.ones((tokens.shape[1],) * 2, bool))
        w = jax.nn.softmax(jnp.where(causal, s, -jnp.inf), axis=-1)
        return self._logits(x, jnp.einsum("bhqk,bkhd->bqhd", w, v))

    def prefill(self, tokens, lengths, capacity):
        """Cache of the right-padded prompts and the logits after each prompt's last token."""
        x = self.emb[tokens]
        _, k, v = self._qkv(x)
        pad = capacity - tokens.shape[1]
        cache = {
            "k": jnp.pad(k, ((0, 0), (0, pad), (0, 0), (0, 0))),
            "v": jnp.pad(v, ((0, 0), (0, pad), (0, 0), (0, 0))),
        }
        logits = self.forward(tokens)
        last = jnp.take_along_axis(logits, (lengths - 1)[:, None, None], axis=1)[:, 0]
        return cache, last

    def decode_step(self, cache, token, pos, impl="xla"):
        x = self.emb[token]
        q, k, v = self._qkv(x)
        rows = jnp.arange(token.shape[0])
        cache = {"k": cache["k"].at[rows, pos].set(k), "v": cache["v"].at[rows, pos].set(v)}
        attn = decode_attention(q, cache["k"], cache["v"], pos + 1, impl=impl)
        return self._logits(x, attn), cache
