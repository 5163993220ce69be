"""Several Ray nodes on this machine (ray.cluster_utils.Cluster: a head with no CPUs and three 1-CPU nodes; the
driver, and so the server, attach to one of them): a node lost under a worker is survived (Ray restarts the worker
on the spare node); with --ps-shards 2 the shards go to two nodes other than the server's, and a node lost under a
shard stops the run in one line with the newest checkpoint intact."""
import os
import re
import signal

import pytest

from helpers import Proc, cli_env, one_error_line, progress_rows, run, wait_until

ray = pytest.importorskip("ray")

CARTPOLE = ["--env-id", "CartPole-v1", "--envs-per-thread", "4", "--threads", "1", "--no-progress-bar",
            "--clip-rewards", "--no-episodic-life", "--log-interval-s", 0.5]
PLACED = re.compile(r"(parameter server|parameter shard \d|rollout worker \d): pid (\d+) on \S+ \(node (\w+)\)")


@pytest.fixture
def cluster():
    from ray.cluster_utils import Cluster
    c = Cluster(initialize_head=True, head_node_args=dict(num_cpus=0))  # the driver's node: server, no workers
    nodes = [c.add_node(num_cpus=1) for _ in range(3)]
    c.wait_for_nodes()
    yield c, nodes
    c.shutdown()


def _placement(out: str) -> dict:
    return {who: (int(pid), node) for who, pid, node in PLACED.findall(out)}


def _steps(logdir) -> int:
    rows = progress_rows(logdir)
    return int(rows[-1]["env_steps"]) if rows else 0


def _node_of(nodes, node_prefix):
    return next(n for n in nodes if n.node_id.startswith(node_prefix))


def _start(cluster, tmp_path, shards: int, extra=()):
    c, _ = cluster
    logdir = tmp_path / "run"
    proc = Proc("a3c.py", CARTPOLE + ["--executor", "ray", "--ray-address", c.address, "--workers", 2,
                                      "--ps-shards", shards, "--logdir", logdir, "--total-env-steps", 10**8, *extra],
                tmp_path, cli_env(fake=False), "ray")
    wait_until(lambda: _steps(logdir) > 0, 240, "the first steps", proc)
    return proc, logdir


def test_a_lost_worker_node_is_survived(cluster, tmp_path):
    c, nodes = cluster
    proc, logdir = _start(cluster, tmp_path, 1)
    try:
        c.remove_node(_node_of(nodes, _placement(proc.out)["rollout worker 0"][1]))
        wait_until(lambda: "rollout worker 0 died" in proc.out, 90, "the worker's death", proc)
        at_loss = _steps(logdir)
        wait_until(lambda: _steps(logdir) > at_loss + 1000, 180, "steps after the node was lost", proc)
        proc.p.send_signal(signal.SIGINT)
        assert proc.wait(90) == 0, proc.err
    finally:
        if proc.p.poll() is None:
            proc.p.kill()
    assert "Ray restarts it (restart 1 of" in proc.out


def test_shards_go_to_two_nodes_and_a_lost_shard_node_stops_in_one_line(cluster, tmp_path):
    c, nodes = cluster
    proc, logdir = _start(cluster, tmp_path, 2, ["--checkpoint-interval-s", 1])
    try:
        placed = _placement(proc.out)
        on = [placed[f"parameter shard {i}"][1] for i in (0, 1)]
        # round robin over the nodes, the server's (the driver's) last: two nodes, neither the server's
        assert on[0] != on[1] and placed["parameter server"][1] not in on, placed
        wait_until(lambda: os.path.exists(logdir / "checkpoints" / "checkpoint"), 120, "a checkpoint", proc)
        removable = [x for x in on if any(n.node_id.startswith(x) for n in nodes)]  # not the head (Ray's GCS)
        c.remove_node(_node_of(nodes, removable[0]))
        assert proc.wait(180) in (1, 2)
    finally:
        if proc.p.poll() is None:
            proc.p.kill()
    line = one_error_line(proc.err)
    assert "parameter shard died" in line and "intact" in line, line
    code, out, err = run("a3c.py", CARTPOLE + ["--logdir", logdir, "--total-env-steps", 100], tmp_path,
                         cli_env(fake=False), "resume", timeout=120)
    assert code == 0 and "resuming from step" in out, err
