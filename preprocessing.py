"""Observation wrappers shared by the env families whose games give RGB screens (retro, gymnasium image envs):
grayscale 84x84 and a frame stack, stack axis first, as ale-py's AtariVectorEnv gives them, so one network reads
them all.

Owns: the grayscale-resize and frame-stack wrappers on one gymnasium env.
Must not: import TensorFlow or project modules, or know which family uses it.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

FRAME_SIZE = 84
STACK = 4


def gray_resize(frame: np.ndarray, size: int = FRAME_SIZE) -> np.ndarray:
    """[H, W, 3] uint8 RGB -> [size, size] uint8 gray (PIL's "L": 0.299 R + 0.587 G + 0.114 B, box filter)."""
    from PIL import Image
    image = Image.fromarray(np.ascontiguousarray(frame), "RGB").convert("L")
    return np.asarray(image.resize((size, size), Image.Resampling.BOX), dtype=np.uint8)


class GrayResize(gym.ObservationWrapper):
    def __init__(self, env: gym.Env, size: int = FRAME_SIZE):
        super().__init__(env)
        self.size = size
        self.observation_space = gym.spaces.Box(0, 255, (size, size), np.uint8)

    def observation(self, observation):
        return gray_resize(observation, self.size)


class FrameStack(gym.Wrapper):
    """The last `num` observations stacked on a FIRST axis, newest last; reset fills the stack with the first."""

    def __init__(self, env: gym.Env, num: int = STACK):
        super().__init__(env)
        space = env.observation_space
        self.observation_space = gym.spaces.Box(0, 255, (num, *space.shape), space.dtype)
        self._frames = np.zeros(self.observation_space.shape, space.dtype)

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._frames[:] = obs
        return self._frames.copy(), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._frames[:-1] = self._frames[1:]
        self._frames[-1] = obs
        return self._frames.copy(), reward, terminated, truncated, info


def atari_style(env: gym.Env) -> gym.Env:
    """An RGB-screen env -> [4, 84, 84] uint8 observations (gray, resized, stacked)."""
    return FrameStack(GrayResize(env))
