"""Why does a run not learn? Plays a few Pong rollouts with a checkpoint and prints the network's internals:
the scale of the torso's features (they should stay near their initial ~0.05), the share of dead ReLU units per
layer (a first layer that is all dead never learns again; Pong runs kept 1 of 16 conv0 filters alive), the
per-state spread of the policy and the value (near 0 = the net ignores its input), and for a3c-lstm the size of
the gate pre-activations (>> 5 = a saturated cell).

    python tools/diagnose_checkpoint.py runs/pong-lstm/checkpoints
"""
import argparse
import dataclasses
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import envs  # noqa: E402
import hparams  # noqa: E402
from batch_agents import BatchAgents  # noqa: E402
from checkpoints import restore_weights  # noqa: E402
from tf_setup import configure_tensorflow  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", help="a run's checkpoints/ directory (its config.json is read from there)")
    p.add_argument("--envs", type=int, default=8)
    p.add_argument("--steps", type=int, default=60)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    hp = hparams.validate(hparams.from_dict(json.load(open(os.path.join(args.checkpoints, "config.json")))))
    hp = dataclasses.replace(hp, threads=1, devices="")
    tf = configure_tensorflow(hp)
    from learner import make_learner
    learner = make_learner(hp, json.load(open(os.path.join(args.checkpoints, "config.json")))["num_actions"])
    prefix = tf.train.latest_checkpoint(args.checkpoints)
    restore_weights(learner.net, prefix)
    env = envs.make_vector_env(hp, args.envs, num_threads=1)
    agents = BatchAgents(env, seed=5, state_size=learner.net.state_size)
    rollout, _ = agents.collect(learner.policy(), args.steps)
    env.close()
    net = learner.net
    features = net.torso(tf.reshape(tf.constant(rollout.obs), [-1, 4, 84, 84]))
    out = net.unroll(tf.constant(rollout.obs), tf.constant(rollout.initial_state), tf.constant(rollout.resets))
    probs = tf.nn.softmax(out.policy_params).numpy()
    print(f"checkpoint {prefix}")
    print(f"torso features: mean {float(tf.reduce_mean(features)):.4f}, max {float(tf.reduce_max(features)):.2f}, "
          f"zero entries {float(tf.reduce_mean(tf.cast(features == 0, tf.float32))):.0%}")
    dead = learner.dead_units(rollout)
    if dead:
        print("dead units (ReLU 0 on every frame and position of the rollout): "
              + ", ".join(f"{layer} {share:.0%}" for layer, share in dead.items()))
    print(f"policy: mean probabilities {probs.mean((0, 1)).round(3)}, per-state std {probs.std((0, 1)).round(4)}")
    print(f"value: mean {out.value.numpy().mean():.3f}, per-state std {out.value.numpy().std():.4f}")
    if net.lstm_units:
        gates = net.lstm.project(net.lstm_input_norm(features)).numpy()
        print(f"LSTM gate pre-activations (input part): mean |x| {np.abs(gates).mean():.2f}, "
              f"max {np.abs(gates).max():.2f}")


if __name__ == "__main__":
    main()
