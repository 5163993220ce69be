"""scripts/slurm/a3c.sbatch on a multi-node allocation, with Slurm and Ray faked (only a one-node Slurm runs on
this machine): the Ray head on the first node, a Ray node on each other, and the driver given the workers and one
parameter-server shard per node (ray_executor places them round robin, one on each), unless the user chose
--ps-shards.
"""
import os
import shlex
import subprocess

import pytest

from helpers import REPO_ROOT

SBATCH = os.path.join(REPO_ROOT, "scripts", "slurm", "a3c.sbatch")

FAKES = {
    # scontrol show hostnames LIST: the allocation's nodes
    "scontrol": 'for n in $FAKE_NODES; do echo "$n"; done',
    # srun [options] command...: log the node (-w) and the command, run only the address probe's echo
    "srun": r'''node=; while [[ $# -gt 0 && $1 == -* ]]; do
  case $1 in -w) node=$2; shift 2;; *) shift;; esac; done
echo "srun node=${node:-all} $*" >> "$FAKE_LOG"
if [[ "$*" == *"hostname --ip-address"* ]]; then echo 10.0.0.1; fi
exit 0''',
    # ray status lists every node as joined; ray start / stop do nothing
    "ray": r'''echo "ray $*" >> "$FAKE_LOG"
if [[ $1 == status ]]; then for n in $FAKE_NODES; do echo " node_$n"; done; fi
exit 0''',
    # the driver: record its arguments
    "fakepython": 'echo "driver $*" >> "$FAKE_LOG"; exit 0',
    "sleep": "exit 0",  # the script's waits for the head and the nodes: nothing to wait for here
}


def _run_sbatch(tmp_path, nodes: list, cpus: int, args: list, env_extra=None) -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in FAKES.items():
        path = bin_dir / name
        path.write_text("#!/bin/bash\n" + body + "\n")
        path.chmod(0o755)
    log = tmp_path / "calls.log"
    env = {k: v for k, v in os.environ.items() if k not in ("PS_SHARDS", "WORKERS", "HEAD_IP", "RAY_PORT")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", FAKE_LOG=str(log), FAKE_NODES=" ".join(nodes),
               SLURM_SUBMIT_DIR=REPO_ROOT, SLURM_JOB_NODELIST="fake[1-9]", SLURM_JOB_NUM_NODES=str(len(nodes)),
               SLURM_CPUS_PER_TASK=str(cpus), SLURM_JOB_ID="42", PYTHON=str(bin_dir / "fakepython"),
               RAY=str(bin_dir / "ray"), **(env_extra or {}))
    proc = subprocess.run(["bash", SBATCH, *args], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return log.read_text().splitlines()


def _driver_args(calls: list[str]) -> list[str]:
    lines = [c for c in calls if c.startswith("driver ")]
    assert len(lines) == 1, calls
    return shlex.split(lines[0])[1:]


def test_three_nodes_get_a_ray_node_each_and_one_shard_per_node(tmp_path):
    calls = _run_sbatch(tmp_path, ["n1", "n2", "n3"], 4, ["--preset", "pong"])
    starts = [c for c in calls if c.startswith("srun ") and "start" in c]
    assert any("node=n1" in c and "--head" in c for c in starts)
    assert sum("node=n2" in c and "--address=10.0.0.1:6379" in c for c in starts) == 1
    assert sum("node=n3" in c and "--address=10.0.0.1:6379" in c for c in starts) == 1
    assert _driver_args(calls) == ["-u", "a3c.py", "--executor", "ray", "--ray-address", "10.0.0.1:6379",
                                   "--workers", "6", "--ps-shards", "3", "--preset", "pong"]


@pytest.mark.parametrize("nodes, args, env, want_shards", [
    (["n1"], ["--preset", "pong"], None, None),  # one node: one server, as before
    (["n1", "n2"], ["--preset", "pong", "--ps-shards", "4"], None, "4"),  # the user's choice wins
    (["n1", "n2"], ["--preset", "pong", "--ps-shards=4"], None, "4"),
    (["n1", "n2", "n3", "n4"], ["--preset", "pong"], {"PS_SHARDS": "8"}, "8"),
    (["n1", "n2"], ["--preset", "pong"], {"PS_SHARDS": "1"}, None),
])
def test_the_shard_count_follows_the_nodes_unless_chosen(tmp_path, nodes, args, env, want_shards):
    driver = _driver_args(_run_sbatch(tmp_path, nodes, 2, args, env))
    given = [a for a in driver if a.startswith("--ps-shards")]
    if want_shards is None:
        assert given == []
    else:
        assert len(given) == 1 and (driver[driver.index(given[0]) + 1] if given[0] == "--ps-shards"
                                    else given[0].split("=")[1]) == want_shards
