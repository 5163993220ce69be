"""All of the A3C math, as pure functions on time-major `[T, B]` tensors.

Notation (Mnih et al. 2016, arXiv 1602.01783, Algorithm S3; Schulman et al. 2016 for GAE):
  s_t, a_t, r_t   state, action, reward of step t of a rollout, t = 0..T-1
  V(s)            the value head
  terminated_t    the episode (or, with episodic life, a life) ended at step t: no value after it, so
                  no bootstrap.
  truncated_t     the time limit cut the episode at step t: the state after it still has a value, so
                  bootstrap from V(s_{t+1}) (the vector env returns the final observation at that step).
  valid_t         False for the reset transition a NEXT_STEP-autoreset vector env emits right after an
                  episode end: its action was ignored, so it must not enter the loss.

Targets are wrapped in stop_gradient: the policy gradient must not flow into the value head through the
advantage, and the value regression target is a constant.
Owns: n-step returns, GAE, V-trace and the A3C / V-trace losses, as pure functions tested against NumPy loops.
Must not: hold variables, call the network or know about threads, envs or files.
"""
from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf


def _check_time_major(**tensors):
    for name, x in tensors.items():
        tf.debugging.assert_rank(x, 2, message=f"{name} must be time-major [T, B]")


def next_values(values: tf.Tensor, bootstrap_value: tf.Tensor) -> tf.Tensor:
    """V(s_{t+1}) for every step: values shifted by one, with V(s_T) appended.

    values: [T, B] float32, V(s_t).  bootstrap_value: [B] float32, V(s_T).  Returns [T, B] float32.
    """
    return tf.concat([values[1:], bootstrap_value[None]], axis=0)


def n_step_returns(rewards, terminated, truncated, values, bootstrap_value, gamma):
    """A3C's n-step discounted returns with bootstrap (paper, Algorithm S3):

        R_T = V(s_T);  R_t = r_t + gamma * R_{t+1}, restarted at episode boundaries:
        terminated_t -> R_t = r_t;   truncated_t -> R_t = r_t + gamma * V(s_{t+1}).

    Args:
      rewards: [T, B] float32 (already clipped if clipping is on).
      terminated, truncated: [T, B] bool.
      values: [T, B] float32, V(s_t) (only read at truncation points, through next_values).
      bootstrap_value: [B] float32, V(s_T).
      gamma: float discount.
    Returns:
      [T, B] float32 returns, under stop_gradient.
    """
    _check_time_major(rewards=rewards, terminated=terminated, truncated=truncated, values=values)
    not_terminated = 1.0 - tf.cast(terminated, tf.float32)
    truncated_f = tf.cast(truncated, tf.float32)
    v_next = next_values(values, bootstrap_value)

    def step(return_next, inputs):
        r, nt, tr, vn = inputs
        continuation = tr * vn + (1.0 - tr) * return_next
        return r + gamma * nt * continuation

    returns = tf.scan(step, (rewards, not_terminated, truncated_f, v_next),
                      initializer=bootstrap_value, reverse=True)
    return tf.stop_gradient(returns)


def gae_advantages(rewards, terminated, truncated, values, bootstrap_value, gamma, lambda_):
    """Generalised advantage estimation, GAE(gamma, lambda):

        delta_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t)
        A_t     = delta_t + gamma * lambda * (1 - terminated_t) * (1 - truncated_t) * A_{t+1},   A_T = 0

    lambda = 1 gives A_t = R_t - V(s_t) with R_t the n-step return above (plain A3C).

    Args/shapes as n_step_returns, plus lambda_: float.
    Returns:
      (advantages [T, B] float32, value_targets [T, B] float32 = advantages + values), under stop_gradient.
    """
    _check_time_major(rewards=rewards, terminated=terminated, truncated=truncated, values=values)
    not_terminated = 1.0 - tf.cast(terminated, tf.float32)
    not_done = not_terminated * (1.0 - tf.cast(truncated, tf.float32))
    deltas = rewards + gamma * not_terminated * next_values(values, bootstrap_value) - values

    def step(adv_next, inputs):
        delta, nd = inputs
        return delta + gamma * lambda_ * nd * adv_next

    advantages = tf.scan(step, (deltas, not_done), initializer=tf.zeros_like(bootstrap_value), reverse=True)
    return tf.stop_gradient(advantages), tf.stop_gradient(advantages + values)


