"""Several Ray nodes on this machine (ray.cluster_utils.Cluster: a head with no CPUs and three 1-CPU nodes; the
driver, and so the server, attach to one of them): a node lost under a worker is survived (Ray restarts the worker
on the spare node); with --ps-shards 2 the shards go to two nodes other than the server's, and a node lost under a
shard stops the run in one line with the newest checkpoint intact."""
import os
import re

import pytest

from helpers import Proc, cli_env, wait_until
from ray_cli import CARTPOLE, last_env_steps, stopped_in_one_line_and_resumes, survive_worker_loss

ray = pytest.importorskip("ray")

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


def _node_of(nodes, node_prefix):
    return next(n for n in nodes if n.node_id.startswith(node_prefix))


def _start(cluster, tmp_path, shards: int, extra=()):
    c, _ = cluster
    logdir = tmp_path / "run"
    proc = Proc("a3c.py", CARTPOLE + ["--log-interval-s", 0.5, "--executor", "ray", "--ray-address", c.address,
                                      "--workers", 2, "--ps-shards", shards, "--logdir", logdir,
                                      "--total-env-steps", 10**8, *extra],
                tmp_path, cli_env(fake=False), "ray")
    wait_until(lambda: last_env_steps(logdir) > 0, 240, "the first steps", proc)
    return proc, logdir


def test_a_lost_worker_node_is_survived(cluster, tmp_path):
    c, nodes = cluster
    proc, logdir = _start(cluster, tmp_path, 1)
    try:
        survive_worker_loss(proc, logdir, lambda: c.remove_node(
            _node_of(nodes, _placement(proc.out)["rollout worker 0"][1])), 1000, death_s=90)
    finally:
        if proc.p.poll() is None:
            proc.p.kill()


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
    stopped_in_one_line_and_resumes(proc, logdir, tmp_path, "parameter shard died")
