"""`alpamayo rl` end to end on a small setup: metrics and checkpoints, exact resume, the 8-device
run equal to one device, and one-line errors for a bad --init or rl value."""

import json

import jax
import numpy as np
import pytest
from rl_fixture import REPO, rl_config

from alpamayo_jax.cli import main
from alpamayo_jax.parallel.mesh import single_device_mesh
from alpamayo_jax.recipes.grpo import train_grpo
from alpamayo_jax.training.metrics import read_metrics

REWARD_KEYS = {
    f"reward/{k}" for k in ("reasoning", "consistency", "expert", "collision", "off_road", "comfort", "total")
}


def alpamayo_rl(workdir, init, *overrides) -> int:
    """`alpamayo rl --config configs/tiny_grpo.py --workdir W --init I [overrides]`: its exit code."""
    config = str(REPO / "configs" / "tiny_grpo.py")
    return main(["rl", "--config", config, "--workdir", str(workdir), "--init", str(init), *overrides])


@pytest.fixture(scope="module")
def init(policy_workdir):
    return str(policy_workdir[0])


@pytest.fixture(scope="module")
def full(init, tmp_path_factory):
    """4 steps on the default mesh (8 fake devices: fsdp 8)."""
    root = tmp_path_factory.mktemp("grpo")
    workdir = root / "full"
    return root, workdir, train_grpo(rl_config(root, steps=4), workdir, init, progress=False)


@pytest.mark.slow
def test_a_run_logs_rewards_and_saves_rl_checkpoints(full):
    root, workdir, result = full
    assert result.final_step == 4 and result.checkpoints == [2, 4]
    records = read_metrics(workdir, "train")
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert REWARD_KEYS | {"loss/policy_tokens", "loss/policy_flow", "rollout/kept_groups"} <= set(records[0])
    assert all(np.isfinite(r["loss"]) for r in records)
    meta = json.loads((workdir / "checkpoints" / "4" / "meta" / "metadata").read_text())
    assert meta["stage"] == "rl" and meta["rl_init"].endswith("wd")
    assert (workdir / "assets" / "tokenizer.json").is_file() and (
        workdir / "assets" / "action_stats.json"
    ).is_file()
    # the first update is on-policy: the sampler's and the scorer's step log-probs agree
    assert records[0]["rollout/step_logp_gap"] < 1e-2


@pytest.mark.slow
def test_resume_reproduces_the_losses_exactly(full, init):
    root, _, result = full
    workdir = root / "resumed"
    train_grpo(rl_config(root, steps=2), workdir, init, progress=False)
    resumed = train_grpo(rl_config(root, steps=4), workdir, init, progress=False)
    assert resumed.resumed_from == 2
    assert {s: resumed.losses[s] for s in (3, 4)} == {s: result.losses[s] for s in (3, 4)}
    jax.tree.map(np.testing.assert_array_equal, resumed.state.params, result.state.params)


@pytest.mark.slow
def test_two_updates_per_rollout_train_off_policy_and_resume_exactly(init, tmp_path):
    config = rl_config(tmp_path, steps=4, updates_per_rollout=2)
    mesh = single_device_mesh(config.mesh)
    straight = train_grpo(config, tmp_path / "straight", init, mesh=mesh, progress=False)
    records = read_metrics(tmp_path / "straight", "train")
    assert [r["rollout/reused"] for r in records] == [0.0, 1.0, 0.0, 1.0]
    assert records[1]["reward/total"] == records[0]["reward/total"]  # step 2 trains on step 1's rollout
    assert records[0]["rollout/step_logp_gap"] < 1e-2  # ... which step 1 trained on on-policy
    assert records[1]["loss"] != records[0]["loss"]  # ... and step 2 off it, after one update
    train_grpo(
        rl_config(tmp_path, steps=2, updates_per_rollout=2),
        tmp_path / "resumed",
        init,
        mesh=mesh,
        progress=False,
    )
    resumed = train_grpo(config, tmp_path / "resumed", init, mesh=mesh, progress=False)
    assert resumed.resumed_from == 2
    assert {s: resumed.losses[s] for s in (3, 4)} == {s: straight.losses[s] for s in (3, 4)}
    jax.tree.map(np.testing.assert_array_equal, resumed.state.params, straight.state.params)


