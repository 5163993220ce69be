"""A3C-LSTM: the cell's math, recurrent state across episode ends and rollouts, the unrolled train-step forward
against step-by-step acting, a memory task only the LSTM solves, and its checkpoints."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import a3c
import a3c_test
import hparams
import memory_task
import network
from batch_agents import BatchAgents, Rollout
from fakes import ScriptedVectorEnv
from helpers import file_hashes, make_trainer, one_error_line
from learner import A3CLearner

F, T = False, True


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_lstm_cell_matches_the_equations_in_numpy():
    core = network.LSTMCore(3)
    core.build((None, 5))
    rng = np.random.default_rng(0)
    for v in core.variables:
        v.assign(rng.normal(size=v.shape).astype(np.float32))
    x = rng.normal(size=(4, 5)).astype(np.float32)
    h, c = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(4, 3)).astype(np.float32)
    y, state = core(tf.constant(x), tf.constant(np.concatenate([h, c], -1)))

    W, U, b = (v.numpy() for v in (core.kernel, core.recurrent_kernel, core.bias))
    z = x @ W + h @ U + b
    i, f, g, o = z[:, 0:3], z[:, 3:6], z[:, 6:9], z[:, 9:12]
    c_new = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    h_new = _sigmoid(o) * np.tanh(c_new)
    np.testing.assert_allclose(y.numpy(), h_new, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.numpy(), np.concatenate([h_new, c_new], -1), rtol=1e-5, atol=1e-6)


def test_lstm_starts_with_a_forget_bias_of_one():
    net = network.build_network(6, "a3c-lstm", device="/CPU:0")
    assert net.state_size == 512 and net.kind == "a3c-lstm"
    bias = net.lstm.bias.numpy()
    np.testing.assert_array_equal(bias[256:512], 1.0)
    np.testing.assert_array_equal(np.concatenate([bias[:256], bias[512:]]), 0.0)
    out = net(tf.zeros((2,) + network.OBS_SHAPE, tf.uint8))
    assert out.state.shape == (2, 512) and out.policy_params.shape == (2, 6)


class CountingPolicy:
    """State = steps since the env's episode started, with the reset semantics of the learner's act: zero the
    state where `reset`, then step. Records the state it was handed."""

    def __init__(self):
        self.seen = []

    def __call__(self, obs, state, reset, seed):
        self.seen.append(state[:, 0].copy())
        state = np.where(reset[:, None], 0.0, state) + 1.0
        B = obs.shape[0]
        return np.zeros(B, np.int32), np.zeros(B, np.float32), state.astype(np.float32)


def test_state_is_zeroed_exactly_at_episode_starts_and_carried_across_rollouts():
    # env 0: 3-step episodes; env 1: 4-step episodes (+1 autoreset transition each).
    env = ScriptedVectorEnv([[dict(rewards=[0.0] * 3, end="terminated")], [dict(rewards=[0.0] * 4, end="truncated")]])
    agents = BatchAgents(env, seed=0, state_size=1)
    policy = CountingPolicy()
    first, _ = agents.collect(policy, 5)
    second, _ = agents.collect(policy, 5)
    # The state entering each step counts the steps of the episode so far (0 at its first state).
    steps_in_episode = np.array([[0, 0], [1, 1], [2, 2], [3, 3], [0, 4], [1, 0], [2, 1], [3, 2], [0, 3], [1, 4]])
    resets = np.concatenate([first.resets, second.resets])
    np.testing.assert_array_equal(resets, steps_in_episode == 0)
    carried = [np.where(r, 0.0, s) for r, s in zip(resets, policy.seen[:10])]
    np.testing.assert_array_equal(np.stack(carried), steps_in_episode)
    # The second rollout starts from the state the first one ended with, not from zeros.
    np.testing.assert_array_equal(second.initial_state[:, 0], policy.seen[5])
    np.testing.assert_array_equal(second.initial_state[:, 0], [1.0, 5.0])  # env 0 is 1 step into episode 2


def test_episodic_life_resets_the_state_at_a_life_loss():
    env = ScriptedVectorEnv([[dict(rewards=[0.0] * 4, lives=[3, 2, 2, 2], end="terminated")]])
    agents = BatchAgents(env, seed=0, state_size=1, episodic_life=True)
    rollout, _ = agents.collect(CountingPolicy(), 4)
    np.testing.assert_array_equal(rollout.resets[:, 0], [T, F, T, F])  # the life lost at step 1: step 2 is fresh


class RecordingPolicy:
    """The learner's policy, keeping every step's value and the state it returned."""

    def __init__(self, learner):
        self.policy = learner.policy()
        self.values, self.states = [], []

    def __call__(self, obs, state, reset, seed):
        actions, values, new_state, *behaviour = (np.asarray(x) for x in self.policy(obs, state, reset, seed))
        self.values.append(values)
        self.states.append(new_state)
        return actions, values, new_state, *behaviour


def test_unrolled_train_forward_equals_step_by_step_acting():
    """Across an episode end (env 0), a truncation (env 1) and a rollout boundary."""
    tf.random.set_seed(1)
    learner = A3CLearner(hparams.HParams(network="a3c-lstm"), 3, device="/CPU:0")
    env = ScriptedVectorEnv([[dict(rewards=[1.0, 0.0, 2.0], end="terminated")],
                             [dict(rewards=[0.0] * 6, end="truncated")]])
    agents = BatchAgents(env, seed=0, state_size=learner.net.state_size)
    policy = RecordingPolicy(learner)
    rollouts = [agents.collect(policy, 5)[0] for _ in range(2)]
    unroll = tf.function(learner.net.unroll)
    assert rollouts[0].terminated[:, 0].any() and rollouts[0].resets[1:, 0].any()  # an episode end inside
    assert rollouts[1].truncated[:, 1].any() and np.abs(rollouts[1].initial_state).sum() > 0
    for k, rollout in enumerate(rollouts):
        out = unroll(tf.constant(rollout.obs), tf.constant(rollout.initial_state), tf.constant(rollout.resets))
        acted = np.stack(policy.values[5 * k:5 * k + 5])
        np.testing.assert_allclose(out.value.numpy(), acted, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out.state.numpy(), policy.states[5 * k + 4], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rollouts[1].initial_state, policy.states[4], rtol=0, atol=0)


def test_memory_task_the_lstm_learns_and_the_feed_forward_net_cannot(tmp_path):
    """The cue leaves the 4-frame stack two steps before the decision. 12K steps (~10 s each): the LSTM gets
    1.00 / 1.00 / 0.98 over seeds 0-2 (mean of its last 100 episodes); the feed-forward net -0.04 / -0.28 / -0.02."""
    lstm, n = memory_task.run("a3c-lstm", delay=5, t_max=7, steps=12_000, seed=0, logdir=str(tmp_path / "lstm"))
    ff, _ = memory_task.run("a3c", delay=5, t_max=7, steps=12_000, seed=0, logdir=str(tmp_path / "ff"))
    assert n == 100
    assert lstm >= 0.8, lstm
    assert ff <= 0.5, ff  # no memory: right half the time, 0 on average (sd of a 100-episode mean 0.1)


def test_an_lstm_checkpoint_resumed_with_another_network_is_refused(tmp_path, capsys, monkeypatch):
    trainer = make_trainer(tmp_path, network="a3c-lstm", total_env_steps=40)
    assert trainer.run() == 0
    before = file_hashes(tmp_path)
    monkeypatch.setenv("A3C_FAKE_ENV", "fakes:make_env")
    capsys.readouterr()
    assert a3c.main(["--logdir", str(tmp_path), "--network", "a3c", "--no-progress-bar"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "trained with network='a3c-lstm' but this run has network='a3c'" in line
    assert "--network a3c-lstm" in line
    assert file_hashes(tmp_path) == before


def test_a3c_test_evaluates_a_recurrent_checkpoint(tmp_path, capsys):
    logdir = tmp_path / "run"
    assert a3c.main(["--preset", "smoke", "--network", "a3c-lstm", "--logdir", str(logdir),
                     "--total-env-steps", "40"]) == 0
    out = tmp_path / "eval"
    assert a3c_test.main(["--model", str(logdir), "--out", str(out), "--episodes", "2", "--max-steps", "30",
                          "--record", "0"]) == 0
    scores = json.load(open(out / "scores.json"))
    assert len(scores["episodes"]) == 2 and scores["lengths"] == [30, 30]
    assert os.path.basename(scores["checkpoint"]) == "ckpt-40"


def test_lstm_train_step_traces_once_for_every_rollout_shape():
    learner = A3CLearner(hparams.HParams(network="a3c-lstm"), 4, device="/CPU:0")
    rng = np.random.default_rng(0)
    for T_, B in [(5, 2), (3, 4), (20, 3)]:
        learner.train_on(Rollout(rng.integers(0, 256, (T_, B, 4, 84, 84), dtype=np.uint8),
                                 rng.integers(0, 4, (T_, B)).astype(np.int32),
                                 rng.normal(size=(T_, B)).astype(np.float32),
                                 rng.random((T_, B)) < 0.2, np.zeros((T_, B), bool), np.ones((T_, B), bool),
                                 rng.random((T_, B)) < 0.2, rng.normal(size=(B, 512)).astype(np.float32),
                                 rng.normal(size=B).astype(np.float32)), 1e-4)
    assert learner.train_step.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_lstm_gradients_reach_every_weight(precision):
    net = network.build_network(6, "a3c-lstm", device="/CPU:0", precision=precision)
    rng = np.random.default_rng(0)
    obs = tf.constant(rng.integers(0, 256, (4, 2) + network.OBS_SHAPE, dtype=np.uint8))
    with tf.GradientTape() as tape:
        out = net.unroll(obs, tf.zeros((2, 512)), tf.constant([[T, T], [F, F], [F, T], [F, F]]))
        loss = tf.reduce_sum(out.value[-1]) + tf.reduce_sum(out.policy_params[-1] ** 2)
    grads = tape.gradient(loss, net.trainable_variables)
    assert all(g is not None and np.abs(g.numpy()).sum() > 0 for g in grads)
    assert out.policy_params.dtype == tf.float32 and out.state.dtype == tf.float32


def test_the_cell_sees_the_same_input_whatever_the_torso_scale():
    """The LayerNorm before the cell: scaling the fc layer by 100 (its ReLU features scale by 100) leaves the
    policy, value and state unchanged, where the plain cell saturated (README, A3G features)."""
    net = network.build_network(6, "a3c-lstm", device="/CPU:0")
    rng = np.random.default_rng(3)
    obs = tf.constant(rng.integers(0, 256, (4,) + network.OBS_SHAPE, dtype=np.uint8))
    state = tf.constant(rng.normal(size=(4, 512)).astype(np.float32))
    before = net(obs, state)
    net.hidden.kernel.assign(net.hidden.kernel * 100.0)
    net.hidden.bias.assign(net.hidden.bias * 100.0)
    after = net(obs, state)
    assert float(tf.reduce_max(net.torso(obs))) > 10.0  # the features really are large now
    for a, b in zip(before[:3], after[:3]):  # policy, value, state (no Q head here)
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-2, atol=2e-3)  # O(1) if the cell saturated
