"""average_checkpoints.py: the mean of a run's checkpoints, evaluable by a3c_test.py; its bad input."""
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

import a3c_test
import average_checkpoints
from checkpoints import restore_weights
from errors import RunError
from helpers import file_hashes, make_trainer, one_error_line
from learner import A3CLearner


@pytest.fixture(scope="module")
def run3(tmp_path_factory):
    """A run with three checkpoints (60, 120, 180 env steps), each from a resumed leg."""
    run = tmp_path_factory.mktemp("avg") / "run"
    for total in (60, 120, 180):
        trainer = make_trainer(run, total_env_steps=total, checkpoints_kept=5)
        assert trainer.run() == 0
    return run, trainer.hp


def weights(hp, prefix):
    learner = A3CLearner(hp, 6, device="/CPU:0")
    restore_weights(learner.net, prefix)
    return [v.numpy() for v in learner.net.variables]


def test_the_average_is_the_mean_of_the_chosen_checkpoints(run3, tmp_path, capsys):
    run, hp = run3
    before = file_hashes(run)
    assert average_checkpoints.main(["--model", str(run), "--last", "2", "--out", str(tmp_path / "avg")]) == 0
    assert "averaged 2 checkpoints" in capsys.readouterr().out
    assert file_hashes(run) == before  # the sources are read, never written
    ckpts = str(run / "checkpoints")
    newest, older = (os.path.join(ckpts, f"ckpt-{n}") for n in (180, 120))
    expected = [(a.astype(np.float64) + b) / 2 for a, b in zip(weights(hp, newest), weights(hp, older))]
    averaged = weights(hp, tf.train.latest_checkpoint(str(tmp_path / "avg" / "checkpoints")))
    assert len(averaged) == len(expected)
    for got, want in zip(averaged, expected):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert not all(np.array_equal(a, b) for a, b in zip(averaged, weights(hp, newest)))  # it did average
    record = json.load(open(tmp_path / "avg" / "averaged.json"))
    assert record["env_steps"] == [180, 120]
    assert [os.path.basename(p) for p in record["sources"]] == ["ckpt-180", "ckpt-120"]
    # --from-step picks the same two; the written files hold the same weights
    assert average_checkpoints.main(["--model", ckpts, "--from-step", "100", "--out", str(tmp_path / "avg2")]) == 0
    again = weights(hp, tf.train.latest_checkpoint(str(tmp_path / "avg2" / "checkpoints")))
    for a, b in zip(averaged, again):
        np.testing.assert_array_equal(a, b)


def test_a3c_test_evaluates_the_averaged_checkpoint(run3, tmp_path):
    run, _ = run3
    assert average_checkpoints.main(["--model", str(run), "--last", "3", "--out", str(tmp_path / "avg")]) == 0
    quick = ["--episodes", "2", "--max-steps", "40", "--record", "0", "--seed", "3"]
    assert a3c_test.main(["--model", str(tmp_path / "avg"), "--out", str(tmp_path / "eval")] + quick) == 0
    scores = json.load(open(tmp_path / "eval" / "scores.json"))
    assert scores["env_steps_trained"] == 180


@pytest.mark.parametrize("args, message", [
    (["--last", "1"], "--last must be >= 2"),
    (["--last", "4"], "--last 4 but"),
    (["--from-step", "150"], "--from-step 150 leaves 1 checkpoint(s)"),
    (["--last", "2", "--from-step", "60"], "not allowed with argument"),
    ([], "one of the arguments --last --from-step is required"),
])
def test_bad_selections_are_one_line_errors(run3, tmp_path, capsys, args, message):
    run, _ = run3
    before = file_hashes(run)
    assert average_checkpoints.main(["--model", str(run), "--out", str(tmp_path / "avg")] + args) == 2
    line = one_error_line(capsys.readouterr().err)
    assert message in line
    assert file_hashes(run) == before


def test_an_averaged_checkpoint_cannot_be_resumed(run3, tmp_path):
    run, _ = run3
    assert average_checkpoints.main(["--model", str(run), "--last", "2", "--out", str(tmp_path / "avg")]) == 0
    before = file_hashes(tmp_path / "avg")
    with pytest.raises(RunError, match="holds an average of checkpoints .* cannot be resumed"):
        make_trainer(tmp_path / "avg", total_env_steps=240)
    after = file_hashes(tmp_path / "avg")
    assert {k: v for k, v in after.items() if k != ".lock"} == before


def test_bad_paths_are_one_line_errors(run3, tmp_path, capsys):
    run, _ = run3
    assert average_checkpoints.main(["--model", str(tmp_path / "nope"), "--last", "2", "--out",
                                     str(tmp_path / "avg")]) == 2
    assert "does not exist" in one_error_line(capsys.readouterr().err)
    assert average_checkpoints.main(["--model", str(run), "--last", "2", "--out", str(run)]) == 2
    assert "is the run being averaged" in one_error_line(capsys.readouterr().err)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert average_checkpoints.main(["--model", str(run), "--last", "2", "--out", str(blocker / "sub")]) == 2
    assert "cannot write to --out" in one_error_line(capsys.readouterr().err)


def test_an_unreadable_checkpoint_is_named(run3, tmp_path, capsys):
    run, _ = run3
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns(".lock"))
    data = next(p for p in os.listdir(copy / "checkpoints") if p.startswith("ckpt-120.data"))
    with open(copy / "checkpoints" / data, "r+b") as f:  # flip bytes inside the tensors: the CRC catches it
        f.seek(os.path.getsize(copy / "checkpoints" / data) // 2)
        f.write(b"\xff" * 64)
    assert average_checkpoints.main(["--model", str(copy), "--last", "3", "--out", str(tmp_path / "avg")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "ckpt-120 is unreadable" in line
