"""retro_games.py: retro env ids, button combos, the Atari-style preprocessing, and the Airstriker vector env."""
import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("stable_retro", reason="stable-retro is not installed (.venv/bin/pip install -r requirements.txt)")

import retro_games as rg  # noqa: E402

GENESIS_BUTTONS = ["B", "A", "MODE", "START", "UP", "DOWN", "LEFT", "RIGHT", "C", "Y", "X", "Z"]


class FakeConsole(gym.Env):
    """A console whose screen at emulator frame n is one colour, colour(n), with reward n for frame n; the episode
    terminates at frame `end`. reset shows frame 0. It records the button arrays it was given."""

    def __init__(self, end=1000, colour=lambda n: ((n * 50) % 256,) * 3, height=30, width=40):
        self.buttons = list(GENESIS_BUTTONS)
        self.action_space = gym.spaces.MultiBinary(len(self.buttons))
        self.observation_space = gym.spaces.Box(0, 255, (height, width, 3), np.uint8)
        self.end, self.colour, self.n, self.actions = end, colour, 0, []

    def _screen(self):
        return np.full(self.observation_space.shape, self.colour(self.n), np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.n = 0
        return self._screen(), {}

    def step(self, action):
        self.actions.append(np.array(action))
        self.n += 1
        return self._screen(), float(self.n), self.n >= self.end, False, {}


def fake(end=1000, *, frameskip=2, noop_max=0, repeat_action_probability=0.0, max_episode_steps=100, rgb=False,
         autofire=()):
    console = FakeConsole(end)
    env = rg.preprocess(console, [[], ["B"], ["RIGHT", "B"], ["LEFT", "DOWN"]], frameskip=frameskip,
                        noop_max=noop_max, repeat_action_probability=repeat_action_probability,
                        max_episode_steps=max_episode_steps, rgb=rgb, autofire=autofire)
    return env, console


# ----------------------------------------------------------------------------------------------------------
# Ids, games, combos
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("env_id, parsed", [
    ("retro:Airstriker-Genesis", ("Airstriker-Genesis", None)),
    ("retro:Airstriker-Genesis-v0", ("Airstriker-Genesis-v0", None)),
    ("retro:Airstriker-Genesis:Level1", ("Airstriker-Genesis", "Level1")),
    ("retro:SonicTheHedgehog-Genesis:GreenHillZone.Act1", ("SonicTheHedgehog-Genesis", "GreenHillZone.Act1")),
])
def test_parse_retro_id(env_id, parsed):
    assert rg.is_retro_id(env_id) and rg.parse_retro_id(env_id) == parsed


@pytest.mark.parametrize("env_id", ["ALE/Pong-v5", "retro:", "retro:Game:", "retro::State", "retro:A:B:C"])
def test_parse_retro_id_rejects_bad_ids_and_shows_the_syntax(env_id):
    with pytest.raises(ValueError, match="retro:GAME or retro:GAME:STATE"):
        rg.parse_retro_id(env_id)


def test_check_retro_id_names_the_game_as_the_integration_does():
    assert rg.check_retro_id("retro:Airstriker-Genesis") == "Airstriker-Genesis-v0"
    assert rg.check_retro_id("retro:Airstriker-Genesis-v0:Level1") == "Airstriker-Genesis-v0:Level1"
    assert rg.resolve_retro_id("retro:Airstriker-Genesis") == ("Airstriker-Genesis-v0", None)


def test_check_retro_id_errors_say_how_to_fix_them():
    with pytest.raises(ValueError, match=r"unknown retro game 'Airstriker-Genisis'.*did you mean Airstriker-Genesis"):
        rg.check_retro_id("retro:Airstriker-Genisis")
    with pytest.raises(ValueError, match=r"no state 'Level9': use one of Level1"):
        rg.check_retro_id("retro:Airstriker-Genesis:Level9")
    # Sonic's integration ships with stable-retro, its ROM does not
    with pytest.raises(ValueError, match=r"ROM of retro game SonicTheHedgehog-Genesis-v0 is not imported.*"
                                         r"python -m stable_retro\.import DIR"):
        rg.check_retro_id("retro:SonicTheHedgehog-Genesis:GreenHillZone.Act1")


def test_a_missing_stable_retro_says_how_to_install_it(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_retro(name, *args, **kwargs):
        if name in ("stable_retro", "retro"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_retro)
    with pytest.raises(ValueError, match=r"install it with \.venv/bin/pip install stable-retro==\d"):
        rg.check_retro_id("retro:Airstriker-Genesis")
    assert not rg.retro_available()


def test_combos_per_game_and_console():
    airstriker = rg.combos_of("Airstriker-Genesis")
    assert len(airstriker) == 18 and airstriker[0] == [] and airstriker[9] == ["B"]
    assert ["DOWN", "LEFT", "B"] in airstriker and rg.autofire_of("Airstriker-Genesis") == ("B",)
    assert rg.combos_of("SonicTheHedgehog-Genesis") == rg.GENESIS_COMBOS  # by console, ROM or not
    assert rg.combos_of("SuperMarioBros-Nes") == rg.NES_COMBOS
    assert rg.console_of("SuperMarioWorld-Snes") == "Snes" and rg.combos_of("SuperMarioWorld-Snes") == rg.SNES_COMBOS


def test_every_default_combo_uses_buttons_its_console_has():
    import stable_retro
    for console, combos in rg.CONSOLE_COMBOS.items():
        buttons = stable_retro.data.EMU_INFO[console]["buttons"]
        for combo in combos:
            rg.button_array(buttons, combo)  # raises on a missing button


def test_discretizer_maps_each_action_to_its_buttons():
    env = rg.Discretizer(FakeConsole(), rg.GENESIS_COMBOS)
    assert env.action_space == gym.spaces.Discrete(8)
    #        B  A  MO ST U  D  L  R  C  Y  X  Z
    want = [[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # []
            [0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0],  # LEFT
            [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0],  # RIGHT
            [0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0],  # LEFT DOWN
            [0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0],  # RIGHT DOWN
            [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0],  # DOWN
            [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0],  # DOWN B
            [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]]  # B
    for a, buttons in enumerate(want):
        assert env.action(a).tolist() == buttons and env.action(np.int32(a)).dtype == np.int8
    assert env.get_action_meaning(6) == ["DOWN", "B"]
    with pytest.raises(ValueError, match="no button 'SELECT'"):
        rg.Discretizer(FakeConsole(), [["SELECT"]])


# ----------------------------------------------------------------------------------------------------------
# Preprocessing, on the fake console
# ----------------------------------------------------------------------------------------------------------
def test_gray_resize_of_constant_colours():
    assert (rg.gray_resize(np.full((224, 320, 3), 77, np.uint8)) == 77).all()
    red = rg.gray_resize(np.full((224, 320, 3), (255, 0, 0), np.uint8))
    assert red.shape == (84, 84) and red.dtype == np.uint8 and (red == 76).all()  # 0.299 * 255 = 76.2


def test_frame_stack_max_pool_and_summed_rewards():
    env, console = fake(frameskip=2)  # frame n has gray value 50 n mod 256 and reward n
    assert env.observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert (obs == 0).all()  # the stack starts filled with the first frame
    seen, rewards = [], []
    for _ in range(4):
        obs, reward, terminated, truncated, _ = env.step(0)
        seen.append([int(obs[i, 0, 0]) for i in range(4)])
        assert all((obs[i] == obs[i, 0, 0]).all() for i in range(4))
        rewards.append(reward)
    # steps see frames (1, 2), (3, 4), (5, 6), (7, 8) = values (50, 100), (150, 200), (250, 44), (94, 144)
    assert seen == [[0, 0, 0, 100], [0, 0, 100, 200], [0, 100, 200, 250], [100, 200, 250, 144]]
    assert rewards == [3.0, 7.0, 11.0, 15.0] and console.n == 8


def test_frameskip_stops_at_the_episode_end():
    env, console = fake(end=5, frameskip=2)
    env.reset(seed=0)
    results = [env.step(1)[1:3] for _ in range(3)]
    assert results == [(3.0, False), (7.0, False), (5.0, True)] and console.n == 5


def test_autofire_lets_go_of_fire_on_the_last_frame_of_a_step():
    env, console = fake(frameskip=3, autofire=("B",))
    env.reset(seed=0)
    env.step(2)  # RIGHT + B
    b, right = GENESIS_BUTTONS.index("B"), GENESIS_BUTTONS.index("RIGHT")
    assert [(a[b], a[right]) for a in console.actions] == [(1, 1), (1, 1), (0, 1)]


def test_sticky_actions_repeat_the_previous_frames_buttons_as_seeded():
    b = GENESIS_BUTTONS.index("B")

    def pressed(p, seed, actions=(1, 0, 1, 0, 1, 0)):
        env, console = fake(frameskip=2, repeat_action_probability=p)
        env.reset(seed=seed)
        for a in actions:
            env.step(a)
        return [int(a[b]) for a in console.actions]
    assert pressed(0.0, 0) == [1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0]
    assert pressed(1.0, 0) == [1] * 12  # the first frame after reset takes the action, then it sticks
    runs = [pressed(0.5, seed) for seed in range(4)]
    assert runs == [pressed(0.5, seed) for seed in range(4)] and len(set(map(tuple, runs))) > 1


def test_time_limit_truncates_at_exactly_max_episode_steps():
    env, _ = fake(max_episode_steps=3)
    env.reset(seed=0)
    assert [env.step(0)[2:4] for _ in range(3)] == [(False, False), (False, False), (False, True)]


def test_noop_starts_follow_the_seed():
    def frames_after_reset(seed):
        env, console = fake(frameskip=2, noop_max=30)
        env.reset(seed=seed)
        assert all(not a.any() for a in console.actions)  # no-ops press nothing
        return console.n
    starts = [frames_after_reset(seed) for seed in range(8)]
    assert starts == [frames_after_reset(seed) for seed in range(8)]
    assert len(set(starts)) > 1 and all(n % 2 == 0 and n <= 60 for n in starts)


def test_rgb_observation_is_the_last_raw_screen():
    env, _ = fake(frameskip=2, rgb=True)
    assert env.observation_space.shape == (1, 30, 40, 3)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (1, 30, 40, 3) and obs.dtype == np.uint8
    for want in (100, 200, 44):  # frames 2, 4, 6: not max-pooled
        assert (env.step(0)[0] == want).all()


def test_next_step_autoreset_of_preprocessed_envs():
    vec = gym.vector.SyncVectorEnv([lambda: fake(end=4, frameskip=2)[0]] * 2,
                                   autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    vec.reset(seed=0)
    steps = [vec.step(np.array([0, 1])) for _ in range(3)]
    assert [s[1].tolist() for s in steps] == [[3.0, 3.0], [7.0, 7.0], [0.0, 0.0]]
    assert [s[2].tolist() for s in steps] == [[False, False], [True, True], [False, False]]
    assert (steps[2][0] == 0).all()  # the first observation of the next episode


# ----------------------------------------------------------------------------------------------------------
# Airstriker, the game whose ROM ships with stable-retro
# ----------------------------------------------------------------------------------------------------------
def test_airstriker_vector_env_seeds_autoresets_and_matches_its_rgb_twin():
    vec = rg.make_retro_vector_env("Airstriker-Genesis", None, 2, frameskip=4, max_episode_steps=7)
    try:
        assert vec.num_envs == 2 and vec.single_action_space == gym.spaces.Discrete(18)
        assert vec.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
        first, info = vec.reset(seed=0)
        assert first.shape == (2, 4, 84, 84) and first.dtype == np.uint8 and info["lives"].tolist() == [3, 3]
        assert not np.array_equal(first[0], first[1])  # seeds 0 and 1: different no-op starts
        again, _ = vec.reset(seed=1)  # env 0 now gets seed 1, as env 1 did: the same start, deterministic
        assert np.array_equal(again[0], first[1])

        vec.reset(seed=0)
        actions = np.random.default_rng(0).integers(18, size=(50, 2))
        for t in range(50):
            obs, reward, terminated, truncated, info = vec.step(actions[t])
            assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
            assert reward.shape == (2,) and terminated.dtype == bool and truncated.dtype == bool
            assert truncated.tolist() == [t % 8 == 6] * 2 and not terminated.any()
            if t % 8 == 7:  # the step after the end: a new episode, its stack filled with its first frame
                assert reward.tolist() == [0.0, 0.0] and all((obs[:, i] == obs[:, 0]).all() for i in range(4))
    finally:
        vec.close()

    # a video env in this process: seeded alike and fed the same actions it plays the same game
    twin = rg.make_retro_vector_env("Airstriker-Genesis", None, 1, frameskip=4, max_episode_steps=200)
    video = rg.make_retro_env("Airstriker-Genesis", frameskip=4, max_episode_steps=200, rgb=True)
    try:
        screen, _ = video.reset(seed=3)
        twin.reset(seed=3)
        assert screen.shape == (1, 224, 320, 3) and screen.dtype == np.uint8
        for t in range(60):
            action = 9 + t % 9  # firing, moving around
            screen, r1, *_, info1 = video.step(action)
            _, r2, *_, info2 = twin.step(np.array([action]))
            assert (r1, info1["score"], info1["lives"]) == (r2[0], info2["score"][0], info2["lives"][0])
        assert info1["score"] > 0  # fire held down scores (autofire)
    finally:
        video.close()
        twin.close()


def test_airstriker_trains_and_evaluates_with_a_video_through_the_cli(tmp_path):
    """The retro family end to end: a3c.py --preset airstriker for a few updates, then a3c_test.py records the
    raw console screen of a (capped) episode."""
    import json
    import os

    from helpers import cli_env, run
    env = cli_env(fake=False)
    logdir = tmp_path / "run"
    code, out, err = run("a3c.py", ["--preset", "airstriker", "--logdir", logdir, "--threads", 1,
                                    "--envs-per-thread", 2, "--total-env-steps", 100, "--no-progress-bar"],
                         tmp_path, env, "train", timeout=240)
    assert code == 0, err[-2000:]
    config = json.load(open(logdir / "config.json"))
    assert config["env_id"] == "retro:Airstriker-Genesis" and config["num_actions"] == 18
    assert config["network"] == "a3c"
    code, out, err = run("a3c_test.py", ["--model", logdir, "--out", tmp_path / "eval", "--episodes", 1,
                                         "--record", 1, "--max-steps", 60], tmp_path, env, "eval", timeout=240)
    assert code == 0, err[-2000:]
    import imageio.v3 as iio
    frames = iio.imread(tmp_path / "eval" / "episode_0.mp4")
    assert frames.shape[1:] == (224, 320, 3) and len(frames) == 61  # the first screen + 60 steps
    assert os.path.getsize(tmp_path / "eval" / "episode_0.gif") > 0


def test_a_retro_game_without_its_rom_is_refused_with_the_import_command(tmp_path):
    from helpers import cli_env, one_error_line, run
    code, _, err = run("a3c.py", ["--env-id", "retro:SonicTheHedgehog-Genesis", "--logdir", tmp_path / "run"],
                       tmp_path, cli_env(fake=False), "sonic", timeout=120)
    assert code == 2
    line = one_error_line(err)
    assert "not imported" in line and "python -m stable_retro.import DIR" in line, line
