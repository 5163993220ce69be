"""The Ray executor's command line on CartPole, shared by test_ray.py, test_ray_shards.py and test_ray_multinode.py:
the flags, the closing line's figures, and the two fault flows they all check (a worker lost and survived; a
server-side actor lost, stopping the run in one line with a checkpoint that resumes). Nothing here starts Ray."""
import re
import signal

import pytest

from helpers import Proc, cli_env, one_error_line, progress_rows, run, wait_until

# 4 envs per worker thread, so that a run's Ray start-up (~25 s) dominates and the env costs little.
CARTPOLE = ["--env-id", "CartPole-v1", "--envs-per-thread", "4", "--threads", "1", "--no-progress-bar",
            "--clip-rewards", "--no-episodic-life"]
RAY = ["--executor", "ray", "--workers", "2"]
CLOSING = re.compile(r"saved (\S+): (\d+) env steps, (\d+) episodes, (\d+) updates.*; pushes applied (\d+), "
                     r"skipped \(not finite\) (\d+), after the budget (\d+)")


@pytest.fixture(scope="module")
def local_ray():
    """A private Ray on this machine's 2 CPUs for the in-process tests of a module."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def closing(out: str) -> tuple:
    """(checkpoint path, env steps, episodes, updates, pushes applied, skipped, after the budget) of an async run."""
    m = CLOSING.search(out)
    assert m, out
    return (m.group(1),) + tuple(int(g) for g in m.groups()[1:])


def pid_of(out: str, who: str) -> int:
    """The pid the start-up lines give for `who` ("parameter server", "rollout worker 0", ...), or 0."""
    m = re.search(who + r": pid (\d+)", out)
    return int(m.group(1)) if m else 0


def last_env_steps(logdir) -> int:
    """The newest row's env steps; 0 before the first complete row (the file may be read mid-write)."""
    for row in reversed(progress_rows(logdir)):
        try:
            return int(row["env_steps"])
        except (KeyError, TypeError, ValueError):
            continue
    return 0


def survive_worker_loss(proc: Proc, logdir, lose, steps_after: int, death_s: float = 60) -> int:
    """Runs lose() (a kill of rollout worker 0, or of its node), then checks that Ray restarted the worker and the
    run made `steps_after` more env steps, and that SIGINT then saves; returns the env steps at the loss."""
    lose()
    wait_until(lambda: "rollout worker 0 died" in proc.out, death_s, "the worker's death", proc)
    at_loss = last_env_steps(logdir)
    wait_until(lambda: last_env_steps(logdir) > at_loss + steps_after, 180, "steps after the loss", proc)
    proc.p.send_signal(signal.SIGINT)
    assert proc.wait(90) == 0, proc.err
    assert "Ray restarts it (restart 1 of" in proc.out
    return at_loss


def stopped_in_one_line_and_resumes(proc: Proc, logdir, tmp_path, needle: str):
    """After a server-side actor was lost: stderr is one error line containing `needle` and saying the checkpoint
    is intact, and that checkpoint resumes on the local executor."""
    line = one_error_line(proc.err)
    assert needle in line and "intact" in line, line
    code, out, err = run("a3c.py", CARTPOLE + ["--logdir", logdir, "--total-env-steps", 100], tmp_path,
                         cli_env(fake=False), "resume", timeout=120)
    assert code == 0 and "resuming from step" in out, err
