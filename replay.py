"""A learner thread's replay memory for ACER: its envs' recent steps, each frame stored once.

A thread's B envs step in lockstep and its rollouts follow one another, so the memory is a ring of steps
`[capacity_steps, B]`. Each step keeps the newest frame of its observation, the action, the raw reward, the
terminated / truncated / valid / resets masks and the behaviour policy mu(.|s_t) (`[A]` probabilities, or a
Gaussian's `[2D]` mean and log-std for Box actions, whose actions are kept as `[D]` float32); each rollout keeps the
recurrent state at its start. A frame-stacked observation `[k, H, W]` uint8 is rebuilt from the last k frames;
where the stack does not continue the previous step's (an episode start), the whole stack is kept beside the
ring, once per such step. Flat observations are kept whole.

`sample` returns `[T, B]` batches of rollouts as they were collected, each column from a random stored rollout
(of a random env), with the T + 1 observations a Q-value bootstrap needs: a rollout becomes sampleable once the
next one (which holds its s_T) is stored. `sample_many` returns several such batches stacked, as one gather.

`arrays()` / `load_arrays(...)` turn a memory into plain named arrays and back (bit for bit), for the
checkpoint store to write beside a checkpoint (--save-replay).

Owns: storing, the byte budget per step, sampling and rebuilding observations, the memory as named arrays.
Must not: touch TensorFlow, envs, losses or files.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class ReplaySample(NamedTuple):
    """T steps of B env columns, time-major, as batch_agents.Rollout but with s_T and mu(.|s_t)."""
    obs: np.ndarray  # [T + 1, B, *obs_shape], s_0 .. s_T
    actions: np.ndarray  # [T, B] int32, or [T, B, D] float32 (Box actions)
    rewards: np.ndarray  # [T, B] float32, raw
    terminated: np.ndarray  # [T, B] bool
    truncated: np.ndarray  # [T, B] bool
    valid: np.ndarray  # [T, B] bool
    resets: np.ndarray  # [T + 1, B] bool, s_t starts an episode (recurrent state zeroed)
    initial_state: np.ndarray  # [B, S] float32
    behaviour_probs: np.ndarray  # [T, B, P] float32, mu(.|s_t): A probabilities, or a Gaussian's 2D parameters


def is_frame_stack(obs_shape: tuple, dtype) -> bool:
    return len(obs_shape) == 3 and np.dtype(dtype) == np.uint8


def bytes_per_step(obs_shape: tuple, obs_dtype, num_actions: int, state_size: int, t_max: int,
                   action_shape: tuple = ()) -> float:
    """Bytes one env step costs in memory (whole stacks at episode starts not included: one per episode).
    num_actions: the behaviour policy's numbers per step (A, or 2D for a Gaussian)."""
    obs_bytes = (int(np.prod(obs_shape[1:])) if is_frame_stack(obs_shape, obs_dtype)
                 else int(np.prod(obs_shape)) * np.dtype(obs_dtype).itemsize)
    return obs_bytes + 4 * num_actions + 4 * int(np.prod(action_shape)) + 4 + 5 + 4 * state_size / t_max


