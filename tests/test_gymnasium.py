"""Beyond Atari: the gymnasium family (seeding, NEXT_STEP autoreset, truncation, clipped Box actions), the mlp
network and its observation normalisation, and CartPole / Pendulum end to end through the real CLI."""
import json
import os

import gymnasium
import numpy as np
import pytest
import tensorflow as tf

import envs
import specs
from batch_agents import BatchAgents
from helpers import QUIET, Proc, cli_env, file_hashes, hp_for, one_error_line, progress_rows, run
from network import RunningObsNorm, build_network, resolve_kind


def test_gymnasium_ids_go_to_the_gymnasium_family_and_atari_ids_stay_with_ale():
    assert envs.family_of("CartPole-v1") is envs.GYMNASIUM and envs.family_of("Pendulum-v1") is envs.GYMNASIUM
    assert envs.family_of("ALE/Pong-v5") is envs.ALE and envs.family_of("pong") is envs.ALE
    assert envs.family_of("retro:Airstriker-Genesis") is envs.RETRO
    assert envs.check_env_id("CartPole-v1") == "CartPole-v1"


def test_each_env_is_seeded_like_a_single_env_and_autoresets_in_next_step_mode():
    env = envs.make_vector_env(hp_for("CartPole-v1"), 3)
    obs, _ = env.reset(seed=5)
    for j in range(3):
        single, _ = gymnasium.make("CartPole-v1").reset(seed=5 + j)
        np.testing.assert_array_equal(obs[j], single.astype(np.float32))
    assert obs.dtype == np.float32
    agents = BatchAgents(env, seed=5)
    for _ in range(200):  # always pushing left ends every episode within a few dozen steps
        reward, terminated, truncated, valid, (returns, _) = agents.step(np.zeros(3, np.int32))
        if terminated[0]:
            break
    assert terminated[0] and returns
    reward, terminated, truncated, valid, _ = agents.step(np.zeros(3, np.int32))
    assert not valid[0] and reward[0] == 0.0 and agents.reset_next[0]  # the autoreset step is masked
    env.close()


def test_box_actions_reach_the_env_clipped_while_the_rollout_keeps_the_sample_and_time_limit_truncates():
    env = envs.make_vector_env(hp_for("Pendulum-v1"), 2)
    reference = gymnasium.make("Pendulum-v1")
    ref_obs, _ = reference.reset(seed=3)
    agents = BatchAgents(env, seed=3)
    np.testing.assert_allclose(agents.obs[0], ref_obs, rtol=1e-6)

    def push_hard(obs, state, reset, seed):  # 5 is outside Pendulum's [-2, 2]
        return np.full((2, 1), 5.0, np.float32), np.zeros(2, np.float32), state
    rollout, _ = agents.collect(push_hard, 200)
    assert rollout.actions.dtype == np.float32 and rollout.actions.shape == (200, 2, 1)
    assert np.all(rollout.actions == 5.0)
    for t in range(200):
        np.testing.assert_allclose(rollout.obs[t, 0], ref_obs, rtol=1e-5, atol=1e-6)
        ref_obs, ref_reward, _, ref_truncated, _ = reference.step(np.array([2.0], np.float32))
        np.testing.assert_allclose(rollout.rewards[t, 0], ref_reward, rtol=1e-5)
    # Pendulum's registered time limit is 200 steps: a truncation (bootstrap from V), never a termination.
    assert ref_truncated and rollout.truncated[199].all() and not rollout.terminated.any()
    assert rollout.valid.all()
    env.close()


