"""The Atari suite's reference figures, human normalisation, reproduce rows and the results table tool."""
import json
import os
import statistics
import subprocess
import sys

import pytest

import atari_suite
import hparams
import reproduce

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import atari_table  # noqa: E402


def test_human_normalised_is_zero_at_random_and_one_at_human():
    for game, (random, human) in atari_suite.RANDOM_HUMAN.items():
        assert atari_suite.human_normalised(game, random) == pytest.approx(0.0)
        assert atari_suite.human_normalised(game, human) == pytest.approx(1.0)
    # Breakout: random 1.7, human 30.5 -> 436 is (436 - 1.7) / 28.8
    assert atari_suite.human_normalised("Breakout", 436.0) == pytest.approx(434.3 / 28.8)


def test_median_over_games_and_unknown_game():
    scores = {"Pong": 14.6, "Breakout": 1.7, "Boxing": 24.1}  # 1, 0, 2 human
    assert atari_suite.median_human_normalised(scores) == pytest.approx(1.0)
    with pytest.raises(KeyError, match="no random/human scores for 'Zork'"):
        atari_suite.human_normalised("Zork", 1.0)
    with pytest.raises(ValueError):
        atari_suite.median_human_normalised({})


def test_every_suite_game_has_anchors_and_random_human_scores():
    for game in atari_suite.GAMES:
        assert len(atari_suite.ANCHORS[game]) == len(atari_suite.ANCHOR_COLUMNS)
        random, human = atari_suite.RANDOM_HUMAN[game]
        assert human > random
    assert atari_suite.anchors_beaten("Seaquest", 1720.0) == {"A2C": True, "ACER": False, "PPO": True,
                                                              "CleanRL PPO": True}


@pytest.mark.parametrize("game", atari_suite.GAMES)
def test_each_game_has_a_reproduce_row_on_the_atari_preset(game):
    row = reproduce.ROWS[f"atari-{hparams.game_slug(game)}"]
    hp = hparams.parse_args([*row.train, "--seed", "0", "--logdir", "x"])
    assert hp.env_id == f"ALE/{game}-v5" and hp.algorithm == "acer" and hp.total_env_steps == 10_000_000
    assert row.eval_flags == ("--epsilon", "0.01")
    assert dict(row.also_eval)["sticky-0.25"][-2:] == ("--repeat-action-probability", "0.25")
    assert row.milestones == tuple(sorted(atari_suite.ANCHORS[game][:2]))


def _summary(train_mean, eval_mean=900.0, sticky=True):
    also = {"sticky-0.25": {"mean": 700.0, "std": 50.0}} if sticky else {}
    return {"cpu": "AMD EPYC (family 25 model 17), 2 CPUs", "seeds": [{
        "seed": 0, "env_steps": 10_000_000, "wall_time_s": 3.5 * 3600, "env_steps_per_s": 794.0,
        "final_mean_return": train_mean, "eval_mean": eval_mean, "eval_std": 100.0, "also_eval": also}]}


def _write(models, game, summary):
    os.makedirs(models / hparams.game_slug(game), exist_ok=True)
    (models / hparams.game_slug(game) / "summary.json").write_text(json.dumps(summary))


def test_table_lists_trained_games_against_anchors_and_the_rest_as_not_trained(tmp_path):
    _write(tmp_path, "SpaceInvaders", _summary(1300.0))  # above all four anchors (max 1,213.9)
    _write(tmp_path, "Seaquest", _summary(1720.0, sticky=False))  # above A2C, PPO, CleanRL; below ACER
    text = atari_table.table(str(tmp_path))
    si = next(line for line in text.splitlines() if line.startswith("| SpaceInvaders"))
    assert "| 10.00M | 3.50 h | 794 | **1,300.0** | 900.0 ± 100.0 | 700.0 ± 50.0 |" in si
    assert si.endswith(f"| {(1300.0 - 148.0) / (1668.7 - 148.0):.2f} |")
    assert "| Boxing | not trained yet |" in text
    median = statistics.median([(1300.0 - 148.0) / (1668.7 - 148.0), (1720.0 - 68.4) / (42054.7 - 68.4)])
    assert f"over 2 of 7 games: **{median:.2f}**" in text
    assert "A2C 2/2, ACER 1/2, PPO 2/2, CleanRL PPO 2/2" in text


