"""Batched-agent A3C trainer.

    python a3c.py                       # defaults from hparams.py (Pong)
    python a3c.py --preset breakout --threads 2 --learning-rate 1e-3
    python a3c.py --logdir runs/pong    # again: resumes from the latest checkpoint there

A few Python threads each own a vector env of `envs_per_thread` Atari games. They share ONE policy-value
network (tf.function, on the GPU when there is one): each thread collects a `[t_max, B]` rollout with the
shared policy, computes n-step returns / GAE (a3c_math.py), takes the clipped gradient of its own batch and
applies it to the shared variables asynchronously.
"""
from __future__ import annotations

import collections
import csv
import dataclasses
import json
import os
import signal
import sys
import threading
import time
from typing import NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep the C++ start-up chatter off the console

import numpy as np  # noqa: E402

import hparams as hparams_lib  # noqa: E402
from hparams import ConfigError, HParams  # noqa: E402

CHECKPOINT_SUBDIR = "checkpoints"
CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"
MAX_CONSECUTIVE_NONFINITE = 10  # skipped updates in a row before we call the run diverged
RETURN_WINDOW = 100  # episodes in the "mean recent return" (A3G / DQN protocol)


class RunError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


# ----------------------------------------------------------------------------------------------------------
# TensorFlow setup (must run before any op executes)
# ----------------------------------------------------------------------------------------------------------
def configure_tensorflow(hp: HParams):
    import tensorflow as tf
    try:
        tf.config.threading.set_intra_op_parallelism_threads(hp.resolved_intra_op_threads())
        tf.config.threading.set_inter_op_parallelism_threads(hp.resolved_inter_op_threads())
    except RuntimeError:
        pass  # already initialised in this process (tests); the first setting stays
    tf.random.set_seed(hp.seed)
    if hp.deterministic_ops:
        tf.config.experimental.enable_op_determinism()
    return tf


# ----------------------------------------------------------------------------------------------------------
# The learner: shared network + optimizer + the two tf.functions every thread calls
# ----------------------------------------------------------------------------------------------------------
class Learner:
    """Owns the shared variables. `act` and `train_step` are safe to call from several threads at once."""

    def __init__(self, hp: HParams, num_actions: int, device: str | None = None):
        import tensorflow as tf

        import a3c_math
        from network import build_network, compute_device
        from optimizers import SharedOptimizer

        self.hp = hp
        self.num_actions = num_actions
        self.device = device or compute_device()
        self.net = build_network(num_actions, hp.network, self.device)
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
        import tensorflow as tf
        greedy_t = tf.constant(greedy)

        def call(obs, state, reset, seed):
            return self.act(obs, state, reset, seed, greedy_t)
        return call

    def train_on(self, rollout, learning_rate: float) -> dict:
        result = self.train_step(*rollout, np.float32(learning_rate))
        return {k: v.numpy() for k, v in result.items()}


