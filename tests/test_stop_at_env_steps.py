"""--stop-at-env-steps: a run stops (saved, exit 0) at that many env steps while the learning-rate schedule still
runs to --total-env-steps, so one schedule trains in legs; the resumed leg goes on along the same schedule."""
import csv
import os

import pytest

import hparams
import reproduce
from errors import ConfigError
from helpers import cli_env, make_trainer, one_error_line, run

SMOKE = ["--preset", "smoke", "--no-progress-bar"]  # fake env: 2 threads x 4 envs x t_max 5


def test_flag_parses_and_the_budget_is_the_stop_when_set_else_the_total():
    assert hparams.parse_args([]).stop_at_env_steps is None
    assert hparams.step_budget(hparams.parse_args(["--total-env-steps", "1000"])) == 1000
    hp = hparams.parse_args(["--total-env-steps", "1000", "--stop-at-env-steps", "300"])
    assert hp.stop_at_env_steps == 300 and hparams.step_budget(hp) == 300


@pytest.mark.parametrize("value", ["0", "-5", "1001"])
def test_a_stop_outside_one_to_the_total_names_the_flag_and_the_fix(value):
    with pytest.raises(ConfigError, match=r"--stop-at-env-steps must be in \[1, --total-env-steps 1000\].*raise "
                                          r"--total-env-steps"):
        hparams.parse_args(["--total-env-steps", "1000", "--stop-at-env-steps", value])


def test_a_non_integer_stop_is_a_config_error():
    with pytest.raises(ConfigError, match="stop-at-env-steps"):
        hparams.parse_args(["--stop-at-env-steps", "2.5M"])


def _learning_rates(logdir) -> list[tuple[int, float]]:
    rows = csv.DictReader(open(os.path.join(logdir, "progress.csv")))
    return [(int(r["env_steps"]), float(r["learning_rate"])) for r in rows]


def test_the_run_stops_at_the_step_and_keeps_the_schedule_of_the_total(tmp_path):
    logdir = tmp_path / "run"
    lr, total = 1e-3, 4000
    first = make_trainer(logdir, learning_rate=lr, lr_schedule="linear", total_env_steps=total,
                         stop_at_env_steps=400, log_interval_s=0.05)
    assert first.run() == 0
    assert first.counters.env_steps == 400  # exactly: rollouts are claimed against the budget
    assert "ckpt-400" in first.out.getvalue()
    rows = _learning_rates(logdir)
    assert rows[-1][0] == 400
    # the step at 400 of 4000 env steps: 0.9 of the initial, not 0 as a schedule ending at the stop would give
    assert rows[-1][1] == pytest.approx(lr * (1 - 400 / total), rel=0.05)
    second = make_trainer(logdir, learning_rate=lr, lr_schedule="linear", total_env_steps=total,
                          stop_at_env_steps=800, log_interval_s=0.05)
    assert second.counters.env_steps == 400  # resumed from the first leg's checkpoint
    assert second.run() == 0
    assert second.counters.env_steps == 800
    steps, rate = _learning_rates(logdir)[-1]
    assert steps == 800 and rate == pytest.approx(lr * (1 - 800 / total), rel=0.05)


def test_reproduce_counts_a_run_at_its_stop_as_done_and_one_short_of_it_as_stopped_early():
    columns = {"env_steps": [200, 400], "wall_time_s": [1.0, 2.0], "episodes": [5, 10], "mean_return": [0.0, 0.0]}
    at_stop = hparams.parse_args(["--total-env-steps", "4000", "--stop-at-env-steps", "400"])
    further = hparams.parse_args(["--total-env-steps", "4000", "--stop-at-env-steps", "800"])
    assert reproduce.training_done(columns, hparams.step_budget(at_stop), stop_at=None)
    assert not reproduce.training_done(columns, hparams.step_budget(further), stop_at=None)


def test_cli_bad_stop_is_one_line_and_exit_2(tmp_path):
    code, _, err = run("a3c.py", SMOKE + ["--logdir", tmp_path / "run", "--total-env-steps", 400,
                                          "--stop-at-env-steps", 500], tmp_path, cli_env())
    assert code == 2
    assert "--stop-at-env-steps must be in [1, --total-env-steps 400], got 500" in one_error_line(err)
    assert not os.path.exists(tmp_path / "run" / "checkpoints")
