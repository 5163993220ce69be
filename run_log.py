"""What a run reports: the tqdm bar, TensorBoard scalars, progress.csv, and the telemetry behind them.

Learner threads hand in what they saw (`add_episodes` with the trainer's counters lock held, `telemetry.append`
for each update); the trainer's main thread calls `show` twice a second and `write` every --log-interval-s.

TensorBoard: charts/episode_return, charts/episode_length, charts/mean_return_100, charts/steps_per_second,
charts/learning_rate, charts/episodes, charts/skipped_updates, charts/policy_lag_updates, losses/policy,
learner/<metric> for what an algorithm reports beyond the common losses (V-trace's rho, ACER's
off_policy_updates, replay_size, rho, rho_truncated, trust_region_kl, trust_region_scale, on_policy_s, replay_s),
losses/value, losses/entropy, losses/grad_norm, time/{env,inference,train,other}_fraction and the config as
text; with several rollout lengths t_max_N/{updates,policy,value,entropy,grad_norm} per length; weight and
gradient histograms (weights/..., gradients/...) every --histogram-interval-updates; network/dead_<layer>, the
share of each ReLU layer's units that output 0 on a whole rollout (one rollout per row: a layer whose units all
die stops learning); the learner's graphs under graphs/. progress.csv has one row per write with PROGRESS_FIELDS
(plot.py reads it); a progress.csv of an older version is rewritten with the new columns left empty.

Owns: the recent-episode window (the "mean of the last 100" and what a checkpoint saves of it), the writers,
and how telemetry is aggregated into a row.
Must not: count env steps or updates (the trainer's counters are handed in), save checkpoints or touch the
network.
"""
from __future__ import annotations

import collections
import contextlib
import csv
import os
import sys
import threading
from typing import NamedTuple

import numpy as np

from checkpoints import RunCounts, io_errors
from hparams import HParams, step_budget

RETURN_WINDOW = 100  # episodes in the "mean recent return" (A3G / DQN protocol)

PROGRESS_FIELDS = ["env_steps", "wall_time_s", "episodes", "updates", "mean_return", "mean_length",
                   "steps_per_second", "learning_rate", "policy", "value", "entropy", "grad_norm", "advantage",
                   "policy_lag", "skipped_updates", "time_env", "time_inference", "time_train", "time_other",
                   "dead_conv0", "dead_fc"]


# Metrics every learner reports; any others (V-trace's rho, ACER's off-policy updates and trust region, ...) go to
# TensorBoard as learner/<name>, averaged over the updates of a row.
COMMON_METRICS = {"loss", "policy", "value", "entropy", "advantage", "grad_norm", "applied", "iteration"}


class Telemetry(NamedTuple):
    """One update of one learner thread."""
    thread: int
    t_max: int  # the thread's rollout length
    metrics: dict  # the learner's train_on result
    env_s: float  # time in env stepping during the rollout
    inference_s: float  # time in the policy during the rollout
    train_s: float  # time in the update
    total_s: float  # rollout + update
    policy_lag: int  # updates by other threads between the rollout's start and this update


def _mean(values):
    return round(float(np.mean(values)), 3) if values else ""


def _upgrade_columns(csv_path: str):
    """Rewrite a progress.csv whose header is not PROGRESS_FIELDS (written by an older version) with it, keeping
    every row and value; columns it lacks stay empty. Atomic: a crash leaves the old file."""
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or reader.fieldnames == PROGRESS_FIELDS:
            return
        rows = list(reader)
    tmp = csv_path + ".tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=PROGRESS_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, csv_path)


