"""The decode loop and token sampling, on a toy attention LM and a table-driven toy model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from toy_lm import VOCAB, ToyLM

from alpamayo_jax.inference.sampler import (
    SamplingParams,
    bucket_length,
    decode_loop,
    make_decode_fn,
    repeat_batch,
    sample_token,
    top_p_filter,
)

STOP, PAD = 3, 0


def _greedy_by_full_forwards(model, prompt, n):
    """The definition of greedy decoding: re-run the whole sequence, append the argmax.

    The sequence is right-padded to a fixed length (causal attention never looks right), so the
    forward compiles once."""
    forward = jax.jit(lambda t: model.forward(t)[0])
    seq = list(prompt)
    for _ in range(n):
        logits = forward(jnp.array([seq + [PAD] * (len(prompt) + n - len(seq))]))[len(seq) - 1]
        seq.append(int(jnp.argmax(logits)))
    return seq[len(prompt) :]


def test_greedy_with_cache_equals_argmax_of_full_forwards():
    model = ToyLM.create(0)
    prompts = [[5, 9, 1, 30, 7], [2, 11], [4, 4, 8, 19]]  # ragged: right-padded in the batch
    lengths = jnp.array([len(p) for p in prompts])
    tokens = jnp.array([p + [PAD] * (5 - len(p)) for p in prompts])
    cache, first = model.prefill(tokens, lengths, capacity=20)
    out = decode_loop(
        model.decode_step,
        cache,
        first,
        lengths,
        jax.random.key(0),
        max_new_tokens=12,
        stop_token_id=VOCAB + 1,  # unreachable: run all 12 steps
    )
    for b, prompt in enumerate(prompts):
        assert out.tokens[b].tolist() == _greedy_by_full_forwards(model, prompt, 12)
    assert out.num_tokens.tolist() == [12, 12, 12]
    assert out.next_pos.tolist() == [17, 14, 16]


def test_decode_with_the_pallas_kernel_in_interpret_mode_gives_the_same_tokens():
    model = ToyLM.create(1)
    tokens = jnp.array([[5, 9, 1], [2, 11, 0]])
    lengths = jnp.array([3, 2])
    runs = []
    for impl in ("xla", "pallas_interpret"):
        cache, first = model.prefill(tokens, lengths, capacity=24)
        step = lambda c, t, p, impl=impl: model.decode_step(c, t, p, impl=impl)  # noqa: E731
        out = decode_loop(
            step, cache, first, lengths, jax.random.key(0), max_new_tokens=6, stop_token_id=VOCAB + 1
        )
        runs.append(out.tokens.tolist())
    assert runs[0] == runs[1]


# --- a table-driven toy: next token = TABLE[token], cache = the tokens fed, slot by slot ----------

TABLE = np.arange(VOCAB) + 1  # 10 -> 11 -> 12 ...
TABLE[8], TABLE[20] = STOP, STOP  # chains end at 8 -> STOP and 20 -> STOP
TABLE[STOP] = 5  # after the stop the model would go on: the loop must not


def _table_step(cache, token, pos):
    logits = jax.nn.one_hot(jnp.asarray(TABLE)[token], VOCAB) * 10.0
    return logits, cache.at[jnp.arange(token.shape[0]), pos].set(token)


def _table_start(first_tokens, capacity=16):
    first_logits = jax.nn.one_hot(jnp.array(first_tokens), VOCAB) * 10.0
    return jnp.full((len(first_tokens), capacity), -1, jnp.int32), first_logits


def test_each_sequence_stops_at_its_own_stop_token_and_the_stop_token_is_cached():
    cache, first = _table_start([6, 18, 1])  # stops after 3, after 3 (18,19,20), never within 5
    start = jnp.array([2, 0, 1])
    out = decode_loop(
        _table_step, cache, first, start, jax.random.key(0), max_new_tokens=5, stop_token_id=STOP, pad_id=PAD
    )
    assert out.tokens.tolist() == [[6, 7, 8, STOP, PAD], [18, 19, 20, STOP, PAD], [1, 2, 3, 0, 0]]
    # sequence 2 hits STOP=3 by counting up: 1, 2, 3 -> stopped at 3 tokens
    assert out.num_tokens.tolist() == [4, 4, 3]
    assert out.stopped.tolist() == [True, True, True]
    assert out.next_pos.tolist() == [6, 4, 4]
    cached = np.asarray(out.cache)
    assert cached[0, 2:6].tolist() == [6, 7, 8, STOP]  # the stop token's slot is written
    assert cached[1, 0:4].tolist() == [18, 19, 20, STOP]


def test_batch_runs_until_max_tokens_when_a_sequence_never_stops():
    cache, first = _table_start([8, 10])  # first stops at once; second counts 10..14
    out = decode_loop(
        _table_step,
        cache,
        first,
        jnp.array([0, 0]),
        jax.random.key(0),
        max_new_tokens=5,
        stop_token_id=STOP,
        pad_id=PAD,
    )
    assert out.tokens.tolist() == [[8, STOP, PAD, PAD, PAD], [10, 11, 12, 13, 14]]
    assert out.num_tokens.tolist() == [2, 5]
    assert out.stopped.tolist() == [True, False]


def test_forced_suffix_closes_unfinished_sequences():
    cache, first = _table_start([10, 7])
    out = decode_loop(
        _table_step,
        cache,
        first,
        jnp.array([0, 0]),
        jax.random.key(0),
        max_new_tokens=6,
        stop_token_id=STOP,
        pad_id=PAD,
        forced_suffix=(30, STOP),
    )
    assert out.tokens.tolist() == [[10, 11, 12, 13, 30, STOP], [7, 8, STOP, PAD, PAD, PAD]]
    assert out.stopped.tolist() == [True, True]
    with pytest.raises(ValueError, match="forced_suffix must end with the stop token 3"):
        decode_loop(
            _table_step,
            cache,
            first,
            jnp.array([0, 0]),
            jax.random.key(0),
            max_new_tokens=6,
            stop_token_id=STOP,
            forced_suffix=(STOP, 30),
        )


def test_banned_tokens_are_never_chosen():
    cache, first = _table_start([6, 18])
    banned = jnp.zeros(VOCAB, bool).at[7].set(True).at[19].set(True)
    out = decode_loop(
        _table_step,
        cache,
        first,
        jnp.array([0, 0]),
        jax.random.key(0),
        max_new_tokens=4,
        stop_token_id=STOP,
        banned=banned,
    )
    tokens = np.asarray(out.tokens)
    assert not np.isin(tokens, [7, 19]).any()
    assert tokens[:, 0].tolist() == [6, 18]


def test_jitted_loop_donates_the_cache():
    cache, first = _table_start([6, 18])
    fn = make_decode_fn(_table_step, max_new_tokens=4, stop_token_id=STOP)
    out = fn(cache, first, jnp.array([0, 0]), jax.random.key(0))
    assert cache.is_deleted()
    assert np.asarray(out.cache)[0, :4].tolist() == [6, 7, 8, STOP]


# --- sampling ----------------------------------------------------------------------------------


def test_top_p_keeps_the_smallest_nucleus():
    logits = jnp.log(jnp.array([[0.05, 0.5, 0.15, 0.3]]))
    kept = lambda p: np.isfinite(np.asarray(top_p_filter(logits, p)))[0].tolist()  # noqa: E731
    assert kept(0.4) == [False, True, False, False]
    assert kept(0.7) == [False, True, False, True]
    assert kept(0.9) == [False, True, True, True]
    assert kept(1.0) == [True, True, True, True]


def test_temperature_sampling_follows_the_softmax():
    logits = jnp.tile(jnp.array([[1.0, 0.0, 2.0, -1.0]]), (4000, 1))
    keys = jax.vmap(lambda b: jax.random.fold_in(jax.random.key(3), b))(jnp.arange(4000))
    tokens = sample_token(logits, keys, 0, SamplingParams(temperature=2.0))
    freq = np.bincount(np.asarray(tokens), minlength=4) / 4000
    np.testing.assert_allclose(freq, jax.nn.softmax(logits[0] / 2.0), atol=0.03)


def test_sampling_is_reproducible_per_seed_and_independent_of_batch_size():
    model = ToyLM.create(2)
    tokens = jnp.array([[5, 9, 1], [2, 11, 7], [6, 6, 6]])
    lengths = jnp.array([3, 3, 3])
    params = SamplingParams(temperature=1.0, top_p=0.95)

    def run(seed, rows):
        cache, first = model.prefill(tokens[rows], lengths[rows], capacity=16)
        return decode_loop(
            model.decode_step,
            cache,
            first,
            lengths[rows],
            jax.random.key(seed),
            max_new_tokens=10,
            stop_token_id=VOCAB + 1,
            params=params,
        ).tokens

    a, b, c = run(7, slice(0, 3)), run(7, slice(0, 3)), run(8, slice(0, 3))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(run(7, slice(0, 2)), a[:2])


def test_raw_key_words_sample_like_typed_keys_and_bad_rng_shapes_are_named():
    """The exported planner passes uint32 key words (inference/noise.py), tests pass typed keys:
    the same key either way gives the same tokens."""
    model = ToyLM.create(2)
    tokens, lengths = jnp.array([[5, 9, 1], [2, 11, 7]]), jnp.array([3, 3])
    params = SamplingParams(temperature=1.0)

    def run(rng):
        cache, first = model.prefill(tokens, lengths, capacity=16)
        return decode_loop(model.decode_step, cache, first, lengths, rng, max_new_tokens=8,
                           stop_token_id=VOCAB + 1, params=params).tokens  # fmt: skip

    typed = run(jax.random.key(4))
    np.testing.assert_array_equal(run(jax.random.key_data(jax.random.key(4))), typed)
    per_row = jax.vmap(lambda b: jax.random.fold_in(jax.random.key(4), b))(jnp.arange(2))
    np.testing.assert_array_equal(run(jax.random.key_data(per_row)), typed)
    message = r"rng must be one key or one per sequence \(2\), got key words of shape \(3, 2\)"
    with pytest.raises(ValueError, match=message):
        run(jnp.zeros((3, 2), jnp.uint32))


def test_repeat_batch_is_scene_major_on_the_named_axis():
    cache = {"k": jnp.arange(2 * 3).reshape(1, 2, 3), "logits": jnp.array([[1.0], [2.0]])}
    out = repeat_batch(cache, 2, batch_axis={"k": 1, "logits": 0})
    assert out["k"][0, :, 0].tolist() == [0, 0, 3, 3]
    assert out["logits"][:, 0].tolist() == [1.0, 1.0, 2.0, 2.0]


def test_n_samples_share_one_prefill():
    model = ToyLM.create(3)
    tokens, lengths = jnp.array([[5, 9, 1], [2, 11, 7]]), jnp.array([3, 2])
    cache, first = model.prefill(tokens, lengths, capacity=16)
    n = 3
    cache, first, start = repeat_batch((cache, first, lengths), n)
    out = decode_loop(
        model.decode_step,
        cache,
        first,
        start,
        jax.random.key(0),
        max_new_tokens=6,
        stop_token_id=VOCAB + 1,
        params=SamplingParams(temperature=1.5),
    )
    toks = np.asarray(out.tokens).reshape(2, n, 6)
    assert len({tuple(t) for t in toks[0]}) > 1  # samples of one scene differ
    for k in range(n):  # and each sample continues its own scene's prompt
        solo_cache, solo_first = model.prefill(tokens[:1], lengths[:1], capacity=16)
        step0 = sample_token(solo_first, out_keys(0, k, n), 0, SamplingParams(temperature=1.5))
        assert int(step0[0]) == toks[0, k, 0]


def out_keys(scene, sample, n):
    """The per-sequence key of row scene*n+sample, as `decode_loop` derives it."""
    return jax.random.fold_in(jax.random.key(0), scene * n + sample)[None]


def test_bad_sampling_parameters_and_buckets_raise_clear_errors():
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\], got 0.0"):
        SamplingParams(temperature=1.0, top_p=0.0)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        SamplingParams(temperature=-1.0)
    assert bucket_length(100, (64, 128, 256)) == 128
    with pytest.raises(ValueError, match="prompt of 300 tokens exceeds the largest bucket 256"):
        bucket_length(300, (64, 128, 256))
