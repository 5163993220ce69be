"""envs.py: env ids, the family registry, and the ALE family's settings."""
import numpy as np
import pytest

import envs
import hparams
from errors import ConfigError, RunError
from fakes import ScriptedVectorEnv


@pytest.mark.parametrize("env_id, rom", [
    ("ALE/Pong-v5", "pong"), ("PongNoFrameskip-v4", "pong"), ("ALE/MsPacman-v5", "ms_pacman"),
    ("ALE/Breakout-v5", "breakout"), ("BreakoutDeterministic-v4", "breakout"), ("Pong", "pong"),
    ("pong", "pong"), ("ALE/SpaceInvaders-v5", "space_invaders"),
])
def test_rom_name(env_id, rom):
    assert envs.rom_name(env_id) == rom


def test_check_env_id():
    assert envs.check_env_id("ALE/Pong-v5") == "pong"
    assert envs.check_env_id("ALE/MsPacman-v5") == "ms_pacman"
    with pytest.raises(ConfigError, match="Nope"):
        envs.check_env_id("ALE/Nope-v5")


def test_a_family_added_before_ale_takes_its_ids_and_ale_keeps_the_rest(monkeypatch):
    made = []

    def make(hp, num_envs, *, rgb, num_threads):
        made.append((hp.env_id, num_envs, rgb, num_threads))
        return ScriptedVectorEnv([[dict(rewards=[0.0], end="terminated")]] * num_envs)
    toy = envs.EnvFamily("toy", claims=lambda env_id: env_id.startswith("toy:"),
                         check=lambda env_id: env_id[len("toy:"):], make=make)
    monkeypatch.setattr(envs, "FAMILIES", [toy, envs.ALE])

    assert envs.family_of("toy:corridor") is toy and envs.family_of("ALE/Pong-v5") is envs.ALE
    assert envs.check_env_id("toy:corridor") == "corridor"
    with pytest.raises(ConfigError, match="no Atari ROM named 'nope'"):
        envs.check_env_id("nope")
    hp = hparams.HParams(env_id="toy:corridor")
    factory = envs.vector_env_factory(hp)
    env = factory(1, 3)
    assert env.num_envs == 3 and made == [("toy:corridor", 3, False, None)]
    envs.make_vector_env(hp, 2, rgb=True, num_threads=1)
    assert made[-1] == ("toy:corridor", 2, True, 1)


def test_the_trainer_factory_checks_the_id_before_building_anything():
    with pytest.raises(ConfigError, match="unknown env id 'ALE/Nope-v5'"):
        envs.vector_env_factory(hparams.HParams(env_id="ALE/Nope-v5"))


def test_ale_env_follows_the_settings_and_returns_raw_rewards():
    hp = hparams.HParams(env_id="ALE/Pong-v5", noop_max=0, frameskip=2)
    env = envs.make_vector_env(hp, 2, num_threads=1)
    try:
        obs, info = env.reset(seed=0)
        assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8 and env.single_action_space.n == 6
        rewards = []
        for _ in range(400):  # a random Pong agent concedes a point (-1, unclipped either way) within ~100 steps
            obs, reward, terminated, truncated, info = env.step(np.zeros(2, np.int32))
            rewards.extend(reward.tolist())
        assert min(rewards) == -1.0
    finally:
        env.close()
    rgb = envs.make_vector_env(hp, 1, rgb=True, num_threads=1)
    try:
        frames, _ = rgb.reset(seed=0)
        assert frames.shape == (1, 1, 210, 160, 3)
    finally:
        rgb.close()


@pytest.mark.parametrize("spec, words", [("no_such_module:make_env", "No module named"),
                                         ("fakes:no_such_function", "no_such_function")])
def test_a_bad_fake_env_hook_is_one_line(monkeypatch, spec, words):
    monkeypatch.setenv(envs.FAKE_ENV_VAR, spec)
    with pytest.raises(RunError, match=words) as e:
        envs.factory_from_environment()
    assert "\n" not in str(e.value)


def test_no_hook_means_real_envs(monkeypatch):
    monkeypatch.delenv(envs.FAKE_ENV_VAR, raising=False)
    assert envs.factory_from_environment() is None