def test_running_obs_norm_matches_numpy_over_batches_with_masks():
    rng = np.random.default_rng(0)
    norm = RunningObsNorm(3)
    seen = []
    for n in (7, 1, 12, 0):
        x = (rng.normal(size=(n, 3)) * [1.0, 5.0, 0.1] + [2.0, -1.0, 0.0]).astype(np.float32)
        mask = rng.random(n) < 0.7
        norm.update(tf.constant(x.reshape(n, 3)), tf.constant(mask))
        seen.append(x[mask])
    seen = np.concatenate(seen)
    np.testing.assert_allclose(norm.mean.numpy(), seen.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(norm.var.numpy(), seen.var(0), rtol=1e-4)
    assert norm.count.numpy() == len(seen)
    probe = np.array([[100.0, 0.0, 0.0]], np.float32)
    expected = np.clip((probe - seen.mean(0)) / np.sqrt(seen.var(0) + 1e-8), -10, 10)
    np.testing.assert_allclose(norm(tf.constant(probe)).numpy(), expected, rtol=1e-4)


def test_mlp_network_gives_a_gaussian_head_with_a_learned_log_std():
    box = specs.ActionSpec("box", 2, (-1.0, -1.0), (1.0, 1.0))
    net = build_network(box, "mlp", "/CPU:0", obs=specs.ObsSpec((5,), "float32"), normalize_obs=True)
    out = net(tf.zeros((4, 5)))
    assert out.policy_params.shape == (4, 4) and out.value.shape == (4,) and out.state.shape == (4, 0)
    np.testing.assert_array_equal(out.policy_params.numpy()[:, 2:], 0.0)  # log-std 0 at start: std 1
    assert any("log_std" in v.name for v in net.trainable_variables)
    assert {v.name for v in net.non_trainable_variables} >= {"mean", "var", "count"}


def test_log_std_init_sets_the_gaussians_starting_width_and_is_refused_for_discrete_actions():
    from errors import ConfigError
    from learner import make_learner
    box, flat = specs.ActionSpec("box", 2, (-1.0, -1.0), (1.0, 1.0)), specs.ObsSpec((8,), "float32")
    learner = make_learner(hp_for("LunarLanderContinuous-v3", log_std_init=-1.0), box, obs=flat)
    params = learner.net(tf.zeros((3, 8))).policy_params.numpy()
    np.testing.assert_allclose(params[:, 2:], -1.0)  # std e^-1 for both dimensions, in every state
    with pytest.raises(ConfigError, match="--log-std-init -1 is for continuous actions"):
        make_learner(hp_for("CartPole-v1", log_std_init=-1.0), specs.discrete(2), obs=specs.ObsSpec((4,), "float32"))


def test_a_state_std_head_starts_at_log_std_init_everywhere_learns_per_state_and_is_clipped():
    box, flat = specs.ActionSpec("box", 2, (-1.0, -1.0), (1.0, 1.0)), specs.ObsSpec((8,), "float32")
    net = build_network(box, "mlp", "/CPU:0", obs=flat, log_std_init=-1.0, std_head="state")
    assert not any(v.name == "log_std" and v.shape == (2,) for v in net.variables)  # no shared vector
    half = np.random.default_rng(0).normal(size=(3, 8))
    obs = tf.constant(np.concatenate([half, -half]), tf.float32)  # tanh towers without biases: opposite features
    np.testing.assert_allclose(net(obs).policy_params.numpy()[:, 2:], -1.0)  # as the shared head would start
    # One gradient step on the log-likelihood of wide actions in half the states: the log-std rises there more
    # than elsewhere, which a vector shared by every state cannot do.
    wide = tf.constant([[3.0, -3.0]] * 3 + [[0.0, 0.0]] * 3)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(net.dist.log_prob(net(obs).policy_params, wide))
    head = [v for v in net.trainable_variables if "log_std" in v.path]
    grads = tape.gradient(loss, head)
    assert len(head) == 2 and all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)
    for v, g in zip(head, grads):
        v.assign_sub(0.5 * g)
    log_std = net(obs).policy_params.numpy()[:, 2:]
    assert len(np.unique(np.round(log_std, 6))) > 1 and log_std[:3].mean() > log_std[3:].mean()
    head[1].assign([9.0, -9.0])  # the bias: beyond the range on both sides
    head[0].assign(tf.zeros_like(head[0]))
    np.testing.assert_allclose(net(obs).policy_params.numpy()[:, 2:], [[2.0, -5.0]] * 6)


