"""Console games through stable-retro (Genesis, NES, SNES, ...), preprocessed like Atari for the same network.

Env ids are `retro:GAME` or `retro:GAME:STATE`, e.g. `retro:Airstriker-Genesis` or
`retro:SonicTheHedgehog-Genesis:GreenHillZone.Act1`. The state (a save state the game's integration ships)
comes after a second colon because state names hold dots and dashes; without it the game's default state is
used. GAME is the integration's name as `stable_retro.data.list_games()` spells it (`Airstriker-Genesis-v0`);
the `-v0` may be left out. Only Airstriker-Genesis has its ROM inside stable-retro; other games need their
ROM files imported once with `python -m stable_retro.import DIR`.

One env is built as (inside out):
  RetroEnv              one emulator; actions are button arrays (MultiBinary), reward from the game's scenario
  FrameSkip             repeats the action `frameskip` frames, sums the rewards, stops early at an episode end,
                        max-pools the last two frames; sticky actions with repeat_action_probability (per frame,
                        like ALE v5); buttons in `autofire` are let go on the last frame, for games that fire
                        once per press (Airstriker: holding B fires a single shot)
  NoopStart             up to `noop_max` no-op agent steps at reset, drawn from the env's seeded np_random: the
                        emulator ignores seeds, this is what makes reset(seed=s) matter (ALE's noop_max)
  Discretizer           Discrete(n) -> button arrays, from combos (lists of button names) per game or console
  GrayResize            RGB -> grayscale (PIL "L") -> 84x84 (PIL box filter), uint8
  FrameStack            4 frames, stack axis FIRST, newest last; a new episode fills the stack with its 1st frame
  TimeLimit             truncated=True after max_episode_steps agent steps
With rgb=True GrayResize and FrameStack are replaced by the last raw screen as [1, H, W, 3] (no max-pool), so a
second env seeded alike and fed the same actions plays the same game and can be recorded.

The vector env is a gymnasium AsyncVectorEnv (stable-retro allows one emulator per process) with NEXT_STEP
autoreset; reset(seed=s) seeds env j with s + j. Its subprocesses come from a forkserver that imports only this
module, so neither forking a trainer that runs TensorFlow threads nor re-importing its main module (spawn) is
needed.

Errors are ValueError with a one-line message saying what is wrong and how to fix it.

Owns: retro env ids, button combos, the retro preprocessing wrappers and the retro vector env.
Must not: import TensorFlow or project modules above it, know about HParams, or keep episode bookkeeping.
"""
from __future__ import annotations

import difflib
import functools
import re

import gymnasium as gym
import numpy as np

from preprocessing import FRAME_SIZE, STACK, FrameStack, GrayResize, gray_resize  # noqa: F401 (re-exported)

RETRO_PREFIX = "retro:"
STABLE_RETRO_VERSION = "1.0.1"  # the pin in requirements.txt
INSTALL_HINT = f".venv/bin/pip install stable-retro=={STABLE_RETRO_VERSION}"
IMPORT_HINT = "python -m stable_retro.import DIR"  # DIR: a folder holding the ROM files


# Default discrete action sets per console, as lists of button names (the names of retro's core info, also
# env.unwrapped.buttons). Index 0 is always "no button".
GENESIS_COMBOS = [[], ["LEFT"], ["RIGHT"], ["LEFT", "DOWN"], ["RIGHT", "DOWN"], ["DOWN"], ["DOWN", "B"], ["B"]]
NES_COMBOS = [[], ["LEFT"], ["RIGHT"], ["UP"], ["DOWN"], ["A"], ["B"], ["LEFT", "A"], ["RIGHT", "A"],
              ["RIGHT", "B"], ["RIGHT", "A", "B"]]
SNES_COMBOS = [[], ["LEFT"], ["RIGHT"], ["UP"], ["DOWN"], ["B"], ["A"], ["Y"], ["LEFT", "B"], ["RIGHT", "B"],
               ["RIGHT", "Y"], ["RIGHT", "Y", "B"]]
ATARI2600_COMBOS = [[], ["BUTTON"], ["UP"], ["RIGHT"], ["LEFT"], ["DOWN"]]
CONSOLE_COMBOS: dict[str, list[list[str]]] = {
    "Genesis": GENESIS_COMBOS, "32x": GENESIS_COMBOS, "SCD": GENESIS_COMBOS,
    "Nes": NES_COMBOS, "Sms": NES_COMBOS, "GameGear": NES_COMBOS, "GameBoy": NES_COMBOS, "GbColor": NES_COMBOS,
    "GbAdvance": NES_COMBOS,
    "Snes": SNES_COMBOS,
    "Atari2600": ATARI2600_COMBOS,
}


