"""tools/ship_run.py: one seed of a finished reproduce.py row becomes a model directory (the seed's network bit for
bit, its summary, curves and every evaluation) and a GIF trimmed to a byte budget; the median seed by default;
bad input is one line and writes nothing."""
import importlib.util
import json
import os

import numpy as np
import pytest

from checkpoints import network_tensors
from errors import ConfigError
from helpers import REPO_ROOT, cli_env, file_hashes, one_error_line, run

_spec = importlib.util.spec_from_file_location("ship_run", os.path.join(REPO_ROOT, "tools", "ship_run.py"))
ship_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ship_run)


@pytest.fixture(scope="module")
def row(tmp_path_factory):
    """A finished two-seed quick CartPole row (trained, evaluated with a recorded game, plotted)."""
    root = tmp_path_factory.mktemp("ship")
    out = root / "row"
    code, _, err = run("reproduce.py", ["cartpole", "--seeds", 2, "--quick", "--out", out], root,
                       cli_env(fake=False), "reproduce", timeout=300)
    assert code == 0, err[-3000:]
    return out


def _frames(path):
    from PIL import Image, ImageSequence
    with Image.open(path) as gif:
        return [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(gif)]


def test_the_median_seed_is_shipped_with_its_records_and_a_gif_in_budget(row, tmp_path):
    import tensorflow as tf
    summary = json.load(open(row / "summary.json"))
    lower = min(summary["seeds"], key=lambda e: (e["eval_mean"], e["seed"]))  # two seeds: the lower middle
    seed_dir = row / f"seed-{lower['seed']}"
    recorded = seed_dir / "eval" / "episode_0.gif"
    budget = recorded.stat().st_size // 2
    assert len(_frames(recorded)) >= 4, "the recorded game is too short to test a trim"
    model, gif = tmp_path / "models" / "cartpole", tmp_path / "assets" / "cartpole.gif"
    code, out, err = run("tools/ship_run.py", ["--run", row, "--out", model, "--gif", gif, "--gif-max-bytes", budget],
                         tmp_path, cli_env(fake=False), "ship", timeout=120)
    assert code == 0, err
    assert f"seed {lower['seed']} " in out
    source = tf.train.latest_checkpoint(str(seed_dir / "checkpoints"))
    want, got = network_tensors(source), network_tensors(tf.train.latest_checkpoint(str(model / "checkpoints")))
    assert want.keys() == got.keys() and all(want[k].tobytes() == got[k].tobytes() for k in want)
    assert json.load(open(model / "scores.json")) == json.load(open(seed_dir / "eval" / "scores.json"))
    assert json.load(open(model / "summary.json")) == summary
    assert (model / "curves.png").read_bytes() == (row / "curves.png").read_bytes()
    assert (model / "progress.csv").read_bytes() == (seed_dir / "progress.csv").read_bytes()
    whole, trimmed = _frames(recorded), _frames(gif)
    assert gif.stat().st_size <= budget and 1 <= len(trimmed) < len(whole)
    for a, b in zip(trimmed, whole):  # the first frames of the game, unchanged
        np.testing.assert_array_equal(a, b)


def test_every_extra_evaluation_of_the_row_is_shipped_under_its_name(row, tmp_path):
    files = ship_run.seed_files(str(row), {"seed": 0, "also_eval": {}})
    assert sorted(files) == ["curves.png", "scores.json", "summary.json"]
    extra = row / "seed-0" / "eval-sticky-0.25"
    extra.mkdir()
    try:
        (extra / "scores.json").write_text("{}")
        files = ship_run.seed_files(str(row), {"seed": 0, "also_eval": {"sticky-0.25": {}}})
        assert files["scores-sticky-0.25.json"] == str(extra / "scores.json")
    finally:
        (extra / "scores.json").unlink()
        extra.rmdir()