@pytest.mark.slow
def test_the_sharded_run_equals_one_device(full, init):
    """Step 1 on 8 devices (fsdp 8) and on one: the same rollout (rewards to float rounding of the
    sharded reductions), the same gradient and update. (The on-policy loss itself is ~0.)"""
    root, _, _ = full
    assert len(jax.devices()) == 8
    config = rl_config(root, steps=1)
    train_grpo(config, root / "single", init, mesh=single_device_mesh(config.mesh), progress=False)
    sharded = read_metrics(root / "full", "train")[0]
    single = read_metrics(root / "single", "train")[0]
    for key in ("reward/total", "reward/reasoning", "reward/expert", "param_norm"):
        np.testing.assert_allclose(single[key], sharded[key], rtol=1e-3, err_msg=key)
    # The rewards' rounding (~1e-4 relative) passes through advantages divided by the groups'
    # reward std, so the gradient matches a little less tightly.
    np.testing.assert_allclose(single["grad_norm"], sharded["grad_norm"], rtol=3e-3)
    assert single["reward/consistency"] == sharded["reward/consistency"]


def test_a_missing_init_workdir_is_one_line_and_exit_2(tmp_path, capsys):
    rc = alpamayo_rl(tmp_path / "w", tmp_path / "nope")
    assert rc == 2
    assert (
        capsys.readouterr().err
        == f"alpamayo rl: --init: the SFT workdir {tmp_path / 'nope'} does not exist\n"
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "--config.rl.group_size=1",
            "rl.group_size must be >= 2 (advantages compare samples of one prompt), got 1",
        ),
        (
            "--config.rl.train=('tokens',)",
            "rl.train must be a non-empty subset of ('reasoning', 'trajectory_tokens', 'expert'), got ('tokens',)",
        ),
        ("--config.rl.flow_noise=0.0", "rl.flow_noise must be > 0 when rl.train has 'expert', got 0.0"),
        ("--config.rl.updates_per_rollout=0", "rl.updates_per_rollout must be >= 1, got 0"),
        (
            "--config.rl.updates_per_rollout=4",
            "train.steps must be a multiple of rl.updates_per_rollout (4) so that checkpoints fall "
            "between rollouts, got 150",
        ),
    ],
)
def test_bad_rl_values_name_the_field(tmp_path, capsys, override, message, init):
    rc = alpamayo_rl(tmp_path, init, override)
    assert rc == 2
    assert capsys.readouterr().err == f"alpamayo rl: {message}\n"


def test_alpamayo_train_refuses_the_rl_stage(tmp_path, capsys):
    rc = main(
        [
            "train",
            "--config",
            str(REPO / "configs" / "tiny_vision.py"),
            "--workdir",
            str(tmp_path),
            "--config.train.stage=rl",
        ]
    )
    assert rc == 2
    assert (
        capsys.readouterr().err
        == "alpamayo train: train.stage='rl' is trained by `alpamayo rl`, not `alpamayo train`\n"
    )


def test_an_unknown_reward_writes_nothing(tmp_path, capsys, init):
    workdir = tmp_path / "w"
    rc = alpamayo_rl(workdir, init, "--config.rl.critic=llm")
    assert rc == 2
    assert capsys.readouterr().err == "alpamayo rl: rl.critic: expected one of ('world',), got 'llm'\n"
    assert not workdir.exists()


@pytest.mark.slow
def test_all_three_kinds_train_with_the_sft_policy_as_kl_reference_starting_on_policy(init, tmp_path):
    """Reasoning tokens, discrete trajectory tokens and the expert in one run with a KL weight: every
    kind has its loss terms, the discrete head's plans their own rewards, the first update is
    on-policy (KL to the SFT reference 0, nothing clipped)."""
    kinds = ("reasoning", "trajectory_tokens", "expert")
    config = rl_config(tmp_path, steps=1, kl_weight=0.1, train=kinds)
    result = train_grpo(config, tmp_path / "kl", init, progress=False)
    first = read_metrics(tmp_path / "kl", "train")[0]
    for kind in ("tokens", "traj", "flow"):
        assert abs(first[f"loss/kl_{kind}"]) < 1e-6 and first[f"loss/clipped_{kind}"] == 0.0, kind
        assert np.isfinite(first[f"loss/policy_{kind}"]), kind
    assert {f"reward_token_plan/{k}" for k in ("consistency", "expert", "comfort")} <= set(first)
    assert result.final_step == 1


def test_prompts_that_do_not_split_into_whole_groups_per_process_are_refused(
    tmp_path, capsys, init, monkeypatch
):
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    rc = alpamayo_rl(tmp_path, init, "--config.rl.prompts_per_step=3")
    assert rc == 2
    assert capsys.readouterr().err == (
        "alpamayo rl: rl.prompts_per_step must be a multiple of the process count 2 "
        "(each process rolls out whole groups), got 3\n"
    )
    assert not any(tmp_path.iterdir())


def test_incomplete_multi_host_flags_are_one_line_and_exit_2(tmp_path, capsys, init):
    rc = alpamayo_rl(tmp_path / "w", init, "--coordinator", "127.0.0.1:5")
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("alpamayo rl: multi-process run needs coordinator, num_processes and process_id")
    assert err.count("\n") == 1 and not (tmp_path / "w").exists()
