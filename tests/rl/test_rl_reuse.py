"""Several updates per rollout (`rl.updates_per_rollout`): which steps roll out, what the others
get, the resume inside a cycle, and the config checks."""

import pytest

from alpamayo_jax.rl.reuse import ReusedRollout


class CountingRollout:
    """A stand-in for rl/rollout.py's maker: the batch names the step whose prompts it sampled."""

    def __init__(self):
        self.calls: list[int] = []
        self.bound = None

    def bind(self, shard):
        self.bound = shard

    def __call__(self, layout, state, prompts, step):
        self.calls.append(step)
        return {"sampled_at": step, "prompts": prompts}, {"reward/total": float(step)}


def test_a_rollout_serves_its_cycle_and_the_next_cycle_rolls_out_again():
    inner = CountingRollout()
    reuse = ReusedRollout(inner, 3)
    out = [reuse(None, None, f"prompts {s}", s) for s in range(1, 8)]
    assert inner.calls == [1, 4, 7]
    assert [batch["sampled_at"] for batch, _ in out] == [1, 1, 1, 4, 4, 4, 7]
    assert [m["rollout/reused"] for _, m in out] == [0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    assert out[2][0]["prompts"] == "prompts 1"  # the reuse steps' own prompts are not used
    assert out[5][1]["reward/total"] == 4.0  # ... and they log their rollout's rewards
    reuse.bind("shard")  # the wrapped maker's methods stay reachable
    assert inner.bound == "shard"


def test_one_update_per_rollout_rolls_out_every_step():
    inner = CountingRollout()
    reuse = ReusedRollout(inner, 1)
    assert [reuse(None, None, None, s)[1]["rollout/reused"] for s in (1, 2, 3)] == [0.0, 0.0, 0.0]
    assert inner.calls == [1, 2, 3]


def test_resuming_inside_a_cycle_rolls_out_afresh_and_says_so(capsys):
    inner = CountingRollout()
    reuse = ReusedRollout(inner, 4)
    for step in (6, 7, 8, 9):  # a preemption checkpoint at step 5, resumed
        reuse(None, None, None, step)
    assert inner.calls == [6, 9]
    err = capsys.readouterr().err
    assert err == (
        "rl: step 6 resumes inside a rollout cycle of 4 updates; its rollout is sampled afresh from "
        "the restored weights (resume is exact only from a cycle end)\n"
    )


def test_zero_updates_is_refused():
    with pytest.raises(ValueError, match="rl.updates_per_rollout must be >= 1, got 0"):
        ReusedRollout(CountingRollout(), 0)
