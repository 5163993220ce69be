"""Tests of a3c_math against slow NumPy references written straight from the formulas, and against
hand-computed fixtures (in the style of TF-Agents' value_ops_test)."""
import numpy as np
import pytest
import tensorflow as tf

import a3c_math
from distributions import Categorical
from helpers import random_episode_ends

CAT = Categorical(6)  # its math does not depend on the number of actions

RANK_ERRORS = (ValueError, tf.errors.InvalidArgumentError)


# ------------------------------------------------------------------------------------------------------
# Slow NumPy references: an explicit backwards loop over t, per env.
# ------------------------------------------------------------------------------------------------------
def np_n_step_returns(rewards, terminated, truncated, values, bootstrap_value, gamma):
    T, B = rewards.shape
    returns = np.zeros((T, B), np.float64)
    for b in range(B):
        R = float(bootstrap_value[b])  # R_T = V(s_T)
        for t in reversed(range(T)):
            v_next = values[t + 1, b] if t + 1 < T else bootstrap_value[b]  # V(s_{t+1})
            if terminated[t, b]:
                R = rewards[t, b]
            elif truncated[t, b]:
                R = rewards[t, b] + gamma * v_next
            else:
                R = rewards[t, b] + gamma * R
            returns[t, b] = R
    return returns


def np_gae(rewards, terminated, truncated, values, bootstrap_value, gamma, lambda_):
    T, B = rewards.shape
    advantages = np.zeros((T, B), np.float64)
    for b in range(B):
        A = 0.0  # A_T = 0
        for t in reversed(range(T)):
            v_next = values[t + 1, b] if t + 1 < T else bootstrap_value[b]
            term, trunc = float(terminated[t, b]), float(truncated[t, b])
            delta = rewards[t, b] + gamma * (1.0 - term) * v_next - values[t, b]
            A = delta + gamma * lambda_ * (1.0 - term) * (1.0 - trunc) * A
            advantages[t, b] = A
    return advantages


def random_rollout(seed, T=7, B=5):
    rng = np.random.default_rng(seed)
    rewards, terminated, truncated = random_episode_ends(rng, T, B, both_flags=seed % 2 == 1)
    values = rng.normal(size=(T, B)).astype(np.float32)
    bootstrap_value = rng.normal(size=(B,)).astype(np.float32)
    return rewards, terminated, truncated, values, bootstrap_value


SEEDS = [0, 1, 2, 3]
LAMBDAS = [0.0, 0.5, 0.95, 1.0]


