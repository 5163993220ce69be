"""The learner: the shared policy-value network, its optimizer, and the tf.functions every thread calls.

The trainer's threads see a learner only through the `Learner` interface:
  policy(greedy=False) -> PolicyFn     act on a batch of observations (the batch_agents.PolicyFn signature)
  train_on(rollout, learning_rate)     one update from one thread's Rollout, applied to the shared variables;
    -> dict of scalar metrics          always "applied" (bool) and "loss"; A3C adds policy, value, entropy, ...
  checkpoint_objects() -> dict         the trackables a checkpoint holds (weights, optimizer slots, ...)
  net, num_actions, device
A3CLearner implements it with a3c_math.a3c_loss. An ACER or V-trace learner implements the same interface
beside it and make_learner picks it; the trainer loop does not change.

Both tf.functions are traced once per input shape and are safe to call from several threads at once; updates
are applied lock-free (Hogwild), as in the A3C paper.
Owns: the shared variables and every TensorFlow op of acting and learning.
Must not: step envs, count steps or episodes, write files or logs, or hold any per-thread state.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from tf_setup import import_tensorflow

tf = import_tensorflow()

import a3c_math  # noqa: E402  (imports TensorFlow, which must come in quietly first)
from hparams import HParams  # noqa: E402
from network import build_network, compute_device  # noqa: E402
from optimizers import SharedOptimizer  # noqa: E402


class Learner(Protocol):
    net: object
    num_actions: int
    device: str

    def policy(self, greedy: bool = False): ...

    def train_on(self, rollout, learning_rate: float) -> dict: ...

    def checkpoint_objects(self) -> dict: ...


class A3CLearner:
    """Owns the shared variables. `act` and `train_step` are safe to call from several threads at once."""

    def __init__(self, hp: HParams, num_actions: int, device: str | None = None):
        self.hp = hp
        self.num_actions = num_actions
        self.device = device or compute_device()
        self.net = build_network(num_actions, hp.network, self.device, hp.precision)
        variables = self.net.trainable_variables
        self.optimizer = SharedOptimizer(hp.optimizer, variables, decay=hp.rmsprop_decay,
                                         epsilon=hp.optimizer_epsilon, beta1=hp.adam_beta1, beta2=hp.adam_beta2,
                                         device=self.device)
        S = self.net.state_size
        obs_spec = tf.TensorSpec([None, 4, 84, 84], tf.uint8)
        net, optimizer = self.net, self.optimizer

        @tf.function(input_signature=[obs_spec, tf.TensorSpec([None, S], tf.float32),
                                      tf.TensorSpec([None], tf.bool), tf.TensorSpec([2], tf.int32),
                                      tf.TensorSpec([], tf.bool)])
        def act(obs, state, reset, seed, greedy):
            with tf.device(self.device):
                state = tf.where(reset[:, None], tf.zeros_like(state), state)
                out = net(obs, state)
                sampled = tf.random.stateless_categorical(out.logits, 1, seed)[:, 0]
                action = tf.where(greedy, tf.argmax(out.logits, -1), sampled)
                return tf.cast(action, tf.int32), out.value, out.state

        tb = [None, None]
        train_signature = [
            tf.TensorSpec([None, None, 4, 84, 84], tf.uint8),  # obs
            tf.TensorSpec(tb, tf.int32),  # actions
            tf.TensorSpec(tb, tf.float32),  # rewards (raw)
            tf.TensorSpec(tb, tf.bool),  # terminated
            tf.TensorSpec(tb, tf.bool),  # truncated
            tf.TensorSpec(tb, tf.bool),  # valid
            tf.TensorSpec(tb, tf.bool),  # resets (used by recurrent cores)
            tf.TensorSpec([None, S], tf.float32),  # initial_state
            tf.TensorSpec([None], tf.float32),  # bootstrap_value
            tf.TensorSpec([], tf.float32),  # learning rate
        ]

        def train_step(obs, actions, rewards, terminated, truncated, valid, resets, initial_state,
                       bootstrap_value, learning_rate):
            """One A3C update from one thread's rollout. Returns a dict of scalar metrics."""
            with tf.device(self.device):
                T, B = tf.shape(actions)[0], tf.shape(actions)[1]
                if hp.clip_rewards:
                    rewards = tf.clip_by_value(rewards, -1.0, 1.0)
                with tf.GradientTape() as tape:
                    out = net(tf.reshape(obs, tf.concat([[T * B], tf.shape(obs)[2:]], 0)))
                    logits = tf.reshape(out.logits, [T, B, num_actions])
                    values = tf.reshape(out.value, [T, B])
                    loss, parts = a3c_math.a3c_loss(
                        logits, values, actions, rewards, terminated, truncated, valid, bootstrap_value,
                        hp.gamma, hp.gae_lambda, hp.value_coef, hp.entropy_beta)
                grads = tape.gradient(loss, net.trainable_variables)
                clipped, grad_norm = tf.clip_by_global_norm(grads, hp.max_grad_norm)
                finite = tf.math.is_finite(grad_norm) & tf.math.is_finite(loss)
                # Lock-free (Hogwild!, Recht et al. 2011) as in the A3C paper: threads apply their updates
                # to the shared variables without a lock. A lock would serialise the apply ops of the
                # threads for no measurable gain in learning; the rare interleaved read-modify-write of
                # RMSProp statistics is the noise the paper accepts. Non-finite gradients are dropped
                # here, before any shared variable changes.
                iteration = tf.cond(finite,
                                    lambda: optimizer.apply(clipped, net.trainable_variables, learning_rate),
                                    lambda: tf.identity(optimizer.iterations))
                return dict(loss=loss, policy=parts["policy"], value=parts["value"], entropy=parts["entropy"],
                            advantage=parts["advantage"], grad_norm=grad_norm, applied=finite,
                            iteration=iteration)

        self.act = act
        self.train_step = tf.function(train_step, input_signature=train_signature, jit_compile=hp.jit_compile)

    def policy(self, greedy: bool = False):
        """A batch_agents.PolicyFn bound to this learner."""
        greedy_t = tf.constant(greedy)

        def call(obs, state, reset, seed):
            return self.act(obs, state, reset, seed, greedy_t)
        return call

    def train_on(self, rollout, learning_rate: float) -> dict:
        result = self.train_step(*rollout, np.float32(learning_rate))
        return {k: v.numpy() for k, v in result.items()}

    def checkpoint_objects(self) -> dict:
        return dict(model=self.net, optimizer=self.optimizer)


def make_learner(hp: HParams, num_actions: int, device: str | None = None) -> Learner:
    """The learner of hp's algorithm (today A3C) over `num_actions` actions, on `device` (default: the first
    GPU, else the CPU)."""
    return A3CLearner(hp, num_actions, device)
