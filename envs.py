"""Env families: which vector env an env id gets, all behind the one contract BatchAgents consumes.

The vector-env contract (ale_py's AtariVectorEnv is the model; tests/fakes.py has test doubles of it):
  num_envs                          B, the batch of envs stepped together
  single_observation_space          Box (4, 84, 84) uint8 frames, stack first, or Box (n,) float32 (specs.py)
  single_action_space               gymnasium.spaces.Discrete(A), or Box(D,) (actions clipped to its bounds by
                                    the family, so the rollout keeps the policy's own sample)
  reset(seed=int) -> obs, info      env j is seeded with seed + j
  step(actions [B] int32) -> obs, reward [B], terminated [B], truncated [B], info
  send(actions) / recv()            optional: the same step, split so the envs run while the caller works
  close()
  Autoreset in NEXT_STEP mode: the step after an episode end ignores its action, returns reward 0 and the first
  observation of the next episode; the observation returned AT the end step is the true final one. info may
  hold "lives" [B] (for episodic life) and "env_id" [B] (which must be arange(B): envs in order). Rewards are raw.

A family is an EnvFamily: `claims(env_id)`, `check(env_id)` (raises ConfigError with the fix),
`make(hp, num_envs, rgb=, num_threads=)` and `workers(hp)` (what steps its envs, for the start-up line).
FAMILIES is searched in order and the first family that claims an id gets it:
  retro       `retro:GAME[:STATE]`: stable-retro console games (retro_games.py), one emulator per process
  gymnasium   any other registered gymnasium id that is not an Atari game, in gymnasium's vector envs
  ale         Atari ids and bare ROM names (`pong`), in ale-py's C++ AtariVectorEnv; last, as it claims the rest
A new family is one more EnvFamily in FAMILIES; the trainer does not change.

Owns: env ids, building vector envs from HParams, and the A3C_FAKE_ENV test hook.
Must not: step envs or keep episode bookkeeping (batch_agents.py), or know about the network or the trainer.
"""
from __future__ import annotations

import os
import re
from typing import Callable, NamedTuple

import numpy as np

from errors import ConfigError, RunError, first_line
from hparams import HParams
from specs import specs_of

# Test hook, for tests only: A3C_FAKE_ENV=module:function makes a3c.py train on function(thread_index, num_envs)
# instead of Atari, so that signals, crashes and resumes of the real CLI can be tested in a subprocess cheaply.
FAKE_ENV_VAR = "A3C_FAKE_ENV"

# (thread_index, num_envs) -> a vector env of num_envs envs
EnvFactory = Callable[[int, int], object]


class EvalProtocol(NamedTuple):
    """How a3c_test.py acts when neither --greedy / --sample nor --epsilon is given: a family's evaluation default."""
    greedy: bool = True  # the policy's most probable action (False: a sample of the policy)
    epsilon: float = 0.0  # the chance per env and step of a uniformly random action instead (discrete actions)

    def describe(self) -> str:
        rule = "greedy" if self.greedy else "sampled"
        return rule + (f" with {self.epsilon:g} random actions" if self.epsilon else "")


class EnvFamily(NamedTuple):
    name: str
    claims: Callable[[str], bool]  # env_id -> does this family run it
    check: Callable[[str], str]  # env_id -> the family's name for it; ConfigError if it cannot run it
    make: Callable[..., object]  # (hp, num_envs, *, rgb: bool, num_threads: int | None) -> vector env
    fps: Callable[[HParams], float] = lambda hp: 60.0 / hp.frameskip  # agent steps per second of play, for videos
    workers: Callable[[HParams], str] = lambda hp: "envs stepped in the learner thread"  # for the start-up line
    eval_protocol: EvalProtocol = EvalProtocol()  # a3c_test.py's acting rule unless its flags say otherwise


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


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
        raise ConfigError(f"unknown env id {env_id!r}: not a registered gymnasium id and no Atari ROM named "
                          f"{name!r} ships with ale-py; use e.g. ALE/Pong-v5, CartPole-v1 or retro:Airstriker-Genesis")
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


ALE = EnvFamily("ale", claims=lambda env_id: True, check=check_ale_id, make=make_ale_env,  # 60 Hz / frameskip
                workers=lambda hp: _count(hp.resolved_env_threads(), "emulator thread", "emulator threads")
                + " per vector env")


# ----------------------------------------------------------------------------------------------------------
# Gymnasium: any other registered id, through gymnasium's own vector envs
# ----------------------------------------------------------------------------------------------------------
def _gymnasium_spec(env_id: str):
    import gymnasium
    try:
        return gymnasium.spec(env_id)
    except gymnasium.error.Error:
        return None


def claims_gymnasium(env_id: str) -> bool:
    """A registered gymnasium id that is not an Atari game (those go to ale-py's faster vector env)."""
    spec = _gymnasium_spec(env_id)
    return spec is not None and not str(spec.entry_point).startswith("ale_py")


def check_gymnasium_id(env_id: str) -> str:
    """Build one env to find out now, not in a learner thread, whether it can run here."""
    import gymnasium
    try:
        env = gymnasium.make(env_id)
    except gymnasium.error.DependencyNotInstalled as e:
        raise ConfigError(f"{env_id} needs a package that is not installed: {first_line(e)}") from None
    except Exception as e:  # noqa: BLE001 - whatever the env's constructor raises, in one line
        raise ConfigError(f"cannot create {env_id} ({type(e).__name__}: {first_line(e)})") from None
    env.close()
    return env_id