@pytest.mark.parametrize("seed", SEEDS)
def test_n_step_returns_match_reference(seed):
    r, term, trunc, v, boot = random_rollout(seed)
    gamma = 0.9
    got = a3c_math.n_step_returns(r, term, trunc, v, boot, gamma)
    assert got.shape == (7, 5) and got.dtype == tf.float32
    np.testing.assert_allclose(got.numpy(), np_n_step_returns(r, term, trunc, v, boot, gamma),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("lambda_", LAMBDAS)
def test_gae_matches_reference(seed, lambda_):
    r, term, trunc, v, boot = random_rollout(seed)
    gamma = 0.9
    adv, targets = a3c_math.gae_advantages(r, term, trunc, v, boot, gamma, lambda_)
    expected = np_gae(r, term, trunc, v, boot, gamma, lambda_)
    np.testing.assert_allclose(adv.numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(targets.numpy(), expected + v, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_gae_lambda_one_is_n_step_advantage(seed):
    r, term, trunc, v, boot = random_rollout(seed, T=9, B=4)
    gamma = 0.97
    adv, targets = a3c_math.gae_advantages(r, term, trunc, v, boot, gamma, 1.0)
    returns = a3c_math.n_step_returns(r, term, trunc, v, boot, gamma)
    np.testing.assert_allclose((adv + v).numpy(), returns.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(targets.numpy(), returns.numpy(), rtol=1e-5, atol=1e-5)


def test_next_values():
    values = tf.constant([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    got = a3c_math.next_values(values, tf.constant([7.0, 8.0]))
    np.testing.assert_array_equal(got.numpy(), [[3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])


# ------------------------------------------------------------------------------------------------------
# Hand-computed fixtures, gamma = 0.5, T = 4, time-major [T, B].
# ------------------------------------------------------------------------------------------------------
F, T_ = False, True
GAMMA = 0.5


def _col(*xs, dtype=np.float32):
    return np.array(xs, dtype)[:, None]  # [T] -> [T, 1]


def test_fixture_episode_end_and_no_end():
    # env 0: terminated at t=1.  rewards [1, 2, 0, 8], V(s_t) = [4, 2, 6, 8], V(s_4) = 16
    #   R_3 = 8 + .5*16 = 16;  R_2 = 0 + .5*16 = 8;  R_1 = 2 (terminated, no bootstrap);  R_0 = 1 + .5*2 = 2
    #   deltas: d_0 = 1 + .5*2 - 4 = -2;  d_1 = 2 - 2 = 0;  d_2 = 0 + .5*8 - 6 = -2;  d_3 = 8 + .5*16 - 8 = 8
    #   GAE(0)   = deltas                                     = [-2, 0, -2, 8]
    #   GAE(.5): A_3 = 8; A_2 = -2 + .25*8 = 0; A_1 = 0 (cut); A_0 = -2 + .25*0 = -2  -> [-2, 0, 0, 8]
    #   GAE(1)   = R - V = [2-4, 2-2, 8-6, 16-8]              = [-2, 0, 2, 8]
    # env 1: no episode end.  rewards [0, 0, 0, 1], V(s_t) = 1 everywhere, V(s_4) = 8
    #   R_3 = 1 + .5*8 = 5;  R_2 = 2.5;  R_1 = 1.25;  R_0 = 0.625
    #   deltas: d_t = 0 + .5*1 - 1 = -.5 (t < 3);  d_3 = 1 + .5*8 - 1 = 4
    #   GAE(0) = [-.5, -.5, -.5, 4];  GAE(1) = R - V = [-.375, .25, 1.5, 4]
    #   GAE(.5): A_3 = 4; A_2 = -.5 + .25*4 = .5; A_1 = -.5 + .125 = -.375; A_0 = -.5 - .09375 = -.59375
    rewards = np.array([[1, 0], [2, 0], [0, 0], [8, 1]], np.float32)
    terminated = np.array([[F, F], [T_, F], [F, F], [F, F]])
    truncated = np.zeros((4, 2), bool)
    values = np.array([[4, 1], [2, 1], [6, 1], [8, 1]], np.float32)
    bootstrap = np.array([16, 8], np.float32)

    returns = a3c_math.n_step_returns(rewards, terminated, truncated, values, bootstrap, GAMMA)
    np.testing.assert_allclose(returns.numpy(), [[2, 0.625], [2, 1.25], [8, 2.5], [16, 5]])

    expected = {
        0.0: [[-2, -0.5], [0, -0.5], [-2, -0.5], [8, 4]],
        0.5: [[-2, -0.59375], [0, -0.375], [0, 0.5], [8, 4]],
        1.0: [[-2, -0.375], [0, 0.25], [2, 1.5], [8, 4]],
    }
    for lambda_, exp in expected.items():
        adv, targets = a3c_math.gae_advantages(rewards, terminated, truncated, values, bootstrap, GAMMA, lambda_)
        np.testing.assert_allclose(adv.numpy(), exp, err_msg=f"lambda={lambda_}")
        np.testing.assert_allclose(targets.numpy(), np.array(exp) + values, err_msg=f"lambda={lambda_}")


def test_fixture_truncation_bootstraps_from_next_state_value():
    # Truncated at t=1: the return there bootstraps from V(s_2) = 6 (the final observation), not from R_2.
    # rewards [1, 2, 0, 4], V(s_t) = [2, 4, 6, 8], V(s_4) = 8
    #   R_3 = 4 + .5*8 = 8;  R_2 = 0 + .5*8 = 4;  R_1 = 2 + .5*V(s_2) = 2 + 3 = 5  (R_2 would give 4);
    #   R_0 = 1 + .5*5 = 3.5
    #   deltas: d_0 = 1 + .5*4 - 2 = 1;  d_1 = 2 + .5*6 - 4 = 1;  d_2 = 0 + .5*8 - 6 = -2;  d_3 = 4 + 4 - 8 = 0
    #   GAE(.5): A_3 = 0; A_2 = -2; A_1 = 1 (cut by truncation); A_0 = 1 + .25*1 = 1.25
    #   GAE(1) = R - V = [1.5, 1, -2, 0]
    rewards = _col(1, 2, 0, 4)
    terminated = _col(F, F, F, F, dtype=bool)
    truncated = _col(F, T_, F, F, dtype=bool)
    values = _col(2, 4, 6, 8)
    bootstrap = np.array([8], np.float32)

    returns = a3c_math.n_step_returns(rewards, terminated, truncated, values, bootstrap, GAMMA)
    np.testing.assert_allclose(returns.numpy()[:, 0], [3.5, 5, 4, 8])
    adv, _ = a3c_math.gae_advantages(rewards, terminated, truncated, values, bootstrap, GAMMA, 0.5)
    np.testing.assert_allclose(adv.numpy()[:, 0], [1.25, 1, -2, 0])
    adv, _ = a3c_math.gae_advantages(rewards, terminated, truncated, values, bootstrap, GAMMA, 1.0)
    np.testing.assert_allclose(adv.numpy()[:, 0], [1.5, 1, -2, 0])


def test_fixture_truncation_at_last_step_uses_bootstrap_value():
    # Truncated at t=3 = T-1: V(s_{t+1}) is bootstrap_value = 4.  rewards [0, 0, 0, 2], V = 0
    #   R_3 = 2 + .5*4 = 4;  R_2 = 2;  R_1 = 1;  R_0 = .5
    rewards = _col(0, 0, 0, 2)
    flags_none = _col(F, F, F, F, dtype=bool)
    truncated = _col(F, F, F, T_, dtype=bool)
    values = _col(0, 0, 0, 0)
    returns = a3c_math.n_step_returns(rewards, flags_none, truncated, values, np.array([4], np.float32), GAMMA)
    np.testing.assert_allclose(returns.numpy()[:, 0], [0.5, 1, 2, 4])


def test_terminated_wins_over_truncated():
    # Both flags at t=1: no bootstrap at all (R_1 = r_1 = 2), V(s_2) = 100 must not leak in.
    rewards = _col(1, 2, 0, 0)
    both = _col(F, T_, F, F, dtype=bool)
    values = _col(0, 0, 100, 0)
    returns = a3c_math.n_step_returns(rewards, both, both, values, np.array([0], np.float32), GAMMA)
    np.testing.assert_allclose(returns.numpy()[:2, 0], [2, 2])
    adv, _ = a3c_math.gae_advantages(rewards, both, both, values, np.array([0], np.float32), GAMMA, 1.0)
    np.testing.assert_allclose(adv.numpy()[:2, 0], [2, 2])


# ------------------------------------------------------------------------------------------------------
# Losses
# ------------------------------------------------------------------------------------------------------
def _np_log_softmax(logits):
    z = logits - logits.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _loss_inputs(seed=0, T=5, B=3, A=4):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(T, B, A)).astype(np.float32) * 2
    actions = rng.integers(0, A, size=(T, B)).astype(np.int32)
    advantages = rng.normal(size=(T, B)).astype(np.float32)
    values = rng.normal(size=(T, B)).astype(np.float32)
    targets = rng.normal(size=(T, B)).astype(np.float32)
    valid = rng.random((T, B)) < 0.7
    valid[0, 0], valid[1, 0] = True, False  # at least one of each
    return logits, actions, advantages, values, targets, valid


def _np_losses(logits, actions, advantages, values, targets, valid):
    logp = _np_log_softmax(logits.astype(np.float64))
    logp_a = np.take_along_axis(logp, actions[..., None], -1)[..., 0]
    m = valid.astype(np.float64)
    n = max(m.sum(), 1.0)
    policy = -(logp_a * advantages * m).sum() / n
    value = (0.5 * (targets - values) ** 2 * m).sum() / n
    ent = (-(np.exp(logp) * logp).sum(-1) * m).sum() / n
    return policy, value, ent


@pytest.mark.parametrize("seed", [0, 1])
def test_losses_match_numpy(seed):
    logits, actions, adv, values, targets, valid = _loss_inputs(seed)
    policy, value, ent = _np_losses(logits, actions, adv, values, targets, valid)
    np.testing.assert_allclose(a3c_math.policy_loss(CAT.log_prob(logits, actions), adv, valid).numpy(), policy,
                               rtol=1e-5)
    np.testing.assert_allclose(a3c_math.value_loss(values, targets, valid).numpy(), value, rtol=1e-5)
    np.testing.assert_allclose(a3c_math.entropy(CAT.entropy(logits), valid).numpy(), ent, rtol=1e-5)


def test_entropy_of_uniform_policy_is_log_num_actions():
    valid = np.ones((2, 3), bool)
    np.testing.assert_allclose(a3c_math.entropy(CAT.entropy(np.zeros((2, 3, 6), np.float32)), valid).numpy(), np.log(6),
                               rtol=1e-6)


def test_invalid_steps_do_not_change_losses():
    logits, actions, adv, values, targets, valid = _loss_inputs(3)
    rng = np.random.default_rng(99)
    inv = ~valid
    logits2 = logits.copy()
    logits2[inv] = rng.normal(size=(inv.sum(), logits.shape[-1])) * 50
    actions2 = np.where(inv, (actions + 1) % logits.shape[-1], actions).astype(np.int32)
    adv2 = np.where(inv, 1e3, adv).astype(np.float32)
    values2 = np.where(inv, -1e3, values).astype(np.float32)
    targets2 = np.where(inv, 1e3, targets).astype(np.float32)

    before = [a3c_math.policy_loss(CAT.log_prob(logits, actions), adv, valid),
              a3c_math.value_loss(values, targets, valid), a3c_math.entropy(CAT.entropy(logits), valid)]
    after = [a3c_math.policy_loss(CAT.log_prob(logits2, actions2), adv2, valid),
             a3c_math.value_loss(values2, targets2, valid), a3c_math.entropy(CAT.entropy(logits2), valid)]
    for b, a, name in zip(before, after, ["policy", "value", "entropy"]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, err_msg=name)

    # Same for the whole objective: change everything the env reports at invalid steps.
    rewards, term, trunc, _, boot = random_rollout(5, T=5, B=3)
    total, _ = a3c_math.a3c_loss(CAT.log_prob(logits, actions), CAT.entropy(logits), values, rewards, term, trunc,
                                 valid, boot, 0.99, 0.95, 0.5, 0.01)
    # Perturbing logits / actions at invalid steps does not enter any loss term (values do, as bootstraps).
    total2, _ = a3c_math.a3c_loss(CAT.log_prob(logits2, actions2), CAT.entropy(logits2), values, rewards, term,
                                  trunc, valid, boot, 0.99, 0.95, 0.5, 0.01)
    np.testing.assert_allclose(total2.numpy(), total.numpy(), rtol=1e-6)


def test_all_invalid_mask_gives_zero_finite_losses_and_gradients():
    logits, actions, adv, values, targets, _ = _loss_inputs(4)
    valid = np.zeros(actions.shape, bool)
    logits_v, values_v = tf.Variable(logits), tf.Variable(values)
    rewards, term, trunc, _, boot = random_rollout(6, T=5, B=3)
    with tf.GradientTape() as tape:
        total, parts = a3c_math.a3c_loss(CAT.log_prob(logits_v, actions), CAT.entropy(logits_v), values_v, rewards,
                                         term, trunc, valid, boot, 0.99, 1.0, 0.5, 0.01)
    for name, x in dict(parts, total=total).items():
        assert np.isfinite(x.numpy()), name
        assert x.numpy() == 0.0, name
    for g in tape.gradient(total, [logits_v, values_v]):
        assert np.all(np.isfinite(g.numpy())) and not np.any(g.numpy())


def test_policy_loss_does_not_differentiate_advantages():
    logits, actions, adv, _, _, valid = _loss_inputs(7)
    logits_t, adv_t = tf.constant(logits), tf.constant(adv)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([logits_t, adv_t])
        loss = a3c_math.policy_loss(CAT.log_prob(logits_t, actions), adv_t, valid)
    g_adv = tape.gradient(loss, adv_t)
    assert g_adv is None or not np.any(g_adv.numpy())
    g_logits = tape.gradient(loss, logits_t).numpy()
    # d/dlogits of -sum(m * A * log softmax(logits)[a]) / n = -m * A * (onehot(a) - softmax) / n
    probs = np.exp(_np_log_softmax(logits.astype(np.float64)))
    onehot = np.eye(logits.shape[-1])[actions]
    m = valid.astype(np.float64)
    expected = -(m * adv)[..., None] * (onehot - probs) / m.sum()
    np.testing.assert_allclose(g_logits, expected, rtol=1e-4, atol=1e-7)


def test_value_loss_targets_get_no_gradient():
    _, _, _, values, targets, valid = _loss_inputs(8)
    v_t, tgt_t = tf.constant(values), tf.constant(targets)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([v_t, tgt_t])
        loss = a3c_math.value_loss(v_t, tgt_t, valid)
    g_tgt = tape.gradient(loss, tgt_t)
    assert g_tgt is None or not np.any(g_tgt.numpy())
    m = valid.astype(np.float64)
    np.testing.assert_allclose(tape.gradient(loss, v_t).numpy(), m * (values - targets) / m.sum(),
                               rtol=1e-5, atol=1e-7)


def test_returns_and_advantages_are_constants_for_the_value_head():
    r, term, trunc, v, boot = random_rollout(9)
    v_t, boot_t = tf.constant(v), tf.constant(boot)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([v_t, boot_t])
        returns = a3c_math.n_step_returns(r, term, trunc, v_t, boot_t, 0.9)
        adv, targets = a3c_math.gae_advantages(r, term, trunc, v_t, boot_t, 0.9, 0.95)
    for out in (returns, adv, targets):
        for g in tape.gradient(out, [v_t, boot_t]):
            assert g is None or not np.any(g.numpy())


def test_a3c_loss_value_gradient_comes_only_from_value_loss():
    """The policy gradient must not flow into the value head through the advantage: d total / d V equals
    value_coef * d value_loss / d V with the targets held fixed."""
    logits, actions, _, values, _, valid = _loss_inputs(10)
    rewards, term, trunc, _, boot = random_rollout(11, T=5, B=3)
    v_t = tf.constant(values)
    value_coef = 0.5
    with tf.GradientTape() as tape:
        tape.watch(v_t)
        total, _ = a3c_math.a3c_loss(CAT.log_prob(logits, actions), CAT.entropy(logits), v_t, rewards, term, trunc,
                                     valid, boot, 0.99, 0.9, value_coef, 0.01)
    targets = np_gae(rewards, term, trunc, values, boot, 0.99, 0.9) + values
    m = valid.astype(np.float64)
    np.testing.assert_allclose(tape.gradient(total, v_t).numpy(), value_coef * m * (values - targets) / m.sum(),
                               rtol=1e-4, atol=1e-6)


def test_a3c_loss_total_and_parts():
    logits, actions, _, values, _, valid = _loss_inputs(12)
    rewards, term, trunc, _, boot = random_rollout(13, T=5, B=3)
    gamma, lambda_, value_coef, beta = 0.99, 0.95, 0.5, 0.01
    total, parts = a3c_math.a3c_loss(CAT.log_prob(logits, actions), CAT.entropy(logits), values, rewards, term,
                                     trunc, valid, boot, gamma, lambda_, value_coef, beta)
    adv = np_gae(rewards, term, trunc, values, boot, gamma, lambda_)
    policy, value, ent = _np_losses(logits, actions, adv, values, adv + values, valid)
    np.testing.assert_allclose(parts["policy"].numpy(), policy, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(parts["value"].numpy(), value, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(parts["entropy"].numpy(), ent, rtol=1e-5)
    np.testing.assert_allclose(parts["advantage"].numpy(), (adv * valid).sum() / valid.sum(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(total.numpy(), policy + value_coef * value - beta * ent, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------------------------
# Rank checks: everything is time-major [T, B].
# ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad_shape", [(4,), (4, 2, 1)])
@pytest.mark.parametrize("which", ["rewards", "terminated", "values"])
def test_returns_reject_non_time_major(bad_shape, which):
    args = dict(rewards=np.zeros((4, 2), np.float32), terminated=np.zeros((4, 2), bool),
                truncated=np.zeros((4, 2), bool), values=np.zeros((4, 2), np.float32))
    args[which] = np.zeros(bad_shape, args[which].dtype)
    boot = np.zeros((2,), np.float32)
    with pytest.raises(RANK_ERRORS):
        a3c_math.n_step_returns(args["rewards"], args["terminated"], args["truncated"], args["values"], boot, 0.9)
    with pytest.raises(RANK_ERRORS):
        a3c_math.gae_advantages(args["rewards"], args["terminated"], args["truncated"], args["values"], boot,
                                0.9, 0.95)


@pytest.mark.parametrize("bad_shape", [(4,), (4, 2, 1)])
def test_losses_reject_non_time_major(bad_shape):
    x = np.zeros((4, 2), np.float32)
    valid = np.ones((4, 2), bool)
    bad = np.zeros(bad_shape, np.float32)
    with pytest.raises(RANK_ERRORS):
        a3c_math.policy_loss(x, bad, valid)
    with pytest.raises(RANK_ERRORS):
        a3c_math.policy_loss(bad, x, valid)
    with pytest.raises(RANK_ERRORS):
        a3c_math.entropy(bad, valid)
    with pytest.raises(RANK_ERRORS):
        a3c_math.value_loss(bad, x, valid)
    with pytest.raises(RANK_ERRORS):
        a3c_math.value_loss(x, bad, valid)
    with pytest.raises(RANK_ERRORS):
        a3c_math.value_loss(x, x, bad.astype(bool))


def test_graph_mode_with_dynamic_shapes_matches_reference():
    """The trainer calls the math inside a tf.function with [None, None] signatures."""
    tb = tf.TensorSpec([None, None], tf.float32)
    flags = tf.TensorSpec([None, None], tf.bool)
    fn = tf.function(
        lambda r, te, tr, v, b: a3c_math.gae_advantages(r, te, tr, v, b, 0.9, 0.95)[0],
        input_signature=[tb, flags, flags, tb, tf.TensorSpec([None], tf.float32)])
    for seed in (0, 1):
        r, term, trunc, v, boot = random_rollout(seed, T=4 + seed, B=2 + seed)
        np.testing.assert_allclose(fn(r, term, trunc, v, boot).numpy(), np_gae(r, term, trunc, v, boot, 0.9, 0.95),
                                   rtol=1e-5, atol=1e-5)
