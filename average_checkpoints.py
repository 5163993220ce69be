"""Average the network weights of a run's last checkpoints into one checkpoint to evaluate or export.

    python average_checkpoints.py --model runs/pong --last 10 --out models/pong-avg
    python average_checkpoints.py --model runs/pong --from-step 4500000 --out models/pong-avg
    python a3c_test.py --model models/pong-avg --out eval/pong-avg

Stochastic weight averaging (Izmailov et al. 2018, arXiv 1803.05407; for actor-critic on Atari, Nikishin et
al. 2018): the uniform mean of the weights along the end of a run, which is best taken while the step size is
constant (a3c.py --lr-schedule constant, with --checkpoint-interval-s and --checkpoints-kept set so the run
keeps enough checkpoints). Floating-point variables are averaged; others (counters) come from the newest.

Writes to --out: checkpoints/ckpt-N (N = the newest source's env steps; the network only, no optimizer state,
so it evaluates and exports like any checkpoint but cannot be resumed), config.json (the run's) and
averaged.json (the sources, newest first). Problems are one `error: ...` line on stderr, exit status 2.
Owns: choosing the checkpoints and averaging their weights (checkpoints.write_network_only writes the result).
Must not: modify the sources, or write anything outside --out.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import numpy as np

from checkpoints import AVERAGED_FILE, checkpoint_candidates, checkpoint_problem, ckpt_number, load_config, \
    prepare_writable_dir, resolve_checkpoint, restore_weights, trained_env_steps, write_network_only
from errors import ArgumentParser, ConfigError, RunError, run_writing_command
from tf_setup import configure_tensorflow, import_tensorflow


def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(description="Average the network weights of a run's last checkpoints (SWA).")
    p.add_argument("--model", required=True, help="a run directory (a3c.py --logdir) or its checkpoints/ directory")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--last", type=int, metavar="K", help="average the newest K checkpoints (K >= 2)")
    which.add_argument("--from-step", type=int, metavar="S", help="average every checkpoint at S env steps or later")
    p.add_argument("--out", required=True, help="directory for the averaged checkpoint and its config.json")
    return p.parse_args(argv)


def select_checkpoints(model: str, last: int | None, from_step: int | None) -> tuple[list[str], str]:
    """--model and the selection -> (checkpoint prefixes newest first, config.json path)."""
    newest, config_path = resolve_checkpoint(model)
    ckpt_dir = os.path.dirname(newest)
    on_disk = sorted((p for p in checkpoint_candidates(ckpt_dir) if os.path.isfile(p + ".index")),
                     key=ckpt_number, reverse=True)
    if last is not None:
        if last < 2:
            raise ConfigError(f"--last must be >= 2 (one checkpoint needs no averaging), got {last}")
        if last > len(on_disk):
            raise RunError(f"--last {last} but {ckpt_dir} holds {len(on_disk)} checkpoint(s); pass --last "
                           f"{len(on_disk)} or keep more (a3c.py --checkpoints-kept)")
        chosen = on_disk[:last]
    else:
        chosen = [p for p in on_disk if ckpt_number(p) >= from_step]
        if len(chosen) < 2:
            steps = ", ".join(str(ckpt_number(p)) for p in on_disk) or "none"
            raise RunError(f"--from-step {from_step} leaves {len(chosen)} checkpoint(s) in {ckpt_dir} (they are at "
                           f"{steps} env steps); pass a smaller --from-step")
    for prefix in chosen:
        problem = checkpoint_problem(prefix)
        if problem:
            raise RunError(f"checkpoint {prefix} is unreadable ({problem}); leave it out with --from-step or --last")
    return chosen, config_path


def average_into(net, prefixes: list[str]) -> None:
    """Set net's variables to the mean over `prefixes` (floating point) or to the first prefix's (the rest)."""
    sums = None
    for prefix in reversed(prefixes):  # the newest last, so non-float variables keep its values
        restore_weights(net, prefix)
        values = [v.numpy() for v in net.variables]
        sums = [x.astype(np.float64) for x in values] if sums is None else [s + x for s, x in zip(sums, values)]
    for v, s, newest in zip(net.variables, sums, values):
        v.assign((s / len(prefixes)).astype(newest.dtype) if np.issubdtype(newest.dtype, np.floating) else newest)


def average(argv) -> str:
    """Parse argv, write the averaged checkpoint; returns the line to print."""
    args = parse_args(argv)
    import_tensorflow()  # quietly, before anything else loads it
    prefixes, config_path = select_checkpoints(args.model, args.last, args.from_step)
    hp, (obs, action) = load_config(config_path)
    if action is None:
        raise RunError(f"{config_path} has no action_space (a run from before it was saved); evaluate its "
                       f"checkpoints one at a time with a3c_test.py")
    source_ckpt_dir = os.path.abspath(os.path.dirname(prefixes[0]))
    if os.path.abspath(args.out) in (source_ckpt_dir, os.path.dirname(source_ckpt_dir)):
        raise ConfigError(f"--out {args.out} is the run being averaged; choose a new directory")
    prepare_writable_dir(args.out, "--out")
    configure_tensorflow(dataclasses.replace(hp, devices=""))
    from learner import make_learner
    net = make_learner(hp, action, obs=obs).net  # the network as a3c_test.py builds it (ACER's has a Q head)
    average_into(net, prefixes)
    path = write_network_only(args.out, net, ckpt_number(prefixes[0]), trained_env_steps(prefixes[0]),
                              config_path, AVERAGED_FILE,
                              dict(sources=prefixes, env_steps=[trained_env_steps(p) for p in prefixes]))
    return (f"averaged {len(prefixes)} checkpoints of {os.path.dirname(prefixes[0])} "
            f"({ckpt_number(prefixes[-1])} to {ckpt_number(prefixes[0])}) into {path}")


def main(argv=None) -> int:
    return run_writing_command(lambda: average(argv))


if __name__ == "__main__":
    sys.exit(main())
