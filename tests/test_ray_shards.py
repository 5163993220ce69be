"""--executor ray --ps-shards S on a private local Ray (this machine's 2 CPUs).

In-process: a server with 3 shards applies exactly the gradients pushed (its checkpoint equals a local copy that
applied the same ones, optimizer statistics included) and counts at the snapshot's moment. In subprocesses on
CartPole: the budget met exactly, resume across S and executors, a killed shard, bad input; --sync: rounds with no
lag, a killed worker leaving and rejoining the round, and SIGTERM (Slurm's stop) saving.
"""
import os
import re
import signal

import numpy as np
import pytest

from helpers import Proc, cli_env, one_error_line, progress_rows, run, wait_until
from ray_cli import (CARTPOLE, RAY, closing, last_env_steps, local_ray, pid_of,  # noqa: F401 (a fixture)
                     stopped_in_one_line_and_resumes)

ray = pytest.importorskip("ray")


def test_three_shards_apply_exactly_the_pushed_gradients_and_checkpoint_one_moment(local_ray, tmp_path):
    import dataclasses

    import envs
    import hparams
    import ps_shards
    from batch_agents import BatchAgents
    from checkpoints import CheckpointStore
    from learner import make_learner
    from ray_executor import ParameterServer, start_shards
    from specs import ObsSpec, discrete
    hp = hparams.validate(dataclasses.replace(hparams.HParams(), env_id="CartPole-v1", network="mlp",
                                              executor="ray", logdir=str(tmp_path / "run"), progress_bar=False,
                                              lr_schedule="constant", optimizer="adam", ps_shards=3))
    specs = (ObsSpec((4,), "float32"), discrete(2))
    name = "shard-test-server"
    server = ray.remote(ParameterServer).options(name=name).remote(hp, specs)
    ray.get(server.open.remote())
    shard_set = start_shards(ray, server, name, hp)
    shards, plan, sizes = shard_set.handles, shard_set.plan, shard_set.sizes
    widest_row = max(int(np.prod(shape[1:])) * 4 for shape in plan.shapes)
    assert len(shards) == 3 and max(sizes) - min(sizes) <= 2 * widest_row  # balanced to within a row or two

    start = ps_shards.join([ray.get(ray.get(s.weights.remote())[1]) for s in shards], plan)
    worker = make_learner(hp, specs[1], obs=specs[0])
    worker.set_weights(start, trainable_only=True)
    mirror = make_learner(hp, specs[1], obs=specs[0])  # applies the same gradients here, as the shards should
    mirror.set_weights(start, trainable_only=True)
    agents = BatchAgents(envs.make_vector_env(hp, 4), seed=0)
    try:
        rollouts = [agents.collect(worker.policy(), 5)[0] for _ in range(3)]
    finally:
        agents.close()
    assert ray.get(server.claim.remote("0.0:x", 20)) == (True, 0)
    for seq, rollout in enumerate(rollouts):
        grads, metrics = worker.gradients_on(rollout)
        metrics = {k: v.item() for k, v in metrics.items()}
        replies = ray.get([server.report.remote("0.0:x", 0, 5, metrics, 0, 20, [9.0], [9], (0.0,) * 4, 20),
                           *[s.push.remote("0.0:x", seq, p, hp.learning_rate, (20, 1))
                             for s, p in zip(shards, ps_shards.cut(grads, plan))]])
        assert replies[0] == (seq + 1, True, 20 * (seq + 1)) and replies[1:] == [seq + 1] * 3
        mirror.apply_gradients(grads, hp.learning_rate)
    _, failure, path, closing = ray.get(server.finish.remote())
    assert failure is None and path.endswith("ckpt-60") and "3 episodes, 3 updates" in closing

    saved = make_learner(hp, specs[1], obs=specs[0])
    resumed = CheckpointStore(hp.logdir, 2).resume(saved.checkpoint_objects())
    assert tuple(resumed.counts)[:3] == (60, 3, 3)
    weights, slots, iterations = ps_shards.learner_state(saved)
    want_weights, want_slots, want_iterations = ps_shards.learner_state(mirror)
    assert iterations == want_iterations == 3
    assert not any(np.array_equal(a, b) for a, b in zip(weights, start))  # every variable moved ...
    for a, b in zip(weights + slots["first"] + slots["second"],
                    want_weights + want_slots["first"] + want_slots["second"]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)  # ... exactly as the mirror's


def test_a_sharded_run_meets_the_budget_exactly_and_resumes_with_any_shards_executor_or_wire(tmp_path):
    logdir = tmp_path / "run"
    code, out, err = run("a3c.py", CARTPOLE + RAY + ["--ps-shards", 2, "--logdir", logdir, "--total-env-steps", 2000],
                         tmp_path, cli_env(fake=False), "s2", timeout=300)
    assert code == 0, err
    assert "parameter shard 1: pid" in out
    path, steps, episodes, updates, applied, skipped, late = closing(out)
    assert steps == 2000 and updates == applied == 100 and skipped == late == 0  # claims: no rollout past the budget
    pushes = int(re.search(r"pushes sent by the workers still alive at the end: (\d+)", out).group(1))
    assert pushes == applied

    code, out, err = run("a3c.py", CARTPOLE + ["--logdir", logdir, "--total-env-steps", 3000], tmp_path,
                         cli_env(fake=False), "local", timeout=120)
    assert code == 0, err
    assert "resuming from step 2000" in out

    code, out, err = run("a3c.py", CARTPOLE + RAY + ["--ps-shards", 3, "--wire-dtype", "bfloat16", "--logdir", logdir,
                                                     "--total-env-steps", 4000],
                         tmp_path, cli_env(fake=False), "s3", timeout=300)
    assert code == 0, err
    assert "resuming from step 3000" in out and closing(out)[1] == 4000
    rows = progress_rows(logdir)
    assert [float(r["env_steps"]) for r in rows] == sorted(float(r["env_steps"]) for r in rows)


