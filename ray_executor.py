"""--executor ray: the same A3C spread over a Ray cluster (Ray Core actors; launch on Slurm: scripts/slurm/).

    python a3c.py --executor ray --workers 2                       # a private Ray on this machine
    python a3c.py --executor ray --ray-address auto --workers 64   # the cluster `ray start` made (Slurm script)

One ParameterServer actor, on the driver's node, owns what the local trainer's process owns: the shared weights
and optimizer statistics (learner.py), the counters, the checkpoints and the logs (run_state.py, checkpoints.py,
run_log.py), so a run directory is the same whichever executor wrote it and either can resume it. Its methods run
one at a time: every push is applied whole, and a checkpoint always holds weights, statistics and counters of the
same moment. `--workers` RolloutWorker actors each run --threads learner threads over their own vector envs, with
a local copy of the network. A worker thread, per rollout:
  - every --weight-pull-interval updates fetches the newest weights (one object in Ray's store per version, so
    N workers pulling cost the server one copy);
  - collects a `[t_max, B]` rollout with its copy, computes the clipped gradient with the weights that acted
    (A3C's thread-local theta') or, with --off-policy-correction vtrace, with weights fetched just now, corrected
    by V-trace against the acting policy;
  - pushes it asynchronously (at most one push in flight per thread) and goes on collecting.
Policy lag (updates the server applied between the weights a rollout acted with and its push) is logged as
charts/policy_lag_updates.

--ps-shards S > 1: S ParameterShard actors (ps_shards.py) each own a slice of the weights and optimizer statistics;
a worker thread sends each rollout's gradient in slices to them and its counts to the server, which then keeps
only the counters (with claims, so the budget is exact), logs and checkpoints (one moment of all shards, by
ps_shards' snapshot protocol). A dead shard stops the run like a dead server.

Faults: a worker that dies is restarted by Ray (max_restarts) and resubmitted; its rollouts in flight are lost
(never counted). If the parameter server dies the run stops: checkpoints are written whole or not at all, so the
newest is intact. SIGINT / SIGTERM on the driver stop the workers, and the server saves.

Owns: connecting to Ray, the actors (server, shards, workers), the driver loop, worker restarts and the stop on
signals.
Must not: contain TensorFlow ops or loss math (learner.py), file formats (checkpoints.py) or env details (envs.py).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import sys
import threading
import time
from typing import NamedTuple

import numpy as np

import envs
from batch_agents import BatchAgents
import ps_shards
from checkpoints import CheckpointStore, LogdirLock, RunCounts, prepare_writable_dir
from errors import ConfigError, RunError, first_line
from hparams import HParams, learning_rate_at, step_budget
from run_log import RunLog, Telemetry
from run_state import Counters, open_run, report, summary, target_reached

REPO_DIR = os.path.dirname(os.path.abspath(__file__))
MAX_WORKER_RESTARTS = 5  # per worker; a worker that keeps dying is a bug, not bad luck
MAX_CONSECUTIVE_NONFINITE = 10  # as a3c.py: skipped updates in a row from one thread before the run is diverged
TICK_S = 0.5  # driver: how often it asks the server for the counts (bar, logs, checkpoints)
JOIN_TIMEOUT_S = 30.0  # at exit, how long to wait for workers to finish their rollouts
RESTART_TIMEOUT_S = 180.0  # how long a dead worker may take to come back (it rebuilds its envs and network)
CONNECT_TIMEOUT_S = 5.0
SNAPSHOT_TIMEOUT_S = 30.0  # --ps-shards: how long a checkpoint waits for pushes still on the wire to land


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install ray==2.60.0 (it is in requirements.txt)") \
            from None
    return ray


def _cause(e: BaseException) -> str:
    """The message of the exception an actor raised, without Ray's traceback wrapper."""
    cause = getattr(e, "cause", None)
    return first_line(cause if cause is not None else e)


def _check_reachable(address: str):
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except (OSError, ValueError) as e:
        raise ConfigError(f"--ray-address {address}: no Ray head answers there ({getattr(e, 'strerror', None) or e});"
                          f" start one with `ray start --head` or give HOST:PORT of a running head") from None