@pytest.mark.parametrize("kind, obs, expected", [
    ("auto", specs.ATARI_OBS, "a3c"), ("auto", specs.ObsSpec((4,), "float32"), "mlp"),
    ("a3c-lstm", specs.ATARI_OBS, "a3c-lstm"), ("mlp", specs.ObsSpec((4,), "float32"), "mlp"),
])
def test_network_auto_picks_the_torso_for_the_observations(kind, obs, expected):
    assert resolve_kind(kind, obs) == expected


def test_a_network_that_cannot_read_the_observations_is_named():
    with pytest.raises(ValueError, match="--network a3c cannot read flat observations of 4 numbers; use --network mlp"):
        resolve_kind("a3c", specs.ObsSpec((4,), "float32"))
    with pytest.raises(ValueError, match="--network mlp cannot read 84x84 frames"):
        resolve_kind("mlp", specs.ATARI_OBS)


# ----------------------------------------------------------------------------------------------------------
# End to end through the CLI
# ----------------------------------------------------------------------------------------------------------
# Floors for the 100K-step CartPole run (lr decaying to 0 over it), about half of the worst of 3 seeds (model-207
# Xeon, 2026-11-23): last-100 training mean 223 / 277 / 147, greedy 10-episode mean 456 / 331 / 162; a random
# policy scores ~22. (A constant step size was too noisy for a floor: one seed fell back to 105 at the end.) Even
# with the decay a run can fall back after learning: one suite run under pytest -n 2 (AMD EPYC, 2026-11-30)
# peaked at 236 at 39K steps and ended at 62.5. So the training floor is on the curve's peak, and the greedy
# floor on the final policy is ~2x a random policy's.
CARTPOLE_TRAINING_FLOOR = 80.0
CARTPOLE_GREEDY_FLOOR = 40.0


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    logdir = str(tmp_path_factory.mktemp("cartpole") / "run")
    env = cli_env(fake=False)
    code, out, err = run("a3c.py", ["--preset", "cartpole", "--logdir", logdir, "--total-env-steps", 2000] + QUIET,
                         os.path.dirname(logdir), env, "first", timeout=180)
    assert code == 0, err[-2000:]
    code, out2, err = run("a3c.py", ["--preset", "cartpole", "--logdir", logdir, "--total-env-steps", 4000] + QUIET,
                          os.path.dirname(logdir), env, "second", timeout=180)
    assert code == 0, err[-2000:]
    return logdir, out2


def test_cartpole_trains_with_the_mlp_resumes_and_saves_its_spaces(cartpole_run):
    logdir, second = cartpole_run
    config = json.load(open(os.path.join(logdir, "config.json")))
    assert config["network"] == "mlp" and config["env_id"] == "CartPole-v1"
    assert specs.from_config(config) == (specs.ObsSpec((4,), "float32"), specs.discrete(2))
    assert "resuming from step" in second


def test_cartpole_evaluates_with_a_video_and_exports(cartpole_run, tmp_path):
    logdir, _ = cartpole_run
    env = cli_env(fake=False)
    code, out, err = run("a3c_test.py", ["--model", logdir, "--out", tmp_path / "eval", "--episodes", 3,
                                         "--record", 1, "--max-steps", 300], tmp_path, env, "eval", timeout=180)
    assert code == 0, err[-2000:]
    scores = json.load(open(tmp_path / "eval" / "scores.json"))
    assert len(scores["episodes"]) == 3 and all(r >= 1 for r in scores["episodes"])
    assert os.path.getsize(tmp_path / "eval" / "episode_0.mp4") > 0 and "error" not in err.lower()
    code, _, err = run("a3c_test.py", ["--model", logdir, "--export", tmp_path / "saved"], tmp_path, env, "export")
    assert code == 0, err[-2000:]
    code, out, err = run("a3c_test.py", ["--model", tmp_path / "saved", "--out", tmp_path / "eval2", "--episodes", 3,
                                         "--record", 0, "--max-steps", 300], tmp_path, env, "eval2")
    assert code == 0, err[-2000:]
    assert json.load(open(tmp_path / "eval2" / "scores.json"))["episodes"] == scores["episodes"]


