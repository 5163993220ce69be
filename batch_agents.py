"""A batch of agents: one vector env stepped in one call, and `[T, B]` rollout collection.

Each learner thread owns one BatchAgents. Only observations go to the shared network and only actions come
back; everything else (episode bookkeeping, masks) is NumPy on the host.

The vector env follows the contract of envs.py, whose NEXT_STEP autoreset is handled here: the step after an
episode end ignores the action, returns reward 0 and the first observation of the new episode. That
transition is marked `valid=False` and never enters the loss; the observation returned AT the end step is the
true final observation, so a truncated episode can bootstrap from V(final observation).

The env step can overlap the learner's gradient step: after a rollout, `send_pending()` hands the already
chosen first actions of the next rollout to the emulator threads (AtariVectorEnv.send) and returns; the next
`collect` receives their result. Those actions come from the pre-update weights - one update of extra policy
lag on one step in t_max, the same staleness A3C's lock-free threads already accept.

Episodic life (training only) is done here, not in the env: ale_py's own `episodic_life` restarts the whole
game at every life loss, which would hide later game states from the agent. Instead a life loss is marked
`terminated` (no bootstrap across it) while the game continues.

Owns: stepping one vector env with a policy, episode returns and lengths, the valid / terminated / truncated /
reset masks, the per-env recurrent state between rollouts, and the env / inference timers.
Must not: build envs (envs.py), compute returns or losses (a3c_math.py), or touch TensorFlow: the policy is
any PolicyFn.
"""
from __future__ import annotations

import time
from typing import Callable, NamedTuple

import numpy as np


class Rollout(NamedTuple):
    """T steps of B envs, time-major. Rewards are raw (unclipped)."""
    obs: np.ndarray  # [T, B, *obs_shape], s_t: uint8 frames [4, 84, 84] or float32 vectors [n]
    actions: np.ndarray  # [T, B] int32 (discrete) or [T, B, D] float32 (Box, before the env's clipping), a_t
    rewards: np.ndarray  # [T, B] float32, r_t (raw game score change)
    terminated: np.ndarray  # [T, B] bool, game over (or life lost, with episodic life) at step t
    truncated: np.ndarray  # [T, B] bool, time limit hit at step t
    valid: np.ndarray  # [T, B] bool, False for autoreset transitions
    resets: np.ndarray  # [T, B] bool, s_t is the first state of an episode (recurrent state is zeroed)
    initial_state: np.ndarray  # [B, S] float32, recurrent state before step 0
    bootstrap_value: np.ndarray  # [B] float32, V(s_T) from the policy at collection time
    # [T, B] float32, log mu(a_t | s_t) under the policy that acted (V-trace's behaviour policy); None when the
    # policy did not report it (test doubles, evaluation)
    behaviour_log_probs: np.ndarray | None = None
    # [T, B, P] float32, the acting distribution's parameters (ACER keeps mu(.|s_t) in its replay); None as above
    behaviour_params: np.ndarray | None = None


class EpisodeStats(NamedTuple):
    returns: list  # raw episode returns of episodes that ended during the rollout
    lengths: list  # their lengths in agent steps


# policy(obs [B, *obs_shape], state [B,S] f32, reset [B] bool, seed [2] int32) -> (actions [B] int32 or [B, D]
# float32, values [B] f32, new_state [B,S] f32[, log_probs [B] f32 of the actions[, policy params [B, P] f32]]),
# all NumPy-convertible.
PolicyFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple]


