"""The product as a user runs it: a tiny real-Atari training run, a resume, evaluation with videos, curves.

One training run (2 threads x 4 envs, a few hundred steps) is shared by the tests of this module.
"""
import csv
import json
import os
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from helpers import HANG_GUARD_SCALE

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable


def run(*args, timeout=240):
    return subprocess.run([PY, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout * HANG_GUARD_SCALE)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    logdir = str(tmp_path_factory.mktemp("e2e") / "run")
    first = run("a3c.py", "--preset", "smoke", "--logdir", logdir, "--total-env-steps", "200")
    assert first.returncode == 0, first.stderr[-2000:]
    second = run("a3c.py", "--preset", "smoke", "--logdir", logdir, "--total-env-steps", "400")
    assert second.returncode == 0, second.stderr[-2000:]
    return logdir, first, second


def test_training_writes_config_checkpoint_progress_and_events(trained):
    logdir, first, _ = trained
    config = json.load(open(os.path.join(logdir, "config.json")))
    assert config["threads"] == 2 and config["envs_per_thread"] == 4 and config["num_actions"] == 6
    assert os.path.exists(os.path.join(logdir, "checkpoints", "config.json"))
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(logdir))
    assert '"envs_per_thread": 4' in first.stdout  # resolved config printed at start
    assert "network on /CPU:0 in float32;" in first.stdout  # the precision the network computes in
    rows = list(csv.DictReader(open(os.path.join(logdir, "progress.csv"))))
    assert rows and {"env_steps", "wall_time_s", "episodes", "mean_return"} <= set(rows[0])


def test_resume_continues_the_step_count(trained):
    logdir, first, second = trained
    steps_per_round = 2 * 4 * 5  # threads x envs x t_max
    assert "resuming from step" in second.stdout
    resumed_at = int(second.stdout.split("resuming from step ")[1].split()[0])
    assert 200 <= resumed_at < 200 + steps_per_round * 2
    rows = list(csv.DictReader(open(os.path.join(logdir, "progress.csv"))))
    steps = [int(r["env_steps"]) for r in rows]
    assert steps == sorted(steps), "env steps went backwards after resume"
    assert steps[-1] >= 400


def test_evaluation_writes_scores_and_decodable_videos(trained, tmp_path):
    logdir, _, _ = trained
    out = tmp_path / "eval"
    result = run("a3c_test.py", "--model", logdir, "--out", str(out), "--episodes", "2", "--record", "1",
                 "--max-steps", "120", "--seed", "3")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "over 2 episodes" in result.stdout
    scores = json.load(open(out / "scores.json"))
    assert scores["env"] == "ALE/Pong-v5" and len(scores["episodes"]) == 2
    assert scores["mean"] == pytest.approx(np.mean(scores["episodes"]))
    frames = iio.imread(out / "episode_0.mp4")
    assert frames.ndim == 4 and frames.shape[1:] == (210, 160, 3) and frames.shape[0] > 100
    assert frames.std() > 0  # not a blank video
    gif = Image.open(out / "episode_0.gif")
    assert gif.n_frames > 10 and gif.size == (160, 210)


