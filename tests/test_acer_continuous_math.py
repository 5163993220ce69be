"""Continuous ACER's math (arXiv 1611.01224, Section 5 and Algorithm 3) against a slow NumPy reference written from
the paper: a per-step loop over the Gaussian's density, the stochastic dueling estimate, Retrace with traces
min(1, rho^(1/d)) and Q_opc, the truncated policy gradient with its bias correction at a'_t, the trust region
against the average policy, and the two critic terms. Also: the closed-form Gaussian gradients against
tf.GradientTape, and the policy loss's gradient equal to the projected z."""
import math

import numpy as np
import pytest
import tensorflow as tf

import acer_math
from distributions import DiagGaussian
from helpers import random_episode_ends

RANK_ERRORS = (ValueError, tf.errors.InvalidArgumentError)


# ------------------------------------------------------------------------------------------------------
# Slow NumPy references, one step and one env at a time
# ------------------------------------------------------------------------------------------------------
def np_log_prob(params, a):
    d = a.shape[-1]
    mean, log_std = params[:d].astype(np.float64), params[d:].astype(np.float64)
    return float(np.sum(-0.5 * ((a - mean) / np.exp(log_std)) ** 2 - log_std - 0.5 * math.log(2 * math.pi)))


def np_grad_log_prob(params, a):
    d = a.shape[-1]
    mean, std = params[:d].astype(np.float64), np.exp(params[d:].astype(np.float64))
    return np.concatenate([(a - mean) / std ** 2, ((a - mean) / std) ** 2 - 1.0])


def np_kl(avg, params):
    d = len(avg) // 2
    m0, s0, m1, s1 = avg[:d], np.exp(avg[d:]), params[:d], np.exp(params[d:])
    return float(np.sum(np.log(s1 / s0) + (s0 ** 2 + (m0 - m1) ** 2) / (2 * s1 ** 2) - 0.5))


def np_grad_kl(avg, params):
    d = len(avg) // 2
    m0, s0, m1, s1 = avg[:d], np.exp(avg[d:]), params[:d], np.exp(params[d:])
    return np.concatenate([(m1 - m0) / s1 ** 2, 1.0 - (s0 ** 2 + (m0 - m1) ** 2) / s1 ** 2])


def np_retrace(rewards, terminated, truncated, q, v, traces, boot, gamma):
    """Algorithm 3's backward loop for one target (Q_ret with its traces, or Q_opc with traces 1), per env."""
    T, B = rewards.shape
    out = np.zeros((T, B))
    for b in range(B):
        carried = float(boot[b])
        for i in reversed(range(T)):
            if terminated[i, b]:
                carried = 0.0
            elif truncated[i, b]:
                carried = v[i + 1, b] if i + 1 < T else boot[b]
            carried = rewards[i, b] + gamma * carried
            out[i, b] = carried
            carried = traces[i, b] * (carried - q[i, b]) + v[i, b]
    return out


def np_continuous_acer(params, avg, mu, actions, sampled, values, q_taken, q_sampled, rewards, terminated, truncated,
                       valid, boot, gamma, c, delta, value_coef, beta, trust_region=True):
    T, B, D = actions.shape
    rho, rho_s = np.zeros((T, B)), np.zeros((T, B))
    for t in range(T):
        for b in range(B):
            rho[t, b] = math.exp(np_log_prob(params[t, b], actions[t, b]) - np_log_prob(mu[t, b], actions[t, b]))
            rho_s[t, b] = math.exp(np_log_prob(params[t, b], sampled[t, b]) - np_log_prob(mu[t, b], sampled[t, b]))
    q_ret = np_retrace(rewards, terminated, truncated, q_taken, values, np.minimum(1.0, rho ** (1.0 / D)), boot, gamma)
    q_opc = np_retrace(rewards, terminated, truncated, q_taken, values, np.ones((T, B)), boot, gamma)
    pl = vl = ent = kl = scale_sum = 0.0
    n = max(valid.sum(), 1)
    z = np.zeros(params.shape)
    for t in range(T):
        for b in range(B):
            if not valid[t, b]:
                continue
            g = (min(c, rho[t, b]) * (q_opc[t, b] - values[t, b]) * np_grad_log_prob(params[t, b], actions[t, b])
                 + max(0.0, 1.0 - c / rho_s[t, b]) * (q_sampled[t, b] - values[t, b])
                 * np_grad_log_prob(params[t, b], sampled[t, b]))
            scale = 0.0
            if trust_region:
                k = np_grad_kl(avg[t, b], params[t, b])
                scale = max(0.0, (k @ g - delta) / (k @ k))
                g = g - scale * k
            z[t, b] = g
            pl -= g @ params[t, b]
            v_target = min(1.0, rho[t, b]) * (q_ret[t, b] - q_taken[t, b]) + values[t, b]
            vl += 0.5 * (q_ret[t, b] - q_taken[t, b]) ** 2 + 0.5 * (v_target - values[t, b]) ** 2
            ent += np.sum(params[t, b, D:] + 0.5 + 0.5 * math.log(2 * math.pi))
            kl += np_kl(avg[t, b], params[t, b])
            scale_sum += scale
    pl, vl, ent = pl / n, vl / n, ent / n
    return pl + value_coef * vl - beta * ent, dict(policy=pl, value=vl, entropy=ent, trust_region_kl=kl / n,
                                                   trust_region_scale=scale_sum / n), z


