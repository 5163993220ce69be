"""The policy head's action distributions, as pure functions of the head's output `params`.

  Categorical(A)      params = logits [..., A];  actions int32 [...]
  DiagGaussian(D)     params = [mean, log_std] concatenated, [..., 2D];  actions float32 [..., D]
                      (a state-dependent mean and a learned, state-independent log-std, as in the A3C paper's
                      continuous-control agent and PPO/A2C baselines)

gSDE (generalized state-dependent exploration; Raffin, Kober and Stulp, "Smooth Exploration for Robotic
Reinforcement Learning", CoRL 2021, arXiv 2005.05719) keeps DiagGaussian's params and math: its log-std is
`sde_log_std(features, L)`, the std of the noise `features @ W` with W_ij ~ N(0, exp(L_ij)^2), and it explores with
`sde_noise`, one W per env held for a number of steps instead of fresh noise at every step.

Each has `sample(params, seed)` (stateless: the same seed gives the same actions), `mode(params)` (the greedy
action), `log_prob(params, actions)` and `entropy(params)`, all over leading dimensions of any rank: `[B]` when
acting, `[T, B]` in the loss. A Gaussian's samples are NOT clipped here: the env family clips what the env gets
to its bounds while the rollout keeps the sample, so log_prob is that of the action actually drawn.
Owns: the action distributions' math.
Must not: hold variables, compute returns or losses (a3c_math.py), or know envs.
"""
from __future__ import annotations

import math

import tensorflow as tf

from specs import ActionSpec


class Categorical:
    action_dtype = tf.int32

    def __init__(self, num_actions: int):
        self.num_actions = num_actions
        self.params_size = num_actions
        self.action_shape = ()

    def sample(self, params, seed):
        """params [B, A], seed [2] int32 -> actions [B] int32."""
        return tf.cast(tf.random.stateless_categorical(params, 1, seed)[:, 0], tf.int32)

    def mode(self, params):
        return tf.cast(tf.argmax(params, -1), tf.int32)

    def log_prob(self, params, actions):
        return -tf.nn.sparse_softmax_cross_entropy_with_logits(labels=actions, logits=params)

    def entropy(self, params):
        log_p = tf.nn.log_softmax(params)
        return -tf.reduce_sum(tf.exp(log_p) * log_p, axis=-1)


class DiagGaussian:
    action_dtype = tf.float32
    HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)

    def __init__(self, dims: int):
        self.dims = dims
        self.params_size = 2 * dims
        self.action_shape = (dims,)

    def split(self, params):
        return tf.split(params, 2, axis=-1)  # mean, log_std

    def sample(self, params, seed):
        """params [B, 2D], seed [2] int32 -> actions [B, D] float32 = mean + std * N(0, 1)."""
        mean, log_std = self.split(params)
        return mean + tf.exp(log_std) * tf.random.stateless_normal(tf.shape(mean), seed)

    def mode(self, params):
        return self.split(params)[0]

    def log_prob(self, params, actions):
        """Sum over the D dimensions of log N(a; mean, std^2)."""
        mean, log_std = self.split(params)
        z = (actions - mean) * tf.exp(-log_std)
        return tf.reduce_sum(-0.5 * tf.square(z) - log_std - self.HALF_LOG_2PI, axis=-1)

    def entropy(self, params):
        """Sum over D of 0.5 + 0.5 log(2 pi) + log_std (the Gaussian's differential entropy, in nats)."""
        _, log_std = self.split(params)
        return tf.reduce_sum(log_std + 0.5 + self.HALF_LOG_2PI, axis=-1)


SDE_VARIANCE_EPS = 1e-6  # added to gSDE's variance: a state whose features are all 0 still has std 1e-3


def sde_log_std(features, log_std_matrix):
    """gSDE's log-std per action dimension: features [..., F] (the policy's last hidden layer, gradient stopped by
    the caller), log_std_matrix L [F, D] -> [..., D] = 0.5 log(sum_i features_i^2 exp(2 L_id) + eps), the std of
    `sde_noise` for those features."""
    variance = tf.tensordot(tf.square(features), tf.exp(2.0 * log_std_matrix), axes=1)
    return 0.5 * tf.math.log(variance + SDE_VARIANCE_EPS)


def sde_noise(features, log_std_matrix, seed):
    """gSDE's exploration noise: features [B, F], log_std_matrix L [F, D], seed [2] int32 -> [B, D] float32,
    row b = features_b @ W_b with W_b = exp(L) * Z_b, Z_b [F, D] standard normal drawn from `seed` (stateless:
    the same seed, the same B matrices, so a caller that keeps the seed keeps each env's W)."""
    z = tf.random.stateless_normal(tf.concat([tf.shape(features), tf.shape(log_std_matrix)[-1:]], 0), seed,
                                   dtype=features.dtype)
    return tf.einsum("bf,bfd->bd", features, tf.exp(log_std_matrix) * z)


def for_action_spec(action: ActionSpec):
    """The distribution of a policy head for `action`."""
    return Categorical(action.size) if action.is_discrete else DiagGaussian(action.size)
