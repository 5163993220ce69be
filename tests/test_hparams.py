"""hparams: CLI parsing, validation with flag-naming errors, presets, JSON round trip, field docs."""
import dataclasses
import json
import re

import pytest

import hparams
from errors import ConfigError
from hparams import HParams


def test_defaults_validate():
    hp = hparams.parse_args([])
    assert hp == hparams.validate(HParams())
    assert hp.env_id == "ALE/Pong-v5" and hp.optimizer == "rmsprop" and hp.clip_rewards is True
    assert 1 <= hp.threads <= 2
    assert hp.num_envs == hp.threads * hp.envs_per_thread


@pytest.mark.parametrize("name", sorted(hparams.PRESETS))
def test_every_preset_validates(name):
    game = [] if hparams.PRESETS[name]["env_id"] else ["--env-id", "ALE/Seaquest-v5"]  # a family preset
    hp = hparams.parse_args(["--preset", name, *game])
    for key, value in hparams.PRESETS[name].items():
        if key == "env_id" and game:
            assert hp.env_id == "ALE/Seaquest-v5"
        elif key == "logdir":
            assert hp.logdir == value.replace("{game}", "seaquest")
        else:
            assert getattr(hp, key) == value


def test_atari_preset_takes_the_game_from_env_id_and_names_the_run_after_it():
    hp = hparams.parse_args(["--preset", "atari", "--env-id", "ALE/MsPacman-v5"])
    assert hp.env_id == "ALE/MsPacman-v5" and hp.logdir == "runs/atari-mspacman"
    assert hp.algorithm == "acer" and hp.total_env_steps == 10_000_000
    seaquest = hparams.parse_args(["--preset", "atari", "--env-id", "SeaquestNoFrameskip-v4"])
    assert seaquest.logdir == "runs/atari-seaquest"
    assert hparams.parse_args(["--preset", "atari", "--env-id", "ALE/Qbert-v5", "--logdir", "x"]).logdir == "x"


def test_atari_preset_without_env_id_says_to_add_one():
    with pytest.raises(ConfigError, match="--preset atari trains the game given by --env-id: add one"):
        hparams.parse_args(["--preset", "atari"])


@pytest.mark.parametrize("env_id, name, slug", [
    ("ALE/MsPacman-v5", "MsPacman", "mspacman"), ("BreakoutNoFrameskip-v4", "Breakout", "breakout"),
    ("PongDeterministic-v4", "Pong", "pong"), ("retro:Airstriker-Genesis", "Airstriker-Genesis", "airstriker-genesis"),
    ("pong", "pong", "pong"), ("CartPole-v1", "CartPole", "cartpole")])
def test_game_name_and_slug(env_id, name, slug):
    assert hparams.game_name(env_id) == name and hparams.game_slug(env_id) == slug


def test_preset_breakout_sets_env():
    hp = hparams.parse_args(["--preset", "breakout"])
    assert hp.env_id == "ALE/Breakout-v5"
    assert hp.logdir == "runs/breakout"
    assert hp.total_env_steps == 40_000_000


def test_override_wins_over_preset_regardless_of_order():
    for argv in (["--preset", "breakout", "--env-id", "ALE/Pong-v5"],
                 ["--env-id", "ALE/Pong-v5", "--preset", "breakout"]):
        hp = hparams.parse_args(argv)
        assert hp.env_id == "ALE/Pong-v5" and hp.logdir == "runs/breakout"


def test_learning_rate_override():
    hp = hparams.parse_args(["--learning-rate", "1e-3"])
    assert hp.learning_rate == pytest.approx(1e-3)
    assert isinstance(hp.learning_rate, float)
    hp = hparams.parse_args(["--threads", "1", "--t-max", "20", "--gamma", "0.95", "--network", "nature"])
    assert (hp.threads, hp.t_max, hp.gamma, hp.network) == (1, 20, 0.95, "nature")
    assert isinstance(hp.threads, int)