def _inputs(seed, T=6, B=4, D=2):
    rng = np.random.default_rng(seed)
    rewards, terminated, truncated = random_episode_ends(rng, T, B, both_flags=seed % 2 == 1)
    mu = np.concatenate([rng.normal(size=(T, B, D)), rng.normal(-0.5, 0.3, (T, B, D))], -1).astype(np.float32)
    params = (mu + rng.normal(0, 0.4, mu.shape)).astype(np.float32)  # the learner moved away from mu
    avg = (params + rng.normal(0, 0.2, mu.shape)).astype(np.float32)
    actions = (mu[..., :D] + np.exp(mu[..., D:]) * rng.normal(size=(T, B, D))).astype(np.float32)  # a_t ~ mu
    sampled = (params[..., :D] + np.exp(params[..., D:]) * rng.normal(size=(T, B, D))).astype(np.float32)  # ~ f
    values, q_taken, q_sampled = (rng.normal(size=(T, B)).astype(np.float32) for _ in range(3))
    valid = rng.random((T, B)) > 0.15
    boot = rng.normal(size=(B,)).astype(np.float32)
    return dict(params=params, avg=avg, mu=mu, actions=actions, sampled=sampled, values=values, q_taken=q_taken,
                q_sampled=q_sampled, rewards=rewards, terminated=terminated, truncated=truncated, valid=valid,
                boot=boot)


def _tf_loss(x, trust_region=True, c=3.0, delta=1.0, value_coef=0.5, beta=0.01, gamma=0.9):
    return acer_math.continuous_acer_loss(
        x["params"], x["avg"], x["mu"], x["actions"], x["sampled"], x["values"], x["q_taken"], x["q_sampled"],
        x["rewards"], x["terminated"], x["truncated"], x["valid"], x["boot"], gamma, c, delta, value_coef, beta,
        trust_region)


# ------------------------------------------------------------------------------------------------------
# The Gaussian's closed forms
# ------------------------------------------------------------------------------------------------------
def test_gaussian_log_prob_and_kl_match_numpy_and_the_policy_head():
    x = _inputs(0)
    got = acer_math.gaussian_log_prob(x["params"], x["actions"]).numpy()
    want = np.array([[np_log_prob(p, a) for p, a in zip(ps, acts)] for ps, acts in zip(x["params"], x["actions"])])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, DiagGaussian(2).log_prob(x["params"], x["actions"]).numpy(), rtol=1e-6)
    kl = acer_math.gaussian_kl(x["avg"], x["params"]).numpy()
    np.testing.assert_allclose(kl, [[np_kl(a, p) for a, p in zip(av, ps)] for av, ps in zip(x["avg"], x["params"])],
                               rtol=1e-4, atol=1e-6)
    assert np.all(kl >= 0) and np.allclose(acer_math.gaussian_kl(x["params"], x["params"]).numpy(), 0.0, atol=1e-6)


