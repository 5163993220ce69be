"""A trained policy as a TensorFlow SavedModel: for serving, and for evaluation without the training code.

    python a3c_test.py --model runs/pong --export exported/pong      # write it
    python a3c_test.py --model exported/pong --out eval/pong         # evaluate it like a checkpoint

The SavedModel's `serving_default` signature takes observations `obs [B, *obs_shape]` (uint8 frames
`[B, 4, 84, 84]`, or float32 vectors `[B, n]`) and the recurrent state `state [B, S]` (zeros at an episode start;
S = 0 for the feed-forward nets, so pass a `[B, 0]` array) and returns the greedy `action` (`[B]` int32, or the
Gaussian's mean `[B, D]` float32, unclipped), `policy_params` (distributions.py; for discrete actions also under
the name `logits [B, A]`), `value [B]` and the next `state [B, S]`. Beside saved_model.pb, `a3c_config.json`
holds the training config (env settings, network, observation and action spaces) and the env steps the policy
was trained for, so a3c_test.py can rebuild the env. A gSDE policy (--std-head sde) exports its Gaussian
(policy_params): sampled from an export, its noise is drawn afresh at every step, not held for a rollout as in
training.

Owns: writing and loading exported policies.
Must not: train or read checkpoints (checkpoints.py does).
"""
from __future__ import annotations

import json
import os

import numpy as np

from errors import RunError
from tf_setup import import_tensorflow

tf = import_tensorflow()

from distributions import for_action_spec  # noqa: E402
import specs as specs_lib  # noqa: E402

EXPORT_CONFIG = "a3c_config.json"


class PolicyModule(tf.Module):
    def __init__(self, net):
        super().__init__(name="a3c_policy")
        self.net = net
        self.state_size = tf.Variable(net.state_size, trainable=False, name="state_size")
        self.step = tf.function(self._step, input_signature=[
            tf.TensorSpec([None, *net.obs_spec.shape], net.obs_spec.dtype, name="obs"),
            tf.TensorSpec([None, net.state_size], tf.float32, name="state")])

    def _step(self, obs, state):
        out = self.net(obs, state)
        outputs = dict(action=self.net.dist.mode(out.policy_params), policy_params=out.policy_params,
                       value=out.value, state=out.state)
        if self.net.action_spec.is_discrete:
            outputs["logits"] = out.policy_params
        return outputs


def is_saved_model(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "saved_model.pb"))


def export_policy(net, config: dict, env_steps_trained: int | None, out_dir: str):
    """Write `net` as a SavedModel to out_dir, with its training config beside it."""
    module = PolicyModule(net)
    try:
        tf.saved_model.save(module, out_dir, signatures={"serving_default": module.step})
        with open(os.path.join(out_dir, EXPORT_CONFIG), "w") as f:
            json.dump(dict(config, env_steps_trained=env_steps_trained), f, indent=2, sort_keys=True)
    except (OSError, tf.errors.OpError) as e:
        raise RunError(f"cannot write the SavedModel to {out_dir} ({str(e).splitlines()[0][:160]}); "
                       f"choose a writable --export directory") from None


class SavedPolicy:
    """An exported policy, loaded: the batch_agents.PolicyFn of a3c_test's evaluation loop."""

    def __init__(self, path: str, action: specs_lib.ActionSpec | None = None):
        """`action`: the policy's action spec; default: the one saved beside the model."""
        try:
            if action is None:
                with open(os.path.join(path, EXPORT_CONFIG)) as f:
                    action = specs_lib.from_config(json.load(f))[1]
            self.dist = for_action_spec(action)
            self.module = tf.saved_model.load(path)
            self.state_size = int(self.module.state_size.numpy())
        except (OSError, ValueError, AttributeError, tf.errors.OpError) as e:
            raise RunError(f"{path} is not a SavedModel written by a3c_test.py --export "
                           f"({str(e).splitlines()[0][:160]}); export it again") from None

    def policy(self, greedy: bool):
        def call(obs, state, reset, seed):
            state = np.where(np.asarray(reset)[:, None], 0.0, state).astype(np.float32)  # as the learner's act
            out = self.module.step(tf.constant(obs), tf.constant(state))
            action = out["action"] if greedy else self.dist.sample(out["policy_params"], seed)
            return action, out["value"], out["state"]
        return call
