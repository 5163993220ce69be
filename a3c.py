"""Batched-agent A3C trainer.

    python a3c.py                       # defaults from hparams.py (Pong)
    python a3c.py --preset breakout --threads 2 --learning-rate 1e-3
    python a3c.py --logdir runs/pong    # again: resumes from the latest checkpoint there

A few Python threads each own a vector env of `envs_per_thread` Atari games. They share ONE policy-value
network (tf.function, on the GPU when there is one): each thread collects a `[t_max, B]` rollout with the
shared policy, computes n-step returns / GAE (a3c_math.py), takes the clipped gradient of its own batch and
applies it to the shared variables asynchronously.

Faults never cost more than the work since the last checkpoint: SIGINT/SIGTERM stop all threads and save; a
failing thread or a NaN streak stops the run with the last good state saved; checkpoints are crash-safe and a
corrupt newest one is skipped on resume. For tests only, A3C_FAKE_ENV=module:function swaps Atari for a fake env.
"""
from __future__ import annotations

import collections
import contextlib
import csv
import glob
import json
import os
import re
import shutil
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
# The last RETURN_WINDOW episodes at the newest checkpoint, so a resumed run's "mean of the last 100" carries on
# instead of restarting empty (which would first fill with the shortest, i.e. lost, games and dip the curves).
EPISODE_WINDOW_FILE = "episode_window.json"
LOCK_FILE = ".lock"
MAX_CONSECUTIVE_NONFINITE = 10  # skipped updates in a row before we call the run diverged
RETURN_WINDOW = 100  # episodes in the "mean recent return" (A3G / DQN protocol)
JOIN_TIMEOUT_S = 30.0  # at exit, how long to wait for a learner thread to finish its rollout
PAUSE_TIMEOUT_S = 30.0  # before a checkpoint, how long to wait for rollouts in flight to finish
# Settings of the env that a resumed run may change, but with a warning: the policy was trained under the old ones.
ENV_FIELDS = ("frameskip", "repeat_action_probability", "noop_max", "max_episode_frames", "episodic_life")
# Test hook, for tests only: A3C_FAKE_ENV=module:function makes main() train on function(thread_index, num_envs)
# instead of Atari, so that signals, crashes and resumes of the real CLI can be tested in a subprocess cheaply.
FAKE_ENV_VAR = "A3C_FAKE_ENV"


class RunError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


class CheckpointError(RunError):
    """A checkpoint could not be written; the previous ones are intact."""


def first_line(error: BaseException, limit: int = 200) -> str:
    """An exception as one short line: TF error messages run over many lines and wrap the cause in
    `{{function_node ...}} ... [Op:SaveV2]`."""
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", str(error)).strip()
    text = re.sub(r"\s*\[Op:\w+\]", "", text.splitlines()[0] if text else type(error).__name__)
    return text[:limit]


