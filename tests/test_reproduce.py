"""reproduce.py: the pipeline of a README row end to end on a tiny budget (--quick), its figures from
progress.csv, resuming, and its failure paths."""
import csv
import dataclasses
import json
import os
import signal

import pytest

import hparams
import reproduce
from helpers import cli_env, one_error_line, run


def test_milestones_need_a_full_window_and_take_the_first_crossing():
    columns = {"env_steps": [100, 200, 300, 400, 500], "wall_time_s": [1.0, 2.0, 3.0, 4.0, 5.0],
               "episodes": [50, 99, 100, 150, 200], "mean_return": [20.0, 19.0, 17.0, 18.5, 18.0]}
    # rows with fewer than 100 episodes do not count, however high their mean
    assert reproduce.milestones(columns, (18.0, 0.0, 21.0)) == {18.0: (400, 4.0), 0.0: (300, 3.0), 21.0: None}


def test_a_run_is_done_at_its_budget_or_at_a_full_window_over_the_stop_target():
    columns = {"env_steps": [100, 200, 300], "wall_time_s": [1.0, 2.0, 3.0], "episodes": [50, 99, 120],
               "mean_return": [20.0, 19.0, 17.0]}
    assert reproduce.training_done(columns, step_budget=300, stop_at=None)  # the budget, reached exactly
    assert not reproduce.training_done(columns, step_budget=400, stop_at=None)  # stopped early: resume
    assert not reproduce.training_done(columns, step_budget=400, stop_at=18.0)  # 19 and 20 without a full window
    assert reproduce.training_done(columns, step_budget=400, stop_at=17.0)
    # a larger budget after -- continues a run that ended at its old one
    assert not reproduce.training_done(columns, step_budget=600, stop_at=21.0)
    assert not reproduce.training_done({k: [] for k in columns}, step_budget=1, stop_at=None)


def test_the_rate_is_of_this_invocations_training_unless_the_run_was_only_read_back():
    # two legs: 1,000 steps in 10 s (another machine, earlier), then 4,000 steps in 10 s here
    columns = {"env_steps": [500, 1000, 3000, 5000], "wall_time_s": [5.0, 10.0, 15.0, 20.0]}
    assert reproduce.training_rate(columns, since_steps=1000) == (pytest.approx(400.0), True)
    assert reproduce.training_rate(columns, since_steps=0) == (pytest.approx(250.0), True)  # a new run: all of it
    # read back: the whole run's rate, marked
    assert reproduce.training_rate(columns, since_steps=None) == (pytest.approx(250.0), False)
    # resumed from a checkpoint older than the last row (2,000 < 3,000): plot.read_progress replaced the rows the
    # new leg re-trained; the rate starts from the last row at or before where this invocation began
    resumed = {"env_steps": [500, 1000, 2500, 4000], "wall_time_s": [5.0, 10.0, 12.0, 14.0]}
    assert reproduce.training_rate(resumed, since_steps=3000) == (pytest.approx(1500 / 2.0), True)


def test_median_counts_a_seed_that_never_reached_as_infinitely_slow():
    assert reproduce._median([1.0, None, 3.0]) == 3.0
    assert reproduce._median([1.0, None, None]) is None
    assert reproduce._median([2.0]) == 2.0