def connect(hp: HParams):
    """ray.init for hp: a private Ray when --ray-address is empty, else join the cluster. ConfigError if it is
    unreachable or has fewer CPUs than the workers reserve. Returns the ray module."""
    ray = import_ray()
    address = hp.ray_address or "local"  # not None: that would join any cluster `ray start` left on this machine
    if address not in ("local", "auto"):
        _check_reachable(address)
    # Workers import this repository and, in tests, the fake envs: the same paths on every node (Slurm clusters
    # share the file system) - no upload of the code.
    path = [REPO_DIR, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env_vars = {"PYTHONPATH": os.pathsep.join(dict.fromkeys(path)), "TF_CPP_MIN_LOG_LEVEL": "3"}
    if os.environ.get(envs.FAKE_ENV_VAR):
        env_vars[envs.FAKE_ENV_VAR] = os.environ[envs.FAKE_ENV_VAR]
    try:
        ray.init(address=address, runtime_env={"env_vars": env_vars}, include_dashboard=False,
                 log_to_driver=False, logging_level="ERROR", configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ConfigError(f"--ray-address {hp.ray_address}: cannot join a Ray cluster ({first_line(e)}); start one "
                          f"with `ray start --head`") from None
    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
    problem = None
    if hp.workers * hp.threads > cpus:
        problem = (f"--workers {hp.workers} x --threads {hp.threads} need {hp.workers * hp.threads} CPUs but the Ray "
                   f"cluster has {cpus:g}; lower --workers (or --threads) or add nodes")
    elif hp.workers * hp.worker_gpus > gpus:  # else the workers would wait for GPUs forever
        problem = (f"--workers {hp.workers} x --worker-gpus {hp.worker_gpus:g} need {hp.workers * hp.worker_gpus:g} "
                   f"GPUs but the Ray cluster has {gpus:g}; lower --worker-gpus or add GPU nodes")
    if problem:
        ray.shutdown()
        raise ConfigError(problem)
    return ray


def _ignore_sigint():
    """Actors leave Ctrl-C to the driver: a terminal sends SIGINT to the whole process group, and the driver
    stops the workers and has the server save in order."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread of the actor's process: nothing to do
        pass


def env_factory(hp: HParams) -> envs.EnvFactory:
    return envs.factory_from_environment() or envs.vector_env_factory(hp)


class _Actor:
    def where(self) -> tuple[int, str]:
        """(pid, "node address, node id prefix") of the actor's process: for the console, and for tests to kill it
        or check where Ray placed it (several Ray nodes may share one address)."""
        import ray
        return os.getpid(), f"{ray.util.get_node_ip_address()} (node {ray.get_runtime_context().get_node_id()[:8]})"


class ParameterServer(_Actor):
    """The run's shared state. Created on the driver's node; methods run one at a time (max_concurrency 1)."""

    def __init__(self, hp: HParams, specs: tuple):
        _ignore_sigint()
        self.hp, self.specs = hp, specs
        self.counters = Counters()
        self.run_log = RunLog(hp)
        self.errors: list[str] = []
        self.stopping = False
        self.late_pushes = 0  # arrived after the budget or a stop: neither applied nor counted
        self.stop_line = ""  # why the server stopped the run before the budget (--stop-at-mean-return)
        self.nonfinite_streak: dict[int, int] = {}
        self.lock = self.store = self.learner = None
        self.weights_ref = self.weights_version = None
        self.last_log = self.last_ckpt = time.time()
        self.last_steps = 0
        self.plan = None  # --ps-shards > 1: the cut of the weights (ps_shards.ShardPlan) ...
        self.shards = []  # ... and the shard actors; this server then keeps counters, logs and checkpoints only
        self.claims: dict[str, int] = {}  # --ps-shards: key -> env steps of the rollout it may push next
        self.barrier = None  # --sync: the RoundBarrier the workers wait on
        self.round = 0  # --sync: the open round
        self.live: set[str] = set()  # --sync: keys a round waits for
        self.round_reports: dict[str, bool] = {}  # --sync: key -> its gradient of the open round was finite
        self.counts_at_close = None  # --sync: (env steps, episodes, updates) when the last round closed

    def open(self) -> tuple[HParams, list[str]]:
        """Check and resume the run directory (as the local trainer does); (resolved hp, lines for the console)."""
        from tf_setup import configure_tensorflow
        hp, lines = self.hp, []
        configure_tensorflow(hp)
        from learner import check_devices
        check_devices(hp)
        if hp.ps_shards > 1 or hp.sync:
            self.plan = self._plan(hp)  # before the run directory is touched: a bad S changes nothing
        prepare_writable_dir(hp.logdir)
        self.lock = LogdirLock(hp.logdir)
        self.store = CheckpointStore(hp.logdir, hp.checkpoints_kept)
        self.hp, self.learner = open_run(hp, self.specs, self.store, self.run_log, self.counters, lines.append)
        self.run_log.hp = self.hp
        self.run_log.open(self.counters.env_steps)
        self.counters.session_start = self.last_log = self.last_ckpt = time.time()
        self.last_steps = self.counters.env_steps
        return self.hp, lines

    # -- --ps-shards > 1 -----------------------------------------------------------------------------------
    def _plan(self, hp: HParams):
        from learner import make_learner, resolve_network
        obs_spec, action_spec = self.specs
        net = make_learner(resolve_network(hp, obs_spec), action_spec, obs=obs_spec).net
        shapes = [tuple(v.shape) for v in net.trainable_variables]
        try:
            return ps_shards.plan_shards(shapes, hp.ps_shards)
        except ValueError:
            raise ConfigError(f"--ps-shards {hp.ps_shards}: the network's weights have only "
                              f"{ps_shards.max_shards(shapes)} rows to cut into shards; use at most that many"
                              ) from None

    def shard_plan(self):
        return self.plan

    def attach_shards(self, names: list[str], barrier_name: str = "") -> list[int]:
        """Load every shard with its slice of the (restored or fresh) weights and statistics; bytes per shard.
        --sync: `barrier_name` is the RoundBarrier to release at each round's end."""
        import ray
        self.shards = [ray.get_actor(n) for n in names]
        self.barrier = ray.get_actor(barrier_name) if barrier_name else None
        self.counts_at_close = (self.counters.env_steps, self.counters.episodes, self.counters.updates)
        weights, slots, iterations = ps_shards.learner_state(self.learner)
        c = self.counters
        counts = (c.env_steps, c.episodes, c.updates, c.skipped_updates)
        ray.get([shard.load.remote(w, sl, iterations, counts)
                 for shard, (w, sl) in zip(self.shards, ps_shards.cut_state(weights, slots, self.plan))])
        return self.plan.shard_bytes()

    def claim(self, key: str, steps: int) -> tuple[bool, int]:
        """May `key` push a rollout of `steps` env steps? Claimed now, so the run stops at the budget exactly
        as the local executor does. (allowed, env steps counted so far)."""
        c = self.counters
        allowed = not self.stopping and c.claimed_steps < step_budget(self.hp)
        if allowed:
            c.claimed_steps += steps
            self.claims[key] = steps
        return allowed, c.env_steps

    def forget(self, worker: int):
        """A dead worker's claims go back (its keys start with `worker.`)."""
        for key in [k for k in self.claims if k.startswith(f"{worker}.")]:
            self.counters.claimed_steps -= self.claims.pop(key)
        if self.barrier is not None:
            self.live = {k for k in self.live if not k.startswith(f"{worker}.")}
            self._maybe_close_round()

    def report(self, key: str, thread: int, t_max: int, metrics: dict, acted_version: int, steps: int,
               returns: list, lengths: list, timers: tuple, next_steps: int) -> tuple[int, bool, int]:
        """Count a pushed rollout whose gradient went to the shards (claimed before); (updates, may the key
        push its next rollout of `next_steps`, env steps)."""
        c = self.counters
        c.claimed_steps -= self.claims.pop(key, 0) - steps  # the claim becomes counted steps
        self._count(thread, t_max, metrics, acted_version, steps, returns, lengths, timers)
        allowed, env_steps = self.claim(key, next_steps)
        return c.updates, allowed, env_steps

    # -- --sync ----------------------------------------------------------------------------------------------
    def join_rounds(self, key: str, steps: int) -> tuple[bool, int, int]:
        """A worker thread (re)joins: claim its first rollout; (allowed, env steps, the open round)."""
        allowed, env_steps = self.claim(key, steps)
        if allowed:
            self.live.add(key)
        return allowed, env_steps, self.round

    def report_round(self, key: str, round_: int, thread: int, t_max: int, metrics: dict, steps: int,
                     returns: list, lengths: list, timers: tuple, next_steps: int) -> tuple[bool, int]:
        """Count `key`'s rollout of `round_` (its gradient pieces already at every shard); close the round when
        every live key has reported. (may it take part in the next round, env steps)."""
        c = self.counters
        c.claimed_steps -= self.claims.pop(key, 0) - steps
        on_time = round_ == self.round
        if on_time:
            self.round_reports[key] = bool(metrics["applied"])
        else:
            self.late_pushes += 1  # the round closed without it (its worker was thought dead): dropped
        self._count(thread, t_max, metrics, c.updates, steps, returns, lengths, timers, count_update=False)
        allowed, env_steps = self.claim(key, next_steps)
        if not allowed:
            self.live.discard(key)
        self._maybe_close_round()
        return allowed, env_steps

    def _maybe_close_round(self):
        """Close the open round once every live key has reported: each shard applies the mean gradient, then the
        barrier lets the workers pull."""
        import ray
        if not self.round_reports or not self.live <= set(self.round_reports):
            return
        finite = sorted(k for k, ok in self.round_reports.items() if ok)
        lr = learning_rate_at(self.hp, self.counters.env_steps)
        try:
            ray.get([s.close_round.remote(self.round, finite, lr) for s in self.shards])
        except ray.exceptions.RayActorError as e:
            self.errors.append(f"a parameter shard died ({_cause(e)})")
            self.stopping = True
            return
        c = self.counters
        c.updates += bool(finite)
        self.counts_at_close = (c.env_steps, c.episodes, c.updates)
        self.barrier.release.remote(self.round)
        self.round, self.round_reports = self.round + 1, {}

    def _save_rounds(self) -> str | None:
        """--sync: between rounds every shard holds the same closed rounds; the counters are those of the last
        close."""
        import ray
        try:
            snaps = ray.get([s.state.remote() for s in self.shards])
        except ray.exceptions.RayActorError as e:
            raise RunError(f"a parameter shard died ({_cause(e)}); training stopped - the newest checkpoint in "
                           f"{self.hp.logdir} is intact: run the same command to resume") from None
        return self._save_joined(snaps, self.counts_at_close)

    def _snapshot(self) -> list:
        """One consistent moment of every shard (ps_shards' protocol)."""
        import ray
        try:
            frontier = ps_shards.merge_frontiers(ray.get([s.hold.remote() for s in self.shards]))
            ray.get([s.snapshot_at.remote(frontier) for s in self.shards])
            snaps = [None] * len(self.shards)
            deadline = time.monotonic() + SNAPSHOT_TIMEOUT_S
            while any(x is None for x in snaps):
                force = time.monotonic() > deadline
                todo = [i for i, x in enumerate(snaps) if x is None]
                for i, snap in zip(todo, ray.get([self.shards[i].take_snapshot.remote(force) for i in todo])):
                    snaps[i] = snap
                if any(x is None for x in snaps):
                    time.sleep(0.002)
        except ray.exceptions.RayActorError as e:
            raise RunError(f"a parameter shard died ({_cause(e)}); training stopped - the newest checkpoint in "
                           f"{self.hp.logdir} is intact: run the same command to resume") from None
        short = sorted({k for snap in snaps for k in snap.short})
        if short:
            print(f"warning: checkpoint: the pushes of {', '.join(short)} at the snapshot reached only some shards "
                  f"(their workers died while pushing); saved as they are", file=sys.stderr, flush=True)
        return snaps

    def _save_shards(self) -> str | None:
        snaps = self._snapshot()
        return self._save_joined(snaps, snaps[0].counts[:3])

    def _save_joined(self, snaps: list, counts: tuple) -> str | None:
        """Checkpoint the shards' snapshots, joined into the server's whole learner, with (env steps, episodes,
        updates) of the same moment."""
        weights, slots = ps_shards.join_state(snaps, self.plan)
        ps_shards.load_learner_state(self.learner, weights, slots, snaps[0].iterations)
        return self.store.save(RunCounts(*counts, self.counters.now().wall_time_s), self.run_log.episode_window())

    def weights(self):
        """(version, ObjectRef of every variable's value): version = updates applied so far."""
        import ray
        if self.weights_version != self.counters.updates:
            self.weights_ref, self.weights_version = ray.put(self.learner.wire_weights()), self.counters.updates
        return self.weights_version, self.weights_ref

    def push(self, thread: int, t_max: int, grads: list, metrics: dict, acted_version: int, steps: int,
             returns: list, lengths: list, timers: tuple, obs_for_norm=None) -> tuple[int, bool]:
        """Apply one worker thread's gradient and count its rollout; (version now, stop?)."""
        hp, c = self.hp, self.counters
        if self.stopping or c.env_steps >= step_budget(hp):
            self.late_pushes += 1
            return c.updates, True
        if metrics["applied"]:
            self.learner.apply_gradients(grads, learning_rate_at(hp, c.env_steps))
            if obs_for_norm is not None:
                self.learner.update_obs_norm(*obs_for_norm)
        self._count(thread, t_max, metrics, acted_version, steps, returns, lengths, timers)
        return c.updates, self.stopping or c.env_steps >= step_budget(hp)

    def _count(self, thread, t_max, metrics, acted_version, steps, returns, lengths, timers, count_update=True):
        c = self.counters
        lag = c.updates - acted_version
        applied = bool(metrics["applied"])
        if not applied:
            c.skipped_updates += 1
        elif count_update:  # --sync counts rounds, not contributions
            c.updates += 1
        c.env_steps += steps
        c.episodes += len(returns)
        self.run_log.add_episodes(returns, lengths)
        self.run_log.telemetry.append(Telemetry(thread, t_max, metrics, *timers, lag))
        streak = self.nonfinite_streak[thread] = 0 if applied else self.nonfinite_streak.get(thread, 0) + 1
        if streak >= MAX_CONSECUTIVE_NONFINITE:
            self.errors.append(f"worker thread {thread}: loss or gradients were NaN/inf in {streak} updates in a row "
                               f"(last loss {metrics['loss']}); none of them was applied - lower --learning-rate")
            self.stopping = True

    def tick(self, stop: bool = False) -> tuple[int, int, str, bool]:
        """The driver's heartbeat: write a log row / checkpoint when due; (env steps, episodes, mean return, done).
        stop=True makes every worker stop at its next push."""
        hp, c = self.hp, self.counters
        self.stopping |= stop
        now = time.time()
        if now - self.last_log >= hp.log_interval_s and self.run_log.row_due(c.env_steps):
            self._write_log(now)
            if not self.stopping and (reached := target_reached(hp, self.run_log)) is not None:
                self.stop_line, self.stopping = reached, True
        if now - self.last_ckpt >= hp.checkpoint_interval_s:
            self.save()
            self.last_ckpt = now
        return c.env_steps, c.episodes, self.run_log.mean_return(), self.stopping or c.env_steps >= step_budget(hp)

    def _write_log(self, now: float):
        c = self.counters
        rate = (c.env_steps - self.last_steps) / max(now - self.last_log, 1e-9)
        self.run_log.write(c.now(), c.skipped_updates, self.run_log.take_episodes(), rate,
                           learning_rate_at(self.hp, c.env_steps))
        self.last_log, self.last_steps = now, c.env_steps

    def save(self) -> str | None:
        if self.barrier is not None:
            return self._save_rounds()
        if self.shards:
            return self._save_shards()
        return self.store.save(self.counters.now(), self.run_log.episode_window())

    def finish(self) -> tuple[list, str | None, str | None, str]:
        """Last log row and checkpoint, logs closed, run directory released; (errors, failure, checkpoint, closing
        line) for run_state.report."""
        failure, path = None, None
        try:
            if self.run_log.row_due(self.counters.env_steps):
                self._write_log(time.time())
            path = self.save()
        except RunError as e:
            failure = str(e)
        self.release()
        c = self.counters
        if self.barrier is not None:
            closing = (f"{summary(c, self.run_log)}; rounds applied {c.updates}, contributions skipped (not finite) "
                       f"{c.skipped_updates}, dropped (late) {self.late_pushes}")
        else:
            closing = (f"{summary(c, self.run_log)}; pushes applied {c.updates}, skipped (not finite) "
                       f"{c.skipped_updates}, after the budget {self.late_pushes}")
        if self.stop_line:
            closing = f"{self.stop_line}; {closing}"
        return self.errors, failure, path, closing

    def release(self):
        """After a failure the server cannot save past (a shard died): close the logs and let go of the run
        directory now, so that the command run again resumes at once instead of finding it locked until Ray
        reaps this actor."""
        self.run_log.close()
        self.lock.release()


class ParameterShard(_Actor):
    """--ps-shards > 1: one slice of the weights and optimizer statistics (ps_shards.Shard), created by the driver
    and spread over the nodes; methods run one at a time."""

    def __init__(self, hp: HParams, plan, index: int):
        _ignore_sigint()
        from tf_setup import configure_tensorflow
        configure_tensorflow(dataclasses.replace(hp, tf_intra_op_threads=hp.tf_intra_op_threads or 1))
        self.shard = ps_shards.Shard(hp, plan, index)
        self.rounds = ps_shards.SyncRounds(self.shard) if hp.sync else None
        self.weights_ref = self.weights_version = None

    def load(self, weights: list, slots: dict, iterations: int, counts: tuple):
        self.shard.load(weights, slots, iterations, counts)
        self.weights_version = None

    def weights(self):
        """(version, ObjectRef of this shard's weight pieces), as ParameterServer.weights."""
        import ray
        if self.weights_version != self.shard.version:
            self.weights_ref, self.weights_version = ray.put(self.shard.wire_weights()), self.shard.version
        return self.weights_version, self.weights_ref

    def push(self, key: str, seq: int, grads, learning_rate: float, tally: tuple) -> int:
        return self.shard.push(key, seq, grads, learning_rate, ps_shards.Tally(*tally))

    def hold(self) -> dict:
        return self.shard.hold()

    def snapshot_at(self, frontier: dict):
        self.shard.snapshot_at(frontier)

    def take_snapshot(self, force: bool = False):
        return self.shard.take_snapshot(force)

    # --sync
    def contribute(self, key: str, round_: int, grads) -> bool:
        return self.rounds.contribute(key, round_, grads)

    def close_round(self, round_: int, keys: list, learning_rate: float) -> int:
        return self.rounds.close(round_, keys, learning_rate)

    def state(self):
        return self.shard.state()


class RoundBarrier:
    """--sync: worker threads wait here for the round they contributed to to close (an asyncio actor: thousands of
    waiters cost no thread and no polling). The server releases each round once the shards applied it."""

    def __init__(self):
        _ignore_sigint()
        self.closed = -1  # the newest round closed
        self.changed = None  # asyncio.Condition, made in the actor's event loop

    def _condition(self):
        import asyncio
        if self.changed is None:
            self.changed = asyncio.Condition()
        return self.changed

    async def wait(self, round_: int) -> int:
        """Return once round `round_` is closed; the newest closed round."""
        changed = self._condition()
        async with changed:
            await changed.wait_for(lambda: self.closed >= round_)
        return self.closed

    async def release(self, round_: int):
        changed = self._condition()
        async with changed:
            self.closed = max(self.closed, round_)
            changed.notify_all()


class RolloutWorker(_Actor):
    """--threads learner threads, each with its own vector env, acting with this worker's copy of the weights."""

    def __init__(self, hp: HParams, index: int, server_name: str, specs: tuple, shard_names: tuple = (),
                 plan=None):
        _ignore_sigint()
        from tf_setup import configure_tensorflow
        # Ray gives this process `threads` CPUs: size TF's and the emulators' thread pools to that, not the node.
        hp = self.hp = dataclasses.replace(hp, tf_intra_op_threads=hp.tf_intra_op_threads or hp.threads,
                                           env_threads=hp.env_threads or 1)
        configure_tensorflow(hp)
        from learner import make_learner
        obs_spec, action_spec = specs
        import ray
        # Looked up by name, not passed: a restarted actor gets its constructor arguments again, and a handle among
        # them would pin an object Ray may have dropped by then.
        self.index, self.server = index, ray.get_actor(server_name)
        self.shards, self.plan = [ray.get_actor(n) for n in shard_names], plan
        self.barrier = ray.get_actor(f"{server_name}-barrier") if hp.sync else None
        self.incarnation = f"{os.getpid()}-{time.time_ns()}"  # a restarted worker numbers its pushes afresh
        self.acting = make_learner(hp, action_spec, obs=obs_spec)
        # V-trace takes the gradient with the newest weights, in a second copy: the acting copy keeps the weights
        # it acted with until its next pull, as an actor of a large cluster would.
        self.fresh = make_learner(hp, action_spec, obs=obs_spec) if hp.off_policy_correction == "vtrace" else None
        self.versions = {id(self.acting): -1, id(self.fresh): -1}
        self.shard_versions = {}  # --ps-shards: learner -> every shard's version at its last pull
        factory = env_factory(hp)
        self.agents = []
        for i in range(hp.threads):
            g = self.global_thread(i)
            self.agents.append(BatchAgents(factory(g, hp.envs_per_thread), seed=hp.seed + g * hp.envs_per_thread,
                                           episodic_life=hp.episodic_life))
            self.agents[-1].use_state_size(self.acting.net.state_size)
        self.pull(self.acting)
        self.errors: list[str] = []
        self.pushes = 0
        self.count_lock = threading.Lock()

    def global_thread(self, i: int) -> int:
        return self.index * self.hp.threads + i

    def pull(self, learner) -> int:
        """Fetch the newest weights into `learner` (skipped when it has them); their version."""
        import ray
        if self.shards:
            return self._pull_shards(learner)
        version, ref = ray.get(self.server.weights.remote())
        if version != self.versions[id(learner)]:
            learner.set_weights(ray.get(ref))
            self.versions[id(learner)] = version
        return version

    def _pull_shards(self, learner) -> int:
        """Every shard's slice, joined (only when some shard moved); shard 0's version stands for the set."""
        import ray
        answers = ray.get([s.weights.remote() for s in self.shards])
        versions = tuple(v for v, _ in answers)
        if versions != self.shard_versions.get(id(learner)):
            pieces = ray.get([ref for _, ref in answers])
            learner.set_weights(ps_shards.join(pieces, self.plan), trainable_only=True)
            self.shard_versions[id(learner)] = versions
            self.versions[id(learner)] = versions[0]
        return versions[0]

    def run(self) -> int:
        """Train until the server says stop; the number of pushes this worker made (RunError if a thread
        failed)."""
        threads = [threading.Thread(target=self._thread, args=(i,), daemon=True) for i in range(self.hp.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self.errors:
            raise RunError(self.errors[0])
        return self.pushes

    def _rollout(self, agent, policy, t_max: int, pull: bool):
        """Collect one rollout and take its gradient: (rollout, episodes, grads, metrics, acted version, timers)."""
        if pull:
            self.pull(self.acting)
        acted_version = self.versions[id(self.acting)]
        t0 = time.perf_counter()
        agent.timers.update(env=0.0, inference=0.0)
        rollout, episodes = agent.collect(policy, t_max)
        if self.hp.overlap_env_step:
            agent.send_pending()
        t1 = time.perf_counter()
        learner = self.acting
        if self.fresh is not None:
            self.pull(self.fresh)
            learner = self.fresh
        grads, metrics = learner.gradients_on(rollout)
        t2 = time.perf_counter()
        timers = (agent.timers["env"], agent.timers["inference"], t2 - t1, t2 - t0)
        return rollout, episodes, grads, {k: v.item() for k, v in metrics.items()}, acted_version, timers

    def _thread(self, i: int):
        import ray
        hp, agent, g = self.hp, self.agents[i], self.global_thread(i)
        t_max = hp.t_max_of(g)
        policy = self.acting.policy(thread=0, t_max=t_max)  # one device here; gSDE's noise per this rollout length
        in_flight, updates = None, 0
        try:
            if self.barrier is not None:
                return self._sync_loop(agent, policy, g, i, t_max)
            if self.shards:
                return self._sharded_loop(agent, policy, g, i, t_max)
            while True:
                rollout, episodes, grads, metrics, acted_version, timers = self._rollout(
                    agent, policy, t_max, updates % hp.weight_pull_interval == 0)
                if in_flight is not None and ray.get(in_flight)[1]:
                    in_flight = None
                    break
                norm = (rollout.obs, rollout.valid) if hp.normalize_obs else None
                in_flight = self.server.push.remote(g, t_max, grads, metrics, acted_version, rollout.rewards.size,
                                                    episodes.returns, episodes.lengths, timers, norm)
                with self.count_lock:
                    self.pushes += 1
                updates += 1
            if in_flight is not None:
                ray.get(in_flight)
        except Exception as e:  # noqa: BLE001 - the driver reports it and stops the run
            self.errors.append(f"thread {i}: {type(e).__name__}: {_cause(e)}")

    def _sharded_loop(self, agent, policy, g: int, i: int, t_max: int):
        """--ps-shards > 1: each rollout's gradient goes in slices to the shards, its counts to the server (which
        granted the push beforehand: the claim). Push n+1 leaves only once push n is acknowledged everywhere."""
        import ray
        hp, key = self.hp, f"{self.index}.{i}:{self.incarnation}"
        steps = t_max * hp.envs_per_thread
        allowed, env_steps = ray.get(self.server.claim.remote(key, steps))
        in_flight, seq = None, 0
        while allowed:
            rollout, episodes, grads, metrics, acted_version, timers = self._rollout(
                agent, policy, t_max, seq % hp.weight_pull_interval == 0)
            if in_flight is not None:
                _, allowed, env_steps = ray.get(in_flight)[0]
                in_flight = None
                if not allowed:
                    break
            pieces = ps_shards.cut(grads, self.plan) if metrics["applied"] else [None] * len(self.shards)
            tally = (rollout.rewards.size, len(episodes.returns))
            lr = learning_rate_at(hp, env_steps)
            in_flight = [self.server.report.remote(key, g, t_max, metrics, acted_version, rollout.rewards.size,
                                                   episodes.returns, episodes.lengths, timers, steps)]
            in_flight += [shard.push.remote(key, seq, p, lr, tally) for shard, p in zip(self.shards, pieces)]
            with self.count_lock:
                self.pushes += 1
            seq += 1


    def _sync_loop(self, agent, policy, g: int, i: int, t_max: int):
        """--sync: act with the round's weights, give the gradient's slices to the shards, report, wait for the
        round to close, pull the new weights."""
        import ray
        hp, key = self.hp, f"{self.index}.{i}:{self.incarnation}"
        steps = t_max * hp.envs_per_thread
        allowed, env_steps, round_ = ray.get(self.server.join_rounds.remote(key, steps))
        while allowed:
            self.pull(self.acting)
            rollout, episodes, grads, metrics, _, timers = self._rollout(agent, policy, t_max, pull=False)
            pieces = ps_shards.cut(grads, self.plan) if metrics["applied"] else [None] * len(self.shards)
            # The report goes once every shard holds the slices: a round the server closes has all of them.
            ray.get([shard.contribute.remote(key, round_, p) for shard, p in zip(self.shards, pieces)])
            allowed, env_steps = ray.get(self.server.report_round.remote(
                key, round_, g, t_max, metrics, rollout.rewards.size, episodes.returns, episodes.lengths, timers,
                steps))
            with self.count_lock:
                self.pushes += 1
            if allowed:
                round_ = ray.get(self.barrier.wait.remote(round_)) + 1


def read_specs(hp: HParams) -> tuple:
    """(ObsSpec, ActionSpec) of hp's env, from one throwaway env built here on the driver."""
    env = env_factory(hp)(0, 1)
    try:
        return envs.env_specs(env, hp.env_id)
    finally:
        env.close()


class ShardSet(NamedTuple):
    handles: list  # the ParameterShard actors
    names: tuple
    plan: object  # ps_shards.ShardPlan
    sizes: list  # bytes of weights per shard
    barrier: object  # --sync: the RoundBarrier actor, else None


def shard_nodes(ray) -> list[str]:
    """The nodes shards go to, round robin: every alive node, the driver's (which holds the server) last. Pinned
    hard: Ray's SPREAD strategy, and even a soft node affinity, were seen to put actors that reserve no CPU on one
    node, so the driver picks."""
    here = ray.get_runtime_context().get_node_id()
    alive = sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))
    return [n for n in alive if n != here] + [here]


def start_shards(ray, server, server_name: str, hp: HParams) -> ShardSet:
    """Create hp.ps_shards shard actors spread over the nodes (and, with --sync, the round barrier) and have the
    opened `server` load them. The caller must keep the ShardSet: Ray ends an actor once no handle to it is left,
    named or not."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    plan = ray.get(server.shard_plan.remote())
    names = tuple(f"{server_name}-shard{s}" for s in range(plan.num_shards))
    shard_class = ray.remote(ParameterShard)
    nodes = shard_nodes(ray)
    shards = [shard_class.options(num_cpus=0, max_restarts=0, name=n,
                                  scheduling_strategy=NodeAffinitySchedulingStrategy(nodes[s % len(nodes)], soft=False))
              .remote(hp, plan, s) for s, n in enumerate(names)]
    barrier, barrier_name = None, ""
    if hp.sync:
        barrier_name = f"{server_name}-barrier"
        barrier = ray.remote(RoundBarrier).options(num_cpus=0, max_restarts=0, name=barrier_name).remote()
    sizes = ray.get(server.attach_shards.remote(names, barrier_name))
    return ShardSet(shards, names, plan, sizes, barrier)


class Driver:
    """The process the user started: connects, creates the actors, restarts dead workers, shows progress, turns
    signals into a stop, and prints the end report."""

    def __init__(self, hp: HParams, out=sys.stdout):
        self.hp, self.out = hp, out
        self.signal_received = None
        self.shards = None  # --ps-shards / --sync: the ShardSet, held for the whole run

    def log(self, msg: str):
        print(msg, file=self.out, flush=True)

    def run(self) -> int:
        hp = self.hp
        specs = read_specs(hp)  # a bad env id fails here, before Ray starts
        ray = connect(hp)
        try:
            return self._run(ray, specs)
        finally:
            ray.shutdown()

    def _run(self, ray, specs) -> int:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        hp = self.hp
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        server_name = f"a3c-parameter-server-{os.getpid()}-{time.time_ns()}"
        server = ray.remote(ParameterServer).options(num_cpus=0, max_restarts=0, scheduling_strategy=here,
                                                     name=server_name).remote(hp, specs)
        try:
            hp, lines = ray.get(server.open.remote())
        except ray.exceptions.RayTaskError as e:
            raise ConfigError(_cause(e)) from None
        for line in lines:
            self.log(line)
        pid, node = ray.get(server.where.remote())
        self.log(f"parameter server: pid {pid} on {node}")
        sharded = hp.ps_shards > 1 or hp.sync
        shard_names, plan = self._start_shards(ray, server, server_name) if sharded else ((), None)
        worker_class = ray.remote(RolloutWorker).options(num_cpus=hp.threads, num_gpus=hp.worker_gpus,
                                                         max_restarts=MAX_WORKER_RESTARTS)
        workers = [worker_class.remote(hp, i, server_name, specs, shard_names, plan) for i in range(hp.workers)]
        for i, (pid, node) in enumerate(ray.get([w.where.remote() for w in workers])):
            self.log(f"rollout worker {i}: pid {pid} on {node}, {hp.threads} threads x {hp.envs_per_thread} envs")
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            return self._loop(ray, server, workers)
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def _start_shards(self, ray, server, server_name: str) -> tuple[tuple, object]:
        """--ps-shards S: the shard actors, logged; (their names, the plan)."""
        try:
            self.shards = start_shards(ray, server, server_name, self.hp)
        except ray.exceptions.RayError as e:
            raise RunError(f"the parameter shards did not start: {_cause(e)}") from None
        plan = self.shards.plan
        for s, ((pid, node), size) in enumerate(zip(ray.get([x.where.remote() for x in self.shards.handles]),
                                                     self.shards.sizes)):
            self.log(f"parameter shard {s}: pid {pid} on {node}, {size / 2**20:.2f} MiB of weights "
                     f"({len(plan.pieces[s])} pieces)")
        if self.hp.sync:
            self.log(f"--sync: each round averages the gradients of all {self.hp.workers * self.hp.threads} worker "
                     f"threads ({self.hp.workers * self.hp.threads * self.hp.t_max * self.hp.envs_per_thread} env "
                     f"steps) and applies them once")
        return self.shards.names, plan

    def _loop(self, ray, server, workers) -> int:
        from tqdm import tqdm
        hp = self.hp
        runs = {w.run.remote(): i for i, w in enumerate(workers)}  # each worker's training call
        probes = {}  # after a death: a where() call that returns once Ray has the worker back
        recovering = {}  # worker -> (time of its death, time to send the next probe)
        restarts = [0] * len(workers)
        errors, pushes = [], 0
        bar = tqdm(total=step_budget(hp), unit="step", unit_scale=True, dynamic_ncols=True,
                   disable=not hp.progress_bar, file=sys.stderr)
        try:
            stop = False
            while runs or recovering:
                ready, _ = ray.wait(list(runs) + list(probes), num_returns=1, timeout=TICK_S)
                for ref in ready:
                    if ref in probes:  # the restarted worker answers: give it its training call back
                        i = probes.pop(ref)
                        try:
                            ray.get(ref)
                        except ray.exceptions.RayActorError:
                            recovering[i] = (recovering[i][0], time.monotonic() + 1.0)  # not up yet: ask again
                            continue
                        del recovering[i]
                        runs[workers[i].run.remote()] = i
                        continue
                    i = runs.pop(ref)
                    try:
                        pushes += ray.get(ref)
                    except ray.exceptions.RayActorError as e:
                        restarts[i] += 1
                        if restarts[i] > MAX_WORKER_RESTARTS:
                            errors.append(f"rollout worker {i} died {restarts[i]} times (last: {_cause(e)})")
                            stop = True
                            continue
                        self.log(f"rollout worker {i} died ({_cause(e)}); Ray restarts it "
                                 f"(restart {restarts[i]} of {MAX_WORKER_RESTARTS})")
                        server.forget.remote(i)  # its claims (--ps-shards) go back
                        recovering[i] = (time.monotonic(), time.monotonic())
                    except ray.exceptions.RayTaskError as e:
                        errors.append(f"rollout worker {i} failed: {_cause(e)}")
                        stop = True
                now = time.monotonic()
                for i, (died, probe_at) in list(recovering.items()):
                    if now - died > RESTART_TIMEOUT_S:
                        errors.append(f"rollout worker {i} did not come back within {RESTART_TIMEOUT_S:.0f} s of "
                                      f"its death")
                        stop = True
                        del recovering[i]
                    elif probe_at <= now and i not in probes.values():
                        probes[workers[i].where.remote()] = i
                        recovering[i] = (died, float("inf"))  # the next probe is scheduled when this one fails
                stop |= self.signal_received is not None
                try:
                    steps, episodes, mean_return, done = ray.get(server.tick.remote(stop))
                except ray.exceptions.RayError as e:
                    return self._server_died(e, server)
                bar.update(min(steps, step_budget(hp)) - bar.n)
                bar.set_postfix(ret=mean_return, eps=episodes, refresh=False)
                if stop:
                    if runs:
                        pushes += self._join(ray, runs, workers)
                    break
        finally:
            bar.close()
        if self.signal_received is not None:
            print(f"\n{signal.Signals(self.signal_received).name}: stopped all workers; saving a checkpoint",
                  file=sys.stderr, flush=True)
        try:
            server_errors, failure, path, closing = ray.get(server.finish.remote())
        except ray.exceptions.RayError as e:
            return self._server_died(e, server)
        self.log(f"pushes sent by the workers still alive at the end: {pushes}")
        return report(errors + server_errors, RunError(failure) if failure else None, path, closing, self.log)

    def _join(self, ray, runs: dict, workers) -> int:
        """Give the workers JOIN_TIMEOUT_S to see the stop and return; kill the rest. Their pushes."""
        done, _ = ray.wait(list(runs), num_returns=len(runs), timeout=JOIN_TIMEOUT_S)
        pushes = 0
        for ref, i in runs.items():
            if ref not in done:
                self.log(f"rollout worker {i} did not stop within {JOIN_TIMEOUT_S:.0f} s; killed")
                ray.kill(workers[i])
                continue
            try:
                pushes += ray.get(ref)
            except ray.exceptions.RayError:
                pass  # a worker that failed while stopping: the server has what it pushed
        return pushes

    def _server_died(self, e, server) -> int:
        import ray
        # The workers' run() calls still pending fail with the server or its shard; this line reports it, so Ray
        # must not print each of them as an "Unhandled error" when they are dropped.
        os.environ["RAY_IGNORE_UNHANDLED_ERRORS"] = "1"
        if isinstance(getattr(e, "cause", None), RunError):  # alive, but it could not go on (a shard died)
            with contextlib.suppress(ray.exceptions.RayError, ray.exceptions.GetTimeoutError):
                ray.get(server.release.remote(), timeout=JOIN_TIMEOUT_S)
            print(f"error: {e.cause}", file=sys.stderr, flush=True)
            return 1
        print(f"error: the parameter server died ({_cause(e)}); training stopped - the newest checkpoint in "
              f"{self.hp.logdir} is intact: run the same command to resume", file=sys.stderr, flush=True)
        return 1

    def _on_signal(self, signum, frame):
        self.signal_received = signum  # only a flag: the loop above turns it into a stop within TICK_S


def main(hp: HParams) -> int:
    """a3c.py's entry for --executor ray; the exit status."""
    try:
        return Driver(hp).run()
    except (ConfigError, RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