def test_a_killed_shard_stops_the_run_in_one_line_and_the_checkpoint_resumes(tmp_path):
    logdir = tmp_path / "run"
    proc = Proc("a3c.py", CARTPOLE + RAY + ["--ps-shards", 2, "--logdir", logdir, "--total-env-steps", 10**8,
                                            "--checkpoint-interval-s", 1], tmp_path, cli_env(fake=False), "ray")
    try:
        wait_until(lambda: os.path.exists(logdir / "checkpoints" / "checkpoint"), 240, "a checkpoint", proc)
        os.kill(pid_of(proc.out, "parameter shard 1"), signal.SIGKILL)
        assert proc.wait(120) in (1, 2)
    finally:
        if proc.p.poll() is None:
            proc.p.kill()
    stopped_in_one_line_and_resumes(proc, logdir, tmp_path, "parameter shard died")


def test_more_shards_than_rows_is_one_line_and_touches_nothing(tmp_path):
    logdir = tmp_path / "run"
    code, out, err = run("a3c.py", CARTPOLE + RAY + ["--ps-shards", 100000, "--logdir", logdir], tmp_path,
                         cli_env(fake=False), timeout=180)
    assert code == 2
    assert re.search(r"--ps-shards 100000: the network's weights have only \d+ rows to cut into shards; use at "
                     r"most that many", one_error_line(err))
    assert not logdir.exists()


# ----------------------------------------------------------------------------------------------------------
# --sync: BA3C's synchronous mode
# ----------------------------------------------------------------------------------------------------------
SYNC_CLOSING = re.compile(r"saved (\S+): (\d+) env steps, (\d+) episodes, (\d+) updates.*; rounds applied (\d+), "
                          r"contributions skipped \(not finite\) (\d+), dropped \(late\) (\d+)")


def test_sync_rounds_average_every_thread_with_no_lag_and_resume_locally(tmp_path):
    logdir = tmp_path / "run"
    code, out, err = run("a3c.py", CARTPOLE + RAY + ["--sync", "--optimizer", "adam", "--logdir", logdir,
                                                     "--total-env-steps", 2000, "--log-interval-s", 0.5],
                         tmp_path, cli_env(fake=False), "sync", timeout=300)
    assert code == 0, err
    assert "--sync: each round averages the gradients of all 2 worker threads (40 env steps)" in out
    m = SYNC_CLOSING.search(out)
    assert m, out
    steps, updates, rounds, skipped, dropped = (int(m.group(i)) for i in (2, 4, 5, 6, 7))
    assert steps == 2000 and updates == rounds == 50 and skipped == dropped == 0
    lags = [float(r["policy_lag"]) for r in progress_rows(logdir) if r["policy_lag"] not in ("", "nan")]
    assert lags and max(lags) == 0.0  # every gradient is taken with the weights its round acted with
    code, out, err = run("a3c.py", CARTPOLE + ["--optimizer", "adam", "--logdir", logdir, "--total-env-steps", 2500],
                         tmp_path, cli_env(fake=False), "local", timeout=120)
    assert code == 0 and "resuming from step 2000" in out, err


def test_a_killed_worker_leaves_the_round_without_hanging_it_and_rejoins(tmp_path):
    logdir = tmp_path / "run"
    proc = Proc("a3c.py", CARTPOLE + RAY + ["--sync", "--logdir", logdir, "--total-env-steps", 10**8,
                                            "--log-interval-s", 0.5], tmp_path, cli_env(fake=False), "sync")
    try:
        wait_until(lambda: last_env_steps(logdir) > 0, 240, "the first steps", proc)
        os.kill(pid_of(proc.out, "rollout worker 0"), signal.SIGKILL)
        wait_until(lambda: "rollout worker 0 died" in proc.out, 60, "the death", proc)
        at_death = last_env_steps(logdir)
        wait_until(lambda: last_env_steps(logdir) > at_death + 2000, 180,
                   "rounds after the death", proc)
        proc.p.send_signal(signal.SIGTERM)  # what Slurm sends at the end of an allocation (or a preemption)
        assert proc.wait(90) == 0, proc.err
    finally:
        if proc.p.poll() is None:
            proc.p.kill()
    assert "SIGTERM: stopped all workers; saving a checkpoint" in proc.err, proc.err
    m = SYNC_CLOSING.search(proc.out)
    assert m and int(m.group(2)) > at_death + 2000 and os.path.exists(m.group(1) + ".index"), proc.out
