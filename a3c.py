"""Batched-agent A3C trainer: the command line and the Trainer.

    python a3c.py                       # defaults from hparams.py (Pong)
    python a3c.py --preset breakout --threads 2 --learning-rate 1e-3
    python a3c.py --logdir runs/pong    # again: resumes from the latest checkpoint there
    python a3c.py --executor ray --ray-address auto --workers 32   # on a Ray cluster: ray_executor.py

A few Python threads each own a vector env of `envs_per_thread` games (envs.py). They share ONE learner
(learner.py: the policy-value network, on the GPU when there is one, and its optimizer). Each thread repeats:
claim the env steps of a rollout; collect a `[t_max, B]` rollout with the shared policy (batch_agents.py);
have the learner compute n-step returns / GAE, the clipped gradient of that batch, and apply it to the shared
variables without a lock; count the steps, episodes and the update.

Faults never cost more than the work since the last checkpoint: SIGINT/SIGTERM stop all threads and save; a
failing thread or a NaN streak stops the run with the last good state saved; checkpoints are crash-safe
(checkpoints.py). Reporting is run_log.py's.
The counters, opening and resuming a run directory and the end report are run_state.py's, shared with the Ray
executor, which this file hands `--executor ray` to.
Owns: the threads, the step budget, when to log and save, signals, the exit status of local runs.
Must not: contain TensorFlow ops, file formats or env details - those live in the modules named above.
"""
from __future__ import annotations

import contextlib
import shutil
import signal
import sys
import threading
import time

import envs
import hparams as hparams_lib
from batch_agents import BatchAgents
from checkpoints import CheckpointStore, LogdirLock, prepare_writable_dir
from errors import CheckpointError, ConfigError, RunError, first_line, warn
from hparams import HParams, learning_rate_at, step_budget
from run_log import RunLog, Telemetry
from run_state import Counters, open_run, report, summary, target_reached
from tf_setup import configure_tensorflow

MAX_CONSECUTIVE_NONFINITE = 10  # skipped updates in a row before we call the run diverged
JOIN_TIMEOUT_S = 30.0  # at exit, how long to wait for a learner thread to finish its rollout
PAUSE_TIMEOUT_S = 30.0  # before a checkpoint, how long to wait for rollouts in flight to finish