def test_plot_makes_three_curves_png(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with open(run_dir / "progress.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["env_steps", "wall_time_s", "episodes", "mean_return"])
        for i in range(1, 20):
            w.writerow([i * 1000, i * 2.0, i, -21 + i])
    result = run("plot.py", str(run_dir))
    assert result.returncode == 0, result.stderr
    img = Image.open(run_dir / "curves.png")
    assert img.size[0] > 600


def _progress_csv(run_dir, returns):
    run_dir.mkdir()
    with open(run_dir / "progress.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["env_steps", "wall_time_s", "episodes", "mean_return"])
        for i, ret in enumerate(returns, 1):
            w.writerow([i * 1000, i * 2.0, i, ret])


def test_plot_compares_several_runs_in_one_png(tmp_path, capsys):
    import plot
    _progress_csv(tmp_path / "a", range(-21, 0))
    _progress_csv(tmp_path / "b", range(-21, 10, 2))
    out = tmp_path / "cmp" / "vs"
    assert plot.main([str(tmp_path / "a"), str(tmp_path / "b"), "--labels", "A3C,ACER", "--out", str(out)]) == 0
    assert Image.open(str(out) + ".png").size[0] > 600
    # one label per run, and one --out for the one picture
    assert plot.main([str(tmp_path / "a"), str(tmp_path / "b"), "--labels", "A3C", "--out", str(out)]) == 2
    assert "--labels has 1 labels for 2 runs" in capsys.readouterr().err
    assert plot.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert "several runs need --out" in capsys.readouterr().err


def test_plot_at_tabulates_each_runs_mean_return_at_the_given_env_steps(tmp_path, capsys):
    import plot
    _progress_csv(tmp_path / "a", range(-21, 0))  # rows at 1000, 2000, ..., 21000 env steps
    _progress_csv(tmp_path / "b", [-20.0, -10.5, 1234.25])  # rows at 1000, 2000, 3000
    assert plot.main([str(tmp_path / "a"), str(tmp_path / "b"), "--labels", "A,B", "--at", "1.5k,3000,4k"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| run | 1.5k | 3k | 4k | last row |"
    assert lines[2] == "| A | -21.0 | -19.0 | -18.0 | -1.0 at 21k |"  # the last row at or before each count
    assert lines[3] == "| B | -20.0 | 1,234.2 | - | 1,234.2 at 3k |"  # 4k is past B's end
    assert len(lines) == 4 and not list(tmp_path.glob("**/*.png"))  # a table only, without --out


@pytest.mark.parametrize("at, message", [("1M,abc", "'abc' is not an env step count"),
                                         ("2M,1M", "once each, in increasing order"),
                                         ("0", "'0' is not an env step count"),
                                         ("1M,,2M", "'' is not an env step count"),
                                         ("infk", "'infk' is not an env step count")])
def test_plot_at_rejects_what_is_not_an_increasing_list_of_step_counts(tmp_path, capsys, at, message):
    import plot
    _progress_csv(tmp_path / "a", range(-21, 0))
    assert plot.main([str(tmp_path / "a"), "--at", at]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("error: --at")


def test_plot_to_an_unwritable_out_is_a_one_line_error(tmp_path, capsys):
    import plot
    _progress_csv(tmp_path / "a", range(-21, 0))
    (tmp_path / "taken.png").mkdir()  # a directory where the picture should go: savefig cannot open it
    assert plot.main([str(tmp_path / "a"), "--out", str(tmp_path / "taken.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write" in err and "choose a writable --out" in err


def test_plot_without_returns_is_a_one_line_error(tmp_path):
    result = run("plot.py", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error:")


BENCHMARK_FIGURES = ("bare_sps", "inference_sps", "train_sps", "act_only_fps", "update_only_sps")


def test_benchmark_prints_consistent_figures(tmp_path):
    """benchmark.py end to end on 2 x 4 real envs: every phase ran, and the derived figures follow from the
    measured ones (ratio = training / bare; the ceiling is the formula of its docstring and bounds nothing
    below zero or above one)."""
    out = tmp_path / "bench.json"
    result = run("benchmark.py", "--preset", "smoke", "--seconds", "2", "--warmup", "3", "--json", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    b = json.loads(out.read_text())
    for key in BENCHMARK_FIGURES:
        assert b[key] > 0, key
    assert b["ratio"] == pytest.approx(b["train_sps"] / b["bare_sps"], abs=1e-3)
    ceiling = (1 / b["bare_sps"]) / (1 / b["bare_sps"] + 1 / b["act_only_fps"] + 1 / b["update_only_sps"])
    assert b["ceiling_ratio"] == pytest.approx(ceiling, abs=1e-3) and 0 < ceiling < 1
    assert sum(b["train_time_split"].values()) == pytest.approx(1.0, abs=1e-2)
    assert b["precision"] == "float32" and 0 < b["peak_rss_gib"] < 8
    assert "ceiling of training / bare" in result.stdout


@pytest.mark.parametrize("preset, env_id", [
    ("cartpole", "CartPole-v1"),  # flat observations: the MLP torso, not the Atari frames
    ("pendulum", "Pendulum-v1"),  # continuous actions: random actions within the box in the bare phase
])
def test_benchmark_runs_the_mlp_families(tmp_path, preset, env_id):
    out = tmp_path / "bench.json"
    result = run("benchmark.py", "--preset", preset, "--seconds", "1", "--warmup", "1", "--json", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    b = json.loads(out.read_text())
    assert b["env_id"] == env_id and b["network"] in ("auto", "mlp")
    for key in BENCHMARK_FIGURES:
        assert b[key] > 0, key
    assert b["bare_sps"] > b["train_sps"]  # a bare gymnasium env outruns training with a network in the loop


@pytest.mark.parametrize("argv, words", [
    (["--env-id", "Pendulum-v1", "--algorithm", "acer", "--std-head", "sde", "--envs-per-thread", "2"],
     "--algorithm acer needs --std-head shared or state"),  # raised while building the learner, after the envs
    (["--seconds", "0"], "--seconds must be > 0, got 0"),
    (["--warmup", "-1"], "--warmup must be >= 0, got -1"),
    (["--seconds", "abc"], "argument --seconds: invalid float value: 'abc'"),
    (["--preset", "pongg"], "invalid choice: 'pongg'"),
])
def test_benchmark_bad_input_is_one_line_exit_2(tmp_path, argv, words):
    from helpers import one_error_line, run
    code, _, err = run("benchmark.py", argv, tmp_path)
    assert code == 2 and words in one_error_line(err)
