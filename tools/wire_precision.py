"""How much `--wire-dtype bfloat16|float16` perturbs learning, measured on real rollouts of a trained run.

    python tools/wire_precision.py                                # models/breakout, 20 rollouts of 5 x 64 envs
    python tools/wire_precision.py --model runs/pong --rollouts 40

For each rollout (the run's t_max x envs_per_thread, acting with the run's weights) it takes the clipped float32
gradient and the same gradient as the wire carries it, and sets the rounding beside what every update already
carries: the noise between two rollouts' gradients. For the weights it sets the policy change of one pull
rounded to the wire dtype (KL on the rollouts' states) beside the change of one float32 update at the run's
learning rate with its own optimizer statistics. --model must be a full checkpoint (with the optimizer's
statistics, e.g. models/breakout), so that the update is the one training would make.
Owns: measuring. Must not: train or write anything (the checkpoint is only read).
"""
from __future__ import annotations

import dataclasses
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from errors import ArgumentParser, ConfigError, RunError  # noqa: E402

WIRE_DTYPES = ("bfloat16", "float16")


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="models/breakout",
                        help="a full checkpoint (run directory) whose optimizer statistics are saved")
    parser.add_argument("--rollouts", type=int, default=20, help="rollouts to measure (>= 2)")
    parser.add_argument("--seed", type=int, default=1, help="seeds the envs and the sampled actions")
    args = parser.parse_args(argv)
    if args.rollouts < 2:
        parser.error(f"--rollouts must be >= 2 (the noise is measured between two rollouts), got {args.rollouts}")
    return args


def flat(arrays) -> np.ndarray:
    return np.concatenate([np.asarray(a, np.float32).ravel() for a in arrays])


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def mean_kl(logits_p: np.ndarray, logits_q: np.ndarray) -> float:
    """Mean over states of KL(p || q) for categorical logits [N, A]."""
    log_p = logits_p - np.logaddexp.reduce(logits_p, axis=1, keepdims=True)
    log_q = logits_q - np.logaddexp.reduce(logits_q, axis=1, keepdims=True)
    return float(np.mean(np.sum(np.exp(log_p) * (log_p - log_q), axis=1)))


def measure(model: str, rollouts: int, seed: int) -> dict:
    import tensorflow as tf

    from batch_agents import BatchAgents
    from checkpoints import load_config, resolve_checkpoint, trained_env_steps, weights_only_marker
    from envs import make_vector_env
    from hparams import learning_rate_at
    from learner import make_learner
    prefix, config_path = resolve_checkpoint(model)
    if any(weights_only_marker(d) for d in (os.path.dirname(prefix), os.path.dirname(os.path.dirname(prefix)))):
        raise RunError(f"--model {model} holds the network only (no optimizer statistics, so no update to compare "
                       f"with); pass a full checkpoint such as models/breakout")
    hp, (obs_spec, action_spec) = load_config(config_path)
    if hp.algorithm != "a3c" or hp.network == "a3c-lstm" or action_spec.kind != "discrete":
        raise ConfigError(f"--model {model}: this measures feed-forward A3C runs with discrete actions; it is "
                          f"{hp.algorithm}, {hp.network}, {action_spec.kind} actions")
    hp = dataclasses.replace(hp, devices="", precision="float32", seed=seed)
    learners = {dtype: make_learner(dataclasses.replace(hp, wire_dtype=dtype), action_spec, obs=obs_spec)
                for dtype in ("float32", *WIRE_DTYPES)}
    base = learners["float32"]
    tf.train.Checkpoint(**base.checkpoint_objects()).restore(prefix).expect_partial().assert_existing_objects_matched()
    for dtype in WIRE_DTYPES:
        learners[dtype].set_weights(base.get_weights())
    lr = learning_rate_at(hp, trained_env_steps(prefix) or 0)

    def logits(learner, obs):
        out = learner.net(tf.constant(obs.reshape(-1, *obs.shape[2:])),
                          learner.net.initial_state(obs.shape[0] * obs.shape[1]))
        return out.policy_params.numpy().astype(np.float32)

    agents = BatchAgents(make_vector_env(hp, hp.envs_per_thread), seed=seed, episodic_life=hp.episodic_life)
    rows = []
    try:
        previous = None
        for _ in range(rollouts):
            rollout = agents.collect(base.policy(), hp.t_max)[0]
            grads, _ = base.gradients_on(rollout)
            g = flat(grads)
            row = dict(noise_cosine=cosine(g, previous) if previous is not None else None)
            previous = g
            before = logits(base, rollout.obs)
            weights = base.get_weights()  # the run's, restored after each rounded pull and each trial update
            for dtype in WIRE_DTYPES:
                wire = flat(learners[dtype].gradients_on(rollout)[0])
                pulled = learners[dtype]  # holds the run's weights: its wire_weights() are a rounded pull
                pulled.set_weights(pulled.wire_weights())
                row[dtype] = dict(grad_rel_error=float(np.linalg.norm(wire - g) / np.linalg.norm(g)),
                                  grad_cosine=cosine(wire, g),
                                  grad_zeroed=float(np.mean((wire == 0) & (g != 0))),
                                  pull_kl=mean_kl(before, logits(pulled, rollout.obs)))
                pulled.set_weights(weights)
            # one float32 update with the run's statistics, undone after, so that every rollout starts from the run
            saved = [v.numpy() for v in base.optimizer.variables]
            for name, step in (("update_kl", lr), ("update_kl_peak", hp.learning_rate)):
                base.apply_gradients(grads, step)
                row[name] = mean_kl(before, logits(base, rollout.obs))
                base.set_weights(weights)
                for v, value in zip(base.optimizer.variables, saved):
                    v.assign(value)
            rows.append(row)
    finally:
        agents.close()
    return dict(hp=hp, lr=lr, rows=rows,
                grad_bytes=int(sum(int(np.prod(v.shape)) for v in base.net.trainable_variables)))


def median(values) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values)


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
        from tf_setup import import_tensorflow
        import_tensorflow()
        result = measure(args.model, args.rollouts, args.seed)
    except (ConfigError, RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from reproduce import cpu_model
    hp, rows = result["hp"], result["rows"]
    print(f"CPU: {cpu_model()}; {args.model}: {hp.env_id}, {hp.network}, {result['grad_bytes']:,} weights; "
          f"{len(rows)} rollouts of {hp.t_max} x {hp.envs_per_thread} envs")
    print(f"noise: cosine between two consecutive rollouts' float32 gradients, median "
          f"{median(r['noise_cosine'] for r in rows):.3f}")
    for dtype in WIRE_DTYPES:
        print(f"{dtype}: gradient relative L2 error {median(r[dtype]['grad_rel_error'] for r in rows):.2e}, "
              f"cosine to float32 {median(r[dtype]['grad_cosine'] for r in rows):.6f}, "
              f"nonzero elements flushed to 0 {median(r[dtype]['grad_zeroed'] for r in rows):.2%}; "
              f"policy KL of a rounded pull {median(r[dtype]['pull_kl'] for r in rows):.2e}")
    print(f"one float32 update with the run's optimizer statistics: policy KL "
          f"{median(r['update_kl'] for r in rows):.2e} at the checkpoint's learning rate {result['lr']:.3g}, "
          f"{median(r['update_kl_peak'] for r in rows):.2e} at the schedule's start {hp.learning_rate:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
