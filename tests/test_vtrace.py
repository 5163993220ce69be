"""Tests of a3c_math's V-trace (IMPALA, arXiv 1802.01561, section 4.1) against a slow NumPy reference written from
the paper's sum form (not the recursion the implementation uses), against on-policy A3C, and hand fixtures."""
import numpy as np
import pytest
import tensorflow as tf

import a3c_math
from helpers import random_episode_ends

RANK_ERRORS = (ValueError, tf.errors.InvalidArgumentError)
F, T_ = False, True


# ------------------------------------------------------------------------------------------------------
# Slow NumPy reference: the sum form of eq. 1,
#   v_s = V(s_s) + sum_{t>=s} gamma^{t-s} (prod_{i=s}^{t-1} c_i) delta_t,
# with the sum cut after the step that ends the episode (terminated or truncated).
# ------------------------------------------------------------------------------------------------------
def np_vtrace(log_rhos, rewards, terminated, truncated, values, bootstrap_value, gamma, lambda_, rho_clip, c_clip):
    T, B = rewards.shape
    ratios = np.exp(log_rhos.astype(np.float64))
    rho = np.minimum(rho_clip, ratios)
    c = lambda_ * np.minimum(c_clip, ratios)
    v_next = np.concatenate([values[1:], bootstrap_value[None]]).astype(np.float64)  # V(s_{t+1})
    v_next = np.where(terminated, 0.0, v_next)
    deltas = rho * (rewards + gamma * v_next - values)
    ends = terminated | truncated
    vs = np.zeros((T, B))
    for b in range(B):
        for s in range(T):
            total, weight = 0.0, 1.0  # weight = gamma^{t-s} * prod_{i=s}^{t-1} c_i
            for t in range(s, T):
                total += weight * deltas[t, b]
                if ends[t, b]:
                    break  # later steps belong to the next episode
                weight *= gamma * c[t, b]
            vs[s, b] = values[s, b] + total
    # q_{t+1}: v_{t+1} inside the episode (V(s_T) at the end of the rollout), V(s_{t+1}) or 0 at its end.
    q_next = np.where(ends, v_next, np.concatenate([vs[1:], bootstrap_value[None]]))
    return vs, rho * (rewards + gamma * q_next - values), rho


def random_rollout(seed, T=7, B=5, log_rho_scale=1.0):
    rng = np.random.default_rng(seed)
    rewards, terminated, truncated = random_episode_ends(rng, T, B, both_flags=seed % 2 == 1)
    values = rng.normal(size=(T, B)).astype(np.float32)
    bootstrap_value = rng.normal(size=(B,)).astype(np.float32)
    log_rhos = (rng.normal(size=(T, B)) * log_rho_scale).astype(np.float32)
    return log_rhos, rewards, terminated, truncated, values, bootstrap_value


