"""What the network sees and emits: the observation and action specs of an env, and their saved form.

An env family (envs.py) may give the trainer any of these; the network (network.py) picks its torso from the
ObsSpec and its head's action distribution (distributions.py) from the ActionSpec:
  ObsSpec((4, 84, 84), "uint8")    frames, stack first (ALE, retro games, gymnasium image envs after the same
                                   84x84x4 preprocessing) -> a conv torso
  ObsSpec((n,), "float32")         flat vectors (CartPole, Pendulum, LunarLander, ...) -> the MLP torso
  ActionSpec("discrete", A)        A actions (Atari's action set, a retro game's button combos, gymnasium Discrete)
  ActionSpec("box", D, low, high)  D real numbers within [low, high] (gymnasium Box(D,)) -> a Gaussian policy

A run's config.json stores both (`observation_space`, `action_space`; `num_actions` too for discrete actions, as
configs always had), so evaluation and resume can check them without building the env first.
Owns: the spec types, reading them off gymnasium spaces, their JSON form and comparing saved with actual specs.
Must not: import TensorFlow, build envs or networks.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class ObsSpec(NamedTuple):
    shape: tuple  # one env's observation, e.g. (4, 84, 84) or (8,)
    dtype: str  # "uint8" (frames, scaled to [0, 1] inside the network) or "float32"

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3


class ActionSpec(NamedTuple):
    kind: str  # "discrete" or "box"
    size: int  # number of actions (discrete) or of action dimensions (box)
    low: tuple = ()  # box: per-dimension lower bound (the env gets actions clipped to [low, high])
    high: tuple = ()

    @property
    def is_discrete(self) -> bool:
        return self.kind == "discrete"


ATARI_OBS = ObsSpec((4, 84, 84), "uint8")


def discrete(num_actions: int) -> ActionSpec:
    return ActionSpec("discrete", int(num_actions))


def as_action_spec(action: "ActionSpec | int") -> ActionSpec:
    """An ActionSpec, or an int A as shorthand for A discrete actions."""
    return action if isinstance(action, ActionSpec) else discrete(action)


def _short(space) -> str:
    text = " ".join(str(space).split())
    return text if len(text) <= 80 else text[:77] + "..."


def obs_spec_of(space) -> ObsSpec:
    """A gymnasium observation space -> ObsSpec; ValueError for a space the networks cannot read."""
    shape = tuple(int(n) for n in getattr(space, "shape", None) or ())
    dtype = np.dtype(getattr(space, "dtype", None) or np.float32)
    if len(shape) == 3 and dtype == np.uint8:
        if shape != ATARI_OBS.shape:
            raise ValueError(f"image observations must be preprocessed to {ATARI_OBS.shape} (stack, height, "
                             f"width), got {shape}")
        return ATARI_OBS
    if len(shape) == 1 and np.issubdtype(dtype, np.number):
        return ObsSpec(shape, "float32")
    raise ValueError(f"observation space {_short(space)} is neither flat numbers (Box(n,)) nor 84x84 frames; "
                     f"wrap the env to give one of them")


def action_spec_of(space) -> ActionSpec:
    """A gymnasium action space -> ActionSpec; ValueError for a space the policy heads cannot produce."""
    import gymnasium.spaces as spaces
    if isinstance(space, spaces.Discrete):
        if int(space.start) != 0:
            raise ValueError(f"Discrete action spaces must start at 0, got start={space.start}")
        return discrete(space.n)
    if isinstance(space, spaces.Box) and len(space.shape) == 1:
        low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ValueError(f"Box action space {space} has infinite bounds; rescale it to finite ones")
        return ActionSpec("box", int(space.shape[0]), tuple(low.tolist()), tuple(high.tolist()))
    raise ValueError(f"action space {_short(space)} is not supported: use Discrete(n), Box(d,), or a retro game "
                     f"(whose buttons become a Discrete set of combos)")


def specs_of(vector_env) -> tuple[ObsSpec, ActionSpec]:
    """The specs of one env of a vector env (its single_observation_space and single_action_space)."""
    return obs_spec_of(vector_env.single_observation_space), action_spec_of(vector_env.single_action_space)


def to_config(obs: ObsSpec, action: ActionSpec) -> dict:
    """The specs as config.json keys."""
    config = dict(observation_space=dict(shape=list(obs.shape), dtype=obs.dtype),
                  action_space=dict(kind=action.kind, size=action.size, low=list(action.low), high=list(action.high)))
    if action.is_discrete:
        config["num_actions"] = action.size
    return config


def from_config(config: dict) -> tuple[ObsSpec | None, ActionSpec | None]:
    """The specs saved in a config.json (None where it does not say: configs before they were saved hold only
    `num_actions`, and were all Atari). ValueError if they are malformed."""
    obs = action = None
    saved_obs, saved_action = config.get("observation_space"), config.get("action_space")
    try:
        if saved_obs is not None:
            obs = ObsSpec(tuple(int(n) for n in saved_obs["shape"]), str(saved_obs["dtype"]))
        elif "num_actions" in config:
            obs = ATARI_OBS
        if saved_action is not None:
            action = ActionSpec(str(saved_action["kind"]), int(saved_action["size"]),
                                tuple(float(x) for x in saved_action.get("low", ())),
                                tuple(float(x) for x in saved_action.get("high", ())))
            if action.kind not in ("discrete", "box") or action.size < 1:
                raise ValueError(f"bad action space {saved_action}")
        elif config.get("num_actions") is not None:
            action = discrete(config["num_actions"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"malformed observation_space / action_space ({e})") from None
    return obs, action


def describe(obs: ObsSpec, action: ActionSpec) -> str:
    """`84x84x4 frames -> 6 actions`, `8 numbers -> box(2) in [-1, 1]`."""
    seen = "x".join(map(str, obs.shape[1:] + obs.shape[:1])) + " frames" if obs.is_image else f"{obs.shape[0]} numbers"
    if action.is_discrete:
        return f"{seen} -> {action.size} actions"
    lows, highs = sorted(set(action.low)), sorted(set(action.high))
    bounds = f"[{lows[0]:g}, {highs[0]:g}]" if len(lows) == len(highs) == 1 else "its bounds"
    return f"{seen} -> box({action.size}) in {bounds}"


def mismatch(saved: tuple, actual: tuple) -> str | None:
    """Why a checkpoint with `saved` (ObsSpec or None, ActionSpec or None) cannot drive an env with `actual`
    specs, or None if it can."""
    (saved_obs, saved_action), (obs, action) = saved, actual
    if saved_obs is not None and tuple(saved_obs) != tuple(obs):
        return (f"a network for observations {tuple(saved_obs.shape)} {saved_obs.dtype}, but the env gives "
                f"{tuple(obs.shape)} {obs.dtype}")
    if saved_action is not None and (saved_action.kind, saved_action.size) != (action.kind, action.size):
        def what(a):
            return f"{a.size} actions" if a.is_discrete else f"box({a.size}) actions"
        return f"a policy over {what(saved_action)}, but the env has {what(action)}"
    return None
