"""History delta tokens (48) and future action tokens (128): layout, round trip, clipping."""

import jax
import ml_collections
import numpy as np
import pytest

from alpamayo_jax.config.base import tokens_config
from alpamayo_jax.trajectory import tokenize

CFG = tokens_config()
H, T = 16, 64
XY_HALF_BIN = 4.0 / 1000  # half of (2 x 4 m) / 1000 bins
Z_HALF_BIN = 10.0 / 1000
FUTURE_HALF_BIN = 3.0 / 1000
FLOAT_SLACK = 1e-5  # float32 rounding of positions up to ~60 m

_encode_history = jax.jit(lambda xyz: tokenize.encode_history(xyz, CFG))
_decode_history = jax.jit(lambda tok: tokenize.decode_history(tok, CFG))
_encode_future = jax.jit(lambda a: tokenize.encode_future(a, CFG))
_decode_future = jax.jit(lambda tok: tokenize.decode_future(tok, CFG))


def _histories(rng, n):
    """Realistic 1.6 s histories ending at the origin: speeds up to 35 m/s, gentle turns, slopes."""
    speed = rng.uniform(0.0, 35.0, (n, 1))
    yaw = np.cumsum(rng.normal(0.0, 0.03, (n, H - 1)), axis=1)
    rise = rng.normal(0.0, 0.05, (n, H - 1))
    step = np.stack([speed * 0.1 * np.cos(yaw), speed * 0.1 * np.sin(yaw), rise], axis=-1)
    xyz = np.concatenate([np.zeros((n, 1, 3)), np.cumsum(step, axis=1)], axis=1)
    return (xyz - xyz[:, -1:]).astype(np.float32)


def test_quantize_hand_values():
    # 1000 bins over [-4, 4]: width 8 mm; bin i covers [-4 + 8i mm, -4 + 8(i+1) mm).
    idx = tokenize.quantize(np.float32([1.003, -0.499, -4.0, 3.999]), 4.0, 1000)
    np.testing.assert_array_equal(idx, [625, 437, 0, 999])
    centres = tokenize.dequantize([625, 437, 0, 999], 4.0, 1000)
    np.testing.assert_allclose(centres, [1.004, -0.5, -3.996, 3.996], atol=1e-6)


def test_history_round_trip_within_half_a_bin():
    xyz = _histories(np.random.default_rng(0), 64)
    tokens = np.asarray(_encode_history(xyz))
    assert tokens.shape == (64, 3 * H) and tokens.dtype == np.int32
    assert tokens.min() >= 0 and tokens.max() < CFG.history_bins
    decoded = np.asarray(_decode_history(tokens))
    err = np.abs(decoded - xyz)
    # Error feedback: every pose, even the oldest (up to 53 m back), is within half a bin per axis.
    assert err[..., :2].max() <= XY_HALF_BIN + FLOAT_SLACK
    assert err[..., 2].max() <= Z_HALF_BIN + FLOAT_SLACK
    np.testing.assert_array_equal(decoded[:, -1], 0.0)  # the t0 anchor


def test_history_tokens_are_pose_major_deltas_with_a_constant_velocity_first_delta():
    # 12.52 m/s straight ahead, rising 1 cm per step: every delta (1.252, 0, 0.01) m is a bin centre
    # (x: -4 + 656.5 x 0.008; z: -10 + 500.5 x 0.02), so every pose gets the same triple.
    steps = np.arange(-15, 1)
    xyz = np.stack([1.252 * steps, np.zeros(H), 0.01 * steps], axis=-1).astype(np.float32)
    tokens = np.asarray(_encode_history(xyz)).reshape(H, 3)
    np.testing.assert_array_equal(tokens[:, 0], 656)
    np.testing.assert_array_equal(tokens[:, 2], 500)
    np.testing.assert_array_equal(tokens[0], tokens[1])  # delta 0 extrapolates delta 1


