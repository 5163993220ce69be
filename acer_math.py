"""The ACER math, as pure functions on time-major tensors: discrete actions (Sections 3.1-3.3) and a diagonal
Gaussian policy with a stochastic dueling critic (Section 5, Algorithm 3; `continuous_acer_loss`).

Wang et al. 2016, "Sample Efficient Actor-Critic with Experience Replay", arXiv 1611.01224, Algorithm 2 and
Sections 3.1-3.3. Notation:
  f = f(.|phi(x_t))  the current policy's probabilities, [T, B, A]; like OpenAI baselines' ACER the distribution
                     statistics phi are the probabilities themselves, so "d/d phi" is d/d f.
  mu                 the behaviour policy's probabilities, recorded when the step was collected, [T, B, A].
  f_avg              the average policy network's probabilities (the trust region's anchor), [T, B, A].
  Q(x_t, a)          the critic, [T, B, A];  V(x_t) = sum_a f(a) Q(x_t, a).
  rho_t(a)           f(a) / mu(a);  rho_t = rho_t(a_t).
  terminated / truncated / valid  as in a3c_math: terminated_t -> no value after step t; truncated_t -> bootstrap
                     from V(x_{t+1}), found at index t+1 (values[t+1], or the bootstrap value at t = T-1);
                     valid_t False -> the autoreset transition after an episode end, masked out of the losses.

Probabilities must be a softmax's output (sum to 1, f > 0 up to float underflow; mu(a_t) > 0 since a_t was drawn
from mu). The formulas are arranged so that an underflowed f(a) = 0 gives finite numbers (see _TINY).
Targets, importance weights and the policy "gradient" g / z are constants (stop_gradient): the losses only
route them into the network through a linear surrogate.
Owns: Retrace targets, the truncated-importance-sampling-with-bias-correction policy gradient, the trust-region
projection and the ACER loss, as pure functions tested against NumPy references.
Must not: hold variables, call the network, keep the replay buffer or the average network, or know about threads,
envs or files.
"""
from __future__ import annotations

import math

import tensorflow as tf

import a3c_math

# Floor for probabilities where they divide or are logged: a float32 softmax can underflow to exactly 0, and 1/0 or
# log 0 would turn the whole batch's loss into inf/NaN. Not smaller: ||k||^2 = sum (f_avg / f)^2 must stay below
# float32's 3e38. Probabilities below it change nothing that matters (f log f < 3e-9 there).
_TINY = 1e-10


def _check_rank(rank, **tensors):
    what = "time-major [T, B]" if rank == 2 else "time-major [T, B, A]"
    for name, x in tensors.items():
        tf.debugging.assert_rank(x, rank, message=f"{name} must be {what}")