class Trainer:
    def __init__(self, hp: HParams, env_factory: envs.EnvFactory | None = None, out=sys.stdout):
        self.hp = hp
        self.out = out
        self.env_factory = env_factory or envs.vector_env_factory(hp)
        self.stop_event = threading.Event()
        self.paused = False  # learner threads hold between updates while a checkpoint is written
        self.errors: list[str] = []
        self.counters = Counters()
        self.run_log = RunLog(hp)
        self.signal_received = None
        self.agents: list[BatchAgents] = []
        self.lock = None
        self.store = None
        self.save_replay = False  # decided in setup: ACER, --save-replay, and room on the disk
        self.replay_saved_at = time.monotonic()  # the memories start empty: the first is due an interval in

    def log(self, msg: str):
        print(msg, file=self.out, flush=True)

    # -- setup ------------------------------------------------------------------------------------------
    def setup(self):
        """Create envs, learner and checkpoint store; resume from the newest readable checkpoint in the logdir."""
        prepare_writable_dir(self.hp.logdir)
        self.lock = LogdirLock(self.hp.logdir)
        try:
            self._setup_locked()
        except BaseException:
            self.close()
            raise

    def _setup_locked(self):
        hp = self.hp
        configure_tensorflow(hp)
        from learner import check_devices  # imports TensorFlow: only once the flags and logdir are good
        check_devices(hp)
        self.store = CheckpointStore(hp.logdir, hp.checkpoints_kept)
        for i in range(hp.threads):
            self.agents.append(BatchAgents(self.env_factory(i, hp.envs_per_thread),
                                           seed=hp.seed + i * hp.envs_per_thread, episodic_life=hp.episodic_life))
        specs = envs.env_specs(self.agents[0].env, hp.env_id)
        self.hp, self.learner = open_run(hp, specs, self.store, self.run_log, self.counters, self.log)
        hp = self.hp
        for agent in self.agents:
            agent.use_state_size(self.learner.net.state_size)
        self.save_replay = self.learner.keeps_replay and hp.save_replay and self._replay_fits_disk()
        self.log(f"network on {', '.join(self.learner.devices)} in {self.learner.precision}; "
                 f"{hp.threads} threads x {hp.envs_per_thread} envs, {envs.vector_env_workers(hp)}, "
                 f"TF intra/inter-op {hp.resolved_intra_op_threads()}/{hp.resolved_inter_op_threads()}")
        # Trace both functions once here, before threads race to trace them.
        self.agents[0].pending = self.agents[0].act(self.learner.policy())
        self.counters.session_start = time.time()

    # -- checkpoints -----------------------------------------------------------------------------------
    def _replay_fits_disk(self) -> bool:
        """--save-replay stays on if the logdir's disk has room for the memories uncompressed (their file is
        much smaller: Pong's deflates 42x); otherwise a warning turns it off."""
        need, free = self.learner.replay_bytes, shutil.disk_usage(self.hp.logdir).free
        if free < need:
            warn(f"--save-replay is off: the replay memories take up to {need / 2**30:.2f} GiB and {self.hp.logdir} "
                 f"has {free / 2**30:.2f} GiB free; a resume will start with an empty memory")
            return False
        every = ("each checkpoint" if self.hp.replay_save_interval_s <= self.hp.checkpoint_interval_s else
                 f"a checkpoint every {self.hp.replay_save_interval_s:g} s and with the last one")
        self.log(f"replay: saved with {every} (checkpoints/replay-N.npz, compressed; at most "
                 f"{need / 2**30:.2f} GiB uncompressed, {free / 2**30:.0f} GiB free)")
        return True

    @contextlib.contextmanager
    def _workers_paused(self, timeout_s: float = PAUSE_TIMEOUT_S):
        """Hold the learner threads between updates, so a checkpoint's weights, optimizer slots and counters
        belong together. A thread still busy after timeout_s (a hung env) is not waited for. Yields whether every
        thread is held (only then are the replay memories still)."""
        c = self.counters
        with c.changed:
            self.paused = True
            deadline = time.monotonic() + timeout_s
            while c.in_flight and time.monotonic() < deadline:
                c.changed.wait(0.05)
            all_held = not c.in_flight
        try:
            yield all_held
        finally:
            with c.changed:
                self.paused = False
                c.changed.notify_all()

    def save(self, pause_timeout_s: float = PAUSE_TIMEOUT_S, with_replay: bool | None = None) -> str | None:
        """Checkpoint weights, optimizer slots, counters and the episode window, and ACER's replay memories if
        --save-replay, no thread is stuck mid-update and `with_replay` (None: once --replay-save-interval-s has
        passed since they were last written); returns the checkpoint prefix."""
        started = time.monotonic()  # the interval runs from save to save, as the checkpoints' does
        if with_replay is None:
            # 1 s of slack: k checkpoint intervals must count as k, however the main loop's 0.5 s ticks fell
            with_replay = started - self.replay_saved_at >= self.hp.replay_save_interval_s - 1.0
        with self._workers_paused(pause_timeout_s) as all_held:
            with self.counters.lock:
                counts, window = self.counters.now(), self.run_log.episode_window()
            replay = self.learner.replay_arrays() if self.save_replay and with_replay and all_held else None
            t0 = time.perf_counter()
            path = self.store.save(counts, window, replay)
            if replay and (size := self.store.arrays_size(path)):
                self.replay_saved_at = started
                in_memory = sum(a.nbytes for a in replay.values())
                self.log(f"replay: {size / 2**20:,.0f} MiB saved with {path} ({in_memory / 2**20:,.0f} MiB in "
                         f"memory); the save took {time.perf_counter() - t0:.1f} s")
            return path

    # -- the learner threads ---------------------------------------------------------------------------
    def _claim_rollout(self, steps: int):
        """Reserve the env steps of one rollout; (learning rate, updates so far), or None when the run is over."""
        hp, c = self.hp, self.counters
        with c.changed:
            while self.paused and not self.stop_event.is_set():
                c.changed.wait(0.5)
            if self.stop_event.is_set() or c.claimed_steps >= step_budget(hp):
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
                self.run_log.add_episodes(episodes.returns, episodes.lengths)
            c.changed.notify_all()
            return c.updates

    def worker(self, index: int):
        hp, agent = self.hp, self.agents[index]
        policy = self.learner.policy(thread=index)
        t_max = hp.t_max_of(index)
        steps = t_max * agent.num_envs
        consecutive_nonfinite = 0
        try:
            while (claim := self._claim_rollout(steps)) is not None:
                lr, updates_at_start = claim
                episodes, metrics = None, {"applied": False}
                try:
                    t0 = time.perf_counter()
                    agent.timers.update(env=0.0, inference=0.0)
                    self.learner.refresh(index)
                    rollout, episodes_ = agent.collect(policy, t_max)
                    if hp.overlap_env_step:
                        agent.send_pending()  # the envs step on their own threads during the update
                    t1 = time.perf_counter()
                    metrics = self.learner.train_on(rollout, lr, thread=index)
                    t2 = time.perf_counter()
                    episodes = episodes_
                finally:
                    updates_now = self._finish_rollout(steps, episodes, metrics["applied"])
                lag = max(updates_now - updates_at_start - 1, 0)
                self.run_log.telemetry.append(Telemetry(index, t_max, metrics, agent.timers["env"],
                                                        agent.timers["inference"], t2 - t1, t2 - t0, lag))
                every = hp.histogram_interval_updates
                if every and metrics["applied"] and updates_now % every == 0:
                    self.run_log.histograms.append(self.learner.histograms(rollout))
                if metrics["applied"] and self.run_log.dead_units_wanted.is_set():
                    self.run_log.dead_units_wanted.clear()  # two threads may both pass: harmless, averaged
                    self.run_log.dead_units.append(self.learner.dead_units(rollout))
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
        c.session_start = time.time()
        try:
            self.run_log.open(c.env_steps)
            self.run_log.write_graphs(self.learner.graphs())
        except RunError:
            self.close()  # nothing was trained yet: release the envs and the logdir, main reports the error
            raise
        # The handlers stay until the final checkpoint is written: a second Ctrl-C must not interrupt it.
        previous_handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        threads = [threading.Thread(target=self.worker, args=(i,), name=f"learner-{i}", daemon=True)
                   for i in range(hp.threads)]
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
                    steps, episodes = c.env_steps, c.episodes
                self.run_log.show(steps, episodes)
                if now - last_log >= hp.log_interval_s and self.run_log.row_due(steps):
                    self._write_log(steps, (steps - last_steps) / (now - last_log))
                    last_log, last_steps = now, steps
                    if (reached := target_reached(hp, self.run_log)) is not None:
                        self.log(reached)
                        self.stop_event.set()
                if now - last_ckpt >= hp.checkpoint_interval_s:
                    self.save()
                    last_ckpt = now
        except RunError as e:
            failure = e
        finally:
            self.stop_event.set()
            stuck = self._join(threads)
            self.run_log.close_bar()
        if self.signal_received is not None:
            print(f"\n{signal.Signals(self.signal_received).name}: stopped all threads; saving a checkpoint",
                  file=sys.stderr, flush=True)
        path = None
        try:
            if failure is None and self.run_log.row_due(c.env_steps):
                self._write_log(c.env_steps, (c.env_steps - last_steps) / max(time.time() - last_log, 1e-9))
            if not isinstance(failure, CheckpointError):  # a failed save is not retried: the disk is likely full
                path = self.save(pause_timeout_s=0.0 if stuck else PAUSE_TIMEOUT_S, with_replay=True)
        except RunError as e:
            failure = RunError(f"{failure}; also {e}") if failure else e
        self.run_log.close()
        for s, h in previous_handlers.items():
            signal.signal(s, h)
        self.close(skip_threads=stuck)
        return report(self.errors, failure, path, summary(c, self.run_log), self.log)

    def _write_log(self, steps: int, steps_per_s: float):
        c = self.counters
        with c.lock:
            counts, skipped = c.now()._replace(env_steps=steps), c.skipped_updates
            episodes = self.run_log.take_episodes()
        self.run_log.write(counts, skipped, episodes, steps_per_s, learning_rate_at(self.hp, steps))

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


def main(argv=None) -> int:
    try:
        hp = hparams_lib.parse_args(argv)
        if hp.executor == "ray":
            import ray_executor
            return ray_executor.main(hp)
        trainer = Trainer(hp, env_factory=envs.factory_from_environment())
        trainer.setup()
    except (ConfigError, RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted during start-up; nothing was changed", file=sys.stderr)
        return 130
    try:
        return trainer.run()
    except RunError as e:  # only before the first step (the logs cannot be opened); later failures are reported
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
