"""a3c_test.py's pure parts: the epsilon-random replacement of actions, the acting rule from the flags and the env
family's protocol, and the checks of its flags. The runs of a3c_test.py itself are in test_end_to_end,
test_reliability_cli and test_gymnasium."""
import numpy as np
import pytest

import a3c_test
import envs
from errors import ConfigError
from specs import ActionSpec


def test_epsilon_zero_keeps_every_action_and_the_dtype():
    actions = np.arange(12, dtype=np.int32) % 6
    out = a3c_test.epsilon_random(actions, 0.0, 6, np.random.default_rng(0))
    np.testing.assert_array_equal(out, actions)
    assert out.dtype == np.int32


def test_epsilon_one_plays_every_action_uniformly():
    rng = np.random.default_rng(1)
    actions = np.zeros(60_000, np.int64)  # the policy always says 0
    counts = np.bincount(a3c_test.epsilon_random(actions, 1.0, 6, rng), minlength=6)
    # 10,000 expected per action; the binomial std is ~91, so 500 is > 5 sigma
    np.testing.assert_allclose(counts, 10_000, atol=500)


def test_epsilon_replaces_that_share_of_actions_and_a_replacement_may_repeat_the_action():
    rng = np.random.default_rng(2)
    actions = np.full(100_000, 3, np.int64)
    out = a3c_test.epsilon_random(actions, 0.3, 6, rng)
    assert out.min() >= 0 and out.max() <= 5
    # 30% are redrawn, 1/6 of those land on 3 again: 25% change (binomial std 0.14%)
    assert np.mean(out != actions) == pytest.approx(0.3 * 5 / 6, abs=0.01)


@pytest.mark.parametrize("value", ["-0.1", "1.5"])
def test_epsilon_outside_zero_one_is_a_one_line_config_error(value):
    with pytest.raises(ConfigError, match=rf"--epsilon must be in \[0, 1\], got {value}"):
        a3c_test.parse_args(["--model", "m", "--out", "o", "--epsilon", value])


@pytest.mark.parametrize("env_id", ["ALE/Pong-v5", "CartPole-v1", "retro:Airstriker-Genesis"])
def test_without_flags_every_family_today_evaluates_greedy_with_epsilon_zero(env_id):
    args = a3c_test.parse_args(["--model", "m", "--out", "o"])
    assert (args.greedy, args.epsilon) == (None, None)  # unset: the family decides
    assert a3c_test.acting_rule(args, envs.family_of(env_id).eval_protocol) == (True, 0.0)


@pytest.mark.parametrize("flags, expected", [
    ([], (False, 0.05)),  # nothing given: the family's protocol whole
    (["--greedy"], (True, 0.05)),  # each flag overrides its own half only
    (["--epsilon", "0"], (False, 0.0)),
    (["--greedy", "--epsilon", "0.01"], (True, 0.01)),
])
def test_flags_override_the_familys_protocol_half_by_half(flags, expected):
    family_protocol = envs.EvalProtocol(greedy=False, epsilon=0.05)
    rule = a3c_test.acting_rule(a3c_test.parse_args(["--model", "m", "--out", "o", *flags]), family_protocol)
    assert rule == expected


def test_a_familys_random_actions_are_dropped_on_box_actions_but_a_users_are_kept_to_be_refused():
    family_protocol = envs.EvalProtocol(greedy=True, epsilon=0.05)
    box, discrete = ActionSpec("box", 2, (-1.0, -1.0), (1.0, 1.0)), ActionSpec("discrete", 4)
    unset = a3c_test.parse_args(["--model", "m", "--out", "o"])
    assert a3c_test.acting_rule(unset, family_protocol, box) == (True, 0.0)
    assert a3c_test.acting_rule(unset, family_protocol, discrete) == (True, 0.05)
    assert a3c_test.acting_rule(unset, family_protocol, None) == (True, 0.05)  # not known yet: as the family says
    given = a3c_test.parse_args(["--model", "m", "--out", "o", "--epsilon", "0.01"])
    rule = a3c_test.acting_rule(given, family_protocol, box)
    assert rule == (True, 0.01)
    with pytest.raises(ConfigError, match=r"--epsilon needs a discrete action space"):
        a3c_test._check_epsilon(rule.epsilon, box, "LunarLanderContinuous-v3")


def test_an_acting_rule_says_itself_in_words():
    assert envs.EvalProtocol().describe() == "greedy"
    assert envs.EvalProtocol(False, 0.0).describe() == "sampled"
    assert envs.EvalProtocol(True, 0.01).describe() == "greedy with 0.01 random actions"
