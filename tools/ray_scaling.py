"""Figures behind README's "Running on a cluster" table: what one gradient push and one weight pull cost, how many
updates per second the parameter server applies, and training throughput with 1 and 2 Ray workers against the
thread-only trainer on the same machine.

    python tools/ray_scaling.py                       # all of it (~8 min on 2 cores)
    python tools/ray_scaling.py --skip-throughput     # transfers and server ceiling only (~1 min)
    python tools/ray_scaling.py --skip-throughput --ps-shards 1,2,4   # the ceiling with 1, 2 and 4 shards

Transfers and the ceiling use the Pong network (a3c, 6 actions) and a real gradient of a 5 x 16 rollout of random
frames; the server runs as in training (one actor, methods one at a time), on a private Ray on this machine.
Throughput runs `a3c.py --preset pong` for --seconds after the first env steps, 2 learner threads and 32 envs in
all three layouts (local 2 threads x 16 envs; ray 1 worker x 2 threads x 16; ray 2 workers x 1 thread x 16), and
reports the median of the progress.csv rates after a --warmup. With --ps-shards S,..., the ceiling is measured
for each S (S > 1: the server counts, S shard actors apply their slices; pushes pipelined from this process with
every slice already in the object store), and a fourth layout runs 2 workers x 1 thread through the largest S.
Owns: measuring. Must not: change how training runs (it drives the real ray_executor and a3c.py).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from errors import ArgumentParser, ConfigError  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_model() -> str:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def transfers(pushes: int, wire_dtype: str = "float32"):
    import ray

    import hparams
    from batch_agents import Rollout
    from learner import make_learner
    from ray_executor import ParameterServer
    from specs import ATARI_OBS, discrete
    with tempfile.TemporaryDirectory() as logdir:
        hp = hparams.validate(dataclasses.replace(hparams.HParams(), network="a3c", executor="ray", logdir=logdir,
                                                  progress_bar=False, total_env_steps=10**9, wire_dtype=wire_dtype))
        specs = (ATARI_OBS, discrete(6))
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        try:
            server = ray.remote(ParameterServer).remote(hp, specs)
            ray.get(server.open.remote())
            worker = make_learner(hp, specs[1], obs=specs[0])
            T, B = 5, 16
            rng = np.random.default_rng(0)
            rollout = Rollout(rng.integers(0, 256, (T, B, 4, 84, 84), dtype=np.uint8),
                              rng.integers(0, 6, (T, B)).astype(np.int32), rng.normal(size=(T, B)).astype(np.float32),
                              np.zeros((T, B), bool), np.zeros((T, B), bool), np.ones((T, B), bool),
                              np.zeros((T, B), bool), np.zeros((B, 0), np.float32), np.zeros(B, np.float32))
            grads, metrics = worker.gradients_on(rollout)
            metrics = {k: v.item() for k, v in metrics.items()}
            t0 = time.perf_counter()
            for _ in range(10):
                worker.gradients_on(rollout)
            gradient_s = (time.perf_counter() - t0) / 10

            def push():
                return server.push.remote(0, T, grads, metrics, 0, T * B, [], [], (0.0, 0.0, 0.0, 1.0))

            ray.get([push() for _ in range(20)])  # warm up: traces the apply function
            round_trips = []
            for _ in range(pushes):
                t0 = time.perf_counter()
                ray.get(push())
                round_trips.append(time.perf_counter() - t0)
            # The server's own ceiling: pushes pipelined, their gradient already in the object store (in training
            # each worker serialises its gradient on its own cores; here the one driver would be the bottleneck).
            stored = ray.put(grads)
            t0 = time.perf_counter()
            ray.get([server.push.remote(0, T, stored, metrics, 0, T * B, [], [], (0.0, 0.0, 0.0, 1.0))
                     for _ in range(pushes)])
            ceiling = pushes / (time.perf_counter() - t0)
            pulls = []
            for _ in range(pushes):
                ray.get(push())  # a new version, so the pull pays the server's put as a worker's would
                t0 = time.perf_counter()
                version, ref = ray.get(server.weights.remote())
                worker.set_weights(ray.get(ref))
                pulls.append(time.perf_counter() - t0)
            return dict(grad_bytes=sum(g.nbytes for g in grads),
                        weight_bytes=sum(w.nbytes for w in worker.wire_weights()),
                        gradient_ms=gradient_s * 1e3, push_ms=statistics.median(round_trips) * 1e3,
                        pull_ms=statistics.median(pulls) * 1e3, server_updates_per_s=ceiling)
        finally:
            ray.shutdown()


def shard_ceiling(num_shards: int, pushes: int, wire_dtype: str = "float32") -> float:
    """Updates/s the parameter server and `num_shards` shards apply when the pushes arrive pipelined (as the
    stored-gradient ceiling of `transfers`, each push being a report to the server and a slice to every shard)."""
    import ray

    import hparams
    import ps_shards
    from learner import make_learner
    from ray_executor import ParameterServer, start_shards
    from specs import ATARI_OBS, discrete
    with tempfile.TemporaryDirectory() as logdir:
        hp = hparams.validate(dataclasses.replace(hparams.HParams(), network="a3c", executor="ray", logdir=logdir,
                                                  progress_bar=False, total_env_steps=10**9,
                                                  ps_shards=num_shards, wire_dtype=wire_dtype))
        specs = (ATARI_OBS, discrete(6))
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        try:
            name = f"bench-server-{os.getpid()}"
            server = ray.remote(ParameterServer).options(name=name).remote(hp, specs)
            ray.get(server.open.remote())
            shard_set = start_shards(ray, server, name, hp)
            shards, plan = shard_set.handles, shard_set.plan
            import tensorflow as tf
            grads = [tf.cast(tf.fill(v.shape, 1e-3), hp.wire_dtype).numpy()
                     for v in make_learner(hp, specs[1], obs=specs[0]).net.trainable_variables]
            stored = [ray.put(p) for p in ps_shards.cut(grads, plan)]
            metrics = dict(applied=True, loss=0.0)

            def push(seq):
                return [server.report.remote("bench", 0, 5, metrics, 0, 80, [], [], (0.0, 0.0, 0.0, 1.0), 80),
                        *[x.push.remote("bench", seq, ref, 1e-4, (80, 0)) for x, ref in zip(shards, stored)]]
            ray.get([ref for seq in range(20) for ref in push(seq)])  # warm up: traces the apply functions
            t0 = time.perf_counter()
            ray.get([ref for seq in range(20, 20 + pushes) for ref in push(seq)])
            return pushes / (time.perf_counter() - t0)
        finally:
            ray.shutdown()


def throughput(name: str, extra: list, seconds: float, warmup: float) -> float:
    """Median env steps/s of `a3c.py --preset pong EXTRA` over `seconds` after its first steps (rows after warmup)."""
    with tempfile.TemporaryDirectory() as logdir:
        args = [sys.executable, "a3c.py", "--preset", "pong", "--logdir", logdir, "--no-progress-bar",
                "--log-interval-s", "2", "--checkpoint-interval-s", "100000", *extra]
        proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        path = os.path.join(logdir, "progress.csv")

        def rows():
            if not os.path.exists(path):
                return []
            with open(path) as f:
                return list(csv.DictReader(f))
        try:
            deadline = time.time() + 600
            while not any(float(r["env_steps"]) > 0 for r in rows()):
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"{name}: a3c.py exited before training ({proc.stderr.read()[-400:]})")
                time.sleep(1)
            first = next(float(r["wall_time_s"]) for r in rows() if float(r["env_steps"]) > 0)
            time.sleep(seconds)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(120)
        rates = [float(r["steps_per_second"]) for r in rows() if float(r["wall_time_s"]) >= first + warmup]
        return statistics.median(rates) if rates else float("nan")


LAYOUTS = {
    "local, 2 threads x 16 envs": [],
    "ray, 1 worker x 2 threads x 16 envs": ["--executor", "ray", "--workers", "1", "--threads", "2"],
    "ray, 2 workers x 1 thread x 16 envs": ["--executor", "ray", "--workers", "2", "--threads", "1"],
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=100, help="pushes / pulls timed for each figure")
    parser.add_argument("--seconds", type=float, default=60.0, help="training time per throughput layout")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds of rows ignored at the start")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of the three layouts, interleaved")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--wire-dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                        help="the dtype pushes and pulls carry (a3c.py's --wire-dtype)")
    parser.add_argument("--ps-shards", default="", help="comma-separated shard counts whose ceiling to measure, "
                                                        "e.g. 1,2,4 (S > 1 also adds a training layout)")
    args = parser.parse_args(argv)
    try:
        args.ps_shards = [int(x) for x in args.ps_shards.split(",") if x.strip()]
    except ValueError:
        parser.error(f"--ps-shards takes shard counts separated by commas, e.g. 1,2,4; got {args.ps_shards!r}")
    if any(n < 1 for n in args.ps_shards):
        parser.error(f"--ps-shards counts must be >= 1, got {args.ps_shards}")
    return args


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs")
    print(f"wire dtype: {args.wire_dtype}")
    t = transfers(args.pushes, args.wire_dtype)
    print(f"gradient push: {t['grad_bytes'] / 1e6:.2f} MB, {t['push_ms']:.2f} ms round trip incl. apply (median)")
    print(f"weight pull:   {t['weight_bytes'] / 1e6:.2f} MB, {t['pull_ms']:.2f} ms incl. the server's put (median)")
    print(f"gradient of a 5 x 16 rollout on a worker: {t['gradient_ms']:.1f} ms")
    print(f"parameter server ceiling: {t['server_updates_per_s']:.0f} updates/s (pipelined pushes, one server)")
    for n in args.ps_shards:
        if n > 1:
            print(f"ceiling with --ps-shards {n}: {shard_ceiling(n, args.pushes, args.wire_dtype):.0f} updates/s "
                  f"(pipelined pushes: a report to the server and a slice to each shard)", flush=True)
    if args.skip_throughput:
        return 0
    layouts = {name: [*extra, "--wire-dtype", args.wire_dtype] if "ray" in name else extra
               for name, extra in LAYOUTS.items()}
    if max(args.ps_shards, default=1) > 1:
        most = max(args.ps_shards)
        layouts[f"ray, 2 workers x 1 thread x 16 envs, {most} shards"] = [
            *layouts["ray, 2 workers x 1 thread x 16 envs"], "--ps-shards", str(most)]
    results = {name: [] for name in layouts}
    for _ in range(args.repeats):
        for name, extra in layouts.items():
            results[name].append(throughput(name, extra, args.seconds, args.warmup))
            print(f"{name}: {results[name][-1]:.0f} env steps/s", flush=True)
    base = statistics.median(results["local, 2 threads x 16 envs"])
    for name, rates in results.items():
        print(f"median {name}: {statistics.median(rates):.0f} env steps/s ({statistics.median(rates) / base:.2f} of "
              f"local)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
