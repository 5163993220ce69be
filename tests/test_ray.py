"""--executor ray on a private local Ray cluster (ray.init(address="local") on this machine's 2 CPUs).

In-process: the parameter server applies exactly the gradients pushed (its weights equal a local copy that
applied the same ones), and weights round-trip exactly. In subprocesses on CartPole (4 envs per worker, so a
start-up of ~25 s dominates): counts, resume across executors in both directions, a killed worker restarted,
SIGINT, a killed parameter server, bad input.
"""
import os
import re
import signal

import numpy as np
import pytest

from helpers import Proc, cli_env, one_error_line, progress_rows, run, wait_until
from ray_cli import (CARTPOLE, RAY, closing, last_env_steps, local_ray, pid_of,  # noqa: F401 (a fixture)
                     stopped_in_one_line_and_resumes, survive_worker_loss)

ray = pytest.importorskip("ray")

LOCAL_SAVED = re.compile(r"saved (\S+): (\d+) env steps")


# ----------------------------------------------------------------------------------------------------------
# In process: the parameter server's arithmetic
# ----------------------------------------------------------------------------------------------------------
def _cartpole_rollouts(hp, learner, n):
    import envs
    from batch_agents import BatchAgents
    agents = BatchAgents(envs.make_vector_env(hp, 4), seed=0)
    try:
        return [agents.collect(learner.policy(), 5)[0] for _ in range(n)]
    finally:
        agents.close()


