"""Test doubles of ale_py's AtariVectorEnv (NEXT_STEP autoreset) and a trivial policy, shared by the tests.

ScriptedVectorEnv plays hand-written episodes (exact rollout checks); FakeAtariVectorEnv is a cheap,
seed-deterministic stand-in for real Atari that the trainer can run on, in-process (`Trainer(env_factory=...)`)
or through the CLI in a subprocess (`A3C_FAKE_ENV=fakes:make_env`, options as JSON in A3C_FAKE_ENV_OPTIONS).
"""
from __future__ import annotations

import json
import os
import threading
import time

import gymnasium
import numpy as np

OPTIONS_VAR = "A3C_FAKE_ENV_OPTIONS"
ATARI_FRAMES = gymnasium.spaces.Box(0, 255, (4, 84, 84), np.uint8)  # what AtariVectorEnv gives


class ScriptedVectorEnv:
    """A test double of ale_py's AtariVectorEnv with NEXT_STEP autoreset.

    episodes[b] is a cycle of episodes for env b; each is a dict with
      rewards: reward of every real step, end: "terminated" | "truncated" | "both" (flags at the last step),
      lives (optional): lives reported after every step (start lives = lives at reset, default 3).
    The step after an episode end ignores the action and returns reward 0, terminated/truncated False
    (or `reset_junk` values, to check that BatchAgents masks them) and the new episode's first observation.
    Observation pixel [0, 0, 0] = episode number, [0, 0, 1] = steps taken in the episode, [0, 0, 2] = env index.
    """

    def __init__(self, episodes, start_lives=3, reset_junk=None, num_actions=3):
        self.episodes = episodes
        self.num_envs = len(episodes)
        self.single_action_space = gymnasium.spaces.Discrete(num_actions)
        self.single_observation_space = ATARI_FRAMES
        self.start_lives = start_lives
        self.reset_junk = reset_junk
        self.actions_log = []

    def _obs(self):
        obs = np.zeros((self.num_envs, 4, 84, 84), np.uint8)
        obs[:, 0, 0, 0] = self.episode
        obs[:, 0, 0, 1] = self.t
        obs[:, 0, 0, 2] = np.arange(self.num_envs)
        return obs

    def _episode(self, b):
        cycle = self.episodes[b]
        return cycle[self.episode[b] % len(cycle)]

    def reset(self, seed=None):
        self.seed = seed
        self.episode = np.zeros(self.num_envs, np.int64)
        self.t = np.zeros(self.num_envs, np.int64)
        self.needs_reset = np.zeros(self.num_envs, bool)
        self.lives = np.full(self.num_envs, self.start_lives, np.int64)
        return self._obs(), {"lives": self.lives.copy()}

    def step(self, actions):
        actions = np.asarray(actions)
        assert actions.shape == (self.num_envs,)
        assert np.all((0 <= actions) & (actions < self.single_action_space.n))
        self.actions_log.append(actions.copy())
        B = self.num_envs
        reward = np.zeros(B, np.float32)
        terminated = np.zeros(B, bool)
        truncated = np.zeros(B, bool)
        for b in range(B):
            if self.needs_reset[b]:  # NEXT_STEP autoreset: the action is ignored
                self.needs_reset[b] = False
                self.episode[b] += 1
                self.t[b] = 0
                self.lives[b] = self.start_lives
                if self.reset_junk:
                    reward[b], terminated[b], truncated[b] = self.reset_junk
                continue
            ep = self._episode(b)
            reward[b] = ep["rewards"][self.t[b]]
            if "lives" in ep:
                self.lives[b] = ep["lives"][self.t[b]]
            self.t[b] += 1
            if self.t[b] == len(ep["rewards"]):
                terminated[b] = ep["end"] in ("terminated", "both")
                truncated[b] = ep["end"] in ("truncated", "both")
                self.needs_reset[b] = True
        return self._obs(), reward, terminated, truncated, {"lives": self.lives.copy()}

    def close(self):
        pass


class DummyPolicy:
    """Always action 0, constant value, empty state; records what it was given."""

    def __init__(self, value=0.25):
        self.value = value
        self.calls = []

    def __call__(self, obs, state, reset, seed):
        B = obs.shape[0]
        assert obs.dtype == np.uint8 and obs.shape == (B, 4, 84, 84)
        assert state.shape == (B, 0)
        self.calls.append(dict(obs=obs.copy(), reset=np.array(reset, copy=True), seed=np.array(seed, copy=True)))
        return np.zeros(B, np.int32), np.full(B, self.value, np.float32), np.zeros((B, 0), np.float32)


