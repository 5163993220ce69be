"""distributions.py against NumPy written from the densities, and specs.py's spaces and saved form."""
import math
import re

import gymnasium
import numpy as np
import pytest
import tensorflow as tf

import specs
from distributions import Categorical, DiagGaussian, for_action_spec


def _np_gaussian_log_prob(mean, log_std, a):
    std = np.exp(log_std)
    return np.sum(-((a - mean) ** 2) / (2 * std ** 2) - np.log(std) - 0.5 * np.log(2 * np.pi), axis=-1)


def test_gaussian_log_prob_and_entropy_match_numpy():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(5, 3, 2))
    log_std = rng.normal(size=(5, 3, 2)) * 0.5
    actions = rng.normal(size=(5, 3, 2)) * 2
    params = tf.constant(np.concatenate([mean, log_std], -1), tf.float32)
    dist = DiagGaussian(2)
    np.testing.assert_allclose(dist.log_prob(params, tf.constant(actions, tf.float32)).numpy(),
                               _np_gaussian_log_prob(mean, log_std, actions), rtol=1e-5, atol=1e-5)
    # H = sum_d 0.5 * log(2 pi e sigma_d^2)
    np.testing.assert_allclose(dist.entropy(params).numpy(),
                               np.sum(0.5 * np.log(2 * np.pi * np.e * np.exp(2 * log_std)), -1), rtol=1e-5)
    np.testing.assert_array_equal(dist.mode(params).numpy(), mean.astype(np.float32))


def test_gaussian_samples_have_the_head_mean_and_std_and_repeat_with_the_seed():
    dist = DiagGaussian(2)
    params = tf.constant([[1.5, -3.0, math.log(0.5), math.log(2.0)]] * 20000, tf.float32)
    a = dist.sample(params, tf.constant([3, 4])).numpy()
    assert a.shape == (20000, 2) and a.dtype == np.float32
    np.testing.assert_allclose(a.mean(0), [1.5, -3.0], atol=0.05)
    np.testing.assert_allclose(a.std(0), [0.5, 2.0], rtol=0.03)
    np.testing.assert_array_equal(dist.sample(params, tf.constant([3, 4])).numpy(), a)
    assert not np.array_equal(dist.sample(params, tf.constant([3, 5])).numpy(), a)


def test_categorical_matches_numpy():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4, 3, 5)).astype(np.float32)
    actions = rng.integers(0, 5, (4, 3)).astype(np.int32)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    dist = Categorical(5)
    np.testing.assert_allclose(dist.log_prob(logits, actions).numpy(),
                               np.take_along_axis(log_p, actions[..., None], -1)[..., 0], rtol=1e-5)
    np.testing.assert_allclose(dist.entropy(logits).numpy(), -(np.exp(log_p) * log_p).sum(-1), rtol=1e-5)
    np.testing.assert_array_equal(dist.mode(logits).numpy(), logits.argmax(-1))
    sample = dist.sample(tf.constant(logits[0]), tf.constant([1, 2])).numpy()
    assert sample.dtype == np.int32 and sample.shape == (3,)


def test_gaussian_policy_gradient_moves_the_mean_toward_good_actions():
    """d log N(a; mu, s) / d mu = (a - mu) / s^2: the score function the A3C loss multiplies by the advantage."""
    dist = DiagGaussian(1)
    mean = tf.Variable([[0.3]])
    log_std = tf.Variable([[math.log(0.5)]])
    with tf.GradientTape() as tape:
        lp = dist.log_prob(tf.concat([mean, log_std], -1), tf.constant([[1.0]]))
    g_mean, g_log_std = tape.gradient(lp, [mean, log_std])
    np.testing.assert_allclose(g_mean.numpy(), [[(1.0 - 0.3) / 0.25]], rtol=1e-5)
    np.testing.assert_allclose(g_log_std.numpy(), [[(1.0 - 0.3) ** 2 / 0.25 - 1.0]], rtol=1e-5)


# ----------------------------------------------------------------------------------------------------------
# specs.py
# ----------------------------------------------------------------------------------------------------------
def test_specs_of_gymnasium_spaces():
    box_obs = gymnasium.spaces.Box(-1, 1, (8,), np.float64)
    assert specs.obs_spec_of(box_obs) == specs.ObsSpec((8,), "float32")
    frames = gymnasium.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert specs.obs_spec_of(frames) == specs.ATARI_OBS and specs.ATARI_OBS.is_image
    assert specs.action_spec_of(gymnasium.spaces.Discrete(6)) == specs.discrete(6)
    box = specs.action_spec_of(gymnasium.spaces.Box(-2, 2, (1,), np.float32))
    assert box == specs.ActionSpec("box", 1, (-2.0,), (2.0,)) and not box.is_discrete
    assert isinstance(for_action_spec(box), DiagGaussian)
    assert isinstance(for_action_spec(specs.discrete(3)), Categorical)


@pytest.mark.parametrize("space, words", [
    (gymnasium.spaces.Box(0, 255, (210, 160, 3), np.uint8), "preprocessed to (4, 84, 84)"),
    (gymnasium.spaces.Dict({"a": gymnasium.spaces.Discrete(2)}), "neither flat numbers"),
])
def test_unreadable_observation_spaces_are_named(space, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        specs.obs_spec_of(space)


@pytest.mark.parametrize("space, words", [
    (gymnasium.spaces.Box(-np.inf, np.inf, (2,)), "infinite bounds"),
    (gymnasium.spaces.MultiDiscrete([2, 3]), "not supported"),
    (gymnasium.spaces.Discrete(3, start=1), "start at 0"),
])
def test_unsupported_action_spaces_are_named(space, words):
    with pytest.raises(ValueError, match=words):
        specs.action_spec_of(space)


def test_saved_specs_round_trip_and_legacy_configs_read_as_atari():
    box = specs.ActionSpec("box", 2, (-1.0, -2.0), (1.0, 2.0))
    flat = specs.ObsSpec((3,), "float32")
    for obs, action in ((flat, box), (specs.ATARI_OBS, specs.discrete(6))):
        import json
        assert specs.from_config(json.loads(json.dumps(specs.to_config(obs, action)))) == (obs, action)
    assert specs.to_config(specs.ATARI_OBS, specs.discrete(6))["num_actions"] == 6  # read by older tools
    assert specs.from_config({"num_actions": 4}) == (specs.ATARI_OBS, specs.discrete(4))
    assert specs.from_config({}) == (None, None)
    with pytest.raises(ValueError, match="malformed"):
        specs.from_config({"action_space": {"kind": "box"}})


def test_mismatch_says_what_differs():
    flat, box = specs.ObsSpec((3,), "float32"), specs.ActionSpec("box", 1, (-2.0,), (2.0,))
    assert specs.mismatch((flat, box), (flat, box)) is None
    assert specs.mismatch((None, None), (flat, box)) is None
    assert "policy over 6 actions, but the env has box(1) actions" in specs.mismatch(
        (None, specs.discrete(6)), (flat, box))
    assert "observations (4, 84, 84) uint8, but the env gives (3,) float32" in specs.mismatch(
        (specs.ATARI_OBS, None), (flat, box))