SEEDS = [0, 1, 2, 3]
CLIPS = [(1.0, 1.0), (2.0, 0.5), (np.inf, np.inf)]  # (rho_clip, c_clip): IMPALA's default, rho_clip > c_clip, none


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("lambda_", [1.0, 0.9])
@pytest.mark.parametrize("rho_clip, c_clip", CLIPS)
def test_vtrace_matches_sum_form_reference(seed, lambda_, rho_clip, c_clip):
    lr, r, term, trunc, v, boot = random_rollout(seed)
    assert term.any() and (trunc & ~term).any()  # the fixtures exercise both kinds of episode end
    if np.isfinite(rho_clip):
        assert (np.exp(lr) > rho_clip).any() and (np.exp(lr) > c_clip).any()  # clipping does happen
    got = a3c_math.vtrace_targets(lr, r, term, trunc, v, boot, 0.9, lambda_, rho_clip, c_clip)
    expected = np_vtrace(lr, r, term, trunc, v, boot, 0.9, lambda_, rho_clip, c_clip)
    for name, g, e in zip(got._fields, got, expected):
        assert g.shape == (7, 5) and g.dtype == tf.float32, name
        np.testing.assert_allclose(g.numpy(), e, rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("clip", [1.0, 2.0])
def test_on_policy_reduces_to_n_step_returns(seed, clip):
    _, r, term, trunc, v, boot = random_rollout(seed, T=9, B=4)
    gamma = 0.97
    got = a3c_math.vtrace_targets(np.zeros_like(r), r, term, trunc, v, boot, gamma, 1.0, clip, clip)
    returns = a3c_math.n_step_returns(r, term, trunc, v, boot, gamma).numpy()
    np.testing.assert_allclose(got.vs.numpy(), returns, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.pg_advantages.numpy(), returns - v, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got.clipped_rhos.numpy(), 1.0)


# ------------------------------------------------------------------------------------------------------
# Hand-computed fixtures, gamma = 0.5, T = 4, B = 1, rho_clip = c_clip = 1.
# ------------------------------------------------------------------------------------------------------
GAMMA = 0.5


def _col(*xs, dtype=np.float32):
    return np.array(xs, dtype)[:, None]  # [T] -> [T, 1]


def test_fixture_terminated():
    # Terminated at t=1, lambda = .5.  rewards [1, 3, 0, 8], V(s_t) = [4, 2, 6, 8], V(s_4) = 16,
    # pi/mu = [.5, 2, 1, .5]  ->  rho = [.5, 1 (clipped), 1, .5],  c = .5 * min(1, pi/mu) = [.25, .5, .5, .25]
    #   V(s_{t+1}), 0 after the termination: [2, 0, 8, 16]
    #   delta_0 = .5*(1 + .5*2 - 4) = -1;  delta_1 = 1*(3 + 0 - 2) = 1;  delta_2 = 1*(0 + .5*8 - 6) = -2;
    #   delta_3 = .5*(8 + .5*16 - 8) = 4
    #   vs - V: [3] = 4;  [2] = -2 + .5*.5*4 = -1;  [1] = 1 (cut);  [0] = -1 + .5*.25*1 = -.875
    #   vs = [3.125, 3, 5, 12]
    #   q_{t+1} = [vs_1 = 3, 0 (terminated), vs_3 = 12, V(s_4) = 16]
    #   pg_0 = .5*(1 + 1.5 - 4) = -.75;  pg_1 = 1*(3 - 2) = 1;  pg_2 = 1*(0 + 6 - 6) = 0;  pg_3 = .5*(8 + 8 - 8) = 4
    got = a3c_math.vtrace_targets(np.log(_col(0.5, 2, 1, 0.5)), _col(1, 3, 0, 8), _col(F, T_, F, F, dtype=bool),
                                  _col(F, F, F, F, dtype=bool), _col(4, 2, 6, 8), np.array([16], np.float32),
                                  GAMMA, lambda_=0.5)
    np.testing.assert_allclose(got.clipped_rhos.numpy()[:, 0], [0.5, 1, 1, 0.5], rtol=1e-6)
    np.testing.assert_allclose(got.vs.numpy()[:, 0], [3.125, 3, 5, 12], rtol=1e-6)
    np.testing.assert_allclose(got.pg_advantages.numpy()[:, 0], [-0.75, 1, 0, 4], rtol=1e-6, atol=1e-6)


def test_fixture_truncated():
    # Truncated at t=1, lambda = 1.  rewards [1, 2, 0, 4], V(s_t) = [2, 4, 6, 8], V(s_4) = 8,
    # pi/mu = [1, .5, 4, 1]  ->  rho = c = [1, .5, 1 (clipped), 1]
    #   V(s_{t+1}) = [4, 6 (the final observation's value), 8, 8]
    #   delta_0 = 1 + .5*4 - 2 = 1;  delta_1 = .5*(2 + .5*6 - 4) = .5;  delta_2 = 0 + .5*8 - 6 = -2
    #   (unclipped: 4*(-2) = -8);  delta_3 = 4 + .5*8 - 8 = 0
    #   vs - V: [3] = 0;  [2] = -2;  [1] = .5 (cut by the truncation);  [0] = 1 + .5*1*.5 = 1.25
    #   vs = [3.25, 4.5, 4, 8]
    #   q_{t+1} = [vs_1 = 4.5, V(s_2) = 6 (not vs_2 = 4: next episode), vs_3 = 8, V(s_4) = 8]
    #   pg_0 = 1 + .5*4.5 - 2 = 1.25;  pg_1 = .5*(2 + 3 - 4) = .5 (vs_2 would give 0);  pg_2 = -2;  pg_3 = 0
    got = a3c_math.vtrace_targets(np.log(_col(1, 0.5, 4, 1)), _col(1, 2, 0, 4), _col(F, F, F, F, dtype=bool),
                                  _col(F, T_, F, F, dtype=bool), _col(2, 4, 6, 8), np.array([8], np.float32), GAMMA)
    np.testing.assert_allclose(got.clipped_rhos.numpy()[:, 0], [1, 0.5, 1, 1], rtol=1e-6)
    np.testing.assert_allclose(got.vs.numpy()[:, 0], [3.25, 4.5, 4, 8], rtol=1e-6)
    np.testing.assert_allclose(got.pg_advantages.numpy()[:, 0], [1.25, 0.5, -2, 0], rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------------------------
# The loss
# ------------------------------------------------------------------------------------------------------
HP = dict(gamma=0.99, lambda_=0.95, value_coef=0.5, entropy_beta=0.01, rho_clip=1.0, c_clip=1.0)


def _loss_inputs(seed, T=6, B=4):
    """A consistent rollout: the step after an episode end is the autoreset transition, so it is invalid."""
    lr, r, term, trunc, v, boot = random_rollout(seed, T, B)
    rng = np.random.default_rng(seed + 100)
    log_probs = -rng.random((T, B)).astype(np.float32) * 2
    behaviour = (log_probs - lr).astype(np.float32)
    entropies = rng.random((T, B)).astype(np.float32)
    valid = np.ones((T, B), bool)
    valid[0] = rng.random(B) < 0.7
    valid[1:] = ~(term | trunc)[:-1]
    assert valid.any() and not valid.all()
    return log_probs, behaviour, entropies, v, r, term, trunc, valid, boot


def _call_loss(log_probs, behaviour, entropies, v, r, term, trunc, valid, boot):
    return a3c_math.vtrace_loss(log_probs, behaviour, entropies, v, r, term, trunc, valid, boot, **HP)


@pytest.mark.parametrize("seed, rho_clip", [(0, 1.0), (1, 1.5)])  # 1.5: "rho_clipped" must use rho_clip, not 1
def test_vtrace_loss_total_and_parts_match_numpy(seed, rho_clip):
    log_probs, behaviour, entropies, v, r, term, trunc, valid, boot = _loss_inputs(seed)
    hp = dict(HP, rho_clip=rho_clip)
    total, parts = a3c_math.vtrace_loss(log_probs, behaviour, entropies, v, r, term, trunc, valid, boot, **hp)
    log_rhos = log_probs.astype(np.float64) - behaviour
    vs, pg, _ = np_vtrace(log_rhos, r, term, trunc, v, boot, hp["gamma"], hp["lambda_"], rho_clip, hp["c_clip"])
    m = valid.astype(np.float64)

    def mean(x):
        return (x * m).sum() / m.sum()

    expected = {"policy": -mean(log_probs * pg), "value": mean(0.5 * (vs - v) ** 2), "entropy": mean(entropies),
                "advantage": mean(pg), "rho": mean(np.exp(log_rhos)),
                "rho_clipped": mean(np.exp(log_rhos) > rho_clip)}
    assert mean((np.exp(log_rhos) > 1) != (np.exp(log_rhos) > rho_clip)) > 0 or rho_clip == 1
    assert 0 < expected["rho_clipped"] < 1
    assert set(parts) == set(expected)
    for name, e in expected.items():
        np.testing.assert_allclose(parts[name].numpy(), e, rtol=1e-5, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(total.numpy(), expected["policy"] + hp["value_coef"] * expected["value"]
                               - hp["entropy_beta"] * expected["entropy"], rtol=1e-5, atol=1e-6)


def test_vtrace_loss_gradients_treat_targets_and_ratios_as_constants():
    log_probs, behaviour, entropies, v, r, term, trunc, valid, boot = _loss_inputs(2)
    lp_t, beh_t, v_t, boot_t = (tf.constant(x) for x in (log_probs, behaviour, v, boot))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([lp_t, beh_t, v_t, boot_t])
        total, parts = _call_loss(lp_t, beh_t, entropies, v_t, r, term, trunc, valid, boot_t)
    for g in tape.gradient(total, [beh_t, boot_t]):  # the actor's numbers are data
        assert g is None or not np.any(g.numpy())
    g = tape.gradient(parts["policy"], v_t)  # no policy gradient into the value head through pg_advantages
    assert g is None or not np.any(g.numpy())

    vs, pg, _ = np_vtrace(log_probs.astype(np.float64) - behaviour, r, term, trunc, v, boot, HP["gamma"],
                          HP["lambda_"], HP["rho_clip"], HP["c_clip"])
    m = valid.astype(np.float64)
    # vs is a constant target: d/dV of mean 0.5 (vs - V)^2 is -(vs - V)/N on valid steps, 0 elsewhere.
    np.testing.assert_allclose(tape.gradient(parts["value"], v_t).numpy(), -m * (vs - v) / m.sum(),
                               rtol=1e-4, atol=1e-6)
    # rho is not differentiated: d/dlog_probs of -mean(log_probs * pg) is just -pg/N.
    np.testing.assert_allclose(tape.gradient(parts["policy"], lp_t).numpy(), -m * pg / m.sum(), rtol=1e-4, atol=1e-6)


def test_vtrace_targets_are_constants():
    lr, r, term, trunc, v, boot = (tf.constant(x) for x in random_rollout(4))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([lr, v, boot])
        out = a3c_math.vtrace_targets(lr, r, term, trunc, v, boot, 0.9, 0.95)
    for x in out:
        for g in tape.gradient(x, [lr, v, boot]):
            assert g is None or not np.any(g.numpy())


def test_invalid_steps_do_not_change_the_loss():
    # An invalid step follows an episode end, so the trace is already cut there: nothing the env or the actor
    # reports at it (reward, log-probs, entropy) may reach a valid step's target or the loss.
    log_probs, behaviour, entropies, v, r, term, trunc, valid, boot = inputs = _loss_inputs(5)
    inv = ~valid
    rng = np.random.default_rng(7)

    def perturb(x):
        return np.where(inv, rng.normal(size=x.shape) * 10, x).astype(np.float32)

    total, parts = _call_loss(*inputs)
    total2, parts2 = _call_loss(perturb(log_probs), perturb(behaviour), perturb(entropies), v, perturb(r), term, trunc,
                                valid, boot)
    for name in parts:
        np.testing.assert_allclose(parts2[name].numpy(), parts[name].numpy(), rtol=1e-6, atol=1e-7, err_msg=name)
    np.testing.assert_allclose(total2.numpy(), total.numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("bad_shape", [(2,), (4, 2, 1)])
@pytest.mark.parametrize("which", ["log_rhos", "rewards", "terminated", "truncated", "values"])
def test_vtrace_targets_reject_non_time_major(bad_shape, which):
    args = dict(log_rhos=np.zeros((4, 2), np.float32), rewards=np.zeros((4, 2), np.float32),
                terminated=np.zeros((4, 2), bool), truncated=np.zeros((4, 2), bool),
                values=np.zeros((4, 2), np.float32))
    args[which] = np.zeros(bad_shape, args[which].dtype)
    with pytest.raises(RANK_ERRORS):
        a3c_math.vtrace_targets(**args, bootstrap_value=np.zeros((2,), np.float32), gamma=0.9)


@pytest.mark.parametrize("which", [0, 1])
def test_vtrace_loss_rejects_rank_one_log_probs(which):
    # A [B] log-prob would broadcast against [T, B] in log_probs - behaviour_log_probs without the check.
    x, flags = np.zeros((4, 2), np.float32), np.zeros((4, 2), bool)
    lps = [x, x]
    lps[which] = np.zeros((2,), np.float32)
    with pytest.raises(RANK_ERRORS):
        a3c_math.vtrace_loss(*lps, x, x, x, flags, flags, ~flags, np.zeros((2,), np.float32), **HP)


def test_graph_mode_with_dynamic_shapes_matches_reference():
    """The trainer calls the math inside a tf.function with [None, None] signatures."""
    tb, flags = tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([None, None], tf.bool)
    fn = tf.function(lambda lr, r, te, tr, v, b: a3c_math.vtrace_targets(lr, r, te, tr, v, b, 0.9, 0.95),
                     input_signature=[tb, tb, flags, flags, tb, tf.TensorSpec([None], tf.float32)])
    for seed in (0, 1):
        rollout = random_rollout(seed, T=4 + seed, B=2 + seed)
        for g, e in zip(fn(*rollout), np_vtrace(*rollout, 0.9, 0.95, 1.0, 1.0)):
            np.testing.assert_allclose(g.numpy(), e, rtol=1e-5, atol=1e-5)
