"""What every executor (a3c.py's threads, ray_executor.py's parameter server) does with a run directory.

Owns: the exact global counters, opening a run (the network resolved for the env's specs, the saved config
checked, the learner built, the newest checkpoint restored, config.json written) and the run's end report.
Must not: start threads or actors, step envs, or hold TensorFlow ops (learner.py) or file formats
(checkpoints.py).
"""
from __future__ import annotations

import json
import sys
import threading
import time

from checkpoints import CheckpointStore, RunCounts, check_compatible, check_specs, ckpt_number
from errors import RunError, warn
from hparams import HParams
from run_log import RETURN_WINDOW, RunLog
from specs import to_config as specs_to_config


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
        self.session_start = time.time()

    def now(self) -> RunCounts:
        """The counts now, wall time included (call with the lock held)."""
        return RunCounts(self.env_steps, self.episodes, self.updates,
                         self.wall_time_s + time.time() - self.session_start)


def open_run(hp: HParams, specs: tuple, store: CheckpointStore, run_log: RunLog, counters: Counters, log):
    """Check the run directory against hp and the env's (ObsSpec, ActionSpec), build the learner, restore the
    newest checkpoint into it and the counters, write config.json; (hp with --network resolved, learner).
    ConfigError / CheckpointError when the directory holds an incompatible or unreadable run."""
    from learner import make_learner, resolve_network  # imports TensorFlow: only once the flags are known good
    obs_spec, action_spec = specs
    hp = resolve_network(hp, obs_spec)  # --network auto: a3c for frames, mlp for flat observations
    saved_config = store.saved_config()
    if saved_config is not None:
        check_compatible(saved_config, hp, hp.logdir)
        check_specs(saved_config, hp, specs, hp.logdir)
    learner = make_learner(hp, action_spec, obs=obs_spec)
    for line in getattr(learner, "startup_lines", ()):  # e.g. ACER's replay memory budget
        log(line)
    resumed = store.resume(learner.checkpoint_objects())
    if resumed:
        counters.env_steps = counters.claimed_steps = resumed.counts.env_steps
        counters.episodes, counters.updates, counters.wall_time_s = resumed.counts[1:]  # env_steps first
        run_log.restore_window(resumed.window)
        log(f"resuming from step {counters.env_steps} ({resumed.prefix})")
        if learner.keeps_replay and hp.save_replay:
            restore_replay(learner, store, resumed.prefix, log)
    config = dict(hp.to_dict(), **specs_to_config(obs_spec, action_spec))
    store.write_config(config)
    log("config:\n" + json.dumps(config, indent=2, sort_keys=True))
    return hp, learner


def restore_replay(learner, store: CheckpointStore, prefix: str, log):
    """Refill the learner's replay memories from the newest replay file (saved with checkpoint `prefix`, or with
    an earlier one under --replay-save-interval-s); a missing, damaged or mismatched file warns and leaves them
    empty (a resume never fails for it)."""
    loaded = store.load_arrays(prefix)
    if loaded is None:
        return
    arrays, saved_at = loaded
    source = f"ckpt-{saved_at}"
    try:
        restored = learner.load_replay_arrays(arrays)
    except ValueError as e:
        warn(f"the replay memory saved with {source} does not fit this run ({e}); it starts empty")
        return
    resumed_at = ckpt_number(prefix)
    older = "" if saved_at == resumed_at else f" (the newest replay file; the weights are ckpt-{resumed_at}'s)"
    log(f"replay: restored {restored:,} transitions saved with {source}{older}")


def target_reached(hp: HParams, run_log: RunLog) -> str | None:
    """Why the run should stop now that --stop-at-mean-return is met (a line for the log), or None."""
    if hp.stop_at_mean_return is None:
        return None
    mean = run_log.full_window_mean()
    if mean is None or mean < hp.stop_at_mean_return:
        return None
    return (f"mean return of the last {RETURN_WINDOW} episodes {mean:.2f} >= --stop-at-mean-return "
            f"{hp.stop_at_mean_return:g}: stopping")


def summary(counters: Counters, run_log: RunLog) -> str:
    """The closing numbers of a run that ended well."""
    c = counters
    return (f"{c.env_steps} env steps, {c.episodes} episodes, {c.updates} updates, mean return "
            f"(last {len(run_log.recent_returns)}) {run_log.mean_return()}")


def report(errors: list, failure: RunError | None, path: str | None, closing: str, log) -> int:
    """One line on stderr for a failure (else `saved PATH: closing` through `log`); the exit status: 0 done or
    stopped, 1 a learner thread or worker failed, 2 logs or checkpoints could not be written."""
    saved = f"last good state saved in {path}" if path else f"final checkpoint not written ({failure})"
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        print(f"error: {errors[0]}{more}; all threads stopped; {saved}", file=sys.stderr, flush=True)
        return 1
    if failure is not None:
        print(f"error: {failure}" + (f"; training stopped, {saved}" if path else ""), file=sys.stderr, flush=True)
        return 2
    log(f"saved {path}: {closing}")
    return 0
