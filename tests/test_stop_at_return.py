"""--stop-at-mean-return: the run ends, saved and exit 0, once the last 100 episodes' mean reaches the target, on
both executors; never before the window is full; the budget still applies when the target is out of reach."""
import dataclasses

import pytest

import hparams
from errors import ConfigError
from helpers import make_trainer


def test_flag_parses_to_a_float_and_defaults_to_unset():
    assert hparams.parse_args([]).stop_at_mean_return is None
    assert hparams.parse_args(["--preset", "pong", "--stop-at-mean-return", "18"]).stop_at_mean_return == 18.0
    with pytest.raises(ConfigError, match="stop-at-mean-return"):
        hparams.parse_args(["--stop-at-mean-return", "high"])


def test_local_run_stops_at_the_target_and_saves(tmp_path):
    # Any return reaches -1000: the run must stop at the first log row with 100 episodes, long before its budget.
    trainer = make_trainer(tmp_path / "run", stop_at_mean_return=-1000.0, total_env_steps=1_000_000,
                           log_interval_s=0.2)
    assert trainer.run() == 0
    c, out = trainer.counters, trainer.out.getvalue()
    assert c.episodes >= 100 and c.env_steps < 20_000, (c.episodes, c.env_steps)
    assert "--stop-at-mean-return -1000: stopping" in out
    assert f"ckpt-{c.env_steps}" in out  # the stop saved the state it stopped in
    resumed = make_trainer(tmp_path / "run", stop_at_mean_return=-1000.0, total_env_steps=1_000_000,
                           log_interval_s=0.2)
    assert resumed.counters.env_steps == c.env_steps  # a resume starts from it ...
    assert resumed.run() == 0  # ... and, its window already full and above the target, stops at its first row
    assert resumed.counters.env_steps - c.env_steps < 2_000
    assert "stopping" in resumed.out.getvalue()


def test_unreachable_target_trains_to_the_budget(tmp_path):
    trainer = make_trainer(tmp_path / "run", stop_at_mean_return=1e9, total_env_steps=400, log_interval_s=0.2)
    assert trainer.run() == 0
    assert trainer.counters.env_steps == 400
    assert "stop-at-mean-return" not in trainer.out.getvalue()


def test_parameter_server_stops_its_workers_once_the_full_window_reaches_the_target(tmp_path, monkeypatch):
    import ray_executor
    from specs import ObsSpec, discrete
    monkeypatch.setattr(ray_executor, "_ignore_sigint", lambda: None)  # in-process: keep pytest's Ctrl-C
    hp = hparams.validate(dataclasses.replace(hparams.HParams(), env_id="CartPole-v1", network="mlp",
                                              executor="ray", logdir=str(tmp_path / "run"), progress_bar=False,
                                              log_interval_s=0.01, stop_at_mean_return=5.0))
    server = ray_executor.ParameterServer(hp, (ObsSpec((4,), "float32"), discrete(2)))
    server.open()
    server.run_log.add_episodes([9.0] * 99, [10] * 99)
    server.counters.env_steps, server.last_log = 990, 0.0  # as the pushes that ended those episodes would count
    assert server.tick()[3] is False  # 99 episodes: the window is not full yet
    server.run_log.add_episodes([9.0], [10])
    server.counters.env_steps, server.last_log = 1000, 0.0
    assert server.tick()[3] is True
    errors, failure, path, closing = server.finish()
    assert not errors and failure is None and path
    assert closing.startswith("mean return of the last 100 episodes 9.00 >= --stop-at-mean-return 5: stopping")