# ----------------------------------------------------------------------------------------------------------
# Run state and checkpoints
# ----------------------------------------------------------------------------------------------------------
class Counters:
    """Exact global counters: every thread updates them under one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.env_steps = 0
        self.episodes = 0
        self.updates = 0
        self.skipped_updates = 0
        self.wall_time_s = 0.0  # training wall time of previous sessions of this run


def checkpoint_objects(learner: Learner, state_vars: dict):
    import tensorflow as tf
    return tf.train.Checkpoint(model=learner.net, optimizer=learner.optimizer, **state_vars)


def read_config(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise RunError(f"no {CONFIG_FILE} at {path}: this is not an a3c-tf run or checkpoint directory")
    except (OSError, ValueError) as e:
        raise RunError(f"cannot read {path}: {e}; restore it from a backup or use another checkpoint")


def check_compatible(saved: dict, hp: HParams, where: str):
    for name in hparams_lib.MODEL_FIELDS:
        if name in saved and saved[name] != getattr(hp, name):
            flag = "--" + name.replace("_", "-")
            raise RunError(f"checkpoint in {where} was trained with {name}={saved[name]!r} but this run has "
                           f"{name}={getattr(hp, name)!r}; pass {flag} {saved[name]} or use a new --logdir")


def restore(checkpoint, path: str, where: str):
    """Restore and insist that every variable of ours was found in the file."""
    import tensorflow as tf
    try:
        status = checkpoint.restore(path)
        status.assert_existing_objects_matched()
    except (tf.errors.OpError, AssertionError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RunError(f"checkpoint {path} in {where} cannot be loaded ({first[:160]}); "
                       f"it is corrupt or from an incompatible network") from None
    return status


class LogdirLock:
    """Refuses a second trainer on the same run directory (flock; released when the process dies)."""

    def __init__(self, logdir: str):
        import fcntl
        self.path = os.path.join(logdir, LOCK_FILE)
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.close()
            raise RunError(f"{logdir} is in use by another a3c.py process; stop it or choose another --logdir")
        self.file.seek(0)
        self.file.truncate()
        self.file.write(str(os.getpid()))
        self.file.flush()

    def release(self):
        self.file.close()


def prepare_logdir(logdir: str):
    try:
        os.makedirs(logdir, exist_ok=True)
        probe = os.path.join(logdir, ".write_test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise RunError(f"cannot write to --logdir {logdir} ({e.strerror}); choose a writable directory")


def write_json_atomic(path: str, payload: dict):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------
class Telemetry(NamedTuple):
    thread: int
    metrics: dict
    env_s: float
    inference_s: float
    train_s: float
    total_s: float
    policy_lag: int


def learning_rate_at(hp: HParams, env_steps: int) -> float:
    if hp.lr_schedule == "linear":
        return hp.learning_rate * max(0.0, 1.0 - env_steps / hp.total_env_steps)
    return hp.learning_rate


class Trainer:
    def __init__(self, hp: HParams, env_factory=None, out=sys.stdout):
        self.hp = hp
        self.out = out
        self.env_factory = env_factory  # (thread_index, num_envs) -> vector env; default AtariVectorEnv
        self.stop_event = threading.Event()
        self.errors: list[str] = []
        self.counters = Counters()
        self.telemetry: collections.deque = collections.deque()
        self.recent_returns: collections.deque = collections.deque(maxlen=RETURN_WINDOW)
        self.recent_lengths: collections.deque = collections.deque(maxlen=RETURN_WINDOW)
        self.pending_episodes: list = []  # (return, length) since the last log row
        self.signal_received = None

    def log(self, msg: str):
        print(msg, file=self.out, flush=True)

    # -- setup ------------------------------------------------------------------------------------------
    def _make_env(self, index: int):
        from batch_agents import make_vector_env
        if self.env_factory is not None:
            return self.env_factory(index, self.hp.envs_per_thread)
        return make_vector_env(self.hp, self.hp.envs_per_thread)

    def setup(self):
        from batch_agents import BatchAgents, check_env_id
        hp = self.hp
        if self.env_factory is None:
            check_env_id(hp.env_id)
        prepare_logdir(hp.logdir)
        self.lock = LogdirLock(hp.logdir)
        tf = configure_tensorflow(hp)
        self.ckpt_dir = os.path.join(hp.logdir, CHECKPOINT_SUBDIR)
        latest = tf.train.latest_checkpoint(self.ckpt_dir) if os.path.isdir(self.ckpt_dir) else None
        if latest:
            check_compatible(read_config(os.path.join(hp.logdir, CONFIG_FILE)), hp, hp.logdir)

        self.agents = [BatchAgents(self._make_env(i), seed=hp.seed + i * hp.envs_per_thread,
                                   episodic_life=hp.episodic_life) for i in range(hp.threads)]
        num_actions = int(self.agents[0].env.single_action_space.n)
        self.learner = Learner(hp, num_actions)
        self.state_vars = dict(
            env_steps=tf.Variable(0, dtype=tf.int64, trainable=False),
            episodes=tf.Variable(0, dtype=tf.int64, trainable=False),
            updates=tf.Variable(0, dtype=tf.int64, trainable=False),
            wall_time_s=tf.Variable(0.0, dtype=tf.float64, trainable=False))
        self.checkpoint = checkpoint_objects(self.learner, self.state_vars)
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.ckpt_dir, max_to_keep=hp.checkpoints_kept)
        if latest:
            restore(self.checkpoint, latest, hp.logdir)
            c = self.counters
            c.env_steps = int(self.state_vars["env_steps"].numpy())
            c.episodes = int(self.state_vars["episodes"].numpy())
            c.updates = int(self.state_vars["updates"].numpy())
            c.wall_time_s = float(self.state_vars["wall_time_s"].numpy())
            self.log(f"resuming from step {c.env_steps} ({latest})")
        config = hp.to_dict()
        config["num_actions"] = num_actions
        write_json_atomic(os.path.join(hp.logdir, CONFIG_FILE), config)
        self.log("config:\n" + json.dumps(config, indent=2, sort_keys=True))
        self.log(f"network on {self.learner.device}; {hp.threads} threads x {hp.envs_per_thread} envs, "
                 f"{hp.resolved_env_threads()} emulator threads per env, TF intra/inter-op "
                 f"{hp.resolved_intra_op_threads()}/{hp.resolved_inter_op_threads()}")
        # Trace both functions once here, before threads race to trace them.
        agent = self.agents[0]
        agent.pending = agent.act(self.learner.policy())

    def save(self):
        """Checkpoint weights, optimizer slots and counters; config.json sits beside the checkpoints."""
        c = self.counters
        with c.lock:
            self.state_vars["env_steps"].assign(c.env_steps)
            self.state_vars["episodes"].assign(c.episodes)
            self.state_vars["updates"].assign(c.updates)
            self.state_vars["wall_time_s"].assign(c.wall_time_s + time.time() - self.session_start)
        path = self.manager.save(checkpoint_number=c.env_steps)
        write_json_atomic(os.path.join(self.ckpt_dir, CONFIG_FILE),
                          json.load(open(os.path.join(self.hp.logdir, CONFIG_FILE))))
        return path

    # -- the learner threads ---------------------------------------------------------------------------
    def worker(self, index: int):
        hp, c, agent = self.hp, self.counters, self.agents[index]
        policy = self.learner.policy()
        consecutive_nonfinite = 0
        try:
            while not self.stop_event.is_set():
                with c.lock:
                    if c.env_steps >= hp.total_env_steps:
                        break
                    updates_at_start = c.updates
                    lr = learning_rate_at(hp, c.env_steps)
                t0 = time.perf_counter()
                agent.timers.update(env=0.0, inference=0.0)
                rollout, episodes = agent.collect(policy, hp.t_max)
                t1 = time.perf_counter()
                metrics = self.learner.train_on(rollout, lr)
                t2 = time.perf_counter()
                consecutive_nonfinite = 0 if metrics["applied"] else consecutive_nonfinite + 1
                with c.lock:
                    c.env_steps += rollout.actions.size
                    c.episodes += len(episodes.returns)
                    if metrics["applied"]:
                        c.updates += 1
                    else:
                        c.skipped_updates += 1
                    lag = c.updates - updates_at_start - 1
                    self.pending_episodes.extend(zip(episodes.returns, episodes.lengths))
                self.telemetry.append(Telemetry(index, metrics, agent.timers["env"], agent.timers["inference"],
                                                t2 - t1, t2 - t0, max(lag, 0)))
                if consecutive_nonfinite >= MAX_CONSECUTIVE_NONFINITE:
                    raise FloatingPointError(f"loss or gradients were NaN/inf in {consecutive_nonfinite} updates "
                                             f"in a row (last loss {metrics['loss']}); lower --learning-rate")
        except Exception as e:  # noqa: BLE001 - reported by the main thread, which stops the run
            self.errors.append(f"learner thread {index} failed: {type(e).__name__}: {e}")
            self.stop_event.set()

    # -- main loop ---------------------------------------------------------------------------------------
    def run(self) -> int:
        hp, c = self.hp, self.counters
        from tqdm import tqdm
        import tensorflow as tf

        self.session_start = time.time()
        writer = tf.summary.create_file_writer(hp.logdir)
        with writer.as_default():
            tf.summary.text("config", "```\n" + hp.to_json() + "\n```", step=c.env_steps)
        csv_path = os.path.join(hp.logdir, "progress.csv")
        new_csv = not os.path.exists(csv_path)
        csv_file = open(csv_path, "a", newline="")
        csv_writer = csv.DictWriter(csv_file, fieldnames=PROGRESS_FIELDS)
        if new_csv:
            csv_writer.writeheader()

        previous_handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        threads = [threading.Thread(target=self.worker, args=(i,), name=f"learner-{i}", daemon=True)
                   for i in range(hp.threads)]
        bar = tqdm(total=hp.total_env_steps, initial=min(c.env_steps, hp.total_env_steps), unit="step",
                   unit_scale=True, dynamic_ncols=True, disable=not hp.progress_bar, file=sys.stderr)
        last_log = last_ckpt = time.time()
        last_steps = c.env_steps
        for t in threads:
            t.start()
        try:
            while any(t.is_alive() for t in threads):
                time.sleep(0.5)  # not stop_event.wait(): a signal handler setting the event inside it deadlocks
                if self.signal_received is not None:
                    self.stop_event.set()
                now = time.time()
                with c.lock:
                    steps = c.env_steps
                bar.update(min(steps, hp.total_env_steps) - bar.n)
                if self.recent_returns:
                    bar.set_postfix(ret=f"{np.mean(self.recent_returns):.1f}", eps=c.episodes, refresh=False)
                if now - last_log >= hp.log_interval_s:
                    self._write_log(writer, csv_writer, csv_file, steps, (steps - last_steps) / (now - last_log))
                    last_log, last_steps = now, steps
                if now - last_ckpt >= hp.checkpoint_interval_s:
                    self.save()
                    last_ckpt = now
        finally:
            if self.signal_received is not None:
                print(f"\n{signal.Signals(self.signal_received).name}: stopping threads and saving a checkpoint",
                      file=sys.stderr)
            self.stop_event.set()
            for t in threads:
                t.join()
            for s, h in previous_handlers.items():
                signal.signal(s, h)
            bar.close()
        now = time.time()
        self._write_log(writer, csv_writer, csv_file, c.env_steps,
                        (c.env_steps - last_steps) / max(now - last_log, 1e-9))
        path = self.save()
        csv_file.close()
        writer.close()
        for agent in self.agents:
            agent.close()
        self.lock.release()
        if self.errors:
            for err in self.errors:
                print(f"error: {err}", file=sys.stderr)
            print(f"error: training stopped; the last good state is saved in {path}", file=sys.stderr)
            return 1
        mean = f"{np.mean(self.recent_returns):.2f}" if self.recent_returns else "n/a"
        self.log(f"saved {path}: {c.env_steps} env steps, {c.episodes} episodes, {c.updates} updates, "
                 f"mean return (last {len(self.recent_returns)}) {mean}")
        return 0

    def _on_signal(self, signum, frame):
        # Only set a flag: the handler runs between bytecodes of the main thread, which may hold the locks
        # that stop_event.set() or print() would take.
        self.signal_received = signum

    def _write_log(self, writer, csv_writer, csv_file, steps, steps_per_s):
        import tensorflow as tf
        c = self.counters
        with c.lock:
            episodes, self.pending_episodes = self.pending_episodes, []
            episode_count, updates, skipped = c.episodes, c.updates, c.skipped_updates
        telemetry = []
        while self.telemetry:
            telemetry.append(self.telemetry.popleft())
        for ret, length in episodes:
            self.recent_returns.append(ret)
            self.recent_lengths.append(length)
        wall = c.wall_time_s + time.time() - self.session_start
        row = dict(env_steps=steps, wall_time_s=round(wall, 2), episodes=episode_count, updates=updates,
                   mean_return=_mean(self.recent_returns), mean_length=_mean(self.recent_lengths),
                   steps_per_second=round(steps_per_s, 1), learning_rate=learning_rate_at(self.hp, steps),
                   skipped_updates=skipped)
        if telemetry:
            for key in ("policy", "value", "entropy", "grad_norm", "advantage"):
                row[key] = float(np.mean([t.metrics[key] for t in telemetry]))
            row["policy_lag"] = float(np.mean([t.policy_lag for t in telemetry]))
            total = sum(t.total_s for t in telemetry)
            for key, attr in (("env", "env_s"), ("inference", "inference_s"), ("train", "train_s")):
                row[f"time_{key}"] = sum(getattr(t, attr) for t in telemetry) / total
            row["time_other"] = 1.0 - row["time_env"] - row["time_inference"] - row["time_train"]
        with writer.as_default(step=steps):
            for ret, length in episodes:
                tf.summary.scalar("charts/episode_return", ret)
                tf.summary.scalar("charts/episode_length", length)
            if row["mean_return"] != "":
                tf.summary.scalar("charts/mean_return_100", row["mean_return"])
            tf.summary.scalar("charts/steps_per_second", steps_per_s)
            tf.summary.scalar("charts/learning_rate", row["learning_rate"])
            tf.summary.scalar("charts/episodes", episode_count)
            tf.summary.scalar("charts/skipped_updates", skipped)
            if telemetry:
                for key in ("policy", "value", "entropy", "grad_norm"):
                    tf.summary.scalar(f"losses/{key}", row[key])
                tf.summary.scalar("charts/policy_lag_updates", row["policy_lag"])
                for key in ("env", "inference", "train", "other"):
                    tf.summary.scalar(f"time/{key}_fraction", row[f"time_{key}"])
        writer.flush()
        csv_writer.writerow({k: row.get(k, "") for k in PROGRESS_FIELDS})
        csv_file.flush()


PROGRESS_FIELDS = ["env_steps", "wall_time_s", "episodes", "updates", "mean_return", "mean_length",
                   "steps_per_second", "learning_rate", "policy", "value", "entropy", "grad_norm", "advantage",
                   "policy_lag", "skipped_updates", "time_env", "time_inference", "time_train", "time_other"]


def _mean(values):
    return round(float(np.mean(values)), 3) if values else ""


def main(argv=None) -> int:
    try:
        hp = hparams_lib.parse_args(argv)
        trainer = Trainer(hp)
        trainer.setup()
    except (ConfigError, RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return trainer.run()


if __name__ == "__main__":
    sys.exit(main())