def test_history_error_feedback_stops_drift():
    # 12.5 m/s: each delta is 2 mm below the centre of bin 656, so rounding every delta alone would
    # put the oldest pose 15 x 2 = 30 mm off. Error feedback spends a 655 now and then instead.
    steps = np.arange(-15, 1)
    xyz = np.stack([1.25 * steps, np.zeros(H), np.zeros(H)], axis=-1).astype(np.float32)
    tokens = np.asarray(_encode_history(xyz)).reshape(H, 3)
    assert set(tokens[1:, 0].tolist()) == {655, 656}
    decoded = np.asarray(_decode_history(tokens.reshape(-1)))
    assert np.abs(decoded[:, 0] - xyz[:, 0]).max() <= XY_HALF_BIN + FLOAT_SLACK


def test_history_delta_beyond_range_clips_to_the_end_bins():
    # 50 m/s backwards in x: 5 m per step exceeds the 4 m range.
    xyz = np.stack([-5.0 * np.arange(-15, 1), np.zeros(H), np.zeros(H)], axis=-1).astype(np.float32)
    tokens = np.asarray(_encode_history(xyz)).reshape(H, 3)
    assert (tokens[:, 0] == 0).all()
    decoded = np.asarray(_decode_history(tokens.reshape(-1)))
    np.testing.assert_allclose(np.diff(decoded[:, 0]), -4.0 + XY_HALF_BIN, rtol=1e-5)


def test_future_round_trip_interleaving_and_clipping():
    rng = np.random.default_rng(1)
    norm = rng.uniform(-3.0, 3.0, (4, T, 2)).astype(np.float32)
    tokens = np.asarray(_encode_future(norm))
    assert tokens.shape == (4, 2 * T) and tokens.dtype == np.int32
    # Interleaved a0, k0, a1, k1, ...: bin = floor(value / 0.006 + 500).
    np.testing.assert_array_equal(tokens[:, 0::2], np.floor(norm[..., 0] / np.float32(0.006) + 500))
    np.testing.assert_array_equal(tokens[:, 1::2], np.floor(norm[..., 1] / np.float32(0.006) + 500))
    decoded = np.asarray(_decode_future(tokens))
    assert np.abs(decoded - norm).max() <= FUTURE_HALF_BIN + 1e-6

    wild = np.zeros((T, 2), np.float32)
    wild[0] = (7.0, -9.0)
    out = np.asarray(_encode_future(wild[None])[0])
    assert out[0] == 999 and out[1] == 0
    edges = [3.0 - FUTURE_HALF_BIN, -3.0 + FUTURE_HALF_BIN]
    np.testing.assert_allclose(_decode_future(out[None])[0][0], edges, atol=1e-6)


def test_bins_and_ranges_come_from_the_config():
    cfg = ml_collections.ConfigDict(dict(CFG))
    cfg.future_bins, cfg.future_range = 10, 1.0
    tokens = np.asarray(tokenize.encode_future(np.float32([[0.05, -0.95]]), cfg))
    np.testing.assert_array_equal(tokens, [5, 0])  # width 0.2: [0, 0.2) is bin 5, [-1, -0.8) bin 0
    np.testing.assert_allclose(tokenize.decode_future(tokens, cfg), [[0.1, -0.9]], atol=1e-6)


def test_jit_and_vmap_match_eager():
    xyz = _histories(np.random.default_rng(2), 6).reshape(2, 3, H, 3)
    eager = np.asarray(tokenize.encode_history(xyz, CFG))
    np.testing.assert_array_equal(_encode_history(xyz), eager)
    np.testing.assert_array_equal(jax.jit(jax.vmap(_encode_history))(xyz), eager)
    decoded = tokenize.decode_history(eager, CFG)
    np.testing.assert_allclose(jax.vmap(_decode_history)(eager), decoded, atol=1e-6)


def test_bad_shapes_name_the_field():
    with pytest.raises(ValueError, match=r"history_xyz: expected shape \[\.\.\., H, 3\]"):
        tokenize.encode_history(np.zeros((H, 2)), CFG)
    with pytest.raises(ValueError, match=r"norm_actions: expected shape \[\.\.\., T, 2\]"):
        tokenize.encode_future(np.zeros((T, 3)), CFG)
    with pytest.raises(ValueError, match=r"history tokens: expected a last axis of 3 x H"):
        tokenize.decode_history(np.zeros((47,), np.int32), CFG)