def _masked_mean(x, mask):
    mask = tf.cast(mask, tf.float32)
    return tf.reduce_sum(x * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def policy_loss(log_probs, advantages, valid):
    """-E[log pi(a_t | s_t) * A_t] over valid steps.

    log_probs: [T, B] float32, log pi(a_t | s_t) of the actions taken under the head's distribution
    (distributions.py: categorical or Gaussian); advantages: [T, B] float32; valid: [T, B] bool.
    Returns a float32 scalar.
    """
    _check_time_major(log_probs=log_probs, advantages=advantages, valid=valid)
    return -_masked_mean(log_probs * tf.stop_gradient(advantages), valid)


def value_loss(values, value_targets, valid):
    """E[0.5 * (G_t - V(s_t))^2] over valid steps. values, value_targets: [T, B] float32. Scalar."""
    _check_time_major(values=values, value_targets=value_targets, valid=valid)
    return _masked_mean(0.5 * tf.square(tf.stop_gradient(value_targets) - values), valid)


def entropy(entropies, valid):
    """E[H(pi(.|s_t))] over valid steps, in nats. entropies: [T, B] float32, the head's distribution's entropy
    at each step. Scalar."""
    _check_time_major(entropies=entropies, valid=valid)
    return _masked_mean(entropies, valid)


def a3c_loss(log_probs, entropies, values, rewards, terminated, truncated, valid, bootstrap_value,
             gamma, lambda_, value_coef, entropy_beta):
    """The A3C objective: policy + value_coef * value - entropy_beta * entropy.

    log_probs, entropies: [T, B] float32 from the policy head's distribution; the rest as gae_advantages.
    Returns (total scalar, dict of the parts and the mean advantage).
    """
    advantages, targets = gae_advantages(rewards, terminated, truncated, values, bootstrap_value, gamma, lambda_)
    pl = policy_loss(log_probs, advantages, valid)
    vl = value_loss(values, targets, valid)
    ent = entropy(entropies, valid)
    total = pl + value_coef * vl - entropy_beta * ent
    return total, {"policy": pl, "value": vl, "entropy": ent, "advantage": _masked_mean(advantages, valid)}


class VTraceReturns(NamedTuple):
    """vtrace_targets' outputs, each [T, B] float32 under stop_gradient."""
    vs: tf.Tensor             # v_t, the value targets
    pg_advantages: tf.Tensor  # rho_t * (r_t + gamma * v_{t+1} - V(s_t))
    clipped_rhos: tf.Tensor   # rho_t = min(rho_clip, pi(a_t|s_t) / mu(a_t|s_t))


def vtrace_targets(log_rhos, rewards, terminated, truncated, values, bootstrap_value, gamma,
                   lambda_=1.0, rho_clip=1.0, c_clip=1.0):
    """V-trace off-policy targets (Espeholt et al. 2018, IMPALA, arXiv 1802.01561, section 4.1, eq. 1):

        rho_t = min(rho_clip, pi/mu),  c_t = lambda * min(c_clip, pi/mu)          (pi/mu = exp(log_rhos_t))
        delta_t = rho_t * (r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t))
        v_t - V(s_t) = delta_t + gamma * c_t * (1 - terminated_t) * (1 - truncated_t) * (v_{t+1} - V(s_{t+1})),
                       v_T - V(s_T) = 0
        pg_advantage_t = rho_t * (r_t + gamma * q_{t+1} - V(s_t)),  q_{t+1} = v_{t+1} inside an episode
                       (V(s_T) at t = T-1), V(s_{t+1}) if truncated_t (v_{t+1} then belongs to the next
                       episode), 0 if terminated_t.

    With log_rhos = 0, rho_clip, c_clip >= 1 and lambda_ = 1 this is on-policy A3C: vs = n_step_returns and
    pg_advantages = n_step_returns - values.

    Args:
      log_rhos: [T, B] float32, log pi(a_t|s_t) - log mu(a_t|s_t), target minus behaviour policy.
      rewards, terminated, truncated, values, bootstrap_value, gamma: as n_step_returns.  bootstrap_value is the
        behaviour policy's V(s_T), computed at collection time: the rollout holds no s_T observation to re-evaluate,
        a small bias as long as the learner's parameters lag the actor's by few updates.
      lambda_: float in [0, 1], IMPALA's extra trace cutting (c_t is multiplied by it).
      rho_clip, c_clip: floats, the truncation levels rho-bar and c-bar (rho_clip >= c_clip in the paper).
    Returns:
      VTraceReturns(vs, pg_advantages, clipped_rhos), each [T, B] float32 under stop_gradient.
    """
    _check_time_major(log_rhos=log_rhos, rewards=rewards, terminated=terminated, truncated=truncated, values=values)
    rhos = tf.exp(log_rhos)
    clipped_rhos = tf.minimum(rho_clip, rhos)
    cs = lambda_ * tf.minimum(c_clip, rhos)
    not_terminated = 1.0 - tf.cast(terminated, tf.float32)
    not_done = not_terminated * (1.0 - tf.cast(truncated, tf.float32))
    v_next = not_terminated * next_values(values, bootstrap_value)
    deltas = clipped_rhos * (rewards + gamma * v_next - values)

    def step(vs_minus_v_next, inputs):
        delta, discount = inputs
        return delta + discount * vs_minus_v_next

    vs = values + tf.scan(step, (deltas, gamma * cs * not_done), initializer=tf.zeros_like(bootstrap_value),
                          reverse=True)
    # At an episode end the next step's v belongs to the next episode: bootstrap from V(s_{t+1}) or 0 instead.
    q_next = not_done * next_values(vs, bootstrap_value) + (1.0 - not_done) * v_next
    pg_advantages = clipped_rhos * (rewards + gamma * q_next - values)
    return VTraceReturns(*(tf.stop_gradient(x) for x in (vs, pg_advantages, clipped_rhos)))


def vtrace_loss(log_probs, behaviour_log_probs, entropies, values, rewards, terminated, truncated, valid,
                bootstrap_value, gamma, lambda_, value_coef, entropy_beta, rho_clip, c_clip):
    """The IMPALA objective, parallel to a3c_loss: policy + value_coef * value - entropy_beta * entropy, with
    policy = -E[log pi(a_t|s_t) * pg_advantage_t] and value = E[0.5 * (v_t - V(s_t))^2] over valid steps.

    log_probs: [T, B] float32, log pi(a_t|s_t) under the learner's parameters; behaviour_log_probs: [T, B] float32,
    log mu(a_t|s_t) recorded by the actor; the rest as a3c_loss / vtrace_targets.
    Returns (total scalar, dict of the parts, the mean pg advantage, the mean unclipped importance ratio "rho" and the
    fraction of steps whose ratio exceeds rho_clip "rho_clipped").
    """
    # Check before the subtraction: a [B] input would broadcast against [T, B] silently.
    _check_time_major(log_probs=log_probs, behaviour_log_probs=behaviour_log_probs)
    # The ratios are weights of the estimator, not part of the objective: no gradient through them.
    log_rhos = tf.stop_gradient(log_probs - behaviour_log_probs)
    vt = vtrace_targets(log_rhos, rewards, terminated, truncated, values, bootstrap_value, gamma, lambda_,
                        rho_clip, c_clip)
    pl = policy_loss(log_probs, vt.pg_advantages, valid)
    vl = value_loss(values, vt.vs, valid)
    ent = entropy(entropies, valid)
    total = pl + value_coef * vl - entropy_beta * ent
    rhos = tf.exp(log_rhos)
    return total, {"policy": pl, "value": vl, "entropy": ent, "advantage": _masked_mean(vt.pg_advantages, valid),
                   "rho": _masked_mean(rhos, valid),
                   "rho_clipped": _masked_mean(tf.cast(rhos > rho_clip, tf.float32), valid)}