class FakeAtariVectorEnv:
    """Cheap stand-in for AtariVectorEnv: same API and NEXT_STEP autoreset, deterministic given the reset seed
    and the actions. Env j (seeded seed + j, as ale_py does) shows random frames from its own generator and
    pays reward 1 for action (t mod num_actions). Its episodes last episode_length + j % 3 steps and end
    alternately terminated and truncated.

    Fault injection: fail_at_step=k raises RuntimeError in the k-th step() call (and writes the time to
    fail_marker, if given); nan_rewards=True makes
    every reward NaN; step_sleep_s slows each step (to let a test catch the trainer mid-run).
    Counts: steps (step() calls), episodes_ended (real episode ends, as BatchAgents counts them).
    """

    instances: list = []  # every env created in this process, for tests to inspect
    _instances_lock = threading.Lock()

    def __init__(self, num_envs, num_actions=6, episode_length=7, fail_at_step=None, nan_rewards=False,
                 step_sleep_s=0.0, fail_marker=None, name=""):
        self.num_envs = num_envs
        self.single_action_space = gymnasium.spaces.Discrete(num_actions)
        self.single_observation_space = ATARI_FRAMES
        self.episode_length = episode_length
        self.fail_at_step = fail_at_step
        self.fail_marker = fail_marker  # file that gets the time.time() of the failure
        self.nan_rewards = nan_rewards
        self.step_sleep_s = step_sleep_s
        self.name = name
        self.steps = 0
        self.episodes_ended = 0
        self.reset_seeds = []
        self.closed = False
        with self._instances_lock:
            FakeAtariVectorEnv.instances.append(self)

    def _frames(self):
        return np.stack([rng.integers(0, 256, (4, 84, 84), dtype=np.uint8) for rng in self.rngs])

    def reset(self, seed=None):
        seed = 0 if seed is None else seed
        self.reset_seeds.append([seed + j for j in range(self.num_envs)])
        self.rngs = [np.random.default_rng(seed + j) for j in range(self.num_envs)]
        self.t = np.zeros(self.num_envs, np.int64)
        self.episode = np.zeros(self.num_envs, np.int64)
        self.needs_reset = np.zeros(self.num_envs, bool)
        return self._frames(), {"lives": np.full(self.num_envs, 3, np.int64)}

    def step(self, actions):
        self.steps += 1
        if self.fail_at_step is not None and self.steps >= self.fail_at_step:
            if self.fail_marker:
                with open(self.fail_marker, "w") as f:
                    f.write(repr(time.time()))
            raise RuntimeError(f"fake env {self.name} failed at step {self.steps}")
        if self.step_sleep_s:
            time.sleep(self.step_sleep_s)
        actions = np.asarray(actions)
        assert actions.shape == (self.num_envs,), actions.shape
        B = self.num_envs
        reward = np.zeros(B, np.float32)
        terminated = np.zeros(B, bool)
        truncated = np.zeros(B, bool)
        for j in range(B):
            if self.needs_reset[j]:  # NEXT_STEP autoreset: action ignored, reward 0, first obs of the next one
                self.needs_reset[j] = False
                self.t[j] = 0
                self.episode[j] += 1
                continue
            reward[j] = float(actions[j] == self.t[j] % self.single_action_space.n)
            self.t[j] += 1
            if self.t[j] >= self.episode_length + j % 3:
                terminated[j] = self.episode[j] % 2 == 0
                truncated[j] = not terminated[j]
                self.needs_reset[j] = True
                self.episodes_ended += 1
        if self.nan_rewards:
            reward[:] = np.nan
        return self._frames(), reward, terminated, truncated, {"lives": np.full(B, 3, np.int64)}

    def close(self):
        self.closed = True


def make_env(thread_index: int, num_envs: int) -> FakeAtariVectorEnv:
    """Env factory for a3c.py's test hook (A3C_FAKE_ENV=fakes:make_env). A3C_FAKE_ENV_OPTIONS is a JSON object
    of FakeAtariVectorEnv keyword arguments; `fail_thread` limits fail_at_step to that thread."""
    options = json.loads(os.environ.get(OPTIONS_VAR, "{}"))
    fail_thread = options.pop("fail_thread", None)
    if fail_thread is not None and fail_thread != thread_index:
        options.pop("fail_at_step", None)
    return FakeAtariVectorEnv(num_envs, name=f"#{thread_index}", **options)