def make_gymnasium_env(hp: HParams, num_envs: int, *, rgb: bool = False, num_threads: int | None = None):
    """A gymnasium vector env of hp.env_id (sync or async by hp.vector_env) with NEXT_STEP autoreset.
    Flat observations come as float32; image observations get the Atari preprocessing (84x84 gray, stack 4,
    stack first); Box actions are clipped to the bounds on their way to the env. `rgb=True`: observations are
    the env's rendered frames `[1, H, W, 3]` instead, for videos."""
    import gymnasium
    from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

    # pygame draws gymnasium's frames; without a display its default video driver prints a stray "error:" line.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

    def make_one():
        env = gymnasium.make(hp.env_id, render_mode="rgb_array" if rgb else None)
        if rgb:
            env = gymnasium.wrappers.AddRenderObservation(env, render_only=True)
            return gymnasium.wrappers.ReshapeObservation(env, (1,) + env.observation_space.shape)
        shape = getattr(env.observation_space, "shape", None) or ()  # Dict, Tuple, Text: none (refused later)
        if len(shape) == 3:
            from preprocessing import atari_style
            return atari_style(env)  # the env steps at its own rate; its registered time limit stays
        if len(shape) == 1:
            return gymnasium.wrappers.DtypeObservation(env, np.float32)
        return env

    vector_class = AsyncVectorEnv if hp.vector_env == "async" else SyncVectorEnv
    env = vector_class([make_one] * num_envs, autoreset_mode=AutoresetMode.NEXT_STEP)
    if isinstance(env.single_action_space, gymnasium.spaces.Box):
        env = _clipped_actions(env)
    return split_step(env)


def split_step(env):
    """`env` with the contract's optional send / recv when gymnasium's AsyncVectorEnv is underneath (its
    step_async / step_wait), so --overlap-env-step lets the env processes step while the learner updates, as
    ale-py's emulator threads do. Only a bare AsyncVectorEnv or one action wrapper around it (the chains this module
    builds) is split: send applies the wrapper's action transform, and recv has no wrapper to skip. Anything else is
    returned as it is (stepped whole)."""
    from gymnasium.vector import AsyncVectorEnv, VectorActionWrapper, VectorWrapper
    inner = env.unwrapped
    if not isinstance(inner, AsyncVectorEnv):
        return env
    if env is inner:
        transform = None
    elif isinstance(env, VectorActionWrapper) and env.env is inner:
        transform = env.actions
    else:
        return env

    class SplitStep(VectorWrapper):
        def send(self, actions):
            inner.step_async(actions if transform is None else transform(actions))

        def recv(self):
            return inner.step_wait()
    return SplitStep(env)


def _clipped_actions(env):
    """The vector env with Box actions clipped to its bounds. Unlike gymnasium's ClipAction it keeps the
    bounded action space, so the policy head still sees the bounds."""
    from gymnasium.vector import VectorActionWrapper
    low, high = env.single_action_space.low, env.single_action_space.high

    class ClipToBounds(VectorActionWrapper):
        def actions(self, actions):
            return np.clip(actions, low, high)
    return ClipToBounds(env)


def gymnasium_fps(hp: HParams) -> float:
    import gymnasium
    env = gymnasium.make(hp.env_id)
    fps = float(env.metadata.get("render_fps") or 30.0)
    env.close()
    return fps


def gymnasium_workers(hp: HParams) -> str:
    if hp.vector_env == "async":
        return _count(hp.envs_per_thread, "env process", "env processes") + " per vector env (one per env)"
    return "envs stepped in the learner thread (--vector-env sync)"


GYMNASIUM = EnvFamily("gymnasium", claims=claims_gymnasium, check=check_gymnasium_id, make=make_gymnasium_env,
                      fps=gymnasium_fps, workers=gymnasium_workers)

# ----------------------------------------------------------------------------------------------------------
# Retro: console games through stable-retro (retro_games.py), one emulator per process
# ----------------------------------------------------------------------------------------------------------
def check_retro_id(env_id: str) -> str:
    import retro_games
    try:
        return retro_games.check_retro_id(env_id)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def make_retro_env(hp: HParams, num_envs: int, *, rgb: bool = False, num_threads: int | None = None):
    """hp's Atari settings carry over: frameskip with max-pool, sticky actions, no-op starts, and the time limit
    of max_episode_frames emulator frames."""
    import retro_games
    game, state = retro_games.resolve_retro_id(hp.env_id)
    return split_step(retro_games.make_retro_vector_env(
        game, state, num_envs, frameskip=hp.frameskip, noop_max=hp.noop_max,
        repeat_action_probability=hp.repeat_action_probability,
        max_episode_steps=max(1, hp.max_episode_frames // hp.frameskip), rgb=rgb))


RETRO = EnvFamily("retro", claims=lambda env_id: env_id.startswith("retro:"), check=check_retro_id,
                  make=make_retro_env,  # 60 Hz consoles: videos at 60 / frameskip
                  workers=lambda hp: _count(hp.envs_per_thread, "emulator process", "emulator processes")
                  + " per vector env (one per env)")

FAMILIES: list[EnvFamily] = [RETRO, GYMNASIUM, ALE]

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


def env_specs(vector_env, env_id: str) -> tuple:
    """(ObsSpec, ActionSpec) of one env of `vector_env`; ConfigError if the networks cannot drive it."""
    try:
        return specs_of(vector_env)
    except ValueError as e:
        raise ConfigError(f"{env_id}: {e}") from None


def vector_env_workers(hp: HParams) -> str:
    """What steps one of hp's vector envs, for the start-up line: ALE's C++ emulator threads, or a process per env
    (retro games, async gymnasium envs), or the learner thread itself (sync gymnasium envs)."""
    return family_of(hp.env_id).workers(hp)


def video_fps(hp: HParams) -> float:
    """Frames per second of real time at which hp.env_id's videos play (one frame per agent step)."""
    return family_of(hp.env_id).fps(hp)


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
