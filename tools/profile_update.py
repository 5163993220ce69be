"""Where does an update's time go? Profiles a thread's update (`learner.train_on` of one rollout) op by op.

    python tools/profile_update.py --preset pong-acer-t10          # ACER on Pong: on-policy + replayed updates
    python tools/profile_update.py --preset lunarlander --top 10
    python tools/profile_update.py --preset pong --json profile.json

It builds one vector env and the learner the flags describe (every other flag is a3c.py's), collects rollouts
with the untrained policy, fills ACER's replay memory past its start, then runs `train_on` --calls times under
TensorFlow's profiler with a ~zero learning rate (the full cost of an update; the weights stay sane) and prints:
the wall time per call, the updates per call (ACER: 1 on-policy + the Poisson draws), the TF ops' time summed over
the op threads (it exceeds the wall time when ops run in parallel), the time per op type and the slowest ops by
name. One thread, the machine otherwise idle: the figures are for comparing two versions of the update on one
machine (`benchmark.py` measures training as a whole). docs/throughput.md shows what it found.
Owns: the per-op profile of the update and its report.
Must not: change how training works (it calls the real learner), or write anywhere but a temporary directory.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import hparams as hparams_lib  # noqa: E402
from batch_agents import BatchAgents  # noqa: E402
from envs import env_specs, make_vector_env  # noqa: E402
from errors import ArgumentParser, ConfigError  # noqa: E402
from tf_setup import configure_tensorflow  # noqa: E402

TINY_STEP = 1e-12  # a learning rate that costs a full update but leaves the weights as they were
FILL_ROLLOUTS = 4  # rollouts collected before timing; ACER's replay starts after the first ones


def parse_args(argv=None) -> tuple[argparse.Namespace, hparams_lib.HParams]:
    """(this tool's own flags, HParams from every other flag as a3c.py reads them); ConfigError for a bad flag."""
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog="Every other flag is a3c.py's (python a3c.py --help), e.g. --preset NAME.")
    parser.add_argument("--calls", type=int, default=20, help="profiled train_on calls (default: 20)")
    parser.add_argument("--top", type=int, default=15, help="slowest ops listed by name (default: 15)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--keep-trace", action="store_true",
                        help="keep the profiler's trace and print its directory, for TensorBoard's Profile tab "
                             "(default: deleted with the run's temporary directory)")
    args, rest = parser.parse_known_args(argv)
    if args.calls < 1:
        raise ConfigError(f"--calls must be >= 1, got {args.calls}")
    if args.top < 0:
        raise ConfigError(f"--top must be >= 0, got {args.top}")
    return args, hparams_lib.parse_args(rest)


def op_times(xplane_path: str) -> collections.Counter:
    """{(op name, op type): picoseconds} summed over the TF op threads of a profiler trace (.xplane.pb)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    space = xplane_pb2.XSpace()
    with open(xplane_path, "rb") as f:
        space.ParseFromString(f.read())
    times = collections.Counter()
    for plane in space.planes:
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # the executor's op threads; not Python, not Eigen's pool
                continue
            for event in line.events:
                name = names.get(event.metadata_id, "")
                if ":" in name and "::" not in name:  # "scope/op_name:OpType"; not the executor's own
                    # events ("ExecutorState::Process" encloses the ops it runs: counting it would count them twice)
                    op, kind = name.rsplit(":", 1)
                    times[(op, kind)] += event.duration_ps
    return times


def main(argv=None) -> int:
    try:
        args, hp = parse_args(argv)
        if args.keep_trace:
            return _profile(args, hp, tempfile.mkdtemp(prefix="a3c_profile_"))
        with tempfile.TemporaryDirectory(prefix="a3c_profile_") as logdir:
            return _profile(args, hp, logdir)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _profile(args: argparse.Namespace, hp: hparams_lib.HParams, logdir: str) -> int:
    hp = dataclasses.replace(hp, logdir=logdir, progress_bar=False)
    if hp.algorithm == "acer":  # replay from the second filled rollout on, so the profile sees replayed updates
        hp = dataclasses.replace(hp, replay_start=min(hp.replay_start, hp.envs_per_thread * hp.t_max_of(0)))
    tf = configure_tensorflow(hp)
    from learner import make_learner  # imports TensorFlow, after configure_tensorflow set its threads
    env = make_vector_env(hp, hp.envs_per_thread)
    obs_spec, action_spec = env_specs(env, hp.env_id)
    learner = make_learner(hp, action_spec, obs=obs_spec)
    env.reset(seed=hp.seed)
    agents = BatchAgents(env, seed=hp.seed, state_size=learner.net.state_size)
    policy = learner.policy()
    rollouts = [agents.collect(policy, hp.t_max_of(0))[0] for _ in range(FILL_ROLLOUTS + 1)]
    for rollout in rollouts[:FILL_ROLLOUTS]:  # fills the replay memory and traces every update function
        learner.train_on(rollout, TINY_STEP)
    probe = rollouts[-1]
    for _ in range(2):
        learner.train_on(probe, TINY_STEP)

    trace_dir = os.path.join(logdir, "trace")
    tf.profiler.experimental.start(trace_dir)
    updates = []
    start = time.perf_counter()
    for _ in range(args.calls):
        metrics = learner.train_on(probe, TINY_STEP)
        updates.append(1 + metrics.get("off_policy_updates", 0))
    wall_ms = (time.perf_counter() - start) / args.calls * 1e3
    tf.profiler.experimental.stop()
    traces = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
    if not traces:
        raise ConfigError(f"the profiler wrote no trace under {trace_dir}; is this TensorFlow built with it?")
    times = op_times(traces[0])
    per_call = {k: ps / 1e9 / args.calls for k, ps in times.items()}  # ms per train_on call
    by_type = collections.Counter()
    for (_, kind), ms in per_call.items():
        by_type[kind] += ms
    op_ms = sum(by_type.values())

    T, B = probe.actions.shape
    print(f"{hp.env_id}, {hp.algorithm}, one rollout of [{T}, {B}], {args.calls} calls: "
          f"{wall_ms:.2f} ms per train_on call, {np.mean(updates):.2f} updates per call")
    print(f"TF ops: {op_ms:.2f} ms of op-thread time per call (above the wall time where ops ran in parallel)")
    print(f"\n{'op type':<44}{'ms/call':>9}{'share':>8}")
    for kind, ms in by_type.most_common():
        if ms >= 0.005 * op_ms:
            print(f"{kind:<44}{ms:>9.2f}{ms / op_ms:>8.0%}")
    if args.top:
        print(f"\n{'slowest ops':<72}{'ms/call':>9}")
        for (op, kind), ms in sorted(per_call.items(), key=lambda kv: -kv[1])[:args.top]:
            print(f"{(op + ':' + kind)[-71:]:<72}{ms:>9.2f}")
    result = dict(env_id=hp.env_id, algorithm=hp.algorithm, rollout=[T, B], calls=args.calls,
                  wall_ms_per_call=round(wall_ms, 3), updates_per_call=round(float(np.mean(updates)), 2),
                  op_ms_per_call=round(op_ms, 3), precision=learner.precision, cpus=os.cpu_count(),
                  op_types_ms={k: round(v, 3) for k, v in by_type.most_common()})
    if args.keep_trace:
        print(f"trace: {trace_dir} (tensorboard --logdir {trace_dir}, Profile tab)")
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