def test_quick_cartpole_row_trains_evaluates_plots_and_resumes(tmp_path):
    out = tmp_path / "row"
    code, stdout, err = run("reproduce.py", ["cartpole", "--seeds", 2, "--quick", "--out", out], tmp_path,
                            cli_env(fake=False), "reproduce", timeout=300)
    assert code == 0, err[-3000:]
    summary = json.load(open(out / "summary.json"))
    assert [s["seed"] for s in summary["seeds"]] == [0, 1]
    for entry in summary["seeds"]:
        assert entry["env_steps"] == 2000  # --quick's budget, reached exactly
        assert f"--seed {entry['seed']}" in entry["train_command"] and "--preset cartpole" in entry["train_command"]
        scores = json.load(open(os.path.join(entry["logdir"], "eval", "scores.json")))
        assert len(scores["episodes"]) == 2 and entry["eval_mean"] == pytest.approx(scores["mean"])
        assert os.path.exists(os.path.join(entry["logdir"], "eval", "episode_0.gif"))
        assert set(entry["milestones"]) == {"475"}
    assert (out / "curves.png").stat().st_size > 10_000
    lines = stdout.splitlines()
    assert any(line.startswith("| 0 | ") for line in lines) and any(line.startswith("| 1 | ") for line in lines)
    assert any(line.startswith("| **median** |") for line in lines)
    assert "CPU: " in stdout

    again_code, again, err = run("reproduce.py", ["cartpole", "--seeds", 2, "--quick", "--out", out], tmp_path,
                                 cli_env(fake=False), "again", timeout=300)
    assert again_code == 0, err[-3000:]
    assert again.count("finished earlier, read back") == 2 and "training in" not in again
    # the rate of a run trained earlier (maybe on another CPU than the table names) is marked, in each table line
    assert sum(" (read back) | " in line for line in again.splitlines() if line.startswith("| ")) == 2
    figures = ("env_steps", "wall_time_s", "milestones", "eval_mean", "eval_std")
    reread = json.load(open(out / "summary.json"))["seeds"]
    assert [{k: s[k] for k in figures} for s in reread] == [{k: s[k] for k in figures} for s in summary["seeds"]]

    # a larger budget after -- continues the finished seed past its end, and its evaluation is redone
    more_code, more, err = run("reproduce.py", ["cartpole", "--seeds", 1, "--quick", "--out", out, "--",
                                                "--total-env-steps", 3000], tmp_path, cli_env(fake=False), "more",
                               timeout=300)
    assert more_code == 0, err[-3000:]
    assert "seed 0: training in" in more and "seed 0: evaluating" in more
    entry = json.load(open(out / "summary.json"))["seeds"][0]
    assert entry["env_steps"] == 3000 and entry["env_steps_per_s_trained_here"]
    assert json.load(open(os.path.join(entry["logdir"], "eval", "scores.json")))["env_steps_trained"] == 3000


def test_quick_sticky_pong_row_passes_its_stop_target_and_evaluates_also_without_sticky_actions(tmp_path):
    out = tmp_path / "pong"
    code, stdout, err = run("reproduce.py", ["pong-acer-t10-sticky", "--seeds", 1, "--quick", "--out", out],
                            tmp_path, cli_env(fake=False), "pong", timeout=300)
    assert code == 0, err[-3000:]
    entry = json.load(open(out / "summary.json"))["seeds"][0]
    assert "--preset pong-acer-t10-sticky --seed 0" in entry["train_command"]
    assert "--stop-at-mean-return 18" in entry["train_command"]
    assert entry["milestones"] == {"-15": None, "0": None, "18": None}  # 2,000 steps: no full 100-episode window
    # evaluated twice: as trained (sticky, the preset's setting, read from the run's config) and without
    also = entry["also_eval"]["no-sticky"]
    assert also["command"].endswith("--repeat-action-probability 0") and "eval-no-sticky" in also["command"]
    for eval_dir, mean, sticky in (("eval", entry["eval_mean"], 0.25), ("eval-no-sticky", also["mean"], 0.0)):
        scores = json.load(open(os.path.join(entry["logdir"], eval_dir, "scores.json")))
        assert len(scores["episodes"]) == 2 and mean == pytest.approx(scores["mean"])
        assert scores["repeat_action_probability"] == sticky
    assert "| eval, no-sticky |" in stdout
    assert entry["eval_truncated"] == 2 and also["truncated"] == 2  # --quick's --max-steps 100 cuts every episode
    assert (f"| {entry['eval_mean']:.2f} ± {entry['eval_std']:.2f} (2 cut short) | "
            f"{also['mean']:.2f} ± {also['std']:.2f} (2 cut short) |") in stdout
    assert "| 0 | - / - / - | not reached |" in stdout


def test_the_row_says_how_many_evaluation_episodes_were_cut_short():
    entry = {"seed": 0, "milestones": {"50": {"env_steps": 2_720_000, "wall_time_s": 600.0}, "200": None, "400": None},
             "env_steps": 3_000_000, "wall_time_s": 900.0, "env_steps_per_s": 3333.3,
             "env_steps_per_s_trained_here": True, "eval_mean": 344.333, "eval_std": 90.88, "eval_truncated": 30,
             "also_eval": {"sample": {"mean": 401.5, "std": 20.25, "truncated": 0},
                           "epsilon-0.01": {"mean": 436.067, "std": 80.71, "truncated": 1}}}
    cells = reproduce._row_cells(entry, reproduce.ROWS["breakout"])
    assert cells.endswith("| 344.33 ± 90.88 (30 cut short) | 401.50 ± 20.25 | 436.07 ± 80.71 (1 cut short) |"), cells


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    cases = {
        "unknown_row": (["pacman"], "unknown row 'pacman'; choose one of pong"),
        "no_seeds": (["pong", "--seeds", 0], "--seeds must be >= 1, got 0"),
        "seed_after_dashes": (["pong", "--", "--seed", 3], "--seed after -- is set by reproduce.py"),
        "unknown_flag": (["pong", "--sedes", 3], "unrecognized arguments"),
    }
    for name, (argv, words) in cases.items():
        code, _, err = run("reproduce.py", argv + ["--out", tmp_path / name], tmp_path, cli_env(fake=False), name)
        assert code == 2, (name, err)
        assert words in one_error_line(err), (name, err)
        assert not (tmp_path / name).exists(), name  # nothing started


