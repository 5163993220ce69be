"""Throughput benchmark: bare env stepping vs env + inference vs full training, in one process.

    python benchmark.py                      # Pong, default threads / envs per thread, ~20 s per phase
    python benchmark.py --preset pong --seconds 30 --json bench.json
    python benchmark.py --threads 1 --envs-per-thread 64

All three phases use the same vector envs (built once: ALE start-up is slow), the same thread layout and the
same TF thread settings, so the ratio training / bare is apples to apples. Every HParams flag is accepted.
Between inference and training it times the network alone (act on a fixed batch, updates on a fixed rollout,
both cores busy), which gives the ceiling of training / bare: per env step the machine has to do the
emulation (1 / bare), one forward (1 / act) and one sample's share of an update (1 / update), so
training / bare <= (1 / bare) / (1 / bare + 1 / act + 1 / update) however well they overlap.
Prints a table and a JSON line; peak RSS is the process's high-water mark (reached during training).
Owns: the throughput measurements and their report.
Must not: change how training works: it drives the real Trainer, learner and envs, and writes only to a temp logdir.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time

import numpy as np

import a3c
import hparams as hparams_lib
from batch_agents import BatchAgents
from envs import env_specs, make_vector_env
from errors import ArgumentParser, ConfigError
from specs import ActionSpec
from tf_setup import configure_tensorflow


def _run_threads(fn, n: int, seconds: float, warmup: float) -> float:
    """Run fn(i) (returns env steps done) in n threads; return env steps/s measured after `warmup` seconds."""
    stop = threading.Event()
    counts = [0] * n

    def loop(i):
        while not stop.is_set():
            counts[i] += fn(i)
    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    time.sleep(warmup)
    c0, t0 = sum(counts), time.perf_counter()
    time.sleep(seconds)
    c1, t1 = sum(counts), time.perf_counter()
    stop.set()
    for t in threads:
        t.join()
    if c1 == c0:
        raise SystemExit(f"error: no call finished within the {seconds:g} s measured; raise --seconds or --warmup")
    return (c1 - c0) / (t1 - t0)


def parse_args(argv=None) -> tuple[argparse.Namespace, hparams_lib.HParams]:
    """(this script's own flags, HParams from every other flag as a3c.py reads them); ConfigError for a bad flag."""
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog="Every other flag is a3c.py's (python a3c.py --help), e.g. --preset NAME.")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per phase (default: 20)")
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds before each phase (default: 5)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args, rest = parser.parse_known_args(argv)
    if not args.seconds > 0:
        raise ConfigError(f"--seconds must be > 0, got {args.seconds:g}")
    if not args.warmup >= 0:
        raise ConfigError(f"--warmup must be >= 0, got {args.warmup:g}")
    return args, hparams_lib.parse_args(rest)


def _random_actions(rng: np.random.Generator, action: ActionSpec, n: int) -> np.ndarray:
    """n uniform random actions of the spec: ints for discrete actions, [n, D] floats within the box."""
    if action.is_discrete:
        return rng.integers(0, action.size, n, dtype=np.int32)
    return rng.uniform(action.low, action.high, (n, action.size)).astype(np.float32)


def main(argv=None) -> int:
    try:
        args, hp = parse_args(argv)
        with tempfile.TemporaryDirectory(prefix="a3c_bench_") as logdir:  # the trainer's files, nothing to keep
            return _benchmark(args, hp, logdir)
    except ConfigError as e:  # bad flags, or an env / network the config cannot build
        print(f"error: {e}", file=sys.stderr)
        return 2