def test_boolean_flags():
    assert hparams.parse_args(["--no-clip-rewards"]).clip_rewards is False
    assert hparams.parse_args(["--clip-rewards"]).clip_rewards is True
    assert hparams.parse_args([]).clip_rewards is True
    assert hparams.parse_args(["--no-episodic-life", "--jit-compile"]).episodic_life is False
    assert hparams.parse_args(["--jit-compile"]).jit_compile is True


@pytest.mark.parametrize("argv, flag", [
    (["--threads", "0"], "--threads"),
    (["--learning-rate", "-0.001"], "--learning-rate"),
    (["--learning-rate=-1e-3"], "--learning-rate"),
    (["--learning-rate", "0"], "--learning-rate"),
    (["--gamma", "1.5"], "--gamma"),
    (["--gae-lambda", "-0.1"], "--gae-lambda"),
    (["--optimizer", "sgd"], "--optimizer"),
    (["--network", "resnet"], "--network"),
    (["--envs-per-thread", "0"], "--envs-per-thread"),
    (["--noop-max", "-1"], "--noop-max"),
    (["--entropy-beta", "-1"], "--entropy-beta"),
    (["--threads", "two"], "--threads"),  # type conversion error, from argparse
    (["--logdir", ""], "--logdir"),
])
def test_out_of_range_raises_config_error_naming_the_flag(argv, flag):
    with pytest.raises(ConfigError) as info:
        hparams.parse_args(argv)
    assert flag in str(info.value)


def test_negative_scientific_notation_needs_equals_sign():
    # argparse (CPython 3.11) takes "-1e-3" for an option, not a negative number; the error still names the flag.
    with pytest.raises(ConfigError, match="--learning-rate"):
        hparams.parse_args(["--learning-rate", "-1e-3"])


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize("argv", [["--bogus", "1"], ["--learningrate", "1e-3"], ["--preset", "nope"]])
def test_unknown_flag_or_preset_raises_config_error(argv):
    with pytest.raises(ConfigError, match="see --help"):
        hparams.parse_args(argv)


def test_validate_rejects_directly_built_hparams():
    with pytest.raises(ConfigError, match="--gamma"):
        hparams.validate(HParams(gamma=-0.5))


def test_to_json_from_dict_round_trip():
    hp = hparams.parse_args(["--preset", "smoke", "--learning-rate", "3e-4", "--no-clip-rewards",
                             "--optimizer", "adam", "--seed", "7"])
    text = hp.to_json()
    loaded = json.loads(text)
    assert set(loaded) == {f.name for f in dataclasses.fields(HParams)}
    assert hparams.from_dict(loaded) == hp
    assert hparams.from_dict(loaded).to_json() == text


def test_from_dict_ignores_unknown_keys_and_keeps_defaults():
    hp = hparams.from_dict({"gamma": 0.9, "removed_in_v2": 1})
    assert hp.gamma == 0.9
    assert hp.learning_rate == HParams().learning_rate
    base = HParams(seed=5)
    assert hparams.from_dict({"gamma": 0.9}, base=base).seed == 5


def test_hparams_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        HParams().gamma = 0.5


def test_every_field_has_a_docstring():
    docs = hparams._field_docs()
    names = [f.name for f in dataclasses.fields(HParams)]
    missing = [n for n in names if not docs.get(n, "").strip()]
    assert not missing, f"fields without a docstring: {missing}"
    assert set(docs) == set(names)


def test_every_field_is_a_flag_with_its_doc_in_help(capsys):
    with pytest.raises(SystemExit):
        hparams.parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(HParams):
        assert "--" + f.name.replace("_", "-") in out
    assert "Sticky-action probability" in out


def test_choices_and_model_fields_refer_to_real_fields():
    names = {f.name for f in dataclasses.fields(HParams)}
    assert set(hparams.CHOICES) <= names
    assert set(hparams.MODEL_FIELDS) <= names
    for preset in hparams.PRESETS.values():
        assert set(preset) <= names


