"""The shared policy-value network and where it lives.

Input: uint8 frames `[B, 4, 84, 84]` exactly as ale_py's AtariVectorEnv emits them (stack first). They stay
uint8 until they are inside the model, which casts, scales to [0, 1] and moves the stack axis last in the same
graph, so only 1 byte per pixel crosses from host to device and no transpose happens on the host.

Output: `AgentOutput(logits [B, A] float32, value [B] float32, state)`. `state` is the recurrent core state;
the feed-forward nets carry an empty one `[B, 0]` so that the rollout and train code already thread a
per-env state that is reset at episode starts - an A3C-LSTM core slots in by returning a real one.
"""
from __future__ import annotations

from typing import NamedTuple

import keras
import tensorflow as tf

OBS_SHAPE = (4, 84, 84)  # (frame stack, height, width), AtariVectorEnv's layout


class AgentOutput(NamedTuple):
    logits: tf.Tensor  # [B, A] float32, unnormalised log-probabilities
    value: tf.Tensor  # [B] float32, V(s)
    state: tf.Tensor  # [B, S] float32 recurrent state after this step (S = 0 for feed-forward nets)


def compute_device() -> str:
    """The device the network lives on: the first GPU when there is one, else the CPU."""
    gpus = tf.config.list_logical_devices("GPU")
    return gpus[0].name if gpus else "/CPU:0"


_TORSOS = {
    # name: (conv layers as (filters, kernel, stride), hidden units)
    "a3c": ([(16, 8, 4), (32, 4, 2)], 256),  # Mnih et al. 2016, the A3C paper
    "nature": ([(32, 8, 4), (64, 4, 2), (64, 3, 1)], 512),  # Mnih et al. 2015, DQN Nature
}


class PolicyValueNet(keras.Model):
    """Conv torso + fc, with a policy head and a value head. `state_size` is 0 (feed-forward)."""

    state_size = 0

    def __init__(self, num_actions: int, kind: str = "a3c", **kwargs):
        super().__init__(**kwargs)
        if kind not in _TORSOS:
            raise ValueError(f"unknown network {kind!r}; choose one of {sorted(_TORSOS)}")
        convs, hidden = _TORSOS[kind]
        self.kind = kind
        self.num_actions = num_actions
        # Each conv is its own attribute: tf.train.Checkpoint does not see layers held in a Python list,
        # and a checkpoint without them would silently re-initialise the torso on restore.
        self.conv_names = tuple(f"conv{i}" for i in range(len(convs)))
        for name, (f, k, s) in zip(self.conv_names, convs):
            setattr(self, name, keras.layers.Conv2D(f, k, s, activation="relu", name=name))
        self.flatten = keras.layers.Flatten()
        self.hidden = keras.layers.Dense(hidden, activation="relu", name="fc")
        # Small policy init keeps the first policy near uniform (high entropy), as in A2C/PPO baselines.
        self.policy_head = keras.layers.Dense(
            num_actions, name="policy", kernel_initializer=keras.initializers.Orthogonal(0.01))
        self.value_head = keras.layers.Dense(1, name="value", kernel_initializer=keras.initializers.Orthogonal(1.0))

    def initial_state(self, batch_size: int) -> tf.Tensor:
        return tf.zeros([batch_size, self.state_size], tf.float32)

    def call(self, obs, state=None) -> AgentOutput:
        x = tf.cast(obs, tf.float32) * (1.0 / 255.0)
        x = tf.transpose(x, [0, 2, 3, 1])  # NHWC: the layout TF's CPU and GPU convs both accept
        for name in self.conv_names:
            x = getattr(self, name)(x)
        x = self.hidden(self.flatten(x))
        if state is None:
            state = tf.zeros([tf.shape(obs)[0], 0], tf.float32)
        return AgentOutput(self.policy_head(x), tf.squeeze(self.value_head(x), -1), state)


def build_network(num_actions: int, kind: str = "a3c", device: str | None = None) -> PolicyValueNet:
    """Create the network with its variables on `device` (default: compute_device())."""
    with tf.device(device or compute_device()):
        net = PolicyValueNet(num_actions, kind)
        net(tf.zeros((1,) + OBS_SHAPE, tf.uint8))  # build the variables on that device
    return net