def _eight_ways(fire: str) -> list[list[str]]:
    """The 18 actions of a shooter (like ALE's full action set): still or 8 directions, each with and without
    fire."""
    moves = [[], ["UP"], ["RIGHT"], ["LEFT"], ["DOWN"], ["UP", "RIGHT"], ["UP", "LEFT"], ["DOWN", "RIGHT"],
             ["DOWN", "LEFT"]]
    return moves + [move + [fire] for move in moves]


# Per-game overrides of the console's combos, by the integration's name.
GAME_COMBOS: dict[str, list[list[str]]] = {
    "Airstriker-Genesis-v0": _eight_ways("B"),  # a shooter: B fires (A, C, X, Y, Z do nothing)
}
# Buttons let go on the last frame of each agent step, for games that fire once per press, not while held.
GAME_AUTOFIRE: dict[str, tuple[str, ...]] = {
    "Airstriker-Genesis-v0": ("B",),
}


# ----------------------------------------------------------------------------------------------------------
# Env ids and games
# ----------------------------------------------------------------------------------------------------------
def is_retro_id(env_id: str) -> bool:
    return env_id.startswith(RETRO_PREFIX)


def parse_retro_id(env_id: str) -> tuple[str, str | None]:
    """`retro:GAME` -> (GAME, None); `retro:GAME:STATE` -> (GAME, STATE). Syntax only: nothing is looked up."""
    if not is_retro_id(env_id):
        raise ValueError(f"{env_id!r} is not a retro env id: write retro:GAME or retro:GAME:STATE, "
                         f"e.g. retro:Airstriker-Genesis")
    parts = env_id[len(RETRO_PREFIX):].split(":")
    if len(parts) > 2 or not all(parts):
        raise ValueError(f"bad retro env id {env_id!r}: write retro:GAME or retro:GAME:STATE, "
                         f"e.g. retro:SonicTheHedgehog-Genesis:GreenHillZone.Act1")
    return parts[0], parts[1] if len(parts) == 2 else None


def _retro():
    """The stable_retro module (`retro` in stable-retro before 1.0); ValueError saying how to install it."""
    try:
        import stable_retro
        return stable_retro
    except ImportError:
        pass
    try:
        import retro
        return retro
    except ImportError:
        raise ValueError(f"retro env ids need stable-retro, which is not installed: install it with "
                         f"{INSTALL_HINT}") from None


def retro_available() -> bool:
    try:
        _retro()
        return True
    except ValueError:
        return False


def _short(game: str) -> str:
    return re.sub(r"-v\d+$", "", game)