@pytest.mark.parametrize("argv, words", [
    (["--threads", "2", "--t-max-per-thread", "16,0"], "--t-max-per-thread must be positive integers"),
    (["--threads", "2", "--t-max-per-thread", "16,-4"], "--t-max-per-thread must be positive integers"),
    (["--threads", "2", "--t-max-per-thread", "16,x"], "--t-max-per-thread must be positive integers"),
    (["--threads", "2", "--t-max-per-thread", "16,32,64"], "gives 3 rollout lengths but there are 2 --threads"),
    (["--histogram-interval-updates", "-1"], "--histogram-interval-updates must be >= 0"),
    (["--log-std-init", "nan"], r"--log-std-init must be within \[-5, 2\].*got nan"),
    (["--log-std-init", "-6"], r"--log-std-init must be within \[-5, 2\].*got -6"),
    (["--log-std-init", "2.5"], r"--log-std-init must be within \[-5, 2\].*got 2.5"),
])
def test_a3g_option_bad_values_name_the_flag_and_the_fix(argv, words):
    with pytest.raises(ConfigError, match=words):
        hparams.parse_args(argv)


def test_t_max_per_thread_is_round_robin():
    hp = hparams.parse_args(["--threads", "5", "--t-max-per-thread", "16, 32"])
    assert [hp.t_max_of(i) for i in range(5)] == [16, 32, 16, 32, 16]
    plain = hparams.parse_args(["--threads", "3", "--t-max", "7"])
    assert [plain.t_max_of(i) for i in range(3)] == [7, 7, 7]


def test_new_choices_are_accepted():
    hp = hparams.parse_args(["--network", "a3c-lstm", "--optimizer", "amsgrad", "--per-thread-stats",
                             "--devices", "GPU:0,GPU:1", "--histogram-interval-updates", "100"])
    assert (hp.network, hp.optimizer, hp.per_thread_stats, hp.devices) == ("a3c-lstm", "amsgrad", True, "GPU:0,GPU:1")
    assert hparams.parse_args(["--preset", "pong-lstm"]).network == "a3c-lstm"


@pytest.mark.parametrize("argv, words", [
    (["--executor", "slurm"], "--executor must be one of local, ray"),
    (["--executor", "ray", "--workers", "0"], "--workers must be >= 1"),
    (["--executor", "ray", "--weight-pull-interval", "0"], "--weight-pull-interval must be >= 1"),
    (["--executor", "ray", "--worker-gpus", "-1"], "--worker-gpus must be >= 0"),
    (["--off-policy-correction", "retrace"], "--off-policy-correction must be one of none, vtrace"),
    (["--vtrace-rho-clip", "0"], "--vtrace-rho-clip must be > 0"),
    (["--rmsprop-init", "one"], "--rmsprop-init must be one of zeros, ones, debiased"),
    (["--torso-init", "he"], "--torso-init must be one of glorot, orthogonal, torch"),
    (["--mlp-units", "64,0"], "--mlp-units must be 1 to 8 layer widths, positive integers separated by commas"),
    (["--mlp-units", "wide"], "--mlp-units must be 1 to 8 layer widths"),
    (["--mlp-units", ""], "--mlp-units must be 1 to 8 layer widths"),
    (["--vtrace-c-clip", "-1"], "--vtrace-c-clip must be > 0"),
    (["--ray-address", "auto"], "--ray-address auto needs --executor ray"),
    (["--executor", "ray", "--per-thread-stats"], "--per-thread-stats is for --executor local"),
    (["--executor", "ray", "--histogram-interval-updates", "10"],
     "--histogram-interval-updates is for --executor local"),
])
def test_cluster_and_vtrace_bad_values_name_the_flag_and_the_fix(argv, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        hparams.parse_args(argv)


def test_a_saved_config_from_before_a_model_field_existed_keeps_what_it_was_trained_with():
    old = {k: v for k, v in hparams.HParams().to_dict().items() if k != "center_frames"}
    centred = dataclasses.replace(hparams.HParams(), center_frames=True)
    assert hparams.from_dict(old, base=centred).center_frames is False
    assert hparams.from_dict(dict(old, center_frames=True)).center_frames is True
