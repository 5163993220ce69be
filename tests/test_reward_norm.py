"""reward_norm.py (--normalize-rewards): the running return statistics against a step-by-step NumPy version of
VecNormalize's rule, across an episode end, a truncation and an autoreset step; the learning rewards it gives; bad
input."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

import hparams
from reward_norm import CLIP, ReturnNormalizer


def _naive_returns(chunks, gamma):
    """Every valid step's discounted return, one env and step at a time: R <- gamma R + r; R <- 0 after an
    episode's last step; an autoreset step (not valid) changes nothing."""
    seen = []
    returns = {}
    for rewards, done, valid, thread in chunks:
        T, B = rewards.shape
        R = returns.setdefault(thread, [0.0] * B)
        for t in range(T):
            for b in range(B):
                if valid[t, b]:
                    R[b] = gamma * R[b] + float(rewards[t, b])
                    seen.append(R[b])
                if done[t, b]:
                    R[b] = 0.0
    return np.array(seen)


def _chunks():
    rng = np.random.default_rng(0)
    T, B = 6, 3
    chunks = []
    for thread in (0, 1, 0):  # thread 0's second rollout continues its first one's returns
        rewards = rng.normal(2.0, 5.0, (T, B)).astype(np.float32)
        done = np.zeros((T, B), bool)
        valid = np.ones((T, B), bool)
        chunks.append([rewards, done, valid, thread])
    chunks[0][1][2, 0] = True  # env 0 terminates at step 2...
    chunks[0][2][3, 0] = False  # ...and step 3 is its autoreset (reward 0, masked)
    chunks[0][0][3, 0] = 0.0
    chunks[1][1][4, 2] = True  # a truncation: the same for the return (the episode ends)
    chunks[2][1][0, 1] = True
    return chunks


def test_the_running_statistics_are_those_of_every_valid_steps_return():
    gamma = 0.9
    norm = ReturnNormalizer(gamma)
    for rewards, done, valid, thread in _chunks():
        norm.fold(rewards, done, valid, thread)
    seen = _naive_returns(_chunks(), gamma)
    assert len(seen) == 3 * 6 * 3 - 1  # the autoreset step is not counted
    assert float(norm.count.numpy()) == pytest.approx(len(seen) + 1e-4)
    # The statistics start from VecNormalize's prior (count 1e-4, mean 0, var 1): pooled with the returns seen.
    n0, total = 1e-4, len(seen) + 1e-4
    mean = seen.sum() / total
    var = (n0 * (1.0 + mean ** 2) + ((seen - mean) ** 2).sum()) / total
    np.testing.assert_allclose(norm.mean.numpy(), mean, rtol=1e-9)
    np.testing.assert_allclose(norm.var.numpy(), var, rtol=1e-9)
    np.testing.assert_allclose(norm.scale().numpy(), 1.0 / np.sqrt(var + 1e-8), rtol=1e-6)


def test_each_thread_keeps_its_own_returns():
    gamma = 0.5
    chunks = _chunks()
    both = ReturnNormalizer(gamma)
    for rewards, done, valid, thread in chunks:
        both.fold(rewards, done, valid, thread)
    mixed = ReturnNormalizer(gamma)  # the same rollouts, all as thread 0: thread 1's returns would carry on
    for rewards, done, valid, _ in chunks:
        mixed.fold(rewards, done, valid, 0)
    assert not np.isclose(both.var.numpy(), mixed.var.numpy())
    np.testing.assert_allclose(both.returns[0], _last_returns([c for c in chunks if c[3] == 0], gamma))


def _last_returns(chunks, gamma):
    R = np.zeros(chunks[0][0].shape[1])
    for rewards, done, valid, _ in chunks:
        for t in range(len(rewards)):
            R = np.where(valid[t], gamma * R + rewards[t], R)
            R = np.where(done[t], 0.0, R)
    return R


def test_the_learning_rewards_are_scaled_clipped_and_then_times_reward_scale():
    from learner import make_learner
    import specs
    hp = hparams.validate(dataclasses.replace(hparams.HParams(), env_id="Pendulum-v1", clip_rewards=False,
                                              normalize_rewards=True, reward_scale=0.5, threads=1))
    learner = make_learner(hp, specs.ActionSpec("box", 1, (-2.0,), (2.0,)), obs=specs.ObsSpec((3,), "float32"))
    learner.reward_norm.var.assign(4.0)
    rewards = tf.constant([[1.0, -3.0, 100.0, -100.0]])
    got = learner._learning_rewards(rewards).numpy()
    want = np.clip(np.array([[1.0, -3.0, 100.0, -100.0]]) / np.sqrt(4.0 + 1e-8), -CLIP, CLIP) * 0.5
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert "reward_norm" in learner.checkpoint_objects()
    plain = make_learner(dataclasses.replace(hp, normalize_rewards=False), specs.ActionSpec("box", 1, (-2.0,), (2.0,)),
                         obs=specs.ObsSpec((3,), "float32"))
    assert plain.reward_norm is None and "reward_norm" not in plain.checkpoint_objects()
    np.testing.assert_allclose(plain._learning_rewards(rewards).numpy(), rewards.numpy() * 0.5)


def test_a_rollout_of_the_wrong_shape_is_refused():
    norm = ReturnNormalizer(0.99)
    with pytest.raises(ValueError, match=r"must be \[T, B\] alike"):
        norm.fold(np.zeros((4, 2)), np.zeros((4, 3), bool), np.ones((4, 2), bool))
    with pytest.raises(ValueError, match=r"must be \[T, B\] alike"):
        norm.fold(np.zeros(4), np.zeros(4, bool), np.ones(4, bool))