def test_a_failing_training_run_stops_with_the_seed_and_its_log(tmp_path):
    out = tmp_path / "row"
    env = cli_env(fake=True, fail_at_step=3)  # a3c.py's fake-env hook: the env raises in its third step
    code, _, err = run("reproduce.py", ["pong", "--seeds", 2, "--quick", "--out", out], tmp_path, env, "fail",
                       timeout=300)
    assert code == 1, err
    line = one_error_line(err)
    assert "seed 0: a3c.py exited with status 1" in line and str(out / "seed-0.log") in line
    assert "fake env" in (out / "seed-0.log").read_text()  # the trainer's own one-line error is in the log
    assert not (out / "seed-1").exists()  # the next seed was not started


def test_sigterm_stops_the_running_training_which_saves_and_the_same_command_resumes(tmp_path):
    """A signal to reproduce.py or to its a3c.py alone: saved, not evaluated, resumable."""
    import signal

    from helpers import Proc, progress_rows, wait_until
    out = tmp_path / "row"
    env = cli_env(fake=True, step_sleep_s=0.002)
    argv = ["pong", "--seeds", 1, "--out", out, "--", "--total-env-steps", 20000, "--log-interval-s", 0.5,
            "--threads", 1, "--envs-per-thread", 2]
    proc = Proc("reproduce.py", argv, tmp_path, env, "first")
    wait_until(lambda: len(progress_rows(out / "seed-0")) >= 2, timeout=120, what="training rows", proc=proc)
    proc.p.send_signal(signal.SIGTERM)
    assert proc.wait(120) == 130, proc.err
    assert "interrupted: the running tool saved its state; the same command resumes" in proc.err
    log = (out / "seed-0.log").read_text()
    assert "SIGINT: stopped all threads; saving a checkpoint" in log
    stopped_at = int(progress_rows(out / "seed-0")[-1]["env_steps"])
    assert 0 < stopped_at < 20000
    # resumed: a3c.py continues from the checkpoint. Then a signal to a3c.py alone (not to reproduce.py) stops it
    # short of its budget too: reproduce.py must not evaluate that partial run, and says the command resumes it.
    again = Proc("reproduce.py", argv, tmp_path, env, "again")
    wait_until(lambda: "resuming from step" in (out / "seed-0.log").read_text(), timeout=120, what="resume",
               proc=again)
    # a row past the resume point: a3c.py is in its loop, where a signal makes it save (at start-up it would kill)
    wait_until(lambda: any((r["env_steps"] or "").isdigit() and int(r["env_steps"]) > stopped_at
                           for r in progress_rows(out / "seed-0")), timeout=120,
               what="a row after the resume", proc=again)
    children = open(f"/proc/{again.p.pid}/task/{again.p.pid}/children").read().split()
    assert len(children) == 1, children
    os.kill(int(children[0]), signal.SIGTERM)
    assert again.wait(120) == 1, again.err
    line = one_error_line(again.err)
    assert "seed 0: a3c.py stopped at" in line and "not evaluated; the same command resumes it" in line, line
    assert "SIGTERM: stopped all threads; saving a checkpoint" in (out / "seed-0.log").read_text()
    assert int(progress_rows(out / "seed-0")[-1]["env_steps"]) < 20000
    assert not (out / "seed-0" / "eval").exists()