def _noise_gif(path, count=12, size=48):
    from PIL import Image
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).quantize(256)
              for _ in range(count)]
    frames[0].save(path, save_all=True, append_images=frames[1:], loop=0, duration=40)
    return _frames(path)


def _prefix_bytes(source, count, tmp_path) -> int:
    """The size of the GIF of the first `count` frames of `source`, written as a3c_test.py writes GIFs."""
    from PIL import Image, ImageSequence
    with Image.open(source) as gif:
        frames = [frame.copy() for frame in ImageSequence.Iterator(gif)][:count]
    path = tmp_path / f"prefix-{count}.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], loop=0, duration=40, disposal=1)
    return path.stat().st_size


def test_a_trimmed_gif_is_the_longest_prefix_in_budget_and_at_least_one_frame(tmp_path):
    source, out = tmp_path / "noise.gif", tmp_path / "out.gif"
    whole = _noise_gif(source)
    assert ship_run.trim_gif(str(source), str(out), 10**8) == (12, 12)
    assert all(np.array_equal(a, b) for a, b in zip(_frames(out), whole))
    kept, total = ship_run.trim_gif(str(source), str(out), source.stat().st_size // 2)
    assert total == 12 and 3 <= kept <= 9 and out.stat().st_size <= source.stat().st_size // 2
    assert all(np.array_equal(a, b) for a, b in zip(_frames(out), whole[:kept])) and len(_frames(out)) == kept
    assert _prefix_bytes(source, kept + 1, tmp_path) > source.stat().st_size // 2  # one frame more does not fit
    assert ship_run.trim_gif(str(source), str(out), 100) == (1, 12)  # under one frame's size: one frame
    np.testing.assert_array_equal(_frames(out)[0], whole[0])


def test_the_default_seed_is_the_median_evaluation_and_a_named_seed_must_be_in_the_row():
    summary = {"seeds": [{"seed": s, "eval_mean": m} for s, m in ((0, 5.0), (1, 1.0), (2, 3.0), (3, 9.0))]}
    assert ship_run.choose_seed({"seeds": summary["seeds"][:3]}, None)["seed"] == 2
    assert ship_run.choose_seed(summary, None)["seed"] == 2  # even count: the lower middle (3.0 of 1, 3, 5, 9)
    assert ship_run.choose_seed(summary, 3)["seed"] == 3
    with pytest.raises(ConfigError, match="--seed 7 is not in the row"):
        ship_run.choose_seed(summary, 7)


@pytest.mark.parametrize("case", ["no summary", "out holds a checkpoint", "no evaluation", "tiny budget", "not a gif"])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(row, tmp_path, case):
    model, gif = tmp_path / "model", tmp_path / "agent.gif"
    args = ["--run", row, "--out", model, "--gif", gif]
    moved = None
    before = file_hashes(row)
    if case == "no summary":
        args[1] = tmp_path
        needle = "no summary.json in --run"
    elif case == "out holds a checkpoint":
        args[3] = row / "seed-1"  # another seed's run: its checkpoints would be rotated away
        args += ["--seed", 0]
        needle = "already holds a checkpoint"
    elif case == "no evaluation":
        moved = row / "seed-0" / "eval" / "scores.json"
        moved.rename(tmp_path / "scores.json")
        args += ["--seed", 0]
        needle = "the row has not finished for seed 0"
    elif case == "tiny budget":
        args += ["--gif-max-bytes", 5]
        needle = "--gif-max-bytes 5 is too small"
    else:
        args[5] = tmp_path / "agent.png"
        needle = "must end in .gif"
    try:
        code, _, err = run("tools/ship_run.py", args, tmp_path, cli_env(fake=False), "bad", timeout=120)
    finally:
        if moved is not None:
            (tmp_path / "scores.json").rename(moved)
    assert code == 2 and needle in one_error_line(err)
    assert not model.exists() and not gif.exists() and not (tmp_path / "agent.png").exists()
    assert file_hashes(row) == before