def warn(msg: str):
    print(f"warning: {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------------
# TensorFlow setup (must run before any op executes)
# ----------------------------------------------------------------------------------------------------------
def import_tensorflow():
    """Import TensorFlow with fd 2 muted: TF 2.21 prints absl start-up lines that TF_CPP_MIN_LOG_LEVEL does not
    silence, and a user error must stay one line on stderr. Python exceptions still show."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow as tf
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    tf.get_logger().setLevel("ERROR")  # e.g. an unreadable `checkpoint` state file: we report it ourselves
    return tf


def configure_tensorflow(hp: HParams):
    tf = import_tensorflow()
    import keras
    try:
        tf.config.threading.set_intra_op_parallelism_threads(hp.resolved_intra_op_threads())
        tf.config.threading.set_inter_op_parallelism_threads(hp.resolved_inter_op_threads())
    except RuntimeError:
        pass  # already initialised in this process (tests); the first setting stays
    # Not just tf.random.set_seed: Keras 3 initialisers draw from Keras' own seed generator, which is seeded
    # from Python's `random` - without this the initial weights differ between runs with the same --seed.
    keras.utils.set_random_seed(hp.seed)
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
    """Exact global counters: every thread updates them under one lock.

    A learner thread claims the env steps of its next rollout before collecting it (`claimed_steps`), so the
    run stops at exactly the step budget however the threads interleave, and counts itself `in_flight` until
    the update is applied, so a checkpoint can wait for a moment when no update is half done."""

    def __init__(self):
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # notified when a rollout finishes or a pause ends
        self.env_steps = 0
        self.episodes = 0
        self.updates = 0
        self.skipped_updates = 0
        self.wall_time_s = 0.0  # training wall time of previous sessions of this run
        self.claimed_steps = 0  # env_steps + steps of the rollouts in flight
        self.in_flight = 0  # rollouts claimed and not yet counted


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
    for name in ENV_FIELDS:
        if name in saved and saved[name] != getattr(hp, name):
            warn(f"resuming with {name}={getattr(hp, name)!r} but the checkpoint in {where} was trained with "
                 f"{name}={saved[name]!r}")


def _ckpt_number(prefix: str) -> int:
    m = re.search(r"-(\d+)$", prefix)
    return int(m.group(1)) if m else -1


def listed_checkpoints(ckpt_dir: str) -> list[str] | None:
    """The prefixes CheckpointManager's `checkpoint` state file names, newest first; None if it is missing or
    unreadable."""
    import tensorflow as tf
    try:
        state = tf.train.get_checkpoint_state(ckpt_dir)
    except (ValueError, tf.errors.OpError):  # e.g. an empty state file
        return None
    if state is None:
        return None
    return [os.path.normpath(p) for p in [state.model_checkpoint_path, *reversed(state.all_model_checkpoint_paths)]]


def checkpoint_candidates(ckpt_dir: str) -> list[str]:
    """Checkpoint prefixes to resume from, best first: the ones the `checkpoint` state file lists, newest first,
    then any other ckpt-N.index on disk by number (the state file may be lost, or a crash came between writing
    a checkpoint and recording it)."""
    listed = listed_checkpoints(ckpt_dir) or []
    on_disk = sorted((p[:-len(".index")] for p in glob.glob(os.path.join(glob.escape(ckpt_dir), "ckpt-*.index"))),
                     key=_ckpt_number, reverse=True)
    candidates = []
    for prefix in listed + on_disk:
        prefix = os.path.normpath(prefix)
        if prefix not in candidates:
            candidates.append(prefix)
    return candidates


def checkpoint_problem(prefix: str) -> str | None:
    """None if every tensor of the checkpoint reads back (TF checks a CRC32C per tensor), else what is wrong."""
    import tensorflow as tf
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as e:  # noqa: BLE001 - NotFound, DataLoss, OutOfRange, ... all mean "unreadable"
        return first_line(e, 120)
    return None


def restore(checkpoint, path: str, where: str):
    """Restore and insist that every variable of ours was found in the file, and every value in the file went
    into one of our variables (a checkpoint of another program or network is refused, not half-loaded)."""
    import tensorflow as tf
    try:
        status = checkpoint.restore(path)
        status.assert_existing_objects_matched()
        status.assert_consumed()
    except (tf.errors.OpError, AssertionError, ValueError) as e:
        raise RunError(f"checkpoint {path} in {where} does not fit this network ({first_line(e, 160)}); "
                       f"it is from an incompatible run - use a new --logdir") from None
    return status


def write_checkpoint_state(ckpt_dir: str, prefixes: list[str]):
    """Rewrite the `checkpoint` state file (prefixes oldest first; the last is the latest), atomically. The
    timestamps matter: CheckpointManager only rotates checkpoints stamped after last_preserved_timestamp."""
    names = [os.path.basename(p) for p in prefixes]
    stamps = [os.path.getmtime(p + ".index") for p in prefixes]
    text = "".join([f'model_checkpoint_path: "{names[-1]}"\n'] +
                   [f'all_model_checkpoint_paths: "{n}"\n' for n in names] +
                   [f"all_model_checkpoint_timestamps: {t!r}\n" for t in stamps] +
                   [f"last_preserved_timestamp: {min(stamps) - 1.0!r}\n"])
    write_text_atomic(os.path.join(ckpt_dir, "checkpoint"), text)


def remove_checkpoint_files(prefix: str):
    """Delete one checkpoint's files and the temp directory a crash or failed write may have left."""
    for path in glob.glob(glob.escape(prefix) + ".index") + glob.glob(glob.escape(prefix) + ".data-*"):
        os.remove(path)
    shutil.rmtree(prefix + "_temp", ignore_errors=True)


def fsync_checkpoint(prefix: str):
    """Flush a new checkpoint, the state file naming it and the directory entries to disk, so that a power cut
    right after a save cannot leave a state file that names data which never reached the disk."""
    directory = os.path.dirname(prefix)
    for path in glob.glob(glob.escape(prefix) + ".*") + [os.path.join(directory, "checkpoint")]:
        with open(path, "rb") as f:
            os.fsync(f.fileno())
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def prepare_writable_dir(path: str, flag: str = "--logdir"):
    """Create `path` and prove we can write there, so a bad path fails now and not at the first save."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".write_test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise RunError(f"cannot write to {flag} {path} ({e.strerror}); choose a writable directory")


def write_text_atomic(path: str, text: str):
    """Readers see the old file or the new one, never a half-written one (temp file, fsync, rename)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: str, payload: dict):
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True))