def test_pendulum_gaussian_policy_trains_and_checkpoints_its_obs_normalisation(tmp_path):
    logdir = str(tmp_path / "run")
    env = cli_env(fake=False)
    code, _, err = run("a3c.py", ["--preset", "pendulum", "--logdir", logdir, "--total-env-steps", 1600,
                                  "--threads", 1] + QUIET, tmp_path, env, "train", timeout=180)
    assert code == 0, err[-2000:]
    config = json.load(open(os.path.join(logdir, "config.json")))
    assert config["action_space"] == {"kind": "box", "size": 1, "low": [-2.0], "high": [2.0]}
    assert config["normalize_obs"] is True
    prefix = tf.train.latest_checkpoint(os.path.join(logdir, "checkpoints"))
    reader = tf.train.load_checkpoint(prefix)
    counts = [reader.get_tensor(name) for name, _ in tf.train.list_variables(prefix)
              if "obs_norm" in name and "count" in name and "OPTIMIZER" not in name]
    assert counts == [1600.0]  # every valid observation of the run, once
    code, out, err = run("a3c_test.py", ["--model", logdir, "--out", tmp_path / "eval", "--episodes", 2,
                                         "--record", 1], tmp_path, env, "eval", timeout=180)
    assert code == 0, err[-2000:]
    assert json.load(open(tmp_path / "eval" / "scores.json"))["lengths"] == [200, 200]
    assert "2 of 2 episodes hit the env's own time limit" in err and "108000 frames" not in err
    assert "diverged" not in err  # the video's return is summed in float32 rewards, as the scored one
    code, _, err = run("a3c_test.py", ["--model", logdir, "--out", tmp_path / "eps", "--epsilon", 0.1,
                                       "--record", 0], tmp_path, env, "epsilon")
    assert code == 2 and "--epsilon needs a discrete action space" in one_error_line(err), err
    assert not (tmp_path / "eps").exists()  # refused from the saved config, before --out is made


def test_pendulum_with_a_state_std_head_and_normalised_rewards_trains_evaluates_and_resumes_only_as_it_was(tmp_path):
    """Also --mlp-units and --torso-init torch: the widths are part of the model (saved, rebuilt for evaluation
    and export, a resume with others refused)."""
    logdir = str(tmp_path / "run")
    env = cli_env(fake=False)
    args = ["--preset", "pendulum", "--logdir", logdir, "--threads", 1, "--mlp-units", "32,16",
            "--torso-init", "torch"] + QUIET
    code, _, err = run("a3c.py", args + ["--std-head", "state", "--normalize-rewards", "--total-env-steps", 800],
                       tmp_path, env, "train", timeout=180)
    assert code == 0, err[-2000:]
    config = json.load(open(os.path.join(logdir, "config.json")))
    assert config["std_head"] == "state" and config["normalize_rewards"] is True and config["mlp_units"] == "32,16"
    prefix = tf.train.latest_checkpoint(os.path.join(logdir, "checkpoints"))
    reader = tf.train.load_checkpoint(prefix)
    names = [name for name, _ in tf.train.list_variables(prefix) if "OPTIMIZER" not in name]
    assert any(name.startswith("model/log_std_head/") and "kernel" in name for name in names), names
    shapes = reader.get_variable_to_shape_map()
    assert [shapes[n] for n in names if "policy_fc1" in n and "kernel" in n] == [[32, 16]], names
    count = [reader.get_tensor(n) for n in names if n.startswith("reward_norm/count")]
    var = [reader.get_tensor(n) for n in names if n.startswith("reward_norm/var")]
    steps = reader.get_tensor("env_steps/.ATTRIBUTES/VARIABLE_VALUE")  # 13 rollouts of 8 envs x 8 steps: 832
    # Every step's return, once (+ the 1e-4 prior): 104 steps per env, within Pendulum's 200, so none is an autoreset
    assert count and count[0] == pytest.approx(steps, abs=1e-3) and steps >= 800
    assert var and var[0] > 1.0  # Pendulum's returns (rewards down to -16 a step) spread far wider than the prior
    before = file_hashes(logdir)
    for changed, field in ((["--std-head", "shared", "--normalize-rewards"], "std_head='state'"),
                           (["--std-head", "state", "--no-normalize-rewards"], "normalize_rewards=True"),
                           (["--std-head", "state", "--normalize-rewards", "--mlp-units", "64,64"],
                            "mlp_units='32,16'")):
        code, _, err = run("a3c.py", args + changed + ["--total-env-steps", 1600], tmp_path, env, "resume")
        assert code == 2 and f"trained with {field}" in one_error_line(err), err
    assert file_hashes(logdir) == before
    code, _, err = run("a3c_test.py", ["--model", logdir, "--out", tmp_path / "eval", "--episodes", 1,
                                       "--record", 0], tmp_path, env, "eval", timeout=180)
    assert code == 0, err[-2000:]  # the saved config builds the same head and towers for evaluation
    scores = json.load(open(tmp_path / "eval" / "scores.json"))
    assert scores["lengths"] == [200]
    code, _, err = run("a3c_test.py", ["--model", logdir, "--export", tmp_path / "saved"], tmp_path, env, "export")
    assert code == 0, err[-2000:]
    code, _, err = run("a3c_test.py", ["--model", tmp_path / "saved", "--out", tmp_path / "eval2", "--episodes", 1,
                                       "--record", 0], tmp_path, env, "eval2")
    assert code == 0, err[-2000:]
    assert json.load(open(tmp_path / "eval2" / "scores.json"))["episodes"] == scores["episodes"]