class ReplayMemory:
    def __init__(self, capacity_steps: int, num_envs: int, t_max: int, obs_shape: tuple, obs_dtype,
                 num_actions: int, state_size: int = 0, action_shape: tuple = (), action_dtype=np.int32):
        """num_actions: the behaviour policy's numbers per step (A probabilities, or 2D Gaussian parameters);
        action_shape / action_dtype: one action's (() int32 for discrete actions, (D,) float32 for Box)."""
        if capacity_steps < 2 * t_max:
            raise ValueError(f"a replay memory of {capacity_steps} steps per env holds less than two rollouts of "
                             f"{t_max}")
        self.t_max, self.num_envs = t_max, num_envs
        self.slots = capacity_steps // t_max  # rollouts kept
        self.n = self.slots * t_max  # steps kept per env
        self.stacked = is_frame_stack(obs_shape, obs_dtype)
        self.k = obs_shape[0] if self.stacked else 1
        frame_shape = tuple(obs_shape[1:]) if self.stacked else tuple(obs_shape)
        N, B = self.n, num_envs
        self.frames = np.zeros((N, B) + frame_shape, obs_dtype)
        self.actions = np.zeros((N, B) + tuple(action_shape), action_dtype)
        self.rewards = np.zeros((N, B), np.float32)
        self.terminated = np.zeros((N, B), bool)
        self.truncated = np.zeros((N, B), bool)
        self.valid = np.zeros((N, B), bool)
        self.resets = np.zeros((N, B), bool)
        self.probs = np.zeros((N, B, num_actions), np.float32)
        self.states = np.zeros((self.slots, B, state_size), np.float32)
        self.whole_stacks: dict[tuple[int, int], np.ndarray] = {}  # (ring position, env) -> [k, H, W]
        self.has_stack = np.zeros((N, B), bool)  # the keys of whole_stacks, for sample's vectorised test
        self.steps = 0  # steps stored so far (per env)
        self.last_obs = None  # [B, *obs_shape] the newest step's observation, to test the next for continuity

    def __len__(self) -> int:
        """Transitions held (steps x envs)."""
        return min(self.steps, self.n) * self.num_envs

    def add(self, obs, actions, rewards, terminated, truncated, valid, resets, initial_state, behaviour_probs):
        """Append one rollout of t_max steps (time-major as batch_agents.Rollout; behaviour_probs [T, B, A])."""
        T = len(actions)
        if T != self.t_max:
            raise ValueError(f"rollouts of {T} steps in a replay memory of {self.t_max}-step rollouts")
        start = self.steps % self.n
        self.states[start // self.t_max] = initial_state
        for t in range(T):
            p = start + t
            for b in np.flatnonzero(self.has_stack[p]):
                del self.whole_stacks[(p, int(b))]
            self.has_stack[p] = False
            o = obs[t]
            if self.stacked:
                self.frames[p] = o[:, -1]
                if self.last_obs is None:
                    continues = np.zeros(self.num_envs, bool)
                else:
                    continues = np.all(o[:, :-1] == self.last_obs[:, 1:], axis=tuple(range(1, o.ndim)))
                for b in np.flatnonzero(~continues):
                    self.whole_stacks[(p, int(b))] = o[b].copy()
                    self.has_stack[p, b] = True
            else:
                self.frames[p] = o
            self.last_obs = o
        sl = slice(start, start + T)
        self.actions[sl], self.rewards[sl], self.probs[sl] = actions, rewards, behaviour_probs
        self.terminated[sl], self.truncated[sl], self.valid[sl], self.resets[sl] = terminated, truncated, valid, resets
        self.steps += T

    def sampleable(self) -> int:
        """Rollouts that can be sampled: stored whole, their s_T stored, their first stack rebuildable."""
        stored = min(self.steps, self.n) // self.t_max
        # Once the ring has wrapped, the oldest rollouts' first stacks may need frames already overwritten.
        lost = -(-(self.k - 1) // self.t_max) if self.steps > self.n else 0
        return max(0, stored - 1 - lost)

    def _observation(self, step: int, b: int) -> np.ndarray:
        """The observation of absolute step `step` of env b."""
        p = step % self.n
        if not self.stacked:
            return self.frames[p, b]
        for d in range(self.k):  # the newest whole stack within the last k steps, then frames after it
            q = (step - d) % self.n
            stack = self.whole_stacks.get((q, b))
            if stack is not None:
                return np.concatenate([stack[d:], self.frames[[(step - e) % self.n for e in range(d - 1, -1, -1)], b]])
        return self.frames[[(step - e) % self.n for e in range(self.k - 1, -1, -1)], b]

    def sample(self, rng: np.random.Generator, columns: int | None = None) -> ReplaySample:
        """A [T, columns] batch (columns defaults to the memory's B envs): each column is one env's part of a
        stored rollout, both chosen at random (with replacement)."""
        return ReplaySample(*(a[0] for a in self.sample_many(rng, 1, columns)))

    def sample_many(self, rng: np.random.Generator, count: int, columns: int | None = None) -> ReplaySample:
        """`count` batches at once, each field with a leading `[count]` axis: the batches `count` calls of `sample`
        would return from the same generator (the same draws in the same order), gathered in one pass, so a learner
        can hand them all to one graph call."""
        sampleable = self.sampleable()
        if sampleable < 1:
            raise ValueError("nothing to sample yet: the memory needs two rollouts")
        T, B = self.t_max, self.num_envs
        C = B if columns is None else columns
        newest_sampleable = self.steps // T - 2  # absolute rollout index; the newest rollout waits for its s_T
        rollouts, envs = np.zeros((count, C), np.int64), np.zeros((count, C), np.int64)
        for i in range(count):  # batch by batch, as `sample` draws them
            rollouts[i] = newest_sampleable - rng.integers(0, sampleable, C)
            envs[i] = rng.integers(0, B, C)
        steps = rollouts[:, None, :] * T + np.arange(T + 1)[None, :, None]  # [count, T + 1, C] absolute steps
        env_of = envs[:, None, :]  # [count, 1, C]
        if self.stacked:
            # Every stack from the ring's last k frames in one gather; the few whose last k steps hold an
            # episode start (a whole stack kept beside the ring) are rebuilt one by one.
            frame_steps = (steps[..., None] - np.arange(self.k - 1, -1, -1)) % self.n  # [count, T + 1, C, k]
            obs = self.frames[frame_steps, env_of[..., None]]
            for i, t, j in zip(*np.nonzero(self.has_stack[frame_steps, env_of[..., None]].any(-1))):
                obs[i, t, j] = self._observation(int(steps[i, t, j]), int(envs[i, j]))
        else:
            obs = self.frames[steps % self.n, env_of]
        now, nxt = steps[:, :-1] % self.n, steps % self.n
        return ReplaySample(obs, self.actions[now, env_of], self.rewards[now, env_of], self.terminated[now, env_of],
                            self.truncated[now, env_of], self.valid[now, env_of], self.resets[nxt, env_of],
                            self.states[rollouts % self.slots, envs], self.probs[now, env_of])

    # -- as named arrays, for a checkpoint ---------------------------------------------------------------
    _RING = ("frames", "actions", "rewards", "terminated", "truncated", "valid", "resets", "probs")

    def arrays(self) -> dict[str, np.ndarray]:
        """The memory as name -> array (views, not copies: write them out before the memory changes). Only the
        filled part of the ring; the whole stacks as positions [M, 2] and stacks [M, k, H, W]."""
        filled = min(self.steps, self.n)
        keys = sorted(self.whole_stacks)
        out = {name: getattr(self, name)[:filled] for name in self._RING}
        out.update(states=self.states[:-(-filled // self.t_max)],
                   meta=np.array([self.n, self.num_envs, self.t_max, self.steps], np.int64),
                   stack_keys=np.array(keys, np.int64).reshape(len(keys), 2),
                   stacks=(np.stack([self.whole_stacks[k] for k in keys]) if keys
                           else np.zeros((0, self.k) + self.frames.shape[2:], self.frames.dtype)))
        if self.last_obs is not None:
            out["last_obs"] = self.last_obs
        return out

    def load_arrays(self, arrays) -> None:
        """Fill this (new, empty) memory from `arrays()` of a memory built with the same arguments. ValueError,
        and the memory left empty, if they do not fit it."""
        n, num_envs, t_max, steps = (int(x) for x in arrays["meta"])
        if (n, num_envs, t_max) != (self.n, self.num_envs, self.t_max):
            raise ValueError(f"it holds {n} steps x {num_envs} envs of {t_max}-step rollouts, this run's memory "
                             f"{self.n} x {self.num_envs} of {self.t_max}")
        filled = min(steps, n)
        loaded = {}
        for name in self._RING + ("states",):
            a, mine = arrays[name], getattr(self, name)
            rows = filled if name != "states" else -(-filled // t_max)
            if a.shape != (rows,) + mine.shape[1:] or a.dtype != mine.dtype:
                raise ValueError(f"its {name} are {a.dtype}{list(a.shape)}, expected {mine.dtype}"
                                 f"{[rows] + list(mine.shape[1:])}")
            loaded[name] = a
        keys, stacks = arrays["stack_keys"], arrays["stacks"]
        if (keys.ndim != 2 or len(keys) != len(stacks) or stacks.shape[1:] != (self.k,) + self.frames.shape[2:]
                or len(keys) and not (0 <= keys[:, 0].min() and keys[:, 0].max() < n
                                      and 0 <= keys[:, 1].min() and keys[:, 1].max() < num_envs)):
            raise ValueError("its whole frame stacks do not match their positions or this run's frames")
        for name, a in loaded.items():
            getattr(self, name)[:len(a)] = a
        self.whole_stacks = {(int(p), int(b)): np.array(stack) for (p, b), stack in zip(keys, stacks)}
        self.has_stack[:] = False
        for p, b in self.whole_stacks:
            self.has_stack[p, b] = True
        self.last_obs = np.array(arrays["last_obs"]) if "last_obs" in arrays else None
        self.steps = steps