def factory(**options):
    """In-process env_factory for a3c.Trainer with fixed FakeAtariVectorEnv options."""
    def make(thread_index, num_envs):
        return FakeAtariVectorEnv(num_envs, name=f"#{thread_index}", **options)
    return make


class CueMemoryVectorEnv:
    """A memory task beyond the frame stack, with AtariVectorEnv's API and NEXT_STEP autoreset.

    Each episode shows a cue in its first frame only: the left or the right half of the screen lit (random per
    episode). The frames that follow are black. The observation is an honest stack of the last 4 frames, so
    the cue leaves the stack after step 3. The agent's action at step `delay` (> 3) is the decision: reward +1 if
    it names the cue's side (action 0 = left, 1 = right), else -1, and the episode ends (terminated). Every
    other action is ignored. A policy without memory averages 0; one that remembers the cue gets 1.
    """

    def __init__(self, num_envs, delay=5):
        assert delay > 3, "the cue must be out of the 4-frame stack at the decision"
        self.num_envs = num_envs
        self.delay = delay
        self.single_action_space = gymnasium.spaces.Discrete(2)
        self.single_observation_space = ATARI_FRAMES

    def _cue_frame(self, side):
        frame = np.zeros((84, 84), np.uint8)
        frame[:, side * 42:(side + 1) * 42] = 255
        return frame

    def _new_episode(self, j):
        self.cue[j] = self.rng.integers(2)
        self.t[j] = 0
        self.stack[j] = 0
        self.stack[j, -1] = self._cue_frame(self.cue[j])

    def reset(self, seed=None):
        self.rng = np.random.default_rng(seed)
        B = self.num_envs
        self.cue = np.zeros(B, np.int64)
        self.t = np.zeros(B, np.int64)
        self.stack = np.zeros((B, 4, 84, 84), np.uint8)
        self.needs_reset = np.zeros(B, bool)
        for j in range(B):
            self._new_episode(j)
        return self.stack.copy(), {}

    def step(self, actions):
        B = self.num_envs
        reward = np.zeros(B, np.float32)
        terminated = np.zeros(B, bool)
        for j in range(B):
            if self.needs_reset[j]:
                self.needs_reset[j] = False
                self._new_episode(j)
                continue
            if self.t[j] == self.delay:
                reward[j] = 1.0 if actions[j] == self.cue[j] else -1.0
                terminated[j] = True
                self.needs_reset[j] = True
            self.t[j] += 1
            self.stack[j, :-1] = self.stack[j, 1:]
            self.stack[j, -1] = 0
        return self.stack.copy(), reward, terminated, np.zeros(B, bool), {}

    def close(self):
        pass


ODD_SPACES = {  # name -> (observation space, action space) no network here can read or produce
    "dict_obs": (gymnasium.spaces.Dict({"frames": ATARI_FRAMES}), gymnasium.spaces.Discrete(3)),
    "tuple_obs": (gymnasium.spaces.Tuple((ATARI_FRAMES, ATARI_FRAMES)), gymnasium.spaces.Discrete(3)),
    "text_obs": (gymnasium.spaces.Text(8), gymnasium.spaces.Discrete(3)),
    "dict_action": (ATARI_FRAMES, gymnasium.spaces.Dict({"a": gymnasium.spaces.Discrete(2)})),
    "tuple_action": (ATARI_FRAMES, gymnasium.spaces.Tuple((gymnasium.spaces.Discrete(2),) * 2)),
    "text_action": (ATARI_FRAMES, gymnasium.spaces.Text(4)),
}


def make_odd_space_env(thread_index: int, num_envs: int) -> FakeAtariVectorEnv:
    """Env factory for the test hook (A3C_FAKE_ENV=fakes:make_odd_space_env): a FakeAtariVectorEnv that reports
    the spaces ODD_SPACES[A3C_FAKE_ENV_OPTIONS' "spaces"]."""
    env = FakeAtariVectorEnv(num_envs, name=f"#{thread_index}")
    env.single_observation_space, env.single_action_space = ODD_SPACES[json.loads(os.environ[OPTIONS_VAR])["spaces"]]
    return env