class BatchAgents:
    """Steps B envs in lockstep with one policy call per step and keeps per-env episode bookkeeping.

    env: a vector env of the contract in envs.py (NEXT_STEP autoreset).
    """

    def __init__(self, env, *, seed: int, state_size: int = 0, episodic_life: bool = False):
        self.env = env
        self.num_envs = env.num_envs
        self.episodic_life = episodic_life
        self.obs, info = env.reset(seed=seed)
        self.lives = np.asarray(info.get("lives", np.zeros(self.num_envs)), np.int64)
        self.state = np.zeros((self.num_envs, state_size), np.float32)
        self.reset_next = np.ones(self.num_envs, bool)  # next obs starts an episode
        self.valid_next = np.ones(self.num_envs, bool)  # next step is a real transition
        self.episode_return = np.zeros(self.num_envs, np.float64)
        self.episode_length = np.zeros(self.num_envs, np.int64)
        self.sample_seed = np.array([seed, 0], np.int32)  # stateless sampling: (run seed, step counter)
        self.pending = None  # policy output for self.obs computed at the end of the previous rollout
        self.in_flight = None  # actions sent to the env whose result has not been received yet
        self.timers = {"env": 0.0, "inference": 0.0}

    def use_state_size(self, state_size: int):
        """Size every env's recurrent state for the policy's core (zeros, as at an episode start)."""
        self.state = np.zeros((self.num_envs, state_size), np.float32)

    def act(self, policy: PolicyFn):
        t0 = time.perf_counter()
        self.sample_seed[1] += 1
        actions, values, state, *behaviour = policy(self.obs, self.state, self.reset_next, self.sample_seed)
        self.timers["inference"] += time.perf_counter() - t0
        behaviour = [np.asarray(x, np.float32) for x in behaviour] + [None, None]
        return np.asarray(actions), np.asarray(values), np.asarray(state), behaviour[0], behaviour[1]

    def send(self, actions: np.ndarray):
        """Start stepping the envs with `actions` (asynchronously where the env supports send/recv)."""
        if self.in_flight is not None:
            raise RuntimeError("send() while a step is in flight; receive() it first")
        t0 = time.perf_counter()
        if hasattr(self.env, "send"):
            self.env.send(actions)
        self.in_flight = actions
        self.timers["env"] += time.perf_counter() - t0

    def send_pending(self):
        """Send the next rollout's first actions now, so the envs step while the caller does other work."""
        if self.pending is not None and self.in_flight is None:
            self.send(self.pending[0])

    def step(self, actions: np.ndarray):
        """Apply actions; return per-env (reward, terminated, truncated, valid) of this transition and the
        (returns, lengths) of episodes that just ended."""
        self.send(actions)
        return self.receive()

    def receive(self):
        """Finish the step in flight; same results as step()."""
        actions, self.in_flight = self.in_flight, None
        t0 = time.perf_counter()
        if hasattr(self.env, "recv"):
            obs, reward, terminated, truncated, info = self.env.recv()
        else:
            obs, reward, terminated, truncated, info = self.env.step(actions)
        self.timers["env"] += time.perf_counter() - t0
        env_id = info.get("env_id")
        if env_id is not None and not np.array_equal(env_id, np.arange(self.num_envs)):
            raise RuntimeError(f"the vector env returned envs out of order ({env_id[:8]}...); "
                               f"batch_size must equal num_envs")
        reward = np.asarray(reward, np.float32)
        terminated = np.asarray(terminated, bool)
        truncated = np.asarray(truncated, bool)
        valid = self.valid_next
        reward = np.where(valid, reward, 0.0).astype(np.float32)
        episode_end = (terminated | truncated) & valid
        self.episode_return += reward
        self.episode_length += valid
        ended = np.flatnonzero(episode_end)
        finished = (self.episode_return[ended].tolist(), self.episode_length[ended].tolist())
        self.episode_return[ended] = 0.0
        self.episode_length[ended] = 0
        lives = np.asarray(info.get("lives", self.lives), np.int64)
        loss_terminal = terminated & valid
        if self.episodic_life:
            loss_terminal |= (lives < self.lives) & valid
        self.lives = lives
        self.obs = obs
        self.valid_next = ~episode_end
        # After an autoreset transition the new episode's first state arrives; with episodic life a life
        # loss also starts a fresh recurrent state.
        self.reset_next = ~valid | (loss_terminal & ~episode_end)
        return reward, loss_terminal, truncated & valid & ~terminated, valid, finished

    def collect(self, policy: PolicyFn, t_max: int) -> tuple[Rollout, EpisodeStats]:
        """Run t_max steps of every env. The policy output for the state after the last step gives the
        bootstrap value and is kept as the first action of the next rollout, so each step costs exactly
        one policy call."""
        B = self.num_envs
        obs = np.empty((t_max, B) + self.obs.shape[1:], self.obs.dtype)
        rewards = np.empty((t_max, B), np.float32)
        terminated = np.empty((t_max, B), bool)
        truncated = np.empty((t_max, B), bool)
        valid = np.empty((t_max, B), bool)
        resets = np.empty((t_max, B), bool)
        initial_state = self.state.copy()
        returns, lengths = [], []
        out = self.pending or self.act(policy)
        actions = np.empty((t_max,) + out[0].shape, out[0].dtype)
        log_probs = None if out[3] is None else np.empty((t_max, B), np.float32)
        params = None if out[4] is None else np.empty((t_max,) + out[4].shape, np.float32)
        for t in range(t_max):
            obs[t] = self.obs
            resets[t] = self.reset_next
            actions[t], _, self.state, log_prob, param = out
            if log_probs is not None:
                log_probs[t] = log_prob
            if params is not None:
                params[t] = param
            if self.in_flight is None:
                self.send(actions[t])
            elif not np.array_equal(self.in_flight, actions[t]):
                raise RuntimeError("the actions in flight are not the pending ones")
            rewards[t], terminated[t], truncated[t], valid[t], (ret, length) = self.receive()
            returns += ret
            lengths += length
            out = self.act(policy)
        self.pending = out
        rollout = Rollout(obs, actions, rewards, terminated, truncated, valid, resets, initial_state,
                          out[1].astype(np.float32), log_probs, params)
        return rollout, EpisodeStats(returns, lengths)

    def discard_pending(self):
        """Forget the cached next action (e.g. after the weights were restored). Actions already sent to the
        env cannot be taken back: they stay pending and open the next rollout."""
        if self.in_flight is None:
            self.pending = None

    def close(self):
        if self.in_flight is not None and hasattr(self.env, "recv"):
            # A step sent by send_pending is still running: gymnasium's AsyncVectorEnv warns when closed like that.
            try:
                self.receive()
            except Exception:  # noqa: BLE001 - closing anyway; the env's own error was or will be reported
                pass
        close = getattr(self.env, "close", None)
        if close:
            close()