@contextlib.contextmanager
def io_errors(what: str):
    """Turn a failed write (disk full, permissions, TF file errors) into a one-line RunError."""
    import tensorflow as tf
    try:
        yield
    except OSError as e:
        raise RunError(f"{what} ({e.strerror or first_line(e)})") from None
    except tf.errors.OpError as e:  # "<temp file path>; File too large": the OS's reason is what matters
        raise RunError(f"{what} ({first_line(e, 400).rsplit('; ', 1)[-1][:160]})") from None


def env_factory_from_environment():
    """The test hook: the env factory named by $A3C_FAKE_ENV (`module:function`), or None for real Atari."""
    spec = os.environ.get(FAKE_ENV_VAR)
    if not spec:
        return None
    import importlib
    module, _, function = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError, ValueError) as e:
        raise RunError(f"{FAKE_ENV_VAR}={spec!r} does not name an env factory ({e})") from None


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
        self.paused = False  # learner threads hold between updates while a checkpoint is written
        self.errors: list[str] = []
        self.counters = Counters()
        self.telemetry: collections.deque = collections.deque()
        self.recent_returns: collections.deque = collections.deque(maxlen=RETURN_WINDOW)
        self.recent_lengths: collections.deque = collections.deque(maxlen=RETURN_WINDOW)
        self.pending_episodes: list = []  # (return, length) since the last log row
        self.signal_received = None
        self.agents: list = []
        self.lock = None
        self.session_start = time.time()
        self.saved_step = None  # env_steps of the newest checkpoint of this run on disk
        self.saved_path = None

    def log(self, msg: str):
        print(msg, file=self.out, flush=True)

    # -- setup ------------------------------------------------------------------------------------------
    def _make_env(self, index: int):
        from batch_agents import make_vector_env
        if self.env_factory is not None:
            return self.env_factory(index, self.hp.envs_per_thread)
        return make_vector_env(self.hp, self.hp.envs_per_thread)

    def setup(self):
        """Create envs, network and optimizer; resume from the newest readable checkpoint in the logdir."""
        hp = self.hp
        if self.env_factory is None:
            from batch_agents import check_env_id
            check_env_id(hp.env_id)
        prepare_writable_dir(hp.logdir)
        self.lock = LogdirLock(hp.logdir)
        try:
            self._setup_locked()
        except BaseException:
            self.close()
            raise

    def _setup_locked(self):
        from batch_agents import BatchAgents
        hp = self.hp
        tf = configure_tensorflow(hp)
        self.ckpt_dir = os.path.join(hp.logdir, CHECKPOINT_SUBDIR)
        os.makedirs(self.ckpt_dir, exist_ok=True)
        # A crash mid-save can leave ckpt-N_temp/ behind; TF never reads it, and we hold the logdir lock.
        for stale in glob.glob(os.path.join(glob.escape(self.ckpt_dir), "ckpt-*_temp")):
            shutil.rmtree(stale, ignore_errors=True)
        candidates = checkpoint_candidates(self.ckpt_dir)
        saved_config = None
        if candidates:
            saved_config = read_config(os.path.join(hp.logdir, CONFIG_FILE))
            check_compatible(saved_config, hp, hp.logdir)

        for i in range(hp.threads):
            self.agents.append(BatchAgents(self._make_env(i), seed=hp.seed + i * hp.envs_per_thread,
                                           episodic_life=hp.episodic_life))
        num_actions = int(self.agents[0].env.single_action_space.n)
        if saved_config is not None and saved_config.get("num_actions", num_actions) != num_actions:
            raise RunError(f"checkpoint in {hp.logdir} has a policy over {saved_config['num_actions']} actions but "
                           f"{hp.env_id} (full_action_space={hp.full_action_space}) has {num_actions}; "
                           f"use a new --logdir")
        self.learner = Learner(hp, num_actions)
        self.state_vars = dict(
            env_steps=tf.Variable(0, dtype=tf.int64, trainable=False),
            episodes=tf.Variable(0, dtype=tf.int64, trainable=False),
            updates=tf.Variable(0, dtype=tf.int64, trainable=False),
            wall_time_s=tf.Variable(0.0, dtype=tf.float64, trainable=False))
        self.checkpoint = checkpoint_objects(self.learner, self.state_vars)
        resumed = self._restore_newest(candidates)
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.ckpt_dir, max_to_keep=hp.checkpoints_kept)
        if resumed:
            c = self.counters
            c.env_steps = c.claimed_steps = int(self.state_vars["env_steps"].numpy())
            c.episodes = int(self.state_vars["episodes"].numpy())
            c.updates = int(self.state_vars["updates"].numpy())
            c.wall_time_s = float(self.state_vars["wall_time_s"].numpy())
            self.saved_step, self.saved_path = c.env_steps, resumed
            self._restore_episode_window(c.env_steps)
            self.log(f"resuming from step {c.env_steps} ({resumed})")
        self.config = hp.to_dict()
        self.config["num_actions"] = num_actions
        with io_errors(f"cannot write {CONFIG_FILE} in {hp.logdir}"):
            write_json_atomic(os.path.join(hp.logdir, CONFIG_FILE), self.config)
        self.log("config:\n" + json.dumps(self.config, indent=2, sort_keys=True))
        self.log(f"network on {self.learner.device}; {hp.threads} threads x {hp.envs_per_thread} envs, "
                 f"{hp.resolved_env_threads()} emulator threads per env, TF intra/inter-op "
                 f"{hp.resolved_intra_op_threads()}/{hp.resolved_inter_op_threads()}")
        # Trace both functions once here, before threads race to trace them.
        agent = self.agents[0]
        agent.pending = agent.act(self.learner.policy())
        self.session_start = time.time()

    def _restore_newest(self, candidates: list[str]) -> str | None:
        """Restore the newest checkpoint that reads back whole; None for a fresh run. Unreadable newer ones are
        skipped with a warning naming them and the one used; if none is readable the run stops - it never
        silently starts from scratch over existing checkpoints."""
        skipped = []
        for prefix in candidates:
            problem = checkpoint_problem(prefix)
            if problem:
                skipped.append(f"{os.path.basename(prefix)} ({problem})")
                continue
            restore(self.checkpoint, prefix, self.hp.logdir)  # readable but not ours: a hard error, no fallback
            if skipped:
                warn(f"skipped unreadable checkpoint(s) {'; '.join(skipped)}; resuming from the previous one, "
                     f"{prefix}")
            self._ensure_state_file_lists(prefix, candidates)
            return prefix
        if skipped:
            raise RunError(f"no checkpoint in {self.ckpt_dir} can be read: {'; '.join(skipped)}; restore them from "
                           f"a backup or start over with another --logdir")
        return None

    def _ensure_state_file_lists(self, prefix: str, candidates: list[str]):
        """If the `checkpoint` state file is lost or unreadable, rebuild it from the checkpoints on disk, so that
        CheckpointManager keeps rotating them instead of forgetting them."""
        if listed_checkpoints(self.ckpt_dir) is not None:
            return
        readable = sorted([p for p in candidates if _ckpt_number(p) <= _ckpt_number(prefix)], key=_ckpt_number)
        warn(f"the checkpoint state file in {self.ckpt_dir} was missing or unreadable; rebuilt it from "
             f"{len(readable)} checkpoint(s) on disk, newest {os.path.basename(prefix)}")
        with io_errors(f"cannot rewrite the checkpoint state file in {self.ckpt_dir}"):
            write_checkpoint_state(self.ckpt_dir, readable)

    def _restore_episode_window(self, steps: int):
        """Refill the recent-episode window saved with the checkpoint we resumed from. It only feeds the logged
        mean return, so a missing, unreadable or stale file (the resume fell back to an older checkpoint, or
        the run predates the file) just leaves the window empty."""
        try:
            with open(os.path.join(self.ckpt_dir, EPISODE_WINDOW_FILE)) as f:
                saved = json.load(f)
            if saved["env_steps"] != steps:
                return
            self.recent_returns.extend(float(r) for r in saved["returns"])
            self.recent_lengths.extend(int(n) for n in saved["lengths"])
        except (OSError, ValueError, KeyError, TypeError):
            return

    # -- checkpoints -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _workers_paused(self, timeout_s: float = PAUSE_TIMEOUT_S):
        """Hold the learner threads between updates, so a checkpoint's weights, optimizer slots and counters
        belong together. A thread still busy after timeout_s (a hung env) is not waited for."""
        c = self.counters
        with c.changed:
            self.paused = True
            deadline = time.monotonic() + timeout_s
            while c.in_flight and time.monotonic() < deadline:
                c.changed.wait(0.05)
        try:
            yield
        finally:
            with c.changed:
                self.paused = False
                c.changed.notify_all()

    def save(self, pause_timeout_s: float = PAUSE_TIMEOUT_S) -> str | None:
        """Checkpoint weights, optimizer slots and counters; returns the checkpoint prefix.

        Crash-safe: TF writes the tensors to ckpt-N_temp/, merges them into ckpt-N.index/.data, and only then
        replaces the `checkpoint` state file (temp file + rename) and deletes the oldest checkpoint, so a crash
        at any moment leaves a state file that names complete checkpoints. The one unsafe case, rewriting a
        checkpoint in place, is avoided by never saving the same step twice. A failed write (disk full) removes
        its partial files, leaves the previous checkpoints untouched and raises CheckpointError."""
        c = self.counters
        with self._workers_paused(pause_timeout_s):
            with c.lock:
                steps = c.env_steps
                if steps == self.saved_step:
                    return self.saved_path  # nothing new since the last checkpoint
                self.state_vars["env_steps"].assign(steps)
                self.state_vars["episodes"].assign(c.episodes)
                self.state_vars["updates"].assign(c.updates)
                self.state_vars["wall_time_s"].assign(c.wall_time_s + time.time() - self.session_start)
                window = (list(zip(self.recent_returns, self.recent_lengths)) + self.pending_episodes)[-RETURN_WINDOW:]
            prefix = os.path.join(self.ckpt_dir, f"ckpt-{steps}")
            try:
                with io_errors(f"could not write checkpoint {prefix}"):
                    path = self.manager.save(checkpoint_number=steps)
            except RunError as e:
                self._remove_failed_save(prefix)
                previous = f"the previous checkpoint {self.saved_path} is intact" if self.saved_path else \
                    "no earlier checkpoint exists"
                raise CheckpointError(f"{e}; {previous}; free disk space and run again with the same --logdir "
                                      f"to resume") from None
            self.saved_step, self.saved_path = steps, path
            # The checkpoint is complete and recorded: a failure from here on leaves it in place. The config goes
            # next to the checkpoints so a copied checkpoint directory is self-describing for a3c_test.py; it is
            # written only after a successful save, so a failed one leaves the directory as it was.
            try:
                with io_errors(f"wrote checkpoint {path} but could not finish"):
                    write_json_atomic(os.path.join(self.ckpt_dir, CONFIG_FILE), self.config)
                    write_json_atomic(os.path.join(self.ckpt_dir, EPISODE_WINDOW_FILE),
                                      dict(env_steps=steps, returns=[r for r, _ in window],
                                           lengths=[n for _, n in window]))
                    fsync_checkpoint(path)
            except RunError as e:
                raise CheckpointError(str(e)) from None
        return path

    def _remove_failed_save(self, prefix: str):
        """Delete what a failed save left, unless the state file already names it (then it is complete)."""
        if prefix in (listed_checkpoints(self.ckpt_dir) or []):
            return
        with contextlib.suppress(OSError):
            remove_checkpoint_files(prefix)
            for tmp in glob.glob(os.path.join(glob.escape(self.ckpt_dir), "checkpoint.tmp*")):
                os.remove(tmp)

    # -- the learner threads ---------------------------------------------------------------------------
    def _claim_rollout(self, steps: int):
        """Reserve the env steps of one rollout; (learning rate, updates so far), or None when the run is over."""
        hp, c = self.hp, self.counters
        with c.changed:
            while self.paused and not self.stop_event.is_set():
                c.changed.wait(0.5)
            if self.stop_event.is_set() or c.claimed_steps >= hp.total_env_steps:
                return None
            c.claimed_steps += steps
            c.in_flight += 1
            return learning_rate_at(hp, c.env_steps), c.updates

    def _finish_rollout(self, steps: int, episodes, applied) -> int:
        """Count a claimed rollout (or give its claim back if it failed, episodes=None); returns the policy lag
        base: the updates counted now."""
        c = self.counters
        with c.changed:
            c.in_flight -= 1
            if episodes is None:
                c.claimed_steps -= steps
            else:
                c.env_steps += steps
                c.episodes += len(episodes.returns)
                if applied:
                    c.updates += 1
                else:
                    c.skipped_updates += 1
                self.pending_episodes.extend(zip(episodes.returns, episodes.lengths))
            c.changed.notify_all()
            return c.updates

    def worker(self, index: int):
        hp, agent = self.hp, self.agents[index]
        policy = self.learner.policy()
        steps = hp.t_max * agent.num_envs
        consecutive_nonfinite = 0
        try:
            while (claim := self._claim_rollout(steps)) is not None:
                lr, updates_at_start = claim
                episodes, metrics = None, {"applied": False}
                try:
                    t0 = time.perf_counter()
                    agent.timers.update(env=0.0, inference=0.0)
                    rollout, episodes_ = agent.collect(policy, hp.t_max)
                    if hp.overlap_env_step:
                        agent.send_pending()  # the envs step on their own threads during the update
                    t1 = time.perf_counter()
                    metrics = self.learner.train_on(rollout, lr)
                    t2 = time.perf_counter()
                    episodes = episodes_
                finally:
                    updates_now = self._finish_rollout(steps, episodes, metrics["applied"])
                lag = max(updates_now - updates_at_start - 1, 0)
                self.telemetry.append(Telemetry(index, metrics, agent.timers["env"], agent.timers["inference"],
                                                t2 - t1, t2 - t0, lag))
                consecutive_nonfinite = 0 if metrics["applied"] else consecutive_nonfinite + 1
                if consecutive_nonfinite >= MAX_CONSECUTIVE_NONFINITE:
                    raise FloatingPointError(f"loss or gradients were NaN/inf in {consecutive_nonfinite} updates "
                                             f"in a row (last loss {metrics['loss']}); none of them was applied - "
                                             f"lower --learning-rate")
        except Exception as e:  # noqa: BLE001 - reported by the main thread, which stops the run
            self.errors.append(f"learner thread {index} failed: {type(e).__name__}: {first_line(e)}")
            self.stop_event.set()

    # -- main loop ---------------------------------------------------------------------------------------
    def run(self) -> int:
        """Train until the step budget, a signal (SIGINT/SIGTERM: exit 0) or a failure; always ends with a
        checkpoint of the last good state. Exit status: 0 done or stopped, 1 a learner thread failed, 2 logs or
        checkpoints could not be written."""
        hp, c = self.hp, self.counters
        from tqdm import tqdm
        import tensorflow as tf

        self.session_start = time.time()
        with io_errors(f"cannot write logs to {hp.logdir}"):
            writer = tf.summary.create_file_writer(hp.logdir)
            with writer.as_default():
                tf.summary.text("config", "```\n" + hp.to_json() + "\n```", step=c.env_steps)
            csv_path = os.path.join(hp.logdir, "progress.csv")
            new_csv = not os.path.exists(csv_path)
            csv_file = open(csv_path, "a", newline="")
        csv_writer = csv.DictWriter(csv_file, fieldnames=PROGRESS_FIELDS)
        if new_csv:
            csv_writer.writeheader()

        # The handlers stay until the final checkpoint is written: a second Ctrl-C must not interrupt it.
        previous_handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        threads = [threading.Thread(target=self.worker, args=(i,), name=f"learner-{i}", daemon=True)
                   for i in range(hp.threads)]
        bar = tqdm(total=hp.total_env_steps, initial=min(c.env_steps, hp.total_env_steps), unit="step",
                   unit_scale=True, dynamic_ncols=True, disable=not hp.progress_bar, file=sys.stderr)
        last_log = last_ckpt = time.time()
        last_steps = c.env_steps
        failure = None  # RunError: logs or a checkpoint could not be written
        for t in threads:
            t.start()
        try:
            # Leave as soon as a stop is requested, not when the last thread ends: _join gives stuck threads
            # a deadline, so a thread hanging inside env.step cannot keep the run (and its checkpoint) hostage.
            while any(t.is_alive() for t in threads) and not self.stop_event.is_set():
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
        except RunError as e:
            failure = e
        finally:
            self.stop_event.set()
            stuck = self._join(threads)
            bar.close()
        if self.signal_received is not None:
            print(f"\n{signal.Signals(self.signal_received).name}: stopped all threads; saving a checkpoint",
                  file=sys.stderr, flush=True)
        path = None
        try:
            if failure is None:
                now = time.time()
                self._write_log(writer, csv_writer, csv_file, c.env_steps,
                                (c.env_steps - last_steps) / max(now - last_log, 1e-9))
            if not isinstance(failure, CheckpointError):  # a failed save is not retried: the disk is likely full
                path = self.save(pause_timeout_s=0.0 if stuck else PAUSE_TIMEOUT_S)
        except RunError as e:
            failure = RunError(f"{failure}; also {e}") if failure else e
        with contextlib.suppress(OSError, tf.errors.OpError):
            csv_file.close()
            writer.close()
        for s, h in previous_handlers.items():
            signal.signal(s, h)
        self.close(skip_threads=stuck)
        return self._report(failure, path)

    def _join(self, threads) -> list[int]:
        """Wait for the learner threads; the indices of any still running after JOIN_TIMEOUT_S."""
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        stuck = [i for i, t in enumerate(threads) if t.is_alive()]
        if stuck:
            warn(f"learner thread(s) {stuck} did not stop within {JOIN_TIMEOUT_S:.0f} s (stuck in the env?); "
                 f"saving without them")
        return stuck

    def _report(self, failure: RunError | None, path: str | None) -> int:
        """One line on stderr for a failure; the exit status."""
        c = self.counters
        saved = f"last good state saved in {path}" if path else f"final checkpoint not written ({failure})"
        if self.errors:
            more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
            print(f"error: {self.errors[0]}{more}; all threads stopped; {saved}", file=sys.stderr, flush=True)
            return 1
        if failure is not None:
            print(f"error: {failure}" + (f"; training stopped, {saved}" if path else ""), file=sys.stderr,
                  flush=True)
            return 2
        mean = f"{np.mean(self.recent_returns):.2f}" if self.recent_returns else "n/a"
        self.log(f"saved {path}: {c.env_steps} env steps, {c.episodes} episodes, {c.updates} updates, "
                 f"mean return (last {len(self.recent_returns)}) {mean}")
        return 0

    def close(self, skip_threads=()):
        """Close the envs (except those of threads still stuck in them) and release the logdir."""
        for i, agent in enumerate(self.agents):
            if i not in skip_threads:
                with contextlib.suppress(Exception):
                    agent.close()
        if self.lock is not None:
            self.lock.release()
            self.lock = None

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
        with io_errors(f"cannot write logs to {self.hp.logdir}"):
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
        trainer = Trainer(hp, env_factory=env_factory_from_environment())
        trainer.setup()
    except (ConfigError, RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted during start-up; nothing was changed", file=sys.stderr)
        return 130
    return trainer.run()


if __name__ == "__main__":
    sys.exit(main())
