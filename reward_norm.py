"""--normalize-rewards: rewards divided by the running standard deviation of the discounted return.

The scheme of Stable-Baselines3's VecNormalize (which the RL Zoo's A2C and PPO recipes for LunarLanderContinuous and
BipedalWalker use), after OpenAI baselines: each env keeps its discounted return R <- gamma R + r (back to 0 at the
end of an episode), a running variance of R over all envs and steps is kept, and the loss sees r / sqrt(var + eps)
clipped to [-10, 10]. The mean is not subtracted: a reward's sign survives. Rewards of any scale then give value
targets of a similar size, so one learning rate fits envs whose returns are 1 or 1,000.

The statistics (count, mean, var of R) are tf.Variables, shared by the learner threads and saved in checkpoints;
each thread's running returns are NumPy arrays that restart at 0 on a resume (one episode's worth of the statistic
is all that is lost).

Owns: the return accumulators, the running variance and the scale it gives.
Must not: compute losses, touch the network or the envs (learner.py applies `scale` inside its update).
"""
from __future__ import annotations

import numpy as np

from tf_setup import import_tensorflow

tf = import_tensorflow()

CLIP = 10.0  # |normalised reward| <= 10, as VecNormalize's clip_reward
EPSILON = 1e-8


class ReturnMoments(tf.Module):
    """The checkpointed part: count, mean and variance of the returns seen (float64)."""

    def __init__(self, name: str = "reward_norm"):
        super().__init__(name=name)
        # VecNormalize starts at count 1e-4, mean 0, var 1: the first rewards are taken as they are.
        self.count = tf.Variable(1e-4, dtype=tf.float64, trainable=False, name="count")
        self.mean = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="mean")
        self.var = tf.Variable(1.0, dtype=tf.float64, trainable=False, name="var")


class ReturnNormalizer:
    """Running count / mean / variance of the discounted returns (`moments`, for the checkpoint), and the scale
    1 / sqrt(var + eps) the learning rewards are multiplied by. `fold(rewards, done, valid, thread)` takes a
    thread's rollout `[T, B]`."""

    def __init__(self, gamma: float):
        self.gamma = gamma
        self.moments = ReturnMoments()
        self.count, self.mean, self.var = self.moments.count, self.moments.mean, self.moments.var
        self.returns: dict[int, np.ndarray] = {}  # thread -> [B] running discounted return of each env

    def fold(self, rewards: np.ndarray, done: np.ndarray, valid: np.ndarray, thread: int = 0) -> None:
        """Fold a rollout into the statistics. rewards, done (terminated or truncated at step t), valid: `[T, B]`;
        steps that are not valid (an autoreset's step) neither add to a return nor to the statistics."""
        if rewards.ndim != 2 or done.shape != rewards.shape or valid.shape != rewards.shape:
            raise ValueError(f"rewards, done and valid must be [T, B] alike, got {rewards.shape}, {done.shape}, "
                             f"{valid.shape}")
        returns = self.returns.setdefault(thread, np.zeros(rewards.shape[1]))
        seen = []
        for t in range(len(rewards)):
            returns = np.where(valid[t], self.gamma * returns + rewards[t], returns)
            seen.append(returns[valid[t]])
            returns = np.where(done[t], 0.0, returns)
        self.returns[thread] = returns
        batch = np.concatenate(seen)
        if batch.size:
            self._merge(batch.mean(), batch.var(), batch.size)

    def _merge(self, batch_mean: float, batch_var: float, batch_count: int) -> None:
        """Chan et al.'s parallel variance: the running moments and a batch's, combined."""
        count, mean, var = float(self.count.numpy()), float(self.mean.numpy()), float(self.var.numpy())
        total = count + batch_count
        delta = batch_mean - mean
        m2 = var * count + batch_var * batch_count + delta ** 2 * count * batch_count / total
        self.mean.assign(mean + delta * batch_count / total)
        self.var.assign(m2 / total)
        self.count.assign(total)

    def scale(self) -> tf.Tensor:
        """float32 scalar 1 / sqrt(var + eps), read where it is called (inside a tf.function: at every call)."""
        return tf.cast(tf.math.rsqrt(self.var + EPSILON), tf.float32)

    def normalise(self, rewards) -> tf.Tensor:
        """The learning rewards: rewards x scale, clipped to [-CLIP, CLIP]."""
        return tf.clip_by_value(rewards * self.scale(), -CLIP, CLIP)