def test_a_row_in_legs_builds_one_command_per_leg_and_quick_gives_each_a_larger_budget():
    row = reproduce.ROWS["pong-acer-t10-sticky-legs"]
    args = reproduce.parse_args(["pong-acer-t10-sticky-legs", "--seeds", "1", "--", "--threads", "2"])
    commands = [reproduce.train_command(args, row, 0, "runs/x/seed-0", leg) for leg in range(len(row.legs))]
    budgets = []
    for command in commands:
        hp = hparams.parse_args(command[2:])  # every leg of the shipped row is a valid a3c.py command
        assert hp.repeat_action_probability == 0.25 and hp.precision == "float32" and hp.threads == 2
        budgets.append(hparams.step_budget(hp))
    assert budgets == [2_560_000, 3_600_000, 5_000_000, 7_400_000]  # each leg goes on from the one before
    assert hparams.parse_args(commands[0][2:]).total_env_steps == 10_000_000  # the preset's schedule, stopped early
    quick = reproduce.parse_args(["pong-acer-t10-sticky-legs", "--quick"])
    quick_commands = [reproduce.train_command(quick, row, 0, "d", leg) for leg in range(len(row.legs))]
    assert all("--stop-at-env-steps" not in c for c in quick_commands)
    assert [hparams.step_budget(hparams.parse_args(c[2:])) for c in quick_commands] == [2000, 4000, 6000, 8000]


def test_a_row_in_legs_trains_each_leg_on_from_the_last_and_reads_them_back(tmp_path, monkeypatch, capsys):
    legs_row = reproduce.Row(("--preset", "cartpole", "--log-interval-s", "1"), (475.0,), eval_episodes=2,
                             legs=(("--total-env-steps", "3000", "--stop-at-env-steps", "1000"),
                                   ("--total-env-steps", "3000", "--lr-schedule", "constant")))
    monkeypatch.setitem(reproduce.ROWS, "cartpole-legs", legs_row)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    out = tmp_path / "row"
    sigterm = signal.getsignal(signal.SIGTERM)  # main() installs its own; this process is pytest's
    try:
        assert reproduce.main(["cartpole-legs", "--seeds", "1", "--out", str(out)]) == 0
        printed = capsys.readouterr().out
        assert reproduce.main(["cartpole-legs", "--seeds", "1", "--out", str(out)]) == 0
        again = capsys.readouterr().out
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    assert "seed 0: leg 1 of 2: training in" in printed and "seed 0: leg 2 of 2: training in" in printed
    entry = json.load(open(out / "summary.json"))["seeds"][0]
    assert entry["env_steps"] == 3000 and entry["train_command"].count(" && ") == 1
    table = list(csv.DictReader(open(out / "seed-0" / "progress.csv")))
    steps = [int(r["env_steps"]) for r in table]
    assert steps == sorted(set(steps))  # one row per step count: leg 2 logs nothing at 1000 before its first update
    rows = {int(r["env_steps"]): float(r["learning_rate"]) for r in table}
    lr = hparams.parse_args(["--preset", "cartpole"]).learning_rate
    assert rows[1000] == pytest.approx(lr * (1 - 1000 / 3000), rel=0.1)  # leg 1: the linear schedule over 3000
    assert rows[max(rows)] == pytest.approx(lr) and max(rows) == 3000  # leg 2: constant
    assert json.load(open(out / "seed-0" / "config.json"))["lr_schedule"] == "constant"
    assert again.count("finished earlier, read back") == 2 and "training in" not in again


def test_the_airstriker_rows_differ_only_in_the_core_and_its_step_and_measure_four_protocols():
    """Issue 37's comparison: feed-forward against LSTM at the same env steps, on the same settings otherwise."""
    built = {}
    for name in ("airstriker", "airstriker-lstm"):
        row = reproduce.ROWS[name]
        command = reproduce.train_command(reproduce.parse_args([name]), row, 0, "d", 0)
        built[name] = hparams.parse_args(command[2:])
        assert hparams.step_budget(built[name]) == 750_000 and built[name].total_env_steps == 10_000_000
        assert {flags for _, flags in row.also_eval} == {("--sample",), ("--epsilon", "0.01"), ("--epsilon", "0.05")}
        quick = reproduce.train_command(reproduce.parse_args([name, "--quick"]), row, 0, "d", 0)
        assert hparams.step_budget(hparams.parse_args(quick[2:])) == reproduce.QUICK_STEPS
    ff, lstm = built["airstriker"], built["airstriker-lstm"]
    assert (ff.network, lstm.network) == ("auto", "a3c-lstm") and (ff.learning_rate, lstm.learning_rate) == (7e-4, 2e-4)
    differ = {f.name for f in dataclasses.fields(ff) if getattr(ff, f.name) != getattr(lstm, f.name)}
    assert differ == {"network", "learning_rate"}
