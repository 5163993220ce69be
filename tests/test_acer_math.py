"""Tests of acer_math (ACER, arXiv 1611.01224) against slow NumPy references written from Algorithm 2 and Sections
3.1-3.3, hand fixtures, gradient checks with tf.GradientTape, and the estimator's defining property: truncated
importance sampling with bias correction is unbiased."""
import numpy as np
import pytest
import tensorflow as tf

import a3c_math
import acer_math
from helpers import random_episode_ends

RANK_ERRORS = (ValueError, tf.errors.InvalidArgumentError)
F, T_ = False, True


# ------------------------------------------------------------------------------------------------------
# Slow NumPy references
# ------------------------------------------------------------------------------------------------------
def np_retrace(rewards, terminated, truncated, q_taken, values, rhos, bootstrap_value, gamma, lambda_):
    """Algorithm 2's backward loop, per env, with the episode boundaries replacing the carried value."""
    T, B = rewards.shape
    out = np.zeros((T, B))
    for b in range(B):
        q_ret = float(bootstrap_value[b])  # V(x_T)
        for i in reversed(range(T)):
            if terminated[i, b]:
                q_ret = 0.0
            elif truncated[i, b]:
                q_ret = values[i + 1, b] if i + 1 < T else bootstrap_value[b]  # V(x_{i+1}), the final observation
            q_ret = rewards[i, b] + gamma * q_ret
            out[i, b] = q_ret
            q_ret = lambda_ * min(1.0, rhos[i, b]) * (q_ret - q_taken[i, b]) + values[i, b]
    return out


def np_is_gradient(probs, mu, actions, q, q_ret, values, c):
    """g_t[a] = 1{a = a_t} min(c, rho_t) (Q_ret_t - V_t) / f(a_t) + [1 - c / rho_t(a)]_+ (Q(x_t, a) - V_t)."""
    g = np.zeros(probs.shape)
    for idx in np.ndindex(actions.shape):
        f, m, a = probs[idx].astype(np.float64), mu[idx], actions[idx]
        for b in range(f.size):
            g[idx][b] = max(0.0, 1.0 - c / (f[b] / m[b])) * (q[idx][b] - values[idx])
        g[idx][a] += min(c, f[a] / m[a]) * (q_ret[idx] - values[idx]) / f[a]
    return g


def np_projection(g, k, delta):
    scale = np.maximum(0.0, ((k * g).sum(-1) - delta) / (k * k).sum(-1))
    return g - scale[..., None] * k, scale


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def take(x, actions):
    return np.take_along_axis(x, actions[..., None], -1)[..., 0]


def random_rollout(seed, T=6, B=4):
    rng = np.random.default_rng(seed)
    rewards, terminated, truncated = random_episode_ends(rng, T, B, both_flags=seed % 2 == 1)
    q_taken = rng.normal(size=(T, B)).astype(np.float32)
    values = rng.normal(size=(T, B)).astype(np.float32)
    rhos = np.exp(rng.normal(size=(T, B))).astype(np.float32)
    bootstrap_value = rng.normal(size=(B,)).astype(np.float32)
    return rewards, terminated, truncated, q_taken, values, rhos, bootstrap_value