def _benchmark(args: argparse.Namespace, hp: hparams_lib.HParams, logdir: str) -> int:
    hp = hparams_lib.dataclasses.replace(hp, logdir=logdir, progress_bar=False, total_env_steps=10**12,
                                         log_interval_s=1e6, checkpoint_interval_s=1e6)
    configure_tensorflow(hp)
    from learner import make_learner  # imports TensorFlow, after configure_tensorflow set its threads
    t = time.perf_counter()
    envs = [make_vector_env(hp, hp.envs_per_thread) for _ in range(hp.threads)]
    obs_spec, action_spec = env_specs(envs[0], hp.env_id)
    learner = make_learner(hp, action_spec, obs=obs_spec)  # before any output: a config it refuses is one line
    print(f"built {hp.threads} x {hp.envs_per_thread} envs in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    for i, env in enumerate(envs):
        env.reset(seed=hp.seed + i * hp.envs_per_thread)
    B = hp.envs_per_thread
    rngs = [np.random.default_rng(i) for i in range(hp.threads)]

    # 1. bare env stepping, random actions
    def bare(i):
        envs[i].step(_random_actions(rngs[i], action_spec, B))
        return B
    bare_sps = _run_threads(bare, hp.threads, args.seconds, args.warmup)
    print(f"bare env: {bare_sps:,.0f} steps/s", file=sys.stderr)

    # 2. env + inference (the acting half of training)
    agents = [BatchAgents(env, seed=hp.seed + i * B, state_size=learner.net.state_size) for i, env in enumerate(envs)]
    policy = learner.policy()
    agents[0].act(policy)  # trace once before the threads race

    def infer(i):
        actions, _, agents[i].state, *_ = agents[i].act(policy)
        agents[i].step(actions)
        return B
    infer_sps = _run_threads(infer, hp.threads, args.seconds, args.warmup)
    print(f"env + inference: {infer_sps:,.0f} steps/s", file=sys.stderr)

    # 3. the network alone, both cores busy with it (the ceiling of the module docstring)
    frames = [np.ascontiguousarray(agents[i].obs) for i in range(hp.threads)]
    states = [agents[i].state for i in range(hp.threads)]
    no_reset, seed = np.zeros(B, bool), np.zeros(2, np.int32)

    def act_only(i):
        np.asarray(policy(frames[i], states[i], no_reset, seed)[0])
        return B
    act_fps = _run_threads(act_only, hp.threads, args.seconds / 2, args.warmup / 2)
    rollouts = [agents[i].collect(policy, hp.t_max)[0] for i in range(hp.threads)]

    def train_only(i):
        learner.train_on(rollouts[i], 1e-12)  # full cost of an update; a ~zero step keeps the weights sane
        return hp.t_max * B
    for _ in range(10):  # trace the update functions before the clock runs (ACER's replayed one: at its first replay)
        if learner.train_on(rollouts[0], 1e-12).get("off_policy_updates", 1):
            break
    train_only_sps = _run_threads(train_only, hp.threads, args.seconds / 2, args.warmup / 2)
    ceiling = (1 / bare_sps) / (1 / bare_sps + 1 / act_fps + 1 / train_only_sps)
    print(f"network only: act {act_fps:,.0f} frames/s, update {train_only_sps:,.0f} samples/s -> "
          f"ceiling of training / bare {ceiling:.2f}", file=sys.stderr)

    # 4. full training (the real Trainer, on the same envs)
    trainer = a3c.Trainer(hp, env_factory=lambda i, n: envs[i], out=open(os.devnull, "w"))
    trainer.setup()
    result = {}

    def measure():
        time.sleep(args.warmup)
        with trainer.counters.lock:
            s0 = trainer.counters.env_steps
        trainer.run_log.telemetry.clear()
        t0 = time.perf_counter()
        time.sleep(args.seconds)
        with trainer.counters.lock:
            s1 = trainer.counters.env_steps
        result["train_sps"] = (s1 - s0) / (time.perf_counter() - t0)
        tel = list(trainer.run_log.telemetry)
        total = sum(x.total_s for x in tel) or 1.0
        result["split"] = {k: sum(getattr(x, f"{k}_s") for x in tel) / total for k in ("env", "inference", "train")}
        result["split"]["other"] = 1.0 - sum(result["split"].values())
        result["policy_lag"] = float(np.mean([x.policy_lag for x in tel])) if tel else float("nan")
        if tel and "replay_s" in tel[0].metrics:  # ACER: how the update time splits between on-policy and replay
            on, off = (sum(x.metrics[k] for x in tel) for k in ("on_policy_s", "replay_s"))
            result["acer"] = dict(on_policy_fraction=round(on / max(on + off, 1e-9), 3),
                                  replay_fraction=round(off / max(on + off, 1e-9), 3),
                                  off_policy_updates_per_rollout=round(float(np.mean(
                                      [x.metrics["off_policy_updates"] for x in tel])), 2))
        trainer.stop_event.set()
    threading.Thread(target=measure, daemon=True).start()
    trainer.run()
    if not result.get("train_sps"):
        raise SystemExit(f"error: no update finished within the {args.seconds:g} s measured; raise --seconds or "
                         f"--warmup")
    peak_rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    out = dict(env_id=hp.env_id, threads=hp.threads, envs_per_thread=B, t_max=hp.t_max, network=hp.network,
               env_threads=hp.resolved_env_threads(), tf_intra_op=hp.resolved_intra_op_threads(),
               tf_inter_op=hp.resolved_inter_op_threads(), jit_compile=hp.jit_compile,
               precision=trainer.learner.precision, cpus=os.cpu_count(),
               bare_sps=round(bare_sps, 1), inference_sps=round(infer_sps, 1),
               train_sps=round(result["train_sps"], 1), ratio=round(result["train_sps"] / bare_sps, 3),
               act_only_fps=round(act_fps, 1), update_only_sps=round(train_only_sps, 1),
               ceiling_ratio=round(ceiling, 3),
               peak_rss_gib=round(peak_rss_gib, 2),
               train_time_split={k: round(v, 3) for k, v in result["split"].items()},
               policy_lag_updates=round(result["policy_lag"], 2), algorithm=hp.algorithm,
               acer_update_split=result.get("acer"))
    print(f"\n{'phase':<18}{'env steps/s':>12}")
    print(f"{'bare env':<18}{bare_sps:>12,.0f}")
    print(f"{'env + inference':<18}{infer_sps:>12,.0f}")
    print(f"{'training':<18}{result['train_sps']:>12,.0f}")
    print(f"{'network only: act':<18}{act_fps:>12,.0f}  frames/s")
    print(f"{'network only: update':<18}{train_only_sps:>12,.0f}  samples/s")
    print(f"ceiling of training / bare if the cores never idled: {ceiling:.2f}")
    print(f"ratio training / bare: {out['ratio']:.2f}   peak RSS: {peak_rss_gib:.2f} GiB   "
          f"policy lag: {out['policy_lag_updates']} updates")
    print("training time split per thread: " + ", ".join(f"{k} {v:.0%}" for k, v in result["split"].items()))
    if result.get("acer"):
        a = result["acer"]
        print(f"ACER update time: on-policy {a['on_policy_fraction']:.0%}, replay {a['replay_fraction']:.0%} "
              f"({a['off_policy_updates_per_rollout']} off-policy updates per rollout)")
    print(json.dumps(out))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