def test_the_closed_form_gradients_equal_autodiff():
    x = _inputs(1)
    params = tf.constant(x["params"])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(params)
        log_prob = tf.reduce_sum(acer_math.gaussian_log_prob(params, x["actions"]))
        kl = tf.reduce_sum(acer_math.gaussian_kl(x["avg"], params))
    np.testing.assert_allclose(acer_math.gaussian_log_prob_gradient(params, x["actions"]).numpy(),
                               tape.gradient(log_prob, params).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(acer_math.gaussian_kl_gradient(x["avg"], params).numpy(),
                               tape.gradient(kl, params).numpy(), rtol=1e-4, atol=1e-5)


def test_sdn_estimates_subtract_the_mean_advantage_of_the_policys_samples():
    values = np.array([[1.0, -2.0]], np.float32)
    advantages = np.array([[[3.0, 0.5, 1.0, 2.0, 3.0], [0.0, -1.0, 4.0, 4.0, -2.0]]], np.float32)  # a_t, a'_t, u_1..3
    got = acer_math.sdn_q_values(values, advantages).numpy()
    np.testing.assert_allclose(got, [[[1.0 + 3.0 - 2.0, 1.0 + 0.5 - 2.0], [-2.0 + 0.0 - 2.0, -2.0 - 1.0 - 2.0]]])


# ------------------------------------------------------------------------------------------------------
# The loss
# ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("trust_region", [True, False])
def test_continuous_acer_loss_matches_the_algorithm_3_reference(seed, trust_region):
    x = _inputs(seed)
    assert x["terminated"].any() and (x["truncated"] & ~x["terminated"]).any() and not x["valid"].all()
    total, parts = _tf_loss(x, trust_region)
    want_total, want, _ = np_continuous_acer(x["params"], x["avg"], x["mu"], x["actions"], x["sampled"], x["values"],
                                          x["q_taken"], x["q_sampled"], x["rewards"], x["terminated"],
                                          x["truncated"], x["valid"], x["boot"], 0.9, 3.0, 1.0, 0.5, 0.01,
                                          trust_region)
    # float32 against float64: sums of ~20 terms up to ~20 in size can cancel to ~0.04 (seed 3's policy part)
    np.testing.assert_allclose(total.numpy(), want_total, rtol=2e-4, atol=2e-4)
    for name, value in want.items():
        np.testing.assert_allclose(parts[name].numpy(), value, rtol=2e-4, atol=2e-4, err_msg=name)
    if trust_region:
        assert parts["trust_region_scale"].numpy() > 0  # the projection was active somewhere: it was tested


def test_the_policy_loss_applies_the_projected_gradient_and_the_critic_terms_move_v_and_q():
    """d policy / d phi = -z / N on valid steps; the value part's gradients are Algorithm 3's critic updates."""
    x = _inputs(5)
    n = x["valid"].sum()
    params, values, q_taken = (tf.Variable(x[k]) for k in ("params", "values", "q_taken"))
    with tf.GradientTape(persistent=True) as tape:
        _, parts = acer_math.continuous_acer_loss(
            params, x["avg"], x["mu"], x["actions"], x["sampled"], values, q_taken, x["q_sampled"], x["rewards"],
            x["terminated"], x["truncated"], x["valid"], x["boot"], 0.9, 3.0, 1.0, 0.5, 0.01, True)
    # z from the reference, step by step
    _, _, z = np_continuous_acer(x["params"], x["avg"], x["mu"], x["actions"], x["sampled"], x["values"],
                                x["q_taken"], x["q_sampled"], x["rewards"], x["terminated"], x["truncated"],
                                x["valid"], x["boot"], 0.9, 3.0, 1.0, 0.5, 0.01, True)
    grad_policy = tape.gradient(parts["policy"], params).numpy()
    assert np.all(grad_policy[~x["valid"]] == 0.0) and np.abs(z).max() > 0.1
    np.testing.assert_allclose(grad_policy, -z / n, rtol=2e-4, atol=1e-6)
    # The critic: d/dQ~ = -(Q_ret - Q~) / N, d/dV = -(V_target - V) / N, both only on valid steps.
    D = x["actions"].shape[-1]
    rho = np.exp(acer_math.gaussian_log_prob(x["params"], x["actions"]).numpy()
                 - acer_math.gaussian_log_prob(x["mu"], x["actions"]).numpy())
    q_ret = np_retrace(x["rewards"], x["terminated"], x["truncated"], x["q_taken"], x["values"],
                       np.minimum(1.0, rho ** (1.0 / D)), x["boot"], 0.9)
    m = x["valid"].astype(np.float64)
    np.testing.assert_allclose(tape.gradient(parts["value"], q_taken).numpy(), -m * (q_ret - x["q_taken"]) / n,
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(tape.gradient(parts["value"], values).numpy(),
                               -m * np.minimum(1.0, rho) * (q_ret - x["q_taken"]) / n, rtol=1e-4, atol=1e-6)


def test_an_action_far_in_the_tail_gives_finite_weights_and_loss():
    x = _inputs(6)
    x["mu"][..., 2:] = -8.0  # mu's std 3e-4: the actions' density under mu is ~e^+8, f's far lower, or the reverse
    x["actions"][0, 0] = 50.0
    x["sampled"][1, 1] = -50.0
    total, parts = _tf_loss(x)
    assert np.isfinite(total.numpy()) and all(np.isfinite(v.numpy()) for v in parts.values())


def test_with_the_behaviour_policy_itself_the_weights_are_one_and_q_ret_is_q_opc():
    """On-policy (f = mu): rho = 1, no truncation, no bias correction; Q_ret's traces are 1, so Q_ret = Q_opc."""
    x = _inputs(7)
    x["params"] = x["mu"].copy()
    _, parts = _tf_loss(x, c=1.5)
    assert parts["rho"].numpy() == pytest.approx(1.0, abs=1e-5) and parts["rho_truncated"].numpy() == 0.0
    rho_one = np.ones(x["values"].shape)
    args = (x["rewards"], x["terminated"], x["truncated"], x["q_taken"], x["values"])
    np.testing.assert_allclose(
        acer_math.retrace_with_traces(*args, rho_one.astype(np.float32), x["boot"], 0.9).numpy(),
        np_retrace(*args, rho_one, x["boot"], 0.9), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("which, bad_shape", [("params", (6, 4)), ("actions", (6, 4)), ("values", (6, 4, 1)),
                                               ("q_taken", (6,))])
def test_continuous_acer_loss_rejects_wrong_ranks(which, bad_shape):
    x = _inputs(0)
    x[which] = np.zeros(bad_shape, np.float32)
    with pytest.raises(RANK_ERRORS):
        _tf_loss(x)
