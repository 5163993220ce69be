"""export.py / a3c_test.py --export: a SavedModel of the policy that acts exactly like the checkpoint."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import a3c_test
import export
from checkpoints import restore_weights
from helpers import file_hashes, make_trainer, one_error_line
from learner import make_learner


KINDS = {"a3c": dict(network="a3c"), "a3c-lstm": dict(network="a3c-lstm"),
         "acer": dict(network="a3c", algorithm="acer", replay_capacity=200, replay_start=40)}  # a Q head


@pytest.fixture(scope="module", params=sorted(KINDS))
def exported(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"export-{request.param}")
    trainer = make_trainer(root / "run", total_env_steps=60, **KINDS[request.param])
    assert trainer.run() == 0
    assert a3c_test.main(["--model", str(root / "run"), "--export", str(root / "saved")]) == 0
    return request.param, root / "run", root / "saved", trainer.hp


def test_the_saved_model_acts_like_the_checkpoint(exported):
    kind, run, saved, hp = exported
    config = json.load(open(saved / export.EXPORT_CONFIG))
    assert config["network"] == KINDS[kind]["network"] and config["num_actions"] == 6
    assert config["env_steps_trained"] == 60
    learner = make_learner(hp, 6, device="/CPU:0")
    restore_weights(learner.net, tf.train.latest_checkpoint(str(run / "checkpoints")))
    loaded = export.SavedPolicy(str(saved))
    assert loaded.state_size == learner.net.state_size == (512 if kind == "a3c-lstm" else 0)
    rng = np.random.default_rng(0)
    B, S = 3, learner.net.state_size
    state_ckpt = state_saved = np.zeros((B, S), np.float32)
    for t in range(6):  # the state evolves, and env 1 starts a new episode at t = 3
        obs = rng.integers(0, 256, (B, 4, 84, 84), dtype=np.uint8)
        reset = np.array([t == 0, t in (0, 3), t == 0])
        seed = np.array([7, t], np.int32)
        for greedy in (True, False):
            a_ckpt, v_ckpt, s_ckpt, *_ = (np.asarray(x) for x in learner.policy(greedy)(obs, state_ckpt, reset, seed))
            a_saved, v_saved, s_saved = (np.asarray(x) for x in loaded.policy(greedy)(obs, state_saved, reset, seed))
            np.testing.assert_array_equal(a_saved, a_ckpt)
            np.testing.assert_allclose(v_saved, v_ckpt, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(s_saved, s_ckpt, rtol=1e-5, atol=1e-5)
        state_ckpt, state_saved = s_ckpt, s_saved
    # The raw signature: obs and state in; action, logits, value and state out.
    signature = tf.saved_model.load(str(saved)).signatures["serving_default"]
    out = signature(obs=tf.constant(obs), state=tf.zeros((B, S)))
    assert set(out) == {"action", "logits", "policy_params", "value", "state"}
    assert out["logits"].shape == (B, 6) and out["action"].dtype == tf.int32


def test_a3c_test_evaluates_the_saved_model_like_the_checkpoint(exported, tmp_path):
    kind, run, saved, _ = exported
    quick = ["--episodes", "2", "--max-steps", "40", "--record", "0", "--seed", "3", "--sample"]
    assert a3c_test.main(["--model", str(run), "--out", str(tmp_path / "ckpt")] + quick) == 0
    assert a3c_test.main(["--model", str(saved), "--out", str(tmp_path / "saved")] + quick) == 0
    from_ckpt = json.load(open(tmp_path / "ckpt" / "scores.json"))
    from_saved = json.load(open(tmp_path / "saved" / "scores.json"))
    assert from_saved["episodes"] == from_ckpt["episodes"] and from_saved["lengths"] == from_ckpt["lengths"]
    assert from_saved["env_steps_trained"] == 60 and from_saved["checkpoint"] == str(saved)


def test_export_bad_input_is_one_line_and_touches_nothing(exported, tmp_path, capsys):
    _, run, saved, _ = exported
    before = file_hashes(run)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a protobuf")
    (broken / export.EXPORT_CONFIG).write_text((saved / export.EXPORT_CONFIG).read_text())
    cases = [
        (["--model", str(run), "--export", str(a_file / "sub")], "cannot write to --export"),
        (["--model", str(run), "--export", str(tmp_path / "x"), "--out", str(tmp_path / "y")], "one of them"),
        (["--model", str(run)], "pass --out DIR to evaluate or --export DIR"),
        (["--model", str(broken), "--out", str(tmp_path / "e"), "--episodes", "1"], "is not a SavedModel written by"),
    ]
    for argv, words in cases:
        capsys.readouterr()
        assert a3c_test.main(argv) == 2, argv
        assert words in one_error_line(capsys.readouterr().err), argv
    assert file_hashes(run) == before
    assert not os.path.exists(tmp_path / "x")