class RunLog:
    def __init__(self, hp: HParams):
        self.hp = hp
        self.recent_returns: collections.deque = collections.deque(maxlen=RETURN_WINDOW)
        self.recent_lengths: collections.deque = collections.deque(maxlen=RETURN_WINDOW)
        self.pending_episodes: list = []  # (return, length) since the last row
        self.telemetry: collections.deque = collections.deque()  # Telemetry since the last row
        self.histograms: collections.deque = collections.deque()  # {name: values} to write with the next row
        # A learner thread that sees the event set clears it and hands in {layer: dead share} of its rollout.
        self.dead_units: collections.deque = collections.deque()
        self.dead_units_wanted = threading.Event()
        self.lock = threading.Lock()
        self.writer = self.csv_file = self.csv_writer = self.bar = None
        self.row_steps = -1  # the env steps of the last row (open() sets the resume step)

    # -- episodes ------------------------------------------------------------------------------------------
    def restore_window(self, window: list):
        """Append (return, length) pairs to the recent-episode window (a resume refills it from a checkpoint)."""
        with self.lock:
            for ret, length in window:
                self.recent_returns.append(ret)
                self.recent_lengths.append(length)

    def add_episodes(self, returns: list, lengths: list):
        with self.lock:
            self.pending_episodes.extend(zip(returns, lengths))

    def take_episodes(self) -> list:
        """The episodes handed in since the last call (for the next row)."""
        with self.lock:
            episodes, self.pending_episodes = self.pending_episodes, []
        return episodes

    def episode_window(self) -> list:
        """The last RETURN_WINDOW (return, length) pairs, including those not yet written: what a checkpoint
        saves so that the window carries on after a resume."""
        with self.lock:
            return (list(zip(self.recent_returns, self.recent_lengths)) + self.pending_episodes)[-RETURN_WINDOW:]

    def full_window_mean(self) -> float | None:
        """The mean return of the written window once it holds RETURN_WINDOW episodes, else None."""
        with self.lock:
            full = len(self.recent_returns) == RETURN_WINDOW
            return float(np.mean(self.recent_returns)) if full else None

    def mean_return(self) -> str:
        return f"{np.mean(self.recent_returns):.2f}" if self.recent_returns else "n/a"

    # -- writers -------------------------------------------------------------------------------------------
    def open(self, env_steps: int):
        """Open the TensorBoard writer (and write the config), progress.csv and the bar; RunError if the logdir
        cannot be written."""
        import tensorflow as tf
        from tqdm import tqdm
        hp = self.hp
        self.row_steps = env_steps  # a resumed run's previous session ended with a row at its resume step
        with io_errors(f"cannot write logs to {hp.logdir}"):
            self.writer = tf.summary.create_file_writer(hp.logdir)
            with self.writer.as_default():
                tf.summary.text("config", "```\n" + hp.to_json() + "\n```", step=env_steps)
            csv_path = os.path.join(hp.logdir, "progress.csv")
            new_csv = not os.path.exists(csv_path)
            if not new_csv:
                _upgrade_columns(csv_path)
            self.csv_file = open(csv_path, "a", newline="")
        self.csv_writer = csv.DictWriter(self.csv_file, fieldnames=PROGRESS_FIELDS)
        if new_csv:
            self.csv_writer.writeheader()
        self.dead_units_wanted.set()
        self.bar = tqdm(total=step_budget(hp), initial=min(env_steps, step_budget(hp)), unit="step",
                        unit_scale=True, dynamic_ncols=True, disable=not hp.progress_bar, file=sys.stderr)

    def show(self, env_steps: int, episodes: int):
        """Move the bar; its postfix is the mean return of the window and the episode count."""
        self.bar.update(min(env_steps, step_budget(self.hp)) - self.bar.n)
        if self.recent_returns:
            self.bar.set_postfix(ret=f"{np.mean(self.recent_returns):.1f}", eps=episodes, refresh=False)

    def close_bar(self):
        self.bar.close()

    def close(self):
        import tensorflow as tf
        with contextlib.suppress(OSError, tf.errors.OpError):
            self.csv_file.close()
            self.writer.close()

    @staticmethod
    def _write_per_t_max(telemetry: list):
        """With per-thread rollout lengths (--t-max-per-thread), the losses and update counts of each length."""
        import tensorflow as tf
        lengths = sorted({t.t_max for t in telemetry})
        if len(lengths) < 2:
            return
        for n in lengths:
            group = [t for t in telemetry if t.t_max == n]
            tf.summary.scalar(f"t_max_{n}/updates", len(group))
            for key in ("policy", "value", "entropy", "grad_norm"):
                tf.summary.scalar(f"t_max_{n}/{key}", float(np.mean([t.metrics[key] for t in group])))

    def write_graphs(self, graphs: dict):
        """The learner's tf.function graphs, once per run directory: graphs/<name> in TensorBoard's Graphs tab."""
        import tensorflow as tf
        root = os.path.join(self.hp.logdir, "graphs")
        if os.path.isdir(root):
            return
        with io_errors(f"cannot write logs to {self.hp.logdir}"):
            for name, graph in graphs.items():
                writer = tf.summary.create_file_writer(os.path.join(root, name))
                with writer.as_default():
                    tf.summary.graph(graph)
                writer.close()

    def row_due(self, env_steps: int) -> bool:
        """Whether a row at `env_steps` would be new: progress.csv is keyed by env steps, so a log interval in which
        no rollout was counted (an update still tracing, a stall) writes no second row at the same step."""
        return env_steps > self.row_steps

    def write(self, counts: RunCounts, skipped_updates: int, episodes: list, steps_per_s: float,
              learning_rate: float):
        """One row: the counters, the episodes ended since the last row, and the telemetry aggregated."""
        import tensorflow as tf
        telemetry = []
        while self.telemetry:
            telemetry.append(self.telemetry.popleft())
        self.restore_window(episodes)
        steps = self.row_steps = counts.env_steps
        row = dict(env_steps=steps, wall_time_s=round(counts.wall_time_s, 2), episodes=counts.episodes,
                   updates=counts.updates, mean_return=_mean(self.recent_returns),
                   mean_length=_mean(self.recent_lengths), steps_per_second=round(steps_per_s, 1),
                   learning_rate=learning_rate, skipped_updates=skipped_updates)
        if telemetry:
            for key in ("policy", "value", "entropy", "grad_norm", "advantage"):
                row[key] = float(np.mean([t.metrics[key] for t in telemetry]))
            row["policy_lag"] = float(np.mean([t.policy_lag for t in telemetry]))
            total = max(sum(t.total_s for t in telemetry), 1e-9)
            for key, attr in (("env", "env_s"), ("inference", "inference_s"), ("train", "train_s")):
                row[f"time_{key}"] = sum(getattr(t, attr) for t in telemetry) / total
            row["time_other"] = 1.0 - row["time_env"] - row["time_inference"] - row["time_train"]
        dead = {}
        while self.dead_units:
            for layer, share in self.dead_units.popleft().items():
                dead.setdefault(layer, []).append(share)
        dead = {layer: float(np.mean(shares)) for layer, shares in dead.items()}
        self.dead_units_wanted.set()
        for layer in ("conv0", "fc"):
            if layer in dead:
                row[f"dead_{layer}"] = round(dead[layer], 4)
        with io_errors(f"cannot write logs to {self.hp.logdir}"):
            with self.writer.as_default(step=steps):
                for ret, length in episodes:
                    tf.summary.scalar("charts/episode_return", ret)
                    tf.summary.scalar("charts/episode_length", length)
                if row["mean_return"] != "":
                    tf.summary.scalar("charts/mean_return_100", row["mean_return"])
                tf.summary.scalar("charts/steps_per_second", steps_per_s)
                tf.summary.scalar("charts/learning_rate", row["learning_rate"])
                tf.summary.scalar("charts/episodes", counts.episodes)
                tf.summary.scalar("charts/skipped_updates", skipped_updates)
                if telemetry:
                    for key in ("policy", "value", "entropy", "grad_norm"):
                        tf.summary.scalar(f"losses/{key}", row[key])
                    self._write_per_t_max(telemetry)
                    tf.summary.scalar("charts/policy_lag_updates", row["policy_lag"])
                    for key in sorted(set(telemetry[-1].metrics) - COMMON_METRICS):  # the algorithm's own
                        values = [t.metrics[key] for t in telemetry if key in t.metrics]
                        tf.summary.scalar(f"learner/{key}", float(np.mean(values)))
                    for key in ("env", "inference", "train", "other"):
                        tf.summary.scalar(f"time/{key}_fraction", row[f"time_{key}"])
                for layer, share in dead.items():
                    tf.summary.scalar(f"network/dead_{layer}", share)
                while self.histograms:
                    for name, value in self.histograms.popleft().items():
                        tf.summary.histogram(name, value)
            self.writer.flush()
            self.csv_writer.writerow({k: row.get(k, "") for k in PROGRESS_FIELDS})
            self.csv_file.flush()