def game_name(game: str) -> str:
    """The integration's name for `game` (`Airstriker-Genesis` -> `Airstriker-Genesis-v0`); ValueError listing
    close names if retro knows no such game."""
    games = _retro().data.list_games()
    if game in games:
        return game
    versions = sorted(g for g in games if _short(g) == game)
    if versions:
        return versions[-1]
    close = difflib.get_close_matches(game, [_short(g) for g in games], n=5, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "stable_retro.data.list_games() lists them"
    raise ValueError(f"unknown retro game {game!r} (none of the {len(games)} games stable-retro knows): {hint}")


def states_of(game: str) -> list[str]:
    return _retro().data.list_states(game_name(game))


def resolve_retro_id(env_id: str) -> tuple[str, str | None]:
    """(integration's game name, state or None) for a retro env id, after checking that the game is known, its
    ROM imported and its state exists; ValueError with the fix otherwise."""
    game, state = parse_retro_id(env_id)
    game = game_name(game)
    retro = _retro()
    try:
        retro.data.get_romfile_path(game)
    except FileNotFoundError:
        raise ValueError(f"the ROM of retro game {game} is not imported: put the ROM file in a folder DIR and "
                         f"run {IMPORT_HINT}") from None
    if state is not None:
        states = retro.data.list_states(game)
        if state not in states:
            raise ValueError(f"retro game {game} has no state {state!r}: use one of {', '.join(states) or '(none)'}"
                             f", or leave the state out for the default")
    return game, state


def check_retro_id(env_id: str) -> str:
    """`GAME` or `GAME:STATE` with GAME the integration's name; ValueError with the fix if it cannot run (also
    if the game has no default button combos)."""
    game, state = resolve_retro_id(env_id)
    combos_of(game)
    return game if state is None else f"{game}:{state}"


def console_of(game: str) -> str:
    """The console (retro's system name: Genesis, Nes, Snes, ...) of a game, from its ROM file or its name."""
    retro = _retro()
    game = game_name(game)
    try:
        return retro.get_romfile_system(retro.data.get_romfile_path(game))
    except FileNotFoundError:
        return _short(game).rsplit("-", 1)[-1]


def combos_of(game: str) -> list[list[str]]:
    """The discrete action set of a game: lists of button names, index = action."""
    game = game_name(game)
    if game in GAME_COMBOS:
        return [list(c) for c in GAME_COMBOS[game]]
    console = console_of(game)
    if console not in CONSOLE_COMBOS:
        raise ValueError(f"no default button combos for {console} games like {game}: add the game to "
                         f"retro_games.GAME_COMBOS")
    return [list(c) for c in CONSOLE_COMBOS[console]]


def autofire_of(game: str) -> tuple[str, ...]:
    return GAME_AUTOFIRE.get(game_name(game), ())


# ----------------------------------------------------------------------------------------------------------
# Wrappers of one env
# ----------------------------------------------------------------------------------------------------------
def button_array(buttons: list, combo: list[str]) -> np.ndarray:
    """The MultiBinary array pressing `combo`'s buttons, for a pad whose buttons are `buttons` (None = unused)."""
    array = np.zeros(len(buttons), np.int8)
    for name in combo:
        if name not in buttons:
            raise ValueError(f"no button {name!r} on this pad (its buttons: "
                             f"{', '.join(b for b in buttons if b)}): fix the button combos")
        array[buttons.index(name)] = 1
    return array


class Discretizer(gym.ActionWrapper):
    """Discrete(len(combos)) -> the button array of combos[action]."""

    def __init__(self, env: gym.Env, combos: list[list[str]]):
        super().__init__(env)
        if not combos:
            raise ValueError("no button combos: give at least one (e.g. [[]] for no button)")
        self.buttons = list(env.unwrapped.buttons)
        self.combos = [list(c) for c in combos]
        self._arrays = np.stack([button_array(self.buttons, c) for c in self.combos])
        self.action_space = gym.spaces.Discrete(len(self.combos))

    def action(self, action) -> np.ndarray:
        return self._arrays[int(action)].copy()

    def get_action_meaning(self, action) -> list[str]:
        return list(self.combos[int(action)])


class FrameSkip(gym.Wrapper):
    """Repeats an action (a button array) for `skip` frames: rewards summed, early stop at an episode end, the
    observation max-pooled over the last two frames (`maxpool=False`: the last frame). Sticky actions (ALE v5):
    at each frame, with probability `repeat_action_probability` (drawn from the env's seeded np_random), the
    previous frame's buttons are pressed again instead. Buttons at the indices `autofire` are released on the
    last frame of the step (only if skip > 1)."""

    def __init__(self, env: gym.Env, skip: int, *, maxpool: bool = True, autofire: tuple[int, ...] = (),
                 repeat_action_probability: float = 0.0):
        super().__init__(env)
        if skip < 1:
            raise ValueError(f"frameskip must be at least 1, not {skip}")
        if not 0.0 <= repeat_action_probability <= 1.0:
            raise ValueError(f"repeat_action_probability must be in [0, 1], not {repeat_action_probability}")
        self.skip, self.maxpool, self.autofire = skip, maxpool, list(autofire)
        self.sticky = repeat_action_probability
        self._held = None  # the buttons of the previous frame (before autofire), for sticky actions

    def reset(self, *, seed=None, options=None):
        self._held = None
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        total = 0.0
        last = previous = None
        for i in range(self.skip):
            a = action
            if self.sticky and self._held is not None and self.np_random.random() < self.sticky:
                a = self._held
            self._held = a
            if self.autofire and self.skip > 1 and i == self.skip - 1:
                a = np.array(a, copy=True)
                a[self.autofire] = 0
            previous = last
            last, reward, terminated, truncated, info = self.env.step(a)
            total += float(reward)
            if terminated or truncated:
                break
        obs = np.maximum(last, previous) if self.maxpool and previous is not None else last
        return obs, total, terminated, truncated, info


class NoopStart(gym.Wrapper):
    """At reset, 0..noop_max no-op steps (all buttons up), their number drawn from the env's np_random (seeded
    by reset(seed=)). The reset info holds the game's variables (as step infos do)."""

    def __init__(self, env: gym.Env, noop_max: int):
        super().__init__(env)
        if noop_max < 0:
            raise ValueError(f"noop_max must be >= 0, not {noop_max}")
        self.noop_max = noop_max
        self._noop = np.zeros(env.action_space.shape, env.action_space.dtype)

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        for _ in range(int(self.np_random.integers(0, self.noop_max + 1)) if self.noop_max else 0):
            obs, _, terminated, truncated, info = self.env.step(self._noop)
            if terminated or truncated:
                obs, info = self.env.reset(options=options)
        data = getattr(self.env.unwrapped, "data", None)
        info = {**(dict(data.lookup_all()) if data is not None else {}), **info}
        return obs, info


class RawScreen(gym.ObservationWrapper):
    """[H, W, 3] -> [1, H, W, 3]: the console screen, for videos."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        h, w, c = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0, 255, (1, h, w, c), np.uint8)

    def observation(self, observation):
        return observation[None]


def preprocess(env: gym.Env, combos: list[list[str]], *, frameskip: int = 4, noop_max: int = 30,
               repeat_action_probability: float = 0.0, max_episode_steps: int = 27_000, rgb: bool = False,
               autofire: tuple[str, ...] = ()) -> gym.Env:
    """Wraps one env whose actions are button arrays and whose observations are RGB screens (a RetroEnv, or a
    test double with `buttons`) as described in the module docstring."""
    if max_episode_steps < 1:
        raise ValueError(f"max_episode_steps must be at least 1, not {max_episode_steps}")
    buttons = list(env.unwrapped.buttons)
    env = FrameSkip(env, frameskip, maxpool=not rgb, repeat_action_probability=repeat_action_probability,
                    autofire=tuple(int(np.flatnonzero(button_array(buttons, [b]))[0]) for b in autofire))
    env = NoopStart(env, noop_max)
    env = Discretizer(env, combos)
    env = RawScreen(env) if rgb else FrameStack(GrayResize(env))
    return gym.wrappers.TimeLimit(env, max_episode_steps)


def make_retro_env(game: str, state: str | None = None, *, frameskip: int = 4, noop_max: int = 30,
                   repeat_action_probability: float = 0.0, max_episode_steps: int = 27_000, rgb: bool = False,
                   combos: list[list[str]] | None = None) -> gym.Env:
    """One preprocessed emulator of `game` (either spelling) from `state` (None: the game's default state).
    Observations uint8 [4, 84, 84], or [1, H, W, 3] console screens with rgb=True; actions Discrete(len(combos)),
    by default combos_of(game). Only one emulator may exist per process."""
    retro = _retro()
    game, state = resolve_retro_id(RETRO_PREFIX + game + (f":{state}" if state else ""))
    raw = retro.make(game, state=state if state else retro.State.DEFAULT, render_mode="rgb_array",
                     use_restricted_actions=retro.Actions.ALL)
    return preprocess(raw, combos_of(game) if combos is None else combos, frameskip=frameskip, noop_max=noop_max,
                      repeat_action_probability=repeat_action_probability, max_episode_steps=max_episode_steps,
                      rgb=rgb, autofire=autofire_of(game))


def make_retro_vector_env(game: str, state: str | None, num_envs: int, *, frameskip: int = 4, noop_max: int = 30,
                          repeat_action_probability: float = 0.0, max_episode_steps: int = 27_000, rgb: bool = False,
                          combos: list[list[str]] | None = None, context: str | None = "forkserver"):
    """`num_envs` envs of make_retro_env, one subprocess each, in a gymnasium AsyncVectorEnv with NEXT_STEP
    autoreset. `context` is the multiprocessing start method; with "forkserver" (the default) the server
    imports only this module."""
    import multiprocessing
    game, state = resolve_retro_id(RETRO_PREFIX + game + (f":{state}" if state else ""))
    if num_envs < 1:
        raise ValueError(f"num_envs must be at least 1, not {num_envs}")
    if context == "forkserver":
        multiprocessing.get_context("forkserver").set_forkserver_preload([__name__])
    make = functools.partial(make_retro_env, game, state, frameskip=frameskip, noop_max=noop_max,
                             repeat_action_probability=repeat_action_probability,
                             max_episode_steps=max_episode_steps, rgb=rgb, combos=combos)
    return gym.vector.AsyncVectorEnv([make] * num_envs, context=context,
                                     autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
