"""Env families: which vector env an env id gets, all behind the one contract BatchAgents consumes.

The vector-env contract (ale_py's AtariVectorEnv is the model; tests/fakes.py has test doubles of it):
  num_envs                          B, the batch of envs stepped together
  single_action_space               gymnasium.spaces.Discrete(A)
  reset(seed=int) -> obs, info      env j is seeded with seed + j
  step(actions [B] int32) -> obs, reward [B], terminated [B], truncated [B], info
  send(actions) / recv()            optional: the same step, split so the envs run while the caller works
  close()
  Autoreset in NEXT_STEP mode: the step after an episode end ignores its action, returns reward 0 and the first
  observation of the next episode; the observation returned AT the end step is the true final one. info may
  hold "lives" [B] (for episodic life) and "env_id" [B] (which must be arange(B): envs in order). Rewards are raw.

A family is an EnvFamily: `claims(env_id)`, `check(env_id)` (raises ConfigError with the fix) and
`make(hp, num_envs, rgb=, num_threads=)`. FAMILIES is searched in order and the first family that claims an
id gets it; ALE comes last because it also takes bare ROM names (`pong`). Today ALE is the only family; a
gymnasium or retro family is added to FAMILIES, before ALE, and nothing else changes.

Owns: env ids, building vector envs from HParams, and the A3C_FAKE_ENV test hook.
Must not: step envs or keep episode bookkeeping (batch_agents.py), or know about the network or the trainer.
"""
from __future__ import annotations

import os
import re
from typing import Callable, NamedTuple

from errors import ConfigError, RunError
from hparams import HParams

# Test hook, for tests only: A3C_FAKE_ENV=module:function makes a3c.py train on function(thread_index, num_envs)
# instead of Atari, so that signals, crashes and resumes of the real CLI can be tested in a subprocess cheaply.
FAKE_ENV_VAR = "A3C_FAKE_ENV"

# (thread_index, num_envs) -> a vector env of num_envs envs
EnvFactory = Callable[[int, int], object]


class EnvFamily(NamedTuple):
    name: str
    claims: Callable[[str], bool]  # env_id -> does this family run it
    check: Callable[[str], str]  # env_id -> the family's name for it; ConfigError if it cannot run it
    make: Callable[..., object]  # (hp, num_envs, *, rgb: bool, num_threads: int | None) -> vector env


# ----------------------------------------------------------------------------------------------------------
# ALE: Atari 2600 games through ale_py's AtariVectorEnv (frameskip, max-pool, 84x84 gray, frame stack in C++)
# ----------------------------------------------------------------------------------------------------------
def rom_name(env_id: str) -> str:
    """`ALE/Pong-v5`, `PongNoFrameskip-v4`, `Pong` or `pong` -> `pong` (ale_py ROM id)."""
    name = env_id.split("/")[-1]
    name = re.sub(r"(NoFrameskip|Deterministic)?-v\d+$", "", name)
    if not name.islower():
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    return name


def check_ale_id(env_id: str) -> str:
    from ale_py import roms
    name = rom_name(env_id)
    if name not in roms.get_all_rom_ids():
        raise ConfigError(f"unknown env id {env_id!r}: no Atari ROM named {name!r} ships with ale-py; "
                          f"use e.g. ALE/Pong-v5 or ALE/Breakout-v5")
    return name


def make_ale_env(hp: HParams, num_envs: int, *, rgb: bool = False, num_threads: int | None = None):
    """The AtariVectorEnv for hp's settings. `rgb=True` gives full 210x160 RGB frames (for videos) from an
    otherwise identical env: seeded alike and fed the same actions, it plays the same game step by step.

    Two defaults of AtariVectorEnv are turned off: its reward clipping (raw scores are logged; the learner
    clips what the loss sees) and its episodic life, which restarts the whole game at every life loss
    (BatchAgents marks a life loss terminal while the game goes on)."""
    from ale_py import AtariVectorEnv
    image = dict(img_height=210, img_width=160, grayscale=False, stack_num=1, maxpool=False) if rgb else {}
    return AtariVectorEnv(
        check_ale_id(hp.env_id), num_envs,
        frameskip=hp.frameskip, repeat_action_probability=hp.repeat_action_probability, noop_max=hp.noop_max,
        full_action_space=hp.full_action_space, max_num_frames_per_episode=hp.max_episode_frames,
        reward_clipping=False, episodic_life=False, life_loss_info=False,
        num_threads=hp.resolved_env_threads() if num_threads is None else num_threads,
        **image)


ALE = EnvFamily("ale", claims=lambda env_id: True, check=check_ale_id, make=make_ale_env)

FAMILIES: list[EnvFamily] = [ALE]


# ----------------------------------------------------------------------------------------------------------
# The registry
# ----------------------------------------------------------------------------------------------------------
def family_of(env_id: str) -> EnvFamily:
    return next(family for family in FAMILIES if family.claims(env_id))


def check_env_id(env_id: str) -> str:
    """The env's name within its family (the ROM id for ALE); ConfigError if no family can run it."""
    return family_of(env_id).check(env_id)


def make_vector_env(hp: HParams, num_envs: int, *, rgb: bool = False, num_threads: int | None = None):
    """A vector env of `num_envs` envs of hp.env_id with hp's env settings (see the module docstring)."""
    return family_of(hp.env_id).make(hp, num_envs, rgb=rgb, num_threads=num_threads)


def vector_env_factory(hp: HParams) -> EnvFactory:
    """The trainer's env factory for hp.env_id; checks the id now, before anything is created."""
    check_env_id(hp.env_id)
    return lambda thread_index, num_envs: make_vector_env(hp, num_envs)


def factory_from_environment() -> EnvFactory | None:
    """The test hook: the env factory named by $A3C_FAKE_ENV (`module:function`), or None for real envs."""
    spec = os.environ.get(FAKE_ENV_VAR)
    if not spec:
        return None
    import importlib
    module, _, function = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError, ValueError) as e:
        raise RunError(f"{FAKE_ENV_VAR}={spec!r} does not name an env factory ({e})") from None
