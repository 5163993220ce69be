"""The learner: the shared policy-value network, its optimizer, and the tf.functions every thread calls.

The trainer's threads see a learner only through the `Learner` interface:
  policy(greedy, thread) -> PolicyFn   act on a batch of observations (the batch_agents.PolicyFn signature)
  refresh(thread)                      before each rollout: the thread's copy of the weights catches up
  train_on(rollout, learning_rate,     one update from learner thread `thread`'s Rollout, applied to the shared
           thread) -> dict             variables; scalar metrics: always "applied" (bool) and "loss"; A3C adds
                                       policy, value, entropy, ...
  histograms(rollout) -> dict          name -> weight and gradient values, for TensorBoard histograms
  dead_units(rollout) -> dict          ReLU layer -> share of its units that output 0 on all of the rollout
  graphs() -> dict                     name -> tf.Graph of each tf.function, for TensorBoard's graph view
  checkpoint_objects() -> dict         the trackables a checkpoint holds (weights, optimizer slots, ...)
  keeps_replay, replay_arrays(),       learners with a replay memory (ACER): it as named arrays for the
  load_replay_arrays(arrays) -> int    checkpoint store, and back on resume (transitions restored)
  net, action_spec, device, devices    the shared network, its ActionSpec, the device it lives on, all devices
                                       with a replica
A3CLearner implements it with a3c_math.a3c_loss. An ACER or V-trace learner implements the same interface
beside it and make_learner picks it; the trainer loop does not change.

Every tf.function has an input signature with free batch and time dimensions, so it is traced once, and is safe
to call from several threads at once; updates are applied lock-free (Hogwild), as in the A3C paper.
Owns: the shared variables, the optimizer statistics (shared, or one set per thread) and every TensorFlow op of
acting and learning.
Must not: step envs, count steps or episodes, or write files or logs.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Protocol

import numpy as np

from tf_setup import import_tensorflow

tf = import_tensorflow()

import a3c_math  # noqa: E402  (imports TensorFlow, which must come in quietly first)
import acer_math  # noqa: E402
import replay  # noqa: E402
from batch_agents import Rollout  # noqa: E402
from distributions import sde_noise  # noqa: E402
from errors import ConfigError  # noqa: E402
from hparams import HParams  # noqa: E402
from network import (NETWORKS, dead_unit_fractions, network_for, resolve_devices, resolve_kind,  # noqa: E402
                     resolve_precision)
from optimizers import SharedOptimizer  # noqa: E402
from reward_norm import ReturnNormalizer  # noqa: E402
from specs import ATARI_OBS, ActionSpec, ObsSpec, as_action_spec  # noqa: E402

# Continuous ACER: actions u_i ~ pi per state for the dueling critic's baseline mean_i A(s, u_i); more samples lower
# its variance at one more advantage-head row each.
SDN_SAMPLES = 5


class Learner(Protocol):
    net: object
    action_spec: ActionSpec
    device: str
    devices: list

    def policy(self, greedy: bool = False, thread: int = 0, t_max: int | None = None): ...

    def refresh(self, thread: int = 0): ...

    def train_on(self, rollout, learning_rate: float, thread: int = 0) -> dict: ...

    def histograms(self, rollout) -> dict: ...

    def dead_units(self, rollout) -> dict: ...

    def graphs(self) -> dict: ...

    def checkpoint_objects(self) -> dict: ...


def rollout_signature(net) -> list:
    """The tf.TensorSpecs of a batch_agents.Rollout for `net`'s observations, actions and state, time-major
    with free T and B."""
    tb = [None, None]
    return [tf.TensorSpec(tb + list(net.obs_spec.shape), net.obs_spec.dtype),  # obs
            tf.TensorSpec(tb + list(net.dist.action_shape), net.dist.action_dtype),  # actions
            tf.TensorSpec(tb, tf.float32),  # rewards (raw)
            tf.TensorSpec(tb, tf.bool),  # terminated
            tf.TensorSpec(tb, tf.bool),  # truncated
            tf.TensorSpec(tb, tf.bool),  # valid
            tf.TensorSpec(tb, tf.bool),  # resets: zero the recurrent state before step t
            tf.TensorSpec([None, net.state_size], tf.float32),  # initial_state
            tf.TensorSpec([None], tf.float32),  # bootstrap_value
            tf.TensorSpec(tb, tf.float32),  # behaviour_log_probs
            tf.TensorSpec(tb + [net.dist.params_size], tf.float32)]  # behaviour_params


class A3CLearner:
    """Owns the shared variables. `act` and the train steps are safe to call from several threads at once.

    With several devices (--devices), the shared weights and optimizer statistics live on the first; every
    device holds a replica (the first device's replica is the shared net itself). Thread i acts and computes
    its gradients with the replica of device i mod D, refreshed from the shared weights before each rollout
    (`refresh`, the paper's thread-local parameters theta'), and applies them to the shared weights."""

    Q_HEAD = False  # the network's value: a V head (A3C) or V = sum pi Q from a Q head (ACER)
    keeps_replay = False  # ACER: replay_arrays() / load_replay_arrays() carry its memories across a resume

    def __init__(self, hp: HParams, action: ActionSpec | int, device: str | None = None, obs: ObsSpec = ATARI_OBS):
        self.hp = hp
        self.action_spec = as_action_spec(action)
        self.reward_norm = ReturnNormalizer(hp.gamma) if hp.normalize_rewards else None
        if self.action_spec.is_discrete and hp.log_std_init != 0.0:
            raise ConfigError(f"--log-std-init {hp.log_std_init:g} is for continuous actions (a Gaussian policy); "
                              f"this env's actions are discrete: drop it")
        if self.action_spec.is_discrete and hp.std_head != "shared":
            raise ConfigError(f"--std-head {hp.std_head} is for continuous actions (a Gaussian policy); this env's "
                              f"actions are discrete: drop it")
        self.devices = [device] if device else check_devices(hp)
        self.device = self.devices[0]
        self.precision = resolve_precision(hp.precision, self.device)  # `auto` -> float32 or bfloat16, once
        self.replicas = [network_for(hp, self.action_spec, obs, d, self.precision, q_head=self.Q_HEAD)
                         for d in self.devices]
        self.net = self.replicas[0]
        self.syncs = [None] + [self._make_sync(replica, d) for replica, d in zip(self.replicas[1:], self.devices[1:])]
        # One set of statistics shared by all threads (the A3C paper), or one per thread (--per-thread-stats).
        self.optimizers = [
            SharedOptimizer(hp.optimizer, self.net.trainable_variables, decay=hp.rmsprop_decay,
                            rmsprop_init=hp.rmsprop_init, epsilon=hp.optimizer_epsilon, beta1=hp.adam_beta1,
                            beta2=hp.adam_beta2, device=self.device)
            for _ in range(hp.threads if hp.per_thread_stats else 1)]
        self.optimizer = self.optimizers[0]
        self.acts = [self._make_act(replica, d) for replica, d in zip(self.replicas, self.devices)]
        self.act = self.acts[0]
        steps = {}  # (optimizer, device) -> train step: threads that share both share one traced function
        self.thread_train_steps = []
        for i in range(hp.threads):
            key = (i % len(self.optimizers), i % len(self.devices))
            if key not in steps:
                steps[key] = self._make_train_step(self.optimizers[key[0]], key[1])
            self.thread_train_steps.append(steps[key])
        self.train_step = self.thread_train_steps[0]
        for sync in self.syncs[1:]:
            sync()

        @tf.function(input_signature=rollout_signature(self.net))
        def gradients(*rollout):
            with tf.device(self.device):
                return self._loss_and_gradients(self.net, *rollout)[2]
        self._gradients = gradients

        @tf.function(input_signature=[rollout_signature(self.net)[0]])
        def dead_units(obs):
            with tf.device(self.device):
                frames = tf.reshape(obs, tf.concat([[-1], tf.shape(obs)[2:]], 0))  # [T * B, *obs_shape]
                return dead_unit_fractions(self.net.relu_layers(frames))
        self._dead_units = dead_units
        self._split = None  # gradients / apply / update_obs_norm, built on first use
        self.wire_dtype = tf.as_dtype(hp.wire_dtype)  # gradients_on's output and apply_gradients' input
        self._assigns = {}  # (trainable only, dtypes) -> set_weights' traced assign

    def _make_act(self, net, device):
        def explore(out, seed, sde_period):
            if out.sde_features is None:
                return net.dist.sample(out.policy_params, seed)
            # gSDE: BatchAgents counts seed[1] up by one per act from 1, so steps 1..period share a noise matrix,
            # a rollout of t_max steps (its first act ran at the end of the one before) one matrix per env.
            block = tf.stack([seed[0], (seed[1] - 1) // sde_period])
            return net.dist.mode(out.policy_params) + sde_noise(out.sde_features, net.sde_log_std, block)

        @tf.function(input_signature=[tf.TensorSpec([None, *net.obs_spec.shape], net.obs_spec.dtype),
                                      tf.TensorSpec([None, net.state_size], tf.float32),
                                      tf.TensorSpec([None], tf.bool), tf.TensorSpec([2], tf.int32),
                                      tf.TensorSpec([], tf.bool), tf.TensorSpec([], tf.int32)])
        def act(obs, state, reset, seed, greedy, sde_period):
            with tf.device(device):
                state = tf.where(reset[:, None], tf.zeros_like(state), state)
                out = net(obs, state)
                action = tf.cond(greedy, lambda: net.dist.mode(out.policy_params),
                                 lambda: explore(out, seed, sde_period))
                # mu(a|s) for V-trace: what the acting weights thought of the action they chose
                return action, out.value, out.state, net.dist.log_prob(out.policy_params, action), out.policy_params
        return act

    def _make_sync(self, replica, device):
        @tf.function(input_signature=[])
        def sync():
            with tf.device(device):
                for shared, copy in zip(self.net.variables, replica.variables):
                    copy.assign(shared)
        return sync

    def _learning_rewards(self, rewards):
        """The rewards the loss sees: clipped to [-1, 1] with --clip-rewards, or normalised by the running return
        std with --normalize-rewards; then times --reward-scale."""
        if self.hp.clip_rewards:
            rewards = tf.clip_by_value(rewards, -1.0, 1.0)
        if self.reward_norm is not None:
            rewards = self.reward_norm.normalise(rewards)
        return rewards * self.hp.reward_scale

    def _fold_rewards(self, rollout, thread: int):
        """--normalize-rewards: the rollout's rewards into the running return statistics, before its update."""
        if self.reward_norm is not None:
            self.reward_norm.fold(rollout.rewards, rollout.terminated | rollout.truncated, rollout.valid, thread)

    def _loss_and_gradients(self, net, obs, actions, rewards, terminated, truncated, valid, resets, initial_state,
                            bootstrap_value, behaviour_log_probs, behaviour_params):
        hp = self.hp
        rewards = self._learning_rewards(rewards)
        with tf.GradientTape() as tape:
            # From the state the rollout started with, resetting where act did: truncated BPTT over T.
            out = net.unroll(obs, initial_state, resets)
            log_probs, entropies = net.dist.log_prob(out.policy_params, actions), net.dist.entropy(out.policy_params)
            if hp.off_policy_correction == "vtrace":
                # The weights differentiated here may be newer than those that acted: importance-weight by pi/mu.
                loss, parts = a3c_math.vtrace_loss(
                    log_probs, behaviour_log_probs, entropies, out.value, rewards, terminated, truncated, valid,
                    bootstrap_value, hp.gamma, hp.gae_lambda, hp.value_coef, hp.entropy_beta, hp.vtrace_rho_clip,
                    hp.vtrace_c_clip)
            else:
                loss, parts = a3c_math.a3c_loss(log_probs, entropies, out.value, rewards, terminated, truncated,
                                                valid, bootstrap_value, hp.gamma, hp.gae_lambda, hp.value_coef,
                                                hp.entropy_beta)
        return loss, parts, tape.gradient(loss, net.trainable_variables)

    def _metrics(self, loss, parts, grad_norm, finite) -> dict:
        return dict(loss=loss, grad_norm=grad_norm, applied=finite, **parts)

    def _make_train_step(self, optimizer, device_index: int):
        hp, shared = self.hp, self.net
        net, device = self.replicas[device_index], self.devices[device_index]

        def train_step(*rollout_and_learning_rate):
            """One A3C update from one thread's rollout. Returns a dict of scalar metrics."""
            *rollout, learning_rate = rollout_and_learning_rate
            with tf.device(device):
                loss, parts, grads = self._loss_and_gradients(net, *rollout)
                clipped, grad_norm = tf.clip_by_global_norm(grads, hp.max_grad_norm)
                finite = tf.math.is_finite(grad_norm) & tf.math.is_finite(loss)
            # Lock-free (Hogwild!, Recht et al. 2011) as in the A3C paper: threads apply their updates to the
            # shared variables without a lock. A lock would serialise the apply ops of the threads for no
            # measurable gain in learning; the rare interleaved read-modify-write of RMSProp statistics is the
            # noise the paper accepts. Non-finite gradients are dropped here, before any shared variable changes.
            with tf.device(self.device):
                iteration = tf.cond(finite,
                                    lambda: optimizer.apply(clipped, shared.trainable_variables, learning_rate),
                                    lambda: tf.identity(optimizer.iterations))
                named = Rollout(*rollout)
                shared.update_obs_norm(named.obs, named.valid)  # a no-op without --normalize-obs
            return dict(self._metrics(loss, parts, grad_norm, finite), iteration=iteration)
        signature = rollout_signature(net) + [tf.TensorSpec([], tf.float32)]  # + the learning rate
        return tf.function(train_step, input_signature=signature, jit_compile=hp.jit_compile)

    def _make_split_steps(self):
        """The train step cut in two for executors whose gradients are computed far from the shared weights
        (--executor ray): a worker's `gradients` on its copy, the parameter server's `apply`."""
        hp, net = self.hp, self.net

        @tf.function(input_signature=rollout_signature(net))
        def gradients(*rollout):
            with tf.device(self.device):
                loss, parts, grads = self._loss_and_gradients(net, *rollout)
                clipped, grad_norm = tf.clip_by_global_norm(grads, hp.max_grad_norm)
                finite = tf.math.is_finite(grad_norm) & tf.math.is_finite(loss)
                return [tf.cast(g, self.wire_dtype) for g in clipped], self._metrics(loss, parts, grad_norm, finite)

        @tf.function(input_signature=[[tf.TensorSpec(v.shape, self.wire_dtype) for v in net.trainable_variables],
                                      tf.TensorSpec([], tf.float32)])
        def apply(grads, learning_rate):
            with tf.device(self.device):
                grads = [tf.cast(g, v.dtype) for g, v in zip(grads, net.trainable_variables)]
                return self.optimizer.apply(grads, net.trainable_variables, learning_rate)

        @tf.function(input_signature=[tf.TensorSpec([None, None, *net.obs_spec.shape], net.obs_spec.dtype),
                                      tf.TensorSpec([None, None], tf.bool)])
        def update_obs_norm(obs, valid):
            with tf.device(self.device):
                net.update_obs_norm(obs, valid)
                return tf.constant(True)
        return gradients, apply, update_obs_norm

    def policy(self, greedy: bool = False, thread: int = 0, t_max: int | None = None):
        """A batch_agents.PolicyFn for learner thread `thread` (its device's replica). gSDE holds its noise for
        --sde-sample-steps, else for the rollout length `t_max` (default: that thread's)."""
        greedy_t = tf.constant(greedy)
        sde_period = tf.constant(self.hp.sde_sample_steps or t_max or self.hp.t_max_of(thread), tf.int32)
        act = self.acts[thread % len(self.acts)]

        def call(obs, state, reset, seed):
            return act(obs, state, reset, seed, greedy_t, sde_period)
        return call

    def refresh(self, thread: int = 0):
        """Copy the shared weights into thread `thread`'s replica (nothing to do on the first device)."""
        sync = self.syncs[thread % len(self.syncs)]
        if sync is not None:
            sync()

    def _inputs(self, rollout) -> Rollout:
        """The rollout with the behaviour fields a policy without them left None filled (with zeros: unread)."""
        if rollout.behaviour_log_probs is None:
            if self.hp.off_policy_correction == "vtrace":
                raise ValueError("V-trace needs the rollout's behaviour_log_probs; the policy gave none")
            rollout = rollout._replace(behaviour_log_probs=np.zeros(rollout.rewards.shape, np.float32))
        if rollout.behaviour_params is None:
            rollout = rollout._replace(behaviour_params=np.zeros(rollout.rewards.shape + (self.net.dist.params_size,),
                                                                 np.float32))
        return rollout

    def train_on(self, rollout, learning_rate: float, thread: int = 0) -> dict:
        """Update the shared weights from learner thread `thread`'s rollout (computed on its device's replica,
        with its own optimizer statistics under --per-thread-stats)."""
        self._fold_rewards(rollout, thread)
        result = self.thread_train_steps[thread % len(self.thread_train_steps)](*self._inputs(rollout),
                                                                                 np.float32(learning_rate))
        return {k: v.numpy() for k, v in result.items()}

    # -- for executors that compute gradients in one process and apply them in another -------------------
    def gradients_on(self, rollout) -> tuple[list, dict]:
        """(the clipped gradient of this net's weights on `rollout` as NumPy arrays, scalar metrics); nothing
        changes. metrics["applied"] is False when the loss or gradient is not finite."""
        grads, metrics = self._split_steps()[0](*self._inputs(rollout))
        return [g.numpy() for g in grads], {k: v.numpy() for k, v in metrics.items()}

    def apply_gradients(self, grads: list, learning_rate: float) -> int:
        """Apply gradients from gradients_on (of a copy of this net) to the weights; the optimizer's update
        count after it."""
        return int(self._split_steps()[1](grads, np.float32(learning_rate)))

    def update_obs_norm(self, obs, valid):
        """Fold a rollout's observations into the running normalisation (a no-op without --normalize-obs)."""
        if self.net.normalize_obs:
            self._split_steps()[2](obs, valid)

    def _split_steps(self):
        if self._split is None:
            self._split = self._make_split_steps()
        return self._split

    def get_weights(self) -> list:
        """Every variable of the network, incl. non-trainable statistics (observation normalisation)."""
        return [v.numpy() for v in self.net.variables]

    def wire_weights(self) -> list:
        """get_weights() as --wire-dtype sends them: the trainable weights cast (bfloat16 / float16 halve a pull's
        bytes), the observation statistics kept in float32 (a count does not fit 8 bits of mantissa)."""
        if self.wire_dtype == tf.float32:
            return self.get_weights()
        return [tf.cast(v, self.wire_dtype).numpy() if v.trainable else v.numpy() for v in self.net.variables]

    def set_weights(self, weights: list, trainable_only: bool = False):
        """Assign every variable (get_weights' order), or only the trainable ones (--ps-shards), in one traced
        call (cast to each variable's dtype, so wire_weights() arrays go in as they are)."""
        variables = self.net.trainable_variables if trainable_only else self.net.variables
        if len(weights) != len(variables):
            raise ValueError(f"{len(weights)} arrays for {len(variables)} variables")
        weights = [np.asarray(w) for w in weights]
        key = (trainable_only, tuple(w.dtype.name for w in weights))
        assign = self._assigns.get(key)
        if assign is None:
            assign = self._assigns[key] = self._make_assign(variables, [w.dtype for w in weights])
        assign(weights)
        for sync in self.syncs[1:]:
            sync()

    @staticmethod
    def _make_assign(variables, dtypes):
        @tf.function(input_signature=[[tf.TensorSpec(v.shape, tf.as_dtype(d)) for v, d in zip(variables, dtypes)]])
        def assign(values):
            for v, x in zip(variables, values):
                v.assign(tf.cast(x, v.dtype))
            return tf.constant(True)
        return assign

    def histograms(self, rollout) -> dict:
        """name -> values of every weight and of its (unclipped) gradient on `rollout`, for TensorBoard."""
        grads = self._gradients(*self._inputs(rollout))
        out = {}
        for v, g in zip(self.net.trainable_variables, grads):
            name = getattr(v, "path", v.name)
            out[f"weights/{name}"] = v.numpy()
            out[f"gradients/{name}"] = g.numpy()
        return out

    def dead_units(self, rollout) -> dict:
        """{ReLU layer: share of its units that output 0 on every observation of `rollout`}; {} for the MLP."""
        return {layer: float(share) for layer, share in self._dead_units(rollout.obs).items()}

    def graphs(self) -> dict:
        return {"act": self.act.get_concrete_function().graph,
                "train_step": self.train_step.get_concrete_function().graph}

    def checkpoint_objects(self) -> dict:
        # Thread 0's statistics keep the name `optimizer`, so shared-statistics checkpoints read as before.
        # Replicas are copies of `model`: not saved.
        return dict(model=self.net, optimizer=self.optimizer,
                    **{f"optimizer_thread{i}": o for i, o in enumerate(self.optimizers[1:], start=1)},
                    **({"reward_norm": self.reward_norm.moments} if self.reward_norm is not None else {}))


def check_devices(hp: HParams) -> list[str]:
    """hp.devices as TF device names; ConfigError if one does not exist."""
    try:
        return resolve_devices(hp.devices)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def resolve_network(hp: HParams, obs: ObsSpec) -> HParams:
    """hp with --network resolved for observations `obs` (`auto`: a3c for frames, mlp for flat vectors);
    ConfigError if the chosen network cannot read them."""
    try:
        return dataclasses.replace(hp, network=resolve_kind(hp.network, obs))
    except ValueError as e:
        raise ConfigError(f"{hp.env_id}: {e}") from None


def make_learner(hp: HParams, action: ActionSpec | int, device: str | None = None,
                 obs: ObsSpec = ATARI_OBS) -> Learner:
    """The learner of hp's algorithm (A3C or ACER) from observations `obs` to actions `action` (an int A = A
    discrete actions), on `device` (default: the first GPU, else the CPU)."""
    return (ACERLearner if hp.algorithm == "acer" else A3CLearner)(hp, action, device, obs)


def available_memory_bytes() -> int | None:
    """MemAvailable of /proc/meminfo (None where there is none)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class ACERLearner(A3CLearner):
    """ACER (Wang et al. 2016, arXiv 1611.01224) behind the same interface (--algorithm acer), for discrete actions
    (a Q head) and for Box actions (a diagonal Gaussian with the stochastic dueling critic of the paper's Section 5).

    `train_on` from learner thread i: one on-policy update from its rollout (mu = the acting policy, recorded by
    `act` as the rollout's behaviour_params), the rollout into thread i's replay memory (replay.py), then
    Poisson(--replay-ratio) off-policy updates from [T, N] batches sampled there (N = --replay-batch-envs, or B)
    once it holds --replay-start transitions, all in one graph call (`_replay_updates`). Every update:
    acer_math.acer_loss (Retrace targets, truncated importance weights with bias correction, the trust region
    against the average network), the clipped gradient applied to the shared weights, then the average network
    moved towards them (Polyak, --acer-avg-decay). The average network lives on the shared weights' device and is
    saved in checkpoints; the replay memories are handed to the checkpoint store as arrays (replay_arrays,
    load_replay_arrays) when --save-replay is on."""
    Q_HEAD = True
    keeps_replay = True

    def __init__(self, hp: HParams, action: ActionSpec | int, device: str | None = None, obs: ObsSpec = ATARI_OBS):
        action = as_action_spec(action)
        if not action.is_discrete and hp.std_head == "sde":
            raise ConfigError("--algorithm acer needs --std-head shared or state for continuous actions: gSDE holds "
                              "its noise for several steps, so a step's probability under it is not the Gaussian's "
                              "that replay's importance weights need")
        if NETWORKS.get(hp.network, (None, 0))[1]:
            raise ConfigError(f"--algorithm acer needs a feed-forward --network (not {hp.network}); use a3c or nature")
        super().__init__(hp, action, device, obs)
        if len(self.devices) > 1:
            raise ConfigError("--algorithm acer runs on one device; give --devices one device")
        dist = self.net.dist
        per_step = replay.bytes_per_step(obs.shape, obs.dtype, dist.params_size, self.net.state_size,
                                         min(hp.t_max_of(i) for i in range(hp.threads)), dist.action_shape)
        total = hp.threads * hp.replay_capacity * per_step
        free = available_memory_bytes()
        if free is not None and total > free:
            raise ConfigError(f"--replay-capacity {hp.replay_capacity} x {hp.threads} threads x {per_step:,.0f} bytes "
                              f"= {total / 2**30:.2f} GiB of replay, but {free / 2**30:.2f} GiB of memory is "
                              f"available; lower --replay-capacity")
        self.replay_bytes = total  # the memories' size when full, uncompressed
        self.startup_lines = [f"replay: {hp.threads} threads x {hp.replay_capacity:,} transitions x {per_step:,.0f} "
                              f"bytes = {total / 2**30:.2f} GiB"
                              + (f" (of {free / 2**30:.1f} GiB available)" if free is not None else "")]
        self.avg_net = network_for(hp, self.action_spec, obs, self.device, self.precision, q_head=True)
        for avg, shared in zip(self.avg_net.variables, self.net.variables):
            avg.assign(shared)
        self.memories = [None] * hp.threads
        self.rngs = [np.random.default_rng([hp.seed, 7, i]) for i in range(hp.threads)]
        if not action.is_discrete:  # the actions continuous ACER draws from the current policy inside its update
            with tf.device(self.device):
                self.sdn_rng = tf.random.Generator.from_seed(hp.seed * 1_000_003 + 17)
        self.acer_updates = {}  # (replayed, optimizer index) -> tf.function

    def _acer_step(self, optimizer_index: int, replayed: bool, obs, actions, rewards, terminated, truncated, valid,
                   resets, initial_state, behaviour_probs, bootstrap_value, learning_rate) -> dict:
        """One ACER update, as graph ops (called inside a tf.function). Replayed batches hold T + 1 observations
        (s_T for the bootstrap, valued with the current weights); on-policy rollouts hold T and bring V(s_T) from
        acting."""
        hp, net, avg_net, optimizer = self.hp, self.net, self.avg_net, self.optimizers[optimizer_index]
        rewards = self._learning_rewards(rewards)
        T = tf.shape(actions)[0]
        with tf.device(self.device):
            # One frame preparation for both networks: it holds no weight, and once per network it was ~half
            # of the update's op time (docs/throughput.md)
            frames_in = net.frames_input(tf.reshape(obs, tf.concat([[-1], tf.shape(obs)[2:]], 0)))
            with tf.GradientTape() as tape:
                out = net.unroll(obs, initial_state, resets, frames_in)
                bootstrap = tf.stop_gradient(out.value[-1]) if replayed else bootstrap_value
                if hp.acer_trust_region:
                    avg_params = avg_net.unroll(obs[:T], initial_state, resets[:T], frames_in).policy_params
                else:  # the average policy only shapes the trust region: without it, its forward is skipped
                    # (+9% for a Pong update, docs/throughput.md) and trust_region_kl reads 0
                    avg_params = out.policy_params[:T]
                if self.action_spec.is_discrete:
                    loss, parts = acer_math.acer_loss(
                        tf.nn.softmax(out.policy_params[:T]), tf.nn.softmax(avg_params), behaviour_probs,
                        out.q_values[:T], actions, rewards, terminated, truncated, valid, bootstrap, hp.gamma,
                        hp.acer_c, hp.acer_delta, hp.value_coef, hp.entropy_beta, hp.acer_trust_region)
                else:
                    loss, parts = self._continuous_loss(out, avg_params, T, actions, rewards, terminated, truncated,
                                                        valid, behaviour_probs, bootstrap)
            grads = tape.gradient(loss, net.trainable_variables)
            clipped, grad_norm = tf.clip_by_global_norm(grads, hp.max_grad_norm)
            finite = tf.math.is_finite(grad_norm) & tf.math.is_finite(loss)
            if not replayed:  # each step's observation is folded into --normalize-obs's statistics once, here
                net.update_obs_norm(obs, valid)

            def apply_and_average():
                optimizer.apply(clipped, net.trainable_variables, learning_rate)
                for avg, shared in zip(avg_net.variables, net.variables):
                    # Weights are averaged; statistics (--normalize-obs) are copied: the average policy reads the
                    # observations as the learner does
                    avg.assign(hp.acer_avg_decay * avg + (1.0 - hp.acer_avg_decay) * shared if avg.trainable
                               else shared)
                return tf.constant(True)
            tf.cond(finite, apply_and_average, lambda: tf.constant(False))
        return dict(loss=loss, grad_norm=grad_norm, applied=finite, **parts)

    def _continuous_loss(self, out, avg_params, T, actions, rewards, terminated, truncated, valid, behaviour_params,
                         bootstrap):
        """acer_math.continuous_acer_loss on the unroll `out`: a'_t and SDN_SAMPLES actions u_i drawn from the
        current policy at every step (constants), the advantage head at a_t, a'_t and the u_i, the SDN estimates."""
        hp, net = self.hp, self.net
        params, values = out.policy_params[:T], out.value[:T]
        mean, log_std = tf.split(tf.stop_gradient(params), 2, axis=-1)  # [T, B, D] each
        shape = tf.concat([tf.shape(mean)[:2], [1 + SDN_SAMPLES], tf.shape(mean)[2:]], 0)
        draws = mean[:, :, None] + tf.exp(log_std)[:, :, None] * self.sdn_rng.normal(shape)  # a'_t, then the u_i
        advantages = net.advantage(out.critic_features[:T], tf.concat([actions[:, :, None], draws], axis=2))
        q = acer_math.sdn_q_values(values, advantages)
        return acer_math.continuous_acer_loss(
            params, avg_params, behaviour_params, actions, draws[:, :, 0], values, q[..., 0], q[..., 1], rewards,
            terminated, truncated, valid, bootstrap, hp.gamma, hp.acer_c, hp.acer_delta, hp.value_coef,
            hp.entropy_beta, hp.acer_trust_region)

    def _batch_signature(self, leading: list) -> list:
        """Input signature of an update's batch fields (obs ... behaviour_probs), each with `leading` axes before
        its own: [None] * 2 for one [T, B] batch, one more for a stack of them."""
        net, lead = self.net, list(leading)
        return [tf.TensorSpec(lead + list(net.obs_spec.shape), net.obs_spec.dtype),
                tf.TensorSpec(lead + list(net.dist.action_shape), net.dist.action_dtype),
                tf.TensorSpec(lead, tf.float32), tf.TensorSpec(lead, tf.bool), tf.TensorSpec(lead, tf.bool),
                tf.TensorSpec(lead, tf.bool), tf.TensorSpec(lead, tf.bool),
                tf.TensorSpec(lead[:-2] + [None, net.state_size], tf.float32),
                tf.TensorSpec(lead + [net.dist.params_size], tf.float32)]

    def _acer_update(self, replayed: bool, optimizer_index: int):
        """tf.function: one update from one [T, B] batch (the on-policy rollout, or one replayed batch)."""
        key = (replayed, optimizer_index)
        if key not in self.acer_updates:
            def update(*batch_bootstrap_lr):
                return self._acer_step(optimizer_index, replayed, *batch_bootstrap_lr)
            signature = self._batch_signature([None, None]) + [tf.TensorSpec([None], tf.float32),
                                                                tf.TensorSpec([], tf.float32)]
            self.acer_updates[key] = tf.function(update, input_signature=signature, jit_compile=self.hp.jit_compile)
        return self.acer_updates[key]

    REPLAY_METRICS = ("rho", "rho_truncated", "trust_region_kl", "trust_region_scale")

    def _replay_updates(self, optimizer_index: int):
        """tf.function: the replayed updates of one rollout, in one call. Takes a stack of n batches (each field
        `[n, T, B, ...]`, as ReplayMemory.sample_many) and applies them one after another, as n calls of
        `_acer_update(True, ...)` would; returns the mean of REPLAY_METRICS over them. One call instead of n
        saves the Python call and its tensor conversions per update (~0.6 ms, ~40% of a LunarLander update)."""
        key = ("loop", optimizer_index)
        if key not in self.acer_updates:
            def updates(obs, actions, rewards, terminated, truncated, valid, resets, initial_state, behaviour_probs,
                        learning_rate):
                n = tf.shape(actions)[0]
                no_bootstrap = tf.zeros(tf.shape(actions)[2:3], tf.float32)  # replayed batches value s_T themselves

                def body(i, sums):
                    out = self._acer_step(optimizer_index, True, obs[i], actions[i], rewards[i], terminated[i],
                                          truncated[i], valid[i], resets[i], initial_state[i], behaviour_probs[i],
                                          no_bootstrap, learning_rate)
                    return i + 1, tuple(total + tf.cast(out[k], tf.float32)
                                        for total, k in zip(sums, self.REPLAY_METRICS))
                zeros = tuple(tf.constant(0.0) for _ in self.REPLAY_METRICS)
                # One update at a time: each reads the weights the previous one wrote
                _, sums = tf.while_loop(lambda i, _: i < n, body, (tf.constant(0), zeros), parallel_iterations=1)
                count = tf.cast(tf.maximum(n, 1), tf.float32)
                return {k: total / count for k, total in zip(self.REPLAY_METRICS, sums)}
            signature = self._batch_signature([None, None, None]) + [tf.TensorSpec([], tf.float32)]
            self.acer_updates[key] = tf.function(updates, input_signature=signature, jit_compile=self.hp.jit_compile)
        return self.acer_updates[key]

    def train_on(self, rollout, learning_rate: float, thread: int = 0) -> dict:
        """One on-policy update, the rollout into the thread's memory, Poisson(replay ratio) off-policy updates.
        The metrics are the on-policy update's, plus acer's: off_policy_updates, replay_size, the off-policy
        updates' mean rho / rho_truncated / trust_region_kl / trust_region_scale, and the seconds of each kind."""
        hp = self.hp
        if rollout.behaviour_params is None:
            raise ValueError("ACER needs the rollout's behaviour_params (mu); the policy gave none")
        lr = np.float32(learning_rate)
        optimizer_index = thread % len(self.optimizers)
        self._fold_rewards(rollout, thread)
        mu = np.asarray(rollout.behaviour_params, np.float32)  # a Gaussian's [mean, log_std] as they are
        if self.action_spec.is_discrete:  # logits -> probabilities
            mu = np.exp(mu - mu.max(-1, keepdims=True))
            mu = (mu / mu.sum(-1, keepdims=True)).astype(np.float32)
        t0 = time.perf_counter()
        result = self._acer_update(False, optimizer_index)(
            rollout.obs, rollout.actions, rollout.rewards, rollout.terminated, rollout.truncated, rollout.valid,
            rollout.resets, rollout.initial_state, mu, rollout.bootstrap_value, lr)
        metrics = {k: v.numpy() for k, v in result.items()}
        t1 = time.perf_counter()
        T, B = rollout.actions.shape[:2]
        memory = self._memory(thread, B, T)
        memory.add(rollout.obs, rollout.actions, rollout.rewards, rollout.terminated, rollout.truncated,
                   rollout.valid, rollout.resets, rollout.initial_state, mu)
        rng = self.rngs[thread]
        n = int(rng.poisson(hp.replay_ratio)) if len(memory) >= hp.replay_start and memory.sampleable() else 0
        if n:
            replayed = self._replay_updates(optimizer_index)(*memory.sample_many(rng, n, hp.replay_batch_envs or B),
                                                              lr)
            metrics.update({k: float(v.numpy()) for k, v in replayed.items()})
        else:
            metrics.update({k: float(metrics[k]) for k in self.REPLAY_METRICS})
        metrics.update(off_policy_updates=n, replay_size=len(memory), on_policy_s=t1 - t0,
                       replay_s=time.perf_counter() - t1)
        return metrics

    def _new_memory(self, num_envs: int, t_max: int) -> replay.ReplayMemory:
        dist = self.net.dist
        return replay.ReplayMemory(self.hp.replay_capacity // num_envs, num_envs, t_max, self.net.obs_spec.shape,
                                   self.net.obs_spec.dtype, dist.params_size, self.net.state_size,
                                   dist.action_shape, dist.action_dtype.as_numpy_dtype)

    def _memory(self, thread: int, num_envs: int, t_max: int) -> replay.ReplayMemory:
        """Thread `thread`'s replay memory, made on first use."""
        if self.memories[thread] is None:
            self.memories[thread] = self._new_memory(num_envs, t_max)
        return self.memories[thread]

    def replay_arrays(self) -> dict:
        """Every thread's replay memory as named arrays ("thread0/frames", ...): views, to be written out before
        the threads go on."""
        return {f"thread{i}/{name}": a for i, memory in enumerate(self.memories) if memory is not None
                for name, a in memory.arrays().items()}

    def load_replay_arrays(self, arrays: dict) -> int:
        """Refill the threads' memories from replay_arrays() of an earlier session of this run; returns the
        transitions restored. ValueError (and the memories left as they were) if they do not fit this run's layout."""
        memories = [None] * self.hp.threads
        for i in range(self.hp.threads):
            mine = {name.split("/", 1)[1]: a for name, a in arrays.items() if name.startswith(f"thread{i}/")}
            if mine:
                memories[i] = self._new_memory(self.hp.envs_per_thread, self.hp.t_max_of(i))
                try:
                    memories[i].load_arrays(mine)
                except (ValueError, KeyError) as e:
                    raise ValueError(f"thread {i}'s memory: {e}") from None
        if arrays and all(m is None for m in memories):
            raise ValueError(f"it holds no memory of this run's {self.hp.threads} threads")
        self.memories = memories
        return sum(len(m) for m in memories if m is not None)

    def graphs(self) -> dict:
        return {"act": self.act.get_concrete_function().graph,
                "acer_update": self._acer_update(False, 0).get_concrete_function().graph}

    def checkpoint_objects(self) -> dict:
        return dict(super().checkpoint_objects(), avg_model=self.avg_net)
