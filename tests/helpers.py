"""Helpers shared by the reliability tests: small in-process trainers on the fake env, and the CLI in a subprocess."""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import io
import json
import os
import subprocess
import sys
import time

import numpy as np

import a3c
import envs
import fakes
import hparams

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS_DIR = os.path.join(REPO_ROOT, "tests")

# Every timeout in the tests is a hang guard, written for a test that has the 2-core machine to itself. The README's
# command runs two tests at a time (pytest -n 2), which can halve what each gets, so the guards are doubled here.
HANG_GUARD_SCALE = 2.0

# CLI flags for the end-to-end runs: no progress bar, a progress row every second.
QUIET = ["--no-progress-bar", "--log-interval-s", "1"]


def hp_for(env_id, **overrides):
    """Validated HParams for `env_id` with `overrides`, as the CLI would build them."""
    return hparams.validate(hparams.HParams(env_id=env_id, **overrides))


# 2 threads x 2 envs x t_max 5: 10 env steps per update.
SMALL = dict(env_id="ALE/Pong-v5", threads=2, envs_per_thread=2, t_max=5, total_env_steps=200, progress_bar=False,
             log_interval_s=60.0, checkpoint_interval_s=600.0, network="a3c", tf_intra_op_threads=2)
STEPS_PER_UPDATE = SMALL["t_max"] * SMALL["envs_per_thread"]


def small_hp(logdir, **overrides) -> hparams.HParams:
    return hparams.validate(dataclasses.replace(hparams.HParams(), **{**SMALL, "logdir": str(logdir), **overrides}))


def make_trainer(logdir, factory=None, **overrides) -> a3c.Trainer:
    """A set-up (resumed, if logdir has checkpoints) Trainer on the fake env; its stdout goes to trainer.out."""
    trainer = a3c.Trainer(small_hp(logdir, **overrides), env_factory=factory or fakes.factory(), out=io.StringIO())
    trainer.setup()
    return trainer


def file_hashes(directory) -> dict:
    return {os.path.relpath(p, directory): hashlib.sha256(open(p, "rb").read()).hexdigest()
            for p in sorted(glob.glob(os.path.join(directory, "**"), recursive=True)) if os.path.isfile(p)}


# ----------------------------------------------------------------------------------------------------------
# The CLI in a subprocess
# ----------------------------------------------------------------------------------------------------------
def cli_env(fake: bool = True, **fake_options) -> dict:
    """Environment for a subprocess: quiet TF, tests/ importable, and (fake=True) the fake-env test hook."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([TESTS_DIR, REPO_ROOT, os.environ.get("PYTHONPATH", "")]))
    env.pop(envs.FAKE_ENV_VAR, None)
    env.pop(fakes.OPTIONS_VAR, None)
    if fake:
        env[envs.FAKE_ENV_VAR] = "fakes:make_env"
        env[fakes.OPTIONS_VAR] = json.dumps(fake_options)
    return env


class Proc:
    """A script of the repo running in the background, stdout and stderr to files in `workdir`."""

    def __init__(self, script: str, args, workdir, env=None, name="proc", **popen):
        os.makedirs(workdir, exist_ok=True)
        self.out_path = os.path.join(workdir, f"{name}.out")
        self.err_path = os.path.join(workdir, f"{name}.err")
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.p = subprocess.Popen([sys.executable, script, *map(str, args)], cwd=REPO_ROOT,
                                      env=env or cli_env(), stdout=out, stderr=err, **popen)

    def wait(self, timeout=120) -> int:
        timeout *= HANG_GUARD_SCALE
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise AssertionError(f"{self.p.args} did not finish within {timeout} s; stderr: {self.err}")

    @property
    def out(self) -> str:
        return open(self.out_path).read()

    @property
    def err(self) -> str:
        return open(self.err_path).read()


def run(script: str, args, workdir, env=None, name="proc", timeout=120) -> tuple[int, str, str]:
    proc = Proc(script, args, workdir, env, name)
    return proc.wait(timeout), proc.out, proc.err


def one_error_line(err: str) -> str:
    """stderr must be exactly one `error: ...` line (no traceback, no TF chatter); returns it."""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def wait_until(condition, timeout=60.0, what="condition", proc: Proc | None = None):
    deadline = time.monotonic() + timeout * HANG_GUARD_SCALE
    while time.monotonic() < deadline:
        if condition():
            return
        if proc is not None and proc.p.poll() is not None:
            raise AssertionError(f"process exited ({proc.p.returncode}) before {what}; stderr: {proc.err}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def progress_rows(logdir) -> list[dict]:
    path = os.path.join(logdir, "progress.csv")
    if not os.path.exists(path):
        return []
    import csv
    with open(path) as f:
        return list(csv.DictReader(f))


def random_episode_ends(rng, T: int, B: int, both_flags: bool):
    """Rewards [T, B] float32 and terminated / truncated [T, B] bool for the math tests: ~20% of steps end an
    episode each way; with both_flags, ~10% more are truncated as well as terminated (terminated must win)."""
    rewards = rng.normal(size=(T, B)).astype(np.float32)
    terminated = rng.random((T, B)) < 0.2
    truncated = (rng.random((T, B)) < 0.2) & ~terminated
    if both_flags:
        truncated |= rng.random((T, B)) < 0.1
    return rewards, terminated, truncated