def test_bad_input_for_new_envs_fails_in_one_line_without_touching_the_run(cartpole_run, tmp_path):
    logdir, _ = cartpole_run
    before = file_hashes(logdir)
    real, fake = cli_env(fake=False), cli_env(fake=True)
    cases = {  # name: (script, argv, env, expected words)
        "cnn_for_vectors": ("a3c.py", ["--env-id", "CartPole-v1", "--network", "a3c", "--logdir", tmp_path / "a"],
                            real, "--network a3c cannot read flat observations of 4 numbers; use --network mlp"),
        "mlp_for_frames": ("a3c.py", ["--network", "mlp", "--logdir", tmp_path / "b"], fake,
                           "--network mlp cannot read 84x84 frames"),
        "vector_env": ("a3c.py", ["--vector-env", "threads", "--logdir", tmp_path / "c"], fake,
                       "--vector-env must be one of sync, async"),
        "reward_scale": ("a3c.py", ["--reward-scale", "0", "--logdir", tmp_path / "d"], fake,
                         "--reward-scale must be > 0"),
        "unknown_version": ("a3c.py", ["--env-id", "CartPole-v9", "--logdir", tmp_path / "e"], real,
                            "unknown env id 'CartPole-v9'"),
        "unknown_retro_game": ("a3c.py", ["--env-id", "retro:NoSuchGame-Genesis", "--logdir", tmp_path / "f"], real,
                               "NoSuchGame"),
        "other_env_same_logdir": ("a3c.py", ["--preset", "cartpole", "--env-id", "Acrobot-v1", "--logdir", logdir],
                                  real, "trained with env_id='CartPole-v1'"),
        "std_head_for_discrete": ("a3c.py", ["--preset", "cartpole", "--std-head", "state", "--logdir",
                                             tmp_path / "h"], real,
                                  "--std-head state is for continuous actions (a Gaussian policy)"),
        "normalize_rewards_clipped": ("a3c.py", ["--normalize-rewards", "--logdir", tmp_path / "j"], fake,
                                      "--normalize-rewards with --clip-rewards"),
        "normalize_rewards_ray": ("a3c.py", ["--preset", "pendulum", "--normalize-rewards", "--executor", "ray",
                                             "--logdir", tmp_path / "k"], real,
                                  "--normalize-rewards is for --executor local"),
        "std_head_unknown": ("a3c.py", ["--std-head", "wide", "--logdir", tmp_path / "i"], fake,
                             "--std-head must be one of shared, state"),
        "eval_on_other_spaces": ("a3c_test.py", ["--model", logdir, "--out", tmp_path / "g", "--env-id",
                                                 "Pendulum-v1", "--record", 0],
                                 real, "has a network for observations (4,) float32, but Pendulum-v1 gives (3,)"),
    }
    procs = {name: Proc(script, argv, tmp_path, env, name) for name, (script, argv, env, _) in cases.items()}
    for name, proc in procs.items():
        assert proc.wait(120) == 2, (name, proc.err)
        assert cases[name][3] in one_error_line(proc.err), (name, proc.err)
    assert file_hashes(logdir) == before


