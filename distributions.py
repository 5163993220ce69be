"""The policy head's action distributions, as pure functions of the head's output `params`.

  Categorical(A)      params = logits [..., A];  actions int32 [...]
  DiagGaussian(D)     params = [mean, log_std] concatenated, [..., 2D];  actions float32 [..., D]
                      (a state-dependent mean and a learned, state-independent log-std, as in the A3C paper's
                      continuous-control agent and PPO/A2C baselines)

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


def for_action_spec(action: ActionSpec):
    """The distribution of a policy head for `action`."""
    return Categorical(action.size) if action.is_discrete else DiagGaussian(action.size)