# ------------------------------------------------------------------------------------------------------
# Retrace
# ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("lambda_", [1.0, 0.9])
def test_retrace_matches_algorithm_2_reference(seed, lambda_):
    r, term, trunc, q, v, rhos, boot = random_rollout(seed)
    assert term.any() and (trunc & ~term).any() and (rhos > 1).any() and (rhos < 1).any()
    got = acer_math.retrace_targets(r, term, trunc, q, v, rhos, boot, 0.9, lambda_)
    assert got.shape == (6, 4) and got.dtype == tf.float32
    np.testing.assert_allclose(got.numpy(), np_retrace(r, term, trunc, q, v, rhos, boot, 0.9, lambda_),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_retrace_on_policy_recursion_and_n_step_reduction(seed):
    r, term, trunc, q, v, _, boot = random_rollout(seed)
    gamma, ones = 0.9, np.ones_like(r)
    # cbar = 1 and no episode end: Q_ret_i = r_i + gamma * (Q_ret_{i+1} - Q_{i+1} + V_{i+1}).
    none = np.zeros_like(term)
    q_ret = acer_math.retrace_targets(r, none, none, q, v, ones, boot, gamma).numpy()
    np.testing.assert_allclose(q_ret[:-1], r[:-1] + gamma * (q_ret[1:] - q[1:] + v[1:]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(q_ret[-1], r[-1] + gamma * boot, rtol=1e-6)
    # Moreover with Q(x_i, a_i) = V(x_i) it is A3C's n-step return, boundaries included (rho >= 1 is clipped to 1).
    got = acer_math.retrace_targets(r, term, trunc, v, v, ones * 3, boot, gamma)
    np.testing.assert_allclose(got.numpy(), a3c_math.n_step_returns(r, term, trunc, v, boot, gamma).numpy(),
                               rtol=1e-5, atol=1e-5)


def test_retrace_lambda_zero_is_the_one_step_target():
    r, term, trunc, q, v, rhos, boot = random_rollout(5)
    got = acer_math.retrace_targets(r, term, trunc, q, v, rhos, boot, 0.9, lambda_=0.0)
    _, td0_targets = a3c_math.gae_advantages(r, term, trunc, v, boot, 0.9, 0.0)  # r + gamma (1 - term) V(x_{t+1})
    np.testing.assert_allclose(got.numpy(), td0_targets.numpy(), rtol=1e-5, atol=1e-5)


def _col(*xs, dtype=np.float32):
    return np.array(xs, dtype)[:, None]  # [T] -> [T, 1]


def test_fixture_retrace_across_a_termination():
    # gamma = .5, lambda = 1, terminated at t=1.  r = [1, 2, 0, 4], Q(x_t, a_t) = [3, 5, 2, 6], V = [2, 4, 4, 8],
    # V(x_4) = 8, rho = [.5, 2, 1.5, .25] -> cbar = [.5, 1 (clipped), 1 (clipped), .25]
    #   i=3: Q_ret = 4 + .5*8 = 8;                      carry = .25*(8 - 6) + 8 = 8.5
    #   i=2: Q_ret = 0 + .5*8.5 = 4.25;                 carry = 1*(4.25 - 2) + 4 = 6.25
    #   i=1: terminated, carry dropped: Q_ret = 2;      carry = 1*(2 - 5) + 4 = 1   (unclipped: 2*(-3) + 4 = -2)
    #   i=0: Q_ret = 1 + .5*1 = 1.5                                                (unclipped: 0)
    got = acer_math.retrace_targets(_col(1, 2, 0, 4), _col(F, T_, F, F, dtype=bool), _col(F, F, F, F, dtype=bool),
                                    _col(3, 5, 2, 6), _col(2, 4, 4, 8), _col(0.5, 2, 1.5, 0.25),
                                    np.array([8], np.float32), 0.5)
    np.testing.assert_allclose(got.numpy()[:, 0], [1.5, 2, 4.25, 8], rtol=1e-6)


def test_fixture_retrace_across_a_truncation_and_a_final_termination():
    # gamma = .5, lambda = 1, truncated at t=1, terminated at t=3 (so V(x_4) = 100 is ignored).
    # r = [1, 2, 3, 4], Q(x_t, a_t) = [2, 2, 6, 1], V = [1, 3, 7, 2], rho = [1, .5, 4, 1] -> cbar = [1, .5, 1, 1]
    #   i=3: terminated: Q_ret = 4;                     carry = 1*(4 - 1) + 2 = 5
    #   i=2: Q_ret = 3 + .5*5 = 5.5;                    carry = 1*(5.5 - 6) + 7 = 6.5
    #   i=1: truncated, bootstrap from V(x_2) = 7 (the final observation): Q_ret = 2 + .5*7 = 5.5  (carry: 5.25)
    #                                                   carry = .5*(5.5 - 2) + 3 = 4.75
    #   i=0: Q_ret = 1 + .5*4.75 = 3.375
    got = acer_math.retrace_targets(_col(1, 2, 3, 4), _col(F, F, F, T_, dtype=bool), _col(F, T_, F, F, dtype=bool),
                                    _col(2, 2, 6, 1), _col(1, 3, 7, 2), _col(1, 0.5, 4, 1),
                                    np.array([100], np.float32), 0.5)
    np.testing.assert_allclose(got.numpy()[:, 0], [3.375, 5.5, 5.5, 4], rtol=1e-6)


def test_retrace_targets_are_constants():
    r, term, trunc, *rest = random_rollout(4)
    q, v, rhos, boot = (tf.constant(x) for x in rest)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([q, v, rhos, boot])
        out = acer_math.retrace_targets(r, term, trunc, q, v, rhos, boot, 0.9)
    for g in tape.gradient(out, [q, v, rhos, boot]):
        assert g is None or not np.any(g.numpy())


# ------------------------------------------------------------------------------------------------------
# Truncated importance sampling with bias correction
# ------------------------------------------------------------------------------------------------------
def _is_inputs(seed, T=5, B=4, A=4):
    rng = np.random.default_rng(seed)
    probs = softmax(rng.normal(size=(T, B, A)) * 1.5)
    mu = softmax(rng.normal(size=(T, B, A)) * 1.5)
    actions = np.array([[rng.choice(A, p=mu[t, b] / mu[t, b].sum()) for b in range(B)] for t in range(T)], np.int32)
    q = rng.normal(size=(T, B, A)).astype(np.float32)
    values = (probs * q).sum(-1)
    q_ret = (take(q, actions) + rng.normal(size=(T, B))).astype(np.float32)
    return probs, mu, actions, q, q_ret, values


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("c", [0.5, 1.0, 3.0])
def test_is_gradient_matches_formula(seed, c):
    probs, mu, actions, q, q_ret, values = _is_inputs(seed)
    rho_taken, rho_all = take(probs / mu, actions), probs / mu
    assert (rho_taken > c).any() and (rho_taken < c).any() and (rho_all > c).any()  # both branches of min and [.]_+
    g, parts = acer_math.truncated_is_gradient(probs, mu, actions, q, q_ret, values, c)
    assert g.shape == probs.shape and g.dtype == tf.float32
    np.testing.assert_allclose(g.numpy(), np_is_gradient(probs, mu, actions, q, q_ret, values, c),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(parts["rho"].numpy(), rho_taken.mean(), rtol=1e-5)
    np.testing.assert_allclose(parts["rho_truncated"].numpy(), (rho_taken > c).mean(), rtol=1e-6)


@pytest.mark.parametrize("c", [0.5, 1.0, 3.0])
def test_is_gradient_is_the_gradient_of_the_surrogate(c):
    # L_t = min(c, rho_t) log f(a_t) (Q_ret_t - V_t) + sum_a [1 - c/rho_t(a)]_+ f(a) log f(a) (Q(x_t, a) - V_t),
    # differentiated in log f only: the weights, f(a) included, are the constants w_taken, w, f_const.
    probs, mu, actions, q, q_ret, values = _is_inputs(2)
    rho = probs / mu
    w_taken = np.minimum(c, take(rho, actions)) * (q_ret - values)
    w = np.maximum(0.0, 1.0 - c / rho) * probs * (q - values[..., None])
    f = tf.constant(probs)
    with tf.GradientTape() as tape:
        tape.watch(f)
        logf = tf.math.log(f)
        surrogate = tf.reduce_sum(w_taken * tf.gather(logf, actions, batch_dims=2)) + tf.reduce_sum(w * logf)
    g, _ = acer_math.truncated_is_gradient(probs, mu, actions, q, q_ret, values, c)
    np.testing.assert_allclose(g.numpy(), tape.gradient(surrogate, f).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("c", [0.3, 1.0, 3.0])
def test_bias_correction_makes_the_estimator_unbiased(c):
    # One state. With Q_ret = Q(a_t), the exact expectation over a_t ~ mu, enumerating the A actions (one per
    # column of B), equals the on-policy gradient: d/df of sum_a f(a) (Q(a) - V) with V held fixed = Q - V.
    A = 6
    rng = np.random.default_rng(int(c * 10))
    f, mu = softmax(rng.normal(size=A) * 1.5), softmax(rng.normal(size=A) * 1.5)
    q = rng.normal(size=A).astype(np.float32)
    v = np.float32((f * q).sum())
    assert ((f / mu) > c).any() and ((f / mu) < c).any()
    tile = lambda x: np.broadcast_to(x, (1, A, A)).astype(np.float32)  # noqa: E731 -- [A] -> [T=1, B=A, A]
    actions = np.arange(A, dtype=np.int32)[None]
    g, _ = acer_math.truncated_is_gradient(tile(f), tile(mu), actions, tile(q), q[None], np.full((1, A), v), c)
    expectation = (mu[:, None] * g.numpy()[0].astype(np.float64)).sum(0)
    np.testing.assert_allclose(expectation, q - v, atol=1e-5)
    # Without the correction term the truncation biases exactly the actions with rho(a) > c.
    truncated_only = np.minimum(c * mu / f, 1.0) * (q - v)
    biased = np.abs(truncated_only - (q - v)) > 1e-3
    np.testing.assert_array_equal(biased, (f / mu > c) & (np.abs(q - v) > 1e-3))


def test_is_gradient_finite_when_softmax_underflows():
    # f(a) = 0 where mu(a) > 0 (the taken action and another), and f = mu = 0 on a third action.
    probs = np.array([[[0.0, 0.5, 0.5, 0.0]]], np.float32)
    mu = np.array([[[0.3, 0.3, 0.4, 0.0]]], np.float32)
    q = np.array([[[1.0, 2.0, 3.0, 4.0]]], np.float32)
    g, _ = acer_math.truncated_is_gradient(probs, mu, np.array([[0]]), q, np.array([[5.0]], np.float32),
                                           np.array([[2.5]], np.float32), 1.0)
    # taken: min(c / f, 1 / mu) = 1/.3, times (5 - 2.5); [1 - c mu/f]_+ = 0 at f = 0 < mu, .4 at a=1, 0 at a=2
    # (rho = .5/.4 = 1.25 -> 1 - 1/1.25 = .2), and 1 at mu = 0.
    np.testing.assert_allclose(g.numpy()[0, 0], [2.5 / 0.3, 0.4 * -0.5, 0.2 * 0.5, 1.5], rtol=1e-5)


# ------------------------------------------------------------------------------------------------------
# Trust region
# ------------------------------------------------------------------------------------------------------
def _tr_inputs(seed, N=200, A=5):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(N, A))
    probs = softmax(logits)
    avg = softmax(logits + rng.normal(size=(N, A)) * 0.5)
    g = (rng.normal(size=(N, A)) * 2).astype(np.float32)
    return g, acer_math.kl_gradient(avg, probs).numpy(), avg, probs


def test_kl_and_its_gradient():
    _, _, avg, probs = _tr_inputs(0)
    np.testing.assert_allclose(acer_math.kl(avg, probs).numpy(), (avg * np.log(avg / probs)).sum(-1),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(acer_math.kl(probs, probs).numpy(), 0.0, atol=1e-6)
    f = tf.constant(probs)
    with tf.GradientTape() as tape:
        tape.watch(f)
        total_kl = tf.reduce_sum(acer_math.kl(avg, f))
    np.testing.assert_allclose(acer_math.kl_gradient(avg, probs).numpy(), tape.gradient(total_kl, f).numpy(),
                               rtol=1e-5)
    np.testing.assert_allclose(acer_math.kl_gradient(avg, probs).numpy(), -avg / probs, rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_trust_region_projection_closed_form_and_kkt(seed):
    g, k, _, _ = _tr_inputs(seed)
    delta = 1.0
    z, scale = (x.numpy().astype(np.float64) for x in acer_math.trust_region_projection(g, k, delta))
    z_np, scale_np = np_projection(g.astype(np.float64), k.astype(np.float64), delta)
    np.testing.assert_allclose(z, z_np, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(scale, scale_np, rtol=1e-4, atol=1e-7)

    active = (k * g).sum(-1) > delta
    assert 0.2 < active.mean() < 0.8  # both cases happen
    kz = (k * z).sum(-1)
    tol = 1e-4 * (1 + np.abs(k).sum(-1) * np.abs(z).sum(-1))
    assert np.all(kz <= delta + tol)  # feasible
    np.testing.assert_array_less(np.abs(kz - delta)[active], tol[active])  # on the boundary when active
    np.testing.assert_array_equal(z[~active], g[~active])  # untouched when inactive
    # KKT of min 0.5 ||z - g||^2 s.t. k.z <= delta: z - g = -lam k, lam >= 0, lam (k.z - delta) = 0. For a convex
    # problem with a linear constraint they are sufficient, so z is the minimiser.
    assert np.all(scale >= 0) and np.all(scale[~active] == 0) and np.all(scale[active] > 0)
    np.testing.assert_allclose(z - g, -scale[:, None] * k, rtol=1e-4, atol=1e-4)


def test_trust_region_projection_beats_random_feasible_points():
    g, k, _, _ = _tr_inputs(2, N=20)
    g, k = g.astype(np.float64), k.astype(np.float64)
    delta = 1.0
    z = acer_math.trust_region_projection(g, k, delta)[0].numpy().astype(np.float64)
    rng = np.random.default_rng(3)
    for n in range(len(g)):
        points = z[n] + rng.normal(size=(4000, g.shape[1])) * rng.choice([1e-2, 1e-1, 1.0], size=(4000, 1))
        feasible = points[points @ k[n] <= delta]
        assert len(feasible) > 100
        best = np.linalg.norm(feasible - g[n], axis=1).min()
        assert np.linalg.norm(z[n] - g[n]) <= best + 1e-4 * (1 + best)


# ------------------------------------------------------------------------------------------------------
# The loss
# ------------------------------------------------------------------------------------------------------
HP = dict(gamma=0.9, c=1.0, delta=1.0, value_coef=0.5, entropy_beta=0.01)


def _loss_inputs(seed, T=6, B=4, A=5):
    """A consistent rollout: the step after an episode end is the autoreset transition, so it is invalid."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(T, B, A)) * 1.5
    probs = softmax(logits)
    avg = softmax(logits + rng.normal(size=(T, B, A)) * 0.5)
    mu = softmax(rng.normal(size=(T, B, A)) * 1.5)
    q = rng.normal(size=(T, B, A)).astype(np.float32)
    actions = np.array([[rng.choice(A, p=mu[t, b] / mu[t, b].sum()) for b in range(B)] for t in range(T)], np.int32)
    r, term, trunc, _, _, _, boot = random_rollout(seed + 10, T, B)
    valid = np.ones((T, B), bool)
    valid[0] = rng.random(B) < 0.7
    valid[1:] = ~(term | trunc)[:-1]
    assert valid.any() and not valid.all()
    return dict(probs=probs, avg_probs=avg, behaviour_probs=mu, q_values=q, actions=actions, rewards=r,
                terminated=term, truncated=trunc, valid=valid, bootstrap_value=boot)


def np_acer_loss(probs, avg_probs, behaviour_probs, q_values, actions, rewards, terminated, truncated, valid,
                 bootstrap_value, gamma, c, delta, value_coef, entropy_beta, trust_region=True):
    f = probs.astype(np.float64)
    v = (f * q_values).sum(-1)
    q_taken = take(q_values, actions)
    rho = take(f, actions) / take(behaviour_probs, actions)
    q_ret = np_retrace(rewards, terminated, truncated, q_taken, v, rho, bootstrap_value, gamma, 1.0)
    g = np_is_gradient(f, behaviour_probs, actions, q_values, q_ret, v, c)
    z, scale = np_projection(g, -avg_probs / f, delta) if trust_region else (g, np.zeros_like(v))
    m = valid.astype(np.float64)

    def mean(x):
        return (x * m).sum() / m.sum()

    parts = {"policy": -mean((z * f).sum(-1)), "value": mean(0.5 * (q_ret - q_taken) ** 2),
             "entropy": mean(-(f * np.log(f)).sum(-1)), "rho": mean(rho), "rho_truncated": mean(rho > c),
             "trust_region_kl": mean((avg_probs * np.log(avg_probs / f)).sum(-1)),
             "trust_region_scale": mean(scale), "advantage": mean(q_ret - v)}
    total = parts["policy"] + value_coef * parts["value"] - entropy_beta * parts["entropy"]
    return total, parts, z, q_ret


@pytest.mark.parametrize("seed, trust_region", [(0, True), (1, True), (2, False)])
def test_acer_loss_total_and_parts_match_numpy(seed, trust_region):
    inputs = _loss_inputs(seed)
    total, parts = acer_math.acer_loss(**inputs, **HP, trust_region=trust_region)
    expected_total, expected, _, _ = np_acer_loss(**inputs, **HP, trust_region=trust_region)
    assert set(parts) == set(expected)
    if trust_region:
        assert expected["trust_region_scale"] > 0 and 0 < expected["rho_truncated"] < 1
    for name, e in expected.items():
        assert np.isfinite(parts[name].numpy()), name
        np.testing.assert_allclose(parts[name].numpy(), e, rtol=1e-4, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(total.numpy(), expected_total, rtol=1e-4, atol=1e-5)


def test_invalid_steps_do_not_change_the_loss():
    # What the env and the actor report at an invalid step may not reach the loss. The network's outputs there
    # do, after a truncation only: they give V(x_{t+1}) of the final observation, so those stay.
    inputs = _loss_inputs(5)
    inv = ~inputs["valid"]
    prev_truncated = np.zeros_like(inv)
    prev_truncated[1:] = (inputs["truncated"] & ~inputs["terminated"])[:-1]
    assert (inv & prev_truncated).any() and (inv & ~prev_truncated).any()
    rng = np.random.default_rng(7)
    A = inputs["probs"].shape[-1]

    def perturb(x, where):
        noise = softmax(rng.normal(size=x.shape) * 3) if x.ndim == 3 else rng.normal(size=x.shape) * 10
        return np.where(where[..., None] if x.ndim == 3 else where, noise, x).astype(x.dtype)

    changed = dict(inputs, rewards=perturb(inputs["rewards"], inv),
                   actions=np.where(inv, (inputs["actions"] + 1) % A, inputs["actions"]).astype(np.int32),
                   behaviour_probs=perturb(inputs["behaviour_probs"], inv), avg_probs=perturb(inputs["avg_probs"], inv),
                   probs=perturb(inputs["probs"], inv & ~prev_truncated),
                   q_values=perturb(inputs["q_values"], inv & ~prev_truncated))
    total, parts = acer_math.acer_loss(**inputs, **HP)
    total2, parts2 = acer_math.acer_loss(**changed, **HP)
    for name in parts:
        np.testing.assert_allclose(parts2[name].numpy(), parts[name].numpy(), rtol=1e-6, atol=1e-7, err_msg=name)
    np.testing.assert_allclose(total2.numpy(), total.numpy(), rtol=1e-6, atol=1e-7)


def test_acer_loss_gradients():
    inputs = _loss_inputs(3)
    _, _, z, q_ret = np_acer_loss(**inputs, **HP)
    m = inputs["valid"].astype(np.float64)
    watched = {name: tf.constant(inputs[name]) for name in ("probs", "q_values", "avg_probs", "behaviour_probs",
                                                            "bootstrap_value")}
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(list(watched.values()))
        total, parts = acer_math.acer_loss(**dict(inputs, **watched), **HP)

    def grad(y, x):
        g = tape.gradient(y, watched[x])
        return np.zeros(watched[x].shape) if g is None else g.numpy()

    # Policy: backprop through the network gets the projected gradient, -z/N on valid steps, nothing else.
    np.testing.assert_allclose(grad(parts["policy"], "probs"), -m[..., None] * z / m.sum(), rtol=1e-4, atol=1e-6)
    assert not np.any(grad(parts["policy"], "q_values"))  # the critic enters g only as a constant
    # Q loss: d/dQ of mean 0.5 (Q_ret - Q(x, a_t))^2 at the taken actions only; Q_ret and V are constants.
    onehot = np.eye(inputs["q_values"].shape[-1])[inputs["actions"]]
    np.testing.assert_allclose(grad(parts["value"], "q_values"), -(m * (q_ret - take(inputs["q_values"],
                               inputs["actions"])))[..., None] * onehot / m.sum(), rtol=1e-4, atol=1e-6)
    assert not np.any(grad(parts["value"], "probs"))
    for data in ("avg_probs", "behaviour_probs", "bootstrap_value"):  # the average network, the actor: constants
        assert not np.any(grad(total, data)), data


def test_all_invalid_gives_zero_finite_loss_and_underflow_stays_finite():
    inputs = _loss_inputs(4)
    probs = inputs["probs"].copy()
    probs[0, 0] = [0.0, 0.0, 0.5, 0.5, 0.0]  # an underflowed softmax, also at the taken action
    for valid in (np.zeros_like(inputs["valid"]), inputs["valid"] | True):
        p = tf.constant(probs)
        with tf.GradientTape() as tape:
            tape.watch(p)
            total, parts = acer_math.acer_loss(**dict(inputs, probs=p, valid=valid), **HP)
        for name, x in dict(parts, total=total).items():
            assert np.isfinite(x.numpy()), name
            if not valid.any():
                assert x.numpy() == 0.0, name
        assert np.all(np.isfinite(tape.gradient(total, p).numpy()))


@pytest.mark.parametrize("which, bad_shape", [("probs", (6, 4)), ("q_values", (6, 4)), ("avg_probs", (6, 4, 5, 1)),
                                              ("behaviour_probs", (4, 5)), ("actions", (4,)), ("rewards", (6, 4, 1)),
                                              ("valid", (4,)), ("terminated", (4,))])
def test_acer_loss_rejects_wrong_ranks(which, bad_shape):
    inputs = _loss_inputs(0)
    inputs[which] = np.zeros(bad_shape, inputs[which].dtype)
    with pytest.raises(RANK_ERRORS):
        acer_math.acer_loss(**inputs, **HP)


def test_retrace_rejects_non_time_major():
    r, term, trunc, q, v, rhos, boot = random_rollout(0)
    with pytest.raises(RANK_ERRORS):
        acer_math.retrace_targets(r, term, trunc, q[0], v, rhos, boot, 0.9)  # a [B] would broadcast silently


def test_graph_mode_with_dynamic_shapes_matches_eager():
    """The trainer calls the math inside a tf.function with [None, ...] signatures."""
    tba, tb, flags = (tf.TensorSpec([None, None, None], tf.float32), tf.TensorSpec([None, None], tf.float32),
                      tf.TensorSpec([None, None], tf.bool))
    fn = tf.function(lambda p, avg, mu, q, a, r, te, tr, va, b: acer_math.acer_loss(p, avg, mu, q, a, r, te, tr, va, b,
                                                                                   **HP)[0],
                     input_signature=[tba, tba, tba, tba, tf.TensorSpec([None, None], tf.int32), tb, flags, flags,
                                      flags, tf.TensorSpec([None], tf.float32)])
    for seed, (T, B) in ((0, (6, 4)), (1, (3, 2))):
        inputs = _loss_inputs(seed, T, B)
        np.testing.assert_allclose(fn(*inputs.values()).numpy(), acer_math.acer_loss(**inputs, **HP)[0].numpy(),
                                   rtol=1e-5, atol=1e-6)