def test_async_vector_env_plays_the_same_games_as_sync():
    sync = envs.make_vector_env(hp_for("CartPole-v1"), 2)
    async_ = envs.make_vector_env(hp_for("CartPole-v1", vector_env="async"), 2)
    try:
        assert type(async_.unwrapped).__name__ == "AsyncVectorEnv" and hasattr(async_, "send")
        for env in (sync, async_):
            env.reset(seed=11)
        actions = np.random.default_rng(0).integers(0, 2, (30, 2)).astype(np.int32)
        for a in actions:
            np.testing.assert_array_equal(sync.step(a)[0], async_.step(a)[0])
    finally:
        sync.close()
        async_.close()


def test_an_async_vector_env_steps_during_the_update_and_gives_the_same_rollouts(recwarn):
    """--overlap-env-step on gymnasium's AsyncVectorEnv (the retro family's too): send / recv are step_async /
    step_wait, Box actions still reach the env clipped, and the rollouts equal those of a sync env stepped whole."""
    sync = envs.make_vector_env(hp_for("Pendulum-v1"), 2)
    async_ = envs.make_vector_env(hp_for("Pendulum-v1", vector_env="async"), 2)
    assert not hasattr(sync, "send") and hasattr(async_, "send") and hasattr(async_, "recv")
    inner, sent = async_.unwrapped, []
    step_async = inner.step_async
    inner.step_async = lambda actions: (sent.append(np.array(actions)), step_async(actions))[1]

    def policy(obs, state, reset, seed):  # depends on the observation; beyond [-2, 2] half the time
        return np.round(obs[:, :1] * 3.0, 3).astype(np.float32), np.zeros(len(obs), np.float32), state
    rollouts = {}
    for name, env in (("sync", sync), ("async", async_)):
        agents = BatchAgents(env, seed=5)
        rollouts[name] = []
        for i in range(4):
            rollouts[name].append(agents.collect(policy, 6)[0])
            agents.send_pending()
            if name == "async":  # the env processes got the next rollout's first step now, before any update
                assert len(sent) == 6 * (i + 1) + 1
        agents.close()  # with the async env's step still in flight: received, not warned about
    for plain, overlapped in zip(rollouts["sync"], rollouts["async"]):
        for field, a, b in zip(plain._fields, plain, overlapped):
            if a is not None:
                np.testing.assert_array_equal(a, b, err_msg=field)
    # The rollout keeps the policy's sample; the env processes got it clipped to Pendulum's [-2, 2].
    assert np.abs(np.concatenate([r.actions for r in rollouts["async"]])).max() > 2.0
    assert len(sent) == 4 * 6 + 1 and np.abs(np.concatenate(sent)).max() <= 2.0  # + the step close received
    assert not [w for w in recwarn if "close" in str(w.message)]


