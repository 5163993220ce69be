"""tools/slim_model.py: the network-only copy of a checkpoint equals its source's network bit for bit, evaluates
to the same games, is smaller and cannot be resumed; its bad input."""
import importlib.util
import io
import json
import os

import pytest
import tensorflow as tf

import a3c
import a3c_test
import hparams
from checkpoints import NETWORK_ONLY_FILE, network_tensors
from helpers import REPO_ROOT, cli_env, file_hashes, one_error_line, run

_spec = importlib.util.spec_from_file_location("slim_model", os.path.join(REPO_ROOT, "tools", "slim_model.py"))
slim_model = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(slim_model)

TINY = ["--preset", "cartpole", "--threads", "1", "--envs-per-thread", "4", "--no-progress-bar",
        "--log-interval-s", "60"]
ALGORITHMS = {"a3c": [], "acer": ["--algorithm", "acer", "--replay-capacity", "200", "--replay-start", "40"]}


@pytest.fixture(scope="module", params=sorted(ALGORITHMS))
def tiny_run(request, tmp_path_factory):
    """A CartPole run of 400 env steps in two legs (a resumed run, as the shipped ones are), and its slim copy."""
    root = tmp_path_factory.mktemp(f"slim-{request.param}")
    run_dir = root / "run"
    for total in (200, 400):
        hp = hparams.parse_args(TINY + ALGORITHMS[request.param] + ["--logdir", str(run_dir),
                                                                    "--total-env-steps", str(total)])
        trainer = a3c.Trainer(hp, out=io.StringIO())
        trainer.setup()
        assert trainer.run() == 0
    (run_dir / "scores-old.json").write_text("{}")  # a record to carry along
    before = file_hashes(run_dir)
    assert slim_model.main(["--model", str(run_dir), "--out", str(root / "slim")]) == 0
    assert file_hashes(run_dir) == before  # the source is read, never written
    return run_dir, root / "slim", request.param


def newest(directory) -> str:
    return tf.train.latest_checkpoint(str(directory / "checkpoints"))


def test_the_slim_network_is_the_source_network_bit_for_bit(tiny_run):
    run_dir, slim, algorithm = tiny_run
    source, copy = newest(run_dir), newest(slim)
    assert os.path.basename(copy) == os.path.basename(source) == "ckpt-400"
    want, got = network_tensors(source), network_tensors(copy)
    assert want.keys() == got.keys() and len(want) >= 4
    for key in want:
        assert want[key].dtype == got[key].dtype and want[key].tobytes() == got[key].tobytes(), key
    kept = {name.split("/")[0] for name, _ in tf.train.list_variables(copy)}
    assert kept == {"model", "env_steps", "save_counter", "_CHECKPOINTABLE_OBJECT_GRAPH"}
    assert tf.train.load_checkpoint(copy).get_tensor("env_steps/.ATTRIBUTES/VARIABLE_VALUE") == 400
    marker = json.load(open(slim / NETWORK_ONLY_FILE))
    assert marker["source"] == source and marker["env_steps"] == 400
    assert sorted(marker["variables"]) == sorted(want)
    dropped = {"optimizer", "episodes", "updates", "wall_time_s"} | ({"avg_model"} if algorithm == "acer" else set())
    assert set(marker["dropped"]) == dropped
    assert slim_model.checkpoint_bytes(copy) < slim_model.checkpoint_bytes(source)
    assert sorted(os.listdir(slim)) == ["checkpoints", "config.json", NETWORK_ONLY_FILE, "progress.csv",
                                        "scores-old.json"]
    assert (slim / "config.json").read_bytes() == (run_dir / "config.json").read_bytes()


@pytest.mark.parametrize("mode", ["--greedy", "--sample"])
def test_the_slim_model_plays_the_same_games(tiny_run, tmp_path, mode):
    run_dir, slim, _ = tiny_run
    quick = ["--episodes", "3", "--seed", "3", "--record", "0", "--max-steps", "200", "--no-progress-bar", mode]
    scores = {}
    for name, model in (("source", run_dir), ("slim", slim)):
        assert a3c_test.main(["--model", str(model), "--out", str(tmp_path / name)] + quick) == 0
        scores[name] = json.load(open(tmp_path / name / "scores.json"))
    assert scores["slim"]["episodes"] == scores["source"]["episodes"]
    assert scores["slim"]["lengths"] == scores["source"]["lengths"]
    assert scores["slim"]["env_steps_trained"] == scores["source"]["env_steps_trained"] == 400


def test_a3c_py_refuses_to_resume_the_slim_model_in_one_line(tiny_run, tmp_path):
    _, slim, _ = tiny_run
    before = file_hashes(slim)
    code, _, err = run("a3c.py", TINY + ["--logdir", slim, "--total-env-steps", 800], tmp_path,
                       cli_env(fake=False), "resume")
    assert code == 2
    line = one_error_line(err)
    assert f"holds a slimmed checkpoint (tools/slim_model.py, see its {NETWORK_ONLY_FILE})" in line
    assert "cannot be resumed" in line
    assert {k: v for k, v in file_hashes(slim).items() if k != ".lock"} == before


def test_no_records_leaves_the_records(tiny_run, tmp_path, capsys):
    run_dir, _, _ = tiny_run
    assert slim_model.main(["--model", str(run_dir / "checkpoints"), "--out", str(tmp_path / "bare"),
                            "--no-records"]) == 0
    assert "copied" not in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path / "bare")) == ["checkpoints", "config.json", NETWORK_ONLY_FILE]


def test_bad_input_is_one_line_and_exit_2(tiny_run, tmp_path, capsys):
    run_dir, slim, _ = tiny_run
    before = file_hashes(run_dir), file_hashes(slim)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases = [
        (tmp_path / "nope", tmp_path / "out", "--model " + str(tmp_path / "nope") + " does not exist"),
        (run_dir, run_dir, "is the source model"),
        (run_dir / "checkpoints", run_dir, "is the source model"),
        (run_dir, run_dir / "checkpoints", "is the source model"),
        (run_dir, slim, "already holds a checkpoint"),
        (run_dir, blocker / "sub", "cannot write to --out"),
    ]
    for model, out, message in cases:
        assert slim_model.main(["--model", str(model), "--out", str(out)]) == 2, (model, out)
        assert message in one_error_line(capsys.readouterr().err), (model, out)
    assert slim_model.main(["--model", str(run_dir)]) == 2
    assert "--out" in one_error_line(capsys.readouterr().err)
    assert (file_hashes(run_dir), file_hashes(slim)) == before