def _masked_mean(x, mask):
    mask = tf.cast(mask, tf.float32)
    return tf.reduce_sum(x * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def _taken(x, actions):
    """x[..., a_t]: [T, B, A] -> [T, B]. A one-hot product, so the gradient is exactly 0 at the other actions."""
    return tf.reduce_sum(x * tf.one_hot(actions, tf.shape(x)[-1], dtype=x.dtype), axis=-1)


def retrace_targets(rewards, terminated, truncated, q_taken, values, rhos_taken, bootstrap_value, gamma,
                    lambda_=1.0):
    """Retrace targets Q_ret (Algorithm 2; Munos et al. 2016):

        Q_ret <- V(x_T)   (the caller's bootstrap_value; 0 if terminated at T-1, through the boundary rule below)
        for i = T-1 .. 0:
            Q_ret   <- r_i + gamma * Q_ret;     Q_ret_i = Q_ret
            Q_ret   <- cbar_i * (Q_ret - Q(x_i, a_i)) + V(x_i),     cbar_i = lambda_ * min(1, rho_i)

    Episode boundaries replace the value carried into step i from step i+1 (which belongs to the next episode):
      terminated_i -> 0,                             so Q_ret_i = r_i;
      truncated_i  -> V(x_{i+1}) (values[i+1], or bootstrap_value at i = T-1, the final observation's value),
                                                     so Q_ret_i = r_i + gamma * V(x_{i+1});
      terminated wins when both are set.
    With cbar = 1 and Q(x_i, a_i) = V(x_i) this is a3c_math.n_step_returns; with lambda_ = 0 it is the one-step
    target r_i + gamma * V(x_{i+1}).

    Args:
      rewards: [T, B] float32.  terminated, truncated: [T, B] bool.
      q_taken: [T, B] float32, Q(x_t, a_t).  values: [T, B] float32, V(x_t) = sum_a f(a|x_t) Q(x_t, a).
      rhos_taken: [T, B] float32, f(a_t|x_t) / mu(a_t|x_t).
      bootstrap_value: [B] float32, V(x_T).
      gamma, lambda_: floats.
    Returns:
      Q_ret [T, B] float32, under stop_gradient.
    """
    _check_rank(2, rewards=rewards, terminated=terminated, truncated=truncated, q_taken=q_taken, values=values,
                rhos_taken=rhos_taken)
    return retrace_with_traces(rewards, terminated, truncated, q_taken, values, lambda_ * tf.minimum(1.0, rhos_taken),
                               bootstrap_value, gamma)


def retrace_with_traces(rewards, terminated, truncated, q_taken, values, traces, bootstrap_value, gamma):
    """retrace_targets' recursion with the traces cbar_i given: Q_ret <- cbar_i (Q_ret - Q(x_i, a_i)) + V(x_i).

    The discrete rule passes lambda_ * min(1, rho_i); the continuous one min(1, rho_i^(1/d)) (d action dimensions,
    Section 5), and its Q_opc (the target of the policy gradient) traces of 1. Episode boundaries as in
    retrace_targets. All [T, B] float32 but bootstrap_value [B]; the result is under stop_gradient."""
    _check_rank(2, rewards=rewards, terminated=terminated, truncated=truncated, q_taken=q_taken, values=values,
                traces=traces)
    not_terminated = 1.0 - tf.cast(terminated, tf.float32)
    truncated_f = tf.cast(truncated, tf.float32)
    v_next = a3c_math.next_values(values, bootstrap_value)
    cbar = tf.convert_to_tensor(traces, tf.float32)

    def step(acc, inputs):
        _, carried = acc  # carried: the value step i+1 hands back (after its cbar update)
        r, nt, tr, vn, c, q, v = inputs
        q_ret = r + gamma * nt * (tr * vn + (1.0 - tr) * carried)
        return q_ret, c * (q_ret - q) + v

    bootstrap_value = tf.convert_to_tensor(bootstrap_value, tf.float32)
    q_ret, _ = tf.scan(step, (rewards, not_terminated, truncated_f, v_next, cbar, q_taken, values),
                       initializer=(tf.zeros_like(bootstrap_value), bootstrap_value), reverse=True)
    return tf.stop_gradient(q_ret)


def truncated_is_gradient(probs, behaviour_probs, actions, q_values, q_ret, values, c, valid=None):
    """The ACER policy gradient w.r.t. f, truncated importance sampling with bias correction (Section 3.2).

    It is d/d f of the per-step objective (to be ascended), with the weights (everything but log f) constant:
        L_t = min(c, rho_t) * log f(a_t) * (Q_ret_t - V_t)
              + sum_a [1 - c / rho_t(a)]_+ * f(a) * log f(a) * (Q(x_t, a) - V_t)
    i.e.
        g_t[a] = 1{a = a_t} * min(c, rho_t) * (Q_ret_t - V_t) / f(a_t) + [1 - c / rho_t(a)]_+ * (Q(x_t, a) - V_t).
    The first term is the truncated importance-sampled gradient (bounded variance), the second adds back, in
    expectation under f, what the truncation removed: E_{a_t~mu}[g_t] = Q(x_t, .) - V_t when Q_ret_t = Q(x_t, a_t),
    the gradient of E_{a~f}[Q(x_t, a) - V_t] w.r.t. f.  Computed as min(c / f(a_t), 1 / mu(a_t)) and
    [1 - c mu(a) / f(a)]_+ so that f = 0 stays finite.

    Args:
      probs, behaviour_probs: [T, B, A] float32, f and mu.  actions: [T, B] int.
      q_values: [T, B, A] float32, Q(x_t, .).  q_ret: [T, B] float32.  values: [T, B] float32, V_t.
      c: float > 0, the truncation threshold.
      valid: optional [T, B] bool mask for the statistics in parts (all steps if None).
    Returns:
      (g [T, B, A] float32 under stop_gradient,
       parts {"rho": mean rho_t of the taken action, "rho_truncated": fraction of steps with rho_t > c}).
    """
    _check_rank(3, probs=probs, behaviour_probs=behaviour_probs, q_values=q_values)
    _check_rank(2, actions=actions, q_ret=q_ret, values=values)
    f, mu, q = (tf.stop_gradient(tf.convert_to_tensor(x, tf.float32)) for x in (probs, behaviour_probs, q_values))
    q_ret, values = tf.stop_gradient(q_ret), tf.stop_gradient(values)
    f_taken, mu_taken = _taken(f, actions), _taken(mu, actions)
    # min(c, rho_t) / f(a_t) = min(c / f(a_t), 1 / mu(a_t)): finite at f(a_t) = 0 (mu(a_t) > 0, a_t came from mu).
    weight_taken = tf.minimum(c / tf.maximum(f_taken, _TINY), 1.0 / mu_taken)
    truncated_term = (tf.one_hot(actions, tf.shape(f)[-1], dtype=tf.float32)
                      * (weight_taken * (q_ret - values))[..., None])
    # [1 - c / rho(a)]_+ = [1 - c mu(a) / f(a)]_+: 0 at f(a) = 0 < mu(a); 1 where mu(a) = 0 (rho = inf), even at f = 0.
    correction_weight = tf.where(mu > 0, tf.nn.relu(1.0 - c * mu / f), 1.0)
    g = truncated_term + correction_weight * (q - values[..., None])
    rho = f_taken / mu_taken
    mask = tf.ones_like(rho) if valid is None else valid
    parts = {"rho": _masked_mean(rho, mask), "rho_truncated": _masked_mean(tf.cast(rho > c, tf.float32), mask)}
    return tf.stop_gradient(g), parts


def kl(avg_probs, probs):
    """KL[f_avg || f] = sum_a f_avg(a) (log f_avg(a) - log f(a)) per step: [..., A] -> [...] float32."""
    return tf.reduce_sum(tf.math.xlogy(avg_probs, avg_probs)
                         - tf.math.xlogy(avg_probs, tf.maximum(probs, _TINY)), axis=-1)


def kl_gradient(avg_probs, probs):
    """k = d/d f of KL[f_avg || f] = -f_avg / f, [..., A] float32 under stop_gradient (f floored at _TINY)."""
    return tf.stop_gradient(-avg_probs / tf.maximum(probs, _TINY))


def trust_region_projection(g, k, delta):
    """The closed form of Section 3.3, per step over the last axis:

        z* = argmin_z 0.5 ||g - z||^2  s.t.  k.z <= delta
           = g - max(0, (k.g - delta) / ||k||^2) * k

    Args:
      g, k: [..., A] float32, the policy gradient and the KL gradient w.r.t. f.  delta: float > 0.
    Returns:
      (z [..., A] float32, scale [...] float32 = the max(0, ...) coefficient, 0 where the constraint is inactive),
      both under stop_gradient. k = 0 (possible only with f_avg = 0) leaves g unchanged.
    """
    g, k = tf.convert_to_tensor(g, tf.float32), tf.convert_to_tensor(k, tf.float32)
    scale = tf.nn.relu(tf.math.divide_no_nan(tf.reduce_sum(k * g, -1) - delta, tf.reduce_sum(k * k, -1)))
    return tf.stop_gradient(g - scale[..., None] * k), tf.stop_gradient(scale)


def acer_loss(probs, avg_probs, behaviour_probs, q_values, actions, rewards, terminated, truncated, valid,
              bootstrap_value, gamma, c, delta, value_coef, entropy_beta, trust_region=True, lambda_=1.0):
    """The ACER objective (Algorithm 2, discrete actions): policy + value_coef * value - entropy_beta * entropy.

      V_t        = sum_a f(a) Q(x_t, a), constant (a baseline and a target ingredient in the paper).
      Q_ret      = retrace_targets(..., rho_t from stop_gradient(f)), constant.
      g          = truncated_is_gradient(...);  z = trust_region_projection(g, kl_gradient(f_avg, f), delta)
                   (z = g when not trust_region).
      policy     = -mean_valid sum_a stop_gradient(z_a) * f_a: its gradient w.r.t. f is -z / N on valid steps, so
                   backprop through the network's softmax applies the projected gradient, descending the loss.
      value      = mean_valid 0.5 * (Q_ret_t - Q(x_t, a_t))^2, gradient into q_values at the taken actions only.
      entropy    = mean_valid H(f).

    Args:
      probs: [T, B, A] float32, f under the learner's parameters (differentiable).
      avg_probs: [T, B, A] float32, f_avg from the average policy network (a constant here).
      behaviour_probs: [T, B, A] float32, mu recorded at collection time.
      q_values: [T, B, A] float32, the critic (differentiable).  actions: [T, B] int.
      rewards, terminated, truncated, valid: [T, B].  bootstrap_value: [B] float32, V(x_T) (the caller evaluates it;
        terminated at T-1 zeroes it).
      gamma, c, delta, value_coef, entropy_beta, lambda_: floats.  trust_region: bool.
    Returns:
      (total scalar, parts {"policy", "value", "entropy", "rho", "rho_truncated", "trust_region_kl",
       "trust_region_scale", "advantage"}), all float32 scalars (masked means over valid steps).
    """
    _check_rank(3, probs=probs, avg_probs=avg_probs, behaviour_probs=behaviour_probs, q_values=q_values)
    _check_rank(2, actions=actions, rewards=rewards, terminated=terminated, truncated=truncated, valid=valid)
    probs = tf.convert_to_tensor(probs, tf.float32)
    q_values = tf.convert_to_tensor(q_values, tf.float32)
    f, q = tf.stop_gradient(probs), tf.stop_gradient(q_values)
    mu = tf.convert_to_tensor(behaviour_probs, tf.float32)
    values = tf.reduce_sum(f * q, axis=-1)
    q_taken = _taken(q_values, actions)
    q_ret = retrace_targets(rewards, terminated, truncated, tf.stop_gradient(q_taken), values,
                            _taken(f, actions) / _taken(mu, actions), tf.stop_gradient(bootstrap_value), gamma,
                            lambda_)
    g, is_parts = truncated_is_gradient(f, mu, actions, q, q_ret, values, c, valid)
    avg = tf.stop_gradient(tf.convert_to_tensor(avg_probs, tf.float32))
    if trust_region:
        z, scale = trust_region_projection(g, kl_gradient(avg, f), delta)
    else:
        z, scale = g, tf.zeros_like(values)

    pl = -_masked_mean(tf.reduce_sum(tf.stop_gradient(z) * probs, axis=-1), valid)
    vl = _masked_mean(0.5 * tf.square(q_ret - q_taken), valid)
    ent = _masked_mean(-tf.reduce_sum(probs * tf.math.log(tf.maximum(probs, _TINY)), axis=-1), valid)
    total = pl + value_coef * vl - entropy_beta * ent
    parts = {"policy": pl, "value": vl, "entropy": ent, **is_parts,
             "trust_region_kl": _masked_mean(kl(avg, f), valid),
             "trust_region_scale": _masked_mean(scale, valid),
             "advantage": _masked_mean(q_ret - values, valid)}
    return total, parts


# ----------------------------------------------------------------------------------------------------------
# Continuous actions: a diagonal Gaussian policy and a stochastic dueling critic (Section 5, Algorithm 3)
# ----------------------------------------------------------------------------------------------------------
# Continuous ACER's policy statistics phi are the Gaussian's [mean, log_std] (distributions.DiagGaussian's params),
# so its policy gradient g, the KL gradient k and the projected z are vectors of 2D numbers per step.
_HALF_LOG_2PI = 0.9189385332046727
_MAX_LOG_RATIO = 60.0  # exp(60) ~ 1e26: log rho beyond it means rho = inf for every weight below


def _split_gaussian(params):
    mean, log_std = tf.split(tf.convert_to_tensor(params, tf.float32), 2, axis=-1)
    return mean, log_std


def gaussian_log_prob(params, actions):
    """log N(a; mean, diag(std^2)) summed over the D dimensions: params [..., 2D], actions [..., D] -> [...]."""
    mean, log_std = _split_gaussian(params)
    z = (actions - mean) * tf.exp(-log_std)
    return tf.reduce_sum(-0.5 * tf.square(z) - log_std - _HALF_LOG_2PI, axis=-1)


def gaussian_log_prob_gradient(params, actions):
    """d log f(a | phi) / d phi for phi = [mean, log_std]: [..., 2D] = [(a - mean) / std^2, ((a - mean) / std)^2 - 1],
    under stop_gradient."""
    mean, log_std = _split_gaussian(params)
    inv_var = tf.exp(-2.0 * log_std)
    diff = actions - mean
    return tf.stop_gradient(tf.concat([diff * inv_var, tf.square(diff) * inv_var - 1.0], -1))


def gaussian_kl(avg_params, params):
    """KL[N_avg || N] per step, summed over D: sum log_std - log_std_avg + (std_avg^2 + (mean_avg - mean)^2) /
    (2 std^2) - 1/2. [..., 2D] x 2 -> [...]."""
    avg_mean, avg_log_std = _split_gaussian(avg_params)
    mean, log_std = _split_gaussian(params)
    ratio = (tf.exp(2.0 * avg_log_std) + tf.square(avg_mean - mean)) * tf.exp(-2.0 * log_std)
    return tf.reduce_sum(log_std - avg_log_std + 0.5 * ratio - 0.5, axis=-1)


def gaussian_kl_gradient(avg_params, params):
    """k = d KL[N_avg || N] / d phi for phi = [mean, log_std] of N: [..., 2D] = [(mean - mean_avg) / std^2,
    1 - (std_avg^2 + (mean_avg - mean)^2) / std^2], under stop_gradient."""
    avg_mean, avg_log_std = _split_gaussian(avg_params)
    mean, log_std = _split_gaussian(params)
    inv_var = tf.exp(-2.0 * log_std)
    return tf.stop_gradient(tf.concat(
        [(mean - avg_mean) * inv_var, 1.0 - (tf.exp(2.0 * avg_log_std) + tf.square(avg_mean - mean)) * inv_var], -1))


def sdn_q_values(values, advantages):
    """The stochastic dueling network's estimates (Section 5): Q~(x, a) = V(x) + A(x, a) - mean_i A(x, u_i).

    Args:
      values: [T, B] float32, V(x_t).
      advantages: [T, B, 2 + n] float32: A(x_t, .) at the taken action a_t, at the sampled a'_t, then at n >= 1
        actions u_i drawn from the current policy.
    Returns:
      [T, B, 2] float32: Q~(x_t, a_t) and Q~(x_t, a'_t).
    """
    _check_rank(2, values=values)
    tf.debugging.assert_rank(advantages, 3, message="advantages must be time-major [T, B, 2 + n]")
    baseline = tf.reduce_mean(advantages[..., 2:], axis=-1)
    return values[..., None] + advantages[..., :2] - baseline[..., None]


def continuous_acer_loss(params, avg_params, behaviour_params, actions, sampled_actions, values, q_taken,
                         q_sampled, rewards, terminated, truncated, valid, bootstrap_value, gamma, c, delta,
                         value_coef, entropy_beta, trust_region=True):
    """ACER for a diagonal Gaussian policy (Section 5, Algorithm 3): policy + value_coef * value - entropy_beta *
    entropy.

      rho_t      = f(a_t | x_t) / mu(a_t | x_t)  (from stop_gradient(params)); rho'_t the same at a'_t ~ f.
      Q_ret      = retrace_with_traces(..., cbar_t = min(1, rho_t^(1/d)), Q~(x_t, a_t), V_t), constant.
      Q_opc      = the same recursion with traces of 1 (the policy gradient's target), constant.
      g_t        = min(c, rho_t) (Q_opc_t - V_t) d log f(a_t)/d phi + [1 - c / rho'_t]_+ (Q~(x_t, a'_t) - V_t)
                   d log f(a'_t)/d phi, over phi = [mean, log_std] (2D numbers per step).
      z_t        = trust_region_projection(g_t, d KL[f_avg || f] / d phi, delta) (z = g without the trust region).
      policy     = -mean_valid sum_p stop_gradient(z_p) phi_p: backprop applies z to the network's statistics.
      value      = mean_valid 0.5 (Q_ret_t - Q~(x_t, a_t))^2 + 0.5 (V_target_t - V_t)^2 with the constant
                   V_target_t = min(1, rho_t) (Q_ret_t - Q~(x_t, a_t)) + V_t: Algorithm 3's two critic terms.
      entropy    = mean_valid of the Gaussian's entropy.
    Importance ratios are formed from log-probabilities, capped before exp, so a far-off action gives finite weights.

    Args:
      params: [T, B, 2D] float32, [mean, log_std] under the learner's weights (differentiable).
      avg_params: [T, B, 2D] float32, the average policy network's (a constant here).
      behaviour_params: [T, B, 2D] float32, mu's, recorded when the step was collected.
      actions: [T, B, D] float32, a_t (the policy's own sample, before any clipping by the env).
      sampled_actions: [T, B, D] float32, a'_t drawn from f(. | x_t) by the caller (a constant).
      values: [T, B] float32, V(x_t) (differentiable).
      q_taken, q_sampled: [T, B] float32, Q~(x_t, a_t) (differentiable) and Q~(x_t, a'_t) (a constant here).
      rewards, terminated, truncated, valid: [T, B].  bootstrap_value: [B] float32, V(x_T).
      gamma, c, delta, value_coef, entropy_beta: floats.  trust_region: bool.
    Returns:
      (total scalar, parts {"policy", "value", "entropy", "rho", "rho_truncated", "trust_region_kl",
       "trust_region_scale", "advantage"}), float32 scalars (masked means over valid steps).
    """
    _check_rank(3, params=params, avg_params=avg_params, behaviour_params=behaviour_params, actions=actions,
                sampled_actions=sampled_actions)
    _check_rank(2, values=values, q_taken=q_taken, q_sampled=q_sampled, rewards=rewards, terminated=terminated,
                truncated=truncated, valid=valid)
    params = tf.convert_to_tensor(params, tf.float32)
    values = tf.convert_to_tensor(values, tf.float32)
    q_taken = tf.convert_to_tensor(q_taken, tf.float32)
    phi = tf.stop_gradient(params)
    mu = tf.stop_gradient(tf.convert_to_tensor(behaviour_params, tf.float32))
    actions = tf.convert_to_tensor(actions, tf.float32)
    sampled = tf.stop_gradient(tf.convert_to_tensor(sampled_actions, tf.float32))
    v, q_t = tf.stop_gradient(values), tf.stop_gradient(q_taken)
    q_s = tf.stop_gradient(tf.convert_to_tensor(q_sampled, tf.float32))
    dims = tf.cast(tf.shape(actions)[-1], tf.float32)

    log_rho = tf.minimum(gaussian_log_prob(phi, actions) - gaussian_log_prob(mu, actions), _MAX_LOG_RATIO)
    log_rho_sampled = tf.minimum(gaussian_log_prob(phi, sampled) - gaussian_log_prob(mu, sampled), _MAX_LOG_RATIO)
    rho = tf.exp(log_rho)
    bootstrap_value = tf.stop_gradient(tf.convert_to_tensor(bootstrap_value, tf.float32))
    traces = tf.exp(tf.minimum(0.0, log_rho / dims))  # min(1, rho^(1/d))
    q_ret = retrace_with_traces(rewards, terminated, truncated, q_t, v, traces, bootstrap_value, gamma)
    q_opc = retrace_with_traces(rewards, terminated, truncated, q_t, v, tf.ones_like(v), bootstrap_value, gamma)

    weight_taken = tf.exp(tf.minimum(log_rho, math.log(c)))  # min(c, rho)
    correction = tf.nn.relu(1.0 - c * tf.exp(-log_rho_sampled))  # [1 - c / rho']_+
    g = ((weight_taken * (q_opc - v))[..., None] * gaussian_log_prob_gradient(phi, actions)
         + (correction * (q_s - v))[..., None] * gaussian_log_prob_gradient(phi, sampled))
    avg = tf.stop_gradient(tf.convert_to_tensor(avg_params, tf.float32))
    if trust_region:
        z, scale = trust_region_projection(g, gaussian_kl_gradient(avg, phi), delta)
    else:
        z, scale = tf.stop_gradient(g), tf.zeros_like(v)

    pl = -_masked_mean(tf.reduce_sum(z * params, axis=-1), valid)
    v_target = tf.stop_gradient(tf.minimum(1.0, rho) * (q_ret - q_t) + v)
    vl = _masked_mean(0.5 * tf.square(q_ret - q_taken) + 0.5 * tf.square(v_target - values), valid)
    _, log_std = _split_gaussian(params)
    ent = _masked_mean(tf.reduce_sum(log_std + 0.5 + _HALF_LOG_2PI, axis=-1), valid)
    total = pl + value_coef * vl - entropy_beta * ent
    parts = {"policy": pl, "value": vl, "entropy": ent, "rho": _masked_mean(rho, valid),
             "rho_truncated": _masked_mean(tf.cast(log_rho > math.log(c), tf.float32), valid),
             "trust_region_kl": _masked_mean(gaussian_kl(avg, phi), valid),
             "trust_region_scale": _masked_mean(scale, valid),
             "advantage": _masked_mean(q_opc - v, valid)}
    return total, parts