def test_server_applies_exactly_the_pushed_gradients_and_weights_round_trip(local_ray, tmp_path):
    import dataclasses

    import hparams
    from learner import make_learner
    from ray_executor import ParameterServer
    from specs import ObsSpec, discrete
    hp = hparams.validate(dataclasses.replace(hparams.HParams(), env_id="CartPole-v1", network="mlp",
                                              executor="ray", logdir=str(tmp_path / "run"), progress_bar=False,
                                              lr_schedule="constant", normalize_obs=True))
    specs = (ObsSpec((4,), "float32"), discrete(2))
    server = ray.remote(ParameterServer).remote(hp, specs)
    ray.get(server.open.remote())
    version, ref = ray.get(server.weights.remote())
    start = ray.get(ref)
    assert version == 0

    worker = make_learner(hp, specs[1], obs=specs[0])  # a worker's copy ...
    worker.set_weights(start)
    assert all(np.array_equal(a, b) for a, b in zip(worker.get_weights(), start))  # ... round-trips exactly
    mirror = make_learner(hp, specs[1], obs=specs[0])  # applies the same gradients here, as the server should
    mirror.set_weights(start)
    rollouts = _cartpole_rollouts(hp, worker, 3)
    for i, rollout in enumerate(rollouts):
        grads, metrics = worker.gradients_on(rollout)
        assert metrics["applied"]
        version, stop = ray.get(server.push.remote(0, 5, grads, {k: v.item() for k, v in metrics.items()}, i, 20,
                                                   [], [], (0.0, 0.0, 0.0, 0.0), (rollout.obs, rollout.valid)))
        assert (version, stop) == (i + 1, False)
        mirror.apply_gradients(grads, hp.learning_rate)
        mirror.update_obs_norm(rollout.obs, rollout.valid)
    version, ref = ray.get(server.weights.remote())
    pulled = ray.get(ref)
    assert version == 3
    changed = [not np.array_equal(a, b) for a, b in zip(pulled, start)]
    assert all(changed), "every variable (weights and observation statistics) moved"
    for a, b in zip(pulled, mirror.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert ray.get(server.tick.remote())[:2] == (60, 0)
    _, failure, path, closing = ray.get(server.finish.remote())
    assert failure is None and path.endswith("ckpt-60") and "pushes applied 3" in closing


# ----------------------------------------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------------------------------------
def test_ray_run_counts_every_push_and_resumes_across_executors(tmp_path):
    logdir = tmp_path / "run"
    code, out, err = run("a3c.py", CARTPOLE + RAY + ["--logdir", logdir, "--total-env-steps", 2000],
                         tmp_path, cli_env(fake=False), "ray1", timeout=240)
    assert code == 0, err
    path, steps, episodes, updates, applied, skipped, late = closing(out)
    assert 2000 <= steps < 2000 + 20 and updates == applied == steps // 20 and skipped == 0
    pushes = int(re.search(r"pushes sent by the workers still alive at the end: (\d+)", out).group(1))
    assert pushes == applied + skipped + late  # every push was applied, skipped or refused as late: none lost
    # episodes lengthen as CartPole is learnt within these 2,000 steps (49 episodes in one run, ~90 at random play)
    assert "rollout worker 1: pid" in out and episodes >= 20

    code, out, err = run("a3c.py", CARTPOLE + ["--logdir", logdir, "--total-env-steps", 3000], tmp_path,
                         cli_env(fake=False), "local", timeout=120)  # on one machine, from the Ray run
    assert code == 0, err
    assert f"resuming from step {steps}" in out and LOCAL_SAVED.search(out).group(2) == "3000"

    code, out, err = run("a3c.py", CARTPOLE + RAY + ["--logdir", logdir, "--total-env-steps", 4000],
                         tmp_path, cli_env(fake=False), "ray2", timeout=240)  # and back on Ray
    assert code == 0, err
    assert "resuming from step 3000" in out and 4000 <= closing(out)[1] < 4020
    rows = progress_rows(logdir)
    assert [float(r["env_steps"]) for r in rows] == sorted(float(r["env_steps"]) for r in rows)
    assert any(r["policy_lag"] not in ("", "0.0") for r in rows)  # lag is measured: two workers share the server


def test_a_killed_worker_is_restarted_and_sigint_saves(tmp_path):
    logdir = tmp_path / "run"
    proc = Proc("a3c.py", CARTPOLE + RAY + ["--logdir", logdir, "--total-env-steps", 10**8, "--log-interval-s", 0.5],
                tmp_path, cli_env(fake=False), "ray")
    try:
        wait_until(lambda: last_env_steps(logdir) > 0, 180, "the first steps", proc)
        at_restart = survive_worker_loss(proc, logdir, lambda: os.kill(pid_of(proc.out, "rollout worker 0"),
                                                                       signal.SIGKILL), 2000)
    finally:
        if proc.p.poll() is None:
            proc.p.kill()
    assert "SIGINT: stopped all workers; saving a checkpoint" in proc.err
    path, steps = closing(proc.out)[:2]
    assert steps > at_restart + 2000 and os.path.exists(path + ".index")


def test_a_dead_parameter_server_stops_the_run_and_leaves_the_checkpoint_intact(tmp_path):
    logdir = tmp_path / "run"
    proc = Proc("a3c.py", CARTPOLE + RAY + ["--logdir", logdir, "--total-env-steps", 10**8,
                                            "--checkpoint-interval-s", 1], tmp_path, cli_env(fake=False), "ray")
    try:
        wait_until(lambda: os.path.exists(logdir / "checkpoints" / "checkpoint"), 180, "a checkpoint", proc)
        os.kill(pid_of(proc.out, "parameter server"), signal.SIGKILL)
        assert proc.wait(90) == 1
    finally:
        if proc.p.poll() is None:
            proc.p.kill()
    stopped_in_one_line_and_resumes(proc, logdir, tmp_path, "the parameter server died")


# ----------------------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, nothing written
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, needle", [
    (["--ray-address", "127.0.0.1:9"], "--ray-address 127.0.0.1:9: no Ray head answers there"),
    (["--workers", "64"], "--workers 64 x --threads 1 need 64 CPUs but the Ray cluster has"),
    (["--workers", "1", "--worker-gpus", "1"], "--workers 1 x --worker-gpus 1 need 1 GPUs but the Ray cluster has 0"),
])
def test_bad_cluster_input_is_one_line_and_touches_nothing(tmp_path, args, needle):
    logdir = tmp_path / "run"
    code, out, err = run("a3c.py", CARTPOLE + RAY + args + ["--logdir", logdir], tmp_path, cli_env(fake=False),
                         timeout=120)
    assert code == 2 and needle in one_error_line(err)
    assert not logdir.exists()


def test_ray_not_installed_is_one_line(tmp_path):
    shim = tmp_path / "shim" / "ray"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    env = cli_env(fake=False)
    env["PYTHONPATH"] = os.pathsep.join([str(shim.parent), env["PYTHONPATH"]])
    code, out, err = run("a3c.py", CARTPOLE + RAY + ["--logdir", tmp_path / "run"], tmp_path, env, timeout=60)
    assert code == 2 and "--executor ray needs Ray: pip install" in one_error_line(err)