def test_table_of_an_empty_directory_says_so(tmp_path):
    assert "No game trained yet." in atari_table.table(str(tmp_path))


@pytest.mark.parametrize("content, words", [
    ("{not json", "cannot read"),
    (json.dumps({"cpu": "x", "seeds": []}), "cannot read"),
    (json.dumps(_summary(None)), "finished no episode"),
])
def test_bad_summary_is_one_line_exit_2(tmp_path, content, words):
    os.makedirs(tmp_path / "qbert")
    (tmp_path / "qbert" / "summary.json").write_text(content)
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "atari_table.py"), "--models", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and words in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_unknown_flag_is_one_line_exit_2():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "atari_table.py"), "--frobnicate"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and out.stderr.count("\n") == 1
    assert "--frobnicate" in out.stderr and "Traceback" not in out.stderr and "usage" not in out.stderr


def test_missing_models_directory_is_one_line_exit_2(tmp_path):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "atari_table.py"), "--models",
                          str(tmp_path / "nope")], capture_output=True, text=True)
    assert out.returncode == 2 and "is not a directory" in out.stderr and "Traceback" not in out.stderr


def _write_progress(models, game, rows):
    with open(models / hparams.game_slug(game) / "progress.csv", "w") as f:
        f.write("env_steps,wall_time_s,episodes,mean_return\n")
        f.writelines(f"{s},{s / 1000},{e},{r}\n" for s, e, r in rows)


def test_the_suite_plot_draws_each_trained_curve_against_its_anchors_and_marks_the_rest(tmp_path):
    _write(tmp_path, "Qbert", _summary(16000.0))
    _write_progress(tmp_path, "Qbert", [(0, 0, ""), (5_000_000, 120, 9000.0), (10_000_000, 260, 16000.0)])
    curves = {game: atari_table.read_curve(str(tmp_path), game) for game in atari_suite.GAMES}
    assert curves["Qbert"]["env_steps"] == [5_000_000, 10_000_000]  # the row without a return yet: dropped
    assert curves["Boxing"] is None
    fig = atari_table.suite_figure(curves)
    panels = {ax.get_title().split(":")[0]: ax for ax in fig.axes if ax.get_title()}
    assert set(panels) == set(atari_suite.GAMES)
    qbert = panels["Qbert"]
    assert qbert.get_title() == "Qbert: 16,000 at 10.0M"
    drawn = [tuple(line.get_ydata()) for line in qbert.get_lines()]
    assert (9000.0, 16000.0) in drawn
    assert sorted(y[0] for y in drawn if len(set(y)) == 1 and len(y) == 2) == sorted(atari_suite.ANCHORS["Qbert"])
    assert [t.get_text() for t in panels["Boxing"].texts] == ["not trained yet"]
    assert [t.get_text() for t in qbert.texts] == []
    out = tmp_path / "suite.png"
    assert atari_table.main(["--models", str(tmp_path), "--plot", str(out)]) == 0 and out.stat().st_size > 10_000


def test_the_suite_plot_without_a_progress_csv_is_one_line_exit_2(tmp_path):
    _write(tmp_path, "Qbert", _summary(16000.0))
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "atari_table.py"), "--models", str(tmp_path),
                          "--plot", str(tmp_path / "suite.png")], capture_output=True, text=True)
    assert out.returncode == 2 and "no progress.csv at" in out.stderr and "beside its summary.json" in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr and not (tmp_path / "suite.png").exists()


def test_the_suite_plot_to_an_unwritable_path_is_one_line_exit_2(tmp_path, capsys):
    _write(tmp_path, "Qbert", _summary(16000.0))
    _write_progress(tmp_path, "Qbert", [(5_000_000, 120, 9000.0), (10_000_000, 260, 16000.0)])
    (tmp_path / "taken.png").mkdir()
    assert atari_table.main(["--models", str(tmp_path), "--plot", str(tmp_path / "taken.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write" in err and "choose a writable --plot path" in err
