"""The cue-memory task (fakes.CueMemoryVectorEnv) on the real trainer: does a network remember beyond the frame
stack? Prints the mean return of the last 100 episodes (1 = always right, 0 = chance).

    python tests/memory_task.py --network a3c-lstm --delay 5 --t-max 7 --steps 12000 --seed 0
    python tests/memory_task.py --network a3c --delay 12 --t-max 14 --steps 60000
"""
import argparse
import dataclasses
import io
import os
import sys
import tempfile
import time

sys.path[:0] = [os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]

import numpy as np  # noqa: E402

import a3c  # noqa: E402
import fakes  # noqa: E402
import hparams  # noqa: E402


def run(network: str, delay: int, t_max: int, steps: int, seed: int, logdir: str) -> tuple[float, int]:
    """(mean return of the last 100 episodes, episodes in that window) after `steps` env steps of 1 x 16 envs."""
    hp = hparams.validate(dataclasses.replace(
        hparams.HParams(), threads=1, envs_per_thread=16, t_max=t_max, total_env_steps=steps, network=network,
        learning_rate=1e-3, lr_schedule="constant", episodic_life=False, seed=seed, progress_bar=False,
        log_interval_s=60.0, checkpoint_interval_s=600.0, tf_intra_op_threads=2, logdir=logdir))
    trainer = a3c.Trainer(hp, env_factory=lambda i, n: fakes.CueMemoryVectorEnv(n, delay=delay), out=io.StringIO())
    trainer.setup()
    assert trainer.run() == 0
    return float(np.mean(trainer.run_log.recent_returns)), len(trainer.run_log.recent_returns)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--network", default="a3c-lstm")
    p.add_argument("--delay", type=int, default=5, help="steps from the cue to the decision (> 3)")
    p.add_argument("--t-max", type=int, default=7, help="rollout length; > delay, so BPTT spans the episode")
    p.add_argument("--steps", type=int, default=12_000)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    mean, n = run(args.network, args.delay, args.t_max, args.steps, args.seed, tempfile.mkdtemp())
    print(f"{args.network} delay {args.delay} t_max {args.t_max} steps {args.steps} seed {args.seed}: "
          f"mean return {mean:.2f} over the last {n} episodes ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
