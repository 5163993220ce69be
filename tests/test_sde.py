"""gSDE (--std-head sde): its log-std and noise against a naive loop from the paper's formula, the head's gradients,
acting that holds each env's noise matrix for a rollout, and Pendulum end to end with its bad input."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import specs
from distributions import SDE_VARIANCE_EPS, sde_log_std, sde_noise
from helpers import QUIET, Proc, cli_env, file_hashes, hp_for, one_error_line, run
from learner import make_learner
from network import build_network

BOX, FLAT = specs.ActionSpec("box", 2, (-1.0, -1.0), (1.0, 1.0)), specs.ObsSpec((8,), "float32")


def test_log_std_and_noise_are_the_papers_features_times_a_gaussian_matrix():
    rng = np.random.default_rng(0)
    features, L = rng.normal(size=(3, 5)), rng.normal(scale=0.5, size=(5, 2)) - 1.0
    # Naive: var_d = sum_i f_i^2 sigma_id^2 (Raffin et al. 2021, eq. 2 with W_id ~ N(0, sigma_id^2)).
    var = np.array([[sum(features[b, i] ** 2 * np.exp(L[i, d]) ** 2 for i in range(5)) for d in range(2)]
                    for b in range(3)])
    np.testing.assert_allclose(sde_log_std(tf.constant(features), tf.constant(L)).numpy(),
                               0.5 * np.log(var + SDE_VARIANCE_EPS), rtol=1e-6)
    seed = tf.constant([3, 4], tf.int32)
    z = tf.random.stateless_normal([3, 5, 2], seed, dtype=tf.float64).numpy()
    naive = np.array([[sum(features[b, i] * np.exp(L[i, d]) * z[b, i, d] for i in range(5)) for d in range(2)]
                      for b in range(3)])
    np.testing.assert_allclose(sde_noise(tf.constant(features), tf.constant(L), seed).numpy(), naive, rtol=1e-6)
    # Over many matrices the noise of one state has the std the log-std says (4,000 draws: within ~2.2% at 1 sigma).
    one = np.repeat(features[:1].astype(np.float32), 4000, 0)
    draws = sde_noise(tf.constant(one), tf.constant(L, tf.float32), tf.constant([9, 9])).numpy()
    np.testing.assert_allclose(draws.std(0), np.sqrt(var[0]), rtol=0.07)
    assert abs(draws.mean(0) / np.sqrt(var[0])).max() < 0.07


def test_the_sde_head_learns_its_matrix_per_state_without_moving_the_features():
    net = build_network(BOX, "mlp", "/CPU:0", obs=FLAT, log_std_init=-2.0, std_head="sde")
    assert net.sde_log_std.shape == (64, 2)  # the policy tower's last layer x the action dimensions
    assert not any(v.path.endswith("/log_std") for v in net.variables)  # no shared vector beside it
    obs = tf.constant(np.random.default_rng(1).normal(size=(4, 8)), tf.float32)
    out = net(obs)
    assert out.sde_features.shape == (4, 64)
    np.testing.assert_allclose(out.policy_params.numpy()[:, 2:],
                               sde_log_std(out.sde_features, net.sde_log_std).numpy(), rtol=1e-6)
    assert len(np.unique(np.round(out.policy_params.numpy()[:, 2], 5))) == 4  # the std differs between states
    with tf.GradientTape() as tape:
        log_std = net(obs).policy_params[:, 2:]
    tower = [v for v in net.trainable_variables if "policy_fc" in v.path]
    grads = tape.gradient(log_std, tower + [net.sde_log_std])
    # stop_gradient: the std does not move the features (only zeros come back through the concat with the mean)
    assert len(tower) == 4 and all(g is None or float(tf.reduce_max(tf.abs(g))) == 0 for g in grads[:-1])
    assert float(tf.reduce_max(tf.abs(grads[-1]))) > 0
    unrolled = net.unroll(tf.reshape(obs, [2, 2, 8]), net.initial_state(2), tf.zeros([2, 2], tf.bool))
    np.testing.assert_allclose(tf.reshape(unrolled.policy_params, [4, 4]).numpy(), out.policy_params.numpy(),
                               rtol=1e-5)


@pytest.mark.parametrize("sde_sample_steps, same_matrix", [(0, 4), (2, 2)])
def test_acting_holds_each_envs_noise_matrix_for_a_rollout_or_the_given_steps(sde_sample_steps, same_matrix):
    learner = make_learner(hp_for("LunarLanderContinuous-v3", std_head="sde", t_max=4,
                               sde_sample_steps=sde_sample_steps), BOX, obs=FLAT)
    policy = learner.policy()
    obs = np.random.default_rng(2).normal(size=(3, 8)).astype(np.float32)
    state, reset = np.zeros((3, 0), np.float32), np.zeros(3, bool)

    def actions(step):  # BatchAgents counts seed[1] from 1
        return np.asarray(policy(obs, state, reset, np.array([7, step], np.int32))[0])
    first = [actions(step) for step in range(1, same_matrix + 1)]
    for a in first[1:]:
        np.testing.assert_array_equal(a, first[0])  # the same state and the same matrix: the same action
    assert not np.allclose(actions(same_matrix + 1), first[0])  # a new matrix
    assert len(np.unique(np.round(first[0][:, 0], 5))) == 3  # each env its own matrix
    mean = np.asarray(learner.policy(greedy=True)(obs, state, reset, np.array([7, 1], np.int32))[0])
    assert not np.allclose(first[0], mean)
    shared = make_learner(hp_for("LunarLanderContinuous-v3", t_max=4), BOX, obs=FLAT).policy()
    step1, step2 = (np.asarray(shared(obs, state, reset, np.array([7, s], np.int32))[0]) for s in (1, 2))
    assert not np.allclose(step1, step2)  # the shared head's noise is fresh at every step


def test_under_t_max_per_thread_each_thread_holds_the_noise_for_its_own_rollout():
    learner = make_learner(hp_for("LunarLanderContinuous-v3", std_head="sde", threads=2, t_max_per_thread="4,2"),
                           BOX, obs=FLAT)
    obs = np.random.default_rng(3).normal(size=(3, 8)).astype(np.float32)
    state, reset = np.zeros((3, 0), np.float32), np.zeros(3, bool)
    for thread, period in ((0, 4), (1, 2)):
        policy = learner.policy(thread=thread)
        acted = [np.asarray(policy(obs, state, reset, np.array([7, step], np.int32))[0]) for step in range(1, 6)]
        for step in range(1, 5):  # BatchAgents counts seed[1] from 1: steps 1..period share one matrix
            assert np.allclose(acted[step], acted[0]) == (step < period), (thread, step)
    by_length = learner.policy(thread=0, t_max=2)  # the Ray executor's acting copy: one device, the rollout's length
    assert not np.allclose(by_length(obs, state, reset, np.array([7, 3], np.int32))[0],
                           by_length(obs, state, reset, np.array([7, 1], np.int32))[0])


def test_pendulum_with_gsde_trains_evaluates_sampled_and_resumes_only_with_it(tmp_path):
    logdir = str(tmp_path / "run")
    env = cli_env(fake=False)
    args = ["--preset", "pendulum", "--logdir", logdir, "--threads", 1, "--std-head", "sde"] + QUIET
    code, _, err = run("a3c.py", args + ["--sde-sample-steps", 3, "--log-std-init", -2, "--total-env-steps", 800],
                       tmp_path, env, "train", timeout=180)
    assert code == 0, err[-2000:]
    config = json.load(open(os.path.join(logdir, "config.json")))
    assert config["std_head"] == "sde" and config["sde_sample_steps"] == 3
    prefix = tf.train.latest_checkpoint(os.path.join(logdir, "checkpoints"))
    saved = dict(tf.train.list_variables(prefix))
    matrix = [name for name in saved if "sde_log_std" in name and "OPTIMIZER" not in name]
    assert len(matrix) == 1 and saved[matrix[0]] == [64, 1], saved  # Pendulum: 1 action dimension
    learned = tf.train.load_checkpoint(prefix).get_tensor(matrix[0])
    assert not np.allclose(learned, -2.0)  # trained from --log-std-init
    before = file_hashes(logdir)
    code, _, err = run("a3c.py", ["--preset", "pendulum", "--logdir", logdir, "--threads", 1, "--total-env-steps",
                                  1600] + QUIET, tmp_path, env, "resume")
    assert code == 2 and "trained with std_head='sde'" in one_error_line(err), err
    assert file_hashes(logdir) == before
    code, _, err = run("a3c_test.py", ["--model", logdir, "--out", tmp_path / "eval", "--episodes", 2, "--sample",
                                       "--record", 0], tmp_path, env, "eval", timeout=180)
    assert code == 0, err[-2000:]
    assert json.load(open(tmp_path / "eval" / "scores.json"))["lengths"] == [200, 200]


def test_bipedalwalker_preset_trains_with_gsde_and_normalised_returns_and_evaluates(tmp_path):
    """The `bipedalwalker` preset (the zoo's A2C recipe) end to end on a tiny budget: its gSDE matrix [64, 4] and
    its return normaliser are in the checkpoint, and a3c_test.py plays it greedily."""
    logdir = str(tmp_path / "bw")
    env = cli_env(fake=False)
    code, _, err = run("a3c.py", ["--preset", "bipedalwalker", "--logdir", logdir, "--total-env-steps", 640] + QUIET,
                       tmp_path, env, "train", timeout=180)
    assert code == 0, err[-2000:]
    config = json.load(open(os.path.join(logdir, "config.json")))
    assert (config["std_head"], config["normalize_rewards"], config["optimizer"]) == ("sde", True, "rmsprop")
    prefix = tf.train.latest_checkpoint(os.path.join(logdir, "checkpoints"))
    saved = dict(tf.train.list_variables(prefix))
    assert [saved[n] for n in saved if "sde_log_std" in n and "OPTIMIZER" not in n] == [[64, 4]], saved
    assert tf.train.load_checkpoint(prefix).get_tensor("reward_norm/count/.ATTRIBUTES/VARIABLE_VALUE") > 0
    code, _, err = run("a3c_test.py", ["--model", logdir, "--out", tmp_path / "eval", "--episodes", 1,
                                       "--max-steps", 50, "--record", 0], tmp_path, env, "eval", timeout=180)
    assert code == 0, err[-2000:]
    assert json.load(open(tmp_path / "eval" / "scores.json"))["lengths"] == [50]


def test_bad_gsde_input_fails_in_one_line(tmp_path):
    real, fake = cli_env(fake=False), cli_env(fake=True)
    cases = {  # name: (argv, env, expected words)
        "steps_without_sde": (["--preset", "pendulum", "--sde-sample-steps", 4], real,
                              "--sde-sample-steps is for --std-head sde (gSDE's noise); this run's --std-head is "
                              "shared"),
        "negative_steps": (["--preset", "pendulum", "--std-head", "sde", "--sde-sample-steps", -1], real,
                           "--sde-sample-steps must be >= 0"),
        "sde_for_discrete": (["--preset", "cartpole", "--std-head", "sde"], real,
                             "--std-head sde is for continuous actions (a Gaussian policy)"),
        "sde_for_frames_discrete": (["--std-head", "sde"], fake, "--std-head sde is for continuous actions"),
    }
    procs = {name: Proc("a3c.py", argv + ["--logdir", tmp_path / name], tmp_path, env, name)
             for name, (argv, env, _) in cases.items()}
    for name, proc in procs.items():
        assert proc.wait(120) == 2, (name, proc.err)
        assert cases[name][2] in one_error_line(proc.err), (name, proc.err)
        assert not (tmp_path / name / "checkpoints").exists()  # refused before anything was built: nothing saved
