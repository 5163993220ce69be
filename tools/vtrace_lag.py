"""Does V-trace help at the policy lag a cluster produces? CartPole on Ray, lag made large on purpose.

    python tools/vtrace_lag.py --seeds 0,1,2 --steps 200000 --interval 64 --out assets/vtrace_lag.png  # ~35 min

Two workers pull weights every --weight-pull-interval updates: with interval K each acts with weights up to ~2K
server updates old, the lag of a cluster with ~2K worker threads pulling every update. Three configs:
  lag ~1 (pull every update), no correction             - the reference
  lag K, no correction: gradient taken with the stale weights that acted (A3C's thread-local copy)
  lag K, V-trace: gradient taken with weights fetched just before it, importance-weighted against the acting policy
Prints, per config and seed, the mean policy lag, env steps until the last-100 mean first reached --target, the
last-100 mean averaged over the whole run (the area under the curve: CartPole's final value alone swings with
collapses) and the final last-100 mean; then a table of them; plots every curve to --out. Runs one at a time
(parallel runs on 2 cores measure contention).
Owns: the experiment. Must not: change training (it runs a3c.py).
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(extra: list, seed: int, steps: int, target: float, logdir: str) -> dict:
    shutil.rmtree(logdir, ignore_errors=True)
    args = [sys.executable, "a3c.py", "--preset", "cartpole", "--executor", "ray", "--workers", "2", "--threads", "1",
            "--seed", str(seed), "--total-env-steps", str(steps), "--logdir", logdir, "--no-progress-bar",
            "--log-interval-s", "2", *extra]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr[-500:]}")
    with open(os.path.join(logdir, "progress.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r["mean_return"]]
    reached = next((int(r["env_steps"]) for r in rows if float(r["mean_return"]) >= target), None)
    lags = [float(r["policy_lag"]) for r in rows if r["policy_lag"]]
    curve = [(int(r["env_steps"]), float(r["mean_return"])) for r in rows]
    return dict(lag=statistics.mean(lags), reached=reached, final=curve[-1][1],
                auc=statistics.mean(m for _, m in curve), curve=curve)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=150_000)
    parser.add_argument("--interval", type=int, default=32, help="weight pull interval of the lagging configs")
    parser.add_argument("--target", type=float, default=300.0)
    parser.add_argument("--workdir", default="runs/vtrace_lag", help="run directories, one per config and seed")
    parser.add_argument("--out", default="", help="PNG of every curve")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    configs = {
        "pull every update, none": [],
        f"pull every {args.interval}, none": ["--weight-pull-interval", str(args.interval)],
        f"pull every {args.interval}, vtrace": ["--weight-pull-interval", str(args.interval),
                                                "--off-policy-correction", "vtrace"],
    }
    results = {name: [] for name in configs}
    for seed in map(int, args.seeds.split(",")):
        for name, extra in configs.items():
            logdir = os.path.join(args.workdir, f"{name.replace(' ', '_').replace(',', '')}_seed{seed}")
            r = run(extra, seed, args.steps, args.target, logdir)
            results[name].append(r)
            print(f"{name:28s} seed {seed}: lag {r['lag']:6.1f}, reached {args.target:g} at {r['reached']}, "
                  f"run mean {r['auc']:.1f}, final {r['final']:.1f}", flush=True)
    print(f"\n| config | mean policy lag | env steps to last-100 mean >= {args.target:g} (per seed) | last-100 mean "
          f"averaged over the run (per seed; median) | final last-100 mean (per seed) |")
    print("|---|---|---|---|---|")
    for name, rs in results.items():
        print(f"| {name} | {statistics.median(r['lag'] for r in rs):.1f} | "
              f"{' / '.join(str(r['reached'] or 'not') for r in rs)} | "
              f"{' / '.join(format(r['auc'], '.0f') for r in rs)}; **{statistics.median(r['auc'] for r in rs):.0f}** | "
              f"{' / '.join(format(r['final'], '.0f') for r in rs)} |")
    if args.out:
        plot(results, args.out)


def plot(results: dict, out: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for color, (name, rs) in zip(("tab:gray", "tab:red", "tab:blue"), results.items()):
        for i, r in enumerate(rs):
            steps, means = zip(*r["curve"])
            ax.plot(steps, means, color=color, alpha=0.8, label=name if i == 0 else None)
    ax.set_xlabel("env steps")
    ax.set_ylabel("mean return, last 100 episodes")
    ax.set_title("CartPole on Ray, 2 workers: policy lag and V-trace (one line per seed)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)


if __name__ == "__main__":
    main()