def test_dict_tuple_and_text_spaces_are_refused_in_one_line(tmp_path):
    import fakes
    procs = {}
    for name in fakes.ODD_SPACES:
        env = dict(cli_env(fake=False), A3C_FAKE_ENV="fakes:make_odd_space_env",
                   A3C_FAKE_ENV_OPTIONS=json.dumps({"spaces": name}))
        procs[name] = Proc("a3c.py", ["--logdir", tmp_path / name, "--threads", 1, "--envs-per-thread", 2,
                                      "--total-env-steps", 20, "--no-progress-bar"], tmp_path, env, name)
    for name, proc in procs.items():
        assert proc.wait(120) == 2, (name, proc.err)
        line = one_error_line(proc.err)
        kind = name.split("_")[0].capitalize()
        assert kind in line and ("observation space" in line if name.endswith("obs") else "action space" in line), line
        assert not os.path.exists(tmp_path / name / "checkpoints" / "checkpoint")


def test_cartpole_learns_in_a_short_run(tmp_path):
    """The fast learning test of the gymnasium family: a short --preset cartpole run (the README's 3-minute
    run, cut to 100K env steps) must rise far above a random policy (~22 per episode) in training, and its
    final policy must play above it greedy."""
    env = cli_env(fake=False)
    logdir = tmp_path / "run"
    code, _, err = run("a3c.py", ["--preset", "cartpole", "--logdir", logdir, "--total-env-steps", 100000] + QUIET,
                       tmp_path, env, "train", timeout=300)
    assert code == 0, err[-2000:]
    rows = [r for r in progress_rows(logdir) if r["mean_return"]]
    assert max(float(r["mean_return"]) for r in rows) >= CARTPOLE_TRAINING_FLOOR, rows[-1]
    code, greedy_out, greedy_err = run("a3c_test.py", ["--model", logdir, "--out", tmp_path / "eval", "--episodes",
                                                       10, "--record", 0], tmp_path, env, "eval", timeout=180)
    assert code == 0, greedy_err[-2000:]
    greedy = json.load(open(tmp_path / "eval" / "scores.json"))
    assert greedy["mean"] >= CARTPOLE_GREEDY_FLOOR
    assert (greedy["greedy"], greedy["epsilon"]) == (True, 0.0) and "episodes (greedy)" in greedy_out  # the default
    # --epsilon 1 replaces every greedy action by a uniformly random one: a random CartPole policy lasts ~22 steps
    code, _, err = run("a3c_test.py", ["--model", logdir, "--out", tmp_path / "random", "--episodes", 10,
                                       "--record", 0, "--epsilon", 1, "--no-progress-bar"], tmp_path, env, "random",
                         timeout=180)
    assert code == 0, err[-2000:]
    assert "episodes: " in greedy_err and "episodes: " not in err, err  # the episode bar: default on, flag off
    scores = json.load(open(tmp_path / "random" / "scores.json"))
    assert scores["epsilon"] == 1.0 and scores["mean"] < CARTPOLE_GREEDY_FLOOR, scores


def test_a_gymnasium_image_env_gets_the_atari_frames_and_the_conv_net():
    """CarRacing (96x96 RGB, Box(3) actions) -> 84x84x4 uint8 frames, stack first -> a3c torso + Gaussian head."""
    env = envs.make_vector_env(hp_for("CarRacing-v3"), 2)
    try:
        obs_spec, action_spec = envs.env_specs(env, "CarRacing-v3")
        assert obs_spec == specs.ATARI_OBS and action_spec.kind == "box" and action_spec.size == 3
        first, _ = env.reset(seed=0)
        assert first.shape == (2, 4, 84, 84) and first.dtype == np.uint8
        np.testing.assert_array_equal(first[:, 0], first[:, 3])  # a new episode fills the stack with its 1st frame
        obs, *_ = env.step(np.zeros((2, 3), np.float32))
        np.testing.assert_array_equal(obs[:, :3], first[:, 1:])  # the stack shifted by one, newest frame last
        net = build_network(action_spec, resolve_kind("auto", obs_spec), "/CPU:0", obs=obs_spec)
        assert net.kind == "a3c" and net(tf.constant(obs)).policy_params.shape == (2, 6)
    finally:
        env.close()
